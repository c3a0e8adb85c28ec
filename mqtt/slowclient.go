package mqtt

import (
	"errors"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"
)

// errSlowConsumer ends a subscriber whose outbound queue is over its cap.
var errSlowConsumer = errors.New("slow consumer: outbound queue over mqtt.max_queued_bytes")

// slowClientHook caps what waits to be written to one client, as EMQX's max_mqueue_len
// does. It is the adapter to mochi v2.7.9's outbound queue, whose behaviour it relies
// on:
//   - the queue is a channel of Capabilities.MaximumClientWritesPending packets; when it
//     is full mochi drops the message for that client and calls OnPublishDropped
//     (a QoS 1/2 message is also taken out of the session's inflight);
//   - publishToClient asks OnACLCheck(read) for each subscriber right before queueing,
//     and keeps a QoS 1/2 message in the session's inflight, to be resent on
//     reconnection, when it finds the client closed;
//   - OnPacketSent reports every packet written, with its bytes.
//
// The byte count queued for a client is the publishes counted for it (OnPublished,
// by the subscriptions matching the topic) minus those written. A client over
// MaxQueuedBytes is disconnected at its next delivery: its QoS 0 messages are dropped,
// its QoS 1/2 ones stay in its session. One whose packet queue is full loses the message
// (mochi); a QoS 1/2 loss also disconnects it, so the client learns of it.
//
// The hook must come before the authorization hook: mochi asks OnACLCheck of each hook
// until one allows, and this one never allows (it only watches).
type slowClientHook struct {
	mochi.HookBase
	broker   *mochi.Server
	maxBytes int64
	met      *metrics
	lg       zerolog.Logger

	queues  sync.Map // client id -> *clientQueue
	freeing atomic.Bool
}

type clientQueue struct {
	counted, written atomic.Int64
	stopped          atomic.Bool
}

func newSlowClientHook(broker *mochi.Server, maxBytes int64, met *metrics, lg zerolog.Logger) *slowClientHook {
	return &slowClientHook{broker: broker, maxBytes: maxBytes, met: met, lg: lg}
}

// ID names the hook in mochi's logs.
func (h *slowClientHook) ID() string { return "mqstreams-slow-clients" }

// Provides lists the mochi events the hook handles.
func (h *slowClientHook) Provides(b byte) bool {
	switch b {
	case mochi.OnACLCheck, mochi.OnPublished, mochi.OnPacketSent, mochi.OnPublishDropped, mochi.OnDisconnect:
		return true
	}
	return false
}

func (h *slowClientHook) queue(id string) *clientQueue {
	if q, ok := h.queues.Load(id); ok {
		return q.(*clientQueue)
	}
	q, _ := h.queues.LoadOrStore(id, &clientQueue{})
	return q.(*clientQueue)
}

// publishSize estimates a PUBLISH's encoded size.
func publishSize(pk packets.Packet) int64 {
	return int64(len(pk.Payload) + len(pk.TopicName) + 16)
}

// OnPublished counts a delivered publish against each matching subscriber's queue.
func (h *slowClientHook) OnPublished(_ *mochi.Client, pk packets.Packet) {
	if pk.Ignore {
		return // mochi delivered it to nobody (a hook answered CodeSuccessIgnore)
	}
	subs := h.broker.Topics.Subscribers(pk.TopicName)
	n := publishSize(pk)
	for id, sub := range subs.Subscriptions {
		if sub.NoLocal && pk.Origin == id {
			continue // mochi does not deliver it
		}
		h.queue(id).counted.Add(n)
	}
}

// OnPacketSent takes a written publish off its client's queue.
func (h *slowClientHook) OnPacketSent(cl *mochi.Client, pk packets.Packet, _ []byte) {
	if pk.FixedHeader.Type != packets.Publish {
		return
	}
	h.queue(cl.ID).written.Add(publishSize(pk))
}

// OnACLCheck disconnects a subscriber over its byte cap before the next message is
// queued for it; it never allows anything itself.
func (h *slowClientHook) OnACLCheck(cl *mochi.Client, _ string, write bool) bool {
	if write || cl == nil || cl.Net.Inline {
		return false
	}
	q := h.queue(cl.ID)
	if q.counted.Load()-q.written.Load() <= h.maxBytes || q.stopped.Swap(true) {
		return false
	}
	h.met.refused.WithLabelValues("slow_consumer").Inc()
	h.lg.Warn().Str("client", cl.ID).Str("remote", cl.Net.Remote).Int64("max_queued_bytes", h.maxBytes).
		Msg("mqtt slow consumer disconnected: outbound queue over its byte cap")
	cl.Stop(errSlowConsumer)
	h.returnMemory()
	return false
}

// returnMemory hands the dropped queue's memory back to the OS a second after a slow
// consumer was cut off: an idle broker runs no garbage collection for minutes.
func (h *slowClientHook) returnMemory() {
	if !h.freeing.CompareAndSwap(false, true) {
		return
	}
	time.AfterFunc(time.Second, func() {
		h.freeing.Store(false)
		debug.FreeOSMemory()
	})
}

// OnPublishDropped counts a message mochi dropped for a full packet queue.
func (h *slowClientHook) OnPublishDropped(cl *mochi.Client, pk packets.Packet) {
	h.met.dropped.WithLabelValues("queue_full").Inc()
	h.queue(cl.ID).written.Add(publishSize(pk)) // off the count: it will never be written
	if pk.FixedHeader.Qos == 0 || cl.Closed() {
		return
	}
	q := h.queue(cl.ID)
	if q.stopped.Swap(true) {
		return
	}
	h.met.refused.WithLabelValues("slow_consumer").Inc()
	h.lg.Warn().Str("client", cl.ID).Str("remote", cl.Net.Remote).
		Msg("mqtt slow consumer disconnected: outbound packet queue full (mqtt.max_queued_packets)")
	go cl.Stop(errSlowConsumer)
	h.returnMemory()
}

// OnDisconnect forgets the client's queue.
func (h *slowClientHook) OnDisconnect(cl *mochi.Client, _ error, _ bool) {
	h.queues.Delete(cl.ID)
}
