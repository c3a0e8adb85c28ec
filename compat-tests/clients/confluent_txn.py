"""confluent-kafka-python (librdkafka) transactions, driven by kafka_txn_test.go.

Modes:
  produce BOOTSTRAP TOPIC TXID  commit c1 c2, abort a1 a2, commit c3 (each with an
                                mqtt.topic header TOPIC/VALUE); prints {"type": "done"}
  consume BOOTSTRAP TOPIC ISO   read partition 0 from the start to its end with
                                isolation.level ISO; prints {"type": "values", ...}
"""
import json
import sys

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

TIMEOUT = 30


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def produce(bootstrap, topic, txid):
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txid, "transaction.timeout.ms": 60000})
    p.init_transactions(TIMEOUT)
    for commit, values in ((True, ["c1", "c2"]), (False, ["a1", "a2"]), (True, ["c3"])):
        p.begin_transaction()
        for v in values:
            p.produce(topic, value=v.encode(), partition=0, headers=[("mqtt.topic", ("%s/%s" % (topic, v)).encode())])
        p.flush(TIMEOUT)
        if commit:
            p.commit_transaction(TIMEOUT)
        else:
            p.abort_transaction(TIMEOUT)
    emit({"type": "done"})


def consume(bootstrap, topic, iso):
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "compat-txn-" + iso,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": iso,
            "fetch.wait.max.ms": 500,
        }
    )
    c.assign([TopicPartition(topic, 0, 0)])
    values = []
    while True:
        msg = c.poll(TIMEOUT)
        if msg is None:
            raise SystemExit("no end of partition within %ds" % TIMEOUT)
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                break
            raise SystemExit("consume: %s" % msg.error())
        values.append(msg.value().decode())
    c.close()
    emit({"type": "values", "values": values})


def main():
    if len(sys.argv) != 5:
        sys.stderr.write(__doc__)
        sys.exit(2)
    bootstrap, mode, topic, arg = sys.argv[1:]
    if mode == "produce":
        produce(bootstrap, topic, arg)
    elif mode == "consume":
        consume(bootstrap, topic, arg)
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
