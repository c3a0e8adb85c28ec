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

import (
	"bytes"
	"reflect"
	"sync/atomic"
	"time"
	"unsafe"

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
