package compattests

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestClusterRetainedConverges: a node that was down while a retained message changed
// serves the latest one after it comes back (route resync carries retained messages,
// mqtt/routes_retained.go), and a clear made while a node was down reaches it too.
func TestClusterRetainedConverges(t *testing.T) {
	if !clusterSupported(t) {
		t.Skip("this mqstreams has no cluster mode yet (`cluster:` is an unknown config key)")
	}
	c := startCluster(t, 3, "")
	ctx := Deadline(t, 4*time.Minute)
	const topic = "cfg/line1"

	r := newRetainedTools(t, ctx, c)
	publish := func(node int, args ...string) { t.Helper(); r.publish(node, topic, args...) }
	await := func(want string, nodes ...int) { t.Helper(); r.await(topic, want, nodes...) }

	publish(0, "-m", "v1")
	await("v1", 0, 1, 2)

	c.kill(t, 2)
	publish(0, "-m", "v2")
	await("v2", 0, 1)
	c.restart(t, 2)
	await("v2", 2, 0, 1)

	// A clear (empty retained payload) made while node 2 is down.
	c.kill(t, 1)
	publish(0, "-n")
	await("", 0, 2)
	c.restart(t, 1)
	await("", 1, 0, 2)

	// And a new value published on the node that was down reaches the others.
	publish(1, "-m", "v3")
	await("v3", 0, 1, 2)
}

// retainedTools publishes retained messages with mosquitto_pub and reads what a new
// mosquitto_sub subscriber gets as retained, on any node of c.
type retainedTools struct {
	t        *testing.T
	ctx      context.Context
	c        *testCluster
	pub, sub string
}

func newRetainedTools(t *testing.T, ctx context.Context, c *testCluster) *retainedTools {
	return &retainedTools{t: t, ctx: ctx, c: c, pub: NeedTool(t, "mosquitto_pub"), sub: NeedTool(t, "mosquitto_sub")}
}

// publish sends a retained QoS 1 publish to topic on node (args: -m or -n).
func (r *retainedTools) publish(node int, topic string, args ...string) {
	r.t.Helper()
	h, p := SplitAddr(r.t, r.c.mqtt[node])
	cmd := exec.CommandContext(r.ctx, r.pub, append([]string{"-h", h, "-p", p, "-q", "1", "-r", "-t", topic}, args...)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		r.t.Fatalf("mosquitto_pub on node %d: %v %s", node+1, err, b)
	}
}

// retained is what a new subscriber to topic on node gets as retained ("" none, within
// 2 s: await polls again, and a value that is still propagating is not there anyway).
func (r *retainedTools) retained(node int, topic string) string {
	return r.retainedWithin(node, topic, 2)
}

// retainedWithin is retained, waiting up to secs seconds for the message: a check
// that a node still serves a value it has long had waits long, since a loaded
// machine can take more than 2 s to answer (mosquitto_sub ends at the first message).
func (r *retainedTools) retainedWithin(node int, topic string, secs int) string {
	h, p := SplitAddr(r.t, r.c.mqtt[node])
	cctx, cancel := context.WithTimeout(r.ctx, time.Duration(secs+30)*time.Second)
	defer cancel()
	b, _ := exec.CommandContext(cctx, r.sub, "-h", h, "-p", p, "-t", topic, "--retained-only",
		"-C", "1", "-W", strconv.Itoa(secs), "-F", "%p").Output()
	return strings.TrimSpace(string(b))
}

// await waits until every listed node serves want on topic.
func (r *retainedTools) await(topic, want string, nodes ...int) {
	r.t.Helper()
	for _, n := range nodes {
		var got string
		for got = r.retained(n, topic); got != want; got = r.retained(n, topic) {
			if r.ctx.Err() != nil {
				r.t.Fatalf("node %d serves retained %q on %s, want %q", n+1, got, topic, want)
			}
			time.Sleep(200 * time.Millisecond) // between polls of a real client
		}
	}
}
