package log

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waiting is how many appends wait for room in the queue.
func (l *Log) waiting() int {
	l.adm.mu.Lock()
	defer l.adm.mu.Unlock()
	return l.adm.waiters.Len()
}

func heapAlloc() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestQueueBoundWhileSyncBlocked stalls the syncer and pushes 64 times the queue bound
// at the log: the admitted bytes stay within the bound, memory does not grow with what
// was pushed, drops are refused at once, a blocking append waits, a waiting one times
// out, and once the sync resumes every admitted append is stored.
func TestQueueBoundWhileSyncBlocked(t *testing.T) {
	const bound = 1 << 20
	l, s, gate := openGated(t, Options{QueueBytes: bound}, nil, "q")
	gate.hold()
	base := heapAlloc()

	value := make([]byte, 1000)
	var acked, dropped atomic.Int64
	var pending sync.WaitGroup
	for i := 0; i < 64*bound/len(value); i++ {
		pending.Add(1)
		s.AppendAsyncAdmit(context.Background(), AppendDrop, 0, []Record{{Value: value}}, nil, func(_ AppendResult, err error) {
			defer pending.Done()
			switch {
			case err == nil:
				acked.Add(1)
			case errors.Is(err, ErrQueueFull):
				dropped.Add(1)
			default:
				t.Errorf("append: %v", err)
			}
		})
		if q := l.QueuedBytes(); q > bound {
			t.Fatalf("queued %d bytes, bound %d", q, bound)
		}
	}
	if acked.Load() != 0 {
		t.Fatalf("%d appends acknowledged while the sync was stalled", acked.Load())
	}
	if dropped.Load() == 0 {
		t.Fatal("nothing dropped with the sync stalled")
	}
	if grown := int64(heapAlloc()) - int64(base); grown > 16<<20 {
		t.Fatalf("heap grew by %d bytes pushing 64 MiB at a 1 MiB queue", grown)
	}
	// Dropped appends fill only their share of the queue; acknowledged ones fill the
	// rest, until one waits.
	for l.waiting() == 0 {
		pending.Add(1)
		s.AppendAsyncAdmit(context.Background(), AppendWait, 0, []Record{{Value: value}}, nil, func(_ AppendResult, err error) {
			defer pending.Done()
			if err != nil {
				t.Errorf("append: %v", err)
			}
			acked.Add(1)
		})
		if q := l.QueuedBytes(); q > bound {
			t.Fatalf("queued %d bytes, bound %d", q, bound)
		}
	}

	// A Kafka-style append waits, then times out.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	timedOut := make(chan error, 1)
	s.AppendAsyncAdmit(ctx, AppendWait, 0, []Record{{Value: value}}, nil, func(_ AppendResult, err error) { timedOut <- err })
	if err := <-timedOut; !errors.Is(err, ErrQueueFull) {
		t.Fatalf("waiting append: %v, want ErrQueueFull", err)
	}

	// An MQTT QoS 1 style append blocks its caller until there is room.
	returned := make(chan struct{})
	blockDone := make(chan error, 1)
	go func() {
		s.AppendAsyncAdmit(context.Background(), AppendBlock, 0, []Record{{Value: value}}, nil, func(_ AppendResult, err error) { blockDone <- err })
		close(returned)
	}()
	waitFor(t, "the blocking append to wait", func() bool {
		l.adm.mu.Lock()
		defer l.adm.mu.Unlock()
		return l.adm.waiters.Len() == 2 // behind the last of the fill
	})
	select {
	case <-returned:
		t.Fatal("a blocking append returned while the queue was full")
	default:
	}

	gate.open()
	<-returned
	if err := <-blockDone; err != nil {
		t.Fatal(err)
	}
	pending.Wait()
	if _, hwm, _ := s.Offsets(0); hwm != acked.Load()+1 {
		t.Fatalf("hwm %d, want %d acknowledged + 1 blocked", hwm, acked.Load())
	}
	waitFor(t, "the queue to empty", func() bool { return l.QueuedBytes() == 0 })
}

// TestQueueBestEffortShare stalls the syncer under a flood of dropped appends (MQTT
// QoS 0) and checks they hold only their share of the queue, so an acknowledged append
// (MQTT QoS 1, Kafka Produce) is still admitted at once and waits behind at most that
// share; that acknowledged appends may fill the rest of the bound, taking no room from
// the share back; and that once the sync resumes every admitted append is stored, in
// the order admitted, and the share admits again.
func TestQueueBestEffortShare(t *testing.T) {
	const bound = 1 << 20
	l, s, gate := openGated(t, Options{QueueBytes: bound}, nil, "q")
	gate.hold()

	value := make([]byte, 1000)
	cost := queueCost([]Record{{Value: value}}, nil)
	var dropped, stored atomic.Int64
	var pending sync.WaitGroup
	bestEffort := func() (refused bool) {
		pending.Add(1)
		s.AppendAsyncAdmit(context.Background(), AppendDrop, 0, []Record{{Value: value}}, nil, func(_ AppendResult, err error) {
			defer pending.Done()
			switch {
			case err == nil:
				stored.Add(1)
			case errors.Is(err, ErrQueueFull):
				dropped.Add(1)
				refused = true // answered at once when refused
			default:
				t.Errorf("append: %v", err)
			}
		})
		return refused
	}
	for i := 0; i < 4*bound/len(value); i++ {
		bestEffort()
	}
	floodDropped := dropped.Load()
	share := l.QueuedBytes()
	if share > bound/bestEffortShare || share < bound/bestEffortShare-cost {
		t.Fatalf("a best-effort flood holds %d bytes of the queue, want its share %d", share, bound/bestEffortShare)
	}
	if floodDropped == 0 {
		t.Fatal("nothing dropped with the share full")
	}

	// An acknowledged append is admitted at once, behind only the share.
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		pending.Add(1)
		s.AppendAsyncAdmit(context.Background(), AppendBlock, 0, []Record{{Value: value}}, nil, func(_ AppendResult, err error) {
			defer pending.Done()
			if err != nil {
				t.Errorf("acknowledged append: %v", err)
			}
		})
	}()
	select {
	case <-returned:
	case <-time.After(20 * time.Second):
		t.Fatalf("an acknowledged append blocked behind %d best-effort bytes, bound %d", share, bound)
	}
	// Acknowledged appends fill the rest of the bound...
	acked := 1
	for l.waiting() == 0 {
		pending.Add(1)
		s.AppendAsyncAdmit(context.Background(), AppendWait, 0, []Record{{Value: value}}, nil, func(_ AppendResult, err error) {
			defer pending.Done()
			if err != nil {
				t.Errorf("acknowledged append: %v", err)
			}
		})
		acked++
	}
	if q := l.QueuedBytes(); q > bound || q < bound-cost {
		t.Fatalf("acknowledged appends filled the queue to %d bytes, bound %d", q, bound)
	}
	// ...and a best-effort append is still refused, also once they are acknowledged.
	if !l.QueueFull(int64(len(value))) || !bestEffort() {
		t.Fatal("a best-effort append was admitted past its share")
	}
	admittedBestEffort := int64(4*bound/len(value)) - floodDropped

	gate.open()
	pending.Wait()
	if got := stored.Load(); got != admittedBestEffort {
		t.Fatalf("%d best-effort appends stored, %d admitted", got, admittedBestEffort)
	}
	if _, hwm, _ := s.Offsets(0); hwm != admittedBestEffort+int64(acked) {
		t.Fatalf("hwm %d, want %d best-effort + %d acknowledged", hwm, admittedBestEffort, acked)
	}
	waitFor(t, "the queue to empty", func() bool { return l.QueuedBytes() == 0 })
	if bestEffort() {
		t.Fatal("a best-effort append refused by an empty queue")
	}
	pending.Wait()
}

// TestQueueCloseFailsWaiters checks Close answers appends waiting for room.
func TestQueueCloseFailsWaiters(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	l, err := Open(Options{Dir: t.TempDir(), QueueBytes: 100, testBeforeSync: func() { <-release }})
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.CreateStream(StreamSpec{Name: "q", Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer once.Do(func() { close(release) })
	first := make(chan error, 1)
	s.AppendAsyncAdmit(context.Background(), AppendDrop, 0, []Record{{Value: make([]byte, 200)}}, nil, func(_ AppendResult, err error) { first <- err })
	waiting := make(chan error, 1)
	s.AppendAsyncAdmit(context.Background(), AppendWait, 0, []Record{{Value: []byte("x")}}, nil, func(_ AppendResult, err error) { waiting <- err })
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	if err := <-waiting; !errors.Is(err, ErrClosed) {
		t.Fatalf("waiting append at Close: %v, want ErrClosed", err)
	}
	once.Do(func() { close(release) })
	if err := <-first; err != nil {
		t.Fatalf("admitted append: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}

// TestPipelinedCommit stalls the sync of one commit and checks the next commit is built
// and written meanwhile, while neither is visible (high watermark) nor acknowledged
// until durable, and both are then acknowledged in commit order.
func TestPipelinedCommit(t *testing.T) {
	entered := make(chan struct{}, 16)
	l, s, gate := openGated(t, Options{}, entered, "p")
	gate.hold()
	var mu sync.Mutex
	var order []int64
	acked := make(chan struct{}, 2)
	appendOne := func(v string) {
		s.AppendAsync(0, []Record{{Value: []byte(v)}}, func(r AppendResult, err error) {
			if err != nil {
				t.Errorf("append %s: %v", v, err)
			}
			mu.Lock()
			order = append(order, r.BaseOffset)
			mu.Unlock()
			acked <- struct{}{}
		})
	}
	appendOne("first")
	<-entered // the syncer holds the first commit
	appendOne("second")
	waitFor(t, "the second commit to be written while the first syncs", func() bool {
		l.appliedMu.Lock()
		defer l.appliedMu.Unlock()
		return len(l.appliedQ) == 1
	})
	if _, hwm, _ := s.Offsets(0); hwm != 0 {
		t.Fatalf("hwm %d before any sync, want 0", hwm)
	}
	select {
	case <-acked:
		t.Fatal("an append was acknowledged before its sync")
	default:
	}
	gate.open()
	<-acked
	<-acked
	mu.Lock()
	defer mu.Unlock()
	if len(order) != 2 || order[0] != 0 || order[1] != 1 {
		t.Fatalf("acknowledged offsets %v, want [0 1]", order)
	}
	if _, hwm, _ := s.Offsets(0); hwm != 2 {
		t.Fatalf("hwm %d, want 2", hwm)
	}
}

// syncGate stops the log's syncer on demand (Options.testBeforeSync = beforeSync): once
// held, every sync waits, telling entered (if any) it came, until the gate opens for good.
type syncGate struct {
	held    atomic.Bool
	release chan struct{}
	once    sync.Once
	entered chan<- struct{}
}

// openGated opens a log whose syncs wait while its gate is held (entered, if not nil,
// hears each one), with one stream of one shard named name; the gate opens before the
// log closes, also when the test fails. o.Dir defaults to a temporary directory.
func openGated(t *testing.T, o Options, entered chan<- struct{}, name string) (*Log, *Stream, *syncGate) {
	t.Helper()
	gate := newSyncGate(entered)
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	o.testBeforeSync = gate.beforeSync
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	t.Cleanup(gate.open) // runs first
	s, err := l.CreateStream(StreamSpec{Name: name, Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	return l, s, gate
}

func newSyncGate(entered chan<- struct{}) *syncGate {
	return &syncGate{release: make(chan struct{}), entered: entered}
}

func (g *syncGate) beforeSync() {
	if g.held.Load() {
		if g.entered != nil {
			g.entered <- struct{}{}
		}
		<-g.release
	}
}

// hold makes the syncs from now on wait.
func (g *syncGate) hold() { g.held.Store(true) }

// open lets every sync through, waiting or to come; later calls do nothing.
func (g *syncGate) open() { g.once.Do(func() { g.held.Store(false); close(g.release) }) }
