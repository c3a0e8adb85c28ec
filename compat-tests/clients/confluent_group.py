"""confluent-kafka-python (librdkafka) group consumer driven by the consumer-group suite
(groups_*_test.go); JSON lines as in compat_output.py.

consume GROUP TOPIC N: subscribe in GROUP, read N records from the committed offsets (the
earliest where there are none), commit synchronously, close (LeaveGroup).
"""
import sys
import time

from confluent_kafka import Consumer

from compat_output import emit, record

TIMEOUT_S = 30


def main(argv):
    if len(argv) != 6 or argv[2] != "consume":
        sys.stderr.write("usage: %s BOOTSTRAP consume GROUP TOPIC N\n" % argv[0])
        sys.exit(2)
    bootstrap, _, group, topic, want = argv[1:6]
    want = int(want)
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": "compat-confluent-group",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 500,
        }
    )
    c.subscribe([topic])
    got = 0
    deadline = time.monotonic() + TIMEOUT_S
    while got < want:
        if time.monotonic() > deadline:
            raise SystemExit("read %d of %d records within %ss" % (got, want, TIMEOUT_S))
        msg = c.poll(1.0)
        if msg is None:
            continue
        if msg.error():
            raise SystemExit("consume: %s" % msg.error())
        _, ts = msg.timestamp()
        record(msg.partition(), msg.offset(), ts, msg.key(), msg.value(), msg.headers())
        got += 1
    c.commit(asynchronous=False)
    emit({"type": "committed"})
    c.close()


if __name__ == "__main__":
    main(sys.argv)
