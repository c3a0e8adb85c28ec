// Package compattests runs a real mqstreams process and drives it with third-party
// clients (mosquitto, paho, franz-go, kcat, Python, Node.js).
//
// # Harness API
//
// TestMain (here; do not define another) builds ./cmd/mqstreams once per `go test`
// run into a temp dir. MQSTREAMS_BIN=/path/to/binary uses a prebuilt binary instead;
// MQSTREAMS_RACE=1 builds it with -race; MQSTREAMS_LOG_LEVEL=debug makes servers log
// every connection (default info).
//
//	srv := StartServer(t, ServerOptions{})            // embedded default: stream "mqtt" on "#"
//	srv := StartServer(t, ServerOptions{Config: yaml}) // YAML written to a file, --config
//	srv := LaunchServer(t, o); ...; srv.AwaitReady(t)  // start several, then wait (cluster nodes)
//	srv.MQTTAddr, srv.KafkaAddr, srv.HTTPAddr           // "127.0.0.1:PORT", from the "ready" log line
//	srv.MQTTWSAddr                                      // MQTT over WebSocket, when mqtt.ws_addr is configured
//	host, port := SplitAddr(t, srv.MQTTAddr)            // for CLI tools (-h host -p port)
//	srv.DataDir                                         // survives Restart; t.TempDir() unless given
//	code, body := srv.HTTPGet(t, "/metrics")
//	srv.Stop(t)                // SIGTERM, waits; fails the test unless the exit code is 0
//	srv.Kill(t)                // SIGKILL, waits (a crash: no shutdown code runs)
//	srv.Restart(t)             // Stop (if running), then start on the same data dir; addresses change
//	srv.KillRestart(t)         // Kill (if running), then start on the same data dir
//	srv.RestartSamePorts(t)    // Stop (if running), then start on the same dir and the same ports
//	srv.KillRestartSamePorts(t) // Kill (if running), then start on the same dir and the same ports
//	srv.Logs()                 // everything the process wrote to stdout/stderr so far
//	srv.WaitLog(t, "kafka listening") // waits for a log line whose message contains a string
//	srv.Signal(t, syscall.SIGHUP)      // e.g. reload TLS certificates
//	out, code := RunBinary(t, 30*time.Second, "serve", "--config", f) // a short-lived run
//	NeedTool(t, "kcat")        // fails (not skips) when a client tool is missing
//	Python(t)                  // the interpreter with the Debian python3-* client libraries
//	Deadline(t, 30*time.Second) // a context ending at the deadline, cancelled at cleanup
//
// Every server is started on 127.0.0.1:0 ports (so suites run in parallel), killed at
// the end of its test if still running, and its log is printed when the test fails.
// Waits use deadlines, never fixed sleeps; the default is generous (60 s) because the
// suite runs under -race on loaded 2-core machines.
package compattests

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds the wait for the "ready" line and for a process to exit.
const startTimeout = 60 * time.Second

// binary is the mqstreams executable under test, set by TestMain.
var binary string

// testVersion is stamped into the binary built by TestMain.
const testVersion = "compat-test"

func TestMain(m *testing.M) {
	code, err := buildAndRun(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "compat-tests:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func buildAndRun(m *testing.M) (int, error) {
	if bin := os.Getenv("MQSTREAMS_BIN"); bin != "" {
		binary = bin
		return m.Run(), nil
	}
	dir, err := os.MkdirTemp("", "mqstreams-compat-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "mqstreams")
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	args := []string{"build", "-o", binary, "-ldflags", "-X main.version=" + testVersion}
	if os.Getenv("MQSTREAMS_RACE") == "1" {
		args = append(args, "-race")
	}
	cmd := exec.Command(goTool, append(args, "./cmd/mqstreams")...)
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("build mqstreams: %v\n%s", err, out)
	}
	return m.Run(), nil
}

// ServerOptions configure StartServer.
type ServerOptions struct {
	// Config is YAML for --config; empty runs without a file (the embedded default).
	Config string
	// DataDir is the data directory; empty means a fresh t.TempDir().
	DataDir string
	// Args are extra serve flags, after the harness's own (so they win).
	Args []string
}

// Server is a running (or stopped) mqstreams process.
type Server struct {
	MQTTAddr  string
	KafkaAddr string
	HTTPAddr  string
	// MQTTWSAddr is the MQTT over WebSocket address; empty without mqtt.ws_addr.
	MQTTWSAddr string
	DataDir    string

	opts       ServerOptions
	configFile string
	out        *logBuffer
	startMark  int // first log line of the current process
	proc       *process
}

type process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once Wait returned
	err    error         // Wait's result
}

// StartServer starts mqstreams and waits for its "ready" line.
func StartServer(t testing.TB, o ServerOptions) *Server {
	t.Helper()
	s := newServer(t, o)
	s.start(t, "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0")
	return s
}

// newServer prepares a Server (data dir, config file, cleanup) without starting it.
func newServer(t testing.TB, o ServerOptions) *Server {
	t.Helper()
	s := &Server{opts: o, DataDir: o.DataDir, out: &logBuffer{}}
	if s.DataDir == "" {
		s.DataDir = t.TempDir()
	}
	if o.Config != "" {
		s.configFile = filepath.Join(t.TempDir(), "mqstreams.yaml")
		if err := os.WriteFile(s.configFile, []byte(o.Config), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if s.running() {
			_ = s.proc.cmd.Process.Kill()
			<-s.proc.exited
		}
		if t.Failed() {
			lines := strings.Split(strings.TrimRight(s.Logs(), "\n"), "\n")
			if n := len(lines) - maxLogLines; n > 0 {
				lines = append([]string{fmt.Sprintf("... %d earlier lines", n)}, lines[n:]...)
			}
			t.Logf("mqstreams log (MQSTREAMS_LOG_LEVEL=debug for more):\n%s", strings.Join(lines, "\n"))
		}
	})
	return s
}

// LaunchServer starts mqstreams like StartServer but returns at once; AwaitReady then
// waits for its "ready" line (for servers that become ready together, as a cluster's
// nodes do once a quorum of them runs).
func LaunchServer(t testing.TB, o ServerOptions) *Server {
	t.Helper()
	s := newServer(t, o)
	s.launch(t, "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0")
	return s
}

// AwaitReady waits for a launched server's "ready" line and fills its addresses.
func (s *Server) AwaitReady(t testing.TB) { s.awaitReady(t) }

func (s *Server) start(t testing.TB, mqttAddr, kafkaAddr, httpAddr string) {
	t.Helper()
	s.launch(t, mqttAddr, kafkaAddr, httpAddr)
	s.awaitReady(t)
}

// launch starts the process without waiting for it to be ready (nodes of a cluster
// become ready together, once a quorum of them runs).
func (s *Server) launch(t testing.TB, mqttAddr, kafkaAddr, httpAddr string) {
	t.Helper()
	args := []string{"serve", "--data-dir", s.DataDir,
		"--mqtt-addr", mqttAddr, "--kafka-addr", kafkaAddr, "--http-addr", httpAddr,
		"--log-format", "json", "--log-level", logLevel()}
	if s.configFile != "" {
		args = append(args, "--config", s.configFile)
	}
	args = append(args, s.opts.Args...)
	cmd := exec.Command(binary, args...)
	mark := s.out.mark()
	s.startMark = mark
	s.out.write([]byte(fmt.Sprintf("--- %s\n", strings.Join(cmd.Args, " "))))
	cmd.Stdout = s.out
	cmd.Stderr = s.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mqstreams: %v", err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	s.proc = p
}

// awaitReady waits for the launched process's "ready" line and takes its addresses.
func (s *Server) awaitReady(t testing.TB) {
	t.Helper()
	ready, err := s.out.waitLine(s.startMark, s.proc.exited, startTimeout, func(l logLine) bool { return l.Message == "ready" })
	if err != nil {
		t.Fatalf("mqstreams did not become ready: %v", err)
	}
	s.MQTTAddr, s.KafkaAddr, s.HTTPAddr = ready.MQTTAddr, ready.KafkaAddr, ready.HTTPAddr
	s.MQTTWSAddr = ready.MQTTWSAddr
	if s.MQTTAddr == "" || s.KafkaAddr == "" || s.HTTPAddr == "" {
		t.Fatalf("ready line without addresses: %+v", ready)
	}
}

// logLevel is the servers' log level: info, or MQSTREAMS_LOG_LEVEL (debug logs every
// connection and rejected packet, handy when a suite fails, noisy otherwise).
func logLevel() string {
	if l := os.Getenv("MQSTREAMS_LOG_LEVEL"); l != "" {
		return l
	}
	return "info"
}

// maxLogLines bounds the server log printed for a failed test (its tail is kept).
const maxLogLines = 300

func (s *Server) running() bool {
	if s.proc == nil {
		return false
	}
	select {
	case <-s.proc.exited:
		return false
	default:
		return true
	}
}

// wait waits for the process to exit and returns its exit code (-1 if killed by a signal).
func (s *Server) wait(t testing.TB) int {
	t.Helper()
	select {
	case <-s.proc.exited:
	case <-time.After(startTimeout):
		_ = s.proc.cmd.Process.Kill()
		<-s.proc.exited
		t.Fatalf("mqstreams did not exit within %s", startTimeout)
	}
	return s.proc.cmd.ProcessState.ExitCode()
}

// Stop sends SIGTERM and waits; the test fails unless the process exits 0.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if !s.running() {
		t.Fatal("Stop: server is not running")
	}
	if err := s.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	if code := s.wait(t); code != 0 {
		t.Fatalf("mqstreams exited %d after SIGTERM (%v)", code, s.proc.err)
	}
}

// Kill sends SIGKILL and waits: a crash, no shutdown code runs.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	if !s.running() {
		t.Fatal("Kill: server is not running")
	}
	_ = s.proc.cmd.Process.Kill()
	s.wait(t)
}

// Restart stops the server gracefully and starts it again on the same data dir, on new
// ports; the address fields are updated.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if s.running() {
		s.Stop(t)
	}
	s.start(t, "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0")
}

// KillRestart kills the server and starts it again on the same data dir, on new ports.
func (s *Server) KillRestart(t testing.TB) {
	t.Helper()
	if s.running() {
		s.Kill(t)
	}
	s.start(t, "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0")
}

// RestartSamePorts stops the server and starts it again on the same data dir and the
// same ports, for clients that must reconnect to the address they know.
func (s *Server) RestartSamePorts(t testing.TB) {
	t.Helper()
	if s.running() {
		s.Stop(t)
	}
	s.start(t, s.MQTTAddr, s.KafkaAddr, s.HTTPAddr)
}

// KillRestartSamePorts kills the server (SIGKILL: a crash) and starts it again on the
// same data dir and the same ports, for clients that retry the address they know.
func (s *Server) KillRestartSamePorts(t testing.TB) {
	t.Helper()
	if s.running() {
		s.Kill(t)
	}
	s.start(t, s.MQTTAddr, s.KafkaAddr, s.HTTPAddr)
}

// Signal sends a signal to the running process (SIGHUP reloads TLS certificates).
func (s *Server) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if !s.running() {
		t.Fatal("Signal: server is not running")
	}
	if err := s.proc.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// Logs returns everything the process (and its restarts) wrote so far.
func (s *Server) Logs() string { return s.out.String() }

// WaitLog waits until the current process has logged a line whose message contains substr.
func (s *Server) WaitLog(t testing.TB, substr string) {
	t.Helper()
	if _, err := s.out.waitLine(s.startMark, s.proc.exited, startTimeout, func(l logLine) bool {
		return strings.Contains(l.Message, substr)
	}); err != nil {
		t.Fatalf("waiting for log %q: %v", substr, err)
	}
}

// HTTPGet fetches a path from the HTTP endpoint and returns status code and body.
func (s *Server) HTTPGet(t testing.TB, path string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.HTTPAddr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(body)
}

// RunBinary runs mqstreams with args to completion (killing it at the timeout) and
// returns its combined output and exit code.
func RunBinary(t testing.TB, timeout time.Duration, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("mqstreams %s did not finish within %s; output:\n%s", strings.Join(args, " "), timeout, out)
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run mqstreams: %v", err)
	}
	return string(out), cmd.ProcessState.ExitCode()
}

// NeedTool fails the test when a client tool is not installed: a compat test that
// skips silently would hide a regression. `make test-deps` installs them.
func NeedTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: run ./compat-tests/install-deps.sh (make test-deps)", name)
	}
	return p
}

// Python returns the Python interpreter for client suites: MQSTREAMS_PYTHON, else the
// Debian /usr/bin/python3 that install-deps.sh installs the python3-* libraries for
// (a pyenv or venv python3 earlier on PATH would not see them), else python3.
func Python(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("MQSTREAMS_PYTHON"); p != "" {
		return p
	}
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		return "/usr/bin/python3"
	}
	return NeedTool(t, "python3")
}

// SplitAddr splits "host:port" for tools that take them apart.
func SplitAddr(t testing.TB, addr string) (host, port string) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return host, port
}

// Deadline returns a context that ends after d, cancelled when the test ends.
func Deadline(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// logLine is the part of a JSON log line the harness reads.
type logLine struct {
	Level      string `json:"level"`
	Message    string `json:"message"`
	Error      string `json:"error"`
	MQTTAddr   string `json:"mqtt_addr"`
	MQTTWSAddr string `json:"mqtt_ws_addr"`
	KafkaAddr  string `json:"kafka_addr"`
	HTTPAddr   string `json:"http_addr"`
}

// logBuffer collects a process's output and wakes waiters on each complete line.
type logBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	lines   []string
	partial []byte
	changed chan struct{} // closed and replaced when a line arrives
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.write(p)
	return len(p), nil
}

func (b *logBuffer) write(p []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	b.partial = append(b.partial, p...)
	consumed := 0
	for {
		i := bytes.IndexByte(b.partial[consumed:], '\n')
		if i < 0 {
			break
		}
		b.lines = append(b.lines, string(b.partial[consumed:consumed+i]))
		consumed += i + 1
	}
	b.partial = append(b.partial[:0], b.partial[consumed:]...)
	if consumed > 0 && b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// mark is the index of the next line, so a wait can ignore lines of earlier runs.
func (b *logBuffer) mark() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.lines)
}

// waitLine waits for a JSON line from index from on that satisfies match, failing early
// if the process exits first.
func (b *logBuffer) waitLine(from int, exited <-chan struct{}, timeout time.Duration, match func(logLine) bool) (logLine, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		for ; from < len(b.lines); from++ {
			var l logLine
			if json.Unmarshal([]byte(b.lines[from]), &l) == nil && match(l) {
				b.mu.Unlock()
				return l, nil
			}
		}
		if b.changed == nil {
			b.changed = make(chan struct{})
		}
		changed := b.changed
		b.mu.Unlock()
		select {
		case <-changed:
		case <-exited:
			// The writer may still deliver the last lines; look once more.
			b.mu.Lock()
			for ; from < len(b.lines); from++ {
				var l logLine
				if json.Unmarshal([]byte(b.lines[from]), &l) == nil && match(l) {
					b.mu.Unlock()
					return l, nil
				}
			}
			b.mu.Unlock()
			return logLine{}, errors.New("process exited")
		case <-deadline.C:
			return logLine{}, fmt.Errorf("no matching line within %s", timeout)
		}
	}
}
