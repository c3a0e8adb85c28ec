package netlimit

import (
	"net"
	"sync"
	"testing"
	"time"
)

func TestLimits(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	reasons := map[string]int{}
	l := Wrap(ln, Limits{MaxConns: 3, MaxPerIP: 2, FirstReadTimeout: 100 * time.Millisecond}, func(r string, _ net.Addr) {
		mu.Lock()
		reasons[r]++
		mu.Unlock()
	})
	defer l.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c1, c2, c3 := dial(), dial(), dial()
	defer c1.Close()
	defer c2.Close()
	defer c3.Close()
	s1, s2 := <-accepted, <-accepted
	// The third, from the same IP, is closed by the listener: its read sees EOF.
	_ = c3.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c3.Read(make([]byte, 1)); err == nil {
		t.Fatal("third connection from one IP was served")
	}
	// A connection that sends nothing times out at the first-read deadline.
	if _, err := s1.Read(make([]byte, 1)); err == nil {
		t.Fatal("first read did not time out")
	}
	mu.Lock()
	if reasons["max_connections_per_ip"] != 1 || reasons["first_read_timeout"] != 1 {
		t.Fatalf("reasons %v", reasons)
	}
	mu.Unlock()
	// Closing frees the slot: a new connection is served again.
	s1.Close()
	c4 := dial()
	defer c4.Close()
	select {
	case s4 := <-accepted:
		s4.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("slot not freed")
	}
	// A protocol that sets its own deadline takes over from the first-read one.
	_ = s2.SetReadDeadline(time.Time{})
	if l.Open() != 1 {
		t.Fatalf("open %d", l.Open())
	}
	s2.Close()
}
