package kafkawire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/mqstreams/mqstreams/log"
)

// producers hands out producer ids (InitProducerId) and deduplicates the batches of
// idempotent producers (Produce), as Kafka's producer state does, durably.
//
// Ids: reserved in blocks of idBlock, the end of the reserved range stored (an entry
// of kind producerIDsKind) before any id of the block is handed out, so ids are
// unique across restarts and crashes. The first run starts from the wall clock
// (ms << 20), so ids also differ from those of a data dir's earlier life.
//
// Per (producer id, stream, shard) the epoch, next sequence and the last dedupeWindow
// batches' sequences and offsets are kept. Each batch is stored (an entry of kind
// producerStateKind, named by the key and its slot in the ring) in the same Pebble
// batch as the append it describes (log.EntryOp.WithResult: the value is plain data
// plus the append's offset, so a cluster replicates it with the records and every
// replica stores it), so after a crash, or on a new leader, the state matches the log
// exactly and is loaded (at start; in a cluster also on a leader change, see
// cluster_producers.go). A batch whose first and next sequence match one of the last batches
// is a retry and gets the original append's answer; otherwise its first sequence must
// be the next expected one (OUT_OF_ORDER_SEQUENCE_NUMBER), its epoch not below the
// current one (INVALID_PRODUCER_EPOCH), and a newer epoch must start at sequence 0.
// A producer without state (new or expired) is accepted at any sequence, as Kafka
// 2.5+ does. State idle longer than the expiration (kafka.producer_id_expiration_ms,
// default 7 days, Kafka's transactional.id.expiration.ms) is dropped, in memory and
// in the store.
type producers struct {
	mu        sync.Mutex
	log       *log.Log // nil keeps the state in memory only (tests)
	lg        zerolog.Logger
	first     int64 // the first id of this run
	next      int64
	limit     int64 // ids below limit are reserved durably
	states    map[producerKey]*producerState
	ttl       time.Duration
	lastSweep time.Time
	now       func() time.Time
	// node is this node's id in a cluster, whose producer ids carry it
	// (cluster_producers.go); clustered is false alone.
	node      int64
	clustered bool
}

// dedupeWindow is how many batches per producer and partition are remembered: the
// clients' maximum in-flight requests with idempotence (Kafka's too).
const dedupeWindow = 5

// DefaultProducerExpiration is how long idle producer state is kept by default.
const DefaultProducerExpiration = 7 * 24 * time.Hour

// Entry kinds of the log (log/entries.go) the producer state is stored as.
const (
	producerStateKind = "kafka.producer"
	producerIDsKind   = "kafka.producer-ids"
	producerIDsName   = "next"
	idBlock           = 1000
)

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
	// term is the cluster leadership term the state was read at (cluster_producers.go);
	// fresh marks a state read from the store with nothing stored (a new producer);
	// legacy, a state loaded from the one-entry format of earlier versions, whose
	// entry the next write deletes.
	term   uint64
	fresh  bool
	legacy bool
}

// seqBatch is one accepted batch of an idempotent producer. done is closed once its
// append finished; res and err are set before.
type seqBatch struct {
	first, next int32
	done        chan struct{}
	res         log.AppendResult
	err         error
}

func newProducers(l *log.Log, ttl time.Duration, now func() time.Time, lg zerolog.Logger) (*producers, error) {
	if ttl <= 0 {
		ttl = DefaultProducerExpiration
	}
	t := now()
	seed := t.UnixMilli() << 20
	p := &producers{log: l, lg: lg, states: map[producerKey]*producerState{}, ttl: ttl, lastSweep: t, now: now}
	if l != nil {
		ids, err := l.Entries(producerIDsKind)
		if err != nil {
			return nil, fmt.Errorf("producer ids: %w", err)
		}
		for _, e := range ids {
			if e.Name == producerIDsName && len(e.Value) == 8 {
				if n := int64(binary.BigEndian.Uint64(e.Value)); n > seed {
					seed = n
				}
			}
		}
		if err := p.load(); err != nil {
			return nil, err
		}
	}
	p.first, p.next, p.limit = seed, seed, seed
	if l == nil {
		p.limit = math.MaxInt64
	}
	return p, nil
}

// load reads the stored producer state.
func (p *producers) load() error {
	es, err := p.log.Entries(producerStateKind)
	if err != nil {
		return fmt.Errorf("producer state: %w", err)
	}
	for key, st := range p.decodeStates(es) {
		p.states[key] = st
	}
	if len(es) > 0 {
		p.lg.Info().Int("producers", len(p.states)).Msg("idempotent producer state loaded")
	}
	return nil
}

// initID answers InitProducerId for an idempotent producer: the same id with the
// epoch bumped when the client re-initialises an id we know (v3+, KIP-360), otherwise
// a new id with epoch 0.
func (p *producers) initID(lastID int64, lastEpoch int16) (int64, int16, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if lastID >= 0 && lastEpoch >= 0 && lastEpoch < math.MaxInt16-1 && p.known(lastID) {
		return lastID, lastEpoch + 1, nil
	}
	if p.next >= p.limit {
		limit := p.next + idBlock
		if err := p.log.PutEntry(producerIDsKind, p.idsName(), binary.BigEndian.AppendUint64(nil, uint64(limit))); err != nil {
			return 0, 0, fmt.Errorf("reserve producer ids: %w", err)
		}
		p.limit = limit
	}
	id := p.next
	p.next++
	return p.external(id), 0, nil
}

func (p *producers) known(id int64) bool {
	if n, ok := p.internal(id); ok && n >= p.first && n < p.next {
		return true
	}
	for k := range p.states {
		if k.id == id {
			return true
		}
	}
	return false
}

// nextSequence is the sequence after a batch of n records from first: sequences wrap
// from MaxInt32 to 0, as Kafka's DefaultRecordBatch.incrementSequence does.
func nextSequence(first, n int32) int32 {
	return int32((int64(first) + int64(n)) & math.MaxInt32)
}

// begin checks a batch of n records from producer key.id at epoch and firstSeq. It
// returns either Kafka's error, or the earlier batch this one repeats (wait on its
// done channel for the original answer), or a new batch reserved in sequence, in
// which case start was called under the lock, with the entry op that stores the
// producer's state along with the append, so that appends of one producer are queued
// in sequence order; the caller must then call finish with the append's result.
func (p *producers) begin(key producerKey, epoch int16, firstSeq, n int32, start func(*seqBatch, []log.EntryOp)) (own, dup *seqBatch, code *kerr.Error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	p.sweep(now)
	next := nextSequence(firstSeq, n)
	st := p.states[key]
	switch {
	case st == nil || st.fresh:
		var term uint64
		if st != nil {
			term = st.term
		}
		st = &producerState{epoch: epoch, term: term}
		p.states[key] = st
	case epoch < st.epoch:
		return nil, nil, kerr.InvalidProducerEpoch
	case epoch > st.epoch:
		if firstSeq != 0 {
			return nil, nil, kerr.OutOfOrderSequenceNumber
		}
		*st = producerState{epoch: epoch, term: st.term, legacy: st.legacy}
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
	slot := st.at
	st.recent[slot] = b
	st.at = (st.at + 1) % dedupeWindow
	st.nextSeq = next
	st.used = now
	var ops []log.EntryOp
	if p.log != nil {
		ops = []log.EntryOp{{Kind: producerStateKind, Name: slotName(key, slot), WithResult: true,
			Value: encodeSlot(st.epoch, st.nextSeq, now.UnixMilli(), b.first, b.next)}}
		if st.legacy {
			ops = append(ops, log.EntryOp{Kind: producerStateKind, Name: producerStateName(key)})
			st.legacy = false
		}
	}
	start(b, ops)
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

// sweep drops producer state idle longer than the expiration, at most once a minute.
func (p *producers) sweep(now time.Time) {
	if now.Sub(p.lastSweep) < time.Minute {
		return
	}
	p.lastSweep = now
	var ops []log.EntryOp
	for k, st := range p.states {
		if now.Sub(st.used) > p.ttl {
			delete(p.states, k)
			ops = append(ops, log.EntryOp{Kind: producerStateKind, Name: producerStateName(k)})
			for i := range dedupeWindow {
				ops = append(ops, log.EntryOp{Kind: producerStateKind, Name: slotName(k, i)})
			}
		}
	}
	if len(ops) > 0 && p.log != nil {
		lg := p.lg
		p.log.PutEntriesAsync(ops, func(err error) {
			if err != nil {
				lg.Warn().Err(err).Msg("delete expired producer state")
			}
		})
	}
}

// producerStateName is the entry name of a key: id u64, stream u32, shard u32.
func producerStateName(k producerKey) string {
	b := make([]byte, 0, 16)
	b = binary.BigEndian.AppendUint64(b, uint64(k.id))
	b = binary.BigEndian.AppendUint32(b, k.stream)
	b = binary.BigEndian.AppendUint32(b, uint32(k.shard))
	return string(b)
}

// slotName is the entry name of one batch of a key's ring: the key's name and the
// slot.
func slotName(k producerKey, slot int) string {
	return producerStateName(k) + string([]byte{byte(slot)})
}

// A stored batch (one slot): epoch i16, the producer's next sequence after it i32,
// last use (unix ms) i64, the batch's first and next sequence i32, then its append's
// base offset and time (µs) i64 (log.EntryOp.WithResult appends them).
const slotPrefixLen, slotLen = 2 + 4 + 8 + 4 + 4, 2 + 4 + 8 + 4 + 4 + 8 + 8

func encodeSlot(epoch int16, nextSeq int32, usedMS int64, first, next int32) []byte {
	v := make([]byte, 0, slotPrefixLen)
	v = binary.BigEndian.AppendUint16(v, uint16(epoch))
	v = binary.BigEndian.AppendUint32(v, uint32(nextSeq))
	v = binary.BigEndian.AppendUint64(v, uint64(usedMS))
	v = binary.BigEndian.AppendUint32(v, uint32(first))
	return binary.BigEndian.AppendUint32(v, uint32(next))
}

// decodeStates rebuilds producer states from their stored entries: per key, the
// batch with the highest offset is the latest and gives the epoch and next sequence;
// the ring holds the stored batches of that epoch. A key with no slot entries but an
// entry of the earlier one-entry format is loaded from that.
type storedBatch struct {
	key   producerKey
	slot  int
	epoch int16
	next  int32 // the producer's next sequence after it
	used  int64
	b     *seqBatch
}

func (p *producers) decodeStates(es []log.Entry) map[producerKey]*producerState {
	type slotted struct {
		st   *producerState
		head int64
	}
	out := map[producerKey]*producerState{}
	slots := map[producerKey]*slotted{}
	var batches []storedBatch
	for _, e := range es {
		switch len(e.Name) {
		case 16:
			key, st, err := decodeProducerState(e.Name, e.Value)
			if err != nil {
				p.lg.Warn().Err(err).Msg("stored producer state ignored")
				continue
			}
			st.legacy = true
			if _, ok := out[key]; !ok {
				out[key] = st
			}
		case 17:
			key, _ := decodeProducerKey(e.Name[:16])
			slot, v := int(e.Name[16]), e.Value
			if slot >= dedupeWindow || len(v) != slotLen {
				p.lg.Warn().Int64("producer", key.id).Msg("stored producer batch ignored: bad value")
				continue
			}
			b := &seqBatch{
				first: int32(binary.BigEndian.Uint32(v[14:])),
				next:  int32(binary.BigEndian.Uint32(v[18:])),
				done:  make(chan struct{}),
				res: log.AppendResult{
					BaseOffset:  int64(binary.BigEndian.Uint64(v[22:])),
					TimestampUS: int64(binary.BigEndian.Uint64(v[30:])),
				},
			}
			close(b.done)
			batches = append(batches, storedBatch{key, slot, int16(binary.BigEndian.Uint16(v[0:])), int32(binary.BigEndian.Uint32(v[2:])), int64(binary.BigEndian.Uint64(v[6:])), b})
		default:
			p.lg.Warn().Msg("stored producer state ignored: bad name")
		}
	}
	// Heads first: the latest batch of each key.
	for _, x := range batches {
		s := slots[x.key]
		if s == nil || x.b.res.BaseOffset > s.head {
			st := &producerState{epoch: x.epoch, nextSeq: x.next, used: time.UnixMilli(x.used), at: (x.slot + 1) % dedupeWindow}
			slots[x.key] = &slotted{st: st, head: x.b.res.BaseOffset}
		}
	}
	for _, x := range batches {
		if s := slots[x.key]; x.epoch == s.st.epoch {
			s.st.recent[x.slot] = x.b
		}
	}
	for key, s := range slots {
		if old := out[key]; old != nil {
			// Both formats: the slots are newer; the old entry goes with the next write.
			s.st.legacy = true
		}
		out[key] = s.st
	}
	return out
}

// Stored state of earlier versions, one entry per key: epoch i16, next sequence i32,
// last use (unix ms) i64, batch count u8, then per batch (oldest first) first and next
// sequence i32, base offset and append time (µs) i64.
const stateHeaderLen, stateBatchLen = 2 + 4 + 8 + 1, 4 + 4 + 8 + 8

func decodeProducerKey(name string) (producerKey, error) {
	if len(name) != 16 {
		return producerKey{}, errors.New("producer state: bad name")
	}
	return producerKey{
		id:     int64(binary.BigEndian.Uint64([]byte(name[:8]))),
		stream: binary.BigEndian.Uint32([]byte(name[8:12])),
		shard:  int32(binary.BigEndian.Uint32([]byte(name[12:16]))),
	}, nil
}

func decodeProducerState(name string, v []byte) (producerKey, *producerState, error) {
	k, err := decodeProducerKey(name)
	if err != nil {
		return producerKey{}, nil, err
	}
	if len(v) < stateHeaderLen || int(v[14]) > dedupeWindow || len(v) != stateHeaderLen+int(v[14])*stateBatchLen {
		return k, nil, fmt.Errorf("producer state of %d: bad value", k.id)
	}
	st := &producerState{
		epoch:   int16(binary.BigEndian.Uint16(v[0:])),
		nextSeq: int32(binary.BigEndian.Uint32(v[2:])),
		used:    time.UnixMilli(int64(binary.BigEndian.Uint64(v[6:]))),
	}
	n := int(v[14])
	for i := 0; i < n; i++ {
		o := v[stateHeaderLen+i*stateBatchLen:]
		b := &seqBatch{
			first: int32(binary.BigEndian.Uint32(o[0:])),
			next:  int32(binary.BigEndian.Uint32(o[4:])),
			done:  make(chan struct{}),
			res: log.AppendResult{
				BaseOffset:  int64(binary.BigEndian.Uint64(o[8:])),
				TimestampUS: int64(binary.BigEndian.Uint64(o[16:])),
			},
		}
		close(b.done)
		st.recent[i] = b
	}
	st.at = n % dedupeWindow
	return k, st, nil
}
