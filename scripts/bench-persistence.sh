#!/usr/bin/env bash
# Persistence benchmarks (the history issue's figures), all in one run so ratios are meaningful:
#  1. live-path latency with persistence on vs --no-persist (alternating runs, same load);
#  2. history page latency on a 1,000,000-message database while live load runs.
# Deployment conditions, as in scripts/bench-e2e.sh: every server and every generator runs in its own
# process session (`setsid`; started in the background from this script it execs in place, so $! is
# the program's PID, killed and reaped by it); roomcast runs with its defaults (history on, the
# database in a fresh directory under $OUT, i.e. on the repository's disk) except
# `--rate-limit 0 --rate-limit-bytes 0`, which a load test needs.
# Usage: scripts/bench-persistence.sh            (QUICK=1 for a short smoke run; SKIP_BUILD=1;
#        ROUNDS=n, default 3)
# Output: out/persist/*.json and a summary on stdout (also out/persist/summary.md).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

OUT=${OUT:-out/persist}
BIN=target/release
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
ROWS=${ROWS:-1000000}
if [ "${QUICK:-0}" = 1 ]; then
  ROUNDS=1 DURATION=3s ROWS=100000
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
[ "${SKIP_BUILD:-0}" = 1 ] || cargo build --release --workspace --quiet

SERVER_PID=""
LOAD_PID=""
LIVE_PID=""
HISTORY_PID=""
cleanup() {
  [ -n "$HISTORY_PID" ] && kill "$HISTORY_PID" 2>/dev/null && wait "$HISTORY_PID" 2>/dev/null
  [ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null && wait "$LOAD_PID" 2>/dev/null
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  true
}
trap cleanup EXIT

# start_server ARGS...: starts roomcast on a free port, sets SERVER_PID and PORT.
start_server() {
  local log="$OUT/server.out"
  : >"$log"
  setsid "$BIN/roomcast" --addr 127.0.0.1:0 --rate-limit 0 --rate-limit-bytes 0 "$@" >"$log" 2>>"$OUT/server.stderr" &
  SERVER_PID=$!
  PORT=$(wait_listening "$log" "$SERVER_PID") || { cat "$OUT/server.stderr" >&2; exit 1; }
}

stop_server() {
  kill -TERM "$SERVER_PID"
  wait "$SERVER_PID" || true
  SERVER_PID=""
}

# broadcast_bg OUTFILE: starts the live load in its own session; sets LOAD_PID.
broadcast_bg() {
  setsid "$BIN/roomcast-load" broadcast --url "ws://127.0.0.1:$PORT/ws/chat" --conns 1000 --rooms 1 --senders 10 \
    --rate 200 --size 100 --warmup 2s --duration "$DURATION" --drain 5s --quiet --json "$1" >/dev/null &
  LOAD_PID=$!
}

broadcast() { # broadcast OUTFILE: the live load, waited for
  broadcast_bg "$1"
  wait "$LOAD_PID"
  LOAD_PID=""
}

# 1. Persistence on (defaults) vs off, alternating so both see the same background drift.
for round in $(seq 1 "$ROUNDS"); do
  start_server --no-persist
  broadcast "$OUT/live-nopersist-$round.json"
  stop_server
  dbdir=$(mktemp -d "$OUT/db.XXXXXX")
  start_server --db "$dbdir/roomcast.db"
  broadcast "$OUT/live-persist-$round.json"
  stop_server
  rm -rf "$dbdir"
done

# 2. History pages on a large database under live load.
dbdir=$(mktemp -d "$OUT/db.XXXXXX")
db="$dbdir/roomcast.db"
start_server --db "$db"   # creates the schema
stop_server
python3 - "$db" "$ROWS" <<'EOF'
import sqlite3, sys, time
db, rows = sys.argv[1], int(sys.argv[2])
conn = sqlite3.connect(db)
now = int(time.time() * 1000)
batch = 50_000
for start in range(1, rows + 1, batch):
    conn.executemany(
        "INSERT INTO messages (id, room, user, content, created_at) VALUES (?, ?, ?, ?, ?)",
        ((i, "room-0" if i % 4 else "room-1", "seed", "x" * 100, now) for i in range(start, min(start + batch, rows + 1))),
    )
    conn.commit()
conn.close()
EOF
start_server --db "$db"
broadcast_bg "$OUT/live-during-history.json"
LIVE_PID=$LOAD_PID
sleep 3
setsid "$BIN/roomcast-load" history --url "http://127.0.0.1:$PORT" --room room-0 --rate 200 --limit 50 \
  --duration "$DURATION" --quiet --json "$OUT/history-1m.json" >/dev/null &
HISTORY_PID=$!
wait "$HISTORY_PID"
HISTORY_PID=""
wait "$LIVE_PID"
LIVE_PID="" LOAD_PID=""
stop_server
rm -rf "$dbdir"

python3 - "$OUT" "$ROUNDS" "$ROWS" <<'EOF' | tee "$OUT/summary.md"
import json, sys, statistics
out, rounds, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def lat(path, key):
    r = json.load(open(path))
    return r["latency_us"]["corrected"][key] / 1000.0
print("| run | p50 ms | p99 ms | p99.9 ms |")
print("| --- | ---: | ---: | ---: |")
ratios = []
for i in range(1, rounds + 1):
    a, b = f"{out}/live-nopersist-{i}.json", f"{out}/live-persist-{i}.json"
    for name, path in (("no-persist", a), ("persist", b)):
        print(f"| {name} #{i} | {lat(path,'p50'):.2f} | {lat(path,'p99'):.2f} | {lat(path,'p99_9'):.2f} |")
    ratios.append(lat(b, "p99") / lat(a, "p99"))
print(f"\np99 persist / no-persist per round: {', '.join(f'{r:.2f}' for r in ratios)}; median {statistics.median(ratios):.2f}")
h = json.load(open(f"{out}/history-1m.json"))
c = h["http"]["latency_corrected"]
print(f"\nhistory pages on {rows:,} rows under live load: p50 {c['p50']/1000:.2f} ms, p99 {c['p99']/1000:.2f} ms, "
      f"p99.9 {c['p99_9']/1000:.2f} ms; live p99 meanwhile {lat(f'{out}/live-during-history.json','p99'):.2f} ms")
EOF
