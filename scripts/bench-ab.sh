#!/usr/bin/env bash
# Before/after comparison of two roomcast builds, for changes that must not change behaviour or speed
# (a pure restructure: issue 13). Two steps:
#
#   scripts/bench-ab.sh collect DIR [SRC]
#       Builds the checkout SRC (default: this repository) with `cargo build --release --workspace`
#       and `cargo bench --no-run`, and copies into DIR, outside any target directory so that later
#       builds cannot overwrite them: roomcast, roomcast-load, roomcast-baseline and every criterion
#       bench executable as bench-<name> (benches/<name>.rs); DIR/COMMIT holds `git rev-parse HEAD`,
#       DIR/BUILD the date, rustc version and whether the tree had uncommitted changes. Refuses a
#       non-empty DIR unless FORCE=1.
#
#   scripts/bench-ab.sh A B
#       A and B are two such directories (A = before, B = after). Everything alternates A, B, A, B …
#       so that slow drifts of a busy machine fall on both sides:
#       1. criterion: ROUNDS rounds; in each round every bench executable runs on side A then side B,
#          `<exe> --bench --noplot --warm-up-time 1 --measurement-time 3`, each in its own session
#          (setsid) and with its own CRITERION_HOME per side (saved baselines never mix). Every
#          benchmark's estimate (the middle of criterion's `time: [low mid high]`) is kept; the table
#          shows each round's A and B, the median over rounds per side and median B / median A.
#       2. end to end: scripts/bench-e2e.sh with BIN=A, ALT_BIN=B and VARIANTS="default alt baseline"
#          on the `s1k` (200k deliveries/s) and `heavy` (2M deliveries/s) scenarios: per round a
#          fresh roomcast from A (with its defaults), one from B, then the tokio baseline; the load
#          generator and the baseline are A's binaries for both sides, so only the server differs.
#          Its summary gives alt / default (= B / A) for the medians and, per round, for p50, p99
#          and CPU per delivery.
#       Output: OUT/criterion.md, OUT/e2e/summary.md (every run's files under OUT/e2e), and both
#       together in OUT/summary.md, which is printed at the end.
#
# Environment: ROUNDS (3; 2 with QUICK=1); QUICK=1 smoke run (criterion 0.2 s warm-up and 0.5 s
#   measurement, bench-e2e's QUICK sizes); OUT (out/bench-ab); PARTS ("criterion e2e");
#   SCENARIOS ("s1k heavy"); E2E_VARIANTS ("default alt baseline"); BENCHES (every bench-* in A).
# Every load run targets 127.0.0.1 and is bounded; every process started is killed and reaped by PID.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

# ---------------------------------------------------------------------------------------------
# collect DIR [SRC]
# ---------------------------------------------------------------------------------------------
if [[ "${1:-}" == collect ]]; then
    [[ $# -ge 2 && $# -le 3 ]] || usage
    DEST=$2
    SRC=$(cd "${3:-$ROOT}" && pwd)
    if [[ -d "$DEST" && -n "$(ls -A "$DEST")" && "${FORCE:-0}" != 1 ]]; then
        echo "$DEST is not empty (FORCE=1 to overwrite)" >&2
        exit 1
    fi
    mkdir -p "$DEST"
    DEST=$(cd "$DEST" && pwd)
    cd "$SRC"
    TARGET=${CARGO_TARGET_DIR:-$SRC/target}
    cargo build --release --workspace
    # Copied before `cargo bench`: it rebuilds target/release/roomcast with the bench profile (debug
    # info, 58 MB instead of 8), and the servers measured must be the release build that ships.
    for b in roomcast roomcast-load roomcast-baseline; do
        cp "$TARGET/release/$b" "$DEST/$b"
    done
    names=()
    for f in benches/*.rs; do names+=("$(basename "$f" .rs)"); done
    bench_args=()
    for n in "${names[@]}"; do bench_args+=(--bench "$n"); done
    # The executables' paths from cargo's own messages (not from the human-readable lines).
    cargo bench --no-run "${bench_args[@]}" --message-format=json-render-diagnostics >"$DEST/.cargo-bench.json"
    python3 - "$DEST" "${names[@]}" <<'PY'
import json, shutil, sys
dest, names = sys.argv[1], sys.argv[2:]
found = {}
for line in open(f"{dest}/.cargo-bench.json"):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "bench" in m["target"]["kind"]:
        found[m["target"]["name"]] = m["executable"]
missing = [n for n in names if n not in found]
if missing:
    sys.exit(f"cargo reported no executable for bench(es) {missing}")
for n in names:
    shutil.copy2(found[n], f"{dest}/bench-{n}")
    print(f"bench-{n} <- {found[n]}")
PY
    rm -f "$DEST/.cargo-bench.json"
    git rev-parse HEAD >"$DEST/COMMIT"
    {
        echo "commit $(git rev-parse HEAD) ($(git log -1 --format=%s))"
        echo "source $SRC"
        echo "built $(date -u '+%Y-%m-%d %H:%M:%S UTC') with $(rustc --version)"
        if [[ -n "$(git status --porcelain --untracked-files=no)" ]]; then
            echo "the working tree had uncommitted changes to tracked files:"
            git status --porcelain --untracked-files=no
        else
            echo "clean working tree"
        fi
    } >"$DEST/BUILD"
    echo "collected into $DEST:"
    ls -l "$DEST"
    exit 0
fi

# ---------------------------------------------------------------------------------------------
# A B
# ---------------------------------------------------------------------------------------------
[[ $# -eq 2 ]] || usage
A=$(cd "$1" && pwd)
B=$(cd "$2" && pwd)
QUICK=${QUICK:-0}
if [[ "$QUICK" == 1 ]]; then
    ROUNDS=${ROUNDS:-2}
    CRIT_ARGS=(--warm-up-time 0.2 --measurement-time 0.5)
else
    ROUNDS=${ROUNDS:-3}
    CRIT_ARGS=(--warm-up-time 1 --measurement-time 3)
fi
OUT=${OUT:-out/bench-ab}
PARTS=${PARTS:-criterion e2e}
SCENARIOS=${SCENARIOS:-s1k heavy}
E2E_VARIANTS=${E2E_VARIANTS:-default alt baseline}
if [[ -z "${BENCHES:-}" ]]; then
    BENCHES=$(cd "$A" && for f in bench-*; do [[ -x "$f" ]] && printf '%s ' "${f#bench-}"; done)
fi
for d in "$A" "$B"; do
    for b in roomcast roomcast-load roomcast-baseline; do
        [[ -x "$d/$b" ]] || { echo "missing $d/$b (fill it with: $0 collect $d)" >&2; exit 1; }
    done
done
if [[ " $PARTS " == *" criterion "* ]]; then
    for n in $BENCHES; do
        for d in "$A" "$B"; do
            [[ -x "$d/bench-$n" ]] || { echo "missing $d/bench-$n" >&2; exit 1; }
        done
    done
fi
command -v setsid >/dev/null || { echo "setsid (util-linux) is required" >&2; exit 1; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

CHILD_PID=""
kill_child() {
    if [[ -n "$CHILD_PID" ]] && kill -0 "$CHILD_PID" 2>/dev/null; then
        kill "$CHILD_PID" 2>/dev/null || true
        wait "$CHILD_PID" 2>/dev/null || true
    fi
    CHILD_PID=""
}
trap kill_child EXIT
trap 'exit 130' INT TERM

# wait_child WHAT WHERE: waits for the job just started in the background ($!), which the EXIT trap
# kills if this script is stopped meanwhile; exits 1 naming WHAT and where its output is if it failed.
wait_child() {
    CHILD_PID=$!
    local status=0
    wait "$CHILD_PID" || status=$?
    CHILD_PID=""
    if [[ $status -ne 0 ]]; then
        echo "$1 exited $status; see $2" >&2
        exit 1
    fi
}

commit_of() { cat "$1/COMMIT" 2>/dev/null || echo '?'; }
START=$(date +%s)
echo "bench-ab: A = $A (commit $(commit_of "$A")), B = $B (commit $(commit_of "$B")); rounds: $ROUNDS;" \
    "parts: $PARTS; out: $OUT" >&2

# --- 1. criterion --------------------------------------------------------------------------------
if [[ " $PARTS " == *" criterion "* ]]; then
    CRIT=$OUT/criterion
    rm -rf "$CRIT"
    mkdir -p "$CRIT/home-A" "$CRIT/home-B"
    for round in $(seq 1 "$ROUNDS"); do
        for n in $BENCHES; do
            for side in A B; do
                dir=$A
                [[ "$side" == B ]] && dir=$B
                log="$CRIT/$n-$side-r$round"
                echo "== criterion round $round: $n / $side" >&2
                # Its own session (as bench-e2e.sh runs servers); setsid execs in place, so $! is
                # the bench's own PID. The working directory is the side's home: nothing of one side
                # is read by the other.
                (cd "$CRIT/home-$side" &&
                    exec env CRITERION_HOME="$CRIT/home-$side" setsid "$dir/bench-$n" --bench --noplot --color never \
                        "${CRIT_ARGS[@]}" >"$log.txt" 2>"$log.err") &
                wait_child "bench-$n ($side, round $round)" "$log.err"
            done
        done
    done
    python3 - "$CRIT" "$ROUNDS" "$(commit_of "$A")" "$(commit_of "$B")" "${CRIT_ARGS[*]}" >"$OUT/criterion.md" <<'PY'
import glob, os, re, statistics, sys

crit, rounds, commit_a, commit_b, args = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
UNIT = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}
TIME = re.compile(r"^(?:(\S+)\s+)?time:\s+\[(\S+) (\S+) (\S+) (\S+) (\S+) (\S+)\]")


def parse(path):
    """benchmark id -> the middle estimate of `time: [low mid high]`, in ns."""
    res, name = {}, None
    for line in open(path, encoding="utf-8", errors="replace"):
        line = line.rstrip("\n")
        if re.fullmatch(r"\S+", line):
            name = line  # a long id stands alone on its line, `time:` follows indented
        m = TIME.match(line.strip())
        if m:
            bench = m.group(1) if m.group(1) and not line[0].isspace() else name
            if bench is not None:
                res[bench] = float(m.group(4)) * UNIT[m.group(5)]
            name = None
    return res


def fmt(ns):
    if ns is None:
        return "-"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}" if ns / scale < 100 else f"{ns / scale:.0f} {unit}"
    return f"{ns:.3g} ns" if ns < 100 else f"{ns:.0f} ns"


table, order = {}, []  # (bench id) -> side -> round -> ns
for path in sorted(glob.glob(f"{crit}/*-r*.txt")):
    m = re.match(r"(.+)-([AB])-r(\d+)\.txt$", os.path.basename(path))
    if not m:
        continue
    exe, side, rnd = m.group(1), m.group(2), int(m.group(3))
    for bench, ns in parse(path).items():
        key = (exe, bench)
        if key not in table:
            table[key] = {"A": {}, "B": {}}
            order.append(key)
        table[key][side][rnd] = ns

print(f"### criterion: A = {commit_a[:10]}, B = {commit_b[:10]}\n")
print(f"Each bench executable run as `--bench --noplot {args}`, alternating A, B per executable in "
      f"each of {rounds} rounds. Cells: criterion's estimate (the middle of `time: [low mid high]`).\n")
head = "| benchmark | " + " | ".join(f"A r{r} | B r{r}" for r in range(1, rounds + 1))
print(head + " | median A | median B | B / A |")
print("| --- | " + " | ".join("---: | ---:" for _ in range(rounds)) + " | ---: | ---: | ---: |")
ratios = []
for key in sorted(order, key=lambda k: (k[0], order.index(k))):
    row = table[key]
    cells = []
    for r in range(1, rounds + 1):
        cells += [fmt(row["A"].get(r)), fmt(row["B"].get(r))]
    ma = statistics.median(row["A"].values()) if row["A"] else None
    mb = statistics.median(row["B"].values()) if row["B"] else None
    ratio = mb / ma if ma and mb else None
    if ratio:
        ratios.append(ratio)
    print(f"| {key[1]} | " + " | ".join(cells) + f" | {fmt(ma)} | {fmt(mb)} | "
          + (f"{ratio:.3f}" if ratio else "-") + " |")
if ratios:
    ratios.sort()
    print(f"\n{len(ratios)} benchmarks; B / A of the medians: min {ratios[0]:.3f}, "
          f"median {statistics.median(ratios):.3f}, max {ratios[-1]:.3f}.")
else:
    print("\nno benchmark results parsed (see the .txt and .err files)")
PY
    echo "criterion part done ($(($(date +%s) - START)) s since start)" >&2
fi

# --- 2. end to end --------------------------------------------------------------------------------
if [[ " $PARTS " == *" e2e "* ]]; then
    rm -rf "$OUT/e2e"
    # The generator and the baseline server come from A (BIN); `default` is A's roomcast, `alt` B's.
    # $SCENARIOS is split into words on purpose.
    # shellcheck disable=SC2086
    env BIN="$A" ALT_BIN="$B" VARIANTS="$E2E_VARIANTS" HEAVY_VARIANTS="$E2E_VARIANTS" OUT="$OUT/e2e" \
        QUICK="$QUICK" ROUNDS="$ROUNDS" "$ROOT/scripts/bench-e2e.sh" $SCENARIOS >"$OUT/e2e.log" &
    wait_child "bench-e2e.sh" "$OUT/e2e.log and $OUT/e2e/"
fi

{
    echo "# bench-ab: $(date -u '+%Y-%m-%d %H:%M UTC'), $(($(date +%s) - START)) s"
    echo
    echo "A (before) = $A, commit $(commit_of "$A"); B (after) = $B, commit $(commit_of "$B")."
    echo "$(nproc) cores; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); rounds: $ROUNDS;" \
        "QUICK=$QUICK. End to end: \`default\` = A's roomcast, \`alt\` = B's, so alt / default = B / A."
    echo
    if [[ " $PARTS " == *" criterion "* ]]; then
        cat "$OUT/criterion.md"
        echo
    fi
    if [[ " $PARTS " == *" e2e "* ]]; then
        cat "$OUT/e2e/summary.md"
    fi
} >"$OUT/summary.md"
cat "$OUT/summary.md"
