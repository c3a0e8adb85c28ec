package mqtt

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/log"
	"github.com/mqstreams/mqstreams/mapping"
	"github.com/mqstreams/mqstreams/mqtt/mqtttest"
)

// testEnv is a real server on 127.0.0.1:0 over a real log in a temp dir.
type testEnv struct {
	srv    *Server
	log    *log.Log
	router *mapping.Router
	reg    *prometheus.Registry
	addr   string
}

type envOptions struct {
	noSync         bool
	maxPacketBytes int
	dir            string
	observer       log.Observer
	queueBytes     int64
	// connectTimeout and packetTimeout shorten the timeouts (0: defaults).
	connectTimeout, packetTimeout time.Duration
	// hooks are extra mochi hooks, placed before the ingest hook (Options.Hooks).
	hooks []mochi.Hook
}

// syncCounter observes the log's synced commits, for benchmarks to report.
type syncCounter struct {
	syncs atomic.Int64
	nanos atomic.Int64
}

func (s *syncCounter) ObserveAppend(string, int, int, time.Duration) {}
func (s *syncCounter) ObserveSync(d time.Duration) {
	s.syncs.Add(1)
	s.nanos.Add(int64(d))
}

func newEnv(tb testing.TB, o envOptions, defs ...mapping.Definition) *testEnv {
	tb.Helper()
	if o.dir == "" {
		o.dir = tb.TempDir()
	}
	l, cat := openStreams(tb, log.Options{Dir: o.dir, Logger: zerolog.Nop(), NoSync: o.noSync, Observer: o.observer, QueueBytes: o.queueBytes}, defs)
	reg := prometheus.NewRegistry()
	srv, err := New(Options{
		Config:     Config{Addr: "127.0.0.1:0", MaxPacketBytes: o.maxPacketBytes, ConnectTimeout: o.connectTimeout, PacketTimeout: o.packetTimeout},
		Log:        l,
		Catalog:    cat,
		Logger:     zerolog.Nop(),
		Registerer: reg,
		Hooks:      o.hooks,
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		tb.Fatal(err)
	}
	e := &testEnv{srv: srv, log: l, router: cat.Router(), reg: reg, addr: srv.Addr().String()}
	tb.Cleanup(func() {
		if err := srv.Close(); err != nil {
			tb.Error(err)
		}
		_ = l.Close() // tests may have closed it already
	})
	return e
}

// records returns every stored record of a stream shard.
func (e *testEnv) records(tb testing.TB, stream string, shard int32) []log.StoredRecord {
	tb.Helper()
	s := e.log.Stream(stream)
	if s == nil {
		tb.Fatalf("no stream %s", stream)
	}
	return readAll(tb, s, shard)
}

// openStreams opens a log with the given streams (created or updated) and a catalog
// over every stream in it, those of an earlier run of the same data dir included.
func openStreams(tb testing.TB, o log.Options, defs []mapping.Definition) (*log.Log, *mapping.Catalog) {
	tb.Helper()
	l, err := log.Open(o)
	if err != nil {
		tb.Fatal(err)
	}
	for i := range defs {
		if err := defs[i].Validate(); err != nil {
			tb.Fatal(err)
		}
		if _, err := l.EnsureStream(defs[i].Spec()); err != nil {
			tb.Fatal(err)
		}
	}
	cat, err := mapping.OpenCatalog(l)
	if err != nil {
		tb.Fatal(err)
	}
	return l, cat
}

// readAll returns every stored record of a stream shard, reading batch by batch.
func readAll(tb testing.TB, st *log.Stream, shard int32) []log.StoredRecord {
	tb.Helper()
	start, hwm, err := st.Offsets(shard)
	if err != nil {
		tb.Fatal(err)
	}
	var out []log.StoredRecord
	for off := start; off < hwm; {
		bs, err := st.Read(shard, off, 1<<20)
		if err != nil {
			tb.Fatal(err)
		}
		if len(bs) == 0 {
			tb.Fatalf("read %s/%d at %d below hwm %d returned nothing", st.Name(), shard, off, hwm)
		}
		for _, b := range bs {
			recs, err := b.Records(off)
			if err != nil {
				tb.Fatal(err)
			}
			out = append(out, recs...)
			off = b.LastOffset + 1
		}
	}
	return out
}

// waitRecords waits until the shard holds at least n records (for QoS 0, which nobody
// waits on) and returns them.
func (e *testEnv) waitRecords(tb testing.TB, stream string, shard int32, n int) []log.StoredRecord {
	tb.Helper()
	s := e.log.Stream(stream)
	deadline := time.Now().Add(20 * time.Second)
	for {
		ch, err := s.Appended(shard)
		if err != nil {
			tb.Fatal(err)
		}
		if _, hwm, _ := s.Offsets(shard); hwm >= int64(n) {
			return e.records(tb, stream, shard)
		}
		select {
		case <-ch:
		case <-time.After(time.Until(deadline)):
			tb.Fatalf("stream %s/%d: fewer than %d records before the deadline", stream, shard, n)
		}
	}
}

func header(r log.StoredRecord, key string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// checkContiguous fails unless offsets run from 0 without gaps.
func checkContiguous(tb testing.TB, recs []log.StoredRecord) {
	tb.Helper()
	for i, r := range recs {
		if r.Offset != int64(i) {
			tb.Fatalf("record %d has offset %d", i, r.Offset)
		}
	}
}

// rawClient speaks MQTT with hand-encoded packets (mochi's packets package), for the
// cases a client library hides: redelivery, exact ack order, missing acks.
type rawClient struct {
	tb      testing.TB
	conn    net.Conn
	r       *bufio.Reader
	version byte
}

func dialRaw(tb testing.TB, addr, clientID string, version byte, clean bool) (*rawClient, packets.Packet) {
	tb.Helper()
	name := "MQTT"
	if version == 3 {
		name = "MQIsdp"
	}
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: version,
		Connect: packets.ConnectParams{
			ProtocolName:     []byte(name),
			Clean:            clean,
			ClientIdentifier: clientID,
			Keepalive:        60,
		},
	}
	if version == 5 && !clean {
		pk.Properties.SessionExpiryInterval = 3600
		pk.Properties.SessionExpiryIntervalFlag = true
	}
	return dialConnect(tb, addr, pk)
}

// dialConnect connects a raw client with the CONNECT pk and checks it is accepted.
func dialConnect(tb testing.TB, addr string, pk packets.Packet) (*rawClient, packets.Packet) {
	tb.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	c := &rawClient{tb: tb, conn: conn, r: bufio.NewReaderSize(conn, 64<<10), version: pk.ProtocolVersion}
	tb.Cleanup(func() { _ = conn.Close() })
	c.send(pk)
	ack := c.read()
	if ack.FixedHeader.Type != packets.Connack || ack.ReasonCode != 0 {
		tb.Fatalf("connect: got packet type %d reason %#x", ack.FixedHeader.Type, ack.ReasonCode)
	}
	return c, ack
}

func (c *rawClient) encode(pk packets.Packet) []byte {
	pk.ProtocolVersion = c.version
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&buf)
	case packets.Publish:
		err = pk.PublishEncode(&buf)
	case packets.Pubrel:
		pk.FixedHeader.Qos = 1
		err = pk.PubrelEncode(&buf)
	case packets.Pingreq:
		err = pk.PingreqEncode(&buf)
	case packets.Subscribe:
		err = pk.SubscribeEncode(&buf)
	case packets.Disconnect:
		err = pk.DisconnectEncode(&buf)
	default:
		err = fmt.Errorf("test client cannot encode type %d", pk.FixedHeader.Type)
	}
	if err != nil {
		c.tb.Fatal(err)
	}
	return buf.Bytes()
}

func (c *rawClient) send(pks ...packets.Packet) {
	c.tb.Helper()
	var all []byte
	for _, pk := range pks {
		all = append(all, c.encode(pk)...)
	}
	if _, err := c.conn.Write(all); err != nil {
		c.tb.Fatal(err)
	}
}

// readPacket reads one packet; err is the connection's error (EOF when the server closed).
func (c *rawClient) readPacket() (packets.Packet, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	return mqtttest.ReadPacket(c.r, c.version, 0)
}

func (c *rawClient) read() packets.Packet {
	c.tb.Helper()
	pk, err := c.readPacket()
	if err != nil {
		c.tb.Fatalf("read: %v", err)
	}
	return pk
}

// expect reads one packet and checks its type and packet id.
func (c *rawClient) expect(typ byte, id uint16) packets.Packet {
	c.tb.Helper()
	pk := c.read()
	if pk.FixedHeader.Type != typ || pk.PacketID != id {
		c.tb.Fatalf("got packet type %d id %d reason %#x, want type %d id %d", pk.FixedHeader.Type, pk.PacketID, pk.ReasonCode, typ, id)
	}
	return pk
}

// until reads packets up to one of type typ and id id, allowing repeated PUBRECs for id
// (a resumed session resends its inflight PUBREC).
func (c *rawClient) until(typ byte, id uint16) packets.Packet {
	c.tb.Helper()
	for {
		pk := c.read()
		if pk.FixedHeader.Type == typ && pk.PacketID == id {
			return pk
		}
		if pk.FixedHeader.Type != packets.Pubrec || pk.PacketID != id {
			c.tb.Fatalf("got packet type %d id %d while waiting for type %d id %d", pk.FixedHeader.Type, pk.PacketID, typ, id)
		}
	}
}

func publishPacket(topic string, qos byte, id uint16, payload string) packets.Packet {
	return packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos},
		TopicName:   topic,
		PacketID:    id,
		Payload:     []byte(payload),
	}
}

func pubrelPacket(id uint16) packets.Packet {
	return packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, PacketID: id}
}
