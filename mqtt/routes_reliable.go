package mqtt

import (
	"encoding/binary"
	"fmt"
	"sync"
	"time"
)

// QoS 1/2 forwards between nodes survive a brief link drop (docs/cluster-mqtt.md).
// The transport delivers in order on each link but drops what was queued or in flight
// when a link breaks, and a link that died silently takes up to its timeout to be
// noticed. So every QoS 1/2 forward to a node carries a sequence number under the
// sender's epoch and stays in a bounded per-node outbox until that node acknowledges
// it. The receiver delivers in sequence order only: a forward after a gap is dropped
// and the rest asked for again from the first missing one; a forward seen before is
// dropped. The sender says where it is on every route tick while something is
// unacknowledged, so a lost tail is noticed too. The outbox keeps at most
// outboxMaxMsgs forwards or outboxMaxBytes per node: beyond that, the oldest are
// given up (counted), and a node asking for them is told to skip them.
//
// QoS 0 forwards stay at most once, and a node that restarts starts afresh: what a
// node's clients miss while it is down is for `$stream` replay (or a persistent
// session on a node that stays up), as in EMQX.

// Reliable-forwarding messages (route message kinds, routes.go).
const (
	routeReliable byte = 9  // epoch, seq, then a route message (a publish forward)
	routeSeq      byte = 10 // epoch, last seq sent: the receiver asks for what it lacks
	routeAck      byte = 11 // epoch, seq: the receiver delivered everything up to seq
	routeResend   byte = 12 // epoch, seq: please send again from seq
	routeSkip     byte = 13 // epoch, seq: the forwards before seq are given up
)

const (
	outboxMaxMsgs  = 16384
	outboxMaxBytes = 16 << 20
	ackEvery       = 512 // forwards delivered between two acknowledgements, at most
	// resendBatch bounds the forwards one resend request brings, so a resend never
	// fills the link's queue, which Raft's messages share; the receiver asks for the
	// next batch as soon as one arrives (it made progress), or again after
	// resendRetry if nothing came.
	resendBatch = 1024
	resendRetry = time.Second
)

// outbox holds the QoS 1/2 forwards to one node not yet acknowledged, oldest first.
type outbox struct {
	mu    sync.Mutex
	next  uint64 // the next forward's seq (from 1)
	msgs  []outMsg
	bytes int
}

type outMsg struct {
	seq uint64
	b   []byte
}

// inbox is what this node received from one node's reliable forwards.
type inbox struct {
	mu         sync.Mutex
	epoch      uint64
	next       uint64 // the seq expected next
	unacked    int    // delivered since the last acknowledgement
	lastResend time.Time
	askedFrom  uint64 // next when the last resend request went out
}

func (r *routes) outboxOf(n uint64) *outbox {
	r.relMu.Lock()
	defer r.relMu.Unlock()
	ob := r.outboxes[n]
	if ob == nil {
		ob = &outbox{next: 1}
		r.outboxes[n] = ob
	}
	return ob
}

func (r *routes) inboxOf(n uint64) *inbox {
	r.relMu.Lock()
	defer r.relMu.Unlock()
	ib := r.inboxes[n]
	if ib == nil {
		ib = &inbox{}
		r.inboxes[n] = ib
	}
	return ib
}

// sendForward sends a publish forward to node n: a QoS 1/2 one numbered and kept
// until acknowledged. It returns the forward's seq (0: QoS 0) and the send's error; a
// numbered forward that failed to send is still kept, for the resend.
func (r *routes) sendForward(n uint64, msg []byte, qos byte) (uint64, error) {
	if qos == 0 {
		return 0, r.peers.Send(n, msg)
	}
	ob := r.outboxOf(n)
	ob.mu.Lock()
	defer ob.mu.Unlock()
	seq := ob.next
	ob.next++
	b := appendHeader(make([]byte, 0, 17+len(msg)), routeReliable, r.epoch, seq)
	b = append(b, msg...)
	ob.msgs = append(ob.msgs, outMsg{seq: seq, b: b})
	ob.bytes += len(b)
	for len(ob.msgs) > 1 && (len(ob.msgs) > outboxMaxMsgs || ob.bytes > outboxMaxBytes) {
		ob.bytes -= len(ob.msgs[0].b)
		ob.msgs[0] = outMsg{}
		ob.msgs = ob.msgs[1:]
		r.reliable.WithLabelValues("given_up").Inc()
	}
	return seq, r.peers.Send(n, b)
}

// replaceForward replaces the kept forward seq to node n (a forward whose shared
// groups went to other nodes when it could not be sent keeps only its plain part).
func (r *routes) replaceForward(n, seq uint64, msg []byte) {
	ob := r.outboxOf(n)
	ob.mu.Lock()
	defer ob.mu.Unlock()
	for i := range ob.msgs {
		if ob.msgs[i].seq == seq {
			b := appendHeader(make([]byte, 0, 17+len(msg)), routeReliable, r.epoch, seq)
			b = append(b, msg...)
			ob.bytes += len(b) - len(ob.msgs[i].b)
			ob.msgs[i].b = b
			return
		}
	}
}

// handleReliable takes a message of the reliable-forwarding exchange from node from.
func (r *routes) handleReliable(from uint64, msg []byte) error {
	if len(msg) < 17 {
		return fmt.Errorf("route message of kind %d: %d bytes", msg[0], len(msg))
	}
	epoch, seq := binary.BigEndian.Uint64(msg[1:]), binary.BigEndian.Uint64(msg[9:])
	switch msg[0] {
	case routeReliable:
		ib := r.inboxOf(from)
		ib.mu.Lock()
		defer ib.mu.Unlock()
		if ib.epoch != epoch {
			// The sender (or this node) started since: begin where it is.
			ib.epoch, ib.next, ib.unacked = epoch, seq, 0
		}
		switch {
		case seq < ib.next:
			return nil // delivered before (a resend)
		case seq > ib.next:
			r.askResendLocked(from, ib)
			return nil
		}
		ib.next++
		ib.unacked++
		if ib.unacked >= ackEvery {
			r.ackLocked(from, ib)
		}
		return r.handle(from, msg[17:])
	case routeSeq:
		ib := r.inboxOf(from)
		ib.mu.Lock()
		defer ib.mu.Unlock()
		if ib.epoch != epoch {
			// Nothing received from this sender's incarnation yet: what it kept from
			// before this node knew it is not asked for.
			ib.epoch, ib.next, ib.unacked = epoch, seq+1, 1
		}
		if seq >= ib.next {
			r.askResendLocked(from, ib)
		}
		// Acknowledged even if nothing new: an acknowledgement may have been lost.
		r.ackLocked(from, ib)
	case routeSkip:
		ib := r.inboxOf(from)
		ib.mu.Lock()
		defer ib.mu.Unlock()
		if ib.epoch == epoch && seq > ib.next {
			r.reliable.WithLabelValues("skipped").Add(float64(seq - ib.next))
			ib.next = seq
		}
	case routeAck:
		if epoch != r.epoch {
			return nil
		}
		ob := r.outboxOf(from)
		ob.mu.Lock()
		i := 0
		for i < len(ob.msgs) && ob.msgs[i].seq <= seq {
			ob.bytes -= len(ob.msgs[i].b)
			i++
		}
		clear(ob.msgs[:i])
		ob.msgs = ob.msgs[i:]
		ob.mu.Unlock()
	case routeResend:
		if epoch != r.epoch {
			return nil
		}
		return r.resend(from, seq)
	}
	return nil
}

// askResendLocked asks node from for its forwards from the one expected next: at once
// if a batch asked for before arrived (or none was asked for), else once per
// resendRetry.
func (r *routes) askResendLocked(from uint64, ib *inbox) {
	if ib.askedFrom == ib.next && time.Since(ib.lastResend) < resendRetry {
		return
	}
	ib.lastResend, ib.askedFrom = time.Now(), ib.next
	if err := r.peers.Send(from, appendHeader(nil, routeResend, ib.epoch, ib.next)); err != nil {
		r.lg.Debug().Err(err).Uint64("node", from).Msg("resend request not sent")
	}
}

func (r *routes) ackLocked(from uint64, ib *inbox) {
	if err := r.peers.Send(from, appendHeader(nil, routeAck, ib.epoch, ib.next-1)); err == nil {
		ib.unacked = 0
	}
}

// resend sends node n its kept forwards from seq on (at most resendBatch), after a
// skip if the first of them were given up.
func (r *routes) resend(n, seq uint64) error {
	ob := r.outboxOf(n)
	ob.mu.Lock()
	defer ob.mu.Unlock()
	i := 0
	for i < len(ob.msgs) && ob.msgs[i].seq < seq {
		i++
	}
	first := ob.next
	if i < len(ob.msgs) {
		first = ob.msgs[i].seq
	}
	if first > seq {
		if err := r.peers.Send(n, appendHeader(nil, routeSkip, r.epoch, first)); err != nil {
			return nil // the link is down again: the receiver asks again
		}
	}
	for _, m := range ob.msgs[i:min(len(ob.msgs), i+resendBatch)] {
		if err := r.peers.Send(n, m.b); err != nil {
			return nil
		}
		r.reliable.WithLabelValues("resent").Inc()
	}
	return nil
}

// reliableTick runs on every route tick: each node with unacknowledged forwards is
// told the last seq sent to it, each node this one received forwards from since the
// last acknowledgement gets one, and what was kept for a node no longer in the
// cluster is dropped.
func (r *routes) reliableTick() {
	members := map[uint64]bool{}
	for _, n := range r.peers.Nodes() {
		members[n] = true
	}
	r.relMu.Lock()
	for n := range r.outboxes {
		if !members[n] {
			delete(r.outboxes, n) // a removed node: nothing to keep for it
		}
	}
	for n := range r.inboxes {
		if !members[n] {
			delete(r.inboxes, n)
		}
	}
	obs := make(map[uint64]*outbox, len(r.outboxes))
	for n, ob := range r.outboxes {
		obs[n] = ob
	}
	ibs := make(map[uint64]*inbox, len(r.inboxes))
	for n, ib := range r.inboxes {
		ibs[n] = ib
	}
	r.relMu.Unlock()
	for n, ob := range obs {
		ob.mu.Lock()
		pending, last := len(ob.msgs) > 0, ob.next-1
		ob.mu.Unlock()
		if pending {
			_ = r.peers.Send(n, appendHeader(nil, routeSeq, r.epoch, last))
		}
	}
	for n, ib := range ibs {
		ib.mu.Lock()
		if ib.unacked > 0 {
			r.ackLocked(n, ib)
		}
		ib.mu.Unlock()
	}
}
