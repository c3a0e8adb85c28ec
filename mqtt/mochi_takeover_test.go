package mqtt

import (
	"context"
	"testing"
	"time"
	_ "unsafe" // go:linkname

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstreams/mqstreams/mqtt/mqtttest"
)

// mochiPublishToClient is mochi v2.7.9's Server.publishToClient: one subscriber's
// copy of a publish (in flight for QoS 1/2, then queued for writing).
//
//go:linkname mochiPublishToClient github.com/mochi-mqtt/server/v2.(*Server).publishToClient
func mochiPublishToClient(s *mochi.Server, cl *mochi.Client, sub packets.Subscription, pk packets.Packet) (packets.Packet, error)

// TestStoreTakeoverHandsOverLate: a publish whose fan-out took a persistent session's
// old client object from Clients before its client reconnected, and queues on it only
// once the take-over is done (mochi acknowledges a publish before it fans it out),
// reaches the new connection, stored, and comes again after a restart until acked.
func TestStoreTakeoverHandsOverLate(t *testing.T) {
	dir := t.TempDir()
	srv, l := startStore(t, dir, nil)
	addr := srv.Addr().String()
	queueForOfflineDev(t, srv, addr, "cmd/queued")
	old, _ := srv.broker.Clients.Get("dev")

	reconnect := func(addr string, late func()) map[string]string {
		t.Helper()
		o := mqtttest.Options{ClientID: "dev", KeepAlive: 60, ManualAck: true}
		o.Properties.SessionExpiryInterval, o.Properties.SessionExpiryIntervalFlag = 3600, true
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := mqtttest.Dial(ctx, addr, o)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if late != nil {
			late()
		}
		msgs, err := c.WaitMessages(ctx, 2)
		got := map[string]string{}
		for _, m := range msgs {
			got[m.TopicName] = string(m.Payload)
		}
		if err != nil {
			t.Fatalf("got %v: %v", got, err)
		}
		return got
	}
	late := func() {
		waitFor(t, "the take-over done", func() bool {
			cl, ok := srv.broker.Clients.Get("dev")
			srv.store.mu.Lock()
			_, pending := srv.store.previous["dev"]
			srv.store.mu.Unlock()
			return ok && cl != old && !pending
		})
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, ProtocolVersion: 5,
			TopicName: "cmd/late", Payload: []byte("late"), Origin: "pub", Created: time.Now().Unix()}
		_, _ = mochiPublishToClient(srv.broker, old, packets.Subscription{Filter: "cmd/#", Qos: 1}, pk)
	}
	if got := reconnect(addr, late); got["cmd/queued"] != "queued" || got["cmd/late"] != "late" || len(got) != 2 {
		t.Fatalf("after the take-over: %v, want cmd/queued and cmd/late", got)
	}
	waitFor(t, "dev offline again", func() bool {
		cl, ok := srv.broker.Clients.Get("dev")
		return ok && cl.Closed()
	})
	stopStore(t, srv, l)
	srv, l = startStore(t, dir, nil)
	defer stopStore(t, srv, l)
	if got := reconnect(srv.Addr().String(), nil); got["cmd/queued"] != "queued" || got["cmd/late"] != "late" || len(got) != 2 {
		t.Fatalf("unacknowledged after a restart: %v, want cmd/queued and cmd/late", got)
	}
}
