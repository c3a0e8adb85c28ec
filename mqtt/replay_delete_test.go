package mqtt

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// TestReplayStreamDeleted: a client replaying a stream that is deleted is disconnected
// with reason 0x98 rather than left waiting; subscribing again fails in the SUBACK.
func TestReplayStreamDeleted(t *testing.T) {
	e := newReplayEnv(t, replayEnvOptions{noSync: true}, streamDef("gone", 2, "topic", "gone/#"))
	e.fill(t, testMessages(10, "gone/%d"))

	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	disconnected := make(chan byte, 1)
	got := make(chan struct{}, 100)
	c := paho.NewClient(paho.ClientConfig{
		Conn:     conn,
		ClientID: "reader",
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(paho.PublishReceived) (bool, error) {
			got <- struct{}{}
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) { disconnected <- d.ReasonCode },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "reader", CleanStart: true, KeepAlive: 60}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Disconnect(&paho.Disconnect{}) }()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{
		Subscriptions: []paho.SubscribeOptions{{Topic: "$stream/gone", QoS: 1}},
		Properties:    &paho.SubscribeProperties{User: paho.UserProperties{{Key: StreamOffsetProperty, Value: "earliest"}}},
	})
	if err != nil || sa.Reasons[0] != 1 {
		t.Fatalf("subscribe: %v %+v", err, sa)
	}
	for i := 0; i < 10; i++ {
		select {
		case <-got:
		case <-ctx.Done():
			t.Fatalf("got %d of 10 before the deadline", i)
		}
	}
	// The readers now wait for new records; the delete must wake and end them.
	if err := e.cat.Delete("gone"); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-disconnected:
		if code != 0x98 {
			t.Fatalf("disconnect reason %#x, want 0x98", code)
		}
	case <-ctx.Done():
		t.Fatal("reader of a deleted stream was not disconnected")
	}

	c2 := dialV5(t, e.addr, v5Options{id: "again"})
	if sa := c2.subscribe(t, "earliest", 1, "$stream/gone"); len(sa.Reasons) != 1 || sa.Reasons[0] < 0x80 {
		t.Fatalf("subscribe to the deleted stream: %+v", sa)
	}
}

// TestStreamDeleteDropsReplayPositions: the positions a persistent session stored for a
// stream go with the stream.
func TestStreamDeleteDropsReplayPositions(t *testing.T) {
	e := newReplayEnv(t, replayEnvOptions{noSync: true}, streamDef("kept", 1, "topic", "kept/#"))
	e.fill(t, testMessages(5, "kept/%d"))
	c := dialV5(t, e.addr, v5Options{id: "durable", noClean: true, expiry: 300})
	if sa := c.subscribe(t, "earliest", 1, "$stream/kept"); sa.Reasons[0] != 1 {
		t.Fatalf("suback %v", sa.Reasons)
	}
	c.waitN(t, 5)
	group := groupName("durable", "$stream/kept")
	// Positions are stored at disconnect; wait for them rather than for the disconnect.
	_ = c.c.Disconnect(&paho.Disconnect{})
	deadline := time.Now().Add(20 * time.Second)
	for {
		offs, err := e.log.GroupOffsets(group)
		if err != nil {
			t.Fatal(err)
		}
		if len(offs) == 1 { // stored (the last ack may not have been counted yet)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("positions not stored: %+v", offs)
		}
		time.Sleep(10 * time.Millisecond) // polls a condition, with a deadline
	}
	if err := e.cat.Delete("kept"); err != nil {
		t.Fatal(err)
	}
	if offs, err := e.log.GroupOffsets(group); err != nil || len(offs) != 0 {
		t.Fatalf("positions after delete: %+v %v", offs, err)
	}
}
