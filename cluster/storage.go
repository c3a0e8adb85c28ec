package cluster

import (
	"encoding/binary"
	"fmt"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/mqstreams/mqstreams/log"
)

// Raft state of one group in the log's Raft key space (log/raft.go):
//
//	g <group u64> e <index u64>  -> raftpb.Entry
//	g <group u64> h              -> raftpb.HardState
//	g <group u64> s              -> raftpb.Snapshot (metadata + our small state summary)
//
// The applied index is not here: a shard replica writes it as a log entry op in the
// Pebble batch of the records it applied (shard.go), the catalog with its state
// (catalog.go), so apply happens exactly once across a crash.
const (
	keyEntry     = 'e'
	keyHardState = 'h'
	keySnapshot  = 's'
	keyConfState = 'c' // index u64 | raftpb.ConfState: the configuration after the last conf change applied (members.go)
)

// Initial Raft state of a new group (as CockroachDB does): a snapshot at index 10, term
// 5 naming the voters, so every replica starts from the same state without
// configuration-change entries and an empty state machine is "applied" up to 10.
const (
	initialIndex = 10
	initialTerm  = 5
)

func groupKey(group uint64, kind byte) []byte {
	k := make([]byte, 0, 18)
	k = append(k, 'g')
	k = binary.BigEndian.AppendUint64(k, group)
	return append(k, kind)
}

func entryKey(group, index uint64) []byte {
	return binary.BigEndian.AppendUint64(groupKey(group, keyEntry), index)
}

// storage is a group's raft.Storage: raft's MemoryStorage (the entries not yet
// compacted away, kept in memory as raftexample does) mirrored in Pebble, reloaded at
// start.
type storage struct {
	*raft.MemoryStorage
	l     *log.Log
	group uint64
	last  uint64 // last index persisted
	// saved is the hard state last written (the persister's: MemoryStorage's
	// InitialState does not lock against the loop's compactions).
	saved *pb.HardState
	buf   []byte // the persister's encoding buffer
	// cs, csIndex: the configuration after the last conf change applied here and its
	// entry index, when newer than the snapshot's (members.go).
	cs      *pb.ConfState
	csIndex uint64
}

// openStorage loads a group's state; fresh reports that the group had none and was
// initialised with voters.
func openStorage(l *log.Log, group uint64, voters []uint64) (st *storage, fresh bool, err error) {
	st = &storage{MemoryStorage: raft.NewMemoryStorage(), l: l, group: group}
	v, err := l.RaftGet(groupKey(group, keySnapshot))
	if err != nil {
		return nil, false, err
	}
	if v == nil && len(voters) == 0 {
		// A replica joining an existing group: no state at all, the leader sends a
		// snapshot naming it (members.go).
		return st, true, nil
	}
	if v == nil {
		snap := &pb.Snapshot{Metadata: &pb.SnapshotMetadata{
			Index: new(uint64(initialIndex)), Term: new(uint64(initialTerm)),
			ConfState: &pb.ConfState{Voters: voters},
		}}
		hs := &pb.HardState{Term: new(uint64(initialTerm)), Commit: new(uint64(initialIndex))}
		rb := l.NewRaftBatch()
		if err := st.putSnapshot(rb, snap, initialIndex); err != nil {
			rb.Close()
			return nil, false, err
		}
		if err := putProto(rb, groupKey(group, keyHardState), hs); err != nil {
			rb.Close()
			return nil, false, err
		}
		if err := rb.Commit(true); err != nil {
			return nil, false, err
		}
		if err := st.ApplySnapshot(snap); err != nil {
			return nil, false, err
		}
		if err := st.SetHardState(hs); err != nil {
			return nil, false, err
		}
		st.saved = hs
		st.last = initialIndex
		return st, true, nil
	}
	snap := &pb.Snapshot{}
	if err := proto.Unmarshal(v, snap); err != nil {
		return nil, false, fmt.Errorf("group %d snapshot: %w", group, err)
	}
	if err := st.ApplySnapshot(snap); err != nil {
		return nil, false, fmt.Errorf("group %d snapshot: %w", group, err)
	}
	st.last = snap.GetMetadata().GetIndex()
	if err := st.loadConfState(); err != nil {
		return nil, false, err
	}
	if v, err = l.RaftGet(groupKey(group, keyHardState)); err != nil {
		return nil, false, err
	} else if v != nil {
		hs := &pb.HardState{}
		if err := proto.Unmarshal(v, hs); err != nil {
			return nil, false, fmt.Errorf("group %d hard state: %w", group, err)
		}
		if err := st.SetHardState(hs); err != nil {
			return nil, false, err
		}
		st.saved = hs
	}
	var ents []*pb.Entry
	lo := entryKey(group, st.last+1)
	hi := groupKey(group, keyEntry+1)
	err = l.RaftScan(lo, hi, func(_, v []byte) error {
		e := &pb.Entry{}
		if err := proto.Unmarshal(v, e); err != nil {
			return fmt.Errorf("group %d entry: %w", group, err)
		}
		ents = append(ents, e)
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	if err := st.Append(ents); err != nil {
		return nil, false, fmt.Errorf("group %d entries: %w", group, err)
	}
	if n := len(ents); n > 0 {
		st.last = ents[n-1].GetIndex()
	}
	return st, false, nil
}

func putProto(rb *log.RaftBatch, key []byte, m proto.Message) error {
	v, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	rb.Set(key, v)
	return nil
}

// putSnapshot writes snap and removes the entries up to through.
func (st *storage) putSnapshot(rb *log.RaftBatch, snap *pb.Snapshot, through uint64) error {
	if err := putProto(rb, groupKey(st.group, keySnapshot), snap); err != nil {
		return err
	}
	rb.DeleteRange(entryKey(st.group, 0), entryKey(st.group, through+1))
	return nil
}

// persist writes a Ready's snapshot, entries and hard state into rb (raft's step 1).
func (st *storage) persist(rb *log.RaftBatch, rd *raft.Ready) error {
	if !raft.IsEmptySnap(rd.Snapshot) {
		// A snapshot replaces the whole log.
		if err := st.putSnapshot(rb, rd.Snapshot, 1<<63); err != nil {
			return err
		}
	}
	if n := len(rd.Entries); n > 0 {
		first := rd.Entries[0].GetIndex()
		if first <= st.last {
			// Entries from first on are replaced (a new leader's log wins).
			rb.DeleteRange(entryKey(st.group, first), groupKey(st.group, keyEntry+1))
		}
		for _, e := range rd.Entries {
			// One buffer for every entry: the batch copies what it is given.
			v, err := proto.MarshalOptions{}.MarshalAppend(st.buf[:0], e)
			if err != nil {
				return err
			}
			rb.Set(entryKey(st.group, e.GetIndex()), v)
			if cap(v) <= 64<<10 {
				st.buf = v // a large one is not kept for every group
			}
		}
		// A later message written in the same batch replaces from here (the batch is
		// committed whole or the node stops taking part).
		st.last = rd.Entries[n-1].GetIndex()
	} else if !raft.IsEmptySnap(rd.Snapshot) {
		st.last = rd.Snapshot.GetMetadata().GetIndex()
	}
	if !raft.IsEmptyHardState(rd.HardState) {
		if err := putProto(rb, groupKey(st.group, keyHardState), rd.HardState); err != nil {
			return err
		}
	}
	return nil
}

// mustSync tells whether a Ready's write must reach the disk before its responses go
// out (raft.MustSync, and a snapshot): new entries, or a new term or vote.
func (st *storage) mustSync(rd *raft.Ready) bool {
	if len(rd.Entries) > 0 || !raft.IsEmptySnap(rd.Snapshot) {
		return true
	}
	if raft.IsEmptyHardState(rd.HardState) {
		return false
	}
	return rd.HardState.GetTerm() != st.saved.GetTerm() || rd.HardState.GetVote() != st.saved.GetVote()
}

// persisted updates the in-memory copy once rb is committed.
func (st *storage) persisted(rd *raft.Ready) error {
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := st.ApplySnapshot(rd.Snapshot); err != nil {
			return err
		}
		st.last = rd.Snapshot.GetMetadata().GetIndex()
	}
	if n := len(rd.Entries); n > 0 {
		if err := st.Append(rd.Entries); err != nil {
			return err
		}
		st.last = rd.Entries[n-1].GetIndex()
	}
	if !raft.IsEmptyHardState(rd.HardState) {
		if err := st.SetHardState(rd.HardState); err != nil {
			return err
		}
		st.saved = rd.HardState
	}
	return nil
}

// compact makes a snapshot at index (applied and durable, with data describing the
// state machine there) and drops the entries up to through (≤ index: a follower a
// little behind still gets entries rather than the snapshot), in memory and in Pebble.
func (st *storage) compact(index, through uint64, cs *pb.ConfState, data []byte) error {
	snap, err := st.CreateSnapshot(index, cs, data)
	if err != nil {
		return err
	}
	rb := st.l.NewRaftBatch()
	if err := st.putSnapshot(rb, snap, through); err != nil {
		rb.Close()
		return err
	}
	if err := rb.Commit(false); err != nil {
		return err
	}
	return st.Compact(through)
}

// destroy removes every key of the group (its stream or shard was deleted).
func destroyGroup(l *log.Log, group uint64) error {
	rb := l.NewRaftBatch()
	rb.DeleteRange(groupKey(group, 0), groupKey(group+1, 0))
	return rb.Commit(false)
}
