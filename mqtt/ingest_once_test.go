package mqtt

import (
	"sync"
	"sync/atomic"
	"testing"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstreams/mqstreams/mqtt/mqtttest"
)

// publishCounter counts, per topic, the publishes mochi's OnPublish and OnPublished
// hooks see from network clients.
type publishCounter struct {
	mochi.HookBase
	mu        sync.Mutex
	publish   map[string]int
	published map[string]int
}

func newPublishCounter() *publishCounter {
	return &publishCounter{publish: map[string]int{}, published: map[string]int{}}
}

func (h *publishCounter) ID() string { return "publish-counter" }

func (h *publishCounter) Provides(b byte) bool { return b == mochi.OnPublish || b == mochi.OnPublished }

func (h *publishCounter) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if !cl.Net.Inline {
		h.mu.Lock()
		h.publish[pk.TopicName]++
		h.mu.Unlock()
	}
	return pk, nil
}

func (h *publishCounter) OnPublished(cl *mochi.Client, pk packets.Packet) {
	if !cl.Net.Inline && !pk.Ignore {
		h.mu.Lock()
		h.published[pk.TopicName]++
		h.mu.Unlock()
	}
}

func (h *publishCounter) counts(topic string) (int, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.publish[topic], h.published[topic]
}

// TestDurablePublishProcessedOnce: a QoS 1/2 publish held back until stored goes through
// mochi's inbound path (validation, ACL, OnPublish hooks) once, and is then acknowledged,
// retained, delivered and announced (OnPublished) once; mochi's $SYS counters count it
// once. Before completePublish, it was handed back with InjectPacket and every
// OnPublish hook saw it twice.
func TestDurablePublishProcessedOnce(t *testing.T) {
	hk := newPublishCounter()
	e := newEnv(t, envOptions{hooks: []mochi.Hook{hk}}, plantStream(1, "clientid"))
	sub := newCollector()
	sc := dialClient(t, e.addr, "sub", sub.add)
	subscribe(t, sc, packets.Subscription{Filter: "plant/#", Qos: 2})

	info := e.srv.broker.Info
	msgsBefore := atomic.LoadInt64(&info.MessagesReceived)
	pc := dialClient(t, e.addr, "pub", nil)
	ctx := testCtx(t)
	for i, qos := range []byte{1, 2} {
		pk := mqtttest.NewPublish([]string{"plant/q1", "plant/q2"}[i], qos, []byte("x"))
		pk.FixedHeader.Retain = true
		if _, err := pc.Publish(ctx, pk); err != nil {
			t.Fatal(err)
		}
	}
	got := sub.wait(t, 2)
	if len(got) != 2 {
		t.Fatalf("subscriber got %v", got)
	}
	for _, topic := range []string{"plant/q1", "plant/q2"} {
		// OnPublished runs after mochi queued the delivery, so the subscriber can
		// have it first.
		waitFor(t, topic+" announced", func() bool { _, pubd := hk.counts(topic); return pubd > 0 })
		if pub, pubd := hk.counts(topic); pub != 1 || pubd != 1 {
			t.Errorf("%s: OnPublish %d, OnPublished %d; want 1 and 1", topic, pub, pubd)
		}
		if r, ok := e.srv.broker.Topics.Retained.Get(topic); !ok || string(r.Payload) != "x" {
			t.Errorf("%s: retained message %q %v", topic, r.Payload, ok)
		}
	}
	if n := atomic.LoadInt64(&info.MessagesReceived) - msgsBefore; n != 2 {
		t.Errorf("$SYS messages received %d, want 2", n)
	}
	if recs := e.waitRecords(t, "plant", 0, 2); len(recs) != 2 {
		t.Errorf("stream holds %d records, want 2", len(recs))
	}
}
