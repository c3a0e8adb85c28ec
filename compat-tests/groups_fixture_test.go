package compattests

// The consumer-group suite (issue 4). Every client reads the Kafka suite's data set
// (kafkaDataSet) in a consumer group: batch 1 from the earliest offset, commit, stop;
// batch 2 is published over MQTT with QoS 1; the server restarts; the same group must
// resume with exactly batch 2. Committed offsets are checked through kadm, and the lag
// through GET /api/v1/groups and /metrics, at every step.

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// groupSessionTimeout is the session timeout of members whose eviction a test waits
// for: Kafka's default group.min.session.timeout.ms, the least clients accept.
const groupSessionTimeout = 6 * time.Second

// groupRead is what a group consumer is asked to read.
type groupRead struct {
	Group string
	Topic string
	// Want is how many records the group has to read from its committed offsets: the
	// consumer stops after that many, so a resume from too early a position shows up as
	// unexpected records and one from too late a position as a timeout.
	Want int
	// Ends are the high watermarks; a consumer that commits asynchronously (kcat) is
	// stopped once the group's committed offsets reach them.
	Ends map[int32]int64
}

// groupConsumer is one client library's group consumer.
type groupConsumer interface {
	// Consume joins r.Group subscribed to r.Topic, reads r.Want records from the
	// committed offsets (the earliest where there are none), commits what it read and
	// leaves the group.
	Consume(t *testing.T, ctx context.Context, addr string, r groupRead) []kafkaRecord
}

// startGroupFixture starts a server with the Kafka suite's telemetry stream, nothing
// published yet.
func startGroupFixture(t *testing.T) *kafkaFixture {
	t.Helper()
	cfg := fmt.Sprintf("streams:\n  - {name: %s, filter: \"plant/#\", shards: %d, key: topic}\n", kafkaTopic, kafkaPartitions)
	fx := &kafkaFixture{srv: StartServer(t, ServerOptions{Config: cfg}), msgs: kafkaDataSet(), hwm: map[int32]int64{}}
	for p := int32(0); p < kafkaPartitions; p++ {
		fx.hwm[p] = 0
	}
	return fx
}

// publishBatch publishes the data set's messages of one batch in order over MQTT 5 with
// QoS 1, each acknowledged before the next, and records where each must land.
func (fx *kafkaFixture) publishBatch(t *testing.T, batch int) {
	t.Helper()
	ctx := Deadline(t, 60*time.Second)
	pubs := map[string]*paho.Client{}
	for _, m := range fx.msgs {
		if m.Batch != batch {
			continue
		}
		if pubs[m.ClientID] == nil {
			pubs[m.ClientID] = kafkaMQTTConnect(t, ctx, fx.srv.MQTTAddr, m.ClientID)
		}
		fx.publishOne(t, ctx, pubs[m.ClientID], m)
	}
	for _, c := range pubs {
		_ = c.Disconnect(&paho.Disconnect{ReasonCode: 0})
	}
}

// batchLen is the number of messages in a batch of the data set.
func (fx *kafkaFixture) batchLen(batch int) int {
	n := 0
	for _, m := range fx.msgs {
		if m.Batch == batch {
			n++
		}
	}
	return n
}

// groupResumeCase is one client run through the resume scenario.
type groupResumeCase struct {
	name string
	c    groupConsumer
	// like is the client's read-suite counterpart, whose value conventions (an empty
	// value read as null) the record check applies.
	like kafkaClient
	// kill restarts the server with SIGKILL instead of SIGTERM.
	kill bool
	// librdkafka clients need record batch v2 advertised.
	librdkafka bool
}

// runGroupResume runs the resume scenario for one client on its own server.
func runGroupResume(t *testing.T, gc groupResumeCase) {
	fx := startGroupFixture(t)
	if gc.librdkafka {
		requireLibrdkafkaMsgVer2(t, fx.srv.KafkaAddr)
	}
	group := "compat-group-" + gc.name
	ctx := Deadline(t, 80*time.Second)

	fx.publishBatch(t, 1)
	ends1 := maps.Clone(fx.hwm)
	start := time.Now()
	got := gc.c.Consume(t, Deadline(t, 40*time.Second), fx.srv.KafkaAddr,
		groupRead{Group: group, Topic: kafkaTopic, Want: fx.batchLen(1), Ends: ends1})
	t.Logf("%s: read batch 1 (%d records) in a new group in %v", gc.name, len(got), time.Since(start).Round(time.Millisecond))
	fx.checkRecords(t, gc.like, got, func(m *kafkaMsg) bool { return m.Batch == 1 })
	waitCommitted(t, ctx, fx.srv.KafkaAddr, group, ends1)
	checkGroupLag(t, fx.srv, group, ends1, fx.hwm)
	if t.Failed() {
		t.FailNow()
	}

	fx.publishBatch(t, 2)
	checkGroupLag(t, fx.srv, group, ends1, fx.hwm)
	if gc.kill {
		fx.srv.KillRestart(t)
	} else {
		fx.srv.Restart(t)
	}
	// The committed offsets survived the restart, so the lag is still batch 2.
	checkGroupLag(t, fx.srv, group, ends1, fx.hwm)
	start = time.Now()
	got = gc.c.Consume(t, Deadline(t, 40*time.Second), fx.srv.KafkaAddr,
		groupRead{Group: group, Topic: kafkaTopic, Want: fx.batchLen(2), Ends: maps.Clone(fx.hwm)})
	t.Logf("%s: resumed with batch 2 (%d records) after the restart in %v", gc.name, len(got), time.Since(start).Round(time.Millisecond))
	fx.checkRecords(t, gc.like, got, func(m *kafkaMsg) bool { return m.Batch == 2 })
	waitCommitted(t, ctx, fx.srv.KafkaAddr, group, fx.hwm)
	checkGroupLag(t, fx.srv, group, fx.hwm, fx.hwm)
}

// committedOffsets fetches a group's committed offsets of kafkaTopic.
func committedOffsets(ctx context.Context, adm *kadm.Client, group string) (map[int32]int64, error) {
	resp, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	var perr error
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Err != nil {
			perr = fmt.Errorf("%s/%d: %w", o.Topic, o.Partition, o.Err)
		}
		if o.Topic == kafkaTopic && o.At >= 0 {
			out[o.Partition] = o.At
		}
	})
	return out, perr
}

// waitCommitted waits until the group's committed offsets (OffsetFetch through kadm)
// are exactly want.
func waitCommitted(t *testing.T, ctx context.Context, addr, group string, want map[int32]int64) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var got map[int32]int64
	for {
		got, err = committedOffsets(ctx, adm, group)
		if err == nil && maps.Equal(got, want) {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("group %s: committed offsets %v (error %v), want %v", group, got, err, want)
		}
	}
}

// groupLagPartition is one partition of GET /api/v1/groups.
type groupLagPartition struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Committed int64  `json:"committed"`
	HWM       int64  `json:"hwm"`
	Lag       int64  `json:"lag"`
}

// checkGroupLag checks that GET /api/v1/groups and mqstreams_consumer_group_lag in
// /metrics report the group's committed offsets and its lag against hwm, partition by
// partition, and nothing else for it.
func checkGroupLag(t *testing.T, srv *Server, group string, committed, hwm map[int32]int64) {
	t.Helper()
	code, body := srv.HTTPGet(t, "/api/v1/groups")
	if code != 200 {
		t.Fatalf("GET /api/v1/groups: %d %s", code, body)
	}
	var resp struct {
		Data []struct {
			Group      string              `json:"group"`
			TotalLag   int64               `json:"total_lag"`
			Partitions []groupLagPartition `json:"partitions"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		t.Fatalf("GET /api/v1/groups: %v\n%s", err, body)
	}
	var want []groupLagPartition
	var wantTotal int64
	for _, p := range slices.Sorted(maps.Keys(committed)) {
		lag := max(hwm[p]-committed[p], 0)
		want = append(want, groupLagPartition{Topic: kafkaTopic, Partition: p, Committed: committed[p], HWM: hwm[p], Lag: lag})
		wantTotal += lag
	}
	found := false
	for _, g := range resp.Data {
		if g.Group != group {
			continue
		}
		found = true
		if !slices.Equal(g.Partitions, want) || g.TotalLag != wantTotal {
			t.Errorf("GET /api/v1/groups, group %s: total_lag %d partitions %+v\nwant total_lag %d partitions %+v", group, g.TotalLag, g.Partitions, wantTotal, want)
		}
	}
	if !found {
		t.Errorf("GET /api/v1/groups does not list group %s: %s", group, body)
	}
	code, metrics := srv.HTTPGet(t, "/metrics")
	if code != 200 {
		t.Fatalf("GET /metrics: %d", code)
	}
	for _, w := range want {
		labels := []string{`group="` + group + `"`, `topic="` + kafkaTopic + `"`, `partition="` + strconv.Itoa(int(w.Partition)) + `"`}
		if v, ok := metricValue(t, metrics, "mqstreams_consumer_group_lag", labels...); !ok || v != float64(w.Lag) {
			t.Errorf("mqstreams_consumer_group_lag{group=%q,partition=\"%d\"} = %v (present %v), want %d", group, w.Partition, v, ok, w.Lag)
		}
	}
	if v, _ := metricValue(t, metrics, "mqstreams_consumer_group_lag", `group="`+group+`"`); v != float64(wantTotal) {
		t.Errorf("mqstreams_consumer_group_lag of group %s sums to %v, want %d", group, v, wantTotal)
	}
}
