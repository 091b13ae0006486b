// Unit level, with a fake clock and a scripted socket: the reconnect policy (full-jitter backoff,
// the count reset only after a connection stayed up, no reconnect after a 4500–4999 close), the
// heartbeat watchdog, de-duplication and the cursor handed to the next connection. The server
// cannot send a 45xx close yet (the backend API work adds them), so that rule is tested here and
// against a minimal WebSocket server in close-codes.test.js.

import { test } from "node:test";
import assert from "node:assert/strict";

import { DEFAULTS, RoomcastClient, backoffDelay, reconnectAllowed } from "../roomcast.js";

/** Timers that run only when the test advances time. */
class FakeClock {
  now = 0;
  timers = new Map();
  nextId = 1;
  setTimeout = (fn, ms) => {
    const id = this.nextId++;
    this.timers.set(id, { at: this.now + ms, fn });
    return id;
  };
  clearTimeout = (id) => {
    this.timers.delete(id);
  };
  /** Moves time forward by `ms`, running every timer that comes due, in order. */
  async advance(ms) {
    const end = this.now + ms;
    for (;;) {
      const due = [...this.timers.entries()].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.now = due[1].at;
      due[1].fn();
      await flush();
    }
    this.now = end;
    await flush();
  }
}

/** Lets pending promise callbacks run (the client awaits its token provider before opening). */
function flush() {
  return new Promise((r) => setImmediate(r));
}

/** A socket the test scripts: every constructed one is kept in `ScriptedSocket.made`. */
class ScriptedSocket {
  static made = [];
  constructor(url) {
    this.url = new URL(url);
    this.readyState = 0;
    this.sent = [];
    this.closedByClient = false;
    ScriptedSocket.made.push(this);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close() {
    this.closedByClient = true;
    this.readyState = 3;
  }
  open() {
    this.readyState = 1;
  }
  deliver(event) {
    this.onmessage?.({ data: JSON.stringify(event) });
  }
  serverClose(code, reason = "") {
    this.readyState = 3;
    this.onclose?.({ code, reason, wasClean: true });
  }
}

function setup(options = {}) {
  ScriptedSocket.made = [];
  const clock = new FakeClock();
  const client = new RoomcastClient({
    url: "ws://roomcast.test/ws",
    WebSocket: ScriptedSocket,
    clock,
    random: () => 0.5,
    ...options,
  });
  const states = [];
  client.on("state", (s) => states.push(s));
  const latest = () => ScriptedSocket.made.at(-1);
  const welcome = (epoch = "e1") => {
    latest().open();
    latest().deliver({ type: "welcome", user: "ann", connection_id: 1, epoch, limits: { max_message_bytes: 100, max_rooms: 8, max_history_page: 200 } });
  };
  return { client, clock, states, latest, welcome };
}

test("backoff: full jitter under min(20 s, 0.5 s × 2^n)", () => {
  const ceilings = [500, 1000, 2000, 4000, 8000, 16000, 20000, 20000, 20000];
  ceilings.forEach((ceiling, attempt) => {
    assert.equal(backoffDelay(attempt, DEFAULTS, () => 0), 0);
    assert.equal(backoffDelay(attempt, DEFAULTS, () => 0.999999), Math.round(0.999999 * ceiling), `attempt ${attempt}`);
  });
  assert.equal(backoffDelay(5000, DEFAULTS, () => 0.5), 10000, "no overflow for long outages");
});

test("close codes: 4500–4999 do not reconnect, everything else does", () => {
  for (const code of [4500, 4501, 4750, 4999]) assert.equal(reconnectAllowed(code), false, `${code}`);
  for (const code of [1000, 1001, 1006, 1008, 1011, 1013, 4000, 4499, 5000, undefined]) {
    assert.equal(reconnectAllowed(code), true, `${code}`);
  }
});

test("the backoff count grows through failures, survives welcome, and resets after 10 s up", async () => {
  const { client, clock, states, latest, welcome } = setup();
  client.join("lobby");
  client.connect();
  await flush();
  const delays = [];
  for (let i = 0; i < 7; i++) {
    latest().serverClose(1006);
    const s = states.at(-1);
    assert.equal(s.state, "disconnected");
    assert.equal(s.willReconnect, true);
    delays.push(s.retryInMs);
    const before = ScriptedSocket.made.length;
    await clock.advance(s.retryInMs - 1);
    assert.equal(ScriptedSocket.made.length, before, "not before the delay");
    await clock.advance(1);
    assert.equal(ScriptedSocket.made.length, before + 1, "right after it");
  }
  assert.deepEqual(delays, [250, 500, 1000, 2000, 4000, 8000, 10000]);
  welcome();
  assert.equal(client.state, "connected");
  assert.equal(client.attempt, 7, "welcome alone does not reset the count");
  await clock.advance(DEFAULTS.stableAfterMs - 1);
  assert.equal(client.attempt, 7);
  // A close before 10 s keeps growing the delays (a server that welcomes and drops is not hammered).
  latest().serverClose(1013);
  assert.equal(states.at(-1).retryInMs, 10000);
  await clock.advance(10000);
  welcome();
  await clock.advance(DEFAULTS.stableAfterMs);
  assert.equal(client.attempt, 0, "reset after staying up");
  latest().serverClose(1001);
  assert.equal(states.at(-1).retryInMs, 250, "short delays again");
  client.close();
});

test("a 45xx close ends reconnecting; a 1008 close does not", async () => {
  for (const [code, again] of [
    [4500, false],
    [4999, false],
    [1008, true],
    [4499, true],
  ]) {
    const { client, clock, states, latest, welcome } = setup();
    client.join("lobby");
    client.connect();
    await flush();
    welcome();
    latest().serverClose(code, "policy");
    const s = states.at(-1);
    assert.equal(s.state, "disconnected");
    assert.equal(s.code, code);
    assert.equal(s.reason, "policy");
    assert.equal(s.willReconnect, again, `${code}`);
    await clock.advance(60000);
    if (again) assert.ok(ScriptedSocket.made.length >= 2, `${code}: reconnected`);
    else assert.equal(ScriptedSocket.made.length, 1, `${code}: never reconnected`);
    client.close();
  }
});

test("the heartbeat watchdog drops a connection that stopped answering", async () => {
  const { client, clock, states, latest, welcome } = setup({ heartbeatMs: 1000 });
  client.join("lobby");
  client.connect();
  await flush();
  welcome();
  const first = latest();
  await clock.advance(1000);
  assert.deepEqual(first.sent.at(-1), { type: "ping" });
  first.deliver({ type: "pong" });
  await clock.advance(1000);
  assert.deepEqual(first.sent.at(-1), { type: "ping" }, "pinged again after the pong");
  assert.equal(client.state, "connected");
  await clock.advance(1000); // no answer for a whole period
  assert.equal(first.closedByClient, true);
  assert.equal(states.at(-1).kind, "heartbeat");
  assert.equal(states.at(-1).willReconnect, true);
  await clock.advance(states.at(-1).retryInMs);
  assert.equal(ScriptedSocket.made.length, 2, "reconnected");
  client.close();
});

test("a socket that never gets its welcome is dropped after connectTimeoutMs and retried", async () => {
  const { client, clock, states, latest, welcome } = setup({ connectTimeoutMs: 5000 });
  client.join("lobby");
  client.connect();
  await flush();
  const hung = latest();
  await clock.advance(4999);
  assert.equal(client.state, "connecting");
  await clock.advance(1);
  assert.equal(hung.closedByClient, true);
  assert.equal(states.at(-1).kind, "timeout");
  assert.equal(states.at(-1).willReconnect, true);
  await clock.advance(states.at(-1).retryInMs);
  assert.equal(ScriptedSocket.made.length, 2);
  welcome();
  await clock.advance(20000); // connected: the connect timeout no longer applies
  assert.equal(client.state, "connected");
  client.close();
});

test("duplicates and stale ids are dropped; the next connection resumes from the cursor and epoch", async () => {
  const { client, clock, states, latest, welcome } = setup();
  const messages = [];
  client.on("message", (m) => messages.push(m.id));
  const lobby = client.join("lobby");
  const side = client.join("side");
  client.connect();
  await flush();
  assert.equal(latest().url.searchParams.get("room"), "lobby");
  assert.equal(latest().url.searchParams.get("since"), null, "nothing to resume yet");
  welcome("e1");
  assert.deepEqual(latest().sent, [{ type: "join", room: "side" }]);
  latest().deliver({ type: "joined", room: "lobby", members: ["ann"], member_count: 1, last_id: 10 });
  latest().deliver({ type: "joined", room: "side", members: ["ann"], member_count: 1, last_id: 10 });
  for (const id of [11, 12, 12, 9, 11, 13]) {
    latest().deliver({ type: "message", id, room: "lobby", user: "bob", content: `m${id}`, ts: "" });
  }
  assert.deepEqual(messages, [11, 12, 13]);
  assert.equal(lobby.lastId, 13);
  assert.equal(side.lastId, 10, "a room with no message yet resumes from its join point");

  latest().serverClose(1006);
  await clock.advance(states.at(-1).retryInMs);
  const url = latest().url.searchParams;
  assert.deepEqual([url.get("room"), url.get("since"), url.get("epoch")], ["lobby", "13", "e1"]);
  welcome("e2"); // a server that restarted without persistence
  assert.deepEqual(latest().sent, [{ type: "join", room: "side", since: 10, epoch: "e1" }]);
  latest().deliver({ type: "joined", room: "lobby", members: [], member_count: 1, last_id: 0, reset: true });
  assert.equal(lobby.lastId, 0, "reset: the cursor starts over");
  latest().deliver({ type: "message", id: 1, room: "lobby", user: "bob", content: "new", ts: "" });
  assert.deepEqual(messages, [11, 12, 13, 1], "id 1 of the new id space is delivered");
  client.close();
});

test("a message replayed without client_id confirms the matching unconfirmed one", async () => {
  const { client, clock, states, latest, welcome } = setup();
  client.join("lobby");
  client.connect();
  await flush();
  welcome();
  latest().deliver({ type: "joined", room: "lobby", members: ["ann"], member_count: 1, last_id: 5 });
  const sent = client.publish("lobby", "hello");
  assert.deepEqual(latest().sent.at(-1), { type: "message", room: "lobby", content: "hello", client_id: sent.clientId });
  assert.throws(() => client.publish("lobby", "x".repeat(101)), (e) => e.code === "message_too_large");
  latest().serverClose(1006); // the echo was lost with the connection
  await clock.advance(states.at(-1).retryInMs);
  welcome();
  latest().deliver({ type: "joined", room: "lobby", members: ["ann"], member_count: 1, last_id: 6 });
  latest().deliver({ type: "message", id: 6, room: "lobby", user: "ann", content: "hello", ts: "" });
  const echo = await sent.confirmed;
  assert.equal(echo.id, 6);
  assert.equal(echo.confirms, sent.clientId);
  client.close();
});
