package compattests

// Kafka → MQTT (issue 11): records produced with kcat -P and confluent-kafka-python
// reach a live mosquitto_sub with the topic, QoS, retain flag and user properties the
// record's headers (or the stream's publish_topic) give; a record with an invalid
// mqtt.topic is stored but never delivered.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqstreams/mqstreams/auth"
)

// liveSub runs mosquitto_sub (MQTT 5) printing "MSG|topic|qos|retain|props|payload"
// per message and returns once it holds its subscriptions (its SUBACK).
type liveSub struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	msgs []string
	done chan struct{}
	errb bytes.Buffer
}

func startLiveSub(t *testing.T, addr string, count int, args ...string) *liveSub {
	t.Helper()
	NeedTool(t, "mosquitto_sub")
	host, port := SplitAddr(t, addr)
	all := append([]string{"-h", host, "-p", port, "-V", "mqttv5", "-d", "-C", strconv.Itoa(count), "-W", "120",
		"-F", "MSG|%t|%q|%r|%P|%p"}, args...)
	ms := &liveSub{done: make(chan struct{})}
	// Line-buffered: the SUBACK debug line must reach us while mosquitto_sub runs.
	ms.cmd = exec.CommandContext(Deadline(t, 2*startTimeout), NeedTool(t, "stdbuf"), append([]string{"-oL", "mosquitto_sub"}, all...)...)
	ms.cmd.Stderr = &ms.errb
	out, err := ms.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := ms.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	subscribed := make(chan struct{})
	go func() {
		defer close(ms.done)
		sc := bufio.NewScanner(out)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			if strings.Contains(line, "received SUBACK") {
				once.Do(func() { close(subscribed) })
			}
			if strings.HasPrefix(line, "MSG|") {
				ms.mu.Lock()
				ms.msgs = append(ms.msgs, line)
				ms.mu.Unlock()
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case <-subscribed:
	case <-ms.done:
		t.Fatalf("mosquitto_sub ended before subscribing: %s", ms.errb.String())
	case <-time.After(startTimeout):
		t.Fatal("mosquitto_sub did not subscribe in time")
	}
	return ms
}

// wait waits for mosquitto_sub to exit (after its -C count) and returns its messages.
func (ms *liveSub) wait(t *testing.T) []string {
	t.Helper()
	select {
	case <-ms.done:
	case <-time.After(2 * startTimeout):
		t.Fatalf("mosquitto_sub got %d messages: %v", len(ms.msgs), ms.msgs)
	}
	if err := ms.cmd.Wait(); err != nil {
		t.Fatalf("mosquitto_sub: %v (%s); messages %v", err, ms.errb.String(), ms.msgs)
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return append([]string(nil), ms.msgs...)
}

func kcatProduce(t *testing.T, ctx context.Context, addr, topic, input string, args ...string) {
	t.Helper()
	kcat := NeedTool(t, "kcat")
	all := append([]string{"-b", addr, "-P", "-t", topic, "-p", "0", "-X", "acks=all"}, args...)
	cmd := exec.CommandContext(ctx, kcat, all...)
	cmd.Stdin = strings.NewReader(input)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat -P: %v\n%s", err, out)
	}
}

const confluentProduceScript = `
import sys
from confluent_kafka import Producer
p = Producer({"bootstrap.servers": sys.argv[1], "acks": "all"})
errs = []
def cb(err, msg):
    if err is not None:
        errs.append(err)
p.produce("cmds", value=b"hello-python", key=b"py", partition=0,
          headers=[("mqtt.topic", b"cmd/py/2"), ("mqtt.qos", b"1"), ("mqtt.retain", b"true"),
                   ("site", b"paris"), ("site", b"lyon")], on_delivery=cb)
left = p.flush(60)
if left or errs:
    sys.exit("not delivered: %d left, errors %s" % (left, errs))
`

func TestKafkaToMQTT(t *testing.T) {
	srv := StartServer(t, ServerOptions{Config: `streams:
  - {name: cmds, filter: "cmd/#", shards: 1}
  - {name: quiet, filter: "quiet/#", shards: 1, deliver_produced: false}
  - {name: tpl, filter: "tpl/#", shards: 1, publish_topic: "out/{header.site}/{key}"}
`})
	ctx := Deadline(t, 2*startTimeout)
	sub := startLiveSub(t, srv.MQTTAddr, 4, "-q", "1", "-t", "cmd/#", "-t", "cmds/#", "-t", "out/#", "-t", "quiet/#")

	// kcat: the mqtt.topic header, QoS 1, another header as a user property.
	kcatProduce(t, ctx, srv.KafkaAddr, "cmds", "hello-kcat\n", "-H", "mqtt.topic=cmd/kcat/1", "-H", "mqtt.qos=1", "-H", "trace=abc")
	// Invalid topics are stored but never delivered; deliver_produced: false is silent.
	kcatProduce(t, ctx, srv.KafkaAddr, "cmds", "wild\n", "-H", "mqtt.topic=cmd/+/unlock")
	kcatProduce(t, ctx, srv.KafkaAddr, "quiet", "silent\n", "-H", "mqtt.topic=quiet/a")
	// No mqtt.topic: the default template {stream}/{key}, the subscription's QoS; and a
	// stream's own publish_topic, QoS 0 from the header.
	kcatProduce(t, ctx, srv.KafkaAddr, "cmds", "dev7:by-key\n", "-K", ":")
	kcatProduce(t, ctx, srv.KafkaAddr, "tpl", "k9:templated\n", "-K", ":", "-H", "site=nyc", "-H", "mqtt.qos=0")
	// confluent-kafka-python, retained, with duplicate user properties.
	py := exec.CommandContext(ctx, Python(t), "-c", confluentProduceScript, srv.KafkaAddr)
	if out, err := py.CombinedOutput(); err != nil {
		t.Fatalf("confluent producer: %v\n%s", err, out)
	}

	got := sub.wait(t)
	want := []string{
		"MSG|cmd/kcat/1|1|0|trace:abc|hello-kcat",
		"MSG|cmds/dev7|1|0||by-key",
		"MSG|out/nyc/k9|0|0|site:nyc|templated",
		// A live subscriber without retain-as-published sees retain 0 (MQTT 5 3.3.1.3).
		"MSG|cmd/py/2|1|0|site:paris site:lyon|hello-python",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("mosquitto_sub got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// The retained record is what a new subscriber gets first, with the retain flag.
	late := startLiveSub(t, srv.MQTTAddr, 1, "-q", "1", "-t", "cmd/py/#")
	if got := late.wait(t); len(got) != 1 || got[0] != "MSG|cmd/py/2|1|1|site:paris site:lyon|hello-python" {
		t.Fatalf("late subscriber got %v", got)
	}

	_, metrics := srv.HTTPGet(t, "/metrics")
	if v, _ := metricValue(t, metrics, "mqstreams_kafka_produced_skipped_total", `reason="invalid_topic"`); v != 1 {
		t.Fatalf("invalid_topic skips: %v, want 1", v)
	}
	if v, _ := metricValue(t, metrics, "mqstreams_kafka_produced_delivered_total", `stream="cmds"`); v != 3 {
		t.Fatalf("cmds deliveries: %v, want 3", v)
	}
	// Every record is stored, the undelivered ones included, and none twice.
	k := kcatClient{bin: NeedTool(t, "kcat"), addr: srv.KafkaAddr}
	if n := len(k.consume(t, ctx, "cmds", "beginning")); n != 4 {
		t.Fatalf("cmds holds %d records, want 4", n)
	}
}

// A Kafka producer needs the MQTT publish grant on a record's topic for it to reach
// MQTT subscribers: write on the stream stores it, nothing more (a forged mqtt.topic).
func TestKafkaToMQTTNeedsPublishGrant(t *testing.T) {
	const pw = "svc-pw-1"
	c, err := auth.HashPassword(pw, 4)
	if err != nil {
		t.Fatal(err)
	}
	srv := StartServer(t, ServerOptions{Config: fmt.Sprintf(`streams:
  - {name: cmds, filter: "cmd/#", shards: 1}
kafka: {security_protocol: sasl_plaintext}
auth:
  users:
    - username: svc
      password_hash: %q
      acl:
        - {stream: cmds, allow: [write]}
        - {topic: "cmd/svc/#", allow: [publish]}
    - username: watcher
      password_hash: %q
      acl:
        - {topic: "#", allow: [subscribe]}
        - {stream: cmds, allow: [read]}
`, c.String(), c.String())})
	ctx := Deadline(t, 2*startTimeout)
	sub := startLiveSub(t, srv.MQTTAddr, 1, "-u", "watcher", "-P", pw, "-q", "1", "-t", "cmd/#")
	sasl := []string{"-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=PLAIN", "-X", "sasl.username=svc", "-X", "sasl.password=" + pw}
	kcatProduce(t, ctx, srv.KafkaAddr, "cmds", "unlock\n", append(sasl, "-H", "mqtt.topic=cmd/victim/unlock")...)
	kcatProduce(t, ctx, srv.KafkaAddr, "cmds", "mine\n", append(sasl, "-H", "mqtt.topic=cmd/svc/ok")...)
	if got := sub.wait(t); len(got) != 1 || got[0] != "MSG|cmd/svc/ok|1|0||mine" {
		t.Fatalf("mosquitto_sub got %v, want only cmd/svc/ok", got)
	}
	_, metrics := srv.HTTPGet(t, "/metrics")
	if v, _ := metricValue(t, metrics, "mqstreams_kafka_produced_skipped_total", `reason="not_authorized"`); v != 1 {
		t.Fatalf("not_authorized skips: %v, want 1", v)
	}
	// $stream replay reads stored records, which do not say who produced them: the
	// forged header was renamed when stored, so the record replays under the
	// stream's name, the claimed topic only a user property.
	replay := startLiveSub(t, srv.MQTTAddr, 2, "-u", "watcher", "-P", pw, "-q", "1", "-t", "$stream/cmds",
		"-D", "subscribe", "user-property", "stream-offset", "earliest")
	got := replay.wait(t)
	if len(got) != 2 || !strings.HasPrefix(got[0], "MSG|cmds|") || !strings.HasSuffix(got[0], "|unlock") ||
		!strings.Contains(got[0], "mqtt.topic.unauthorized") || !strings.HasPrefix(got[1], "MSG|cmd/svc/ok|") {
		t.Fatalf("$stream replay got %q, want the forged record under the stream's name", got)
	}
}
