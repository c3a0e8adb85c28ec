// Command mqbench runs mqstreams side by side with what users would run instead —
// Mosquitto, mochi-mqtt without hooks, franz-go's in-memory kfake — on one machine in
// one run, and writes results.json, BENCHMARKS.md and PNG plots. Every broker runs as
// its own process; one load generator (package loadgen) drives all MQTT brokers.
//
//	mqbench [-quick] [-bin ../bin/mqstreams] [-out bench] [-md BENCHMARKS.md]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// scale holds the sizes of one mode.
type scale struct {
	ingestDur     time.Duration
	publishers    []int
	payloads      []int
	qos           []int
	pubLines      int
	replayRecords int
	replayRuns    int
	kcatRuns      int
	e2eRates      []int
	e2eDur        time.Duration
	lookupSizes   []int64
	lookups       int
	storedBytes   int64
	streamCounts  []int
	clusterPubs   []int
	clusterRounds int
}

var quickScale = scale{
	ingestDur: time.Second, publishers: []int{1, 16}, payloads: []int{100}, qos: []int{1, 0},
	pubLines: 5000, replayRecords: 100_000, replayRuns: 1, kcatRuns: 1,
	e2eRates: []int{1000}, e2eDur: 2 * time.Second, lookupSizes: []int64{10_000, 100_000}, lookups: 200,
	storedBytes: 200e6, streamCounts: []int{1, 1000},
	clusterPubs: []int{16}, clusterRounds: 1,
}

var fullScale = scale{
	ingestDur: 4 * time.Second, publishers: []int{1, 16, 256}, payloads: []int{100, 1024}, qos: []int{1, 0},
	pubLines: 30_000, replayRecords: 1_000_000, replayRuns: 3, kcatRuns: 2,
	e2eRates: []int{1000, 10000}, e2eDur: 10 * time.Second, lookupSizes: []int64{10_000, 1_000_000, 10_000_000}, lookups: 2000,
	storedBytes: 10e9, streamCounts: []int{1, 1000, 100_000},
	clusterPubs: []int{16, 256}, clusterRounds: 3,
}

func main() {
	if len(os.Args) > 1 {
		var err error
		switch os.Args[1] {
		case "mochi":
			err = serveMochi()
		case "kfake":
			err = serveKfake()
		default:
			goto bench
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "mqbench:", err)
			os.Exit(1)
		}
		return
	}
bench:
	quick := flag.Bool("quick", false, "small sizes, for CI (under 2 minutes)")
	bin := flag.String("bin", "../bin/mqstreams", "mqstreams binary (make build)")
	out := flag.String("out", ".", "directory for results.json and the PNG plots")
	md := flag.String("md", "../BENCHMARKS.md", "Markdown report to write (empty: none)")
	notes := flag.String("notes", "notes.md", "hand-written analysis included in the report when present")
	sections := flag.String("sections", "ingest,replay,e2e,lookup,compression,stored,streams,cluster", "sections to run")
	storedGB := flag.Float64("stored-gb", 0, "data stored for the start-up and memory section, GB (0: the mode's)")
	maxLookup := flag.Int64("lookup-max", 0, "largest time-lookup partition size (0: the mode's)")
	rssLimit := flag.Float64("rss-limit-mb", 2048, "stop a load run when a broker's RSS passes this (protects a shared machine)")
	ingestDur := flag.Duration("ingest-dur", 0, "length of each ingest cell (0: the mode's)")
	reportOnly := flag.Bool("report-only", false, "rewrite the plots and the report from the results.json in -out, running nothing")
	qosList := flag.String("qos", "", "ingest QoS levels to run, comma-separated (empty: the mode's)")
	pubList := flag.String("publishers", "", "ingest publisher counts to run, comma-separated (empty: the mode's)")
	sizeList := flag.String("payloads", "", "ingest payload sizes to run, comma-separated (empty: the mode's)")
	pubLines := flag.Int("pub-lines", 0, "lines of the mosquitto_pub -l run (0: the mode's)")
	clusterPubs := flag.String("cluster-publishers", "", "cluster section publisher counts, comma-separated (empty: the mode's)")
	flag.StringVar(&clusterPerfDir, "cluster-perf", "", "directory for perf recordings of the cluster nodes (empty: none)")
	clusterRounds := flag.Int("cluster-rounds", 0, "cluster section rounds per publisher count (0: the mode's)")
	flag.Parse()
	if *reportOnly {
		if err := rewriteReport(*out, *md, *notes); err != nil {
			fatal(err)
		}
		return
	}

	sc := fullScale
	mode := "full"
	if *quick {
		sc, mode = quickScale, "quick"
	}
	if *maxLookup > 0 {
		var sizes []int64
		for _, s := range sc.lookupSizes {
			if s <= *maxLookup {
				sizes = append(sizes, s)
			}
		}
		sc.lookupSizes = sizes
	}
	if *ingestDur > 0 {
		sc.ingestDur = *ingestDur
	}
	for _, o := range []struct {
		flag, val string
		dst       *[]int
	}{{"qos", *qosList, &sc.qos}, {"publishers", *pubList, &sc.publishers}, {"payloads", *sizeList, &sc.payloads}, {"cluster-publishers", *clusterPubs, &sc.clusterPubs}} {
		if o.val == "" {
			continue
		}
		var vs []int
		for _, f := range strings.Split(o.val, ",") {
			v, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				fatal(fmt.Errorf("-%s: %q is not a number", o.flag, f))
			}
			vs = append(vs, v)
		}
		*o.dst = vs
	}
	if *pubLines > 0 {
		sc.pubLines = *pubLines
	}
	if *clusterRounds > 0 {
		sc.clusterRounds = *clusterRounds
	}
	if *storedGB > 0 {
		sc.storedBytes = int64(*storedGB * 1e9)
	}
	absBin, err := filepath.Abs(*bin)
	if err != nil {
		fatal(err)
	}
	if _, err := os.Stat(absBin); err != nil {
		fatal(fmt.Errorf("mqstreams binary %s: %w (run make build)", absBin, err))
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fatal(err)
	}
	tmp, err := os.MkdirTemp("", "mqbench-")
	if err != nil {
		fatal(err)
	}
	defer os.RemoveAll(tmp)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	b := &bench{
		sc: sc, bin: absBin, tmp: tmp, ctx: ctx, t0: time.Now(), rssLimit: *rssLimit,
		res: &Results{Started: time.Now().UTC(), Mode: mode, Command: strings.Join(os.Args, " ")},
	}
	b.res.RSSLimitMB = *rssLimit
	b.res.Machine = machine()
	b.res.Versions = versions(absBin)
	b.logf("mqbench %s run: mqstreams %s, mosquitto %s, %d cores, load %s", mode, b.res.Versions.MQStreams, b.res.Versions.Mosquitto, b.res.Machine.Cores, b.res.Machine.LoadStart)
	stopSampler := b.startSampler()
	want := map[string]bool{}
	for _, s := range strings.Split(*sections, ",") {
		want[strings.TrimSpace(s)] = true
	}
	for _, s := range []struct {
		name string
		fn   func() error
	}{
		{"ingest", b.ingest}, {"replay", b.replay}, {"e2e", b.e2e}, {"lookup", b.lookup}, {"compression", b.compression}, {"stored", b.stored}, {"streams", b.streams}, {"cluster", b.clusterIngest},
	} {
		if !want[s.name] || ctx.Err() != nil {
			continue
		}
		if err := s.fn(); err != nil {
			b.errorf("%s: %v", s.name, err)
		}
	}
	stopSampler()
	b.stopAll()
	b.res.Machine.LoadEnd = loadavg()
	b.res.Seconds = time.Since(b.t0).Seconds()

	js, err := json.MarshalIndent(b.res, "", "  ")
	if err != nil {
		fatal(fmt.Errorf("results: %w", err))
	}
	if err := os.WriteFile(filepath.Join(*out, "results.json"), append(js, '\n'), 0o644); err != nil {
		fatal(err)
	}
	if err := writeReport(b.res, *out, *md, *notes); err != nil {
		b.errorf("report: %v", err)
	}
	b.logf("done in %.0fs: %s", b.res.Seconds, filepath.Join(*out, "results.json"))
	for _, t := range targets(b.res) {
		b.logf("target %-55s %-28s %s", t.Name, t.Measured, t.Status)
	}
	if len(b.res.Errors) > 0 {
		fmt.Fprintf(os.Stderr, "mqbench: %d step(s) failed:\n  %s\n", len(b.res.Errors), strings.Join(b.res.Errors, "\n  "))
		os.Exit(1)
	}
}

// bench is one run's state.
type bench struct {
	sc    scale
	bin   string
	tmp   string
	ctx   context.Context
	t0    time.Time
	res   *Results
	mu    sync.Mutex // guards procs, phase and res.RSS
	procs []*proc
	phase string
	// rssLimit and guard stop the running load when a broker grows past the limit.
	rssLimit float64
	guard    *runGuard
	restarts int
}

// runGuard is the running load's broker, its cancel and, once fired, why.
type runGuard struct {
	p      *proc
	cancel context.CancelFunc
	reason string
}

// guarded returns a context for one load run that the sampler cancels when a broker's
// RSS passes the limit, and a function returning that reason ("" if it did not fire).
func (b *bench) guarded(p *proc) (context.Context, func() string) {
	ctx, cancel := context.WithCancel(b.ctx)
	g := &runGuard{p: p, cancel: cancel}
	b.mu.Lock()
	b.guard = g
	b.mu.Unlock()
	return ctx, func() string {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.guard = nil
		cancel()
		return g.reason
	}
}

func (b *bench) logf(format string, args ...any) {
	fmt.Printf("[%6.1fs] %s\n", time.Since(b.t0).Seconds(), fmt.Sprintf(format, args...))
}

func (b *bench) errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	b.res.Errors = append(b.res.Errors, msg)
	b.logf("ERROR %s", msg)
}

func (b *bench) setPhase(p string) {
	b.mu.Lock()
	b.phase = p
	b.mu.Unlock()
}

// track registers a started broker for RSS sampling and the final stop.
func (b *bench) track(p *proc) *proc {
	b.mu.Lock()
	b.procs = append(b.procs, p)
	b.mu.Unlock()
	return p
}

// release stops a broker and forgets it.
func (b *bench) release(p *proc) {
	if p == nil {
		return
	}
	p.stop()
	b.mu.Lock()
	for i, q := range b.procs {
		if q == p {
			b.procs = append(b.procs[:i], b.procs[i+1:]...)
			break
		}
	}
	b.mu.Unlock()
}

func (b *bench) stopAll() {
	b.mu.Lock()
	ps := b.procs
	b.procs = nil
	b.mu.Unlock()
	for _, p := range ps {
		p.stop()
	}
}

// startSampler reads every tracked broker's RSS four times a second.
func (b *bench) startSampler() func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			b.mu.Lock()
			now := time.Since(b.t0).Seconds()
			for _, p := range b.procs {
				if mb := p.rssMB(); mb > 0 {
					// Rounded: a run holds thousands of samples.
					b.res.RSS = append(b.res.RSS, RSSSample{Broker: p.name, Seconds: math.Round(now*100) / 100, MB: math.Round(mb*10) / 10, Phase: b.phase})
					if g := b.guard; g != nil && g.p == p && g.reason == "" && b.rssLimit > 0 && mb > b.rssLimit {
						g.reason = fmt.Sprintf("stopped: %s RSS %.0f MB passed the %.0f MB limit", p.name, mb, b.rssLimit)
						g.cancel()
					}
				}
			}
			b.mu.Unlock()
		}
	}()
	return func() { close(done); wg.Wait() }
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "mqbench:", err)
	os.Exit(1)
}

// writeReport writes the plots into out and, when md is set, the Markdown report.
func writeReport(r *Results, out, md, notes string) error {
	plots, err := writePlots(r, out)
	if err != nil {
		return fmt.Errorf("plots: %w", err)
	}
	if md == "" {
		return nil
	}
	var noteText string
	if nb, err := os.ReadFile(notes); err == nil {
		noteText = string(nb)
	}
	absOut, _ := filepath.Abs(out)
	absMD, _ := filepath.Abs(md)
	if rel, err := filepath.Rel(filepath.Dir(absMD), absOut); err == nil {
		plotDirRel = rel
	}
	return os.WriteFile(md, []byte(report(r, plots, filepath.Dir(md), noteText)), 0o644)
}

// rewriteReport is -report-only: the report again from a stored results.json, e.g.
// after the notes were edited.
func rewriteReport(out, md, notes string) error {
	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		return err
	}
	var r Results
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("results.json: %w", err)
	}
	return writeReport(&r, out, md, notes)
}
