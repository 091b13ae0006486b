#!/usr/bin/env bash
# Reconnect avalanche benchmark (issue 15; BENCHMARKS.md "Worst day"): one roomcast with history on
# (defaults plus --rate-limit 0 --rate-limit-bytes 0, a fresh database under $OUT), in its own session
# (setsid), and roomcast-load avalanche in its own session, twice:
#   drop     every client's TCP connection reset at once; clients stay away --outage, then reconnect
#            with since=<last id> within --jitter
#   restart  the server stopped with SIGTERM and started again on the same database
#            (scripts/restart-roomcast.sh); clients reconnect within --jitter, backing off like the
#            web client while it is down
# Environment: CONNS (5000), ROOMS (50), RATE (1000 msgs/s in total, one sender per room), OUTAGE (3s),
# JITTER (1s), MODES ("drop restart"), SOURCE_IPS (127.0.0.1-127.0.0.8 when CONNS > 20000, else none),
# OUT (out/avalanche), SKIP_BUILD=1.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${OUT:-out/avalanche}
CONNS=${CONNS:-5000} ROOMS=${ROOMS:-50} RATE=${RATE:-1000} OUTAGE=${OUTAGE:-3s} JITTER=${JITTER:-1s}
MODES=${MODES:-"drop restart"}
BIN="$ROOT/target/release"
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then cargo build --release -p roomcast -p roomcast-load; fi
command -v setsid >/dev/null || { echo "setsid (util-linux) is required" >&2; exit 1; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SRC=()
if [[ -n "${SOURCE_IPS:-}" ]]; then SRC=(--source-ips "$SOURCE_IPS"); elif ((CONNS > 20000)); then SRC=(--source-ips 127.0.0.1-127.0.0.8); fi
# A free port below the ephemeral range: a client reconnecting while nothing listens could otherwise
# connect to itself from that very port and keep it taken.
PORT=$(python3 -c '
import socket
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for p in range(20000, low):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass
    finally:
        s.close()
')

cleanup() {
    local pid
    pid=$(cat "$OUT/server.pid" 2>/dev/null || true)
    [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true
}
trap cleanup EXIT

for mode in $MODES; do
    rm -rf "$OUT/db" && mkdir -p "$OUT/db"
    : >"$OUT/server-$mode.log"
    ROOMCAST_ARGS="--addr 127.0.0.1:$PORT --db $OUT/db/roomcast.db --rate-limit 0 --rate-limit-bytes 0" \
        LOG="$OUT/server-$mode.log" PIDFILE="$OUT/server.pid" BIN="$BIN/roomcast" scripts/restart-roomcast.sh start
    case "$mode" in
        drop) outage=(--drop --outage "$OUTAGE") ;;
        restart)
            outage=(--restart-cmd "ROOMCAST_ARGS='--addr 127.0.0.1:$PORT --db $OUT/db/roomcast.db --rate-limit 0 --rate-limit-bytes 0' LOG='$OUT/server-$mode.log' PIDFILE='$OUT/server.pid' BIN='$BIN/roomcast' $ROOT/scripts/restart-roomcast.sh TERM")
            ;;
        *) echo "unknown mode $mode" >&2; exit 2 ;;
    esac
    echo "== avalanche $mode: $CONNS clients, $ROOMS rooms, $RATE msgs/s, jitter $JITTER" >&2
    status=0
    setsid "$BIN/roomcast-load" avalanche --format json --url "ws://127.0.0.1:$PORT/ws/chat" \
        --conns "$CONNS" --rooms "$ROOMS" --senders "$ROOMS" --rate "$RATE" --size 100 \
        --warmup 2s --duration 15s --outage-at 2s --jitter "$JITTER" --drain 30s --connect-timeout 30s \
        "${outage[@]}" "${SRC[@]}" --server-pid-file "$OUT/server.pid" --json "$OUT/$mode.json" --quiet \
        | tee "$OUT/$mode.stdout" || status=$?
    echo "roomcast-load exit $status" >&2
    cleanup
    sleep 0.5
done
