package compattests

// Kafka produce → MQTT subscriber latency through the real binary (issue 11): a
// franz-go producer sends records at a fixed rate with an mqtt.topic header, a
// paho.mqtt.golang subscriber (QoS 0) notes when each arrives; p50 and p99 of the
// difference are reported. Records are delivered only once durable, so the figures
// include the group commit's fsync.

import (
	"context"
	be "encoding/binary"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/twmb/franz-go/pkg/kgo"
)

func BenchmarkKafkaToMQTTLatency(b *testing.B) {
	for _, rate := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
			srv := StartServer(b, ServerOptions{Config: "streams:\n  - {name: lat, filter: \"lat/#\", shards: 4, key: none}\n"})
			benchKafkaToMQTT(b, srv, rate, 3*time.Second)
		})
	}
}

func benchKafkaToMQTT(b *testing.B, srv *Server, rate int, d time.Duration) {
	var mu sync.Mutex
	var lat []time.Duration
	got := make(chan struct{}, 1)
	opts := paho.NewClientOptions().AddBroker("tcp://" + srv.MQTTAddr).SetClientID("lat-sub").SetOrderMatters(false)
	sub := paho.NewClient(opts)
	if tok := sub.Connect(); !tok.WaitTimeout(startTimeout) || tok.Error() != nil {
		b.Fatalf("mqtt connect: %v", tok.Error())
	}
	defer sub.Disconnect(100)
	if tok := sub.Subscribe("lat/#", 0, func(_ paho.Client, m paho.Message) {
		sent := int64(be.BigEndian.Uint64(m.Payload()))
		mu.Lock()
		lat = append(lat, time.Duration(time.Now().UnixNano()-sent))
		mu.Unlock()
		select {
		case got <- struct{}{}:
		default:
		}
	}); !tok.WaitTimeout(startTimeout) || tok.Error() != nil {
		b.Fatalf("subscribe: %v", tok.Error())
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(srv.KafkaAddr), kgo.DefaultProduceTopic("lat"), kgo.ProducerLinger(0))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	hdr := []kgo.RecordHeader{{Key: "mqtt.topic", Value: []byte("lat/x")}, {Key: "mqtt.qos", Value: []byte("0")}}
	n := int(d.Seconds() * float64(rate))
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < n; i++ {
		if wait := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); wait > 0 {
			time.Sleep(wait) // pacing the producer, not waiting for a result
		}
		v := be.BigEndian.AppendUint64(make([]byte, 0, 100), uint64(time.Now().UnixNano()))
		cl.Produce(ctx, &kgo.Record{Value: append(v, make([]byte, 92)...), Headers: hdr}, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(startTimeout)
	for {
		mu.Lock()
		have := len(lat)
		mu.Unlock()
		if have >= n || time.Now().After(deadline) {
			break
		}
		select {
		case <-got:
		case <-time.After(100 * time.Millisecond):
		}
	}
	b.StopTimer()
	mu.Lock()
	defer mu.Unlock()
	if len(lat) < n {
		b.Fatalf("received %d of %d records", len(lat), n)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "rec/s")
	b.Logf("rate %d rec/s: %d records, p50 %v p99 %v", rate, n, p50, p99)
}
