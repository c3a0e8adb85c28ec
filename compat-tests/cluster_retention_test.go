package compattests

// Retention and Kafka DeleteRecords in a real three-node cluster (issue 13): both are
// decided by the partition's leader and replicated, so every node ends with the same
// log start and the same records after it. kadm's DeleteRecords goes to the leader; a
// raw DeleteRecords sent to a node that does not lead is forwarded to it; the answer
// carries the low watermark every replica then has. Every replica is read through the
// replica API and checked by the fault tests' checker, which knows about log starts.

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestClusterDeleteRecordsAndRetention(t *testing.T) {
	if !clusterSupported(t) {
		t.Skip("this mqstreams has no cluster mode yet (`cluster:` is an unknown config key)")
	}
	const topic, aged = "trim", "aged"
	c := startCluster(t, 3, fmt.Sprintf("streams:\n"+
		"  - {name: %s, filter: \"trim/#\", shards: 2}\n"+
		"  - {name: %s, filter: \"aged/#\", shards: 1, retention: {max_messages: 10}}\n", topic, aged))
	leaders := c.waitLeaders(t, topic, 2, 60*time.Second)
	c.waitLeaders(t, aged, 1, 60*time.Second)
	ctx := Deadline(t, 3*time.Minute)

	cl, err := kgo.NewClient(kgo.SeedBrokers(c.kafkaAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RecordRetries(100), kgo.RecordDeliveryTimeout(60*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	acked := map[string][]ackedRecord{}
	produce := func(tp string, p int32, n int) {
		t.Helper()
		key := fmt.Sprintf("%s-p%d", tp, p)
		for i := range n {
			seq := len(acked[tp+strconv.Itoa(int(p))])
			r := &kgo.Record{Topic: tp, Partition: p, Key: []byte(key), Value: []byte(key + "/" + strconv.Itoa(seq))}
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatalf("produce %s/%d #%d: %v", tp, p, i, err)
			}
			acked[tp+strconv.Itoa(int(p))] = append(acked[tp+strconv.Itoa(int(p))], ackedRecord{Key: key, Seq: seq})
		}
	}
	produce(topic, 0, 30)
	produce(topic, 1, 30)
	produce(aged, 0, 30)

	// kadm: routed to partition 0's leader.
	adm := kadm.NewClient(cl)
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: topic, Partition: 0, At: 12})
	resps, err := adm.DeleteRecords(ctx, offs)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := resps.Lookup(topic, 0); !ok || r.Err != nil || r.LowWatermark != 12 {
		t.Fatalf("kadm DeleteRecords %s/0 before 12: %+v", topic, r)
	}

	// A raw DeleteRecords to a node that does not lead partition 1.
	follower := leaders[1]%3 + 1
	req := kmsg.NewPtrDeleteRecordsRequest()
	req.TimeoutMillis = 15000
	rt := kmsg.NewDeleteRecordsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewDeleteRecordsRequestTopicPartition()
	rp.Partition, rp.Offset = 1, 20
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	kresp, err := cl.Broker(int(follower)).Request(ctx, req)
	if err != nil {
		t.Fatalf("DeleteRecords to node %d (leader %d): %v", follower, leaders[1], err)
	}
	dr := kresp.(*kmsg.DeleteRecordsResponse)
	if len(dr.Topics) != 1 || len(dr.Topics[0].Partitions) != 1 {
		t.Fatalf("DeleteRecords answer: %+v", dr)
	}
	if p := dr.Topics[0].Partitions[0]; p.ErrorCode != 0 || p.LowWatermark != 20 {
		t.Fatalf("DeleteRecords %s/1 before 20 via node %d (leader %d): error %d, low watermark %d", topic, follower, leaders[1], p.ErrorCode, p.LowWatermark)
	}

	// ListOffsets earliest (from the leaders, as clients ask) says the same.
	starts, err := adm.ListStartOffsets(ctx, topic, aged)
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[int32]int64{0: 12, 1: 20} {
		if o, ok := starts.Lookup(topic, p); !ok || o.Err != nil || o.Offset != want {
			t.Fatalf("ListOffsets earliest %s/%d: %+v, want %d", topic, p, o, want)
		}
	}

	// Every node's replica: the same log start and records, every acknowledged record
	// above it once. Retention (max_messages 10) runs on the leader every 10 s.
	check := func(tp string, p int32, wantStart, wantHWM int64) {
		t.Helper()
		var reps []replicaDump
		deadline := time.Now().Add(60 * time.Second)
		for {
			reps = reps[:0]
			same := true
			for i, s := range c.nodes {
				d := fetchReplica(t, strconv.Itoa(i+1), s.HTTPAddr, tp, p)
				reps = append(reps, d)
				same = same && d.LogStart == wantStart && d.HWM == wantHWM
			}
			if same {
				break
			}
			if time.Now().After(deadline) {
				for _, d := range reps {
					t.Logf("node %s: %s/%d log %d..%d", d.Node, tp, p, d.LogStart, d.HWM)
				}
				t.Fatalf("%s/%d: replicas not all at log %d..%d", tp, p, wantStart, wantHWM)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if bad := checkReplicas(acked[tp+strconv.Itoa(int(p))], reps); len(bad) != 0 {
			t.Fatalf("%s/%d: %v", tp, p, bad)
		}
	}
	check(topic, 0, 12, 30)
	check(topic, 1, 20, 30)
	check(aged, 0, 20, 30)

	// Consumers start at the new log start.
	cons, err := kgo.NewClient(kgo.SeedBrokers(c.kafkaAddrs()...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
		topic: {0: kgo.NewOffset().AtStart()}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	fs := cons.PollRecords(ctx, 1)
	if err := fs.Err(); err != nil {
		t.Fatal(err)
	}
	if recs := fs.Records(); len(recs) == 0 || recs[0].Offset != 12 {
		t.Fatalf("first record from the start of %s/0: %+v", topic, recs)
	}
}
