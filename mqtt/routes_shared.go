package mqtt

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strings"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Shared subscriptions across the cluster (docs/cluster-mqtt.md).
// A group ($share/name/filter) may have members on several nodes; a publish must reach
// one member of each matching group, cluster-wide. The route table carries every
// group with its member count per node (routes.go, routeOpShare). The node a publish
// arrives on picks, per matching group, one member node at random, each node weighted
// by its member count (every member equally likely, as EMQX's `random` strategy),
// itself included; mochi then picks one member on that node. The pick is made in
// OnPublish, before mochi delivers locally, and carried in the packet (shareNote) to
// OnSelectSubscribers, which leaves out of the local delivery the groups picked
// elsewhere, and to OnPublished, which sends each remote node its groups with the
// publish (routeShared). A node told to serve a group it has no member of any more
// (the member left before the route table caught up), or a picked node that cannot be
// sent to, hands the group on to another member node not tried yet, so a member that
// is gone costs no message while another member exists.

// shareHeader is what a routeShared message says besides the publish.
type shareHeader struct {
	skipPlain bool     // the node already has the publish for its plain subscribers
	stamped   bool     // a live retained change, with its stamp
	stamp     retStamp // (routes_retained.go)
	tried     []uint64 // nodes picked for these groups that had no member or no link
	groups    []string // the groups to serve here
}

const (
	shareSkipPlain byte = 1
	shareStamped   byte = 2
)

func encodeShared(h shareHeader, pk packets.Packet) ([]byte, error) {
	var flags byte
	if h.skipPlain {
		flags |= shareSkipPlain
	}
	if h.stamped {
		flags |= shareStamped
	}
	b := []byte{routeShared, flags}
	if h.stamped {
		b = binary.BigEndian.AppendUint64(b, uint64(h.stamp.ts))
		b = binary.BigEndian.AppendUint64(b, h.stamp.node)
	}
	b = append(b, byte(len(h.tried)))
	for _, n := range h.tried {
		b = binary.BigEndian.AppendUint64(b, n)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(h.groups)))
	for _, g := range h.groups {
		b = appendFilter(b, g)
	}
	return encodeForward(b, pk)
}

func decodeShared(b []byte) (shareHeader, packets.Packet, error) {
	var h shareHeader
	if len(b) < 1 {
		return h, packets.Packet{}, io.ErrUnexpectedEOF
	}
	flags := b[0]
	b = b[1:]
	h.skipPlain = flags&shareSkipPlain != 0
	h.stamped = flags&shareStamped != 0
	if h.stamped {
		if len(b) < 16 {
			return h, packets.Packet{}, io.ErrUnexpectedEOF
		}
		h.stamp = retStamp{ts: int64(binary.BigEndian.Uint64(b)), node: binary.BigEndian.Uint64(b[8:])}
		b = b[16:]
	}
	if len(b) < 1 || len(b) < 1+8*int(b[0]) {
		return h, packets.Packet{}, io.ErrUnexpectedEOF
	}
	for i := range int(b[0]) {
		h.tried = append(h.tried, binary.BigEndian.Uint64(b[1+8*i:]))
	}
	b = b[1+8*int(b[0]):]
	if len(b) < 2 {
		return h, packets.Packet{}, io.ErrUnexpectedEOF
	}
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	for range n {
		g, rest, err := readFilter(b)
		if err != nil {
			return h, packets.Packet{}, err
		}
		h.groups, b = append(h.groups, g), rest
	}
	pk, err := decodeForwarded(b)
	return h, pk, err
}

// routeNote is what the route hook decided about one publish, carried from OnPublish
// to mochi's retained-message store (OnRetainMessage), OnSelectSubscribers and
// OnPublished in the packet's Filters, which a PUBLISH does not use otherwise
// (mochi_adapter.go): the first entry marks the note (Qos: flags), then one entry per
// shared group (Filter) with the node picked for it (Identifier), then the retained
// change's stamp, if any (routes_retained.go).
type routeNote struct {
	skipPlain bool              // leave out plain subscribers (the node had its copy)
	grouped   bool              // picks were made: groups not in picks are not served here
	picks     map[string]uint64 // group → node
	stamped   bool
	stamp     retStamp
}

const (
	noteMarker    = "\x00mqstreams-note"
	noteStamp     = "\x00stamp "
	noteSkipPlain = 1
	noteGrouped   = 2
)

func (n routeNote) attach(pk *packets.Packet) {
	var flags byte
	if n.skipPlain {
		flags |= noteSkipPlain
	}
	if n.grouped {
		flags |= noteGrouped
	}
	fs := make(packets.Subscriptions, 0, 2+len(n.picks))
	fs = append(fs, packets.Subscription{Filter: noteMarker, Qos: flags})
	for g, node := range n.picks {
		fs = append(fs, packets.Subscription{Filter: g, Identifier: int(node)})
	}
	if n.stamped {
		fs = append(fs, packets.Subscription{Filter: fmt.Sprintf("%s%d %d", noteStamp, n.stamp.ts, n.stamp.node)})
	}
	pk.Filters = fs
}

func noteOf(pk packets.Packet) (routeNote, bool) {
	if len(pk.Filters) == 0 || pk.Filters[0].Filter != noteMarker {
		return routeNote{}, false
	}
	flags := pk.Filters[0].Qos
	n := routeNote{skipPlain: flags&noteSkipPlain != 0, grouped: flags&noteGrouped != 0,
		picks: make(map[string]uint64, len(pk.Filters)-1)}
	for _, f := range pk.Filters[1:] {
		if strings.HasPrefix(f.Filter, noteStamp) {
			if _, err := fmt.Sscanf(f.Filter[len(noteStamp):], "%d %d", &n.stamp.ts, &n.stamp.node); err == nil {
				n.stamped = true
			}
			continue
		}
		n.picks[f.Filter] = uint64(f.Identifier)
	}
	return n, true
}

// member is a node and how many members of a group it has.
type member struct {
	node uint64
	n    int
}

// pickMember picks a node at random, weighted by members; false if there is none.
func pickMember(ms []member) (uint64, bool) {
	total := 0
	for _, m := range ms {
		total += m.n
	}
	if total == 0 {
		return 0, false
	}
	k := rand.IntN(total)
	for _, m := range ms {
		if k < m.n {
			return m.node, true
		}
		k -= m.n
	}
	return 0, false
}

// groupMembers lists the member nodes of group g: the remote ones from the route
// table's entries (node key → subscription carrying the count) and this node with
// local members, less the nodes in skip.
func (r *routes) groupMembers(remote map[string]packets.Subscription, local int, skip func(uint64) bool) []member {
	ms := make([]member, 0, len(remote)+1)
	if local > 0 && !skip(r.peers.Self()) {
		ms = append(ms, member{node: r.peers.Self(), n: local})
	}
	for key, sub := range remote {
		n := nodeFromKey(key)
		if n == r.peers.Self() || skip(n) {
			continue
		}
		ms = append(ms, member{node: n, n: max(sub.Identifier, 1)})
	}
	// Map order must not bias the pick's walk; the weights alone decide.
	sort.Slice(ms, func(i, j int) bool { return ms[i].node < ms[j].node })
	return ms
}

// pick notes, in a publish about to be delivered here (OnPublish), the node picked
// for each shared group that has members on other nodes (groups with members here
// only are left to mochi), and a retained change's stamp, which the retained store
// keeps with the message (store.go) and the forwards carry.
func (r *routes) pick(cl *mochi.Client, pk packets.Packet) packets.Packet {
	if cl == r.peer || pk.FixedHeader.Type != packets.Publish || strings.HasPrefix(pk.TopicName, "$") {
		return pk
	}
	var note routeNote
	if pk.FixedHeader.Retain {
		note.stamped, note.stamp = true, r.nextStamp()
	}
	if r.remoteGroups.Load() > 0 {
		if remote := r.index.Subscribers(pk.TopicName).Shared; len(remote) > 0 {
			local := r.broker.Topics.Subscribers(pk.TopicName).Shared
			note.grouped, note.picks = true, make(map[string]uint64, len(remote))
			none := func(uint64) bool { return false }
			for g, nodes := range remote {
				if n, ok := pickMember(r.groupMembers(nodes, len(local[g]), none)); ok {
					note.picks[g] = n
				}
			}
		}
	}
	if note.stamped || note.grouped {
		note.attach(&pk)
	}
	return pk
}

// selectLocal leaves out of a local delivery the shared groups another node serves
// (OnSelectSubscribers): for a publish made here, those picked elsewhere; for one
// forwarded by another node, all but those it was sent here for.
func (r *routes) selectLocal(subs *mochi.Subscribers, pk packets.Packet) *mochi.Subscribers {
	note, _ := noteOf(pk)
	self := r.peers.Self()
	for g := range subs.Shared {
		n, picked := note.picks[g]
		switch {
		case pk.Origin == peerClientID && !picked:
			// Forwarded: the sender picked the groups served here.
			delete(subs.Shared, g)
		case note.grouped && picked && n != self:
			delete(subs.Shared, g)
		}
	}
	if note.skipPlain {
		clear(subs.Subscriptions)
		clear(subs.InlineSubscriptions)
	}
	return subs
}

// remotePicks lists, by node, the shared groups a publish made here goes to another
// node for. A publish that carries no note (a will, or one published before any group
// had remote members) gets its picks now, among the other nodes, for the groups with
// no member here (mochi served those).
func (r *routes) remotePicks(pk packets.Packet, remote map[string]map[string]packets.Subscription) map[uint64][]string {
	if len(remote) == 0 {
		return nil
	}
	out := map[uint64][]string{}
	self := r.peers.Self()
	if note, _ := noteOf(pk); note.grouped {
		for g, n := range note.picks {
			if n != self {
				out[n] = append(out[n], g)
			}
		}
		return out
	}
	local := r.broker.Topics.Subscribers(pk.TopicName).Shared
	none := func(uint64) bool { return false }
	for g, nodes := range remote {
		if len(local[g]) > 0 {
			continue
		}
		if n, ok := pickMember(r.groupMembers(nodes, 0, none)); ok {
			out[n] = append(out[n], g)
		}
	}
	return out
}

// handleShared delivers a publish another node sent here for some shared groups (and,
// unless flagged, for the plain subscribers here); a group with no member here any
// more is handed on to another member node.
func (r *routes) handleShared(from uint64, b []byte) error {
	h, pk, err := decodeShared(b)
	if err != nil {
		return fmt.Errorf("shared-subscription publish: %w", err)
	}
	local := r.broker.Topics.Subscribers(pk.TopicName).Shared
	note := routeNote{skipPlain: h.skipPlain, grouped: true, picks: map[string]uint64{}}
	var gone []string
	for _, g := range h.groups {
		if len(local[g]) > 0 {
			note.picks[g] = r.peers.Self()
		} else {
			gone = append(gone, g)
		}
	}
	if len(gone) > 0 {
		// The sender stays a candidate: it may have members of the group itself.
		tried := map[uint64]bool{r.peers.Self(): true}
		for _, n := range h.tried {
			tried[n] = true
		}
		r.redirect(pk, gone, tried)
	}
	if h.skipPlain && len(note.picks) == 0 {
		return nil
	}
	note.attach(&pk)
	if h.stamped {
		return r.applyRetained(h.stamp, pk, true)
	}
	return r.inject(pk)
}

// redirect hands a publish's groups, whose picked node had no member or could not be
// sent to, to other member nodes (this one included), never to one in tried. Each
// such delivery goes to the group members only: plain subscribers had theirs.
func (r *routes) redirect(pk packets.Packet, groups []string, tried map[uint64]bool) {
	pk.FixedHeader.Retain = false // retained (or not) where it was first delivered
	pk.Filters = nil
	remote := r.index.Subscribers(pk.TopicName).Shared
	local := r.broker.Topics.Subscribers(pk.TopicName).Shared
	skip := func(n uint64) bool { return tried[n] }
	pending := groups
	for len(pending) > 0 {
		byNode := map[uint64][]string{}
		for _, g := range pending {
			n, ok := pickMember(r.groupMembers(remote[g], len(local[g]), skip))
			if !ok {
				r.shared.WithLabelValues("lost").Inc()
				r.lg.Debug().Str("group", g).Str("topic", pk.TopicName).Msg("no other member of a shared group to deliver to")
				continue
			}
			byNode[n] = append(byNode[n], g)
		}
		pending = nil
		for n, gs := range byNode {
			if err := r.redirectTo(n, pk, gs, tried); err != nil {
				r.lg.Debug().Err(err).Uint64("node", n).Str("topic", pk.TopicName).Msg("shared-subscription publish not handed on")
				tried[n] = true
				pending = append(pending, gs...)
				continue
			}
			r.shared.WithLabelValues("sent").Inc()
		}
	}
}

// redirectTo delivers pk to groups on node n (this node: locally). Locally, the
// member just counted could leave before mochi looks: mochi then calls no
// OnSelectSubscribers and the plain subscribers here would get a second copy; the
// window is the few microseconds between the two lookups, on a failover path.
func (r *routes) redirectTo(n uint64, pk packets.Packet, groups []string, tried map[uint64]bool) error {
	if n == r.peers.Self() {
		note := routeNote{skipPlain: true, grouped: true, picks: map[string]uint64{}}
		for _, g := range groups {
			note.picks[g] = n
		}
		note.attach(&pk)
		return r.inject(pk)
	}
	h := shareHeader{skipPlain: true, groups: groups}
	for t := range tried {
		if len(h.tried) < 255 {
			h.tried = append(h.tried, t)
		}
	}
	msg, err := encodeShared(h, pk)
	if err != nil {
		return err
	}
	seq, err := r.sendForward(n, msg, pk.FixedHeader.Qos)
	if err != nil && seq > 0 {
		// Handed to another member instead: the kept copy must not reach n later.
		r.replaceForward(n, seq, []byte{routeNop})
	}
	return err
}
