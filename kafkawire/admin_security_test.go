package kafkawire

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mqstreams/mqstreams/auth"
)

// TestAdminAuthorization: the stream admin APIs need admin on each stream they change
// (TOPIC_AUTHORIZATION_FAILED otherwise, before saying whether it exists); log dirs
// show only streams the principal may describe.
func TestAdminAuthorization(t *testing.T) {
	users := testUsers(t)
	users = append(users, auth.User{Name: "ops", Credentials: users[0].Credentials, Rules: []auth.Rule{
		{Resource: auth.ResStream, Name: "ops.", Prefix: true, Ops: auth.OpAdmin},
	}})
	b := startSecureBroker(t, secureOpts{proto: protoSASLPlaintext, users: users})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := func(user string) *kadm.Client {
		return kadm.NewClient(b.client(t, kgo.SASL(scramMech(auth.ScramSHA256, user, testPassword))))
	}
	ops, reader := client("ops"), client("reader")

	if _, err := ops.CreateTopic(ctx, 2, 1, nil, "ops.t1"); err != nil {
		t.Fatalf("ops creates its own: %v", err)
	}
	if _, err := ops.CreateTopic(ctx, 2, 1, nil, "other"); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("ops creates another's: %v", err)
	}
	if _, err := reader.CreateTopic(ctx, 1, 1, nil, "secret"); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("reader creates an existing hidden topic: %v", err)
	}
	if r, err := reader.DeleteTopics(ctx, "open"); err != nil || !errors.Is(r["open"].Err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("reader deletes open: %v %+v", err, r)
	}
	if r, err := reader.UpdatePartitions(ctx, 3, "open"); err != nil || !errors.Is(r["open"].Err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("reader grows open: %v %+v", err, r)
	}
	ar, err := reader.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: kadm.StringPtr("1000")}}, "open")
	if err != nil || !errors.Is(ar[0].Err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("reader alters open: %v %+v", err, ar)
	}
	var os kadm.Offsets
	os.Add(kadm.Offset{Topic: "open", Partition: 0, At: 1})
	dr, err := reader.DeleteRecords(ctx, os)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := dr.Lookup("open", 0); !errors.Is(r.Err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("reader deletes records of open: %+v", r)
	}
	if st := b.l.Stream("open"); st == nil || st.Shards() != 1 {
		t.Fatal("open changed by refused requests")
	}
	dirs, err := reader.DescribeAllLogDirs(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	dirs.Each(func(d kadm.DescribedLogDir) {
		for topic := range d.Topics {
			seen[topic] = true
		}
	})
	if !seen["open"] || len(seen) != 1 {
		t.Fatalf("reader's log dirs show %v, want only open", seen)
	}
	if r, err := ops.DeleteTopics(ctx, "ops.t1"); err != nil || r["ops.t1"].Err != nil {
		t.Fatalf("ops deletes its own: %v %+v", err, r)
	}
}
