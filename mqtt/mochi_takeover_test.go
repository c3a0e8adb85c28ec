package mqtt

import (
	"testing"
	"time"
	_ "unsafe" // go:linkname

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
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
	resumeDevAcrossRestart(t, dir, srv, l, late, map[string]string{"cmd/queued": "queued", "cmd/late": "late"})
}
