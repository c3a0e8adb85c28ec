package compattests

// `$stream` replay on a node holding the shard's replica (local reads) against a node
// holding none (reads from the replica over the node link, cluster/read.go), three
// real nodes, replication_factor 1. Throughput: mosquitto_sub replays the whole stream
// from earliest at QoS 1 (time from start to its exit after the last record). Latency:
// one mosquitto_sub per node subscribed at latest, a franz-go producer writes one record
// at a time carrying its send time; each subscriber prints its arrival time. A
// benchmark (not pass/fail on a shared machine):
//
//	go test -run '^$' -bench ClusterReplayRemote -benchtime 1x -v ./compat-tests/
//	MQSTREAMS_REPLAY_RECORDS=200000 MQSTREAMS_REPLAY_SAMPLES=300 to change the sizes,
//	MQSTREAMS_REPLAY_QOS=0 for the replay at QoS 0.

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func BenchmarkClusterReplayRemote(b *testing.B) {
	if !clusterSupported(b) {
		b.Skip("this mqstreams has no cluster mode yet (`cluster:` is an unknown config key)")
	}
	subBin := NeedTool(b, "mosquitto_sub")
	records := envInt("MQSTREAMS_REPLAY_RECORDS", 200000)
	samples := envInt("MQSTREAMS_REPLAY_SAMPLES", 300)
	qos := "1"
	if os.Getenv("MQSTREAMS_REPLAY_QOS") == "0" {
		qos = "0"
	}
	const topic = "rbench"
	c := startCluster(b, 3, fmt.Sprintf("streams:\n  - {name: %s, filter: \"rbench/#\", shards: 1, replication_factor: 1}\n", topic))
	c.waitLeaders(b, topic, 1, 60*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	leader, replicas, err := c.replicasOf(ctx, 0, topic, 0)
	if err != nil {
		b.Fatal(err)
	}
	local := int(leader) - 1
	remote := -1
	for i := range c.nodes {
		if !slices.Contains(replicas, int32(i+1)) {
			remote = i
			break
		}
	}
	b.Logf("replica on node %d, remote reader on node %d", local+1, remote+1)

	prod, err := kgo.NewClient(kgo.SeedBrokers(c.kafka[local]), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(5*time.Millisecond), kgo.DisableIdempotentWrite())
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	value := []byte(strings.Repeat("x", 100))
	var wg sync.WaitGroup
	var perr error
	var mu sync.Mutex
	loadStart := time.Now()
	for i := range records {
		wg.Add(1)
		prod.Produce(ctx, &kgo.Record{Topic: topic, Partition: 0, Key: []byte(strconv.Itoa(i % 100)), Value: value}, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				perr = err
				mu.Unlock()
			}
			wg.Done()
		})
	}
	wg.Wait()
	if perr != nil {
		b.Fatal(perr)
	}
	b.Logf("loaded %d records of 100 B in %v", records, time.Since(loadStart).Round(time.Millisecond))

	replay := func(node int) time.Duration {
		h, p := SplitAddr(b, c.mqtt[node])
		start := time.Now()
		cmd := exec.CommandContext(ctx, subBin, "-h", h, "-p", p, "-q", qos, "-i", fmt.Sprintf("rbench-%d", node),
			"-t", "$stream/"+topic+"@earliest", "-C", strconv.Itoa(records), "-F", "%p")
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		n := 0
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			n++
		}
		if err := cmd.Wait(); err != nil || n != records {
			b.Fatalf("mosquitto_sub on node %d: %v after %d of %d records", node+1, err, n, records)
		}
		return time.Since(start)
	}
	b.ResetTimer()
	for _, r := range []struct {
		name string
		node int
	}{{"local", local}, {"remote", remote}} {
		d := replay(r.node)
		b.Logf("replay %-6s (node %d, QoS %s): %d records in %v = %.0f records/s", r.name, r.node+1, qos, records, d.Round(time.Millisecond), float64(records)/d.Seconds())
	}

	// Live latency: both subscribers at latest, one record at a time.
	type arrival struct{ sent, got int64 }
	tail := func(node int) (func() []arrival, func()) {
		h, p := SplitAddr(b, c.mqtt[node])
		cctx, stop := context.WithCancel(ctx)
		cmd := exec.CommandContext(cctx, subBin, "-h", h, "-p", p, "-q", "1", "-i", fmt.Sprintf("rtail-%d", node),
			"-t", "$stream/"+topic+"@latest", "-F", "%U %p")
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		var mu sync.Mutex
		var got []arrival
		done := make(chan struct{})
		go func() {
			defer close(done)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				at, payload, ok := strings.Cut(sc.Text(), " ")
				if !ok {
					continue
				}
				sent, err1 := int64(0), error(nil)
				if payload != "w" {
					sent, err1 = strconv.ParseInt(strings.TrimPrefix(payload, "t"), 10, 64)
				}
				sec, frac, _ := strings.Cut(at, ".")
				s, err2 := strconv.ParseInt(sec, 10, 64)
				ns, err3 := strconv.ParseInt((frac + "000000000")[:9], 10, 64)
				if err1 != nil || err2 != nil || err3 != nil {
					continue
				}
				mu.Lock()
				got = append(got, arrival{sent, s*1e9 + ns})
				mu.Unlock()
			}
			_ = cmd.Wait()
		}()
		return func() []arrival {
				mu.Lock()
				defer mu.Unlock()
				return slices.Clone(got)
			}, func() {
				stop()
				<-done
			}
	}
	localGot, stopLocal := tail(local)
	defer stopLocal()
	remoteGot, stopRemote := tail(remote)
	defer stopRemote()
	// Both subscribers are live once each got a warm-up record.
	for i := 0; len(localGot()) == 0 || len(remoteGot()) == 0; i++ {
		if i == 600 {
			b.Fatal("the tails got no warm-up record in 30 s")
		}
		if err := prod.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: 0, Value: []byte("w")}).FirstErr(); err != nil {
			b.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	warm := [2]int{len(localGot()), len(remoteGot())}
	for range samples {
		v := "t" + strconv.FormatInt(time.Now().UnixNano(), 10)
		if err := prod.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: 0, Value: []byte(v)}).FirstErr(); err != nil {
			b.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond) // one record at a time: the tail is idle between them
	}
	deadline := time.Now().Add(30 * time.Second)
	for (len(localGot()) < warm[0]+samples || len(remoteGot()) < warm[1]+samples) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	b.StopTimer()
	for _, r := range []struct {
		name string
		got  []arrival
	}{{"local", localGot()}, {"remote", remoteGot()}} {
		var lat []time.Duration
		for _, a := range r.got {
			if a.sent != 0 {
				lat = append(lat, time.Duration(a.got-a.sent))
			}
		}
		slices.Sort(lat)
		if len(lat) == 0 {
			b.Fatalf("%s tail got nothing", r.name)
		}
		pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
		b.Logf("live %-6s: %d of %d records, latency p50 %v p90 %v p99 %v max %v (produce → mosquitto_sub prints it)",
			r.name, len(lat), samples, pct(0.5).Round(10*time.Microsecond), pct(0.9).Round(10*time.Microsecond), pct(0.99).Round(10*time.Microsecond), lat[len(lat)-1].Round(10*time.Microsecond))
	}
}
