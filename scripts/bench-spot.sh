#!/usr/bin/env bash
# One quick broadcast run against one server binary, both in their own sessions (setsid), for spot
# checks between full bench-e2e.sh runs (e.g. alternating two binaries or two flag sets):
#   scripts/bench-spot.sh BIN LABEL [server flags...]
# Environment: CONNS (2000) SENDERS (20) RATE (1000 msgs/s in total) ROOMS (1) FORMAT (text)
#              DUR (10s); NICE_OTHERS=12 renices other sessions for the run (bench-nice-others.sh).
# Prints one line: p50, p99, lost, deliveries/s, server CPU seconds, involuntary context switches.
set -u
cd "$(dirname "$0")/.."
. scripts/lib.sh
BIN=$1; LABEL=$2; shift 2
D=$(mktemp -d /tmp/rc-spot.XXXX)
[[ -n "${NICE_OTHERS:-}" ]] && scripts/bench-nice-others.sh "$NICE_OTHERS"
setsid "$BIN" --addr 127.0.0.1:0 --db "$D/r.db" --rate-limit 0 --rate-limit-bytes 0 --log-level warn "$@" >"$D/out" 2>&1 &
PID=$!
ADDR=127.0.0.1:$(wait_listening "$D/out" "$PID") || exit 1
T0=$(awk '{print $14+$15}' /proc/$PID/stat)
setsid target/release/roomcast-load broadcast --url "ws://$ADDR/ws/chat" --conns "${CONNS:-2000}" \
    --rooms "${ROOMS:-1}" --format "${FORMAT:-text}" --senders "${SENDERS:-20}" --rate "${RATE:-1000}" \
    --size 100 --duration "${DUR:-10s}" --warmup 2s --drain 5s --source-ips 127.0.0.1-127.0.0.8 \
    --quiet --json "$D/rep.json" >"$D/load.txt" 2>&1
T1=$(awk '{print $14+$15}' /proc/$PID/stat)
CSW=$(cat /proc/$PID/task/*/status | awk '/nonvoluntary_ctxt_switches/{s+=$2} END{print s}')
kill $PID; wait $PID 2>/dev/null
[[ -n "${NICE_OTHERS:-}" ]] && scripts/bench-nice-others.sh 0
python3 - "$D/rep.json" "$LABEL" "$((T1 - T0))" "$CSW" "$(getconf CLK_TCK)" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
c, m = r["latency_us"]["corrected"], r["messages"]
cpu = int(sys.argv[3]) / int(sys.argv[5])
print(f"{sys.argv[2]:<16} p50 {c['p50']/1000:8.2f} ms  p99 {c['p99']/1000:8.2f} ms  lost {m['lost']}  "
      f"deliveries/s {m['deliveries_per_sec_out']:.0f}  server CPU {cpu:.2f} s  involuntary csw {sys.argv[4]}")
PY
rm -rf "$D"
