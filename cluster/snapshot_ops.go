package cluster

import (
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/mqstreams/mqstreams/log"
)

// The entry ops replicated with a shard's records (log.EntryOp.WithResult: an
// idempotent producer's state) are stored under their owner's kind and name, which
// this package does not interpret. So that a snapshot can carry them, every replica
// also stores, in the same Pebble batch, an index entry of kind resultOpsKind named
// group id (8 bytes) | kind | 0 | name, with an empty value. A replica installing a
// snapshot asks the leader for them with methodShardOps: request u64 group | i64 to;
// answer i64 the leader's high watermark | uvarint count ×
// (uvarint len | kind | uvarint len | name | uvarint len | value), the values as
// stored (prefix | base offset | time), only those whose offset is below to (later
// ones reach the replica with the entries it applies after the snapshot).
const (
	resultOpsKind       = "raft.resultops"
	methodShardOps byte = 5
)

func resultOpName(gid uint64, kind, name string) string {
	return groupName(gid) + kind + "\x00" + name
}

// resultOpIndex is the index op for a replicated op of group gid.
func resultOpIndex(gid uint64, kind, name string) log.EntryOp {
	return log.EntryOp{Kind: resultOpsKind, Name: resultOpName(gid, kind, name), Value: []byte{}}
}

func (n *Node) onShardOps(_ uint64, body []byte, reply func([]byte, error)) {
	if len(body) != 16 {
		reply(nil, errBadEntry)
		return
	}
	gid, to := binary.BigEndian.Uint64(body), int64(binary.BigEndian.Uint64(body[8:]))
	g := n.group(gid)
	if g == nil {
		reply(nil, fmt.Errorf("shard ops: no replica of group %d here", gid))
		return
	}
	go func() {
		out, err := n.shardOps(g, to)
		reply(out, err)
	}()
}

// shardOps reads the high watermark first: the ops of the records below it were
// written in the same batches, so they are all in what is listed after.
func (n *Node) shardOps(g *group, to int64) ([]byte, error) {
	st := n.l.Stream(g.stream)
	if st == nil {
		return nil, fmt.Errorf("shard ops %s: %w", g.stream, log.ErrUnknownStream)
	}
	_, hwm, err := st.Offsets(g.shard)
	if err != nil {
		return nil, fmt.Errorf("shard ops: %w", err)
	}
	idx, err := n.l.EntriesPrefix(resultOpsKind, groupName(g.id))
	if err != nil {
		return nil, fmt.Errorf("shard ops: %w", err)
	}
	out := binary.BigEndian.AppendUint64(nil, uint64(hwm))
	var cnt uint64
	var body []byte
	for _, e := range idx {
		kind, name, ok := strings.Cut(e.Name[8:], "\x00")
		if !ok {
			continue
		}
		es, err := n.l.EntriesPrefix(kind, name)
		if err != nil {
			return nil, fmt.Errorf("shard ops: %w", err)
		}
		for _, op := range es {
			// A missing op (its owner deleted it) is left out.
			if op.Name != name || len(op.Value) < 16 {
				continue
			}
			if off := int64(binary.BigEndian.Uint64(op.Value[len(op.Value)-16:])); off >= to {
				continue
			}
			body = appendBytes(body, []byte(kind))
			body = appendBytes(body, []byte(name))
			body = appendBytes(body, op.Value)
			cnt++
		}
	}
	out = binary.AppendUvarint(out, cnt)
	return append(out, body...), nil
}

// opsFromLeader fetches the replicated ops of the records below to from the leader,
// once it holds all those records; they come as plain ops (values as stored) with
// their index entries.
func (n *Node) opsFromLeader(g *group, to int64) ([]log.EntryOp, error) {
	lead := g.leaderID()
	if lead == 0 || lead == n.Self() {
		return nil, ErrNoLeader
	}
	req := binary.BigEndian.AppendUint64(nil, g.id)
	req = binary.BigEndian.AppendUint64(req, uint64(to))
	type res struct {
		b   []byte
		err error
	}
	ch := make(chan res, 1)
	n.tr.call(lead, methodShardOps, req, 10*time.Second, func(b []byte, err error) { ch <- res{b, err} })
	o := <-ch
	if o.err != nil {
		return nil, o.err
	}
	b := o.b
	if len(b) < 8 {
		return nil, errBadEntry
	}
	if hwm := int64(binary.BigEndian.Uint64(b)); hwm < to {
		return nil, fmt.Errorf("leader %d holds %d records, the snapshot %d", lead, hwm, to)
	}
	cnt, k := binary.Uvarint(b[8:])
	if k <= 0 || cnt > uint64(len(b)) {
		return nil, errBadEntry
	}
	b = b[8+k:]
	ops := make([]log.EntryOp, 0, 2*cnt)
	for range cnt {
		var kind, name, val []byte
		var err error
		if kind, b, err = readBytes(b); err != nil {
			return nil, err
		}
		if name, b, err = readBytes(b); err != nil {
			return nil, err
		}
		if val, b, err = readBytes(b); err != nil {
			return nil, err
		}
		ops = append(ops, log.EntryOp{Kind: string(kind), Name: string(name), Value: val},
			resultOpIndex(g.id, string(kind), string(name)))
	}
	return ops, nil
}
