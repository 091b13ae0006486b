#!/usr/bin/env python3
"""Summarises a scripts/bench-avalanche.sh run: one row per report (<mode>-<transport>-r<round>.json),
in the order they ran, then the medians per transport and their ratios against plain (same run).

Usage: scripts/bench-avalanche-summary.py OUT_DIR
"""
import glob
import json
import os
import re
import statistics
import sys

out = sys.argv[1]
ORDER = ["plain", "tls", "tls-noresume"]
rows = []
for path in glob.glob(f"{out}/*-r*.json"):
    m = re.match(r"(drop|restart)-(.+)-r(\d+)\.json$", os.path.basename(path))
    if not m:
        continue
    v = json.load(open(path))
    a, w, c = v["avalanche"], v["wire"], v["connections"]
    metrics = {}
    mpath = path[: -len(".json")] + ".metrics"
    if os.path.exists(mpath):
        for line in open(mpath):
            k, _, val = line.rpartition(" ")
            metrics[k] = float(val)
    refused = sum(val for k, val in metrics.items() if k.startswith("roomcast_tls_handshake_failures")
                  and 'reason="overloaded"' in k)
    sv = a.get("server") or {}
    rows.append({
        "mode": m.group(1), "transport": m.group(2), "round": int(m.group(3)),
        "connected": c["connected"], "failed": c["failed"],
        "first-connect retries": a.get("first_connect_retries", 0),
        "reconnect attempts": a["reconnect_attempts"], "failed reconnects": a["reconnect_failures"],
        "TLS full": w.get("tls_full_handshakes", 0), "TLS resumed": w.get("tls_resumed_handshakes", 0),
        "server refused (overloaded)": int(refused) if metrics else None,
        "catch-up p50 ms": a["catchup_us"]["p50"] / 1000, "catch-up p99 ms": a["catchup_us"]["p99"] / 1000,
        "catch-up max ms": a["catchup_us"]["max"] / 1000,
        "recovery p50 ms": (a.get("recovery_us") or {}).get("p50", 0) / 1000,
        "recovery p99 ms": (a.get("recovery_us") or {}).get("p99", 0) / 1000,
        "recovery max ms": (a.get("recovery_us") or {}).get("max", 0) / 1000,
        "first live p99 ms": a["first_live_us"]["p99"] / 1000,
        "caught up": a["caught_up"], "not caught up": a["not_caught_up"],
        "not connected at end": a["not_connected_at_end"], "lost": a["lost"], "duplicates": a["duplicates"],
        "server CPU s (from outage)": sv.get("cpu_secs"), "server peak RSS MiB": sv.get("rss_peak_kib", 0) / 1024,
    })


def fmt(x):
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.1f}" if abs(x) >= 10 else f"{x:,.2f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


rows.sort(key=lambda r: (r["mode"], r["round"], ORDER.index(r["transport"]) if r["transport"] in ORDER else 9))
keys = [k for k in rows[0] if k not in ("mode",)] if rows else []
for mode in sorted({r["mode"] for r in rows}):
    rs = [r for r in rows if r["mode"] == mode]
    print(f"\n### avalanche {mode}\n")
    print("| " + " | ".join(keys) + " |")
    print("| " + " | ".join("---" if k == "transport" else "---:" for k in keys) + " |")
    for r in rs:
        print("| " + " | ".join(fmt(r[k]) for k in keys) + " |")
    med = {}
    for t in ORDER:
        tr = [r for r in rs if r["transport"] == t]
        if tr:
            med[t] = {k: statistics.median([r[k] for r in tr]) for k in keys
                      if all(isinstance(r[k], (int, float)) for r in tr) and k not in ("round",)}
    nk = [k for k in keys if any(k in m for m in med.values())]
    print("\nMedians, and ratios of medians against plain:\n")
    print("| transport | " + " | ".join(nk) + " |")
    print("| --- | " + " | ".join("---:" for _ in nk) + " |")
    for t, m in med.items():
        print(f"| {t} (median) | " + " | ".join(fmt(m.get(k)) for k in nk) + " |")
    if "plain" in med:
        for t, m in med.items():
            if t == "plain":
                continue
            cells = []
            for k in nk:
                x, y = m.get(k), med["plain"].get(k)
                cells.append(f"{x / y:.2f}" if isinstance(x, (int, float)) and y else "-")
            print(f"| {t} / plain | " + " | ".join(cells) + " |")
