// kafkajs driven by the compat suite: prints JSON lines (see compat_output.py).
//
// Modes: metadata; earliest TOPIC (a group consumer from the beginning, until every
// partition reaches its high watermark); time TOPIC MS (fetchTopicOffsetsByTimestamp,
// then seek to those offsets); latest TOPIC (a new group starts at the latest offset;
// "ready" once its first fetch completed, then the first new record).
'use strict';

const { Kafka, logLevel } = require('kafkajs');

const hex = (b) => (b === null || b === undefined ? null : Buffer.from(b).toString('hex'));
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

// kafkajs gives headers as an object (a repeated key becomes an array), so the order
// across different keys is that of their first occurrence.
function headers(h) {
  const out = [];
  for (const [k, v] of Object.entries(h || {})) {
    for (const one of Array.isArray(v) ? v : [v]) out.push([k, hex(one)]);
  }
  return out;
}

function record(partition, m, latest) {
  const obj = {
    type: 'record',
    partition,
    offset: Number(m.offset),
    timestamp: Number(m.timestamp),
    key: hex(m.key),
    value: hex(m.value),
    headers: headers(m.headers),
  };
  if (latest) obj.recv_ms = Date.now();
  emit(obj);
}

function groupId(mode) {
  return `compat-kafkajs-${mode}-${process.pid}-${Date.now()}`;
}

// replay consumes topic from starts {partition: offset} (or the beginning when starts is
// null) until each partition reaches its high watermark as of the start.
async function replay(kafka, admin, topic, starts) {
  const ends = {};
  for (const o of await admin.fetchTopicOffsets(topic)) ends[o.partition] = Number(o.high);
  const next = {};
  for (const p of Object.keys(ends)) next[p] = starts ? Number(starts[p]) : 0;
  const done = () => Object.keys(ends).every((p) => next[p] < 0 || next[p] >= ends[p]);
  if (done()) return;
  const consumer = kafka.consumer({ groupId: groupId('replay'), maxWaitTimeInMs: 1000 });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  let finish;
  const finished = new Promise((resolve) => (finish = resolve));
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      record(partition, message, false);
      next[partition] = Number(message.offset) + 1;
      if (done()) finish();
    },
  });
  if (starts) {
    for (const [p, o] of Object.entries(starts)) {
      // A partition with nothing at or after the time (-1, or its end) is sought to its
      // end, or fromBeginning would replay it.
      const at = Number(o) < 0 ? ends[p] : Number(o);
      consumer.seek({ topic, partition: Number(p), offset: String(at) });
    }
  }
  await finished;
  await consumer.disconnect();
}

async function latest(kafka, topic) {
  const consumer = kafka.consumer({ groupId: groupId('latest'), maxWaitTimeInMs: 3000 });
  let ready = false;
  consumer.on(consumer.events.FETCH, () => {
    if (!ready) {
      ready = true;
      emit({ type: 'ready' });
    }
  });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: false });
  let finish;
  const finished = new Promise((resolve) => (finish = resolve));
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      record(partition, message, true);
      finish();
    },
  });
  await finished;
  await consumer.disconnect();
}

async function main(argv) {
  const [bootstrap, mode, topic, ms] = argv;
  if (!bootstrap || !mode) {
    process.stderr.write('usage: kafkajs_client.js BOOTSTRAP metadata | earliest TOPIC | time TOPIC MS | latest TOPIC\n');
    process.exit(2);
  }
  const kafka = new Kafka({ clientId: 'compat-kafkajs', brokers: [bootstrap], logLevel: logLevel.ERROR });
  const admin = kafka.admin();
  await admin.connect();
  try {
    if (mode === 'metadata') {
      const md = await admin.fetchTopicMetadata();
      const topics = {};
      for (const t of md.topics) topics[t.name] = t.partitions.length;
      emit({ type: 'metadata', topics });
    } else if (mode === 'earliest') {
      await replay(kafka, admin, topic, null);
    } else if (mode === 'time') {
      const found = await admin.fetchTopicOffsetsByTimestamp(topic, Number(ms));
      const offsets = {};
      for (const o of found) offsets[o.partition] = Number(o.offset);
      emit({ type: 'offsets', offsets });
      await replay(kafka, admin, topic, offsets);
    } else if (mode === 'latest') {
      await latest(kafka, topic);
    } else {
      throw new Error(`unknown mode ${mode}`);
    }
  } finally {
    await admin.disconnect();
  }
}

main(process.argv.slice(2)).then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`kafkajs_client: ${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
  },
);
