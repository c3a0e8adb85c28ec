package kafkawire

import (
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// SaslHandshake: v0-1.
//
// Picks the mechanism of the SASL exchange that follows, and lists the mechanisms we
// serve (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512). After v0 the client sends the SASL
// tokens as bare size-prefixed frames and gets bare frames back (old librdkafka and
// kafka-python do this); after v1 they come in SaslAuthenticate requests. An unknown
// mechanism is UNSUPPORTED_SASL_MECHANISM and the connection closes once answered, as
// Kafka does; a handshake while an exchange is in progress is ILLEGAL_SASL_STATE and
// closes too. A listener without SASL answers ILLEGAL_SASL_STATE, as Kafka's
// plaintext and ssl listeners do. An authenticated client may send a v1 handshake
// again to re-authenticate (KIP-368).

const saslHandshakeKey = 17

func init() { register(saslHandshakeKey, 0, 1, handleSaslHandshake) }

// saslMechanisms are the mechanisms we serve, in the order the handshake lists them.
var saslMechanisms = []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}

func handleSaslHandshake(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.SASLHandshakeRequest)
	resp := req.ResponseKind().(*kmsg.SASLHandshakeResponse)
	if !s.sasl() {
		resp.ErrorCode = kerr.IllegalSaslState.Code
		return resp, nil
	}
	resp.SupportedMechanisms = saslMechanisms
	switch {
	case c.sec.mech != "":
		resp.ErrorCode = kerr.IllegalSaslState.Code
		c.sec.closeAfterWrite = true
		c.lg.Info().Str("mechanism", req.Mechanism).Msg("kafka SaslHandshake during a SASL exchange; closing")
	case !slices.Contains(saslMechanisms, req.Mechanism):
		resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
		c.sec.closeAfterWrite = true
		c.lg.Info().Str("mechanism", req.Mechanism).Msg("kafka SASL mechanism not supported; closing")
	case c.sec.authenticated && req.Version == 0:
		// Raw tokens cannot be told apart from requests on a connection in use.
		resp.ErrorCode = kerr.IllegalSaslState.Code
		c.sec.closeAfterWrite = true
	default:
		c.sec.mech = req.Mechanism
		c.sec.handshakeVersion = req.Version
		c.sec.scram = nil
	}
	return resp, nil
}
