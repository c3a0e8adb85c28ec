#!/usr/bin/env bash
# Installs the third-party clients the compat tests drive; a no-op once they are there.
# Python libraries come from Debian packages, so they are checked (and later run) with
# the Debian interpreter, not whatever python3 a version manager puts first on PATH;
# MQSTREAMS_PYTHON overrides it (the harness's Python() helper reads the same variable).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${MQSTREAMS_PYTHON:-/usr/bin/python3}
[ -x "$PYTHON" ] || PYTHON=python3

need=()
command -v kcat >/dev/null || need+=(kcat)
command -v mosquitto_pub >/dev/null || need+=(mosquitto-clients)
"$PYTHON" -c 'import kafka' 2>/dev/null || need+=(python3-kafka)
"$PYTHON" -c 'import confluent_kafka' 2>/dev/null || need+=(python3-confluent-kafka)
"$PYTHON" -c 'import paho.mqtt' 2>/dev/null || need+=(python3-paho-mqtt)
# kafka-python decompresses lz4 and zstd record batches (stored compressed streams) with these.
"$PYTHON" -c 'import lz4.frame' 2>/dev/null || need+=(python3-lz4)
"$PYTHON" -c 'import zstandard' 2>/dev/null || need+=(python3-zstandard)
if [ -f package.json ]; then
	command -v node >/dev/null || need+=(nodejs)
	command -v npm >/dev/null || need+=(npm)
fi
if [ ${#need[@]} -gt 0 ]; then
	echo "installing ${need[*]}"
	SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Node clients (kafkajs, …) are declared in compat-tests/package.json when a suite needs them.
if [ -f package.json ] && { [ ! -d node_modules ] || [ package.json -nt node_modules ]; }; then
	echo "installing npm modules"
	if [ -f package-lock.json ]; then npm ci --no-audit --no-fund --silent; else npm install --no-audit --no-fund --silent; fi
	touch node_modules
fi
