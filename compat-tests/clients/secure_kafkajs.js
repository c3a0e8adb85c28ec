// kafkajs against a secured listener; JSON lines on stdout.
//
// usage: secure_kafkajs.js BOOTSTRAP MECHANISM USER CAFILE metadata | read TOPIC N
// The password comes from $MQS_PASSWORD. read runs a group consumer (group app-kafkajs-…)
// from the beginning until N records, or prints the first error.
'use strict';

const fs = require('fs');
const { Kafka, logLevel } = require('kafkajs');

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const hex = (b) => (b === null || b === undefined ? null : Buffer.from(b).toString('hex'));

async function main() {
  const [bootstrap, mechanism, user, cafile, mode, topic, n] = process.argv.slice(2);
  const kafka = new Kafka({
    clientId: 'compat-kafkajs-secure',
    brokers: [bootstrap],
    ssl: { ca: [fs.readFileSync(cafile, 'utf-8')] },
    sasl: { mechanism: mechanism.toLowerCase(), username: user, password: process.env.MQS_PASSWORD },
    logLevel: logLevel.NOTHING,
    retry: { retries: 2 },
  });
  if (mode === 'metadata') {
    const admin = kafka.admin();
    await admin.connect();
    const md = await admin.fetchTopicMetadata();
    const topics = {};
    for (const t of md.topics) topics[t.name] = t.partitions.length;
    emit({ type: 'metadata', topics });
    await admin.disconnect();
    return;
  }
  const want = Number(n);
  const consumer = kafka.consumer({ groupId: `app-kafkajs-${process.pid}`, maxWaitTimeInMs: 1000 });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  let got = 0;
  await new Promise((resolve, reject) => {
    consumer.on(consumer.events.CRASH, (e) => reject(e.payload.error));
    consumer
      .run({
        eachMessage: async ({ partition, message }) => {
          emit({ type: 'record', partition, offset: Number(message.offset), timestamp: Number(message.timestamp), key: hex(message.key), value: hex(message.value), headers: [] });
          got++;
          if (got >= want) resolve();
        },
      })
      .catch(reject);
  });
  await consumer.disconnect();
}

main().catch((e) => {
  emit({ type: 'error', error: String(e && e.message), code: e && e.type });
  process.exit(1);
});
