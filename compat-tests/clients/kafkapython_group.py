"""kafka-python 2.0.2 group consumer driven by the consumer-group suite (groups_*_test.go).

api_version is left unset, as in kafkapython_client.py: the client probes the broker and
uses the group API versions of the broker version it guesses.

Modes (JSON lines, see compat_output.py):
  consume GROUP TOPIC N  subscribe in GROUP, read N records from the committed offsets
                         (the earliest where there are none), commit synchronously, close
                         (LeaveGroup).
  member GROUP TOPIC     join with a 6 s session timeout, print every assignment, read
                         and commit after each poll until killed.
"""
import sys
import time

from kafka import KafkaConsumer
from kafka.consumer.subscription_state import ConsumerRebalanceListener

from compat_output import emit, record

TIMEOUT_S = 30


class Listener(ConsumerRebalanceListener):
    def on_partitions_revoked(self, revoked):
        emit({"type": "revoked", "partitions": sorted(tp.partition for tp in revoked)})

    def on_partitions_assigned(self, assigned):
        emit({"type": "assigned", "partitions": sorted(tp.partition for tp in assigned)})


def consumer(bootstrap, group, topic):
    c = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        client_id="compat-kafkapython-group",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        fetch_max_wait_ms=500,
        # The version probe gets the default 2 s otherwise: too little on a loaded machine.
        api_version_auto_timeout_ms=30000,
    )
    c.subscribe([topic], listener=Listener())
    return c


def emit_batches(batches):
    n = 0
    for msgs in batches.values():
        for m in msgs:
            record(m.partition, m.offset, m.timestamp, m.key, m.value, m.headers)
            n += 1
    return n


def main(argv):
    if len(argv) < 5 or argv[2] not in ("consume", "member"):
        sys.stderr.write("usage: %s BOOTSTRAP consume GROUP TOPIC N | member GROUP TOPIC\n" % argv[0])
        sys.exit(2)
    bootstrap, mode, group, topic = argv[1:5]
    c = consumer(bootstrap, group, topic)
    if mode == "consume":
        want = int(argv[5])
        got = 0
        deadline = time.monotonic() + TIMEOUT_S
        while got < want:
            if time.monotonic() > deadline:
                raise SystemExit("read %d of %d records within %ss" % (got, want, TIMEOUT_S))
            got += emit_batches(c.poll(timeout_ms=1000))
        c.commit()
        emit({"type": "committed"})
        c.close(autocommit=False)
        return
    while True:
        batches = c.poll(timeout_ms=1000)
        if emit_batches(batches):
            c.commit()
            emit({"type": "committed"})


if __name__ == "__main__":
    main(sys.argv)
