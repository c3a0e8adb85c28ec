package kafkawire

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/mqstreams/mqstreams/log"
	"github.com/mqstreams/mqstreams/mapping"
)

// txns is the transaction coordinator (docs/transactions.md): per transactional id
// the producer id and epoch, whether a transaction is ongoing, the partitions and
// groups it holds and the offsets it will commit. Its state is stored as log entries
// (kind txnKind, one per transactional id), durably before any request that changed it
// is answered; EndTxn stores the ended state in the same Pebble batch as the markers
// and the group offsets (log.EndTxnAsync), so after a crash a transaction is either
// wholly ended or still ongoing, never half. The log owns the markers, the last stable
// offset and the abort index (log/txn.go).
//
// Fencing: InitProducerId for a transactional id bumps its epoch (aborting an ongoing
// transaction first); a request with an older epoch is PRODUCER_FENCED (the
// transactional APIs) or INVALID_PRODUCER_EPOCH (Produce). A transaction ongoing
// longer than its timeout is aborted with the epoch bumped, as Kafka's coordinator
// does, so its producer is fenced too.
type txns struct {
	s          *Server
	lg         zerolog.Logger
	maxTimeout time.Duration
	ttl        time.Duration
	now        func() time.Time

	mu    sync.Mutex
	byID  map[string]*txn
	byPID map[int64]*txn

	stop chan struct{}
	wg   sync.WaitGroup

	cl *txnCluster // in a cluster (txn_cluster.go), else nil
}

// txnKind is the log entry kind of the coordinator's state.
const txnKind = "kafka.txn"

// DefaultTransactionMaxTimeout is Kafka's transaction.max.timeout.ms default.
const DefaultTransactionMaxTimeout = 15 * time.Minute

// txnPart is one partition of a transaction.
type txnPart struct {
	Stream string `json:"stream"`
	Shard  int32  `json:"shard"`
}

// txn is one transactional id's state. Fields are guarded by txns.mu.
type txn struct {
	ID         string                                    `json:"-"`
	PID        int64                                     `json:"pid"`
	Epoch      int16                                     `json:"epoch"`
	TimeoutMS  int64                                     `json:"timeout_ms"`
	Owner      string                                    `json:"owner,omitempty"`
	Ongoing    bool                                      `json:"ongoing,omitempty"`
	StartedMS  int64                                     `json:"started_ms,omitempty"`
	UsedMS     int64                                     `json:"used_ms"`
	Parts      []txnPart                                 `json:"parts,omitempty"`
	Groups     map[string]map[string]log.CommittedOffset `json:"groups,omitempty"` // group -> "stream/shard" -> offset
	LastCommit bool                                      `json:"last_commit,omitempty"`
	Ended      bool                                      `json:"ended,omitempty"` // a transaction ended since the last InitProducerId
	// Cluster only (txn_cluster.go): Seq orders the coordinator's changes; Prepared is
	// "commit" or "abort" between PrepareCommit/PrepareAbort and their completion.
	Seq      uint64 `json:"seq,omitempty"`
	Prepared string `json:"prepared,omitempty"`

	// ending is set while EndTxn (or an abort) writes the markers; inflight counts
	// transactional appends not yet finished, which the markers wait for (drained).
	ending   bool
	inflight int
	drained  chan struct{}
}

func (t *txn) hasPart(p txnPart) bool {
	for _, q := range t.Parts {
		if q == p {
			return true
		}
	}
	return false
}

func (t *txn) value() []byte {
	v, _ := json.Marshal(t)
	return v
}

func newTxns(s *Server, maxTimeout, ttl time.Duration, lg zerolog.Logger) (*txns, error) {
	if maxTimeout <= 0 {
		maxTimeout = DefaultTransactionMaxTimeout
	}
	if ttl <= 0 {
		ttl = DefaultProducerExpiration
	}
	x := &txns{s: s, lg: lg, maxTimeout: maxTimeout, ttl: ttl, now: time.Now,
		byID: map[string]*txn{}, byPID: map[int64]*txn{}, stop: make(chan struct{})}
	if r, ok := s.cluster.(TxnReplicator); ok && s.clustered {
		// The state is the cluster's, loaded when this node becomes the coordinator.
		x.cl = &txnCluster{r: r}
		return x, nil
	}
	es, err := s.log.Entries(txnKind)
	if err != nil {
		return nil, fmt.Errorf("transactions: %w", err)
	}
	ongoing := 0
	for _, e := range es {
		t := &txn{}
		if err := json.Unmarshal(e.Value, t); err != nil {
			lg.Warn().Err(err).Str("transactional_id", e.Name).Msg("stored transaction state ignored")
			continue
		}
		t.ID = e.Name
		x.byID[t.ID] = t
		x.byPID[t.PID] = t
		if t.Ongoing {
			ongoing++
		}
	}
	if len(es) > 0 {
		lg.Info().Int("transactional_ids", len(x.byID)).Int("ongoing", ongoing).Msg("transaction state loaded")
	}
	if err := x.reconcile(); err != nil {
		return nil, fmt.Errorf("transactions: %w", err)
	}
	return x, nil
}

// reconcile makes the coordinator agree with the log at start: a partition the log
// holds an open transaction on is added to that producer's ongoing transaction (its
// AddPartitionsToTxn was stored without waiting, and may have been lost), and an open
// transaction no ongoing transactional id owns is aborted, so nothing holds a last
// stable offset back for ever.
func (x *txns) reconcile() error {
	var orphans []log.Marker
	changed := map[*txn]bool{}
	for _, st := range x.s.log.Streams() {
		for sh := int32(0); sh < st.Shards(); sh++ {
			open, err := st.OpenTxns(sh)
			if err != nil {
				continue // deleted meanwhile
			}
			for pid := range open {
				part := txnPart{Stream: st.Name(), Shard: sh}
				t := x.byPID[pid]
				if t != nil && t.Ongoing {
					if !t.hasPart(part) {
						t.Parts = append(t.Parts, part)
						changed[t] = true
					}
					continue
				}
				epoch := int16(0)
				if t != nil {
					epoch = t.Epoch
				}
				orphans = append(orphans, log.Marker{Stream: st, Shard: sh, ProducerID: pid, Epoch: epoch})
			}
		}
	}
	for t := range changed {
		if err := <-x.store(t); err != nil {
			return err
		}
		x.lg.Info().Str("transactional_id", t.ID).Msg("transaction partitions recovered from the log")
	}
	if len(orphans) == 0 {
		return nil
	}
	ch := make(chan error, 1)
	x.s.log.EndTxnAsync(orphans, nil, nil, func(_ []log.MarkerResult, err error) { ch <- err })
	if err := <-ch; err != nil {
		return fmt.Errorf("abort orphaned transactions: %w", err)
	}
	x.lg.Warn().Int("partitions", len(orphans)).Msg("open transactions without an ongoing transactional id aborted")
	return nil
}

func (x *txns) start() {
	x.wg.Add(1)
	go x.timeoutLoop()
}

func (x *txns) close() {
	close(x.stop)
	x.wg.Wait()
	if x.cl != nil {
		x.cl.recovering.Wait()
	}
}

// store queues the write of t's state as it is now (x.mu held, so states of one id are
// queued in the order they were made) and returns what reports when it is durable.
func (x *txns) store(t *txn) <-chan error {
	if x.cl != nil {
		return x.storeCluster(t, "")
	}
	ch := make(chan error, 1)
	op := log.EntryOp{Kind: txnKind, Name: t.ID, Value: t.value()}
	x.s.log.PutEntriesAsync([]log.EntryOp{op}, func(err error) { ch <- err })
	return ch
}

// bump raises t's epoch, or gives it a new producer id when the epoch is exhausted.
func (x *txns) bump(t *txn) error {
	if t.Epoch < math.MaxInt16-1 {
		t.Epoch++
		return nil
	}
	id, _, err := x.s.producers.initID(-1, -1)
	if err != nil {
		return err
	}
	delete(x.byPID, t.PID)
	t.PID, t.Epoch = id, 0
	x.byPID[id] = t
	return nil
}

// initProducerID answers InitProducerId for a transactional id.
func (x *txns) initProducerID(id string, timeoutMS int32, lastPID int64, lastEpoch int16, owner string, checkOwner bool) (int64, int16, *kerr.Error) {
	if id == "" {
		return -1, -1, kerr.InvalidRequest
	}
	if timeoutMS <= 0 || time.Duration(timeoutMS)*time.Millisecond > x.maxTimeout {
		return -1, -1, kerr.InvalidTransactionTimeout
	}
	x.mu.Lock()
	if code := x.coordinating(); code != nil {
		x.mu.Unlock()
		return -1, -1, code
	}
	t := x.byID[id]
	if t == nil {
		pid, _, err := x.s.producers.initID(-1, -1)
		if err != nil {
			x.mu.Unlock()
			x.lg.Warn().Err(err).Msg("kafka InitProducerId")
			return -1, -1, kerr.CoordinatorNotAvailable
		}
		t = &txn{ID: id, PID: pid, Epoch: 0, TimeoutMS: int64(timeoutMS), Owner: owner, UsedMS: x.now().UnixMilli()}
		x.byID[id] = t
		x.byPID[pid] = t
		stored := x.store(t)
		x.mu.Unlock()
		if err := <-stored; err != nil {
			x.lg.Warn().Err(err).Msg("kafka InitProducerId")
			x.mu.Lock()
			if x.byID[id] == t {
				delete(x.byID, id)
				delete(x.byPID, pid)
			}
			x.mu.Unlock()
			return -1, -1, storeCode(err)
		}
		return pid, 0, nil
	}
	if checkOwner && t.Owner != owner {
		x.mu.Unlock()
		return -1, -1, kerr.TransactionalIDAuthorizationFailed
	}
	if lastPID >= 0 && lastEpoch >= 0 {
		// KIP-360: a producer re-initialising names the id and epoch it had.
		if lastPID != t.PID {
			x.mu.Unlock()
			return -1, -1, kerr.InvalidProducerIDMapping
		}
		if lastEpoch > t.Epoch {
			x.mu.Unlock()
			return -1, -1, kerr.ProducerFenced
		}
	}
	if t.ending {
		x.mu.Unlock()
		return -1, -1, kerr.ConcurrentTransactions
	}
	if t.Ongoing {
		// A new instance of the producer: the old one's transaction is aborted and the
		// old one fenced by the bumped epoch.
		x.mu.Unlock()
		if _, code := x.end(t, false, true, "fenced", "producer re-initialised"); code != nil {
			return -1, -1, code
		}
		x.mu.Lock()
	}
	if err := x.bump(t); err != nil {
		x.mu.Unlock()
		return -1, -1, kerr.CoordinatorNotAvailable
	}
	t.TimeoutMS = int64(timeoutMS)
	t.UsedMS = x.now().UnixMilli()
	t.Ended = false
	pid, epoch := t.PID, t.Epoch
	stored := x.store(t)
	x.mu.Unlock()
	if err := <-stored; err != nil {
		x.lg.Warn().Err(err).Msg("kafka InitProducerId")
		return -1, -1, storeCode(err)
	}
	return pid, epoch, nil
}

// lookup checks a transactional request's id, producer id and epoch; it returns the
// state with x.mu held, or the error with it released.
func (x *txns) lookup(id string, pid int64, epoch int16, owner string, checkOwner bool) (*txn, *kerr.Error) {
	x.mu.Lock()
	if code := x.coordinating(); code != nil {
		x.mu.Unlock()
		return nil, code
	}
	t := x.byID[id]
	switch {
	case t == nil || t.PID != pid:
		x.mu.Unlock()
		return nil, kerr.InvalidProducerIDMapping
	case checkOwner && t.Owner != owner:
		x.mu.Unlock()
		return nil, kerr.TransactionalIDAuthorizationFailed
	case epoch != t.Epoch:
		x.mu.Unlock()
		return nil, kerr.ProducerFenced
	case t.ending:
		x.mu.Unlock()
		return nil, kerr.ConcurrentTransactions
	}
	return t, nil
}

// begin marks t ongoing (x.mu held).
func (x *txns) begin(t *txn) {
	now := x.now().UnixMilli()
	if !t.Ongoing {
		t.Ongoing, t.StartedMS = true, now
	}
	t.UsedMS = now
}

// addPartitions adds parts to the transaction. Its state is stored without waiting:
// if a crash loses it, the log still knows of every partition the transaction wrote to
// (its open-transaction keys), which reconcile adds back at start, and a producer
// going on finds the partition missing (INVALID_TXN_STATE) and aborts.
func (x *txns) addPartitions(t *txn, parts []txnPart) *kerr.Error {
	for _, p := range parts {
		if !t.hasPart(p) {
			t.Parts = append(t.Parts, p)
		}
	}
	x.begin(t)
	if x.cl != nil {
		// Partition leaders check produces against the replicated state: stored first.
		return x.waitStored(x.storeCluster(t, ""), t, "kafka AddPartitionsToTxn")
	}
	x.storeAsync(t, "kafka AddPartitionsToTxn")
	x.mu.Unlock()
	return nil
}

// waitStored releases x.mu and waits for a replicated change (cluster).
func (x *txns) waitStored(stored <-chan error, t *txn, what string) *kerr.Error {
	x.mu.Unlock()
	if err := <-stored; err != nil {
		x.lg.Warn().Err(err).Str("transactional_id", t.ID).Msg(what)
		return storeCode(err)
	}
	return nil
}

// addOffsets adds a group whose offsets the transaction will commit; stored without
// waiting (the offsets themselves are stored before TxnOffsetCommit is answered).
func (x *txns) addOffsets(t *txn, group string) *kerr.Error {
	if t.Groups == nil {
		t.Groups = map[string]map[string]log.CommittedOffset{}
	}
	if t.Groups[group] == nil {
		t.Groups[group] = map[string]log.CommittedOffset{}
	}
	x.begin(t)
	if x.cl != nil {
		// The group's coordinator checks TxnOffsetCommit against the replicated state.
		return x.waitStored(x.storeCluster(t, ""), t, "kafka AddOffsetsToTxn")
	}
	x.storeAsync(t, "kafka AddOffsetsToTxn")
	x.mu.Unlock()
	return nil
}

// storeAsync is store without waiting; a failure is logged (x.mu held).
func (x *txns) storeAsync(t *txn, what string) {
	op := log.EntryOp{Kind: txnKind, Name: t.ID, Value: t.value()}
	lg, id := x.lg, t.ID
	x.s.log.PutEntriesAsync([]log.EntryOp{op}, func(err error) {
		if err != nil {
			lg.Warn().Err(err).Str("transactional_id", id).Msg(what)
		}
	})
}

// stageOffsets records offsets to commit with the transaction (TxnOffsetCommit).
func (x *txns) stageOffsets(t *txn, group string, offs []log.CommittedOffset) *kerr.Error {
	if !t.Ongoing || t.Groups[group] == nil {
		x.mu.Unlock()
		return kerr.InvalidTxnState // AddOffsetsToTxn first
	}
	for _, o := range offs {
		t.Groups[group][fmt.Sprintf("%s/%d", o.Stream, o.Shard)] = o
	}
	t.UsedMS = x.now().UnixMilli()
	stored := x.store(t)
	x.mu.Unlock()
	if err := <-stored; err != nil {
		x.lg.Warn().Err(err).Str("transactional_id", t.ID).Msg("kafka TxnOffsetCommit")
		return kerr.CoordinatorNotAvailable
	}
	return nil
}

// pendingOffsets tells whether an ongoing transaction will commit offsets of group
// for stream/shard (OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT).
func (x *txns) pendingOffsets(group, stream string, shard int32) bool {
	if x.cl != nil {
		return x.pendingOffsetsCluster(group, stream, shard)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	key := fmt.Sprintf("%s/%d", stream, shard)
	for _, t := range x.byID {
		if t.Ongoing {
			if _, ok := t.Groups[group][key]; ok {
				return true
			}
		}
	}
	return false
}

// checkProduce admits a produced batch of producer pid: a transactional batch only in
// its ongoing transaction, for a partition added to it, at its current epoch; an
// idempotent one not while the producer's transaction is ongoing. release must be
// called once the append finished.
func (x *txns) checkProduce(pid int64, epoch int16, part txnPart, transactional bool) (release func(), code *kerr.Error) {
	if x.cl != nil {
		return x.checkProduceCluster(pid, epoch, part, transactional)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	t := x.byPID[pid]
	if !transactional {
		if t != nil && t.Ongoing {
			return nil, kerr.InvalidTxnState
		}
		return func() {}, nil
	}
	switch {
	case t == nil:
		return nil, kerr.InvalidProducerIDMapping
	case epoch != t.Epoch:
		return nil, kerr.InvalidProducerEpoch
	case !t.Ongoing || t.ending || !t.hasPart(part):
		return nil, kerr.InvalidTxnState
	}
	t.inflight++
	t.UsedMS = x.now().UnixMilli()
	return func() {
		x.mu.Lock()
		t.inflight--
		if t.inflight == 0 && t.drained != nil {
			close(t.drained)
			t.drained = nil
		}
		x.mu.Unlock()
	}, nil
}

// endTxnRequest answers EndTxn (x.mu held by lookup).
func (x *txns) endTxnRequest(t *txn, commit bool) ([]endedPart, *kerr.Error) {
	if !t.Ongoing {
		// A retry of the EndTxn that ended the last transaction gets its answer again;
		// ending a transaction that is not ongoing (none begun, or the other
		// outcome) is INVALID_TXN_STATE, as Kafka answers.
		ok := t.Ended && commit == t.LastCommit
		x.mu.Unlock()
		if ok {
			return nil, nil
		}
		return nil, kerr.InvalidTxnState
	}
	x.mu.Unlock()
	return x.end(t, commit, false, map[bool]string{true: "commit", false: "abort"}[commit], "")
}

// endedPart is a partition's marker: where the transaction began and ended there.
type endedPart struct {
	stream *log.Stream
	shard  int32
	pid    int64
	first  int64
	marker int64
}

// end writes t's markers, its group offsets (on commit) and its ended state in one log
// write, after the transaction's appends in flight finished. bump raises the epoch
// (an abort that fences the producer: timeout, re-initialisation); outcome labels the
// transactions metric.
func (x *txns) end(t *txn, commit, bump bool, outcome, why string) ([]endedPart, *kerr.Error) {
	if x.cl != nil {
		return x.endCluster(t, commit, bump, outcome, why)
	}
	x.mu.Lock()
	if t.ending || !t.Ongoing {
		x.mu.Unlock()
		return nil, kerr.ConcurrentTransactions
	}
	t.ending = true
	var drained chan struct{}
	if t.inflight > 0 {
		drained = make(chan struct{})
		t.drained = drained
	}
	x.mu.Unlock()
	if drained != nil {
		<-drained
	}
	x.mu.Lock()
	next := *t
	next.ending, next.inflight, next.drained = false, 0, nil
	if bump {
		if next.Epoch < math.MaxInt16-1 {
			next.Epoch++
		} // else: InitProducerId gives a new id next time; the markers keep this one
	}
	var markers []log.Marker
	for _, p := range t.Parts {
		st := x.s.log.Stream(p.Stream)
		if st == nil || p.Shard >= st.Shards() {
			continue // deleted since: nothing to mark
		}
		markers = append(markers, log.Marker{Stream: st, Shard: p.Shard, ProducerID: t.PID, Epoch: next.Epoch, Commit: commit})
	}
	var groups []log.GroupOffsets
	if commit {
		names := make([]string, 0, len(t.Groups))
		for g := range t.Groups {
			names = append(names, g)
		}
		sort.Strings(names)
		for _, g := range names {
			var offs []log.CommittedOffset
			for _, o := range t.Groups[g] {
				offs = append(offs, o)
			}
			if len(offs) > 0 {
				groups = append(groups, log.GroupOffsets{Group: g, Offsets: offs})
			}
		}
	}
	next.Ongoing, next.StartedMS, next.Parts, next.Groups, next.LastCommit, next.Ended = false, 0, nil, nil, commit, true
	next.UsedMS = x.now().UnixMilli()
	op := log.EntryOp{Kind: txnKind, Name: t.ID, Value: next.value()}
	x.mu.Unlock()

	type result struct {
		rs  []log.MarkerResult
		err error
	}
	ch := make(chan result, 1)
	x.s.log.EndTxnAsync(markers, groups, []log.EntryOp{op}, func(rs []log.MarkerResult, err error) { ch <- result{rs, err} })
	r := <-ch
	x.mu.Lock()
	defer x.mu.Unlock()
	t.ending = false
	if r.err != nil && !errors.Is(r.err, log.ErrTxnMarkers) {
		x.lg.Warn().Err(r.err).Str("transactional_id", t.ID).Bool("commit", commit).Msg("kafka transaction end failed; still ongoing")
		return nil, kerr.CoordinatorNotAvailable
	}
	if r.err != nil {
		x.lg.Warn().Err(r.err).Str("transactional_id", t.ID).Msg("kafka transaction markers of deleted streams skipped")
	}
	epoch := t.Epoch
	t.Epoch, t.Ongoing, t.StartedMS, t.Parts, t.Groups, t.LastCommit, t.Ended, t.UsedMS = next.Epoch, false, 0, nil, nil, commit, true, next.UsedMS
	x.s.metrics.txnEnded(outcome)
	ev := x.lg.Debug()
	if why != "" {
		ev = x.lg.Info()
	}
	ev.Str("transactional_id", t.ID).Int64("producer_id", t.PID).Int16("epoch", epoch).Bool("commit", commit).
		Int("partitions", len(markers)).Str("reason", why).Msg("kafka transaction ended")
	var out []endedPart
	for i, m := range markers {
		if i < len(r.rs) && r.rs[i].Err == nil && r.rs[i].FirstOffset >= 0 {
			out = append(out, endedPart{stream: m.Stream, shard: m.Shard, pid: m.ProducerID, first: r.rs[i].FirstOffset, marker: r.rs[i].Offset})
		}
	}
	return out, nil
}

// timeoutLoop aborts transactions ongoing longer than their timeout and forgets
// transactional ids idle longer than the producer expiration.
func (x *txns) timeoutLoop() {
	defer x.wg.Done()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	lastSweep := x.now()
	for {
		select {
		case <-x.stop:
			return
		case <-tick.C:
		}
		if x.cl != nil {
			x.claim()
			x.mu.Lock()
			active := x.coordinating() == nil
			x.mu.Unlock()
			if !active {
				continue // the coordinator's work: timeouts and expiry
			}
		}
		now := x.now()
		type late struct {
			t         *txn
			timeoutMS int64
		}
		var expired []late
		x.mu.Lock()
		for _, t := range x.byID {
			if t.Ongoing && !t.ending && now.UnixMilli()-t.StartedMS > t.TimeoutMS {
				expired = append(expired, late{t, t.TimeoutMS})
			}
		}
		var gone []*txn
		if now.Sub(lastSweep) > time.Minute {
			lastSweep = now
			for id, t := range x.byID {
				if !t.Ongoing && !t.ending && now.UnixMilli()-t.UsedMS > x.ttl.Milliseconds() {
					delete(x.byID, id)
					delete(x.byPID, t.PID)
					gone = append(gone, t)
				}
			}
		}
		x.mu.Unlock()
		for _, e := range expired {
			x.end(e.t, false, true, "timeout", fmt.Sprintf("timed out after %d ms", e.timeoutMS))
		}
		if len(gone) > 0 {
			if x.cl != nil {
				x.forgetCluster(gone)
				continue
			}
			ops := make([]log.EntryOp, len(gone))
			for i, t := range gone {
				ops[i] = log.EntryOp{Kind: txnKind, Name: t.ID}
			}
			x.s.log.PutEntriesAsync(ops, func(err error) {
				if err != nil {
					x.lg.Warn().Err(err).Msg("delete expired transactional ids")
				}
			})
		}
	}
}

// deliverCommitted hands the records of a committed transaction to MQTT delivery, read
// back from the log between its first offset and its marker on each partition, in
// offset order (so a commit after a restart delivers too).
func (s *Server) deliverCommitted(parts []endedPart, mayPublish func(string) bool) {
	if s.deliver == nil {
		return
	}
	for _, p := range parts {
		for off := p.first; off < p.marker; {
			bs, err := p.stream.Read(p.shard, off, 1<<20)
			if err != nil || len(bs) == 0 {
				if err != nil {
					s.lg.Warn().Err(err).Str("stream", p.stream.Name()).Int32("shard", p.shard).Msg("deliver committed transaction")
				}
				break
			}
			for _, b := range bs {
				if b.BaseOffset >= p.marker {
					off = p.marker
					break
				}
				off = b.LastOffset + 1
				if b.ProducerID() != p.pid || b.Control() {
					continue
				}
				rs, err := b.Records(b.BaseOffset)
				if err != nil {
					s.lg.Warn().Err(err).Str("stream", p.stream.Name()).Msg("deliver committed transaction")
					continue
				}
				recs := make([]log.Record, len(rs))
				for i, r := range rs {
					recs[i] = r.Record
				}
				s.deliver(mapping.Produced{Stream: p.stream.Name(), Partition: p.shard, Records: recs, MayPublish: mayPublish})
			}
		}
	}
}
