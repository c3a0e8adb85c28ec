package compattests

// linkProxy sits on one inter-node link of a cluster under test (issue 13): node A's
// config names peer B at the proxy's address, and the proxy forwards to B's real
// raft_addr. The core's transport gives each ordered node pair its own connection,
// written only by the dialer, so one proxy per ordered pair cuts exactly one
// direction. Faults: drop (bytes read and thrown away, as on a link losing everything:
// the sender's heartbeats time out), delay (every chunk held back, order kept), and
// pass. Healing closes every proxied connection, so no stream resumes mid-frame after
// thrown-away bytes; the transport redials.

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// linkFault is what a linkProxy does to the bytes it carries.
type linkFault int32

const (
	linkPass linkFault = iota
	linkDrop
	linkDelay
)

func (f linkFault) String() string {
	return [...]string{"pass", "drop", "delay"}[f]
}

type linkProxy struct {
	name   string
	ln     net.Listener
	target string
	fault  atomic.Int32
	delay  atomic.Int64 // ns, for linkDelay
	bytes  atomic.Int64 // forwarded
	lost   atomic.Int64 // thrown away

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// startLinkProxy listens on a free loopback port and forwards to target.
func startLinkProxy(t testing.TB, name, target string) *linkProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &linkProxy{name: name, ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *linkProxy) Addr() string { return p.ln.Addr().String() }

// set changes the fault; leaving drop resets the connections (their streams lost bytes).
func (p *linkProxy) set(f linkFault, delay time.Duration) {
	old := linkFault(p.fault.Swap(int32(f)))
	p.delay.Store(int64(delay))
	if old == linkDrop && f != linkDrop {
		p.resetConns()
	}
}

func (p *linkProxy) resetConns() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
}

func (p *linkProxy) close() {
	_ = p.ln.Close()
	p.resetConns()
	p.wg.Wait()
}

func (p *linkProxy) track(c net.Conn, add bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
	return true
}

func (p *linkProxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			_ = in.Close() // the target is down (killed): the dialer retries
			continue
		}
		p.track(in, true)
		p.track(out, true)
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			p.pipe(out, in, true)
		}()
		go func() {
			defer p.wg.Done()
			p.pipe(in, out, false)
		}()
	}
}

// pipe copies src to dst; forward is the dialer→target direction, the one faults act
// on (the other carries only the target's handshake answer, if any).
func (p *linkProxy) pipe(dst, src net.Conn, forward bool) {
	defer func() {
		_ = src.Close()
		_ = dst.Close()
		p.track(src, false)
		p.track(dst, false)
	}()
	if !forward {
		_, _ = io.Copy(dst, src)
		return
	}
	type chunk struct {
		b  []byte
		at time.Time
	}
	// A delayed chunk waits in this queue; a writer goroutine sends each at its time,
	// so order is kept and the reader never stalls behind a sleep.
	queue := make(chan chunk, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range queue {
			if d := time.Until(c.at); d > 0 {
				time.Sleep(d)
			}
			if _, err := dst.Write(c.b); err != nil {
				_ = src.Close()
				for range queue {
				}
				return
			}
			p.bytes.Add(int64(len(c.b)))
		}
	}()
	defer func() {
		close(queue)
		<-done
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			switch linkFault(p.fault.Load()) {
			case linkDrop:
				p.lost.Add(int64(n))
			case linkDelay:
				queue <- chunk{b: append([]byte(nil), buf[:n]...), at: time.Now().Add(time.Duration(p.delay.Load()))}
			default:
				queue <- chunk{b: append([]byte(nil), buf[:n]...)}
			}
		}
		if err != nil {
			return
		}
	}
}

// TestLinkProxy checks the proxy itself against an echo server: pass, delay keeps
// order and holds bytes back, drop loses them, and healing resets the connection.
func TestLinkProxy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 100)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 1024)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						got <- append([]byte(nil), buf[:n]...)
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	p := startLinkProxy(t, "a→b", ln.Addr().String())
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	recv := func(timeout time.Duration) (string, bool) {
		select {
		case b := <-got:
			return string(b), true
		case <-time.After(timeout):
			return "", false
		}
	}
	_, _ = c.Write([]byte("one"))
	if s, ok := recv(30 * time.Second); !ok || s != "one" {
		t.Fatalf("pass: got %q", s)
	}
	p.set(linkDelay, 300*time.Millisecond)
	start := time.Now()
	_, _ = c.Write([]byte("two"))
	if s, ok := recv(30 * time.Second); !ok || s != "two" || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("delay: got %q after %v", s, time.Since(start))
	}
	p.set(linkDrop, 0)
	_, _ = c.Write([]byte("lost"))
	deadline := time.Now().Add(30 * time.Second)
	for p.lost.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if p.lost.Load() != 4 {
		t.Fatalf("drop: %d bytes lost, want 4", p.lost.Load())
	}
	if s, ok := recv(200 * time.Millisecond); ok {
		t.Fatalf("drop: %q arrived", s)
	}
	p.set(linkPass, 0)
	// The healed proxy closed the connection: a read sees it end.
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("healing kept the connection open")
	}
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	_, _ = c2.Write([]byte("three"))
	if s, ok := recv(30 * time.Second); !ok || s != "three" {
		t.Fatalf("after healing: got %q", s)
	}
}
