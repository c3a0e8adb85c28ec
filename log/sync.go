package log

import (
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// applied is one commit written to Pebble but not yet acknowledged.
type applied struct {
	groups  []*shardGroup
	entries []*pending // entry-only changes (PutEntriesAsync), acknowledged first
	appends int
	records int
	fsync   bool // holds an append to a stream with `fsync` durability
	// batch is the commit's Pebble batch, applied with its WAL write requested
	// (commitAsync); the syncer waits for that write, then closes it. Nil with NoSync.
	batch *pebble.Batch
}

// CommitObserver is optionally implemented by an Observer to learn how many appends and
// records each durable group of commits held (one WAL write, at most one fsync).
type CommitObserver interface {
	ObserveCommit(appends, records int)
}

// handToSyncer queues a commit the committer applied, in commit order.
func (l *Log) handToSyncer(a *applied) {
	l.appliedMu.Lock()
	l.appliedQ = append(l.appliedQ, a)
	l.appliedCount += a.appends + len(a.entries)
	l.appliedMu.Unlock()
	select {
	case l.applied <- struct{}{}:
	default:
	}
}

// endCommitter tells the syncer no more commits will come.
func (l *Log) endCommitter() {
	l.appliedMu.Lock()
	l.committerEnd = true
	l.appliedMu.Unlock()
	select {
	case l.applied <- struct{}{}:
	default:
	}
}

// failure is the sticky error of a failed WAL write or fsync: after one, what the
// operating system holds is unknown (a failed fsync may drop dirty pages), so the log
// refuses every later append until it is reopened and recovers from the disk.
// The error is the storage's (storage.go), shared with Pebble's own fatal errors.
func (l *Log) failure() error {
	if p := l.store.failed.Load(); p != nil {
		return *p
	}
	return nil
}

func (l *Log) fail(err error) {
	e := fmt.Errorf("%w: %w", ErrStorageFailed, err)
	if l.store.failed.CompareAndSwap(nil, &e) {
		l.lg.Error().Err(err).Msg("WAL write or fsync failed: writes refused until restart, reads keep serving")
	}
}

// maxGatherWait bounds how long the syncer waits for the writers of the previous group
// to come back. Writers woken by a sync re-append a few microseconds apart; syncing at
// once would take only the first of them, and a pipelined publisher's window would stay
// split across two syncs from then on, halving its throughput.
const maxGatherWait = 200 * time.Microsecond

// syncLoop makes applied commits durable, a group at a time, and acknowledges them in
// commit order: high watermarks advance, and done callbacks run, only after the WAL
// write (and fsync, for `fsync` streams) covering them. Meanwhile the committer goes on
// building and writing the next commits.
func (l *Log) syncLoop() {
	defer l.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var recent gatherTarget
	for {
		group, end := l.nextGroup(recent.target(), timer)
		if len(group) > 0 {
			recent.add(l.syncGroup(group))
		}
		if end {
			return
		}
	}
}

// gatherTargetGroups is how many recent groups the gather target remembers.
const gatherTargetGroups = 4

// gatherTarget is how many appends the syncer waits for before an fsync: the largest
// of the last few groups. Following only the previous group made a split window stay
// split: a publisher's 20 in flight synced as 17 then 3 waited for just 3 the next
// time, and its window went on costing two fsyncs per round (43 % of the groups of
// one mosquitto_pub -l held fewer than 17 of its 20). With the largest, a window that
// was cut once (its last publishes late behind the client's Nagle wait, or a gather
// that timed out) is waited for whole again at the next group.
type gatherTarget struct {
	sizes [gatherTargetGroups]int
	next  int
}

func (g *gatherTarget) add(n int) {
	g.sizes[g.next] = n
	g.next = (g.next + 1) % len(g.sizes)
}

func (g *gatherTarget) target() int {
	return slices.Max(g.sizes[:])
}

// nextGroup waits for applied commits and takes them all, first waiting at most
// maxGatherWait until as many appends are applied as the gather target (gatherTarget;
// a lone writer, target <= 1, never waits). end reports the committer has stopped and
// nothing is left.
func (l *Log) nextGroup(last int, timer *time.Timer) (group []*applied, end bool) {
	state := func() (int, bool) {
		l.appliedMu.Lock()
		defer l.appliedMu.Unlock()
		return l.appliedCount, l.committerEnd
	}
	needsFsync := func() bool {
		l.appliedMu.Lock()
		defer l.appliedMu.Unlock()
		for _, a := range l.appliedQ {
			if a.fsync {
				return true
			}
		}
		return false
	}
	for {
		n, ended := state()
		if n > 0 || ended {
			break
		}
		<-l.applied
	}
	// Only an fsync is worth waiting for: a `write` group costs one write(2).
	if n, ended := state(); !ended && last > 1 && n < last && needsFsync() {
		timer.Reset(maxGatherWait)
	wait:
		for {
			select {
			case <-l.applied:
				if n, ended := state(); ended || n >= last {
					break wait
				}
			case <-timer.C:
				break wait
			}
		}
		timer.Stop()
	}
	l.appliedMu.Lock()
	defer l.appliedMu.Unlock()
	group, l.appliedQ, l.appliedCount = l.appliedQ, nil, 0
	return group, l.committerEnd && len(group) == 0
}

// syncGroup makes a group durable and acknowledges it; it returns how many appends and
// entry changes it held.
func (l *Log) syncGroup(group []*applied) int {
	appends, items, records, fsync := 0, 0, 0, false
	for _, a := range group {
		appends += a.appends
		items += a.appends + len(a.entries)
		records += a.records
		fsync = fsync || a.fsync
	}
	if l.opts.testBeforeSync != nil {
		l.opts.testBeforeSync()
	}
	// Each commit asked Pebble's WAL flush loop for its write(2) (commitAsync); once
	// the last one's is done, the group reached the operating system. Every batch is
	// waited for (Pebble's rule before Close); the earlier ones are done by then.
	var err error
	for _, a := range group {
		if a.batch == nil {
			continue
		}
		if werr := a.batch.SyncWait(); werr != nil && err == nil {
			err = fmt.Errorf("WAL write: %w", werr)
		}
		_ = a.batch.Close()
		a.batch = nil
	}
	if err != nil {
		l.fail(err)
	}
	err = l.failure()
	if err == nil && !l.opts.NoSync {
		if fsync {
			_, err = l.wfs.fsync()
		} else {
			l.unsynced.Store(true)
		}
		if err != nil {
			l.fail(err)
			err = l.failure()
		}
	}
	if co, ok := l.opts.Observer.(CommitObserver); ok && err == nil {
		co.ObserveCommit(appends, records)
	}
	done := time.Now()
	wakeCoalescer := false
	for _, a := range group {
		for _, p := range a.entries {
			if err != nil {
				p.entriesDone(fmt.Errorf("write %d entries: %w", len(p.ops), err))
			} else {
				p.entriesDone(nil)
			}
		}
		for _, g := range a.groups {
			if err != nil {
				for _, p := range g.items {
					p.done(AppendResult{}, fmt.Errorf("append %s/%d: %w", g.stream.name, g.shard, err))
				}
				continue
			}
			g.sh.bytes.Add(g.newCum - g.cum)
			g.sh.bound.Store(g.newBound) // before the high watermark: see lastStable
			g.sh.hwm.Store(g.newNext)
			if g.sh.co.noteCommit(&l.opts.Coalesce, g.newNext, g.newCum, done) {
				wakeCoalescer = true
			}
			g.sh.appended()
			for _, p := range g.items {
				l.opts.Observer.ObserveAppend(g.stream.name, len(p.recs), p.bytes, done.Sub(p.enqueued))
				p.done(AppendResult{BaseOffset: p.base, TimestampUS: p.tsUS}, nil)
			}
		}
	}
	if wakeCoalescer && !l.opts.Coalesce.Disabled {
		l.wakeCoalescer()
	}
	if fs := l.afterAcks.Load(); fs != nil {
		for _, f := range *fs {
			f()
		}
	}
	return items
}

// AfterAcks registers f to run on the syncer after the done callbacks of each durable
// group, so a caller can act once per group on what those callbacks noted (mqtt
// answers a connection's whole group of publishes in one write, not one per callback).
// Appends acknowledged with success are acknowledged only there; f must not block.
func (l *Log) AfterAcks(f func()) {
	for {
		old := l.afterAcks.Load()
		var fs []func()
		if old != nil {
			fs = append(fs, *old...)
		}
		fs = append(fs, f)
		if l.afterAcks.CompareAndSwap(old, &fs) {
			return
		}
	}
}

// intervalSyncLoop fsyncs what `write` durability acknowledged unsynced, at least
// every SyncInterval: the bound on what a power loss can take.
func (l *Log) intervalSyncLoop() {
	defer l.wg.Done()
	t := time.NewTicker(l.opts.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if l.unsynced.Swap(false) {
				if _, err := l.wfs.fsync(); err != nil {
					l.fail(err)
				}
			}
		case <-l.stop:
			return
		}
	}
}
