"""confluent-kafka-python (librdkafka) driven by the compat suite; see compat_output.py.

Modes: metadata; earliest TOPIC (replay every partition to its high watermark);
time TOPIC MS (offsets_for_times, then replay from them); latest TOPIC (assign at the
end, print "ready" once the first fetch reached the end, print the first new record).
"""
import sys

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, TopicPartition

from compat_output import emit, record, usage

TIMEOUT = 30


def consumer(bootstrap):
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "compat-confluent",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 3000,
        }
    )


def partitions(c, topic):
    md = c.list_topics(topic, timeout=TIMEOUT)
    t = md.topics[topic]
    if t.error is not None:
        raise SystemExit("topic %s: %s" % (topic, t.error))
    return sorted(t.partitions)


def emit_msg(msg, latest=False):
    _, ts = msg.timestamp()
    record(msg.partition(), msg.offset(), ts, msg.key(), msg.value(), msg.headers(), latest)


def replay(c, topic, starts):
    """Consume from starts {partition: offset} until each partition reaches its high watermark."""
    ends = {}
    for p in starts:
        _, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT)
        ends[p] = high
    todo = {p: o for p, o in starts.items() if o != OFFSET_END and (o < 0 or o < ends[p])}
    nxt = {p: (0 if o < 0 else o) for p, o in todo.items()}
    c.assign([TopicPartition(topic, p, o) for p, o in todo.items()])
    while any(nxt[p] < ends[p] for p in todo):
        msg = c.poll(TIMEOUT)
        if msg is None:
            raise SystemExit("no record within %ss; at %s of %s" % (TIMEOUT, nxt, ends))
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                continue
            raise SystemExit("consume: %s" % msg.error())
        emit_msg(msg)
        nxt[msg.partition()] = msg.offset() + 1


def main(argv):
    if len(argv) < 3:
        usage(argv[0])
    bootstrap, mode = argv[1], argv[2]
    c = consumer(bootstrap)
    try:
        if mode == "metadata":
            md = c.list_topics(timeout=TIMEOUT)
            emit({"type": "metadata", "topics": {n: len(t.partitions) for n, t in md.topics.items()}})
        elif mode == "earliest":
            topic = argv[3]
            replay(c, topic, {p: OFFSET_BEGINNING for p in partitions(c, topic)})
        elif mode == "time":
            topic, ms = argv[3], int(argv[4])
            found = c.offsets_for_times(
                [TopicPartition(topic, p, ms) for p in partitions(c, topic)], timeout=TIMEOUT
            )
            for tp in found:
                if tp.error is not None:
                    raise SystemExit("offsets_for_times %s/%d: %s" % (topic, tp.partition, tp.error))
            emit({"type": "offsets", "offsets": {str(tp.partition): tp.offset for tp in found}})
            replay(c, topic, {tp.partition: tp.offset for tp in found})
        elif mode == "latest":
            topic = argv[3]
            c.assign([TopicPartition(topic, 0, OFFSET_END)])
            ready = False
            while True:
                msg = c.poll(TIMEOUT)
                if msg is None:
                    raise SystemExit("nothing within %ss (ready=%s)" % (TIMEOUT, ready))
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        if not ready:
                            ready = True
                            emit({"type": "ready"})
                        continue
                    raise SystemExit("consume: %s" % msg.error())
                emit_msg(msg, latest=True)
                break
        else:
            usage(argv[0])
    finally:
        c.close()


if __name__ == "__main__":
    main(sys.argv)
