package mqtt

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestSubackBeforeFirstReplayed: while live QoS 0 traffic keeps mochi's output queue
// for the client busy (so its SUBACK may wait in mochi's buffer), a `$stream`
// subscription's SUBACK still reaches the client before any replayed message.
func TestSubackBeforeFirstReplayed(t *testing.T) {
	e := newReplayEnv(t, replayEnvOptions{noSync: true}, streamDef("s", 2, "topic", "s/#"))
	e.fill(t, testMessages(400, "s/%d"))

	pub, _ := dialRaw(t, e.addr, "order-pub", 5, true)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			var burst []packets.Packet
			for i := 0; i < 50; i++ {
				burst = append(burst, publishPacket("live/x", 0, 0, "live"))
			}
			pub.send(burst...)
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	for round := 0; round < 10; round++ {
		sub, _ := dialRaw(t, e.addr, fmt.Sprintf("order-sub-%d", round), 5, true)
		sub.send(packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1},
			PacketID:    1,
			Filters:     packets.Subscriptions{{Filter: "live/#", Qos: 0}},
		})
		// Live publishes may come before this SUBACK: MQTT allows it.
		for pk := sub.read(); pk.FixedHeader.Type != packets.Suback || pk.PacketID != 1; pk = sub.read() {
		}
		sub.send(packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1},
			PacketID:    2,
			Filters:     packets.Subscriptions{{Filter: "$stream/s/#", Qos: 0}},
			Properties:  packets.Properties{User: []packets.UserProperty{{Key: StreamOffsetProperty, Val: "earliest"}}},
		})
		for {
			pk := sub.read()
			if pk.FixedHeader.Type == packets.Suback && pk.PacketID == 2 {
				break
			}
			if pk.FixedHeader.Type == packets.Publish && strings.HasPrefix(pk.TopicName, "s/") {
				t.Fatalf("round %d: replayed %s arrived before the SUBACK", round, pk.TopicName)
			}
		}
		if err := sub.conn.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
