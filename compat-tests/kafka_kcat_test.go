package compattests

// kcat (librdkafka) against a real server: -L metadata, -C replays from the beginning
// and from a time (-o s@MS, with -Q for the looked-up offsets), and -o end for the long
// poll.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestKafkaKcat(t *testing.T) {
	t.Parallel()
	kcat := NeedTool(t, "kcat")
	fx := startKafkaFixture(t, "kcat")
	requireLibrdkafkaMsgVer2(t, fx.srv.KafkaAddr)
	runKafkaClient(t, fx, "kcat", kcatClient{bin: kcat, addr: fx.srv.KafkaAddr})
}

// kcatFormat prints one record per line; the data set has no tab, comma or '=' in keys,
// values or headers, so the fields split cleanly. %K and %S are the key and value
// lengths: -1 for null.
const kcatFormat = `%p\t%o\t%T\t%K\t%k\t%S\t%s\t%h\n`

type kcatClient struct{ bin, addr string }

// run runs kcat to completion and returns stdout.
func (k kcatClient) run(t *testing.T, ctx context.Context, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, k.bin, append([]string{"-b", k.addr}, args...)...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kcat %s: %v (context: %v)\nstderr:\n%s\nstdout:\n%s", strings.Join(args, " "), err, ctx.Err(), stderr.String(), stdout.String())
	}
	return stdout.String()
}

func (k kcatClient) Metadata(t *testing.T, ctx context.Context) map[string]int {
	var md struct {
		Topics []struct {
			Topic      string            `json:"topic"`
			Error      string            `json:"error"`
			Partitions []json.RawMessage `json:"partitions"`
		} `json:"topics"`
	}
	out := k.run(t, ctx, "-L", "-J")
	if err := json.Unmarshal([]byte(out), &md); err != nil {
		t.Fatalf("kcat -L -J: %v\n%s", err, out)
	}
	topics := map[string]int{}
	for _, tp := range md.Topics {
		if tp.Error != "" {
			t.Errorf("kcat -L: topic %s: %s", tp.Topic, tp.Error)
		}
		topics[tp.Topic] = len(tp.Partitions)
	}
	return topics
}

// parseKcatRecord parses one line printed with kcatFormat.
func parseKcatRecord(t *testing.T, line string) kafkaRecord {
	t.Helper()
	f := strings.Split(line, "\t")
	if len(f) != 8 {
		t.Fatalf("kcat line with %d fields, want 8: %q", len(f), line)
	}
	num := func(s string) int64 {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("kcat line %q: %v", line, err)
		}
		return n
	}
	bytesOf := func(length, s string) []byte {
		if num(length) < 0 {
			return nil
		}
		if int64(len(s)) != num(length) {
			t.Fatalf("kcat line %q: field %q is not %s bytes long", line, s, length)
		}
		return []byte(s)
	}
	r := kafkaRecord{Partition: int32(num(f[0])), Offset: num(f[1]), Timestamp: num(f[2]),
		Key: bytesOf(f[3], f[4]), Value: bytesOf(f[5], f[6])}
	if f[7] != "" {
		for _, kv := range strings.Split(f[7], ",") {
			name, value, ok := strings.Cut(kv, "=")
			if !ok {
				t.Fatalf("kcat line %q: header %q without '='", line, kv)
			}
			r.Headers = append(r.Headers, kafkaHeader{name, []byte(value)})
		}
	}
	return r
}

func (k kcatClient) consume(t *testing.T, ctx context.Context, topic, offset string) []kafkaRecord {
	t.Helper()
	out := k.run(t, ctx, "-C", "-t", topic, "-o", offset, "-e", "-q", "-f", kcatFormat)
	var recs []kafkaRecord
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line != "" {
			recs = append(recs, parseKcatRecord(t, line))
		}
	}
	return recs
}

func (k kcatClient) Earliest(t *testing.T, ctx context.Context, topic string) []kafkaRecord {
	return k.consume(t, ctx, topic, "beginning")
}

// kcatQueryLine is what kcat -Q prints per partition.
var kcatQueryLine = regexp.MustCompile(`(?m)^(\S+) \[(\d+)\] offset (-?\d+)$`)

func (k kcatClient) ByTime(t *testing.T, ctx context.Context, topic string, ms int64) (map[int32]int64, []kafkaRecord) {
	var q []string
	for p := 0; p < kafkaPartitions; p++ {
		q = append(q, "-t", topic+":"+strconv.Itoa(p)+":"+strconv.FormatInt(ms, 10))
	}
	out := k.run(t, ctx, append([]string{"-Q"}, q...)...)
	offsets := map[int32]int64{}
	for _, m := range kcatQueryLine.FindAllStringSubmatch(out, -1) {
		p, _ := strconv.Atoi(m[2])
		o, _ := strconv.ParseInt(m[3], 10, 64)
		offsets[int32(p)] = o
	}
	if len(offsets) != kafkaPartitions {
		t.Errorf("kcat -Q printed %d offsets, want %d:\n%s", len(offsets), kafkaPartitions, out)
	}
	return offsets, k.consume(t, ctx, topic, "s@"+strconv.FormatInt(ms, 10))
}

func (k kcatClient) Latest(t *testing.T, ctx context.Context, topic string, publish func()) (kafkaRecord, time.Time) {
	// -u: unbuffered, so the line arrives when kcat has the record. kcat reports
	// "Reached end of topic" on stderr once its first fetch at the end came back.
	cmd := exec.CommandContext(ctx, k.bin, "-b", k.addr, "-C", "-t", topic, "-o", "end", "-c", "1", "-u",
		"-X", "fetch.wait.max.ms=3000", "-f", kcatFormat)
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		wg      sync.WaitGroup
		errText strings.Builder
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(stderr)
		published := false
		for sc.Scan() {
			errText.WriteString(sc.Text() + "\n")
			if !published && strings.Contains(sc.Text(), "Reached end of topic") {
				published = true
				publish()
			}
		}
	}()
	var line string
	var at time.Time
	sc := bufio.NewScanner(stdout)
	if sc.Scan() {
		line, at = sc.Text(), time.Now()
	}
	_, _ = bufio.NewReader(stdout).WriteTo(&bytes.Buffer{})
	wg.Wait()
	if err := cmd.Wait(); err != nil || line == "" {
		t.Fatalf("kcat -o end: %v (context: %v), line %q\nstderr:\n%s", err, ctx.Err(), line, errText.String())
	}
	return parseKcatRecord(t, line), at
}
