package mqtt

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstreams/mqstreams/mapping"
)

// benchMessages makes n messages with 100-byte payloads over 64 topics.
func benchMessages(n int) []mapping.Message {
	payload := bytes.Repeat([]byte("x"), 100)
	msgs := make([]mapping.Message, n)
	for i := range msgs {
		msgs[i] = mapping.Message{Topic: fmt.Sprintf("bench/dev%d/temp", i%64), Payload: payload, QoS: 1, ClientID: "dev"}
	}
	return msgs
}

// BenchmarkReplayThroughput replays a 200,000-record stream to one MQTT 5 client with
// receive maximum 100 (QoS 1, acknowledging every message) and at QoS 0.
func BenchmarkReplayThroughput(b *testing.B) {
	const records = 200000
	e := newReplayEnv(b, replayEnvOptions{noSync: true}, streamDef("bench", 4, "topic", "bench/#"))
	e.fill(b, benchMessages(records))
	for _, qos := range []byte{1, 0} {
		b.Run(fmt.Sprintf("qos%d-rm100", qos), func(b *testing.B) {
			var total time.Duration
			for i := 0; i < b.N; i++ {
				var got atomic.Int64
				done := make(chan struct{})
				conn, err := net.Dial("tcp", e.addr)
				if err != nil {
					b.Fatal(err)
				}
				c := paho.NewClient(paho.ClientConfig{Conn: bufferedConn{conn, bufio.NewReaderSize(conn, 64<<10)}, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
					func(paho.PublishReceived) (bool, error) {
						if got.Add(1) == records {
							close(done)
						}
						return true, nil
					}}})
				rm := uint16(100)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				if _, err := c.Connect(ctx, &paho.Connect{ClientID: fmt.Sprintf("bench-%d-%d", qos, i), CleanStart: true, KeepAlive: 60,
					Properties: &paho.ConnectProperties{ReceiveMaximum: &rm}}); err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				if _, err := c.Subscribe(ctx, &paho.Subscribe{
					Subscriptions: []paho.SubscribeOptions{{Topic: "$stream/bench", QoS: qos}},
					Properties:    &paho.SubscribeProperties{User: paho.UserProperties{{Key: StreamOffsetProperty, Value: "earliest"}}},
				}); err != nil {
					b.Fatal(err)
				}
				select {
				case <-done:
				case <-ctx.Done():
					b.Fatalf("got %d of %d", got.Load(), records)
				}
				total += time.Since(start)
				cancel()
				_ = c.Disconnect(&paho.Disconnect{})
			}
			b.ReportMetric(float64(records*b.N)/total.Seconds(), "msg/s")
		})
	}
}

// BenchmarkReplayStalledMemory opens replay subscriptions (receive maximum 100, QoS 1)
// on connections that never read nor acknowledge, and reports the heap each holds once
// its window is full.
func BenchmarkReplayStalledMemory(b *testing.B) {
	const subs = 100
	e := newReplayEnv(b, replayEnvOptions{noSync: true}, streamDef("mem", 4, "topic", "bench/#"))
	e.fill(b, benchMessages(50000))
	for i := 0; i < b.N; i++ {
		before := heapInUse()
		conns := make([]net.Conn, subs)
		for j := range conns {
			id := fmt.Sprintf("stalled-%d-%d", i, j)
			conns[j] = rawStalledSubscriber(b, e.addr, id)
		}
		for j := range conns {
			id := fmt.Sprintf("stalled-%d-%d", i, j)
			waitFor(b, id+" window full", func() bool { _, inflight, _ := e.sessionState(id); return inflight == 100 })
		}
		after := heapInUse()
		b.ReportMetric(float64(after-before)/subs, "heap-B/sub")
		for _, c := range conns {
			_ = c.Close()
		}
		for j := range conns {
			id := fmt.Sprintf("stalled-%d-%d", i, j)
			waitFor(b, id+" gone", func() bool { _, _, ok := e.sessionState(id); return !ok })
		}
	}
}

// bufferedConn reads through a buffer: paho.golang reads a packet a few bytes per
// system call, which would make the client, not the server, the measured bottleneck.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// rawStalledSubscriber connects (MQTT 5, receive maximum 100), subscribes to
// $stream/mem from the earliest record and then never reads the socket again.
func rawStalledSubscriber(tb testing.TB, addr, id string) net.Conn {
	tb.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	var buf bytes.Buffer
	connect := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: 5,
		Connect: packets.ConnectParams{
			ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 0, ClientIdentifier: id,
		},
		Properties: packets.Properties{ReceiveMaximum: 100},
	}
	if err := connect.ConnectEncode(&buf); err != nil {
		tb.Fatal(err)
	}
	sub := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Subscribe, Qos: 1},
		ProtocolVersion: 5,
		PacketID:        1,
		Filters:         packets.Subscriptions{{Filter: "$stream/mem", Qos: 1}},
		Properties:      packets.Properties{User: []packets.UserProperty{{Key: StreamOffsetProperty, Val: "earliest"}}},
	}
	if err := sub.SubscribeEncode(&buf); err != nil {
		tb.Fatal(err)
	}
	if _, err := conn.Write(buf.Bytes()); err != nil {
		tb.Fatal(err)
	}
	return conn
}
