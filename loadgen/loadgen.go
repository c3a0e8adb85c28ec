// Package loadgen is an MQTT load generator: N publishers, each on its own connection,
// keeping a window of QoS 1/2 publishes in flight (or streaming QoS 0), optionally capped
// at a rate, recording the acknowledgement latency of every publish. It speaks MQTT
// 3.1.1 and 5 to any broker, with a lean codec so the generator is not the bottleneck.
package loadgen

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config describes one load run.
type Config struct {
	// Addr is the broker's host:port.
	Addr string
	// Version is V311 (default) or V5.
	Version byte
	// QoS is 0, 1 or 2.
	QoS byte
	// Publishers is the number of connections (default 1).
	Publishers int
	// Messages is the total to publish, shared out over the publishers; 0 means run
	// for Duration instead.
	Messages int
	// Duration bounds the run when Messages is 0.
	Duration time.Duration
	// PayloadSize is the bytes of each payload (at least 8 with StampPayload).
	PayloadSize int
	// InFlight is each publisher's window of unacknowledged QoS 1/2 publishes (default
	// 20, as mosquitto_pub); an MQTT 5 broker's Receive Maximum lowers it.
	InFlight int
	// Rate caps the aggregate publishes per second; 0 means as fast as acks allow.
	Rate float64
	// Topic is the topic of publisher i: "%d" is replaced by i (default "bench/%d").
	Topic string
	// ClientIDPrefix prefixes each publisher's client id "<prefix>-<i>".
	ClientIDPrefix string
	// Username and Password are sent in CONNECT when not empty.
	Username, Password string
	// StampPayload writes the send time (Unix ns, big endian) in the first 8 payload
	// bytes, for end-to-end latency measured by a subscriber.
	StampPayload bool
	// Progress, when set, is called about once a second while the run lasts.
	Progress func(Progress)
}

// Progress is a snapshot of a running load.
type Progress struct {
	Elapsed time.Duration
	Sent    int64
	Acked   int64
}

// Result is the outcome of a run.
type Result struct {
	Publishers int
	// InFlight is the window actually used (after a broker's Receive Maximum).
	InFlight int
	Sent     int64
	// Acked counts acknowledged publishes (QoS 0: publishes the broker had read when
	// it answered the PINGREQ sent after the last one).
	Acked   int64
	Elapsed time.Duration
	// Latency holds the ack latency of each QoS 1/2 publish; empty at QoS 0.
	Latency Histogram
}

// MsgPerSec is the acknowledged publishes per second.
func (r Result) MsgPerSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Acked) / r.Elapsed.Seconds()
}

func (c *Config) setDefaults() error {
	if c.Addr == "" {
		return errors.New("no broker address")
	}
	if c.Version == 0 {
		c.Version = V311
	}
	if c.Version != V311 && c.Version != V5 {
		return fmt.Errorf("MQTT version %d not supported (want 4 for 3.1.1 or 5)", c.Version)
	}
	if c.QoS > 2 {
		return fmt.Errorf("QoS %d not valid", c.QoS)
	}
	if c.Publishers <= 0 {
		c.Publishers = 1
	}
	if c.Messages <= 0 && c.Duration <= 0 {
		return errors.New("neither a message count nor a duration")
	}
	if c.InFlight <= 0 {
		c.InFlight = 20
	}
	if c.InFlight > 65535 {
		c.InFlight = 65535
	}
	if c.StampPayload && c.PayloadSize < 8 {
		c.PayloadSize = 8
	}
	if c.Topic == "" {
		c.Topic = "bench/%d"
	}
	if c.ClientIDPrefix == "" {
		c.ClientIDPrefix = fmt.Sprintf("loadgen-%d", os.Getpid())
	}
	return nil
}

// Run connects every publisher, then publishes until the count or the duration is
// reached, waits for the outstanding acknowledgements and disconnects.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.setDefaults(); err != nil {
		return Result{}, err
	}
	pubs := make([]*publisher, cfg.Publishers)
	defer func() {
		for _, p := range pubs {
			if p != nil {
				p.conn.Close()
			}
		}
	}()
	// Connect with bounded concurrency: a burst of hundreds of CONNECTs at once only
	// measures the broker's accept backlog.
	var wg sync.WaitGroup
	errs := make(chan error, cfg.Publishers)
	sem := make(chan struct{}, 32)
	for i := range pubs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			p, err := dial(ctx, &cfg, i)
			if err != nil {
				errs <- fmt.Errorf("publisher %d: %w", i, err)
				return
			}
			pubs[i] = p
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return Result{}, err
	}

	// A publisher blocked writing to a broker that stopped reading only wakes when
	// its connection closes.
	stopClose := context.AfterFunc(ctx, func() {
		for _, p := range pubs {
			p.conn.Close()
		}
	})
	defer stopClose()
	var sent, acked atomic.Int64
	start := time.Now()
	var deadline time.Time
	if cfg.Messages == 0 {
		deadline = start.Add(cfg.Duration)
	}
	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		if cfg.Progress == nil {
			return
		}
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-t.C:
				cfg.Progress(Progress{Elapsed: time.Since(start), Sent: sent.Load(), Acked: acked.Load()})
			}
		}
	}()
	runErrs := make(chan error, len(pubs))
	for i, p := range pubs {
		count := 0
		if cfg.Messages > 0 {
			count = cfg.Messages / len(pubs)
			if i < cfg.Messages%len(pubs) {
				count++
			}
		}
		var interval time.Duration
		if cfg.Rate > 0 {
			interval = time.Duration(float64(time.Second) * float64(len(pubs)) / cfg.Rate)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Stagger rate-capped publishers over one interval so they do not all fire at once.
			offset := interval * time.Duration(i) / time.Duration(len(pubs))
			if err := p.run(ctx, start.Add(offset), count, deadline, interval, &sent, &acked); err != nil {
				runErrs <- fmt.Errorf("publisher %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stopProgress)
	<-progressDone
	close(runErrs)
	res := Result{Publishers: len(pubs), InFlight: pubs[0].window, Sent: sent.Load(), Acked: acked.Load(), Elapsed: elapsed}
	for _, p := range pubs {
		res.Latency.Merge(&p.hist)
		if p.window < res.InFlight {
			res.InFlight = p.window
		}
	}
	if cfg.Progress != nil {
		cfg.Progress(Progress{Elapsed: elapsed, Sent: res.Sent, Acked: res.Acked})
	}
	return res, <-runErrs
}

// publisher is one connection. The sending goroutine owns sendAt slots while their
// packet id is out of the free list; the reading goroutine owns hist.
type publisher struct {
	cfg     *Config
	conn    net.Conn
	br      *bufio.Reader
	wmu     sync.Mutex // guards bw: the reader writes PUBREL at QoS 2
	bw      *bufio.Writer
	topic   []byte
	payload []byte
	window  int
	free    chan uint16
	sendAt  []atomic.Int64 // monotonic ns since base, by packet id
	base    time.Time
	hist    Histogram
	pong    chan struct{}
}

func dial(ctx context.Context, cfg *Config, i int) (*publisher, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	p := &publisher{
		cfg:    cfg,
		conn:   conn,
		br:     bufio.NewReaderSize(conn, 64<<10),
		bw:     bufio.NewWriterSize(conn, 64<<10),
		topic:  []byte(strings.ReplaceAll(cfg.Topic, "%d", fmt.Sprint(i))),
		window: cfg.InFlight,
		pong:   make(chan struct{}, 1),
	}
	p.payload = make([]byte, cfg.PayloadSize)
	for j := range p.payload {
		p.payload[j] = 'a' + byte(j%26)
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	writeConnect(p.bw, cfg.Version, fmt.Sprintf("%s-%d", cfg.ClientIDPrefix, i), cfg.Username, cfg.Password, 300, 0)
	if err := p.bw.Flush(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("send CONNECT: %w", err)
	}
	h, body, _, err := readPacket(p.br, nil)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("read CONNACK: %w", err)
	}
	if h>>4 != pktConnack {
		conn.Close()
		return nil, fmt.Errorf("expected CONNACK, got packet type %d", h>>4)
	}
	ca, err := parseConnack(cfg.Version, body)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("CONNACK: %w", err)
	}
	if ca.code != 0 {
		conn.Close()
		return nil, fmt.Errorf("connection refused: %s (0x%02x)", connectReasonText(ca.code), ca.code)
	}
	_ = conn.SetDeadline(time.Time{})
	if ca.receiveMax > 0 && int(ca.receiveMax) < p.window {
		p.window = int(ca.receiveMax)
	}
	p.free = make(chan uint16, p.window)
	for id := 1; id <= p.window; id++ {
		p.free <- uint16(id)
	}
	p.sendAt = make([]atomic.Int64, p.window+1)
	return p, nil
}

// run publishes count messages (or until deadline when count is 0), then waits for the
// acknowledgements and disconnects.
func (p *publisher) run(ctx context.Context, first time.Time, count int, deadline time.Time, interval time.Duration, sent, acked *atomic.Int64) error {
	p.base = time.Now()
	readErr := make(chan error, 1)
	go func() { readErr <- p.read(acked) }()
	qos := p.cfg.QoS
	stamp := p.cfg.StampPayload
	next := first
	fail := func(err error) error {
		p.conn.Close()
		<-readErr
		return err
	}
	for n := 0; count == 0 || n < count; n++ {
		if n&63 == 0 {
			if err := ctx.Err(); err != nil {
				return fail(err)
			}
		}
		if interval > 0 {
			if now := time.Now(); now.Before(next) {
				if err := p.flush(); err != nil {
					return fail(err)
				}
				time.Sleep(next.Sub(now))
			}
			next = next.Add(interval)
		}
		if !deadline.IsZero() && (n&15 == 0 || interval > 0) && !time.Now().Before(deadline) {
			break
		}
		var id uint16
		if qos > 0 {
			select {
			case id = <-p.free:
			default:
				// Window full: push what is buffered and wait for an ack.
				if err := p.flush(); err != nil {
					return fail(err)
				}
				select {
				case id = <-p.free:
				case err := <-readErr:
					return connLost(err)
				case <-ctx.Done():
					return fail(ctx.Err())
				}
			}
			p.sendAt[id].Store(int64(time.Since(p.base)))
		}
		if stamp {
			binary.BigEndian.PutUint64(p.payload, uint64(time.Now().UnixNano()))
		}
		p.wmu.Lock()
		writePublish(p.bw, p.cfg.Version, qos, p.topic, id, p.payload)
		p.wmu.Unlock()
		sent.Add(1)
		if qos == 0 {
			// At QoS 0 the broker's reading of the packet is the "ack".
			acked.Add(1)
		}
		if interval > 0 {
			if err := p.flush(); err != nil {
				return fail(err)
			}
		}
	}
	if err := p.flush(); err != nil {
		return fail(err)
	}
	// Drain: every id back in the free list means every publish was acknowledged.
	for i := 0; qos > 0 && i < p.window; i++ {
		select {
		case <-p.free:
		case err := <-readErr:
			return connLost(err)
		case <-ctx.Done():
			return fail(ctx.Err())
		}
	}
	if qos == 0 {
		// A broker answers packets of one connection in order: the PINGRESP says it
		// has read every publish before it.
		p.wmu.Lock()
		_ = p.bw.WriteByte(pktPingreq << 4)
		_ = p.bw.WriteByte(0)
		p.wmu.Unlock()
		if err := p.flush(); err != nil {
			return fail(err)
		}
		select {
		case <-p.pong:
		case err := <-readErr:
			return connLost(err)
		case <-ctx.Done():
			return fail(ctx.Err())
		}
	}
	p.wmu.Lock()
	_ = p.bw.WriteByte(pktDisconnect << 4)
	_ = p.bw.WriteByte(0)
	p.wmu.Unlock()
	_ = p.flush()
	p.conn.Close()
	<-readErr
	return nil
}

func connLost(err error) error {
	if err == nil {
		err = errors.New("connection closed")
	}
	return fmt.Errorf("connection lost: %w", err)
}

func (p *publisher) flush() error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	return p.bw.Flush()
}

// read handles acknowledgements until the connection closes.
func (p *publisher) read(acked *atomic.Int64) error {
	var buf []byte
	for {
		h, body, b, err := readPacket(p.br, buf)
		buf = b
		if err != nil {
			return err
		}
		switch h >> 4 {
		case pktPuback, pktPubcomp:
			if len(body) < 2 {
				return errMalformed
			}
			if len(body) > 2 && body[2] >= 0x80 {
				return fmt.Errorf("publish refused with reason code 0x%02x", body[2])
			}
			p.acked(binary.BigEndian.Uint16(body), acked)
		case pktPubrec:
			if len(body) < 2 {
				return errMalformed
			}
			if len(body) > 2 && body[2] >= 0x80 {
				return fmt.Errorf("publish refused with reason code 0x%02x", body[2])
			}
			p.wmu.Lock()
			writeIDPacket(p.bw, pktPubrel, binary.BigEndian.Uint16(body))
			err := p.bw.Flush()
			p.wmu.Unlock()
			if err != nil {
				return err
			}
		case pktPingresp:
			select {
			case p.pong <- struct{}{}:
			default:
			}
		case pktDisconnect:
			if len(body) > 0 {
				return fmt.Errorf("broker disconnected with reason code 0x%02x", body[0])
			}
			return errors.New("broker disconnected")
		}
	}
}

func (p *publisher) acked(id uint16, acked *atomic.Int64) {
	if id == 0 || int(id) > p.window {
		return // not ours; a broker bug, but not worth killing the run over
	}
	p.hist.Record(time.Since(p.base) - time.Duration(p.sendAt[id].Load()))
	acked.Add(1)
	select {
	case p.free <- id:
	default: // a duplicate ack: the id is already free
	}
}
