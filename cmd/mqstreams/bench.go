package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mqstreams/mqstreams/loadgen"
)

// benchCmd is "mqstreams bench": load generators a user can point at any broker. The
// side-by-side comparison with other brokers is cmd/mqbench in the bench module.
type benchCmd struct {
	MQTT benchMQTTCmd `cmd:"" name:"mqtt" help:"Publish from N MQTT connections and print msg/s and ack latency p50/p99/p999."`
}

// benchMQTTCmd is "mqstreams bench mqtt".
type benchMQTTCmd struct {
	Addr       string        `default:"localhost:1883" help:"Broker address host:port (any MQTT broker)."`
	Protocol   string        `default:"3.1.1" enum:"3.1.1,5" help:"MQTT version: 3.1.1 or 5."`
	QoS        int           `name:"qos" short:"q" default:"1" help:"QoS of the publishes: 0, 1 or 2."`
	Publishers int           `short:"c" default:"1" help:"Publisher connections."`
	Messages   int           `short:"n" default:"0" help:"Messages in total over all publishers; 0 runs for --duration."`
	Duration   time.Duration `short:"d" default:"10s" help:"How long to publish when --messages is 0."`
	Size       int           `short:"s" default:"100" help:"Payload bytes."`
	InFlight   int           `name:"inflight" default:"20" help:"Unacknowledged QoS 1/2 publishes per publisher (an MQTT 5 broker's Receive Maximum lowers it)."`
	Rate       float64       `default:"0" help:"Cap on publishes per second over all publishers; 0 = no cap."`
	Topic      string        `default:"bench/%d" help:"Topic; %d is replaced by the publisher number."`
	ClientID   string        `name:"client-id" default:"mqstreams-bench" help:"Client id prefix; publisher i is <prefix>-<i>."`
	Username   string        `help:"User name sent in CONNECT."`
	Password   string        `help:"Password sent in CONNECT." env:"MQSTREAMS_BENCH_PASSWORD"`
}

// Run runs the load and prints the result; a progress line goes to stderr each second.
func (c benchMQTTCmd) Run(e env) error {
	if c.QoS < 0 || c.QoS > 2 {
		return fmt.Errorf("--qos %d: want 0, 1 or 2", c.QoS)
	}
	version := byte(loadgen.V311)
	if c.Protocol == "5" {
		version = loadgen.V5
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tty := isTerminal(e.stderr)
	res, err := loadgen.Run(ctx, loadgen.Config{
		Addr: c.Addr, Version: version, QoS: byte(c.QoS), Publishers: c.Publishers,
		Messages: c.Messages, Duration: c.Duration, PayloadSize: c.Size, InFlight: c.InFlight,
		Rate: c.Rate, Topic: c.Topic, ClientIDPrefix: c.ClientID, Username: c.Username, Password: c.Password,
		Progress: func(p loadgen.Progress) {
			line := fmt.Sprintf("%6.1fs  sent %d  acked %d  %.0f msg/s", p.Elapsed.Seconds(), p.Sent, p.Acked, float64(p.Acked)/p.Elapsed.Seconds())
			if tty {
				fmt.Fprintf(e.stderr, "\r\033[K%s", line)
			} else {
				fmt.Fprintln(e.stderr, line)
			}
		},
	})
	if tty {
		fmt.Fprintln(e.stderr)
	}
	if err != nil {
		return fmt.Errorf("bench mqtt %s: %w", c.Addr, err)
	}
	fmt.Fprintf(e.stdout, "%s MQTT %s QoS %d, %d publishers × %d in flight, %d B payload: %d messages in %.2fs = %.0f msg/s\n",
		c.Addr, c.Protocol, c.QoS, res.Publishers, res.InFlight, c.Size, res.Acked, res.Elapsed.Seconds(), res.MsgPerSec())
	if h := &res.Latency; h.Count() > 0 {
		fmt.Fprintf(e.stdout, "ack latency: p50 %s  p99 %s  p999 %s  max %s\n",
			fmtLatency(h.Quantile(0.5)), fmtLatency(h.Quantile(0.99)), fmtLatency(h.Quantile(0.999)), fmtLatency(h.Max()))
	}
	return nil
}

func fmtLatency(d time.Duration) string {
	return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond))
}
