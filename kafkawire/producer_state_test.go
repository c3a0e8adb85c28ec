package kafkawire

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/log"
)

// State stored by earlier versions (one entry per producer) still loads; the first
// batch after it moves the producer to one entry per batch and deletes the old entry;
// a reload then sees the new batch and the epoch and sequence it left.
func TestProducerStateLegacyEntryUpgraded(t *testing.T) {
	l, err := log.Open(log.Options{Dir: t.TempDir(), Logger: zerolog.Nop(), RetentionInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	st, err := l.CreateStream(log.StreamSpec{Name: "s", Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	key := producerKey{id: 7, stream: st.ID(), shard: 0}
	// epoch 2, next sequence 10, used now, one batch [8, 10) at offset 40.
	v := binary.BigEndian.AppendUint16(nil, 2)
	v = binary.BigEndian.AppendUint32(v, 10)
	v = binary.BigEndian.AppendUint64(v, uint64(time.Now().UnixMilli()))
	v = append(v, 1)
	v = binary.BigEndian.AppendUint32(v, 8)
	v = binary.BigEndian.AppendUint32(v, 10)
	v = binary.BigEndian.AppendUint64(v, 40)
	v = binary.BigEndian.AppendUint64(v, 123)
	if err := l.PutEntry(producerStateKind, producerStateName(key), v); err != nil {
		t.Fatal(err)
	}
	p, err := newProducers(l, 0, time.Now, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	// The old batch is recognised as a retry.
	if _, dup, code := p.begin(key, 2, 8, 2, func(*seqBatch, []log.EntryOp) { t.Fatal("retry appended") }); code != nil || dup == nil || dup.res.BaseOffset != 40 {
		t.Fatalf("retry of the stored batch: dup %+v code %v", dup, code)
	}
	done := make(chan struct{})
	own, _, code := p.begin(key, 2, 10, 3, func(b *seqBatch, ops []log.EntryOp) {
		st.AppendAsyncWith(0, []log.Record{{Value: []byte("a")}, {Value: []byte("b")}, {Value: []byte("c")}}, ops, func(res log.AppendResult, err error) {
			p.finish(key, b, res, err)
			close(done)
		})
	})
	if code != nil || own == nil {
		t.Fatalf("next batch: %v", code)
	}
	<-done
	es, err := l.Entries(producerStateKind)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || len(es[0].Name) != 17 {
		t.Fatalf("stored entries after the upgrade: %d (want one per-batch entry)", len(es))
	}
	p2, err := newProducers(l, 0, time.Now, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	s := p2.states[key]
	if s == nil || s.epoch != 2 || s.nextSeq != 13 {
		t.Fatalf("state after reload: %+v", s)
	}
	if _, dup, code := p2.begin(key, 2, 10, 3, func(*seqBatch, []log.EntryOp) { t.Fatal("retry appended") }); code != nil || dup == nil || dup.res.BaseOffset != own.res.BaseOffset {
		t.Fatalf("retry after reload: dup %+v code %v (want offset %d)", dup, code, own.res.BaseOffset)
	}
}
