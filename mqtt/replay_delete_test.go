package mqtt

import (
	"context"
	"testing"
	"time"
)

// TestReplayStreamDeleted: a client replaying a stream that is deleted is disconnected
// with reason 0x98 rather than left waiting; subscribing again fails in the SUBACK.
func TestReplayStreamDeleted(t *testing.T) {
	e := newReplayEnv(t, replayEnvOptions{noSync: true}, streamDef("gone", 2, "topic", "gone/#"))
	e.fill(t, testMessages(10, "gone/%d"))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := dialV5(t, e.addr, v5Options{id: "reader"})
	if sa := c.subscribe(t, "earliest", 1, "$stream/gone"); sa.ReasonCodes[0] != 1 {
		t.Fatalf("subscribe: %+v", sa)
	}
	c.waitN(t, 10)
	// The readers now wait for new records; the delete must wake and end them.
	if err := e.cat.Delete("gone"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.c.Done():
		if d, ok := c.c.ServerDisconnect(); !ok || d.ReasonCode != 0x98 {
			t.Fatalf("disconnect %+v (sent: %v), want reason 0x98", d, ok)
		}
	case <-ctx.Done():
		t.Fatal("reader of a deleted stream was not disconnected")
	}

	c2 := dialV5(t, e.addr, v5Options{id: "again"})
	if sa := c2.subscribe(t, "earliest", 1, "$stream/gone"); len(sa.ReasonCodes) != 1 || sa.ReasonCodes[0] < 0x80 {
		t.Fatalf("subscribe to the deleted stream: %+v", sa)
	}
}

// TestStreamDeleteDropsReplayPositions: the positions a persistent session stored for a
// stream go with the stream.
func TestStreamDeleteDropsReplayPositions(t *testing.T) {
	e := newReplayEnv(t, replayEnvOptions{noSync: true}, streamDef("kept", 1, "topic", "kept/#"))
	e.fill(t, testMessages(5, "kept/%d"))
	c := dialV5(t, e.addr, v5Options{id: "durable", noClean: true, expiry: 300})
	if sa := c.subscribe(t, "earliest", 1, "$stream/kept"); sa.ReasonCodes[0] != 1 {
		t.Fatalf("suback %v", sa.ReasonCodes)
	}
	c.waitN(t, 5)
	group := groupName("durable", "$stream/kept")
	// Positions are stored at disconnect; wait for them rather than for the disconnect.
	c.disconnect(t)
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
