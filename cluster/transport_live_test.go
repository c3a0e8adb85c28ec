package cluster

import (
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestTransportLiveThroughFlap: a peer whose link just went down still counts as live
// (Kafka Metadata keeps listing it, cmd/mqstreams/cluster.go), until the link has been
// down for liveGrace; it is live again as soon as the link is back.
func TestTransportLiveThroughFlap(t *testing.T) {
	ln1, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr2 := ln2.Addr().String()
	t1, err := newTransport(1, "", ln1, map[uint64]string{2: addr2}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t1.start()
	defer t1.close()
	startPeer := func(ln net.Listener) *transport {
		t.Helper()
		t2, err := newTransport(2, addr2, ln, map[uint64]string{1: ln1.Addr().String()}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		t2.start()
		return t2
	}
	t2 := startPeer(ln2)
	waitFor(t, 30*time.Second, "the link to node 2", func() bool { return t1.reachable(2) })
	if !t1.live(2) {
		t.Fatal("a reachable peer is not live")
	}
	t2.close()
	waitFor(t, 30*time.Second, "the link to node 2 to go down", func() bool { return !t1.reachable(2) })
	down := time.Unix(0, t1.peer(2).downAt.Load())
	// Checked only while well inside the grace (a loaded machine may see it late).
	if live := t1.live(2); !live && time.Since(down) < liveGrace/2 {
		t.Fatalf("node 2 not live %v after its link went down (grace %v)", time.Since(down), liveGrace)
	}
	waitFor(t, 30*time.Second, "node 2 to stop counting as live", func() bool { return !t1.live(2) })
	if gone := time.Since(down); gone < liveGrace {
		t.Fatalf("node 2 stopped counting as live %v after its link went down, before the %v grace", gone, liveGrace)
	}

	ln2b, err := net.Listen("tcp", addr2)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr2, err)
	}
	t2 = startPeer(ln2b)
	defer t2.close()
	waitFor(t, 30*time.Second, "node 2 to be live again", func() bool { return t1.reachable(2) && t1.live(2) })
}
