#!/usr/bin/env bash
# run-cluster.sh starts three mqstreams nodes on loopback as one cluster (issue 13), for
# trying it out: Kafka 9092/9093/9094, MQTT 1883/1884/1885, HTTP 8080/8081/8082, node
# links on 7001/7002/7003, data under ./data-cluster/node{1,2,3}. Ctrl-C stops all three.
# Usage: scripts/run-cluster.sh [path/to/mqstreams]   (default bin/mqstreams)
set -eu

bin=${1:-bin/mqstreams}
root=${MQSTREAMS_CLUSTER_DIR:-./data-cluster}
[ -x "$bin" ] || { echo "run-cluster: $bin not found (make build)" >&2; exit 1; }

pids=""
stop() {
	trap - INT TERM
	echo "run-cluster: stopping nodes" >&2
	for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
	for p in $pids; do wait "$p" 2>/dev/null || true; done
	exit 0
}
trap stop INT TERM

for n in 1 2 3; do
	dir="$root/node$n"
	mkdir -p "$dir"
	cat >"$root/node$n.yaml" <<YAML
# Written by scripts/run-cluster.sh on every start; edit the script, not this file.
cluster:
  node_id: $n
  raft_addr: 127.0.0.1:700$n
  peers:
    - {id: 1, raft_addr: 127.0.0.1:7001}
    - {id: 2, raft_addr: 127.0.0.1:7002}
    - {id: 3, raft_addr: 127.0.0.1:7003}
YAML
	"$bin" serve --config "$root/node$n.yaml" --data-dir "$dir" \
		--mqtt-addr "127.0.0.1:188$((n + 2))" --kafka-addr "127.0.0.1:909$((n + 1))" \
		--http-addr "127.0.0.1:808$((n - 1))" &
	pids="$pids $!"
done
echo "run-cluster: nodes 1-3 up (pids$pids); Kafka 127.0.0.1:9092,9093,9094; MQTT :1883-1885; HTTP :8080-8082; Ctrl-C stops all" >&2

# Any node exiting on its own stops the others: a half cluster is not what was asked
# for. A signal interrupts the wait and runs stop.
set +e
wait -n
echo "run-cluster: a node exited (or Ctrl-C): stopping all" >&2
stop
