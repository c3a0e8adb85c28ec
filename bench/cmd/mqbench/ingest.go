package main

// Section 1: MQTT ingest, every broker driven by the same load generator.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/mqstreams/mqstreams/loadgen"
)

const ingestStreams = `streams:
  - {name: ingest, filter: "bench/#", shards: 4, key: clientid}
`

// target is one broker of the comparison.
type target struct {
	name string
	p    *proc
}

// startIngestBrokers starts mqstreams (each durability mode the binary has), Mosquitto
// and mochi.
func (b *bench) startIngestBrokers() ([]target, error) {
	var ts []target
	fs, err := startMQStreamsNamed("mqstreams (ingest-fsync)", b.bin, filepath.Join(b.tmp, "ingest-fsync"), "durability: fsync\n"+ingestStreams)
	if err != nil && strings.Contains(err.Error(), "durability") {
		// The setting postdates this binary: fsync is the only behaviour it has.
		fs, err = startMQStreamsNamed("mqstreams (ingest-fsync)", b.bin, filepath.Join(b.tmp, "ingest-fsync"), ingestStreams)
	}
	if err != nil {
		return nil, err
	}
	ts = append(ts, target{"mqstreams-fsync", b.track(fs)})
	b.res.Durability = []string{"fsync"}
	if w, err := startMQStreamsNamed("mqstreams (ingest-write)", b.bin, filepath.Join(b.tmp, "ingest-write"), "durability: write\n"+ingestStreams); err == nil {
		ts = append(ts, target{"mqstreams-write", b.track(w)})
		b.res.Durability = append(b.res.Durability, "write")
	} else {
		b.res.Notes = append(b.res.Notes, "`durability: write` is not in this binary (issue 10): its column is left out, not estimated.")
		b.logf("durability: write not available in this binary (%s)", firstLine(err.Error()))
	}
	m, err := startMosquitto(b.tmp)
	if err != nil {
		return ts, err
	}
	ts = append(ts, target{"mosquitto", b.track(m)})
	mo, err := startSelf("mochi")
	if err != nil {
		return ts, err
	}
	ts = append(ts, target{"mochi", b.track(mo)})
	return ts, nil
}

func (b *bench) ingest() error {
	b.setPhase("idle")
	ts, err := b.startIngestBrokers()
	defer func() {
		for _, t := range ts {
			b.release(t.p)
		}
	}()
	if err != nil {
		return err
	}
	// Idle memory after start-up, before any load.
	time.Sleep(time.Second)
	for _, t := range ts {
		if t.name == "mqstreams-fsync" {
			b.footprint().RSSIdleMB = t.p.rssMB()
		}
	}
	total := len(b.sc.qos) * len(b.sc.payloads) * len(b.sc.publishers) * len(ts)
	n := 0
	for _, qos := range b.sc.qos {
		b.setPhase(fmt.Sprintf("ingest-qos%d", qos))
		for _, size := range b.sc.payloads {
			for _, pubs := range b.sc.publishers {
				// Brokers take turns at each setting, so background noise is spread
				// over all of them instead of hitting one broker's whole series.
				for ti, t := range ts {
					if b.ctx.Err() != nil {
						return b.ctx.Err()
					}
					n++
					r := IngestResult{Broker: t.name, QoS: qos, Publishers: pubs, Payload: size}
					before, _ := t.p.scrapeCommitStats()
					genCPU, brokerCPU, wall := selfCPUSeconds(), t.p.cpuSeconds(), time.Now()
					var profDone func() *Profile
					if t.name == "mqstreams-fsync" && qos == 1 && pubs == 1 && size == b.sc.payloads[0] && b.ingestDurOK() {
						// The cell of the headline target: where does the broker's time go?
						profDone = startProfile(b.ctx, b.tmp, t.p, b.sc.ingestDur-time.Second)
					}
					runCtx, guardReason := b.guarded(t.p)
					res, err := loadgen.Run(runCtx, loadgen.Config{
						Addr: t.p.mqttAddr, QoS: byte(qos), Publishers: pubs, Duration: b.sc.ingestDur,
						PayloadSize: size, InFlight: 20, Topic: "bench/%d", ClientIDPrefix: fmt.Sprintf("ing%d", n),
					})
					if profDone != nil {
						if prof := profDone(); prof != nil {
							prof.Cell = fmt.Sprintf("%s, QoS %d, %d publisher, %d B, %s msg/s", t.name, qos, pubs, size, kfmt(res.MsgPerSec()))
							b.res.Profile = prof
						}
					}
					if reason := guardReason(); reason != "" {
						// The broker holds what it could not store yet: start a fresh one
						// so the next cell does not pay for this one's backlog.
						r.Error = reason
						b.logf("[ingest %d/%d] %-16s QoS %d %4d pubs %5d B: %s; restarting it", n, total, t.name, qos, pubs, size, reason)
						np, rerr := b.restart(t)
						if rerr != nil {
							return rerr
						}
						ts[ti].p = np
						t.p = np
						err = nil
					}
					if err != nil {
						r.Error = err.Error()
						b.errorf("ingest %s QoS %d %d publishers %d B: %v", t.name, qos, pubs, size, err)
					}
					r.InFlight, r.Messages, r.Seconds, r.MsgPerSec = res.InFlight, res.Acked, res.Elapsed.Seconds(), res.MsgPerSec()
					// CPU shares over the load (before any backlog drain): on a 2-core
					// machine generator + broker near 200% means the machine, not the
					// broker alone, set the figure.
					if w := time.Since(wall).Seconds(); w > 0 && r.Error == "" {
						r.GenCPU = (selfCPUSeconds() - genCPU) / w * 100
						r.BrokerCPU = (t.p.cpuSeconds() - brokerCPU) / w * 100
					}
					if qos == 0 && r.Error == "" && t.p.httpAddr != "" {
						// mqstreams reads QoS 0 publishes faster than it stores them: wait
						// for the backlog, so the next cell starts clean, and report the
						// stored rate too.
						r.StoredPerSec = b.drain(t.p, before.appended, res.Elapsed)
						if r.StoredPerSec == 0 {
							b.logf("[ingest %d/%d] %s still storing its QoS 0 backlog after 60 s; restarting it", n, total, t.name)
							np, rerr := b.restart(t)
							if rerr != nil {
								return rerr
							}
							ts[ti].p = np
							t.p = np
						}
					}
					if after, err := t.p.scrapeCommitStats(); err == nil && after.fsyncs > before.fsyncs {
						n := after.fsyncs - before.fsyncs
						r.RecordsPerFsync = (after.appended - before.appended) / n
						r.FsyncMeanUs = (after.fsyncSeconds - before.fsyncSeconds) / n * 1e6
					}
					if res.Latency.Count() > 0 {
						r.P50us, r.P99us, r.P999us = us(res.Latency.Quantile(0.5)), us(res.Latency.Quantile(0.99)), us(res.Latency.Quantile(0.999))
					}
					b.res.Ingest = append(b.res.Ingest, r)
					if r.Error != "" {
						continue
					}
					lat := ""
					if r.P99us > 0 {
						lat = fmt.Sprintf("  ack p50 %.2fms p99 %.2fms", r.P50us/1000, r.P99us/1000)
					}
					if r.StoredPerSec > 0 {
						lat += fmt.Sprintf("  stored %.0f msg/s", r.StoredPerSec)
					}
					if r.RecordsPerFsync > 0 {
						lat += fmt.Sprintf("  %.0f records/fsync, fsync mean %.2fms", r.RecordsPerFsync, r.FsyncMeanUs/1000)
					}
					b.logf("[ingest %d/%d] %-16s QoS %d %4d pubs %5d B: %9.0f msg/s  cpu broker %3.0f%% generator %3.0f%%%s", n, total, t.name, qos, pubs, size, r.MsgPerSec, r.BrokerCPU, r.GenCPU, lat)
				}
			}
		}
	}
	// Peak memory under QoS 1 load (windows bound what is in flight) and under QoS 0
	// (nothing bounds it but the broker).
	fp := b.footprint()
	b.mu.Lock()
	for _, s := range b.res.RSS {
		var dst *float64
		switch {
		case s.Broker == "mqstreams (ingest-fsync)" && s.Phase == "ingest-qos1":
			dst = &fp.RSSLoadMaxMB
		case s.Broker == "mqstreams (ingest-fsync)" && s.Phase == "ingest-qos0":
			dst = &fp.RSSQoS0MaxMB
		case s.Broker == "mosquitto" && strings.HasPrefix(s.Phase, "ingest"):
			dst = &fp.MosquittoMaxMB
		case s.Broker == "mochi" && strings.HasPrefix(s.Phase, "ingest"):
			dst = &fp.MochiMaxMB
		}
		if dst != nil && s.MB > *dst {
			*dst = s.MB
		}
	}
	b.mu.Unlock()
	b.pubLines(ts)
	return nil
}

// pubLines times one `mosquitto_pub -l` (QoS 1, its default 20 in flight) sending
// pubLines JSON lines of about 60 bytes: issue 10's measure, with the most common client.
func (b *bench) pubLines(ts []target) {
	b.setPhase("mosquitto_pub")
	var buf bytes.Buffer
	for i := 0; i < b.sc.pubLines; i++ {
		fmt.Fprintf(&buf, `{"device":"d-%05d","t":%d,"temp":21.5,"ok":true}`+"\n", i%1000, 1700000000000+i)
	}
	file := filepath.Join(b.tmp, "lines.txt")
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		b.errorf("mosquitto_pub lines: %v", err)
		return
	}
	for _, t := range ts {
		host, port := splitHostPort(t.p.mqttAddr)
		f, err := os.Open(file)
		if err != nil {
			b.errorf("%v", err)
			return
		}
		cmd := exec.CommandContext(b.ctx, "mosquitto_pub", "-h", host, "-p", port, "-q", "1", "-t", "bench/lines", "-i", "pub-lines-"+t.name, "-l")
		cmd.Stdin = f
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		start := time.Now()
		err = cmd.Run()
		f.Close()
		r := PubLinesResult{Broker: t.name, Messages: b.sc.pubLines, Seconds: time.Since(start).Seconds()}
		if err != nil {
			r.Error = fmt.Sprintf("%v: %s", err, strings.TrimSpace(stderr.String()))
			b.errorf("mosquitto_pub -l %s: %s", t.name, r.Error)
		}
		b.res.PubLines = append(b.res.PubLines, r)
		b.logf("[mosquitto_pub -l] %-16s %d lines QoS 1 in %.2fs (%.0f msg/s)", t.name, r.Messages, r.Seconds, float64(r.Messages)/r.Seconds)
	}
}

// drain waits until mqstreams' appended counter stops moving (at most 60 s) and returns
// the records stored per second from the start of the load to the end of the backlog.
func (b *bench) drain(p *proc, before float64, loadTime time.Duration) float64 {
	start := time.Now().Add(-loadTime)
	last, stable := -1.0, 0
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) && b.ctx.Err() == nil {
		st, err := p.scrapeCommitStats()
		if err != nil {
			return 0
		}
		if st.appended == last {
			stable++
			if stable >= 2 {
				// The counter has not moved for two polls; it stopped at the
				// first of them.
				return (st.appended - before) / (time.Since(start) - 400*time.Millisecond).Seconds()
			}
		} else {
			stable = 0
		}
		last = st.appended
		time.Sleep(200 * time.Millisecond)
	}
	return 0
}

// restart kills a broker that outgrew the RSS limit (a graceful stop would first store
// its whole backlog) and starts a fresh one of the same kind.
func (b *bench) restart(t target) (*proc, error) {
	_ = t.p.cmd.Process.Kill()
	<-t.p.exited
	b.release(t.p)
	var p *proc
	var err error
	switch {
	case strings.HasPrefix(t.name, "mqstreams-"):
		mode := strings.TrimPrefix(t.name, "mqstreams-")
		b.restarts++
		dir := filepath.Join(b.tmp, fmt.Sprintf("ingest-%s-%d", mode, b.restarts))
		cfg := ingestStreams
		if mode == "write" || len(b.res.Durability) > 1 {
			cfg = "durability: " + mode + "\n" + cfg
		}
		p, err = startMQStreamsNamed("mqstreams (ingest-"+mode+")", b.bin, dir, cfg)
	case t.name == "mosquitto":
		p, err = startMosquitto(b.tmp)
	default:
		p, err = startSelf(t.name)
	}
	if err != nil {
		return nil, fmt.Errorf("restart %s: %w", t.name, err)
	}
	return b.track(p), nil
}

func (b *bench) footprint() *FootprintResult {
	if b.res.Footprint == nil {
		b.res.Footprint = &FootprintResult{}
	}
	return b.res.Footprint
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

func splitHostPort(addr string) (string, string) {
	i := strings.LastIndex(addr, ":")
	return addr[:i], addr[i+1:]
}

// ingestDurOK tells whether a cell lasts long enough to profile.
func (b *bench) ingestDurOK() bool { return b.sc.ingestDur >= 2*time.Second }
