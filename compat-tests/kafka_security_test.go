package compattests

// Kafka listener security (issue 8) against the real binary: SASL PLAIN and SCRAM over
// TLS with kcat, confluent-kafka-python, kafka-python, kafkajs and franz-go; a reader
// sees and reads only the streams it is granted; wrong passwords and clients skipping
// SASL are refused; client certificates name the principal on an ssl listener; kadm
// manages ACLs that change what a user may read, and they survive a restart.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	binenc "encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/mqstreams/mqstreams/auth"
	"github.com/mqstreams/mqstreams/certs/certstest"
)

const (
	secAdminPW  = "admin-pw-1"
	secReaderPW = "reader-pw-2"
	secRecords  = 3 // records produced into each stream
)

// secureServer is a server whose Kafka listener is secured, holding secRecords records
// in the streams "granted" (readable by reader) and "denied" (not).
type secureServer struct {
	srv *Server
	pki *certstest.TestPKI
}

// startSecureServer starts a server with the given kafka section. Users: admin
// (superuser), reader (read on granted, groups app-*), grantee (nothing, for ACLs).
func startSecureServer(t *testing.T, kafka func(pki *certstest.TestPKI) string) *secureServer {
	t.Helper()
	pki, err := certstest.NewTestPKI(t.TempDir(), "reader")
	if err != nil {
		t.Fatal(err)
	}
	hash := func(pw string) string {
		c, err := auth.HashPassword(pw, 4)
		if err != nil {
			t.Fatal(err)
		}
		return c.String()
	}
	cfg := fmt.Sprintf(`streams:
  - {name: granted, filter: "granted/#", shards: 1}
  - {name: denied, filter: "denied/#", shards: 1}
kafka: %s
auth:
  users:
    - {username: admin, password_hash: %q, superuser: true}
    - username: reader
      password_hash: %q
      acl:
        - {stream: granted, allow: [read]}
        - {group: "app-", allow: [read]}
    - {username: grantee, password_hash: %q}
`, kafka(pki), hash(secAdminPW), hash(secReaderPW), hash(secReaderPW))
	ss := &secureServer{srv: StartServer(t, ServerOptions{Config: cfg}), pki: pki}
	return ss
}

func saslSSL(pki *certstest.TestPKI) string {
	return fmt.Sprintf("{security_protocol: sasl_ssl, tls: {cert: %q, key: %q}}", pki.ServerCert, pki.ServerKey)
}

func (ss *secureServer) rootCAs(t *testing.T) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(ss.pki.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return pool
}

// franz is a franz-go client over TLS with mech (nil: no SASL).
func (ss *secureServer) franz(t *testing.T, mech sasl.Mechanism, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	opts = append([]kgo.Opt{kgo.SeedBrokers(ss.srv.KafkaAddr), kgo.RequestRetries(1),
		kgo.DialTLSConfig(&tls.Config{RootCAs: ss.rootCAs(t), ServerName: "localhost"})}, opts...)
	if mech != nil {
		opts = append(opts, kgo.SASL(mech))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// fill produces secRecords records into each stream as admin.
func (ss *secureServer) fill(t *testing.T) {
	t.Helper()
	cl := ss.franz(t, scram.Auth{User: "admin", Pass: secAdminPW}.AsSha512Mechanism())
	ctx := Deadline(t, 60*time.Second)
	for _, topic := range []string{"granted", "denied"} {
		for i := 0; i < secRecords; i++ {
			r := &kgo.Record{Topic: topic, Key: []byte("k"), Value: fmt.Appendf(nil, "%s-%d", topic, i)}
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatalf("produce to %s as admin: %v", topic, err)
			}
		}
	}
}

// franzTopics lists the topics a franz-go client sees in Metadata.
func franzTopics(t *testing.T, ctx context.Context, cl *kgo.Client) ([]string, error) {
	resp, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, tp := range resp.Topics {
		if tp.ErrorCode == 0 {
			out = append(out, *tp.Topic)
		}
	}
	return out, nil
}

// franzFetch fetches partition 0 of topic from offset 0: error code and record count.
func franzFetch(t *testing.T, ctx context.Context, cl *kgo.Client, topic string) (int16, int) {
	t.Helper()
	req := kmsg.NewPtrFetchRequest()
	req.Version = 12
	req.MaxWaitMillis, req.MaxBytes = 100, 1<<20
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.PartitionMaxBytes, rp.LogStartOffset, rp.CurrentLeaderEpoch = 1<<20, -1, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("fetch %s: %v", topic, err)
	}
	p := resp.Topics[0].Partitions[0]
	n := 0
	if len(p.RecordBatches) > 0 {
		var b kmsg.RecordBatch
		rest := p.RecordBatches
		for len(rest) >= 12 {
			if err := b.ReadFrom(rest); err != nil {
				break
			}
			n += int(b.NumRecords)
			rest = rest[12+int(b.Length):]
		}
	}
	return p.ErrorCode, n
}

// secureLine is one JSON line of a clients/secure_* script.
type secureLine struct {
	scriptLine
	Error   string   `json:"error"`
	Code    string   `json:"code"`
	ACLs    []string `json:"acls"`
	Deleted int      `json:"deleted"`
}

// secureScript runs a clients/secure_*.{py,js} script: BOOTSTRAP MECHANISM USER
// CAFILE args..., with the password in the environment. It returns the JSON lines, the
// errors the script printed and the exit error (with stderr).
func secureScript(t *testing.T, ctx context.Context, argv []string, addr, mech, user, pw, ca string, args ...string) ([]secureLine, []string, error) {
	t.Helper()
	full := append(append(append([]string{}, argv...), addr, mech, user, ca), args...)
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	cmd.Env = append(os.Environ(), "MQS_PASSWORD="+pw)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%v: %w\nstdout:\n%s\nstderr:\n%s", full[1:], err, stdout.String(), stderr.String())
	}
	var lines []secureLine
	var errs []string
	for _, raw := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		if raw == "" {
			continue
		}
		var l secureLine
		if json.Unmarshal([]byte(raw), &l) != nil {
			t.Errorf("bad output line %q", raw)
			continue
		}
		if l.Type == "error" {
			errs = append(errs, l.Code+" "+l.Error)
		}
		lines = append(lines, l)
	}
	return lines, errs, err
}

func countRecords(lines []secureLine) int {
	n := 0
	for _, l := range lines {
		if l.Type == "record" {
			n++
		}
	}
	return n
}

func metadataOf(lines []secureLine) map[string]int {
	for _, l := range lines {
		if l.Type == "metadata" {
			return l.Topics
		}
	}
	return nil
}

// checkScriptClient runs the three checks with one script client: Metadata shows only
// granted, granted is read, denied gives an authorization error and no record.
func checkScriptClient(t *testing.T, ss *secureServer, argv []string, mech string) {
	ctx := Deadline(t, 120*time.Second)
	lines, _, err := secureScript(t, ctx, argv, ss.srv.KafkaAddr, mech, "reader", secReaderPW, ss.pki.CA, "metadata")
	if err != nil {
		t.Fatalf("metadata: %v", err)
	}
	if md := metadataOf(lines); len(md) != 1 || md["granted"] != 1 {
		t.Errorf("metadata shows %v, want only granted", md)
	}
	lines, _, err = secureScript(t, ctx, argv, ss.srv.KafkaAddr, mech, "reader", secReaderPW, ss.pki.CA, "read", "granted", fmt.Sprint(secRecords))
	if err != nil || countRecords(lines) != secRecords {
		t.Fatalf("read granted: %d records, %v", countRecords(lines), err)
	}
	lines, errs, err := secureScript(t, ctx, argv, ss.srv.KafkaAddr, mech, "reader", secReaderPW, ss.pki.CA, "read", "denied", "1")
	if err == nil || countRecords(lines) != 0 {
		t.Fatalf("read denied: %d records, exit %v", countRecords(lines), err)
	}
	if all := strings.Join(errs, " ") + err.Error(); !strings.Contains(strings.ToUpper(all), "AUTHORIZ") {
		t.Errorf("read denied: errors %q, exit %v; want an authorization error", errs, err)
	}
}

// kcatSecure runs kcat with SASL over TLS and returns stdout, stderr and the exit error.
func kcatSecure(t *testing.T, ctx context.Context, ss *secureServer, mech, user, pw string, args ...string) (string, string, error) {
	t.Helper()
	kcat := NeedTool(t, "kcat")
	base := []string{"-b", ss.srv.KafkaAddr, "-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanisms=" + mech,
		"-X", "sasl.username=" + user, "-X", "sasl.password=" + pw, "-X", "ssl.ca.location=" + ss.pki.CA}
	cmd := exec.CommandContext(ctx, kcat, append(base, args...)...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

func kcatTopics(t *testing.T, out string) []string {
	t.Helper()
	var md struct {
		Topics []struct {
			Topic string `json:"topic"`
			Error string `json:"error"`
		} `json:"topics"`
	}
	if err := json.Unmarshal([]byte(out), &md); err != nil {
		t.Fatalf("kcat -L -J: %v\n%s", err, out)
	}
	var names []string
	for _, tp := range md.Topics {
		if tp.Error == "" {
			names = append(names, tp.Topic)
		}
	}
	return names
}

func TestKafkaSecuritySASLClients(t *testing.T) {
	t.Parallel()
	ss := startSecureServer(t, saslSSL)
	ss.fill(t)

	for _, mech := range []string{"SCRAM-SHA-512", "PLAIN"} {
		t.Run("kcat/"+mech, func(t *testing.T) {
			t.Parallel()
			ctx := Deadline(t, 120*time.Second)
			out, stderr, err := kcatSecure(t, ctx, ss, mech, "reader", secReaderPW, "-L", "-J")
			if err != nil {
				t.Fatalf("kcat -L: %v\n%s", err, stderr)
			}
			if got := kcatTopics(t, out); strings.Join(got, ",") != "granted" {
				t.Errorf("kcat -L shows %v, want only granted", got)
			}
			out, stderr, err = kcatSecure(t, ctx, ss, mech, "reader", secReaderPW, "-C", "-t", "granted", "-o", "beginning", "-c", fmt.Sprint(secRecords), "-q")
			if err != nil || strings.Count(out, "granted-") != secRecords {
				t.Fatalf("kcat -C granted: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr)
			}
			// -e ends at the end of the partition; on denied there is no partition to
			// end, only the authorization error, so bound the wait.
			dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			out, stderr, _ = kcatSecure(t, dctx, ss, mech, "reader", secReaderPW, "-C", "-t", "denied", "-o", "beginning", "-e", "-q")
			if strings.Contains(out, "denied-") {
				t.Errorf("kcat read denied records:\n%s", out)
			}
			if !strings.Contains(strings.ToLower(stderr), "authorization failed") {
				t.Errorf("kcat -C denied: stderr %q, want an authorization error", stderr)
			}
		})
	}
	for _, mech := range []string{"SCRAM-SHA-512", "PLAIN"} {
		t.Run("confluent/"+mech, func(t *testing.T) {
			t.Parallel()
			checkScriptClient(t, ss, pythonScript(t, "confluent_kafka", "secure_confluent.py"), mech)
		})
	}
	t.Run("kafkapython/SCRAM-SHA-256", func(t *testing.T) {
		t.Parallel()
		checkScriptClient(t, ss, pythonScript(t, "kafka", "secure_kafkapython.py"), "SCRAM-SHA-256")
	})
	t.Run("kafkajs/SCRAM-SHA-512", func(t *testing.T) {
		t.Parallel()
		node := NeedTool(t, "node")
		if _, err := os.Stat(filepath.Join("node_modules", "kafkajs", "package.json")); err != nil {
			t.Fatalf("kafkajs is not installed: run ./compat-tests/install-deps.sh: %v", err)
		}
		checkScriptClient(t, ss, []string{node, filepath.Join("clients", "secure_kafkajs.js")}, "SCRAM-SHA-512")
	})
	for _, mech := range []sasl.Mechanism{
		scram.Auth{User: "reader", Pass: secReaderPW}.AsSha512Mechanism(),
		scram.Auth{User: "reader", Pass: secReaderPW}.AsSha256Mechanism(),
		plain.Auth{User: "reader", Pass: secReaderPW}.AsMechanism(),
	} {
		t.Run("franz-go/"+mech.Name(), func(t *testing.T) {
			t.Parallel()
			ctx := Deadline(t, 60*time.Second)
			cl := ss.franz(t, mech, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"granted": {0: kgo.NewOffset().AtStart()}}))
			topics, err := franzTopics(t, ctx, cl)
			if err != nil || strings.Join(topics, ",") != "granted" {
				t.Fatalf("metadata: %v %v, want only granted", topics, err)
			}
			got := 0
			for got < secRecords {
				fs := cl.PollFetches(ctx)
				if ctx.Err() != nil {
					t.Fatalf("consumed %d of %d", got, secRecords)
				}
				fs.EachError(func(_ string, _ int32, err error) { t.Errorf("fetch granted: %v", err) })
				got += fs.NumRecords()
			}
			if code, n := franzFetch(t, ctx, cl, "denied"); code != kerr.TopicAuthorizationFailed.Code || n != 0 {
				t.Errorf("fetch denied: code %d, %d records", code, n)
			}
		})
	}
	t.Run("skip-sasl", func(t *testing.T) {
		t.Parallel()
		// franz-go without SASL: the server closes at its first request past
		// ApiVersions, so nothing is served.
		cl := ss.franz(t, nil, kgo.RequestRetries(0))
		ctx := Deadline(t, 30*time.Second)
		if _, err := franzTopics(t, ctx, cl); err == nil {
			t.Error("metadata served without SASL")
		}
		// A raw TLS connection sending Fetch straight away is disconnected unanswered.
		nc, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ss.srv.KafkaAddr, &tls.Config{RootCAs: ss.rootCAs(t), ServerName: "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		req := kmsg.NewPtrFetchRequest()
		req.Version = 12
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = "granted"
		rt.Partitions = []kmsg.FetchRequestTopicPartition{kmsg.NewFetchRequestTopicPartition()}
		req.Topics = append(req.Topics, rt)
		if _, err := nc.Write(kmsg.NewRequestFormatter().AppendRequest(nil, req, 1)); err != nil {
			t.Fatal(err)
		}
		_ = nc.SetReadDeadline(time.Now().Add(30 * time.Second))
		var buf [4]byte
		n, err := nc.Read(buf[:])
		var ne net.Error
		if err == nil || errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("fetch before SASL: read %d bytes, %v; want the connection closed", n, err)
		}
	})
}

func TestKafkaSecurityWrongPasswords(t *testing.T) {
	t.Parallel()
	ss := startSecureServer(t, saslSSL)
	ctx := Deadline(t, 180*time.Second)
	refused := func(s string) bool {
		return strings.Contains(strings.ToLower(s), "authentication failed")
	}
	t.Run("kcat", func(t *testing.T) {
		kctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		out, stderr, err := kcatSecure(t, kctx, ss, "SCRAM-SHA-512", "reader", "wrong", "-L", "-J", "-m", "10")
		if err == nil || strings.Contains(out, "granted") || !refused(stderr) {
			t.Errorf("kcat with a wrong password: %v\nstdout %s\nstderr %s", err, out, stderr)
		}
	})
	for _, c := range []struct {
		name, mech string
		argv       []string
		want       string // how the client reports the refusal
	}{
		{"confluent", "PLAIN", pythonScript(t, "confluent_kafka", "secure_confluent.py"), "authentication failed"},
		// After a v0 handshake the tokens are bare frames, so a refusal can only be
		// the connection closing, as with Kafka.
		{"kafkapython", "SCRAM-SHA-256", pythonScript(t, "kafka", "secure_kafkapython.py"), "_try_authenticate_scram"},
	} {
		t.Run(c.name, func(t *testing.T) {
			sctx, cancel := context.WithTimeout(ctx, 45*time.Second)
			defer cancel()
			lines, errs, err := secureScript(t, sctx, c.argv, ss.srv.KafkaAddr, c.mech, "reader", "wrong", ss.pki.CA, "read", "granted", "1")
			if countRecords(lines) != 0 || err == nil && len(errs) == 0 {
				t.Fatalf("wrong password read %d records (exit %v)", countRecords(lines), err)
			}
			if all := strings.Join(errs, " "); err == nil || !strings.Contains(strings.ToLower(all+err.Error()), strings.ToLower(c.want)) {
				t.Errorf("wrong password: errors %q, exit %v", all, err)
			}
		})
	}
	t.Run("franz-go", func(t *testing.T) {
		cl := ss.franz(t, scram.Auth{User: "nobody", Pass: "wrong"}.AsSha512Mechanism(), kgo.RequestRetries(0))
		_, err := franzTopics(t, ctx, cl)
		if !errors.Is(err, kerr.SaslAuthenticationFailed) {
			t.Errorf("unknown user: %v, want SASL_AUTHENTICATION_FAILED", err)
		}
	})
	// Every failure is logged with the remote address, never with the password.
	ss.srv.WaitLog(t, "kafka SASL authentication failed")
	logs := ss.srv.Logs()
	if strings.Contains(logs, "wrong") && strings.Contains(logs, `"wrong"`) {
		t.Error("a password appears in the server log")
	}
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "kafka SASL authentication failed") && !strings.Contains(line, `"remote":"127.0.0.1:`) {
			t.Errorf("failure logged without the remote address: %s", line)
		}
	}
}

// TestKafkaSecurityClientCert: on an ssl listener with client_ca, a verified client
// certificate's CN is the user; without one (anonymous refused) nothing is granted, and
// an expired certificate fails the handshake.
func TestKafkaSecurityClientCert(t *testing.T) {
	t.Parallel()
	ss := startSecureServer(t, func(pki *certstest.TestPKI) string {
		return fmt.Sprintf("{security_protocol: ssl, tls: {cert: %q, key: %q, client_ca: %q}}", pki.ServerCert, pki.ServerKey, pki.CA)
	})
	kcat := NeedTool(t, "kcat")
	ctx := Deadline(t, 120*time.Second)
	run := func(cert, key string) (string, string, error) {
		args := []string{"-b", ss.srv.KafkaAddr, "-X", "security.protocol=SSL", "-X", "ssl.ca.location=" + ss.pki.CA, "-L", "-J", "-m", "10"}
		if cert != "" {
			args = append(args, "-X", "ssl.certificate.location="+cert, "-X", "ssl.key.location="+key)
		}
		kctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(kctx, kcat, args...)
		cmd.WaitDelay = 5 * time.Second
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	out, stderr, err := run(ss.pki.ClientCert, ss.pki.ClientKey)
	if err != nil {
		t.Fatalf("kcat with client certificate: %v\n%s", err, stderr)
	}
	if got := kcatTopics(t, out); strings.Join(got, ",") != "granted" {
		t.Errorf("CN=reader sees %v, want only granted", got)
	}
	out, stderr, err = run("", "")
	if err != nil {
		t.Fatalf("kcat without certificate: %v\n%s", err, stderr)
	}
	if got := kcatTopics(t, out); len(got) != 0 {
		t.Errorf("anonymous sees %v, want nothing", got)
	}
	if out, _, err := run(ss.pki.ExpiredCert, ss.pki.ExpiredKey); err == nil && strings.Contains(out, "granted") {
		t.Errorf("expired certificate accepted:\n%s", out)
	}
	ss.srv.WaitLog(t, "kafka TLS handshake failed")
}

// TestKafkaSecurityACLs: kadm creates a binding that lets grantee read denied,
// describes it beside the config's rules, deletes it, and the change is stored: it
// holds across a restart.
func TestKafkaSecurityACLs(t *testing.T) {
	t.Parallel()
	ss := startSecureServer(t, saslSSL)
	ss.fill(t)
	ctx := Deadline(t, 120*time.Second)
	grantee := func() *kgo.Client {
		return ss.franz(t, scram.Auth{User: "grantee", Pass: secReaderPW}.AsSha256Mechanism())
	}
	admin := func() *kadm.Client {
		return kadm.NewClient(ss.franz(t, scram.Auth{User: "admin", Pass: secAdminPW}.AsSha512Mechanism()))
	}
	if code, _ := franzFetch(t, ctx, grantee(), "denied"); code != kerr.TopicAuthorizationFailed.Code {
		t.Fatalf("before the grant: code %d", code)
	}
	// Only an administrator manages ACLs.
	r, err := kadm.NewClient(grantee()).CreateACLs(ctx, kadm.NewACLs().Allow("User:grantee").Topics("denied").ResourcePatternType(kadm.ACLPatternLiteral).Operations(kadm.OpRead))
	if err != nil || len(r) != 1 || !errors.Is(r[0].Err, kerr.ClusterAuthorizationFailed) {
		t.Fatalf("grantee grants itself: %v %+v", err, r)
	}
	grant := kadm.NewACLs().Allow("User:grantee").Topics("denied").ResourcePatternType(kadm.ACLPatternLiteral).Operations(kadm.OpRead)
	if r, err := admin().CreateACLs(ctx, grant); err != nil || len(r) != 1 || r[0].Err != nil {
		t.Fatalf("create: %v %+v", err, r)
	}
	if code, n := franzFetch(t, ctx, grantee(), "denied"); code != 0 || n != secRecords {
		t.Fatalf("after the grant: code %d, %d records", code, n)
	}
	d, err := admin().DescribeACLs(ctx, kadm.NewACLs().Allow().AllowHosts().AnyResource().ResourcePatternType(kadm.ACLPatternAny).Operations(kadm.OpAny))
	if err != nil || len(d) == 0 {
		t.Fatalf("describe: %v %+v", err, d)
	}
	var listed []string
	for _, res := range d {
		if res.Err != nil {
			t.Fatalf("describe: %v", res.Err)
		}
		for _, a := range res.Described {
			listed = append(listed, fmt.Sprintf("%s %s:%s:%s %s", a.Principal, a.Type, a.Pattern, a.Name, a.Operation))
		}
	}
	all := strings.Join(listed, "; ")
	for _, want := range []string{"User:grantee TOPIC:LITERAL:denied READ", "User:reader TOPIC:LITERAL:granted READ",
		"User:reader GROUP:PREFIXED:app- READ", "User:admin CLUSTER:LITERAL:kafka-cluster ALL"} {
		if !strings.Contains(all, want) {
			t.Errorf("describe lists %q; missing %q", all, want)
		}
	}
	// Stored in the log: the grant holds across a restart.
	ss.srv.Restart(t)
	if code, n := franzFetch(t, ctx, grantee(), "denied"); code != 0 || n != secRecords {
		t.Fatalf("after restart: code %d, %d records", code, n)
	}
	del := kadm.NewACLs().Allow("User:grantee").AllowHosts().Topics("denied").ResourcePatternType(kadm.ACLPatternLiteral).Operations(kadm.OpAny)
	res, err := admin().DeleteACLs(ctx, del)
	if err != nil || len(res) != 1 || res[0].Err != nil || len(res[0].Deleted) != 1 {
		t.Fatalf("delete: %v %+v", err, res)
	}
	if code, n := franzFetch(t, ctx, grantee(), "denied"); code != kerr.TopicAuthorizationFailed.Code || n != 0 {
		t.Fatalf("after delete: code %d, %d records", code, n)
	}

	// The same round trip with kafkajs's admin client.
	node := NeedTool(t, "node")
	js := []string{node, filepath.Join("clients", "secure_kafkajs_acl.js")}
	jsAdmin := func(args ...string) secureLine {
		t.Helper()
		lines, errs, err := secureScript(t, ctx, js, ss.srv.KafkaAddr, "SCRAM-SHA-512", "admin", secAdminPW, ss.pki.CA, args...)
		if err != nil || len(errs) > 0 || len(lines) != 1 {
			t.Fatalf("kafkajs %v: %v %q %+v", args, err, errs, lines)
		}
		return lines[0]
	}
	jsAdmin("create", "User:grantee", "denied")
	if code, n := franzFetch(t, ctx, grantee(), "denied"); code != 0 || n != secRecords {
		t.Fatalf("after the kafkajs grant: code %d, %d records", code, n)
	}
	if got := strings.Join(jsAdmin("describe", "User:grantee", "").ACLs, "; "); got != "User:grantee TOPIC:LITERAL:denied READ" {
		t.Errorf("kafkajs describe: %q", got)
	}
	if l := jsAdmin("delete", "User:grantee", "denied"); l.Deleted != 1 {
		t.Errorf("kafkajs delete: %+v", l)
	}
	if code, _ := franzFetch(t, ctx, grantee(), "denied"); code != kerr.TopicAuthorizationFailed.Code {
		t.Fatalf("after the kafkajs delete: code %d", code)
	}
}

// TestKafkaSecuritySessionLifetime: kafka.session_lifetime_ms reaches SaslAuthenticate
// (KIP-368), and franz-go keeps consuming over several lifetimes by re-authenticating on
// the connection it has (the server would close an expired one).
func TestKafkaSecuritySessionLifetime(t *testing.T) {
	t.Parallel()
	const lifetime = 1500 * time.Millisecond
	ss := startSecureServer(t, func(pki *certstest.TestPKI) string {
		return fmt.Sprintf("{security_protocol: sasl_ssl, session_lifetime_ms: %d, tls: {cert: %q, key: %q}}", lifetime.Milliseconds(), pki.ServerCert, pki.ServerKey)
	})
	ss.fill(t)
	ctx := Deadline(t, 60*time.Second)

	// The lifetime as announced, over a raw TLS connection.
	nc, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ss.srv.KafkaAddr, &tls.Config{RootCAs: ss.rootCAs(t), ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	roundTrip := func(req, resp kmsg.Request) []byte {
		t.Helper()
		if _, err := nc.Write(kmsg.NewRequestFormatter().AppendRequest(nil, req, 1)); err != nil {
			t.Fatal(err)
		}
		var size [4]byte
		if _, err := io.ReadFull(nc, size[:]); err != nil {
			t.Fatal(err)
		}
		body := make([]byte, binenc.BigEndian.Uint32(size[:]))
		if _, err := io.ReadFull(nc, body); err != nil {
			t.Fatal(err)
		}
		return body[4:] // past the correlation id (non-flexible response headers)
	}
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Version, hs.Mechanism = 1, "PLAIN"
	roundTrip(hs, nil)
	ar := kmsg.NewPtrSASLAuthenticateRequest()
	ar.Version = 1
	ar.SASLAuthBytes = []byte("\x00reader\x00" + secReaderPW)
	resp := kmsg.NewPtrSASLAuthenticateResponse()
	resp.Version = 1
	if err := resp.ReadFrom(roundTrip(ar, nil)); err != nil {
		t.Fatal(err)
	}
	if resp.ErrorCode != 0 || resp.SessionLifetimeMillis != lifetime.Milliseconds() {
		t.Fatalf("SaslAuthenticate: code %d, session lifetime %d ms", resp.ErrorCode, resp.SessionLifetimeMillis)
	}

	var connects atomic.Int32
	cl := ss.franz(t, scram.Auth{User: "reader", Pass: secReaderPW}.AsSha512Mechanism(), kgo.WithHooks(connectCounter{&connects}))
	end := time.Now().Add(4 * lifetime)
	for time.Now().Before(end) {
		if code, n := franzFetch(t, ctx, cl, "granted"); code != 0 || n != secRecords {
			t.Fatalf("fetch: code %d, %d records", code, n)
		}
		time.Sleep(100 * time.Millisecond) // spread fetches over several lifetimes
	}
	// The seed connection and the one to node 0 (and one spare, should a loaded machine
	// hold a request past franz-go's 1 s margin); an expired session would cost a
	// reconnection per lifetime.
	if n := connects.Load(); n > 3 {
		t.Errorf("%d connections over 4 session lifetimes: re-authentication did not keep them", n)
	}
}

// connectCounter counts franz-go's broker connections.
type connectCounter struct{ n *atomic.Int32 }

func (c connectCounter) OnBrokerConnect(_ kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err == nil {
		c.n.Add(1)
	}
}
