#!/usr/bin/env bash
# Installs what the side-by-side benchmark starts or drives: the Mosquitto broker (Debian
# package), mosquitto_pub and kcat. A no-op once they are there.
set -euo pipefail
need=()
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_pub >/dev/null || need+=(mosquitto-clients)
command -v kcat >/dev/null || need+=(kcat)
if [ ${#need[@]} -gt 0 ]; then
	echo "installing ${need[*]}"
	SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
	# The package's service would hold port 1883 and a core; the benchmark starts its own.
	if command -v systemctl >/dev/null && systemctl is-active --quiet mosquitto 2>/dev/null; then
		$SUDO systemctl stop mosquitto || true
	fi
fi
