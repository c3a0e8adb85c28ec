package mqtt

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/log"
)

// TestConnackCapabilities: an MQTT 5 CONNACK advertises the configured limits, and the
// filters switched off are refused with their MQTT 5 reason codes (paho.golang).
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
			conn, err := net.Dial("tcp", srv.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			c := paho.NewClient(paho.ClientConfig{Conn: conn})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ca, err := c.Connect(ctx, &paho.Connect{ClientID: "caps-" + tc.name, CleanStart: true, KeepAlive: 30})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Disconnect(&paho.Disconnect{})
			p := ca.Properties
			if p.MaximumPacketSize == nil || *p.MaximumPacketSize != 4096 {
				t.Errorf("maximum packet size %v, want 4096", p.MaximumPacketSize)
			}
			if p.ReceiveMaximum == nil || *p.ReceiveMaximum != caps.ReceiveMaximum {
				t.Errorf("receive maximum %v, want %d", p.ReceiveMaximum, caps.ReceiveMaximum)
			}
			if caps.TopicAliasMaximum > 0 && (p.TopicAliasMaximum == nil || *p.TopicAliasMaximum != caps.TopicAliasMaximum) {
				t.Errorf("topic alias maximum %v, want %d", p.TopicAliasMaximum, caps.TopicAliasMaximum)
			}
			if caps.TopicAliasMaximum == 0 && p.TopicAliasMaximum != nil && *p.TopicAliasMaximum != 0 {
				t.Errorf("topic alias maximum %d advertised, want none", *p.TopicAliasMaximum)
			}
			wantQoS := caps.MaximumQoS
			if got := byte(2); p.MaximumQoS != nil {
				got = *p.MaximumQoS
				if got != wantQoS {
					t.Errorf("maximum QoS %d, want %d", got, wantQoS)
				}
			} else if wantQoS != 2 {
				t.Errorf("maximum QoS not advertised, want %d", wantQoS)
			}
			if p.RetainAvailable != caps.RetainAvailable || p.WildcardSubAvailable != caps.WildcardSubscriptions || p.SharedSubAvailable != caps.SharedSubscriptions {
				t.Errorf("retain %v wildcard %v shared %v, want %v %v %v", p.RetainAvailable, p.WildcardSubAvailable, p.SharedSubAvailable,
					caps.RetainAvailable, caps.WildcardSubscriptions, caps.SharedSubscriptions)
			}
			// paho.golang itself refuses what the CONNACK says is off: ask with a raw client.
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
