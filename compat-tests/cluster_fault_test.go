package compattests

// Jepsen-style fault test of a three-node cluster (issue 13). QoS 1 MQTT publishers
// (paho.mqtt.golang, one per node, reconnecting to another node when theirs goes) and
// a franz-go consumer group run throughout, while faults are injected one after the
// other at randomised points: SIGKILL of a partition leader, of a follower, a dropped
// link both ways, a slow link, a one-way partition from a leader, then two nodes
// killed in turn. Each fault is healed and the cluster must elect live leaders again
// before the next. Then the checker (cluster_checker_test.go) reads every replica of
// every shard: each acknowledged publish is stored exactly once on every replica, in
// per-key order, at contiguous offsets, the replicas are identical, the group's
// committed offsets never moved backwards, and the consumer got every acknowledged
// record. The seed is printed; MQSTREAMS_FAULT_SEED=<seed> replays the same choices.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	faultTopic  = "faults"
	faultShards = 3
	faultGroup  = "fault-readers"
)

// faultPublisher publishes key = its client id, value "<id>/<seq>", QoS 1, and keeps
// the acknowledged ones. A publish without an answer is not retried (a retry could
// store it twice legitimately at QoS 1); the next one gets the next seq.
type faultPublisher struct {
	id    string
	home  int
	mu    sync.Mutex
	acked []ackedRecord
	fails int
}

// ackedBy counts the publishes pubs have had acknowledged so far.
func ackedBy(pubs []*faultPublisher) int {
	n := 0
	for _, p := range pubs {
		p.mu.Lock()
		n += len(p.acked)
		p.mu.Unlock()
	}
	return n
}

// waitAckedBy waits (up to 60 s) until pubs have had n publishes acknowledged.
func waitAckedBy(t testing.TB, pubs []*faultPublisher, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for ackedBy(pubs) < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d publishes acknowledged, waiting for %d", ackedBy(pubs), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *faultPublisher) run(ctx context.Context, c *testCluster) {
	node := p.home
	seq := 0
	for ctx.Err() == nil {
		if !c.up[node].Load() {
			node = (node + 1) % len(c.nodes)
			continue
		}
		opts := paho.NewClientOptions().AddBroker("tcp://" + c.mqtt[node]).SetClientID(p.id).
			SetCleanSession(true).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).SetWriteTimeout(5 * time.Second)
		cl := paho.NewClient(opts)
		if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			node = (node + 1) % len(c.nodes)
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		for ctx.Err() == nil {
			tok := cl.Publish("faults/"+p.id, 1, false, p.id+"/"+strconv.Itoa(seq))
			ok := tok.WaitTimeout(10*time.Second) && tok.Error() == nil
			p.mu.Lock()
			if ok {
				p.acked = append(p.acked, ackedRecord{Key: p.id, Seq: seq})
			} else {
				p.fails++
			}
			p.mu.Unlock()
			seq++
			if !ok {
				break
			}
			// A steady trickle, not a flood: the test is about faults, on a shared
			// 2-core machine.
			time.Sleep(5 * time.Millisecond)
		}
		cl.Disconnect(0)
		node = (node + 1) % len(c.nodes)
	}
}

// commitWatcher records the group's committed offsets over time, through franz-go's
// routing of OffsetFetch to the coordinator.
type commitWatcher struct {
	mu       sync.Mutex
	observed map[string][]int64
}

func (w *commitWatcher) run(ctx context.Context, seeds []string) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.RetryTimeout(3*time.Second))
	if err != nil {
		return
	}
	defer cl.Close()
	for ctx.Err() == nil {
		req := kmsg.NewPtrOffsetFetchRequest()
		req.Group = faultGroup
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		resp, err := req.RequestWith(rctx, cl)
		cancel()
		if err == nil && resp.ErrorCode == 0 {
			w.mu.Lock()
			for _, t := range resp.Topics {
				for _, p := range t.Partitions {
					if p.ErrorCode == 0 && p.Offset >= 0 {
						k := fmt.Sprintf("%s/%d", t.Topic, p.Partition)
						w.observed[k] = append(w.observed[k], p.Offset)
					}
				}
			}
			w.mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func TestClusterFaults(t *testing.T) {
	if !clusterSupported(t) {
		t.Skip("this mqstreams has no cluster mode yet (`cluster:` is an unknown config key)")
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("MQSTREAMS_FAULT_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("MQSTREAMS_FAULT_SEED: %v", err)
		}
	}
	t.Logf("fault seed %d (MQSTREAMS_FAULT_SEED=%d replays these choices)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	c := startCluster(t, 3, fmt.Sprintf("streams:\n  - {name: %s, filter: \"faults/#\", shards: %d, key: clientid}\n", faultTopic, faultShards))
	c.waitLeaders(t, faultTopic, faultShards, 60*time.Second)

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	var pubs []*faultPublisher
	for i := range 3 {
		p := &faultPublisher{id: fmt.Sprintf("pub%d", i), home: i}
		pubs = append(pubs, p)
		wg.Add(1)
		go func() { defer wg.Done(); p.run(ctx, c) }()
	}
	seen := &sync.Map{}
	cons, err := kgo.NewClient(kgo.SeedBrokers(c.kafkaAddrs()...), kgo.ConsumerGroup(faultGroup), kgo.ConsumeTopics(faultTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.AutoCommitInterval(500*time.Millisecond),
		kgo.RetryTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	consCtx, stopCons := context.WithCancel(context.Background())
	defer stopCons()
	var consWG sync.WaitGroup
	consWG.Add(1)
	go func() {
		defer consWG.Done()
		for consCtx.Err() == nil {
			fs := cons.PollFetches(consCtx)
			fs.EachRecord(func(r *kgo.Record) { seen.Store(string(r.Value), true) })
		}
	}()
	watcher := &commitWatcher{observed: map[string][]int64{}}
	wg.Add(1)
	go func() { defer wg.Done(); watcher.run(ctx, c.kafkaAddrs()) }()

	pause := func(lo, hi time.Duration) { time.Sleep(lo + time.Duration(rng.Int64N(int64(hi-lo)))) }
	healthy := func(what string) {
		t.Helper()
		start := time.Now()
		c.waitLeaders(t, faultTopic, faultShards, 60*time.Second)
		t.Logf("%s: leaders again after %v", what, time.Since(start).Round(time.Millisecond))
	}
	leaderOf := func() (part int32, node int) {
		ls := c.waitLeaders(t, faultTopic, faultShards, 60*time.Second)
		part = rng.Int32N(faultShards)
		return part, int(ls[part]) - 1
	}
	other := func(not ...int) int {
		for {
			n := rng.IntN(len(c.nodes))
			ok := true
			for _, x := range not {
				ok = ok && n != x
			}
			if ok {
				return n
			}
		}
	}
	// The faults: each at a randomised point after the previous one healed, held for a
	// randomised time. (Sleeps here are the schedule of the faults, not waits for a
	// condition: every wait for the cluster uses waitLeaders' deadline.)
	faults := []struct {
		name string
		run  func()
	}{
		{"SIGKILL a leader", func() {
			part, l := leaderOf()
			t.Logf("killing node %d, leader of partition %d", l+1, part)
			c.kill(t, l)
			healthy("leader killed")
			pause(500*time.Millisecond, 2*time.Second)
			c.restart(t, l)
		}},
		{"SIGKILL a follower", func() {
			_, l := leaderOf()
			f := other(l)
			t.Logf("killing node %d (follower of node %d's partition)", f+1, l+1)
			c.kill(t, f)
			pause(500*time.Millisecond, 2*time.Second)
			c.restart(t, f)
		}},
		{"drop a link both ways", func() {
			a := rng.IntN(3)
			b := other(a)
			t.Logf("dropping link %d⇄%d", a+1, b+1)
			c.setLink(a, b, linkDrop, 0)
			c.setLink(b, a, linkDrop, 0)
			pause(2*time.Second, 5*time.Second)
			c.healLinks()
		}},
		{"delay a link", func() {
			a := rng.IntN(3)
			b := other(a)
			d := time.Duration(50+rng.IntN(250)) * time.Millisecond
			t.Logf("delaying link %d⇄%d by %v", a+1, b+1, d)
			c.setLink(a, b, linkDelay, d)
			c.setLink(b, a, linkDelay, d)
			pause(time.Second, 3*time.Second)
			c.healLinks()
		}},
		{"one-way partition from a leader", func() {
			_, l := leaderOf()
			t.Logf("node %d (a leader) can no longer reach the others; they still reach it", l+1)
			for j := range c.nodes {
				if j != l {
					c.setLink(l, j, linkDrop, 0)
				}
			}
			pause(2*time.Second, 5*time.Second)
			c.healLinks()
		}},
		{"SIGKILL two nodes in turn", func() {
			a := rng.IntN(3)
			b := other(a)
			t.Logf("killing node %d, then node %d", a+1, b+1)
			c.kill(t, a)
			pause(300*time.Millisecond, time.Second)
			c.restart(t, a)
			healthy("first of two restarted")
			c.kill(t, b)
			pause(300*time.Millisecond, time.Second)
			c.restart(t, b)
		}},
	}
	for _, f := range faults {
		pause(300*time.Millisecond, 1500*time.Millisecond)
		t.Logf("fault: %s", f.name)
		f.run()
		healthy(f.name)
	}
	pause(500*time.Millisecond, time.Second)
	stop()
	wg.Wait()

	var acked []ackedRecord
	for _, p := range pubs {
		t.Logf("%s: %d acknowledged, %d without an answer", p.id, len(p.acked), p.fails)
		if len(p.acked) == 0 {
			t.Errorf("%s never got an acknowledgement", p.id)
		}
		acked = append(acked, p.acked...)
	}

	// Replicas converge once nothing is written: every node's copy of every shard
	// reaches the same high watermark.
	dumps := c.converged(t, faultTopic, faultShards, 60*time.Second)
	var bad []string
	stored := map[string]bool{}
	for shard, reps := range dumps {
		for _, r := range reps[0].Records {
			stored[string(r.Key)] = true
		}
		keys := map[string]bool{}
		for _, r := range reps[0].Records {
			keys[string(r.Key)] = true
		}
		var mine []ackedRecord
		for _, a := range acked {
			if keys[a.Key] {
				mine = append(mine, a)
			}
		}
		for _, v := range checkReplicas(mine, reps) {
			bad = append(bad, fmt.Sprintf("shard %d: %s", shard, v))
		}
	}
	for _, p := range pubs {
		if len(p.acked) > 0 && !stored[p.id] {
			bad = append(bad, fmt.Sprintf("none of %s's %d acknowledged records is stored", p.id, len(p.acked)))
		}
	}
	watcher.mu.Lock()
	bad = append(bad, checkCommitted(watcher.observed)...)
	watcher.mu.Unlock()
	if len(bad) > 0 {
		t.Fatalf("seed %d: %d violations:\n%s", seed, len(bad), strings.Join(bad, "\n"))
	}

	// The consumer group resumes after every fault and reads every acknowledged record.
	deadline := time.Now().Add(90 * time.Second)
	for {
		missing := 0
		for _, a := range acked {
			if _, ok := seen.Load(a.value()); !ok {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("seed %d: the consumer group has not read %d of %d acknowledged records", seed, missing, len(acked))
		}
		time.Sleep(100 * time.Millisecond)
	}
	stopCons()
	consWG.Wait()
	t.Logf("seed %d: %d acknowledged records checked on 3 replicas of %d shards", seed, len(acked), faultShards)
}

// converged waits until every node's replica of every shard has the same high
// watermark and returns the dumps, by shard, in node order.
func (c *testCluster) converged(t testing.TB, stream string, shards int, timeout time.Duration) [][]replicaDump {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var out [][]replicaDump
		same := true
		for shard := range shards {
			var reps []replicaDump
			for i, s := range c.nodes {
				reps = append(reps, fetchReplica(t, strconv.Itoa(i+1), s.HTTPAddr, stream, int32(shard)))
			}
			for _, r := range reps[1:] {
				same = same && r.HWM == reps[0].HWM
			}
			out = append(out, reps)
		}
		if same {
			return out
		}
		if time.Now().After(deadline) {
			var hw []string
			for shard, reps := range out {
				for _, r := range reps {
					hw = append(hw, fmt.Sprintf("%d@node%s=%d", shard, r.Node, r.HWM))
				}
			}
			t.Fatalf("replicas did not converge within %v: %s", timeout, strings.Join(hw, " "))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
