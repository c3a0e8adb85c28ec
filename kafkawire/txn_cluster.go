package kafkawire

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/mqstreams/mqstreams/log"
	"github.com/mqstreams/mqstreams/mapping"
)

// Transactions in a cluster (docs/transactions.md, "Cluster"). The coordinator's state
// is replicated: each change is a command of a state machine held in the cluster's
// catalog group (ApplyTxnState, applied by every node in the same order), and the node
// leading the catalog group coordinates every transactional id (FindCoordinator key
// type 1). On becoming leader at a term, a node first claims the coordination for that
// term (a command the others' later changes are then refused against, so a deposed
// coordinator can change nothing), then loads the state and completes the
// transactions left prepared. EndTxn is two-phase: PrepareCommit/PrepareAbort is
// stored, then a marker is written through each partition's Raft group (by its leader;
// writing one again is harmless), then CompleteCommit/CompleteAbort, which makes the
// group offsets TxnOffsetCommit staged the groups' offsets on every node (or drops
// them). Partition leaders check transactional produces against the replicated state.

// TxnReplicator is what a Cluster offers for transactions (the cluster node).
type TxnReplicator interface {
	// CoordinatorTerm is the term at which this node leads the catalog group, 0 when
	// it does not.
	CoordinatorTerm() uint64
	// ProposeState replicates a command to every node's ApplyTxnState and returns once
	// this node applied it, with the apply's error.
	ProposeState(ctx context.Context, cmd []byte) error
	// SyncState returns once this node applied every change committed before the call.
	SyncState(ctx context.Context) error
	// StateGet and StateScan read the replicated state as applied on this node.
	StateGet(key string) []byte
	StateScan(prefix string, f func(key string, val []byte))
	// AppendTxn appends records of a producer's open transaction through the
	// partition's Raft group (its leader only).
	AppendTxn(ctx context.Context, stream string, shard int32, txn log.Txn, recs []log.Record, ops []log.EntryOp, done func(log.AppendResult, error))
	// WriteMarker writes a transaction marker through the partition's Raft group, by
	// its leader, wherever that is.
	WriteMarker(ctx context.Context, stream string, shard int32, pid int64, epoch int16, commit bool, coordEpoch int32, done func(error))
}

// TxnStateView is the replicated state a command applies to.
type TxnStateView interface {
	Get(key string) []byte
	Put(key string, val []byte)
	Keys(prefix string) []string
}

// Replicated state keys.
const (
	txnStateCoord  = "kafka.txncoord" // the claimed coordinator term
	txnStatePrefix = "kafka.txn/"     // + transactional id: its state (txn, JSON)
	txnPIDPrefix   = "kafka.txnpid/"  // + producer id: its transactional id
	txnOffPrefix   = "kafka.txnoffs/" // + transactional id + "\x00" + group: staged offsets
	txnMarkerWait  = 30 * time.Second // one round of a marker's writes
	txnStoreWait   = 10 * time.Second // one replicated state change
	txnProduceSync = 5 * time.Second  // a partition leader catching up on the state
	txnPrepCommit  = "commit"         // txn.Prepared
	txnPrepAbort   = "abort"          // txn.Prepared
)

// Apply errors, for the proposer.
var (
	errStaleCoordinator = errors.New("kafka transactions: not the coordinator of this term")
	errTxnMapping       = errors.New("kafka transactions: unknown transactional id or producer id")
	errTxnFenced        = errors.New("kafka transactions: producer fenced")
	errTxnState         = errors.New("kafka transactions: transaction not in a state to take offsets")
)

// txnStateCmd is one replicated command.
type txnStateCmd struct {
	Term  uint64 `json:"term,omitempty"`
	Claim bool   `json:"claim,omitempty"`
	ID    string `json:"id,omitempty"`
	// Value: the id's new state (from the coordinator at Term); Delete forgets it.
	Value  json.RawMessage `json:"value,omitempty"`
	Delete bool            `json:"delete,omitempty"`
	// Complete: txnPrepCommit applies the staged offsets, txnPrepAbort drops them.
	Complete string `json:"complete,omitempty"`
	// Stage: TxnOffsetCommit's offsets, from the group's coordinator.
	Stage *txnStage `json:"stage,omitempty"`
}

type txnStage struct {
	PID     int64                 `json:"pid"`
	Epoch   int16                 `json:"epoch"`
	Group   string                `json:"group"`
	Offsets []log.CommittedOffset `json:"offsets"`
}

func txnOffKey(id, group string) string { return txnOffPrefix + id + "\x00" + group }

func decodeTxn(v []byte) *txn {
	if v == nil {
		return nil
	}
	t := &txn{}
	if json.Unmarshal(v, t) != nil {
		return nil
	}
	return t
}

func coordTerm(st TxnStateView) uint64 {
	n, _ := strconv.ParseUint(string(st.Get(txnStateCoord)), 10, 64)
	return n
}

// ApplyTxnState applies a replicated transaction command (every node, in log order;
// deterministic: it reads nothing but st). It returns the group offsets a committed
// transaction makes the groups' own.
func ApplyTxnState(cmd []byte, st TxnStateView) ([]log.GroupOffsets, error) {
	var c txnStateCmd
	if err := json.Unmarshal(cmd, &c); err != nil {
		return nil, fmt.Errorf("kafka transaction command: %w", err)
	}
	switch {
	case c.Claim:
		// The same term again is the same leader taking over again (idempotent).
		if c.Term < coordTerm(st) {
			return nil, errStaleCoordinator
		}
		st.Put(txnStateCoord, []byte(strconv.FormatUint(c.Term, 10)))
		return nil, nil
	case c.Stage != nil:
		t := decodeTxn(st.Get(txnStatePrefix + c.ID))
		switch {
		case t == nil || t.PID != c.Stage.PID:
			return nil, errTxnMapping
		case t.Epoch != c.Stage.Epoch:
			return nil, errTxnFenced
		case !t.Ongoing || t.Prepared != "" || t.Groups[c.Stage.Group] == nil:
			return nil, errTxnState
		}
		staged := map[string]log.CommittedOffset{}
		key := txnOffKey(c.ID, c.Stage.Group)
		if v := st.Get(key); v != nil {
			_ = json.Unmarshal(v, &staged)
		}
		for _, o := range c.Stage.Offsets {
			staged[fmt.Sprintf("%s/%d", o.Stream, o.Shard)] = o
		}
		v, _ := json.Marshal(staged)
		st.Put(key, v)
		return nil, nil
	}
	if c.Term != coordTerm(st) {
		return nil, errStaleCoordinator
	}
	old := decodeTxn(st.Get(txnStatePrefix + c.ID))
	var groups []log.GroupOffsets
	if c.Delete || c.Complete != "" {
		for _, k := range st.Keys(txnOffPrefix + c.ID + "\x00") {
			if c.Complete == txnPrepCommit {
				staged := map[string]log.CommittedOffset{}
				_ = json.Unmarshal(st.Get(k), &staged)
				g := log.GroupOffsets{Group: strings.TrimPrefix(k, txnOffPrefix+c.ID+"\x00")}
				keys := make([]string, 0, len(staged))
				for sk := range staged {
					keys = append(keys, sk)
				}
				sort.Strings(keys)
				for _, sk := range keys {
					g.Offsets = append(g.Offsets, staged[sk])
				}
				groups = append(groups, g)
			}
			st.Put(k, nil)
		}
	}
	if c.Delete {
		if old != nil {
			st.Put(txnPIDPrefix+strconv.FormatInt(old.PID, 10), nil)
		}
		st.Put(txnStatePrefix+c.ID, nil)
		return groups, nil
	}
	t := decodeTxn(c.Value)
	if t == nil {
		return nil, fmt.Errorf("kafka transaction command: bad state of %q", c.ID)
	}
	if old != nil && t.Seq <= old.Seq && c.Complete == "" {
		// An older change of the coordinator applied after a newer one (its requests
		// went out concurrently): the newer state holds it already.
		return nil, nil
	}
	if old != nil && old.PID != t.PID {
		st.Put(txnPIDPrefix+strconv.FormatInt(old.PID, 10), nil)
	}
	st.Put(txnPIDPrefix+strconv.FormatInt(t.PID, 10), []byte(c.ID))
	st.Put(txnStatePrefix+c.ID, c.Value)
	return groups, nil
}

// txnCluster is the coordinator's cluster side (txns.cl, nil alone).
type txnCluster struct {
	r TxnReplicator
	// active is the term this node coordinates at (claimed and loaded), 0 when it
	// does not; claiming is set while a claim is under way. Guarded by txns.mu.
	active   uint64
	claiming bool
	// recovering: prepared transactions this node, as a new coordinator, is completing
	// (close waits for them).
	recovering sync.WaitGroup
}

// coordinating checks, with x.mu held, that this node is the active coordinator: else
// NOT_COORDINATOR (clients look it up again) or, while it takes over,
// COORDINATOR_LOAD_IN_PROGRESS.
func (x *txns) coordinating() *kerr.Error {
	if x.cl == nil {
		return nil
	}
	term := x.cl.r.CoordinatorTerm()
	switch {
	case term == 0:
		x.cl.active = 0
		return kerr.NotCoordinator
	case term != x.cl.active:
		return kerr.CoordinatorLoadInProgress
	}
	return nil
}

// claim takes over coordination when this node leads the catalog group at a term it
// does not coordinate at yet (the timeout loop calls it): the claim is replicated,
// then the state is loaded as every change before the claim left it, then prepared
// transactions are completed.
func (x *txns) claim() {
	x.mu.Lock()
	term := x.cl.r.CoordinatorTerm()
	if term == 0 {
		x.cl.active = 0
	}
	if term == 0 || term == x.cl.active || x.cl.claiming {
		x.mu.Unlock()
		return
	}
	x.cl.claiming = true
	x.mu.Unlock()
	defer func() {
		x.mu.Lock()
		x.cl.claiming = false
		x.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), txnStoreWait)
	defer cancel()
	cmd, _ := json.Marshal(txnStateCmd{Claim: true, Term: term})
	if err := x.cl.r.ProposeState(ctx, cmd); err != nil {
		x.lg.Debug().Err(err).Uint64("term", term).Msg("kafka transaction coordinator claim")
		return
	}
	byID, byPID := map[string]*txn{}, map[int64]*txn{}
	var prepared []*txn
	x.cl.r.StateScan(txnStatePrefix, func(k string, v []byte) {
		t := decodeTxn(v)
		if t == nil {
			return
		}
		t.ID = strings.TrimPrefix(k, txnStatePrefix)
		byID[t.ID], byPID[t.PID] = t, t
		if t.Prepared != "" {
			t.ending = true
			prepared = append(prepared, t)
		}
	})
	x.mu.Lock()
	if x.cl.r.CoordinatorTerm() != term {
		x.mu.Unlock()
		return
	}
	x.byID, x.byPID, x.cl.active = byID, byPID, term
	x.mu.Unlock()
	x.lg.Info().Uint64("term", term).Int("transactional_ids", len(byID)).Int("prepared", len(prepared)).
		Msg("kafka transaction coordinator: this node coordinates")
	for _, t := range prepared {
		t := t
		x.cl.recovering.Add(1)
		go func() {
			defer x.cl.recovering.Done()
			x.finishPrepared(t, term, t.Prepared == txnPrepCommit, "recovered", "completed by a new coordinator")
		}()
	}
}

// storeCluster replicates t's state (x.mu held: t is copied) and reports when this
// node applied it. complete ends the transaction's staged offsets.
func (x *txns) storeCluster(t *txn, complete string) <-chan error {
	t.Seq++
	cmd, _ := json.Marshal(txnStateCmd{Term: x.cl.active, ID: t.ID, Value: t.value(), Complete: complete})
	ch := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), txnStoreWait)
		defer cancel()
		ch <- x.cl.r.ProposeState(ctx, cmd)
	}()
	return ch
}

// storeCode is the answer for a failed replicated change.
func storeCode(err error) *kerr.Error {
	if errors.Is(err, errStaleCoordinator) {
		return kerr.NotCoordinator
	}
	return kerr.CoordinatorNotAvailable
}

// endCluster is end in a cluster: PrepareCommit/PrepareAbort stored, the markers
// written, CompleteCommit/CompleteAbort stored.
func (x *txns) endCluster(t *txn, commit, bump bool, outcome, why string) ([]endedPart, *kerr.Error) {
	x.mu.Lock()
	if code := x.coordinating(); code != nil {
		x.mu.Unlock()
		return nil, code
	}
	if t.ending || !t.Ongoing {
		x.mu.Unlock()
		return nil, kerr.ConcurrentTransactions
	}
	t.ending = true
	term, id := x.cl.active, t.ID
	prev := *t
	if bump && t.Epoch < math.MaxInt16-1 {
		t.Epoch++
	}
	t.Prepared = txnPrepAbort
	if commit {
		t.Prepared = txnPrepCommit
	}
	t.UsedMS = x.now().UnixMilli()
	stored := x.storeCluster(t, "")
	x.mu.Unlock()
	if err := <-stored; err != nil {
		x.mu.Lock()
		t.Epoch, t.Prepared, t.ending = prev.Epoch, "", false
		x.mu.Unlock()
		x.lg.Warn().Err(err).Str("transactional_id", id).Bool("commit", commit).Msg("kafka transaction end not prepared; still ongoing")
		return nil, storeCode(err)
	}
	if code := x.finishPrepared(t, term, commit, outcome, why); code != nil {
		return nil, code
	}
	return nil, nil
}

// finishPrepared writes a prepared transaction's markers (again, until every one is
// written or this node stops coordinating at term) and stores it complete.
func (x *txns) finishPrepared(t *txn, term uint64, commit bool, outcome, why string) *kerr.Error {
	x.mu.Lock()
	id := t.ID
	parts := append([]txnPart(nil), t.Parts...)
	pid, epoch := t.PID, t.Epoch
	x.mu.Unlock()
	left := parts
	for len(left) > 0 {
		if x.stopping() || x.cl.r.CoordinatorTerm() != term {
			x.abandon(t)
			return kerr.NotCoordinator
		}
		errs := make([]error, len(left))
		var wg sync.WaitGroup
		for i, p := range left {
			if st := x.s.log.Stream(p.Stream); st == nil || p.Shard >= st.Shards() {
				continue // deleted since: nothing to mark
			}
			wg.Add(1)
			ctx, cancel := context.WithTimeout(context.Background(), txnMarkerWait)
			x.cl.r.WriteMarker(ctx, p.Stream, p.Shard, pid, epoch, commit, int32(term), func(err error) {
				errs[i] = err
				cancel()
				wg.Done()
			})
		}
		wg.Wait()
		var again []txnPart
		for i, err := range errs {
			if err != nil {
				x.lg.Warn().Err(err).Str("transactional_id", id).Str("stream", left[i].Stream).Int32("shard", left[i].Shard).
					Msg("kafka transaction marker not written yet; retrying")
				again = append(again, left[i])
			}
		}
		left = again
		if len(left) > 0 {
			select {
			case <-time.After(100 * time.Millisecond):
			case <-x.stop:
			case <-x.s.done:
			}
		}
	}
	x.mu.Lock()
	if x.cl.active != term {
		x.mu.Unlock()
		x.abandon(t)
		return kerr.NotCoordinator
	}
	next := *t
	next.ending, next.inflight, next.drained = false, 0, nil
	next.Ongoing, next.StartedMS, next.Parts, next.Groups, next.LastCommit, next.Ended, next.Prepared = false, 0, nil, nil, commit, true, ""
	next.UsedMS = x.now().UnixMilli()
	complete := txnPrepAbort
	if commit {
		complete = txnPrepCommit
	}
	stored := x.storeCluster(&next, complete)
	x.mu.Unlock()
	for {
		err := <-stored
		if err == nil {
			break
		}
		if errors.Is(err, errStaleCoordinator) || x.stopping() {
			x.abandon(t)
			return kerr.NotCoordinator
		}
		x.lg.Warn().Err(err).Str("transactional_id", id).Msg("kafka transaction completion not stored yet; retrying")
		x.mu.Lock()
		stored = x.storeCluster(&next, complete)
		x.mu.Unlock()
	}
	x.mu.Lock()
	epochWas := t.Epoch
	*t = next
	x.mu.Unlock()
	x.s.metrics.txnEnded(outcome)
	ev := x.lg.Debug()
	if why != "" {
		ev = x.lg.Info()
	}
	ev.Str("transactional_id", id).Int64("producer_id", pid).Int16("epoch", epochWas).Bool("commit", commit).
		Int("partitions", len(parts)).Str("reason", why).Msg("kafka transaction ended")
	return nil
}

// abandon leaves a prepared transaction to the next coordinator.
func (x *txns) abandon(t *txn) {
	x.mu.Lock()
	t.ending = false
	x.mu.Unlock()
}

// stopping: the coordinator or the server is closing (a request looping in
// finishPrepared must let the server's close finish).
func (x *txns) stopping() bool {
	select {
	case <-x.stop:
		return true
	case <-x.s.done:
		return true
	default:
		return false
	}
}

// replicated reads a transactional id's state from the replicated state by producer id.
func (x *txns) replicated(pid int64) *txn {
	id := x.cl.r.StateGet(txnPIDPrefix + strconv.FormatInt(pid, 10))
	if id == nil {
		return nil
	}
	t := decodeTxn(x.cl.r.StateGet(txnStatePrefix + string(id)))
	if t != nil {
		t.ID = string(id)
	}
	return t
}

// checkProduceCluster is checkProduce on a partition leader in a cluster, against the
// replicated state; a transactional batch the state does not admit yet is checked
// again once this node caught up with the catalog (an AddPartitionsToTxn answered by
// the coordinator may not be applied here yet).
func (x *txns) checkProduceCluster(pid int64, epoch int16, part txnPart, transactional bool) (func(), *kerr.Error) {
	check := func() *kerr.Error {
		t := x.replicated(pid)
		if !transactional {
			if t != nil && t.Ongoing {
				return kerr.InvalidTxnState
			}
			return nil
		}
		switch {
		case t == nil:
			return kerr.InvalidProducerIDMapping
		case epoch != t.Epoch:
			return kerr.InvalidProducerEpoch
		case !t.Ongoing || t.Prepared != "" || !t.hasPart(part):
			return kerr.InvalidTxnState
		}
		return nil
	}
	code := check()
	if code != nil && transactional {
		ctx, cancel := context.WithTimeout(context.Background(), txnProduceSync)
		err := x.cl.r.SyncState(ctx)
		cancel()
		if err != nil {
			return nil, kerr.NotLeaderForPartition
		}
		code = check()
	}
	if code != nil {
		return nil, code
	}
	return func() {}, nil
}

// stageOffsetsCluster is TxnOffsetCommit on the group's coordinator in a cluster: the
// offsets are staged in the replicated state, checked there against the transaction.
func (x *txns) stageOffsetsCluster(id string, pid int64, epoch int16, group string, offs []log.CommittedOffset) *kerr.Error {
	cmd, _ := json.Marshal(txnStateCmd{ID: id, Stage: &txnStage{PID: pid, Epoch: epoch, Group: group, Offsets: offs}})
	ctx, cancel := context.WithTimeout(context.Background(), txnStoreWait)
	defer cancel()
	err := x.cl.r.ProposeState(ctx, cmd)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errTxnMapping):
		return kerr.InvalidProducerIDMapping
	case errors.Is(err, errTxnFenced):
		return kerr.ProducerFenced
	case errors.Is(err, errTxnState):
		// AddOffsetsToTxn not applied here yet, or the transaction is ending.
		return kerr.ConcurrentTransactions
	}
	x.lg.Warn().Err(err).Str("transactional_id", id).Msg("kafka TxnOffsetCommit")
	return kerr.CoordinatorNotAvailable
}

// pendingOffsetsCluster: staged offsets of group for stream/shard in the replicated state.
func (x *txns) pendingOffsetsCluster(group, stream string, shard int32) bool {
	want := fmt.Sprintf("%s/%d", stream, shard)
	found := false
	x.cl.r.StateScan(txnOffPrefix, func(k string, v []byte) {
		if found || !strings.HasSuffix(k, "\x00"+group) {
			return
		}
		staged := map[string]log.CommittedOffset{}
		if json.Unmarshal(v, &staged) == nil {
			_, found = staged[want]
		}
	})
	return found
}

// DeliverCommittedMarker hands to MQTT delivery the records a commit marker just
// written by this node (the partition's leader) committed: pid's records from first up
// to the marker, read from the local log (cluster: the coordinator may hold no replica
// of the partition).
func (s *Server) DeliverCommittedMarker(stream string, shard int32, pid, first, marker int64) {
	st := s.log.Stream(stream)
	if st == nil || s.deliver == nil || first < 0 {
		return
	}
	// Applied here, but readable once durable (the high watermark passes the marker).
	timeout := time.After(txnMarkerWait)
	for {
		ch, err := st.Appended(shard)
		if err != nil {
			return
		}
		if _, hwm, err := st.Offsets(shard); err != nil || hwm > marker {
			break
		}
		select {
		case <-ch:
		case <-timeout:
			s.lg.Warn().Str("stream", stream).Int32("shard", shard).Int64("marker", marker).Msg("committed transaction not delivered to MQTT: its marker did not become readable")
			return
		case <-s.done:
			return
		}
	}
	var mayPublish func(string) bool
	if s.auth != nil {
		mayPublish = func(string) bool { return false }
		if s.txns.cl != nil {
			if t := s.txns.replicated(pid); t != nil {
				if p, ok := s.auth.Lookup(t.Owner); ok {
					mayPublish = p.CanPublish
				} else if a, ok := s.auth.Anonymous(); ok && a.Name() == t.Owner {
					mayPublish = a.CanPublish // the id's owner connected without a user
				}
			}
		}
	}
	s.deliverCommitted([]endedPart{{stream: st, shard: shard, pid: pid, first: first, marker: marker}}, mayPublish)
}

var _ = mapping.Produced{}

// forgetCluster deletes expired transactional ids from the replicated state.
func (x *txns) forgetCluster(gone []*txn) {
	x.mu.Lock()
	term := x.cl.active
	x.mu.Unlock()
	for _, t := range gone {
		cmd, _ := json.Marshal(txnStateCmd{Term: term, ID: t.ID, Delete: true})
		ctx, cancel := context.WithTimeout(context.Background(), txnStoreWait)
		if err := x.cl.r.ProposeState(ctx, cmd); err != nil {
			x.lg.Warn().Err(err).Str("transactional_id", t.ID).Msg("delete expired transactional id")
		}
		cancel()
	}
}
