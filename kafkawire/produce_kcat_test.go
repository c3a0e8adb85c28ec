package kafkawire

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mqstreams/mqstreams/log"
)

// TestProduceKcat produces with kcat (librdkafka: idempotence off, acks=all, record
// batch v2 only if Produce v3+ and Fetch v4+ are advertised) with zstd and snappy and
// reads back with kcat -C. Skipped without kcat on PATH.
func TestProduceKcat(t *testing.T) {
	bin, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat not installed")
	}
	tb := startBroker(t, false)
	tb.stream(t, log.StreamSpec{Name: "kc", Shards: 2})
	run := func(stdin string, args ...string) (stdout, stderr string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append([]string{"-b", tb.addr}, args...)...)
		cmd.WaitDelay = 5 * time.Second
		cmd.Stdin = strings.NewReader(stdin)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			t.Fatalf("kcat %s: %v\nstderr:\n%s", strings.Join(args, " "), err, errOut.String())
		}
		return out.String(), errOut.String()
	}
	var want []string
	for i, codec := range []string{"zstd", "snappy", "gzip", "lz4"} {
		p := fmt.Sprint(i % 2)
		var in strings.Builder
		for j := range 3 {
			fmt.Fprintf(&in, "%s-k%d:%s\n", codec, j, strings.Repeat(fmt.Sprintf("%s value %d ", codec, j), 40))
			want = append(want, fmt.Sprintf("%s|%s-k%d|%s|h=%s", p, codec, j, strings.Repeat(fmt.Sprintf("%s value %d ", codec, j), 40), codec))
		}
		// -X linger.ms=100 puts the three messages in one (compressed) batch. With
		// -d msg librdkafka logs when it sends a batch uncompressed because of the
		// broker's versions (zstd needs Produce v7 and Fetch v10; librdkafka up to
		// 2.11.0 needs Produce v0 in range for gzip, snappy and lz4).
		_, stderr := run(in.String(), "-P", "-t", "kc", "-p", p, "-z", codec, "-K", ":", "-H", "h="+codec,
			"-X", "linger.ms=100", "-d", "msg")
		if strings.Contains(stderr, "does not support compression") {
			t.Errorf("kcat -z %s did not compress:\n%s", codec, stderr)
		}
	}
	out, _ := run("", "-C", "-t", "kc", "-o", "beginning", "-e", "-q", "-f", "%p|%k|%s|%h\n")
	got := strings.Split(strings.TrimSpace(out), "\n")
	if fmt.Sprint(sortedCopy(got)) != fmt.Sprint(sortedCopy(want)) {
		t.Fatalf("kcat -C read\n%s\nwant\n%s", strings.Join(sortedCopy(got), "\n"), strings.Join(sortedCopy(want), "\n"))
	}
}

func sortedCopy(in []string) []string {
	out := append([]string(nil), in...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}
