"""JSON-lines output shared by the Python client scripts (read by kafka_scripts_test.go)."""
import json
import sys
import time


def _hex(b):
    return None if b is None else bytes(b).hex()


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def record(partition, offset, timestamp, key, value, headers, latest=False):
    obj = {
        "type": "record",
        "partition": partition,
        "offset": offset,
        "timestamp": timestamp,
        "key": _hex(key),
        "value": _hex(value),
        "headers": [[k, _hex(v)] for k, v in (headers or [])],
    }
    if latest:
        obj["recv_ms"] = int(time.time() * 1000)
    emit(obj)


def usage(name):
    sys.stderr.write(
        "usage: %s BOOTSTRAP metadata | earliest TOPIC | time TOPIC MS | latest TOPIC\n" % name
    )
    sys.exit(2)
