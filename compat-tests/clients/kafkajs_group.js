// kafkajs group consumer driven by the consumer-group suite (groups_*_test.go); JSON
// lines as in compat_output.py.
//
// consume GROUP TOPIC N: subscribe in GROUP (fromBeginning where nothing is committed),
// read N records with the default auto-commit (after each batch), disconnect (which
// finishes the batch, commits and leaves the group).
'use strict';

const { Kafka, logLevel } = require('kafkajs');

const TIMEOUT_MS = 30000;

const hex = (b) => (b === null || b === undefined ? null : Buffer.from(b).toString('hex'));
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

// Headers come as an object (a repeated key as an array): the order across keys is that
// of their first occurrence, as in kafkajs_client.js.
function headers(h) {
  const out = [];
  for (const [k, v] of Object.entries(h || {})) {
    for (const one of Array.isArray(v) ? v : [v]) out.push([k, hex(one)]);
  }
  return out;
}

async function consume(bootstrap, group, topic, want) {
  const kafka = new Kafka({ clientId: 'compat-kafkajs-group', brokers: [bootstrap], logLevel: logLevel.ERROR });
  const consumer = kafka.consumer({ groupId: group, maxWaitTimeInMs: 500 });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  let got = 0;
  let finish;
  const finished = new Promise((resolve) => (finish = resolve));
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      emit({
        type: 'record',
        partition,
        offset: Number(message.offset),
        timestamp: Number(message.timestamp),
        key: hex(message.key),
        value: hex(message.value),
        headers: headers(message.headers),
      });
      if (++got >= want) finish();
    },
  });
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`read ${got} of ${want} records within ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
  });
  try {
    await Promise.race([finished, timeout]);
  } finally {
    clearTimeout(timer);
  }
  await consumer.disconnect();
  emit({ type: 'committed' });
}

async function main(argv) {
  const [bootstrap, mode, group, topic, want] = argv;
  if (mode !== 'consume' || !group || !topic || !want) {
    process.stderr.write('usage: kafkajs_group.js BOOTSTRAP consume GROUP TOPIC N\n');
    process.exit(2);
  }
  await consume(bootstrap, group, topic, Number(want));
}

main(process.argv.slice(2)).then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`kafkajs_group: ${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
  },
);
