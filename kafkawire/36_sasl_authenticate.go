package kafkawire

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// SaslAuthenticate: v0-2.
//
// Carries one SASL token of the exchange a v1 SaslHandshake chose (sasl.go). A
// failure is SASL_AUTHENTICATION_FAILED with a message saying why (never whether the
// user exists), and the connection closes once it is answered, as Kafka does. Without
// a v1 handshake before it, or on a listener without SASL, it is ILLEGAL_SASL_STATE.
// v1 adds session_lifetime_ms (KIP-368): Config.SessionLifetime, after which the
// client must re-authenticate on the same connection or be disconnected at its next
// request. v2 is flexible.

const saslAuthenticateKey = 36

func init() { register(saslAuthenticateKey, 0, 2, handleSaslAuthenticate) }

func handleSaslAuthenticate(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.SASLAuthenticateRequest)
	resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
	if !s.sasl() || c.sec.mech == "" || c.sec.handshakeVersion == 0 {
		resp.ErrorCode = kerr.IllegalSaslState.Code
		resp.ErrorMessage = kmsg.StringPtr("SaslAuthenticate needs a SaslHandshake v1 first")
		c.sec.closeAfterWrite = s.sasl()
		return resp, nil
	}
	out, done, msg := c.saslStep(req.SASLAuthBytes)
	if msg != "" {
		resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
		resp.ErrorMessage = kmsg.StringPtr(msg)
		c.sec.closeAfterWrite = true
		return resp, nil
	}
	resp.SASLAuthBytes = out
	if done && s.cfg.SessionLifetime > 0 {
		resp.SessionLifetimeMillis = s.cfg.SessionLifetime.Milliseconds()
	}
	return resp, nil
}
