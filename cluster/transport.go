package cluster

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Kind says what a transport message is and which handler receives it.
type Kind uint8

// Message kinds. 1..15 are the core's; KindMQTT and 17..63 are free for the
// protocol faces of the cluster (cmd/mqstreams wires their handlers).
const (
	kindHeartbeat Kind = 1 // keeps an idle link's read deadline moving
	kindRaft      Kind = 2 // a batch of Raft messages of any groups
	kindRequest   Kind = 3 // a call (forwarded append, snapshot read)
	kindResponse  Kind = 4 // a call's answer
	// KindMQTT carries the MQTT face's messages (route table, forwarded publishes).
	KindMQTT Kind = 16
)

// Errors of the transport.
var (
	ErrUnknownNode = errors.New("unknown node")
	ErrLinkDown    = errors.New("link to node down")
	ErrQueueFull   = errors.New("link queue full")
)

const (
	handshakeMagic   = "MQSC"
	handshakeVersion = 1
	heartbeatEvery   = 500 * time.Millisecond
	linkTimeout      = 3 * time.Second // a link silent this long is closed and redialled
	// liveGrace: a peer whose link is down for less than this still counts as live
	// (live): a link that is closed and redialled (a silent spell, a peer's restart of
	// it) is not a node gone, and clients must not see it vanish and come back.
	liveGrace       = linkTimeout
	closeFlushWait  = 200 * time.Millisecond // a closing node's last frames get this long
	maxFrame        = 64 << 20
	sendQueueFrames = 4096
)

// transport is one TCP connection per ordered node pair: each node dials every peer at
// the address in its own config and only writes on that link; links it accepts it only
// reads. Every Raft group's messages, forwarded appends and the protocol faces' messages
// share it, so a one-way fault on the wire cuts exactly one direction of everything.
type transport struct {
	self uint64
	lg   zerolog.Logger
	ln   net.Listener

	// peers: the configured peers, and nodes added later (addPeer); copied on write.
	peersMu  sync.Mutex
	peersP   atomic.Pointer[map[uint64]*link]
	started  bool // under peersMu
	handlers [256]atomic.Pointer[func(from uint64, msg []byte)]

	callMu  sync.Mutex
	nextID  uint64
	calls   map[uint64]*pendingCall
	methods map[byte]func(from uint64, body []byte, reply func([]byte, error))

	stop chan struct{}
	wg   sync.WaitGroup

	// sent counts frames queued per kind (tests: quiesced groups send none), sentBytes
	// their bytes (benchmarks: network bytes per record).
	sent      [256]atomic.Int64
	sentBytes [256]atomic.Int64

	inMu sync.Mutex
	in   map[net.Conn]struct{}
}

type pendingCall struct {
	to    uint64
	done  func([]byte, error)
	timer *time.Timer
}

// link is the outbound connection to one peer.
type link struct {
	id   uint64
	addr string
	q    chan []byte // encoded frames
	up   atomic.Bool
	// downAt is when the link last went down, or was made (UnixNano): live.
	downAt atomic.Int64
	// heard is when a frame from this peer last arrived on its link to us
	// (UnixNano): its heartbeats keep it fresh while every group is quiet.
	heard atomic.Int64
}

func newLink(id uint64, addr string) *link {
	l := &link{id: id, addr: addr, q: make(chan []byte, sendQueueFrames)}
	l.downAt.Store(time.Now().UnixNano())
	return l
}

func newTransport(self uint64, addr string, ln net.Listener, peers map[uint64]string, lg zerolog.Logger) (*transport, error) {
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			return nil, fmt.Errorf("cluster transport listen %s: %w", addr, err)
		}
	}
	t := &transport{
		self:    self,
		lg:      lg,
		ln:      ln,
		calls:   map[uint64]*pendingCall{},
		methods: map[byte]func(uint64, []byte, func([]byte, error)){},
		stop:    make(chan struct{}),
		in:      map[net.Conn]struct{}{},
	}
	m := map[uint64]*link{}
	for id, a := range peers {
		m[id] = newLink(id, a)
	}
	t.peersP.Store(&m)
	t.handle(kindRequest, t.onRequest)
	t.handle(kindResponse, t.onResponse)
	return t, nil
}

func (t *transport) start() {
	t.wg.Add(1)
	go t.acceptLoop()
	t.peersMu.Lock()
	defer t.peersMu.Unlock()
	t.started = true
	for _, l := range *t.peersP.Load() {
		t.wg.Add(1)
		go t.dialLoop(l)
	}
}

func (t *transport) peer(id uint64) *link { return (*t.peersP.Load())[id] }

// addPeer starts a link to a node added to the cluster (members.go); a node already
// known keeps its address (a configured one wins over the catalog's).
func (t *transport) addPeer(id uint64, addr string) {
	if id == t.self || addr == "" {
		return
	}
	t.peersMu.Lock()
	defer t.peersMu.Unlock()
	old := *t.peersP.Load()
	if old[id] != nil {
		return
	}
	m := make(map[uint64]*link, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	l := newLink(id, addr)
	m[id] = l
	t.peersP.Store(&m)
	if t.started {
		select {
		case <-t.stop:
			return
		default:
		}
		t.wg.Add(1)
		go t.dialLoop(l)
	}
}

func (t *transport) addr() net.Addr { return t.ln.Addr() }

func (t *transport) close() {
	close(t.stop)
	_ = t.ln.Close()
	t.inMu.Lock()
	for c := range t.in {
		_ = c.Close()
	}
	t.inMu.Unlock()
	t.wg.Wait()
	t.callMu.Lock()
	calls := t.calls
	t.calls = map[uint64]*pendingCall{}
	t.callMu.Unlock()
	for _, c := range calls {
		c.timer.Stop()
		c.done(nil, ErrLinkDown)
	}
}

func (t *transport) handle(k Kind, h func(from uint64, msg []byte)) { t.handlers[k].Store(&h) }

// alive reports whether node id is heard from (a frame within three transport
// heartbeats) and reachable: quiesced groups rely on it in place of Raft heartbeats.
func (t *transport) alive(id uint64) bool {
	l := t.peer(id)
	return l != nil && l.up.Load() && time.Since(time.Unix(0, l.heard.Load())) < 3*heartbeatEvery
}

// reachable reports whether the outbound link to id is connected.
func (t *transport) reachable(id uint64) bool {
	l := t.peer(id)
	return l != nil && l.up.Load()
}

// live reports whether the outbound link to id is connected or went down less than
// liveGrace ago: the node may be redialled at once, so it is not yet taken for gone.
func (t *transport) live(id uint64) bool {
	l := t.peer(id)
	return l != nil && (l.up.Load() || time.Since(time.Unix(0, l.downAt.Load())) < liveGrace)
}

// send queues one message for node to; it never blocks.
func (t *transport) send(to uint64, k Kind, msg []byte) error {
	l, err := t.upPeer(to)
	if err != nil {
		return err
	}
	f := make([]byte, frameHeader, frameHeader+len(msg))
	return t.queue(l, to, k, append(f, msg...))
}

// upPeer is the outbound link to node to, if it is known and connected.
func (t *transport) upPeer(to uint64) (*link, error) {
	l := t.peer(to)
	if l == nil {
		return nil, fmt.Errorf("send to node %d: %w", to, ErrUnknownNode)
	}
	if !l.up.Load() {
		return nil, fmt.Errorf("send to node %d: %w", to, ErrLinkDown)
	}
	return l, nil
}

// frameHeader is a frame's u32 length and u8 kind.
const frameHeader = 5

// sendFrame is send for a payload built behind frameHeader bytes left free (f is
// the whole frame, taken over by the transport): nothing is copied.
func (t *transport) sendFrame(to uint64, k Kind, f []byte) error {
	l, err := t.upPeer(to)
	if err != nil {
		return err
	}
	return t.queue(l, to, k, f)
}

func (t *transport) queue(l *link, to uint64, k Kind, f []byte) error {
	binary.BigEndian.PutUint32(f, uint32(len(f)-4))
	f[4] = byte(k)
	select {
	case l.q <- f:
		t.sent[k].Add(1)
		t.sentBytes[k].Add(int64(len(f)))
		return nil
	default:
		return fmt.Errorf("send to node %d: %w", to, ErrQueueFull)
	}
}

func (t *transport) dialLoop(l *link) {
	defer t.wg.Done()
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-t.stop:
			return
		default:
		}
		c, err := t.dial(l)
		if err != nil {
			t.lg.Debug().Err(err).Uint64("peer", l.id).Msg("cluster link dial")
			select {
			case <-t.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		// Frames queued while the link was down are stale: drop them.
		for len(l.q) > 0 {
			<-l.q
		}
		l.up.Store(true)
		t.lg.Info().Uint64("peer", l.id).Str("addr", l.addr).Msg("cluster link up")
		err = t.writeLoop(l, c)
		l.downAt.Store(time.Now().UnixNano())
		l.up.Store(false)
		_ = c.Close()
		t.failCalls(l.id)
		t.lg.Info().Err(err).Uint64("peer", l.id).Msg("cluster link down")
	}
}

func (t *transport) dial(l *link) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", l.addr, linkTimeout)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(linkTimeout))
	hs := make([]byte, 0, 21)
	hs = append(hs, handshakeMagic...)
	hs = append(hs, handshakeVersion)
	hs = binary.BigEndian.AppendUint64(hs, t.self)
	hs = binary.BigEndian.AppendUint64(hs, l.id)
	if _, err := c.Write(hs); err != nil {
		_ = c.Close()
		return nil, err
	}
	var resp [13]byte
	if _, err := io.ReadFull(c, resp[:]); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("handshake with node %d at %s: %w", l.id, l.addr, err)
	}
	if string(resp[:4]) != handshakeMagic || resp[4] != handshakeVersion {
		_ = c.Close()
		return nil, fmt.Errorf("handshake with node %d at %s: not a cluster peer", l.id, l.addr)
	}
	if got := binary.BigEndian.Uint64(resp[5:]); got != l.id {
		_ = c.Close()
		return nil, fmt.Errorf("handshake: %s is node %d, config says node %d", l.addr, got, l.id)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// writeLoop writes queued frames, flushing when the queue is empty (so a burst of
// messages to one node goes out in few writes), and a heartbeat when idle.
func (t *transport) writeLoop(l *link, c net.Conn) error {
	w := bufio.NewWriterSize(c, 256<<10)
	hb := time.NewTicker(heartbeatEvery)
	defer hb.Stop()
	heartbeat := []byte{0, 0, 0, 1, byte(kindHeartbeat)}
	// A read that fails tells the writer the peer closed the link.
	closed := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, c)
		close(closed)
	}()
	write := func(f []byte) error {
		_ = c.SetWriteDeadline(time.Now().Add(linkTimeout))
		_, err := w.Write(f)
		return err
	}
	for {
		var f []byte
		select {
		case <-t.stop:
			// A node closing still sends what it queued before, briefly: a leader's
			// last commit index lets its followers serve the records it acknowledged.
			_ = c.SetWriteDeadline(time.Now().Add(closeFlushWait))
			for len(l.q) > 0 {
				if _, err := w.Write(<-l.q); err != nil {
					break
				}
			}
			_ = w.Flush()
			return errors.New("closed")
		case <-closed:
			return errors.New("peer closed the link")
		case <-hb.C:
			f = heartbeat
		case f = <-l.q:
		}
		if err := write(f); err != nil {
			return err
		}
	drain:
		for {
			select {
			case f = <-l.q:
				if err := write(f); err != nil {
					return err
				}
			default:
				break drain
			}
		}
		_ = c.SetWriteDeadline(time.Now().Add(linkTimeout))
		if err := w.Flush(); err != nil {
			return err
		}
	}
}

func (t *transport) acceptLoop() {
	defer t.wg.Done()
	for {
		c, err := t.ln.Accept()
		if err != nil {
			select {
			case <-t.stop:
				return
			default:
			}
			t.lg.Warn().Err(err).Msg("cluster accept")
			time.Sleep(50 * time.Millisecond)
			continue
		}
		t.inMu.Lock()
		select {
		case <-t.stop:
			// Accepted as close ran: close has closed the connections it found, and
			// would wait for this one's reader forever (the peer keeps it open).
			t.inMu.Unlock()
			_ = c.Close()
			return
		default:
		}
		t.in[c] = struct{}{}
		t.inMu.Unlock()
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			err := t.readLoop(c)
			t.lg.Debug().Err(err).Msg("cluster inbound link closed")
			_ = c.Close()
			t.inMu.Lock()
			delete(t.in, c)
			t.inMu.Unlock()
		}()
	}
}

func (t *transport) readLoop(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(linkTimeout))
	var hs [21]byte
	if _, err := io.ReadFull(c, hs[:]); err != nil {
		return err
	}
	if string(hs[:4]) != handshakeMagic || hs[4] != handshakeVersion {
		return errors.New("not a cluster peer")
	}
	from, to := binary.BigEndian.Uint64(hs[5:13]), binary.BigEndian.Uint64(hs[13:21])
	if to != t.self {
		return fmt.Errorf("peer %d dialled node %d, this is node %d", from, to, t.self)
	}
	if t.peer(from) == nil {
		return fmt.Errorf("node %d is not a configured peer", from)
	}
	resp := append([]byte(handshakeMagic), handshakeVersion)
	resp = binary.BigEndian.AppendUint64(resp, t.self)
	if _, err := c.Write(resp); err != nil {
		return err
	}
	r := bufio.NewReaderSize(c, 256<<10)
	var hdr [4]byte
	for {
		_ = c.SetReadDeadline(time.Now().Add(linkTimeout))
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return err
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n == 0 || n > maxFrame {
			return fmt.Errorf("frame of %d bytes from node %d", n, from)
		}
		f := make([]byte, n)
		if _, err := io.ReadFull(r, f); err != nil {
			return err
		}
		t.peer(from).heard.Store(time.Now().UnixNano())
		k := Kind(f[0])
		if k == kindHeartbeat {
			continue
		}
		if h := t.handlers[k].Load(); h != nil {
			(*h)(from, f[1:])
		}
	}
}

// register names a call method; h runs on the link's read goroutine in arrival order
// and must answer through reply without blocking (reply may be called later, from
// any goroutine, once).
func (t *transport) register(method byte, h func(from uint64, body []byte, reply func([]byte, error))) {
	t.callMu.Lock()
	t.methods[method] = h
	t.callMu.Unlock()
}

// call sends a request to node to and calls done with the answer, an error the callee
// returned (a *remoteError) or a transport error; within timeout, exactly once.
func (t *transport) call(to uint64, method byte, body []byte, timeout time.Duration, done func([]byte, error)) {
	req := make([]byte, callHeader, callHeader+len(body))
	t.callFrame(to, method, append(req, body...), timeout, done)
}

// callHeader is the room a request built for callFrame leaves free in front of its
// body: the frame header, the call id and the method.
const callHeader = frameHeader + 9

// callFrame is call for a request whose body was built behind callHeader bytes left
// free (a forwarded append's records are then not copied once more); req is the
// transport's from then on.
func (t *transport) callFrame(to uint64, method byte, req []byte, timeout time.Duration, done func([]byte, error)) {
	t.callMu.Lock()
	t.nextID++
	id := t.nextID
	pc := &pendingCall{to: to, done: done}
	t.calls[id] = pc
	pc.timer = time.AfterFunc(timeout, func() { t.finishCall(id, nil, fmt.Errorf("call node %d: %w", to, errCallTimeout)) })
	t.callMu.Unlock()
	binary.BigEndian.PutUint64(req[frameHeader:], id)
	req[frameHeader+8] = method
	if err := t.sendFrame(to, kindRequest, req); err != nil {
		t.finishCall(id, nil, err)
	}
}

var (
	errCallTimeout = errors.New("call timed out")
	// errLinkLost: the link went down after the request was queued; whether the
	// callee got it is unknown.
	errLinkLost = errors.New("link lost with the call under way")
)

// failCalls ends the calls under way to a node whose link went down: their answers
// would come back on a link that is gone.
func (t *transport) failCalls(to uint64) {
	t.callMu.Lock()
	var ids []uint64
	for id, c := range t.calls {
		if c.to == to {
			ids = append(ids, id)
		}
	}
	t.callMu.Unlock()
	for _, id := range ids {
		t.finishCall(id, nil, fmt.Errorf("call node %d: %w", to, errLinkLost))
	}
}

// remoteError is an error the called node answered with.
type remoteError struct{ msg string }

func (e *remoteError) Error() string { return e.msg }

func (t *transport) finishCall(id uint64, body []byte, err error) {
	t.callMu.Lock()
	pc := t.calls[id]
	delete(t.calls, id)
	t.callMu.Unlock()
	if pc == nil {
		return
	}
	pc.timer.Stop()
	pc.done(body, err)
}

func (t *transport) onRequest(from uint64, msg []byte) {
	if len(msg) < 9 {
		return
	}
	id, method, body := binary.BigEndian.Uint64(msg), msg[8], msg[9:]
	t.callMu.Lock()
	h := t.methods[method]
	t.callMu.Unlock()
	var once atomic.Bool
	reply := func(resp []byte, err error) {
		if !once.CompareAndSwap(false, true) {
			return
		}
		out := binary.BigEndian.AppendUint64(make([]byte, frameHeader, frameHeader+9+len(resp)), id)
		if err != nil {
			out = append(out, 1)
			out = append(out, err.Error()...)
		} else {
			out = append(out, 0)
			out = append(out, resp...)
		}
		if serr := t.sendFrame(from, kindResponse, out); serr != nil {
			t.lg.Debug().Err(serr).Uint64("node", from).Msg("call answer not sent")
		}
	}
	if h == nil {
		reply(nil, fmt.Errorf("node %d has no method %d", t.self, method))
		return
	}
	h(from, bytes.Clone(body), reply)
}

func (t *transport) onResponse(_ uint64, msg []byte) {
	if len(msg) < 9 {
		return
	}
	id := binary.BigEndian.Uint64(msg)
	if msg[8] != 0 {
		t.finishCall(id, nil, &remoteError{msg: string(msg[9:])})
		return
	}
	t.finishCall(id, msg[9:], nil)
}
