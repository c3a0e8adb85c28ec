package main

// Section "cluster": MQTT QoS 1 ingest into one shard through a three-node cluster of
// the real binary (three processes on this machine, sharing its cores and its disk)
// against one node alone, in the same run (issue 13: ≥ 0.4× the single-node rate).

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mqstreams/mqstreams/loadgen"
)

// One shard, fsync: the case the target names.
const clusterStreams = `durability: fsync
streams:
  - {name: cingest, filter: "cbench/#", shards: 1, key: clientid}
`

// clusterPerfDir, when set (-cluster-perf), gets a perf recording of each node
// over the first round of each publisher count.
var clusterPerfDir string

// ClusterIngestResult is one round of one cell: the single node's rate and the
// cluster's, measured one after the other.
type ClusterIngestResult struct {
	Publishers int     `json:"publishers"`
	InFlight   int     `json:"inflight"`
	Payload    int     `json:"payload"`
	Round      int     `json:"round"`
	Seconds    float64 `json:"seconds"` // each of the two runs
	Single     float64 `json:"single_msg_per_sec"`
	Cluster    float64 `json:"cluster_msg_per_sec"`
	Ratio      float64 `json:"ratio"`
	ClusterP50 float64 `json:"cluster_ack_p50_us,omitempty"`
	ClusterP99 float64 `json:"cluster_ack_p99_us,omitempty"`
	SingleP50  float64 `json:"single_ack_p50_us,omitempty"`
	// CPU µs the server(s) spent per message, and cores they kept busy.
	SingleCPUus  float64 `json:"single_cpu_us_per_msg,omitempty"`
	ClusterCPUus float64 `json:"cluster_cpu_us_per_msg,omitempty"`
	SingleCores  float64 `json:"single_cores,omitempty"`
	ClusterCores float64 `json:"cluster_cores,omitempty"`
	Load         string  `json:"load"`
	Error        string  `json:"error,omitempty"`
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startCluster starts three nodes (each waits for a quorum before it is ready).
func (b *bench) startCluster(dir string) ([]*proc, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var raft []string
	for range 3 {
		a, err := freeAddr()
		if err != nil {
			return nil, err
		}
		raft = append(raft, a)
	}
	ps := make([]*proc, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		var c strings.Builder
		fmt.Fprintf(&c, "cluster:\n  node_id: %d\n  raft_addr: %s\n  peers:\n", i+1, raft[i])
		for j := range 3 {
			if j != i {
				fmt.Fprintf(&c, "    - {id: %d, raft_addr: %q}\n", j+1, raft[j])
			}
		}
		c.WriteString(clusterStreams)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ps[i], errs[i] = startMQStreamsNamed(fmt.Sprintf("mqstreams (cluster node %d)", i+1), b.bin, filepath.Join(dir, fmt.Sprintf("node%d", i+1)), c.String())
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			for _, p := range ps {
				if p != nil {
					p.stop()
				}
			}
			return nil, fmt.Errorf("cluster node %d: %w", i+1, err)
		}
		b.track(ps[i])
	}
	// Writable once the shard has a leader: a QoS 1 publish through every node.
	deadline := time.Now().Add(time.Minute)
	for i, p := range ps {
		for {
			ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
			res, err := loadgen.Run(ctx, loadgen.Config{Addr: p.mqttAddr, QoS: 1, Messages: 1, PayloadSize: 100, Topic: "cbench/warm%d", ClientIDPrefix: fmt.Sprintf("warm%d", i)})
			cancel()
			if err == nil && res.Acked == 1 {
				break
			}
			if time.Now().After(deadline) || b.ctx.Err() != nil {
				return ps, fmt.Errorf("cluster node %d not writable after a minute: %v", i+1, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return ps, nil
}

// spreadRun runs pubs publishers spread over the nodes (as behind a TCP load
// balancer) and sums what they got acknowledged.
// cpuUS is the servers' CPU time per acknowledged message (µs), and the share of the
// machine's cores they used, over a run.
func (b *bench) spreadRun(ps []*proc, pubs, inflight int, prefix string) (rate float64, hist loadgen.Histogram, cpuUS, cores float64, err error) {
	cpu0, t0 := 0.0, time.Now()
	for _, p := range ps {
		cpu0 += p.cpuSeconds()
	}
	rate, hist, err = b.spreadLoad(ps, pubs, inflight, prefix)
	cpu1 := 0.0
	for _, p := range ps {
		cpu1 += p.cpuSeconds()
	}
	if el := time.Since(t0).Seconds(); rate > 0 && el > 0 {
		cpuUS = (cpu1 - cpu0) / (rate * el) * 1e6
		cores = (cpu1 - cpu0) / el
	}
	return rate, hist, cpuUS, cores, err
}

func (b *bench) spreadLoad(ps []*proc, pubs, inflight int, prefix string) (float64, loadgen.Histogram, error) {
	var mu sync.Mutex
	var total float64
	var hist loadgen.Histogram
	var firstErr error
	var wg sync.WaitGroup
	for i, p := range ps {
		n := pubs / len(ps)
		if i < pubs%len(ps) {
			n++
		}
		if n == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := loadgen.Run(b.ctx, loadgen.Config{
				Addr: p.mqttAddr, QoS: 1, Publishers: n, Duration: b.sc.ingestDur, PayloadSize: 100,
				InFlight: inflight, Topic: "cbench/%d", ClientIDPrefix: fmt.Sprintf("%s-n%d", prefix, i),
			})
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			total += res.MsgPerSec()
			hist.Merge(&res.Latency)
		}()
	}
	wg.Wait()
	return total, hist, firstErr
}

func (b *bench) clusterIngest() error {
	b.setPhase("cluster")
	single, err := startMQStreamsNamed("mqstreams (single, cluster section)", b.bin, filepath.Join(b.tmp, "cluster-single"), clusterStreams)
	if err != nil {
		return err
	}
	b.track(single)
	defer b.release(single)
	nodes, err := b.startCluster(filepath.Join(b.tmp, "cluster3"))
	defer func() {
		for _, p := range nodes {
			b.release(p)
		}
	}()
	if err != nil {
		return err
	}
	const inflight = 20
	n := 0
	for _, pubs := range b.sc.clusterPubs {
		for round := 1; round <= b.sc.clusterRounds; round++ {
			if b.ctx.Err() != nil {
				return b.ctx.Err()
			}
			n++
			r := ClusterIngestResult{Publishers: pubs, InFlight: inflight, Payload: 100, Round: round, Seconds: b.sc.ingestDur.Seconds(), Load: loadavg()}
			// The two take turns, so a change in the machine's load hits both.
			var sperf *exec.Cmd
			if clusterPerfDir != "" && round == 1 {
				sperf = exec.CommandContext(b.ctx, "perf", "record", "-F", "999", "-g", "-p", strconv.Itoa(single.cmd.Process.Pid), "-o", filepath.Join(clusterPerfDir, fmt.Sprintf("p%d-single.data", pubs)), "--", "sleep", strconv.FormatFloat(b.sc.ingestDur.Seconds()-0.5, 'f', 1, 64))
				if sperf.Start() != nil {
					sperf = nil
				}
			}
			s, sh, scpu, scores, serr := b.spreadRun([]*proc{single}, pubs, inflight, fmt.Sprintf("cs%d", n))
			if sperf != nil {
				_ = sperf.Wait()
			}
			var perfs []*exec.Cmd
			if clusterPerfDir != "" && round == 1 {
				// perf of each node over this run, kept for reading by hand.
				for i, p := range nodes {
					cmd := exec.CommandContext(b.ctx, "perf", "record", "-F", "999", "-g", "-p", strconv.Itoa(p.cmd.Process.Pid), "-o", filepath.Join(clusterPerfDir, fmt.Sprintf("p%d-node%d.data", pubs, i+1)), "--", "sleep", strconv.FormatFloat(b.sc.ingestDur.Seconds()-0.5, 'f', 1, 64))
					if cmd.Start() == nil {
						perfs = append(perfs, cmd)
					}
				}
			}
			c, ch, ccpu, ccores, cerr := b.spreadRun(nodes, pubs, inflight, fmt.Sprintf("cc%d", n))
			for _, cmd := range perfs {
				_ = cmd.Wait()
			}
			r.SingleCPUus, r.ClusterCPUus, r.SingleCores, r.ClusterCores = scpu, ccpu, scores, ccores
			r.Single, r.Cluster = s, c
			if s > 0 {
				r.Ratio = c / s
			}
			r.SingleP50 = float64(sh.Quantile(0.5).Microseconds())
			r.ClusterP50, r.ClusterP99 = float64(ch.Quantile(0.5).Microseconds()), float64(ch.Quantile(0.99).Microseconds())
			if serr != nil || cerr != nil {
				r.Error = fmt.Sprintf("single: %v; cluster: %v", serr, cerr)
			}
			b.res.Cluster = append(b.res.Cluster, r)
			b.logf("[cluster] %3d publishers × %d in flight, round %d (load %s): single %s msg/s, 3 nodes %s msg/s: %.2f× (ack p50 %.1f ms vs %.1f ms; CPU %.0f µs/msg on %.2f cores vs %.0f µs/msg on %.2f cores)%s",
				pubs, inflight, round, r.Load, kfmt(s), kfmt(c), r.Ratio, r.SingleP50/1000, r.ClusterP50/1000, scpu, scores, ccpu, ccores, errSuffix(r.Error))
		}
	}
	return nil
}

func errSuffix(e string) string {
	if e == "" {
		return ""
	}
	return " — " + e
}

// clusterRatio is the median ratio over the rounds of a publisher count, with the
// range of the rounds.
func clusterRatio(r *Results, pubs int) (med, lo, hi float64, n int) {
	var rs []float64
	for _, c := range r.Cluster {
		if c.Publishers == pubs && c.Error == "" && c.Single > 0 {
			rs = append(rs, c.Ratio)
		}
	}
	if len(rs) == 0 {
		return 0, 0, 0, 0
	}
	sort.Float64s(rs)
	return rs[len(rs)/2], rs[0], rs[len(rs)-1], len(rs)
}
