package mqtt

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/log"
	"github.com/mqstreams/mqstreams/mapping"
	"github.com/mqstreams/mqstreams/mqtt/mqtttest"
)

// replayEnv is a real server (ingest and replay hooks) over a real log in a temp dir.
type replayEnv struct {
	srv    *Server
	log    *log.Log
	router *mapping.Router
	cat    *mapping.Catalog
	hook   *ReplayHook
	addr   string
	dir    string
	closed bool
}

type replayEnvOptions struct {
	dir        string
	autoCreate AutoCreate
	now        func() time.Time
	noSync     bool
}

func newReplayEnv(tb testing.TB, o replayEnvOptions, defs ...mapping.Definition) *replayEnv {
	tb.Helper()
	if o.dir == "" {
		o.dir = tb.TempDir()
	}
	l, cat := openStreams(tb, log.Options{Dir: o.dir, Logger: zerolog.Nop(), Now: o.now, NoSync: o.noSync}, defs)
	srv, err := New(Options{
		Config:     Config{Addr: "127.0.0.1:0"},
		Log:        l,
		Catalog:    cat,
		Logger:     zerolog.Nop(),
		AutoCreate: o.autoCreate,
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		tb.Fatal(err)
	}
	e := &replayEnv{srv: srv, log: l, router: cat.Router(), cat: cat, hook: srv.replay, addr: srv.Addr().String(), dir: o.dir}
	tb.Cleanup(func() { e.close(tb) })
	return e
}

// close stops the server and the log (a restart opens a new env on the same dir).
func (e *replayEnv) close(tb testing.TB) {
	if e.closed {
		return
	}
	e.closed = true
	if err := e.srv.Close(); err != nil {
		tb.Error(err)
	}
	if err := e.log.Close(); err != nil {
		tb.Error(err)
	}
}

func streamDef(name string, shards int32, key string, filters ...string) mapping.Definition {
	return mapping.Definition{Name: name, Filters: filters, Shards: shards, Key: key}
}

// fill appends msgs through the router, as ingest would, batching per shard; it
// returns each shard's high watermark per stream.
func (e *replayEnv) fill(tb testing.TB, msgs []mapping.Message) map[string][]int64 {
	tb.Helper()
	type dest struct {
		stream string
		shard  int32
	}
	pending := map[dest][]log.Record{}
	flush := func(d dest) {
		if len(pending[d]) == 0 {
			return
		}
		if _, err := e.log.Stream(d.stream).Append(d.shard, pending[d]); err != nil {
			tb.Fatal(err)
		}
		pending[d] = pending[d][:0]
	}
	var targets []mapping.Target
	for i := range msgs {
		targets = e.router.Route(&msgs[i], targets[:0])
		for _, t := range targets {
			d := dest{t.Stream, t.Shard}
			pending[d] = append(pending[d], t.Record)
			if len(pending[d]) == 100 {
				flush(d)
			}
		}
	}
	for d := range pending {
		flush(d)
	}
	out := map[string][]int64{}
	for _, st := range e.log.Streams() {
		for i := int32(0); i < st.Shards(); i++ {
			_, hwm, err := st.Offsets(i)
			if err != nil {
				tb.Fatal(err)
			}
			out[st.Name()] = append(out[st.Name()], hwm)
		}
	}
	return out
}

// testMessages makes n messages on topics spread over devices.
func testMessages(n int, topicFmt string) []mapping.Message {
	msgs := make([]mapping.Message, n)
	pf := byte(1)
	for i := range msgs {
		msgs[i] = mapping.Message{
			Topic:          fmt.Sprintf(topicFmt, i%16),
			Payload:        []byte(strconv.Itoa(i)),
			QoS:            1,
			ClientID:       fmt.Sprintf("dev-%d", i%16),
			ContentType:    "text/plain",
			PayloadFormat:  &pf,
			UserProperties: []mapping.UserProperty{{Key: "seq", Value: strconv.Itoa(i)}},
		}
	}
	return msgs
}

// v5Client is an MQTT 5 test client (mqtt/mqtttest) that records what it receives.
type v5Client struct {
	c  *mqtttest.Client
	id string
}

type v5Options struct {
	id      string
	clean   bool
	rm      uint16 // receive maximum; 0 = none sent (65535)
	expiry  uint32 // session expiry interval, s
	manual  bool   // manual acknowledgement: nothing is acked unless the test acks it
	noClean bool
	// problemInfo asks for reason strings (none are asked for by default).
	problemInfo bool
	// user and password log in (servers with a user store).
	user, password string
	// maxPacket is the client's Maximum Packet Size; 0 = none.
	maxPacket uint32
	// onPublish, when set, gets every publish instead of the client keeping them.
	onPublish func(packets.Packet)
}

func dialV5(tb testing.TB, addr string, o v5Options) *v5Client {
	tb.Helper()
	mo := mqtttest.Options{
		ClientID:   o.id,
		CleanStart: !o.noClean,
		KeepAlive:  60,
		Username:   o.user,
		Password:   o.password,
		ManualAck:  o.manual,
		OnPublish:  o.onPublish,
	}
	mo.Properties.RequestProblemInfoFlag = true
	if o.problemInfo {
		mo.Properties.RequestProblemInfo = 1
	}
	mo.Properties.ReceiveMaximum = o.rm
	if o.expiry > 0 {
		mo.Properties.SessionExpiryInterval, mo.Properties.SessionExpiryIntervalFlag = o.expiry, true
	}
	mo.Properties.MaximumPacketSize = o.maxPacket
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := mqtttest.Dial(ctx, addr, mo)
	if err != nil {
		tb.Fatalf("connect %s: %v", o.id, err)
	}
	tb.Cleanup(func() { _ = c.Disconnect() })
	return &v5Client{c: c, id: o.id}
}

// subscribe sends one SUBSCRIBE; offset, when not empty, is the stream-offset property.
// It returns the SUBACK, refusals included.
func (vc *v5Client) subscribe(tb testing.TB, offset string, qos byte, topics ...string) packets.Packet {
	tb.Helper()
	var subs []packets.Subscription
	for _, t := range topics {
		subs = append(subs, packets.Subscription{Filter: t, Qos: qos})
	}
	var props packets.Properties
	if offset != "" {
		props.User = []packets.UserProperty{{Key: StreamOffsetProperty, Val: offset}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sa, err := vc.c.Subscribe(ctx, props, subs...)
	if _, refused := mqtttest.Code(err); err != nil && !refused {
		tb.Fatalf("subscribe %v: %v", topics, err)
	}
	return sa
}

// publish sends one publish and returns its acknowledgement (refusals included).
func (vc *v5Client) publish(tb testing.TB, pk packets.Packet) (packets.Packet, error) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ack, err := vc.c.Publish(ctx, pk)
	if _, refused := mqtttest.Code(err); err != nil && !refused {
		tb.Fatalf("publish %s: %v", pk.TopicName, err)
	}
	return ack, err
}

// ack acknowledges a publish received with manual acks.
func (vc *v5Client) ack(tb testing.TB, pk packets.Packet) {
	tb.Helper()
	if err := vc.c.Ack(pk); err != nil {
		tb.Fatal(err)
	}
}

// disconnect sends DISCONNECT and waits for nothing more.
func (vc *v5Client) disconnect(tb testing.TB) {
	tb.Helper()
	if err := vc.c.Disconnect(); err != nil {
		tb.Fatal(err)
	}
}

// waitN waits until at least n messages arrived and returns a copy of them.
func (vc *v5Client) waitN(tb testing.TB, n int) []packets.Packet {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	msgs, err := vc.c.WaitMessages(ctx, n)
	if err != nil {
		seen := map[string]int{}
		for _, m := range msgs {
			seen[mqtttest.UserProperty(m, PropShard)+":"+mqtttest.UserProperty(m, PropOffset)]++
		}
		tb.Fatalf("%s: %v (offsets seen: %v)", vc.id, err, seen)
	}
	return msgs
}

func (vc *v5Client) count() int {
	return len(vc.c.Messages())
}

func propInt(tb testing.TB, p packets.Packet, key string) int64 {
	tb.Helper()
	v := mqtttest.UserProperty(p, key)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		tb.Fatalf("message on %s: user property %s=%q: %v", p.TopicName, key, v, err)
	}
	return n
}

// checkShards checks that msgs hold every offset from first[shard] to hwm[shard]-1 of
// each shard exactly once and in order.
func checkShards(tb testing.TB, msgs []packets.Packet, first, hwm []int64) {
	tb.Helper()
	next := append([]int64(nil), first...)
	for _, m := range msgs {
		shard, off := propInt(tb, m, PropShard), propInt(tb, m, PropOffset)
		if shard < 0 || int(shard) >= len(next) {
			tb.Fatalf("shard %d out of range", shard)
		}
		if off != next[shard] {
			tb.Fatalf("shard %d: got offset %d, want %d (gap, duplicate or disorder)", shard, off, next[shard])
		}
		next[shard]++
	}
	for i := range next {
		if next[i] != hwm[i] {
			tb.Fatalf("shard %d: delivered up to %d, want %d", i, next[i], hwm[i])
		}
	}
}

// sessionState reads the hook's view of a client's session.
func (e *replayEnv) sessionState(clientID string) (subs, inflight int, ok bool) {
	s := e.hook.session(clientID)
	if s == nil {
		return 0, 0, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs), len(s.inflight), true
}

// waitFor polls cond (cheap reads of server state) until it holds or the deadline.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
