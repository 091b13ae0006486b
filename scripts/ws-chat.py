# Chats through a running roomcast with two plain WebSocket clients (standard library only): both join
# /ws/chat?room=smoke, the first sends "Alice: Hello", and both must receive exactly that text.
# Exits 0 on success, 1 with the reason otherwise. Used by scripts/image-smoke.sh.
# Usage: python3 scripts/ws-chat.py HOST PORT
import base64, os, socket, sys

DEADLINE_S = 30


def connect(host, port):
    s = socket.create_connection((host, port), timeout=DEADLINE_S)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /ws/chat?room=smoke HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            sys.exit(f"ws-chat: connection closed during the handshake: {head!r}")
        head += chunk
    status = head.split(b"\r\n")[0].decode()
    if " 101 " not in status:
        sys.exit(f"ws-chat: handshake refused: {status}")
    return s


def read_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            sys.exit("ws-chat: connection closed while reading a frame")
        data += chunk
    return data


def send_text(s, text):
    payload = text.encode()
    assert len(payload) < 126
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)


def recv_text(s):
    first, second = read_exact(s, 2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(read_exact(s, 2), "big")
    elif length == 127:
        length = int.from_bytes(read_exact(s, 8), "big")
    payload = read_exact(s, length)
    if first & 0x0F != 1:
        sys.exit(f"ws-chat: expected a text frame, got opcode {first & 0x0F}: {payload!r}")
    return payload.decode()


host, port = sys.argv[1], int(sys.argv[2])
alice, bob = connect(host, port), connect(host, port)
send_text(alice, "Alice: Hello")
for name, client in (("alice", alice), ("bob", bob)):
    got = recv_text(client)
    if got != "Alice: Hello":
        sys.exit(f"ws-chat: {name} received {got!r}, expected 'Alice: Hello'")
print("ws-chat: both clients received 'Alice: Hello'")
