"""kafka-python KafkaAdminClient against the Kafka admin APIs; one JSON line per step.

usage: kafkapython_admin.py BOOTSTRAP TOPIC
Steps: create (3 partitions, configs), create again, describe configs, alter configs,
create partitions, produce, delete records, delete topics. kafka-python 2.0.2 has no
delete_records: that step sends DeleteRecords v0, declared with kafka-python's own
protocol types, over the admin client's connection.
"""
import sys

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic
from kafka.errors import for_code
from kafka.protocol.api import Request, Response
from kafka.protocol.types import Array, Int16, Int32, Int64, Schema, String

from compat_output import emit


class DeleteRecordsResponse_v0(Response):
    API_KEY = 21
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("topics", Array(("name", String("utf-8")),
                         ("partitions", Array(("partition_index", Int32), ("low_watermark", Int64), ("error_code", Int16))))),
    )


class DeleteRecordsRequest_v0(Request):
    API_KEY = 21
    API_VERSION = 0
    RESPONSE_TYPE = DeleteRecordsResponse_v0
    SCHEMA = Schema(
        ("topics", Array(("name", String("utf-8")), ("partitions", Array(("partition_index", Int32), ("offset", Int64))))),
        ("timeout_ms", Int32),
    )


def error_name(code):
    return "ok" if code == 0 else for_code(code).__name__


def attempt(fn):
    try:
        fn()
        return "ok"
    except Exception as e:
        return type(e).__name__


def describe(a, topic):
    resp = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])[0]
    res = resp.resources[0]
    # (error_code, error_message, resource_type, resource_name, config_entries)
    return error_name(res[0]), {e[0]: e[1] for e in res[4]}


def main():
    if len(sys.argv) != 3:
        sys.stderr.write("usage: kafkapython_admin.py BOOTSTRAP TOPIC\n")
        sys.exit(2)
    bootstrap, topic = sys.argv[1], sys.argv[2]
    a = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000, api_version_auto_timeout_ms=30000)
    new = NewTopic(topic, 3, 1, topic_configs={"retention.bytes": "2097152", "mqtt.topic.filter": "py/+/kp", "mqtt.key": "topic"})
    emit({"step": "create", "result": attempt(lambda: a.create_topics([new]))})
    emit({"step": "create-again", "result": attempt(lambda: a.create_topics([new]))})
    emit({"step": "create-bad-name", "result": attempt(lambda: a.create_topics([NewTopic("bad name!", 1, 1)]))})
    code, configs = describe(a, topic)
    emit({"step": "describe", "error": code, "configs": configs})
    resp = a.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "86400000", "cleanup.policy": "compact"})])
    emit({"step": "alter", "result": error_name(resp.resources[0][0])})
    code, configs = describe(a, topic)
    emit({"step": "describe-altered", "error": code, "configs": configs})
    emit({"step": "grow", "result": attempt(lambda: a.create_partitions({topic: NewPartitions(4)}))})
    emit({"step": "shrink", "result": attempt(lambda: a.create_partitions({topic: NewPartitions(1)}))})

    p = KafkaProducer(bootstrap_servers=bootstrap, api_version_auto_timeout_ms=30000)
    for i in range(10):
        p.send(topic, key=b"k%d" % i, value=b"v%d" % i, partition=0)
    p.flush(30)
    p.close()

    req = DeleteRecordsRequest_v0(topics=[(topic, [(0, 6)])], timeout_ms=30000)
    future = a._send_request_to_node(a._client.least_loaded_node(), req)
    a._wait_for_futures([future])
    parts = future.value.topics[0][1]
    emit({"step": "delete-records", "low_watermark": parts[0][1], "result": error_name(parts[0][2])})

    resp = a.delete_topics([topic])
    emit({"step": "delete", "result": error_name(resp.topic_error_codes[0][1])})
    a.close()


if __name__ == "__main__":
    main()
