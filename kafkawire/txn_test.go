package kafkawire

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/log"
)

// consumeValues reads the stream from the start with the given isolation until want
// records arrived, then polls a little longer to catch any extra one.
func consumeValues(t *testing.T, tb *testBroker, topic string, committed bool, want int) []string {
	t.Helper()
	iso := kgo.ReadUncommitted()
	if committed {
		iso = kgo.ReadCommitted()
	}
	cl := tb.client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(iso), kgo.FetchMaxWait(100*time.Millisecond))
	var out []string
	poll := func(d time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		for len(out) < want {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				return
			}
			fs.EachRecord(func(r *kgo.Record) { out = append(out, string(r.Value)) })
		}
	}
	if want > 0 {
		poll(30 * time.Second)
	}
	if len(out) < want {
		t.Fatalf("consume %s: got %v before the deadline", topic, out)
	}
	extra := want
	want++ // anything more than expected shows up here
	poll(500 * time.Millisecond)
	want = extra
	return out
}

func listEnd(t *testing.T, tb *testBroker, topic string, committed bool) int64 {
	t.Helper()
	rc := dialRaw(t, tb.addr)
	req := kmsg.NewPtrListOffsetsRequest()
	req.Version = 4
	if committed {
		req.IsolationLevel = 1
	}
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Partition, rp.Timestamp = 0, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp := rc.roundTrip(req).(*kmsg.ListOffsetsResponse)
	p := resp.Topics[0].Partitions[0]
	if p.ErrorCode != 0 {
		t.Fatalf("list offsets: %v", kerr.ErrorForCode(p.ErrorCode))
	}
	return p.Offset
}

// A franz-go transactional producer commits and aborts; read_committed consumers see
// the committed records only, read_uncommitted both; ListOffsets and Fetch give the
// last stable offset while a transaction is open.
func TestTransactionsCommitAbort(t *testing.T) {
	tb := startBroker(t, true)
	tb.stream(t, log.StreamSpec{Name: "tx", Shards: 1})
	cl := tb.client(t, kgo.TransactionalID("tx-1"), kgo.DefaultProduceTopic("tx"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produce := func(commit bool, vals ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for _, v := range vals {
			if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	produce(true, "c1", "c2")
	produce(false, "a1", "a2")
	produce(true, "c3")

	// An open transaction holds the last stable offset back.
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("open")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	lso, hwm := listEnd(t, tb, "tx", true), listEnd(t, tb, "tx", false)
	if lso != 8 || hwm != 9 {
		t.Fatalf("LSO %d, high watermark %d; want 8, 9", lso, hwm)
	}
	if got := strings.Join(consumeValues(t, tb, "tx", true, 3), ","); got != "c1,c2,c3" {
		t.Fatalf("read_committed got %s", got)
	}
	if got := strings.Join(consumeValues(t, tb, "tx", false, 6), ","); got != "c1,c2,a1,a2,c3,open" {
		t.Fatalf("read_uncommitted got %s", got)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(consumeValues(t, tb, "tx", true, 4), ","); got != "c1,c2,c3,open" {
		t.Fatalf("read_committed after the last commit got %s", got)
	}
}

// txnConn drives the transactional APIs by hand.
type txnConn struct {
	t  *testing.T
	rc *rawConn
	id string
}

func (x txnConn) init(timeoutMS int32) (int64, int16, int16) {
	req := kmsg.NewPtrInitProducerIDRequest()
	req.Version, req.TransactionalID, req.TransactionTimeoutMillis = 4, kmsg.StringPtr(x.id), timeoutMS
	resp := x.rc.roundTrip(req).(*kmsg.InitProducerIDResponse)
	return resp.ProducerID, resp.ProducerEpoch, resp.ErrorCode
}

func (x txnConn) addPartition(pid int64, epoch int16, topic string, p int32) int16 {
	req := kmsg.NewPtrAddPartitionsToTxnRequest()
	req.Version, req.TransactionalID, req.ProducerID, req.ProducerEpoch = 3, x.id, pid, epoch
	rt := kmsg.NewAddPartitionsToTxnRequestTopic()
	rt.Topic, rt.Partitions = topic, []int32{p}
	req.Topics = append(req.Topics, rt)
	return x.rc.roundTrip(req).(*kmsg.AddPartitionsToTxnResponse).Topics[0].Partitions[0].ErrorCode
}

func (x txnConn) end(pid int64, epoch int16, commit bool) int16 {
	req := kmsg.NewPtrEndTxnRequest()
	req.Version, req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit = 3, x.id, pid, epoch, commit
	return x.rc.roundTrip(req).(*kmsg.EndTxnResponse).ErrorCode
}

func (x txnConn) addOffsets(pid int64, epoch int16, group string) int16 {
	req := kmsg.NewPtrAddOffsetsToTxnRequest()
	req.Version, req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Group = 3, x.id, pid, epoch, group
	return x.rc.roundTrip(req).(*kmsg.AddOffsetsToTxnResponse).ErrorCode
}

func (x txnConn) commitOffset(pid int64, epoch int16, group, topic string, offset int64) int16 {
	req := kmsg.NewPtrTxnOffsetCommitRequest()
	req.Version, req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Group = 3, x.id, pid, epoch, group
	req.Generation = -1
	rt := kmsg.NewTxnOffsetCommitRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset, rp.LeaderEpoch = 0, offset, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return x.rc.roundTrip(req).(*kmsg.TxnOffsetCommitResponse).Topics[0].Partitions[0].ErrorCode
}

func (x txnConn) produce(topic string, pid int64, epoch int16, seq int32, vals ...string) kmsg.ProduceResponseTopicPartition {
	b := rawBatch(x.t, attrTransactional, pid, epoch, seq, valueRecs(vals...)...)
	return produceRaw(x.t, x.rc, 9, topic, 0, b)
}

func codeName(c int16) string {
	if c == 0 {
		return "OK"
	}
	return kerr.ErrorForCode(c).(*kerr.Error).Message
}

// Bad input and fencing are answered in Kafka's terms and store nothing.
func TestTransactionBadInput(t *testing.T) {
	tb := startBroker(t, true)
	st := tb.stream(t, log.StreamSpec{Name: "tb", Shards: 1})
	x := txnConn{t: t, rc: dialRaw(t, tb.addr), id: "bad"}
	check := func(what string, got, want int16) {
		t.Helper()
		if got != want {
			t.Fatalf("%s: %s, want %s", what, codeName(got), codeName(want))
		}
	}
	check("EndTxn of an unknown transactional id", x.end(1234, 0, true), kerr.InvalidProducerIDMapping.Code)
	_, _, code := x.init(0)
	check("timeout 0", code, kerr.InvalidTransactionTimeout.Code)
	_, _, code = x.init(int32(time.Hour / time.Millisecond))
	check("timeout over the maximum", code, kerr.InvalidTransactionTimeout.Code)
	pid, e0, code := x.init(60000)
	check("init", code, 0)
	check("EndTxn with no transaction", x.end(pid, e0, true), kerr.InvalidTxnState.Code)
	check("produce before AddPartitionsToTxn", x.produce("tb", pid, e0, 0, "x").ErrorCode, kerr.InvalidTxnState.Code)
	check("add unknown partition", x.addPartition(pid, e0, "tb", 5), kerr.UnknownTopicOrPartition.Code)
	check("add", x.addPartition(pid, e0, "tb", 0), 0)
	check("produce seq 0", x.produce("tb", pid, e0, 0, "a").ErrorCode, 0)
	check("out-of-order sequence", x.produce("tb", pid, e0, 5, "b").ErrorCode, kerr.OutOfOrderSequenceNumber.Code)
	check("TxnOffsetCommit before AddOffsetsToTxn", x.commitOffset(pid, e0, "g", "tb", 1), kerr.InvalidTxnState.Code)

	// A second instance fences the first: its transaction is aborted.
	pid2, e1, code := x.init(60000)
	check("re-init", code, 0)
	if pid2 != pid || e1 <= e0 {
		t.Fatalf("re-init gave %d/%d after %d/%d", pid2, e1, pid, e0)
	}
	check("zombie produce", x.produce("tb", pid, e0, 1, "z").ErrorCode, kerr.InvalidProducerEpoch.Code)
	check("zombie AddPartitionsToTxn", x.addPartition(pid, e0, "tb", 0), kerr.ProducerFenced.Code)
	check("zombie EndTxn", x.end(pid, e0, true), kerr.ProducerFenced.Code)
	check("wrong producer id", x.end(pid+1, e1, true), kerr.InvalidProducerIDMapping.Code)
	if lso, _ := st.LastStable(0); lso != 2 {
		t.Fatalf("LSO %d after the fencing abort, want 2 (record, marker)", lso)
	}
	if got := strings.Join(consumeValues(t, tb, "tb", true, 0), ","); got != "" {
		t.Fatalf("read_committed sees %q of the aborted transaction", got)
	}
}

// A transaction ongoing past its timeout is aborted with the epoch bumped.
func TestTransactionTimeout(t *testing.T) {
	tb := startBroker(t, true)
	st := tb.stream(t, log.StreamSpec{Name: "tt", Shards: 1})
	x := txnConn{t: t, rc: dialRaw(t, tb.addr), id: "slow"}
	pid, epoch, code := x.init(300)
	if code != 0 {
		t.Fatal(codeName(code))
	}
	if c := x.addPartition(pid, epoch, "tt", 0); c != 0 {
		t.Fatal(codeName(c))
	}
	if p := x.produce("tt", pid, epoch, 0, "late"); p.ErrorCode != 0 {
		t.Fatal(codeName(p.ErrorCode))
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		lso, _ := st.LastStable(0)
		if _, hwm, _ := st.Offsets(0); lso == hwm && hwm == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("transaction not aborted by its timeout")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if c := x.end(pid, epoch, true); c != kerr.ProducerFenced.Code {
		t.Fatalf("commit after the timeout: %s", codeName(c))
	}
	fams, err := tb.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	timedOut := 0.0
	for _, f := range fams {
		if f.GetName() != "mqstreams_kafka_transactions_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == "timeout" {
				timedOut = m.GetCounter().GetValue()
			}
		}
	}
	if timedOut != 1 {
		t.Fatalf("mqstreams_kafka_transactions_total{outcome=timeout} = %v, want 1", timedOut)
	}
}

// Transaction state survives a restart: an open transaction still holds the LSO, its
// staged offsets commit with it, and only then.
func TestTransactionAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	s, l, stop := openBroker(t, dir, 0)
	if _, err := l.CreateStream(log.StreamSpec{Name: "tr", Shards: 1}); err != nil {
		t.Fatal(err)
	}
	x := txnConn{t: t, rc: dialRaw(t, s.Addr().String()), id: "durable"}
	pid, epoch, _ := x.init(60000)
	for _, c := range []int16{x.addPartition(pid, epoch, "tr", 0), x.produce("tr", pid, epoch, 0, "a", "b").ErrorCode,
		x.addOffsets(pid, epoch, "grp"), x.commitOffset(pid, epoch, "grp", "tr", 7)} {
		if c != 0 {
			t.Fatal(codeName(c))
		}
	}
	offsets := func() string {
		offs, err := l.GroupOffsets("grp")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, o := range offs {
			out = append(out, fmt.Sprintf("%s/%d=%d", o.Stream, o.Shard, o.Offset))
		}
		sort.Strings(out)
		return strings.Join(out, " ")
	}
	if got := offsets(); got != "" {
		t.Fatalf("staged offsets visible before the commit: %s", got)
	}
	stop()

	s, l, _ = openBroker(t, dir, 0)
	st := l.Stream("tr")
	if lso, _ := st.LastStable(0); lso != 0 {
		t.Fatalf("LSO after restart %d, want 0", lso)
	}
	x.rc = dialRaw(t, s.Addr().String())
	if p := x.produce("tr", pid, epoch, 2, "c"); p.ErrorCode != 0 || p.BaseOffset != 2 {
		t.Fatalf("produce after restart: %s at %d", codeName(p.ErrorCode), p.BaseOffset)
	}
	if c := x.end(pid, epoch, true); c != 0 {
		t.Fatal(codeName(c))
	}
	if c := x.end(pid, epoch, true); c != 0 {
		t.Fatalf("retried EndTxn: %s", codeName(c))
	}
	if got := offsets(); got != "tr/0=7" {
		t.Fatalf("offsets after commit: %q", got)
	}
	if lso, _ := st.LastStable(0); lso != 4 {
		t.Fatalf("LSO after commit %d, want 4", lso)
	}
}

// At start the coordinator agrees with the log: a partition whose AddPartitionsToTxn
// was lost (stored without waiting) is added back from the log's open transactions, and
// an open transaction nobody owns is aborted.
func TestTransactionReconcileAtStart(t *testing.T) {
	dir := t.TempDir()
	s, l, stop := openBroker(t, dir, 0)
	st, err := l.CreateStream(log.StreamSpec{Name: "rc", Shards: 2})
	if err != nil {
		t.Fatal(err)
	}
	x := txnConn{t: t, rc: dialRaw(t, s.Addr().String()), id: "lost"}
	pid, epoch, _ := x.init(60000)
	if c := x.addPartition(pid, epoch, "rc", 0); c != 0 {
		t.Fatal(codeName(c))
	}
	if p := x.produce("rc", pid, epoch, 0, "a"); p.ErrorCode != 0 {
		t.Fatal(codeName(p.ErrorCode))
	}
	// As if the AddPartitionsToTxn state never reached the disk.
	s.txns.mu.Lock()
	tx := *s.txns.byID["lost"]
	s.txns.mu.Unlock()
	tx.Parts = nil
	if err := l.PutEntry(txnKind, "lost", tx.value()); err != nil {
		t.Fatal(err)
	}
	// An open transaction of a producer id no transactional id holds.
	ch := make(chan error, 1)
	st.AppendTxnAsync(context.Background(), log.AppendBlock, 1, log.Txn{ProducerID: 99999, Epoch: 0}, []log.Record{{Value: []byte("orphan")}}, nil,
		func(_ log.AppendResult, err error) { ch <- err })
	if err := <-ch; err != nil {
		t.Fatal(err)
	}
	stop()

	s, l, _ = openBroker(t, dir, 0)
	st = l.Stream("rc")
	if lso, _ := st.LastStable(1); lso != 2 {
		t.Fatalf("orphan not aborted at start: LSO %d, want 2", lso)
	}
	x.rc = dialRaw(t, s.Addr().String())
	if c := x.end(pid, epoch, true); c != 0 {
		t.Fatal(codeName(c))
	}
	if lso, _ := st.LastStable(0); lso != 2 {
		t.Fatalf("LSO of the recovered partition %d, want 2 (committed)", lso)
	}
}
