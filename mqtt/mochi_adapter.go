package mqtt

// This file holds every use of mochi-mqtt/server internals, checked against
// github.com/mochi-mqtt/server/v2 v2.7.9. A mochi upgrade needs this file re-checked
// (mochi_adapter_test.go fails if the field layout it relies on changes):
//
//   - Client.WritePacket (clients.go) buffers a packet in the unexported
//     ClientConnection.outbuf while the client's outbound queue is not empty, and the
//     WriteLoop flushes it with a later packet. Bytes written straight to Net.Conn would
//     overtake what sits there — a SUBACK, say, ahead of the first replayed message.
//     writeOrdered flushes that buffer first, under the client's lock, as flushOutbuf.
//   - Inflight.NextImmediate read-locks the in-flight store twice, which deadlocks when
//     another goroutine adds to the store in between; mochi calls it only while the
//     client's send quota is positive. Its quota also leaks: a message it parked for
//     lack of quota is deleted from the in-flight store when finally sent, so its PUBACK
//     gives no quota back. pinSendQuota keeps the quota at zero (mochi then neither
//     parks nor sends parked messages) and sendWindow (sendwindow.go) does the flow
//     control instead.
//   - publishToClient puts a QoS 1/2 delivery in the client's in-flight store and queues
//     it; the connection's WriteLoop goroutine writes queued packets one by one with
//     WritePacket, which calls the OnPacketEncode hooks before it takes the client's
//     lock. holdLiveDelivery blocks there until the delivery fits the window: what mochi
//     queued after it waits behind it, in order, and nothing else is blocked. mochi
//     resends in-flight messages after a reconnection (ResendInflightMessages) with
//     Dup set, on the connection's goroutine before its read loop starts: those must
//     never be held (nothing could acknowledge them).
//   - While the WriteLoop is held the queue is not empty, so WritePacket buffers the
//     read loop's own packets (PUBACK, SUBACK, PINGRESP) in outbuf, which only the next
//     write flushes. flushHeld writes them at once (OnPacketSent), else a client that
//     waits for its own PUBACK before acknowledging a delivery would deadlock.
//   - processPublish hands the packet an OnPublish hook returns, unchanged, to
//     retainMessage (OnRetainMessage), publishToSubscribers (OnSelectSubscribers) and
//     OnPublished, and nothing in mochi reads a PUBLISH's Filters: routes_shared.go
//     carries its shared-group pick and retained stamp there (routeNote). mochi calls
//     OnSelectSubscribers only when the topic has a shared subscription here.
//   - processPublish (server.go), once the OnPublish hooks let a network client's QoS 1/2
//     publish through, does: retainMessage (unexported: the topic index, then the
//     OnRetainMessage hooks), the PUBACK/PUBREC with the in-flight bookkeeping and the
//     OnQosPublish/OnQosComplete hooks, publishToSubscribers (unexported: shared
//     subscription selection, inline subscriptions, per-client ACL check, no-local,
//     topic aliases, QoS downgrade, in-flight store, the client's outbound queue) and the
//     OnPublished hooks (cluster forwarding, the store's barrier, slow clients).
//     completePublish does those steps for a publish the ingest hook held back until it
//     was stored (ingest.go), calling mochi's own retainMessage and
//     publishToSubscribers by go:linkname and the hooks through Server's unexported
//     hooks field: the publish is processed once, not handed back to run the whole
//     inbound path (validation, ACL, every OnPublish hook) a second time.
//   - Packet identifiers are independent per direction (MQTT 5 §2.2.1), but mochi keeps
//     one in-flight store per client for both: its outbound QoS 1/2 deliveries (PUBLISH,
//     then the server's PUBREL) and its inbound flows' acknowledgements (the server's
//     PUBACK/PUBREC/PUBCOMP). It calls OnQosComplete both for a delivery's end (the
//     client's PUBACK or PUBCOMP, processPuback/processPubcomp) and for an inbound
//     flow's (its own PUBACK in processPublish, the client's PUBREL in processPubrel,
//     stored acks in ResendInflightMessages), and OnQosDropped likewise (the client's
//     PUBREC or PUBREL with an error code; any in-flight entry cleared or expired).
//     endsDelivery tells the two apart; the send window, the replay positions and the
//     store act only on a delivery's end. mochi's own processPublish also removes an
//     outbound entry that shares an inbound publish's id (fixed upstream in v2.8.0,
//     mochi-mqtt/server#519) and overwrites it with the PUBREC of a QoS 2 publish
//     (still open upstream, #545); its processPubrel overwrites and removes whatever
//     holds the PUBREL's id. completePublish, which handles every publish a stream
//     holds, keeps an outbound entry (see there). The one processPublish removes before
//     the OnPublish hooks is kept (keepOutbound, from the store hook's OnPacketRead) and
//     put back (restoreOutbound: completePublish, else — a publish no stream holds,
//     which takes mochi's own path — the store hook's OnPublished, after mochi's QoS 1
//     Set and Delete or QoS 2 PUBREC of the id; the PUBREC is then not tracked, as in
//     completePublish). Likewise processPubrel overwrites (PUBCOMP) and deletes the
//     entry holding the id of the client's PUBREL: the store hook keeps it at
//     OnPacketRead and puts it back at that PUBREL's OnQosComplete/OnQosDropped. Left
//     as mochi does it: a publish an OnPublish hook refuses (ErrRejectPacket: a
//     `$stream/` topic, a publish the log refused) after processPublish removed the
//     entry; the kept copy is forgotten at disconnect.

import (
	"bytes"
	"reflect"
	"sync"
	"sync/atomic"
	"time"
	"unsafe" // also for go:linkname

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// outbufOffset is the offset of ClientConnection.outbuf, or -1 if mochi changed it.
var outbufOffset = func() int {
	f, ok := reflect.TypeOf(mochi.ClientConnection{}).FieldByName("outbuf")
	if !ok || f.Type != reflect.TypeOf((*bytes.Buffer)(nil)) {
		return -1
	}
	return int(f.Offset)
}()

// writeOrdered writes b to the client's connection after whatever mochi buffered for it,
// so nothing mochi wrote before is overtaken. The caller holds the client's lock (as
// mochi's WritePacket does).
func writeOrdered(cl *mochi.Client, b []byte) (int, error) {
	if err := flushBuffered(cl); err != nil {
		return 0, err
	}
	return cl.Net.Conn.Write(b)
}

// flushBuffered writes what mochi holds in outbuf, as mochi's flushOutbuf. The caller
// holds the client's lock.
func flushBuffered(cl *mochi.Client) error {
	if outbufOffset < 0 {
		return nil
	}
	pending := (**bytes.Buffer)(unsafe.Add(unsafe.Pointer(&cl.Net), outbufOffset))
	if *pending == nil {
		return nil
	}
	if _, err := (*pending).WriteTo(cl.Net.Conn); err != nil {
		return err
	}
	*pending = nil
	return nil
}

// bufferedBytes is how much mochi holds in outbuf for cl, not yet written (for
// diagnostics). The caller holds the client's lock.
func bufferedBytes(cl *mochi.Client) int {
	if outbufOffset < 0 {
		return 0
	}
	if b := *(**bytes.Buffer)(unsafe.Add(unsafe.Pointer(&cl.Net), outbufOffset)); b != nil {
		return b.Len()
	}
	return 0
}

// flushHeld writes what mochi buffered for cl, taking the client's lock.
func flushHeld(cl *mochi.Client) {
	if cl.Closed() || cl.Net.Conn == nil {
		return
	}
	cl.Lock()
	defer cl.Unlock()
	_ = flushBuffered(cl)
}

// pinSendQuota turns mochi's own send quota off for a client with stream subscriptions
// (see the top of this file); w, which already counts every message mochi holds in
// flight, keeps live and replayed deliveries within the client's Receive Maximum. Call
// it on the client's own goroutine (a hook of its read loop), before its readers start.
func pinSendQuota(cl *mochi.Client, w *sendWindow) {
	cl.State.Inflight.ResetSendQuota(0)
	// Messages mochi parked for lack of quota would now never leave: send them (w
	// counts them already, so they pass holdLiveDelivery).
	for _, pk := range cl.State.Inflight.GetAll(true) {
		pk.Expiry = 0
		cl.State.Inflight.Set(pk)
		_ = cl.WritePacket(pk)
	}
}

// holdLiveDelivery, called from OnPacketEncode, waits until a QoS 1/2 PUBLISH that
// mochi writes to a client with a send window fits it (see the top of this file).
func holdLiveDelivery(w *sendWindow, pk *packets.Packet) {
	if pk.FixedHeader.Type != packets.Publish || pk.FixedHeader.Qos == 0 {
		return
	}
	w.admitLive(pk)
}

// retainQuietly sets (or, with an empty payload, clears) a topic's retained message
// the way mochi v2.7.9's unexported Server.retainMessage does — TopicsIndex.RetainMessage
// on a copy, then the OnRetainMessage hook (here only the store's, through store) —
// but without fanning it out to subscribers: a retained message reconciled from another
// node (routes_retained.go) is old news, not a publish. It keeps mochi's Info.Retained
// count current as retainMessage does.
func retainQuietly(broker *mochi.Server, store func(*mochi.Client, packets.Packet, int64), cl *mochi.Client, pk packets.Packet) {
	if broker.Options.Capabilities.RetainAvailable == 0 {
		return
	}
	pk.Created = time.Now().Unix()
	r := broker.Topics.RetainMessage(pk.Copy(false))
	store(cl, pk, r)
	atomic.StoreInt64(&broker.Info.Retained, int64(broker.Topics.Retained.Len()))
}

// hooksOffset is the offset of Server.hooks, or -1 if mochi changed it.
var hooksOffset = func() int {
	f, ok := reflect.TypeOf(mochi.Server{}).FieldByName("hooks")
	if !ok || f.Type != reflect.TypeOf((*mochi.Hooks)(nil)) {
		return -1
	}
	return int(f.Offset)
}()

// serverHooks is the broker's hook chain (Server.hooks), or nil if mochi changed it.
func serverHooks(s *mochi.Server) *mochi.Hooks {
	if hooksOffset < 0 {
		return nil
	}
	return *(**mochi.Hooks)(unsafe.Add(unsafe.Pointer(s), hooksOffset))
}

// mochiRetainMessage is mochi v2.7.9's Server.retainMessage: sets (or clears) the
// topic's retained message unless pk.Ignore, calls the OnRetainMessage hooks and
// updates Info.Retained.
//
//go:linkname mochiRetainMessage github.com/mochi-mqtt/server/v2.(*Server).retainMessage
func mochiRetainMessage(s *mochi.Server, cl *mochi.Client, pk packets.Packet)

// mochiPublishToSubscribers is mochi v2.7.9's Server.publishToSubscribers: delivers pk
// (unless pk.Ignore) to every matching subscription, inline ones included.
//
//go:linkname mochiPublishToSubscribers github.com/mochi-mqtt/server/v2.(*Server).publishToSubscribers
func mochiPublishToSubscribers(s *mochi.Server, pk packets.Packet)

// completePublish finishes a network client's QoS 1/2 publish that processPublish
// already took through validation, ACL and the OnPublish hooks (which held it back
// until stored): what processPublish does after those hooks, in its order (see the top
// of this file). pk is the publish as the OnPublish hooks saw it (origin, times and
// topic alias resolved). fanOut false acknowledges without retaining or delivering,
// as mochi does for a publish an OnPublish hook answered with CodeSuccessIgnore.
//
// Where it differs from mochi, on purpose: a QoS 1 acknowledgement is not put in the
// client's in-flight store and taken out again around the write (mochi's Set then Delete
// of the same id), so the store's OnQosPublish write of the PUBACK is skipped;
// OnQosComplete is still called. An outbound delivery (a PUBLISH or the server's PUBREL)
// that holds the publish's id is kept: mochi v2.7.9 deletes it (QoS 1, and QoS 2 by
// overwriting it with the PUBREC), so it was never resent (see the top of this file).
// A QoS 2 PUBREC is then not tracked in the in-flight store: a duplicate PUBLISH is
// still appended once (the ingest hook's exactly-once state), and the PUBREL is answered
// by mochi (the delivery, which processPubrel removes, is put back: see the top of this
// file) — that loses less than dropping the delivery. What processPacket does around processPublish (the
// Receive Maximum check and disconnect, OnPacketProcessed, sending one message parked
// for send quota) ran when the publish was read, and the $SYS received counters
// count it once, there.
func completePublish(s *mochi.Server, hooks *mochi.Hooks, cl *mochi.Client, pk packets.Packet, fanOut bool) error {
	pk.Ignore = !fanOut
	deliver, err := completeAck(s, hooks, cl, pk)
	if err != nil || !deliver {
		return err
	}
	completeDelivery(s, hooks, cl, pk)
	return nil
}

// completeAck is completePublish up to and including the acknowledgement (pk.Ignore
// already set); deliver reports whether completeDelivery must follow. The ingest
// drainer acknowledges a whole group this way first, in one write, and delivers
// after (ingest.go): mochi's order (retain, ack, fan-out, OnPublished) holds for each
// publish, and acks never wait behind the fan-out of earlier publishes.
func completeAck(s *mochi.Server, hooks *mochi.Hooks, cl *mochi.Client, pk packets.Packet) (deliver bool, err error) {
	restoreOutbound(s, cl, pk.PacketID, packets.Publish)
	if pki, ok := cl.State.Inflight.Get(pk.PacketID); ok {
		if pki.FixedHeader.Type == packets.Pubrec { // [MQTT-4.3.3-10]
			return false, cl.WritePacket(publishAck(s, pk, packets.Pubrec, packets.ErrPacketIdentifierInUse))
		}
		if !outbound(pki) && cl.State.Inflight.Delete(pk.PacketID) { // [MQTT-4.3.2-5]
			atomic.AddInt64(&s.Info.Inflight, -1)
		}
	}
	if pk.FixedHeader.Retain {
		mochiRetainMessage(s, cl, pk)
	}
	if pk.FixedHeader.Qos == 1 {
		ack := publishAck(s, pk, packets.Puback, packets.QosCodes[1]) // [MQTT-4.3.2-4]
		if err := cl.WritePacket(ack); err != nil {
			return false, err
		}
		hooks.OnQosComplete(cl, ack)
	} else {
		cl.State.Inflight.DecreaseReceiveQuota() // given back at PUBREL (processPubrel)
		ack := publishAck(s, pk, packets.Pubrec, packets.CodeSuccess)
		if pki, ok := cl.State.Inflight.Get(pk.PacketID); ok && outbound(pki) {
			// An outbound delivery holds the id: keep it (see above).
		} else if cl.State.Inflight.Set(ack) {
			atomic.AddInt64(&s.Info.Inflight, 1)
			hooks.OnQosPublish(cl, ack, ack.Created, 0)
		}
		if err := cl.WritePacket(ack); err != nil {
			return false, err
		}
	}
	return true, nil
}

// completeDelivery is the rest of completePublish after completeAck: the fan-out to
// subscribers and the OnPublished hooks.
func completeDelivery(s *mochi.Server, hooks *mochi.Hooks, cl *mochi.Client, pk packets.Packet) {
	mochiPublishToSubscribers(s, pk)
	hooks.OnPublished(cl, pk)
}

// publishAck is mochi v2.7.9's buildAck for a publish's PUBACK/PUBREC.
func publishAck(s *mochi.Server, pk packets.Packet, typ byte, reason packets.Code) packets.Packet {
	props := pk.Properties
	if s.Options.Capabilities.Compatibilities.NoInheritedPropertiesOnAck {
		props = packets.Properties{}
	}
	if reason.Code >= packets.ErrUnspecifiedError.Code {
		props.ReasonString = reason.Reason
	}
	now := time.Now().Unix()
	return packets.Packet{
		FixedHeader: packets.FixedHeader{Type: typ},
		PacketID:    pk.PacketID,
		ReasonCode:  reason.Code,
		Properties:  props,
		Created:     now,
		Expiry:      now + s.Options.Capabilities.MaximumMessageExpiryInterval,
	}
}

// outbound tells whether an entry of mochi's in-flight store is a server→client
// delivery: a QoS 1/2 PUBLISH, or the server's PUBREL awaiting the client's PUBCOMP
// (processPubrec). The other entries are the server's acknowledgements of the client's
// own publishes (see the top of this file).
func outbound(pk packets.Packet) bool {
	return pk.FixedHeader.Type == packets.Publish || pk.FixedHeader.Type == packets.Pubrel
}

// endsDelivery tells whether pk, as mochi v2.7.9 passes it to OnQosComplete or
// OnQosDropped, ends a server→client delivery (the client's PUBACK, PUBREC or PUBCOMP,
// or a dropped outbound in-flight entry) rather than a client→server flow (an
// acknowledgement the server built, or the client's PUBREL). Both directions use the
// same packet ids independently (see the top of this file). Packets read from the
// client have no Created time; those mochi builds (buildAck) and the in-flight
// entries it drops have one. mochi's clearExpiredInflights calls OnQosDropped a second
// time with only the id of an entry it already passed whole: that call ends nothing.
func endsDelivery(pk packets.Packet) bool {
	switch pk.FixedHeader.Type {
	case packets.Publish:
		return true
	case packets.Puback, packets.Pubrec, packets.Pubcomp:
		return pk.Created == 0
	case packets.Pubrel:
		return pk.Created != 0
	}
	return false
}

// keptOutbound holds, per client and packet id, the outbound delivery mochi v2.7.9's
// processPublish is about to remove because the client's inbound PUBLISH reuses its id
// (see the top of this file); nkept counts the entries, so the common case skips the map.
var (
	keptOutbound sync.Map // keptKey -> packets.Packet
	nkept        atomic.Int64
)

type keptKey struct {
	cl *mochi.Client
	id uint16
	// by: the inbound packet type the entry was kept for (PUBLISH or PUBREL). A held
	// QoS 2 publish's OnPublished runs after its PUBREC was written, on another
	// goroutine, so it can meet the client's PUBREL of the same id being processed:
	// keyed by type, it cannot take (and put back too early) what was kept for the PUBREL.
	by byte
}

// keepOutbound, called from OnPacketRead (before processPublish or processPubrel),
// remembers the outbound delivery holding the id of cl's inbound QoS 1/2 PUBLISH or
// PUBREL pk (and forgets one remembered for an earlier packet with that id).
func keepOutbound(cl *mochi.Client, pk packets.Packet) {
	if pk.FixedHeader.Type == packets.Publish && pk.FixedHeader.Qos == 0 || cl.Net.Inline ||
		pk.FixedHeader.Type != packets.Publish && pk.FixedHeader.Type != packets.Pubrel {
		return
	}
	k := keptKey{cl, pk.PacketID, pk.FixedHeader.Type}
	if nkept.Load() > 0 {
		if _, ok := keptOutbound.LoadAndDelete(k); ok {
			nkept.Add(-1)
		}
	}
	if pki, ok := cl.State.Inflight.Get(pk.PacketID); ok && outbound(pki) {
		if _, loaded := keptOutbound.LoadOrStore(k, pki); !loaded {
			nkept.Add(1)
		}
	}
}

// forgetOutbound drops what keepOutbound remembered for cl (its connection ended).
func forgetOutbound(cl *mochi.Client) {
	if nkept.Load() == 0 {
		return
	}
	keptOutbound.Range(func(k, _ any) bool {
		if k.(keptKey).cl == cl {
			if _, ok := keptOutbound.LoadAndDelete(k); ok {
				nkept.Add(-1)
			}
		}
		return true
	})
}

// restoreOutbound puts back in cl's in-flight store the delivery keepOutbound kept for
// the client's packet of type by (PUBLISH or PUBREL) with packet id id, unless the id
// was taken meanwhile by another delivery.
func restoreOutbound(s *mochi.Server, cl *mochi.Client, id uint16, by byte) {
	if nkept.Load() == 0 {
		return
	}
	v, ok := keptOutbound.LoadAndDelete(keptKey{cl, id, by})
	if !ok {
		return
	}
	nkept.Add(-1)
	if have, ok := cl.State.Inflight.Get(id); ok && outbound(have) {
		return
	}
	if cl.State.Inflight.Set(v.(packets.Packet)) {
		atomic.AddInt64(&s.Info.Inflight, 1)
	}
}
