// Package netlimit caps the connections a listener holds, in all and per remote IP,
// refusing the excess at accept time before any protocol byte is read or any buffer
// is allocated for it.
package netlimit

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Limits are one listener's connection caps; zero means unlimited.
type Limits struct {
	// MaxConns caps the listener's open connections.
	MaxConns int
	// MaxPerIP caps the open connections from one remote IP.
	MaxPerIP int
	// FirstReadTimeout, if set, is a deadline given to each accepted connection: the
	// protocol must replace it (with its own deadline) once the client identified
	// itself, as MQTT's CONNECT timeout asks. Reads still blocked at it fail.
	FirstReadTimeout time.Duration
}

// Refused is told about each refused connection (reason "max_connections" or
// "max_connections_per_ip") and each first-read timeout ("first_read_timeout").
type Refused func(reason string, remote net.Addr)

// Listener wraps a net.Listener with Limits.
type Listener struct {
	net.Listener
	lim    Limits
	refuse Refused

	mu    sync.Mutex
	total int
	perIP map[string]int
}

// Wrap returns ln limited by lim; refused may be nil.
func Wrap(ln net.Listener, lim Limits, refused Refused) *Listener {
	if refused == nil {
		refused = func(string, net.Addr) {}
	}
	return &Listener{Listener: ln, lim: lim, refuse: refused, perIP: map[string]int{}}
}

func ipOf(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// Accept returns the next connection within the limits, closing the ones beyond.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := ipOf(c.RemoteAddr())
		l.mu.Lock()
		reason := ""
		switch {
		case l.lim.MaxConns > 0 && l.total >= l.lim.MaxConns:
			reason = "max_connections"
		case l.lim.MaxPerIP > 0 && l.perIP[ip] >= l.lim.MaxPerIP:
			reason = "max_connections_per_ip"
		default:
			l.total++
			l.perIP[ip]++
		}
		l.mu.Unlock()
		if reason != "" {
			l.refuse(reason, c.RemoteAddr())
			_ = c.Close()
			continue
		}
		lc := &Conn{Conn: c, l: l, ip: ip}
		if l.lim.FirstReadTimeout > 0 {
			lc.firstPending.Store(true)
			_ = c.SetDeadline(time.Now().Add(l.lim.FirstReadTimeout))
		}
		return lc, nil
	}
}

// Open reports the connections currently held.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

func (l *Listener) release(ip string) {
	l.mu.Lock()
	l.total--
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
	}
	l.mu.Unlock()
}

// Conn is an accepted connection; closing it gives its slot back.
type Conn struct {
	net.Conn
	l    *Listener
	ip   string
	once sync.Once
	// firstPending is true until the protocol sets its own deadline.
	firstPending atomic.Bool
}

// Read reports a read that hit the first-read deadline to the listener's Refused.
func (c *Conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	var ne net.Error
	if err != nil && c.firstPending.Load() && errors.As(err, &ne) && ne.Timeout() {
		if c.firstPending.Swap(false) {
			c.l.refuse("first_read_timeout", c.RemoteAddr())
		}
	}
	return n, err
}

// SetDeadline is the protocol taking over the deadline from FirstReadTimeout.
func (c *Conn) SetDeadline(t time.Time) error {
	c.firstPending.Store(false)
	return c.Conn.SetDeadline(t)
}

// SetReadDeadline is the protocol taking over the deadline from FirstReadTimeout.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.firstPending.Store(false)
	return c.Conn.SetReadDeadline(t)
}

// Close closes the connection and frees its slot once.
func (c *Conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.ip) })
	return err
}
