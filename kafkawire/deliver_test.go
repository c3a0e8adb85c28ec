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

// Produced records are handed over once durable, with the producer's MQTT publish
// grant: write on the stream lets a record be stored, not published anywhere.
func TestProducedHandedOverWithPublishGrant(t *testing.T) {
	users := testUsers(t)
	c := users[0].Credentials
	users = append(users, auth.User{Name: "svc", Credentials: c, Rules: []auth.Rule{
		auth.StreamRule("open", auth.OpWrite),
		{Resource: auth.ResTopic, Name: "cmd/svc/#", Ops: auth.OpPublish},
	}})
	got := make(chan mapping.Produced, 4)
	sb := startSecureBroker(t, secureOpts{proto: "sasl_plaintext", users: users, deliver: func(p mapping.Produced) { got <- p }})
	cl, err := kgo.NewClient(kgo.SeedBrokers(sb.addr), kgo.SASL(plain.Auth{User: "svc", Pass: testPassword}.AsMechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := &kgo.Record{Topic: "open", Value: []byte("v"), Headers: []kgo.RecordHeader{{Key: "mqtt.topic", Value: []byte("cmd/victim/unlock")}}}
	if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		t.Fatal(err)
	}
	p := <-got
	if p.Stream != "open" || len(p.Records) != 1 || string(p.Records[0].Value) != "v" {
		t.Fatalf("handed over %+v", p)
	}
	if _, hw, err := sb.l.Stream("open").Offsets(p.Partition); err != nil || hw != 2 {
		t.Fatalf("handed over before stored: high watermark %d (%v)", hw, err)
	}
	if p.MayPublish == nil || p.MayPublish("cmd/victim/unlock") || !p.MayPublish("cmd/svc/a") {
		t.Fatal("the producer's publish grant is not what decides")
	}
}

// A record with 100,000 headers is stored once and handed over whole; the broker keeps
// serving.
func TestProduceManyHeaders(t *testing.T) {
	got := make(chan mapping.Produced, 1)
	sb := startSecureBroker(t, secureOpts{proto: "sasl_plaintext", deliver: func(p mapping.Produced) { got <- p }})
	cl, err := kgo.NewClient(kgo.SeedBrokers(sb.addr), kgo.SASL(plain.Auth{User: "admin", Pass: testPassword}.AsMechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	hs := make([]kgo.RecordHeader, 100000)
	for i := range hs {
		hs[i] = kgo.RecordHeader{Key: "h", Value: []byte("v")}
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "open", Value: []byte("many"), Headers: hs}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if p := <-got; len(p.Records) != 1 || len(p.Records[0].Headers) != 100000 {
		t.Fatalf("handed over %d records", len(p.Records))
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "open", Value: []byte("after")}).FirstErr(); err != nil {
		t.Fatalf("broker after the record: %v", err)
	}
	<-got
	if _, hw, _ := sb.l.Stream("open").Offsets(0); hw != 3 {
		t.Fatalf("high watermark %d, want 3 (fixture record + 2)", hw)
	}
}
