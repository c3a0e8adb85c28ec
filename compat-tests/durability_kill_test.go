package compattests

import (
	"fmt"
	"sync/atomic"
	"testing"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// TestKillKeepsAckedBothDurabilities kills the server with SIGKILL while a QoS 1
// publisher is busy, at two points, under `durability: fsync` and under `durability:
// write` with an hour between fsyncs (so nothing acknowledged was fsynced): after each
// restart every publish that got its PUBACK is in the stream, in order. A process crash
// loses nothing in either mode: `write` data is in the operating system's page cache.
func TestKillKeepsAckedBothDurabilities(t *testing.T) {
	for _, mode := range []string{"fsync", "write"} {
		t.Run(mode, func(t *testing.T) {
			srv := StartServer(t, ServerOptions{Config: fmt.Sprintf("durability: %s\nsync_interval: 1h\n", mode)})
			total := 0
			for round, killAfter := range []int64{30, 700} {
				prefix := fmt.Sprintf("r%d-", round)
				opts := paho.NewClientOptions().AddBroker("tcp://" + srv.MQTTAddr).SetClientID(fmt.Sprintf("busy-%d", round)).
					SetConnectTimeout(startTimeout).SetAutoReconnect(false)
				c := paho.NewClient(opts)
				if tok := c.Connect(); !tok.WaitTimeout(startTimeout) || tok.Error() != nil {
					t.Fatalf("connect: %v", tok.Error())
				}
				var acked atomic.Int64
				enough := make(chan struct{})
				done := make(chan struct{})
				go func() {
					defer close(done)
					for i := 0; ; i++ {
						tok := c.Publish("busy/t", 1, false, fmt.Sprintf("%sm-%06d", prefix, i))
						if !tok.WaitTimeout(startTimeout) || tok.Error() != nil {
							return // the server went away: this one may or may not be stored
						}
						if acked.Add(1) == killAfter {
							close(enough)
						}
					}
				}()
				select {
				case <-enough:
				case <-done:
					t.Fatalf("publisher stopped after %d acks", acked.Load())
				}
				srv.KillRestart(t)
				<-done
				c.Disconnect(0)
				n := int(acked.Load())
				total += n
				t.Logf("round %d: %d publishes acknowledged before kill -9", round, n)

				got := consume(t, srv.KafkaAddr, "mqtt", total)
				var mine []string
				for _, r := range got {
					if len(r.value) > len(prefix) && r.value[:len(prefix)] == prefix {
						mine = append(mine, r.value)
					}
				}
				if len(mine) < n {
					t.Fatalf("round %d: %d of %d acknowledged publishes stored", round, len(mine), n)
				}
				for i := 0; i < n; i++ {
					if want := fmt.Sprintf("%sm-%06d", prefix, i); mine[i] != want {
						t.Fatalf("round %d: record %d = %q, want %q (acknowledged publish lost or reordered)", round, i, mine[i], want)
					}
				}
				total = len(got)
			}
		})
	}
}
