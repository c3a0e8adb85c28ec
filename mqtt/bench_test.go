package mqtt

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/log"
	"github.com/mqstreams/mqstreams/mapping"
)

const (
	benchWindow  = 20
	benchTopic   = "plant/dev1/temp"
	benchPayload = 100
)

// BenchmarkPublishQoS1 measures one MQTT publisher keeping 20 QoS 1 publishes in flight,
// each acknowledged only after its durable (fsync) append.
func BenchmarkPublishQoS1(b *testing.B) {
	b.Run("stream-fsync", func(b *testing.B) {
		var sc syncCounter
		e := newEnv(b, envOptions{observer: &sc}, plantStream(4, "clientid"))
		runPublisher(b, e.addr, 4, benchWindow)
		if n := sc.syncs.Load(); n > 0 {
			b.ReportMetric(float64(b.N)/float64(n), "msgs/sync")
			b.ReportMetric(float64(sc.nanos.Load())/float64(n)/1e6, "ms/sync")
		}
	})
	b.Run("stream-nosync", func(b *testing.B) {
		e := newEnv(b, envOptions{noSync: true}, plantStream(4, "clientid"))
		runPublisher(b, e.addr, 4, benchWindow)
	})
	b.Run("stream-fsync-mqtt5", func(b *testing.B) {
		e := newEnv(b, envOptions{}, plantStream(4, "clientid"))
		runPublisher(b, e.addr, 5, benchWindow)
	})
	// With a wider window the same publisher fills each sync with more messages.
	b.Run("stream-fsync-window200", func(b *testing.B) {
		e := newEnv(b, envOptions{}, plantStream(4, "clientid"))
		runPublisher(b, e.addr, 4, 200)
	})
	b.Run("no-stream", func(b *testing.B) {
		e := newEnv(b, envOptions{}, mapping.Definition{Name: "other", Filters: []string{"other/#"}, Shards: 1})
		runPublisher(b, e.addr, 4, benchWindow)
	})
	// The design this package avoids: OnPublish blocks until the append is durable, so
	// mochi's read loop, and with it the publisher's whole window, waits on every fsync.
	b.Run("blocking-hook-fsync", func(b *testing.B) {
		addr := startBlockingBroker(b)
		runPublisher(b, addr, 4, benchWindow)
	})
}

// runPublisher publishes b.N QoS 1 messages keeping inflight in flight and reports msg/s.
func runPublisher(b *testing.B, addr string, version byte, inflight int) {
	c, _ := dialRaw(b, addr, "bench-pub", version, true)
	runPublisherOn(b, c, version, inflight)
}

// runPublisherOn is runPublisher on a connected client.
func runPublisherOn(b *testing.B, c *rawClient, version byte, inflight int) {
	_ = c.conn.SetReadDeadline(time.Time{})
	payload := bytes.Repeat([]byte("x"), benchPayload)

	window := make(chan struct{}, inflight)
	readErr := make(chan error, 1)
	b.ResetTimer()
	start := time.Now()
	go func() {
		for i := 0; i < b.N; i++ {
			pk, err := readAck(c.r)
			if err != nil {
				readErr <- err
				return
			}
			if pk.reason >= 0x80 {
				readErr <- fmt.Errorf("puback reason %#x", pk.reason)
				return
			}
			<-window
		}
		readErr <- nil
	}()
	w := bufio.NewWriterSize(c.conn, 4096)
	var buf []byte
	for i := 0; i < b.N; i++ {
		window <- struct{}{}
		buf = appendPublish(buf[:0], version, benchTopic, uint16(i%65535)+1, payload)
		_, _ = w.Write(buf)
		if len(window) == cap(window) || i == b.N-1 {
			// Like a real client: write as soon as the window allows, coalescing only
			// what is already waiting.
			if err := w.Flush(); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := <-readErr; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msg/s")
}

// appendPublish hand-encodes a QoS 1 PUBLISH.
func appendPublish(dst []byte, version byte, topic string, id uint16, payload []byte) []byte {
	rem := 2 + len(topic) + 2 + len(payload)
	if version == 5 {
		rem++ // empty property length
	}
	dst = append(dst, 0x32)
	for {
		b := byte(rem & 0x7f)
		rem >>= 7
		if rem > 0 {
			b |= 0x80
		}
		dst = append(dst, b)
		if rem == 0 {
			break
		}
	}
	dst = append(dst, byte(len(topic)>>8), byte(len(topic)))
	dst = append(dst, topic...)
	dst = append(dst, byte(id>>8), byte(id))
	if version == 5 {
		dst = append(dst, 0)
	}
	return append(dst, payload...)
}

type ackInfo struct {
	id     uint16
	reason byte
}

// readAck reads one PUBACK without allocating a packet.
func readAck(r *bufio.Reader) (ackInfo, error) {
	h, err := r.ReadByte()
	if err != nil {
		return ackInfo{}, err
	}
	n, _, err := packets.DecodeLength(r)
	if err != nil {
		return ackInfo{}, err
	}
	var body [256]byte
	if n > len(body) {
		return ackInfo{}, fmt.Errorf("unexpected %d byte packet", n)
	}
	if _, err := io.ReadFull(r, body[:n]); err != nil {
		return ackInfo{}, err
	}
	if h>>4 != packets.Puback || n < 2 {
		return ackInfo{}, fmt.Errorf("unexpected packet %#x", h)
	}
	a := ackInfo{id: uint16(body[0])<<8 | uint16(body[1])}
	if n > 2 {
		a.reason = body[2]
	}
	return a, nil
}

// blockingIngest appends in OnPublish and returns only once the append is durable.
type blockingIngest struct {
	mochi.HookBase
	log    *log.Log
	router *mapping.Router
}

func (*blockingIngest) ID() string           { return "blocking-ingest" }
func (*blockingIngest) Provides(b byte) bool { return b == mochi.OnPublish }

func (h *blockingIngest) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	msg := toMessage(cl.ID, string(cl.Properties.Username), &pk, 0)
	for _, t := range h.router.Route(&msg, nil) {
		if _, err := h.log.Stream(t.Stream).Append(t.Shard, []log.Record{t.Record}); err != nil {
			return pk, packets.ErrUnspecifiedError
		}
	}
	return pk, nil
}

func startBlockingBroker(b *testing.B) string {
	l, cat := openStreams(b, log.Options{Dir: b.TempDir(), Logger: zerolog.Nop()}, []mapping.Definition{plantStream(4, "clientid")})
	broker := mochi.New(&mochi.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	_ = broker.AddHook(newAllowAllHook(), nil)
	_ = broker.AddHook(&blockingIngest{log: l, router: cat.Router()}, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	if err := broker.AddListener(listeners.NewNet("bench", ln)); err != nil {
		b.Fatal(err)
	}
	if err := broker.Serve(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = broker.Close()
		_ = l.Close()
	})
	return ln.Addr().String()
}

// BenchmarkMosquittoPub feeds b.N lines to `mosquitto_pub -l -q 1` (its default 20
// messages in flight) against the server, when mosquitto-clients is installed.
func BenchmarkMosquittoPub(b *testing.B) {
	bin, err := exec.LookPath("mosquitto_pub")
	if err != nil {
		b.Skip("mosquitto_pub not installed")
	}
	e := newEnv(b, envOptions{}, plantStream(4, "clientid"))
	host, port, _ := net.SplitHostPort(e.addr)
	line := strings.Repeat("x", benchPayload-1) + "\n"
	input := strings.Repeat(line, b.N)
	cmd := exec.Command(bin, "-h", host, "-p", port, "-q", "1", "-V", "mqttv311", "-i", "mosq-bench", "-t", benchTopic, "-l")
	cmd.Stdin = strings.NewReader(input)
	cmd.Stderr = os.Stderr
	b.ResetTimer()
	start := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msg/s")
	s := e.log.Stream("plant")
	var total int64
	for sh := int32(0); sh < 4; sh++ {
		_, hwm, _ := s.Offsets(sh)
		total += hwm
	}
	if total != int64(b.N) {
		b.Fatalf("stream holds %d records, want %d", total, b.N)
	}
}
