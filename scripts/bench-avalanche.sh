#!/usr/bin/env bash
# Reconnect avalanche benchmark (issue 15; BENCHMARKS.md "Worst day"; over TLS: issue 20): one
# roomcast with history on (defaults plus --rate-limit 0 --rate-limit-bytes 0, a fresh database under
# $OUT), in its own session (setsid), and roomcast-load avalanche in its own session, per mode:
#   drop     every client's TCP connection reset at once; clients stay away --outage, then reconnect
#            with since=<last id> within --jitter
#   restart  the server stopped with SIGTERM and started again on the same database
#            (scripts/restart-roomcast.sh); clients reconnect within --jitter, backing off like the
#            web client while it is down
# and per transport (TRANSPORTS, alternating within each of ROUNDS rounds):
#   plain         ws://
#   tls           wss:// (roomcast --tls-cert/--tls-key: an ECDSA P-256 leaf signed by a CA made for
#                 the run under $OUT/tls; the generator trusts the CA with --ca); every client keeps
#                 its own TLS session ticket and resumes with it when it reconnects
#   tls-noresume  wss:// with --no-tls-resumption (every reconnect a full handshake)
# A client whose first connect fails (over TLS, the server refuses handshakes beyond
# --tls-max-handshakes per shard by closing the connection) tries again, backing off
# (roomcast-load --connect-retries; counted as avalanche.first_connect_retries).
# Environment: CONNS (5000), ROOMS (50), RATE (1000 msgs/s in total, one sender per room), OUTAGE (3s),
# JITTER (1s), DURATION (15s, the measured window: a client still reconnecting when sends stop is
# never confirmed caught up and is counted as not_caught_up, outside the catch-up figures), MODES ("drop restart"), TRANSPORTS ("plain"; TLS=1 means "tls", TLS=1
# TLS_RESUMPTION=0 "tls-noresume"), ROUNDS (1), SOURCE_IPS (127.0.0.1-127.0.0.8 when CONNS > 20000,
# else none), SERVER_BIN (the roomcast binary, default target/release/roomcast: another build to compare), SERVER_ARGS (extra roomcast arguments, e.g. "--tls-max-handshakes 8192"), PORT_FROM (20000: the first port tried), LOAD_ARGS (extra roomcast-load arguments), OUT (out/avalanche), SKIP_BUILD=1.
# Reports: $OUT/<mode>-<transport>-r<round>.{json,stdout}, the server's /metrics lines about
# connections and TLS in .metrics, server logs beside them.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${OUT:-out/avalanche}
CONNS=${CONNS:-5000} ROOMS=${ROOMS:-50} RATE=${RATE:-1000} OUTAGE=${OUTAGE:-3s} JITTER=${JITTER:-1s}
DURATION=${DURATION:-15s}
MODES=${MODES:-"drop restart"}
ROUNDS=${ROUNDS:-1}
if [[ -z "${TRANSPORTS:-}" ]]; then
    if [[ "${TLS:-0}" == 1 ]]; then
        if [[ "${TLS_RESUMPTION:-1}" == 0 ]]; then TRANSPORTS=tls-noresume; else TRANSPORTS=tls; fi
    else
        TRANSPORTS=plain
    fi
fi
for t in $TRANSPORTS; do
    case "$t" in plain | tls | tls-noresume) ;; *) echo "unknown transport $t (plain tls tls-noresume)" >&2; exit 2 ;; esac
done
BIN="$ROOT/target/release"
SERVER_BIN=${SERVER_BIN:-$BIN/roomcast}
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then cargo build --release -p roomcast -p roomcast-load; fi
command -v setsid >/dev/null || { echo "setsid (util-linux) is required" >&2; exit 1; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if [[ " $TRANSPORTS " == *" tls"* ]]; then
    # A CA and a leaf it signs (rustls refuses a CA certificate as the server's own, and openssl's
    # `req -x509` makes one): ECDSA P-256, subjectAltName IP:127.0.0.1 and DNS:localhost.
    T="$OUT/tls"
    mkdir -p "$T"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$T/ca-key.pem" \
        -out "$T/ca.pem" -days 2 -subj "/CN=roomcast bench CA" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$T/key.pem" -out "$T/leaf.csr" \
        -subj /CN=127.0.0.1 2>/dev/null
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >"$T/leaf.ext"
    openssl x509 -req -in "$T/leaf.csr" -CA "$T/ca.pem" -CAkey "$T/ca-key.pem" -CAcreateserial -days 2 \
        -extfile "$T/leaf.ext" -out "$T/cert.pem" 2>/dev/null
fi
SRC=()
if [[ -n "${SOURCE_IPS:-}" ]]; then SRC=(--source-ips "$SOURCE_IPS"); elif ((CONNS > 20000)); then SRC=(--source-ips 127.0.0.1-127.0.0.8); fi
# A free port below the ephemeral range: a client reconnecting while nothing listens could otherwise
# connect to itself from that very port and keep it taken.
PORT=$(python3 -c '
import socket
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
import os
for p in range(int(os.environ.get("PORT_FROM", "20000")), low):
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

run_one() {
    local mode=$1 transport=$2 round=$3 tag="$1-$2-r$3"
    local args="--addr 127.0.0.1:$PORT --db $OUT/db/roomcast.db --rate-limit 0 --rate-limit-bytes 0${SERVER_ARGS:+ $SERVER_ARGS}"
    local url="ws://127.0.0.1:$PORT/ws/chat" client=()
    if [[ "$transport" != plain ]]; then
        args+=" --tls-cert $OUT/tls/cert.pem --tls-key $OUT/tls/key.pem"
        url="wss://127.0.0.1:$PORT/ws/chat"
        client=(--ca "$OUT/tls/ca.pem")
        [[ "$transport" == tls-noresume ]] && client+=(--no-tls-resumption)
    fi
    rm -rf "$OUT/db" && mkdir -p "$OUT/db"
    : >"$OUT/server-$tag.log"
    ROOMCAST_ARGS="$args" LOG="$OUT/server-$tag.log" PIDFILE="$OUT/server.pid" BIN="$SERVER_BIN" \
        scripts/restart-roomcast.sh start
    local outage
    case "$mode" in
        drop) outage=(--drop --outage "$OUTAGE") ;;
        restart)
            outage=(--restart-cmd "ROOMCAST_ARGS='$args' LOG='$OUT/server-$tag.log' PIDFILE='$OUT/server.pid' BIN='$SERVER_BIN' $ROOT/scripts/restart-roomcast.sh TERM")
            ;;
        *) echo "unknown mode $mode" >&2; exit 2 ;;
    esac
    echo "== round $round: avalanche $mode / $transport: $CONNS clients, $ROOMS rooms, $RATE msgs/s, jitter $JITTER" >&2
    local status=0
    # shellcheck disable=SC2086 # LOAD_ARGS is a list of words
    setsid "$BIN/roomcast-load" avalanche --format json --url "$url" "${client[@]}" \
        --conns "$CONNS" --rooms "$ROOMS" --senders "$ROOMS" --rate "$RATE" --size 100 \
        --warmup 2s --duration "$DURATION" --outage-at 2s --jitter "$JITTER" --drain 30s --connect-timeout 30s \
        "${outage[@]}" "${SRC[@]}" ${LOAD_ARGS:-} --server-pid-file "$OUT/server.pid" --json "$OUT/$tag.json" --quiet \
        | tee "$OUT/$tag.stdout" || status=$?
    echo "roomcast-load exit $status" >&2
    # The server's own counts (TLS handshakes refused over the bound, by reason) before it stops.
    local scheme=http curl_ca=()
    [[ "$transport" != plain ]] && scheme=https curl_ca=(--cacert "$OUT/tls/ca.pem")
    curl -s --max-time 10 "${curl_ca[@]}" "$scheme://127.0.0.1:$PORT/metrics" \
        | grep -E '^roomcast_(tls|connections)' >"$OUT/$tag.metrics" || true
    cleanup
    sleep 0.5
}

for mode in $MODES; do
    for round in $(seq 1 "$ROUNDS"); do
        for transport in $TRANSPORTS; do
            run_one "$mode" "$transport" "$round"
        done
    done
done
