#!/bin/bash
# rss-cell.sh: one ingest cell as `make bench` runs it (QOS, PUBLISHERS, 20 in flight,
# SIZE-byte payloads, for DURATION, the bench's 4-shard stream) against BIN, and where
# the memory was at the broker's RSS peak: VmHWM, the Go runtime's memstats, the storage
# engine's C memory (block cache, memtables) and the largest mappings (the Go heap, glibc
# arenas, the binary). Prints broker CPU ms per 1,000 messages. With a `-tags pprof`
# build and PROF=1, a heap profile taken at the peak is kept in the printed directory.
#   usage: scripts/rss-cell.sh BIN [QOS=1] [PUBLISHERS=256] [DURATION=8s] [config lines...]
#   env: SIZE (100), SRVENV (extra environment for the server, e.g. GOGC=50), KEEP=1
set -euo pipefail
BIN=$(readlink -f "${1:?usage: rss-cell.sh BIN [QOS] [PUBLISHERS] [DURATION] [config lines]}"); QOS=${2:-1}; PUBS=${3:-256}; DUR=${4:-8s}; shift $(( $# < 4 ? $# : 4 ))
W=$(mktemp -d)
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
MQ=$(port); KF=$(port); HT=$(port); PP=$(port)
{ echo "streams:"; echo '  - {name: ingest, filter: "bench/#", shards: 4, key: clientid}'; for l in "$@"; do echo "$l"; done; } > "$W/config.yaml"
# shellcheck disable=SC2086
env ${SRVENV:-} MQSTREAMS_PPROF=127.0.0.1:$PP "$BIN" serve --config "$W/config.yaml" --data-dir "$W/data" --mqtt-addr 127.0.0.1:$MQ --kafka-addr 127.0.0.1:$KF --http-addr 127.0.0.1:$HT --log-level warn > "$W/server.log" 2>&1 &
SRV=$!
trap 'kill $SRV 2>/dev/null; wait $SRV 2>/dev/null; if [ -z "${KEEP:-}" ]; then rm -rf "$W"; else rm -rf "$W/data"; fi' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$HT/readyz" >/dev/null && break; sleep 0.1; done
idle=$(awk '/VmRSS/{print $2}' /proc/$SRV/status)
cpu() { awk '{print $14+$15}' /proc/$SRV/stat; }
maps() { # the largest mappings by resident size
  awk '/^[0-9a-f]+-[0-9a-f]+ /{split($1,a,"-"); name=$6; addr=a[1]} /^Rss:/{print $2, addr, name}' /proc/$SRV/smaps | sort -rn | head -8 |
    awk '{printf "  %7.1f MiB %s %s\n", $1/1024, $2, $3}'; }
c0=$(cpu); load=$(cut -d' ' -f1-3 /proc/loadavg)
"$BIN" bench mqtt --addr 127.0.0.1:$MQ --qos "$QOS" -c "$PUBS" -s "${SIZE:-100}" -d "$DUR" --inflight 20 > "$W/gen.out" 2>/dev/null &
GEN=$!
peak=0; snap=0
while kill -0 $GEN 2>/dev/null; do
  r=$(awk '/VmRSS/{print $2}' /proc/$SRV/status)
  if [ "$r" -gt "$peak" ]; then peak=$r
    if [ "$r" -gt $((snap + 4096)) ]; then snap=$r # a new peak, 4 MiB above the last snapshot
      curl -s "http://127.0.0.1:$HT/metrics" > "$W/metrics.peak"; maps > "$W/maps.peak"
      if [ -n "${PROF:-}" ]; then curl -s "http://127.0.0.1:$PP/debug/pprof/heap" > "$W/heap.peak" || true; fi
    fi
  fi
  sleep 0.1
done
c1=$(cpu); hwm=$(awk '/VmHWM/{print $2}' /proc/$SRV/status)
msgs=$(grep -o '[0-9]* messages' "$W/gen.out" | head -1 | cut -d' ' -f1)
echo "load $load; QoS $QOS, $PUBS publishers, ${SIZE:-100} B, $DUR; config: ${*:-default}; env: ${SRVENV:-none}"
echo "RSS idle $((idle/1024)) MiB, peak (VmHWM) $((hwm/1024)) MiB = $((hwm*1024/1000000)) MB; broker CPU $(echo "($c1-$c0)/100" | bc -l | xargs printf %.1f) s = $(echo "($c1-$c0)*10000/${msgs:-1}" | bc -l | xargs printf %.2f) ms per 1,000 messages"
head -2 "$W/gen.out" | tr '\n' ' '; echo
echo "at the peak:"
grep -E '^go_memstats_(heap_(inuse|idle|released)|next_gc|sys|stack_inuse)_bytes|^mqstreams_storage_(block_cache|memtable)_bytes' "$W/metrics.peak" | awk '{printf "  %s %.1f MiB\n", $1, $2/1048576}'
cat "$W/maps.peak"
[ -n "${KEEP:-}" ] && echo "kept: $W"
exit 0
