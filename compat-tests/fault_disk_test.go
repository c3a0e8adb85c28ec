package compattests

// The full-disk fault test (issue 15): the data dir sits on a small tmpfs filled with a
// file; the server must refuse writes in each protocol's own terms, keep serving reads,
// resume writes by itself within 2 s of space returning, lose no acknowledged record,
// and start on a full disk refusing writes with one log line.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// mountTmpfs mounts a tmpfs of size bytes, unmounted at cleanup; it skips the test when
// mounting is not permitted (the log package's failing-filesystem test, TestWALNoSpace,
// covers the same paths without a mount).
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Skipf("full-disk test needs to mount a tmpfs (%v): the failing-vfs test in log/ (TestWALNoSpace) ran instead", err)
	}
	t.Logf("full-disk test on a real tmpfs of %d MiB at %s", size>>20, dir)
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// fillTo writes a filler file until dir has about leave bytes free.
func fillTo(t *testing.T, dir string, leave int64) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for free := freeBytes(t, dir); free > leave; free = freeBytes(t, dir) {
		n := min(int64(len(chunk)), free-leave)
		if _, err := f.Write(chunk[:n]); err != nil {
			t.Fatalf("fill: %v", err)
		}
	}
	return path
}

func TestFaultDiskFull(t *testing.T) {
	const minFree = 48 << 20
	disk := mountTmpfs(t, 256<<20)
	srv := StartServer(t, ServerOptions{DataDir: filepath.Join(disk, "data"),
		Config: fmt.Sprintf("storage:\n  min_free_bytes: %d\n", minFree)})
	ctx := Deadline(t, 4*time.Minute)

	pub := kafkaMQTTConnect(t, ctx, srv.MQTTAddr, "disk-pub")
	acked := map[string]bool{}
	seq := 0
	// publish sends one QoS 1 message and returns its PUBACK reason code.
	publish := func() byte {
		seq++
		payload := fmt.Sprintf("rec-%06d", seq)
		resp, err := pub.Publish(ctx, &paho.Publish{QoS: 1, Topic: "disk/test", Payload: []byte(payload)})
		if resp == nil { // paho returns the PUBACK with an error for reason codes >= 0x80
			t.Fatalf("publish %s: %v", payload, err)
		}
		if resp.ReasonCode < 0x80 {
			acked[payload] = true
		}
		return resp.ReasonCode
	}
	for i := 0; i < 200; i++ {
		if rc := publish(); rc >= 0x80 {
			t.Fatalf("publish before the disk filled: reason %#x", rc)
		}
	}

	filler := fillTo(t, disk, minFree/2)
	deadline := time.Now().Add(30 * time.Second)
	for {
		rc := publish()
		if rc == 0x97 {
			break
		}
		if rc >= 0x80 {
			t.Fatalf("publish on a full disk: reason %#x, want 0x97 (quota exceeded)", rc)
		}
		if time.Now().After(deadline) {
			t.Fatal("publishes still acknowledged on a full disk")
		}
	}
	// MQTT 3.1.1 has no refusal: the publisher is disconnected without an ack.
	lost := make(chan error, 1)
	o := pahov3.NewClientOptions().AddBroker("tcp://" + srv.MQTTAddr).SetClientID("disk-pub3").SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectionLostHandler(func(_ pahov3.Client, err error) { lost <- err })
	c3 := pahov3.NewClient(o)
	if tok := c3.Connect(); !tok.WaitTimeout(startTimeout) || tok.Error() != nil {
		t.Fatalf("3.1.1 connect: %v", tok.Error())
	}
	c3.Publish("disk/v3", 1, false, []byte("refused"))
	select {
	case <-lost:
	case <-time.After(30 * time.Second):
		t.Fatal("3.1.1 publisher not disconnected on a full disk")
	}
	code, body := srv.HTTPGet(t, "/readyz")
	if code != 503 || !strings.Contains(body, "disk full") {
		t.Fatalf("/readyz on a full disk: %d %q", code, body)
	}

	// Kafka produce is refused with KAFKA_STORAGE_ERROR; reads keep serving.
	kc, err := kgo.NewClient(kgo.SeedBrokers(srv.KafkaAddr), kgo.DisableIdempotentWrite(), kgo.RecordRetries(1),
		kgo.ConsumeTopics("mqtt"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	perr := kc.ProduceSync(ctx, &kgo.Record{Topic: "mqtt", Value: []byte("kafka-on-full-disk")}).FirstErr()
	if !errors.Is(perr, kerr.KafkaStorageError) {
		t.Fatalf("kafka produce on a full disk: %v, want KAFKA_STORAGE_ERROR", perr)
	}
	consumeAll(t, ctx, kc, acked)
	if !srv.running() {
		t.Fatal("server exited on a full disk")
	}
	_, metrics := srv.HTTPGet(t, "/metrics")
	if !strings.Contains(metrics, `mqstreams_storage_writes_refused_total{reason="disk_full"}`) || !strings.Contains(metrics, "mqstreams_storage_writable 0") {
		t.Fatal("full disk not in /metrics")
	}

	// Space returns: writes resume by themselves.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	for publish() >= 0x80 {
		if time.Since(freed) > 30*time.Second {
			t.Fatal("writes did not resume after space returned")
		}
	}
	resume := time.Since(freed)
	t.Logf("writes resumed %v after space returned", resume)
	if resume > 2*time.Second {
		t.Errorf("writes resumed after %v, want within 2s", resume)
	}
	if code, _ := srv.HTTPGet(t, "/readyz"); code != 200 {
		t.Fatalf("/readyz after space returned: %d", code)
	}
	for i := 0; i < 50; i++ {
		if rc := publish(); rc >= 0x80 {
			t.Fatalf("publish after space returned: %#x", rc)
		}
	}

	// Nothing acknowledged is lost across a crash.
	srv.KillRestart(t)
	kc2, err := kgo.NewClient(kgo.SeedBrokers(srv.KafkaAddr), kgo.ConsumeTopics("mqtt"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer kc2.Close()
	consumeAll(t, ctx, kc2, acked)

	// Start-up on a full disk: up, refusing writes, one log line, no loop.
	srv.Stop(t)
	filler = fillTo(t, disk, minFree/2)
	srv.Restart(t)
	srv.WaitLog(t, "disk full at start-up")
	if code, body := srv.HTTPGet(t, "/readyz"); code != 503 || !strings.Contains(body, "disk full") {
		t.Fatalf("/readyz after a start on a full disk: %d %q", code, body)
	}
	pub = kafkaMQTTConnect(t, ctx, srv.MQTTAddr, "disk-pub2")
	if rc := publish(); rc != 0x97 {
		t.Fatalf("publish after a start on a full disk: %#x, want 0x97", rc)
	}
	cpuBefore := procCPU(t, srv)
	time.Sleep(2 * time.Second) // the window in which a retry loop would show
	if n := strings.Count(srv.Logs(), "disk full at start-up"); n != 1 {
		t.Fatalf("%d start-up disk-full lines, want 1", n)
	}
	if cpu := procCPU(t, srv) - cpuBefore; cpu > time.Second {
		t.Fatalf("server busy on a full disk: %v of CPU in 2s", cpu)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for publish() >= 0x80 {
		if time.Now().After(deadline) {
			t.Fatal("writes did not resume after a start on a full disk")
		}
	}
}

// consumeAll reads the stream from the start until every payload in want was seen.
func consumeAll(t *testing.T, ctx context.Context, kc *kgo.Client, want map[string]bool) {
	t.Helper()
	missing := map[string]bool{}
	for k := range want {
		missing[k] = true
	}
	for len(missing) > 0 {
		fs := kc.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%d acknowledged records not read back (of %d)", len(missing), len(want))
		}
		fs.EachRecord(func(r *kgo.Record) { delete(missing, string(r.Value)) })
	}
}

// procCPU is the server process's user+system CPU time so far, from /proc.
func procCPU(t *testing.T, s *Server) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.proc.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the parenthesised command name; utime and stime are 14th and 15th.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	var ut, st int64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}
