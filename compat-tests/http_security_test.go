package compattests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mqstreams/mqstreams/auth"
	"github.com/mqstreams/mqstreams/certs/certstest"
)

// hashFor returns what `mqstreams hash-password` prints for pw (cheap bcrypt cost).
func hashFor(t testing.TB, pw string) string {
	t.Helper()
	c, err := auth.HashPassword(pw, 4)
	if err != nil {
		t.Fatal(err)
	}
	return c.String()
}

// curl runs curl against the server's HTTP port and returns the status and body.
func curl(t *testing.T, ctx context.Context, args ...string) (int, string) {
	t.Helper()
	NeedTool(t, "curl")
	args = append([]string{"-s", "-o", "-", "-w", "\n%{http_code}"}, args...)
	out, err := exec.CommandContext(ctx, "curl", args...).Output()
	if err != nil {
		t.Fatalf("curl %v: %v", args, err)
	}
	s := strings.TrimRight(string(out), "\n")
	i := strings.LastIndex(s, "\n")
	code, err := strconv.Atoi(s[i+1:])
	if err != nil {
		t.Fatalf("curl %v: no status in %q", args, s)
	}
	return code, s[:max(i, 0)]
}

// cli runs the mqstreams binary with stdin and extra environment.
func cli(t *testing.T, ctx context.Context, stdin string, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestHTTPAdminSecurity drives the HTTP door over TLS with curl and the users CLI:
// probes and metrics stay open, every /api/ path needs credentials, writes need an
// administrator, users added at run time persist across a restart.
func TestHTTPAdminSecurity(t *testing.T) {
	ctx := Deadline(t, 3*time.Minute)
	pki, err := certstest.NewTestPKI(t.TempDir(), "ops-bot")
	if err != nil {
		t.Fatal(err)
	}
	srv := StartServer(t, ServerOptions{Config: fmt.Sprintf(`
http: { tls: { cert: %q, key: %q, client_ca: %q } }
auth:
  allow_anonymous: false
  users:
    - { username: root, password_hash: %q, superuser: true }
    - { username: alice, password_hash: %q, acl: [{ group: "etl-", allow: [read] }] }
    - { username: ops-bot, password_hash: %q, acl: [{ stream: "*", allow: [admin] }] }
`, pki.ServerCert, pki.ServerKey, pki.CA, hashFor(t, "rootpw"), hashFor(t, "alicepw"), hashFor(t, "unused"))})
	base := "https://" + srv.HTTPAddr
	tlsArgs := []string{"--cacert", pki.CA}
	get := func(path string, extra ...string) (int, string) {
		return curl(t, ctx, append(append(append([]string{}, tlsArgs...), extra...), base+path)...)
	}

	checks := []struct {
		name  string
		path  string
		extra []string
		want  int
	}{
		{"healthz open", "/healthz", nil, 200},
		{"metrics open", "/metrics", nil, 200},
		{"api without credentials", "/api/v1/users", nil, 401},
		{"unknown api path without credentials", "/api/v1/nothing", nil, 401},
		{"wrong password", "/api/v1/users", []string{"-u", "root:nope"}, 401},
		{"unknown user", "/api/v1/users", []string{"-u", "mallory:rootpw"}, 401},
		{"non-admin lists users", "/api/v1/users", []string{"-u", "alice:alicepw"}, 403},
		{"non-admin reads groups", "/api/v1/groups", []string{"-u", "alice:alicepw"}, 200},
		{"admin lists users", "/api/v1/users", []string{"-u", "root:rootpw"}, 200},
		{"client certificate CN as admin", "/api/v1/users", []string{"--cert", pki.ClientCert, "--key", pki.ClientKey}, 200},
		{"non-admin posts", "/api/v1/users", []string{"-u", "alice:alicepw", "-X", "POST", "-d", `{"username":"x","password":"y"}`}, 403},
	}
	for _, c := range checks {
		if code, body := get(c.path, c.extra...); code != c.want {
			t.Errorf("%s: HTTP %d, want %d (%s)", c.name, code, c.want, body)
		}
	}
	// An expired client certificate fails the handshake: curl exits non-zero.
	if out, err := exec.CommandContext(ctx, "curl", "-s", "--cacert", pki.CA, "--cert", pki.ExpiredCert, "--key", pki.ExpiredKey, base+"/api/v1/users").CombinedOutput(); err == nil {
		t.Errorf("expired client certificate accepted: %s", out)
	}
	// Garbage instead of a TLS handshake is refused and the server keeps serving.
	if c, err := net.Dial("tcp", srv.HTTPAddr); err == nil {
		_, _ = c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 512)
		n, _ := c.Read(buf)
		c.Close()
		if strings.Contains(string(buf[:n]), "200 OK") {
			t.Errorf("plain HTTP answered on the TLS port: %q", buf[:n])
		}
	}

	// EMQX-style login: a bearer token.
	code, body := get("/api/v5/login", "-X", "POST", "-d", `{"username":"root","password":"rootpw"}`)
	var login struct {
		Token string `json:"token"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &login) != nil || login.Token == "" {
		t.Fatalf("login: %d %s", code, body)
	}
	if code, body := get("/api/v1/users", "-H", "Authorization: Bearer "+login.Token); code != 200 || !strings.Contains(body, `"alice"`) {
		t.Errorf("bearer token: %d %s", code, body)
	}
	if code, _ := get("/api/v1/users", "-H", "Authorization: Bearer forged"); code != 401 {
		t.Errorf("forged token: %d", code)
	}

	// The users CLI against the running server.
	adminEnv := []string{"MQSTREAMS_USER=root", "MQSTREAMS_PASSWORD=rootpw"}
	target := []string{"--server", base, "--cacert", pki.CA}
	if out, err := cli(t, ctx, "bobpw\n", adminEnv, append([]string{"users", "add", "bob", "--acl", "group:etl-:read"}, target...)...); err != nil {
		t.Fatalf("users add: %v\n%s", err, out)
	}
	if out, err := cli(t, ctx, "x\n", []string{"MQSTREAMS_USER=alice", "MQSTREAMS_PASSWORD=alicepw"}, append([]string{"users", "add", "eve"}, target...)...); err == nil || !strings.Contains(out, "403") {
		t.Errorf("a non-admin added a user: %v %s", err, out)
	}
	if out, err := cli(t, ctx, "x\n", adminEnv, append([]string{"users", "delete", "alice"}, target...)...); err == nil || !strings.Contains(out, "config file") {
		t.Errorf("deleting a config user: %v %s", err, out)
	}
	if code, _ := get("/api/v1/groups", "-u", "bob:bobpw"); code != 200 {
		t.Errorf("new user bob refused: %d", code)
	}

	srv.Restart(t)
	base = "https://" + srv.HTTPAddr
	target = []string{"--server", base, "--cacert", pki.CA}
	out, err := cli(t, ctx, "", adminEnv, append([]string{"users", "list", "-o", "json"}, target...)...)
	if err != nil || !strings.Contains(out, `"bob"`) || !strings.Contains(out, `"source": "api"`) || strings.Contains(out, "bobpw") || strings.Contains(out, "bcrypt") {
		t.Fatalf("users list after restart: %v\n%s", err, out)
	}
	if out, err := cli(t, ctx, "bobnew\n", adminEnv, append([]string{"users", "passwd", "bob"}, target...)...); err != nil {
		t.Fatalf("users passwd: %v\n%s", err, out)
	}
	if code, _ := get("/api/v1/groups", "-u", "bob:bobpw"); code != 401 {
		t.Errorf("old password after passwd: %d", code)
	}
	if code, _ := get("/api/v1/groups", "-u", "bob:bobnew"); code != 200 {
		t.Errorf("new password after passwd: %d", code)
	}
	if out, err := cli(t, ctx, "", adminEnv, append([]string{"users", "delete", "bob"}, target...)...); err != nil {
		t.Fatalf("users delete: %v\n%s", err, out)
	}
	if code, _ := get("/api/v1/groups", "-u", "bob:bobnew"); code != 401 {
		t.Errorf("deleted user still accepted: %d", code)
	}
	// Nothing secret reached the log.
	for _, secret := range []string{"rootpw", "alicepw", "bobpw", "bobnew"} {
		if strings.Contains(srv.Logs(), secret) {
			t.Errorf("the server log holds the password %q", secret)
		}
	}
}

// TestUsersOffline adds a user to a stopped server's data dir; once a user exists the
// server leaves the open demo mode and wants credentials.
func TestUsersOffline(t *testing.T) {
	ctx := Deadline(t, 2*time.Minute)
	dir := t.TempDir()
	if out, err := cli(t, ctx, "carolpw\n", nil, "users", "add", "carol", "--superuser", "--data-dir", dir); err != nil {
		t.Fatalf("users add --data-dir: %v\n%s", err, out)
	}
	out, err := cli(t, ctx, "", nil, "users", "list", "--data-dir", dir)
	if err != nil || !strings.Contains(out, "carol") {
		t.Fatalf("users list --data-dir: %v\n%s", err, out)
	}
	srv := StartServer(t, ServerOptions{DataDir: dir})
	if code, _ := srv.HTTPGet(t, "/api/v1/groups"); code != 401 {
		t.Errorf("anonymous admin API with a stored user: %d", code)
	}
	if code, body := curl(t, ctx, "-u", "carol:carolpw", "http://"+srv.HTTPAddr+"/api/v1/users"); code != 200 || !strings.Contains(body, "carol") {
		t.Errorf("stored superuser: %d %s", code, body)
	}
	// The data dir is locked while the server runs: the offline CLI says so.
	if out, err := cli(t, ctx, "x\n", nil, "users", "add", "dave", "--data-dir", dir); err == nil || !strings.Contains(out, "in use") {
		t.Errorf("offline add on a running server's dir: %v %s", err, out)
	}
}

// TestOpenModeRefusesPublicAddress: with no users, listening beyond loopback needs
// allow_anonymous: true.
func TestOpenModeRefusesPublicAddress(t *testing.T) {
	dir := t.TempDir()
	out, code := RunBinary(t, 30*time.Second, "serve", "--data-dir", dir, "--mqtt-addr", "0.0.0.0:0", "--kafka-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
	if code != 1 || !strings.Contains(out, "not a loopback address") || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Fatalf("exit %d, want 1 with one line naming the address:\n%s", code, out)
	}
	// allow_anonymous: true is the operator's explicit choice: the server starts.
	StartServer(t, ServerOptions{Config: "auth: { allow_anonymous: true }\n", Args: []string{"--mqtt-addr", "0.0.0.0:0"}})
}
