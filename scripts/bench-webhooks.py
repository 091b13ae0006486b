#!/usr/bin/env python3
"""Webhook delivery lag (issue 21): roomcast with its defaults (history on) and one --webhook-url
pointing at a local receiver in this script; `roomcast-load churn` drives presence changes (each
churned client is a `user_left` and a `user_joined`), about RATE events/s for DURATION seconds.
The receiver answers 200 at once and records, per event, receipt time - `at_ms` (the lag: the
outbox write, the delivery thread's turn, a new TCP connection, the request). Reports per round:
events received, unique, duplicates, lag p50/p99/max, events/s received, and how long after the
load stopped the last event arrived. Every process runs in its own session (setsid) and is stopped
by its PID; everything targets 127.0.0.1 and is bounded in time.

Usage: scripts/bench-webhooks.py [--rounds 3] [--rate 1000] [--duration 10] [--bin target/release]
       [--servers before=/tmp/roomcast-before,after=target/release/roomcast]
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ap = argparse.ArgumentParser()
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--rate", type=int, default=1500, help="presence events per second asked of the generator (2 per churned client; a reconnect that joins before the server has seen its old socket close makes none, so about two thirds arrive: the report gives the rate received)")
ap.add_argument("--duration", type=int, default=10)
ap.add_argument("--bin", default="target/release", help="where roomcast-load (and, without --servers, roomcast) is")
ap.add_argument("--servers", default=None, help="label=path[,label=path...]: roomcast binaries to compare, alternating within each round")
args = ap.parse_args()
BIN = os.path.abspath(args.bin)
SERVERS = [tuple(x.split("=", 1)) for x in args.servers.split(",")] if args.servers else [("roomcast", f"{BIN}/roomcast")]


class Receiver:
    """A minimal HTTP/1.1 receiver (keep-alive), one connection at a time, served in the accept loop;
    answers 200 and records the lag and how many connections carried the requests."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.port = self.sock.getsockname()[1]
        self.rows = []  # (recv_ms, event)
        self.connections = 0
        self.requests_seen = 0
        self.lock = threading.Lock()
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            # Inline: roomcast sends one request at a time per URL, and a thread per connection would
            # make the receiver (not the server) the limit.
            self.serve(conn)

    def serve(self, conn):
        """Every request of the connection until the client closes it or asks to (`Connection:
        close`): HTTP/1.1 keep-alive, as a production receiver behind any web framework."""
        with conn:
            conn.settimeout(10)
            data = b""
            try:
                while True:
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            return
                        data += chunk
                    head, body = data.split(b"\r\n\r\n", 1)
                    length, close = 0, False
                    for line in head.split(b"\r\n")[1:]:
                        k, _, v = line.partition(b":")
                        if k.strip().lower() == b"content-length":
                            length = int(v.strip())
                        if k.strip().lower() == b"connection" and v.strip().lower() == b"close":
                            close = True
                    while len(body) < length:
                        chunk = conn.recv(65536)
                        if not chunk:
                            return
                        body += chunk
                    body, data = body[:length], body[length:]
                    now = time.time() * 1000
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    with self.lock:
                        self.rows.append((now, json.loads(body)))
                    self.requests_seen += 1
                    if close:
                        return
            except (OSError, ValueError):
                return


def wait_listening(log, proc):
    for _ in range(600):
        try:
            for line in open(log):
                if line.startswith("listening on http://"):
                    return line.strip().rsplit(":", 1)[1]
        except FileNotFoundError:
            pass
        if proc.poll() is not None:
            sys.exit(f"roomcast exited: {open(log).read()}")
        time.sleep(0.05)
    sys.exit("roomcast printed no address")


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def one_round(n, label, server_bin):
    recv = Receiver()
    d = tempfile.mkdtemp(prefix="roomcast-bench-webhooks-")
    log = os.path.join(d, "server.log")
    server = subprocess.Popen(
        ["setsid", server_bin, "--addr", "127.0.0.1:0", "--db", os.path.join(d, "r.db"),
         "--rate-limit", "0", "--rate-limit-bytes", "0", "--log-level", "warn",
         "--webhook-url", f"http://127.0.0.1:{recv.port}/hook"],
        stdout=open(log, "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env=dict(os.environ, ROOMCAST_WEBHOOK_SECRET="bench-secret-0123456789"))
    try:
        port = wait_listening(log, server)
        # 1,010 clients in one room, 10 of them senders (1 msg/s each); every 100 ms a fraction
        # of the other 1,000 drop and reconnect at once: 2 events each.
        per_tick = args.rate / 10 / 2
        frac = per_tick / 1000
        load = subprocess.run(
            ["setsid", f"{BIN}/roomcast-load", "churn", "--url", f"ws://127.0.0.1:{port}/ws/chat",
             "--format", "json", "--conns", "1010", "--senders", "10", "--rate", "10",
             "--churn-fraction", f"{frac}", "--churn-interval", "100ms", "--warmup", "1s",
             "--duration", f"{args.duration}s", "--drain", "2s", "--quiet"],
            capture_output=True, text=True, timeout=args.duration + 120)
        load_end = time.time() * 1000
        # Wait for the backlog: until nothing arrived for 3 s (at most 120 s).
        last = -1
        deadline = time.time() + 120
        while time.time() < deadline:
            with recv.lock:
                count = len(recv.rows)
            if count == last:
                break
            last = count
            time.sleep(3)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        recv.sock.close()
        shutil.rmtree(d, ignore_errors=True)
    with recv.lock:
        rows = list(recv.rows)
    ids = [e["id"] for _, e in rows]
    unique = len(set(ids))
    lags = [r - e["at_ms"] for r, e in rows]
    # The measured window: events that happened while the load ran after its warmup.
    t0 = min((e["at_ms"] for _, e in rows), default=0)
    span = (max(r for r, _ in rows) - min(r for r, _ in rows)) / 1000 if rows else 0
    # One room, a fresh database: the unique events' orders must be exactly 1..N (nothing dropped).
    orders = sorted({e["id"]: e["order"] for _, e in rows}.values())
    gapless = orders == list(range(1, len(orders) + 1))
    tail = (max(r for r, _ in rows) - load_end) / 1000 if rows else 0
    return {
        "round": n, "server": label, "connections": recv.connections, "load_exit": load.returncode, "events": len(rows), "unique": unique,
        "duplicates": len(rows) - unique,
        "events_per_s": round(len(rows) / span, 1) if span else 0,
        "lag_p50_ms": round(pct(lags, 0.5), 1), "lag_p99_ms": round(pct(lags, 0.99), 1),
        "lag_max_ms": round(max(lags), 1) if lags else None,
        "last_after_load_s": round(tail, 2), "orders_gapless": gapless,
        "first_event_ms": t0,
    }


results = [one_round(n, label, path) for n in range(1, args.rounds + 1) for label, path in SERVERS]
print(f"webhook lag, generator asked for {args.rate} events/s for {args.duration} s (+1 s warmup), {args.rounds} rounds")
print("| round | server | connections | events | duplicates | orders 1..N | events/s received | lag p50 | lag p99 | lag max | last event after load end |")
print("| ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
for r in results:
    print(f"| {r['round']} | {r['server']} | {r['connections']:,} | {r['events']:,} | {r['duplicates']} | {r['orders_gapless']} | {r['events_per_s']:,} | {r['lag_p50_ms']} ms | "
          f"{r['lag_p99_ms']} ms | {r['lag_max_ms']} ms | {r['last_after_load_s']} s |")
print(json.dumps(results))
