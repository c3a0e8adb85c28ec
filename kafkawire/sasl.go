package kafkawire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/mqstreams/mqstreams/auth"
)

// The SASL exchanges: PLAIN (RFC 4616, checked against the bcrypt hash) and SCRAM
// (auth.ScramServer, against the stored salted keys). Each failed exchange is logged
// once with the remote address (never a password or proof) and counted against the
// remote host in the server's auth.Limiter: past the limit, attempts are refused
// without being checked until the window passes.

// failedLogin is what a client is told when an exchange fails: Kafka's wording,
// the same for a wrong password and an unknown user.
func failedLogin(mech string) string {
	return fmt.Sprintf("Authentication failed: invalid credentials with SASL mechanism %s", mech)
}

// saslStep feeds one client token to the exchange of the connection's mechanism. It
// returns the server's token and whether the client is now authenticated; a non-empty
// msg is the reason the exchange failed (the caller closes the connection).
func (c *conn) saslStep(token []byte) (out []byte, done bool, msg string) {
	s := c.s
	mech := c.sec.mech
	first := c.sec.scram == nil
	if first && !s.limiter.Allow(c.remote) {
		c.lg.Debug().Str("mechanism", mech).Msg("kafka SASL attempt refused: too many failed logins from this address")
		c.sec.mech, c.sec.scram = "", nil
		return nil, false, "Authentication failed: too many failed attempts from this address; try again later"
	}
	var (
		user string
		p    auth.Principal
		err  error
	)
	switch mech {
	case "PLAIN":
		user, p, err = c.plain(token)
		done = err == nil
	case "SCRAM-SHA-256", "SCRAM-SHA-512":
		if first {
			if c.sec.scram, err = s.auth.ScramServer(auth.Mechanism(mech)); err != nil {
				break
			}
		}
		out, done, err = c.sec.scram.Step(token)
		user = c.sec.scram.User()
		if err == nil && done {
			var ok bool
			if p, ok = s.auth.Lookup(user); !ok {
				err = auth.ErrScramFailed // deleted during the exchange
			}
		}
	default:
		err = fmt.Errorf("mechanism %q not served", mech)
	}
	if err == nil && done && c.sec.user != "" && user != c.sec.user {
		err = fmt.Errorf("re-authentication as %q on a connection of %q", user, c.sec.user)
	}
	if err != nil {
		reason := err.Error()
		if errors.Is(err, auth.ErrScramFailed) && c.sec.scram != nil && !c.sec.scram.KnownUser() {
			// The operator's log may say what the client is never told.
			reason = "unknown user, or a user without " + mech + " keys (a bare bcrypt hash: use PLAIN or set the password again)"
		}
		s.limiter.Fail(c.remote)
		c.lg.Warn().Str("mechanism", mech).Str("user", user).Str("reason", reason).
			Bool("address_blocked", !s.limiter.Allow(c.remote)).Msg("kafka SASL authentication failed")
		c.sec.mech, c.sec.scram = "", nil
		if errors.Is(err, auth.ErrScramFailed) || errors.Is(err, errPlainFailed) {
			return nil, false, failedLogin(mech)
		}
		return nil, false, "Authentication failed: " + err.Error()
	}
	if !done {
		return out, false, ""
	}
	reauth := c.sec.authenticated
	c.sec.authenticated, c.sec.principal, c.sec.user = true, p, user
	c.sec.mech, c.sec.scram = "", nil
	c.sec.expires = time.Time{}
	if s.cfg.SessionLifetime > 0 {
		c.sec.expires = time.Now().Add(s.cfg.SessionLifetime)
	}
	if !reauth {
		c.lg = c.lg.With().Str("user", user).Logger()
	}
	c.lg.Debug().Str("mechanism", mech).Bool("reauthentication", reauth).Msg("kafka SASL authenticated")
	if out == nil {
		out = []byte{}
	}
	return out, true, ""
}

// errSASLFailed closes a connection whose bare-token exchange failed; saslStep has
// logged why already.
var errSASLFailed = errors.New("SASL authentication failed")

// errPlainFailed is a PLAIN exchange with a wrong password or an unknown user.
var errPlainFailed = errors.New("invalid credentials")

// plain checks a PLAIN token: [authzid] NUL authcid NUL passwd.
func (c *conn) plain(token []byte) (string, auth.Principal, error) {
	parts := bytes.Split(token, []byte{0})
	if len(parts) != 3 {
		return "", auth.Principal{}, errors.New("malformed PLAIN token")
	}
	authz, user, pw := string(parts[0]), string(parts[1]), string(parts[2])
	if user == "" || pw == "" {
		return user, auth.Principal{}, errors.New("PLAIN token with an empty username or password")
	}
	if authz != "" && authz != user {
		return user, auth.Principal{}, errors.New("PLAIN authorization identity must be empty or the username")
	}
	p, ok := c.s.auth.Authenticate(user, pw)
	if !ok {
		return user, auth.Principal{}, errPlainFailed
	}
	return user, p, nil
}

// rawSASL answers one bare SASL token frame, sent after a v0 SaslHandshake, with a
// bare frame. A failed exchange closes the connection: raw framing has no way to carry
// an error, which is what Kafka does too.
func (c *conn) rawSASL(token []byte) ([]byte, error) {
	out, _, msg := c.saslStep(token)
	if msg != "" {
		return nil, fmt.Errorf("%w: %s", errSASLFailed, msg)
	}
	b := binary.BigEndian.AppendUint32(c.wbuf[:0], uint32(len(out)))
	b = append(b, out...)
	c.wbuf = b
	return b, nil
}

// rawSASLPending tells whether the next frame is a bare SASL token.
func (c *conn) rawSASLPending() bool { return c.sec.mech != "" && c.sec.handshakeVersion == 0 }
