package compattests

import (
	"fmt"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// TestClusterForwardSurvivesLinkDrop: a QoS 1 subscriber (mosquitto_sub) on node 2
// gets every QoS 1 message a paho publisher sends on node 1, once and in order, although
// the link from node 1 to node 2 loses everything for a while twice: briefly (the
// transport does not notice: forwards vanish on the wire) and long enough for node 1
// to see the link down (forwards cannot be sent). QoS 1/2 forwards are kept until the
// receiving node acknowledges them (mqtt/routes_reliable.go).
func TestClusterForwardSurvivesLinkDrop(t *testing.T) {
	if !clusterSupported(t) {
		t.Skip("this mqstreams has no cluster mode yet (`cluster:` is an unknown config key)")
	}
	subTool := NeedTool(t, "mosquitto_sub")
	// No stream: a publish appended through a shard leader behind the cut link would
	// wait on the cluster write path, which is not what this test is about.
	c := startCluster(t, 3, "streams: []\n")
	ctx := Deadline(t, 4*time.Minute)

	lines := make(chan string, 4096)
	startSubTool(t, ctx, subTool, c.mqtt[1], func(l string) { lines <- l }, "-q", "1", "-i", "fwd-sub", "-t", "fwd/#", "-F", "%p")

	opts := paho.NewClientOptions().AddBroker("tcp://" + c.mqtt[0]).SetClientID("fwd-pub").
		SetCleanSession(true).SetAutoReconnect(false).SetConnectTimeout(10 * time.Second)
	pub := paho.NewClient(opts)
	if tok := pub.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("paho connect: %v", tok.Error())
	}
	defer pub.Disconnect(100)
	var want []string
	publishOne := func(m string) {
		t.Helper()
		if tok := pub.Publish("fwd/x", 1, false, m); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", m, tok.Error())
		}
		want = append(want, m)
	}
	publish := func(prefix string, n int) {
		t.Helper()
		for i := range n {
			publishOne(fmt.Sprintf("%s-%d", prefix, i))
		}
	}

	// The route reaches node 1 shortly after the SUBACK on node 2: probe until a
	// message arrives, then start counting.
	for n := 0; ; n++ {
		if tok := pub.Publish("fwd/probe", 1, false, fmt.Sprintf("probe-%d", n)); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("probe: %v", tok.Error())
		}
		select {
		case <-lines:
		case <-time.After(300 * time.Millisecond):
			continue
		case <-ctx.Done():
			t.Fatal("no probe reached node 2")
		}
		break
	}
	for drained := false; !drained; {
		select {
		case <-lines:
		case <-time.After(500 * time.Millisecond):
			drained = true
		}
	}

	publish("before", 50)
	c.setLink(0, 1, linkDrop, 0)
	publish("brief", 100) // node 1 sends these into a link that loses them
	c.setLink(0, 1, linkPass, 0)
	publish("between", 50)
	downs := linkDowns(c.nodes[0], 2)
	c.setLink(0, 1, linkDrop, 0)
	// Until node 1 sees the link to node 2 down (about 3 s: node 2 closes a link silent
	// that long), a publisher paced at 50 a second; then forwards are not even sent.
	pace := time.NewTicker(20 * time.Millisecond)
	defer pace.Stop()
	for i := 0; linkDowns(c.nodes[0], 2) == downs; i++ {
		<-pace.C
		publishOne(fmt.Sprintf("unnoticed-%d", i))
	}
	publish("down", 100)
	c.setLink(0, 1, linkPass, 0)
	publish("after", 50)

	var got []string
	for len(got) < len(want) {
		select {
		case l := <-lines:
			got = append(got, l)
		case <-ctx.Done():
			t.Fatalf("node 2's subscriber got %d of %d messages; last %v", len(got), len(want), got[max(0, len(got)-5):])
		}
	}
	extra := time.After(2 * time.Second) // bounds a negative: no copy beyond
	for done := false; !done; {
		select {
		case l := <-lines:
			got = append(got, l)
		case <-extra:
			done = true
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Fatalf("message %d: got %s, want %s (%d got, %d published)", i, got[i], want[i], len(got), len(want))
			}
		}
		t.Fatalf("got %d messages, published %d", len(got), len(want))
	}
	_, metrics := c.nodes[0].HTTPGet(t, "/metrics")
	t.Logf("%d QoS 1 messages, every one once and in order; node 1's metrics: %s", len(want),
		grepLines(metrics, "mqstreams_mqtt_cluster_reliable_forwards_total"))
}

// linkDowns counts the times node s logged its link to node peer down.
func linkDowns(s *Server, peer int) int {
	n := 0
	for _, l := range strings.Split(s.Logs(), "\n") {
		if strings.Contains(l, `"message":"cluster link down"`) && strings.Contains(l, fmt.Sprintf(`"peer":%d,`, peer)) {
			n++
		}
	}
	return n
}

// grepLines returns the lines of s containing sub.
func grepLines(s, sub string) string {
	var out string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, "#") && strings.Contains(l, sub) {
			out += l + "; "
		}
	}
	return out
}
