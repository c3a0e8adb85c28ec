package mqtt

// Session take-over as mochi-mqtt/server v2.7.9 does it (server.go, attachClient and
// inheritClientSession), checked against that version:
//
//   - A client reconnecting to a persistent session gets a clone of the old session
//     object's in-flight messages; then the old object's are cleared, each reported to
//     OnQosDropped with the old object's IsTakenOver already true; only then is the new
//     client put in Clients, its CONNACK sent, the clone resent (OnQosPublish, resends
//     0) and OnSessionEstablished called.
//   - Until the new client is in Clients, a publish is fanned out to the old object. One
//     that lands between the clone and the clear is in neither: mochi drops it for good;
//     one that lands after the clear stays in the old object, which nobody reads again.
//
// So what is dropped from a taken-over session is kept here by client id, the old
// object is remembered at OnConnect, and at OnSessionEstablished the new connection gets
// (stored, sent) whatever of both the clone did not carry. A clean start discards it,
// as mochi discards the old session. A fan-out that took the old object from Clients
// before the swap and queues on it only after OnSessionEstablished (mochi acknowledges
// a publish before it fans it out) is handed over as it comes (lateToTakenOver).

import (
	"bytes"
	"sync/atomic"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// takenOverDrop notes a message mochi dropped from a session being taken over.
func (h *storeHook) takenOverDrop(cl *mochi.Client, pk packets.Packet) {
	if !cl.IsTakenOver() || pk.FixedHeader.Type != packets.Publish || pk.FixedHeader.Qos == 0 || pk.Origin == replayOrigin {
		return // a replay resumes from its own stored position instead
	}
	h.mu.Lock()
	h.handover[cl.ID] = append(h.handover[cl.ID], pk)
	h.mu.Unlock()
}

// OnConnect remembers the session object a connection may be about to take over.
func (h *storeHook) OnConnect(cl *mochi.Client, _ packets.Packet) error {
	if old, ok := h.broker.Clients.Get(cl.ID); ok && old != cl {
		h.mu.Lock()
		h.previous[cl.ID] = old
		h.mu.Unlock()
	}
	return nil
}

// handOver gives the new connection of a taken-over session the messages mochi dropped
// from, or left in, the old session object that its clone of the old in-flight
// messages lacks.
func (h *storeHook) handOver(cl *mochi.Client, clean bool) {
	h.mu.Lock()
	dropped := h.handover[cl.ID]
	delete(h.handover, cl.ID)
	old := h.previous[cl.ID]
	delete(h.previous, cl.ID)
	h.mu.Unlock()
	if old != nil && old.IsTakenOver() {
		for _, pk := range old.State.Inflight.GetAll(false) {
			if old.State.Inflight.Delete(pk.PacketID) {
				atomic.AddInt64(&h.broker.Info.Inflight, -1)
				if pk.FixedHeader.Type == packets.Publish && pk.FixedHeader.Qos > 0 && pk.Origin != replayOrigin {
					dropped = append(dropped, pk)
				}
			}
		}
	}
	if clean {
		return
	}
	for _, pk := range dropped {
		if !h.handTo(cl, pk) {
			return // gone again: the rest stays in flight and stored for the next connection
		}
	}
}

// handTo puts a message of a taken-over session in flight on its new connection,
// stored, and sends it; false if the connection is gone again (the message stays in
// flight and stored for the next one).
func (h *storeHook) handTo(cl *mochi.Client, pk packets.Packet) bool {
	if have, ok := cl.State.Inflight.Get(pk.PacketID); ok {
		if sameMessage(have, pk) {
			return true // cloned: mochi has resent it
		}
		// The old object reused the id after its clear, and its copy overwrote the
		// stored one of the message the new connection holds under it: store that
		// again, and give this one a free id.
		h.OnQosPublish(cl, have, have.Created, 0)
		id, err := cl.NextPacketID()
		if err != nil {
			h.lg.Warn().Err(err).Str("client", cl.ID).Str("remote", cl.Net.Remote).Str("topic", pk.TopicName).
				Msg("queued message lost at session take-over: no packet id free")
			return true
		}
		pk.PacketID = uint16(id)
	}
	if !cl.State.Inflight.Set(pk) {
		return true
	}
	atomic.AddInt64(&h.broker.Info.Inflight, 1)
	h.OnQosPublish(cl, pk, pk.Created, 0) // stored again: the drop removed it
	return cl.WritePacket(pk) == nil
}

// lateToTakenOver hands a message mochi just put in flight on a session object taken
// over to the connection now holding the session, once handOver has swept the old
// object (before, the sweep takes it); it reports whether pk was such a message, which
// must then not be stored under the old object's packet id.
func (h *storeHook) lateToTakenOver(old *mochi.Client, pk packets.Packet) bool {
	if !old.IsTakenOver() || pk.FixedHeader.Type != packets.Publish || pk.FixedHeader.Qos == 0 || pk.Origin == replayOrigin {
		return false
	}
	cur, ok := h.broker.Clients.Get(old.ID)
	if !ok || cur == old {
		return false // not swapped yet: handOver sweeps the old object
	}
	h.mu.Lock()
	_, sweepToCome := h.previous[old.ID]
	h.mu.Unlock()
	if sweepToCome {
		return false
	}
	if !old.State.Inflight.Delete(pk.PacketID) {
		return true // the sweep took it meanwhile
	}
	atomic.AddInt64(&h.broker.Info.Inflight, -1)
	if !cur.Properties.Clean { // a clean start discards the old session
		h.handTo(cur, pk)
	}
	return true
}

// sameMessage reports whether two in-flight packets are the same queued message.
func sameMessage(a, b packets.Packet) bool {
	return a.Created == b.Created && a.Origin == b.Origin && a.TopicName == b.TopicName && bytes.Equal(a.Payload, b.Payload)
}
