package mqtt

import (
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

func TestWildcardFirst(t *testing.T) {
	for _, c := range []struct {
		filter string
		want   bool
	}{
		{"$share/g/#", true},
		{"$share/g/+/x", true},
		{"$share/g/$SYS/#", false},
		{"$share/g/a/#", false},
		{"$share/g", false},
		{"$share/g/", false},
	} {
		if got := wildcardFirst(c.filter); got != c.want {
			t.Errorf("wildcardFirst(%q) = %v, want %v", c.filter, got, c.want)
		}
	}
}

// TestSharedWildcardSkipsDollarTopics: a `$share/g/#` member gets ordinary topics but
// none of the broker's $SYS topics [MQTT-4.7.2-1], while a shared filter that names
// $SYS itself still gets them.
func TestSharedWildcardSkipsDollarTopics(t *testing.T) {
	e := newReplayEnv(t, replayEnvOptions{noSync: true})
	wild, _ := dialRaw(t, e.addr, "wild", 5, true)
	wild.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
		Filters: packets.Subscriptions{{Filter: "$share/g1/#"}}})
	wild.expect(packets.Suback, 1)
	sys, _ := dialRaw(t, e.addr, "sys", 5, true)
	sys.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
		Filters: packets.Subscriptions{{Filter: "$share/g2/$SYS/#"}}})
	sys.expect(packets.Suback, 1)

	// mochi publishes its $SYS topics every second, to every matching client in one
	// pass: once the $SYS member has one, a wildcard member would have had it queued
	// before the ordinary publish that follows.
	if pk := sys.read(); pk.FixedHeader.Type != packets.Publish || !strings.HasPrefix(pk.TopicName, "$SYS/") {
		t.Fatalf("$SYS member got packet type %d topic %q, want a $SYS publish", pk.FixedHeader.Type, pk.TopicName)
	}
	pub, _ := dialRaw(t, e.addr, "pub", 5, true)
	pub.send(publishPacket("plain/x", 0, 0, "hello"))
	pk := wild.read()
	if pk.FixedHeader.Type != packets.Publish || pk.TopicName != "plain/x" {
		t.Fatalf("wildcard member got packet type %d topic %q first, want plain/x", pk.FixedHeader.Type, pk.TopicName)
	}
}
