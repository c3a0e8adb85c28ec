package mqtt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Retained messages across the cluster: each node keeps its own retained store
// (store.go), fed by its clients and by the retained publishes other nodes forward.
// Forwarding is best effort, so a node that was down or cut off misses a change. To
// converge, every retained change forwarded carries a stamp — the publishing node's
// clock (ns) and id — and every node remembers, per topic, the stamp of the last
// change it applied (clears included). When a node answers a route resync (a peer
// restarted, or lost a delta), it also sends the peer every stamped retained message
// and clear it holds; the peer keeps whichever is newer, last writer wins, and stores
// it without delivering it to live subscribers.
//
// Stamps are stored with the retained messages (store.go, kindRetStamp: a clear keeps
// its stamp), and loaded at start (loadStamps), so nodes that differed converge at the
// route resync that follows a restart, even of every node. A retained message stored
// without a stamp (a will, or stored by an earlier version) counts as oldest.

// retStamp orders retained changes: by time, then node id.
type retStamp struct {
	ts   int64
	node uint64
}

func (a retStamp) after(b retStamp) bool {
	return a.ts > b.ts || (a.ts == b.ts && a.node > b.node)
}

// loadStamps takes the stamps stored with the retained messages, at start.
func (r *routes) loadStamps(stamps map[string]retStamp) {
	r.retMu.Lock()
	defer r.retMu.Unlock()
	for t, st := range stamps {
		r.stamps[t] = st
		if st.node == r.peers.Self() && st.ts > r.lastStamp {
			// This node's next stamps stay above its stored ones, whatever its clock.
			r.lastStamp = st.ts
		}
	}
}

// nextStamp stamps a retained change about to be published on this node (OnPublish).
// It is not the topic's applied stamp until mochi has retained the change (retained):
// a resync in between would send the peer the message it replaces under the new
// stamp, and the peer, holding that, would then take the change itself as not newer.
func (r *routes) nextStamp() retStamp {
	r.retMu.Lock()
	defer r.retMu.Unlock()
	return r.nextStampLocked()
}

func (r *routes) nextStampLocked() retStamp {
	ts := time.Now().UnixNano()
	if ts <= r.lastStamp {
		ts = r.lastStamp + 1
	}
	r.lastStamp = ts
	return retStamp{ts: ts, node: r.peers.Self()}
}

// stampLocal stamps a retained change already retained here (a will: mochi retains
// it before the route hook sees it) and records it as applied.
func (r *routes) stampLocal(topic string) retStamp {
	r.retMu.Lock()
	defer r.retMu.Unlock()
	st := r.nextStampLocked()
	r.stamps[topic] = st
	return st
}

// retained records the stamp of a change mochi just retained here (OnRetainMessage),
// published on this node. One forwarded by another node is recorded by applyRetained.
func (r *routes) retained(cl *mochi.Client, pk packets.Packet) {
	if cl == r.peer {
		return
	}
	if note, _ := noteOf(pk); note.stamped {
		r.retMu.Lock()
		r.stamps[pk.TopicName] = note.stamp
		r.retMu.Unlock()
	}
}

func appendStamp(b []byte, kind byte, st retStamp) []byte {
	b = append(b, kind)
	b = binary.BigEndian.AppendUint64(b, uint64(st.ts))
	return binary.BigEndian.AppendUint64(b, st.node)
}

// handleRetained applies a stamped retained change from another node: live (a
// forwarded publish, delivered to subscribers here too) or not (a resync). An older
// change than the one applied here is still delivered live, but not retained.
func (r *routes) handleRetained(msg []byte, live bool) error {
	if len(msg) < 17 {
		return fmt.Errorf("retained route message: %d bytes", len(msg))
	}
	st := retStamp{ts: int64(binary.BigEndian.Uint64(msg[1:])), node: binary.BigEndian.Uint64(msg[9:])}
	pk, err := decodeForwarded(msg[17:])
	if err != nil {
		return err
	}
	return r.applyRetained(st, pk, live)
}

// applyRetained keeps pk as the topic's retained message if st is newer than the
// change applied here, and for a live change delivers it to the subscribers here
// (pk.Filters may name the shared groups this node serves, routes_shared.go).
func (r *routes) applyRetained(st retStamp, pk packets.Packet, live bool) error {
	r.retMu.Lock()
	defer r.retMu.Unlock()
	newer := st.after(r.stamps[pk.TopicName])
	if newer {
		r.stamps[pk.TopicName] = st
		// The retained store keeps the stamp with the message (store.go).
		note, _ := noteOf(pk)
		note.stamped, note.stamp = true, st
		note.attach(&pk)
	}
	switch {
	case live && !newer:
		pk.FixedHeader.Retain = false
		return r.inject(pk)
	case live:
		return r.inject(pk)
	case newer && r.retain != nil:
		r.retain(pk)
	}
	return nil
}

// retainedSync lists the messages that give a peer every stamped retained message
// and clear this node holds.
func (r *routes) retainedSync() [][]byte {
	r.retMu.Lock()
	stamps := make(map[string]retStamp, len(r.stamps))
	for t, st := range r.stamps {
		stamps[t] = st
	}
	r.retMu.Unlock()
	var out [][]byte
	for topic, st := range stamps {
		pk, ok := r.broker.Topics.Retained.Get(topic)
		if !ok {
			pk = packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true}, TopicName: topic}
		}
		pk.FixedHeader.Retain = true
		msg, err := encodeForward(appendStamp(nil, routeRetainedSync, st), pk)
		if err != nil {
			r.lg.Warn().Err(err).Str("topic", topic).Msg("encode retained message for another node")
			continue
		}
		out = append(out, msg)
	}
	return out
}

// encodeForward appends pk, MQTT 5 encoded, to prefix.
func encodeForward(prefix []byte, pk packets.Packet) ([]byte, error) {
	out := pk.Copy(false)
	out.ProtocolVersion = 5
	out.Properties.TopicAlias, out.Properties.TopicAliasFlag = 0, false
	out.PacketID = 0
	if out.FixedHeader.Qos > 0 {
		out.PacketID = 1 // encoded for validity only; the receiver does not ack it
	}
	buf := bytes.NewBuffer(prefix)
	if err := out.PublishEncode(buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
