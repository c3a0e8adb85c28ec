package mqtt

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstreams/mqstreams/log"
)

// finish answers one queued publish whose appends (and predecessors) are done. It runs
// on the connection's drainer goroutine, which then takes the batch off the pending
// count (endPending).
func (h *ingestHook) finish(it *item) {
	var pk packets.Packet
	h.conclude(it, &pk, h.answer(it, &pk))
}

// answer is the first step of finish: the publisher's acknowledgement (or refusal).
// It reports whether conclude must still deliver *pk, the publish as completed. The
// drainer answers a whole group before concluding any of it, so the group's
// acknowledgements leave in one write without waiting for the fan-out.
func (h *ingestHook) answer(it *item, pk *packets.Packet) (deliver bool) {
	if o := it.orig; o != nil {
		// A QoS 2 redelivery: stored once by the original; ack it, and fan it out
		// only if the original could not (its connection was gone by then). All of it
		// here, under the original's lock (a drainer answers redeliveries one at a
		// time: see drain).
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.failed != nil {
			h.reject(it, o.failed)
			return false
		}
		h.release(it, !o.published)
		if it.publishedNow {
			o.published = true
		}
		return false
	}
	if err := it.error(); err != nil {
		h.reject(it, err)
		return false
	}
	c := it.c
	it.publishedNow = false
	c.inj.Store(it) // for retainedStored, which mochi's retain hooks call back
	*pk = it.pk.packet()
	if h.complete != nil {
		*pk = h.complete(c.cl, *pk)
	}
	pk.Ignore = false // as completePublish with fanOut
	deliver, err := completeAck(h.broker, h.hooks, c.cl, *pk)
	c.inj.Store(nil)
	if err != nil {
		h.notDelivered(it, err)
	}
	return deliver
}

// conclude is the second step of finish: the delivery of an acknowledged publish to
// subscribers (with mochi's OnPublished hooks) and the QoS 2 exactly-once state.
func (h *ingestHook) conclude(it *item, pk *packets.Packet, deliver bool) {
	defer func() { <-it.c.slots }()
	if deliver {
		c := it.c
		c.inj.Store(it) // for OnPublished, which mochi's hooks call back
		completeDelivery(h.broker, h.hooks, c.cl, *pk)
		c.inj.Store(nil)
	}
	if it.orig != nil || it.sess == nil {
		return
	}
	err := it.error()
	if err != nil {
		// Not stored: a redelivery must be appended afresh.
		h.mu.Lock()
		if it.sess.qos2[it.pk.PacketID] == it {
			delete(it.sess.qos2, it.pk.PacketID)
		}
		h.mu.Unlock()
	}
	it.mu.Lock()
	it.processed = true
	it.published = it.publishedNow
	it.failed = err
	dups := it.dups
	it.dups = nil
	it.mu.Unlock()
	for _, d := range dups {
		d.complete(nil)
	}
}

// release completes a durable publish on the publisher's own client (completePublish):
// the PUBACK/PUBREC and, when fanOut, the retained message and the delivery to
// subscribers, with mochi's OnPublished hooks (cluster forwarding among them).
func (h *ingestHook) release(it *item, fanOut bool) {
	c := it.c
	it.publishedNow = false
	c.inj.Store(it) // for retainedStored and OnPublished, which mochi's hooks call back
	pk := it.pk.packet()
	if fanOut && h.complete != nil {
		pk = h.complete(c.cl, pk)
	}
	err := completePublish(h.broker, h.hooks, c.cl, pk, fanOut)
	c.inj.Store(nil)
	if err != nil {
		h.notDelivered(it, err)
	}
}

// notDelivered notes an acknowledgement the publisher's connection did not take: the
// publisher is gone and resends after reconnecting.
func (h *ingestHook) notDelivered(it *item, err error) {
	c := it.c
	h.lg.Debug().Err(err).Str("client", c.cl.ID).Str("remote", c.cl.Net.Remote).Uint16("packet_id", it.pk.PacketID).Msg("publish acknowledgement not delivered")
}

// reject tells the publisher its message was not stored: an MQTT 5 client gets PUBACK
// (PUBREC) with 0x97 Quota exceeded when the disk is full and 0x80 Unspecified error
// otherwise (a cluster append that timed out or lost its leader: the client may resend);
// MQTT 3.1.1 has no failure ack, so its connection is closed and it resends after
// reconnecting.
func (h *ingestHook) reject(it *item, err error) {
	c := it.c
	code := packets.ErrUnspecifiedError
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, log.ErrStorageFailed) {
		code = packets.ErrQuotaExceeded
	}
	h.lg.Warn().Err(err).Str("client", c.cl.ID).Str("remote", c.cl.Net.Remote).Str("topic", it.pk.TopicName).
		Uint16("packet_id", it.pk.PacketID).Msg("publish not stored")
	if useAnotherServer(err) {
		h.redirect(c, err)
		return
	}
	if c.cl.Properties.ProtocolVersion < 5 {
		// 3.1.1 has no refusal: the connection is closed, so the client resends the
		// unacknowledged publish after reconnecting (to this node or another). Left
		// open, the publish would stay unacknowledged and the publisher wait forever
		// (issue 13: a cluster append whose shard leader died or was cut off).
		c.cl.Stop(fmt.Errorf("publish not stored: %w", err))
		return
	}
	ack := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Puback},
		PacketID:    it.pk.PacketID,
		ReasonCode:  code.Code,
		Properties:  packets.Properties{ReasonString: "stream append failed"},
	}
	if it.pk.FixedHeader.Qos == 2 {
		ack.FixedHeader.Type = packets.Pubrec
	}
	if werr := c.cl.WritePacket(ack); werr != nil {
		h.lg.Debug().Err(werr).Str("client", c.cl.ID).Str("remote", c.cl.Net.Remote).Msg("publish rejection not delivered")
	}
}

// useAnotherServer reports a write refused because this node no longer serves any (a
// cluster node removed from its cluster: cluster.RemovedError).
func useAnotherServer(err error) bool {
	var u interface{ UseAnotherServer() bool }
	return errors.As(err, &u) && u.UseAnotherServer()
}

// redirect ends the connection of a publisher this node can no longer store for: MQTT 5
// gets DISCONNECT "Use another server" (0x9C) with the reason, 3.1.1 (which has no
// such code) the connection closed; the unacknowledged publish is resent elsewhere.
func (h *ingestHook) redirect(c *conn, err error) {
	if c.cl.Properties.ProtocolVersion >= 5 {
		dis := packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Disconnect},
			ReasonCode:  packets.ErrUseAnotherServer.Code,
			Properties:  packets.Properties{ReasonString: err.Error()},
		}
		if werr := c.cl.WritePacket(dis); werr != nil {
			h.lg.Debug().Err(werr).Str("client", c.cl.ID).Msg("disconnect not delivered")
		}
	}
	c.cl.Stop(fmt.Errorf("publish not stored: %w", err))
}
