#!/usr/bin/env bash
# End-to-end load benchmarks: roomcast (--no-persist) against the tokio-tungstenite baseline, in the
# same run, on loopback, with roomcast-load on the same machine.
#
# Every scenario gets fresh server processes (so RSS and CPU deltas belong to that scenario). For
# each run the script keeps the load report (out/<scenario>-<server>.json) and the server's resource
# use (out/<scenario>-<server>.server.json: VmRSS before/peak, VmHWM, CPU seconds, open fds), then
# prints a table with roomcast/baseline ratios (also written to out/summary.md).
#
# Usage: scripts/bench-e2e.sh [scenario...]   (default: all of s1k s2k rooms hold hold19k connect ramp)
# Environment: QUICK=1 shortens durations and sizes for a smoke run; OUT=dir (default: out);
#              SKIP_BUILD=1 skips `cargo build --release --workspace`.
# Every load run targets 127.0.0.1, is bounded in time and count, and both servers are killed by PID
# on exit.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${OUT:-out}
QUICK=${QUICK:-0}
mkdir -p "$OUT"
BIN="$ROOT/target/release"
LOAD="$BIN/roomcast-load"
SOURCE_IPS=127.0.0.1-127.0.0.8
CLK_TCK=$(getconf CLK_TCK)

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    cargo build --release --workspace
fi
for b in roomcast roomcast-baseline roomcast-load; do
    [[ -x "$BIN/$b" ]] || { echo "missing $BIN/$b" >&2; exit 1; }
done

# Scenario sizes (QUICK=1: a smoke run that finishes in about two minutes).
if [[ "$QUICK" == 1 ]]; then
    DUR=3s WARM=1s DRAIN=3s
    S1_CONNS=200 S2_CONNS=400 ROOMS_CONNS=500 HOLD_CONNS=2000 HOLD19_CONNS=3000 CONNECT_CONNS=2000
    RAMP_STEPS=3 HOLD_DUR=3s
else
    DUR=10s WARM=2s DRAIN=5s
    S1_CONNS=1000 S2_CONNS=2000 ROOMS_CONNS=5000 HOLD_CONNS=15000 HOLD19_CONNS=19000 CONNECT_CONNS=15000
    RAMP_STEPS=20 HOLD_DUR=10s
fi

ROOMCAST_PID=""
BASELINE_PID=""
SAMPLER_PID=""

kill_pid() {
    local pid=$1
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
}

stop_servers() {
    kill_pid "$SAMPLER_PID"
    kill_pid "$ROOMCAST_PID"
    kill_pid "$BASELINE_PID"
    SAMPLER_PID="" ROOMCAST_PID="" BASELINE_PID=""
}
trap stop_servers EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_port() {
    local port=$1 pid=$2
    for _ in $(seq 1 200); do
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$port),0.2).close()" 2>/dev/null; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || { echo "server $pid exited" >&2; return 1; }
        sleep 0.05
    done
    echo "server $pid did not listen on $port" >&2
    return 1
}

# Starts roomcast on a free port (it prints the address) and sets ROOMCAST_PID, ROOMCAST_PORT.
start_roomcast() {
    local log="$OUT/roomcast.stdout"
    : >"$log"
    "$BIN/roomcast" --addr 127.0.0.1:0 --no-persist --log-level warn --rate-limit 0 --rate-limit-bytes 0 >"$log" 2>"$OUT/roomcast.stderr" &
    ROOMCAST_PID=$!
    for _ in $(seq 1 200); do
        if grep -q '^listening on http://' "$log"; then break; fi
        kill -0 "$ROOMCAST_PID" 2>/dev/null || { echo "roomcast exited:" >&2; cat "$OUT/roomcast.stderr" >&2; exit 1; }
        sleep 0.05
    done
    ROOMCAST_PORT=$(sed -n 's|^listening on http://127\.0\.0\.1:\([0-9]*\)$|\1|p' "$log")
    [[ -n "$ROOMCAST_PORT" ]] || { echo "roomcast printed no address" >&2; exit 1; }
}

start_baseline() {
    BASELINE_PORT=$(free_port)
    "$BIN/roomcast-baseline" --addr "127.0.0.1:$BASELINE_PORT" >/dev/null 2>"$OUT/baseline.stderr" &
    BASELINE_PID=$!
    wait_port "$BASELINE_PORT" "$BASELINE_PID"
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
nfds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

# Samples the server's VmRSS and fd count every 200 ms into $2 until killed.
sample() {
    local pid=$1 file=$2
    while kill -0 "$pid" 2>/dev/null; do
        echo "$(rss_kb "$pid") $(nfds "$pid")" >>"$file" 2>/dev/null || true
        sleep 0.2
    done
}

# run NAME SERVER(roomcast|baseline) PID roomcast-load-args...
# Runs one load against one server and records the report plus the server's resource use.
run() {
    local name=$1 server=$2 pid=$3
    shift 3
    local report="$OUT/$name-$server.json" samples="$OUT/$name-$server.samples"
    : >"$samples"
    local rss0 cpu0 fds0 status=0
    rss0=$(rss_kb "$pid")
    fds0=$(nfds "$pid")
    cpu0=$(cpu_ticks "$pid")
    sample "$pid" "$samples" &
    SAMPLER_PID=$!
    echo "== $name / $server: roomcast-load $*" >&2
    "$LOAD" "$@" --json "$report" --quiet >"$OUT/$name-$server.stdout" 2>&1 || status=$?
    local cpu1
    cpu1=$(cpu_ticks "$pid")
    kill_pid "$SAMPLER_PID"
    SAMPLER_PID=""
    python3 - "$samples" "$OUT/$name-$server.server.json" "$@" <<PY
import json, sys
rows = [l.split() for l in open(sys.argv[1]) if len(l.split()) == 2]
rss = [int(r[0]) for r in rows]; fds = [int(r[1]) for r in rows]
json.dump({
    "server": "$server", "pid": $pid, "load_exit": $status,
    "rss_before_kb": $rss0, "rss_peak_kb": max(rss + [$rss0]), "hwm_kb": $(hwm_kb "$pid"),
    "fds_before": $fds0, "fds_peak": max(fds + [$fds0]),
    "cpu_secs": ($cpu1 - $cpu0) / $CLK_TCK,
    "command": "roomcast-load " + " ".join(sys.argv[3:]),
}, open(sys.argv[2], "w"), indent=1)
PY
    if [[ $status -ne 0 ]]; then
        echo "   (roomcast-load exited $status; see $OUT/$name-$server.stdout)" >&2
    fi
}

# both NAME roomcast-load-args... (URL is appended per server)
both() {
    local name=$1
    shift
    start_roomcast
    run "$name" roomcast "$ROOMCAST_PID" "$@" --url "ws://127.0.0.1:$ROOMCAST_PORT/ws/chat"
    stop_servers
    start_baseline
    run "$name" baseline "$BASELINE_PID" "$@" --url "ws://127.0.0.1:$BASELINE_PORT/ws/chat"
    stop_servers
}

roomcast_only() {
    local name=$1
    shift
    start_roomcast
    run "$name" roomcast "$ROOMCAST_PID" "$@" --url "ws://127.0.0.1:$ROOMCAST_PORT/ws/chat"
    stop_servers
}

TRAFFIC=(--warmup "$WARM" --duration "$DUR" --drain "$DRAIN" --size 100)
SCENARIOS=("$@")
[[ ${#SCENARIOS[@]} -gt 0 ]] || SCENARIOS=(s1k s2k rooms hold hold19k connect ramp)

for s in "${SCENARIOS[@]}"; do
    case "$s" in
        s1k)
            both s1k broadcast --conns "$S1_CONNS" --rooms 1 --senders 10 --rate 200 "${TRAFFIC[@]}"
            ;;
        s2k)
            both s2k broadcast --conns "$S2_CONNS" --rooms 1 --senders 20 --rate 1000 "${TRAFFIC[@]}" \
                --source-ips "$SOURCE_IPS"
            ;;
        rooms)
            # The baseline has one global room, so this runs on roomcast only, in both formats.
            roomcast_only rooms-text broadcast --format text --conns "$ROOMS_CONNS" --rooms 50 --senders 50 \
                --rate 1000 "${TRAFFIC[@]}" --source-ips "$SOURCE_IPS"
            roomcast_only rooms-json broadcast --format json --conns "$ROOMS_CONNS" --rooms 50 --senders 50 \
                --rate 1000 "${TRAFFIC[@]}" --source-ips "$SOURCE_IPS"
            ;;
        hold)
            both hold hold --conns "$HOLD_CONNS" --duration "$HOLD_DUR" --connect-timeout 30s \
                --source-ips "$SOURCE_IPS"
            ;;
        hold19k)
            both hold19k hold --conns "$HOLD19_CONNS" --duration "$HOLD_DUR" --connect-timeout 30s \
                --source-ips "$SOURCE_IPS"
            ;;
        connect)
            both connect connect --conns "$CONNECT_CONNS" --connect-timeout 30s --source-ips "$SOURCE_IPS"
            ;;
        ramp)
            # 50, 150, ... msgs/s to 1,000 recipients: 50k, 150k, ... up to ~2M deliveries/s.
            both ramp ramp --conns "$S1_CONNS" --rooms 1 --senders 10 --rate 50 --ramp-step 100 \
                --max-steps "$RAMP_STEPS" --p99-bound 10ms --warmup 1s --duration 3s --drain 3s --size 100
            ;;
        *)
            echo "unknown scenario $s (s1k s2k rooms hold hold19k connect ramp)" >&2
            exit 2
            ;;
    esac
done

summary() {
    python3 - "$OUT" <<'PY'
import glob, json, os, sys

out = sys.argv[1]


def load(name, server):
    try:
        rep = json.load(open(f"{out}/{name}-{server}.json"))
        srv = json.load(open(f"{out}/{name}-{server}.server.json"))
        return rep, srv
    except (OSError, ValueError):
        return None


def figures(rep, srv):
    m, lat, conn = rep["messages"], rep["latency_us"], rep["connections"]
    sc, cpu = rep["scenario"], srv["cpu_secs"]
    f = {"connected": conn["connected"], "server CPU s": cpu, "server peak RSS MiB": srv["rss_peak_kb"] / 1024}
    if sc in ("broadcast", "churn"):
        total = m["delivered"] + m.get("delivered_warmup", 0)
        f["msgs/s in"] = m["msgs_per_sec_in"]
        f["deliveries/s"] = m["deliveries_per_sec_out"]
        f["lost"] = m["lost"]
        f["p50 ms"] = lat["corrected"]["p50"] / 1000
        f["p99 ms"] = lat["corrected"]["p99"] / 1000
        f["p99.9 ms"] = lat["corrected"]["p99_9"] / 1000
        f["server CPU us/delivery"] = cpu * 1e6 / total if total else None
        f["generator cores used"] = rep["generator"]["cores_used"]
    elif sc == "hold":
        n = conn["connected"]
        f["disconnects"] = conn["disconnects"]
        f["server fds peak"] = srv["fds_peak"]
        f["RSS before KiB"] = srv["rss_before_kb"]
        f["RSS per conn B"] = (srv["rss_peak_kb"] - srv["rss_before_kb"]) * 1024 / n if n else None
    elif sc == "connect":
        n = conn["connected"]
        f["failed"] = conn["failed"]
        f["connects/s"] = conn["connects_per_sec"]
        f["handshake p50 ms"] = lat["handshake"]["p50"] / 1000
        f["handshake p99 ms"] = lat["handshake"]["p99"] / 1000
        f["server CPU us/handshake"] = cpu * 1e6 / n if n else None
    elif sc == "ramp":
        best = rep.get("ramp_max_sustainable_rate")
        f["max sustainable msgs/s"] = best
        f["= deliveries/s"] = best * rep["config"]["conns"] if best else 0
        for st in rep.get("ramp", []):
            f[f"step {st['rate']:.0f} msgs/s: p99 ms / lost"] = f"{st['p99_us'] / 1000:.2f} / {st['lost']}"
    f["roomcast-load exit"] = srv["load_exit"]
    return f


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


order = ["s1k", "s2k", "rooms-text", "rooms-json", "hold", "hold19k", "connect", "ramp"]
names = {os.path.basename(p)[: -len(".server.json")].rsplit("-", 1)[0] for p in glob.glob(f"{out}/*.server.json")}
for name in sorted(names, key=lambda n: (order.index(n) if n in order else 99, n)):
    a, b = load(name, "roomcast"), load(name, "baseline")
    if not (a or b):
        continue
    print(f"\n### {name}\n\n`{(a or b)[1]['command']}`\n")
    fa, fb = (figures(*a) if a else {}), (figures(*b) if b else {})
    print("| figure | roomcast | baseline | roomcast/baseline |")
    print("| --- | ---: | ---: | ---: |")
    for k in dict.fromkeys(list(fa) + list(fb)):
        x, y = fa.get(k), fb.get(k)
        num = (int, float)
        ratio = f"{x / y:.2f}" if isinstance(x, num) and isinstance(y, num) and y else "-"
        print(f"| {k} | {fmt(x)} | {fmt(y)} | {ratio} |")
PY
}

summary | tee "$OUT/summary.md"
