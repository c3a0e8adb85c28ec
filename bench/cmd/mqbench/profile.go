package main

// A CPU profile of the broker during one cell, with Linux perf when it is installed:
// where a missed target's time goes, kernel included (fsync, wake-ups, TCP).

import (
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Profile is perf's view of one broker over one load cell.
type Profile struct {
	Cell    string       `json:"cell"`
	Samples string       `json:"samples"`
	DSOs    []ProfileRow `json:"by_dso"`
	Symbols []ProfileRow `json:"top_symbols"`
}

// ProfileRow is one line of a perf report: share of the samples.
type ProfileRow struct {
	Name string  `json:"name"`
	Pct  float64 `json:"pct"`
}

// startProfile records the process for d; the returned function waits and reports.
// Without perf (or without the right to use it) it returns nil.
func startProfile(ctx context.Context, dir string, p *proc, d time.Duration) func() *Profile {
	perf, err := exec.LookPath("perf")
	if err != nil {
		return nil
	}
	data := filepath.Join(dir, "perf.data")
	cmd := exec.CommandContext(ctx, perf, "record", "-F", "499", "-g", "-p", strconv.Itoa(p.cmd.Process.Pid), "-o", data, "--", "sleep", strconv.FormatFloat(d.Seconds(), 'f', 1, 64))
	if err := cmd.Start(); err != nil {
		return nil
	}
	return func() *Profile {
		if err := cmd.Wait(); err != nil {
			return nil
		}
		prof := &Profile{}
		prof.DSOs = perfReport(ctx, perf, data, "dso", 4)
		prof.Symbols = perfReport(ctx, perf, data, "symbol", 12)
		if len(prof.DSOs) == 0 {
			return nil
		}
		return prof
	}
}

func perfReport(ctx context.Context, perf, data, sortKey string, n int) []ProfileRow {
	out, err := exec.CommandContext(ctx, perf, "report", "-i", data, "--no-children", "--sort", sortKey, "--stdio", "-g", "none").Output()
	if err != nil {
		return nil
	}
	var rows []ProfileRow
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") || !strings.Contains(l, "%") {
			continue
		}
		f := strings.Fields(l)
		pct, err := strconv.ParseFloat(strings.TrimSuffix(f[0], "%"), 64)
		if err != nil || len(f) < 2 {
			continue
		}
		rest := f[1:]
		for len(rest) > 0 && rest[len(rest)-1] == "-" {
			rest = rest[:len(rest)-1] // empty columns of perf's table
		}
		name := strings.Join(rest, " ")
		name = strings.TrimPrefix(strings.TrimPrefix(name, "[k] "), "[.] ")
		rows = append(rows, ProfileRow{Name: name, Pct: pct})
		if len(rows) == n {
			break
		}
	}
	return rows
}
