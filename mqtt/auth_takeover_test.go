package mqtt

import (
	"io"
	"log/slog"
	"net"
	"testing"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// TestAuthTakeoverDeliveries: mochi logs a reconnecting client in before it swaps the
// session over, and a publish fanned out in between goes to the session being taken
// over, whose queue the new connection inherits. That delivery is authorized (it was
// refused, and the QoS 1 message lost, for a persistent session reconnecting after a
// restart while a publish arrived: TestBrokerStateSurvivesKill); once the swap is done
// the old object is not.
func TestAuthTakeoverDeliveries(t *testing.T) {
	e := newAuthEnv(t, authEnvOptions{})
	h := newAuthHook(e.store, nil, prometheus.NewCounter(prometheus.CounterOpts{Name: "failures"}), zerolog.Nop())
	broker := mochi.New(&mochi.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	login := func(cl *mochi.Client) {
		t.Helper()
		pk := packets.Packet{Connect: packets.ConnectParams{ClientIdentifier: cl.ID,
			UsernameFlag: true, Username: []byte("bob"), PasswordFlag: true, Password: []byte(testPassword)}}
		if !h.OnConnectAuthenticate(cl, pk) {
			t.Fatal("bob's login refused")
		}
	}
	conn := func() net.Conn {
		a, b := net.Pipe()
		t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
		return a
	}
	const topic = "plant/x" // bob subscribes to #

	// A persistent session restored from the store after a restart: no connection.
	restored := broker.NewClient(nil, "t", "dev", false)
	restored.Properties.Username = []byte("bob")
	h.principal(restored) // as the store hook's onRestored does
	if !h.OnACLCheck(restored, topic, false) {
		t.Fatal("delivery to bob's restored offline session refused")
	}
	first := broker.NewClient(conn(), "t", "dev", false)
	login(first)
	if !h.OnACLCheck(restored, topic, false) {
		t.Fatal("delivery to the restored session being taken over refused between the login and the swap")
	}
	if !h.OnACLCheck(first, topic, false) {
		t.Fatal("delivery to the new connection refused")
	}
	h.OnSessionEstablished(first, packets.Packet{})
	if h.OnACLCheck(restored, topic, false) {
		t.Fatal("the restored session object is still authorized after the swap")
	}

	// The same for a connection taken over by a newer one.
	second := broker.NewClient(conn(), "t", "dev", false)
	login(second)
	if !h.OnACLCheck(first, topic, false) {
		t.Fatal("delivery to the connection being taken over refused between the login and the swap")
	}
	h.OnSessionEstablished(second, packets.Packet{})
	if h.OnACLCheck(first, topic, false) || !h.OnACLCheck(second, topic, false) {
		t.Fatal("after the swap only the new connection may read")
	}
}
