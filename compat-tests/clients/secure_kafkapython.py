"""kafka-python against a secured listener; JSON lines on stdout.

usage: secure_kafkapython.py BOOTSTRAP MECHANISM USER CAFILE metadata | read TOPIC N
The password comes from $MQS_PASSWORD. kafka-python 2.0.2 sends SaslHandshake v0 and
then bare SASL tokens, the pre-KIP-152 framing. read first describes TOPIC with the
admin client (a consumer only logs a topic it may not read, and waits), printing its
error if it has one, then assigns partition 0 at offset 0 and prints N records.
"""
import logging
import os
import sys

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError, for_code

from compat_output import emit, record

TIMEOUT_MS = 30000


def main():
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    if len(sys.argv) < 6:
        sys.exit("usage: secure_kafkapython.py BOOTSTRAP MECHANISM USER CAFILE metadata | read TOPIC N")
    bootstrap, mechanism, user, cafile, mode = sys.argv[1:6]
    security = dict(
        bootstrap_servers=bootstrap,
        security_protocol="SASL_SSL",
        sasl_mechanism=mechanism,
        sasl_plain_username=user,
        sasl_plain_password=os.environ["MQS_PASSWORD"],
        ssl_cafile=cafile,
        request_timeout_ms=TIMEOUT_MS + 5000,
        # The version probe (after TLS and SCRAM) gets the default 2 s otherwise: too
        # little on a loaded machine, and the client then finds no broker.
        api_version_auto_timeout_ms=TIMEOUT_MS,
    )
    try:
        if mode == "read":
            topic, n = sys.argv[6], int(sys.argv[7])
            admin = KafkaAdminClient(**security)
            for t in admin.describe_topics([topic]):
                if t["error_code"] != 0:
                    err = for_code(t["error_code"])
                    emit({"type": "error", "error": "topic %s: %s" % (t["topic"], err.__name__), "code": err.__name__})
                    sys.exit(1)
            admin.close()
        c = KafkaConsumer(group_id=None, enable_auto_commit=False, **security)
    except KafkaError as e:
        emit({"type": "error", "error": repr(e)})
        sys.exit(1)
    try:
        if mode == "metadata":
            emit({"type": "metadata", "topics": {t: len(c.partitions_for_topic(t) or []) for t in c.topics()}})
            return
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        c.seek(tp, 0)
        got = 0
        while got < n:
            batches = c.poll(timeout_ms=TIMEOUT_MS)
            if not batches:
                sys.exit("no record within %dms" % TIMEOUT_MS)
            for msgs in batches.values():
                for m in msgs:
                    record(m.partition, m.offset, m.timestamp, m.key, m.value, m.headers)
                    got += 1
    except KafkaError as e:
        emit({"type": "error", "error": repr(e), "code": type(e).__name__})
        sys.exit(1)
    finally:
        c.close()


main()
