package mqtt

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstreams/mqstreams/mapping"
	"github.com/mqstreams/mqstreams/mqtt/mqtttest"
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
// receive maximum 100 (QoS 1, acknowledging every message) and at QoS 0, through the
// test client (mqtt/mqtttest, one acknowledgement written per message).
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
				o := mqtttest.Options{ClientID: fmt.Sprintf("bench-%d-%d", qos, i), CleanStart: true, KeepAlive: 60,
					OnPublish: func(packets.Packet) {
						if got.Add(1) == records {
							close(done)
						}
					}}
				o.Properties.ReceiveMaximum = 100
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				c, err := mqtttest.Dial(ctx, e.addr, o)
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				if _, err := c.Subscribe(ctx, packets.Properties{User: []packets.UserProperty{{Key: StreamOffsetProperty, Val: "earliest"}}},
					packets.Subscription{Filter: "$stream/bench", Qos: qos}); err != nil {
					b.Fatal(err)
				}
				select {
				case <-done:
				case <-ctx.Done():
					b.Fatalf("got %d of %d", got.Load(), records)
				}
				total += time.Since(start)
				cancel()
				_ = c.Disconnect()
			}
			b.ReportMetric(float64(records*b.N)/total.Seconds(), "msg/s")
		})
	}
}

// BenchmarkReplayThroughputRawClient is BenchmarkReplayThroughput with a minimal MQTT 5
// client (buffered reads, PUBACKs batched per read) so that the server, not the client's
// packet decoding, is what is measured.
func BenchmarkReplayThroughputRawClient(b *testing.B) {
	const records = 200000
	e := newReplayEnv(b, replayEnvOptions{noSync: true}, streamDef("bench", 4, "topic", "bench/#"))
	e.fill(b, benchMessages(records))
	for _, qos := range []byte{1, 0} {
		b.Run(fmt.Sprintf("qos%d-rm100", qos), func(b *testing.B) {
			var total time.Duration
			for i := 0; i < b.N; i++ {
				conn := rawSubscriber(b, e.addr, fmt.Sprintf("raw-%d-%d", qos, i), 100, qos)
				start := time.Now()
				if err := rawConsume(conn, records); err != nil {
					b.Fatal(err)
				}
				total += time.Since(start)
				_ = conn.Close()
			}
			b.ReportMetric(float64(records*b.N)/total.Seconds(), "msg/s")
		})
	}
}

// rawConsume reads until n PUBLISH packets arrived, acknowledging QoS 1 ones.
func rawConsume(conn net.Conn, n int) error {
	r := bufio.NewReaderSize(conn, 256<<10)
	w := bufio.NewWriterSize(conn, 16<<10)
	body := make([]byte, 0, 4096)
	for got := 0; got < n; {
		h, err := r.ReadByte()
		if err != nil {
			return err
		}
		var rem, mul int
		for mul = 1; ; mul *= 128 {
			c, err := r.ReadByte()
			if err != nil {
				return err
			}
			rem += int(c&127) * mul
			if c < 128 {
				break
			}
		}
		if cap(body) < rem {
			body = make([]byte, rem)
		}
		body = body[:rem]
		if _, err := io.ReadFull(r, body); err != nil {
			return err
		}
		if h>>4 != packets.Publish {
			continue
		}
		got++
		if (h>>1)&3 == 1 {
			tl := int(body[0])<<8 | int(body[1])
			w.Write([]byte{packets.Puback << 4, 2, body[2+tl], body[3+tl]})
		}
		if r.Buffered() == 0 && w.Buffered() > 0 {
			if err := w.Flush(); err != nil {
				return err
			}
		}
	}
	return w.Flush()
}

// rawSubscriber connects with MQTT 5 and the given receive maximum and subscribes to
// $stream/bench from the earliest record; it returns once the SUBACK is read.
func rawSubscriber(tb testing.TB, addr, id string, rm uint16, qos byte) net.Conn {
	tb.Helper()
	conn := writeConnectSubscribe(tb, addr, id, rm, "$stream/bench", qos)
	// CONNACK and SUBACK are small; read them byte-exactly so no PUBLISH is consumed.
	for i := 0; i < 2; i++ {
		var hdr [2]byte
		if _, err := io.ReadFull(conn, hdr[:]); err != nil {
			tb.Fatal(err)
		}
		if hdr[1] >= 128 {
			tb.Fatalf("unexpected long packet %x", hdr)
		}
		rest := make([]byte, hdr[1])
		if _, err := io.ReadFull(conn, rest); err != nil {
			tb.Fatal(err)
		}
	}
	return conn
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
			waitFor(b, id+" window full", func() bool {
				_, inflight, _ := e.sessionState(id)
				s := e.hook.session(id)
				return inflight == 100 && s != nil && s.parked.Load() == 4
			})
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
	return writeConnectSubscribe(tb, addr, id, 100, "$stream/mem", 1)
}

// writeConnectSubscribe sends CONNECT and a SUBSCRIBE with stream-offset earliest.
func writeConnectSubscribe(tb testing.TB, addr, id string, rm uint16, filter string, qos byte) net.Conn {
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
		Properties: packets.Properties{ReceiveMaximum: rm},
	}
	if err := connect.ConnectEncode(&buf); err != nil {
		tb.Fatal(err)
	}
	sub := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Subscribe, Qos: 1},
		ProtocolVersion: 5,
		PacketID:        1,
		Filters:         packets.Subscriptions{{Filter: filter, Qos: qos}},
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
