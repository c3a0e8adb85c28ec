package main

// PNG plots with gonum/plot.

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// plotFile is one written plot and what it shows.
type plotFile struct {
	Name, Title string
}

var brokerColors = map[string]color.Color{
	"mqstreams-fsync": color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	"mqstreams-write": color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	"mosquitto":       color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	"mochi":           color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
}

func writePlots(r *Results, dir string) ([]plotFile, error) {
	var out []plotFile
	// Throughput vs publishers, one line per broker, one plot per QoS and payload.
	type key struct{ qos, payload int }
	groups := map[key]map[string]plotter.XYs{}
	for _, in := range r.Ingest {
		if in.Error != "" {
			continue
		}
		k := key{in.QoS, in.Payload}
		if groups[k] == nil {
			groups[k] = map[string]plotter.XYs{}
		}
		groups[k][in.Broker] = append(groups[k][in.Broker], plotter.XY{X: float64(in.Publishers), Y: in.MsgPerSec / 1000})
	}
	var keys []key
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].qos != keys[j].qos {
			return keys[i].qos > keys[j].qos
		}
		return keys[i].payload < keys[j].payload
	})
	for _, k := range keys {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("MQTT ingest, QoS %d, %d B payload", k.qos, k.payload)
		if k.qos > 0 {
			p.Title.Text += ", 20 in flight per publisher"
		}
		p.X.Label.Text = "publishers (connections)"
		p.Y.Label.Text = "thousand msg/s"
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Y.Min = 0
		p.Legend.Top = true
		p.Legend.Left = true
		maxY := 0.0
		for _, xys := range groups[k] {
			for _, xy := range xys {
				maxY = math.Max(maxY, xy.Y)
			}
		}
		p.Y.Max = maxY * 1.3 // room for the legend above the lines
		for _, b := range []string{"mqstreams-fsync", "mqstreams-write", "mosquitto", "mochi"} {
			xys, ok := groups[k][b]
			if !ok {
				continue
			}
			sort.Slice(xys, func(i, j int) bool { return xys[i].X < xys[j].X })
			if err := addLine(p, b, xys, brokerColors[b]); err != nil {
				return out, err
			}
		}
		name := fmt.Sprintf("ingest-qos%d-%dB.png", k.qos, k.payload)
		if err := p.Save(7*vg.Inch, 4.2*vg.Inch, filepath.Join(dir, name)); err != nil {
			return out, err
		}
		out = append(out, plotFile{name, p.Title.Text})
	}

	// End-to-end latency CDFs.
	if len(r.E2E) > 0 {
		p := plot.New()
		p.Title.Text = "End-to-end latency, MQTT publish (QoS 1) to reader"
		p.X.Label.Text = "latency (ms, log scale)"
		p.Y.Label.Text = "fraction of messages at or below"
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Y.Min, p.Y.Max = 0, 1
		p.Legend.Top = false
		p.Legend.Left = false
		for i, e := range r.E2E {
			var xys plotter.XYs
			for _, pt := range e.CDF {
				if pt[0] > 0 {
					xys = append(xys, plotter.XY{X: pt[0] / 1000, Y: pt[1]})
				}
			}
			if len(xys) == 0 {
				continue
			}
			l, err := plotter.NewLine(xys)
			if err != nil {
				return out, err
			}
			l.Color = plotutil.Color(i)
			l.Width = vg.Points(1.5)
			if e.Rate >= 10000 {
				l.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
			}
			p.Add(l)
			p.Legend.Add(fmt.Sprintf("%s, %d msg/s", e.Path, e.Rate), l)
		}
		name := "e2e-latency-cdf.png"
		if err := p.Save(7*vg.Inch, 4.2*vg.Inch, filepath.Join(dir, name)); err != nil {
			return out, err
		}
		out = append(out, plotFile{name, p.Title.Text})
	}

	// Time lookup latency against partition size.
	if len(r.Lookup) > 0 {
		p := plot.New()
		p.Title.Text = "ListOffsets by time, one partition"
		p.X.Label.Text = "records in the partition (log scale)"
		p.Y.Label.Text = "latency (ms)"
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Y.Min = 0
		p.Legend.Top = true
		var p50, p99 plotter.XYs
		for _, l := range r.Lookup {
			if l.Error != "" {
				continue
			}
			p50 = append(p50, plotter.XY{X: float64(l.Records), Y: l.P50us / 1000})
			p99 = append(p99, plotter.XY{X: float64(l.Records), Y: l.P99us / 1000})
		}
		if len(p50) > 0 {
			if err := addLine(p, "p50", p50, plotutil.Color(0)); err != nil {
				return out, err
			}
			if err := addLine(p, "p99", p99, plotutil.Color(1)); err != nil {
				return out, err
			}
			// The target (p99 ≤ 1 ms at 10^7), so "flat" is read against it.
			tl, err := plotter.NewLine(plotter.XYs{{X: p50[0].X, Y: 1}, {X: p50[len(p50)-1].X, Y: 1}})
			if err != nil {
				return out, err
			}
			tl.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			tl.Color = color.Gray{Y: 0x80}
			p.Add(tl)
			p.Legend.Add("target p99", tl)
			p.Y.Max = 1.2
			name := "time-lookup.png"
			if err := p.Save(6*vg.Inch, 3.6*vg.Inch, filepath.Join(dir, name)); err != nil {
				return out, err
			}
			out = append(out, plotFile{name, p.Title.Text})
		}
	}

	// RSS over the run, one line per broker process name.
	if len(r.RSS) > 0 {
		p := plot.New()
		p.Title.Text = "Resident memory over the run (ingest section, then mqstreams filled by Produce)"
		p.X.Label.Text = "seconds since start"
		p.Y.Label.Text = "RSS (MB, log scale)"
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Y.Min = 5
		p.Legend.Top = true
		p.Legend.Left = true
		// The brokers compared under the same load, and mqstreams filled with the most
		// data; the other instances would only crowd the picture.
		shown := []struct {
			name string
			c    color.Color
		}{
			{"mqstreams (ingest-fsync)", brokerColors["mqstreams-fsync"]},
			{"mqstreams (ingest-write)", brokerColors["mqstreams-write"]},
			{"mosquitto", brokerColors["mosquitto"]},
			{"mochi", brokerColors["mochi"]},
			{"mqstreams (stored)", color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff}},
		}
		series := map[string]plotter.XYs{}
		maxY := 0.0
		for _, s := range r.RSS {
			series[s.Broker] = append(series[s.Broker], plotter.XY{X: s.Seconds, Y: s.MB})
			maxY = math.Max(maxY, s.MB)
		}
		for _, sh := range shown {
			n, c := sh.name, sh.c
			if len(series[n]) == 0 {
				continue
			}
			s, err := plotter.NewScatter(series[n])
			if err != nil {
				return out, err
			}
			s.GlyphStyle.Color = c
			s.GlyphStyle.Radius = vg.Points(1.2)
			s.GlyphStyle.Shape = draw.CircleGlyph{}
			p.Add(s)
			p.Legend.Add(n, s)
		}
		p.Y.Max = maxY * 4 // log scale: room for the legend
		name := "rss.png"
		if err := p.Save(8*vg.Inch, 4.5*vg.Inch, filepath.Join(dir, name)); err != nil {
			return out, err
		}
		out = append(out, plotFile{name, p.Title.Text})
	}
	return out, nil
}

func addLine(p *plot.Plot, name string, xys plotter.XYs, c color.Color) error {
	l, pts, err := plotter.NewLinePoints(xys)
	if err != nil {
		return err
	}
	l.Color = c
	l.Width = vg.Points(1.5)
	pts.Color = c
	pts.Shape = draw.CircleGlyph{}
	p.Add(l, pts)
	p.Legend.Add(name, l, pts)
	return nil
}
