# Measures the server's resident memory (VmRSS) under HTTP pipelining floods from clients that never
# read (issue 11, defect 1), then after the clients reset their connections.
#
# Usage: python3 scripts/http-flood-rss.py [PATH_TO_ROOMCAST]   (default: target/release/roomcast)
#
# Starts its own server (--addr 127.0.0.1:0, temporary database, rate limits off so the history room
# can be filled quickly) and prints one line per phase: the scenario, VmRSS peak while flooding, and
# VmRSS after the connections were reset and the server reaped them.
import os, socket, struct, subprocess, sys, tempfile, time

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/roomcast"

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))

def start():
    tmp = tempfile.mkdtemp()
    p = subprocess.Popen([BIN, "--addr", "127.0.0.1:0", "--db", os.path.join(tmp, "r.db"), "--shards", "2",
                          "--log-level", "error", "--rate-limit", "0", "--rate-limit-bytes", "0"],
                         stdout=subprocess.PIPE, text=True)
    for line in p.stdout:
        if line.startswith("listening on http://"):
            host, port = line.strip()[len("listening on http://"):].rsplit(":", 1)
            return p, (host, int(port))
    raise SystemExit("server did not start")

def frame(payload, opcode=1):
    mask = b"\x1f\x2e\x3d\x4c"
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

def fill_room(addr, room, n, size):
    s = socket.create_connection(addr)
    s.sendall(f"GET /ws/chat?room={room} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    body = b"m" * size
    received = 0
    for i in range(n):
        s.sendall(frame(b"%06d" % i + body[6:]))
    # Read our own echoes so every message was published (and queued for the store) before we go on.
    s.settimeout(30)
    buf = b""
    while received < n:
        buf += s.recv(1 << 20)
        while len(buf) >= 4:
            ln = buf[1] & 0x7f
            hl = 2
            if ln == 126:
                ln, hl = struct.unpack(">H", buf[2:4])[0], 4
            elif ln == 127:
                if len(buf) < 10: break
                ln, hl = struct.unpack(">Q", buf[2:10])[0], 10
            if len(buf) < hl + ln: break
            buf = buf[hl + ln:]
            received += 1
    s.close()
    time.sleep(1)  # let the writer commit

def reset(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()

def flood(pid, addr, request, count, conns, settle=6.0):
    socks = []
    for _ in range(conns):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(addr)
        s.setblocking(False)
        socks.append(s)
    data = request * count
    sent = [0] * conns
    peak = rss_kib(pid)
    deadline = time.time() + settle
    while time.time() < deadline:
        for i, s in enumerate(socks):
            if sent[i] < len(data):
                try:
                    sent[i] += s.send(data[sent[i]:sent[i] + 65536])
                except (BlockingIOError, ConnectionError):
                    pass
        peak = max(peak, rss_kib(pid))
        time.sleep(0.005)
    total_sent = sum(sent)
    for s in socks:
        reset(s)
    time.sleep(3)
    return peak, rss_kib(pid), total_sent

def main():
    p, addr = start()
    pid = p.pid
    try:
        time.sleep(0.5)
        base = rss_kib(pid)
        base_fds = fds(pid)
        print(f"baseline: VmRSS {base} KiB, fds {base_fds}", flush=True)
        metrics = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
        peak, after, sent = flood(pid, addr, metrics, 20000, 1)
        print(f"20000 pipelined GET /metrics, 1 conn, never read: sent {sent} B, peak VmRSS {peak} KiB, "
              f"after reset {after} KiB, fds {fds(pid)}", flush=True)
        fill_room(addr, "big", 200, 16000)
        print(f"room filled with 200 x 16 KB: VmRSS {rss_kib(pid)} KiB", flush=True)
        page = b"GET /rooms/big/messages?limit=200 HTTP/1.1\r\nHost: x\r\n\r\n"
        for conns in (1, 2):
            peak, after, sent = flood(pid, addr, page, 140, conns)
            print(f"140 pipelined history pages (200 x 16 KB), {conns} conn(s), never read: sent {sent} B, "
                  f"peak VmRSS {peak} KiB, after reset {after} KiB, fds {fds(pid)}", flush=True)
    finally:
        p.kill()
        p.wait()

main()
