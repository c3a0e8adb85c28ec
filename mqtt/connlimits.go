package mqtt

import (
	"net"

	"github.com/mqstreams/mqstreams/netlimit"
)

// limitListener caps a listener's connections, in all and per remote IP, before any
// TLS handshake or MQTT byte is read.
func (s *Server) limitListener(ln net.Listener, id string) net.Listener {
	lim := netlimit.Limits{MaxConns: max(s.cfg.MaxConnections, 0), MaxPerIP: max(s.cfg.MaxConnectionsPerIP, 0)}
	return netlimit.Wrap(ln, lim, func(reason string, remote net.Addr) {
		s.met.refused.WithLabelValues(reason).Inc()
		s.lg.Warn().Str("remote", remote.String()).Str("listener", id).Str("reason", reason).Msg("mqtt connection refused")
	})
}
