package mapping

import (
	"errors"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/log"
)

func openTestCatalog(t *testing.T, dir string) (*Catalog, *log.Log) {
	t.Helper()
	l, err := log.Open(log.Options{Dir: dir, Logger: zerolog.Nop(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	c, err := OpenCatalog(l)
	if err != nil {
		t.Fatal(err)
	}
	return c, l
}

func routeNames(c *Catalog, topic string) []string {
	var out []string
	for _, tg := range c.Router().Route(&Message{Topic: topic, ClientID: "c1"}, nil) {
		out = append(out, tg.Stream)
	}
	return out
}

func TestCatalogLifecycle(t *testing.T) {
	dir := t.TempDir()
	c, l := openTestCatalog(t, dir)

	d, err := c.Create(Definition{Name: "tele", Filters: []string{"t/#"}, Shards: 2}, true)
	if err != nil || d.Key != DefaultKey || d.Retention.MaxAge != DefaultMaxAge {
		t.Fatalf("create: %+v %v", d, err)
	}
	// Routing switches with the create: the next publish lands in the new stream.
	if got := routeNames(c, "t/1"); len(got) != 1 || got[0] != "tele" {
		t.Fatalf("route after create: %v", got)
	}
	if c.Stream("tele") == nil || c.Stream("tele").Shards() != 2 {
		t.Fatal("log stream missing")
	}

	bad := []struct {
		name string
		op   func() error
		want error
	}{
		{"exists", func() error { _, err := c.Create(Definition{Name: "tele", Filters: []string{"x"}}, true); return err }, ErrStreamExists},
		{"bad filter", func() error { _, err := c.Create(Definition{Name: "x", Filters: []string{"a/#/b"}}, true); return err }, ErrInvalid},
		{"bad name", func() error {
			_, err := c.Create(Definition{Name: "bad name!", Filters: []string{"a"}}, true)
			return err
		}, ErrInvalid},
		{"no filter", func() error { _, err := c.Create(Definition{Name: "x"}, true); return err }, ErrInvalid},
		{"shrink", func() error {
			_, err := c.Alter(Definition{Name: "tele", Filters: []string{"t/#"}, Shards: 1}, true)
			return err
		}, ErrInvalid},
		{"alter unknown", func() error { _, err := c.Alter(Definition{Name: "nope", Filters: []string{"t"}}, true); return err }, ErrUnknownStream},
		{"delete unknown", func() error { return c.Delete("nope") }, ErrUnknownStream},
		{"rename", func() error {
			_, err := c.Update("tele", func(d Definition) (Definition, error) { d.Name = "other"; return d, nil })
			return err
		}, ErrInvalid},
	}
	for _, b := range bad {
		if err := b.op(); !errors.Is(err, b.want) {
			t.Errorf("%s: %v, want %v", b.name, err, b.want)
		}
	}
	// Nothing half-changed by the refusals.
	if d, _ := c.Definition("tele"); d.Shards != 2 || len(c.Definitions()) != 1 {
		t.Fatalf("after refusals: %+v, %d streams", d, len(c.Definitions()))
	}

	// A Kafka-only stream has no filter and routes nothing.
	if _, err := c.Create(Definition{Name: "connect-offsets", LastValue: true}, false); err != nil {
		t.Fatal(err)
	}

	// Altering the filters reroutes at once.
	if _, err := c.Alter(Definition{Name: "tele", Filters: []string{"u/+"}, Shards: 3}, true); err != nil {
		t.Fatal(err)
	}
	if got := routeNames(c, "t/1"); len(got) != 0 {
		t.Fatalf("old filter still routes: %v", got)
	}
	if got := routeNames(c, "u/1"); len(got) != 1 || c.Stream("tele").Shards() != 3 {
		t.Fatalf("new filter: %v, shards %d", got, c.Stream("tele").Shards())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	// Everything persists; the delete then removes stream and route together.
	c, l = openTestCatalog(t, dir)
	defer l.Close()
	if d, ok := c.Definition("tele"); !ok || d.Shards != 3 || d.Filters[0] != "u/+" {
		t.Fatalf("reopened: %+v %v", d, ok)
	}
	if d, ok := c.Definition("connect-offsets"); !ok || !d.LastValue || len(d.Filters) != 0 {
		t.Fatalf("kafka-only reopened: %+v %v", d, ok)
	}
	if err := c.Delete("tele"); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Definition("tele"); ok || c.Stream("tele") != nil || len(routeNames(c, "u/1")) != 0 {
		t.Fatal("deleted stream still visible")
	}
}

// TestCatalogConcurrentUpdates: changes of one stream at once are serialised; none is lost.
func TestCatalogConcurrentUpdates(t *testing.T) {
	c, l := openTestCatalog(t, t.TempDir())
	defer l.Close()
	if _, err := c.Create(Definition{Name: "s", Filters: []string{"s/#"}, Shards: 1}, true); err != nil {
		t.Fatal(err)
	}
	const n = 20
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Update("s", func(d Definition) (Definition, error) {
				d.Shards++
				return d, nil
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	// Routes read meanwhile see either shard count, never a missing stream.
	for range 200 {
		if got := routeNames(c, "s/x"); len(got) != 1 {
			t.Fatalf("route during updates: %v", got)
		}
	}
	wg.Wait()
	if d, _ := c.Definition("s"); d.Shards != 1+n || c.Stream("s").Shards() != 1+n {
		t.Fatalf("shards %d (log %d), want %d", d.Shards, c.Stream("s").Shards(), 1+n)
	}
}

func TestKafkaConfigs(t *testing.T) {
	var d Definition
	d.Name = "k"
	for _, kv := range [][2]string{{"retention.ms", "3600000"}, {"retention.bytes", "1048576"}, {"cleanup.policy", "compact"}, {"mqtt.topic.filter", "a/+, b/#"}, {"mqtt.key", "topic"}} {
		v := kv[1]
		if err := d.SetKafkaConfig(kv[0], &v); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.ValidateKafkaOnly(); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kc := range d.KafkaConfigs() {
		got[kc.Name] = kc.Value
	}
	want := map[string]string{"retention.ms": "3600000", "retention.bytes": "1048576", "cleanup.policy": "compact", "mqtt.topic.filter": "a/+,b/#", "mqtt.key": "topic"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	for _, bad := range [][2]string{{"retention.ms", "soon"}, {"retention.ms", "0"}, {"retention.bytes", "-5"}, {"cleanup.policy", "shred"}, {"segment.bytes", "1"}} {
		v := bad[1]
		if err := d.SetKafkaConfig(bad[0], &v); err == nil {
			t.Errorf("%s=%s accepted", bad[0], bad[1])
		}
	}
	if err := d.SetKafkaConfig("retention.ms", nil); err != nil || d.Retention.MaxAge != 0 {
		t.Fatalf("reset: %v %v", d.Retention.MaxAge, err)
	}
}
