#!/usr/bin/env bash
# Installs the third-party clients the compat tests drive; a no-op once they are there.
set -euo pipefail
need=()
command -v kcat >/dev/null || need+=(kcat)
command -v mosquitto_pub >/dev/null || need+=(mosquitto-clients)
python3 -c 'import kafka' 2>/dev/null || need+=(python3-kafka)
python3 -c 'import confluent_kafka' 2>/dev/null || need+=(python3-confluent-kafka)
python3 -c 'import paho.mqtt' 2>/dev/null || need+=(python3-paho-mqtt)
if [ ${#need[@]} -gt 0 ]; then
	echo "installing ${need[*]}"
	SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
