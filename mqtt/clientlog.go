package mqtt

import (
	"context"
	"log/slog"
	"sync/atomic"

	mochi "github.com/mochi-mqtt/server/v2"
)

// clientLogHandler adds the remote address to mochi's log lines that name a client
// (mochi v2.7.9 logs "client" alone on most of them), so every line about a client
// carries both.
type clientLogHandler struct {
	slog.Handler
	broker *atomic.Pointer[mochi.Server]
}

func newClientLogHandler(h slog.Handler) (*clientLogHandler, *atomic.Pointer[mochi.Server]) {
	b := new(atomic.Pointer[mochi.Server])
	return &clientLogHandler{Handler: h, broker: b}, b
}

// Handle adds "remote" to a record with a "client" and none.
func (h *clientLogHandler) Handle(ctx context.Context, r slog.Record) error {
	var id string
	hasRemote := false
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "client":
			id = a.Value.String()
		case "remote":
			hasRemote = true
		}
		return true
	})
	if b := h.broker.Load(); id != "" && !hasRemote && b != nil {
		if cl, ok := b.Clients.Get(id); ok && cl.Net.Remote != "" {
			r = r.Clone()
			r.AddAttrs(slog.String("remote", cl.Net.Remote))
		}
	}
	return h.Handler.Handle(ctx, r)
}

// WithAttrs keeps the wrapper.
func (h *clientLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &clientLogHandler{Handler: h.Handler.WithAttrs(attrs), broker: h.broker}
}

// WithGroup keeps the wrapper.
func (h *clientLogHandler) WithGroup(name string) slog.Handler {
	return &clientLogHandler{Handler: h.Handler.WithGroup(name), broker: h.broker}
}
