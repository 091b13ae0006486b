#!/usr/bin/env bash
# Cost of the cluster-wide listings (issue 21; BENCHMARKS.md "Cluster-wide listings"): a local
# redis-server and two roomcast nodes (history on, an API key), each in its own session; N JSON
# clients (distinct users u0..) held on node a in 50 rooms. Prints what node a's listing rows cost
# in Redis (memory, commands and CPU over 10 s of the steady state, node a's redis-pub CPU), how
# long `GET /api/rooms` and a connections lookup take from node b, and the deletes once the crowd
# leaves. Loopback only, bounded (the hold lasts 40 s), every process it starts is stopped.
#   N=5000 scripts/bench-listings.sh     (release binaries in target/release)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
N=${N:-5000}
BIN=${BIN:-target/release}
KEY=bench-listings-api-key
D=$(mktemp -d)
PORT=$(( 26000 + RANDOM % 1000 ))
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$D"' EXIT
setsid redis-server --port "$PORT" --save '' --appendonly no >"$D/redis.log" 2>&1 &
RP=$!; PIDS+=("$RP")
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
node() {
    setsid "$BIN/roomcast" --addr 127.0.0.1:0 --db "$D/$1.db" --redis-url "redis://127.0.0.1:$PORT" \
        --node-id "$1" --api-key "$KEY" --log-level warn >"$D/$1.out" 2>"$D/$1.err" &
}
node a; A=$!; PIDS+=("$A")
node b; B=$!; PIDS+=("$B")
AA=127.0.0.1:$(wait_listening "$D/a.out" "$A"); BA=127.0.0.1:$(wait_listening "$D/b.out" "$B")
api() { curl -s -H "Authorization: Bearer $KEY" "$@"; }
mem() { redis-cli -p "$PORT" info memory | grep '^used_memory:' | cut -d: -f2 | tr -d '\r'; }
m0=$(mem)
setsid "$BIN/roomcast-load" hold --url "ws://$AA/ws/chat" --format json --rooms 50 --conns "$N" --duration 40s \
    --connect-rate 1000 --connect-timeout 30s --source-ips 127.0.0.1-127.0.0.8 --quiet >"$D/load.txt" 2>&1 &
L=$!; PIDS+=("$L")
sleep $(( N / 1000 + 8 ))
m1=$(mem)
members=$(api "http://$AA/api/rooms" | python3 -c 'import json,sys; print(sum(r["members"] for r in json.load(sys.stdin)["rooms"]))')
echo "users connected on node a: $members of $N"
echo "redis used_memory: $m0 before, $m1 with the rows: $(( (m1 - m0) / N )) B per user"
K=$(redis-cli -p "$PORT" --scan --pattern 'rc:listing:*' | head -1)
echo "listing hash $K: $(redis-cli -p "$PORT" hlen "$K") rows, $(redis-cli -p "$PORT" memory usage "$K") bytes"
redis-cli -p "$PORT" config resetstat >/dev/null
ticks() { awk '{print $14+$15}' "$1"; }
pub_stat=$(grep -l '^redis-pub$' /proc/"$A"/task/*/comm | head -1 | sed 's/comm$/stat/')
r0=$(ticks /proc/"$RP"/stat); p0=$(ticks "$pub_stat")
sleep 10
r1=$(ticks /proc/"$RP"/stat); p1=$(ticks "$pub_stat")
echo "steady 10 s: redis-server CPU $(( (r1 - r0) * 10 )) ms, node a's redis-pub thread $(( (p1 - p0) * 10 )) ms"
redis-cli -p "$PORT" info commandstats | grep '^cmdstat' | cut -d, -f1,2
for _ in 1 2 3 4 5; do
    api -o /dev/null -w "GET /api/rooms from node b: %{http_code} in %{time_total} s\n" "http://$BA/api/rooms"
done
api -o /dev/null -w "GET /api/users/u7/connections from node b: %{http_code} in %{time_total} s\n" \
    "http://$BA/api/users/u7/connections"
redis-cli -p "$PORT" config resetstat >/dev/null
wait "$L" || true
sleep 3
echo "after the crowd left: $(redis-cli -p "$PORT" hlen "$K") rows; $(redis-cli -p "$PORT" info commandstats | grep '^cmdstat_hdel' | cut -d, -f1,2)"
