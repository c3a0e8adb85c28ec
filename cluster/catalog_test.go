package cluster

import (
	"errors"
	"testing"
	"time"

	"github.com/mqstreams/mqstreams/mapping"
)

// The mapping catalog of every node applies the definitions the cluster replicates,
// and every change made through any node's catalog goes through the cluster.
func TestMappingCatalogReplicated(t *testing.T) {
	cats := make([]*mapping.Catalog, 3)
	c := newTestCluster(t, 3, func(i int, o *Options) {
		cat, err := mapping.OpenCatalog(o.Log)
		if err != nil {
			t.Fatal(err)
		}
		cats[i], o.Streams = cat, cat
	})
	for i, cat := range cats {
		cat.SetReplicator(c.nodes[i])
	}
	d := mapping.Definition{Name: "plant", Filters: []string{"plant/#"}, Shards: 2, ReplicationFactor: 2}
	if _, err := cats[1].Create(d, true); err != nil {
		t.Fatal(err)
	}
	if _, err := cats[2].Create(d, true); !errors.Is(err, mapping.ErrStreamExists) {
		t.Fatalf("second create: %v", err)
	}
	waitFor(t, 20*time.Second, "the route on every node", func() bool {
		for _, cat := range cats {
			if got, ok := cat.Definition("plant"); !ok || got.Shards != 2 {
				return false
			}
			if tg := cat.Router().Route(&mapping.Message{Topic: "plant/a", ClientID: "c"}, nil); len(tg) != 1 {
				return false
			}
		}
		return true
	})
	for s, reps := range c.nodes[0].Streams()["plant"] {
		if len(reps) != 2 {
			t.Fatalf("shard %d has replicas %v, want 2 (replication_factor)", s, reps)
		}
	}
	if _, err := cats[0].Update("plant", func(d mapping.Definition) (mapping.Definition, error) { d.Shards = 3; return d, nil }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "3 shards on every node", func() bool {
		for i, cat := range cats {
			if got, _ := cat.Definition("plant"); got.Shards != 3 || c.logs[i].Stream("plant").Shards() != 3 {
				return false
			}
		}
		return true
	})
	if err := cats[2].Delete("plant"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "plant deleted on every node", func() bool {
		for _, cat := range cats {
			if _, ok := cat.Definition("plant"); ok {
				return false
			}
		}
		return true
	})
}
