#!/usr/bin/env bash
# End-to-end load benchmarks under deployment conditions: roomcast with its defaults (history on,
# database in a fresh directory on the same disk), roomcast --no-persist and the careful
# tokio-tungstenite baseline (roomcast-baseline), in one run, on loopback, with roomcast-load on the
# same machine.
#
# How a run is done (see BENCHMARKS.md, "Method"):
# - Every server is started in its own process session (`setsid`), as a service manager or container
#   runs it: Linux then gives it its own CPU share (autogroup), so it cannot borrow the generator's.
#   The generator runs in its own session too. `setsid` started in the background from this
#   non-interactive script is not a process-group leader, so it execs in place: $! is the program's
#   own PID (checked: the script fails if a server is not its session's leader), and every process
#   is killed and reaped by that PID.
# - roomcast runs with its defaults except `--rate-limit 0 --rate-limit-bytes 0` (the per-connection
#   limits would refuse a load test's senders) and `--db <fresh dir>/roomcast.db` (under $OUT, on the
#   disk the repository is on). Variants (VARIANTS, space-separated, in this order within a round):
#     default    roomcast defaults (history on)
#     nopersist  roomcast --no-persist
#     shards1    roomcast defaults with --shards 1
#     shards2    roomcast defaults with --shards 2 (one per core on this machine; the default is one
#                per core but one)
#     baseline   roomcast-baseline (careful tokio + tokio-tungstenite; its /stats lag counter is read
#                after every run and reported next to the generator's loss count)
#     tls        roomcast defaults with --tls-cert/--tls-key (clients use wss:// with --ca)
#     deflate    roomcast defaults; the generator offers permessage-deflate (--deflate), which the
#                server accepts by default (compare with default; for chat-like payloads run with
#                LOAD_ARGS="--format json --text chat")
#     baselinetls roomcast-baseline with --tls-cert/--tls-key (tokio-rustls)
#                (the pair: a self-signed certificate for 127.0.0.1 made with openssl under $OUT/tls,
#                TLS_KEY=ec (P-256, default) or TLS_KEY=rsa (RSA-2048))
#     alt        roomcast defaults, but the binary $ALT_BIN/roomcast (another build, e.g. the commit
#                before a restructure: scripts/bench-ab.sh runs VARIANTS="default alt baseline" with
#                BIN=before, ALT_BIN=after; the summary then prints alt / default per round)
#     alttls     tls, but with the binary $ALT_BIN/roomcast (the same comparison over TLS: the summary
#                prints alttls / tls per round)
#   Default: "default nopersist baseline"; the heavy scenario adds shards1 and shards2 (HEAVY_VARIANTS overrides).
#   `rooms` runs only the roomcast variants.
# - ROUNDS rounds (default 3), alternating servers within each scenario: A B C A B C ... Every run
#   gets a fresh server process (so RSS and CPU belong to that run). Every round's figures are kept
#   (out/<scenario>-<variant>-r<round>.{json,server.json,stdout}) and printed, then the medians and
#   the ratios against the baseline computed from this run only (also written to out/summary.md).
#
# Usage: scripts/bench-e2e.sh [scenario...]
#   scenarios: s1k heavy (alias s2k) rooms hold hold19k connect ramp edits typing
#   (default: the first seven; edits and typing run only when named)
# Environment: QUICK=1 shortens durations and sizes for a smoke run (ROUNDS defaults to 2 then);
#              ROUNDS=n; VARIANTS="..."; HEAVY_VARIANTS="..."; OUT=dir (default: out);
#              LOAD_ARGS="..." extra roomcast-load arguments for every run (e.g. "--connect-rate 2000":
#              TLS servers close connections over their handshake bound instead of queueing them);
#              SIZE=n message payload bytes (100); S1_RATE msgs/s of s1k (200); S1_CONNS, HOLD_CONNS override those scenarios' client counts;
#              SKIP_BUILD=1 skips `cargo build --release --workspace`;
#              BIN=dir takes roomcast, roomcast-baseline and roomcast-load from dir instead of
#              target/release (implies SKIP_BUILD=1); ALT_BIN=dir enables the `alt` variant.
# Every load run targets 127.0.0.1 and is bounded in time and count.
set -euo pipefail

cd "$(dirname "$0")/.."
. scripts/lib.sh
ROOT=$(pwd)
OUT=${OUT:-out}
QUICK=${QUICK:-0}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if [[ -n "${BIN:-}" ]]; then
    BIN=$(cd "$BIN" && pwd)
    SKIP_BUILD=1
else
    BIN="$ROOT/target/release"
fi
LOAD="$BIN/roomcast-load"
ALT_BIN=${ALT_BIN:+$(cd "$ALT_BIN" && pwd)}
SOURCE_IPS=127.0.0.1-127.0.0.8
CLK_TCK=$(getconf CLK_TCK)

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    cargo build --release --workspace
fi
for b in roomcast roomcast-baseline roomcast-load; do
    [[ -x "$BIN/$b" ]] || { echo "missing $BIN/$b" >&2; exit 1; }
done
if [[ -n "$ALT_BIN" ]]; then
    [[ -x "$ALT_BIN/roomcast" ]] || { echo "missing $ALT_BIN/roomcast" >&2; exit 1; }
fi
command -v setsid >/dev/null || { echo "setsid (util-linux) is required" >&2; exit 1; }

# Scenario sizes (QUICK=1: a small smoke run).
if [[ "$QUICK" == 1 ]]; then
    ROUNDS=${ROUNDS:-2}
    DUR=2s WARM=1s DRAIN=3s
    S1_CONNS=200 S2_CONNS=400 ROOMS_CONNS=500 HOLD_CONNS=2000 HOLD19_CONNS=3000 CONNECT_CONNS=2000
    RAMP_STEPS=3 HOLD_DUR=2s
else
    ROUNDS=${ROUNDS:-3}
    DUR=10s WARM=2s DRAIN=5s
    S1_CONNS=${S1_CONNS:-1000} S2_CONNS=2000 ROOMS_CONNS=5000 HOLD_CONNS=${HOLD_CONNS:-15000} HOLD19_CONNS=19000
    CONNECT_CONNS=15000
    RAMP_STEPS=20 HOLD_DUR=10s
fi
if [[ -n "${VARIANTS:-}" ]]; then
    HEAVY_VARIANTS=${HEAVY_VARIANTS:-$VARIANTS}
else
    VARIANTS="default nopersist baseline"
    HEAVY_VARIANTS=${HEAVY_VARIANTS:-"default nopersist shards1 shards2 baseline"}
fi
for v in $VARIANTS $HEAVY_VARIANTS; do
    case "$v" in default | nopersist | shards1 | shards2 | baseline | tls | baselinetls | deflate) ;;
        alt | alttls) [[ -n "$ALT_BIN" ]] || { echo "variant $v needs ALT_BIN=dir" >&2; exit 2; } ;;
        *) echo "unknown variant $v" >&2; exit 2 ;;
    esac
done

SERVER_PID="" LOAD_PID="" SAMPLER_PID="" DB_DIR=""

# The TLS variants' certificate and key (made once per run).
TLS_DIR="$OUT/tls"
if [[ " $VARIANTS $HEAVY_VARIANTS " =~ \ (tls|alttls|baselinetls)\  ]]; then
    mkdir -p "$TLS_DIR"
    case "${TLS_KEY:-ec}" in
        ec) newkey=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1) ;;
        rsa) newkey=(-newkey rsa:2048) ;;
        *) echo "TLS_KEY must be ec or rsa" >&2; exit 2 ;;
    esac
    # A leaf, not a CA (openssl's default v3_ca extensions would make it one, which clients refuse).
    openssl req -x509 "${newkey[@]}" -nodes -keyout "$TLS_DIR/key.pem" -out "$TLS_DIR/cert.pem" -days 2 \
        -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE \
        -addext keyUsage=digitalSignature,keyEncipherment -addext extendedKeyUsage=serverAuth 2>/dev/null
fi
TLS_ARGS=(--tls-cert "$TLS_DIR/cert.pem" --tls-key "$TLS_DIR/key.pem")

kill_pid() {
    local pid=$1
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
}

stop_all() {
    kill_pid "$SAMPLER_PID"
    kill_pid "$LOAD_PID"
    kill_pid "$SERVER_PID"
    SAMPLER_PID="" LOAD_PID="" SERVER_PID=""
    if [[ -n "$DB_DIR" ]]; then rm -rf "$DB_DIR"; fi
    DB_DIR=""
}
trap stop_all EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# session_of PID: the session id (field 6 of /proc/PID/stat).
session_of() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $4}'; }

# The program started with `setsid cmd &` must be its own session's leader.
check_session() {
    local pid=$1 what=$2 sid
    sid=$(session_of "$pid")
    if [[ "$sid" != "$pid" ]]; then
        echo "$what (pid $pid) is in session $sid, not its own: setsid forked?" >&2
        exit 1
    fi
}

wait_port() {
    local port=$1 pid=$2
    for _ in $(seq 1 400); do
        if python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),0.2).close()" 2>/dev/null; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || { echo "server $pid exited" >&2; exit 1; }
        sleep 0.05
    done
    echo "server $pid did not listen on $port" >&2
    exit 1
}

# start_server VARIANT LOGNAME: starts a fresh server in its own session; sets SERVER_PID, SERVER_PORT.
start_server() {
    local variant=$1 log="$OUT/$2.server.log"
    : >"$log"
    if [[ "$variant" == baseline || "$variant" == baselinetls ]]; then
        SERVER_PORT=$(free_port)
        local tls=()
        [[ "$variant" == baselinetls ]] && tls=("${TLS_ARGS[@]}")
        setsid "$BIN/roomcast-baseline" --addr "127.0.0.1:$SERVER_PORT" "${tls[@]}" >"$log" 2>&1 &
        SERVER_PID=$!
        wait_port "$SERVER_PORT" "$SERVER_PID"
    else
        local args=(--addr 127.0.0.1:0 --rate-limit 0 --rate-limit-bytes 0)
        if [[ "$variant" == nopersist ]]; then
            args+=(--no-persist)
        else
            DB_DIR=$(mktemp -d "$OUT/db.XXXXXX")
            args+=(--db "$DB_DIR/roomcast.db")
        fi
        [[ "$variant" == shards1 ]] && args+=(--shards 1)
        [[ "$variant" == shards2 ]] && args+=(--shards 2)
        [[ "$variant" == tls || "$variant" == alttls ]] && args+=("${TLS_ARGS[@]}")
        local exe="$BIN/roomcast"
        [[ "$variant" == alt || "$variant" == alttls ]] && exe="$ALT_BIN/roomcast"
        setsid "$exe" "${args[@]}" >"$log" 2>&1 &
        SERVER_PID=$!
        SERVER_PORT=$(wait_listening "$log" "$SERVER_PID")
    fi
    check_session "$SERVER_PID" "$variant server"
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

# run NAME VARIANT ROUND roomcast-load-args...: one fresh server, one load run (URL appended), the
# report plus the server's resource use; the server is stopped afterwards.
run() {
    local name=$1 variant=$2 round=$3
    shift 3
    local tag="$name-$variant-r$round"
    start_server "$variant" "$tag"
    local report="$OUT/$tag.json" samples="$OUT/$tag.samples"
    : >"$samples"
    local rss0 cpu0 fds0 status=0 gen_sid=""
    rss0=$(rss_kb "$SERVER_PID")
    fds0=$(nfds "$SERVER_PID")
    cpu0=$(cpu_ticks "$SERVER_PID")
    sample "$SERVER_PID" "$samples" &
    SAMPLER_PID=$!
    echo "== round $round: $name / $variant: roomcast-load $*" >&2
    local url=(--url "ws://127.0.0.1:$SERVER_PORT/ws/chat")
    if [[ "$variant" == tls || "$variant" == alttls || "$variant" == baselinetls ]]; then
        url=(--url "wss://127.0.0.1:$SERVER_PORT/ws/chat" --ca "$TLS_DIR/cert.pem")
    fi
    [[ "$variant" == deflate ]] && url+=(--deflate)
    # shellcheck disable=SC2086 # LOAD_ARGS is a list of words
    setsid "$LOAD" "$@" ${LOAD_ARGS:-} "${url[@]}" --json "$report" --quiet \
        >"$OUT/$tag.stdout" 2>&1 &
    LOAD_PID=$!
    local gen_pid=$LOAD_PID
    sleep 0.1
    gen_sid=$(session_of "$gen_pid" 2>/dev/null || true)
    wait "$LOAD_PID" || status=$?
    LOAD_PID=""
    local cpu1 lagged=None
    cpu1=$(cpu_ticks "$SERVER_PID")
    kill_pid "$SAMPLER_PID"
    SAMPLER_PID=""
    if [[ "$variant" == baseline ]]; then
        lagged=$(python3 -c "import json,urllib.request; print(json.load(urllib.request.urlopen('http://127.0.0.1:$SERVER_PORT/stats', timeout=30))['lagged'])" || echo None)
    elif [[ "$variant" == baselinetls ]]; then
        lagged=$(python3 -c "import json,ssl,urllib.request; print(json.load(urllib.request.urlopen('https://127.0.0.1:$SERVER_PORT/stats', timeout=30, context=ssl._create_unverified_context()))['lagged'])" || echo None)
    fi
    python3 - "$samples" "$OUT/$tag.server.json" "$@" <<PY
import json, sys
rows = [l.split() for l in open(sys.argv[1]) if len(l.split()) == 2]
rss = [int(r[0]) for r in rows]; fds = [int(r[1]) for r in rows]
json.dump({
    "scenario": "$name", "variant": "$variant", "round": $round,
    "pid": $SERVER_PID, "generator_pid": $gen_pid, "generator_session": "$gen_sid", "load_exit": $status,
    "rss_before_kb": $rss0, "rss_peak_kb": max(rss + [$rss0]), "hwm_kb": $(hwm_kb "$SERVER_PID"),
    "fds_before": $fds0, "fds_peak": max(fds + [$fds0]),
    "cpu_secs": ($cpu1 - $cpu0) / $CLK_TCK,
    "baseline_lagged": $lagged,
    "command": "roomcast-load " + " ".join(sys.argv[3:]),
}, open(sys.argv[2], "w"), indent=1)
PY
    if [[ -n "$gen_sid" && "$gen_sid" != "$gen_pid" ]]; then
        echo "   roomcast-load was not its own session's leader (session $gen_sid)" >&2
        exit 1
    fi
    if [[ $status -ne 0 ]]; then
        echo "   (roomcast-load exited $status; see $OUT/$tag.stdout)" >&2
    fi
    stop_all
}

# rounds NAME "VARIANTS" roomcast-load-args...: ROUNDS rounds of every variant, alternating.
rounds() {
    local name=$1 variants=$2
    shift 2
    for round in $(seq 1 "$ROUNDS"); do
        for v in $variants; do
            run "$name" "$v" "$round" "$@"
        done
    done
}

roomcast_variants() { for v in $VARIANTS; do [[ "$v" == baseline ]] || printf '%s ' "$v"; done; }

TRAFFIC=(--warmup "$WARM" --duration "$DUR" --drain "$DRAIN" --size "${SIZE:-100}")
SCENARIOS=("$@")
[[ ${#SCENARIOS[@]} -gt 0 ]] || SCENARIOS=(s1k heavy rooms hold hold19k connect ramp)

for s in "${SCENARIOS[@]}"; do
    case "$s" in
        s1k)
            # 1,000 clients, one room, 10 senders × 20 msgs/s: 200,000 deliveries/s.
            rounds s1k "$VARIANTS" broadcast --conns "$S1_CONNS" --rooms 1 --senders 10 --rate "${S1_RATE:-200}" "${TRAFFIC[@]}"
            ;;
        heavy | s2k)
            # 2,000 clients, one room, 20 senders × 50 msgs/s: 2,000,000 deliveries/s.
            rounds heavy "$HEAVY_VARIANTS" broadcast --conns "$S2_CONNS" --rooms 1 --senders 20 --rate 1000 \
                "${TRAFFIC[@]}" --source-ips "$SOURCE_IPS"
            ;;
        rooms)
            rounds rooms-text "$(roomcast_variants)" broadcast --format text --conns "$ROOMS_CONNS" --rooms 50 \
                --senders 50 --rate 1000 "${TRAFFIC[@]}" --source-ips "$SOURCE_IPS"
            rounds rooms-json "$(roomcast_variants)" broadcast --format json --conns "$ROOMS_CONNS" --rooms 50 \
                --senders 50 --rate 1000 "${TRAFFIC[@]}" --source-ips "$SOURCE_IPS"
            ;;
        hold)
            rounds hold "$VARIANTS" hold --conns "$HOLD_CONNS" --duration "$HOLD_DUR" --connect-timeout 30s \
                --source-ips "$SOURCE_IPS"
            ;;
        hold19k)
            rounds hold19k "$VARIANTS" hold --conns "$HOLD19_CONNS" --duration "$HOLD_DUR" --connect-timeout 30s \
                --source-ips "$SOURCE_IPS"
            ;;
        connect)
            rounds connect "$VARIANTS" connect --conns "$CONNECT_CONNS" --connect-timeout 30s \
                --source-ips "$SOURCE_IPS"
            ;;
        ramp)
            # 50, 150, ... msgs/s to 1,000 recipients: 50k, 150k, ... up to ~2M deliveries/s.
            rounds ramp "$VARIANTS" ramp --conns "$S1_CONNS" --rooms 1 --senders 10 --rate 50 --ramp-step 100 \
                --max-steps "$RAMP_STEPS" --p99-bound 10ms --warmup 1s --duration 3s --drain 3s --size 100
            ;;
        edits)
            # s1k in the JSON format (200,000 deliveries/s), with and without 10 % of the sends being
            # edits of the sender's previous message (history on: an edit is checked in the store),
            # alternating within each round.
            for round in $(seq 1 "$ROUNDS"); do
                for pct in 0 10; do
                    run "edits$pct" default "$round" broadcast --format json --conns "$S1_CONNS" --rooms 1 \
                        --senders 10 --rate 200 --edit-fraction "0.$pct" "${TRAFFIC[@]}"
                done
            done
            ;;
        typing)
            # 1,000 clients in one room, all typing every 500 ms (4 × the server's forwarding limit of
            # one per 2 s), beside 10 senders × 2 msgs/s; against the same room without typists.
            for round in $(seq 1 "$ROUNDS"); do
                for typists in 0 "$S1_CONNS"; do
                    run "typing$typists" default "$round" broadcast --format json --conns "$S1_CONNS" --rooms 1 \
                        --senders 10 --rate 20 --typists "$typists" --typing-interval 500ms "${TRAFFIC[@]}"
                done
            done
            ;;
        *)
            echo "unknown scenario $s (s1k heavy rooms hold hold19k connect ramp edits typing)" >&2
            exit 2
            ;;
    esac
done

{
    echo "# bench-e2e: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    if [[ "$BIN" != "$ROOT/target/release" || -n "$ALT_BIN" ]]; then
        # Directories filled by `scripts/bench-ab.sh collect` carry the commit they were built from.
        echo
        echo "binaries: BIN=$BIN (commit $(cat "$BIN/COMMIT" 2>/dev/null || echo '?'))${ALT_BIN:+; alt: ALT_BIN=$ALT_BIN (commit $(cat "$ALT_BIN/COMMIT" 2>/dev/null || echo '?'))}"
    fi
    echo
    echo "$(nproc) cores; load average before the summary: $(cut -d' ' -f1-3 /proc/loadavg);" \
        "sched_autogroup_enabled=$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || echo '?')" \
        "(1: each session gets its own CPU share); rounds: $ROUNDS; variants: $VARIANTS; heavy: $HEAVY_VARIANTS"
    python3 "$ROOT/scripts/bench-summary.py" "$OUT"
} | tee "$OUT/summary.md"
