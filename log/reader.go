package log

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// ShardReader is where `$stream` replay reads a shard's records. On a single node the
// Log itself implements it; in a cluster the cluster package does, reading a shard this
// node holds no replica of from a node that holds one. As with Writer, the consumer
// (mqtt) only sees this interface, never the cluster.
type ShardReader interface {
	// ReadShard resolves req's start point and returns the committed batches of the
	// shard from there, about req.MaxBytes of them (the first whole, whatever its size),
	// with the shard's log start and high watermark. At the high watermark it waits up
	// to req.Wait for records (a long poll) and returns none if none came. A start
	// below the log start, or past the high watermark, is ErrOffsetOutOfRange with the
	// result's LogStart and HighWatermark set; an unknown stream or shard is
	// ErrUnknownStream or ErrUnknownShard; a shard no replica can serve now is
	// ErrUnavailable (try again later).
	ReadShard(ctx context.Context, req ReadRequest) (ReadResult, error)
}

// ErrUnavailable: no replica of the shard could be read now (cluster: none reachable,
// or no leader and no follower answered); the caller tries again later.
var ErrUnavailable = errors.New("shard unavailable")

// ReadFrom says where a read starts.
type ReadFrom uint8

// Read start points.
const (
	FromOffset   ReadFrom = iota // ReadRequest.Offset
	FromTime                     // the first record appended at or after ReadRequest.TimeUS
	FromEarliest                 // the log start
	FromLatest                   // the high watermark: only records appended from now on
)

// ReadRequest is one read of a shard.
type ReadRequest struct {
	Stream string
	// StreamID, when not 0, must be the stream's id: a stream deleted and created again
	// under the same name is another stream (ErrUnknownStream).
	StreamID uint32
	Shard    int32
	From     ReadFrom
	Offset   int64 // FromOffset
	TimeUS   int64 // FromTime
	// MaxBytes bounds the batches returned; 0 resolves the start point only.
	MaxBytes int
	// Wait is how long a read at the high watermark waits for records.
	Wait time.Duration
}

// ReadResult is what a read found.
type ReadResult struct {
	// Offset is where the read started (the resolved start point): the first record
	// of Batches is at or after it, and the next read continues after them.
	Offset                  int64
	Batches                 []Batch
	LogStart, HighWatermark int64
}

// ReadShard implements ShardReader on a single node: Stream.ReadShard on the named
// stream.
func (l *Log) ReadShard(ctx context.Context, req ReadRequest) (ReadResult, error) {
	s := l.Stream(req.Stream)
	if s == nil || (req.StreamID != 0 && s.id != req.StreamID) {
		return ReadResult{}, fmt.Errorf("read %s: %w", req.Stream, ErrUnknownStream)
	}
	return s.ReadShard(ctx, req)
}

// ReadShard reads committed batches (read_committed: transactions below their end,
// aborted records left out) of one shard of the stream, as ShardReader says. It waits
// on the shard's append notification taken before each read, so an append between the
// read and the wait is not missed.
func (s *Stream) ReadShard(ctx context.Context, req ReadRequest) (ReadResult, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	var expired <-chan time.Time
	for {
		appended, err := s.Appended(req.Shard)
		if err != nil {
			return ReadResult{}, err
		}
		start, hwm, err := s.Offsets(req.Shard)
		if err != nil {
			return ReadResult{}, err
		}
		res := ReadResult{LogStart: start, HighWatermark: hwm}
		switch req.From {
		case FromEarliest:
			res.Offset = start
		case FromLatest:
			res.Offset = hwm
		case FromTime:
			if res.Offset, _, err = s.OffsetForTime(req.Shard, req.TimeUS); err != nil {
				return res, err
			}
		default:
			res.Offset = req.Offset
			if res.Offset < start || res.Offset > hwm {
				return res, fmt.Errorf("read %s/%d at %d (log %d..%d): %w", s.name, req.Shard, res.Offset, start, hwm, ErrOffsetOutOfRange)
			}
		}
		if req.MaxBytes <= 0 {
			return res, nil
		}
		res.Batches, err = s.ReadCommitted(req.Shard, res.Offset, req.MaxBytes)
		if err != nil {
			if errors.Is(err, ErrOffsetOutOfRange) {
				// Retention moved the start since Offsets: report the new bounds.
				res.LogStart, res.HighWatermark, _ = s.Offsets(req.Shard)
			}
			return res, err
		}
		if len(res.Batches) > 0 || req.Wait <= 0 {
			return res, nil
		}
		if expired == nil {
			timer = time.NewTimer(req.Wait)
			expired = timer.C
		}
		select {
		case <-appended:
		case <-expired:
			return res, nil
		case <-ctx.Done():
			return res, ctx.Err()
		}
		// The start point is found: later rounds read on from it.
		req.From, req.Offset = FromOffset, res.Offset
	}
}

// AppendBatches encodes batches as a cluster read answer carries them, stored form
// included (a merged batch's append-time table): uvarint count | count × (i64 base |
// i64 last | i64 time µs | uvarint length | data | uvarint length | time table).
func AppendBatches(dst []byte, bs []Batch) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(bs)))
	for _, b := range bs {
		dst = binary.BigEndian.AppendUint64(dst, uint64(b.BaseOffset))
		dst = binary.BigEndian.AppendUint64(dst, uint64(b.LastOffset))
		dst = binary.BigEndian.AppendUint64(dst, uint64(b.TimestampUS))
		dst = binary.AppendUvarint(dst, uint64(len(b.Data)))
		dst = append(dst, b.Data...)
		dst = binary.AppendUvarint(dst, uint64(len(b.segs)))
		dst = append(dst, b.segs...)
	}
	return dst
}

// DecodeBatches decodes what AppendBatches encoded; the batches point into b.
func DecodeBatches(b []byte) ([]Batch, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return nil, errCorruptBatch
	}
	b = b[k:]
	out := make([]Batch, 0, n)
	field := func() ([]byte, bool) {
		l, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < l {
			return nil, false
		}
		v := b[k : k+int(l)]
		b = b[k+int(l):]
		return v, true
	}
	for range n {
		if len(b) < 24 {
			return nil, errCorruptBatch
		}
		bt := Batch{BaseOffset: int64(binary.BigEndian.Uint64(b)), LastOffset: int64(binary.BigEndian.Uint64(b[8:])),
			TimestampUS: int64(binary.BigEndian.Uint64(b[16:]))}
		b = b[24:]
		var ok bool
		if bt.Data, ok = field(); !ok || len(bt.Data) < batchHeaderLen {
			return nil, errCorruptBatch
		}
		segs, ok := field()
		if !ok || len(segs)%segLen != 0 {
			return nil, errCorruptBatch
		}
		if len(segs) > 0 {
			bt.segs = segs
		}
		out = append(out, bt)
	}
	if len(b) != 0 {
		return nil, errCorruptBatch
	}
	return out, nil
}
