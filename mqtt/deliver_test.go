package mqtt

import (
	"bytes"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/log"
	"github.com/mqstreams/mqstreams/mapping"
	"github.com/mqstreams/mqstreams/mqtt/mqtttest"
)

func hdrs(kv ...string) []log.Header {
	var hs []log.Header
	for i := 0; i+1 < len(kv); i += 2 {
		hs = append(hs, log.Header{Key: kv[i], Value: []byte(kv[i+1])})
	}
	return hs
}

// produce appends recs as the Kafka side does and hands them over once durable.
func (e *testEnv) produce(tb testing.TB, stream string, shard int32, may func(string) bool, recs ...log.Record) {
	tb.Helper()
	if _, err := e.log.Stream(stream).Append(shard, recs); err != nil {
		tb.Fatal(err)
	}
	e.srv.DeliverProduced(mapping.Produced{Stream: stream, Partition: shard, Records: recs, MayPublish: may})
}

func TestDeliverProduced(t *testing.T) {
	off := false
	quiet := mapping.Definition{Name: "quiet", Filters: []string{"quiet/#"}, Shards: 1, DeliverProduced: &off}
	tmpl := mapping.Definition{Name: "tmpl", Filters: []string{"in/#"}, Shards: 2, PublishTopic: "out/{partition}/{header.dev}/{key}"}
	e := newEnv(t, envOptions{maxPacketBytes: 64 << 10}, streamDef("cmds", 1, "clientid", "cmd/#"), quiet, tmpl)
	sub := dialV5(t, e.addr, v5Options{id: "sub", clean: true})
	sub.subscribe(t, "", 1, "cmd/#", "cmds/#", "out/#", "quiet/#", "ok/#")
	small := dialV5(t, e.addr, v5Options{id: "small", clean: true, maxPacket: 512, rm: 10})
	small.subscribe(t, "", 1, "cmd/#")
	skipped := func(reason string) float64 { return testutil.ToFloat64(e.srv.deliv.skipped.WithLabelValues(reason)) }

	// The header topic, QoS, retain and properties map back onto the PUBLISH.
	e.produce(t, "cmds", 0, nil, log.Record{Key: []byte("k"), Value: []byte("on"),
		Headers: hdrs(mapping.HeaderTopic, "cmd/dev1/light", mapping.HeaderQoS, "1", mapping.HeaderRetain, "true",
			mapping.HeaderContentType, "text/plain", "trace", "abc")})
	got := sub.waitN(t, 1)[0]
	if got.TopicName != "cmd/dev1/light" || got.FixedHeader.Qos != 1 || string(got.Payload) != "on" ||
		got.Properties.ContentType != "text/plain" || mqtttest.UserProperty(got, "trace") != "abc" {
		t.Fatalf("got %+v props %+v", got, got.Properties)
	}
	for _, u := range got.Properties.User {
		if strings.HasPrefix(u.Key, "mqtt.") {
			t.Fatalf("mqtt.* header %q sent as a user property", u.Key)
		}
	}
	// Retained: a later subscriber gets it with the retain flag.
	late := dialV5(t, e.addr, v5Options{id: "late", clean: true})
	late.subscribe(t, "", 2, "cmd/dev1/light")
	if r := late.waitN(t, 1)[0]; !r.FixedHeader.Retain || r.FixedHeader.Qos != 1 {
		t.Fatalf("retained: got retain %v qos %d", r.FixedHeader.Retain, r.FixedHeader.Qos)
	}
	// Delivered, never appended again although the topic matches the stream's filter.
	if n := len(e.records(t, "cmds", 0)); n != 1 {
		t.Fatalf("stream holds %d records, want 1 (a delivery was re-ingested)", n)
	}

	// Each case is followed by a deliverable record: deliveries keep order, so once that
	// one arrives the case's record would have arrived before it.
	cases := []struct {
		name   string
		stream string
		may    func(string) bool
		rec    log.Record
		topic  string // "" = not delivered
		qos    byte
		reason string
	}{
		{name: "template default", stream: "cmds", rec: log.Record{Key: []byte("dev9"), Value: []byte("x")}, topic: "cmds/dev9", qos: 1},
		{name: "template placeholders", stream: "tmpl", rec: log.Record{Key: []byte("k1"), Value: []byte("x"), Headers: hdrs("dev", "d7")}, topic: "out/0/d7/k1", qos: 1},
		{name: "qos header caps", stream: "cmds", rec: log.Record{Value: []byte("x"), Headers: hdrs(mapping.HeaderTopic, "cmd/q0", mapping.HeaderQoS, "0")}, topic: "cmd/q0", qos: 0},
		{name: "wildcard topic", stream: "cmds", rec: log.Record{Value: []byte("x"), Headers: hdrs(mapping.HeaderTopic, "cmd/+/unlock")}, reason: skipInvalidTopic},
		{name: "invalid utf8 topic", stream: "cmds", rec: log.Record{Value: []byte("x"), Headers: hdrs(mapping.HeaderTopic, "cmd/\xff\xfe")}, reason: skipInvalidTopic},
		{name: "key with wildcard", stream: "cmds", rec: log.Record{Key: []byte("#"), Value: []byte("x")}, reason: skipInvalidTopic},
		{name: "system topic", stream: "cmds", rec: log.Record{Value: []byte("x"), Headers: hdrs(mapping.HeaderTopic, "$SYS/x")}, reason: skipInvalidTopic},
		{name: "no publish grant", stream: "cmds", may: func(t string) bool { return !strings.HasPrefix(t, "cmd/victim") },
			rec: log.Record{Value: []byte("x"), Headers: hdrs(mapping.HeaderTopic, "cmd/victim/unlock")}, reason: skipNotAuthorized},
		{name: "over our packet limit", stream: "cmds", rec: log.Record{Value: bytes.Repeat([]byte("x"), 65<<10), Headers: hdrs(mapping.HeaderTopic, "cmd/big")}, reason: skipTooLarge},
		{name: "100,000 headers", stream: "cmds", rec: log.Record{Value: []byte("x"), Headers: manyHeaders(100000)}, reason: skipTooLarge},
		{name: "deliver_produced false", stream: "quiet", rec: log.Record{Value: []byte("x"), Headers: hdrs(mapping.HeaderTopic, "quiet/a")}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := 0.0
			if c.reason != "" {
				before = skipped(c.reason)
			}
			have := sub.count()
			e.produce(t, c.stream, 0, c.may, c.rec)
			marker := "ok/" + c.name
			e.produce(t, "cmds", 0, nil, log.Record{Value: []byte{byte(i)}, Headers: hdrs(mapping.HeaderTopic, marker)})
			want := have + 1
			if c.topic != "" {
				want++
			}
			msgs := sub.waitN(t, want)
			if len(msgs) != want || msgs[want-1].TopicName != marker {
				t.Fatalf("got %d messages (last %q), want %d ending with %q", len(msgs), msgs[len(msgs)-1].TopicName, want, marker)
			}
			if c.topic != "" {
				if m := msgs[want-2]; m.TopicName != c.topic || m.FixedHeader.Qos != c.qos {
					t.Fatalf("got topic %q qos %d, want %q qos %d", m.TopicName, m.FixedHeader.Qos, c.topic, c.qos)
				}
			}
			if c.reason != "" && skipped(c.reason) != before+1 {
				t.Fatalf("%s not counted", c.reason)
			}
		})
	}

	// A client with a small Maximum Packet Size misses the large delivery (counted) and
	// still gets the next ones at QoS 1: the dropped one holds no inflight slot.
	before := skipped(skipTooLarge)
	for i := 0; i < 70; i++ { // many receive maximums: held slots would stall the client
		e.produce(t, "cmds", 0, nil, log.Record{Value: bytes.Repeat([]byte("y"), 1024), Headers: hdrs(mapping.HeaderTopic, "cmd/large", mapping.HeaderQoS, "1")})
	}
	e.produce(t, "cmds", 0, nil, log.Record{Value: []byte("small"), Headers: hdrs(mapping.HeaderTopic, "cmd/small", mapping.HeaderQoS, "1")})
	have := small.count()
	msgs := small.waitN(t, have)
	waitFor(t, "small delivery", func() bool {
		msgs = small.waitN(t, 1)
		return msgs[len(msgs)-1].TopicName == "cmd/small"
	})
	for _, m := range msgs {
		if m.TopicName == "cmd/large" {
			t.Fatal("a packet over the client's maximum packet size was sent")
		}
	}
	if got := skipped(skipTooLarge) - before; got != 70 {
		t.Fatalf("too_large counted %v times, want 70", got)
	}
}

// Records produced over Kafka replay safely: an invalid mqtt.topic is replaced by the
// stream's name (and counted), non-UTF-8 properties and keys are left out.
func TestReplayProducedRecords(t *testing.T) {
	e := newEnv(t, envOptions{}, streamDef("k", 1, "clientid", "k/#"))
	recs := []log.Record{
		{Key: []byte{0xff, 0xfe}, Value: []byte("bad-topic"), Headers: hdrs(mapping.HeaderTopic, "k/\xff/+", "h\xff", "v", mapping.HeaderContentType, "t\xfe")},
		{Key: []byte("ok"), Value: []byte("good"), Headers: hdrs(mapping.HeaderTopic, "k/a", "h", "v")},
	}
	if _, err := e.log.Stream("k").Append(0, recs); err != nil {
		t.Fatal(err)
	}
	before := testutil.ToFloat64(e.srv.deliv.skipped.WithLabelValues(skipInvalidTopic))
	c := dialV5(t, e.addr, v5Options{id: "r", clean: true})
	c.subscribe(t, "earliest", 1, "$stream/k")
	msgs := c.waitN(t, 2)
	if msgs[0].TopicName != "k" || string(msgs[0].Payload) != "bad-topic" || msgs[0].Properties.ContentType != "" ||
		mqtttest.UserProperty(msgs[0], "h\xff") != "" || mqtttest.UserProperty(msgs[0], PropKey) != "" {
		t.Fatalf("first: topic %q props %+v", msgs[0].TopicName, msgs[0].Properties)
	}
	if msgs[1].TopicName != "k/a" || mqtttest.UserProperty(msgs[1], "h") != "v" || mqtttest.UserProperty(msgs[1], PropKey) != "ok" {
		t.Fatalf("second: topic %q props %+v", msgs[1].TopicName, msgs[1].Properties)
	}
	if testutil.ToFloat64(e.srv.deliv.skipped.WithLabelValues(skipInvalidTopic)) != before+1 {
		t.Fatal("invalid topic not counted")
	}
}

// A delivery backlog is bounded: past it batches are counted, not queued.
func TestDeliverQueueBounded(t *testing.T) {
	d := newDeliverer(nil, mapping.NewRouter(), 1<<20, zerolog.Nop()) // not running: nothing drains
	big := mapping.Produced{Stream: "s", Records: []log.Record{{Value: make([]byte, maxQueuedBytes/2)}}}
	d.enqueue(big)
	d.enqueue(big)
	d.enqueue(big) // over the bound
	if len(d.queue) != 1 || testutil.ToFloat64(d.skipped.WithLabelValues(skipOverloaded)) != 2 {
		t.Fatalf("queued %d batches, overloaded %v", len(d.queue), testutil.ToFloat64(d.skipped.WithLabelValues(skipOverloaded)))
	}
}

func manyHeaders(n int) []log.Header {
	hs := make([]log.Header, n)
	for i := range hs {
		hs[i] = log.Header{Key: "h", Value: []byte("v")}
	}
	return append(hs, log.Header{Key: mapping.HeaderTopic, Value: []byte("cmd/many")})
}

// Deliveries take mochi's normal path: a persistent session gets what was delivered
// while it was offline, and a shared subscription gets each record once.
func TestDeliverSessionsAndShared(t *testing.T) {
	e := newEnv(t, envOptions{}, streamDef("cmds", 1, "clientid", "cmd/#"))
	dev := dialV5(t, e.addr, v5Options{id: "dev", noClean: true, expiry: 300})
	dev.subscribe(t, "", 1, "cmd/dev/#")
	dev.disconnect(t)
	waitFor(t, "dev offline", func() bool {
		cl, ok := e.srv.broker.Clients.Get("dev")
		return ok && cl.Closed()
	})
	a := dialV5(t, e.addr, v5Options{id: "a", clean: true})
	a.subscribe(t, "", 1, "$share/g/cmd/s/#")
	b := dialV5(t, e.addr, v5Options{id: "b", clean: true})
	b.subscribe(t, "", 1, "$share/g/cmd/s/#")

	e.produce(t, "cmds", 0, nil, log.Record{Value: []byte("while-away"), Headers: hdrs(mapping.HeaderTopic, "cmd/dev/x", mapping.HeaderQoS, "1")})
	const shared = 20
	for i := 0; i < shared; i++ {
		e.produce(t, "cmds", 0, nil, log.Record{Value: []byte{byte(i)}, Headers: hdrs(mapping.HeaderTopic, "cmd/s/x", mapping.HeaderQoS, "1")})
	}
	waitFor(t, "shared deliveries", func() bool { return a.count()+b.count() >= shared })
	if n := a.count() + b.count(); n != shared {
		t.Fatalf("shared subscription got %d messages, want %d", n, shared)
	}
	back := dialV5(t, e.addr, v5Options{id: "dev", noClean: true, expiry: 300})
	if m := back.waitN(t, 1)[0]; m.TopicName != "cmd/dev/x" || string(m.Payload) != "while-away" {
		t.Fatalf("persistent session got %q %q", m.TopicName, m.Payload)
	}
}

func TestPublishSizeBound(t *testing.T) {
	pf := byte(1)
	exp := uint32(60)
	for _, m := range []mapping.Message{
		{Topic: "a", Payload: nil},
		{Topic: "a/b/c", Payload: make([]byte, 300), ContentType: "text/plain", ResponseTopic: "r/t", CorrelationData: []byte("xyz"),
			PayloadFormat: &pf, MessageExpiry: &exp, UserProperties: []mapping.UserProperty{{Key: "k", Value: "v"}, {Key: "", Value: ""}}},
		{Topic: strings.Repeat("t", 200), Payload: make([]byte, 70000), UserProperties: make([]mapping.UserProperty, 1000)},
	} {
		d := newDeliverer(nil, mapping.NewRouter(), 1<<30, zerolog.Nop())
		tmpl, _ := mapping.ParseTopicTemplate(mapping.DefaultPublishTopic)
		rec := mapping.ToRecord(&m, nil)
		var buf bytes.Buffer
		pk, reason := d.packet(&mapping.Produced{Stream: "s"}, tmpl, &rec, &buf)
		if reason != "" {
			t.Fatal(reason)
		}
		pk.ProtocolVersion = 5
		pk.Properties.SubscriptionIdentifier = nil
		buf.Reset()
		if err := pk.PublishEncode(&buf); err != nil {
			t.Fatal(err)
		}
		if b := publishSizeBound(&pk); b < buf.Len() {
			t.Fatalf("bound %d below the encoded size %d", b, buf.Len())
		}
	}
}
