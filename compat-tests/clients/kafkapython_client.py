"""kafka-python driven by the compat suite; see compat_output.py.

api_version is left unset on purpose: kafka-python 2.0.2 then probes the broker with
ApiVersions v0 (pipelined with Metadata v0), guesses a broker version and uses fixed old
request versions (Fetch v4, ListOffsets v1, Metadata v1).
"""
import sys

from kafka import KafkaConsumer, TopicPartition

from compat_output import emit, record, usage

TIMEOUT_MS = 30000


def consumer(bootstrap):
    return KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=3000,
        request_timeout_ms=TIMEOUT_MS + 5000,
        # The version probe gets the default 2 s otherwise: too little on a loaded machine.
        api_version_auto_timeout_ms=TIMEOUT_MS,
    )


def partitions(c, topic):
    ps = c.partitions_for_topic(topic)
    if not ps:
        raise SystemExit("topic %s: no partitions" % topic)
    return [TopicPartition(topic, p) for p in sorted(ps)]


def emit_msg(m, latest=False):
    record(m.partition, m.offset, m.timestamp, m.key, m.value, m.headers, latest)


def replay(c, tps, starts):
    """Consume from starts {tp: offset} until each partition reaches its high watermark."""
    ends = c.end_offsets(tps)
    todo = [tp for tp in tps if starts[tp] is not None and starts[tp] < ends[tp]]
    c.assign(todo)
    nxt = {}
    for tp in todo:
        c.seek(tp, starts[tp])
        nxt[tp] = starts[tp]
    while any(nxt[tp] < ends[tp] for tp in todo):
        batches = c.poll(timeout_ms=TIMEOUT_MS)
        if not batches:
            raise SystemExit("no record within %dms; at %s of %s" % (TIMEOUT_MS, nxt, ends))
        for tp, msgs in batches.items():
            for m in msgs:
                emit_msg(m)
                nxt[tp] = m.offset + 1


def main(argv):
    if len(argv) < 3:
        usage(argv[0])
    bootstrap, mode = argv[1], argv[2]
    c = consumer(bootstrap)
    try:
        if mode == "metadata":
            emit({"type": "metadata", "topics": {t: len(c.partitions_for_topic(t) or ()) for t in c.topics()}})
        elif mode == "earliest":
            tps = partitions(c, argv[3])
            replay(c, tps, c.beginning_offsets(tps))
        elif mode == "time":
            tps = partitions(c, argv[3])
            ms = int(argv[4])
            found = c.offsets_for_times({tp: ms for tp in tps})
            starts = {tp: (None if found[tp] is None else found[tp].offset) for tp in tps}
            emit({"type": "offsets", "offsets": {str(tp.partition): (-1 if o is None else o) for tp, o in starts.items()}})
            replay(c, tps, starts)
        elif mode == "latest":
            tp = TopicPartition(argv[3], 0)
            c.assign([tp])
            c.seek_to_end(tp)
            c.position(tp)  # resolves the latest offset (ListOffsets) before returning
            emit({"type": "ready"})
            while True:
                batches = c.poll(timeout_ms=TIMEOUT_MS, max_records=1)
                if not batches:
                    raise SystemExit("no record within %dms" % TIMEOUT_MS)
                for msgs in batches.values():
                    emit_msg(msgs[0], latest=True)
                    return
        else:
            usage(argv[0])
    finally:
        c.close()


if __name__ == "__main__":
    main(sys.argv)
