// The close-code rule over a real WebSocket: roomcast does not send 4500–4999 closes yet (the
// backend API work defines them), so a minimal WebSocket server here completes the handshake and
// closes with a chosen code; the client under test uses Node's real WebSocket against it.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { createHash } from "node:crypto";

import { RoomcastClient } from "../roomcast.js";
import { WebSocketImpl, sleep, waitFor } from "./support.js";

/** An HTTP server on 127.0.0.1 that accepts every WebSocket handshake and closes with `code`. */
async function closingServer(code) {
  const state = { upgrades: 0 };
  const server = createServer((_req, res) => res.writeHead(404).end());
  server.on("upgrade", (req, socket) => {
    state.upgrades += 1;
    socket.on("error", () => {});
    const accept = createHash("sha1")
      .update(`${req.headers["sec-websocket-key"]}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
      .digest("base64");
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
    const payload = Buffer.concat([Buffer.from([code >> 8, code & 0xff]), Buffer.from("go away")]);
    socket.write(Buffer.concat([Buffer.from([0x88, payload.length]), payload])); // FIN + close
    socket.once("data", () => socket.end()); // the client's close frame answers it
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  state.url = `ws://127.0.0.1:${server.address().port}/ws`;
  state.stop = () =>
    new Promise((r) => {
      server.closeAllConnections?.();
      server.close(r);
    });
  return state;
}

for (const code of [4500, 4999]) {
  test(`close ${code}: disconnected for good, no second attempt`, { timeout: 30000 }, async () => {
    const server = await closingServer(code);
    const client = new RoomcastClient({ url: server.url, WebSocket: WebSocketImpl, backoffBaseMs: 20, backoffMaxMs: 40 });
    const states = [];
    client.on("state", (s) => states.push(s));
    client.join("lobby");
    client.connect();
    const last = await waitFor("disconnected", () => states.find((s) => s.state === "disconnected"));
    assert.equal(last.code, code);
    assert.equal(last.reason, "go away");
    assert.equal(last.willReconnect, false);
    // With 20–40 ms delays a retry would have happened many times over in this window.
    await sleep(1000);
    assert.equal(server.upgrades, 1);
    assert.equal(client.state, "disconnected");
    await server.stop();
  });
}

for (const code of [4499, 1008, 1013]) {
  test(`close ${code}: reconnects with backoff`, { timeout: 30000 }, async () => {
    const server = await closingServer(code);
    const client = new RoomcastClient({ url: server.url, WebSocket: WebSocketImpl, backoffBaseMs: 20, backoffMaxMs: 40 });
    const states = [];
    client.on("state", (s) => states.push(s));
    client.join("lobby");
    client.connect();
    await waitFor("three attempts", () => server.upgrades >= 3);
    const closes = states.filter((s) => s.state === "disconnected");
    assert.ok(closes.every((s) => s.code === code && s.willReconnect), JSON.stringify(closes));
    client.close();
    await server.stop();
  });
}
