package mqtt

import (
	"net"
	"testing"
	"time"
)

// TestLimitConnCork: writes made while corked reach the peer only at the last uncork,
// in order and in one piece; uncorked writes pass at once.
func TestLimitConnCork(t *testing.T) {
	server, client := net.Pipe()
	defer server.Close()
	defer client.Close()
	lc := &limitConn{Conn: server}

	got := make(chan []byte, 4)
	go func() {
		buf := make([]byte, 64)
		for {
			n, err := client.Read(buf)
			if err != nil {
				close(got)
				return
			}
			got <- append([]byte(nil), buf[:n]...)
		}
	}()

	lc.cork()
	lc.cork()
	for _, p := range []string{"a1", "b22", "c333"} {
		if n, err := lc.Write([]byte(p)); err != nil || n != len(p) {
			t.Fatalf("corked write %q: %d, %v", p, n, err)
		}
	}
	lc.uncork()
	// Nothing may arrive before the last uncork (a delayed write would only hide a
	// failure, never cause one).
	select {
	case b := <-got:
		t.Fatalf("%q written before the last uncork", b)
	case <-time.After(20 * time.Millisecond):
	}
	done := make(chan struct{})
	go func() { lc.uncork(); close(done) }() // net.Pipe writes block until read
	if b := <-got; string(b) != "a1b22c333" {
		t.Fatalf("uncork wrote %q, want the held writes in order in one write", b)
	}
	<-done
	go func() { _, _ = lc.Write([]byte("d4")) }()
	if b := <-got; string(b) != "d4" {
		t.Fatalf("uncorked write %q", b)
	}
}
