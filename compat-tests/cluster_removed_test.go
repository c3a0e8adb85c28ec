package compattests

// What a node removed from a real cluster tells its clients and operators (issue 13):
// it logs that it was removed and should be stopped, /readyz answers 503 "removed from
// the cluster", `mqstreams cluster status` against it says REMOVED, and an MQTT 5
// publisher (paho.golang) is disconnected with "Use another server" (0x9C) instead of
// being left waiting.

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

func checkRemovedNode(t *testing.T, srv *Server, topic string) {
	t.Helper()
	srv.WaitLog(t, "this node was removed from the cluster")
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := srv.HTTPGet(t, "/readyz")
		if code == 503 && strings.Contains(body, "removed from the cluster") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz of the removed node: %d %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, code := RunBinary(t, 30*time.Second, "cluster", "status", "--server", "http://"+srv.HTTPAddr)
	if code != 0 || !strings.Contains(out, "was REMOVED from the cluster") {
		t.Fatalf("cluster status of the removed node (exit %d):\n%s", code, out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	conn, err := net.DialTimeout("tcp", srv.MQTTAddr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	disc := make(chan *paho.Disconnect, 1)
	// PacketTimeout: paho waits 10 s for the CONNACK by default, short for a loaded machine.
	c := paho.NewClient(paho.ClientConfig{Conn: conn, ClientID: "to-removed", PacketTimeout: startTimeout,
		OnServerDisconnect: func(d *paho.Disconnect) { disc <- d }, OnClientError: func(error) {}})
	if ca, err := c.Connect(ctx, &paho.Connect{ClientID: "to-removed", CleanStart: true, KeepAlive: 30}); err != nil || ca.ReasonCode != 0 {
		t.Fatalf("connect to the removed node: %v %+v", err, ca)
	}
	go func() { _, _ = c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte("x")}) }()
	select {
	case d := <-disc:
		if d.ReasonCode != 0x9C {
			t.Fatalf("DISCONNECT reason %#x, want 0x9C (use another server)", d.ReasonCode)
		}
		if d.Properties == nil || !strings.Contains(d.Properties.ReasonString, "removed from the cluster") {
			t.Fatalf("DISCONNECT reason string: %+v", d.Properties)
		}
	case <-ctx.Done():
		t.Fatal("the removed node neither stored nor refused a QoS 1 publish")
	}
}
