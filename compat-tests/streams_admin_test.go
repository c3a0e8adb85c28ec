package compattests

// Streams managed while the server runs, through every door: the EMQX REST API (curl),
// the streams CLI, Kafka admin clients (kadm, confluent-kafka-python AdminClient,
// kafka-python KafkaAdminClient), with MQTT publishes and Kafka reads around the changes.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestStreamsHTTPAPI drives each path of the stream API with curl, as each kind of
// user, with the bad inputs the issue lists; then a publish lands in a stream created
// a moment before, and run-time streams survive kill -9.
func TestStreamsHTTPAPI(t *testing.T) {
	t.Parallel()
	ctx := Deadline(t, 3*time.Minute)
	srv := StartServer(t, ServerOptions{Config: fmt.Sprintf(`
auth:
  allow_anonymous: false
  users:
    - { username: root, password_hash: %q, superuser: true }
    - { username: reader, password_hash: %q, acl: [{ stream: "tele*", allow: [read] }] }
    - { username: bob, password_hash: %q, acl: [{ stream: "bob.*", allow: [admin] }] }
streams:
  - { name: tele, filter: "t/#", shards: 2 }
  - { name: other, filter: "o/#" }
`, hashFor(t, "rootpw"), hashFor(t, "readpw"), hashFor(t, "bobpw"))})
	req := func(user, method, path, body string) (int, string) {
		// The address is read each time: a restart binds new ports.
		args := []string{"-u", user, "-X", method, "http://" + srv.HTTPAddr + "/api/v5/message_streams/streams" + path}
		if body != "" {
			args = append(args, "-H", "Content-Type: application/json", "--data-binary", body)
		}
		return curl(t, ctx, args...)
	}
	big := filepath.Join(t.TempDir(), "big.json")
	if err := writeBig(big, 10<<20); err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		name         string
		user, method string
		path, body   string
		want         int
		contains     string
	}{
		{"root lists all", "root:rootpw", "GET", "", "", 200, `"other"`},
		{"reader lists only tele", "reader:readpw", "GET", "", "", 200, `"tele"`},
		{"reader cannot see other", "reader:readpw", "GET", "/other", "", 404, "NOT_FOUND"},
		{"reader gets tele", "reader:readpw", "GET", "/tele", "", 200, `"topic_filter":"t/#"`},
		{"reader cannot create", "reader:readpw", "POST", "", `{"name":"tele2","topic_filter":"x"}`, 403, "FORBIDDEN"},
		{"bob creates his own", "bob:bobpw", "POST", "", `{"name":"bob.s","topic_filter":"bob/#","shards":2,"key_expression":"message.from","is_lastvalue":false,"data_retention_period":"2d","limits":{"max_shard_message_count":1000,"max_shard_message_bytes":"10MB"}}`, 201, `"max_shard_message_count":1000`},
		{"bob cannot create others", "bob:bobpw", "POST", "", `{"name":"x1","topic_filter":"x"}`, 403, "FORBIDDEN"},
		{"bob cannot delete tele", "bob:bobpw", "DELETE", "/tele", "", 403, "FORBIDDEN"},
		{"reader cannot alter tele", "reader:readpw", "PUT", "/tele", `{"shards":8}`, 403, "FORBIDDEN"},
		{"bob cannot delete a missing stream", "bob:bobpw", "DELETE", "/nope", "", 403, "FORBIDDEN"},
		{"exists", "root:rootpw", "POST", "", `{"name":"tele","topic_filter":"t/#"}`, 409, "ALREADY_EXISTS"},
		{"bad name", "root:rootpw", "POST", "", `{"name":"bad name!","topic_filter":"x"}`, 400, "name"},
		{"long name", "root:rootpw", "POST", "", `{"name":"` + strings.Repeat("a", 250) + `","topic_filter":"x"}`, 400, "name"},
		{"dot dot", "root:rootpw", "POST", "", `{"name":"..","topic_filter":"x"}`, 400, "name"},
		{"leading dash", "root:rootpw", "POST", "", `{"name":"-x","topic_filter":"x"}`, 400, "name"},
		{"hash in the middle", "root:rootpw", "POST", "", `{"name":"f1","topic_filter":"a/#/b"}`, 400, "a/#/b"},
		{"plus inside a level", "root:rootpw", "POST", "", `{"name":"f2","topic_filter":"+x"}`, 400, "+x"},
		{"unknown field", "root:rootpw", "POST", "", `{"name":"f3","topic_filter":"x","colour":"red"}`, 400, "colour"},
		{"wrong type", "root:rootpw", "POST", "", `{"name":"f4","topic_filter":"x","shards":"many"}`, 400, "shards"},
		{"negative limit", "root:rootpw", "POST", "", `{"name":"f6","topic_filter":"x","limits":{"max_shard_message_bytes":-1}}`, 400, "limits.max_shard_message_bytes: must not be negative"},
		{"bad duration", "root:rootpw", "POST", "", `{"name":"f7","topic_filter":"x","data_retention_period":"soon"}`, 400, `data_retention_period: invalid duration \"soon\"`},
		{"bad key expression", "root:rootpw", "POST", "", `{"name":"f8","topic_filter":"x","key_expression":"concat(topic"}`, 400, "key_expression: "},
		{"aliases disagree", "root:rootpw", "POST", "", `{"name":"f9","topic_filter":"x","filter":"y"}`, 400, "topic_filter: disagrees with filter"},
		{"unknown nested field", "root:rootpw", "PUT", "/tele", `{"limits":{"max_bytes":1}}`, 400, "limits.max_bytes: unknown field"},
		{"not JSON", "root:rootpw", "POST", "", `hello`, 400, "JSON"},
		{"no filter", "root:rootpw", "POST", "", `{"name":"f5"}`, 400, "filter"},
		{"10 MB body", "root:rootpw", "POST", "", "@" + big, 413, "1 MiB"},
		{"shrink", "root:rootpw", "PUT", "/tele", `{"shards":1}`, 400, "shrink"},
		{"rename", "root:rootpw", "PUT", "/tele", `{"name":"tele9"}`, 400, "name"},
		{"grow and retain", "root:rootpw", "PUT", "/tele", `{"shards":3,"data_retention_period":"1d"}`, 200, `"shards":3`},
		{"kept filter", "root:rootpw", "GET", "/tele", "", 200, `"topic_filter":"t/#"`},
		{"stats", "reader:readpw", "GET", "/../../v1/streams/tele/stats", "", 200, `"high_watermark"`},
		{"delete unknown", "root:rootpw", "DELETE", "/nope", "", 404, "NOT_FOUND"},
		{"bob deletes his", "bob:bobpw", "DELETE", "/bob.s", "", 204, ""},
		{"gone", "root:rootpw", "GET", "/bob.s", "", 404, "NOT_FOUND"},
	}
	for _, s := range steps {
		path := s.path
		if strings.HasPrefix(path, "/../../") {
			path = "" // stats live under /api/v1; built below
		}
		var code int
		var body string
		if s.name == "stats" {
			code, body = curl(t, ctx, "-u", s.user, "http://"+srv.HTTPAddr+"/api/v1/streams/tele/stats")
		} else {
			code, body = req(s.user, s.method, path, s.body)
		}
		if code != s.want || !strings.Contains(body, s.contains) {
			t.Errorf("%s: HTTP %d %s, want %d containing %q", s.name, code, body, s.want, s.contains)
		}
		if code >= 400 && !strings.Contains(body, `"code"`) {
			t.Errorf("%s: error without EMQX shape: %s", s.name, body)
		}
	}
	// Admins changing one stream at once: each change is applied whole, none is lost.
	changes := []string{`{"data_retention_period":"5d"}`, `{"limits":{"max_shard_message_count":500}}`, `{"key_expression":"topic"}`, `{"shards":6}`}
	errs := make(chan error, len(changes))
	for _, body := range changes {
		go func() {
			r, err := http.NewRequest(http.MethodPut, "http://"+srv.HTTPAddr+"/api/v5/message_streams/streams/other", strings.NewReader(body))
			if err != nil {
				errs <- err
				return
			}
			r.SetBasicAuth("root", "rootpw")
			resp, err := http.DefaultClient.Do(r)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("%s: HTTP %d", body, resp.StatusCode)
				}
			}
			errs <- err
		}()
	}
	for range changes {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if _, body := req("root:rootpw", "GET", "/other", ""); !strings.Contains(body, `"max_age":"5d"`) || !strings.Contains(body, `"max_messages":500`) ||
		!strings.Contains(body, `"key":"topic"`) || !strings.Contains(body, `"shards":6`) {
		t.Errorf("concurrent changes lost one: %s", body)
	}

	// The OpenAPI document is public, like EMQX's API docs.
	if code, body := curl(t, ctx, "http://"+srv.HTTPAddr+"/api/v5/openapi.json"); code != 200 || !strings.Contains(body, `"/api/v5/message_streams/streams/{name}"`) {
		t.Errorf("openapi.json: %d %.200s", code, body)
	}
	// Nothing half-changed by the refusals: the stream list is as the good steps left it.
	if _, body := req("root:rootpw", "GET", "", ""); strings.Count(body, `"name"`) != 2 {
		t.Errorf("streams after the bad input: %s", body)
	}

	// PUT changes what it gives and keeps every other field, ours as well as EMQX's.
	if code, body := req("root:rootpw", "POST", "", `{"name":"kept","filter":"k/#","key":"json:id","key_fallback":"topic","publish_topic":"out/{key}","durability":"write","compression":"lz4","deliver_produced":false}`); code != 201 {
		t.Fatalf("create kept: %d %s", code, body)
	}
	if code, body := req("root:rootpw", "PUT", "/kept", `{"shards":5,"limits":{"max_shard_message_bytes":"1MB"}}`); code != 200 ||
		!strings.Contains(body, `"shards":5`) || !strings.Contains(body, `"max_bytes":1000000`) {
		t.Fatalf("alter kept: %d %s", code, body)
	}
	if _, body := req("root:rootpw", "GET", "/kept", ""); !strings.Contains(body, `"key_fallback":"topic"`) || !strings.Contains(body, `"publish_topic":"out/{key}"`) ||
		!strings.Contains(body, `"durability":"write"`) || !strings.Contains(body, `"compression":"lz4"`) || !strings.Contains(body, `"deliver_produced":false`) || !strings.Contains(body, `"key":"json:id"`) {
		t.Errorf("PUT lost fields it did not give: %s", body)
	}

	// A stream created a moment before takes the next publish (QoS 1: acked once durable).
	if code, body := req("root:rootpw", "POST", "", `{"name":"fresh","topic_filter":"fresh/+","shards":1}`); code != 201 {
		t.Fatalf("create fresh: %d %s", code, body)
	}
	publishAs(t, srv.MQTTAddr, "root", "rootpw", "fresh/1", "hello")

	// Run-time changes are durable: kill -9, restart, the stream and its record are there.
	srv.KillRestart(t)
	if code, body := req("root:rootpw", "GET", "/fresh", ""); code != 200 {
		t.Fatalf("fresh after kill -9: %d %s", code, body)
	}
	// tele is in the config file too: the file wins (retention back to its 7d default,
	// logged), except shards, which cannot shrink and keep the run-time growth.
	if code, body := req("root:rootpw", "GET", "/tele", ""); code != 200 || !strings.Contains(body, `"shards":3`) || !strings.Contains(body, `"max_age":"7d"`) {
		t.Fatalf("tele after kill -9: %d %s", code, body)
	}
	if logs := srv.Logs(); !strings.Contains(logs, `"changed":["retention.max_age"]`) || !strings.Contains(logs, "cannot shrink") {
		t.Errorf("the config's changes to tele are not logged")
	}
	code, body := curl(t, ctx, "-u", "root:rootpw", "http://"+srv.HTTPAddr+"/api/v1/streams/fresh/stats")
	var st struct {
		Records int64 `json:"records"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil || st.Records != 1 {
		t.Fatalf("fresh stats after kill -9: %d %s", code, body)
	}
}

func writeBig(path string, n int) error {
	var b bytes.Buffer
	b.WriteString(`{"name":"big","topic_filter":"`)
	b.Write(bytes.Repeat([]byte("a"), n))
	b.WriteString(`"}`)
	return writeFile(path, b.Bytes())
}

// TestStreamsCLI runs mqstreams streams against the binary: create, list, describe,
// alter, delete, table and JSON, errors with a non-zero exit.
func TestStreamsCLI(t *testing.T) {
	t.Parallel()
	ctx := Deadline(t, 2*time.Minute)
	srv := StartServer(t, ServerOptions{})
	server := "--server=http://" + srv.HTTPAddr
	run := func(args ...string) (string, error) {
		return cli(t, ctx, "", nil, append(append([]string{"streams"}, args...), server)...)
	}
	if out, err := run("create", "plant", "--filter", "plant/+/temp", "--filter", "plant/+/hum", "--shards", "2", "--key", "topic-level:2", "--max-age", "3d"); err != nil {
		t.Fatalf("create: %v\n%s", err, out)
	}
	out, err := run("list")
	if err != nil || !strings.Contains(out, "plant/+/temp,plant/+/hum") || !strings.Contains(out, "NAME") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	publishMosquitto(t, srv.MQTTAddr, "sensor-1", "plant/p1/temp", "21.5")
	if out, err = run("alter", "plant", "--shards", "4", "--max-bytes", "1GiB", "--last-value"); err != nil {
		t.Fatalf("alter: %v\n%s", err, out)
	}
	out, err = run("describe", "plant", "-o", "json")
	if err != nil {
		t.Fatalf("describe: %v\n%s", err, out)
	}
	var desc struct {
		Definition struct {
			Shards    int32 `json:"shards"`
			LastValue bool  `json:"last_value"`
			Retention struct {
				MaxAge   string `json:"max_age"`
				MaxBytes int64  `json:"max_bytes"`
			} `json:"retention"`
		} `json:"definition"`
		Shards []struct {
			Records int64 `json:"records"`
		} `json:"shards"`
	}
	if err := json.Unmarshal([]byte(out), &desc); err != nil {
		t.Fatalf("describe JSON: %v\n%s", err, out)
	}
	var records int64
	for _, s := range desc.Shards {
		records += s.Records
	}
	d := desc.Definition
	if d.Shards != 4 || !d.LastValue || d.Retention.MaxAge != "3d" || d.Retention.MaxBytes != 1<<30 || len(desc.Shards) != 4 || records != 1 {
		t.Fatalf("describe: %s", out)
	}
	for _, bad := range [][]string{
		{"alter", "plant", "--shards", "1"},
		{"create", "plant", "--filter", "x"},
		{"create", "bad name!", "--filter", "x"},
		{"delete", "nope"},
		{"alter", "plant"},
	} {
		if out, err := run(bad...); err == nil {
			t.Errorf("%v succeeded:\n%s", bad, out)
		}
	}
	if out, err = run("delete", "plant"); err != nil {
		t.Fatalf("delete: %v\n%s", err, out)
	}
	if out, _ = run("list", "-o", "json"); strings.Contains(out, "plant") {
		t.Fatalf("deleted stream listed: %s", out)
	}
}

// TestKafkaAdminClients: kadm against the binary, then confluent-kafka-python's
// AdminClient and kafka-python's KafkaAdminClient, each through its whole sequence.
func TestKafkaAdminClients(t *testing.T) {
	t.Parallel()
	srv := StartServer(t, ServerOptions{})
	t.Run("kadm", func(t *testing.T) {
		ctx := Deadline(t, time.Minute)
		adm := newAdmin(t, srv.KafkaAddr)
		if _, err := adm.CreateTopic(ctx, 2, 1, map[string]*string{"mqtt.topic.filter": kadm.StringPtr("kadm/#")}, "kadm-t"); err != nil {
			t.Fatal(err)
		}
		// The MQTT side sees the topic at once: a publish lands, a $stream subscription finds it.
		publishMosquitto(t, srv.MQTTAddr, "kadm-pub", "kadm/x", "from-mqtt")
		if got := consume(t, srv.KafkaAddr, "kadm-t", 1); len(got) != 1 || got[0].value != "from-mqtt" {
			t.Fatalf("kadm-t got %v", got)
		}
		// kcat's view follows: the topic, then its grown partition count.
		kcatPartitions := func() int {
			t.Helper()
			out, err := exec.CommandContext(ctx, NeedTool(t, "kcat"), "-b", srv.KafkaAddr, "-L", "-t", "kadm-t", "-J").Output()
			if err != nil {
				t.Fatalf("kcat -L: %v", err)
			}
			var md struct {
				Topics []struct {
					Topic      string            `json:"topic"`
					Partitions []json.RawMessage `json:"partitions"`
				} `json:"topics"`
			}
			if err := json.Unmarshal(out, &md); err != nil || len(md.Topics) != 1 {
				t.Fatalf("kcat -L -J: %v\n%s", err, out)
			}
			return len(md.Topics[0].Partitions)
		}
		if n := kcatPartitions(); n != 2 {
			t.Fatalf("kcat sees %d partitions, want 2", n)
		}
		// validate_only creates nothing.
		if r, err := adm.ValidateCreateTopics(ctx, 1, 1, nil, "kadm-v"); err != nil || r["kadm-v"].Err != nil {
			t.Fatalf("validate: %v %+v", err, r)
		}
		if td, err := adm.ListTopics(ctx, "kadm-v"); err != nil || td["kadm-v"].Err == nil {
			t.Fatalf("validate_only created the topic: %v %+v", err, td)
		}
		// Log dirs show the bytes of the partition holding the record.
		dirs, err := adm.DescribeAllLogDirs(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		var stored int64
		dirs.Each(func(d kadm.DescribedLogDir) {
			for _, p := range d.Topics["kadm-t"] {
				stored += p.Size
			}
		})
		if stored <= 0 {
			t.Fatalf("log dirs show %d bytes for kadm-t", stored)
		}
		if r, err := adm.CreatePartitions(ctx, 3, "kadm-t"); err != nil || r["kadm-t"].Err != nil {
			t.Fatalf("create partitions: %v %+v", err, r)
		}
		if n := kcatPartitions(); n != 5 {
			t.Fatalf("kcat sees %d partitions after growing, want 5", n)
		}
		// Configs: described with real values, altered incrementally; a bad value (the
		// config file's and the REST API's checks) is refused naming the config, and
		// nothing of its request is applied.
		describe := func() map[string]string {
			t.Helper()
			rcs, err := adm.DescribeTopicConfigs(ctx, "kadm-t")
			if err != nil || len(rcs) != 1 || rcs[0].Err != nil {
				t.Fatalf("describe configs: %v %+v", err, rcs)
			}
			got := map[string]string{}
			for _, c := range rcs[0].Configs {
				got[c.Key] = c.MaybeValue()
			}
			return got
		}
		if got := describe(); got["mqtt.topic.filter"] != "kadm/#" || got["retention.ms"] != "604800000" || got["cleanup.policy"] != "delete" {
			t.Fatalf("configs: %v", got)
		}
		set := func(name, value string) kadm.AlterConfig {
			return kadm.AlterConfig{Op: kadm.SetConfig, Name: name, Value: kadm.StringPtr(value)}
		}
		if r, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{set("retention.ms", "3600000"), set("mqtt.key", "topic")}, "kadm-t"); err != nil || r[0].Err != nil {
			t.Fatalf("alter configs: %v %+v", err, r)
		}
		before := describe()
		if before["retention.ms"] != "3600000" || before["mqtt.key"] != "topic" || before["retention.bytes"] != "-1" {
			t.Fatalf("configs after the alteration: %v", before)
		}
		for _, bad := range []struct{ name, value, says string }{
			{"retention.ms", "soon", `retention.ms: expected a number of milliseconds`},
			{"mqtt.key", "concat(topic", `mqtt.key: "concat(topic"`},
			{"mqtt.topic.filter", "kadm/#/x", `mqtt.topic.filter: "kadm/#/x"`},
			{"retention.bytes", "-7", `retention.bytes: expected a number of bytes`},
		} {
			r, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{set("retention.bytes", "1000"), set(bad.name, bad.value)}, "kadm-t")
			if err != nil || !errors.Is(r[0].Err, kerr.InvalidConfig) || !strings.Contains(r[0].ErrMessage, bad.says) {
				t.Errorf("alter %s=%s: %v %+v, want INVALID_CONFIG saying %q", bad.name, bad.value, err, r, bad.says)
			}
		}
		if after := describe(); !maps.Equal(after, before) {
			t.Fatalf("refused alterations changed the configs:\nbefore %v\nafter  %v", before, after)
		}
		// DeleteRecords advances the log start of the partition holding the record.
		ends, err := adm.ListEndOffsets(ctx, "kadm-t")
		if err != nil || ends.Error() != nil {
			t.Fatalf("end offsets: %v %v", err, ends.Error())
		}
		dr, err := adm.DeleteRecords(ctx, ends.Offsets())
		if err != nil || dr.Error() != nil {
			t.Fatalf("delete records: %v %v", err, dr.Error())
		}
		starts, err := adm.ListStartOffsets(ctx, "kadm-t")
		if err != nil {
			t.Fatal(err)
		}
		moved := 0
		ends.Each(func(e kadm.ListedOffset) {
			s, _ := starts.Lookup("kadm-t", e.Partition)
			if s.Offset != e.Offset {
				t.Errorf("partition %d: log start %d, want %d", e.Partition, s.Offset, e.Offset)
			}
			if e.Offset > 0 {
				moved++
			}
		})
		if moved != 1 {
			t.Errorf("%d partitions had the published record, want 1", moved)
		}
		// An incremental append adds a filter; AlterConfigs replaces the set: retention
		// not named returns to its default, the MQTT mapping stays.
		ar, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.AppendConfig, Name: "mqtt.topic.filter", Value: kadm.StringPtr("kadm2/#")}}, "kadm-t")
		if err != nil || ar[0].Err != nil {
			t.Fatalf("append a filter: %v %+v", err, ar)
		}
		if got := describe(); got["mqtt.topic.filter"] != "kadm/#,kadm2/#" || got["retention.ms"] != "3600000" {
			t.Fatalf("after appending a filter: %v", got)
		}
		if ar, err := adm.AlterTopicConfigsState(ctx, []kadm.AlterConfig{{Name: "retention.bytes", Value: kadm.StringPtr("1048576")}}, "kadm-t"); err != nil || ar[0].Err != nil {
			t.Fatalf("alter state: %v %+v", err, ar)
		}
		if got := describe(); got["retention.ms"] != "604800000" || got["retention.bytes"] != "1048576" || got["mqtt.key"] != "topic" || got["mqtt.topic.filter"] != "kadm/#,kadm2/#" {
			t.Fatalf("after AlterConfigs: %v", got)
		}
		if r, err := adm.DeleteTopics(ctx, "kadm-t"); err != nil || r["kadm-t"].Err != nil {
			t.Fatalf("delete: %v %+v", err, r)
		}
		if code, _ := srv.HTTPGet(t, "/api/v5/message_streams/streams/kadm-t"); code != 404 {
			t.Fatalf("deleted over Kafka, still over HTTP: %d", code)
		}
	})
	t.Run("confluent", func(t *testing.T) {
		argv := pythonScript(t, "confluent_kafka", "confluent_admin.py")
		steps := runAdminScript(t, argv, srv.KafkaAddr, "conf-t")
		want := map[string]string{
			"validate": "ok", "create": "ok", "create-again": "TOPIC_ALREADY_EXISTS", "create-bad-config": "INVALID_CONFIG",
			"alter": "ok", "grow": "ok", "shrink": "INVALID_PARTITIONS", "delete": "ok", "delete-again": "UNKNOWN_TOPIC_OR_PART",
		}
		checkSteps(t, steps, want)
		if steps["listed-after-validate"]["result"] != false {
			t.Errorf("validate_only created the topic")
		}
		checkConfigs(t, steps["describe"], map[string]string{"retention.ms": "3600000", "mqtt.topic.filter": "py/+/conf", "retention.bytes": "-1"})
		checkConfigs(t, steps["describe-altered"], map[string]string{"retention.ms": "7200000", "retention.bytes": "1048576", "mqtt.topic.filter": "py/+/conf"})
		if steps["partitions"]["count"] != float64(5) {
			t.Errorf("partitions: %v", steps["partitions"])
		}
	})
	t.Run("kafkapython", func(t *testing.T) {
		argv := pythonScript(t, "kafka", "kafkapython_admin.py")
		steps := runAdminScript(t, argv, srv.KafkaAddr, "kp-t")
		want := map[string]string{
			"create": "ok", "create-again": "TopicAlreadyExistsError", "create-bad-name": "InvalidTopicError",
			"alter": "ok", "grow": "ok", "shrink": "InvalidPartitionsError", "delete-records": "ok", "delete": "ok",
		}
		checkSteps(t, steps, want)
		checkConfigs(t, steps["describe"], map[string]string{"retention.bytes": "2097152", "mqtt.topic.filter": "py/+/kp", "mqtt.key": "topic"})
		// AlterConfigs replaces the retention set: retention.bytes not given goes back to -1.
		checkConfigs(t, steps["describe-altered"], map[string]string{"retention.ms": "86400000", "cleanup.policy": "compact", "retention.bytes": "-1", "mqtt.topic.filter": "py/+/kp"})
		if steps["delete-records"]["low_watermark"] != float64(6) {
			t.Errorf("delete records: %v", steps["delete-records"])
		}
	})
}

// runAdminScript runs an admin script and returns its JSON lines by step.
func runAdminScript(t *testing.T, argv []string, addr, topic string) map[string]map[string]any {
	t.Helper()
	ctx := Deadline(t, 2*time.Minute)
	cmd := exec.CommandContext(ctx, argv[0], append(argv[1:], addr, topic)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %v\n%s\n%s", argv, err, out, stderr.String())
	}
	steps := map[string]map[string]any{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("bad line %q: %v", sc.Text(), err)
		}
		steps[fmt.Sprint(m["step"])] = m
	}
	return steps
}

func checkSteps(t *testing.T, steps map[string]map[string]any, want map[string]string) {
	t.Helper()
	for step, w := range want {
		if got := fmt.Sprint(steps[step]["result"]); got != w {
			t.Errorf("step %s: %s, want %s", step, got, w)
		}
	}
}

func checkConfigs(t *testing.T, step map[string]any, want map[string]string) {
	t.Helper()
	cfg, _ := step["configs"].(map[string]any)
	for k, v := range want {
		if got := fmt.Sprint(cfg[k]); got != v {
			t.Errorf("%s: %s = %s, want %s (all: %v)", step["step"], k, got, v, cfg)
		}
	}
}

// publishAs publishes one QoS 1 message with mosquitto_pub as user.
func publishAs(t *testing.T, addr, user, password, topic, payload string) {
	t.Helper()
	NeedTool(t, "mosquitto_pub")
	host, port := SplitAddr(t, addr)
	cmd := exec.CommandContext(Deadline(t, startTimeout), "mosquitto_pub",
		"-h", host, "-p", port, "-u", user, "-P", password, "-q", "1", "-t", topic, "-m", payload)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v\n%s", err, out)
	}
}

func writeFile(path string, b []byte) error { return os.WriteFile(path, b, 0o644) }

// TestGroupsCLI runs mqstreams groups against the binary around a real consumer group.
func TestGroupsCLI(t *testing.T) {
	t.Parallel()
	ctx := Deadline(t, 2*time.Minute)
	srv := StartServer(t, ServerOptions{Config: `
streams:
  - { name: orders, filter: "orders/#", shards: 2 }
`})
	for i := 0; i < 6; i++ {
		publishMosquitto(t, srv.MQTTAddr, fmt.Sprintf("dev%d", i), "orders/x", fmt.Sprintf("o%d", i))
	}
	server := "--server=http://" + srv.HTTPAddr
	run := func(args ...string) (string, error) {
		return cli(t, ctx, "", nil, append(append([]string{"groups"}, args...), server)...)
	}
	// A group member reads everything and commits, and stays while we try a reset.
	member, err := kgo.NewClient(kgo.SeedBrokers(srv.KafkaAddr), kgo.ClientID("billing-1"), kgo.ConsumerGroup("billing"),
		kgo.ConsumeTopics("orders"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	if err != nil {
		t.Fatal(err)
	}
	defer member.Close()
	for n := 0; n < 6; {
		fs := member.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("member read %d of 6", n)
		}
		n += len(fs.Records())
	}
	if err := member.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatal(err)
	}
	if out, err := run("reset-offsets", "billing", "--to-earliest"); err == nil || !strings.Contains(out, "409") {
		t.Fatalf("reset with an active member: %v\n%s", err, out)
	}
	out, err := run("describe", "billing")
	if err != nil || !strings.Contains(out, "billing-1") || !strings.Contains(out, "Stable") {
		t.Fatalf("describe: %v\n%s", err, out)
	}
	member.Close()
	committed := func() int64 {
		t.Helper()
		out, err := run("describe", "billing", "-o", "json")
		if err != nil {
			t.Fatalf("describe: %v\n%s", err, out)
		}
		var d struct {
			Offsets []struct {
				Committed int64 `json:"committed"`
			} `json:"offsets"`
		}
		if err := json.Unmarshal([]byte(out), &d); err != nil {
			t.Fatalf("describe JSON: %v\n%s", err, out)
		}
		var sum int64
		for _, o := range d.Offsets {
			sum += o.Committed
		}
		return sum
	}
	waitFor(t, ctx, "group empty with all committed", func() (bool, string) {
		out, _ := run("describe", "billing")
		return strings.Contains(out, "Empty") && committed() == 6, out
	})
	if out, err = run("list"); err != nil || !strings.Contains(out, "billing") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	if out, err = run("reset-offsets", "billing", "--to-earliest", "--dry-run"); err != nil || committed() != 6 {
		t.Fatalf("dry run changed offsets: %v\n%s", err, out)
	}
	if out, err = run("reset-offsets", "billing", "--topic", "orders", "--to-earliest"); err != nil || committed() != 0 {
		t.Fatalf("to earliest: %v\n%s", err, out)
	}
	if out, err = run("reset-offsets", "billing", "--to-latest"); err != nil || committed() != 6 {
		t.Fatalf("to latest: %v\n%s", err, out)
	}
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if out, err = run("reset-offsets", "billing", "--to-datetime", future); err != nil || committed() != 6 {
		t.Fatalf("to a future time: %v\n%s", err, out)
	}
	if out, err = run("reset-offsets", "billing", "--to-datetime", "2000-01-01T00:00:00Z"); err != nil || committed() != 0 {
		t.Fatalf("to a past time: %v\n%s", err, out)
	}
	if out, err = run("reset-offsets", "billing", "--to-datetime", "yesterday"); err == nil {
		t.Fatalf("bad datetime accepted:\n%s", out)
	}
	if out, err = run("delete", "billing"); err != nil {
		t.Fatalf("delete: %v\n%s", err, out)
	}
	if out, err = run("describe", "billing"); err == nil || !strings.Contains(out, "404") {
		t.Fatalf("describe deleted group: %v\n%s", err, out)
	}
}
