#!/usr/bin/env python3
"""Sampler and plotter for scripts/soak.sh (standard library only).

  soak.py sample --pid-file F --port P --reports DIR --csv OUT.csv --until EPOCH [--interval 10]
      Every INTERVAL seconds, one CSV row: the server's RSS, open fds and CPU (from /proc), its
      connections and write-queue depth (/healthz), and the generators' figures from the reports
      that finished since the last row (DIR/*.json, written complete by soak.sh): latency
      percentiles of the last broadcast chunks, and running loss totals per scenario.
  soak.py plot OUT.csv OUT.svg [--warmup SECS]
      Plots RSS, fds, CPU, queue depth and p99 against time and prints the soak verdict: no loss,
      RSS and fds slope after warm-up under 1 % per 10 minutes, p99 stable (last third within 2x of
      the first third after warm-up).
"""

import argparse
import csv
import glob
import json
import os
import sys
import time
import urllib.request

COLUMNS = [
    "t_secs", "rss_kib", "fds", "cpu_pct", "connections", "queue_depth",
    "json_p50_us", "json_p99_us", "text_p99_us", "history_p99_us", "churn_completeness",
    "avalanche_catchup_p99_us", "lost_broadcast", "lost_churn", "lost_avalanche", "unconfirmed_avalanche",
    "avalanches", "reports",
]


def proc(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    ticks = int(rest[11]) + int(rest[12])
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return ticks, rss, fds


def healthz(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            h = json.load(r)
        return h.get("connections", ""), (h.get("persistence") or {}).get("queue_depth", "")
    except OSError:
        return "", ""


def sample(a):
    tck = os.sysconf("SC_CLK_TCK")
    seen, totals = set(), {"broadcast": 0, "churn": 0, "avalanche": 0, "unconfirmed": 0, "avalanches": 0}
    last = {}
    t0, prev = time.time(), None
    new_file = not os.path.exists(a.csv)
    with open(a.csv, "a", newline="") as out:
        w = csv.writer(out)
        if new_file:
            w.writerow(COLUMNS)
        while time.time() < a.until:
            now = time.time()
            try:
                pid = int(open(a.pid_file).read().strip())
                ticks, rss, fds = proc(pid)
            except (OSError, ValueError):
                print("soak.py: the server is gone", file=sys.stderr)
                return 1
            cpu = "" if prev is None else round(100.0 * (ticks - prev[0]) / tck / max(now - prev[1], 1e-3), 1)
            prev = (ticks, now)
            for path in sorted(glob.glob(os.path.join(a.reports, "*.json"))):
                if path in seen:
                    continue
                seen.add(path)
                try:
                    r = json.load(open(path))
                except (OSError, ValueError):
                    continue
                name = os.path.basename(path)
                lost = r.get("messages", {}).get("lost", 0)
                if name.startswith("json-"):
                    totals["broadcast"] += lost
                    last["json_p50_us"] = r["latency_us"]["corrected"]["p50"]
                    last["json_p99_us"] = r["latency_us"]["corrected"]["p99"]
                elif name.startswith("text-"):
                    totals["broadcast"] += lost
                    last["text_p99_us"] = r["latency_us"]["corrected"]["p99"]
                elif name.startswith("history-"):
                    last["history_p99_us"] = (r.get("http") or {}).get("latency_corrected", {}).get("p99", "")
                elif name.startswith("churn-"):
                    totals["churn"] += lost
                    last["churn_completeness"] = r["messages"].get("completeness", "")
                elif name.startswith("avalanche-"):
                    av = r.get("avalanche") or {}
                    totals["avalanche"] += av.get("lost", 0)
                    totals["unconfirmed"] += av.get("unconfirmed", 0)
                    totals["avalanches"] += 1
                    last["avalanche_catchup_p99_us"] = av.get("catchup_us", {}).get("p99", "")
            conns, depth = healthz(a.port)
            w.writerow([
                round(now - t0, 1), rss, fds, cpu, conns, depth,
                last.get("json_p50_us", ""), last.get("json_p99_us", ""), last.get("text_p99_us", ""),
                last.get("history_p99_us", ""), last.get("churn_completeness", ""),
                last.get("avalanche_catchup_p99_us", ""), totals["broadcast"], totals["churn"],
                totals["avalanche"], totals["unconfirmed"], totals["avalanches"], len(seen),
            ])
            out.flush()
            time.sleep(max(0.0, a.interval - (time.time() - now)))
    return 0


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def slope_pct_per_10min(ts, ys):
    """Least-squares slope of ys over ts, as a percentage of the mean per 10 minutes."""
    n = len(ts)
    if n < 3:
        return None
    mt, my = sum(ts) / n, sum(ys) / n
    var = sum((t - mt) ** 2 for t in ts)
    if var == 0 or my == 0:
        return None
    slope = sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / var
    return 100.0 * slope * 600.0 / my


def panel(x0, y0, w, h, title, series, tmax):
    """One chart: series = [(label, colour, [(t, v)])]."""
    pts = [v for _, _, s in series for _, v in s]
    vmax = max(pts) if pts else 1.0
    vmax = vmax * 1.1 if vmax > 0 else 1.0
    out = [f'<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#999"/>',
           f'<text x="{x0}" y="{y0 - 6}" font-size="13">{title} (max {vmax / 1.1:.4g})</text>']
    for i in range(5):
        yy = y0 + h - h * i / 4
        out.append(f'<text x="{x0 - 6}" y="{yy + 4}" font-size="10" text-anchor="end">{vmax * i / 4:.3g}</text>')
    for i in range(7):
        xx = x0 + w * i / 6
        out.append(f'<text x="{xx}" y="{y0 + h + 14}" font-size="10" text-anchor="middle">{tmax * i / 6 / 60:.1f} min</text>')
    for k, (label, colour, s) in enumerate(series):
        if not s:
            continue
        p = " ".join(f"{x0 + w * t / tmax:.1f},{y0 + h - h * v / vmax:.1f}" for t, v in s)
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{p}"/>')
        out.append(f'<text x="{x0 + w - 4}" y="{y0 + 14 + 14 * k}" font-size="11" fill="{colour}" text-anchor="end">{label}</text>')
    return out


def plot(a):
    rows = list(csv.DictReader(open(a.csv)))
    if not rows:
        print("soak.py: no samples", file=sys.stderr)
        return 1
    col = lambda name: [(num(r["t_secs"]), num(r[name])) for r in rows if num(r[name]) is not None]
    tmax = max(num(r["t_secs"]) for r in rows) or 1.0
    warm = a.warmup if a.warmup is not None else min(120.0, tmax / 5)
    verdict = []
    ok = True
    for name in ("rss_kib", "fds"):
        s = [(t, v) for t, v in col(name) if t >= warm]
        pct = slope_pct_per_10min([t for t, _ in s], [v for _, v in s])
        good = pct is not None and abs(pct) < 1.0
        ok &= good
        shown = "n/a" if pct is None else f"{pct:+.2f} %/10 min"
        verdict.append(f"{name} slope after {warm:.0f} s warm-up: {shown} ({'ok' if good else 'over 1 %'})")
    last = rows[-1]
    lost = {k: int(float(last[k] or 0)) for k in ("lost_broadcast", "lost_churn", "lost_avalanche")}
    good = all(v == 0 for v in lost.values())
    ok &= good
    verdict.append(f"loss: {lost} ({'ok' if good else 'LOST'}); avalanches {last['avalanches']}, unconfirmed "
                   f"(never acknowledged) {last['unconfirmed_avalanche']}")
    p99 = [(t, v) for t, v in col("json_p99_us") if t >= warm]
    if len(p99) >= 3:
        third = max(1, len(p99) // 3)
        first = sorted(v for _, v in p99[:third])[third // 2]
        end = sorted(v for _, v in p99[-third:])[third // 2]
        good = end <= 2 * max(first, 1)
        ok &= good
        verdict.append(f"json p99 median first third {first / 1000:.2f} ms, last third {end / 1000:.2f} ms "
                       f"({'stable' if good else 'grew'})")
    W, H, ph = 900, 5 * 170 + 90, 120
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="20" y="22" font-size="15">roomcast soak: {tmax / 60:.1f} min, sample every '
           f'{(tmax / max(len(rows) - 1, 1)):.0f} s</text>']
    mb = lambda s: [(t, v / 1024) for t, v in s]
    charts = [
        ("server RSS (MiB)", [("RSS", "#1f77b4", mb(col("rss_kib")))]),
        ("server open fds / connections", [("fds", "#2ca02c", col("fds")), ("connections", "#9467bd", col("connections"))]),
        ("server CPU (% of one core)", [("CPU", "#d62728", col("cpu_pct"))]),
        ("write queue depth (messages)", [("queue", "#8c564b", col("queue_depth"))]),
        ("latency p99 (ms)", [("json broadcast", "#ff7f0e", [(t, v / 1000) for t, v in col("json_p99_us")]),
                              ("text broadcast", "#17becf", [(t, v / 1000) for t, v in col("text_p99_us")]),
                              ("history", "#7f7f7f", [(t, v / 1000) for t, v in col("history_p99_us")])]),
    ]
    for i, (title, series) in enumerate(charts):
        svg += panel(70, 60 + i * 170, W - 100, ph, title, series, tmax)
    for i, line in enumerate(verdict):
        svg.append(f'<text x="20" y="{H - 20 - 14 * (len(verdict) - 1 - i)}" font-size="11">{line}</text>')
    svg.append("</svg>")
    with open(a.svg, "w") as f:
        f.write("\n".join(svg))
    print("\n".join(verdict))
    print("soak verdict:", "PASS" if ok else "FAIL")
    return 0 if ok else 3


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample")
    s.add_argument("--pid-file", required=True)
    s.add_argument("--port", required=True, type=int)
    s.add_argument("--reports", required=True)
    s.add_argument("--csv", required=True)
    s.add_argument("--until", required=True, type=float)
    s.add_argument("--interval", type=float, default=10.0)
    q = sub.add_parser("plot")
    q.add_argument("csv")
    q.add_argument("svg")
    q.add_argument("--warmup", type=float)
    a = p.parse_args()
    return sample(a) if a.cmd == "sample" else plot(a)


if __name__ == "__main__":
    sys.exit(main())
