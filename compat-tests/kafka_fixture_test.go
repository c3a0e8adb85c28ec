package compattests

// The Kafka-client compatibility suite (issue 3): every client runs the same four checks
// against a real server filled over MQTT with a known data set, and one shared checker
// compares what each client saw with what was published.

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/mapping"
)

// The stream every client replays; its topic is the stream name, one partition per shard.
const (
	kafkaTopic      = "telemetry"
	kafkaPartitions = 4
	kafkaTopics     = 6  // distinct MQTT topics, hence keys
	kafkaBatch1     = 24 // messages published before the split timestamp
	kafkaBatch2     = 16 // messages published at or after it
)

// kafkaMsg is one MQTT publish of the data set and the record it must become.
type kafkaMsg struct {
	Topic    string
	Payload  []byte
	Retain   bool
	ClientID string
	Props    []paho.UserProperty
	Batch    int   // 1 or 2
	SentMs   int64 // wall clock before the publish was sent
	AckedMs  int64 // wall clock after its PUBACK
	Shard    int32 // partition the key maps to
	Offset   int64 // expected offset within the partition
	Received bool
}

// kafkaHeader is one record header as a client reports it; Value nil means null.
type kafkaHeader struct {
	Key   string
	Value []byte
}

// kafkaRecord is a consumed record as any client reports it.
type kafkaRecord struct {
	Partition int32
	Offset    int64
	Timestamp int64  // ms
	Key       []byte // nil when null
	Value     []byte // nil when null
	Headers   []kafkaHeader
}

// kafkaClient is one Kafka client library driven through the four checks.
type kafkaClient interface {
	// Metadata lists topics and their partition counts.
	Metadata(t *testing.T, ctx context.Context) map[string]int
	// Earliest replays every partition of topic from the log start to the high
	// watermark as of the call.
	Earliest(t *testing.T, ctx context.Context, topic string) []kafkaRecord
	// ByTime looks up the offsets for timestamp ms (-1 or the high watermark where no
	// record is that recent) and replays from them to the high watermark.
	ByTime(t *testing.T, ctx context.Context, topic string, ms int64) (map[int32]int64, []kafkaRecord)
	// Latest starts a consumer of topic (one partition) at the latest offset, calls
	// publish once it is consuming, and returns the first record and when it arrived.
	Latest(t *testing.T, ctx context.Context, topic string, publish func()) (kafkaRecord, time.Time)
}

// kafkaFixture is a server holding the data set, plus one live stream per client.
type kafkaFixture struct {
	srv     *Server
	msgs    []*kafkaMsg
	splitMs int64           // every batch-1 record is older, every batch-2 record not
	hwm     map[int32]int64 // expected high watermarks of kafkaTopic
}

// kafkaLiveTopic is the stream (Kafka topic) a client's latest check consumes.
func kafkaLiveTopic(client string) string { return "live-" + client }

// startKafkaFixture starts a server with the telemetry stream and a live stream per
// client, and publishes the data set over MQTT 5 with QoS 1.
func startKafkaFixture(t *testing.T, clients ...string) *kafkaFixture {
	t.Helper()
	return startKafkaFixtureWith(t, "", clients...)
}

// startKafkaFixtureWith is startKafkaFixture with more stream fields (", field: value")
// for every stream.
func startKafkaFixtureWith(t *testing.T, fields string, clients ...string) *kafkaFixture {
	t.Helper()
	var cfg strings.Builder
	cfg.WriteString("streams:\n")
	fmt.Fprintf(&cfg, "  - {name: %s, filter: \"plant/#\", shards: %d, key: topic%s}\n", kafkaTopic, kafkaPartitions, fields)
	for _, c := range clients {
		fmt.Fprintf(&cfg, "  - {name: %s, filter: \"live/%s/#\", shards: 1, key: topic%s}\n", kafkaLiveTopic(c), c, fields)
	}
	fx := &kafkaFixture{srv: StartServer(t, ServerOptions{Config: cfg.String()})}
	fx.msgs = kafkaDataSet()
	fx.publish(t)
	return fx
}

// kafkaDataSet builds the messages: 6 topics (keys) over 4 partitions, one empty
// payload, one retained message, user properties with duplicates, two publishers.
// Batch 2 leaves out the keys of one partition, so that partition has no record at or
// after the split: its time lookup must answer "end".
func kafkaDataSet() []*kafkaMsg {
	topic := func(i int) string { return fmt.Sprintf("plant/line%d/temp", i%kafkaTopics) }
	skipShard := mapping.Shard([]byte(topic(0)), kafkaPartitions)
	var msgs []*kafkaMsg
	for i := 0; len(msgs) < kafkaBatch1+kafkaBatch2; i++ {
		batch := 1
		if len(msgs) >= kafkaBatch1 {
			batch = 2
			if mapping.Shard([]byte(topic(i)), kafkaPartitions) == skipShard {
				continue
			}
		}
		n := len(msgs)
		m := &kafkaMsg{
			Topic:    topic(i),
			Payload:  []byte(fmt.Sprintf("reading-%02d:{\"celsius\":%d.5}", n, 20+n)),
			ClientID: fmt.Sprintf("compat-pub-%d", n%2),
			Props:    []paho.UserProperty{{Key: "seq", Value: strconv.Itoa(n)}},
			Batch:    batch,
		}
		switch n {
		case 7:
			m.Payload = []byte{}
		case 11:
			m.Retain = true
		}
		if n%3 == 0 {
			m.Props = append(m.Props, paho.UserProperty{Key: "unit", Value: "C"},
				paho.UserProperty{Key: "tag", Value: "a"}, paho.UserProperty{Key: "tag", Value: "b"})
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// publish sends the data set in order, each publish acknowledged (hence durable) before
// the next, and places the split between the batches.
func (fx *kafkaFixture) publish(t *testing.T) {
	t.Helper()
	ctx := Deadline(t, 60*time.Second)
	pubs := map[string]*paho.Client{}
	for _, m := range fx.msgs {
		if pubs[m.ClientID] == nil {
			pubs[m.ClientID] = kafkaMQTTConnect(t, ctx, fx.srv.MQTTAddr, m.ClientID)
		}
	}
	fx.hwm = map[int32]int64{}
	for p := int32(0); p < kafkaPartitions; p++ {
		fx.hwm[p] = 0
	}
	for _, m := range fx.msgs {
		if m.Batch == 2 && fx.splitMs == 0 {
			// Batch 1 is acknowledged, so its append times are at most now; batch 2 is
			// appended after the clock has passed the split.
			fx.splitMs = time.Now().UnixMilli() + 1
			for time.Now().UnixMilli() < fx.splitMs {
				time.Sleep(100 * time.Microsecond)
			}
		}
		fx.publishOne(t, ctx, pubs[m.ClientID], m)
	}
	for _, c := range pubs {
		_ = c.Disconnect(&paho.Disconnect{ReasonCode: 0})
	}
}

// publishOne publishes m (acknowledged, hence durable, on return) and records the
// partition and offset it must land at and when it was sent and acknowledged.
func (fx *kafkaFixture) publishOne(t *testing.T, ctx context.Context, c *paho.Client, m *kafkaMsg) {
	t.Helper()
	m.Shard = mapping.Shard([]byte(m.Topic), kafkaPartitions)
	m.Offset = fx.hwm[m.Shard]
	fx.hwm[m.Shard]++
	m.SentMs = time.Now().UnixMilli()
	kafkaMQTTPublish(t, ctx, c, m.Topic, m.Payload, m.Retain, m.Props)
	m.AckedMs = time.Now().UnixMilli()
}

// kafkaMQTTConnect opens an MQTT 5 connection with a clean start.
func kafkaMQTTConnect(t testing.TB, ctx context.Context, addr, clientID string) *paho.Client {
	t.Helper()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("dial mqtt %s: %v", addr, err)
	}
	c := paho.NewClient(paho.ClientConfig{ClientID: clientID, Conn: conn, PacketTimeout: startTimeout})
	ack, err := c.Connect(ctx, &paho.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 30})
	if err != nil {
		t.Fatalf("mqtt connect %s: %v", clientID, err)
	}
	if ack.ReasonCode != 0 {
		t.Fatalf("mqtt connect %s: reason %d", clientID, ack.ReasonCode)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c
}

// kafkaMQTTPublish publishes with QoS 1 and returns after the PUBACK.
func kafkaMQTTPublish(t testing.TB, ctx context.Context, c *paho.Client, topic string, payload []byte, retain bool, props []paho.UserProperty) {
	t.Helper()
	if err := kafkaMQTTPublishErr(ctx, c, topic, payload, retain, props); err != nil {
		t.Fatal(err)
	}
}

func kafkaMQTTPublishErr(ctx context.Context, c *paho.Client, topic string, payload []byte, retain bool, props []paho.UserProperty) error {
	resp, err := c.Publish(ctx, &paho.Publish{
		QoS: 1, Topic: topic, Payload: payload, Retain: retain,
		Properties: &paho.PublishProperties{User: props},
	})
	if err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	if resp.ReasonCode >= 0x80 {
		return fmt.Errorf("publish %s: reason 0x%x", topic, resp.ReasonCode)
	}
	return nil
}

// wantHeaders is the header list a message's record must carry, in order.
func (m *kafkaMsg) wantHeaders() []kafkaHeader {
	hs := []kafkaHeader{
		{"mqtt.topic", []byte(m.Topic)},
		{"mqtt.qos", []byte("1")},
		{"mqtt.retain", []byte(strconv.FormatBool(m.Retain))},
		{"mqtt.client_id", []byte(m.ClientID)},
	}
	for _, p := range m.Props {
		hs = append(hs, kafkaHeader{p.Key, []byte(p.Value)})
	}
	return hs
}

// kafkaEmptyIsNil is implemented by clients whose API cannot tell an empty value from
// a null one; for them a nil value passes for an empty payload.
type kafkaEmptyIsNil interface{ emptyValueIsNil() }

// checkRecords verifies that got is exactly the messages selected by want, each at its
// partition and offset, with key, value, headers and timestamp intact.
func (fx *kafkaFixture) checkRecords(t *testing.T, c kafkaClient, got []kafkaRecord, want func(*kafkaMsg) bool) {
	t.Helper()
	byPos := map[[2]int64]*kafkaMsg{}
	wantN := 0
	for _, m := range fx.msgs {
		if want(m) {
			byPos[[2]int64{int64(m.Shard), m.Offset}] = m
			wantN++
		}
	}
	seen := map[[2]int64]bool{}
	errs := 0
	fail := func(format string, args ...any) {
		t.Helper()
		if errs++; errs <= 10 {
			t.Errorf(format, args...)
		}
	}
	for _, r := range got {
		pos := [2]int64{int64(r.Partition), r.Offset}
		m := byPos[pos]
		if m == nil {
			fail("unexpected record %d/%d: key %q value %q", r.Partition, r.Offset, r.Key, r.Value)
			continue
		}
		if seen[pos] {
			fail("record %d/%d delivered twice", r.Partition, r.Offset)
		}
		seen[pos] = true
		if r.Key == nil || !bytes.Equal(r.Key, []byte(m.Topic)) {
			fail("record %d/%d: key %q, want %q", r.Partition, r.Offset, r.Key, m.Topic)
		}
		_, nilOK := c.(kafkaEmptyIsNil)
		if (r.Value == nil && !(nilOK && len(m.Payload) == 0)) || !bytes.Equal(r.Value, m.Payload) {
			fail("record %d/%d: value %q (nil %v), want %q", r.Partition, r.Offset, r.Value, r.Value == nil, m.Payload)
		}
		if wh := m.wantHeaders(); !slices.EqualFunc(r.Headers, wh, func(a, b kafkaHeader) bool {
			return a.Key == b.Key && bytes.Equal(a.Value, b.Value) && a.Value != nil
		}) {
			fail("record %d/%d: headers\n got %s\nwant %s", r.Partition, r.Offset, fmtHeaders(r.Headers), fmtHeaders(wh))
		}
		if r.Timestamp < m.SentMs || r.Timestamp > m.AckedMs {
			fail("record %d/%d: timestamp %d outside its publish window [%d, %d]", r.Partition, r.Offset, r.Timestamp, m.SentMs, m.AckedMs)
		}
	}
	if len(seen) != wantN {
		var missing []string
		for pos := range byPos {
			if !seen[pos] {
				missing = append(missing, fmt.Sprintf("%d/%d", pos[0], pos[1]))
			}
		}
		sort.Strings(missing)
		fail("got %d of %d records; missing %v", len(seen), wantN, missing)
	}
}

func fmtHeaders(hs []kafkaHeader) string {
	var b strings.Builder
	for i, h := range hs {
		if i > 0 {
			b.WriteString(", ")
		}
		if h.Value == nil {
			fmt.Fprintf(&b, "%s=<null>", h.Key)
		} else {
			fmt.Fprintf(&b, "%s=%q", h.Key, h.Value)
		}
	}
	return b.String()
}

// runKafkaClient runs the four checks for one client as parallel subtests.
func runKafkaClient(t *testing.T, fx *kafkaFixture, name string, c kafkaClient) {
	t.Run("metadata", func(t *testing.T) {
		t.Parallel()
		got := c.Metadata(t, Deadline(t, 60*time.Second))
		if n, ok := got[kafkaTopic]; !ok || n != kafkaPartitions {
			t.Errorf("topic %s: %d partitions (listed %v), want %d; all topics %v", kafkaTopic, n, ok, kafkaPartitions, got)
		}
		if n := got[kafkaLiveTopic(name)]; n != 1 {
			t.Errorf("topic %s: %d partitions, want 1; all topics %v", kafkaLiveTopic(name), n, got)
		}
	})
	t.Run("earliest", func(t *testing.T) {
		t.Parallel()
		got := c.Earliest(t, Deadline(t, 60*time.Second), kafkaTopic)
		fx.checkRecords(t, c, got, func(*kafkaMsg) bool { return true })
	})
	t.Run("by-time", func(t *testing.T) {
		t.Parallel()
		offsets, got := c.ByTime(t, Deadline(t, 60*time.Second), kafkaTopic, fx.splitMs)
		for p := int32(0); p < kafkaPartitions; p++ {
			want := fx.hwm[p]
			for _, m := range fx.msgs {
				if m.Shard == p && m.Batch == 2 {
					want = m.Offset
					break
				}
			}
			off, ok := offsets[p]
			switch {
			case !ok:
				t.Errorf("partition %d: no offset for time %d", p, fx.splitMs)
			case off == want:
			case off == -1 && want == fx.hwm[p]:
				t.Logf("partition %d: no record at or after %d, client reports -1 (end)", p, fx.splitMs)
			default:
				t.Errorf("partition %d: offset for time %d is %d, want %d (high watermark %d)", p, fx.splitMs, off, want, fx.hwm[p])
			}
		}
		fx.checkRecords(t, c, got, func(m *kafkaMsg) bool { return m.Batch == 2 })
	})
	t.Run("latest", func(t *testing.T) {
		t.Parallel()
		ctx := Deadline(t, 60*time.Second)
		topic := kafkaLiveTopic(name)
		pub := kafkaMQTTConnect(t, ctx, fx.srv.MQTTAddr, "live-pub-"+name)
		mqttTopic := "live/" + name + "/now"
		payload := []byte("live-" + name + "-" + strconv.FormatInt(time.Now().UnixNano(), 10))
		props := []paho.UserProperty{{Key: "client", Value: name}}
		var mu sync.Mutex
		var sent time.Time
		published := false
		r, arrived := c.Latest(t, ctx, topic, func() {
			mu.Lock()
			defer mu.Unlock()
			if published {
				t.Error("publish called twice")
				return
			}
			published = true
			sent = time.Now()
			// publish may run on a client's goroutine: report, do not Fatal.
			if err := kafkaMQTTPublishErr(ctx, pub, mqttTopic, payload, false, props); err != nil {
				t.Error(err)
			}
		})
		mu.Lock()
		defer mu.Unlock()
		if !published {
			t.Fatal("client returned without asking for the publish")
		}
		latency := arrived.Sub(sent)
		t.Logf("%s: record published after the consumer started arrived in %v", name, latency)
		if latency > 10*time.Second {
			t.Errorf("record arrived %v after the publish: the long poll was not woken", latency)
		}
		if !bytes.Equal(r.Value, payload) || string(r.Key) != mqttTopic || r.Partition != 0 {
			t.Errorf("latest record %d/%d key %q value %q, want 0/? key %q value %q", r.Partition, r.Offset, r.Key, r.Value, mqttTopic, payload)
		}
		want := []kafkaHeader{{"mqtt.topic", []byte(mqttTopic)}, {"mqtt.qos", []byte("1")}, {"mqtt.retain", []byte("false")},
			{"mqtt.client_id", []byte("live-pub-" + name)}, {"client", []byte(name)}}
		if !slices.EqualFunc(r.Headers, want, func(a, b kafkaHeader) bool { return a.Key == b.Key && bytes.Equal(a.Value, b.Value) }) {
			t.Errorf("latest record headers\n got %s\nwant %s", fmtHeaders(r.Headers), fmtHeaders(want))
		}
	})
}

// hexOrNil decodes a script's hex field; JSON null (nil pointer) stays nil.
func hexOrNil(t *testing.T, s *string) []byte {
	t.Helper()
	if s == nil {
		return nil
	}
	b, err := hex.DecodeString(*s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", *s, err)
	}
	if b == nil {
		b = []byte{}
	}
	return b
}

// requireLibrdkafkaMsgVer2 fails fast, with the cause, when the broker does not
// advertise what librdkafka (2.0.2, as in kcat and confluent-kafka) needs to use record
// batch v2: its MsgVer2 feature requires Produce v3 and Fetch v4 in the broker's ranges,
// and without it librdkafka falls back to Fetch v0-v2 and never gets a record.
func requireLibrdkafkaMsgVer2(t *testing.T, addr string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	resp, err := kmsg.NewPtrApiVersionsRequest().RequestWith(Deadline(t, 30*time.Second), cl)
	if err != nil {
		t.Fatalf("ApiVersions: %v", err)
	}
	has := func(key, version int16) bool {
		for _, k := range resp.ApiKeys {
			if k.ApiKey == key {
				return k.MinVersion <= version && version <= k.MaxVersion
			}
		}
		return false
	}
	if !has(0, 3) || !has(1, 4) {
		t.Fatalf("server bug: ApiVersions must advertise Produce (key 0) v3 and Fetch (key 1) v4 "+
			"for librdkafka to enable record batch v2 (its MsgVer2 feature); Produce v3 advertised: %v, "+
			"Fetch v4: %v. Without them librdkafka sends Fetch v2, which the server does not serve (docs/mapping.md, Kafka APIs)",
			has(0, 3), has(1, 4))
	}
}
