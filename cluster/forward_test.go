package cluster

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqstreams/mqstreams/log"
)

// A forwarded append whose leader dies with it in flight (the request arrived, no
// answer came) is sent again to the new leader and acknowledged once a quorum has it,
// within the append's deadline: its callback is never lost (issue 13; an MQTT 3.1.1
// publisher waited forever for that PUBACK).
func TestForwardedAppendRetriedWhenLeaderDiesInFlight(t *testing.T) {
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
	case <-time.After(30 * time.Second): // past the append's own 20 s deadline
		t.Fatal("the forwarded append's callback never ran")
	}
	if o.err != nil {
		t.Fatalf("forwarded append after the leader died: %v (after %v), want it retried at the new leader", o.err, time.Since(start))
	}
	t.Logf("acknowledged after %v at offset %d", time.Since(start), o.res.BaseOffset)
	newLead := c.leaderOf("s", 0)
	recs := shardRecords(t, c.logs[newLead-1], "s", 0)
	var found int
	for _, r := range recs {
		if string(r.Value) == "v1" {
			found++
			if r.Offset != o.res.BaseOffset {
				t.Fatalf("v1 stored at %d, acknowledged at %d", r.Offset, o.res.BaseOffset)
			}
		}
	}
	if found != 1 {
		t.Fatalf("the acknowledged record is stored %d times on the new leader, want once: %+v", found, recs)
	}
}
