#!/bin/bash
# flood-rss.sh: issue 10's "publisher 10x faster than the disk" run. mqstreams runs with
# its writes throttled to DISK_BPS (a cgroup v1 blkio group; needs root) while one QoS 0
# publisher floods FLOOD_RATE msg/s of SIZE bytes and QOS1_PUBS QoS 1 publishers push as
# fast as they are acknowledged, for DURATION. Prints the broker's peak RSS (VmHWM), CPU
# seconds, and its dropped/stored counters.
#   usage: scripts/flood-rss.sh BIN [extra config lines...]
set -euo pipefail
BIN=$(readlink -f "${1:?usage: flood-rss.sh BIN [config lines]}"); shift
DUR=${DURATION:-60s}; RATE=${FLOOD_RATE:-20000}; SIZE=${SIZE:-1000}; PUBS=${QOS1_PUBS:-32}
BPS=${DISK_BPS:-2097152}; DEV=${DISK_DEV:-$(lsblk -ndo MAJ:MIN "$(df --output=source /tmp | tail -1)" | tr -d ' ')}
W=$(mktemp -d); CG=/sys/fs/cgroup/blkio/flood-$$
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
MQ=$(port); KF=$(port); HT=$(port)
{ echo "data_dir: $W/data"; echo "streams:"; echo "  - {name: flood, filter: \"flood/#\", shards: 4}"; for l in "$@"; do echo "$l"; done; } > "$W/config.yaml"
mkdir "$CG"; echo "$DEV $BPS" > "$CG/blkio.throttle.write_bps_device"
cleanup() { [ -n "${SRV:-}" ] && kill "$SRV" 2>/dev/null; wait 2>/dev/null; rmdir "$CG" 2>/dev/null; [ -n "${KEEP_LOG:-}" ] && cp "$W/server.log" "$KEEP_LOG"; rm -rf "$W"; }
trap cleanup EXIT
bash -c "echo \$\$ > $CG/cgroup.procs; exec $BIN serve --config $W/config.yaml --mqtt-addr 127.0.0.1:$MQ --kafka-addr 127.0.0.1:$KF --http-addr 127.0.0.1:$HT --log-level warn" > "$W/server.log" 2>&1 &
SRV=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$HT/readyz" >/dev/null && break; sleep 0.1; done
cpu() { awk '{print $14+$15}' /proc/$SRV/stat; }
c0=$(cpu); t0=$(date +%s.%N); load=$(cut -d' ' -f1-3 /proc/loadavg)
"$BIN" bench mqtt --addr 127.0.0.1:$MQ --qos 0 -c 1 -s "$SIZE" --rate "$RATE" -d "$DUR" --topic flood/q0/%d --client-id flood0 > "$W/q0.out" 2>/dev/null &
"$BIN" bench mqtt --addr 127.0.0.1:$MQ --qos 1 -c "$PUBS" -s "$SIZE" -d "$DUR" --topic flood/q1/%d --client-id flood1 > "$W/q1.out" 2>/dev/null &
peak=0; i=0; while [ -n "$(jobs -rp | grep -v "^$SRV\$")" ]; do
  r=$(awk '/VmRSS/{print $2}' /proc/$SRV/status); [ "$r" -gt "$peak" ] && peak=$r
  if [ -n "${SAMPLES:-}" ] && [ $((i++ % 5)) = 0 ]; then
    echo "rss_kb $r $(curl -s "http://127.0.0.1:$HT/metrics" | grep -E '^go_memstats_(heap_(inuse|idle|released|sys)|next_gc|sys)_bytes|^mqstreams_log_queue' | awk '{printf "%s=%d ", $1, $2/1048576}')" >> "$SAMPLES"
  fi
  sleep 0.2; done
c1=$(cpu); t1=$(date +%s.%N)
hwm=$(awk '/VmHWM/{print $2}' /proc/$SRV/status)
m=$(curl -s "http://127.0.0.1:$HT/metrics")
echo "load before: $load; flood $RATE msg/s x $SIZE B QoS 0 + $PUBS QoS 1 publishers, $DUR, disk writes $BPS B/s"
echo "config extra: ${*:-none}"
echo "peak RSS sampled $((peak/1024)) MB, VmHWM $((hwm/1024)) MB; broker CPU $(echo "($c1-$c0)/100" | bc -l | xargs printf %.1f) s over $(echo "$t1-$t0" | bc | xargs printf %.1f) s"
echo "QoS 0: $(cat "$W/q0.out" | head -1)"; echo "QoS 1: $(head -2 "$W/q1.out" | tr '\n' ' ')"
echo "$m" | grep -E '^mqstreams_mqtt_dropped_total|^mqstreams_messages_appended_total|^go_memstats_heap_inuse_bytes|^go_gc_duration_seconds_count|^process_resident' || true
kill -0 $SRV 2>/dev/null && echo "server up" || { echo "SERVER DIED"; tail -20 "$W/server.log"; }
# Nothing acknowledged lost: the QoS 1 records stored (read back over Kafka with kcat)
# are at least the acknowledged ones (a publish can be stored, then its PUBACK lost).
if command -v kcat >/dev/null; then
  stored=$(timeout 120 kcat -C -b 127.0.0.1:$KF -t flood -e -q -f '%h\n' 2>/dev/null | grep -c 'mqtt.topic=flood/q1/' || true)
  echo "QoS 1 acknowledged $(grep -o '[0-9]* messages' "$W/q1.out" | head -1 | cut -d' ' -f1), stored $stored"
fi
