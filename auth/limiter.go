package auth

import (
	"net"
	"sync"
	"time"
)

// Limiter slows password guessing: after Burst failed logins from one remote address
// within Window, further attempts from it are refused (as a wrong password would be)
// until the window has passed. Successful logins do not count.
type Limiter struct {
	Burst  int
	Window time.Duration
	Now    func() time.Time

	mu    sync.Mutex
	fails map[string]*failures
}

type failures struct {
	count int
	since time.Time
}

// NewLimiter returns a limiter allowing burst failures per window per address.
func NewLimiter(burst int, window time.Duration) *Limiter {
	return &Limiter{Burst: burst, Window: window, Now: time.Now, fails: map[string]*failures{}}
}

// host strips the port, so one client cannot dodge the limit by reconnecting.
func host(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}

// Allow tells whether a login attempt from remote may be checked at all.
func (l *Limiter) Allow(remote string) bool {
	if l == nil {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.fails[host(remote)]
	if f == nil {
		return true
	}
	if l.Now().Sub(f.since) >= l.Window {
		delete(l.fails, host(remote))
		return true
	}
	return f.count < l.Burst
}

// Fail records a failed login from remote.
func (l *Limiter) Fail(remote string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.Now()
	h := host(remote)
	f := l.fails[h]
	if f == nil || now.Sub(f.since) >= l.Window {
		f = &failures{since: now}
		l.fails[h] = f
	}
	f.count++
	// Keep the table small under a scan from many addresses: drop expired entries
	// whenever it grows past a bound.
	if len(l.fails) > 10000 {
		for k, v := range l.fails {
			if now.Sub(v.since) >= l.Window {
				delete(l.fails, k)
			}
		}
	}
}
