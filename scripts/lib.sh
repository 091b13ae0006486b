# Shell functions shared by the scripts in this folder; they `cd` to the repository root, then `. scripts/lib.sh`.

# wait_listening LOG PID: waits (up to 20 s) until the roomcast process PID, started with
# `--addr 127.0.0.1:0` and its stdout in LOG, has printed `listening on http(s)://127.0.0.1:PORT`, and
# prints PORT. Fails (status 1, the log on stderr) if the process exits first or prints no address.
# Use as `PORT=$(wait_listening "$log" "$pid")` under `set -e`.
wait_listening() {
    local log=$1 pid=$2 port
    for _ in $(seq 1 400); do
        grep -Eq '^listening on https?://' "$log" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || { echo "roomcast exited:" >&2; cat "$log" >&2; return 1; }
        sleep 0.05
    done
    port=$(sed -En 's|^listening on https?://127\.0\.0\.1:([0-9]*)$|\1|p' "$log")
    [[ -n "$port" ]] || { echo "roomcast printed no address; see $log" >&2; return 1; }
    echo "$port"
}
