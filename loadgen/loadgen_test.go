package loadgen

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// allowAll lets every client connect and publish, the only hook mochi needs to run.
type allowAll struct{ mochi.HookBase }

func (allowAll) ID() string { return "allow-all" }
func (allowAll) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}
func (allowAll) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return true }
func (allowAll) OnACLCheck(*mochi.Client, string, bool) bool              { return true }

// startMochi runs an in-memory mochi-mqtt broker (allow-all, no other hook) on a free port.
func startMochi(t *testing.T) string {
	t.Helper()
	srv := mochi.New(&mochi.Options{InlineClient: false})
	if err := srv.AddHook(new(allowAll), nil); err != nil {
		t.Fatal(err)
	}
	l := listeners.NewTCP(listeners.Config{ID: "t", Address: "127.0.0.1:0"})
	if err := srv.AddListener(l); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return l.Address()
}

func TestRunCountsEveryAck(t *testing.T) {
	addr := startMochi(t)
	for _, tc := range []struct {
		version byte
		qos     byte
		pubs    int
		window  int
	}{
		{V311, 0, 1, 20}, {V311, 1, 1, 20}, {V311, 2, 1, 20},
		{V5, 0, 3, 20}, {V5, 1, 4, 7}, {V5, 2, 2, 100},
	} {
		t.Run(fmt.Sprintf("v%d/qos%d/pubs%d", tc.version, tc.qos, tc.pubs), func(t *testing.T) {
			var progress atomic.Int32
			res, err := Run(context.Background(), Config{
				Addr: addr, Version: tc.version, QoS: tc.qos, Publishers: tc.pubs, Messages: 1001,
				PayloadSize: 100, InFlight: tc.window, Topic: "t/%d",
				Progress: func(Progress) { progress.Add(1) },
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Sent != 1001 || res.Acked != 1001 {
				t.Fatalf("sent %d acked %d, want 1001 each", res.Sent, res.Acked)
			}
			if tc.qos > 0 && res.Latency.Count() != 1001 {
				t.Fatalf("latency samples %d, want 1001", res.Latency.Count())
			}
			if tc.qos == 0 && res.Latency.Count() != 0 {
				t.Fatalf("QoS 0 recorded %d ack latencies", res.Latency.Count())
			}
			if res.MsgPerSec() <= 0 || progress.Load() == 0 {
				t.Fatalf("msg/s %v, progress calls %d", res.MsgPerSec(), progress.Load())
			}
		})
	}
}

func TestRunDurationAndRate(t *testing.T) {
	addr := startMochi(t)
	res, err := Run(context.Background(), Config{
		Addr: addr, QoS: 1, Publishers: 2, Duration: 500 * time.Millisecond, Rate: 200, PayloadSize: 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	// 200 msg/s for half a second is 100 publishes; allow for timer slack either way.
	if res.Acked < 50 || res.Acked > 110 {
		t.Fatalf("acked %d in %v at a 200 msg/s cap, want about 100", res.Acked, res.Elapsed)
	}
}

func TestSubscriberSeesStampedPublishes(t *testing.T) {
	addr := startMochi(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// QoS 1 on 3.1.1 only: mochi 2.7.9 can deadlock on its inflight lock when it
	// resends to an MQTT 5 subscriber at its receive maximum (Inflight.NextImmediate
	// read-locks twice while a writer waits).
	for _, v := range []byte{V311, V5} {
		qos := byte(1)
		if v == V5 {
			qos = 0
		}
		sub, err := Subscribe(ctx, SubConfig{Addr: addr, Version: v, ClientID: fmt.Sprintf("sub%d", v), Filter: fmt.Sprintf("s%d/#", v), QoS: qos, ReceiveMax: 100})
		if err != nil {
			t.Fatal(err)
		}
		var got atomic.Int64
		done := make(chan error, 1)
		go func() {
			done <- sub.Receive(ctx, func(_, payload []byte) {
				if ts, ok := Stamp(payload); ok && time.Since(ts) < time.Minute {
					got.Add(1)
				}
			})
		}()
		if _, err := Run(ctx, Config{Addr: addr, Version: v, QoS: 1, Messages: 500, StampPayload: true, Topic: fmt.Sprintf("s%d/%%d", v)}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for got.Load() < 500 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if got.Load() != 500 {
			t.Fatalf("v%d subscriber got %d stamped messages, want 500", v, got.Load())
		}
		_ = sub.Close()
	}
}

func TestRunRefusedConnection(t *testing.T) {
	if _, err := Run(context.Background(), Config{Addr: "127.0.0.1:1", Messages: 1}); err == nil {
		t.Fatal("no error for a closed port")
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	for i := 1; i <= 10000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5 * time.Millisecond}, {0.99, 9900 * time.Microsecond}, {0.999, 9990 * time.Microsecond}, {1, 10 * time.Millisecond}} {
		got := h.Quantile(tc.q)
		if d := float64(got-tc.want) / float64(tc.want); d < -0.001 || d > 0.009 {
			t.Errorf("q%v = %v, want %v within 0.8%%", tc.q, got, tc.want)
		}
	}
	var m Histogram
	m.Merge(&h)
	m.Merge(&h)
	if m.Count() != 20000 || m.Quantile(0.5) != h.Quantile(0.5) || m.Max() != 10*time.Millisecond {
		t.Fatalf("merged: n %d p50 %v max %v", m.Count(), m.Quantile(0.5), m.Max())
	}
}

func TestRunStopsOnCancelWhileBlocked(t *testing.T) {
	// A listener that accepts, answers CONNACK, then never reads: the publisher's
	// writes block once the socket buffers fill.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 256)
			_, _ = c.Read(buf)
			_, _ = c.Write([]byte{pktConnack << 4, 2, 0, 0})
			defer c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, Config{Addr: ln.Addr().String(), QoS: 0, Duration: time.Hour, PayloadSize: 1000})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("no error from a cancelled run")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run still blocked 20s after its context ended")
	}
}
