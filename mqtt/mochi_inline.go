package mqtt

import (
	"bytes"
	"errors"
	"sort"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Adapter for mochi-mqtt v2.7.9's inline client, through which records produced over
// Kafka are published (deliver.go). What this file relies on, read in mochi's
// server.go and clients.go of that version:
//
//   - Options.InlineClient creates a client with Net.Inline set and id
//     mochi.InlineClientId; Server.InjectPacket(inline, PUBLISH) runs processPublish as
//     for a network client, except that the topic is not validated and OnACLCheck is
//     not consulted (we check both before), and the publish is treated as QoS 0
//     inbound: no ack, each subscriber gets min(packet QoS, subscription QoS).
//   - OnPublish hooks still run: the ingest and replay hooks let inline packets through
//     untouched, so a delivery is never appended again (no loop).
//   - Retained flags, shared subscriptions, no-local (the origin is "inline", never a
//     subscriber), persistent sessions' inflight queue: all are mochi's normal path.
//   - Server.NewClient(nil, LocalListener, id, true) makes a second inline client that
//     is never added to Clients (routes.go's peer client, for publishes forwarded by
//     other cluster nodes): InjectPacket reads only its Net.Inline, ID (the packets'
//     Origin), protocol version (0, as the built-in one's) and receive quota (MaxInt32
//     for inline clients), so it publishes exactly
//     as the built-in one does, and mochi's own Publish never uses it.
//   - Client.WritePacket drops a packet larger than the client's Maximum Packet Size
//     with ErrPacketTooLarge, but a QoS 1/2 packet has by then been put in the
//     client's inflight store and taken a send-quota slot, so it would be resent (and
//     dropped) forever and eventually stall the client. onEncode undoes that for our
//     deliveries.
//   - publishToClient parks a QoS 1/2 copy when the client's send quota was zero: it is
//     stored with Expiry -1 and not queued, so it is neither encoded (OnPacketEncode
//     never sees it) nor sent until the client's next packet, after which mochi sends
//     one parked message if the quota is positive (processPacket, through
//     Inflight.NextImmediate). A parked copy took no quota slot. A copy we drop as too
//     large frees its slot while copies may be parked behind it; releaseSlot hands that
//     slot to the oldest parked copy and drops parked ones too large on the way. It
//     lists them with one Inflight.GetAll(true) (one read lock), never NextImmediate,
//     which read-locks twice and deadlocks against a concurrent Set (see
//     mochi_adapter.go). It writes with Client.WritePacket from inside OnPacketEncode,
//     which WritePacket calls before it takes the client's lock.

// inlineOrigin is pk.Origin of every publish of the inline client.
const inlineOrigin = mochi.InlineClientId

// injected tells whether pk was handed to mochi by us (records produced over Kafka, or
// publishes forwarded by another node through the peer client of routes.go, created
// with Server.NewClient(..., inline=true) and never registered), not by a client.
func injected(pk *packets.Packet) bool {
	return pk.Origin == inlineOrigin || pk.Origin == peerClientID
}

// injectDelivery hands a PUBLISH to mochi as sent by the inline client.
func injectDelivery(broker *mochi.Server, pk packets.Packet) error {
	inline, ok := broker.Clients.Get(mochi.InlineClientId)
	if !ok {
		return mochi.ErrInlineClientNotEnabled
	}
	return broker.InjectPacket(inline, pk)
}

// tooLargeFor tells whether a delivery about to be written to cl exceeds cl's Maximum
// Packet Size; if so, and the packet is QoS 1/2, it is taken out of cl's inflight
// store and its send-quota slot released (releaseSlot). dropped is called once for it
// and once for each parked copy found too large on the way.
func tooLargeFor(cl *mochi.Client, pk *packets.Packet, scratch *bytes.Buffer, dropped func()) bool {
	if !overMaxSize(pk, scratch) {
		return false
	}
	dropped()
	if pk.FixedHeader.Qos > 0 && cl.State.Inflight.Delete(pk.PacketID) {
		releaseSlot(cl, scratch, dropped)
	}
	return true
}

// overMaxSize tells whether pk, one of our deliveries prepared by WritePacket (protocol
// version and Mods.MaxSize set), encodes larger than the client accepts.
func overMaxSize(pk *packets.Packet, scratch *bytes.Buffer) bool {
	if pk.FixedHeader.Type != packets.Publish || !injected(pk) || pk.Mods.MaxSize == 0 {
		return false
	}
	scratch.Reset()
	err := pk.PublishEncode(scratch)
	return err == nil && uint32(scratch.Len()) > pk.Mods.MaxSize
}

// releaseSlot gives the send-quota slot of a dropped QoS 1/2 delivery to the oldest
// copy mochi parked for cl, which is written now and keeps the slot until acknowledged
// (it stays in the inflight store with Expiry 0), or back to mochi's quota when nothing
// is parked. Parked copies too large for cl are dropped on the way (they hold no slot).
// Without this, parked copies wait for a packet from the client, and a too-large one
// is never dropped nor counted. A copy mochi's read loop sends at the same moment may
// be sent twice, which QoS 1/2 allows (the second PUBACK finds nothing).
func releaseSlot(cl *mochi.Client, scratch *bytes.Buffer, dropped func()) {
	parked := cl.State.Inflight.GetAll(true) // Expiry < 0
	// GetAll orders by Created, in seconds: within one second by packet id, which mochi
	// assigns in publishing order (but for its wrap at 65535).
	sort.SliceStable(parked, func(i, j int) bool {
		a, b := parked[i], parked[j]
		return a.Created < b.Created || a.Created == b.Created && a.PacketID < b.PacketID
	})
	for _, next := range parked {
		check := next
		check.ProtocolVersion = cl.Properties.ProtocolVersion // as WritePacket prepares it
		if check.Mods.MaxSize == 0 {
			check.Mods.MaxSize = cl.Properties.Props.MaximumPacketSize
		}
		if overMaxSize(&check, scratch) {
			if cl.State.Inflight.Delete(next.PacketID) {
				dropped()
			}
			continue
		}
		next.Expiry = 0
		cl.State.Inflight.Set(next)
		if err := cl.WritePacket(next); errors.Is(err, packets.ErrPacketTooLarge) {
			cl.State.Inflight.Delete(next.PacketID) // not ours, and dropped by mochi
			continue
		}
		return
	}
	cl.State.Inflight.IncreaseSendQuota()
}
