package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/raft/v3"

	"github.com/mqstreams/mqstreams/log"
)

// A replica that a leader sends a snapshot to pulls the records it lacks from the
// leader with methodReadShard: request u16 stream length | stream | i32 shard |
// i64 from | i64 to; answer i64 the leader's log start, then runs of records that share
// an append time: i64 first offset | i64 time µs | uvarint length | Kafka v2 batch, up
// to ~1 MiB, from max(from, log start). A replica whose records end below the leader's
// log start starts its shard there (shard.go install): a snapshot starts at the
// current log start.
const snapshotReadBytes = 1 << 20

type recordRun struct {
	first int64
	tsUS  int64
	recs  []log.Record
	// A transactional batch or marker (its header says so: log.EncodeTxnRecords),
	// applied with its producer so the replica's LSO and abort index match the leader's.
	txn, control bool
	pid          int64
	epoch        int16
}

func (n *Node) readFromLeader(g *group, from, to int64) (int64, []recordRun, error) {
	lead := g.leaderID()
	if lead == n.Self() {
		n.handOffWhileInstalling(g)
		return 0, nil, ErrNoLeader
	}
	if lead == 0 {
		return 0, nil, ErrNoLeader
	}
	req := binary.BigEndian.AppendUint16(nil, uint16(len(g.stream)))
	req = append(req, g.stream...)
	req = binary.BigEndian.AppendUint32(req, uint32(g.shard))
	req = binary.BigEndian.AppendUint64(req, uint64(from))
	req = binary.BigEndian.AppendUint64(req, uint64(to))
	type out struct {
		b   []byte
		err error
	}
	ch := make(chan out, 1)
	n.tr.call(lead, methodReadShard, req, 10*time.Second, func(b []byte, err error) { ch <- out{b, err} })
	o := <-ch
	if o.err != nil {
		return 0, nil, o.err
	}
	if len(o.b) < 8 {
		return 0, nil, errBadEntry
	}
	start := int64(binary.BigEndian.Uint64(o.b))
	var runs []recordRun
	b := o.b[8:]
	for len(b) > 0 {
		if len(b) < 16 {
			return 0, nil, errBadEntry
		}
		r := recordRun{first: int64(binary.BigEndian.Uint64(b)), tsUS: int64(binary.BigEndian.Uint64(b[8:]))}
		b = b[16:]
		l, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < l {
			return 0, nil, errBadEntry
		}
		enc := b[k : k+int(l)]
		recs, err := log.DecodeRecords(enc)
		if err != nil {
			return 0, nil, err
		}
		r.recs = recs
		r.pid, r.epoch, r.txn, r.control = log.BatchProducer(enc)
		b = b[k+int(l):]
		runs = append(runs, r)
	}
	if len(runs) == 0 && start < to {
		return 0, nil, errors.New("leader sent no records")
	}
	return start, runs, nil
}

func (n *Node) onReadShard(_ uint64, body []byte, reply func([]byte, error)) {
	if len(body) < 2 {
		reply(nil, errBadEntry)
		return
	}
	sl := int(binary.BigEndian.Uint16(body))
	if len(body) != 2+sl+20 {
		reply(nil, errBadEntry)
		return
	}
	name := string(body[2 : 2+sl])
	b := body[2+sl:]
	shard := int32(binary.BigEndian.Uint32(b))
	from, to := int64(binary.BigEndian.Uint64(b[4:])), int64(binary.BigEndian.Uint64(b[12:]))
	st := n.l.Stream(name)
	if st == nil {
		reply(nil, fmt.Errorf("read %s: %w", name, log.ErrUnknownStream))
		return
	}
	// Reading may take a while: off the link's read goroutine.
	go func() {
		start, _, err := st.Offsets(shard)
		if err != nil {
			reply(nil, err)
			return
		}
		from = max(from, start)
		out := binary.BigEndian.AppendUint64(nil, uint64(start))
		if from >= to {
			reply(out, nil)
			return
		}
		batches, err := st.Read(shard, from, snapshotReadBytes)
		if err != nil {
			reply(nil, err)
			return
		}
		var run []log.Record
		var runFirst, runTS, pid int64
		var epoch int16
		var txn, control bool
		flush := func() {
			if len(run) == 0 {
				return
			}
			out = binary.BigEndian.AppendUint64(out, uint64(runFirst))
			out = binary.BigEndian.AppendUint64(out, uint64(runTS))
			var enc []byte
			if txn {
				enc = log.EncodeTxnRecords(nil, runTS, run, pid, epoch, control)
			} else {
				enc = log.EncodeRecords(nil, runTS, run)
			}
			out = binary.AppendUvarint(out, uint64(len(enc)))
			out = append(out, enc...)
			run = run[:0]
		}
		for _, bt := range batches {
			recs, err := bt.Records(from)
			if err != nil {
				reply(nil, err)
				return
			}
			// A transactional batch or marker is a run of its own, with its producer.
			bpid, bepoch, btxn, bcontrol := log.BatchProducer(bt.Data)
			if btxn || txn {
				flush()
			}
			pid, epoch, txn, control = bpid, bepoch, btxn, bcontrol
			for _, r := range recs {
				if r.Offset >= to {
					break
				}
				if len(run) > 0 && (r.TimestampUS != runTS || r.Offset != runFirst+int64(len(run))) {
					flush()
				}
				if len(run) == 0 {
					runFirst, runTS = r.Offset, r.TimestampUS
				}
				run = append(run, r.Record)
			}
		}
		flush()
		reply(out, nil)
	}()
}

// handOffWhileInstalling: this replica was elected while it still pulls the records of
// a snapshot (a learner just promoted can win an election: its Raft log is complete).
// It cannot pull them from itself and cannot apply anything until it has them, so it
// hands leadership to the voter whose log matches furthest.
func (n *Node) handOffWhileInstalling(g *group) {
	_ = n.do(func() {
		st := g.rn.Status()
		if st.RaftState != raft.StateLeader || st.LeadTransferee != 0 {
			return
		}
		to, best := uint64(0), uint64(0)
		for id, pr := range st.Progress {
			if id != n.Self() && !pr.IsLearner && pr.Match >= best {
				to, best = id, pr.Match
			}
		}
		if to != 0 {
			n.lg.Info().Str("stream", g.stream).Int32("shard", g.shard).Uint64("to", to).
				Msg("elected while catching up from a snapshot: handing leadership over")
			g.wake()
			g.rn.TransferLeader(to)
		}
	})
}
