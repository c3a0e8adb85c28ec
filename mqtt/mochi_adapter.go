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
//     client's send quota is positive. pinSendQuota keeps the quota at zero.

import (
	"bytes"
	"reflect"
	"unsafe"

	mochi "github.com/mochi-mqtt/server/v2"
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
	if outbufOffset >= 0 {
		pending := (**bytes.Buffer)(unsafe.Add(unsafe.Pointer(&cl.Net), outbufOffset))
		if *pending != nil {
			if _, err := (*pending).WriteTo(cl.Net.Conn); err != nil {
				return 0, err
			}
			*pending = nil // as mochi's flushOutbuf
		}
	}
	return cl.Net.Conn.Write(b)
}

// pinSendQuota turns mochi's own send quota off for a client with stream subscriptions
// (see the top of this file); the replay window keeps replays within the receive
// maximum, as mochi runs MQTT 3.1.1 clients. Call it on the client's own goroutine (a
// hook of its read loop), before its readers start.
func pinSendQuota(cl *mochi.Client) {
	cl.State.Inflight.ResetSendQuota(0)
	// Messages mochi parked for lack of quota would now never leave: send them.
	for _, pk := range cl.State.Inflight.GetAll(true) {
		pk.Expiry = 0
		cl.State.Inflight.Set(pk)
		_ = cl.WritePacket(pk)
	}
}
