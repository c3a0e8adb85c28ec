package kafkawire

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/mqstreams/mqstreams/auth"
	"github.com/mqstreams/mqstreams/mapping"
)

// A transaction's records are handed to MQTT delivery when it commits, once, and
// never when it aborts.
func TestTransactionDeliveredAtCommit(t *testing.T) {
	got := make(chan mapping.Produced, 8)
	sb := startSecureBroker(t, secureOpts{proto: "sasl_plaintext", deliver: func(p mapping.Produced) { got <- p }})
	cl, err := kgo.NewClient(kgo.SeedBrokers(sb.addr), kgo.SASL(plain.Auth{User: "admin", Pass: testPassword}.AsMechanism()),
		kgo.TransactionalID("deliver"), kgo.DefaultProduceTopic("open"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	txn := func(commit bool, v string) {
		t.Helper()
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		select {
		case p := <-got:
			t.Fatalf("handed over before the transaction ended: %+v", p)
		default:
		}
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	txn(false, "aborted")
	txn(true, "committed")
	select {
	case p := <-got:
		if len(p.Records) != 1 || string(p.Records[0].Value) != "committed" {
			t.Fatalf("handed over %+v", p)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("committed record not handed over")
	}
	select {
	case p := <-got:
		t.Fatalf("handed over again: %+v", p)
	case <-time.After(200 * time.Millisecond):
	}
}

// A record whose mqtt.topic the producer may not publish to is stored with the header
// renamed, so $stream replay (which reads the stored record, not who produced it)
// does not use the forged topic; a topic the producer may publish to is kept.
func TestForgedTopicHeaderRenamedWhenStored(t *testing.T) {
	users := testUsers(t)
	users = append(users, auth.User{Name: "svc", Credentials: users[0].Credentials, Rules: []auth.Rule{
		auth.StreamRule("open", auth.OpWrite),
		{Resource: auth.ResTopic, Name: "cmd/svc/#", Ops: auth.OpPublish},
	}})
	sb := startSecureBroker(t, secureOpts{proto: "sasl_plaintext", users: users})
	cl, err := kgo.NewClient(kgo.SeedBrokers(sb.addr), kgo.SASL(plain.Auth{User: "svc", Pass: testPassword}.AsMechanism()), kgo.DefaultProduceTopic("open"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, topic := range []string{"cmd/victim/unlock", "cmd/svc/a"} {
		r := &kgo.Record{Value: []byte(topic), Headers: []kgo.RecordHeader{{Key: "mqtt.topic", Value: []byte(topic)}}}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	bs, err := sb.l.Stream("open").Read(0, 1, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, b := range bs {
		rs, err := b.Records(1)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			keys = append(keys, r.Headers[0].Key+"="+string(r.Headers[0].Value))
		}
	}
	want := []string{mapping.HeaderTopicDenied + "=cmd/victim/unlock", mapping.HeaderTopic + "=cmd/svc/a"}
	if len(keys) != 2 || keys[0] != want[0] || keys[1] != want[1] {
		t.Fatalf("stored headers %v, want %v", keys, want)
	}
}
