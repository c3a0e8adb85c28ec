package compattests

// Exactly once across a member kill (issue 11): a consume-transform-produce loop of
// franz-go GroupTransactSession members, each its own process, reads eos-in and writes
// eos-out in transactions that also commit the group's offsets. One member is killed
// with SIGKILL mid-stream and restarted with the same transactional id (fencing the
// dead one's open transaction); a read_committed reader of eos-out then sees every
// input record transformed exactly once.

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const eosRecords = 1000

// TestEOSMemberProcess is the member process; it runs only when started by
// TestGroupTransactSessionExactlyOnce, until killed.
func TestEOSMemberProcess(t *testing.T) {
	addr := os.Getenv("MQSTREAMS_EOS_MEMBER")
	if addr == "" {
		t.Skip("helper process of TestGroupTransactSessionExactlyOnce")
	}
	session := func() *kgo.GroupTransactSession {
		sess, err := kgo.NewGroupTransactSession(
			kgo.SeedBrokers(strings.Split(addr, ",")...), // a cluster's nodes, comma-separated
			kgo.TransactionalID(os.Getenv("MQSTREAMS_EOS_TXID")),
			kgo.TransactionTimeout(20*time.Second),
			kgo.ConsumerGroup("eos"),
			kgo.ConsumeTopics("eos-in"),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			kgo.RequireStableFetchOffsets(),
			kgo.SessionTimeout(6*time.Second),
			kgo.HeartbeatInterval(500*time.Millisecond),
			// What the client did and saw, for the test to show when a member stalls.
			kgo.WithLogger(kgo.BasicLogger(os.Stdout, kgo.LogLevelInfo, func() string {
				return time.Now().UTC().Format("15:04:05.000 ")
			})),
		)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		return sess
	}
	sess := session()
	ctx := context.Background()
	for {
		fs := sess.PollRecords(ctx, 50)
		recs := fs.Records()
		if len(recs) == 0 {
			continue
		}
		if err := sess.Begin(); err != nil {
			// franz-go v1.22.3 refuses to begin when the last End's outcome is unknown
			// (its EndTxn met the coordinator's death: it wants End(TryAbort) again),
			// and for good when its producer failed fatally (its coordinator died as it
			// added partitions, and a sink that picked the dead node just before
			// Metadata dropped it took "unknown broker" as fatal). As an application
			// does, a new session goes on: its InitProducerId fences the old producer
			// and aborts what it left open.
			fmt.Println("error begin:", err, "(a new session goes on)")
			sess.Close()
			sess = session()
			continue
		}
		var perr atomic.Value
		for _, r := range recs {
			out := &kgo.Record{Topic: "eos-out", Key: r.Key, Value: append([]byte("out-"), r.Value...)}
			sess.Produce(ctx, out, func(_ *kgo.Record, err error) {
				if err != nil {
					perr.Store(err)
				}
			})
		}
		// Stored but not committed for a while: a kill most likely lands here, with
		// the transaction's records in eos-out and its offsets staged.
		if err := sess.Client().Flush(ctx); err != nil {
			fmt.Println("error flush", err)
		}
		time.Sleep(50 * time.Millisecond)
		committed, err := sess.End(ctx, kgo.TransactionEndTry(perr.Load() == nil))
		fmt.Printf("batch %d committed %v err %v\n", len(recs), committed, err)
	}
}

// member is a running member process.
type member struct {
	cmd       *exec.Cmd
	committed atomic.Int64 // batches committed
	done      chan struct{}

	mu    sync.Mutex
	tail  []string // its last memberTail output lines other than commits
	lines int      // how many such lines it wrote in all
}

// memberTail is how many of a member's last lines a failed test shows: a stalled
// client can log a line a millisecond (a dead node redialled), too many to keep all.
const memberTail = 400

func startMember(t *testing.T, addr, txid string) *member {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestEOSMemberProcess$")
	cmd.Env = append(os.Environ(), "MQSTREAMS_EOS_MEMBER="+addr, "MQSTREAMS_EOS_TXID="+txid, "MQSTREAMS_BIN="+binary)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	m := &member{cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if strings.Contains(line, "committed true") {
				m.committed.Add(1)
				continue
			}
			if strings.HasPrefix(line, "error") {
				t.Logf("member %s: %s", txid, line)
			}
			m.mu.Lock()
			m.lines++
			if len(m.tail) == memberTail {
				m.tail = m.tail[1:]
			}
			m.tail = append(m.tail, line)
			m.mu.Unlock()
		}
	}()
	// Cleanups run last first: the member is killed, then its output shown.
	t.Cleanup(func() {
		if t.Failed() {
			m.mu.Lock()
			defer m.mu.Unlock()
			t.Logf("member %s: its last %d of %d lines (aborts, errors, franz-go's log):\n%s",
				txid, len(m.tail), m.lines, strings.Join(m.tail, "\n"))
		}
	})
	t.Cleanup(m.kill)
	return m
}

func (m *member) kill() {
	if m.cmd.ProcessState == nil {
		_ = m.cmd.Process.Kill() // SIGKILL
		<-m.done
		_ = m.cmd.Wait()
	}
}

func TestGroupTransactSessionExactlyOnce(t *testing.T) {
	srv := StartServer(t, ServerOptions{Config: `streams:
  - {name: eos-in, filter: "eos-in/#", shards: 2}
  - {name: eos-out, filter: "eos-out/#", shards: 2}
`})
	ctx := Deadline(t, 4*time.Minute)
	produceEOSInput(t, ctx, srv.KafkaAddr)

	a := startMember(t, srv.KafkaAddr, "eos-a")
	b := startMember(t, srv.KafkaAddr, "eos-b")
	waitFor(t, ctx, "member a to commit 3 batches", func() (bool, string) {
		return a.committed.Load() >= 3, fmt.Sprintf("%d batches", a.committed.Load())
	})
	a.kill()
	killedAt := offsetsEnd(t, ctx, srv.KafkaAddr, "eos-out", 2)
	t.Logf("member a killed after %d committed batches (b: %d); eos-out offsets %d", a.committed.Load(), b.committed.Load(), killedAt)
	a2 := startMember(t, srv.KafkaAddr, "eos-a") // same transactional id: fences a's open transaction

	// Every input record once in eos-out, read_committed.
	cons, err := kgo.NewClient(kgo.SeedBrokers(srv.KafkaAddr), kgo.ConsumeTopics("eos-out"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	seen := map[string]int{}
	total := 0
	for total < eosRecords {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read_committed eos-out: %d records (%d distinct) of %d before the deadline; a2 %d, b %d batches",
				total, len(seen), eosRecords, a2.committed.Load(), b.committed.Load())
		}
		fs.EachRecord(func(r *kgo.Record) {
			seen[string(r.Value)]++
			total++
		})
	}
	// Anything beyond would be a duplicate: give it time to show.
	pollCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	for pollCtx.Err() == nil {
		cons.PollFetches(pollCtx).EachRecord(func(r *kgo.Record) {
			seen[string(r.Value)]++
			total++
		})
	}
	cancel()
	var dups []string
	for v, n := range seen {
		if n > 1 {
			dups = append(dups, fmt.Sprintf("%s×%d", v, n))
		}
	}
	for i := 0; i < eosRecords; i++ {
		if seen[fmt.Sprint("out-", i)] == 0 {
			t.Errorf("out-%d missing", i)
		}
	}
	if total != eosRecords || len(dups) > 0 {
		t.Fatalf("read_committed saw %d records for %d inputs; duplicates: %v", total, eosRecords, dups)
	}
	hwm := offsetsEnd(t, ctx, srv.KafkaAddr, "eos-out", 2)
	// read_uncommitted sees the aborted records too (those of the killed member's
	// open transaction, if the kill found one): the filtering above is what hid them.
	raw, err := kgo.NewClient(kgo.SeedBrokers(srv.KafkaAddr), kgo.ConsumeTopics("eos-out"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	uncommitted := 0
	pollCtx, cancel = context.WithTimeout(ctx, 3*time.Second)
	for pollCtx.Err() == nil {
		uncommitted += len(raw.PollFetches(pollCtx).Records())
	}
	cancel()
	if uncommitted < eosRecords {
		t.Fatalf("read_uncommitted saw %d records, fewer than the %d committed", uncommitted, eosRecords)
	}
	t.Logf("eos-out: %d committed records, %d read_uncommitted (aborted included); %d offsets with the markers", total, uncommitted, hwm)
}

// offsetsEnd sums the high watermarks of a topic's first n partitions.
func offsetsEnd(t *testing.T, ctx context.Context, addr, topic string, n int32) int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	for p := int32(0); p < n; p++ {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = p, -1
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, p := range resp.Topics[0].Partitions {
		sum += p.Offset
	}
	return sum
}

// produceEOSInput writes eosRecords numbered records, keyed over 17 keys, to eos-in.
func produceEOSInput(t *testing.T, ctx context.Context, seeds ...string) {
	t.Helper()
	prod, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic("eos-in"))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	var wg sync.WaitGroup
	var perr atomic.Value
	for i := 0; i < eosRecords; i++ {
		wg.Add(1)
		prod.Produce(ctx, &kgo.Record{Key: []byte(fmt.Sprint("k", i%17)), Value: []byte(fmt.Sprint(i))}, func(_ *kgo.Record, err error) {
			if err != nil {
				perr.Store(err)
			}
			wg.Done()
		})
	}
	wg.Wait()
	if err, _ := perr.Load().(error); err != nil {
		t.Fatal(err)
	}
}
