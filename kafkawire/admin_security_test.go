package kafkawire

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

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
	client := func(user string) *kgo.Client {
		return b.client(t, kgo.SASL(scramMech(auth.ScramSHA256, user, testPassword)))
	}
	ops, reader := client("ops"), client("reader")

	if _, err := createTopic(t, ctx, ops, false, 2, 1, nil, "ops.t1"); err != nil {
		t.Fatalf("ops creates its own: %v", err)
	}
	if _, err := createTopic(t, ctx, ops, false, 2, 1, nil, "other"); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("ops creates another's: %v", err)
	}
	if _, err := createTopic(t, ctx, reader, false, 1, 1, nil, "secret"); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("reader creates an existing hidden topic: %v", err)
	}
	if err := deleteTopics(t, ctx, reader, "open")["open"]; !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("reader deletes open: %v", err)
	}
	if err := createPartitions(t, ctx, reader, 3, "open"); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("reader grows open: %v", err)
	}
	if err := alterIncremental(t, ctx, reader, "open", alterOp{kmsg.IncrementalAlterConfigOpSet, "retention.ms", "1000"}); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("reader alters open: %v", err)
	}
	if r := deleteRecords(t, ctx, reader, "open", map[int32]int64{0: 1})[0]; !errors.Is(r.err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("reader deletes records of open: %+v", r)
	}
	if st := b.l.Stream("open"); st == nil || st.Shards() != 1 {
		t.Fatal("open changed by refused requests")
	}
	seen := logDirSizes(t, ctx, reader)
	if _, ok := seen["open"]; !ok || len(seen) != 1 {
		t.Fatalf("reader's log dirs show %v, want only open", seen)
	}
	if err := deleteTopics(t, ctx, ops, "ops.t1")["ops.t1"]; err != nil {
		t.Fatalf("ops deletes its own: %v", err)
	}
}
