#!/usr/bin/env bash
# Soak benchmark (not part of CI): SOAK_MINUTES (default 30) of mixed traffic on one roomcast with
# history on, sampled every SAMPLE_SECS (10) into CSV and plotted to SVG.
#
# Traffic, all at once, each generator re-run back to back until the end (fresh clients every run,
# so connecting and leaving never stops):
#   json      roomcast-load broadcast --format json, 300 clients in 6 rooms, 200 msgs/s, 10 s runs
#   text      roomcast-load broadcast (text protocol), 200 clients in 4 rooms, 100 msgs/s, 10 s runs
#   churn     roomcast-load churn --format json: 200 clients, 20 % dropped and reconnected with
#             resume every second, 50 msgs/s, 20 s runs
#   history   roomcast-load history: paging room-0 backwards at 20 requests/s, 30 s runs
#   slow      scripts/slow-reader.py: every SLOW_EVERY s (60) a text client in room-1 reading 4 KiB/s
#             for 20 s (the server may close it as a slow consumer: its policy)
#   avalanche every AVALANCHE_EVERY s (300): roomcast-load avalanche --drop, 400 clients in 8 rooms,
#             all dropped at once and resumed with `since` within 1 s
# The rooms are shared (room-0 ... room-7), so text and JSON clients, churn, avalanche and history meet
# in the same rooms (a generator ignores other runs' messages as foreign).
#
# Samples (scripts/soak.py sample): server RSS, open fds, CPU, connections and write-queue depth, the
# last broadcast runs' latency percentiles and the running loss totals -> $OUT/soak.csv; at the end
# scripts/soak.py plot -> $OUT/soak.svg and the verdict (no loss; RSS and fds slope after warm-up
# under 1 % per 10 minutes; p99 stable). Server and generators run in their own sessions (setsid), as
# in scripts/bench-e2e.sh.
#
# Usage: scripts/soak.sh            Environment: SOAK_MINUTES, SAMPLE_SECS, AVALANCHE_EVERY,
#        SLOW_EVERY, OUT (default out/soak), SKIP_BUILD=1.
# Exit status: 0 verdict PASS, 3 verdict FAIL, 1 error.
set -euo pipefail

cd "$(dirname "$0")/.."
. scripts/lib.sh
ROOT=$(pwd)
OUT=${OUT:-out/soak}
MINUTES=${SOAK_MINUTES:-30}
SAMPLE_SECS=${SAMPLE_SECS:-10}
AVALANCHE_EVERY=${AVALANCHE_EVERY:-300}
SLOW_EVERY=${SLOW_EVERY:-60}
BIN="$ROOT/target/release"
LOAD="$BIN/roomcast-load"

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    cargo build --release -p roomcast -p roomcast-load
fi
for b in roomcast roomcast-load; do [[ -x "$BIN/$b" ]] || { echo "missing $BIN/$b" >&2; exit 1; }; done
command -v setsid >/dev/null || { echo "setsid (util-linux) is required" >&2; exit 1; }

rm -rf "$OUT"
mkdir -p "$OUT/reports" "$OUT/tmp" "$OUT/db"
OUT=$(cd "$OUT" && pwd)
REPORTS="$OUT/reports"

SERVER_PID="" SAMPLER_PID="" LOOPS=()
cleanup() {
    for p in "${LOOPS[@]}" "$SAMPLER_PID"; do
        [[ -n "$p" ]] && kill "$p" 2>/dev/null || true
    done
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

setsid "$BIN/roomcast" --addr 127.0.0.1:0 --db "$OUT/db/roomcast.db" --rate-limit 0 --rate-limit-bytes 0 \
    >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
echo "$SERVER_PID" >"$OUT/server.pid"
PORT=$(wait_listening "$OUT/server.log" "$SERVER_PID")
WS="ws://127.0.0.1:$PORT/ws/chat"
START=$(date +%s)
END=$((START + MINUTES * 60))
echo "soak: roomcast pid $SERVER_PID on port $PORT, $MINUTES min until $(date -d "@$END" +%T), output in $OUT"

# loop NAME roomcast-load-args...: re-runs the generator while before END (the last run ends after
# it, so every sample sees traffic); every finished run's report lands complete in
# $REPORTS/NAME-<n>.json (the sampler reads them).
loop() {
    local name=$1 n=0
    shift
    while (($(date +%s) < END)); do
        n=$((n + 1))
        local tmp="$OUT/tmp/$name-$n.json"
        setsid "$LOAD" "$@" --json "$tmp" --quiet >>"$OUT/$name.log" 2>&1 || echo "run $n exited $?" >>"$OUT/$name.log"
        [[ -f "$tmp" ]] && mv "$tmp" "$REPORTS/$name-$n.json"
    done
}

# every SECONDS NAME CMD...: runs CMD (with the run number appended) every SECONDS, the first after
# one period, while before END.
every() {
    local period=$1 name=$2 n=0
    shift 2
    while true; do
        local next=$((START + (n + 1) * period))
        ((next < END)) || break
        sleep $((next - $(date +%s) > 0 ? next - $(date +%s) : 0))
        n=$((n + 1))
        "$@" "$n" >>"$OUT/$name.log" 2>&1 || echo "run $n exited $?" >>"$OUT/$name.log"
    done
}

avalanche() {
    local n=$1 tmp="$OUT/tmp/avalanche-$1.json"
    setsid "$LOAD" avalanche --drop --format json --url "$WS" --conns 400 --rooms 8 --senders 8 --rate 100 \
        --warmup 1s --duration 8s --outage-at 2s --outage 1s --jitter 1s --drain 20s \
        --server-pid "$SERVER_PID" --json "$tmp" --quiet
    mv "$tmp" "$REPORTS/avalanche-$n.json"
}

slow() { python3 scripts/slow-reader.py 127.0.0.1 "$PORT" room-1 20; }

python3 scripts/soak.py sample --pid-file "$OUT/server.pid" --port "$PORT" --reports "$REPORTS" \
    --csv "$OUT/soak.csv" --until "$END" --interval "$SAMPLE_SECS" &
SAMPLER_PID=$!

loop json broadcast --format json --url "$WS" --conns 300 --rooms 6 --senders 6 --rate 200 --size 100 \
    --warmup 1s --duration 10s --drain 5s &
LOOPS+=($!)
loop text broadcast --url "$WS" --conns 200 --rooms 4 --senders 4 --rate 100 --size 100 \
    --warmup 1s --duration 10s --drain 5s &
LOOPS+=($!)
loop churn churn --format json --url "$WS" --conns 200 --rooms 4 --senders 4 --rate 50 \
    --churn-fraction 0.2 --churn-interval 1s --warmup 1s --duration 20s --drain 5s &
LOOPS+=($!)
loop history history --url "http://127.0.0.1:$PORT" --room room-0 --rate 20 --connections 2 --duration 30s &
LOOPS+=($!)
every "$SLOW_EVERY" slow slow &
LOOPS+=($!)
every "$AVALANCHE_EVERY" avalanche avalanche &
LOOPS+=($!)

status=0
wait "$SAMPLER_PID" || status=$?
SAMPLER_PID=""
for p in "${LOOPS[@]}"; do wait "$p" || true; done
LOOPS=()
[[ "$status" == 0 ]] || { echo "soak: the sampler failed (server gone?)" >&2; exit 1; }

kill -TERM "$SERVER_PID"
wait "$SERVER_PID" && server_status=0 || server_status=$?
SERVER_PID=""
echo "soak: roomcast exited with status $server_status after SIGTERM"
echo "soak: $(ls "$REPORTS" | wc -l) generator runs; slow readers: $(grep -c '^slow-reader' "$OUT/slow.log" 2>/dev/null || echo 0)"
verdict=0
python3 scripts/soak.py plot "$OUT/soak.csv" "$OUT/soak.svg" || verdict=$?
[[ "$server_status" == 0 ]] || verdict=3
echo "soak: CSV $OUT/soak.csv, plot $OUT/soak.svg"
exit "$verdict"
