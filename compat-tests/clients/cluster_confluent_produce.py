"""confluent-kafka-python (librdkafka) producing across a leader change (issue 13).

Usage: cluster_confluent_produce.py BOOTSTRAP TOPIC PARTITION PREFIX
Produces PREFIX-<n> to one partition, one message every 20 ms, printing "started" once
the first is acknowledged. It stops producing when stdin closes, flushes, and prints
one line per acknowledged message: "acked PREFIX-<n> <offset>", then "done <errors>".
librdkafka follows NOT_LEADER_OR_FOLLOWER to the new leader by itself. The producer is
idempotent (librdkafka's default since 2.0, Kafka clients' since 3.0): a batch whose answer
was lost with the killed leader is retried and must not be stored twice. (Without
idempotence such a retry is stored twice, in Kafka too: at least once.)
"""
import os
import sys
import threading
import time

from confluent_kafka import Producer


def main():
    if len(sys.argv) != 5:
        raise SystemExit(__doc__)
    bootstrap, topic, partition, prefix = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    p = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "message.timeout.ms": 60000,
        "retry.backoff.ms": 50,
        "topic.metadata.refresh.interval.ms": 1000,
        "linger.ms": 0,
    })
    acked = []
    errors = [0]
    started = threading.Event()

    def report(err, msg):
        if err is not None:
            errors[0] += 1
            return
        acked.append((msg.value().decode(), msg.offset()))
        if not started.is_set():
            started.set()
            print("started", flush=True)

    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    n = 0
    while not stop.is_set():
        p.produce(topic, value=("%s-%d" % (prefix, n)).encode(), partition=partition, on_delivery=report)
        n += 1
        p.poll(0.02)
    p.flush(90)
    for v, off in acked:
        print("acked %s %d" % (v, off))
    print("done %d" % errors[0], flush=True)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
