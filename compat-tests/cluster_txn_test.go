package compattests

// Kafka transactions in a 3-node cluster (issue 13; docs/transactions.md "Cluster"):
// a franz-go transactional producer commits and aborts through one node while
// read_committed consumers seeded with another see only the committed records; and a
// consume-transform-produce loop of franz-go GroupTransactSession members (separate
// processes, TestEOSMemberProcess) keeps every input exactly once while the node
// coordinating their transactions is SIGKILLed mid-run and restarted.

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// txnCoordinator asks a node which node coordinates a transactional id (1-based).
func txnCoordinator(ctx context.Context, addr, txid string) (int32, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RequestRetries(0))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	req := kmsg.NewPtrFindCoordinatorRequest()
	req.CoordinatorKey, req.CoordinatorType = txid, 1
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := req.RequestWith(rctx, cl)
	if err != nil {
		return 0, err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return 0, err
	}
	return resp.NodeID, nil
}

// committedValues reads a topic's partitions from the start through seeds with the
// given isolation until want records came, then for another second (duplicates or
// aborted records would show), and returns the values.
func clusterValues(t *testing.T, ctx context.Context, seeds []string, topic string, committed bool, want int) []string {
	t.Helper()
	iso := kgo.ReadUncommitted()
	if committed {
		iso = kgo.ReadCommitted()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(iso),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []string
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%s (read_committed %v): %d of %d records before the deadline: %v", topic, committed, len(out), want, out)
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, string(r.Value)) })
	}
	more, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	for more.Err() == nil {
		cl.PollFetches(more).EachRecord(func(r *kgo.Record) { out = append(out, string(r.Value)) })
	}
	return out
}

func TestClusterKafkaTransactions(t *testing.T) {
	if !clusterSupported(t) {
		t.Skip("no cluster mode")
	}
	c := startCluster(t, 3, "streams:\n  - {name: ctx, filter: \"ctx/#\", shards: 3, replication_factor: 3}\n")
	c.waitLeaders(t, "ctx", 3, 60*time.Second)
	ctx := Deadline(t, 3*time.Minute)
	prod, err := kgo.NewClient(kgo.SeedBrokers(c.kafka[0]), kgo.TransactionalID("ctx-p"), kgo.DefaultProduceTopic("ctx"),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	var want []string
	for k := 0; k < 6; k++ {
		commit := k%3 != 1 // transactions 1 and 4 abort
		if err := prod.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 9; i++ {
			v := fmt.Sprintf("t%d-%d", k, i)
			if err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatalf("produce %s: %v", v, err)
			}
			if commit {
				want = append(want, v)
			}
		}
		if err := prod.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatalf("end transaction %d (commit %v): %v", k, commit, err)
		}
	}
	// Seeded with node 3 only: what it and its peers serve.
	got := clusterValues(t, ctx, c.kafka[2:], "ctx", true, len(want))
	if len(got) != len(want) {
		t.Fatalf("read_committed saw %d records, want %d: %v", len(got), len(want), got)
	}
	seen := map[string]bool{}
	for _, v := range got {
		seen[v] = true
	}
	for _, v := range want {
		if !seen[v] {
			t.Fatalf("read_committed lacks %s: %v", v, got)
		}
	}
	all := clusterValues(t, ctx, c.kafka[1:2], "ctx", false, 54)
	if len(all) != 54 {
		t.Fatalf("read_uncommitted saw %d records, want all 54 produced", len(all))
	}
}

// The node coordinating the members' transactions is SIGKILLed while they run; the
// next catalog leader coordinates, completes what was prepared, and the output keeps
// every input exactly once.
func TestClusterGroupTransactSessionCoordinatorKilled(t *testing.T) {
	if !clusterSupported(t) {
		t.Skip("no cluster mode")
	}
	c := startCluster(t, 3, "streams:\n"+
		"  - {name: eos-in, filter: \"eos-in/#\", shards: 2, replication_factor: 3}\n"+
		"  - {name: eos-out, filter: \"eos-out/#\", shards: 2, replication_factor: 3}\n")
	c.waitLeaders(t, "eos-in", 2, 60*time.Second)
	c.waitLeaders(t, "eos-out", 2, 60*time.Second)
	ctx := Deadline(t, 5*time.Minute)
	seeds := strings.Join(c.kafka, ",")
	produceEOSInput(t, ctx, c.kafka...)
	coord, err := txnCoordinator(ctx, c.kafka[0], "eos-a")
	if err != nil || coord < 1 || int(coord) > len(c.nodes) {
		t.Fatalf("transaction coordinator: %d, %v", coord, err)
	}
	a := startMember(t, seeds, "eos-a")
	b := startMember(t, seeds, "eos-b")
	waitFor(t, ctx, "members to commit 3 batches", func() (bool, string) {
		return a.committed.Load()+b.committed.Load() >= 3, fmt.Sprintf("a %d, b %d", a.committed.Load(), b.committed.Load())
	})
	before := a.committed.Load() + b.committed.Load()
	c.kill(t, int(coord-1))
	killed := time.Now()
	t.Logf("coordinator node %d SIGKILLed after %d committed batches", coord, before)
	waitFor(t, ctx, "a commit after the coordinator's death", func() (bool, string) {
		return a.committed.Load()+b.committed.Load() > before, fmt.Sprintf("a %d, b %d", a.committed.Load(), b.committed.Load())
	})
	t.Logf("first commit %v after the kill", time.Since(killed).Round(time.Millisecond))
	c.restart(t, int(coord-1))

	var live []string
	for i := range c.nodes {
		if i != int(coord-1) {
			live = append(live, c.kafka[i])
		}
	}
	got := clusterValues(t, ctx, live, "eos-out", true, eosRecords)
	seen := map[string]int{}
	for _, v := range got {
		seen[v]++
	}
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
	if len(got) != eosRecords || len(dups) > 0 {
		t.Fatalf("read_committed saw %d records for %d inputs; duplicates: %v", len(got), eosRecords, dups)
	}
	t.Logf("eos-out: %d committed records, exactly once; members committed a %d, b %d batches", len(got), a.committed.Load(), b.committed.Load())
}

// confluent-kafka-python commits and aborts through node 1; mosquitto_sub on another
// node gets the committed records only (delivered at commit by the partition's leader,
// forwarded by the route table), and kcat read_committed through node 3 sees only them.
func TestClusterKafkaTransactionsConfluentMQTT(t *testing.T) {
	if !clusterSupported(t) {
		t.Skip("no cluster mode")
	}
	confluent := pythonScript(t, "confluent_kafka", "confluent_txn.py")
	kcat := NeedTool(t, "kcat")
	sub, pub := NeedTool(t, "mosquitto_sub"), NeedTool(t, "mosquitto_pub")
	c := startCluster(t, 3, "streams:\n  - {name: txn, filter: \"txn-in/#\", shards: 1, replication_factor: 3}\n")
	lead := int(c.waitLeaders(t, "txn", 1, 60*time.Second)[0]) - 1
	other := (lead + 1) % 3
	ctx := Deadline(t, 3*time.Minute)

	// A subscriber on another node; until its filter is in the leader's route table,
	// probes published on the leader, until one arrives.
	ho, po := SplitAddr(t, c.mqtt[other])
	ms := exec.CommandContext(ctx, "stdbuf", "-oL", sub, "-h", ho, "-p", po, "-V", "mqttv5", "-q", "1", "-t", "txn/+", "-F", "%t=%p")
	out, err := ms.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := ms.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ms.Process.Kill(); _ = ms.Wait() })
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	hl, pl := SplitAddr(t, c.mqtt[lead])
	for arrived := false; !arrived; {
		if b, err := exec.CommandContext(ctx, pub, "-h", hl, "-p", pl, "-t", "txn/probe", "-m", "p").CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub: %v %s", err, b)
		}
		select {
		case <-lines:
			arrived = true
		case <-time.After(300 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("no probe reached the subscriber on another node")
		}
	}

	if l := runJSON(t, ctx, "done", append(confluent, c.kafka[0], "produce", "txn", "cluster-txn")...); len(l) != 1 {
		t.Fatal("confluent producer did not finish")
	}
	var got []string
	for len(got) < 3 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("mosquitto_sub ended; got %v", got)
			}
			if l != "txn/probe=p" {
				got = append(got, l)
			}
		case <-ctx.Done():
			t.Fatalf("mosquitto_sub on node %d got %v before the deadline", other+1, got)
		}
	}
	if s := strings.Join(got, ","); s != "txn/c1=c1,txn/c2=c2,txn/c3=c3" {
		t.Fatalf("mosquitto_sub on node %d got %s", other+1, s)
	}
	want := map[bool]string{true: "c1,c2,c3", false: "c1,c2,a1,a2,c3"}
	for _, committed := range []bool{true, false} {
		iso := map[bool]string{true: "read_committed", false: "read_uncommitted"}[committed]
		out, err := exec.CommandContext(ctx, kcat, "-b", c.kafka[2], "-C", "-t", "txn", "-p", "0", "-o", "beginning", "-e",
			"-X", "isolation.level="+iso, "-f", "%s\n").Output()
		if err != nil {
			t.Fatalf("kcat %s: %v", iso, err)
		}
		if got := strings.Join(strings.Fields(string(out)), ","); got != want[committed] {
			t.Errorf("kcat %s through node 3 got %s, want %s", iso, got, want[committed])
		}
	}
}

// The node coordinating a transactional producer is SIGKILLed between two of its
// transactions: the next one's first request to the coordinator is AddPartitionsToTxn,
// sent with its records, to the node franz-go cached from FindCoordinator. franz-go
// looks the coordinator up again only once Metadata stops listing the node it cannot
// dial, so the surviving nodes list only the nodes they reach, as Kafka lists only
// live brokers (while every node stayed listed, the producer redialled the dead one
// without end). The next transaction then commits; or, when a sink of franz-go
// v1.22.3 picked the dead node just before Metadata dropped it, the producer fails for
// good ("unknown broker", which it takes as fatal) and a new producer, as an
// application makes one, commits it, its InitProducerId aborting what the old one left.
func TestClusterTxnCoordinatorKilledBetweenTransactions(t *testing.T) {
	if !clusterSupported(t) {
		t.Skip("no cluster mode")
	}
	c := startCluster(t, 3, "streams:\n  - {name: ctk, filter: \"ctk/#\", shards: 2, replication_factor: 3}\n")
	c.waitLeaders(t, "ctk", 2, 60*time.Second)
	ctx := Deadline(t, 3*time.Minute)
	coord, err := txnCoordinator(ctx, c.kafka[0], "ctk-p")
	if err != nil || coord < 1 || int(coord) > len(c.nodes) {
		t.Fatalf("transaction coordinator: %d, %v", coord, err)
	}
	producer := func() *kgo.Client {
		t.Helper()
		prod, err := kgo.NewClient(kgo.SeedBrokers(c.kafka...), kgo.TransactionalID("ctk-p"), kgo.DefaultProduceTopic("ctk"),
			kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
		if err != nil {
			t.Fatal(err)
		}
		return prod
	}
	prod := producer()
	defer func() { prod.Close() }()
	// transact commits vals in one transaction, or returns the error; a producer that
	// answers nothing in a minute (stuck on a dead coordinator) fails the test.
	transact := func(vals ...string) error {
		t.Helper()
		if err := prod.BeginTransaction(); err != nil {
			return err
		}
		done := make(chan error, len(vals))
		for _, v := range vals {
			prod.Produce(ctx, &kgo.Record{Value: []byte(v)}, func(_ *kgo.Record, err error) { done <- err })
		}
		wait, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		var perr error
		for range vals {
			select {
			case err := <-done:
				perr = cmp.Or(perr, err)
			case <-wait.Done():
				t.Fatalf("produce %v: no answer in a minute (coordinator node %d down: %v)", vals, coord, !c.up[coord-1].Load())
			}
		}
		if perr != nil {
			return fmt.Errorf("produce %v: %w", vals, perr)
		}
		return prod.EndTransaction(wait, kgo.TryCommit)
	}
	if err := transact("a1", "a2"); err != nil { // the producer id, and the coordinator cached
		t.Fatal(err)
	}
	c.kill(t, int(coord-1))
	killed := time.Now()
	if err := transact("b1", "b2"); err != nil {
		t.Logf("coordinator node %d SIGKILLed; the next transaction failed %v later (%v): a new producer", coord, time.Since(killed).Round(time.Millisecond), err)
		prod.Close()
		prod = producer()
		if err := transact("b1", "b2"); err != nil {
			t.Fatalf("a new producer: %v", err)
		}
	}
	t.Logf("coordinator node %d SIGKILLed; the next transaction committed %v later", coord, time.Since(killed).Round(time.Millisecond))

	var live []string
	for i := range c.nodes {
		if c.up[i].Load() {
			live = append(live, c.kafka[i])
		}
	}
	got := clusterValues(t, ctx, live, "ctk", true, 4)
	slices.Sort(got)
	if s := strings.Join(got, ","); s != "a1,a2,b1,b2" {
		t.Fatalf("read_committed through the live nodes: %s, want a1,a2,b1,b2", s)
	}
}
