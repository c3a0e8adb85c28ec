package kafkawire

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"math"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/log"
)

// rawConn speaks kmsg-encoded requests over a plain TCP connection, as old clients
// (kafka-python 2.0.2) do, with no negotiation.
type rawConn struct {
	t    testing.TB
	nc   net.Conn
	corr int32
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc}
}

func (r *rawConn) send(req kmsg.Request) int32 {
	r.t.Helper()
	r.corr++
	frame := kmsg.NewRequestFormatter(kmsg.FormatterClientID("kafka-python")).AppendRequest(nil, req, r.corr)
	r.write(frame)
	return r.corr
}

func (r *rawConn) write(b []byte) {
	r.t.Helper()
	_ = r.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.nc.Write(b); err != nil {
		r.t.Fatal(err)
	}
}

// recv reads the response to req (sent with corr), decoding it at version v.
func (r *rawConn) recv(req kmsg.Request, corr int32) kmsg.Response {
	r.t.Helper()
	resp := req.ResponseKind()
	body, err := r.readFrame(30 * time.Second)
	if err != nil {
		r.t.Fatalf("read %s response: %v", kmsg.NameForKey(req.Key()), err)
	}
	rd := kbin.Reader{Src: body}
	if got := rd.Int32(); got != corr {
		r.t.Fatalf("correlation id %d, want %d", got, corr)
	}
	if resp.IsFlexible() && resp.Key() != apiVersionsKey {
		kmsg.SkipTags(&rd)
	}
	if err := resp.ReadFrom(rd.Src); err != nil {
		r.t.Fatalf("decode %s v%d response: %v", kmsg.NameForKey(req.Key()), resp.GetVersion(), err)
	}
	return resp
}

func (r *rawConn) readFrame(timeout time.Duration) ([]byte, error) {
	_ = r.nc.SetReadDeadline(time.Now().Add(timeout))
	var sz [4]byte
	if _, err := io.ReadFull(r.nc, sz[:]); err != nil {
		return nil, err
	}
	body := make([]byte, binary.BigEndian.Uint32(sz[:]))
	_, err := io.ReadFull(r.nc, body)
	return body, err
}

func (r *rawConn) roundTrip(req kmsg.Request) kmsg.Response {
	r.t.Helper()
	return r.recv(req, r.send(req))
}

// expectClosed checks that the server closes the connection without answering.
func (r *rawConn) expectClosed() {
	r.t.Helper()
	b, err := r.readFrame(30 * time.Second)
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		r.t.Fatalf("connection not closed (read %d bytes, err %v)", len(b), err)
	}
}

func apiVersionsReq(v int16) *kmsg.ApiVersionsRequest {
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = v
	req.ClientSoftwareName = "kafkawire-test"
	req.ClientSoftwareVersion = "1.0"
	return req
}

func checkApiKeys(t *testing.T, keys []kmsg.ApiVersionsResponseApiKey) {
	t.Helper()
	want := map[int16][2]int16{1: {4, 12}, 2: {0, 7}, 3: {0, 12}, 18: {0, 3}, 32: {0, 4}, 60: {0, 2}}
	got := map[int16][2]int16{}
	for _, k := range keys {
		got[k.ApiKey] = [2]int16{k.MinVersion, k.MaxVersion}
		if _, ok := apis[k.ApiKey]; !ok {
			t.Errorf("advertised key %d is not served", k.ApiKey)
		}
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("key %d advertised %v, want %v", k, got[k], w)
		}
	}
	if _, ok := got[68]; ok {
		t.Error("ConsumerGroupHeartbeat (68) advertised")
	}
}

func TestRawApiVersions(t *testing.T) {
	tb := startBroker(t, false)
	rc := dialRaw(t, tb.addr)
	for v := int16(0); v <= 3; v++ {
		resp := rc.roundTrip(apiVersionsReq(v)).(*kmsg.ApiVersionsResponse)
		if resp.ErrorCode != 0 {
			t.Fatalf("v%d: error %d", v, resp.ErrorCode)
		}
		checkApiKeys(t, resp.ApiKeys)
	}
	// A version we do not know (kmsg knows it, or not): a v0 body with our range.
	for _, v := range []int16{4, 127} {
		req := apiVersionsReq(v)
		var corr int32
		if v <= req.MaxVersion() {
			corr = rc.send(req)
		} else {
			rc.corr++
			corr = rc.corr
			frame := kmsg.NewRequestFormatter().AppendRequest(nil, apiVersionsReq(3), corr)
			binary.BigEndian.PutUint16(frame[6:8], uint16(v))
			rc.write(frame)
		}
		resp := rc.recv(apiVersionsReq(0), corr).(*kmsg.ApiVersionsResponse)
		if resp.ErrorCode != kerr.UnsupportedVersion.Code {
			t.Fatalf("v%d: error %d, want UNSUPPORTED_VERSION", v, resp.ErrorCode)
		}
		checkApiKeys(t, resp.ApiKeys)
	}
}

func TestRawPipelined(t *testing.T) {
	tb := startBroker(t, false)
	tb.stream(t, log.StreamSpec{Name: "p", Shards: 3})
	rc := dialRaw(t, tb.addr)
	// kafka-python 2.0.2 sends ApiVersions v0 and Metadata v0 back to back.
	av := apiVersionsReq(0)
	md := kmsg.NewPtrMetadataRequest()
	md.Version = 0
	c1, c2 := rc.send(av), rc.send(md)
	if resp := rc.recv(av, c1).(*kmsg.ApiVersionsResponse); resp.ErrorCode != 0 {
		t.Fatal(resp.ErrorCode)
	}
	resp := rc.recv(md, c2).(*kmsg.MetadataResponse)
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 3 {
		t.Fatalf("metadata v0: %+v", resp.Topics)
	}
}

func TestRawMetadata(t *testing.T) {
	tb := startBroker(t, false)
	tb.stream(t, log.StreamSpec{Name: "a", Shards: 2})
	tb.stream(t, log.StreamSpec{Name: "b", Shards: 1})
	rc := dialRaw(t, tb.addr)
	_, port, _ := net.SplitHostPort(tb.addr)
	md := func(v int16, topics []string, null bool) *kmsg.MetadataResponse {
		req := kmsg.NewPtrMetadataRequest()
		req.Version = v
		if !null {
			req.Topics = []kmsg.MetadataRequestTopic{}
		}
		for _, tp := range topics {
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr(tp)
			req.Topics = append(req.Topics, rt)
		}
		return rc.roundTrip(req).(*kmsg.MetadataResponse)
	}
	for _, v := range []int16{0, 1, 4, 9, 10, 12} {
		resp := md(v, nil, v > 0)
		if len(resp.Brokers) != 1 || resp.Brokers[0].NodeID != 0 || resp.Brokers[0].Host != "127.0.0.1" {
			t.Fatalf("v%d brokers: %+v", v, resp.Brokers)
		}
		if p := resp.Brokers[0].Port; p <= 0 || net.JoinHostPort("127.0.0.1", port) != tb.addr {
			t.Fatalf("v%d port %d", v, p)
		}
		if len(resp.Topics) != 2 || *resp.Topics[0].Topic != "a" || len(resp.Topics[0].Partitions) != 2 {
			t.Fatalf("v%d all topics: %+v", v, resp.Topics)
		}
		p := resp.Topics[0].Partitions[1]
		if p.Partition != 1 || p.Leader != 0 || p.ErrorCode != 0 || v >= 7 && p.LeaderEpoch != -1 {
			t.Fatalf("v%d partition: %+v", v, p)
		}
		if v >= 2 && (resp.ClusterID == nil || *resp.ClusterID != tb.s.clusterID) {
			t.Fatalf("v%d cluster id %v", v, resp.ClusterID)
		}
		if v >= 10 && resp.Topics[0].TopicID == [16]byte{} {
			t.Fatalf("v%d: zero topic id", v)
		}
	}
	if resp := md(1, nil, false); len(resp.Topics) != 0 {
		t.Fatalf("v1 empty topic list: %+v", resp.Topics)
	}
	resp := md(1, []string{"b", "nope"}, false)
	if len(resp.Topics) != 2 || resp.Topics[0].ErrorCode != 0 || resp.Topics[1].ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("v1 named topics: %+v", resp.Topics)
	}
	// v10+: by topic id.
	id := md(12, []string{"b"}, false).Topics[0].TopicID
	req := kmsg.NewPtrMetadataRequest()
	req.Version = 12
	rt := kmsg.NewMetadataRequestTopic()
	rt.TopicID = id
	req.Topics = append(req.Topics, rt)
	rt.TopicID = [16]byte{1}
	req.Topics = append(req.Topics, rt)
	byID := rc.roundTrip(req).(*kmsg.MetadataResponse)
	if len(byID.Topics) != 2 || byID.Topics[0].Topic == nil || *byID.Topics[0].Topic != "b" || byID.Topics[1].ErrorCode != kerr.UnknownTopicID.Code {
		t.Fatalf("by id: %+v", byID.Topics)
	}
}

func listOffsetsReq(v int16, topic string, ts int64) *kmsg.ListOffsetsRequest {
	req := kmsg.NewPtrListOffsetsRequest()
	req.Version = v
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Timestamp = ts
	rp.MaxNumOffsets = 1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

func TestRawListOffsets(t *testing.T) {
	tb := startBroker(t, false)
	st := tb.stream(t, log.StreamSpec{Name: "lo", Shards: 1})
	tb.clock.Store(5_000_000_000)
	appendRecs(t, st, 0, log.Record{Value: []byte("1")}, log.Record{Value: []byte("2")})
	tb.clock.Store(9_000_000_000)
	appendRecs(t, st, 0, log.Record{Value: []byte("3")})
	rc := dialRaw(t, tb.addr)
	for _, tc := range []struct {
		ts      int64
		v0      int64
		off, ms int64
	}{
		{-2, 0, 0, -1},
		{-1, 3, 3, -1},
		{5_000_000, 0, 0, 5_000_000},
		{5_000_001, 2, 2, 9_000_000},
		{9_000_001, 3, -1, -1}, // newer than every record: Kafka's -1/-1 (v0: the end)
		{math.MaxInt64, 3, -1, -1},
	} {
		r0 := rc.roundTrip(listOffsetsReq(0, "lo", tc.ts)).(*kmsg.ListOffsetsResponse)
		p0 := r0.Topics[0].Partitions[0]
		if p0.ErrorCode != 0 || len(p0.OldStyleOffsets) != 1 || p0.OldStyleOffsets[0] != tc.v0 {
			t.Errorf("v0 ts %d: %+v, want [%d]", tc.ts, p0, tc.v0)
		}
		r1 := rc.roundTrip(listOffsetsReq(1, "lo", tc.ts)).(*kmsg.ListOffsetsResponse)
		p1 := r1.Topics[0].Partitions[0]
		if p1.ErrorCode != 0 || p1.Offset != tc.off || p1.Timestamp != tc.ms {
			t.Errorf("v1 ts %d: offset %d ts %d, want %d %d", tc.ts, p1.Offset, p1.Timestamp, tc.off, tc.ms)
		}
	}
	r := rc.roundTrip(listOffsetsReq(7, "lo", -3)).(*kmsg.ListOffsetsResponse)
	if p := r.Topics[0].Partitions[0]; p.Offset != 2 || p.Timestamp != 9_000_000 || p.LeaderEpoch != -1 {
		t.Errorf("v7 max timestamp: %+v", p)
	}
	r = rc.roundTrip(listOffsetsReq(1, "nope", -1)).(*kmsg.ListOffsetsResponse)
	if p := r.Topics[0].Partitions[0]; p.ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Errorf("unknown topic: %+v", p)
	}
}

func fetchReq(v int16, topic string, partition int32, offset int64, maxWait, minBytes int32) *kmsg.FetchRequest {
	req := kmsg.NewPtrFetchRequest()
	req.Version = v
	req.MaxWaitMillis = maxWait
	req.MinBytes = minBytes
	req.MaxBytes = 50 << 20
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition = partition
	rp.FetchOffset = offset
	rp.PartitionMaxBytes = 1 << 20
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

// decodeBatches splits a partition's record batches and returns their records.
func decodeBatches(t *testing.T, b []byte) []kmsg.Record {
	t.Helper()
	var out []kmsg.Record
	for len(b) > 0 {
		var rb kmsg.RecordBatch
		if len(b) < 12 {
			t.Fatalf("%d trailing bytes", len(b))
		}
		n := 12 + int(binary.BigEndian.Uint32(b[8:12]))
		if err := rb.ReadFrom(b[:n]); err != nil {
			t.Fatal(err)
		}
		b = b[n:]
		raw := rb.Records
		for i := int32(0); i < rb.NumRecords; i++ {
			l, m := kbin.Varint(raw)
			var r kmsg.Record
			if err := r.ReadFrom(raw[:m+int(l)]); err != nil {
				t.Fatal(err)
			}
			r.OffsetDelta += int32(rb.FirstOffset) // absolute offset, for the test
			out = append(out, r)
			raw = raw[m+int(l):]
		}
	}
	return out
}

func TestRawFetch(t *testing.T) {
	tb := startBroker(t, false)
	st := tb.stream(t, log.StreamSpec{Name: "f", Shards: 2})
	appendRecs(t, st, 1, log.Record{Key: []byte("k0"), Value: []byte("v0")}, log.Record{Key: []byte("k1"), Value: []byte("v1")})
	appendRecs(t, st, 1, log.Record{Key: []byte("k2"), Value: []byte("v2")})
	rc := dialRaw(t, tb.addr)
	for _, v := range []int16{4, 5, 7, 11, 12} {
		resp := rc.roundTrip(fetchReq(v, "f", 1, 1, 0, 0)).(*kmsg.FetchResponse)
		p := resp.Topics[0].Partitions[0]
		if p.ErrorCode != 0 || p.HighWatermark != 3 || p.LastStableOffset != 3 || v >= 5 && p.LogStartOffset != 0 {
			t.Fatalf("v%d: %+v", v, p)
		}
		recs := decodeBatches(t, p.RecordBatches)
		if len(recs) != 3 || string(recs[2].Key) != "k2" || string(recs[1].Value) != "v1" {
			t.Fatalf("v%d: records %+v", v, recs)
		}
		if v >= 7 && (resp.SessionID != 0 || resp.ErrorCode != 0) {
			t.Fatalf("v%d: session %d error %d", v, resp.SessionID, resp.ErrorCode)
		}
	}
	// Out of range on both sides, unknown topic and partition.
	for _, tc := range []struct {
		topic     string
		partition int32
		offset    int64
		code      int16
	}{
		{"f", 1, 4, kerr.OffsetOutOfRange.Code},
		{"f", 1, -1, kerr.OffsetOutOfRange.Code},
		{"f", 2, 0, kerr.UnknownTopicOrPartition.Code},
		{"nope", 0, 0, kerr.UnknownTopicOrPartition.Code},
	} {
		resp := rc.roundTrip(fetchReq(4, tc.topic, tc.partition, tc.offset, 60_000, 1)).(*kmsg.FetchResponse)
		if p := resp.Topics[0].Partitions[0]; p.ErrorCode != tc.code {
			t.Errorf("%s/%d at %d: error %d, want %d", tc.topic, tc.partition, tc.offset, p.ErrorCode, tc.code)
		}
	}
	// At the high watermark with a short wait: an empty answer, no error.
	resp := rc.roundTrip(fetchReq(4, "f", 1, 3, 10, 1)).(*kmsg.FetchResponse)
	if p := resp.Topics[0].Partitions[0]; p.ErrorCode != 0 || len(p.RecordBatches) != 0 || p.HighWatermark != 3 {
		t.Fatalf("fetch at hwm: %+v", p)
	}
	// No records is an empty record set, never null (librdkafka rejects null), and
	// read_committed gets an empty aborted-transactions list.
	req4 := fetchReq(4, "f", 1, 3, 0, 0)
	req4.IsolationLevel = 1
	p := rc.roundTrip(req4).(*kmsg.FetchResponse).Topics[0].Partitions[0]
	if p.RecordBatches == nil || p.AbortedTransactions == nil {
		t.Fatalf("null record set or aborted transactions: %+v", p)
	}
	// An incremental-session request is served in full, without a session.
	req := fetchReq(12, "f", 1, 0, 0, 0)
	req.SessionID, req.SessionEpoch = 42, 3
	resp = rc.roundTrip(req).(*kmsg.FetchResponse)
	if resp.ErrorCode != 0 || resp.SessionID != 0 || len(decodeBatches(t, resp.Topics[0].Partitions[0].RecordBatches)) != 3 {
		t.Fatalf("incremental fetch: %+v", resp)
	}
}

func TestRawFetchLongPoll(t *testing.T) {
	tb := startBroker(t, false)
	st := tb.stream(t, log.StreamSpec{Name: "lp", Shards: 2})
	rc := dialRaw(t, tb.addr)
	req := fetchReq(12, "lp", 0, 0, 120_000, 1)
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition, rp.PartitionMaxBytes = 1, 1<<20
	req.Topics[0].Partitions = append(req.Topics[0].Partitions, rp)
	corr := rc.send(req)
	appendRecs(t, st, 1, log.Record{Value: []byte("wake")})
	// With a 120s max wait, the answer arrives before recv's 30s deadline only if
	// the append woke the poll.
	resp := rc.recv(req, corr).(*kmsg.FetchResponse)
	ps := resp.Topics[0].Partitions
	if len(ps) != 2 || len(ps[0].RecordBatches) != 0 {
		t.Fatalf("partitions: %+v", ps)
	}
	if recs := decodeBatches(t, ps[1].RecordBatches); len(recs) != 1 || string(recs[0].Value) != "wake" {
		t.Fatalf("records %+v", recs)
	}
	// The server closing ends a long poll too.
	rc.send(fetchReq(12, "lp", 0, 0, 120_000, 1))
	go tb.s.Close()
	if _, err := rc.readFrame(30 * time.Second); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("long poll outlived the server")
		}
	}
}

func TestGapBatch(t *testing.T) {
	b := gapBatch(10, 19)
	var rb kmsg.RecordBatch
	if err := rb.ReadFrom(b); err != nil {
		t.Fatal(err)
	}
	if rb.FirstOffset != 10 || rb.LastOffsetDelta != 9 || rb.NumRecords != 0 || rb.Magic != 2 || int(rb.Length) != len(b)-12 {
		t.Fatalf("gap batch %+v", rb)
	}
	if crc := crc32.Checksum(b[21:], castagnoli); uint32(rb.CRC) != crc {
		t.Fatalf("crc %x, want %x", uint32(rb.CRC), crc)
	}
}

func TestRawDescribeCluster(t *testing.T) {
	tb := startBroker(t, false)
	rc := dialRaw(t, tb.addr)
	for v := int16(0); v <= 2; v++ {
		req := kmsg.NewPtrDescribeClusterRequest()
		req.Version = v
		req.EndpointType = 1
		resp := rc.roundTrip(req).(*kmsg.DescribeClusterResponse)
		if resp.ErrorCode != 0 || resp.ClusterID != tb.s.clusterID || len(resp.Brokers) != 1 || resp.Brokers[0].Host != "127.0.0.1" {
			t.Fatalf("v%d: %+v", v, resp)
		}
	}
	req := kmsg.NewPtrDescribeClusterRequest()
	req.Version = 1
	req.EndpointType = 2
	if resp := rc.roundTrip(req).(*kmsg.DescribeClusterResponse); resp.ErrorCode != kerr.UnsupportedEndpointType.Code {
		t.Fatalf("controllers: %+v", resp)
	}
}

// TestMalformedRequests sends bad input on fresh connections: each gets Kafka's error
// or a closed connection; the server, other connections and the stored data carry on.
func TestMalformedRequests(t *testing.T) {
	tb := startBroker(t, false)
	st := tb.stream(t, log.StreamSpec{Name: "safe", Shards: 1})
	appendRecs(t, st, 0, log.Record{Value: []byte("keep")})
	bystander := dialRaw(t, tb.addr)
	bystander.roundTrip(apiVersionsReq(0))

	frame := func(req kmsg.Request) []byte { return kmsg.NewRequestFormatter().AppendRequest(nil, req, 7) }
	size := func(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
	withVersion := func(req kmsg.Request, v int16) []byte {
		b := frame(req)
		binary.BigEndian.PutUint16(b[6:8], uint16(v))
		return b
	}
	truncated := func(b []byte, cut int) []byte {
		b = b[:len(b)-cut]
		binary.BigEndian.PutUint32(b[:4], uint32(len(b)-4))
		return b
	}
	md0 := kmsg.NewPtrMetadataRequest()
	md0.Version = 0
	md0.Topics = []kmsg.MetadataRequestTopic{{Topic: kmsg.StringPtr("safe")}}
	negArray := frame(fetchReq(4, "safe", 0, 0, 0, 0))
	binary.BigEndian.PutUint32(negArray[4+10+len("")+4+4+4+4+1:], 0xffffffff) // topics count -1 (header 10 bytes incl. null client id)
	unknownKey := frame(apiVersionsReq(0))
	binary.BigEndian.PutUint16(unknownKey[4:6], 999)
	fetch13 := kmsg.NewPtrFetchRequest()
	fetch13.Version = 13

	for _, tc := range []struct {
		name   string
		send   []byte
		answer func(t *testing.T, rc *rawConn) // nil: the connection must be closed
	}{
		{"size beyond max", size(defaultMaxRequestBytes + 1), nil},
		{"negative size", size(0x80000000), nil},
		{"empty frame", size(0), nil},
		{"short header", append(size(3), 0, 3, 0), nil},
		{"unknown api key", unknownKey, nil},
		{"api not served", withVersion(kmsg.NewPtrWriteTxnMarkersRequest(), 0), nil},
		{"truncated metadata", truncated(frame(md0), 3), nil},
		{"list offsets v8, no error field", frame(listOffsetsReq(8, "safe", -1)), nil},
		{"fetch v13 beyond range", frame(fetch13), func(t *testing.T, rc *rawConn) {
			if resp := rc.recv(fetch13, 7).(*kmsg.FetchResponse); resp.ErrorCode != kerr.UnsupportedVersion.Code {
				t.Fatalf("fetch v13: error %d", resp.ErrorCode)
			}
		}},
		{"negative array length", negArray, func(t *testing.T, rc *rawConn) {
			if resp := rc.recv(fetchReq(4, "", 0, 0, 0, 0), 7).(*kmsg.FetchResponse); len(resp.Topics) != 0 {
				t.Fatalf("fetch with -1 topics answered %+v", resp.Topics)
			}
		}},
		{"announced more than sent", append(size(100), 0, 1, 0, 4), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, tb.addr)
			rc.write(tc.send)
			if tc.name == "announced more than sent" {
				_ = rc.nc.(*net.TCPConn).CloseWrite()
			}
			if tc.answer == nil {
				rc.expectClosed()
			} else {
				tc.answer(t, rc)
			}
		})
	}
	bystander.roundTrip(apiVersionsReq(0))
	resp := bystander.roundTrip(fetchReq(4, "safe", 0, 0, 0, 0)).(*kmsg.FetchResponse)
	if recs := decodeBatches(t, resp.Topics[0].Partitions[0].RecordBatches); len(recs) != 1 || string(recs[0].Value) != "keep" {
		t.Fatalf("stored data after bad requests: %+v", recs)
	}
}

func TestHandlerPanicClosesOnlyItsConnection(t *testing.T) {
	// Swap the table entry before the server starts and restore it after it has
	// stopped (cleanups run last-in first-out), so no connection sees the change.
	orig := apis[60]
	t.Cleanup(func() { apis[60] = orig })
	boom := orig
	boom.handle = func(*Server, *conn, kmsg.Request) (kmsg.Response, error) { panic("boom") }
	apis[60] = boom
	tb := startBroker(t, false)
	other := dialRaw(t, tb.addr)
	other.roundTrip(apiVersionsReq(0))
	rc := dialRaw(t, tb.addr)
	rc.send(kmsg.NewPtrDescribeClusterRequest())
	rc.expectClosed()
	other.roundTrip(apiVersionsReq(1))
	dialRaw(t, tb.addr).roundTrip(apiVersionsReq(2))
}
