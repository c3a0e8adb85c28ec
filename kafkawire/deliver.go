package kafkawire

import (
	"strings"

	"github.com/mqstreams/mqstreams/log"
	"github.com/mqstreams/mqstreams/mapping"
)

// deliverer returns what hands recs to Options.Deliver, or nil when nothing is
// delivered. The principal is the connection's at produce time.
func (s *Server) deliverer(c *conn, st *log.Stream, shard int32, recs []log.Record) func() {
	if s.deliver == nil {
		return nil
	}
	p := mapping.Produced{Stream: st.Name(), Partition: shard, Records: copyRecords(recs)}
	if s.auth != nil {
		principal := c.sec.principal
		p.MayPublish = principal.CanPublish
	}
	return func() { s.deliver(p) }
}

// copyRecords copies recs into one allocation: decoded records alias the connection's
// request buffer, which the next request reuses while delivery is still under way.
func copyRecords(recs []log.Record) []log.Record {
	size, nh := 0, 0
	for _, r := range recs {
		size += len(r.Key) + len(r.Value)
		for _, h := range r.Headers {
			size += len(h.Value)
		}
		nh += len(r.Headers)
	}
	buf := make([]byte, 0, size)
	hs := make([]log.Header, 0, nh)
	out := make([]log.Record, len(recs))
	take := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		start := len(buf)
		buf = append(buf, b...)
		return buf[start:len(buf):len(buf)]
	}
	for i, r := range recs {
		o := r
		o.Key, o.Value = take(r.Key), take(r.Value)
		start := len(hs)
		for _, h := range r.Headers {
			hs = append(hs, log.Header{Key: strings.Clone(h.Key), Value: take(h.Value)})
		}
		o.Headers = hs[start:len(hs):len(hs)]
		out[i] = o
	}
	return out
}

// markForgedTopics renames the mqtt.topic header of each record whose producer lacks
// the MQTT publish grant on that topic to mapping.HeaderTopicDenied, before the record
// is stored: stored records do not say who produced them, so a $stream replay would
// otherwise trust the header and send the record under the forged topic. Without a
// user store every topic may be published to.
func (s *Server) markForgedTopics(c *conn, recs []log.Record) {
	if s.auth == nil {
		return
	}
	p := c.sec.principal
	for i := range recs {
		hs := recs[i].Headers
		for j := range hs {
			if hs[j].Key == mapping.HeaderTopic && !p.CanPublish(string(hs[j].Value)) {
				hs[j].Key = mapping.HeaderTopicDenied
			}
		}
	}
}
