package kafkawire

import (
	"math"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/mqstreams/mqstreams/log"
)

// producers hands out producer ids (InitProducerId) and deduplicates the batches of
// idempotent producers (Produce), as Kafka's producer state does, in memory only.
//
// Ids: a counter seeded at start from the wall clock (ms << 20), so that ids stay
// unique across restarts without being stored, unless a run hands out more than a
// million ids per millisecond it ran or the clock goes back. Dedupe state is lost on
// restart; a producer retrying into a restarted broker is then an unknown producer.
//
// Per (producer id, stream, shard) the last dedupeWindow batches' sequences and
// offsets are kept. A batch whose first and next sequence match one of them is a
// retry and gets the original append's answer; otherwise its first sequence must be
// the next expected one (OUT_OF_ORDER_SEQUENCE_NUMBER), its epoch not below the
// current one (INVALID_PRODUCER_EPOCH), and a newer epoch must start at sequence 0.
// A producer without state (new, expired or from before a restart) is accepted at any
// sequence, as Kafka 2.5+ does. State idle for producerStateTTL is dropped, far
// beyond any client's delivery timeout (2 minutes by default).
type producers struct {
	mu        sync.Mutex
	first     int64 // the first id of this run
	next      int64
	states    map[producerKey]*producerState
	lastSweep time.Time
	now       func() time.Time
}

// dedupeWindow is how many batches per producer and partition are remembered: the
// clients' maximum in-flight requests with idempotence (Kafka's too).
const dedupeWindow = 5

const producerStateTTL = time.Hour

type producerKey struct {
	id     int64
	stream uint32 // the stream's internal id: a recreated stream starts afresh
	shard  int32
}

type producerState struct {
	epoch   int16
	nextSeq int32
	recent  [dedupeWindow]*seqBatch // a ring; nil slots unused
	at      int                     // the slot the next batch takes
	used    time.Time
}

// seqBatch is one accepted batch of an idempotent producer. done is closed once its
// append finished; res and err are set before.
type seqBatch struct {
	first, next int32
	done        chan struct{}
	res         log.AppendResult
	err         error
}

func newProducers(now func() time.Time) *producers {
	t := now()
	seed := t.UnixMilli() << 20
	return &producers{first: seed, next: seed, states: map[producerKey]*producerState{}, lastSweep: t, now: now}
}

// initID answers InitProducerId for an idempotent producer: the same id with the
// epoch bumped when the client re-initialises an id of this run (v3+, KIP-360),
// otherwise a new id with epoch 0.
func (p *producers) initID(lastID int64, lastEpoch int16) (int64, int16) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if lastID >= p.first && lastID < p.next && lastEpoch >= 0 && lastEpoch < math.MaxInt16-1 {
		return lastID, lastEpoch + 1
	}
	id := p.next
	p.next++
	return id, 0
}

// nextSequence is the sequence after a batch of n records from first: sequences wrap
// from MaxInt32 to 0, as Kafka's DefaultRecordBatch.incrementSequence does.
func nextSequence(first, n int32) int32 {
	return int32((int64(first) + int64(n)) & math.MaxInt32)
}

// begin checks a batch of n records from producer key.id at epoch and firstSeq. It
// returns either Kafka's error, or the earlier batch this one repeats (wait on its
// done channel for the original answer), or a new batch reserved in sequence, in
// which case start was called under the lock so that appends of one producer are
// queued in sequence order; the caller must then call finish with the append's result.
func (p *producers) begin(key producerKey, epoch int16, firstSeq, n int32, start func(*seqBatch)) (own, dup *seqBatch, code *kerr.Error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	p.sweep(now)
	next := nextSequence(firstSeq, n)
	st := p.states[key]
	switch {
	case st == nil:
		st = &producerState{epoch: epoch}
		p.states[key] = st
	case epoch < st.epoch:
		return nil, nil, kerr.InvalidProducerEpoch
	case epoch > st.epoch:
		if firstSeq != 0 {
			return nil, nil, kerr.OutOfOrderSequenceNumber
		}
		*st = producerState{epoch: epoch}
	default:
		for _, b := range st.recent {
			if b != nil && b.first == firstSeq && b.next == next {
				st.used = now
				return nil, b, nil
			}
		}
		if firstSeq != st.nextSeq {
			return nil, nil, kerr.OutOfOrderSequenceNumber
		}
	}
	b := &seqBatch{first: firstSeq, next: next, done: make(chan struct{})}
	st.recent[st.at] = b
	st.at = (st.at + 1) % dedupeWindow
	st.nextSeq = next
	st.used = now
	start(b)
	return b, nil, nil
}

// finish records the outcome of a reserved batch's append. A failed append forgets
// the producer's state for the partition, so that its retry is accepted afresh
// rather than refused as out of order.
func (p *producers) finish(key producerKey, b *seqBatch, res log.AppendResult, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b.res, b.err = res, err
	if err != nil {
		if st := p.states[key]; st != nil {
			for _, r := range st.recent {
				if r == b {
					delete(p.states, key)
					break
				}
			}
		}
	}
	close(b.done)
}

// sweep drops producer state idle for producerStateTTL, at most once a minute.
func (p *producers) sweep(now time.Time) {
	if now.Sub(p.lastSweep) < time.Minute {
		return
	}
	p.lastSweep = now
	for k, st := range p.states {
		if now.Sub(st.used) > producerStateTTL {
			delete(p.states, k)
		}
	}
}
