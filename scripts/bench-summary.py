#!/usr/bin/env python3
"""Summarises a scripts/bench-e2e.sh run: every round's figures, the medians per variant, and the
ratios against the baseline (and default against nopersist / shards1 / shards2) from this run only.
With the `alt` variant (another roomcast build, scripts/bench-ab.sh) also alt / default: the ratio
of medians and, per round, of p50, p99 and CPU per delivery.

Usage: scripts/bench-summary.py OUT_DIR   (reads OUT_DIR/<scenario>-<variant>-r<round>.{json,server.json})
"""
import glob
import json
import os
import re
import statistics
import sys

out = sys.argv[1]
ORDER = ["s1k", "heavy", "rooms-text", "rooms-json", "hold", "hold19k", "connect", "ramp", "edits0", "edits10"]
VARIANT_ORDER = ["default", "alt", "deflate", "tls", "alttls", "nopersist", "shards1", "shards2", "baseline", "baselinetls"]
# Before/after pairs whose per-round p50, p99 and CPU ratios are printed (same-run comparisons).
FULL_PAIRS = [("alt", "default"), ("deflate", "default"), ("tls", "default"), ("alttls", "tls"), ("baselinetls", "baseline"), ("tls", "baselinetls")]


def figures(rep, srv):
    """The figures of one run, by name; None where not applicable."""
    m, lat, conn = rep["messages"], rep["latency_us"], rep["connections"]
    sc, cpu = rep["scenario"], srv["cpu_secs"]
    f = {}
    if sc in ("broadcast", "churn"):
        total = m["delivered"] + m.get("delivered_warmup", 0)
        f["p50 ms"] = lat["corrected"]["p50"] / 1000
        f["p99 ms"] = lat["corrected"]["p99"] / 1000
        f["p99.9 ms"] = lat["corrected"]["p99_9"] / 1000
        f["lost"] = m["lost"]
        if srv.get("baseline_lagged") is not None:
            f["server lag"] = srv["baseline_lagged"]
        sem = rep.get("semantics")
        if sem:
            f["message p99 ms"] = sem["message_latency_us"]["p99"] / 1000
            if sem["edits_sent"]:
                f["edit p50 ms"] = sem["edit_latency_us"]["p50"] / 1000
                f["edit p99 ms"] = sem["edit_latency_us"]["p99"] / 1000
            if sem["typing_pairs"]:
                f["typing received"] = sem["typing_received"]
                f["typing limit"] = sem["typing_limit"]
        f["deliveries/s"] = m["deliveries_per_sec_out"]
        f["server CPU s"] = cpu
        f["CPU µs/delivery"] = cpu * 1e6 / total if total else None
        sp = rep.get("per_conn_p99_us")
        if sp:
            f["per-conn p99 min/med/p99/max ms"] = "/".join(
                f"{sp[k] / 1000:.1f}" for k in ("min", "p50", "p99", "max"))
        f["peak RSS MiB"] = srv["rss_peak_kb"] / 1024
        f["gen cores"] = rep["generator"]["cores_used"]
        wire = rep.get("wire")
        if wire:
            # Server to client: what the generator read (handshakes and frames, the whole run).
            f["wire in MiB"] = wire["bytes_in"] / 2**20
            f["wire in B/delivery"] = wire["bytes_in"] / total if total else None
            if rep["config"].get("deflate"):
                f["deflate conns"] = wire.get("deflate_negotiated")
    elif sc == "hold":
        n = conn["connected"]
        f["connected"] = n
        f["disconnects"] = conn["disconnects"]
        wire = rep.get("wire")
        if wire and rep["config"].get("deflate"):
            f["deflate conns"] = wire.get("deflate_negotiated")
        f["fresh RSS KiB"] = srv["rss_before_kb"]
        f["peak RSS MiB"] = srv["rss_peak_kb"] / 1024
        f["RSS/conn B"] = (srv["rss_peak_kb"] - srv["rss_before_kb"]) * 1024 / n if n else None
        f["server CPU s"] = cpu
    elif sc == "connect":
        n = conn["connected"]
        f["connected"] = n
        f["failed"] = conn["failed"]
        f["connects/s"] = conn["connects_per_sec"]
        f["handshake p50 ms"] = lat["handshake"]["p50"] / 1000
        f["handshake p99 ms"] = lat["handshake"]["p99"] / 1000
        f["CPU µs/handshake"] = cpu * 1e6 / n if n else None
    elif sc == "ramp":
        best = rep.get("ramp_max_sustainable_rate") or 0
        best = int(best) if float(best).is_integer() else best
        f["max msgs/s"] = best
        f["= deliveries/s"] = best * rep["config"]["conns"]
        f["steps (msgs/s: p99 ms, lost)"] = "; ".join(
            f"{st['rate']:.0f}: {st['p99_us'] / 1000:.1f}, {st['lost']}" for st in rep.get("ramp", []))
        f["server CPU s"] = cpu
    if srv.get("load_exit"):
        f["load exit"] = srv["load_exit"]
    return f


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


runs = {}  # scenario -> variant -> round -> figures
commands = {}
for path in glob.glob(f"{out}/*.server.json"):
    m = re.match(r"(.+)-([a-z0-9]+)-r(\d+)\.server\.json$", os.path.basename(path))
    if not m:
        continue
    name, variant, rnd = m.group(1), m.group(2), int(m.group(3))
    try:
        srv = json.load(open(path))
        rep = json.load(open(path[: -len(".server.json")] + ".json"))
    except (OSError, ValueError):
        print(f"\n(no report for {name} / {variant} round {rnd}: see its .stdout)")
        continue
    runs.setdefault(name, {}).setdefault(variant, {})[rnd] = figures(rep, srv)
    commands[name] = srv["command"]


def vorder(v):
    return VARIANT_ORDER.index(v) if v in VARIANT_ORDER else 99


for name in sorted(runs, key=lambda n: (ORDER.index(n) if n in ORDER else 99, n)):
    by_variant = runs[name]
    variants = sorted(by_variant, key=vorder)
    keys = list(dict.fromkeys(k for v in variants for f in by_variant[v].values() for k in f))
    print(f"\n### {name}\n\n`{commands[name]}`\n")
    print("| variant | round | " + " | ".join(keys) + " |")
    print("| --- | ---: | " + " | ".join("---:" for _ in keys) + " |")
    for rnd in sorted({r for v in variants for r in by_variant[v]}):
        for v in variants:
            f = by_variant[v].get(rnd)
            if f is not None:
                print(f"| {v} | {rnd} | " + " | ".join(fmt(f.get(k)) for k in keys) + " |")
    medians = {}
    for v in variants:
        medians[v] = {}
        for k in keys:
            vals = [f[k] for f in by_variant[v].values() if num(f.get(k))]
            if vals:
                med = statistics.median(vals)
                if all(isinstance(x, int) for x in vals) and float(med).is_integer():
                    med = int(med)
                medians[v][k] = med
    num_keys = [k for k in keys if any(k in medians[v] for v in variants)]
    print("\nMedians over rounds, and ratios of medians:\n")
    print("| variant | " + " | ".join(num_keys) + " |")
    print("| --- | " + " | ".join("---:" for _ in num_keys) + " |")
    for v in variants:
        print(f"| {v} (median) | " + " | ".join(fmt(medians[v].get(k)) for k in num_keys) + " |")
    pairs = [(v, "baseline") for v in variants if v not in ("baseline", "baselinetls") and "baseline" in medians]
    pairs += [("default", ref) for ref in ("nopersist", "shards1", "shards2") if "default" in medians and ref in medians]
    pairs += [(a, b) for a, b in FULL_PAIRS if a in medians and b in medians]
    for a, b in pairs:
        cells = []
        for k in num_keys:
            x, y = medians[a].get(k), medians[b].get(k)
            cells.append(f"{x / y:.2f}" if num(x) and num(y) and y else "-")
        print(f"| {a} / {b} | " + " | ".join(cells) + " |")
    # Per-round ratios (each round's servers ran back to back): p99 for every pair; p50 and CPU per
    # delivery too for alt / default (the before/after of scripts/bench-ab.sh).
    for a, b in pairs:
        full = ("p50 ms", "p99 ms", "CPU µs/delivery", "CPU µs/handshake", "connects/s", "RSS/conn B",
                "wire in B/delivery")
        for k in full if (a, b) in FULL_PAIRS else ("p99 ms",):
            per = []
            for rnd in sorted(by_variant[a]):
                x = by_variant[a][rnd].get(k)
                y = by_variant[b].get(rnd, {}).get(k)
                if num(x) and num(y) and y:
                    per.append(f"{x / y:.2f}")
            if per:
                label = {"p50 ms": "p50", "p99 ms": "p99", "CPU µs/delivery": "CPU per delivery"}.get(k, k)
                print(f"\n{label} {a} / {b} per round: {', '.join(per)}")
