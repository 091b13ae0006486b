#!/usr/bin/env python3
"""Server API publish throughput over keep-alive, and latency to a WebSocket member.

Usage: scripts/api-bench.py HOST:PORT KEY CLIENTS SECONDS

CLIENTS processes each keep one HTTP/1.1 connection and POST /api/rooms/bench/messages one request
at a time (request, then response) for SECONDS. One raw-text WebSocket member in room `bench` reads
every message (`bot: <monotonic ns at send>`) and records send-to-receive latency. Prints requests
per second and the member's latency percentiles. Standard library only (no WebSocket package).
"""

import base64
import multiprocessing
import os
import socket
import sys
import threading
import time


def http_publisher(addr, key, seconds, out):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    count = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        body = b'{"user":"bot","content":"%d"}' % time.monotonic_ns()
        s.sendall(
            b"POST /api/rooms/bench/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + key.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body
        )
        while b"\r\n\r\n" not in buf:
            buf += s.recv(65536)
        head, _, rest = buf.partition(b"\r\n\r\n")
        length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1])
        while len(rest) < length:
            rest += s.recv(65536)
        if not head.startswith(b"HTTP/1.1 201"):
            raise SystemExit(f"unexpected answer: {head!r}")
        buf = rest[length:]
        count += 1
    out.put(count)


def ws_member(addr, ready, stop, latencies):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (
            f"GET /ws/chat?room=bench&nick=member HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    buf = buf.partition(b"\r\n\r\n")[2]
    ready.set()
    s.settimeout(0.5)
    while not stop.is_set():
        try:
            chunk = s.recv(1 << 20)
        except socket.timeout:
            continue
        if not chunk:
            break
        buf += chunk
        now = time.monotonic_ns()
        while len(buf) >= 2:
            n = buf[1] & 0x7F
            header = 2
            if n == 126:
                if len(buf) < 4:
                    break
                n, header = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                if len(buf) < 10:
                    break
                n, header = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < header + n:
                break
            opcode, payload = buf[0] & 0x0F, buf[header : header + n]
            buf = buf[header + n :]
            if opcode == 1 and payload.startswith(b"bot: "):
                latencies.append(now - int(payload[5:]))


def main():
    addr, key, clients, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    ready, stop, latencies = threading.Event(), threading.Event(), []
    member = threading.Thread(target=ws_member, args=(addr, ready, stop, latencies), daemon=True)
    member.start()
    ready.wait(10)
    out = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=http_publisher, args=(addr, key, seconds, out)) for _ in range(clients)]
    started = time.monotonic()
    for p in procs:
        p.start()
    total = sum(out.get() for _ in procs)
    for p in procs:
        p.join()
    elapsed = time.monotonic() - started
    time.sleep(1)
    stop.set()
    member.join(5)
    lat = sorted(latencies)
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] / 1e6 if lat else float("nan")
    print(
        f"clients={clients} requests={total} seconds={elapsed:.2f} rate={total / elapsed:.0f}/s "
        f"member_received={len(lat)} p50={pct(0.5):.2f}ms p99={pct(0.99):.2f}ms max={pct(1.0):.2f}ms"
    )


if __name__ == "__main__":
    main()
