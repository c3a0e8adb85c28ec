// mqtt.js (the library browser dashboards use) over WebSocket, driven by the compat suite.
//
// Usage: node mqttjs_ws.js URL CAFILE USER PASSWORD TOPIC PAYLOAD
//
// Connects with MQTT 5 (wss:// URL: the CA file verifies the server), subscribes to
// TOPIC, publishes PAYLOAD to it at QoS 1 and waits for it to come back. Prints one
// JSON line: {"connack": code} when refused, else {"connack": 0, "suback": [...],
// "received": "<payload>"}.
'use strict';

const fs = require('fs');
const mqtt = require('mqtt');

const [url, cafile, username, password, topic, payload] = process.argv.slice(2);
const done = (obj, code = 0) => {
  process.stdout.write(JSON.stringify(obj) + '\n');
  process.exit(code);
};
setTimeout(() => done({ error: 'timeout' }, 1), 60000).unref();

const client = mqtt.connect(url, {
  protocolVersion: 5,
  clientId: 'mqttjs-ws',
  username,
  password,
  ca: fs.readFileSync(cafile),
  reconnectPeriod: 0,
  connectTimeout: 30000,
});
let connected = false;
// Before CONNACK an error is the refusal (err.code is its reason code); after it, the
// run's outcome is already decided by what arrives.
client.on('error', (err) => {
  if (!connected) done({ connack: err.code === undefined ? -1 : err.code, error: String(err) });
});
client.on('connect', () => {
  connected = true;
  client.subscribe(topic, { qos: 1 }, (err, granted) => {
    if (err) done({ error: String(err) }, 1);
    client.on('message', (_t, msg) => {
      done({ connack: 0, suback: granted.map((g) => g.qos), received: msg.toString() });
    });
    client.publish(topic, payload, { qos: 1 });
  });
});
