// roomcast.js against the real roomcast binary: connect and echo, resume across a crash, a long gap,
// an epoch reset, history paging, the heartbeat watchdog against a frozen server. A raw WebSocket peer (support.js) is the independent witness of
// what the server stored and sent.

import { test } from "node:test";
import assert from "node:assert/strict";

import { RoomcastClient } from "../roomcast.js";
import { Peer, Server, WebSocketImpl, recorder, waitFor } from "./support.js";

/** A client of `server` with short backoff (the tests wait for reconnects). */
function client(server, options = {}) {
  return new RoomcastClient({
    url: server.wsUrl,
    WebSocket: WebSocketImpl,
    backoffBaseMs: 100,
    backoffMaxMs: 500,
    // A connection attempt that reaches a server while it shuts down can hang: retry it soon.
    connectTimeoutMs: 3000,
    ...options,
  });
}

/** (id, content) of the messages a recorder saw in `room`, in delivery order. */
function delivered(seen, room) {
  return seen.message.filter((m) => m.room === room).map((m) => [m.id, m.content]);
}

function assertIncreasing(pairs, what) {
  for (let i = 1; i < pairs.length; i++) assert.ok(pairs[i - 1][0] < pairs[i][0], `${what}: ids increase at ${i}`);
}

test("connects, publishes, and receives its own echo and a peer's message", { timeout: 60000 }, async () => {
  const server = await Server.start();
  const ann = client(server, { nick: "ann" });
  const seen = recorder(ann);
  const lobby = ann.join("lobby");
  ann.connect();
  await waitFor("lobby joined", () => lobby.joined);
  assert.deepEqual(
    seen.state.map((s) => s.state),
    ["connecting", "connected"],
  );
  assert.equal(ann.user, "ann");
  assert.equal(typeof ann.epoch, "string");

  const bob = await Peer.join(server, "lobby", "bob");
  const sent = ann.publish("lobby", "hello from ann");
  const echo = await sent.confirmed;
  assert.equal(echo.content, "hello from ann");
  assert.equal(echo.confirms, sent.clientId);
  assert.equal(echo.mine, true);
  const bobSaw = await waitFor("bob receives ann's message", () =>
    bob.events.find((e) => e.type === "message" && e.content === "hello from ann"),
  );
  assert.equal(bobSaw.id, echo.id, "the same stored message");

  const fromBob = await bob.say("lobby", "hi ann");
  await waitFor("ann receives bob's message", () => seen.message.length === 2);
  assert.deepEqual(delivered(seen, "lobby"), [
    [echo.id, "hello from ann"],
    [fromBob.id, "hi ann"],
  ]);
  assert.equal(seen.message[1].mine, false);
  assert.equal(lobby.lastId, fromBob.id, "the cursor follows what was delivered");
  assert.ok(seen.presence.some((p) => p.user === "bob" && p.event === "join"), "bob's arrival announced");
  assert.ok(lobby.members.has("bob"));

  // A command the server does not know comes back as an error event, the connection stays.
  ann.send({ type: "dance" });
  const error = await waitFor("unknown_type error", () => seen.error.find((e) => e.code === "unknown_type"));
  assert.ok(error.message.length > 0);
  assert.equal(ann.state, "connected");

  await ann.leave("lobby");
  assert.ok(seen.left.some((l) => l.room === "lobby"), "left confirmed by the server");
  assert.equal(ann.room("lobby"), undefined);
  ann.close();
  assert.equal(ann.state, "disconnected");
  assert.equal(ann.reason.willReconnect, false);
  bob.close();
});

test("reconnects after a crash and resumes every room: none lost, none twice, in order", { timeout: 120000 }, async () => {
  const server = await Server.start(["--rate-limit", "0"]);
  // The token provider runs before every connection attempt: holding it keeps the client away
  // while the messages it must resume are sent.
  let hold = null;
  const reader = client(server, { nick: "reader", token: () => hold });
  const seen = recorder(reader);
  const alpha = reader.join("alpha"); // in the connection URL
  const beta = reader.join("beta"); // joined after welcome
  reader.connect();
  await waitFor("both rooms joined", () => alpha.joined && beta.joined);

  const writer = await Peer.join(server, "alpha", "writer");
  writer.ws.send(JSON.stringify({ type: "join", room: "beta" }));
  await waitFor("writer in beta", () => writer.events.some((e) => e.type === "joined" && e.room === "beta"));
  const before = [await writer.say("alpha", "alpha before"), await writer.say("beta", "beta before")];
  await waitFor("both received", () => seen.message.length === 2);
  writer.close();

  let release;
  hold = new Promise((r) => (release = r));
  await server.restart("SIGKILL");
  await waitFor("the client noticed", () => reader.state !== "connected");

  const writer2 = await Peer.join(server, "alpha", "writer");
  writer2.ws.send(JSON.stringify({ type: "join", room: "beta" }));
  await waitFor("writer in beta", () => writer2.events.some((e) => e.type === "joined" && e.room === "beta"));
  const awayAlpha = await writer2.sayMany("alpha", Array.from({ length: 30 }, (_, i) => `alpha away ${i}`));
  const awayBeta = await writer2.sayMany("beta", Array.from({ length: 30 }, (_, i) => `beta away ${i}`));
  assert.equal(reader.state === "connected", false, "still away while the messages were sent");
  release();
  hold = null;

  await waitFor("back in both rooms", () => reader.state === "connected" && alpha.joined && beta.joined);
  const live = [await writer2.say("alpha", "alpha live"), await writer2.say("beta", "beta live")];
  await waitFor("live messages", () => seen.message.length === 2 + 60 + 2);

  for (const [room, away, first, last] of [
    ["alpha", awayAlpha, before[0], live[0]],
    ["beta", awayBeta, before[1], live[1]],
  ]) {
    const expected = [first, ...away, last].map((e) => [e.id, e.content]);
    const got = delivered(seen, room);
    assert.deepEqual(got, expected, `${room}: every message once, in order`);
    assertIncreasing(got, room);
  }
  const rejoins = seen.joined.filter((j) => j.rejoin);
  assert.deepEqual(rejoins.map((j) => j.room).sort(), ["alpha", "beta"], "each room rejoined once");
  assert.ok(rejoins.every((j) => !j.reset), "same database, same epoch: no reset");
  const outage = seen.state.filter((s) => s.state === "disconnected");
  assert.ok(outage.length >= 1 && outage.every((s) => s.willReconnect), "every disconnect retried");
  reader.close();
  writer2.close();
});

test("a long gap (over 10 MB) is resumed in full, in order", { timeout: 240000 }, async () => {
  const server = await Server.start(["--rate-limit", "0", "--rate-limit-bytes", "0"]);
  const reader = client(server, { nick: "reader" });
  const seen = recorder(reader);
  const room = reader.join("bulk");
  reader.connect();
  await waitFor("joined", () => room.joined);
  const writer = await Peer.join(server, "bulk", "writer");
  const first = await writer.say("bulk", "before the gap");
  await waitFor("first received", () => seen.message.length === 1);

  reader.close(); // away; the subscription and its cursor stay
  const filler = "x".repeat(15000);
  const away = [];
  for (let batch = 0; batch < 14; batch++) {
    // In batches, so the writer's own echoes never pile up past its output limit.
    const contents = Array.from({ length: 50 }, (_, i) => `${batch * 50 + i} ${filler}`);
    away.push(...(await writer.sayMany("bulk", contents)));
  }
  const bytes = away.reduce((n, e) => n + e.content.length, 0);
  assert.ok(bytes > 10 * 1024 * 1024, `the gap is over 10 MB (${bytes} bytes)`);

  reader.connect();
  await waitFor("caught up", () => seen.message.length === 1 + away.length, 180000);
  const last = await writer.say("bulk", "after the gap");
  await waitFor("live after the catch-up", () => seen.message.length === 2 + away.length);
  const expected = [first, ...away, last].map((e) => [e.id, e.content]);
  assert.deepEqual(delivered(seen, "bulk"), expected);
  reader.close();
  writer.close();
});

test("a restart without persistence resets the room's cursor (epoch), so new ids are not taken for old", { timeout: 120000 }, async () => {
  const server = await Server.start(["--no-persist"]);
  const reader = client(server, { nick: "reader" });
  const seen = recorder(reader);
  const room = reader.join("gamma");
  reader.connect();
  await waitFor("joined", () => room.joined);
  const firstEpoch = reader.epoch;
  const writer = await Peer.join(server, "gamma", "writer");
  for (let i = 1; i <= 5; i++) await writer.say("gamma", `old ${i}`);
  await waitFor("old messages", () => seen.message.length === 5);
  const oldCursor = room.lastId;
  writer.close();

  await server.restart();
  // (A reconnect may reach the old server while it shuts down: that join is no reset.)
  const again = await waitFor(
    "rejoined the new server",
    () => room.joined && reader.epoch !== firstEpoch && seen.joined.at(-1),
  ).catch((err) => {
    throw new Error(`${err.message}: joined ${JSON.stringify(seen.joined)} states ${JSON.stringify(seen.state)}`);
  });
  assert.equal(again.reset, true, "the server said reset: the since was from another epoch");
  assert.notEqual(reader.epoch, firstEpoch);
  assert.equal(room.lastId, again.lastId, "the cursor starts over at the new join point");
  assert.ok(room.lastId < oldCursor, "the new id space is below the old cursor");

  const writer2 = await Peer.join(server, "gamma", "writer");
  const fresh = await writer2.say("gamma", "new 1");
  assert.ok(fresh.id <= oldCursor, `the new id ${fresh.id} is one the old cursor ${oldCursor} would have hidden`);
  await waitFor("the new message is delivered", () => seen.message.some((m) => m.content === "new 1"));
  assert.deepEqual(
    seen.message.map((m) => m.content),
    ["old 1", "old 2", "old 3", "old 4", "old 5", "new 1"],
  );
  // Without persistence there is no history: a page request says so instead of hanging.
  await assert.rejects(reader.history("gamma"), (err) => err.code === "history_unavailable");
  reader.close();
  writer2.close();
});

test("history pages go back from the join point, each message once, then the beginning", { timeout: 120000 }, async () => {
  const server = await Server.start(["--rate-limit", "0"]);
  const seeder = await Peer.join(server, "archive", "seeder");
  const seeded = await seeder.sayMany(
    "archive",
    Array.from({ length: 120 }, (_, i) => `seed ${String(i + 1).padStart(3, "0")}`),
  );

  const reader = client(server, { nick: "reader" });
  const seen = recorder(reader);
  const room = reader.join("archive");
  reader.connect();
  await waitFor("joined", () => room.joined);
  assert.equal(room.lastId, seeded.at(-1).id, "the subscription starts at the room's last message");

  const pages = [];
  for (;;) {
    const page = await room.loadOlder({ limit: 50 });
    pages.push(page);
    if (!page.hasMore) break;
    assert.ok(pages.length < 10, "paging ends");
  }
  assert.deepEqual(
    pages.map((p) => p.messages.length),
    [50, 50, 20],
  );
  const paged = pages
    .slice()
    .reverse()
    .flatMap((p) => p.messages)
    .map((m) => [m.id, m.content]);
  assert.deepEqual(paged, seeded.map((e) => [e.id, e.content]), "all 120, each once, oldest first");
  assert.ok(room.atStart);
  assert.deepEqual(await room.loadOlder(), { messages: [], hasMore: false }, "nothing before the beginning");
  assert.equal(seen.message.length, 0, "history is not replayed as live messages");

  const live = await seeder.say("archive", "live after paging");
  await waitFor("live message", () => seen.message.length === 1);
  assert.deepEqual(delivered(seen, "archive"), [[live.id, "live after paging"]]);
  reader.close();
  seeder.close();
});

test("the heartbeat watchdog drops a connection to a frozen server and resumes after it thaws", { timeout: 120000 }, async () => {
  const server = await Server.start();
  const reader = client(server, { nick: "reader", heartbeatMs: 500 });
  const seen = recorder(reader);
  const room = reader.join("frozen");
  reader.connect();
  await waitFor("joined", () => room.joined);
  const writer = await Peer.join(server, "frozen", "writer");
  const before = await writer.say("frozen", "before the freeze");
  await waitFor("received", () => seen.message.length === 1);
  // SIGSTOP: the TCP connection stays up but nothing answers, the case only a watchdog notices.
  server.child.kill("SIGSTOP");
  try {
    const dropped = await waitFor("the watchdog", () => seen.state.find((s) => s.kind === "heartbeat"));
    assert.equal(dropped.willReconnect, true);
  } finally {
    server.child.kill("SIGCONT");
  }
  await waitFor("back", () => reader.state === "connected" && room.joined);
  const after = await writer.say("frozen", "after the thaw");
  await waitFor("live again", () => seen.message.length === 2);
  assert.deepEqual(delivered(seen, "frozen"), [
    [before.id, "before the freeze"],
    [after.id, "after the thaw"],
  ]);
  reader.close();
  writer.close();
});

test("edits, deletes and read markers made while away are replayed once each, in order", { timeout: 120000 }, async () => {
  const server = await Server.start(["--rate-limit", "0"]);
  let hold = null;
  const ann = client(server, { nick: "ann", token: () => hold });
  const seen = recorder(ann, ["state", "joined", "message", "edited", "deleted", "read", "typing", "error"]);
  const lobby = ann.join("lobby");
  ann.connect();
  await waitFor("joined", () => lobby.joined);
  const bob = await Peer.join(server, "lobby", "bob");
  const first = await bob.say("lobby", "frist");
  const second = await bob.say("lobby", "second");
  await waitFor("both delivered", () => seen.message.length === 2);
  // Typing reaches ann (bob is someone else); ann's own typing does not come back to her.
  bob.ws.send(JSON.stringify({ type: "typing", room: "lobby" }));
  await waitFor("bob's typing", () => seen.typing.some((t) => t.user === "bob" && t.room === "lobby"));
  lobby.markRead(second.id);
  await waitFor("ann's marker comes back", () => seen.read.some((r) => r.id === second.id));

  // Away: bob fixes a typo, deletes a message, and posts again.
  let release;
  hold = new Promise((r) => (release = r)); // the next connection attempt waits
  await server.restart();
  await waitFor("ann is away", () => ann.state !== "connected");
  const bob2 = await Peer.join(server, "lobby", "bob");
  bob2.ws.send(JSON.stringify({ type: "edit", room: "lobby", id: first.id, content: "first" }));
  const edited = await waitFor("edit echoed", () => bob2.events.find((e) => e.type === "edited"));
  bob2.ws.send(JSON.stringify({ type: "delete", room: "lobby", id: second.id }));
  const deleted = await waitFor("delete echoed", () => bob2.events.find((e) => e.type === "deleted"));
  const third = await bob2.say("lobby", "third");
  release();
  hold = null;

  await waitFor("the newer message arrived", () => seen.message.some((m) => m.id === third.id));
  assert.deepEqual(
    seen.edited.map((e) => [e.id, e.content, e.seq]),
    [[first.id, "first", edited.seq]],
    "the edit made while away, once",
  );
  assert.deepEqual(seen.deleted.map((d) => [d.id, d.seq]), [[second.id, deleted.seq]], "the delete, once");
  assert.ok(edited.seq < deleted.seq && deleted.seq < third.id, "in the room's order");
  assert.equal(lobby.lastId, third.id, "the cursor went past the edit and the delete");
  // After the rejoin the server told ann her marker and what is unread above it.
  const after = seen.read.filter((r) => r.unread !== null);
  assert.ok(after.some((r) => r.id === second.id && r.unread === 1), JSON.stringify(seen.read));
  const rejoined = seen.joined.at(-1);
  assert.deepEqual([rejoined.readId, rejoined.unread], [second.id, 1], "joined carries the read state");
  // History shows the current state.
  const page = await ann.history("lobby", { limit: 10 });
  const state = page.messages.map((m) => [m.id, m.deleted ? null : m.content, !!m.editedTs]);
  assert.deepEqual(state, [
    [third.id, "third", false],
    [second.id, null, false],
    [first.id, "first", true],
  ]);
  ann.close();
  bob.close();
  bob2.close();
  await server.stop();
});
