package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/mqstreams/mqstreams/log"
)

// `$stream` replay works on every node (log.ShardReader): a node reads a shard from its
// own replica when it holds one (a replica's log holds only committed entries, so a
// follower never shows a record beyond the commit index), and otherwise asks a node
// that holds one with methodStreamRead over the node link, the leader first, then the
// other replicas. A read at the end of the shard waits there for records (a long poll)
// up to remotePollMax per call, so a live tail costs one call per batch of new records
// or per poll period, not a busy loop.
//
// Request: u32 stream id | u16 length | stream | i32 shard | u8 start (log.ReadFrom) |
// i64 offset | i64 time µs | u32 max bytes | u32 wait ms.
// Answer: u8 code, then for readOK and readOutOfRange i64 offset | i64 log start |
// i64 high watermark (and for readOK the batches, log.AppendBatches); for
// readNotReplica u64 the leader this node knows; for readFailed a message.
const methodStreamRead byte = 30

const (
	readOK byte = iota
	readUnknownStream
	readUnknownShard
	readOutOfRange
	readNotReplica
	readFailed
)

const (
	// remoteReadMaxBytes bounds the batches of one answer (the first batch goes whole,
	// and an entry, so a batch, is at most maxEntryBytes).
	remoteReadMaxBytes = 1 << 20
	// remotePollMax is the longest one call waits at the shard's end; the caller asks
	// again while its own wait lasts.
	remotePollMax = 5 * time.Second
	// localPollMax bounds a wait on this node's own replica, so that a replica moved
	// away (move-replica) is noticed and the read goes to the new replicas.
	localPollMax = 2 * time.Second
	// readCallSlack is how much longer than its long poll a call may take.
	readCallSlack = 5 * time.Second
	// readRetryFor is how long a read keeps trying other replicas and new leaders
	// (a failover takes about a second) before it reports log.ErrUnavailable.
	readRetryFor = 5 * time.Second
)

// errNotReplica: the node asked holds no replica of the shard (moved away meanwhile).
var errNotReplica = errors.New("node holds no replica of the shard")

// ReadShard implements log.ShardReader: from this node's replica of the shard when it
// has one, else from the shard's leader or, when that cannot answer, another replica;
// retried across replicas and new leaders for up to readRetryFor (or req.Wait, when
// longer) before it gives up with log.ErrUnavailable.
func (n *Node) ReadShard(ctx context.Context, req log.ReadRequest) (log.ReadResult, error) {
	start := time.Now()
	deadline := start.Add(req.Wait)
	retryUntil := start.Add(max(req.Wait, readRetryFor))
	backoff := 20 * time.Millisecond
	for {
		id, sp, err := n.shardOf(req.Stream, req.Shard)
		if err != nil {
			return log.ReadResult{}, err
		}
		if req.StreamID != 0 && id != req.StreamID {
			return log.ReadResult{}, fmt.Errorf("read %s: %w", req.Stream, log.ErrUnknownStream)
		}
		r := req
		r.StreamID = id
		wait := max(time.Until(deadline), 0)
		var res log.ReadResult
		if g := n.group(sp.Group); g != nil {
			r.Wait = min(wait, localPollMax)
			res, err = n.readLocal(ctx, g, r)
		} else {
			r.Wait = min(wait, remotePollMax)
			res, err = n.readRemote(ctx, sp, r)
		}
		switch {
		case err == nil:
			if len(res.Batches) > 0 || req.MaxBytes <= 0 || time.Until(deadline) <= 0 {
				return res, nil
			}
			// Nothing yet: wait on from the start point found.
			req.From, req.Offset = log.FromOffset, res.Offset
			continue
		case ctx.Err() != nil:
			return res, ctx.Err()
		case errors.Is(err, log.ErrOffsetOutOfRange):
			return res, err
		case errors.Is(err, ErrClosed):
			return res, err
		}
		if time.Now().After(retryUntil) {
			return res, fmt.Errorf("read %s/%d: %w: %v", req.Stream, req.Shard, log.ErrUnavailable, err)
		}
		n.lg.Debug().Err(err).Str("stream", req.Stream).Int32("shard", req.Shard).Msg("stream read retried")
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-n.stop:
			return res, ErrClosed
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// shardOf is a stream's cluster-wide id and one shard's placement from the applied
// catalog.
func (n *Node) shardOf(stream string, shard int32) (uint32, shardPlacement, error) {
	n.mu.RLock()
	cat := n.cat
	n.mu.RUnlock()
	sp := cat.Streams[stream]
	if sp == nil {
		return 0, shardPlacement{}, fmt.Errorf("read %s: %w", stream, log.ErrUnknownStream)
	}
	if shard < 0 || int(shard) >= len(sp.Shards) {
		return 0, shardPlacement{}, fmt.Errorf("read %s/%d: %w", stream, shard, log.ErrUnknownShard)
	}
	return sp.ID, sp.Shards[shard], nil
}

// readLocal reads this node's replica g. The leader resolves "latest" under its lease
// (HighWatermark), so a subscriber starting there misses nothing acknowledged before.
// A replica behind the offset asked (a follower read after the leader served more)
// waits for its log to catch up instead of calling the offset out of range.
func (n *Node) readLocal(ctx context.Context, g *group, req log.ReadRequest) (log.ReadResult, error) {
	if req.From == log.FromLatest && g.leaderID() == n.Self() {
		if hwm, err := n.HighWatermark(ctx, req.Stream, req.Shard); err == nil {
			req.From, req.Offset = log.FromOffset, hwm
		}
	}
	res, err := n.l.ReadShard(ctx, req)
	if err == nil || !errors.Is(err, log.ErrOffsetOutOfRange) || res.Offset <= res.HighWatermark {
		return res, err
	}
	res.Batches = nil
	st := n.l.Stream(req.Stream)
	if st == nil || req.Wait <= 0 {
		return res, nil
	}
	ch, aerr := st.Appended(req.Shard)
	if aerr != nil {
		return res, aerr
	}
	t := time.NewTimer(req.Wait)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-ctx.Done():
		return res, ctx.Err()
	}
	return res, nil
}

// readRemote asks the shard's leader, then each other replica, until one answers.
func (n *Node) readRemote(ctx context.Context, sp shardPlacement, req log.ReadRequest) (log.ReadResult, error) {
	var order []uint64
	if lead := n.leaderOf(sp.Group); lead != 0 && lead != n.Self() && contains(sp.Replicas, lead) {
		order = append(order, lead)
	}
	for _, id := range sp.Replicas {
		if id != n.Self() && !contains(order, id) {
			order = append(order, id)
		}
	}
	if len(order) == 0 {
		return log.ReadResult{}, ErrNoLeader
	}
	body := encodeStreamRead(req)
	var lastErr error
	for _, to := range order {
		res, err := n.callRead(ctx, to, body, req.Wait)
		if err == nil || errors.Is(err, log.ErrOffsetOutOfRange) || ctx.Err() != nil {
			return res, err
		}
		lastErr = fmt.Errorf("node %d: %w", to, err)
	}
	return log.ReadResult{}, lastErr
}

// callRead makes one methodStreamRead call and waits for its answer or ctx.
func (n *Node) callRead(ctx context.Context, to uint64, body []byte, wait time.Duration) (log.ReadResult, error) {
	type answer struct {
		b   []byte
		err error
	}
	ch := make(chan answer, 1)
	n.tr.call(to, methodStreamRead, body, wait+readCallSlack, func(b []byte, err error) { ch <- answer{b, err} })
	var a answer
	select {
	case a = <-ch:
	case <-ctx.Done():
		return log.ReadResult{}, ctx.Err() // the answer, when it comes, is dropped
	}
	if a.err != nil {
		return log.ReadResult{}, a.err
	}
	return decodeStreamReadAnswer(a.b)
}

func encodeStreamRead(req log.ReadRequest) []byte {
	b := make([]byte, 0, 4+2+len(req.Stream)+4+1+16+8)
	b = binary.BigEndian.AppendUint32(b, req.StreamID)
	b = binary.BigEndian.AppendUint16(b, uint16(len(req.Stream)))
	b = append(b, req.Stream...)
	b = binary.BigEndian.AppendUint32(b, uint32(req.Shard))
	b = append(b, byte(req.From))
	b = binary.BigEndian.AppendUint64(b, uint64(req.Offset))
	b = binary.BigEndian.AppendUint64(b, uint64(req.TimeUS))
	b = binary.BigEndian.AppendUint32(b, uint32(max(req.MaxBytes, 0)))
	return binary.BigEndian.AppendUint32(b, uint32(req.Wait/time.Millisecond))
}

func decodeStreamRead(b []byte) (log.ReadRequest, error) {
	var req log.ReadRequest
	if len(b) < 6 {
		return req, errBadEntry
	}
	req.StreamID = binary.BigEndian.Uint32(b)
	sl := int(binary.BigEndian.Uint16(b[4:]))
	b = b[6:]
	if len(b) != sl+4+1+16+8 {
		return req, errBadEntry
	}
	req.Stream = string(b[:sl])
	b = b[sl:]
	req.Shard = int32(binary.BigEndian.Uint32(b))
	req.From = log.ReadFrom(b[4])
	req.Offset = int64(binary.BigEndian.Uint64(b[5:]))
	req.TimeUS = int64(binary.BigEndian.Uint64(b[13:]))
	req.MaxBytes = int(binary.BigEndian.Uint32(b[21:]))
	req.Wait = time.Duration(binary.BigEndian.Uint32(b[25:])) * time.Millisecond
	if req.From > log.FromLatest {
		return req, errBadEntry
	}
	return req, nil
}

func appendReadBounds(b []byte, res log.ReadResult) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(res.Offset))
	b = binary.BigEndian.AppendUint64(b, uint64(res.LogStart))
	return binary.BigEndian.AppendUint64(b, uint64(res.HighWatermark))
}

func decodeStreamReadAnswer(b []byte) (log.ReadResult, error) {
	var res log.ReadResult
	if len(b) == 0 {
		return res, errBadEntry
	}
	code, b := b[0], b[1:]
	switch code {
	case readOK, readOutOfRange:
		if len(b) < 24 {
			return res, errBadEntry
		}
		res.Offset = int64(binary.BigEndian.Uint64(b))
		res.LogStart = int64(binary.BigEndian.Uint64(b[8:]))
		res.HighWatermark = int64(binary.BigEndian.Uint64(b[16:]))
		if code == readOutOfRange {
			return res, fmt.Errorf("offset %d (log %d..%d): %w", res.Offset, res.LogStart, res.HighWatermark, log.ErrOffsetOutOfRange)
		}
		var err error
		if res.Batches, err = log.DecodeBatches(b[24:]); err != nil {
			return log.ReadResult{}, err
		}
		return res, nil
	case readUnknownStream:
		// Retried: the node asked may not have applied the stream's creation yet;
		// this node's own catalog decides when the stream is gone.
		return res, errors.New("stream unknown on the node asked")
	case readUnknownShard:
		return res, errors.New("shard unknown on the node asked")
	case readNotReplica:
		return res, errNotReplica
	default:
		return res, &remoteError{msg: string(b)}
	}
}

// onStreamRead answers a methodStreamRead call from this node's replica, off the
// link's read goroutine (the read may wait for records).
func (n *Node) onStreamRead(_ uint64, body []byte, reply func([]byte, error)) {
	req, err := decodeStreamRead(body)
	if err != nil {
		reply(nil, err)
		return
	}
	id, sp, err := n.shardOf(req.Stream, req.Shard)
	switch {
	case errors.Is(err, log.ErrUnknownShard):
		reply([]byte{readUnknownShard}, nil)
		return
	case err != nil || id != req.StreamID:
		reply([]byte{readUnknownStream}, nil)
		return
	}
	g := n.group(sp.Group)
	if g == nil {
		reply(binary.BigEndian.AppendUint64([]byte{readNotReplica}, n.leaderOf(sp.Group)), nil)
		return
	}
	n.readsServed.Add(1)
	req.MaxBytes = min(req.MaxBytes, remoteReadMaxBytes)
	req.Wait = min(req.Wait, remotePollMax)
	if !n.startRead() {
		reply(append([]byte{readFailed}, ErrClosed.Error()...), nil)
		return
	}
	go func() {
		defer n.readers.Done()
		ctx, cancel := context.WithTimeout(n.ctx, req.Wait+readCallSlack)
		defer cancel()
		res, err := n.readLocal(ctx, g, req)
		switch {
		case err == nil:
			out := appendReadBounds([]byte{readOK}, res)
			reply(log.AppendBatches(out, res.Batches), nil)
		case errors.Is(err, log.ErrOffsetOutOfRange):
			reply(appendReadBounds([]byte{readOutOfRange}, res), nil)
		case errors.Is(err, log.ErrUnknownStream):
			reply([]byte{readUnknownStream}, nil)
		case errors.Is(err, log.ErrUnknownShard):
			reply([]byte{readUnknownShard}, nil)
		default:
			reply(append([]byte{readFailed}, err.Error()...), nil)
		}
	}()
}

// startRead registers a read served to another node; false once the node closes
// (Close waits for those under way before the log can close under them).
func (n *Node) startRead() bool {
	n.readMu.Lock()
	defer n.readMu.Unlock()
	if n.closed.Load() {
		return false
	}
	n.readers.Add(1)
	return true
}
