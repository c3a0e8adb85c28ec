package compattests

import (
	"context"
	"os/exec"
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
	sub := NeedTool(t, "mosquitto_sub")
	pub := NeedTool(t, "mosquitto_pub")
	c := startCluster(t, 3, "")
	ctx := Deadline(t, 4*time.Minute)
	const topic = "cfg/line1"

	publish := func(node int, args ...string) {
		t.Helper()
		h, p := SplitAddr(t, c.mqtt[node])
		cmd := exec.CommandContext(ctx, pub, append([]string{"-h", h, "-p", p, "-q", "1", "-r", "-t", topic}, args...)...)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub on node %d: %v %s", node+1, err, b)
		}
	}
	// retained is what a new subscriber on node gets as retained ("" none, within 2 s).
	retained := func(node int) string {
		h, p := SplitAddr(t, c.mqtt[node])
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		b, _ := exec.CommandContext(cctx, sub, "-h", h, "-p", p, "-t", topic, "--retained-only",
			"-C", "1", "-W", "2", "-F", "%p").Output()
		return strings.TrimSpace(string(b))
	}
	// await waits until every listed node serves want.
	await := func(want string, nodes ...int) {
		t.Helper()
		for _, n := range nodes {
			var got string
			for got = retained(n); got != want; got = retained(n) {
				if ctx.Err() != nil {
					t.Fatalf("node %d serves retained %q, want %q", n+1, got, want)
				}
				time.Sleep(200 * time.Millisecond) // between polls of a real client
			}
		}
	}

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
