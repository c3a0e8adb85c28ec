package mqtt

import (
	"testing"
	"time"

	"github.com/mqstreams/mqstreams/log"
	"github.com/mqstreams/mqstreams/mapping"
	"github.com/mqstreams/mqstreams/mqtt/mqtttest"
)

// TestReplayMergedBatches replays streams whose batches the log merged (and, for lz4
// and zstd, compressed): every message arrives once, in offset order, with its topic,
// payload, properties and its own append time, as before merging.
func TestReplayMergedBatches(t *testing.T) {
	for _, codec := range []string{"none", "lz4", "zstd"} {
		t.Run(codec, func(t *testing.T) {
			clock := &testClock{t: time.UnixMicro(1_700_000_000_000_123)}
			def := streamDef("m", 2, "topic", "m/#")
			def.Compression = codec
			e := newReplayEnv(t, replayEnvOptions{now: clock.now, noSync: true}, def)
			const rounds, per = 20, 150
			var hwm []int64
			for r := 0; r < rounds; r++ {
				clock.set(clock.now().Add(1777 * time.Microsecond))
				hwm = e.fill(t, testMessages(per, "m/dev%d/temp"))["m"]
			}
			st := e.log.Stream("m")
			before := [2][]log.StoredRecord{readAll(t, st, 0), readAll(t, st, 1)}
			if err := e.log.Coalesce(); err != nil {
				t.Fatal(err)
			}
			for sh := int32(0); sh < 2; sh++ {
				bs, err := st.Read(sh, 0, 1<<30)
				if err != nil {
					t.Fatal(err)
				}
				if len(bs) != 1 {
					t.Fatalf("shard %d: %d batches after coalescing, want 1", sh, len(bs))
				}
			}

			c := dialV5(t, e.addr, v5Options{id: "merged-" + codec, rm: 100})
			if sa := c.subscribe(t, "earliest", 1, "$stream/m"); sa.ReasonCodes[0] != 1 {
				t.Fatalf("suback %v", sa.ReasonCodes)
			}
			msgs := c.waitN(t, rounds*per)
			checkShards(t, msgs, make([]int64, 2), hwm)
			for _, m := range msgs {
				shard, off := propInt(t, m, PropShard), propInt(t, m, PropOffset)
				rec := before[shard][off]
				want := mapping.FromRecord(rec.Record)
				if m.TopicName != want.Topic || string(m.Payload) != string(want.Payload) {
					t.Fatalf("%d/%d: got %s %q, want %s %q", shard, off, m.TopicName, m.Payload, want.Topic, want.Payload)
				}
				if mqtttest.UserProperty(m, "seq") != string(m.Payload) || m.Properties.ContentType != "text/plain" {
					t.Fatalf("%d/%d: properties %+v", shard, off, m.Properties)
				}
				if ts := propInt(t, m, PropTS); ts != rec.TimestampUS {
					t.Fatalf("%d/%d: ts %d, want %d (as appended)", shard, off, ts, rec.TimestampUS)
				}
			}
			if propInt(t, msgs[0], PropTS)%1000 == 0 {
				t.Fatalf("append times lost their µs: %d", propInt(t, msgs[0], PropTS))
			}
		})
	}
}
