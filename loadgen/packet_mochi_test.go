package loadgen

// The generator's own codec (packet.go) stays standard-library only and allocation
// free, so it is not shared with the test client of mqtt/mqtttest. It is checked here
// against mochi's packets package, the broker's codec: what it writes mochi decodes to
// the same fields, and what mochi writes it reads.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// mochiDecode splits one packet written by the generator and decodes it with mochi.
func mochiDecode(t *testing.T, version byte, b []byte) packets.Packet {
	t.Helper()
	r := bytes.NewReader(b)
	hb, _ := r.ReadByte()
	var pk packets.Packet
	if err := pk.FixedHeader.Decode(hb); err != nil {
		t.Fatal(err)
	}
	n, _, err := packets.DecodeLength(r)
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil || r.Len() != 0 {
		t.Fatalf("remaining length %d: %v, %d bytes left over", n, err, r.Len())
	}
	pk.ProtocolVersion = version
	pk.FixedHeader.Remaining = n
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectDecode(body)
	case packets.Publish:
		err = pk.PublishDecode(body)
	case packets.Subscribe:
		err = pk.SubscribeDecode(body)
	case packets.Puback, packets.Pubrec, packets.Pubrel, packets.Pubcomp:
		err = pk.PubackDecode(body)
	default:
		t.Fatalf("unexpected type %d", pk.FixedHeader.Type)
	}
	if err != nil {
		t.Fatalf("mochi cannot decode %s: %v", packets.PacketNames[pk.FixedHeader.Type], err)
	}
	return pk
}

func written(write func(w *bufio.Writer)) []byte {
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	write(w)
	_ = w.Flush()
	return buf.Bytes()
}

func TestCodecAgainstMochi(t *testing.T) {
	for _, v := range []byte{V311, V5} {
		t.Run(fmt.Sprint("v", v), func(t *testing.T) {
			pk := mochiDecode(t, v, written(func(w *bufio.Writer) { writeConnect(w, v, "gen-1", "user", "pw", 30, 100) }))
			if pk.Connect.ClientIdentifier != "gen-1" || string(pk.Connect.Username) != "user" || string(pk.Connect.Password) != "pw" ||
				!pk.Connect.Clean || pk.Connect.Keepalive != 30 || pk.ProtocolVersion != v {
				t.Fatalf("CONNECT decoded as %+v", pk.Connect)
			}
			if v == V5 && pk.Properties.ReceiveMaximum != 100 {
				t.Fatalf("receive maximum %d", pk.Properties.ReceiveMaximum)
			}
			for qos := byte(0); qos <= 2; qos++ {
				pk = mochiDecode(t, v, written(func(w *bufio.Writer) { writePublish(w, v, qos, []byte("a/b"), 9, []byte("payload")) }))
				if pk.TopicName != "a/b" || string(pk.Payload) != "payload" || pk.FixedHeader.Qos != qos || (qos > 0 && pk.PacketID != 9) {
					t.Fatalf("PUBLISH qos %d decoded as %s %q qos %d id %d", qos, pk.TopicName, pk.Payload, pk.FixedHeader.Qos, pk.PacketID)
				}
			}
			pk = mochiDecode(t, v, written(func(w *bufio.Writer) {
				writeSubscribe(w, v, 3, "$stream/s", 1, []userProp{{"stream-offset", "earliest"}})
			}))
			if pk.PacketID != 3 || len(pk.Filters) != 1 || pk.Filters[0].Filter != "$stream/s" || pk.Filters[0].Qos != 1 {
				t.Fatalf("SUBSCRIBE decoded as %+v", pk.Filters)
			}
			if v == V5 && (len(pk.Properties.User) != 1 || pk.Properties.User[0] != (packets.UserProperty{Key: "stream-offset", Val: "earliest"})) {
				t.Fatalf("SUBSCRIBE properties %+v", pk.Properties.User)
			}
			for _, typ := range []byte{pktPuback, pktPubrec, pktPubrel, pktPubcomp} {
				if pk = mochiDecode(t, v, written(func(w *bufio.Writer) { writeIDPacket(w, typ, 65535) })); pk.PacketID != 65535 {
					t.Fatalf("type %d: id %d", typ, pk.PacketID)
				}
			}

			// What mochi writes, the generator reads.
			ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ProtocolVersion: v, ReasonCode: 0}
			ack.Properties.ReceiveMaximum = 20
			ack.Properties.ReasonString = "fine"
			ack.Properties.User = []packets.UserProperty{{Key: "k", Val: "v"}}
			ack.Properties.MaximumPacketSize = 1 << 20
			ack.Properties.TopicAliasMaximum = 5
			var buf bytes.Buffer
			if err := ack.ConnackEncode(&buf); err != nil {
				t.Fatal(err)
			}
			r := bufio.NewReader(&buf)
			_, body, _, err := readPacket(r, nil)
			if err != nil {
				t.Fatal(err)
			}
			res, err := parseConnack(v, body)
			want := connackResult{}
			if v == V5 {
				want.receiveMax = 20
			}
			if err != nil || res != want {
				t.Fatalf("CONNACK read as %+v %v, want %+v", res, err, want)
			}
			pub := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, ProtocolVersion: v,
				TopicName: "x/y", PacketID: 7, Payload: []byte("from mochi")}
			pub.Properties.User = []packets.UserProperty{{Key: "offset", Val: "12"}}
			pub.Properties.ContentType = "text/plain"
			buf.Reset()
			if err := pub.PublishEncode(&buf); err != nil {
				t.Fatal(err)
			}
			h, body, _, err := readPacket(bufio.NewReader(&buf), nil)
			if err != nil {
				t.Fatal(err)
			}
			topic, id, payload, err := publishPayload(v, h, body)
			if err != nil || string(topic) != "x/y" || id != 7 || string(payload) != "from mochi" {
				t.Fatalf("PUBLISH read as %q %d %q %v", topic, id, payload, err)
			}
		})
	}
}
