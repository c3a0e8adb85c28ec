package mqtt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstreams/mqstreams/mapping"
	"github.com/mqstreams/mqstreams/mqtt/mqtttest"
)

func plantStream(shards int32, key string) mapping.Definition {
	return mapping.Definition{Name: "plant", Filters: []string{"plant/#"}, Shards: shards, Key: key}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// dialClient connects an MQTT 5 client; received publishes go to onMsg.
func dialClient(t *testing.T, addr, id string, onMsg func(packets.Packet)) *mqtttest.Client {
	t.Helper()
	c, err := mqtttest.Dial(testCtx(t), addr, mqtttest.Options{ClientID: id, CleanStart: true, KeepAlive: 30, OnPublish: onMsg})
	if err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	t.Cleanup(func() { _ = c.Disconnect() })
	return c
}

func dialClient311(t *testing.T, addr, id string) *mqtttest.Client {
	t.Helper()
	c, err := mqtttest.Dial(testCtx(t), addr, mqtttest.Options{ClientID: id, Version: 4, CleanStart: true})
	if err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	t.Cleanup(func() { _ = c.Disconnect() })
	return c
}

func TestIngestMQTT5(t *testing.T) {
	e := newEnv(t, envOptions{}, plantStream(1, "topic"))
	c := dialClient(t, e.addr, "dev-5", nil)
	ctx := testCtx(t)

	full := &packets.Properties{
		ContentType:           "application/json",
		ResponseTopic:         "reply/here",
		CorrelationData:       []byte{0, 1, 2},
		PayloadFormat:         1,
		PayloadFormatFlag:     true,
		MessageExpiryInterval: 60,
		User:                  []packets.UserProperty{{Key: "site", Val: "x"}, {Key: "site", Val: "y"}, {Key: "unit", Val: "C"}},
	}
	pubs := []struct {
		topic   string
		qos     byte
		payload string
		props   *packets.Properties
	}{
		{"plant/a/temp", 1, `{"t":21}`, full},
		{"plant/b", 2, "two", nil},
		{"plant/c", 0, "zero", nil},
		{"plant/d", 1, "", nil},
		{"plant/e", 2, "two again", &packets.Properties{User: []packets.UserProperty{{Key: "k", Val: "v"}}}},
	}
	for _, p := range pubs {
		pk := mqtttest.NewPublish(p.topic, p.qos, []byte(p.payload))
		if p.props != nil {
			pk.Properties = *p.props
		}
		resp, err := c.Publish(ctx, pk)
		if err != nil {
			t.Fatalf("publish %s: %v", p.topic, err)
		}
		if resp.ReasonCode >= 0x80 {
			t.Fatalf("publish %s: reason %#x", p.topic, resp.ReasonCode)
		}
	}
	recs := e.waitRecords(t, "plant", 0, len(pubs))
	if len(recs) != len(pubs) {
		t.Fatalf("%d records, want %d", len(recs), len(pubs))
	}
	checkContiguous(t, recs)
	for i, p := range pubs {
		r := recs[i]
		if string(r.Key) != p.topic || string(r.Value) != p.payload || r.Value == nil {
			t.Errorf("record %d: key %q value %q, want %q %q", i, r.Key, r.Value, p.topic, p.payload)
		}
		m := mapping.FromRecord(r.Record)
		if m.Topic != p.topic || m.QoS != p.qos || m.ClientID != "dev-5" {
			t.Errorf("record %d: topic %q qos %d client %q", i, m.Topic, m.QoS, m.ClientID)
		}
		var wantUser []mapping.UserProperty
		if p.props != nil {
			for _, u := range p.props.User {
				wantUser = append(wantUser, mapping.UserProperty{Key: u.Key, Value: u.Val})
			}
		}
		if fmt.Sprint(m.UserProperties) != fmt.Sprint(wantUser) {
			t.Errorf("record %d: user properties %v, want %v", i, m.UserProperties, wantUser)
		}
	}
	m := mapping.FromRecord(recs[0].Record)
	if m.ContentType != "application/json" || m.ResponseTopic != "reply/here" || !bytes.Equal(m.CorrelationData, []byte{0, 1, 2}) ||
		m.PayloadFormat == nil || *m.PayloadFormat != 1 || m.MessageExpiry == nil || *m.MessageExpiry != 60 {
		t.Errorf("MQTT 5 properties not kept: %+v", m)
	}
	if v, ok := header(recs[1], mapping.HeaderQoS); !ok || v != "2" {
		t.Errorf("qos header %q %v", v, ok)
	}
}

func TestIngestMQTT311(t *testing.T) {
	e := newEnv(t, envOptions{}, plantStream(2, "clientid"))
	c := dialClient311(t, e.addr, "dev-311")
	const n = 30
	for i := 0; i < n; i++ {
		if _, err := c.Publish(testCtx(t), mqtttest.NewPublish("plant/line/"+strconv.Itoa(i), byte(i%3), []byte("m"+strconv.Itoa(i)))); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	shard := mapping.Shard([]byte("dev-311"), 2)
	recs := e.waitRecords(t, "plant", shard, n)
	checkContiguous(t, recs)
	if len(recs) != n {
		t.Fatalf("%d records, want %d", len(recs), n)
	}
	for i, r := range recs {
		m := mapping.FromRecord(r.Record)
		if string(r.Key) != "dev-311" || string(r.Value) != "m"+strconv.Itoa(i) || m.QoS != byte(i%3) || m.Topic != "plant/line/"+strconv.Itoa(i) {
			t.Errorf("record %d: key %q value %q qos %d topic %q", i, r.Key, r.Value, m.QoS, m.Topic)
		}
	}
	if other := e.records(t, "plant", 1-shard); len(other) != 0 {
		t.Errorf("other shard holds %d records", len(other))
	}
}

// collector gathers received payloads and lets a test wait for a count.
type collector struct {
	mu   sync.Mutex
	got  []string
	more chan struct{}
}

func newCollector() *collector { return &collector{more: make(chan struct{}, 1)} }

func (c *collector) add(p packets.Packet) {
	c.mu.Lock()
	c.got = append(c.got, p.TopicName+"="+string(p.Payload))
	c.mu.Unlock()
	select {
	case c.more <- struct{}{}:
	default:
	}
}

func (c *collector) wait(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		c.mu.Lock()
		got := append([]string(nil), c.got...)
		c.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-c.more:
		case <-deadline:
			t.Fatalf("received %v, want %d messages", got, n)
		}
	}
}

func subscribe(t *testing.T, c *mqtttest.Client, subs ...packets.Subscription) {
	t.Helper()
	if _, err := c.Subscribe(testCtx(t), packets.Properties{}, subs...); err != nil {
		t.Fatal(err)
	}
}

func TestLiveSubscribersAndRetained(t *testing.T) {
	e := newEnv(t, envOptions{}, plantStream(1, "clientid"))
	sub := newCollector()
	sc := dialClient(t, e.addr, "sub", sub.add)
	subscribe(t, sc, packets.Subscription{Filter: "plant/#", Qos: 2}, packets.Subscription{Filter: "other/#", Qos: 1})

	pc := dialClient(t, e.addr, "pub", nil)
	ctx := testCtx(t)
	want := []string{"plant/q0=a", "plant/q1=b", "plant/q2=c", "other/x=d"}
	for i, qos := range []byte{0, 1, 2, 1} {
		topic, payload, _ := cut(want[i])
		if _, err := pc.Publish(ctx, mqtttest.NewPublish(topic, qos, []byte(payload))); err != nil {
			t.Fatal(err)
		}
	}
	got := sub.wait(t, len(want))
	gotSet := map[string]bool{}
	for _, g := range got {
		gotSet[g] = true
	}
	for _, w := range want {
		if !gotSet[w] {
			t.Errorf("subscriber missed %s (got %v)", w, got)
		}
	}
	// The no-match publish went to the subscriber only, not to the stream.
	if recs := e.waitRecords(t, "plant", 0, 3); len(recs) != 3 {
		t.Errorf("stream holds %d records, want 3", len(recs))
	}

	// A retained stream publish is stored and delivered to a later subscriber.
	retained := mqtttest.NewPublish("plant/state", 1, []byte("on"))
	retained.FixedHeader.Retain = true
	if _, err := pc.Publish(ctx, retained); err != nil {
		t.Fatal(err)
	}
	late := newCollector()
	lc := dialClient(t, e.addr, "late", late.add)
	subscribe(t, lc, packets.Subscription{Filter: "plant/state", Qos: 1})
	if got := late.wait(t, 1); got[0] != "plant/state=on" {
		t.Errorf("retained: got %v", got)
	}
	if recs := e.records(t, "plant", 0); len(recs) != 4 || string(recs[3].Value) != "on" {
		t.Errorf("retained publish not in the stream: %d records", len(recs))
	}
}

func cut(s string) (string, string, bool) {
	for i := range s {
		if s[i] == '=' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// The hand-back keeps the publisher as the origin, so a no-local subscription of the
// publisher does not get its own stream publish back.
func TestNoLocalKeepsOrigin(t *testing.T) {
	e := newEnv(t, envOptions{}, plantStream(1, "clientid"))
	self := newCollector()
	pc := dialClient(t, e.addr, "self", self.add)
	subscribe(t, pc, packets.Subscription{Filter: "plant/#", Qos: 1, NoLocal: true})
	watcher := newCollector()
	wc := dialClient(t, e.addr, "watcher", watcher.add)
	subscribe(t, wc, packets.Subscription{Filter: "plant/#", Qos: 1})
	other := dialClient(t, e.addr, "other", nil)
	ctx := testCtx(t)

	if _, err := pc.Publish(ctx, mqtttest.NewPublish("plant/own", 1, []byte("A"))); err != nil {
		t.Fatal(err)
	}
	watcher.wait(t, 1)
	if _, err := other.Publish(ctx, mqtttest.NewPublish("plant/foreign", 1, []byte("B"))); err != nil {
		t.Fatal(err)
	}
	if got := self.wait(t, 1); got[0] != "plant/foreign=B" {
		t.Errorf("no-local subscriber got %v first, want only the foreign publish", got)
	}
}

// Acks go out in publish order even when stream and plain publishes are interleaved
// and pipelined.
func TestAckOrderPipelined(t *testing.T) {
	for _, v := range []byte{4, 5} {
		t.Run("v"+strconv.Itoa(int(v)), func(t *testing.T) {
			e := newEnv(t, envOptions{}, plantStream(3, "topic"))
			c, _ := dialRaw(t, e.addr, "order", v, true)
			const n = 200
			var pks []packets.Packet
			for i := 1; i <= n; i++ {
				topic := "plant/" + strconv.Itoa(i%7)
				if i%3 == 0 {
					topic = "plain/" + strconv.Itoa(i)
				}
				pks = append(pks, publishPacket(topic, 1, uint16(i), strconv.Itoa(i)))
			}
			c.send(pks...)
			for i := 1; i <= n; i++ {
				ack := c.expect(packets.Puback, uint16(i))
				if ack.ReasonCode != 0 {
					t.Fatalf("puback %d reason %#x", i, ack.ReasonCode)
				}
			}
			total := 0
			for s := int32(0); s < 3; s++ {
				recs := e.records(t, "plant", s)
				checkContiguous(t, recs)
				total += len(recs)
			}
			if want := n - n/3; total != want {
				t.Errorf("%d records, want %d", total, want)
			}
		})
	}
}

// A QoS 2 publish redelivered with its packet id before PUBREL is stored once: on the
// same connection while the first is still being appended, and after a reconnect.
func TestQoS2RedeliveryStoredOnce(t *testing.T) {
	e := newEnv(t, envOptions{}, plantStream(1, "clientid"))

	c, _ := dialRaw(t, e.addr, "q2", 5, false)
	first := publishPacket("plant/x", 2, 7, "once")
	dup := first
	dup.FixedHeader.Dup = true
	c.send(first, dup) // the redelivery arrives while the first append is in flight
	c.expect(packets.Pubrec, 7)
	c.expect(packets.Pubrec, 7) // mochi answers a known id with PUBREC (0x91 in v5)
	c.send(pubrelPacket(7))
	c.expect(packets.Pubcomp, 7)

	// After PUBREL the id is free: the same id is a new message.
	c.send(publishPacket("plant/x", 2, 7, "again"))
	c.expect(packets.Pubrec, 7)
	c.send(pubrelPacket(7))
	c.expect(packets.Pubcomp, 7)

	// Publish, drop the connection before PUBREL, resume the session and redeliver.
	c.send(publishPacket("plant/x", 2, 9, "resumed"))
	c.expect(packets.Pubrec, 9)
	_ = c.conn.Close()
	c2, ack := dialRaw(t, e.addr, "q2", 5, false)
	if !ack.SessionPresent {
		t.Fatal("session not resumed")
	}
	dup9 := publishPacket("plant/x", 2, 9, "resumed")
	dup9.FixedHeader.Dup = true
	c2.send(dup9)
	c2.expect(packets.Pubrec, 9)
	c2.send(pubrelPacket(9))
	c2.until(packets.Pubcomp, 9) // the resumed session may resend its PUBREC too

	// Publish and drop the connection at once, so the redelivery on the new
	// connection may find the first append still pending.
	c3, _ := dialRaw(t, e.addr, "q2", 5, false)
	c3.send(publishPacket("plant/x", 2, 11, "racing"))
	_ = c3.conn.Close()
	c4, _ := dialRaw(t, e.addr, "q2", 5, false)
	dup11 := publishPacket("plant/x", 2, 11, "racing")
	dup11.FixedHeader.Dup = true
	c4.send(dup11)
	c4.expect(packets.Pubrec, 11)
	c4.send(pubrelPacket(11))
	c4.until(packets.Pubcomp, 11)

	recs := e.records(t, "plant", 0)
	checkContiguous(t, recs)
	var vals []string
	for _, r := range recs {
		vals = append(vals, string(r.Value))
	}
	if fmt.Sprint(vals) != "[once again resumed racing]" {
		t.Errorf("stored %v, want [once again resumed racing]", vals)
	}
}

func TestAppendFailure(t *testing.T) {
	e := newEnv(t, envOptions{},
		plantStream(1, "clientid"),
		mapping.Definition{Name: "good", Filters: []string{"good/#"}, Shards: 1})
	// The stream disappears from the log while the router still sends to it.
	if err := e.log.DeleteStream("plant"); err != nil {
		t.Fatal(err)
	}

	t.Run("mqtt5 reason code", func(t *testing.T) {
		c := dialClient(t, e.addr, "fail5", nil)
		ctx := testCtx(t)
		resp, err := c.Publish(ctx, mqtttest.NewPublish("plant/x", 1, []byte("lost")))
		if code, _ := mqtttest.Code(err); code != 0x80 || resp.FixedHeader.Type != packets.Puback {
			t.Fatalf("QoS 1: resp %+v err %v, want PUBACK reason 0x80", resp, err)
		}
		resp, err = c.Publish(ctx, mqtttest.NewPublish("plant/x", 2, []byte("lost")))
		if code, _ := mqtttest.Code(err); code != 0x80 || resp.FixedHeader.Type != packets.Pubrec {
			t.Fatalf("QoS 2: resp %+v err %v, want PUBREC reason 0x80", resp, err)
		}
		// The connection and the server keep working.
		resp, err = c.Publish(ctx, mqtttest.NewPublish("good/x", 1, []byte("kept")))
		if err != nil || resp.ReasonCode != 0 {
			t.Fatalf("publish after failure: %+v %v", resp, err)
		}
		if recs := e.records(t, "good", 0); len(recs) != 1 || string(recs[0].Value) != "kept" {
			t.Fatalf("good stream: %v", recs)
		}
	})

	t.Run("mqtt311 disconnected", func(t *testing.T) {
		// 3.1.1 has no failure ack: the connection is closed with the publish
		// unacknowledged, so the client resends it after reconnecting (never a
		// publisher waiting forever on a PUBACK that cannot come).
		for _, qos := range []byte{1, 2} {
			c, _ := dialRaw(t, e.addr, "fail311", 4, true)
			c.send(publishPacket("plant/x", qos, 1, "lost"))
			pk, err := c.readPacket()
			var ne net.Error
			if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
				t.Fatalf("QoS %d: got %v %v after a publish not stored, want the connection closed", qos, pk.FixedHeader, err)
			}
			// Reconnected, the client publishes on.
			c, _ = dialRaw(t, e.addr, "fail311", 4, true)
			c.send(publishPacket("good/y", 1, 4, "kept"))
			c.expect(packets.Puback, 4)
		}
	})

	t.Run("log closed", func(t *testing.T) {
		c := dialClient(t, e.addr, "closed5", nil)
		if err := e.log.Close(); err != nil {
			t.Fatal(err)
		}
		resp, err := c.Publish(testCtx(t), mqtttest.NewPublish("good/x", 1, []byte("late")))
		if code, _ := mqtttest.Code(err); code != 0x80 {
			t.Fatalf("resp %+v err %v, want reason 0x80", resp, err)
		}
		// Plain pub/sub still works.
		if _, err := c.Publish(testCtx(t), mqtttest.NewPublish("plain/z", 1, []byte("ok"))); err != nil {
			t.Fatal(err)
		}
	})
}

func TestOversizedPacketRefused(t *testing.T) {
	e := newEnv(t, envOptions{maxPacketBytes: 1024}, plantStream(1, "clientid"))
	c, _ := dialRaw(t, e.addr, "big", 5, true)
	c.send(publishPacket("plant/big", 1, 1, string(make([]byte, 4096))))
	var disconnect *packets.Packet
	for {
		pk, err := c.readPacket()
		if err != nil {
			break // connection closed by the server
		}
		if pk.FixedHeader.Type == packets.Puback {
			t.Fatalf("oversized publish acknowledged: reason %#x", pk.ReasonCode)
		}
		if pk.FixedHeader.Type == packets.Disconnect {
			disconnect = &pk
		}
	}
	// MQTT 5 is told why before the connection closes.
	if disconnect == nil || disconnect.ReasonCode != packets.ErrPacketTooLarge.Code {
		t.Fatalf("no DISCONNECT 0x95 before the close: %+v", disconnect)
	}
	// MQTT 3.1.1 has no DISCONNECT from the server: the connection just closes.
	c3, _ := dialRaw(t, e.addr, "big3", 4, true)
	c3.send(publishPacket("plant/big", 1, 1, string(make([]byte, 4096))))
	for {
		pk, err := c3.readPacket()
		if err != nil {
			break
		}
		t.Fatalf("MQTT 3.1.1 got packet type %d after an oversized publish", pk.FixedHeader.Type)
	}
	if v := gatherMetrics(t, e.reg)["mqstreams_connections_refused_total,proto=mqtt,reason=packet_too_large"]; v != 2 {
		t.Fatalf("refused connections for packet size: %v, want 2", v)
	}
	// The server is still up and takes a normal publish.
	c2, _ := dialRaw(t, e.addr, "small", 5, true)
	c2.send(publishPacket("plant/small", 1, 1, "fits"))
	c2.expect(packets.Puback, 1)
	if recs := e.records(t, "plant", 0); len(recs) != 1 || string(recs[0].Value) != "fits" {
		t.Fatalf("stream: %d records", len(recs))
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, envOptions{}, plantStream(1, "clientid"))
	c, _ := dialRaw(t, e.addr, "metrics", 5, true)
	c.send(publishPacket("plant/a", 1, 1, "x"), publishPacket("plant/b", 1, 2, "y"))
	c.expect(packets.Puback, 1)
	c.expect(packets.Puback, 2)

	c.send(publishPacket("elsewhere/a", 1, 3, "z"))
	c.expect(packets.Puback, 3)
	found := gatherMetrics(t, e.reg)
	if v := found["mqstreams_mqtt_publishes_unmatched_total"]; v != 1 {
		t.Errorf("unmatched counter %v, want 1 (%v)", v, found)
	}
	if found["mqstreams_received_bytes_total,proto=mqtt"] < 10 || found["mqstreams_sent_bytes_total,proto=mqtt"] < 10 {
		t.Errorf("byte counters: %v", found)
	}
	if v := found["mqstreams_mqtt_publishes_appended_total,stream=plant"]; v != 2 {
		t.Errorf("appended counter %v, want 2 (%v)", v, found)
	}
	if v := found["mqstreams_connections,proto=mqtt"]; v != 1 {
		t.Errorf("connections gauge %v, want 1 (%v)", v, found)
	}
}

// gatherMetrics returns every sample of the registry by "name,label=value,...".
func gatherMetrics(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, lp := range m.GetLabel() {
				name += "," + lp.GetName() + "=" + lp.GetValue()
			}
			switch {
			case m.GetCounter() != nil:
				found[name] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				found[name] = m.GetGauge().GetValue()
			}
		}
	}
	return found
}

// TestKeyFallbackCounted: a JSON key path missing from a publish falls back to the
// stream's key_fallback, and the fallback is counted per stream.
func TestKeyFallbackCounted(t *testing.T) {
	def := mapping.Definition{Name: "plant", Filters: []string{"plant/#"}, Shards: 2, Key: "json:device.id", KeyFallback: "topic"}
	e := newEnv(t, envOptions{}, def)
	c, _ := dialRaw(t, e.addr, "fb", 5, true)
	c.send(publishPacket("plant/a", 1, 1, `{"device":{"id":"d1"}}`), publishPacket("plant/b", 1, 2, `{"other":1}`))
	c.expect(packets.Puback, 1)
	c.expect(packets.Puback, 2)
	keys := map[string]bool{}
	for shard := int32(0); shard < 2; shard++ {
		for _, r := range e.records(t, "plant", shard) {
			keys[string(r.Key)] = true
		}
	}
	if !keys["d1"] || !keys["plant/b"] || len(keys) != 2 {
		t.Fatalf("record keys %v, want d1 and the fallback topic plant/b", keys)
	}
	if v := gatherMetrics(t, e.reg)["mqstreams_key_fallbacks_total,stream=plant"]; v != 1 {
		t.Fatalf("key fallbacks counted %v, want 1", v)
	}
}

// TestBackPressureQueueFull runs with an append queue of one byte, so one append is in
// flight at a time: a burst of QoS 0 publishes finds it full and is partly dropped and
// counted, while the QoS 1 publishes behind them are slowed (their connection is not
// read) but all stored and acknowledged in order, without a disconnect.
func TestBackPressureQueueFull(t *testing.T) {
	e := newEnv(t, envOptions{queueBytes: 1}, plantStream(1, "clientid"))
	c, _ := dialRaw(t, e.addr, "burst", 5, true)
	const qos0, qos1 = 2000, 200
	var pks []packets.Packet
	for i := 0; i < qos0; i++ {
		pks = append(pks, publishPacket("plant/0", 0, 0, strconv.Itoa(i)))
	}
	for i := 1; i <= qos1; i++ {
		pks = append(pks, publishPacket("plant/1", 1, uint16(i), strconv.Itoa(i)))
	}
	c.send(pks...)
	for i := 1; i <= qos1; i++ {
		if ack := c.expect(packets.Puback, uint16(i)); ack.ReasonCode != 0 {
			t.Fatalf("puback %d reason %#x", i, ack.ReasonCode)
		}
	}
	found := gatherMetrics(t, e.reg)
	dropped := int(found["mqstreams_mqtt_dropped_total,reason=queue_full"])
	if dropped == 0 {
		t.Fatalf("no QoS 0 publish dropped with a full queue (%v)", found)
	}
	recs := e.records(t, "plant", 0)
	checkContiguous(t, recs)
	if want := qos0 - dropped + qos1; len(recs) != want {
		t.Fatalf("%d records stored, want %d (%d QoS 0 dropped)", len(recs), want, dropped)
	}
	// The queue's bytes are released just after the acknowledgement is handed over.
	deadline := time.Now().Add(20 * time.Second)
	for e.log.QueuedBytes() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes still queued", e.log.QueuedBytes())
		}
		time.Sleep(time.Millisecond)
	}
}

// TestDroppedQoS0AllocatesNothing: a QoS 0 publish to a stream that the full append
// queue would drop is counted without building its message, routes or records, so a
// flood far faster than the disk costs the heap nothing beyond mochi's own packet.
func TestDroppedQoS0AllocatesNothing(t *testing.T) {
	e := newEnv(t, envOptions{}, plantStream(2, "clientid"))
	h := e.srv.ingest
	h.queueFull = func(int64) bool { return true } // the queue's answer under a flood
	cl := e.srv.broker.NewClient(nil, "t", "flooder", false)
	pk := publishPacket("plant/7", 0, 0, strings.Repeat("x", 1000))
	before := gatherMetrics(t, e.reg)["mqstreams_mqtt_dropped_total,reason=queue_full"]
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := h.OnPublish(cl, pk); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Fatalf("%.1f allocations per dropped QoS 0 publish, want none", allocs)
	}
	if got := gatherMetrics(t, e.reg)["mqstreams_mqtt_dropped_total,reason=queue_full"] - before; got != 201 {
		t.Fatalf("%v drops counted, want 201", got)
	}
	if recs := e.records(t, "plant", 0); len(recs) != 0 {
		t.Fatalf("%d records stored from dropped publishes", len(recs))
	}
}
