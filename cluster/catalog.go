package cluster

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"sort"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/mqstreams/mqstreams/log"
)

// The catalog group replicates what every node must agree on: the nodes and the
// addresses they advertise, the streams, and where each shard's replicas are (its
// Raft group id and members). Every node is a voter. Its state is small: one JSON
// value, saved with its applied index in one write, and it is its own snapshot.
type catalogState struct {
	Applied   uint64 `json:"applied"`
	ClusterID string `json:"cluster_id,omitempty"`
	NextGroup uint64 `json:"next_group"`
	// NextStream is the id the next new stream gets: a stream has the same id on every
	// node (Kafka topic ids derive from it).
	NextStream uint32           `json:"next_stream"`
	Nodes      map[uint64]Addrs `json:"nodes"`
	// Members: every node of the cluster and the Raft address it listens at, once a
	// node was added or removed (members.go); empty: the founding nodes' configs.
	Members map[uint64]string           `json:"members,omitempty"`
	Streams map[string]*streamPlacement `json:"streams"`
	// Removed: nodes removed from the cluster (removed.go), told so when they call.
	Removed []uint64 `json:"removed,omitempty"`
	// State: protocol servers' replicated state (state.go), e.g. Kafka transactions.
	State map[string][]byte `json:"state,omitempty"`
}

type streamPlacement struct {
	ID     uint32           `json:"id"`
	Spec   log.StreamSpec   `json:"spec"`
	RF     int              `json:"replication_factor"`
	Shards []shardPlacement `json:"shards"`
}

type shardPlacement struct {
	Group    uint64   `json:"group"`
	Replicas []uint64 `json:"replicas"`
	// Joined: replicas added after the group started (MoveReplica); they start with no
	// Raft state and catch up from the leader's snapshot.
	Joined []uint64 `json:"joined,omitempty"`
}

// firstShardGroup: group ids below are the cluster's own (the catalog is 1).
const firstShardGroup = 100

// The catalog state is saved whole under catalogKey when it changes; its applied index
// under catalogAppliedKey with every apply (in the same batch when both change).
var (
	catalogKey        = []byte("c")
	catalogAppliedKey = []byte("ca")
)

func newCatalogState() *catalogState {
	return &catalogState{Applied: initialIndex, NextGroup: firstShardGroup, NextStream: 1, Nodes: map[uint64]Addrs{}, Streams: map[string]*streamPlacement{}}
}

func loadCatalog(l *log.Log) (*catalogState, error) {
	v, err := l.RaftGet(catalogKey)
	if err != nil {
		return nil, err
	}
	cs := newCatalogState()
	if v != nil {
		if cs, err = decodeCatalog(v); err != nil {
			return nil, err
		}
	}
	a, err := l.RaftGet(catalogAppliedKey)
	if err != nil {
		return nil, err
	}
	if len(a) == 8 {
		cs.Applied = max(cs.Applied, binary.BigEndian.Uint64(a))
	}
	return cs, nil
}

func decodeCatalog(v []byte) (*catalogState, error) {
	cs := newCatalogState()
	if err := json.Unmarshal(v, cs); err != nil {
		return nil, fmt.Errorf("cluster catalog: %w", err)
	}
	if cs.Nodes == nil {
		cs.Nodes = map[uint64]Addrs{}
	}
	if cs.Streams == nil {
		cs.Streams = map[string]*streamPlacement{}
	}
	return cs, nil
}

func (cs *catalogState) encode() []byte {
	b, _ := json.Marshal(cs)
	return b
}

func (cs *catalogState) clone() *catalogState {
	c, _ := decodeCatalog(cs.encode())
	return c
}

func (cs *catalogState) streamNames() []string {
	out := make([]string, 0, len(cs.Streams))
	for name := range cs.Streams {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// catalogCmd is one catalog change (exactly one of the fields after Origin).
type catalogCmd struct {
	ID        uint64      `json:"id"`
	Origin    uint64      `json:"origin"`
	Node      *nodeReg    `json:"node,omitempty"`
	Put       *putCmd     `json:"put,omitempty"`
	Delete    string      `json:"delete,omitempty"`
	ClusterID string      `json:"cluster_id,omitempty"` // set once: the first one applied wins
	Offsets   *offsetsCmd `json:"offsets,omitempty"`
	Move      *moveCmd    `json:"move,omitempty"`
	Member    *memberCmd  `json:"member,omitempty"`
	State     []byte      `json:"state,omitempty"` // a state machine command (state.go)
}

// offsetsCmd is a consumer group's offset commit, stored on every node.
type offsetsCmd struct {
	Group   string                `json:"group"`
	Offsets []log.CommittedOffset `json:"offsets"`
}

type nodeReg struct {
	ID    uint64 `json:"id"`
	Addrs Addrs  `json:"addrs"`
}

type putCmd struct {
	// Create: fail if the stream exists when the command applies.
	Create bool           `json:"create,omitempty"`
	Spec   log.StreamSpec `json:"spec"`
	RF     int            `json:"replication_factor"`
	// Replicas per shard, chosen by the proposer; used for shards the stream does not
	// have yet (existing shards never move here).
	Replicas [][]uint64 `json:"replicas"`
}

// place picks rf replicas for a shard: consecutive nodes in id order from a start
// that the stream name and shard spread, so first replicas (and with them leaders)
// spread over the nodes.
func place(members []uint64, name string, shard int32, rf int) []uint64 {
	rf = min(max(rf, 1), len(members))
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	start := (int(h.Sum32()%1024) + int(shard)) % len(members)
	out := make([]uint64, rf)
	for i := range out {
		out[i] = members[(start+i)%len(members)]
	}
	return out
}

// PutStream creates a stream in the cluster or changes its definition (shards only
// grow); rf is its replication factor for new shards (0: DefaultReplicationFactor,
// capped at the node count). It returns once the change is applied on this node.
func (n *Node) PutStream(ctx context.Context, spec log.StreamSpec, rf int) error {
	return n.putStream(ctx, spec, rf, false)
}

// CreateStream is PutStream for a stream that must not exist yet: log.ErrStreamExists
// if it does when the change applies.
func (n *Node) CreateStream(ctx context.Context, spec log.StreamSpec, rf int) error {
	return n.putStream(ctx, spec, rf, true)
}

func (n *Node) putStream(ctx context.Context, spec log.StreamSpec, rf int, create bool) error {
	if rf <= 0 {
		rf = DefaultReplicationFactor
	}
	put := &putCmd{Create: create, Spec: spec, RF: rf}
	for i := int32(0); i < spec.Shards; i++ {
		put.Replicas = append(put.Replicas, place(n.memberIDs(), spec.Name, i, rf))
	}
	return n.changeCatalog(ctx, &catalogCmd{Put: put})
}

// DeleteStream removes a stream from the cluster (every replica's data with it);
// log.ErrUnknownStream if there is none when the change applies.
func (n *Node) DeleteStream(ctx context.Context, name string) error {
	return n.changeCatalog(ctx, &catalogCmd{Delete: name})
}

// Streams is the replicated stream list: name → replication factor and, per shard,
// the replicas.
func (n *Node) Streams() map[string][][]uint64 {
	n.mu.RLock()
	cat := n.cat
	n.mu.RUnlock()
	out := map[string][][]uint64{}
	for name, sp := range cat.Streams {
		for _, sh := range sp.Shards {
			out[name] = append(out[name], sh.Replicas)
		}
	}
	return out
}

// changeCatalog has the catalog leader propose cmd and waits until this node applied it.
func (n *Node) changeCatalog(ctx context.Context, cmd *catalogCmd) error {
	if err := n.refuseRemoved(); err != nil {
		return err
	}
	cmd.Origin = n.Self()
	cmd.ID = n.propSeq.Add(1)
	ch := make(chan error, 1)
	n.waitMu.Lock()
	n.catWait[cmd.ID] = ch
	n.waitMu.Unlock()
	defer func() {
		n.waitMu.Lock()
		delete(n.catWait, cmd.ID)
		n.waitMu.Unlock()
	}()
	data, err := json.Marshal(cmd)
	if err != nil {
		return err
	}
	// Propose (again) until applied: a proposal lost with a leader change is retried;
	// applying one twice is harmless (the second finds the change made).
	for {
		sent := make(chan error, 1)
		lead := n.Controller()
		switch lead {
		case 0:
			sent <- ErrNoLeader
		case n.Self():
			if err := n.do(func() {
				g := n.group(catalogGroup)
				if g == nil {
					sent <- &RemovedError{Node: n.Self()} // its groups stopped (removed.go)
					return
				}
				sent <- g.rn.Propose(data)
			}); err != nil {
				return err
			}
		default:
			n.tr.call(lead, methodCatalog, data, 2*time.Second, func(_ []byte, err error) { sent <- err })
		}
		var retryIn time.Duration
		select {
		case err := <-sent:
			retryIn = 2 * time.Second // proposed: wait for the apply, then propose again
			if err != nil {
				retryIn = 50 * time.Millisecond
			}
		case <-ctx.Done():
			return fmt.Errorf("cluster catalog change: %w", ctx.Err())
		}
		select {
		case err := <-ch:
			return err
		case <-time.After(retryIn):
		case <-ctx.Done():
			return fmt.Errorf("cluster catalog change: %w", ctx.Err())
		case <-n.stop:
			return ErrClosed
		}
	}
}

func (n *Node) onForwardedCatalog(_ uint64, body []byte, reply func([]byte, error)) {
	select {
	case n.tasks <- func() {
		g := n.group(catalogGroup)
		if g == nil || g.rn.BasicStatus().RaftState != raft.StateLeader {
			reply(nil, ErrNotLeader)
			return
		}
		reply(nil, g.rn.Propose(body))
	}:
	case <-n.stop:
		reply(nil, ErrClosed)
	}
}

// applyCatalog applies the catalog group's snapshot and committed entries on the Raft
// loop: local effects first (idempotent), then the new state with its applied index in
// one synced write.
func (n *Node) applyCatalog(g *group, snap *pb.Snapshot, ents []*pb.Entry) {
	n.mu.RLock()
	cur := n.cat
	n.mu.RUnlock()
	// next shares cur's maps until a change needs its own copy (own): most entries
	// (offset commits, empty entries) only move the applied index, which is then all
	// that is written.
	shallow := *cur
	next := &shallow
	owned, stateChanged, changed := false, false, false
	own := func() {
		if !owned {
			d := cur.clone()
			next.Nodes, next.Streams, next.Members, next.State, owned = d.Nodes, d.Streams, d.Members, d.State, true
		}
		stateChanged = true
	}
	type catDone struct {
		id  uint64
		err error
	}
	var done []catDone
	if !raft.IsEmptySnap(snap) && snap.GetMetadata().GetIndex() > cur.Applied {
		cs, err := decodeCatalog(snap.GetData())
		if err != nil {
			n.lg.Error().Err(err).Msg("catalog snapshot")
			return
		}
		for name := range next.Streams {
			if cs.Streams[name] == nil {
				n.dropStream(next, name)
			}
		}
		next = cs
		next.Applied = snap.GetMetadata().GetIndex()
		for _, name := range next.streamNames() {
			n.ensureStream(next, name)
		}
		n.stopDropped(next) // drop.go
		owned, stateChanged, changed = true, true, true
	}
	for _, e := range ents {
		if e.GetIndex() <= next.Applied {
			continue
		}
		next.Applied = e.GetIndex()
		changed = true
		if e.GetType() != pb.EntryNormal || len(e.GetData()) == 0 {
			continue
		}
		var cmd catalogCmd
		if err := json.Unmarshal(e.GetData(), &cmd); err != nil {
			n.lg.Error().Err(err).Uint64("index", e.GetIndex()).Msg("bad catalog entry")
			continue
		}
		var cerr error
		switch {
		case cmd.Node != nil:
			if contains(next.Removed, cmd.Node.ID) {
				break // a removed node that did not know yet
			}
			own()
			next.Nodes[cmd.Node.ID] = cmd.Node.Addrs
		case cmd.ClusterID != "":
			if next.ClusterID == "" {
				next.ClusterID, stateChanged = cmd.ClusterID, true
			}
		case cmd.Offsets != nil:
			if cerr = n.l.CommitOffsets(cmd.Offsets.Group, cmd.Offsets.Offsets); cerr != nil {
				n.lg.Error().Err(cerr).Str("group", cmd.Offsets.Group).Msg("apply offset commit")
			}
		case cmd.Put != nil:
			if cmd.Put.Create && next.Streams[cmd.Put.Spec.Name] != nil {
				cerr = fmt.Errorf("stream %q: %w", cmd.Put.Spec.Name, log.ErrStreamExists)
				break
			}
			own()
			n.applyPut(next, cmd.Put)
		case cmd.State != nil:
			own()
			_, cerr = n.applyState(next, cmd.State)
		case cmd.Member != nil:
			own()
			n.applyMember(next, cmd.Member)
		case cmd.Move != nil:
			if cerr = checkMove(next, cmd.Move); cerr != nil {
				break
			}
			own()
			n.applyMove(next, cmd.Move)
		case cmd.Delete != "":
			if next.Streams[cmd.Delete] == nil {
				cerr = fmt.Errorf("stream %q: %w", cmd.Delete, log.ErrUnknownStream)
				break
			}
			own()
			n.dropStream(next, cmd.Delete)
			delete(next.Streams, cmd.Delete)
		}
		if cmd.Origin == n.Self() {
			done = append(done, catDone{cmd.ID, cerr})
		}
	}
	if !changed {
		return
	}
	rb := n.l.NewRaftBatch()
	if stateChanged {
		rb.Set(catalogKey, next.encode())
	}
	rb.Set(catalogAppliedKey, binary.BigEndian.AppendUint64(nil, next.Applied))
	if err := rb.Commit(true); err != nil {
		n.lg.Error().Err(err).Msg("save catalog state")
		return
	}
	n.mu.Lock()
	n.cat = next
	n.mu.Unlock()
	if stateChanged {
		n.setMembers(next)
	}
	g.setApplied(next.Applied, 0)
	n.waitMu.Lock()
	for _, d := range done {
		if ch := n.catWait[d.id]; ch != nil {
			ch <- d.err
		}
	}
	n.waitMu.Unlock()
}

// applyPut adds or changes a stream: new shards get group ids and the proposer's
// replicas; this node starts its replicas.
func (n *Node) applyPut(cs *catalogState, put *putCmd) {
	sp := cs.Streams[put.Spec.Name]
	if sp == nil {
		sp = &streamPlacement{ID: cs.NextStream, RF: put.RF}
		cs.NextStream++
		cs.Streams[put.Spec.Name] = sp
	}
	spec := put.Spec
	if spec.Shards < int32(len(sp.Shards)) {
		spec.Shards = int32(len(sp.Shards)) // shards never shrink
	}
	sp.Spec = spec
	for i := int32(len(sp.Shards)); i < spec.Shards; i++ {
		reps := place(n.memberIDs(), spec.Name, i, sp.RF)
		if int(i) < len(put.Replicas) && len(put.Replicas[i]) > 0 {
			reps = put.Replicas[i]
		}
		sp.Shards = append(sp.Shards, shardPlacement{Group: cs.NextGroup, Replicas: reps})
		cs.NextGroup++
	}
	n.ensureStream(cs, spec.Name)
}

// ensureStream applies a stream's definition locally and starts this node's replicas.
func (n *Node) ensureStream(cs *catalogState, name string) {
	sp := cs.Streams[name]
	if err := n.streams.ApplyStream(sp.Spec, sp.ID); err != nil {
		n.lg.Error().Err(err).Str("stream", name).Msg("apply stream definition")
		return
	}
	for i, sh := range sp.Shards {
		if contains(sh.Replicas, n.Self()) {
			if _, err := n.startShard(name, int32(i), sh); err != nil {
				n.lg.Error().Err(err).Str("stream", name).Int("shard", i).Msg("start replica")
			}
		}
	}
}

func (n *Node) dropStream(cs *catalogState, name string) {
	for _, sh := range cs.Streams[name].Shards {
		n.stopShard(sh.Group)
	}
	if err := n.streams.ApplyStreamDelete(name); err != nil {
		n.lg.Error().Err(err).Str("stream", name).Msg("apply stream deletion")
	}
}

// Registered reports whether the catalog, as applied here, holds this node's current
// advertised addresses.
func (n *Node) Registered() bool {
	n.advMu.Lock()
	adv := n.adv
	n.advMu.Unlock()
	n.mu.RLock()
	defer n.mu.RUnlock()
	cur, ok := n.cat.Nodes[n.Self()]
	return ok && cur == adv
}

// SetAdvertise changes what this node advertises (its listeners are bound after it
// joined); the catalog gets it shortly.
func (n *Node) SetAdvertise(a Addrs) {
	n.advMu.Lock()
	n.adv = a
	n.advMu.Unlock()
	select {
	case n.advKick <- struct{}{}:
	default:
	}
}

// register keeps the catalog's entry for this node equal to what it advertises, and
// has the catalog choose a cluster id if it has none yet.
func (n *Node) register() {
	defer n.wg.Done()
	for {
		n.mu.RLock()
		cur, ok := n.cat.Nodes[n.Self()]
		cid := n.cat.ClusterID
		n.mu.RUnlock()
		n.advMu.Lock()
		adv := n.adv
		n.advMu.Unlock()
		var cmd *catalogCmd
		switch {
		case cid == "" && !n.cfg.Join: // a joining node gets the id with the catalog
			cmd = &catalogCmd{ClusterID: n.cfg.ClusterID()}
		case !ok || cur != adv:
			cmd = &catalogCmd{Node: &nodeReg{ID: n.Self(), Addrs: adv}}
		}
		if cmd == nil {
			select {
			case <-n.stop:
				return
			case <-n.advKick:
			}
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := n.changeCatalog(ctx, cmd)
		cancel()
		if errors.Is(err, ErrClosed) || errors.Is(err, ErrRemoved) {
			return
		}
		select {
		case <-n.stop:
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// logStreams applies stream definitions straight to the log (no mapping catalog).
type logStreams struct{ l *log.Log }

func (s logStreams) ApplyStream(spec log.StreamSpec, id uint32) error {
	_, err := s.l.EnsureStreamID(spec, id)
	return err
}

func (s logStreams) ApplyStreamDelete(name string) error {
	if err := s.l.DeleteStream(name); err != nil && !errors.Is(err, log.ErrUnknownStream) {
		return err
	}
	return nil
}

// CommitOffsets stores a consumer group's committed offsets on every node, through
// the catalog group, and returns once this node has them.
func (n *Node) CommitOffsets(group string, offsets []log.CommittedOffset) error {
	ctx, cancel := context.WithTimeout(context.Background(), n.o.AppendTimeout)
	defer cancel()
	return n.changeCatalog(ctx, &catalogCmd{Offsets: &offsetsCmd{Group: group, Offsets: offsets}})
}

// ClusterID is the cluster's id (the Kafka cluster id every node reports), chosen once
// by the first node to propose one; it waits until the catalog has it.
func (n *Node) ClusterID(ctx context.Context) (string, error) {
	for {
		n.mu.RLock()
		id := n.cat.ClusterID
		n.mu.RUnlock()
		if id != "" {
			return id, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("cluster id: %w", ctx.Err())
		case <-n.stop:
			return "", ErrClosed
		case <-time.After(20 * time.Millisecond):
		}
	}
}
