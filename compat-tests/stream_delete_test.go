package compattests

import (
	"bufio"
	"bytes"
	"context"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestDeletedStreamReaders: readers of a stream that is deleted over the REST API are
// told, not left waiting — mosquitto_sub replaying it over $stream/ is disconnected
// (and refused if it comes back), kcat consuming it over Kafka is told the partition is
// gone and stops — and the server keeps serving.
func TestDeletedStreamReaders(t *testing.T) {
	t.Parallel()
	ctx := Deadline(t, 2*time.Minute)
	srv := StartServer(t, ServerOptions{Config: "streams:\n  - {name: gone, filter: \"gone/#\", shards: 1}\n  - {name: kept, filter: \"kept/#\"}\n"})
	for _, p := range []string{"one", "two", "three"} {
		publishMosquitto(t, srv.MQTTAddr, "del-pub-"+p, "gone/x", p)
	}
	host, port := SplitAddr(t, srv.MQTTAddr)
	sub := startReader(t, ctx, NeedTool(t, "mosquitto_sub"), "-h", host, "-p", port, "-V", "mqttv5", "-i", "del-reader",
		"-t", "$stream/gone", "-D", "subscribe", "user-property", "stream-offset", "earliest", "-v")
	kcat := startReader(t, ctx, NeedTool(t, "kcat"), "-b", srv.KafkaAddr, "-C", "-u", "-t", "gone", "-o", "beginning", "-f", "%s\n",
		"-X", "topic.metadata.refresh.interval.ms=1000")
	sub.waitFor(t, ctx, "gone/x three")
	kcat.waitFor(t, ctx, "three")

	if code, body := curl(t, ctx, "-X", "DELETE", "http://"+srv.HTTPAddr+"/api/v5/message_streams/streams/gone"); code != 204 {
		t.Fatalf("delete: %d %s", code, body)
	}
	// mosquitto_sub ends: DISCONNECT 0x98, then (if it reconnects) its SUBACK is refused.
	select {
	case <-sub.done:
	case <-ctx.Done():
		t.Fatalf("mosquitto_sub still replaying the deleted stream:\n%s", sub.output())
	}
	t.Logf("mosquitto_sub ended:\n%s", sub.output())
	// kcat learns from metadata that the topic is gone, says so and ends.
	kcat.waitFor(t, ctx, "% ERROR: Topic gone [0] error")
	select {
	case <-kcat.done:
	case <-ctx.Done():
		t.Fatalf("kcat still consuming the deleted topic:\n%s", kcat.output())
	}

	// The server carries on: another stream still takes publishes and serves them.
	publishMosquitto(t, srv.MQTTAddr, "kept-pub", "kept/1", "still-here")
	if got := consume(t, srv.KafkaAddr, "kept", 1); len(got) != 1 || got[0].value != "still-here" {
		t.Fatalf("kept after the delete: %v", got)
	}
}

// reader is a client process whose combined output is collected line by line.
type reader struct {
	mu   sync.Mutex
	out  bytes.Buffer
	more chan struct{}
	done chan struct{}
}

func startReader(t *testing.T, ctx context.Context, bin string, args ...string) *reader {
	t.Helper()
	r := &reader{more: make(chan struct{}, 1), done: make(chan struct{})}
	cmd := exec.CommandContext(ctx, bin, args...)
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(r.done)
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			r.mu.Lock()
			r.out.WriteString(sc.Text() + "\n")
			r.mu.Unlock()
			select {
			case r.more <- struct{}{}:
			default:
			}
		}
		_ = cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
		<-r.done
	})
	return r
}

func (r *reader) output() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out.String()
}

// waitFor waits until the output holds s.
func (r *reader) waitFor(t *testing.T, ctx context.Context, s string) {
	t.Helper()
	for !strings.Contains(r.output(), s) {
		select {
		case <-r.more:
		case <-r.done:
			if !strings.Contains(r.output(), s) {
				t.Fatalf("exited without %q:\n%s", s, r.output())
			}
		case <-ctx.Done():
			t.Fatalf("no %q before the deadline:\n%s", s, r.output())
		}
	}
}
