package mqtt

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/log"
	"github.com/mqstreams/mqstreams/mapping"
	"github.com/mqstreams/mqstreams/mqtt/mqtttest"
)

func TestReplayEarliestComplete(t *testing.T) {
	e := newReplayEnv(t, replayEnvOptions{noSync: true}, streamDef("plant", 4, "topic", "plant/#"))
	const n = 10000
	hwm := e.fill(t, testMessages(n, "plant/dev%d/temp"))["plant"]

	c := dialV5(t, e.addr, v5Options{id: "replayer", rm: 100})
	sa := c.subscribe(t, "earliest", 1, "$stream/plant")
	if len(sa.ReasonCodes) != 1 || sa.ReasonCodes[0] != 1 {
		t.Fatalf("suback %v", sa.ReasonCodes)
	}
	msgs := c.waitN(t, n)
	checkShards(t, msgs, make([]int64, 4), hwm)

	// Every message keeps the original topic, payload and MQTT 5 properties.
	byShard := [4][]log.StoredRecord{}
	for i := int32(0); i < 4; i++ {
		byShard[i] = readAll(t, e.log.Stream("plant"), i)
	}
	for _, m := range msgs {
		shard, off := propInt(t, m, PropShard), propInt(t, m, PropOffset)
		rec := byShard[shard][off]
		want := mapping.FromRecord(rec.Record)
		if m.TopicName != want.Topic || string(m.Payload) != string(want.Payload) || m.FixedHeader.Qos != 1 {
			t.Fatalf("offset %d/%d: got %s %q qos %d, want %s %q", shard, off, m.TopicName, m.Payload, m.FixedHeader.Qos, want.Topic, want.Payload)
		}
		p := m.Properties
		if p.ContentType != "text/plain" || !p.PayloadFormatFlag || p.PayloadFormat != 1 {
			t.Fatalf("properties lost: %+v", p)
		}
		if mqtttest.UserProperty(m, "seq") != string(m.Payload) || mqtttest.UserProperty(m, PropKey) != m.TopicName {
			t.Fatalf("user properties %v", p.User)
		}
		if ts := propInt(t, m, PropTS); ts != rec.TimestampUS {
			t.Fatalf("ts %d, want %d", ts, rec.TimestampUS)
		}
	}
}

// testClock is a log clock the test moves.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func TestReplayTimestampBoundary(t *testing.T) {
	clock := &testClock{t: time.UnixMicro(1_700_000_000_000_000)}
	e := newReplayEnv(t, replayEnvOptions{now: clock.now, noSync: true}, streamDef("ts", 1, "topic", "ts/#"))
	t1 := clock.now().UnixMicro()
	e.fill(t, testMessages(5, "ts/%d")) // offsets 0..4 at t1
	t2 := t1 + 1_000_000
	clock.set(time.UnixMicro(t2))
	e.fill(t, testMessages(5, "ts/%d")) // offsets 5..9 at t2

	cases := []struct {
		name   string
		topic  string
		offset string
		first  int64
	}{
		{"before first", "$stream/ts", strconv.FormatInt(t1-1, 10), 0},
		{"at first", "$stream/ts", strconv.FormatInt(t1, 10), 0},
		{"just after first", "$stream/ts", strconv.FormatInt(t1+1, 10), 5},
		{"just before second", "$stream/ts", strconv.FormatInt(t2-1, 10), 5},
		{"at second", "$stream/ts", strconv.FormatInt(t2, 10), 5},
		{"at second, ms", "$stream/ts", strconv.FormatInt(t2/1000, 10) + "ms", 5},
		{"just after first, ms", "$stream/ts", strconv.FormatInt(t1/1000+1, 10) + "ms", 5},
		{"at second, us", "$stream/ts", strconv.FormatInt(t2, 10) + "us", 5},
		{"at second, RFC 3339", "$stream/ts", time.UnixMicro(t2).UTC().Format(time.RFC3339Nano), 5},
		{"before first, s", "$stream/ts", strconv.FormatInt(t1/1_000_000, 10) + "s", 0},
		{"legacy $s", "$s/" + strconv.FormatInt(t2, 10) + "/ts/#", "", 5},
		{"topic form", "$stream/ts@" + strconv.FormatInt(t2, 10), "", 5},
		{"filter form", "$stream/ts/ts/#", strconv.FormatInt(t2, 10), 5},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialV5(t, e.addr, v5Options{id: fmt.Sprintf("ts%d", i)})
			if sa := c.subscribe(t, tc.offset, 1, tc.topic); sa.ReasonCodes[0] != 1 {
				t.Fatalf("suback %v %v", sa.ReasonCodes, sa.Properties)
			}
			msgs := c.waitN(t, int(10-tc.first))
			checkShards(t, msgs, []int64{tc.first}, []int64{10})
			wantTS := t1
			if tc.first >= 5 {
				wantTS = t2
			}
			if ts := propInt(t, msgs[0], PropTS); ts != wantTS {
				t.Fatalf("first ts %d, want %d", ts, wantTS)
			}
		})
	}

	// Past the newest record: only what is appended afterwards arrives.
	c := dialV5(t, e.addr, v5Options{id: "future"})
	c.subscribe(t, strconv.FormatInt(t2+1, 10), 1, "$stream/ts")
	clock.set(time.UnixMicro(t2 + 2_000_000))
	e.fill(t, testMessages(1, "ts/%d"))
	msgs := c.waitN(t, 1)
	checkShards(t, msgs, []int64{10}, []int64{11})

	// MQTT 3.1.1 with the topic form.
	v3 := dialV3(t, e.addr, "v3ts", true)
	got := v3.subscribe(t, "$stream/ts@"+strconv.FormatInt(t2, 10), 1)
	if got != 1 {
		t.Fatalf("v3 suback %#x", got)
	}
	v3msgs := v3.waitN(t, 6)
	for i, m := range v3msgs {
		want := []string{"0", "1", "2", "3", "4", "0"}[i]
		if string(m.Payload) != want {
			t.Fatalf("v3 message %d: payload %q, want %q", i, m.Payload, want)
		}
	}
}

func TestReplayLiveHandover(t *testing.T) {
	e := newReplayEnv(t, replayEnvOptions{}, streamDef("live", 3, "clientid", "live/#"))
	const total = 3000
	pubs := make([]*v5Client, 3)
	for i := range pubs {
		pubs[i] = dialV5(t, e.addr, v5Options{id: fmt.Sprintf("pub%d", i)})
	}
	published := make(chan int, total)
	var wg sync.WaitGroup
	for i, p := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < total/len(pubs); j++ {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := p.c.Publish(ctx, mqtttest.NewPublish(fmt.Sprintf("live/%d", i), 1, []byte(strconv.Itoa(j))))
				cancel()
				if err != nil {
					t.Errorf("publish: %v", err)
					return
				}
				published <- 1
			}
		}()
	}
	// Subscribe from the start while publishers are a third of the way in.
	for n := 0; n < total/3; n++ {
		<-published
	}
	sub := dialV5(t, e.addr, v5Options{id: "live-sub", rm: 50})
	sub.subscribe(t, "earliest", 1, "$stream/live")
	wg.Wait()
	var hwm []int64
	for i := int32(0); i < 3; i++ {
		_, h, _ := e.log.Stream("live").Offsets(i)
		hwm = append(hwm, h)
	}
	if hwm[0]+hwm[1]+hwm[2] != total {
		t.Fatalf("stream holds %v, want %d records", hwm, total)
	}
	msgs := sub.waitN(t, total)
	checkShards(t, msgs, make([]int64, 3), hwm)
	// Per publisher the payloads arrive in publish order (one key, one shard).
	last := map[string]int{}
	for _, m := range msgs {
		n, _ := strconv.Atoi(string(m.Payload))
		if prev, ok := last[m.TopicName]; ok && n != prev+1 {
			t.Fatalf("%s: %d after %d", m.TopicName, n, prev)
		}
		last[m.TopicName] = n
	}
}

func TestReplayExactResume(t *testing.T) {
	e := newReplayEnv(t, replayEnvOptions{noSync: true}, streamDef("ex", 4, "topic", "ex/#"))
	hwm := e.fill(t, testMessages(400, "ex/%d"))["ex"]

	c := dialV5(t, e.addr, v5Options{id: "exact"})
	sa := c.subscribe(t, "0:5,2:"+strconv.FormatInt(hwm[2]-1, 10)+",3:"+strconv.FormatInt(hwm[3], 10), 1, "$stream/ex")
	if sa.ReasonCodes[0] != 1 {
		t.Fatalf("suback %v %+v", sa.ReasonCodes, sa.Properties)
	}
	// Shard 1, not listed, starts at its earliest record.
	first := []int64{5, 0, hwm[2] - 1, hwm[3]}
	want := 0
	for i := range first {
		want += int(hwm[i] - first[i])
	}
	msgs := c.waitN(t, want)
	checkShards(t, msgs, first, hwm)
}

func TestReplayStalledClientBounded(t *testing.T) {
	e := newReplayEnv(t, replayEnvOptions{noSync: true}, streamDef("big", 4, "topic", "big/#"))
	const n = 10000
	hwm := e.fill(t, testMessages(n, "big/%d"))["big"]

	stalled := dialV5(t, e.addr, v5Options{id: "stalled", rm: 10, manual: true})
	stalled.subscribe(t, "earliest", 1, "$stream/big")
	stalled.waitN(t, 10)

	fast := dialV5(t, e.addr, v5Options{id: "fast", rm: 100})
	fast.subscribe(t, "earliest", 1, "$stream/big")
	checkShards(t, fast.waitN(t, n), make([]int64, 4), hwm)

	// Publishers are not held up by the stalled reader.
	pub := dialV5(t, e.addr, v5Options{id: "pub"})
	if pr, err := pub.publish(t, mqtttest.NewPublish("big/x", 1, []byte("x"))); err != nil || pr.ReasonCode != 0 {
		t.Fatalf("publish: %v %+v", err, pr)
	}
	fast.waitN(t, n+1)

	// The stalled client holds exactly its window, and so does the server.
	if got, most := stalled.count(), stalled.c.MaxInflight(); got != 10 || most != 10 {
		t.Fatalf("stalled client received %d messages (at most %d unacknowledged), want its window of 10", got, most)
	}
	if _, inflight, _ := e.sessionState("stalled"); inflight != 10 {
		t.Fatalf("server holds %d stalled messages in flight, want 10", inflight)
	}
}

func TestReplayPersistentSessionResume(t *testing.T) {
	dir := t.TempDir()
	e := newReplayEnv(t, replayEnvOptions{dir: dir, noSync: true}, streamDef("ps", 1, "topic", "ps/#"))
	const n = 500
	e.fill(t, testMessages(n, "ps/%d"))

	// First connection: receives its window of 10, acknowledges 5, goes away.
	a := dialV5(t, e.addr, v5Options{id: "dev1", noClean: true, expiry: 300, rm: 10, manual: true})
	a.subscribe(t, "earliest", 1, "$stream/ps")
	got := a.waitN(t, 10)
	for _, m := range got[:5] {
		a.ack(t, m)
	}
	// The 5 freed slots are refilled: offsets 5..14 are in flight.
	a.waitN(t, 15)
	if _, inflight, _ := e.sessionState("dev1"); inflight != 10 {
		t.Fatalf("%d in flight, want 10", inflight)
	}
	a.disconnect(t)
	waitFor(t, "disconnect", func() bool { s := e.hook.session("dev1"); return s != nil && s.isClient(nil) })

	// Same process: the session resumes without a new SUBSCRIBE; the 5 unacknowledged
	// come again (resent by the broker), then the rest; nothing acknowledged repeats.
	b := dialV5(t, e.addr, v5Options{id: "dev1", noClean: true, expiry: 300, rm: 20})
	msgs := b.waitN(t, n-5)
	seen := map[int64]bool{}
	for _, m := range msgs {
		off := propInt(t, m, PropOffset)
		if off < 5 || seen[off] {
			t.Fatalf("offset %d delivered again", off)
		}
		seen[off] = true
	}
	if len(seen) != n-5 {
		t.Fatalf("got %d distinct offsets, want %d", len(seen), n-5)
	}

	// Durable: acknowledge up to 499 is stored at disconnect; after a restart a client
	// of the same persistent session that subscribes again continues after it.
	c := dialV5(t, e.addr, v5Options{id: "dev2", noClean: true, expiry: 300, rm: 10, manual: true})
	c.subscribe(t, "earliest", 1, "$stream/ps")
	for _, m := range c.waitN(t, 10)[:7] {
		c.ack(t, m)
	}
	c.waitN(t, 17)
	c.disconnect(t)
	waitFor(t, "disconnect", func() bool { s := e.hook.session("dev2"); return s != nil && s.isClient(nil) })
	e.close(t)

	e2 := newReplayEnv(t, replayEnvOptions{dir: dir, noSync: true})
	d := dialV5(t, e2.addr, v5Options{id: "dev2", noClean: true, expiry: 300})
	d.subscribe(t, "earliest", 1, "$stream/ps")
	checkShards(t, d.waitN(t, n-7), []int64{7}, []int64{n})

	// A clean start forgets the position: earliest means earliest again.
	d.disconnect(t)
	f := dialV5(t, e2.addr, v5Options{id: "dev2"})
	f.subscribe(t, "earliest", 1, "$stream/ps")
	checkShards(t, f.waitN(t, n), []int64{0}, []int64{n})
}

func TestReplayReSubscribeKeepsPosition(t *testing.T) {
	e := newReplayEnv(t, replayEnvOptions{noSync: true}, streamDef("rs", 1, "topic", "rs/#"))
	e.fill(t, testMessages(100, "rs/%d"))
	c := dialV5(t, e.addr, v5Options{id: "rs"})
	c.subscribe(t, "earliest", 1, "$stream/rs")
	c.waitN(t, 100)
	c.subscribe(t, "earliest", 1, "$stream/rs") // a client re-subscribing in its OnConnect
	e.fill(t, testMessages(1, "rs/%d"))
	msgs := c.waitN(t, 101)
	checkShards(t, msgs, []int64{0}, []int64{101})
}

func TestReplaySubscribeErrors(t *testing.T) {
	e := newReplayEnv(t, replayEnvOptions{noSync: true}, streamDef("s", 4, "topic", "s/#"), streamDef("other", 1, "topic", "o/+"))
	e.fill(t, testMessages(10, "s/%d"))
	c := dialV5(t, e.addr, v5Options{id: "errs", problemInfo: true})
	cases := []struct {
		topic, offset string
		code          byte
		reason        string
	}{
		{"$stream/nope", "", 0x8F, "does not exist"},
		{"$stream/", "", 0x8F, "stream name"},
		{"$stream/bad name", "", 0x8F, "stream name"},
		{"$stream/s/other/#", "", 0x8F, "topic filter"},
		{"$stream/s/", "", 0x8F, "empty topic filter"},
		{"$s/abc/s/#", "", 0x8F, "timestamp"},
		{"$s/0/no/such", "", 0x8F, "no stream"},
		{"$stream/s", "bogus", 0x83, "stream-offset"},
		{"$stream/s", "-3", 0x83, "stream-offset"},
		{"$stream/s", "1732540000000", 0x83, "looks like milliseconds: write 1732540000000ms"},
		{"$stream/s", "12345", 0x83, "microseconds (16 digits)"},
		{"$stream/s", "5h", 0x83, "unit"},
		{"$stream/s", "9:0", 0x83, "shard 9"},
		{"$stream/s", "0:999999", 0x83, "past the end"},
		{"$stream/s@earliest", "latest", 0x83, "both"},
		{"$stream/s@soon", "", 0x8F, "start point"},
	}
	for _, tc := range cases {
		sa := c.subscribe(t, tc.offset, 1, tc.topic)
		if len(sa.ReasonCodes) != 1 || sa.ReasonCodes[0] != tc.code {
			t.Errorf("%s (%s): reasons %v, want %#x", tc.topic, tc.offset, sa.ReasonCodes, tc.code)
			continue
		}
		if !strings.Contains(sa.Properties.ReasonString, tc.reason) {
			t.Errorf("%s: reason string %q does not mention %q", tc.topic, sa.Properties.ReasonString, tc.reason)
		}
	}
	// One bad stream filter fails alone.
	sa := c.subscribe(t, "", 1, "plain/topic", "$stream/nope", "$stream/s")
	if got := fmt.Sprint(sa.ReasonCodes); got != "[1 143 1]" {
		t.Fatalf("mixed suback %s", got)
	}
	if subs, _, _ := e.sessionState("errs"); subs != 1 {
		t.Fatalf("%d stream subscriptions, want 1", subs)
	}

	// MQTT 3.1.1 knows only failure 0x80.
	v3 := dialV3(t, e.addr, "errs3", true)
	if got := v3.subscribe(t, "$stream/nope", 1); got != 0x80 {
		t.Fatalf("v3 suback %#x, want 0x80", got)
	}
	if got := v3.subscribe(t, "$stream/s@bogus", 1); got != 0x80 {
		t.Fatalf("v3 suback %#x, want 0x80", got)
	}

	// Publishing to a $stream/ topic is refused, so nothing reaches the literal filter.
	if pr, err := c.publish(t, mqtttest.NewPublish("$stream/s", 1, []byte("x"))); pr.ReasonCode != 0x90 {
		t.Fatalf("publish to $stream/s: %+v %v, want reason 0x90", pr, err)
	}
}

func TestReplayUnsubscribeAndDisconnectStopReaders(t *testing.T) {
	e := newReplayEnv(t, replayEnvOptions{noSync: true}, streamDef("u", 2, "topic", "u/#"))
	e.fill(t, testMessages(1000, "u/%d"))
	c := dialV5(t, e.addr, v5Options{id: "unsub", rm: 5, manual: true})
	c.subscribe(t, "earliest", 1, "$stream/u")
	c.waitN(t, 5)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if ua, err := c.c.Unsubscribe(ctx, "$stream/u"); err != nil || ua.ReasonCodes[0] != 0 {
		t.Fatalf("unsubscribe: %v %+v", err, ua)
	}
	if subs, _, _ := e.sessionState("unsub"); subs != 0 {
		t.Fatalf("%d subscriptions after unsubscribe", subs)
	}

	d := dialV5(t, e.addr, v5Options{id: "disc", rm: 5, manual: true})
	d.subscribe(t, "earliest", 1, "$stream/u")
	d.waitN(t, 5)
	d.disconnect(t)
	waitFor(t, "clean session dropped", func() bool { _, _, ok := e.sessionState("disc"); return !ok })
}

func TestReplayAutoCreate(t *testing.T) {
	e := newReplayEnv(t, replayEnvOptions{autoCreate: AutoCreate{Enabled: true, Shards: 2}})
	c := dialV5(t, e.addr, v5Options{id: "auto"})
	if sa := c.subscribe(t, "", 1, "$stream/fresh/fresh/+"); sa.ReasonCodes[0] != 1 {
		t.Fatalf("suback %v %+v", sa.ReasonCodes, sa.Properties)
	}
	st := e.log.Stream("fresh")
	if st == nil || st.Shards() != 2 {
		t.Fatalf("stream not created: %v", st)
	}
	pub := dialV5(t, e.addr, v5Options{id: "autopub"})
	if _, err := pub.publish(t, mqtttest.NewPublish("fresh/a", 1, []byte("hello"))); err != nil {
		t.Fatal(err)
	}
	m := c.waitN(t, 1)[0]
	if m.TopicName != "fresh/a" || string(m.Payload) != "hello" || propInt(t, m, PropOffset) != 0 {
		t.Fatalf("got %s %q", m.TopicName, m.Payload)
	}
	// Without a filter there is nothing to create the stream from.
	if sa := c.subscribe(t, "", 1, "$stream/other"); sa.ReasonCodes[0] != 0x8F {
		t.Fatalf("suback %v", sa.ReasonCodes)
	}
}

func TestReplayMosquittoSub(t *testing.T) {
	bin, err := exec.LookPath("mosquitto_sub")
	if err != nil {
		t.Skip("mosquitto_sub not installed (apt-get install mosquitto-clients)")
	}
	e := newReplayEnv(t, replayEnvOptions{noSync: true}, streamDef("mq", 1, "topic", "mq/#"))
	e.fill(t, testMessages(200, "mq/%d"))
	host, port, _ := net.SplitHostPort(e.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-h", host, "-p", port, "-V", "mqttv5", "-i", "mosq", "-q", "1",
		"-t", "$stream/mq", "-D", "subscribe", "user-property", "stream-offset", "earliest",
		"-C", "200", "-F", "%t|%p|%P")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("mosquitto_sub: %v\n%s", err, out)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	i := 0
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), "|", 3)
		if len(parts) != 3 || parts[0] != fmt.Sprintf("mq/%d", i%16) || parts[1] != strconv.Itoa(i) ||
			!strings.Contains(parts[2], "offset:"+strconv.Itoa(i)) || !strings.Contains(parts[2], "shard:0") {
			t.Fatalf("line %d: %q", i, sc.Text())
		}
		i++
	}
	if i != 200 {
		t.Fatalf("got %d lines, want 200", i)
	}
}

// aclRecorder denies `$stream/` filters and records what it was asked.
type aclRecorder struct {
	mochi.HookBase
	mu   sync.Mutex
	seen []string
}

func (a *aclRecorder) ID() string { return "acl-recorder" }
func (a *aclRecorder) Provides(b byte) bool {
	return b == mochi.OnACLCheck || b == mochi.OnConnectAuthenticate
}
func (a *aclRecorder) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return true }
func (a *aclRecorder) OnACLCheck(_ *mochi.Client, topic string, _ bool) bool {
	a.mu.Lock()
	a.seen = append(a.seen, topic)
	a.mu.Unlock()
	return !strings.HasPrefix(topic, "$stream/")
}

// TestReplayAuthorization runs the replay hook under an authorization hook of its own:
// `$stream/...` is checked as such, so allowing `s/#` does not allow the stream.
func TestReplayAuthorization(t *testing.T) {
	l, cat := openStreams(t, log.Options{Dir: t.TempDir(), Logger: zerolog.Nop(), NoSync: true}, []mapping.Definition{streamDef("s", 1, "topic", "s/#")})
	defer l.Close()
	broker := mochi.New(&mochi.Options{InlineClient: true})
	acl := &aclRecorder{}
	hook, err := NewReplayHook(ReplayOptions{Log: l, Catalog: cat, Logger: zerolog.Nop(), Broker: broker})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []mochi.Hook{acl, hook} {
		if err := broker.AddHook(h, nil); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := broker.AddListener(listeners.NewNet("t", ln)); err != nil {
		t.Fatal(err)
	}
	if err := broker.Serve(); err != nil {
		t.Fatal(err)
	}
	defer broker.Close()

	c := dialV5(t, ln.Addr().String(), v5Options{id: "acl"})
	sa := c.subscribe(t, "earliest", 1, "s/#", "$stream/s")
	if got := fmt.Sprint(sa.ReasonCodes); got != "[1 135]" {
		t.Fatalf("suback %s, want [1 135] (not authorized)", got)
	}
	acl.mu.Lock()
	defer acl.mu.Unlock()
	if !slices.Contains(acl.seen, "$stream/s") {
		t.Fatalf("ACL was asked %v, not $stream/s", acl.seen)
	}
	if subs, _, _ := (&replayEnv{hook: hook}).sessionState("acl"); subs != 0 {
		t.Fatalf("denied subscription registered")
	}
}

// v3Client is an MQTT 3.1.1 test client that records what it receives.
type v3Client struct {
	c *mqtttest.Client
}

func dialV3(tb testing.TB, addr, id string, clean bool) *v3Client {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := mqtttest.Dial(ctx, addr, mqtttest.Options{ClientID: id, Version: 4, CleanStart: clean})
	if err != nil {
		tb.Fatalf("v3 connect: %v", err)
	}
	tb.Cleanup(func() { _ = c.Disconnect() })
	return &v3Client{c: c}
}

// subscribe returns the granted QoS or failure code.
func (vc *v3Client) subscribe(tb testing.TB, topic string, qos byte) byte {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sa, err := vc.c.Subscribe(ctx, packets.Properties{}, packets.Subscription{Filter: topic, Qos: qos})
	if _, refused := mqtttest.Code(err); err != nil && !refused {
		tb.Fatalf("v3 subscribe %s: %v", topic, err)
	}
	if len(sa.ReasonCodes) != 1 {
		tb.Fatalf("v3 subscribe %s: SUBACK codes %v", topic, sa.ReasonCodes)
	}
	return sa.ReasonCodes[0]
}

func (vc *v3Client) waitN(tb testing.TB, n int) []packets.Packet {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	msgs, err := vc.c.WaitMessages(ctx, n)
	if err != nil {
		tb.Fatalf("v3: %v", err)
	}
	return msgs
}

func TestReplayV3Earliest(t *testing.T) {
	e := newReplayEnv(t, replayEnvOptions{noSync: true}, streamDef("v3", 1, "topic", "v3/#"))
	e.fill(t, testMessages(1000, "v3/%d"))
	c := dialV3(t, e.addr, "v3all", true)
	if got := c.subscribe(t, "$stream/v3@earliest", 1); got != 1 {
		t.Fatalf("suback %#x", got)
	}
	for i, m := range c.waitN(t, 1000) {
		if string(m.Payload) != strconv.Itoa(i) || m.TopicName != fmt.Sprintf("v3/%d", i%16) {
			t.Fatalf("message %d: %s %q", i, m.TopicName, m.Payload)
		}
	}
}

// TestReplayRequestResponseProperties: `$stream` deliveries, replayed and live, carry
// the MQTT 5 response topic, correlation data and content type as a plain subscriber
// gets them.
func TestReplayRequestResponseProperties(t *testing.T) {
	e := newReplayEnv(t, replayEnvOptions{}, streamDef("rr", 1, "clientid", "rr/#"))
	pub := dialV5(t, e.addr, v5Options{id: "rr-pub"})
	plain := dialV5(t, e.addr, v5Options{id: "rr-plain"})
	plain.subscribe(t, "", 1, "rr/#")
	publish := func(n int) {
		t.Helper()
		pk := mqtttest.NewPublish("rr/req", 1, []byte(strconv.Itoa(n)))
		pk.Properties.ResponseTopic = "reply/" + strconv.Itoa(n)
		pk.Properties.CorrelationData = []byte{byte(n), 0, 'c'}
		pk.Properties.ContentType = "text/plain"
		if _, err := pub.publish(t, pk); err != nil {
			t.Fatal(err)
		}
	}
	publish(1) // replayed
	sub := dialV5(t, e.addr, v5Options{id: "rr-sub"})
	sub.subscribe(t, "earliest", 1, "$stream/rr")
	sub.waitN(t, 1)
	publish(2) // live
	for name, c := range map[string]*v5Client{"$stream": sub, "plain": plain} {
		msgs := c.waitN(t, 2)
		for i, m := range msgs[:2] {
			n := i + 1
			if m.Properties.ResponseTopic != "reply/"+strconv.Itoa(n) ||
				string(m.Properties.CorrelationData) != string([]byte{byte(n), 0, 'c'}) || m.Properties.ContentType != "text/plain" {
				t.Errorf("%s message %d: properties %+v", name, n, m.Properties)
			}
		}
	}
}

// TestReplayResumesAfterRestartWithoutSubscribe: the stream subscription of a
// persistent session is part of the stored session, so after a server restart the
// client reconnects without subscribing again and continues after what it acknowledged.
func TestReplayResumesAfterRestartWithoutSubscribe(t *testing.T) {
	dir := t.TempDir()
	e := newReplayEnv(t, replayEnvOptions{dir: dir}, streamDef("rr2", 1, "topic", "rr2/#"))
	const n = 50
	e.fill(t, testMessages(n, "rr2/%d"))
	a := dialV5(t, e.addr, v5Options{id: "dev", noClean: true, expiry: 300, rm: 10, manual: true})
	a.subscribe(t, "earliest", 1, "$stream/rr2")
	for _, m := range a.waitN(t, 10)[:6] {
		a.ack(t, m)
	}
	a.waitN(t, 16)
	a.disconnect(t)
	waitFor(t, "disconnect", func() bool { s := e.hook.session("dev"); return s != nil && s.isClient(nil) })
	e.close(t)

	e2 := newReplayEnv(t, replayEnvOptions{dir: dir})
	b := dialV5(t, e2.addr, v5Options{id: "dev", noClean: true, expiry: 300})
	checkShards(t, b.waitN(t, n-6), []int64{6}, []int64{n})
	// Live records follow the replay.
	e2.fill(t, testMessages(1, "rr2/%d"))
	b.waitN(t, n-6+1)
}
