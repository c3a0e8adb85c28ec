"""confluent-kafka-python (librdkafka) against a secured listener; JSON lines on stdout.

usage: secure_confluent.py BOOTSTRAP MECHANISM USER CAFILE metadata | read TOPIC N
The password comes from $MQS_PASSWORD (never on the command line). read subscribes with
a group (app-confluent-PID) from the earliest offset and prints N records, or the first
error. A refused login ends it at once: librdkafka reports it through error_cb only and
would retry until the timeout.
"""
import os
import sys
import time

from confluent_kafka import Consumer, KafkaError

from compat_output import emit, record

TIMEOUT = 30


refused = []


def on_error(err):
    emit({"type": "error", "error": str(err)})
    if err.code() == KafkaError._AUTHENTICATION:
        refused.append(err)


def main():
    if len(sys.argv) < 6:
        sys.exit("usage: secure_confluent.py BOOTSTRAP MECHANISM USER CAFILE metadata | read TOPIC N")
    bootstrap, mechanism, user, cafile, mode = sys.argv[1:6]
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "security.protocol": "SASL_SSL",
            "sasl.mechanisms": mechanism,
            "sasl.username": user,
            "sasl.password": os.environ["MQS_PASSWORD"],
            "ssl.ca.location": cafile,
            "group.id": "app-confluent-%d" % os.getpid(),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "error_cb": on_error,
        }
    )
    try:
        if mode == "metadata":
            md = c.list_topics(timeout=TIMEOUT)
            emit({"type": "metadata", "topics": {t: len(m.partitions) for t, m in md.topics.items() if m.error is None}})
            return
        topic, n = sys.argv[6], int(sys.argv[7])
        c.subscribe([topic])
        got = 0
        deadline = time.monotonic() + TIMEOUT
        while got < n:
            msg = c.poll(1)
            if refused:
                sys.exit("authentication failed: %s" % refused[0])
            if msg is None:
                if time.monotonic() > deadline:
                    sys.exit("no record within %ss" % TIMEOUT)
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                emit({"type": "error", "error": msg.error().str(), "code": msg.error().name()})
                sys.exit(1)
            _, ts = msg.timestamp()
            record(msg.partition(), msg.offset(), ts, msg.key(), msg.value(), msg.headers())
            got += 1
            deadline = time.monotonic() + TIMEOUT
    finally:
        c.close()


main()
