package main

// BENCHMARKS.md, generated from Results.

import (
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strings"
)

// targetRow is one of issue 12's targets with the figure measured.
type targetRow struct {
	Name, Want, Measured, Status string
}

func findIngest(r *Results, broker string, qos, pubs, payload int) *IngestResult {
	for i := range r.Ingest {
		in := &r.Ingest[i]
		if in.Broker == broker && in.QoS == qos && in.Publishers == pubs && in.Payload == payload && in.Error == "" {
			return in
		}
	}
	return nil
}

func findIngestFailed(r *Results, broker string, qos, pubs, payload int) *IngestResult {
	for i := range r.Ingest {
		in := &r.Ingest[i]
		if in.Broker == broker && in.QoS == qos && in.Publishers == pubs && in.Payload == payload && in.Error != "" {
			return in
		}
	}
	return nil
}

func findReplay(r *Results, client, broker string) *ReplayResult {
	for i := range r.Replay {
		if r.Replay[i].Client == client && r.Replay[i].Broker == broker && r.Replay[i].Error == "" {
			return &r.Replay[i]
		}
	}
	return nil
}

func status(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

func targets(r *Results) []targetRow {
	var ts []targetRow
	hasWrite := false
	for _, d := range r.Durability {
		hasWrite = hasWrite || d == "write"
	}
	notRun := func(name, want string) targetRow { return targetRow{name, want, "not measured in this run", "—"} }
	// 1 publisher QoS 1: time ratio = Mosquitto's rate / ours.
	mos := findIngest(r, "mosquitto", 1, 1, 100)
	for _, d := range []struct{ broker, want string }{{"mqstreams-fsync", "≤ 1.25× Mosquitto's time"}, {"mqstreams-write", "≤ 0.9× Mosquitto's time"}} {
		name := fmt.Sprintf("QoS 1, 1 publisher, 100 B (`durability: %s`)", strings.TrimPrefix(d.broker, "mqstreams-"))
		mq := findIngest(r, d.broker, 1, 1, 100)
		switch {
		case d.broker == "mqstreams-write" && !hasWrite:
			ts = append(ts, targetRow{name, d.want, "`durability: write` not built yet (issue 10)", "—"})
		case mq == nil || mos == nil:
			ts = append(ts, notRun(name, d.want))
		default:
			ratio := mos.MsgPerSec / mq.MsgPerSec
			limit := 1.25
			if d.broker == "mqstreams-write" {
				limit = 0.9
			}
			ts = append(ts, targetRow{name, d.want, fmt.Sprintf("%.2f× (%s vs %s msg/s)", ratio, kfmt(mq.MsgPerSec), kfmt(mos.MsgPerSec)), status(ratio <= limit)})
		}
	}
	// Issue 10's own measure: one mosquitto_pub -l, time ratio to Mosquitto's, per durability.
	var pm *PubLinesResult
	for i := range r.PubLines {
		if r.PubLines[i].Broker == "mosquitto" {
			pm = &r.PubLines[i]
		}
	}
	for _, d := range []struct {
		broker string
		limit  float64
	}{{"mqstreams-fsync", 1.25}, {"mqstreams-write", 0.9}} {
		var pl *PubLinesResult
		for i := range r.PubLines {
			if r.PubLines[i].Broker == d.broker {
				pl = &r.PubLines[i]
			}
		}
		if pl == nil || pm == nil || pl.Error != "" || pm.Error != "" {
			continue
		}
		ratio := pl.Seconds / pm.Seconds
		ts = append(ts, targetRow{fmt.Sprintf("one `mosquitto_pub -l`, QoS 1, %s lines (issue 10, %s)", kfmt(float64(pl.Messages)), strings.TrimPrefix(d.broker, "mqstreams-")),
			fmt.Sprintf("≤ %.2f× Mosquitto's time", d.limit),
			fmt.Sprintf("%.2f× (%.2f s vs %.2f s)", ratio, pl.Seconds, pm.Seconds), status(ratio <= d.limit)})
	}
	for _, d := range []struct {
		broker string
		min    float64
	}{{"mqstreams-fsync", 100_000}, {"mqstreams-write", 150_000}} {
		name := fmt.Sprintf("QoS 1, 256 publishers, 100 B (`%s`)", strings.TrimPrefix(d.broker, "mqstreams-"))
		want := fmt.Sprintf("≥ %s msg/s", kfmt(d.min))
		if d.broker == "mqstreams-fsync" {
			want += " (issue 10; issue 12 asks 150,000)"
		}
		mq := findIngest(r, d.broker, 1, 256, 100)
		switch {
		case d.broker == "mqstreams-write" && !hasWrite:
			ts = append(ts, targetRow{name, want, "`durability: write` not built yet (issue 10)", "—"})
		case mq == nil:
			ts = append(ts, notRun(name, want))
		default:
			ts = append(ts, targetRow{name, want, fmt.Sprintf("%s msg/s, ack p99 %.1f ms", kfmt(mq.MsgPerSec), mq.P99us/1000), status(mq.MsgPerSec >= d.min)})
		}
	}
	fm, fk := findReplay(r, "franz-go", "mqstreams"), findReplay(r, "franz-go", "kfake")
	if fm != nil && fk != nil {
		ratio := fm.RecPerSec / fk.RecPerSec
		ts = append(ts, targetRow{"Kafka replay, franz-go, vs kfake", "≥ 2× kfake's records/s", fmt.Sprintf("%.2f× (%s vs %s records/s)", ratio, kfmt(fm.RecPerSec), kfmt(fk.RecPerSec)), status(ratio >= 2)})
		ts = append(ts, targetRow{fmt.Sprintf("Kafka replay, franz-go, %s records", kfmt(float64(fm.Records))), "≥ 1,000,000 records/s", kfmt(fm.RecPerSec) + " records/s", status(fm.RecPerSec >= 1e6)})
	} else {
		ts = append(ts, notRun("Kafka replay, franz-go", "≥ 2× kfake, ≥ 1,000,000 records/s"))
	}
	var e2eMax int
	for _, e := range r.E2E {
		if e.Rate > e2eMax {
			e2eMax = e.Rate
		}
	}
	for _, e := range r.E2E {
		if e.Rate != e2eMax {
			continue
		}
		want := "p99 ≤ 5 ms at 10,000 msg/s"
		m := fmt.Sprintf("p99 %.2f ms at %s msg/s", e.P99us/1000, kfmt(float64(e.Rate)))
		st := status(e.P99us <= 5000 && e.Error == "")
		if e.Rate < 10000 {
			st = "— (rate below the target's)"
		}
		ts = append(ts, targetRow{"end-to-end, " + e.Path, want, m, st})
	}
	if n := len(r.Lookup); n > 0 {
		l := r.Lookup[n-1]
		st := status(l.P99us <= 1000 && l.Error == "")
		if l.Records < 10_000_000 {
			st += fmt.Sprintf(" at %s (10^7 not run)", kfmt(float64(l.Records)))
		}
		ts = append(ts, targetRow{"time lookup, largest partition", "p99 ≤ 1 ms at 10^7 records/partition", fmt.Sprintf("p99 %.3f ms at %s records", l.P99us/1000, kfmt(float64(l.Records))), st})
	}
	pubs := map[int]bool{}
	for _, c := range r.Cluster {
		pubs[c.Publishers] = true
	}
	for _, p := range sortedKeys(pubs) {
		name := fmt.Sprintf("3-node ingest, one shard, QoS 1, %d publishers, 100 B, fsync (issue 13)", p)
		if med, lo, hi, n := clusterRatio(r, p); n > 0 {
			ts = append(ts, targetRow{name, "≥ 0.4× one node's rate", fmt.Sprintf("%.2f× median of %d rounds (%.2f–%.2f)", med, n, lo, hi), status(med >= 0.4)})
		}
	}
	if fp := r.Footprint; fp != nil {
		if fp.RSSLoadMaxMB > 0 {
			ts = append(ts, targetRow{"RSS under QoS 1 load (ingest section, max)", "≤ 150 MB", fmt.Sprintf("%.0f MB (idle %.0f MB)", fp.RSSLoadMaxMB, fp.RSSIdleMB), status(fp.RSSLoadMaxMB <= 150)})
		}
		if fp.RSSQoS0MaxMB > 0 {
			ts = append(ts, targetRow{"RSS under QoS 0 load (ingest section, max)", "≤ 150 MB", fmt.Sprintf("%.0f MB", fp.RSSQoS0MaxMB), status(fp.RSSQoS0MaxMB <= 150)})
		}
		if fp.StoredStartupSeconds > 0 {
			st := status(fp.StoredStartupSeconds < 2)
			if fp.StoredBytesDisk < 10e9 {
				st += " (less than 10 GB stored)"
			}
			ts = append(ts, targetRow{"start-up with data stored", "< 2 s with 10 GB", fmt.Sprintf("%.0f ms with %.1f GB on disk", fp.StoredStartupSeconds*1000, float64(fp.StoredBytesDisk)/1e9), st})
			if fp.RSSSmallIdleMB > 0 {
				// Flat: within a quarter (plus 10 MB of noise) of the idle RSS after a
				// restart with 70× less data.
				ts = append(ts, targetRow{"RSS flat with stored size (idle after restart)", "the same with 10 GB as with little data",
					fmt.Sprintf("%.0f MB with %.1f GB on disk, %.0f MB with %.2f GB", fp.RSSStoredIdleMB, float64(fp.StoredBytesDisk)/1e9, fp.RSSSmallIdleMB, float64(fp.StartupDiskBytes)/1e9),
					status(fp.RSSStoredIdleMB <= 1.25*fp.RSSSmallIdleMB+10)})
			}
		} else if fp.StartupSeconds > 0 {
			ts = append(ts, targetRow{"start-up with data stored", "< 2 s with 10 GB", fmt.Sprintf("%.0f ms with %.0f MB (%s records)", fp.StartupSeconds*1000, float64(fp.StartupDiskBytes)/1e6, kfmt(float64(fp.StartupRecords))), "— (10 GB not measured)"})
		}
	}
	return ts
}

// kfmt writes n with thousands separators.
func kfmt(n float64) string {
	s := fmt.Sprintf("%.0f", n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func ratio(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func report(r *Results, plots []plotFile, mdDir, notes string) string {
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format, args...) }
	p("# Benchmarks: mqstreams side by side\n\n")
	p("Generated by `make bench` (`cmd/mqbench` in the `bench/` module) on %s UTC, %s mode, %.0f s. ", r.Started.Format("2006-01-02 15:04"), r.Mode, r.Seconds)
	p("Every broker ran as its own process on loopback on this machine, in this one run; one load generator (`loadgen`, also `mqstreams bench mqtt`) drove all MQTT brokers. Raw figures: `bench/results.json`.\n\n")
	p("## Machine and versions\n\n")
	m := r.Machine
	p("| | |\n|---|---|\n")
	p("| CPU | %s, %d cores (shared: see load) |\n| memory | %s MB |\n| kernel | %s |\n| data dirs | %s |\n| load average at start / end | %s / %s |\n", m.CPU, m.Cores, kfmt(float64(m.MemMB)), m.Kernel, m.Filesystem, m.LoadStart, m.LoadEnd)
	v := r.Versions
	p("| mqstreams | %s (`durability`: %s) |\n| Mosquitto | %s (Debian package, `persistence false`) |\n| mochi-mqtt | %s (in memory, an allow-all auth hook and nothing else) |\n| franz-go / kfake | %s / %s |\n| kcat | %s |\n| Go | %s |\n\n",
		v.MQStreams, strings.Join(r.Durability, ", "), v.Mosquitto, v.Mochi, v.FranzGo, v.Kfake, v.Kcat, v.Go)
	p("Command: `%s`\n\n", r.Command)
	for _, n := range r.Notes {
		p("- %s\n", n)
	}
	if len(r.Notes) > 0 {
		p("\n")
	}

	if sum := summary(r); len(sum) > 0 {
		p("## In short\n\n")
		for _, l := range sum {
			p("- %s\n", l)
		}
		p("\n")
	}
	ts := targets(r)
	if len(ts) > 0 {
		p("## Targets (issue 12)\n\n| target | wanted | measured | |\n|---|---|---|---|\n")
		for _, t := range ts {
			p("| %s | %s | %s | %s |\n", t.Name, t.Want, t.Measured, t.Status)
		}
		p("\n")
	}

	if len(r.Ingest) > 0 {
		p("## 1. MQTT ingest\n\nmsg/s acknowledged (QoS 1: PUBACK received; QoS 0: publishes the broker had read when it answered a PINGREQ sent after the last), each publisher on its own connection with 20 QoS 1 publishes in flight, MQTT 3.1.1, for %s per cell. mqstreams acknowledges after fsync (`durability: fsync`); Mosquitto and mochi keep messages in memory only.\n\n", durText(r))
		brokers := []string{}
		seen := map[string]bool{}
		for _, in := range r.Ingest {
			if !seen[in.Broker] {
				seen[in.Broker] = true
				brokers = append(brokers, in.Broker)
			}
		}
		p("| QoS | payload | publishers |")
		for _, b := range brokers {
			p(" %s |", b)
		}
		p(" fsync ÷ Mosquitto | fsync ÷ mochi | mqstreams ack p50 / p99 (ms) | records per fsync, mean fsync (ms) |\n|---|---|---|")
		for range brokers {
			p("---|")
		}
		p("---|---|---|---|\n")
		type cell struct{ qos, payload, pubs int }
		var cells []cell
		cs := map[cell]bool{}
		for _, in := range r.Ingest {
			c := cell{in.QoS, in.Payload, in.Publishers}
			if !cs[c] {
				cs[c] = true
				cells = append(cells, c)
			}
		}
		sort.SliceStable(cells, func(i, j int) bool {
			a, b := cells[i], cells[j]
			if a.qos != b.qos {
				return a.qos > b.qos
			}
			if a.payload != b.payload {
				return a.payload < b.payload
			}
			return a.pubs < b.pubs
		})
		for _, c := range cells {
			p("| %d | %d B | %d |", c.qos, c.payload, c.pubs)
			for _, b := range brokers {
				if in := findIngest(r, b, c.qos, c.pubs, c.payload); in != nil {
					p(" %s |", kfmt(in.MsgPerSec))
				} else if in := findIngestFailed(r, b, c.qos, c.pubs, c.payload); in != nil && strings.Contains(in.Error, "RSS") {
					p(" stopped: RSS > %.0f MB |", r.RSSLimitMB)
				} else {
					p(" failed |")
				}
			}
			mq := findIngest(r, "mqstreams-fsync", c.qos, c.pubs, c.payload)
			mos := findIngest(r, "mosquitto", c.qos, c.pubs, c.payload)
			mo := findIngest(r, "mochi", c.qos, c.pubs, c.payload)
			var a, b, lat, fs string = "—", "—", "—", "—"
			if mq != nil && mq.RecordsPerFsync > 0 {
				fs = fmt.Sprintf("%.0f, %.2f", mq.RecordsPerFsync, mq.FsyncMeanUs/1000)
			}
			if mq != nil && mq.StoredPerSec > 0 {
				fs += fmt.Sprintf("; stored %s/s", kfmt(mq.StoredPerSec))
			}
			if mq != nil && mos != nil {
				a = ratio(mq.MsgPerSec, mos.MsgPerSec)
			}
			if mq != nil && mo != nil {
				b = ratio(mq.MsgPerSec, mo.MsgPerSec)
			}
			if mq != nil && mq.P99us > 0 {
				lat = fmt.Sprintf("%.2f / %.2f", mq.P50us/1000, mq.P99us/1000)
			}
			p(" %s | %s | %s | %s |\n", a, b, lat, fs)
		}
		p("\nCPU over each cell, percent of one core, broker / load generator, and in brackets the broker's CPU time per message (the machine has %d cores in all):\n\n| QoS | payload | publishers |", r.Machine.Cores)
		for _, b := range brokers {
			p(" %s |", b)
		}
		p("\n|---|---|---|")
		for range brokers {
			p("---|")
		}
		p("\n")
		for _, c := range cells {
			p("| %d | %d B | %d |", c.qos, c.payload, c.pubs)
			for _, b := range brokers {
				if in := findIngest(r, b, c.qos, c.pubs, c.payload); in != nil {
					p(" %.0f / %.0f (%.1f µs) |", in.BrokerCPU, in.GenCPU, in.BrokerCPU/100/in.MsgPerSec*1e6)
				} else {
					p(" — |")
				}
			}
			p("\n")
		}
		p("\nRatios are throughput ratios (above 1: mqstreams faster). ")
		if len(r.Durability) == 1 {
			p("`durability: write` (issue 10) is not in this binary, so its column is absent; it appears by itself once the binary accepts the setting.")
		}
		p("\n\n")
		if len(r.PubLines) > 0 {
			p("One `mosquitto_pub -l` (QoS 1, its default 20 in flight) sending %s JSON lines of about 60 bytes, issue 10's measure:\n\n| broker | seconds | msg/s |\n|---|---|---|\n", kfmt(float64(r.PubLines[0].Messages)))
			for _, pl := range r.PubLines {
				if pl.Error != "" {
					p("| %s | failed: %s | |\n", pl.Broker, pl.Error)
					continue
				}
				p("| %s | %.2f | %s |\n", pl.Broker, pl.Seconds, kfmt(float64(pl.Messages)/pl.Seconds))
			}
			p("\n")
		}
		for _, pf := range plots {
			if strings.HasPrefix(pf.Name, "ingest-") {
				p("![%s](%s)\n\n", pf.Title, relPlot(mdDir, pf.Name))
			}
		}
	}

	if pr := r.Profile; pr != nil {
		p("Where mqstreams' CPU goes in the one-publisher QoS 1 cell (%s), from `perf record -g` on the broker process, share of its samples:\n\n| by binary | %% | | top symbols | %% |\n|---|---|---|---|---|\n", pr.Cell)
		rows := max(len(pr.DSOs), len(pr.Symbols))
		for i := 0; i < rows; i++ {
			var a, b string = "|", "|"
			if i < len(pr.DSOs) {
				a = fmt.Sprintf("%s | %.1f", pr.DSOs[i].Name, pr.DSOs[i].Pct)
			} else {
				a = " | "
			}
			if i < len(pr.Symbols) {
				b = fmt.Sprintf("`%s` | %.1f", pr.Symbols[i].Name, pr.Symbols[i].Pct)
			} else {
				b = " | "
			}
			p("| %s | | %s |\n", a, b)
		}
		p("\n")
	}
	if len(r.Replay) > 0 {
		p("## 2. Kafka replay\n\nReading every record of a 4-partition topic from the start with a fresh consumer (franz-go with default fetch settings; kcat `-C -o beginning -e`), median of the runs. The records were published to mqstreams over MQTT (100 B payloads, key = client id, the `mqtt.*` headers), then copied unchanged (partition, key, headers, value) into kfake. MB/s counts key + value bytes (kcat: values only).\n\n")
		p("| client | mqstreams records/s | MB/s | kfake records/s | MB/s | mqstreams ÷ kfake |\n|---|---|---|---|---|---|\n")
		for _, c := range []string{"franz-go", "kcat"} {
			m, k := findReplay(r, c, "mqstreams"), findReplay(r, c, "kfake")
			if m == nil || k == nil {
				p("| %s | failed | | | | |\n", c)
				continue
			}
			p("| %s (%s records, %d runs) | %s | %.1f | %s | %.1f | %s |\n", c, kfmt(float64(m.Records)), m.Runs, kfmt(m.RecPerSec), m.MBPerSec, kfmt(k.RecPerSec), k.MBPerSec, ratio(m.RecPerSec, k.RecPerSec))
		}
		p("\n")
	}

	if len(r.E2E) > 0 {
		p("## 3. End-to-end latency\n\nFrom the publisher stamping the payload to the reader decoding it, same host clock: 4 MQTT publishers (QoS 1) at a fixed total rate into a 4-shard stream, read at once by a franz-go consumer (long poll, `FetchMaxWait` 5 s) and an MQTT 5 `$stream/e2e` subscriber (QoS 1, stream-offset latest). Latencies are kept in an HDR-layout histogram (`loadgen.Histogram`, 0.8%% precision).\n\n")
		p("| path | msg/s | messages | p50 (ms) | p99 (ms) | p999 (ms) | max (ms) |\n|---|---|---|---|---|---|---|\n")
		for _, e := range r.E2E {
			p("| %s | %s | %s | %.2f | %.2f | %.2f | %.2f |\n", e.Path, kfmt(float64(e.Rate)), kfmt(float64(e.Count)), e.P50us/1000, e.P99us/1000, e.P999us/1000, e.MaxUs/1000)
		}
		if len(r.E2EServer) > 0 {
			p("\nThe server's own histograms over the same intervals (`/metrics`; Prometheus bucket bounds, so each figure is an upper bound):\n\n| server stage | msg/s | p50 ≤ (ms) | p99 ≤ (ms) | p999 ≤ (ms) |\n|---|---|---|---|---|\n")
			for _, e := range r.E2EServer {
				p("| %s | %s | %s | %s | %s |\n", strings.TrimSuffix(strings.TrimPrefix(e.Path, "server: "), " (bucket bound)"), kfmt(float64(e.Rate)), msBound(e.P50us), msBound(e.P99us), msBound(e.P999us))
			}
		}
		p("\n")
		for _, pf := range plots {
			if strings.HasPrefix(pf.Name, "e2e-") {
				p("![%s](%s)\n\n", pf.Title, relPlot(mdDir, pf.Name))
			}
		}
	}

	if len(r.Lookup) > 0 {
		p("## 4. Time lookup\n\nListOffsets (v4) by timestamp, one request at a time, each for a random time within the partition's span, against one partition filled by Kafka Produce (100 B values).\n\n")
		p("| records in the partition | lookups | p50 (ms) | p99 (ms) | p999 (ms) | max (ms) |\n|---|---|---|---|---|---|\n")
		for _, l := range r.Lookup {
			if l.Error != "" {
				p("| %s | failed: %s | | | | |\n", kfmt(float64(l.Records)), l.Error)
				continue
			}
			p("| %s | %s | %.3f | %.3f | %.3f | %.3f |\n", kfmt(float64(l.Records)), kfmt(float64(l.Lookups)), l.P50us/1000, l.P99us/1000, l.P999us/1000, l.MaxUs/1000)
		}
		p("\n")
		for _, pf := range plots {
			if pf.Name == "time-lookup.png" {
				p("![%s](%s)\n\n", pf.Title, relPlot(mdDir, pf.Name))
			}
		}
	}

	if fp := r.Footprint; fp != nil {
		p("## 5. Footprint\n\nDisk sizes are the data dir after a graceful stop and a restart (the WAL replayed into tables and dropped; Pebble's tables are block-compressed), except where the row says otherwise.\n\n| | mqstreams | Mosquitto | mochi |\n|---|---|---|---|\n")
		p("| RSS idle (after start) | %.0f MB | | |\n", fp.RSSIdleMB)
		p("| RSS max during the ingest section | QoS 1: %.0f MB, QoS 0: %.0f MB | %.0f MB | %.0f MB |\n", fp.RSSLoadMaxMB, fp.RSSQoS0MaxMB, fp.MosquittoMaxMB, fp.MochiMaxMB)
		if fp.StoredRecords > 0 {
			p("| restart to ready with the replay section's %s MQTT-ingested records | %.0f ms | | |\n", kfmt(float64(fp.StoredRecords)), fp.StartupSeconds*1000)
			p("| RSS idle 1 s after that restart | %.0f MB | | |\n", fp.RSSSmallIdleMB)
		}
		if fp.StoredStartupSeconds > 0 {
			p("| RSS of an empty server, idle | %.0f MB | | |\n", fp.RSSEmptyMB)
			p("| filled by Kafka Produce with %.1f GB of 1,000 B random values (4 partitions, no compression): RSS max while filling | %.0f MB | | |\n", float64(fp.StoredValueBytes)/1e9, fp.RSSFillMaxMB)
			p("| on disk after the fill (graceful stop, WAL included) | %.1f GB | | |\n", float64(fp.StoredBytesDisk)/1e9)
			p("| restart with that data: start to ready | %.0f ms | | |\n", fp.StoredStartupSeconds*1000)
			p("| RSS idle after that restart | %.0f MB | | |\n", fp.RSSStoredIdleMB)
		}
		p("\n")

		for _, pf := range plots {
			if pf.Name == "rss.png" {
				p("![%s](%s)\n\n", pf.Title, relPlot(mdDir, pf.Name))
			}
		}
	}
	if len(r.Compression) > 0 {
		p("### Stored-batch compression\n\nThe stream's `compression` setting (applied when the log merges batches; the tables Pebble writes are block-compressed in every case): %s telemetry records as MQTT ingest stores them (key = device id, four `mqtt.*` headers, a JSON value of about %.0f B with varying readings), written by Kafka Produce; disk measured after a restart (WAL replayed and dropped); a franz-go replay of all of them.\n\n", kfmt(float64(r.Compression[0].Records)), float64(r.Compression[0].ValueBytes)/float64(max(r.Compression[0].Records, 1)))
		p("| compression | disk per record | ÷ none | franz-go replay records/s |\n|---|---|---|---|\n")
		var none float64
		for _, c := range r.Compression {
			if c.Codec == "none" {
				none = c.BytesPerRecord
			}
		}
		for _, c := range r.Compression {
			p("| %s | %.0f B | %s | %s |\n", c.Codec, c.BytesPerRecord, ratio(c.BytesPerRecord, none), kfmt(c.ReplayRecPerSec))
		}
		p("\n")
	}
	if len(r.Streams) > 0 {
		p("## 6. Scale of streams\n\nN streams of one shard, each with its own filter `s<i>/#`, from the config file. First start creates them; the restart finds them stored. 16 MQTT publishers (QoS 1, 20 in flight, 100 B), publisher i on stream i, for %s.\n\n", durText(r))
		p("| streams | first start to ready | restart to ready | idle RSS | QoS 1 msg/s | ack p99 (ms) |\n|---|---|---|---|---|---|\n")
		for _, s := range r.Streams {
			p("| %s | %.2f s | %.2f s | %.0f MB | %s | %.1f |\n", kfmt(float64(s.Streams)), s.FirstStartSeconds, s.RestartSeconds, s.RSSIdleMB, kfmt(s.MsgPerSec), s.P99us/1000)
		}
		p("\n")
	}
	if len(r.Cluster) > 0 {
		p("## 7. Three-node cluster ingest\n\nOne stream of one shard, `durability: fsync`, replication factor 3: three mqstreams processes on this machine (sharing its cores and its disk, Raft over loopback) against one node alone, taking turns within each round. MQTT 3.1.1 QoS 1 publishers, 20 in flight each, 100 B, for %.0f s per run; against the cluster the publishers are spread over the three nodes (as behind a TCP load balancer), so two thirds of them are forwarded to the shard leader. Every round as it came.\n\n", r.Cluster[0].Seconds)
		p("| publishers | round | load | one node msg/s | three nodes msg/s | ratio | ack p50 one / three (ms) | three nodes ack p99 (ms) | server CPU µs/msg one / three | cores busy one / three |\n|---|---|---|---|---|---|---|---|---|---|\n")
		for _, c := range r.Cluster {
			p("| %d | %d | %s | %s | %s | %.2f× | %.1f / %.1f | %.1f | %.0f / %.0f | %.2f / %.2f |\n", c.Publishers, c.Round, c.Load, kfmt(c.Single), kfmt(c.Cluster), c.Ratio, c.SingleP50/1000, c.ClusterP50/1000, c.ClusterP99/1000, c.SingleCPUus, c.ClusterCPUus, c.SingleCores, c.ClusterCores)
		}
		p("\n")
	}
	if len(r.Errors) > 0 {
		p("## Failed steps\n\n")
		for _, e := range r.Errors {
			p("- %s\n", e)
		}
		p("\n")
	}
	if strings.TrimSpace(notes) != "" {
		p("%s\n", strings.TrimSpace(notes))
	}
	return w.String()
}

func durText(r *Results) string {
	for _, in := range r.Ingest {
		if in.Seconds > 0 {
			if r.Mode == "quick" {
				return "about 1 s"
			}
			return "about 4 s"
		}
	}
	return "a few seconds"
}

func relPlot(mdDir, name string) string {
	// Plots sit next to results.json; the report links them relative to itself.
	return filepath.ToSlash(filepath.Join(plotDirRel, name))
}

// plotDirRel is the plot directory as seen from the report's directory.
var plotDirRel = "."

func msBound(us float64) string {
	if us < 0 {
		return "beyond the last bucket"
	}
	return fmt.Sprintf("%.2f", us/1000)
}

// summary is a few sentences of the run's main ratios, computed from the results.
func summary(r *Results) []string {
	var out []string
	for _, qos := range []int{1, 0} {
		lo, hi := math.Inf(1), 0.0
		for _, in := range r.Ingest {
			if in.Broker != "mqstreams-fsync" || in.QoS != qos || in.Error != "" {
				continue
			}
			if m := findIngest(r, "mosquitto", qos, in.Publishers, in.Payload); m != nil && m.MsgPerSec > 0 {
				x := in.MsgPerSec / m.MsgPerSec
				lo, hi = math.Min(lo, x), math.Max(hi, x)
			}
		}
		if hi > 0 {
			what := "acknowledged after fsync, against Mosquitto's acknowledgement from memory"
			if qos == 0 {
				what = "read by the broker"
			}
			line := fmt.Sprintf("MQTT QoS %d ingest: mqstreams reaches %.2f–%.2f× Mosquitto's msg/s (%s)", qos, lo, hi, what)
			stopped := 0
			for _, in := range r.Ingest {
				if in.Broker == "mqstreams-fsync" && in.QoS == qos && strings.Contains(in.Error, "RSS") {
					stopped++
				}
			}
			if stopped > 0 {
				line += fmt.Sprintf("; %d of its cells were stopped when its memory passed %.0f MB (unbounded queue)", stopped, r.RSSLimitMB)
			}
			out = append(out, line+".")
		}
	}
	if m, k := findReplay(r, "franz-go", "mqstreams"), findReplay(r, "franz-go", "kfake"); m != nil && k != nil {
		line := fmt.Sprintf("Kafka replay with franz-go: %s records/s, %.2f× kfake", kfmt(m.RecPerSec), m.RecPerSec/k.RecPerSec)
		if mc, kc := findReplay(r, "kcat", "mqstreams"), findReplay(r, "kcat", "kfake"); mc != nil && kc != nil {
			line += fmt.Sprintf("; with kcat %.2f× kfake", mc.RecPerSec/kc.RecPerSec)
		}
		out = append(out, line+".")
	}
	top := 0
	for _, e := range r.E2E {
		top = max(top, e.Rate)
	}
	for _, e := range r.E2E {
		if e.Rate == top && strings.Contains(e.Path, "Kafka") {
			out = append(out, fmt.Sprintf("End-to-end MQTT → Kafka consumer at %s msg/s: p50 %.2f ms, p99 %.2f ms, p999 %.2f ms.", kfmt(float64(e.Rate)), e.P50us/1000, e.P99us/1000, e.P999us/1000))
		}
	}
	if n := len(r.Lookup); n > 0 {
		f, l := r.Lookup[0], r.Lookup[n-1]
		out = append(out, fmt.Sprintf("ListOffsets by time: p99 %.3f ms at %s records per partition, %.3f ms at %s.", f.P99us/1000, kfmt(float64(f.Records)), l.P99us/1000, kfmt(float64(l.Records))))
	}
	return out
}

func sortedKeys(m map[int]bool) []int {
	ks := make([]int, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Ints(ks)
	return ks
}
