#!/usr/bin/env bash
# Resume avalanche, before vs after (issue 23 §4; BENCHMARKS.md "Crowds"): for each of ROUNDS rounds,
# each server binary in turn (BEFORE then AFTER, alternating within the round), a fresh roomcast with
# history on (--rate-limit 0 --rate-limit-bytes 0, a fresh database under $OUT, its own session) and
# roomcast-resume-crowd: a room filled with MESSAGES x SIZE bytes, CLIENTS clients resuming it with
# since=0 at once, a witness pair chatting in another room. One JSON line per run (RSS before, peak,
# after every client closed; witness p50/p99/max; crowd time).
# Environment: BEFORE, AFTER (server binaries), PROBE (roomcast-resume-crowd), ROUNDS (3),
# CLIENTS (200), MESSAGES (1300), SIZE (16000), OUT (out/resume-crowd), EXTRA (more server flags).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/resume-crowd}
ROUNDS=${ROUNDS:-3} CLIENTS=${CLIENTS:-200} MESSAGES=${MESSAGES:-1300} SIZE=${SIZE:-16000}
PROBE=${PROBE:-target/release/roomcast-resume-crowd}
mkdir -p "$OUT"
echo "# $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg) before=$BEFORE after=$AFTER"
for round in $(seq 1 "$ROUNDS"); do
    for variant in before after; do
        bin=$BEFORE; [[ $variant == after ]] && bin=$AFTER
        rm -rf "$OUT/db" && mkdir -p "$OUT/db"
        setsid "$bin" --addr 127.0.0.1:0 --db "$OUT/db/roomcast.db" --rate-limit 0 --rate-limit-bytes 0 \
            --log-level warn ${EXTRA:-} >"$OUT/server.out" 2>"$OUT/server-$variant-$round.log" &
        pid=$!
        for _ in $(seq 100); do grep -q "listening on" "$OUT/server.out" 2>/dev/null && break; sleep 0.1; done
        addr=$(sed -n 's|^listening on http://||p' "$OUT/server.out")
        result=$(setsid "$PROBE" --addr "$addr" --pid "$pid" --clients "$CLIENTS" --messages "$MESSAGES" --size "$SIZE" || echo '{"failed":true}')
        echo "round $round $variant $result"
        kill "$pid"; wait "$pid" || true
    done
done
