package mqtt

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqstreams/mqstreams/mapping"
	"github.com/mqstreams/mqstreams/mqtt/mqtttest"
)

// TestCatalogChangesUnderLoad: while publishers send QoS 1 messages, the stream they
// feed grows its shards again and again and a second stream on the same filter is
// created. Every acknowledged message is stored exactly once in the first stream; in the
// second, every message published after its creation returned is there, and none
// acknowledged before the creation began.
func TestCatalogChangesUnderLoad(t *testing.T) {
	e := newEnv(t, envOptions{noSync: true}, mapping.Definition{Name: "a", Filters: []string{"load/#"}, Shards: 1, Key: "topic"})
	cat := e.srv.replay.opts.Catalog
	const publishers, minPerPublisher = 4, 50

	type sent struct {
		payload    string
		start, end int64 // ns since t0
	}
	t0 := time.Now()
	since := func() int64 { return int64(time.Since(t0)) }
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		all       []sent
		published atomic.Int64
		stopped   atomic.Bool // the changes are done: publishers may stop
	)
	for p := 0; p < publishers; p++ {
		c := dialClient(t, e.addr, fmt.Sprintf("pub%d", p), nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := testCtx(t)
			// Publishing goes on until every change is done, so they all overlap it.
			for i := 0; i < minPerPublisher || !stopped.Load(); i++ {
				s := sent{payload: fmt.Sprintf("p%d-%d", p, i), start: since()}
				resp, err := c.Publish(ctx, mqtttest.NewPublish(fmt.Sprintf("load/p%d/%d", p, i%7), 1, []byte(s.payload)))
				if err != nil || resp.ReasonCode != 0 {
					t.Errorf("publish %s: %+v %v", s.payload, resp, err)
					return
				}
				s.end = since()
				mu.Lock()
				all = append(all, s)
				mu.Unlock()
				published.Add(1)
			}
		}()
	}

	deadline := time.Now().Add(20 * time.Second)
	for published.Load() < publishers && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // polls a condition, with a deadline
	}
	// Changes while the publishers run: grow shards, then create b half way through.
	var createStart, createEnd int64
	for shards := int32(2); shards <= 12; shards++ {
		if shards == 6 {
			createStart = since()
			if _, err := cat.Create(mapping.Definition{Name: "b", Filters: []string{"load/#"}, Shards: 3}, true); err != nil {
				t.Fatal(err)
			}
			createEnd = since()
		}
		if _, err := cat.Update("a", func(d mapping.Definition) (mapping.Definition, error) {
			d.Shards = shards
			return d, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	stopped.Store(true)
	wg.Wait()

	stored := func(stream string) map[string]int {
		st := e.log.Stream(stream)
		out := map[string]int{}
		for i := int32(0); i < st.Shards(); i++ {
			for _, r := range readAll(t, st, i) {
				out[string(r.Value)]++
			}
		}
		return out
	}
	a, b := stored("a"), stored("b")
	if len(all) < publishers*minPerPublisher {
		t.Fatalf("%d publishes acknowledged", len(all))
	}
	for _, s := range all {
		if a[s.payload] != 1 {
			t.Errorf("%s stored %d times in a", s.payload, a[s.payload])
		}
		switch {
		case s.start > createEnd && b[s.payload] != 1:
			t.Errorf("%s published after b was created, stored %d times in b", s.payload, b[s.payload])
		case s.end < createStart && b[s.payload] != 0:
			t.Errorf("%s acknowledged before b was created, stored in b", s.payload)
		case b[s.payload] > 1:
			t.Errorf("%s stored %d times in b", s.payload, b[s.payload])
		}
	}
	if len(a) != len(all) {
		t.Errorf("a holds %d distinct payloads, %d published", len(a), len(all))
	}
}
