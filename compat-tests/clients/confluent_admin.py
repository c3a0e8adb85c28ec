"""confluent-kafka-python AdminClient against the Kafka admin APIs; one JSON line per step.

usage: confluent_admin.py BOOTSTRAP TOPIC
Steps: validate-only create, create (3 partitions, configs), create again, describe
configs, alter configs, describe again, create partitions (5, then 2), delete topics.
(confluent-kafka 1.7 has no delete_records; the kadm and kafka-python tests cover it.)
"""
import sys

from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

from compat_output import emit

TIMEOUT = 30


def outcome(futures, key):
    try:
        futures[key].result(timeout=TIMEOUT)
        return "ok"
    except Exception as e:  # KafkaException carries a KafkaError
        err = e.args[0] if e.args else e
        return err.name() if hasattr(err, "name") else str(err)


def describe(a, topic):
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = a.describe_configs([res])[res].result(timeout=TIMEOUT)
    return {k: v.value for k, v in configs.items()}, {k: v.source for k, v in configs.items()}


def main():
    if len(sys.argv) != 3:
        sys.stderr.write("usage: confluent_admin.py BOOTSTRAP TOPIC\n")
        sys.exit(2)
    bootstrap, topic = sys.argv[1], sys.argv[2]
    a = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(topic, num_partitions=3, replication_factor=1,
                   config={"retention.ms": "3600000", "mqtt.topic.filter": "py/+/conf"})
    emit({"step": "validate", "result": outcome(a.create_topics([new], validate_only=True), topic)})
    md = a.list_topics(timeout=TIMEOUT)
    emit({"step": "listed-after-validate", "result": topic in md.topics})
    emit({"step": "create", "result": outcome(a.create_topics([new]), topic)})
    emit({"step": "create-again", "result": outcome(a.create_topics([new]), topic)})
    bad = NewTopic(topic + "-bad", num_partitions=1, replication_factor=1, config={"segment.bytes": "1"})
    emit({"step": "create-bad-config", "result": outcome(a.create_topics([bad]), topic + "-bad")})
    values, sources = describe(a, topic)
    emit({"step": "describe", "configs": values, "sources": {k: int(v) for k, v in sources.items()}})
    res = ConfigResource(ConfigResource.Type.TOPIC, topic,
                         set_config={"retention.ms": "7200000", "retention.bytes": "1048576"})
    emit({"step": "alter", "result": outcome(a.alter_configs([res]), res)})
    values, _ = describe(a, topic)
    emit({"step": "describe-altered", "configs": values})
    emit({"step": "grow", "result": outcome(a.create_partitions([NewPartitions(topic, 5)]), topic)})
    emit({"step": "shrink", "result": outcome(a.create_partitions([NewPartitions(topic, 2)]), topic)})
    md = a.list_topics(topic, timeout=TIMEOUT)
    emit({"step": "partitions", "count": len(md.topics[topic].partitions)})
    emit({"step": "delete", "result": outcome(a.delete_topics([topic]), topic)})
    emit({"step": "delete-again", "result": outcome(a.delete_topics([topic]), topic)})


if __name__ == "__main__":
    main()
