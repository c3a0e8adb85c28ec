package mqtt

import (
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// sendWindow keeps the QoS 1/2 PUBLISH packets written to one connection of a client
// with stream subscriptions, and not yet acknowledged, within the client's Receive
// Maximum: live deliveries (mochi's) and replayed ones (the shard readers') share it.
//
// mochi's own send quota is off for such a client (pinSendQuota, mochi_adapter.go), so
// this is the only flow control it gets: a live delivery waits in mochi's write loop
// for room (holdLiveDelivery), a replay reader reserves room before it takes a packet
// id. The packet ids written are kept, not just counted, so an acknowledgement of a
// packet this window never admitted frees nothing.
type sendWindow struct {
	cl *mochi.Client
	// live is the client's Receive Maximum, which bounds live deliveries; 0 = none
	// announced (MQTT 3.1.1, or an MQTT 5 client without the property: 65,535).
	live int

	mu       sync.Mutex
	sent     map[uint16]struct{} // written, not yet acknowledged
	reserved int                 // taken by replay readers still encoding their packet
	notify   chan struct{}       // closed when room may have freed (or the window closed)
	closed   bool
	holding  atomic.Bool // mochi's write loop waits in admitLive
}

// windowRecheck bounds a live delivery's wait between looks at its connection, so a
// write loop of a connection that ended without our hook hearing of it yet returns.
const windowRecheck = time.Second

func newSendWindow(cl *mochi.Client) *sendWindow {
	w := &sendWindow{
		cl:     cl,
		live:   int(cl.Properties.Props.ReceiveMaximum),
		sent:   map[uint16]struct{}{},
		notify: make(chan struct{}),
	}
	// What is in flight already counts: messages written before the window existed,
	// and (after a reconnection) those mochi resent.
	for _, pk := range cl.State.Inflight.GetAll(false) {
		if pk.FixedHeader.Type == packets.Publish && pk.FixedHeader.Qos > 0 {
			w.sent[pk.PacketID] = struct{}{}
		}
	}
	return w
}

// used is how much of the window is taken; the caller holds mu.
func (w *sendWindow) used() int { return len(w.sent) + w.reserved }

// Inflight returns how many QoS 1/2 packets are written and not yet acknowledged.
func (w *sendWindow) inflight() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.sent)
}

// wakeChan is closed when an acknowledgement may have freed room. Take it before
// looking at the window so an acknowledgement in between is not missed.
func (w *sendWindow) wakeChan() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.notify
}

// reserve takes one place for a replay message if fewer than limit are in use.
func (w *sendWindow) reserve(limit int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.used() >= limit {
		return false
	}
	w.reserved++
	return true
}

// commit turns a reservation into the packet id written with it.
func (w *sendWindow) commit(pid uint16) {
	w.mu.Lock()
	w.reserved--
	w.sent[pid] = struct{}{}
	w.mu.Unlock()
}

// cancel gives a reservation back (the packet was not written).
func (w *sendWindow) cancel() {
	w.mu.Lock()
	w.reserved--
	w.wakeLocked()
	w.mu.Unlock()
}

// admitLive waits until a live delivery pk fits the client's Receive Maximum and counts
// it as written. It runs on mochi's write loop of the connection (holdLiveDelivery), so
// what mochi queued after pk waits behind it, in order. A resent packet (its
// connection's first write of it after a reconnection) is counted, never held: mochi
// resends on the connection's own goroutine before it reads any acknowledgement.
func (w *sendWindow) admitLive(pk *packets.Packet) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.sent[pk.PacketID]; ok {
		return
	}
	if w.live > 0 && !pk.FixedHeader.Dup && w.used() >= w.live {
		// Packets the read loop wrote meanwhile sit in mochi's buffer behind this one:
		// from now on OnPacketSent flushes them, and what is there already goes now.
		w.holding.Store(true)
		defer w.holding.Store(false)
		w.mu.Unlock()
		flushHeld(w.cl)
		w.mu.Lock()
		var recheck *time.Timer
		for w.used() >= w.live && !w.closed && !w.cl.Closed() {
			wake := w.notify
			w.mu.Unlock()
			if recheck == nil {
				recheck = time.NewTimer(windowRecheck)
			} else {
				recheck.Reset(windowRecheck)
			}
			select {
			case <-wake:
			case <-recheck.C:
			}
			w.mu.Lock()
		}
		if recheck != nil {
			recheck.Stop()
		}
		if w.closed {
			return
		}
	}
	w.sent[pk.PacketID] = struct{}{}
}

// acked frees the place of an acknowledged (or dropped) packet.
func (w *sendWindow) acked(pid uint16) {
	w.mu.Lock()
	if _, ok := w.sent[pid]; ok {
		delete(w.sent, pid)
		w.wakeLocked()
	}
	w.mu.Unlock()
}

// close ends the window with its connection: whoever waits for room returns.
func (w *sendWindow) close() {
	w.mu.Lock()
	w.closed = true
	w.wakeLocked()
	w.mu.Unlock()
}

func (w *sendWindow) wakeLocked() {
	close(w.notify)
	w.notify = make(chan struct{})
}

// openWindow returns the send window of cl, making it (and turning mochi's own send
// quota off) on the first stream subscription of the connection. Call it on the
// client's own goroutine (a hook of its read loop), before its readers start.
func (h *ReplayHook) openWindow(cl *mochi.Client) *sendWindow {
	if w, ok := h.windows.Load(cl); ok {
		return w.(*sendWindow)
	}
	w := newSendWindow(cl)
	if prev, loaded := h.windows.LoadOrStore(cl, w); loaded {
		return prev.(*sendWindow)
	}
	h.nwindows.Add(1)
	pinSendQuota(cl, w)
	return w
}

// windowOf returns the send window of cl, nil if it has no stream subscription.
func (h *ReplayHook) windowOf(cl *mochi.Client) *sendWindow {
	if h.nwindows.Load() == 0 {
		return nil // no stream subscriber at all: skip the map on every packet
	}
	if w, ok := h.windows.Load(cl); ok {
		return w.(*sendWindow)
	}
	return nil
}

// closeWindow ends cl's window when its connection ends.
func (h *ReplayHook) closeWindow(cl *mochi.Client) {
	if w, ok := h.windows.LoadAndDelete(cl); ok {
		h.nwindows.Add(-1)
		w.(*sendWindow).close()
	}
}
