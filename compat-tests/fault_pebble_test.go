package compattests

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestFaultWALVanishes removes the WAL files Pebble keeps for reuse from under the
// running server (issue 15: files disappearing under the server). The next memtable
// switch (the idle flush) fails to rename one: that used to end the process with "sync:
// unlock of unlocked mutex". Now the server stays up, refuses writes in each protocol's
// terms (MQTT 5 PUBACK 0x97, Kafka KAFKA_STORAGE_ERROR), says why on /readyz, keeps
// serving reads, and after a restart has every acknowledged record and takes writes.
func TestFaultWALVanishes(t *testing.T) {
	srv := StartServer(t, ServerOptions{})
	ctx := Deadline(t, 3*time.Minute)
	pub := kafkaMQTTConnect(t, ctx, srv.MQTTAddr, "wal-pub")
	acked := map[string]bool{}
	seq := 0
	publish := func() byte {
		t.Helper()
		seq++
		payload := fmt.Sprintf("rec-%04d", seq)
		resp, err := pub.Publish(ctx, &paho.Publish{QoS: 1, Topic: "wal/test", Payload: []byte(payload)})
		if resp == nil {
			t.Fatalf("publish %s: %v", payload, err)
		}
		if resp.ReasonCode < 0x80 {
			acked[payload] = true
		}
		return resp.ReasonCode
	}
	wals := func() []string {
		names, _ := filepath.Glob(filepath.Join(srv.DataDir, "*.log"))
		sort.Strings(names) // Pebble numbers files in creation order
		return names
	}
	// Idle flushes (2 s after the last commit) switch WALs; the old one is kept for reuse.
	deadline := time.Now().Add(time.Minute)
	for len(wals()) < 2 {
		if rc := publish(); rc >= 0x80 {
			t.Fatalf("publish: reason %#x", rc)
		}
		for idle := time.Now().Add(10 * time.Second); len(wals()) < 2 && time.Now().Before(idle); {
			time.Sleep(100 * time.Millisecond)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no WAL kept for reuse after a minute of idle flushes: %v", wals())
		}
	}
	all := wals()
	for _, name := range all[:len(all)-1] {
		if err := os.Remove(name); err != nil {
			t.Fatal(err)
		}
	}
	if rc := publish(); rc >= 0x80 {
		t.Fatalf("publish into the current WAL: reason %#x", rc)
	}
	// The idle flush after it needs a new WAL and fails.
	deadline = time.Now().Add(time.Minute)
	for {
		code, body := srv.HTTPGet(t, "/readyz")
		if code == 503 && strings.Contains(body, "storage failed") {
			break
		}
		if !srv.running() {
			t.Fatalf("server exited when a WAL vanished:\n%s", tail(srv.Logs(), 20))
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d %q a minute after the WALs were removed", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if rc := publish(); rc != 0x97 {
		t.Fatalf("MQTT 5 publish after the storage failed: reason %#x, want 0x97", rc)
	}

	kc, err := kgo.NewClient(kgo.SeedBrokers(srv.KafkaAddr), kgo.DisableIdempotentWrite(), kgo.RecordRetries(1),
		kgo.ConsumeTopics("mqtt"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	if perr := kc.ProduceSync(ctx, &kgo.Record{Topic: "mqtt", Value: []byte("after-failure")}).FirstErr(); !errors.Is(perr, kerr.KafkaStorageError) {
		t.Fatalf("Kafka produce after the storage failed: %v, want KAFKA_STORAGE_ERROR", perr)
	}
	consumeAll(t, ctx, kc, acked)
	if !srv.running() {
		t.Fatal("server exited")
	}

	// A graceful stop returns (it does not wait for the stopped Pebble job) and the
	// restart recovers every acknowledged record and takes writes again.
	if err := srv.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code := srv.wait(t)
	t.Logf("exit code after SIGTERM with the storage failed: %d", code)
	srv.Restart(t)
	pub = kafkaMQTTConnect(t, ctx, srv.MQTTAddr, "wal-pub2")
	if rc := publish(); rc >= 0x80 {
		t.Fatalf("publish after the restart: reason %#x", rc)
	}
	kc2, err := kgo.NewClient(kgo.SeedBrokers(srv.KafkaAddr), kgo.ConsumeTopics("mqtt"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer kc2.Close()
	consumeAll(t, ctx, kc2, acked)
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
