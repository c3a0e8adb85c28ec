"""paho-mqtt (Python) over WebSocket, driven by the compat suite.

Usage: paho_ws.py HOST PORT CAFILE USER PASSWORD TOPIC PAYLOAD

Connects over wss:// (MQTT 3.1.1) with username and password, subscribes to TOPIC,
publishes PAYLOAD to it at QoS 1 and waits for it to come back. Prints one JSON line:
{"connack": rc} when the connection is refused, else {"connack": 0, "suback": [...],
"received": "<payload>"}.
"""
import json
import queue
import sys

import paho.mqtt.client as mqtt

host, port, cafile, user, password, topic, payload = sys.argv[1:8]
port = int(port)
events = queue.Queue()

client = mqtt.Client(client_id="paho-ws", transport="websockets", protocol=mqtt.MQTTv311)
client.ws_set_options(path="/mqtt")
client.tls_set(ca_certs=cafile)
client.username_pw_set(user, password)
client.on_connect = lambda c, u, flags, rc: events.put(("connack", rc))
client.on_subscribe = lambda c, u, mid, granted: events.put(("suback", list(granted)))
client.on_message = lambda c, u, m: events.put(("message", m.payload.decode()))
client.on_disconnect = lambda c, u, rc: events.put(("disconnect", rc))


def wait(kind, timeout=60):
    while True:
        got, value = events.get(timeout=timeout)
        if got == kind:
            return value
        if got == "disconnect" and kind != "disconnect":
            raise SystemExit(json.dumps({"error": "disconnected while waiting for " + kind, "rc": value}))


client.connect(host, port, keepalive=30)
client.loop_start()
try:
    rc = wait("connack")
    if rc != 0:
        print(json.dumps({"connack": rc}))
        sys.exit(0)
    client.subscribe(topic, qos=1)
    granted = wait("suback")
    client.publish(topic, payload, qos=1)
    received = wait("message")
    print(json.dumps({"connack": 0, "suback": granted, "received": received}))
finally:
    client.disconnect()
    client.loop_stop()
