#!/usr/bin/env bash
# Cluster benchmark: end-to-end latency and throughput of one broadcast load spread over 2 roomcast
# nodes sharing one Redis, against the same total load on 1 node (cluster mode, same Redis path) and
# on 1 standalone node (no Redis), on loopback, with roomcast-load on the same machine.
#
# roomcast-load takes one URL, so the 2-node run is two generator processes started together, one per
# node, each with half the connections, half the senders and half the rate. A generator measures the
# latency of its own senders' messages to its own connections (every message goes through Redis and
# back, whichever node receives it); frames from the other generator's senders are counted as
# `foreign_frames`. Latency percentiles of the 2-node run are merged from both generators' .hgrm
# distributions (python3); throughput is the sum.
#
# Deployment conditions, as in scripts/bench-e2e.sh: Redis, every node and every generator run in
# their own process session (`setsid`; started in the background from this script it execs in place,
# so $! is the program's PID), and the nodes run with roomcast's defaults (history on, each node its
# own database in a fresh directory under $OUT) except `--rate-limit 0 --rate-limit-bytes 0`, which a
# load test needs. PERSIST=0 runs the nodes with --no-persist instead (how the figures in
# BENCHMARKS.md before issue 12 were taken).
#
# Usage: scripts/bench-cluster.sh      Environment: OUT=dir (default out/cluster), SKIP_BUILD=1,
#        CONNS (1000), SENDERS (10), RATE (200 msgs/s in total), FORMAT (json), DUR (10s), PERSIST (1).
# Every process started here is killed by PID on exit.
set -euo pipefail

cd "$(dirname "$0")/.."
. scripts/lib.sh
ROOT=$(pwd)
OUT=${OUT:-out/cluster}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PERSIST=${PERSIST:-1}
BIN="$ROOT/target/release"
CONNS=${CONNS:-1000} SENDERS=${SENDERS:-10} RATE=${RATE:-200} FORMAT=${FORMAT:-json} DUR=${DUR:-10s}
TRAFFIC=(--rooms 1 --format "$FORMAT" --warmup 2s --duration "$DUR" --drain 5s --size 100 --quiet)

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    cargo build --release --workspace
fi
command -v redis-server >/dev/null || { echo "redis-server not on PATH (apt-get install redis-server)" >&2; exit 1; }

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    PIDS=()
    for d in "${DB_DIRS[@]}"; do rm -rf "$d"; done
    DB_DIRS=()
}
DB_DIRS=()
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

start_redis() {
    REDIS_PORT=$(free_port)
    setsid redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$OUT/redis.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 100); do
        redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "redis-server did not start" >&2
    exit 1
}

# start_node NAME [roomcast args...]: sets PORT_<NAME>.
start_node() {
    local name=$1
    shift
    local log="$OUT/$name.stdout"
    : >"$log"
    local store=(--no-persist)
    if [[ "$PERSIST" == 1 ]]; then
        local dir
        dir=$(mktemp -d "$OUT/db-$name.XXXXXX")
        DB_DIRS+=("$dir")
        store=(--db "$dir/roomcast.db")
    fi
    setsid "$BIN/roomcast" --addr 127.0.0.1:0 "${store[@]}" --rate-limit 0 --rate-limit-bytes 0 "$@" >"$log" 2>"$OUT/$name.stderr" &
    PIDS+=($!)
    local pid=$!
    local port
    port=$(wait_listening "$log" "$pid") || { cat "$OUT/$name.stderr" >&2; exit 1; }
    printf -v "PORT_$name" '%s' "$port"
}

load_bg() { # load_bg REPORT PORT CONNS SENDERS RATE: a generator in its own session; sets GEN_PID
    setsid "$BIN/roomcast-load" broadcast --url "ws://127.0.0.1:$2/ws" --conns "$3" --senders "$4" --rate "$5" \
        "${TRAFFIC[@]}" --json "$OUT/$1.json" --hgrm "$OUT/$1.hgrm" >"$OUT/$1.stdout" 2>&1 &
    GEN_PID=$!
    PIDS+=("$GEN_PID")
}

load() { # load REPORT PORT CONNS SENDERS RATE: one generator, waited for
    load_bg "$@"
    wait "$GEN_PID"
}

echo "== 2 nodes: $CONNS conns, $SENDERS senders, $RATE msgs/s in total, split over two generators" >&2
start_redis
start_node a --redis-url "redis://127.0.0.1:$REDIS_PORT" --node-id a
start_node b --redis-url "redis://127.0.0.1:$REDIS_PORT" --node-id b
load_bg two-a "$PORT_a" $((CONNS / 2)) $((SENDERS / 2)) "$(python3 -c "print($RATE / 2)")"
GEN_A=$GEN_PID
load_bg two-b "$PORT_b" $((CONNS / 2)) $((SENDERS / 2)) "$(python3 -c "print($RATE / 2)")"
GEN_B=$GEN_PID
wait "$GEN_A" "$GEN_B"
cleanup

echo "== 1 node in cluster mode: same totals, one generator" >&2
start_redis
start_node one --redis-url "redis://127.0.0.1:$REDIS_PORT" --node-id one
load one-cluster "$PORT_one" "$CONNS" "$SENDERS" "$RATE"
cleanup

echo "== 1 standalone node (no Redis): same totals" >&2
start_node solo
load one-solo "$PORT_solo" "$CONNS" "$SENDERS" "$RATE"
cleanup

python3 - "$OUT" <<'PY' | tee "$OUT/summary.md"
import json, sys
out = sys.argv[1]

def hgrm(name):
    """(value_ms, count) pairs from a .hgrm percentile distribution."""
    rows, last = [], 0
    for line in open(f"{out}/{name}.hgrm"):
        parts = line.split()
        if len(parts) < 3 or line.startswith("#") or parts[0] == "Value":
            continue
        value, total = float(parts[0]), int(parts[2])
        if total > last:
            rows.append((value, total - last))
            last = total
    return rows

def pct(rows, q):
    rows = sorted(rows)
    total = sum(c for _, c in rows)
    seen = 0
    for value, count in rows:
        seen += count
        if seen >= q * total:
            return value
    return float("nan")

def figures(names):
    reports = [json.load(open(f"{out}/{n}.json")) for n in names]
    rows = [r for n in names for r in hgrm(n)]
    m = [r["messages"] for r in reports]
    # Frames from the other generator's senders are counted over the whole run: scale them to the
    # measured window by the generator's own ratio of measured to all deliveries.
    def with_foreign(x):
        own = x["delivered"] + x["delivered_warmup"]
        return x["deliveries_per_sec_out"] * (1 + x["foreign_frames"] / own) if own else 0.0
    return {
        "deliveries/s (own senders)": sum(x["deliveries_per_sec_out"] for x in m),
        "deliveries/s (all, est.)": sum(with_foreign(x) for x in m),
        "foreign frames": sum(x["foreign_frames"] for x in m),
        "lost": sum(x["lost"] for x in m),
        "duplicates": sum(x["duplicates"] for x in m),
        "reordered": sum(x["reordered"] for x in m),
        "p50": pct(rows, 0.50), "p99": pct(rows, 0.99), "p99.9": pct(rows, 0.999),
        "sent": sum(x["sent"] for x in m),
    }

two, one, solo = figures(["two-a", "two-b"]), figures(["one-cluster"]), figures(["one-solo"])
def fmt(v):
    return f"{v:,.0f}" if isinstance(v, int) or v >= 100 else f"{v:.2f}"
print("| figure | 2 nodes + Redis | 1 node + Redis | 1 node standalone | 2 nodes / 1 node + Redis |")
print("| --- | ---: | ---: | ---: | ---: |")
for key, unit in [("deliveries/s (own senders)", ""), ("deliveries/s (all, est.)", ""), ("p50", " ms"), ("p99", " ms"), ("p99.9", " ms"),
                  ("sent", ""), ("lost", ""), ("duplicates", ""), ("reordered", ""), ("foreign frames", "")]:
    ratio = f"{two[key] / one[key]:.2f}" if one[key] else "–"
    print(f"| {key} | {fmt(two[key])}{unit} | {fmt(one[key])}{unit} | {fmt(solo[key])}{unit} | {ratio} |")
PY
