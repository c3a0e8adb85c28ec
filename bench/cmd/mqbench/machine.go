package main

import (
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
)

func machine() Machine {
	m := Machine{Cores: runtime.NumCPU(), LoadStart: loadavg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				m.CPU = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "MemTotal:") {
				f := strings.Fields(l)
				for _, c := range f[1] {
					kb = kb*10 + int(c-'0')
				}
			}
		}
		m.MemMB = kb / 1024
	}
	if out, err := exec.Command("df", "-T", os.TempDir()).Output(); err == nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if f := strings.Fields(lines[len(lines)-1]); len(f) > 1 {
			m.Filesystem = f[1] + " (" + os.TempDir() + ")"
		}
	}
	return m
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func versions(bin string) Versions {
	v := Versions{Go: runtime.Version()}
	if out, err := exec.Command(bin, "version").Output(); err == nil {
		v.MQStreams = strings.TrimPrefix(strings.TrimSpace(string(out)), "mqstreams ")
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", "mosquitto").Output(); err == nil {
		v.Mosquitto = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("kcat", "-V").Output(); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), "Version") {
				v.Kcat, _, _ = strings.Cut(strings.TrimSpace(l), " builtin.features")
				if strings.Count(v.Kcat, "(") > strings.Count(v.Kcat, ")") {
					v.Kcat += ")"
				}
				break
			}
		}
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			switch d.Path {
			case "github.com/mochi-mqtt/server/v2":
				v.Mochi = d.Version
			case "github.com/twmb/franz-go":
				v.FranzGo = d.Version
			case "github.com/twmb/franz-go/pkg/kfake":
				v.Kfake = d.Version
			}
		}
	}
	return v
}
