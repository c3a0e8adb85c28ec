package main

// Starting and stopping the brokers under test, each as its own process, and sampling
// their resident memory.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/twmb/franz-go/pkg/kfake"
)

// proc is a broker process started by the bench tool.
type proc struct {
	name      string
	cmd       *exec.Cmd
	mqttAddr  string
	kafkaAddr string
	httpAddr  string
	dataDir   string
	started   time.Time
	ready     time.Duration // start to ready
	stderr    *tailBuffer
	exited    chan struct{}
}

// tailBuffer keeps the last bytes a process wrote, for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 8192 {
		t.buf = t.buf[len(t.buf)-8192:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// startMQStreams starts the real binary on free loopback ports with dataDir and the
// given config, and waits for its "ready" line.
func startMQStreams(bin, dataDir, config string) (*proc, error) {
	return startMQStreamsNamed("mqstreams ("+filepath.Base(dataDir)+")", bin, dataDir, config)
}

// startMQStreamsNamed is startMQStreams with the name the RSS samples carry.
func startMQStreamsNamed(name, bin, dataDir, config string) (*proc, error) {
	return startMQStreamsWait(name, bin, dataDir, config, time.Minute)
}

// startMQStreamsWait is startMQStreamsNamed with a longer wait for readiness.
func startMQStreamsWait(name, bin, dataDir, config string, wait time.Duration) (*proc, error) {
	cfgPath := filepath.Join(filepath.Dir(dataDir), filepath.Base(dataDir)+".yaml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", "--config", cfgPath, "--data-dir", dataDir,
		"--mqtt-addr", "127.0.0.1:0", "--kafka-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--log-format", "json", "--log-level", "info")
	p := &proc{name: name, cmd: cmd, dataDir: dataDir, stderr: &tailBuffer{}, exited: make(chan struct{})}
	pr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Bytes()
			_, _ = p.stderr.Write(append(line, '\n'))
			if sent {
				continue
			}
			var m struct {
				Message   string `json:"message"`
				MQTTAddr  string `json:"mqtt_addr"`
				KafkaAddr string `json:"kafka_addr"`
				HTTPAddr  string `json:"http_addr"`
			}
			if json.Unmarshal(line, &m) == nil && m.Message == "ready" {
				p.ready = time.Since(p.started)
				p.mqttAddr, p.kafkaAddr, p.httpAddr = m.MQTTAddr, m.KafkaAddr, m.HTTPAddr
				sent = true
				ready <- nil
			}
		}
		_, _ = io.Copy(io.Discard, pr)
		// Wait closes the pipe: only after every line was read (os/exec's rule).
		_ = cmd.Wait()
		close(p.exited)
		if !sent {
			ready <- errors.New("exited before ready")
		}
	}()
	select {
	case err := <-ready:
		if err != nil {
			<-p.exited
			return nil, fmt.Errorf("mqstreams %w: %s", err, strings.TrimSpace(p.stderr.String()))
		}
	case <-time.After(wait):
		p.stop()
		return nil, fmt.Errorf("mqstreams not ready within %v", wait)
	}
	return p, nil
}

// startMosquitto starts the Debian mosquitto with persistence off on a free port.
func startMosquitto(dir string) (*proc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "mosquitto.conf")
	conf := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type error\nmax_keepalive 65535\n", port)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = "/usr/sbin/mosquitto"
	}
	cmd := exec.Command(bin, "-c", cfg)
	p := &proc{name: "mosquitto", cmd: cmd, mqttAddr: fmt.Sprintf("127.0.0.1:%d", port), stderr: &tailBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start mosquitto (apt-get install mosquitto): %w", err)
	}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	if err := p.waitDial(p.mqttAddr); err != nil {
		return nil, err
	}
	return p, nil
}

// startSelf re-runs this program as a broker ("mochi" or "kfake") so every broker
// under test is a process of its own; it prints its address on stdout.
func startSelf(kind string) (*proc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, kind)
	p := &proc{name: kind, cmd: cmd, stderr: &tailBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("%s: %w: %s", kind, err, p.stderr.String())
	}
	addr := strings.TrimSpace(line)
	if kind == "kfake" {
		p.kafkaAddr = addr
	} else {
		p.mqttAddr = addr
	}
	p.ready = time.Since(p.started)
	return p, nil
}

func (p *proc) waitDial(addr string) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			p.ready = time.Since(p.started)
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited: %s", p.name, p.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	p.stop()
	return fmt.Errorf("%s not listening on %s within 20s", p.name, addr)
}

// stop sends SIGTERM and waits (SIGKILL after 15 s).
func (p *proc) stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// rssMB reads the process's resident set size.
func (p *proc) rssMB() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				kb, _ := strconv.ParseFloat(f[1], 64)
				return kb / 1024
			}
		}
	}
	return 0
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// dirBytes sums the sizes of the files under dir.
func dirBytes(dir string) int64 {
	var n int64
	_ = filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			n += info.Size()
		}
		return nil
	})
	return n
}

// allowAll lets every client connect and publish: mochi refuses everyone without an
// auth hook, and this is the least a broker can do.
type allowAll struct{ mochi.HookBase }

func (allowAll) ID() string { return "allow-all" }
func (allowAll) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}
func (allowAll) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return true }
func (allowAll) OnACLCheck(*mochi.Client, string, bool) bool              { return true }

// serveMochi is "mqbench mochi": mochi-mqtt in memory, no hook but allow-all.
func serveMochi() error {
	srv := mochi.New(&mochi.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := srv.AddHook(new(allowAll), nil); err != nil {
		return err
	}
	l := listeners.NewTCP(listeners.Config{ID: "bench", Address: "127.0.0.1:0"})
	if err := srv.AddListener(l); err != nil {
		return err
	}
	if err := srv.Serve(); err != nil {
		return err
	}
	fmt.Println(l.Address())
	waitSignal()
	return srv.Close()
}

// serveKfake is "mqbench kfake": franz-go's in-memory Kafka, one broker.
func serveKfake() error {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0), kfake.SeedTopics(4, "replay"))
	if err != nil {
		return err
	}
	fmt.Println(c.ListenAddrs()[0])
	waitSignal()
	c.Close()
	return nil
}

func waitSignal() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
}

// commitStats are the counters of mqstreams' /metrics that tell what bounds durable
// ingest: how many fsyncs, how long they took, how many records they covered.
type commitStats struct {
	fsyncs, fsyncSeconds, appended float64
}

// scrapeCommitStats reads them; zero stats when the server has no HTTP address.
func (p *proc) scrapeCommitStats() (commitStats, error) {
	var st commitStats
	if p.httpAddr == "" {
		return st, nil
	}
	cl := http.Client{Timeout: 10 * time.Second}
	resp, err := cl.Get("http://" + p.httpAddr + "/metrics")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, val, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			continue
		}
		switch {
		case name == "mqstreams_fsync_latency_seconds_count":
			st.fsyncs = v
		case name == "mqstreams_fsync_latency_seconds_sum":
			st.fsyncSeconds = v
		case strings.HasPrefix(name, "mqstreams_messages_appended_total{"):
			st.appended += v
		}
	}
	return st, sc.Err()
}

// cpuSeconds is the user+system CPU time the process has used so far.
func (p *proc) cpuSeconds() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces) start after the last ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ is 100 on Linux
}

// selfCPUSeconds is this process's (the load generator's) CPU time so far.
func selfCPUSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
