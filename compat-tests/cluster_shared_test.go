package compattests

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestClusterSharedSubscription: two members of one shared group ($share/workers/...)
// connected to different nodes of a real 3-node cluster, one with mosquitto_sub in
// MQTT 3.1.1 and one in MQTT 5: each message published (on the third node, and on a
// member's node) reaches exactly one of them, once (MQTT 5 shared subscriptions, as
// EMQX serves them cluster-wide), while a plain subscriber on the third node gets all.
func TestClusterSharedSubscription(t *testing.T) {
	if !clusterSupported(t) {
		t.Skip("this mqstreams has no cluster mode yet (`cluster:` is an unknown config key)")
	}
	subTool := NeedTool(t, "mosquitto_sub")
	pubTool := NeedTool(t, "mosquitto_pub")
	c := startCluster(t, 3, "")
	ctx := Deadline(t, 4*time.Minute)

	type line struct{ who, payload string }
	lines := make(chan line, 4096)
	subscribe := func(node int, who string, args ...string) {
		t.Helper()
		startSubTool(t, ctx, subTool, c.mqtt[node], func(l string) { lines <- line{who, l} }, append([]string{"-q", "1", "-F", "%p"}, args...)...)
	}
	subscribe(0, "member@1", "-i", "member-1", "-t", "$share/workers/jobs/#")
	subscribe(1, "member@2", "-V", "mqttv5", "-i", "member-2", "-t", "$share/workers/jobs/#")
	subscribe(2, "plain@3", "-i", "plain-3", "-t", "jobs/#")

	publish := func(node int, payloads []string) {
		t.Helper()
		h, p := SplitAddr(t, c.mqtt[node])
		cmd := exec.CommandContext(ctx, pubTool, "-h", h, "-p", p, "-q", "1", "-t", "jobs/run", "-l")
		cmd.Stdin = strings.NewReader(strings.Join(payloads, "\n") + "\n")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub on node %d: %v %s", node+1, err, b)
		}
	}

	// Until the group's members are in node 3's route table, publish probes: once
	// each member has had one, node 3 knows both (it has no member itself).
	seen := map[string]bool{}
	for n := 0; !seen["member@1"] || !seen["member@2"] || !seen["plain@3"]; n++ {
		publish(2, []string{fmt.Sprintf("probe-%d", n)})
		wait := time.After(300 * time.Millisecond)
	drain:
		for {
			select {
			case l := <-lines:
				seen[l.who] = true
			case <-wait:
				break drain
			case <-ctx.Done():
				t.Fatalf("probes never reached both members and the plain subscriber: %v", seen)
			}
		}
	}

	const perNode = 100
	var want []string
	for _, node := range []int{2, 0} {
		var ps []string
		for i := range perNode {
			ps = append(ps, fmt.Sprintf("job-%d-%d", node+1, i))
		}
		publish(node, ps)
		want = append(want, ps...)
	}
	got := map[string][]string{}
	complete := func() bool {
		for _, p := range want {
			members := 0
			plain := false
			for _, w := range got[p] {
				if w == "plain@3" {
					plain = true
				} else {
					members++
				}
			}
			if members == 0 || !plain {
				return false
			}
		}
		return true
	}
	for !complete() {
		select {
		case l := <-lines:
			got[l.payload] = append(got[l.payload], l.who)
		case <-ctx.Done():
			t.Fatalf("not every message reached a member and the plain subscriber: %v", got)
		}
	}
	// Anything arriving now is an extra copy (the wait bounds a negative only).
	extra := time.After(2 * time.Second)
more:
	for {
		select {
		case l := <-lines:
			got[l.payload] = append(got[l.payload], l.who)
		case <-extra:
			break more
		}
	}
	per := map[string]int{}
	for _, p := range want {
		if len(got[p]) != 2 {
			t.Fatalf("%s reached %v: want one member and the plain subscriber", p, got[p])
		}
		for _, w := range got[p] {
			per[p[:len("job-N")]+" "+w]++
		}
	}
	// Random picks, a member on the publishing node no likelier: each member gets
	// some of each node's 100.
	for _, k := range []string{"job-3 member@1", "job-3 member@2", "job-1 member@1", "job-1 member@2"} {
		if per[k] == 0 {
			t.Fatalf("%s: none: %v", k, per)
		}
	}
	t.Logf("deliveries of %d messages: %v", len(want), per)
}
