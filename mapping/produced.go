package mapping

import "github.com/mqstreams/mqstreams/log"

// Produced is a batch of records produced over Kafka into a stream shard, handed from
// the Kafka server to the MQTT broker once durable in the log so that MQTT subscribers
// receive it.
type Produced struct {
	Stream    string
	Partition int32
	Records   []log.Record
	// MayPublish tells whether the producer holds the MQTT publish grant on a topic:
	// delivery to MQTT needs it, not only write on the stream. Nil allows every topic
	// (no user store).
	MayPublish func(topic string) bool
}
