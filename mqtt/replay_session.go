package mqtt

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstreams/mqstreams/log"
)

// replaySession is the stream side of one MQTT session (by client id): its stream
// subscriptions with their positions, and its replay messages in flight. It outlives a
// connection when the session is persistent.
type replaySession struct {
	h  *ReplayHook
	id string

	// sendMu makes "check the window, take a packet id, register in flight" one step
	// among the session's readers. It is never held while writing to the connection.
	sendMu sync.Mutex
	pidSeq int          // next replay packet id, offset into the replay id range (under sendMu)
	parked atomic.Int32 // readers waiting for window room holding nothing read

	mu         sync.Mutex
	cl         *mochi.Client // current connection; nil while offline
	persistent bool
	subs       map[string]*replaySub // by subscription filter
	inflight   map[uint16]inflightRef
	pending    map[uint16]*pendingSubscribe // by SUBSCRIBE packet id until its SUBACK
	dirty      bool                         // positions moved since the last commit
}

// inflightRef is a replay message the client has not acknowledged yet.
type inflightRef struct {
	sub     *replaySub
	shard   int32
	offset  int64
	topic   string
	created int64
}

// replaySub is one stream subscription of a session.
type replaySub struct {
	filter string
	group  string
	stream *log.Stream
	match  string // only records whose topic matches it; "" = every record
	opts   atomic.Pointer[subOptions]

	// Guarded by the session's mu.
	next []int64 // per shard: the next offset to send
	run  *readerSet
}

// subOptions are the MQTT options of the subscription, replaced by a re-SUBSCRIBE.
type subOptions struct {
	qos               byte
	subID             int
	noLocal           bool
	retainAsPublished bool
}

// readerSet is the running readers of a subscription, bound to one connection.
type readerSet struct {
	cl      *mochi.Client
	win     *sendWindow // the connection's, shared with mochi's live deliveries
	stop    chan struct{}
	ctx     context.Context // ends with stop: a read waiting for records returns
	cancel  context.CancelFunc
	stopped bool
	wg      sync.WaitGroup
}

func newReaderSet(cl *mochi.Client, win *sendWindow) *readerSet {
	ctx, cancel := context.WithCancel(context.Background())
	return &readerSet{cl: cl, win: win, stop: make(chan struct{}), ctx: ctx, cancel: cancel}
}

// halt tells the readers to stop.
func (r *readerSet) halt() {
	close(r.stop)
	r.cancel()
}

func newReplaySession(h *ReplayHook, cl *mochi.Client) *replaySession {
	return &replaySession{
		h:          h,
		id:         cl.ID,
		cl:         cl,
		persistent: persistentSession(cl),
		subs:       map[string]*replaySub{},
		inflight:   map[uint16]inflightRef{},
		pending:    map[uint16]*pendingSubscribe{},
	}
}

func (s *replaySession) isClient(cl *mochi.Client) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cl == cl
}

// subscribe registers a granted stream subscription. A filter the session already holds
// keeps its position (only its options change): a client that subscribes again after
// reconnecting to its persistent session continues where it was. fresh is true for a
// new subscription, whose readers the caller starts.
func (s *replaySession) subscribe(cl *mochi.Client, r *subResult, sub packets.Subscription, granted byte) (*replaySub, bool, *subError) {
	opts := &subOptions{qos: granted, subID: sub.Identifier, noLocal: sub.NoLocal, retainAsPublished: sub.RetainAsPublished}
	s.mu.Lock()
	s.cl = cl
	s.persistent = persistentSession(cl)
	persistent := s.persistent
	if ex := s.subs[r.filter]; ex != nil && ex.stream == r.stream {
		ex.opts.Store(opts)
		s.mu.Unlock()
		return ex, false, nil
	}
	s.mu.Unlock()

	rs := &replaySub{filter: r.filter, group: groupName(cl.ID, r.filter), stream: r.stream}
	rs.opts.Store(opts)
	if r.topic.filter != "" {
		if d, ok := s.h.opts.Catalog.Definition(r.stream.Name()); !ok || len(d.Filters) != 1 || d.Filters[0] != r.topic.filter {
			rs.match = r.topic.filter
		}
	}
	start := r.start
	stored, err := s.h.opts.Log.GroupOffsets(rs.group)
	if err != nil {
		return nil, false, implError("%q: read stored position: %v", r.filter, err)
	}
	if len(stored) > 0 {
		if persistent {
			// A persistent session resumes where it was, whatever the start point says
			// (also after a server restart, when mochi forgot the session).
			start = startPoint{kind: startOffsets, offsets: map[int32]int64{}}
			for _, c := range stored {
				if c.Stream == r.stream.Name() {
					start.offsets[c.Shard] = c.Offset
				}
			}
			start = s.h.clampStored(r.stream, start)
		} else {
			s.h.deleteGroup(rs.group) // left by an earlier persistent session
		}
	}
	next, serr := s.h.resolveStart(r.stream, start)
	if serr != nil {
		serr.msg = "\"" + r.filter + "\": " + serr.msg
		return nil, false, serr
	}
	rs.next = next

	s.mu.Lock()
	defer s.mu.Unlock()
	if ex := s.subs[r.filter]; ex != nil {
		if ex.stream == r.stream {
			ex.opts.Store(opts)
			return ex, false, nil
		}
		s.dropSubLocked(ex) // the stream was deleted and created again
	}
	s.subs[r.filter] = rs
	s.dirty = true
	s.h.lg.Debug().Str("client", s.id).Str("remote", cl.Net.Remote).Str("filter", r.filter).Str("stream", r.stream.Name()).
		Str("start", start.String()).Ints64("next", next).Msg("stream subscription")
	return rs, true, nil
}

// clampStored keeps stored positions inside the shards' current ranges; a shard that
// cannot be asked now (a cluster failover) keeps its position: resolveStart asks again.
func (h *ReplayHook) clampStored(st *log.Stream, sp startPoint) startPoint {
	for shard, off := range sp.offsets {
		res, err := h.bounds(st, shard, log.FromEarliest, 0)
		switch {
		case errors.Is(err, log.ErrUnknownShard):
			delete(sp.offsets, shard)
		case err == nil && off > res.HighWatermark:
			sp.offsets[shard] = res.HighWatermark
		}
	}
	return sp
}

// resolveTimeout bounds the look-up of one shard's start point at SUBSCRIBE (in a
// cluster, a call to another node when this one holds no replica of the shard).
const resolveTimeout = 10 * time.Second

// bounds resolves a start point of one shard through the reader: its offset, with the
// shard's log start and high watermark.
func (h *ReplayHook) bounds(st *log.Stream, shard int32, from log.ReadFrom, tsUS int64) (log.ReadResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), resolveTimeout)
	defer cancel()
	return h.opts.Reader.ReadShard(ctx, log.ReadRequest{Stream: st.Name(), StreamID: st.ID(), Shard: shard, From: from, TimeUS: tsUS})
}

// resolveStart turns a start point into the first offset of each shard. Shards left out
// of an exact `<shard>:<offset>` list start at their earliest record, so nothing is
// skipped unasked; an offset below the log start (retention removed it) starts at the
// log start, one past the high watermark is an error.
func (h *ReplayHook) resolveStart(st *log.Stream, sp startPoint) ([]int64, *subError) {
	n := st.Shards()
	for shard := range sp.offsets {
		if shard >= n {
			return nil, implError("shard %d does not exist (stream %s has %d)", shard, st.Name(), n)
		}
	}
	from := log.FromEarliest
	switch sp.kind {
	case startTime:
		from = log.FromTime
	case startEarliest, startOffsets:
	default:
		from = log.FromLatest
	}
	// The shards are looked up together: in a cluster each may be a call to another
	// node, and one waiting out a failover should not hold up the others.
	type found struct {
		res log.ReadResult
		err error
	}
	all := make([]found, n)
	var wg sync.WaitGroup
	for i := int32(0); i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			all[i].res, all[i].err = h.bounds(st, i, from, sp.tsUS)
		}()
	}
	wg.Wait()
	next := make([]int64, n)
	for i := int32(0); i < n; i++ {
		res, err := all[i].res, all[i].err
		if err != nil {
			return nil, implError("%v", wrapShard(st, i, err))
		}
		next[i] = res.Offset
		if sp.kind == startOffsets {
			off, ok := sp.offsets[i]
			switch {
			case !ok || off < res.LogStart:
				next[i] = res.LogStart
			case off > res.HighWatermark:
				return nil, implError("offset %d is past the end of shard %d (%d)", off, i, res.HighWatermark)
			default:
				next[i] = off
			}
		}
	}
	return next, nil
}

// startSub starts the readers of sub on cl, unless they run or cl is no longer current;
// it reports whether it started them.
func (s *replaySession) startSub(cl *mochi.Client, sub *replaySub) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cl != cl || sub.run != nil || s.subs[sub.filter] != sub {
		return false
	}
	win := s.h.windowOf(cl)
	if win == nil {
		return false // the connection ended (its window closed with it)
	}
	run := newReaderSet(cl, win)
	sub.run = run
	for shard := range sub.next {
		run.wg.Add(1)
		go s.readShard(run, sub, int32(shard))
	}
	return true
}

// signalStop asks every reader to stop without waiting.
func (s *replaySession) signalStop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sub := range s.subs {
		if sub.run != nil && !sub.run.stopped {
			sub.run.stopped = true
			sub.run.halt()
		}
	}
}

// stopReaders stops every reader and waits for them.
func (s *replaySession) stopReaders() {
	s.signalStop()
	s.mu.Lock()
	var runs []*readerSet
	for _, sub := range s.subs {
		if sub.run != nil {
			runs = append(runs, sub.run)
			sub.run = nil
		}
	}
	s.mu.Unlock()
	for _, r := range runs {
		r.wg.Wait()
	}
}

// detach parts the session from its closed connection, keeping positions and the
// record of what is in flight for a resume.
func (s *replaySession) detach(cl *mochi.Client) {
	s.stopReaders()
	s.mu.Lock()
	if s.cl == cl {
		s.cl = nil
	}
	s.pending = map[uint16]*pendingSubscribe{}
	s.mu.Unlock()
}

// resume binds the session to the connection that took it over and restarts the
// subscriptions mochi carried over. A replay message mochi carried in flight is resent
// by mochi; one it did not carry is read again from the log.
func (s *replaySession) resume(cl *mochi.Client) {
	s.mu.Lock()
	s.cl = cl
	s.persistent = persistentSession(cl)
	s.pending = map[uint16]*pendingSubscribe{}
	var gone []string
	for f, sub := range s.subs {
		if _, ok := cl.State.Subscriptions.Get(f); !ok {
			gone = append(gone, sub.group)
			s.dropSubLocked(sub)
		}
	}
	for pid, ref := range s.inflight {
		if pk, ok := cl.State.Inflight.Get(pid); ok && pk.Origin == replayOrigin &&
			pk.TopicName == ref.topic && pk.Created == ref.created {
			continue
		}
		delete(s.inflight, pid)
		if ref.offset < ref.sub.next[ref.shard] {
			ref.sub.next[ref.shard] = ref.offset
		}
	}
	subs := make([]*replaySub, 0, len(s.subs))
	for _, sub := range s.subs {
		subs = append(subs, sub)
	}
	s.mu.Unlock()
	if len(subs) > 0 {
		s.h.openWindow(cl)
	}
	for _, g := range gone {
		s.h.deleteGroup(g)
	}
	for _, sub := range subs {
		s.startSub(cl, sub)
	}
}

// unsubscribe ends one subscription; it returns its group to forget.
func (s *replaySession) unsubscribe(filter string) (string, bool) {
	s.mu.Lock()
	sub := s.subs[filter]
	if sub == nil {
		s.mu.Unlock()
		return "", false
	}
	run := sub.run
	if run != nil && !run.stopped {
		run.stopped = true
		run.halt()
	}
	sub.run = nil
	s.mu.Unlock()
	if run != nil {
		run.wg.Wait()
	}
	s.mu.Lock()
	if s.subs[filter] == sub {
		s.dropSubLocked(sub)
	}
	s.mu.Unlock()
	return sub.group, true
}

// dropSubLocked forgets sub and its messages in flight (their acks are then ignored).
func (s *replaySession) dropSubLocked(sub *replaySub) {
	delete(s.subs, sub.filter)
	for pid, ref := range s.inflight {
		if ref.sub == sub {
			delete(s.inflight, pid)
		}
	}
	if sub.run != nil && !sub.run.stopped {
		sub.run.stopped = true
		sub.run.halt()
	}
	sub.run = nil
}

// acked records the end of a replay message's QoS flow (its window place is freed by
// the connection's sendWindow).
func (s *replaySession) acked(cl *mochi.Client, pid uint16) {
	s.mu.Lock()
	if s.cl == cl {
		if _, ok := s.inflight[pid]; ok {
			delete(s.inflight, pid)
			s.dirty = true
		}
	}
	s.mu.Unlock()
}

// advance records that everything before off in shard is delivered (or skipped).
func (s *replaySession) advance(sub *replaySub, shard int32, off int64) {
	s.mu.Lock()
	if int(shard) < len(sub.next) && sub.next[shard] < off {
		sub.next[shard] = off
		s.dirty = true
	}
	s.mu.Unlock()
}

// commit stores the positions of a persistent session's subscriptions: per shard the
// oldest message not yet acknowledged, so a restart redelivers nothing acknowledged and
// loses nothing unacknowledged.
func (s *replaySession) commit() {
	s.mu.Lock()
	if !s.persistent || !s.dirty {
		s.mu.Unlock()
		return
	}
	s.dirty = false
	type pos struct {
		group string
		offs  []log.CommittedOffset
	}
	all := make([]pos, 0, len(s.subs))
	idx := map[*replaySub]int{}
	for _, sub := range s.subs {
		p := pos{group: sub.group, offs: make([]log.CommittedOffset, len(sub.next))}
		for i, n := range sub.next {
			p.offs[i] = log.CommittedOffset{Stream: sub.stream.Name(), Shard: int32(i), Offset: n, LeaderEpoch: -1}
		}
		idx[sub] = len(all)
		all = append(all, p)
	}
	for _, ref := range s.inflight {
		if i, ok := idx[ref.sub]; ok && ref.offset < all[i].offs[ref.shard].Offset {
			all[i].offs[ref.shard].Offset = ref.offset
		}
	}
	s.mu.Unlock()
	for _, p := range all {
		if err := s.h.opts.Log.CommitOffsets(p.group, p.offs); err != nil {
			if errors.Is(err, log.ErrUnknownStream) || errors.Is(err, log.ErrUnknownShard) {
				continue // the stream went away; its readers have stopped
			}
			s.h.lg.Warn().Err(err).Str("client", s.id).Str("group", p.group).Msg("store replay position")
			s.mu.Lock()
			s.dirty = true
			s.mu.Unlock()
		}
	}
}
