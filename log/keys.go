package log

import "encoding/binary"

// Key layout (big-endian so keys sort numerically; see docs/design.md):
//
//	b <sid u32> <shard u32> <base u64>                 -> value header + Kafka v2 record batch
//	t <sid u32> <shard u32> <ts_us u64> <base u64>      -> empty (time index, one per batch)
//	h <sid u32> <shard u32>                            -> log start offset u64
//	m <name>                                           -> stream definition (JSON)
//	n                                                  -> next stream id u32
//	g <len u16> <group> <sid u32> <shard u32>          -> committed offset (JSON)
//	e <len u8> <kind> <name>                           -> entry of another package (entries.go)
//	r <cluster key>                                    -> Raft state of the cluster package (raft.go)
//	o <sid u32> <shard u32> <pid u64>                  -> open transaction (txn.go)
//	a <sid u32> <shard u32> <marker u64> <pid u64>     -> aborted transaction (txn.go)
const (
	prefixBatch  = 'b'
	prefixTime   = 't'
	prefixStart  = 'h'
	prefixMeta   = 'm'
	prefixNextID = 'n'
	prefixGroup  = 'g'
	prefixEntry  = 'e'
	// c <sid u32> <shard u32> -> offset below which batches are merged u64 (coalesce.go)
	prefixCoalesce = 'c'
)

func shardPrefix(p byte, sid uint32, shard int32) []byte {
	k := make([]byte, 0, 25)
	k = append(k, p)
	k = binary.BigEndian.AppendUint32(k, sid)
	return binary.BigEndian.AppendUint32(k, uint32(shard))
}

func batchKey(sid uint32, shard int32, base int64) []byte {
	return binary.BigEndian.AppendUint64(shardPrefix(prefixBatch, sid, shard), uint64(base))
}

func batchKeyOffset(k []byte) int64 { return int64(binary.BigEndian.Uint64(k[9:17])) }

func timeKey(sid uint32, shard int32, tsUS, base int64) []byte {
	k := binary.BigEndian.AppendUint64(shardPrefix(prefixTime, sid, shard), uint64(tsUS))
	return binary.BigEndian.AppendUint64(k, uint64(base))
}

func timeKeyParts(k []byte) (tsUS, base int64) {
	return int64(binary.BigEndian.Uint64(k[9:17])), int64(binary.BigEndian.Uint64(k[17:25]))
}

func startKey(sid uint32, shard int32) []byte { return shardPrefix(prefixStart, sid, shard) }

func metaKey(name string) []byte { return append([]byte{prefixMeta}, name...) }

func streamPrefix(p byte, sid uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{p}, sid)
}

func groupPrefix(group string) []byte {
	k := make([]byte, 0, 3+len(group)+8)
	k = append(k, prefixGroup)
	k = binary.BigEndian.AppendUint16(k, uint16(len(group)))
	return append(k, group...)
}

func groupKey(group string, sid uint32, shard int32) []byte {
	k := binary.BigEndian.AppendUint32(groupPrefix(group), sid)
	return binary.BigEndian.AppendUint32(k, uint32(shard))
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}
