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
	defer func() { <-it.c.slots }()

	if o := it.orig; o != nil {
		// A QoS 2 redelivery: stored once by the original; ack it, and fan it out
		// only if the original could not (its connection was gone by then).
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.failed != nil {
			h.reject(it, o.failed)
			return
		}
		h.release(it, !o.published)
		if it.publishedNow {
			o.published = true
		}
		return
	}

	err := it.error()
	if err != nil {
		h.reject(it, err)
	} else {
		h.release(it, true)
	}
	if it.sess == nil {
		return
	}
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
		// The publisher is gone: it resends after reconnecting.
		h.lg.Debug().Err(err).Str("client", c.cl.ID).Str("remote", c.cl.Net.Remote).Uint16("packet_id", it.pk.PacketID).Msg("publish acknowledgement not delivered")
	}
}

// reject tells the publisher its message was not stored: an MQTT 5 client gets an error
// reason code; MQTT 3.1.1 has none, so its publish stays unacknowledged.
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
		// 3.1.1 has no refusal: the publish stays unacknowledged. On a full disk the
		// client is also disconnected, so it resends after reconnecting rather than
		// publish on into a log that refuses everything.
		if code == packets.ErrQuotaExceeded {
			c.cl.Stop(fmt.Errorf("publish not stored: %w", err))
		}
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
