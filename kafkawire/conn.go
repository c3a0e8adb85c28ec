package kafkawire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"runtime/debug"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// idleTimeout closes connections that send nothing for this long
// (Kafka's connections.max.idle.ms default).
const idleTimeout = 10 * time.Minute

// conn is one client connection and the state kept for it between requests.
// Requests are handled one at a time in arrival order, so responses go out in request
// order even when the client pipelines (docs/design.md, "Kafka connections").
type conn struct {
	s      *Server
	nc     net.Conn // nil when dispatch is driven directly (fuzz tests)
	remote string
	lg     zerolog.Logger

	// clientID is the client id of the request being handled.
	clientID string

	rbuf []byte // frame body, reused between requests
	wbuf []byte // encoded response, reused between requests
	// fbuf holds a fetch's record batches until the response is encoded; reused so a
	// replaying consumer costs one copy out of the log and no garbage per fetch.
	fbuf []byte

	// held is the request budget taken by the request being handled (budget.go).
	held int64

	// sec is the connection's principal and SASL progress (security.go).
	sec connSecurity
}

func newConn(s *Server, nc net.Conn) *conn {
	remote := nc.RemoteAddr().String()
	return &conn{s: s, nc: nc, remote: remote, lg: s.lg.With().Str("remote", remote).Logger()}
}

// Errors that end a connection: Kafka closes the socket when it cannot make sense of a
// request, as there is no response a client could match to it.
var (
	errFrameTooLarge = errors.New("request frame size out of range")
	errBadHeader     = errors.New("malformed request header")
	errUnknownAPI    = errors.New("unsupported api key")
	errBadVersion    = errors.New("unsupported api version")
	errBadRequest    = errors.New("malformed request")
)

// serve runs the connection's read-handle-write loop until the client leaves, a request
// cannot be answered, or the server closes. A panic in a handler ends this connection
// only.
func (c *conn) serve() {
	defer c.nc.Close()
	defer c.releaseBuffers()
	defer func() {
		if r := recover(); r != nil {
			c.lg.Error().Str("client_id", c.clientID).Interface("panic", r).Bytes("stack", debug.Stack()).Msg("kafka request handler panicked; closing connection")
		}
	}()
	c.lg.Debug().Msg("kafka connection opened")
	if err := c.setupSecurity(); err != nil {
		return
	}
	br := bufio.NewReaderSize(c.nc, 64<<10)
	defer c.releaseHeld()
	for {
		body, err := c.readRequest(br)
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, errFrameTimeout):
				c.s.metrics.timedOut("frame")
				c.s.metrics.refusedConn("frame_timeout")
				c.lg.Warn().Str("client", c.clientID).Dur("timeout", c.s.cfg.FrameTimeout).Msg("kafka connection closed: request frame not completed in time")
			case errors.Is(err, errBudget):
				c.s.metrics.refusedConn("request_budget")
				c.lg.Warn().Str("client", c.clientID).Msg("kafka connection closed: request-memory budget exhausted (kafka.queued_max_request_bytes)")
			case errors.Is(err, errFrameTooLarge):
				c.s.metrics.failed(-1, "frame_too_large")
				c.lg.Info().Err(err).Str("client", c.clientID).Msg("kafka connection closed")
			case errors.As(err, &ne) && ne.Timeout():
				c.s.metrics.timedOut("idle")
				c.lg.Debug().Str("client", c.clientID).Msg("kafka connection closed: idle")
			case !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed):
				c.lg.Debug().Err(err).Str("client_id", c.clientID).Msg("kafka connection closed on read")
			}
			return
		}
		c.s.metrics.traffic(len(body)+4, 0)
		out, err := c.dispatch(body)
		c.releaseHeld()
		// Keep a modest read buffer; a rare huge request should not pin its memory.
		if cap(body) <= 1<<20 {
			c.rbuf = body[:0]
		} else {
			c.rbuf = nil
		}
		if err != nil {
			key := int16(-1)
			if len(body) >= 2 {
				key = int16(binary.BigEndian.Uint16(body))
			}
			reason := "bad_request"
			if errors.Is(err, errSASLFailed) {
				reason = "sasl_failed"
			} else { // a failed SASL exchange is logged once where it failed
				c.lg.Info().Err(err).Str("client_id", c.clientID).Msg("kafka connection closed: bad request")
			}
			c.s.metrics.failed(key, reason)
			return
		}
		if out == nil {
			continue // a request Kafka does not answer (Produce with acks=0)
		}
		c.s.metrics.traffic(0, len(out))
		if _, err := c.nc.Write(out); err != nil {
			c.lg.Debug().Err(err).Str("client_id", c.clientID).Msg("kafka connection closed on write")
			return
		}
		if c.sec.closeAfterWrite {
			return
		}
		if cap(out) > maxKeptResponseBuf {
			c.wbuf = nil
		} else {
			c.wbuf = out[:0]
		}
	}
}

// errFrameTimeout ends a connection whose request frame, once begun, did not arrive
// whole within Config.FrameTimeout (a slowloris client).
var errFrameTimeout = errors.New("request frame not completed in time")

// readRequest reads the next request frame: up to idleTimeout for its first byte, then
// FrameTimeout for the rest. A frame above smallFrame first reserves its size from the
// server's request budget; the reservation is released after the request is handled.
func (c *conn) readRequest(br *bufio.Reader) ([]byte, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(idleTimeout))
	if _, err := br.Peek(1); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(c.s.cfg.FrameTimeout)
	_ = c.nc.SetReadDeadline(deadline)
	timedOut := func(err error) error {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("%w: %w", errFrameTimeout, err)
		}
		return err
	}
	sz, err := br.Peek(4)
	if err != nil {
		return nil, timedOut(err)
	}
	n := int32(binary.BigEndian.Uint32(sz))
	if n > smallFrame && n <= c.s.cfg.MaxRequestBytes && c.s.budget != nil {
		if err := c.s.budget.reserve(int64(n), deadline, c.s.done); err != nil {
			return nil, err
		}
		c.held += int64(n)
	}
	body, err := readFrame(br, c.s.cfg.MaxRequestBytes, c.rbuf)
	return body, timedOut(err)
}

// readFrame reads one size-prefixed request. The body buffer grows as bytes arrive, so a
// peer announcing a huge frame cannot make us allocate it up front.
func readFrame(r io.Reader, maxBytes int32, buf []byte) ([]byte, error) {
	var sz [4]byte
	if _, err := io.ReadFull(r, sz[:]); err != nil {
		return nil, err
	}
	n := int32(binary.BigEndian.Uint32(sz[:]))
	if n < 0 || n > maxBytes {
		return nil, fmt.Errorf("%w: %d bytes (max %d)", errFrameTooLarge, n, maxBytes)
	}
	const chunk = 1 << 20
	body := buf[:0]
	for len(body) < int(n) {
		step := min(int(n)-len(body), chunk)
		if cap(body)-len(body) < step {
			grown := make([]byte, len(body), min(max(2*cap(body), len(body)+step), int(n)))
			copy(grown, body)
			body = grown
		}
		m, err := io.ReadFull(r, body[len(body):len(body)+step])
		body = body[:len(body)+m]
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("read request of %d bytes: %w", n, err)
		}
	}
	return body, nil
}

// dispatch decodes one request frame body, runs its handler and returns the encoded
// response frame (into c.wbuf), or nil when a handler answers nothing (a nil response).
// An error means the connection must close.
func (c *conn) dispatch(body []byte) ([]byte, error) {
	if c.rawSASLPending() {
		return c.rawSASL(body)
	}
	r := kbin.Reader{Src: body}
	key := r.Int16()
	version := r.Int16()
	corr := r.Int32()
	clientID := r.NullableString()
	if !r.Ok() {
		return nil, errBadHeader
	}
	c.clientID = ""
	if clientID != nil {
		c.clientID = *clientID
	}
	a, served := apis[key]
	req := kmsg.RequestForKey(key)
	if !served || req == nil {
		return nil, fmt.Errorf("%w: %d (version %d, client %q)", errUnknownAPI, key, version, c.clientID)
	}
	if key == apiVersionsKey && (version < a.min || version > a.max) {
		// Kafka answers an ApiVersions it cannot parse with a v0 body, so that any
		// client can learn the versions we speak; its body is not read.
		return c.encode(corr, unsupportedApiVersions()), nil
	}
	if err := c.gate(key); err != nil {
		return nil, err
	}
	if version < 0 || version > req.MaxVersion() {
		return nil, fmt.Errorf("%w: %s v%d", errBadVersion, kmsg.NameForKey(key), version)
	}
	req.SetVersion(version)
	if req.IsFlexible() {
		kmsg.SkipTags(&r) // request header v2 tagged fields
		if !r.Ok() {
			return nil, errBadHeader
		}
	}
	if err := req.ReadFrom(r.Src); err != nil {
		return nil, fmt.Errorf("%w: %s v%d: %v", errBadRequest, kmsg.NameForKey(key), version, err)
	}
	if version < a.min || version > a.max {
		resp := req.ResponseKind()
		if !setTopLevelError(resp, kerr.UnsupportedVersion.Code) {
			return nil, fmt.Errorf("%w: %s v%d (serving v%d-v%d)", errBadVersion, kmsg.NameForKey(key), version, a.min, a.max)
		}
		return c.encode(corr, resp), nil
	}
	start := time.Now()
	resp, err := c.s.authorized(c, c.s.placed(a.handle), req)
	if err == nil {
		c.s.metrics.request(key, time.Since(start), resp)
	}
	if err != nil {
		return nil, fmt.Errorf("%s v%d: %w", kmsg.NameForKey(key), version, err)
	}
	if resp == nil {
		return nil, nil // the request gets no response (Produce with acks=0)
	}
	return c.encode(corr, resp), nil
}

// encode appends the response frame: size, correlation id, the response header's empty
// tag section for flexible versions (never for ApiVersions, whose response header is
// always v0 so that clients can parse it before knowing our versions), then the body.
func (c *conn) encode(corr int32, resp kmsg.Response) []byte {
	b := append(c.wbuf[:0], 0, 0, 0, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(corr))
	if resp.IsFlexible() && resp.Key() != apiVersionsKey {
		b = append(b, 0)
	}
	b = resp.AppendTo(b)
	binary.BigEndian.PutUint32(b[:4], uint32(len(b)-4))
	c.wbuf = b
	return b
}

// setTopLevelError sets a response's top-level ErrorCode field, if its message has one
// at this version, so that an unsupported version can be answered in Kafka's terms.
func setTopLevelError(resp kmsg.Response, code int16) bool {
	v := reflect.ValueOf(resp)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return false
	}
	f := v.Elem().FieldByName("ErrorCode")
	if !f.IsValid() || f.Kind() != reflect.Int16 || !f.CanSet() {
		return false
	}
	f.SetInt(int64(code))
	// Only meaningful if the field is on the wire at this version: encode with both
	// values and compare.
	with := resp.AppendTo(nil)
	f.SetInt(0)
	without := resp.AppendTo(nil)
	f.SetInt(int64(code))
	return string(with) != string(without)
}
