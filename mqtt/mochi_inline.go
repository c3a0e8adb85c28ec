package mqtt

import (
	"bytes"

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
// store and its send-quota slot returned, as mochi does for a dropped packet.
func tooLargeFor(cl *mochi.Client, pk *packets.Packet, scratch *bytes.Buffer) bool {
	if pk.FixedHeader.Type != packets.Publish || !injected(pk) || pk.Mods.MaxSize == 0 {
		return false
	}
	scratch.Reset()
	if err := pk.PublishEncode(scratch); err != nil || uint32(scratch.Len()) <= pk.Mods.MaxSize {
		return false
	}
	if pk.FixedHeader.Qos > 0 {
		if cl.State.Inflight.Delete(pk.PacketID) {
			cl.State.Inflight.IncreaseSendQuota()
		}
	}
	return true
}
