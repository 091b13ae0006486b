# A WebSocket client on /ws/chat?room=ROOM that reads slowly (BYTES per second) for SECONDS, then
# closes: the "slow reader now and then" of scripts/soak.sh. Prints how it ended (the server may close
# it as a slow consumer, which is its policy, not a failure).
# Usage: python3 scripts/slow-reader.py HOST PORT ROOM SECONDS [BYTES_PER_SEC]
import socket, sys, time

host, port, room, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
rate = int(sys.argv[5]) if len(sys.argv) > 5 else 4096
s = socket.socket()
s.settimeout(10)
s.connect((host, port))
s.sendall(f"GET /ws/chat?room={room} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
head = b""
while b"\r\n\r\n" not in head:
    b = s.recv(1)
    if not b:
        print("slow-reader: closed during the handshake", flush=True)
        sys.exit(0)
    head += b
status = head.split(b"\r\n")[0].decode()
end, got, how = time.time() + secs, 0, "timeout"
try:
    while time.time() < end:
        chunk = s.recv(rate)
        if not chunk:
            how = "closed by the server"
            break
        got += len(chunk)
        time.sleep(1)
except OSError as e:
    how = f"error {e}"
s.close()
print(f"slow-reader: {status}; read {got} bytes; {how}", flush=True)
