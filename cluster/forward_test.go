package cluster

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqstreams/mqstreams/log"
)

// A forwarded append whose leader dies with it in flight (the request arrived, no
// answer came) ends at once, well within its deadline, with an UncertainError (a
// timeout to the protocol faces: MQTT 5 PUBACK 0x80, 3.1.1 disconnect, Kafka
// REQUEST_TIMED_OUT), never an ack, and is not sent again behind the client's back
// (a committed one would then be stored twice). The shard takes appends again at its
// new leader. Issue 13: an MQTT 3.1.1 publisher waited forever for that PUBACK.
func TestForwardedAppendEndsWhenLeaderDiesInFlight(t *testing.T) {
	var hold atomic.Bool
	arrived := make(chan struct{}, 1)
	c := newTestCluster(t, 3, func(_ int, o *Options) {
		o.testForwardArrived = func() bool {
			if !hold.Load() {
				return false
			}
			select {
			case arrived <- struct{}{}:
			default:
			}
			return true
		}
	})
	c.putStream("s", 1)
	lead := c.leaderOf("s", 0)
	from := int(lead % 3) // a node that is not the leader (0-based)
	if _, err := appendVia(c.nodes[from], "s", 0, rec("k", 0)); err != nil {
		t.Fatal(err)
	}

	hold.Store(true)
	type out struct {
		res log.AppendResult
		err error
	}
	ch := make(chan out, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	c.nodes[from].Append(ctx, log.AppendBlock, "s", 0, []log.Record{rec("k", 1)}, nil, func(r log.AppendResult, err error) { ch <- out{r, err} })
	select {
	case <-arrived:
	case <-time.After(20 * time.Second):
		t.Fatal("the forwarded append never reached the leader")
	}
	c.stop(int(lead - 1)) // the leader dies with the append unanswered
	hold.Store(false)

	var o out
	select {
	case o = <-ch:
	case <-time.After(15 * time.Second): // the append's own deadline is 20 s
		t.Fatal("the forwarded append's callback did not run within 15 s")
	}
	var to interface{ Timeout() bool }
	if o.err == nil || !errors.As(o.err, &to) || !to.Timeout() {
		t.Fatalf("forwarded append whose leader died: %v, want an uncertain outcome (a timeout)", o.err)
	}
	t.Logf("ended after %v: %v", time.Since(start), o.err)
	// Writable again at the new leader, through the same node.
	if _, err := appendVia(c.nodes[from], "s", 0, rec("k", 2)); err != nil {
		t.Fatal(err)
	}
	newLead := c.leaderOf("s", 0)
	for _, r := range shardRecords(t, c.logs[newLead-1], "s", 0) {
		if string(r.Value) == "v1" {
			t.Fatalf("the append the dead leader dropped is stored at %d", r.Offset)
		}
	}
}

// An append on a node left without a quorum (both other nodes stopped) ends by its
// deadline as a timeout (Kafka REQUEST_TIMED_OUT), never a hang.
func TestAppendWithoutQuorumTimesOut(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.putStream("s", 1)
	lead := c.leaderOf("s", 0)
	keep := int(lead % 3) // a follower; the leader and the other follower stop
	for i := range c.nodes {
		if i != keep {
			c.stop(i)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ch := make(chan error, 1)
	start := time.Now()
	c.nodes[keep].Append(ctx, log.AppendBlock, "s", 0, []log.Record{rec("k", 0)}, nil, func(_ log.AppendResult, err error) { ch <- err })
	var err error
	select {
	case err = <-ch:
	case <-time.After(20 * time.Second):
		t.Fatal("an append without a quorum did not end within 20 s (deadline 2 s)")
	}
	var to interface{ Timeout() bool }
	if err == nil || !errors.As(err, &to) || !to.Timeout() {
		t.Fatalf("append without a quorum: %v, want a timeout", err)
	}
	t.Logf("ended after %v: %v", time.Since(start).Round(time.Millisecond), err)
}
