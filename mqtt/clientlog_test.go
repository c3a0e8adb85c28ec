package mqtt

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// TestClientLogHandler: a mochi log line naming a connected client gets its remote
// address; one already carrying it, or naming no client, is left as it is.
func TestClientLogHandler(t *testing.T) {
	e := newEnv(t, envOptions{})
	c, _ := dialRaw(t, e.addr, "logged", 5, true)
	var buf bytes.Buffer
	h, b := newClientLogHandler(zerolog.NewSlogHandler(zerolog.New(&buf)))
	b.Store(e.srv.broker)
	lg := slog.New(h).With("lib", "mochi")
	lg.Warn("error processing packet", "client", "logged")
	lg.Warn("no client")
	lg.Warn("already", "client", "logged", "remote", "x")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	local := c.conn.LocalAddr().String()
	if len(lines) != 3 || !strings.Contains(lines[0], `"remote":"`+local+`"`) ||
		strings.Contains(lines[1], "remote") || strings.Count(lines[2], "remote") != 1 {
		t.Fatalf("log lines:\n%s\nwant the first with remote %s", buf.String(), local)
	}
}
