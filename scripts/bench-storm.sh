#!/usr/bin/env bash
# Connect storm against live delivery (issue 23 §4; BENCHMARKS.md "Crowds"): for each of ROUNDS rounds,
# each server in turn (roomcast BEFORE, roomcast AFTER, roomcast-baseline; alternating within the
# round, a fresh process each, in its own session), roomcast-load broadcast measures message latency
# (LIVE_CONNS clients in one room, one sender at RATE msgs/s, 100 B, text) while roomcast-load connect
# opens STORM connections as fast as it can, starting 3 s in. roomcast runs with history on (fresh
# database) and --rate-limit 0 --rate-limit-bytes 0, as in BENCHMARKS.md "Method".
# Environment: BEFORE, AFTER (roomcast binaries), BASELINE, LOAD (roomcast-load), ROUNDS (3),
# STORM (5000), LIVE_CONNS (20), RATE (50), DURATION (15s), OUT (out/storm).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/storm}
ROUNDS=${ROUNDS:-3} STORM=${STORM:-5000} LIVE_CONNS=${LIVE_CONNS:-20} RATE=${RATE:-50} DURATION=${DURATION:-15s}
LOAD=${LOAD:-target/release/roomcast-load}
BASELINE=${BASELINE:-target/release/roomcast-baseline}
mkdir -p "$OUT"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
echo "# $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg) storm=$STORM live=$LIVE_CONNS rate=$RATE"
for round in $(seq 1 "$ROUNDS"); do
    for variant in before after baseline; do
        port=$(free_port)
        rm -rf "$OUT/db" && mkdir -p "$OUT/db"
        case $variant in
            baseline) setsid "$BASELINE" --addr "127.0.0.1:$port" >/dev/null 2>&1 & ;;
            *) bin=$BEFORE; [[ $variant == after ]] && bin=$AFTER
               setsid "$bin" --addr "127.0.0.1:$port" --db "$OUT/db/roomcast.db" --rate-limit 0 --rate-limit-bytes 0 \
                   --log-level warn >/dev/null 2>"$OUT/server-$variant-$round.log" & ;;
        esac
        pid=$!
        for _ in $(seq 100); do python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),0.2).close()" 2>/dev/null && break; sleep 0.1; done
        url="ws://127.0.0.1:$port/ws/chat"
        setsid "$LOAD" broadcast --url "$url" --conns "$LIVE_CONNS" --senders 1 --rate "$RATE" --size 100 \
            --warmup 1s --duration "$DURATION" --quiet --json "$OUT/live-$variant-$round.json" >/dev/null &
        live=$!
        sleep 3
        setsid "$LOAD" connect --url "$url" --conns "$STORM" --connect-timeout 30s --quiet \
            --json "$OUT/storm-$variant-$round.json" >/dev/null || true
        wait "$live" || true
        python3 - "$OUT/live-$variant-$round.json" "$OUT/storm-$variant-$round.json" "$round" "$variant" <<'PY'
import json, sys
live, storm = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
lat, m, c = live["latency_us"]["corrected"], live["messages"], storm["connections"]
print(f"round {sys.argv[3]} {sys.argv[4]}: live p50 {lat['p50']/1000:.1f} ms p99 {lat['p99']/1000:.1f} ms "
      f"max {lat['max']/1000:.1f} ms lost {m['lost']}; storm {c['connected']}/{c['requested']} connected, "
      f"{c['connects_per_sec']:.0f}/s, handshake p99 {storm['latency_us']['handshake']['p99']/1000:.1f} ms")
PY
        kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
    done
done
