package mqtt

import (
	"bytes"
	"errors"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstreams/mqstreams/log"
	"github.com/mqstreams/mqstreams/mapping"
)

// replayOrigin marks replay messages in mochi's in-flight store, so a resumed session
// can tell them from other messages that reuse a packet id.
const replayOrigin = "$stream-replay"

// Delivered user properties (EMQX's `key` and `ts`, plus our `shard` and `offset`).
const (
	PropKey    = "key"
	PropTS     = "ts"
	PropShard  = "shard"
	PropOffset = "offset"
)

// window is how many QoS 1/2 messages may be in flight to the client: its receive
// maximum, capped by MaxInflight.
func (s *replaySession) window(cl *mochi.Client) int {
	w := int(cl.Properties.Props.ReceiveMaximum)
	if w == 0 {
		w = DefaultReplayInflight
	}
	if w > s.h.opts.MaxInflight {
		w = s.h.opts.MaxInflight
	}
	return w
}

// readShard sends one shard of sub from its next offset on: stored batches first, then
// each append as it becomes durable. Waiting on the shard's append notification taken
// before each read makes the hand-over from replay to live gapless.
func (s *replaySession) readShard(run *readerSet, sub *replaySub, shard int32) {
	defer run.wg.Done()
	s.mu.Lock()
	next := sub.next[shard]
	s.mu.Unlock()
	st := sub.stream
	lg := s.h.lg.With().Str("client", s.id).Str("remote", run.cl.Net.Remote).Str("stream", st.Name()).Int32("shard", shard).Logger()
	w := &shardSender{s: s, run: run, sub: sub, shard: shard, next: next}
	hold := time.NewTimer(windowHold)
	defer hold.Stop()
	// What mochi buffered goes out now, the SUBACK that started this reader first:
	// nothing may wait behind a reader that has nothing to send yet.
	flushHeld(run.cl)
	var (
		batches []log.Batch
		rr      *log.RecordReader // the batch being decoded, a chunk at a time
		recs    []log.StoredRecord
		last    int64 // last offset of the batch recs come from
	)
	for {
		if isClosed(run.stop) {
			return
		}
		if len(recs) == 0 {
			if rr != nil && !rr.Done() {
				var err error
				if recs, err = rr.Next(nil, replayDecodeRecords); err != nil {
					lg.Error().Err(err).Int64("offset", last).Msg("replay skips the rest of an undecodable batch")
					recs = nil
				} else if len(recs) > 0 {
					continue
				}
			}
			if rr != nil {
				rr = nil
				if last >= next {
					next, w.next = last+1, last+1 // records compacted away at the batch's end
				}
				continue
			}
			if len(batches) == 0 {
				// One write for all that one read brought.
				if err := w.flush(); err != nil {
					lg.Debug().Err(err).Msg("replay ends")
					return
				}
				if w.out.Cap() > 4*sendBufferBytes {
					w.release()
				}
				res, err := s.h.opts.Reader.ReadShard(run.ctx, log.ReadRequest{Stream: st.Name(), StreamID: st.ID(), Shard: shard,
					Offset: next, MaxBytes: s.h.opts.ReadBytes, Wait: replayPoll})
				if isClosed(run.stop) {
					return
				}
				switch {
				case errors.Is(err, log.ErrUnknownStream) || errors.Is(err, log.ErrUnknownShard):
					lg.Info().Err(err).Msg("replay ends: stream gone")
					s.streamDeleted(sub)
					return
				case errors.Is(err, log.ErrOffsetOutOfRange):
					if next < res.LogStart {
						lg.Info().Int64("from", next).Int64("to", res.LogStart).Msg("replay skips records removed by retention")
						next, w.next = res.LogStart, res.LogStart
						s.advance(sub, shard, next)
						continue
					}
					lg.Warn().Err(err).Int64("next", next).Int64("hwm", res.HighWatermark).Msg("replay ends")
					return
				case errors.Is(err, log.ErrUnavailable):
					// A cluster shard no replica of which answers now (a failover under
					// way): the same read again shortly.
					lg.Warn().Err(err).Msg("replay waits: shard unavailable")
					select {
					case <-run.stop:
						return
					case <-time.After(replayRetry):
					}
					continue
				case err != nil:
					lg.Error().Err(err).Msg("replay ends: read failed")
					return
				}
				// Grants are checked again after every read (which may have waited for
				// the records), so revoking read on the stream stops an open replay; it
				// starts again, checked, when the client reconnects.
				if authz := s.h.opts.Authorize; authz != nil && !authz(run.cl, st.Name(), "", false) {
					lg.Info().Msg("replay stops: read on the stream is no longer granted")
					return
				}
				batches = res.Batches
				continue
			}
			b := batches[0]
			batches = batches[1:]
			last = b.LastOffset
			var err error
			if rr, err = b.Reader(next); err != nil {
				lg.Error().Err(err).Int64("offset", b.BaseOffset).Msg("replay skips an undecodable batch")
				rr = nil
				if last >= next {
					next, w.next = last+1, last+1
				}
			}
			continue
		}
		err := w.put(&recs[0])
		if errors.Is(err, errWindowFull) {
			// What is queued must reach the client before it can acknowledge anything.
			if err := w.flush(); err != nil {
				lg.Debug().Err(err).Msg("replay ends")
				return
			}
			hold.Reset(windowHold)
			select {
			case <-w.wake:
				continue // a client keeping pace: go on with what was read
			case <-run.stop:
				return
			case <-hold.C:
			}
			// A slow or stalled client: wait holding nothing read, so it costs its
			// window only; the log is read again from next once there is room.
			batches, recs, rr = nil, nil, nil
			w.release()
			s.parked.Add(1)
			err := waitRoom(run, w.wake)
			s.parked.Add(-1)
			if err != nil {
				return
			}
			continue
		}
		if err != nil {
			if !errors.Is(err, errStopped) {
				lg.Debug().Err(err).Msg("replay ends")
			}
			return
		}
		next = recs[0].Offset + 1
		recs = recs[1:]
	}
}

// replayDecodeRecords is how many records a shard reader decodes at a time: a merged
// batch holds thousands, and a reader waiting for window room drops what it decoded.
const replayDecodeRecords = 256

// replayPoll is how long one read of a shard at its end waits for records before the
// reader checks its grants and reads again; replayRetry is the pause before reading a
// shard that was unavailable again.
const (
	replayPoll  = 30 * time.Second
	replayRetry = time.Second
)

// windowHold is how long a reader whose window is full keeps what it read, expecting
// acknowledgements, before it lets go of it and waits as a stalled reader.
const windowHold = 50 * time.Millisecond

// growShards starts readers for shards the stream gained while subscribed; they start
// at the new shard's first record, so nothing appended there is missed.
func (s *replaySession) growShards() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sub := range s.subs {
		run := sub.run
		if run == nil || run.stopped {
			continue
		}
		for n := sub.stream.Shards(); int32(len(sub.next)) < n; {
			shard := int32(len(sub.next))
			// The local start, without asking another node under the session's lock:
			// a shard added now is empty, and should retention have moved its start
			// already, the reader skips up to it.
			start, _, err := sub.stream.Offsets(shard)
			if err != nil {
				break
			}
			sub.next = append(sub.next, start)
			run.wg.Add(1)
			go s.readShard(run, sub, shard)
		}
	}
}

// shardSender encodes the PUBLISH packets of one shard reader into a buffer and writes
// them to the connection together, one system call for many messages.
type shardSender struct {
	s       *replaySession
	run     *readerSet
	sub     *replaySub
	shard   int32
	out     bytes.Buffer
	scratch bytes.Buffer
	packets int
	next    int64 // the shard position once out is written

	wake <-chan struct{} // when put found the window full: closed at the next ack
}

// errWindowFull tells the reader to wait for window room before the record.
var errWindowFull = errors.New("window full")

// release drops the output buffers while the reader waits.
func (w *shardSender) release() {
	w.out = bytes.Buffer{}
	w.scratch = bytes.Buffer{}
}

// sendBufferBytes is how much encoded output a reader gathers before writing.
const sendBufferBytes = 32 << 10

// put queues one record for the client, first waiting for window room at QoS 1/2.
func (w *shardSender) put(rec *log.StoredRecord) error {
	s, sub, cl := w.s, w.sub, w.run.cl
	o := sub.opts.Load()
	msg := mapping.FromRecord(rec.Record)
	if msg.Topic != "" && mapping.ValidTopic(msg.Topic) != nil {
		// A Kafka producer's header, not a topic any client could take: the record is
		// replayed under the stream's name (packet).
		msg.Topic = ""
		if f := s.h.opts.InvalidTopic; f != nil {
			f()
		}
	}
	after := rec.Offset + 1
	if (sub.match != "" && !mapping.MatchFilter(sub.match, msg.Topic)) || (o.noLocal && msg.ClientID == cl.ID) {
		w.next = after
		return nil
	}
	pk := s.packet(cl, sub, o, &msg, rec, w.shard)
	if pk.FixedHeader.Qos == 0 {
		if err := w.encode(cl, &pk); err != nil && !errors.Is(err, packets.ErrPacketTooLarge) {
			return err
		}
		w.next = after
		return w.maybeFlush()
	}

	// Take the wake-up channel before looking at the window, so an acknowledgement that
	// comes in between is not missed.
	win := w.run.win
	wake := win.wakeChan()
	s.sendMu.Lock()
	if !win.reserve(s.window(cl)) {
		s.sendMu.Unlock()
		w.wake = wake
		return errWindowFull
	}
	if isClosed(w.run.stop) {
		win.cancel()
		s.sendMu.Unlock()
		return errStopped
	}
	// The packet stays in mochi's in-flight store until acknowledged: it must not keep
	// the whole stored batch its payload points into alive.
	pk.Payload = bytes.Clone(pk.Payload)
	pk.Properties.CorrelationData = bytes.Clone(pk.Properties.CorrelationData)
	pid, err := s.nextPacketID(cl)
	if err != nil {
		win.cancel()
		s.sendMu.Unlock()
		return err
	}
	pk.PacketID = pid
	if err := w.encode(cl, &pk); err != nil {
		win.cancel()
		s.sendMu.Unlock()
		if errors.Is(err, packets.ErrPacketTooLarge) {
			w.next = after
			return nil
		}
		return err
	}
	w.next = after
	cl.State.Inflight.Set(pk)
	win.commit(pid)
	if s.h.opts.Broker != nil {
		atomic.AddInt64(&s.h.opts.Broker.Info.Inflight, 1) // mochi decrements it at the ack
	}
	s.mu.Lock()
	s.inflight[pid] = inflightRef{sub: sub, shard: w.shard, offset: rec.Offset, topic: pk.TopicName, created: pk.Created}
	if sub.next[w.shard] < w.next {
		sub.next[w.shard] = w.next
	}
	s.dirty = true
	s.mu.Unlock()
	s.sendMu.Unlock()
	return w.maybeFlush()
}

// waitRoom waits until an acknowledgement may have freed window room.
func waitRoom(run *readerSet, wake <-chan struct{}) error {
	// The recheck is a safety net only: every place in the window is freed by a hook
	// call that closes wake.
	t := time.NewTimer(windowRecheck)
	defer t.Stop()
	select {
	case <-wake:
	case <-t.C:
	case <-run.stop:
		return errStopped
	}
	return nil
}

// encode appends pk to the output as mochi's WritePacket would encode it; a packet
// larger than the client accepts is dropped, as MQTT prescribes, with ErrPacketTooLarge.
func (w *shardSender) encode(cl *mochi.Client, pk *packets.Packet) error {
	pk.ProtocolVersion = cl.Properties.ProtocolVersion
	pk.Mods.MaxSize = cl.Properties.Props.MaximumPacketSize
	// As mochi's WritePacket: a PUBLISH may carry response topic and correlation data
	// (the encoder drops them unless told so).
	pk.Mods.AllowResponseInfo = true
	w.scratch.Reset()
	if err := pk.PublishEncode(&w.scratch); err != nil {
		return err
	}
	if pk.Mods.MaxSize > 0 && uint32(w.scratch.Len()) > pk.Mods.MaxSize {
		return packets.ErrPacketTooLarge
	}
	w.out.Write(w.scratch.Bytes())
	w.packets++
	return nil
}

func (w *shardSender) maybeFlush() error {
	if w.out.Len() >= sendBufferBytes {
		return w.flush()
	}
	return nil
}

// flush writes the queued packets under the client's lock (as mochi's WritePacket),
// after anything mochi buffered (mochi_adapter.go), and
// records the shard position they reach. The write blocks while the client does not
// read: that is the back-pressure at QoS 0.
func (w *shardSender) flush() error {
	cl := w.run.cl
	if w.out.Len() > 0 {
		if cl.Closed() || cl.Net.Conn == nil {
			return mochi.ErrConnectionClosed
		}
		cl.Lock()
		n, err := writeOrdered(cl, w.out.Bytes())
		cl.Unlock()
		if b := w.s.h.opts.Broker; b != nil {
			atomic.AddInt64(&b.Info.BytesSent, int64(n))
			atomic.AddInt64(&b.Info.PacketsSent, int64(w.packets))
			atomic.AddInt64(&b.Info.MessagesSent, int64(w.packets))
		}
		w.out.Reset()
		w.packets = 0
		if err != nil {
			return err
		}
	}
	w.s.advance(w.sub, w.shard, w.next)
	return nil
}

// Replay packet ids come from the upper half of the id space. mochi keeps the ids of
// messages it sends and of the client's SUBSCRIBE, UNSUBSCRIBE and QoS 2 PUBLISH packets
// in one store and refuses a client packet whose id is in use there; clients number
// their packets from 1 up, so a stalled replay window parked in the low ids would make
// the client's next SUBSCRIBE or UNSUBSCRIBE fail with "packet identifier in use".
const (
	replayFirstPID = 0x8000
	replayPIDs     = 0x10000 - replayFirstPID
)

// nextPacketID picks a free id for a replay message; the caller holds sendMu.
func (s *replaySession) nextPacketID(cl *mochi.Client) (uint16, error) {
	// Under the client's lock, as mochi's NextPacketID, so the two do not pick one id.
	cl.Lock()
	defer cl.Unlock()
	for range replayPIDs {
		pid := uint16(replayFirstPID + s.pidSeq%replayPIDs)
		s.pidSeq++
		if _, used := cl.State.Inflight.Get(pid); used {
			continue
		}
		s.mu.Lock()
		_, ours := s.inflight[pid]
		s.mu.Unlock()
		if !ours {
			return pid, nil
		}
	}
	return 0, packets.ErrQuotaExceeded
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// packet builds the PUBLISH for a record: original topic, payload and MQTT 5 properties,
// plus the stream position as user properties.
func (s *replaySession) packet(cl *mochi.Client, sub *replaySub, o *subOptions, msg *mapping.Message, rec *log.StoredRecord, shard int32) packets.Packet {
	qos := o.qos
	if hasHeader(rec.Headers, mapping.HeaderQoS) && msg.QoS < qos {
		qos = msg.QoS // records from Kafka producers carry no MQTT QoS: the subscription's applies
	}
	topic := msg.Topic
	if topic == "" {
		topic = sub.stream.Name()
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos, Retain: o.retainAsPublished && msg.Retain},
		TopicName:   topic,
		Payload:     msg.Payload,
		Origin:      replayOrigin,
		Created:     time.Now().Unix(),
	}
	if cl.Properties.ProtocolVersion < 5 {
		return pk // 3.1.1 has no properties
	}
	p := &pk.Properties
	user := setProperties(p, msg, 4)
	if o.subID > 0 {
		p.SubscriptionIdentifier = []int{o.subID}
	}
	if utf8.Valid(rec.Key) { // a Kafka producer's key may be any bytes
		user = append(user, packets.UserProperty{Key: PropKey, Val: string(rec.Key)})
	}
	p.User = append(user,
		packets.UserProperty{Key: PropTS, Val: strconv.FormatInt(rec.TimestampUS, 10)},
		packets.UserProperty{Key: PropShard, Val: strconv.FormatInt(int64(shard), 10)},
		packets.UserProperty{Key: PropOffset, Val: strconv.FormatInt(rec.Offset, 10)},
	)
	return pk
}

func hasHeader(hs []log.Header, key string) bool {
	for i := range hs {
		if hs[i].Key == key {
			return true
		}
	}
	return false
}

// streamDeleted ends a subscription whose stream was deleted. MQTT has no way for a
// server to end one subscription, and one that silently stops delivering would leave
// the client waiting forever: the subscription leaves the session (so a resumed
// session does not find it again) and the client is disconnected, with reason 0x98
// (administrative action) on MQTT 5. Subscribing again then fails in the SUBACK.
func (s *replaySession) streamDeleted(sub *replaySub) {
	s.mu.Lock()
	cl := s.cl
	if s.subs[sub.filter] != sub {
		s.mu.Unlock()
		return // another shard's reader got here first
	}
	s.dropSubLocked(sub)
	s.mu.Unlock()
	if cl == nil {
		return
	}
	cl.State.Subscriptions.Delete(sub.filter)
	s.h.lg.Info().Str("client_id", s.id).Str("filter", sub.filter).Msg("stream deleted: subscription ended, client disconnected")
	// Not from this reader: the disconnect stops the session's readers and waits for them.
	go func() {
		if b := s.h.opts.Broker; b != nil {
			b.Topics.Unsubscribe(sub.filter, cl.ID)
			_ = b.DisconnectClient(cl, packets.ErrAdministrativeAction)
			return
		}
		cl.Stop(packets.ErrAdministrativeAction)
	}()
}
