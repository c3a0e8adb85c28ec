package kafkawire

import (
	"fmt"
	"hash/crc32"
	"math"
	"reflect"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/log"
)

// Fetch: v4-12.
//
// Returns the stored v2 record batches as they are (no re-encoding). Limits: max_bytes
// bounds the response and partition_max_bytes each partition, except that a
// partition's first batch is always returned whole when it is the first data in the
// response or still fits in max_bytes (docs/mapping.md, Kafka pitfall 4: otherwise the consumer stalls on a
// big batch). min_bytes/max_wait_ms are a long poll woken by the shards' append
// notifications, ending at the deadline or when the server closes; an error on any
// partition answers at once. Outside [log start, high watermark] is OFFSET_OUT_OF_RANGE;
// an unknown topic or partition UNKNOWN_TOPIC_OR_PARTITION. Every partition carries
// its high watermark, last stable offset (the first offset of the oldest open
// transaction, else the high watermark; log/txn.go) and log start (v5+). With
// isolation_level read_committed (1) a partition is read up to its last stable offset
// only, and carries the aborted transactions overlapping what it returns, whose records
// the client drops; control batches (transaction markers) are sent as stored. A read below the high watermark that finds no batch (a gap)
// answers an empty batch spanning the gap so the consumer moves on (docs/mapping.md, Kafka pitfall 5).
// Fetch sessions (v7+) are declined: the response's session id is always 0 and every
// request, incremental ones included, is served in full. v4 is the oldest version with
// v2 record batches (kafka-python uses it); v11 adds the rack (ignored) and preferred
// read replica (-1); v12 is flexible; v13+ would need topic ids in fetches.

func init() { register(1, 4, 12, handleFetch) }

// appendLogTime is the record batch attribute for LogAppendTime timestamps.
const appendLogTime = 0x08

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func handleFetch(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.FetchRequest)
	if n := fetchPartitions(req); n > s.cfg.MaxFetchPartitions {
		s.metrics.limitRefused("max_fetch_partitions")
		if req.Version < 7 {
			// No top-level error code before v7: the request cannot be answered.
			return nil, fmt.Errorf("%w: fetch names %d partitions (max %d)", errBadRequest, n, s.cfg.MaxFetchPartitions)
		}
		resp := req.ResponseKind().(*kmsg.FetchResponse)
		resp.ErrorCode = kerr.InvalidRequest.Code
		return resp, nil
	}
	f := fetch{s: s, c: c, req: req}
	var timer *time.Timer
	expired := false
	for {
		resp, waits, done := f.read()
		if done || req.MaxWaitMillis <= 0 || expired {
			f.account(resp)
			f.sizeResponse(resp)
			return resp, nil
		}
		if timer == nil {
			timer = time.NewTimer(time.Duration(req.MaxWaitMillis) * time.Millisecond)
			defer timer.Stop()
		}
		// Wait for an append to any fetched shard, the deadline or shutdown; the
		// notification channels were taken before reading, so no append is missed.
		// One case per distinct shard: a request naming one partition many times
		// must not build more cases than reflect.Select takes (65536).
		waits = distinctWaits(waits)
		cases := make([]reflect.SelectCase, 0, len(waits)+2)
		cases = append(cases,
			reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(s.done)},
			reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(timer.C)})
		for _, w := range waits {
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(w)})
		}
		switch i, _, _ := reflect.Select(cases); i {
		case 0:
			f.account(resp)
			f.sizeResponse(resp)
			return resp, nil
		case 1:
			// Deadline: read once more and answer whatever there is.
			expired = true
		}
	}
}

// fetch is one Fetch request being answered.
type fetch struct {
	s   *Server
	c   *conn
	req *kmsg.FetchRequest
	buf []byte // batches of this response, back to back (the connection's fbuf)
}

// responseMaxBytes caps the record bytes of one fetch response (see fetch.read).
const responseMaxBytes = 8 << 20

// maxKeptFetchBuf bounds the fetch buffer a connection keeps between requests: room for
// a capped response after append's growth, so a replaying consumer reuses it; a live
// tail never grows it.
const maxKeptFetchBuf = 2 * responseMaxBytes

// read builds the response from what is stored now. It returns the shards' append
// notifications (taken before their reads) and whether the response should go out
// now: min_bytes reached, or an error to report.
func (f *fetch) read() (resp *kmsg.FetchResponse, waits []<-chan struct{}, done bool) {
	req := f.req
	resp = req.ResponseKind().(*kmsg.FetchResponse)
	resp.SessionID = 0 // sessions declined
	total := 0
	// Like Kafka's broker-side fetch.max.bytes, the server caps a response below what
	// a client may ask: without sendfile every byte is copied, and multi-MiB copies
	// stall the garbage collector, so many 8 MiB responses beat a few 64 MiB ones.
	// The first batch still goes out whole, whatever its size.
	maxBytes := min(int(req.MaxBytes), responseMaxBytes)
	if cap(f.c.fbuf) == 0 {
		f.c.fbuf = takeBuf()
	}
	f.buf = f.c.fbuf[:0]
	defer func() {
		if cap(f.buf) <= maxKeptFetchBuf {
			f.c.fbuf = f.buf[:0]
		}
	}()
	for _, rt := range req.Topics {
		t := kmsg.NewFetchResponseTopic()
		t.Topic = rt.Topic
		st := f.s.stream(rt.Topic)
		for _, rp := range rt.Partitions {
			p := kmsg.NewFetchResponseTopicPartition()
			p.Partition = rp.Partition
			p.PreferredReadReplica = -1
			// Empty, not null: librdkafka rejects a null record set (size -1) in
			// Fetch v4-v11 as a parse failure, and Kafka never sends one.
			p.RecordBatches = []byte{}
			if req.IsolationLevel == 1 {
				// read_committed: no aborted transactions is an empty list, as
				// Kafka answers, rather than null.
				p.AbortedTransactions = []kmsg.FetchResponseTopicPartitionAbortedTransaction{}
			}
			if st == nil {
				p.ErrorCode = kerr.UnknownTopicOrPartition.Code
				done = true
				t.Partitions = append(t.Partitions, p)
				continue
			}
			w, err := st.Appended(rp.Partition)
			if err == nil {
				waits = append(waits, w)
				var n int
				n, err = f.readPartition(st, rp, &p, total, maxBytes)
				total += n
			}
			if err != nil {
				p.ErrorCode = offsetsErrorCode(err)
				done = true
			}
			t.Partitions = append(t.Partitions, p)
		}
		resp.Topics = append(resp.Topics, t)
	}
	if total >= int(req.MinBytes) {
		done = true
	}
	return resp, waits, done
}

// readPartition fills p for one partition and returns the batch bytes it added.
func (f *fetch) readPartition(st *log.Stream, rp kmsg.FetchRequestTopicPartition, p *kmsg.FetchResponseTopicPartition, total, maxBytes int) (n int, err error) {
	start, hwm, err := st.Offsets(rp.Partition)
	if err != nil {
		return 0, err
	}
	lso, err := st.LastStable(rp.Partition)
	if err != nil {
		return 0, err
	}
	lso = min(lso, hwm)
	p.HighWatermark, p.LastStableOffset, p.LogStartOffset = hwm, lso, start
	off := rp.FetchOffset
	if off < start || off > hwm {
		return 0, log.ErrOffsetOutOfRange
	}
	// read_committed reads up to the last stable offset only, with the aborted
	// transactions of what it returns (clients drop their records).
	upper := hwm
	if f.req.IsolationLevel == 1 {
		upper = lso
	}
	if off >= upper {
		return 0, nil
	}
	remaining := maxBytes - total
	if total > 0 && remaining <= 0 {
		return 0, nil // response full; the client asks again
	}
	limit := min(int(rp.PartitionMaxBytes), remaining)
	// Size the buffer once for what this read is likely to add (the shard's bytes
	// behind off, up to the limit) instead of letting appends double it, copying
	// what it holds each time; a live tail stays small.
	if want := min(limit, behindBytes(st.Size(rp.Partition), start, hwm, off)); cap(f.buf)-len(f.buf) < want {
		grown := make([]byte, len(f.buf), len(f.buf)+want)
		copy(grown, f.buf)
		f.buf = grown
	}
	from := len(f.buf)
	f.buf, err = st.ReadBytesTo(f.buf, rp.Partition, off, max(limit, 0), upper)
	if err != nil {
		f.buf = f.buf[:from]
		return 0, err
	}
	data := f.buf[from:len(f.buf):len(f.buf)]
	if len(data) == 0 {
		// Nothing stored from off up to the high watermark: answer an empty batch
		// over the gap, which clients skip past, instead of an empty answer they
		// would repeat forever.
		p.RecordBatches = gapBatch(off, upper-1)
		return len(p.RecordBatches), nil
	}
	// More than remaining can only be a first batch bigger than it (later batches are
	// added within the limit).
	if total > 0 && len(data) > remaining {
		f.buf = f.buf[:from]
		return 0, nil // does not fit behind the data already in the response
	}
	p.RecordBatches = data
	if f.req.IsolationLevel == 1 {
		ab, err := st.AbortedTxns(rp.Partition, off, upper)
		if err != nil {
			f.buf = f.buf[:from]
			return 0, err
		}
		for _, a := range ab {
			t := kmsg.NewFetchResponseTopicPartitionAbortedTransaction()
			t.ProducerID, t.FirstOffset = a.ProducerID, a.FirstOffset
			p.AbortedTransactions = append(p.AbortedTransactions, t)
		}
	}
	return len(data), nil
}

// behindBytes estimates the stored bytes from off to the high watermark from the shard's
// size, as if its records were all the same size.
func behindBytes(size, start, hwm, off int64) int {
	if hwm <= start || size <= 0 {
		return 0
	}
	return int(float64(size) * float64(hwm-off) / float64(hwm-start))
}

// maxKeptResponseBuf bounds the encoded-response buffer a connection keeps: a capped
// fetch response (its batches plus the per-partition fields) fits.
const maxKeptResponseBuf = maxKeptFetchBuf + 1<<20

// fetchBufs recycles a few fetch and response buffers of closed connections, so that
// consumers connecting for a replay reuse multi-MiB buffers instead of allocating and
// clearing new ones. A few only: idle buffers are memory nobody uses (and a sync.Pool
// would drop them at every garbage collection).
var fetchBufs = make(chan []byte, 4)

func takeBuf() []byte {
	select {
	case b := <-fetchBufs:
		return b[:0]
	default:
		return nil
	}
}

// releaseBuffers hands a closing connection's big buffers to the next connections.
func (c *conn) releaseBuffers() {
	for _, b := range []*[]byte{&c.fbuf, &c.wbuf} {
		if cap(*b) >= 1<<20 && cap(*b) <= maxKeptResponseBuf {
			select {
			case fetchBufs <- (*b)[:0]:
			default:
			}
		}
		*b = nil
	}
}

// sizeResponse makes the connection's response buffer big enough for resp before it is
// encoded, so that encoding copies the batches once instead of growing the buffer as
// it goes.
func (f *fetch) sizeResponse(resp *kmsg.FetchResponse) {
	need := 64
	for _, t := range resp.Topics {
		need += len(t.Topic) + 16
		for _, p := range t.Partitions {
			need += len(p.RecordBatches) + 64
		}
	}
	if cap(f.c.wbuf) >= need {
		return
	}
	if b := takeBuf(); cap(b) >= need {
		f.c.wbuf = b
		return
	}
	f.c.wbuf = make([]byte, 0, need)
}

// account records the bytes a response carries in the fetch metrics.
func (f *fetch) account(resp *kmsg.FetchResponse) {
	if f.s.metrics == nil {
		return
	}
	for _, t := range resp.Topics {
		n := 0
		for _, p := range t.Partitions {
			n += len(p.RecordBatches)
		}
		f.s.metrics.fetched(t.Topic, n)
	}
}

// gapBatch encodes an empty v2 record batch covering offsets first..last, as Kafka's
// compaction leaves behind, so that consumers advance their position past the gap.
func gapBatch(first, last int64) []byte {
	delta := last - first
	if delta > math.MaxInt32 {
		delta = math.MaxInt32
	}
	rb := kmsg.RecordBatch{
		FirstOffset:          first,
		PartitionLeaderEpoch: -1,
		Magic:                2,
		Attributes:           appendLogTime,
		LastOffsetDelta:      int32(delta),
		FirstTimestamp:       -1,
		MaxTimestamp:         -1,
		ProducerID:           -1,
		ProducerEpoch:        -1,
		FirstSequence:        -1,
	}
	b := rb.AppendTo(nil)
	// Length counts from the leader epoch on; the CRC-32C covers the attributes on.
	rb.Length = int32(len(b) - 12)
	b = rb.AppendTo(b[:0])
	rb.CRC = int32(crc32.Checksum(b[21:], castagnoli))
	return rb.AppendTo(b[:0])
}

func fetchPartitions(req *kmsg.FetchRequest) int {
	n := 0
	for _, t := range req.Topics {
		n += len(t.Partitions)
	}
	return n
}

// distinctWaits drops repeated notification channels (the same shard named twice).
func distinctWaits(waits []<-chan struct{}) []<-chan struct{} {
	seen := make(map[<-chan struct{}]struct{}, len(waits))
	out := waits[:0]
	for _, w := range waits {
		if _, dup := seen[w]; !dup {
			seen[w] = struct{}{}
			out = append(out, w)
		}
	}
	return out
}
