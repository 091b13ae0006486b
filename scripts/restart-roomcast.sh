#!/bin/sh
# Starts roomcast, or stops the running one with a signal and starts it again with the same
# arguments (the avalanche's --restart-cmd, used by scripts/bench-avalanche.sh and
# loadtest/tests/avalanche.rs). Environment: BIN (the roomcast binary), ROOMCAST_ARGS (its
# arguments, word-split), LOG (appended to), PIDFILE (the pid, rewritten).
# Usage: restart-roomcast.sh start | SIGNAL (TERM, KILL, ...)
# Returns once the new server listens. A start that fails right away (the port still taken, e.g. by
# a client that connected to itself while nothing listened) is retried, up to 50 times. The server
# runs in its own session (setsid) with its output in LOG, so it never holds the caller's stdout.
set -eu
if [ "$1" != start ]; then
    old=$(cat "$PIDFILE")
    kill -"$1" "$old"
    # Gone, or a zombie (it is not this shell's child).
    while [ -r "/proc/$old/stat" ] && [ "$(sed 's/^.*) //' "/proc/$old/stat" | cut -d' ' -f1)" != Z ]; do
        sleep 0.02
    done
fi
tries=0
while :; do
    before=$(grep -c '^listening on' "$LOG" 2>/dev/null || true)
    # shellcheck disable=SC2086
    setsid "$BIN" $ROOMCAST_ARGS >>"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE.new"
    mv "$PIDFILE.new" "$PIDFILE"
    pid=$(cat "$PIDFILE")
    i=0
    while [ "$(grep -c '^listening on' "$LOG" 2>/dev/null || true)" -le "${before:-0}" ]; do
        if ! kill -0 "$pid" 2>/dev/null || [ "$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" = Z ]; then
            break
        fi
        i=$((i + 1))
        [ "$i" -lt 3000 ] || { echo "roomcast did not listen within 60 s; see $LOG" >&2; exit 1; }
        sleep 0.02
    done
    [ "$(grep -c '^listening on' "$LOG" 2>/dev/null || true)" -le "${before:-0}" ] || exit 0
    tries=$((tries + 1))
    [ "$tries" -lt 50 ] || { echo "roomcast did not start; see $LOG" >&2; exit 1; }
    sleep 0.1
done
