package mapping

import (
	"fmt"
	"math/rand"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
)

func mustSet(t testing.TB, r *Router, defs ...Definition) {
	t.Helper()
	if err := r.Set(defs); err != nil {
		t.Fatal(err)
	}
}

func routed(ts []Target) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Stream)
	}
	slices.Sort(out)
	return out
}

func TestRouterMatching(t *testing.T) {
	r := NewRouter()
	mustSet(t, r,
		Definition{Name: "all", Filters: []string{"#"}},
		Definition{Name: "sys", Filters: []string{"$SYS/#"}},
		Definition{Name: "plant", Filters: []string{"plant/+/telemetry/#"}},
		Definition{Name: "exact", Filters: []string{"plant/1/telemetry"}},
		Definition{Name: "multi", Filters: []string{"plant/#", "plant/+/telemetry/#", "+/1/#"}},
		Definition{Name: "plus", Filters: []string{"+"}},
		Definition{Name: "empty-level", Filters: []string{"a//b"}},
	)
	tests := []struct {
		topic string
		want  []string
	}{
		{"plant/1/telemetry", []string{"all", "exact", "multi", "plant"}},
		{"plant/2/telemetry/x/y", []string{"all", "multi", "plant"}},
		{"plant", []string{"all", "multi", "plus"}},
		{"other", []string{"all", "plus"}},
		{"a//b", []string{"all", "empty-level"}},
		{"$SYS/broker/load", []string{"sys"}},
		{"$SYS", []string{"sys"}},
		{"$other/x", nil},
	}
	for _, tt := range tests {
		got := routed(r.Route(&Message{Topic: tt.topic, ClientID: "c"}, nil))
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Route(%q) = %v, want %v", tt.topic, got, tt.want)
		}
		if n := r.Streams(tt.topic); n != len(tt.want) {
			t.Errorf("Streams(%q) = %d, want %d", tt.topic, n, len(tt.want))
		}
	}
}

func TestRouterKeysAndShards(t *testing.T) {
	r := NewRouter()
	mustSet(t, r,
		Definition{Name: "by-client", Filters: []string{"d/#"}, Shards: 8},
		Definition{Name: "by-level", Filters: []string{"d/#"}, Shards: 8, Key: "topic-level:2"},
		Definition{Name: "by-user", Filters: []string{"d/#"}, Shards: 8, Key: "username"},
		Definition{Name: "rr", Filters: []string{"d/#"}, Shards: 3, Key: "none"},
		Definition{Name: "by-json", Filters: []string{"d/#"}, Shards: 5, Key: "json:id"},
	)
	m := &Message{Topic: "d/dev7/t", Payload: []byte("plain"), ClientID: "client-1", ConnSeq: 7, QoS: 1}
	got := map[string]Target{}
	for _, tg := range r.Route(m, nil) {
		got[tg.Stream] = tg
	}
	check := func(stream, key string, shards int32) {
		t.Helper()
		tg := got[stream]
		if string(tg.Record.Key) != key || tg.Shard != Shard([]byte(key), shards) {
			t.Errorf("%s: key %q shard %d, want key %q shard %d", stream, tg.Record.Key, tg.Shard, key, Shard([]byte(key), shards))
		}
		if string(tg.Record.Value) != "plain" || tg.Record.Headers[0].Key != "mqtt.topic" {
			t.Errorf("%s: record %+v", stream, tg.Record)
		}
	}
	check("by-client", "client-1", 8)
	check("by-level", "dev7", 8)
	check("by-user", "client-1", 8) // anonymous: falls back to the client id
	check("by-json", "client-1", 5) // payload is not JSON: falls back
	if tg := got["rr"]; tg.Record.Key != nil || tg.Shard != 7%3 {
		t.Errorf("none: key %q shard %d, want null key shard 1", tg.Record.Key, tg.Shard)
	}
	// Round robin per connection: consecutive publishes cycle through the shards.
	var shards []int32
	for seq := uint64(0); seq < 6; seq++ {
		m.ConnSeq = seq
		for _, tg := range r.Route(m, nil) {
			if tg.Stream == "rr" {
				shards = append(shards, tg.Shard)
			}
		}
	}
	if !reflect.DeepEqual(shards, []int32{0, 1, 2, 0, 1, 2}) {
		t.Errorf("round robin shards = %v", shards)
	}
}

func TestRouterAppendsToDst(t *testing.T) {
	r := NewRouter()
	mustSet(t, r, Definition{Name: "a", Filters: []string{"x"}})
	dst := []Target{{Stream: "earlier"}}
	dst = r.Route(&Message{Topic: "x"}, dst)
	if len(dst) != 2 || dst[0].Stream != "earlier" || dst[1].Stream != "a" {
		t.Fatalf("dst = %+v", dst)
	}
	if got := r.Route(&Message{Topic: "y"}, dst[:0]); len(got) != 0 {
		t.Fatalf("non-matching topic routed to %+v", got)
	}
}

func TestRouterPutRemove(t *testing.T) {
	r := NewRouter()
	if err := r.Put(Definition{Name: "b", Filters: []string{"x/#"}}); err != nil {
		t.Fatal(err)
	}
	if err := r.Put(Definition{Name: "a", Filters: []string{"x/+", "y"}}); err != nil {
		t.Fatal(err)
	}
	if got := routed(r.Route(&Message{Topic: "x/1"}, nil)); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("got %v", got)
	}
	snap := r.cur.Load()
	// Replacing a stream drops its old filters.
	if err := r.Put(Definition{Name: "a", Filters: []string{"z"}, Shards: 2}); err != nil {
		t.Fatal(err)
	}
	if got := routed(r.Route(&Message{Topic: "x/1"}, nil)); !reflect.DeepEqual(got, []string{"b"}) {
		t.Fatalf("after replace got %v", got)
	}
	if got := routed(r.Route(&Message{Topic: "y"}, nil)); got != nil {
		t.Fatalf("old filter y still routes to %v", got)
	}
	// A published snapshot never changes: routes in flight keep a consistent view.
	var buf [4]*route
	if hits := snap.root.match("x/1", false, buf[:0]); len(hits) != 2 {
		t.Fatalf("old snapshot changed: %d hits", len(hits))
	}
	defs := r.Definitions()
	if len(defs) != 2 || defs[0].Name != "a" || defs[1].Name != "b" || defs[0].Shards != 2 || defs[1].Key != "clientid" {
		t.Fatalf("definitions = %+v", defs)
	}
	defs[0].Filters[0] = "mutated"
	if d, _ := r.Definition("a"); d.Filters[0] != "z" {
		t.Fatal("caller mutated the router's definition")
	}
	r.Remove("a")
	r.Remove("nope")
	if _, ok := r.Definition("a"); ok {
		t.Fatal("a still defined")
	}
	r.Remove("b")
	if got := r.Route(&Message{Topic: "x/1"}, nil); len(got) != 0 || len(r.Definitions()) != 0 {
		t.Fatalf("empty router routes %v", got)
	}
	if err := r.Put(Definition{Name: "c", Filters: []string{"#"}}); err != nil {
		t.Fatal(err)
	}
	if got := routed(r.Route(&Message{Topic: "q"}, nil)); !reflect.DeepEqual(got, []string{"c"}) {
		t.Fatalf("after emptying and refilling got %v", got)
	}
}

func TestRouterPrunesEmptyNodes(t *testing.T) {
	r := NewRouter()
	for i := 0; i < 50; i++ {
		if err := r.Put(Definition{Name: fmt.Sprint("s", i), Filters: []string{fmt.Sprintf("a/%d/+/#", i), "b/+"}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 50; i++ {
		r.Remove(fmt.Sprint("s", i))
	}
	if root := r.cur.Load().root; !root.empty() {
		t.Fatalf("trie not pruned: %+v", root)
	}
}

func TestRouterErrors(t *testing.T) {
	r := NewRouter()
	if err := r.Put(Definition{Name: "bad", Filters: []string{"a/#/b"}}); err == nil || !strings.Contains(err.Error(), `stream "bad": filter: "a/#/b"`) {
		t.Fatalf("Put bad filter: %v", err)
	}
	mustSet(t, r, Definition{Name: "keep", Filters: []string{"k"}})
	err := r.Set([]Definition{{Name: "x", Filters: []string{"a"}}, {Name: "x", Filters: []string{"b"}}})
	if err == nil || !strings.Contains(err.Error(), `stream "x": defined twice`) {
		t.Fatalf("Set duplicate: %v", err)
	}
	if err := r.Set([]Definition{{Name: "y", Filters: []string{"a"}, Key: "what"}}); err == nil {
		t.Fatal("Set with bad key accepted")
	}
	if _, ok := r.Definition("keep"); !ok {
		t.Fatal("failed Set changed the router")
	}
}

// TestRouterAgreesWithMatchFilter compares the trie against MatchFilter on random
// filters and topics, through Set and through incremental Put/Remove.
func TestRouterAgreesWithMatchFilter(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	levels := []string{"a", "b", "", "$x", "$SYS"}
	randTopic := func() string {
		n := 1 + rng.Intn(4)
		parts := make([]string, n)
		for i := range parts {
			parts[i] = levels[rng.Intn(len(levels))]
		}
		return strings.Join(parts, "/")
	}
	randFilter := func() string {
		n := 1 + rng.Intn(4)
		parts := make([]string, n)
		for i := range parts {
			switch x := rng.Intn(7); {
			case x == 0:
				parts[i] = "+"
			case x == 1 && i == n-1:
				parts[i] = "#"
			default:
				parts[i] = levels[rng.Intn(len(levels))]
			}
		}
		return strings.Join(parts, "/")
	}
	var defs []Definition
	for i := 0; i < 60; i++ {
		d := Definition{Name: fmt.Sprint("s", i), Filters: []string{"fixed/" + fmt.Sprint(i)}}
		for j := 0; j < 1+rng.Intn(3); j++ {
			if f := randFilter(); f != "" && !slices.Contains(d.Filters, f) {
				d.Filters = append(d.Filters, f)
			}
		}
		defs = append(defs, d)
	}
	whole, incr := NewRouter(), NewRouter()
	mustSet(t, whole, defs...)
	for _, d := range defs {
		if err := incr.Put(Definition{Name: d.Name, Filters: []string{"junk/" + d.Name}}); err != nil {
			t.Fatal(err)
		}
		if err := incr.Put(d); err != nil {
			t.Fatal(err)
		}
	}
	incr.Remove("s0")
	if err := incr.Put(defs[0]); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3000; i++ {
		topic := randTopic()
		var want []string
		for _, d := range defs {
			if slices.ContainsFunc(d.Filters, func(f string) bool { return MatchFilter(f, topic) }) {
				want = append(want, d.Name)
			}
		}
		slices.Sort(want)
		for name, r := range map[string]*Router{"Set": whole, "Put": incr} {
			if got := routed(r.Route(&Message{Topic: topic}, nil)); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s router: Route(%q) = %v, want %v", name, topic, got, want)
			}
		}
	}
}

func TestRouterConcurrent(t *testing.T) {
	r := NewRouter()
	mustSet(t, r, Definition{Name: "stable", Filters: []string{"t/#"}})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var dst []Target
			m := &Message{Topic: "t/1/2", ClientID: "c", Payload: []byte("p")}
			for {
				select {
				case <-stop:
					return
				default:
				}
				dst = r.Route(m, dst[:0])
				if !slices.ContainsFunc(dst, func(tg Target) bool { return tg.Stream == "stable" }) {
					t.Error("stable stream missing during concurrent changes")
					return
				}
			}
		}()
	}
	for i := 0; i < 300; i++ {
		name := fmt.Sprint("s", i%20)
		if err := r.Put(Definition{Name: name, Filters: []string{fmt.Sprintf("t/%d/#", i%5), "t/+/2"}}); err != nil {
			t.Error(err)
		}
		if i%3 == 0 {
			r.Remove(name)
		}
		_ = r.Definitions()
	}
	close(stop)
	wg.Wait()
}

func TestRouterManyNonMatchingStreams(t *testing.T) {
	r := NewRouter()
	defs := make([]Definition, 0, 5001)
	for i := 0; i < 5000; i++ {
		defs = append(defs, Definition{Name: fmt.Sprint("s", i), Filters: []string{fmt.Sprintf("site/%d/+/#", i)}})
	}
	defs = append(defs, Definition{Name: "hit", Filters: []string{"other/+"}})
	mustSet(t, r, defs...)
	if got := routed(r.Route(&Message{Topic: "other/x"}, nil)); !reflect.DeepEqual(got, []string{"hit"}) {
		t.Fatalf("got %v", got)
	}
	if got := routed(r.Route(&Message{Topic: "site/4999/a/b"}, nil)); !reflect.DeepEqual(got, []string{"s4999"}) {
		t.Fatalf("got %v", got)
	}
	if got := len(r.Definitions()); got != 5001 {
		t.Fatalf("%d definitions", got)
	}
}

// BenchmarkRoute routes one publish with N streams whose filters do not match it and
// one that does; ns/op should not grow with N.
func BenchmarkRoute(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprint("streams=", n), func(b *testing.B) {
			r := NewRouter()
			defs := make([]Definition, 0, n+1)
			for i := 0; i < n; i++ {
				defs = append(defs, Definition{Name: fmt.Sprint("s", i), Filters: []string{fmt.Sprintf("site/%d/+/telemetry/#", i), fmt.Sprintf("+/dev%d", i)}})
			}
			defs = append(defs, Definition{Name: "hit", Filters: []string{"plant/+/telemetry/#"}, Shards: 8, Key: "topic-level:2"})
			mustSet(b, r, defs...)
			m := &Message{Topic: "plant/7/telemetry/temp", Payload: []byte(`{"t":21.5}`), QoS: 1, ClientID: "dev-7"}
			dst := make([]Target, 0, 4)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				dst = r.Route(m, dst[:0])
			}
			if len(dst) != 1 {
				b.Fatalf("routed to %d streams", len(dst))
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/route")
		})
	}
}

// BenchmarkRouterPut measures adding one stream to a router holding 10,000.
func BenchmarkRouterPut(b *testing.B) {
	r := NewRouter()
	defs := make([]Definition, 0, 10000)
	for i := 0; i < 10000; i++ {
		defs = append(defs, Definition{Name: fmt.Sprint("s", i), Filters: []string{fmt.Sprintf("site/%d/#", i)}})
	}
	mustSet(b, r, defs...)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := r.Put(Definition{Name: "extra", Filters: []string{fmt.Sprintf("site/%d/x", i%100)}}); err != nil {
			b.Fatal(err)
		}
	}
}

func TestRouterKeyFallback(t *testing.T) {
	r := NewRouter()
	mustSet(t, r,
		Definition{Name: "default", Filters: []string{"d/#"}, Shards: 8, Key: "json:device.id"},
		Definition{Name: "to-topic", Filters: []string{"d/#"}, Shards: 8, Key: "json:device.id", KeyFallback: "topic"},
		Definition{Name: "to-none", Filters: []string{"d/#"}, Shards: 3, Key: "json:device.id", KeyFallback: "none"},
		Definition{Name: "to-empty", Filters: []string{"d/#"}, Shards: 8, Key: "json:device.id", KeyFallback: "username"},
	)
	tests := []struct {
		payload  string
		stream   string
		key      string // "" means a null key
		fallback bool
	}{
		{`{"device":{"id":"dev-9"}}`, "default", "dev-9", false},
		{`{"device":{"id":"dev-9"}}`, "to-none", "dev-9", false},
		{`{"device":{}}`, "default", "client-1", true},
		{`{"device":{}}`, "to-topic", "d/x", true},
		{`{"device":{}}`, "to-none", "", true},
		{`{"device":{}}`, "to-empty", "client-1", true}, // the fallback yields nothing either
		{`not json`, "to-topic", "d/x", true},
	}
	for _, tt := range tests {
		m := &Message{Topic: "d/x", Payload: []byte(tt.payload), ClientID: "client-1", ConnSeq: 4}
		for _, tg := range r.Route(m, nil) {
			if tg.Stream != tt.stream {
				continue
			}
			if tt.key == "" {
				if tg.Record.Key != nil || tg.Shard != 4%3 || !tg.KeyFallback {
					t.Errorf("%s %s: key %q shard %d fallback %v, want null key, round robin", tt.stream, tt.payload, tg.Record.Key, tg.Shard, tg.KeyFallback)
				}
				continue
			}
			if string(tg.Record.Key) != tt.key || tg.KeyFallback != tt.fallback {
				t.Errorf("%s %s: key %q fallback %v, want %q %v", tt.stream, tt.payload, tg.Record.Key, tg.KeyFallback, tt.key, tt.fallback)
			}
		}
	}
	if err := r.Set([]Definition{{Name: "bad", Filters: []string{"x"}, KeyFallback: "json:"}}); err == nil {
		t.Error("a bad key_fallback was accepted")
	}
	if err := r.Set([]Definition{{Name: "lv", Filters: []string{"x"}, LastValue: true, KeyFallback: "none"}}); err == nil {
		t.Error("key_fallback none was accepted on a last_value stream")
	}
}
