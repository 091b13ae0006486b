#!/usr/bin/env bash
# Profiles roomcast under the heavy broadcast (2,000 clients, 2M deliveries/s): perf record of 5 s of
# the steady state (cpu-clock, call graphs), then per-thread CPU ticks and context switches.
#   scripts/bench-profile.sh BIN [server flags...]   (BIN: a `--profile profiling` build has symbols)
# Writes perf.data to $OUT (default /tmp); read it with
#   perf report -i /tmp/perf.data --no-children --sort sym --stdio
set -u
cd "$(dirname "$0")/.."
. scripts/lib.sh
BIN=$1; shift
OUT=${OUT:-/tmp}
D=$(mktemp -d /tmp/rc-prof.XXXX)
setsid "$BIN" --addr 127.0.0.1:0 --db "$D/r.db" --rate-limit 0 --rate-limit-bytes 0 --log-level warn "$@" >"$D/out" 2>&1 &
PID=$!
ADDR=127.0.0.1:$(wait_listening "$D/out" "$PID") || exit 1
setsid target/release/roomcast-load broadcast --url "ws://$ADDR/ws/chat" --conns 2000 --senders 20 \
    --rate 1000 --size 100 --duration 10s --warmup 2s --drain 5s --source-ips 127.0.0.1-127.0.0.8 \
    --quiet >"$D/load.txt" 2>&1 &
LOAD=$!
sleep 5
perf record -e cpu-clock -g -p "$PID" -o "$OUT/perf.data" -- sleep 5 >/dev/null 2>&1
for t in /proc/$PID/task/*; do
    echo "$(cat "$t/comm") cpu_ticks=$(awk '{print $14+$15}' "$t/stat") $(grep ctxt "$t/status" | tr -s '\t\n' ' ')"
done
wait $LOAD
grep -E "delivered|p99 " "$D/load.txt"
kill $PID; wait $PID 2>/dev/null
rm -rf "$D"
