package kafkawire

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/log"
)

func refusals(t *testing.T, tb *testBroker, limit string) float64 {
	t.Helper()
	return testutil.ToFloat64(tb.s.metrics.refusals.WithLabelValues(limit))
}

// TestFetchManyPartitions: a Fetch naming more partitions than reflect.Select takes
// cases long-polls without panicking; above MaxFetchPartitions it gets INVALID_REQUEST.
func TestFetchManyPartitions(t *testing.T) {
	tb := startBrokerWith(t, true, Config{MaxFetchPartitions: 70000})
	tb.stream(t, log.StreamSpec{Name: "t", Shards: 1})
	fetch := func(n int) *kmsg.FetchRequest {
		req := kmsg.NewPtrFetchRequest()
		req.Version, req.MaxWaitMillis, req.MinBytes, req.MaxBytes = 12, 50, 1, 1<<20
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = "t"
		for i := 0; i < n; i++ {
			rp := kmsg.NewFetchRequestTopicPartition()
			rp.PartitionMaxBytes = 1 << 10
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
		return req
	}
	rc := dialRaw(t, tb.addr)
	resp := rc.roundTrip(fetch(66000)).(*kmsg.FetchResponse)
	if resp.ErrorCode != 0 || len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 66000 {
		t.Fatalf("fetch of 66000 partitions: error %d, %d topics", resp.ErrorCode, len(resp.Topics))
	}
	resp = rc.roundTrip(fetch(70001)).(*kmsg.FetchResponse)
	if resp.ErrorCode != kerr.InvalidRequest.Code || len(resp.Topics) != 0 {
		t.Fatalf("fetch over the cap: error %d, %d topics", resp.ErrorCode, len(resp.Topics))
	}
	if refusals(t, tb, "max_fetch_partitions") != 1 {
		t.Fatal("refusal not counted")
	}
}

// TestFrameTimeout: a client that starts a frame and stops is closed after FrameTimeout.
func TestFrameTimeout(t *testing.T) {
	tb := startBrokerWith(t, true, Config{FrameTimeout: 200 * time.Millisecond})
	rc := dialRaw(t, tb.addr)
	rc.write([]byte{0, 0})
	start := time.Now()
	rc.expectClosed()
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("closed after %v", d)
	}
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(tb.s.metrics.timeouts.WithLabelValues("frame")) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("frame timeout not counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestConnectionsPerIP: connections beyond the per-IP cap are closed at accept.
func TestConnectionsPerIP(t *testing.T) {
	tb := startBrokerWith(t, true, Config{MaxConnectionsPerIP: 2})
	a, b := dialRaw(t, tb.addr), dialRaw(t, tb.addr)
	a.roundTrip(apiVersionsReq(3))
	b.roundTrip(apiVersionsReq(3))
	c := dialRaw(t, tb.addr)
	c.expectClosed()
	if testutil.ToFloat64(tb.s.metrics.refused.WithLabelValues("max_connections_per_ip")) != 1 {
		t.Fatal("refusal not counted")
	}
	a.nc.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d := dialRaw(t, tb.addr)
		d.send(apiVersionsReq(3))
		if _, err := d.readFrame(5 * time.Second); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("slot not given back")
		}
	}
}

// TestRequestBudget: a large frame reserves its size before it is read; while another
// holds the whole budget, a compressed batch inflating beyond what is left is refused
// (REQUEST_TIMED_OUT, retriable) rather than inflated, and accepted once it is freed.
func TestRequestBudget(t *testing.T) {
	tb := startBrokerWith(t, true, Config{MaxRequestBytes: 1 << 20, QueuedMaxRequestBytes: 1 << 20})
	tb.stream(t, log.StreamSpec{Name: "t", Shards: 1})
	holder := dialRaw(t, tb.addr)
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], 1<<20)
	holder.write(hdr[:])
	holder.write(make([]byte, 100))
	// The reservation happens on the holder's goroutine: wait until it took it.
	deadline := time.Now().Add(10 * time.Second)
	for tb.s.budget.sem.TryAcquire(1) {
		tb.s.budget.sem.Release(1)
		if time.Now().After(deadline) {
			t.Fatal("budget never reserved")
		}
		time.Sleep(5 * time.Millisecond)
	}
	big := strings.Repeat("x", 512<<10)
	batch := rawBatch(t, codecGzip, -1, -1, 0, valueRecs(big)...)
	rc := dialRaw(t, tb.addr)
	p := produceRaw(t, rc, 9, "t", 0, batch)
	if p.ErrorCode != kerr.RequestTimedOut.Code {
		t.Fatalf("produce with the budget spent: error %d", p.ErrorCode)
	}
	if refusals(t, tb, "request_budget") < 1 {
		t.Fatal("refusal not counted")
	}
	holder.nc.Close()
	deadline = time.Now().Add(10 * time.Second)
	for {
		p = produceRaw(t, rc, 9, "t", 0, batch)
		if p.ErrorCode == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("produce after the budget freed: error %d", p.ErrorCode)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := storedValues(t, tb.l.Stream("t"), 0); len(got) != 1 || !bytes.Equal([]byte(got[0]), []byte(big)) {
		t.Fatalf("stored %d values", len(got))
	}
}
