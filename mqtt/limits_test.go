package mqtt

import (
	"context"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/log"
	"github.com/mqstreams/mqstreams/mqtt/mqtttest"
)

// TestConnackCapabilities: an MQTT 5 CONNACK advertises the configured limits, and the
// filters switched off are refused with their MQTT 5 reason codes.
func TestConnackCapabilities(t *testing.T) {
	tests := []struct {
		name string
		caps Capabilities
	}{
		{"defaults", DefaultCapabilities()},
		{"restricted", Capabilities{ReceiveMaximum: 10, TopicAliasMaximum: 0, MaximumQoS: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, cat := openStreams(t, log.Options{Dir: t.TempDir(), Logger: zerolog.Nop()}, nil)
			defer l.Close()
			caps := tc.caps
			srv, err := New(Options{Config: Config{Addr: "127.0.0.1:0", MaxPacketBytes: 4096, Capabilities: &caps}, Log: l, Catalog: cat, Logger: zerolog.Nop()})
			if err != nil {
				t.Fatal(err)
			}
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, err := mqtttest.Dial(ctx, srv.Addr().String(), mqtttest.Options{ClientID: "caps-" + tc.name, CleanStart: true, KeepAlive: 30})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Disconnect()
			p := c.Connack().Properties
			if p.MaximumPacketSize != 4096 {
				t.Errorf("maximum packet size %v, want 4096", p.MaximumPacketSize)
			}
			if p.ReceiveMaximum != caps.ReceiveMaximum {
				t.Errorf("receive maximum %v, want %d", p.ReceiveMaximum, caps.ReceiveMaximum)
			}
			if p.TopicAliasMaximum != caps.TopicAliasMaximum { // absent is 0: none
				t.Errorf("topic alias maximum %v, want %d", p.TopicAliasMaximum, caps.TopicAliasMaximum)
			}
			wantQoS := caps.MaximumQoS
			if got := byte(2); p.MaximumQosFlag {
				got = p.MaximumQos
				if got != wantQoS {
					t.Errorf("maximum QoS %d, want %d", got, wantQoS)
				}
			} else if wantQoS != 2 {
				t.Errorf("maximum QoS not advertised, want %d", wantQoS)
			}
			// Absent means available.
			avail := func(flag bool, v byte) bool { return !flag || v == 1 }
			retain, wildcard, shared := avail(p.RetainAvailableFlag, p.RetainAvailable), avail(p.WildcardSubAvailableFlag, p.WildcardSubAvailable), avail(p.SharedSubAvailableFlag, p.SharedSubAvailable)
			if retain != caps.RetainAvailable || wildcard != caps.WildcardSubscriptions || shared != caps.SharedSubscriptions {
				t.Errorf("retain %v wildcard %v shared %v, want %v %v %v", retain, wildcard, shared,
					caps.RetainAvailable, caps.WildcardSubscriptions, caps.SharedSubscriptions)
			}
			// Ask for what the CONNACK says is off, as a client ignoring it would.
			rc, _ := dialRaw(t, srv.Addr().String(), "raw-"+tc.name, 5, true)
			rc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 7,
				Filters: packets.Subscriptions{{Filter: "a/+", Qos: 1}, {Filter: "$share/g/a/b", Qos: 1}, {Filter: "a/b", Qos: 1}}})
			sa := rc.expect(packets.Suback, 7)
			want := []byte{1, 1, 1}
			if !caps.WildcardSubscriptions {
				want[0] = 0xA2
			}
			if !caps.SharedSubscriptions {
				want[1] = 0x9E
			}
			if string(sa.ReasonCodes) != string(want) {
				t.Errorf("suback reasons %v, want %v", sa.ReasonCodes, want)
			}
		})
	}
}
