package cluster

import (
	"encoding/binary"
	"sync"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Raft runs with AsyncStorageWrites (raft's doc.go, "Usage with Asynchronous Storage
// Writes"): the loop never waits for the disk. A Ready's log writes come out as
// MsgStorageAppend messages, which the loop hands to this node's one persister; it
// writes every message queued since its last write, of every group, in one Pebble
// batch with at most one fsync, then delivers each message's responses: the
// followers' MsgAppResp and vote answers to their nodes, the local ones
// (MsgStorageAppendResp, a leader's own MsgAppResp) back to the loop. So a leader
// sends its entries before writing them, a follower answers as soon as its write
// returns rather than when its loop comes round, and while one write syncs the loop
// keeps stepping answers, committing and proposing the next round, which the next
// write takes whole. Messages of one group are written and answered in the order
// raft emitted them (one queue, one goroutine), as raft requires.

// appendWork is one MsgStorageAppend of a group.
type appendWork struct {
	g *group
	m *pb.Message
}

// persister is the node's local append thread.
type persister struct {
	n      *Node
	mu     sync.Mutex
	cond   *sync.Cond
	q      []appendWork
	busy   bool
	closed bool
	done   chan struct{}
}

func newPersister(n *Node) *persister {
	p := &persister{n: n, done: make(chan struct{})}
	p.cond = sync.NewCond(&p.mu)
	return p
}

func (p *persister) push(ws []appendWork) {
	if len(ws) == 0 {
		return
	}
	p.mu.Lock()
	p.q = append(p.q, ws...)
	p.mu.Unlock()
	p.cond.Broadcast()
}

// drain waits until every message pushed so far is written and answered (or dropped
// after a failed write). The persister never waits for the loop, so the loop may.
func (p *persister) drain() {
	p.mu.Lock()
	for (len(p.q) > 0 || p.busy) && !p.closed {
		p.cond.Wait()
	}
	p.mu.Unlock()
}

func (p *persister) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cond.Broadcast()
	<-p.done
}

func (p *persister) run() {
	defer close(p.done)
	for {
		p.mu.Lock()
		for len(p.q) == 0 && !p.closed {
			p.cond.Wait()
		}
		if p.closed {
			p.mu.Unlock()
			return
		}
		ws := p.q
		p.q, p.busy = nil, true
		p.mu.Unlock()
		p.n.writeAppends(ws)
		p.mu.Lock()
		p.busy = false
		p.mu.Unlock()
		p.cond.Broadcast()
	}
}

// msgReady is the part of a Ready a MsgStorageAppend carries.
func msgReady(m *pb.Message) raft.Ready {
	rd := raft.Ready{Entries: m.GetEntries(), Snapshot: m.GetSnapshot()}
	if m.Term != nil {
		rd.HardState = &pb.HardState{Term: m.Term, Vote: m.Vote, Commit: m.Commit}
	}
	return rd
}

// writeAppends writes MsgStorageAppends of any groups in one Pebble batch, fsynced
// when one of them must be (new entries, a new term or vote, a snapshot, of a group
// whose durability is fsync), then delivers their responses. After a failed write
// nothing more is written or answered: the groups are reopened from what Pebble
// holds (recover.go).
func (n *Node) writeAppends(ws []appendWork) {
	if n.storageFailed.Load() {
		return
	}
	rb := n.l.NewRaftBatch()
	fsync := false
	for _, w := range ws {
		rd := msgReady(w.m)
		if err := w.g.st.persist(rb, &rd); err != nil {
			n.lg.Error().Err(err).Uint64("group", w.g.id).Msg("raft persist")
		}
		if !fsync && w.g.st.mustSync(&rd) && w.g.fsync(n.o.Durability) {
			fsync = true
		}
	}
	if f := n.o.testBeforeWrite; f != nil {
		f()
	}
	if rb.Empty() {
		rb.Close()
	} else if err := rb.Commit(fsync); err != nil {
		// Raft state that cannot be written cannot be acted on, and raft has handed
		// these messages out already: the node stops taking part (the others go on
		// without it) until its log is writable again.
		n.lg.Error().Err(err).Msg("raft write failed: this node stops taking part until its log is writable again (recover.go)")
		n.storageFailed.Store(true)
		return
	}
	durable := n.traceNow()
	out := frames{}
	var local []localMsg
	for _, w := range ws {
		rd := msgReady(w.m)
		if err := w.g.st.persisted(&rd); err != nil {
			n.lg.Error().Err(err).Uint64("group", w.g.id).Msg("raft storage")
		}
		n.traceEntries(w.g, rd.Entries, traceDurable, durable)
		for _, r := range w.m.GetResponses() {
			if r.GetTo() == n.Self() || raft.IsLocalMsgTarget(r.GetTo()) {
				local = append(local, localMsg{g: w.g, m: r})
			} else {
				out.add(w.g.id, r)
			}
		}
	}
	out.flush(n, nil)
	n.local.push(local)
}

// localMsg is a response for this node's own raft (from the persister).
type localMsg struct {
	g *group
	m *pb.Message
}

// localQueue carries the persister's local responses to the loop: unbounded, so the
// persister never blocks on the loop (which may be draining it).
type localQueue struct {
	mu   sync.Mutex
	q    []localMsg
	kick chan struct{}
}

func (q *localQueue) push(ms []localMsg) {
	if len(ms) == 0 {
		return
	}
	q.mu.Lock()
	q.q = append(q.q, ms...)
	q.mu.Unlock()
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

func (q *localQueue) take() []localMsg {
	q.mu.Lock()
	defer q.mu.Unlock()
	ms := q.q
	q.q = nil
	return ms
}

// stepLocal steps the persister's responses into their groups (on the loop); those
// of a group reopened or stopped since are dropped: the new replica starts from what
// Pebble holds.
func (n *Node) stepLocal() {
	ms := n.local.take()
	if len(ms) == 0 {
		return
	}
	n.mu.RLock()
	defer n.mu.RUnlock()
	for _, lm := range ms {
		if n.groups[lm.g.id] != lm.g {
			continue
		}
		n.traceAck(lm.g, lm.m)
		if err := lm.g.rn.Step(lm.m); err != nil {
			n.lg.Debug().Err(err).Uint64("group", lm.g.id).Msg("raft step local")
		}
	}
}

// frames collects Raft messages into one frame per destination node, each built in
// place behind room for the transport's header (sendFrame), so a message is encoded
// once and never copied.
type frames map[uint64][]byte

var marshalCached = proto.MarshalOptions{UseCachedSize: true}

func (f frames) add(group uint64, m *pb.Message) {
	fr := f[m.GetTo()]
	if fr == nil {
		fr = make([]byte, frameHeader, 512)
	}
	size := proto.Size(m)
	fr = binary.AppendUvarint(fr, group)
	fr = binary.AppendUvarint(fr, uint64(size))
	out, err := marshalCached.MarshalAppend(fr, m)
	if err != nil {
		return // the frame keeps its length: the message is left out
	}
	f[m.GetTo()] = out
}

// flush sends every frame; unreachable, when set, learns each node a frame could not
// be queued for.
func (f frames) flush(n *Node, unreachable func(to uint64)) {
	for to, fr := range f {
		if err := n.tr.sendFrame(to, kindRaft, fr); err != nil && unreachable != nil {
			unreachable(to)
		}
		delete(f, to)
	}
}

// writeInline persists a Ready's append message on the loop, after every earlier one:
// a snapshot, whose state machine side the loop applies next and which must be on disk
// by then. Its local responses are stepped with the loop's next stepLocal.
func (n *Node) writeInline(g *group, m *pb.Message) {
	n.persist.drain()
	n.writeAppends([]appendWork{{g: g, m: m}})
}
