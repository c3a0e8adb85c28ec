package kafkawire

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/log"
)

// Produce: v0-9.
//
// Each partition's records are one v2 record batch (v3+) or a message set of magic 0
// or 1 (v0-2, see produce_legacy.go), checked as Kafka's log validator does (CRC-32C, magic, length, record
// count; CORRUPT_MESSAGE or INVALID_RECORD), inflated (gzip, snappy raw or
// xerial-framed, lz4 frame, zstd from v7; at most the max request size), decoded, and
// appended to the shard the client chose with Stream.Append: the log re-encodes the
// records as one uncompressed LogAppendTime batch, so the answer carries the base
// offset, the append time in ms and (v5+) the log start. Keys, null keys and headers
// are kept; a null value is stored as an empty one (the log's Record has no null
// value). A last-value stream refuses a record without a key (INVALID_RECORD), as
// Kafka's compacted topics do. Control batches are INVALID_RECORD. A transactional
// batch must come from the producer's current epoch (INVALID_PRODUCER_EPOCH), in its
// ongoing transaction, for a partition added to it (INVALID_TXN_STATE); it is stored
// as a batch of its own carrying the producer (log/txn.go). Once durable, records are
// handed to Options.Deliver for MQTT subscribers (deliver.go), a transaction's only
// when it commits; a retried batch is not handed over again. An mqtt.topic header the
// producer may not publish to is renamed when stored (markForgedTopics).
//
// The partitions of a request are appended together (one group commit) and answered
// once durable, for acks -1 and 1 alike. acks=0 gets no response at all, as in Kafka;
// if any partition failed, the connection is closed instead, which is how Kafka tells
// an acks=0 producer to refresh its metadata. Other acks are INVALID_REQUIRED_ACKS.
// Idempotent producers' batches are deduplicated by sequence (see producers).
// TimeoutMillis bounds only the wait for room in a full append queue (REQUEST_TIMED_OUT):
// there is no replication to wait for. v1 adds the
// throttle time, v2 the append time, v3 record batches and the transactional id, v5
// the log start offset, v7 zstd, v8 per-record errors (none are given; a batch is
// refused whole) and an error message, v9 is flexible.

func init() { register(0, 0, 9, handleProduce) }

// produceAppend is one partition's append in flight.
type produceAppend struct {
	p      *kmsg.ProduceResponseTopicPartition
	st     *log.Stream
	shard  int32
	key    producerKey
	seq    *seqBatch // reserved batch of an idempotent producer, or nil
	dup    *seqBatch // the earlier batch this one repeats, or nil
	result chan appendOutcome
}

type appendOutcome struct {
	res log.AppendResult
	err error
}

func handleProduce(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ProduceRequest)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	resp.Topics = make([]kmsg.ProduceResponseTopic, len(req.Topics))
	var appends []*produceAppend
	// An append waits for room in a full append queue until the request's timeout,
	// then fails with REQUEST_TIMED_OUT.
	deadline := time.Now().Add(time.Duration(max(req.TimeoutMillis, 0)) * time.Millisecond)
	for i, rt := range req.Topics {
		t := &resp.Topics[i]
		t.Default()
		t.Topic = rt.Topic
		t.Partitions = make([]kmsg.ProduceResponseTopicPartition, len(rt.Partitions))
		st := s.stream(rt.Topic)
		for j, rp := range rt.Partitions {
			p := &t.Partitions[j]
			p.Default()
			p.Partition = rp.Partition
			var berr *batchError
			switch {
			case req.Acks != -1 && req.Acks != 0 && req.Acks != 1:
				berr = refuse(kerr.InvalidRequiredAcks, "acks must be -1, 0 or 1, not %d", req.Acks)
			case st == nil:
				berr = refuse(kerr.UnknownTopicOrPartition, "unknown topic %q", rt.Topic)
			case rp.Partition < 0 || rp.Partition >= st.Shards():
				berr = refuse(kerr.UnknownTopicOrPartition, "topic %q has no partition %d", rt.Topic, rp.Partition)
			default:
				var a *produceAppend
				a, berr = s.startProduce(c, req.Version, st, rp, p, deadline)
				if a != nil {
					appends = append(appends, a)
				}
			}
			if berr != nil {
				setProduceError(req.Version, p, berr)
				c.lg.Debug().Str("topic", rt.Topic).Int32("partition", rp.Partition).Str("client_id", c.clientID).
					Str("error", berr.Error()).Msg("kafka produce refused")
			}
		}
	}
	s.finishProduces(req.Version, appends)
	if req.Acks != 0 {
		return resp, nil
	}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if p.ErrorCode != 0 {
				return nil, fmt.Errorf("acks=0 produce to %s/%d failed: %w", t.Topic, p.Partition, kerr.ErrorForCode(p.ErrorCode))
			}
		}
	}
	return nil, nil // acks=0: no response
}

// startProduce decodes one partition's batch and queues its append (or, for a retried
// batch of an idempotent producer, notes the original append to answer with).
func (s *Server) startProduce(c *conn, version int16, st *log.Stream, rp kmsg.ProduceRequestTopicPartition, p *kmsg.ProduceResponseTopicPartition, deadline time.Time) (*produceAppend, *batchError) {
	b, berr := decodeProduced(rp.Records, version, int(s.cfg.MaxRequestBytes), c.charge)
	if berr != nil {
		return nil, berr
	}
	if st.Spec().LastValue {
		for i, r := range b.records {
			if r.Key == nil {
				return nil, refuse(kerr.InvalidRecord, "record %d has no key; last-value stream %q compacts by key", i, st.Name())
			}
		}
	}
	s.markForgedTopics(c, b.records)
	a := &produceAppend{p: p, st: st, shard: rp.Partition, result: make(chan appendOutcome, 1)}
	release := func() {}
	if b.idempotent() {
		rel, code := s.txns.checkProduce(b.producerID, b.producerEpoch, txnPart{Stream: st.Name(), Shard: rp.Partition}, b.transactional)
		if code != nil {
			return nil, refuse(code, "producer %d epoch %d: transactional %v", b.producerID, b.producerEpoch, b.transactional)
		}
		release = rel
	}
	var deliver func()
	if !b.transactional {
		deliver = s.deliverer(c, st, rp.Partition, b.records) // a transaction's at commit (26_end_txn.go)
	}
	start := func(ops []log.EntryOp) {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		done := func(res log.AppendResult, err error) {
			cancel()
			if err == nil && deliver != nil {
				deliver() // in commit order, once durable
			}
			release()
			a.result <- appendOutcome{res, err}
		}
		if b.transactional && s.txns.cl != nil {
			// Through the partition's Raft group, like other appends (txn_cluster.go).
			s.txns.cl.r.AppendTxn(ctx, st.Name(), rp.Partition, log.Txn{ProducerID: b.producerID, Epoch: b.producerEpoch}, b.records, ops, done)
			return
		}
		if b.transactional {
			// Alone: the local log, which owns the markers and the last stable offset.
			st.AppendTxnAsync(ctx, log.AppendWait, rp.Partition, log.Txn{ProducerID: b.producerID, Epoch: b.producerEpoch}, b.records, ops, done)
			return
		}
		s.writer.Append(ctx, log.AppendWait, st.Name(), rp.Partition, b.records, ops, done)
	}
	if !b.idempotent() {
		start(nil)
		return a, nil
	}
	a.key = producerKey{id: b.producerID, stream: st.ID(), shard: rp.Partition}
	if err := s.syncProducer(a.key, st.Name(), rp.Partition, b.transactional, deadline); err != nil {
		release()
		return nil, refuse(kerr.NotLeaderForPartition, "producer %d: %v", b.producerID, err)
	}
	own, dup, code := s.producers.begin(a.key, b.producerEpoch, b.firstSeq, int32(len(b.records)), func(_ *seqBatch, ops []log.EntryOp) { start(ops) })
	if code != nil || dup != nil {
		release() // no append of this request
	}
	if code != nil {
		return nil, refuse(code, "producer %d epoch %d sequence %d", b.producerID, b.producerEpoch, b.firstSeq)
	}
	a.seq, a.dup = own, dup
	return a, nil
}

// finishProduces waits for the appends and fills their partitions' answers. Own
// appends are settled first: they depend only on the log, whereas a retried batch may
// wait for an append of another connection, which settles its own appends first too,
// so no two requests ever wait on each other.
func (s *Server) finishProduces(version int16, appends []*produceAppend) {
	for _, a := range appends {
		if a.dup != nil {
			continue
		}
		out := <-a.result
		if a.seq != nil {
			s.producers.finish(a.key, a.seq, out.res, out.err)
		}
		s.answerProduce(version, a, out.res, out.err)
	}
	for _, a := range appends {
		if a.dup == nil {
			continue
		}
		<-a.dup.done
		s.answerProduce(version, a, a.dup.res, a.dup.err)
	}
}

func (s *Server) answerProduce(version int16, a *produceAppend, res log.AppendResult, err error) {
	if err != nil {
		code := kerr.KafkaStorageError
		switch {
		case errors.Is(err, log.ErrUnknownShard) || errors.Is(err, log.ErrUnknownStream):
			code = kerr.UnknownTopicOrPartition
		case errors.Is(err, log.ErrQueueFull):
			code = kerr.RequestTimedOut
		case isNotLeader(err):
			code = kerr.NotLeaderForPartition
		case isProducerFenced(err):
			code = kerr.InvalidProducerEpoch
		}
		s.lg.Warn().Err(err).Str("stream", a.st.Name()).Int32("shard", a.shard).Msg("kafka produce append failed")
		setProduceError(version, a.p, &batchError{err: code, msg: err.Error()})
		return
	}
	a.p.BaseOffset = res.BaseOffset
	a.p.LogAppendTime = res.TimestampUS / 1000
	if start, _, err := a.st.Offsets(a.shard); err == nil {
		a.p.LogStartOffset = start
	}
}

func setProduceError(version int16, p *kmsg.ProduceResponseTopicPartition, e *batchError) {
	p.ErrorCode = e.err.Code
	p.BaseOffset = -1
	if version >= 8 {
		msg := e.msg
		p.ErrorMessage = &msg
	}
}

// writerOf is where o's produces are appended: o.Writer, or the local log.
func writerOf(o Options) log.Writer {
	if o.Writer != nil {
		return o.Writer
	}
	return o.Log
}
