package kafkawire

import (
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/mqstreams/mqstreams/log"
)

// openBroker starts a broker over a log in dir; stop closes both.
func openBroker(t *testing.T, dir string, expiration time.Duration) (s *Server, l *log.Log, stop func()) {
	t.Helper()
	l, err := log.Open(log.Options{Dir: dir, Logger: zerolog.Nop(), RetentionInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	s, err = New(Options{Config: Config{Addr: "127.0.0.1:0", ProducerExpiration: expiration}, Log: l, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			_ = s.Close()
			_ = l.Close()
		}
	}
	t.Cleanup(stop)
	return s, l, stop
}

// The idempotent producer state is stored with the appends and loaded at start: a
// batch retried into a restarted broker gets its original offsets, no duplicate is
// stored, sequence and epoch rules still hold, and producer ids are never reused.
func TestProduceIdempotenceAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	s, l, stop := openBroker(t, dir, 0)
	if _, err := l.CreateStream(log.StreamSpec{Name: "idem", Shards: 1}); err != nil {
		t.Fatal(err)
	}
	rc := dialRaw(t, s.Addr().String())
	pid, _ := initProducerID(t, rc, 4, -1, -1)
	seen := map[int64]bool{pid: true}
	for i := 0; i < 7; i++ { // more batches than the dedupe window
		b := rawBatch(t, codecNone, pid, 0, int32(i), valueRecs(string(rune('a'+i)))...)
		if p := produceRaw(t, rc, 9, "idem", 0, b); p.ErrorCode != 0 || p.BaseOffset != int64(i) {
			t.Fatalf("batch %d: %v base %d", i, kerr.ErrorForCode(p.ErrorCode), p.BaseOffset)
		}
	}
	stop()

	s, l, stop = openBroker(t, dir, 0)
	rc = dialRaw(t, s.Addr().String())
	steps := []struct {
		name  string
		epoch int16
		seq   int32
		val   string
		code  int16
		base  int64
	}{
		{"retry of the last batch", 0, 6, "g", 0, 6},
		{"retry of the oldest remembered batch", 0, 2, "c", 0, 2},
		{"batch older than the window", 0, 1, "b", kerr.OutOfOrderSequenceNumber.Code, -1},
		{"gap", 0, 9, "j", kerr.OutOfOrderSequenceNumber.Code, -1},
		{"next in sequence", 0, 7, "h", 0, 7},
	}
	for _, st := range steps {
		p := produceRaw(t, rc, 9, "idem", 0, rawBatch(t, codecNone, pid, st.epoch, st.seq, valueRecs(st.val)...))
		if p.ErrorCode != st.code || p.BaseOffset != st.base {
			t.Fatalf("%s: %v base %d, want %v base %d", st.name, kerr.ErrorForCode(p.ErrorCode), p.BaseOffset, kerr.ErrorForCode(st.code), st.base)
		}
	}
	// A re-initialised id from before the restart is bumped, not replaced; new ids differ.
	if id, ep := initProducerID(t, rc, 3, pid, 0); id != pid || ep != 1 {
		t.Fatalf("re-init of %d/0 after restart gave %d/%d", pid, id, ep)
	}
	p := produceRaw(t, rc, 9, "idem", 0, rawBatch(t, codecNone, pid, 0, 8, valueRecs("i")...))
	if p.ErrorCode != 0 || p.BaseOffset != 8 {
		t.Fatalf("old epoch before the new one wrote: %v base %d", kerr.ErrorForCode(p.ErrorCode), p.BaseOffset)
	}
	for i := 0; i < 3; i++ {
		id, _ := initProducerID(t, rc, 4, -1, -1)
		if seen[id] {
			t.Fatalf("producer id %d given twice", id)
		}
		seen[id] = true
	}
	if got := strings.Join(storedValues(t, l.Stream("idem"), 0), ","); got != "a,b,c,d,e,f,g,h,i" {
		t.Fatalf("stored %s, want each batch once", got)
	}
	stop()

	// After a restart with ids handed out, new ids still differ from all earlier ones.
	s, _, stop = openBroker(t, dir, 0)
	rc = dialRaw(t, s.Addr().String())
	if id, _ := initProducerID(t, rc, 4, -1, -1); seen[id] {
		t.Fatalf("producer id %d reused after restart", id)
	}
	stop()
}

// Idle producer state expires, in memory and in the store.
func TestProducerStateExpires(t *testing.T) {
	dir := t.TempDir()
	l, err := log.Open(log.Options{Dir: dir, Logger: zerolog.Nop(), RetentionInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	st, err := l.CreateStream(log.StreamSpec{Name: "s", Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	clock := func() time.Time { return now }
	p, err := newProducers(l, time.Hour, clock, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	append1 := func(pr *producers, id int64, seq int32) {
		done := make(chan struct{})
		key := producerKey{id: id, stream: st.ID(), shard: 0}
		own, _, code := pr.begin(key, 0, seq, 1, func(b *seqBatch, ops []log.EntryOp) {
			st.AppendAsyncWith(0, []log.Record{{Value: []byte("v")}}, ops, func(res log.AppendResult, err error) {
				pr.finish(key, b, res, err)
				close(done)
			})
		})
		if code != nil || own == nil {
			t.Fatalf("begin: %v", code)
		}
		<-done
	}
	append1(p, 1, 0)
	append1(p, 2, 0)
	now = now.Add(50 * time.Minute)
	append1(p, 2, 1)
	now = now.Add(20 * time.Minute) // producer 1 idle 70 min, producer 2 20 min
	append1(p, 3, 0)                // sweeps
	l.PutEntriesAsync(nil, func(error) {})
	waitFor(t, 10*time.Second, "expired state deleted", func() bool {
		es, _ := l.Entries(producerStateKind)
		keys := map[string]bool{}
		for _, e := range es {
			keys[e.Name[:16]] = true
		}
		return len(keys) == 2
	})
	p2, err := newProducers(l, time.Hour, clock, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p2.states[producerKey{id: 1, stream: st.ID()}]; ok {
		t.Fatal("expired producer state loaded again")
	}
	if s := p2.states[producerKey{id: 2, stream: st.ID()}]; s == nil || s.nextSeq != 2 {
		t.Fatalf("producer 2 state after reload: %+v", s)
	}
}
