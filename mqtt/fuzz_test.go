package mqtt

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/mqstreams/mqstreams/mapping"
)

// fuzzConnectV5 and fuzzConnectV4 are CONNECT packets (clean start, keep-alive 60 s, client id "fz").
var (
	fuzzConnectV5 = []byte{0x10, 15, 0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 60, 0, 0, 2, 'f', 'z'}
	fuzzConnectV4 = []byte{0x10, 14, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, 2, 'f', 'z'}
)

// FuzzConnection sends arbitrary bytes to a real broker — after a valid CONNECT when
// the first input byte is odd — through mochi's packet decoder and every hook of ours
// (auth, limits and timeouts, slow clients, replay, ingest). The broker must answer or
// close the connection, never panic, and keep serving a normal client afterwards.
func FuzzConnection(f *testing.F) {
	env := newEnv(f, envOptions{noSync: true, maxPacketBytes: 64 << 10},
		mapping.Definition{Name: "plant", Filters: []string{"plant/#"}, Shards: 2, Key: "clientid"})
	seeds := [][]byte{
		{1, 0x32, 9, 0, 3, 'p', '/', 'x', 0, 1, 0, 'v'},                                           // v5 QoS 1 publish
		{1, 0x32, 17, 0, 12, '$', 's', 't', 'r', 'e', 'a', 'm', '/', 'p', 'l', 'a', 'n', 0, 1, 0}, // $stream publish
		{1, 0x82, 19, 0, 1, 0, 0, 14, '$', 's', 't', 'r', 'e', 'a', 'm', '/', 'p', 'l', 'a', 'n', 't', 1},
		{0, 0x10, 0xff, 0xff, 0xff, 0x7f},             // CONNECT announcing 256 MiB
		{0, 0x10, 0x80, 0x80, 0x04, 0, 4, 'M', 'Q'},   // partial CONNECT over max_connect_bytes
		{1, 0x30, 0x80, 0x80, 0x80, 0x80, 0x01},       // five-byte remaining length
		{1, 0xe0, 0},                                  // DISCONNECT
		{1, 0x62, 3, 0, 1, 0},                         // PUBREL with a reason
		{1, 0x34, 8, 0, 3, 'a', '/', 'b', 0, 1, 0xff}, // QoS 2 with bad properties
		{0, 0x20, 2, 0, 0},                            // CONNACK from a client
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		c, err := net.DialTimeout("tcp", env.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(300 * time.Millisecond))
		if data[0]&1 == 1 {
			hello := fuzzConnectV4
			if data[0]&2 == 0 {
				hello = fuzzConnectV5
			}
			if _, err := c.Write(hello); err != nil {
				return
			}
		}
		_, _ = c.Write(data[1:])
		_, _ = io.Copy(io.Discard, c) // until the broker closes or the deadline
		c.Close()

		// A normal client is still served.
		n, err := net.DialTimeout("tcp", env.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		_ = n.SetDeadline(time.Now().Add(10 * time.Second))
		hello := append([]byte(nil), fuzzConnectV4...)
		hello[len(hello)-1] = 'n' // client id "fn"
		if _, err := n.Write(hello); err != nil {
			t.Fatal(err)
		}
		ack := make([]byte, 4)
		if _, err := io.ReadFull(n, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
			t.Fatalf("normal client after fuzz input: CONNACK %x, %v", ack, err)
		}
	})
}
