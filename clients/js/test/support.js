// Test support: the real `roomcast` binary (ROOMCAST_BIN, default ../../target/debug/roomcast),
// a raw WebSocket peer that speaks the JSON protocol without the library (an independent witness),
// and waits on conditions with generous deadlines (nothing asserts on timing).
//
// Every server process is killed and reaped by `stop()`; `startServer` registers an `after` hook
// in the calling test file that stops every server it started and removes its directory.

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { after } from "node:test";

const here = dirname(fileURLToPath(import.meta.url));

/** The binary under test. */
export const BIN = process.env.ROOMCAST_BIN || resolve(here, "../../../target/debug/roomcast");

/** Deadline for anything a test waits for (the machine is shared and may be slow). */
export const PATIENCE_MS = 30000;

/** The WebSocket constructor the tests hand to the library (Node's own; run.js enables it on Node 20). */
export const WebSocketImpl = globalThis.WebSocket;

const created = new Set();
after(async () => {
  for (const server of created) await server.dispose();
});

/** Sleeps `ms`. */
export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `check` until it returns something truthy (returned), or fails after PATIENCE_MS. */
export async function waitFor(what, check, patience = PATIENCE_MS) {
  const deadline = Date.now() + patience;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Spawns roomcast on `addr` with its database in `dir`; resolves with the process and its address. */
function spawnOnce(addr, dir, args) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(
      BIN,
      ["--addr", addr, "--log-level", "warn", "--shards", "2", "--db", join(dir, "roomcast.db"), ...args],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    let out = "";
    const onData = (chunk) => {
      out += chunk;
      const m = out.match(/listening on http:\/\/(\S+)/);
      if (m) {
        child.stdout.off("data", onData);
        child.stdout.resume();
        resolvePromise({ child, addr: m[1] });
      }
    };
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", onData);
    child.on("error", reject);
    child.on("exit", (code, signal) => reject(new Error(`roomcast exited before listening (${code ?? signal}): ${out}`)));
  });
}

/** A running roomcast process; `restart()` brings up a replacement on the same address and database. */
export class Server {
  constructor(dir, args) {
    this.dir = dir;
    this.args = args;
    this.child = null;
    this.addr = null;
  }

  /** `ws://ADDR/ws`. */
  get wsUrl() {
    return `ws://${this.addr}/ws`;
  }

  /** `http://ADDR`. */
  get httpUrl() {
    return `http://${this.addr}`;
  }

  async #spawn(addr) {
    const { child, addr: bound } = await spawnOnce(addr, this.dir, this.args);
    child.removeAllListeners("exit");
    this.child = child;
    this.addr = bound;
  }

  /** Stops the process: `signal` (SIGTERM by default; SIGKILL for a crash), then SIGKILL if it lingers. */
  async stop(signal = "SIGTERM") {
    const child = this.child;
    if (!child) return;
    this.child = null;
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill(signal);
      const timer = setTimeout(() => child.kill("SIGKILL"), 10000);
      await exited;
      clearTimeout(timer);
    }
  }

  /** Stops (with `signal`) and starts a replacement on the same address and database. */
  async restart(signal = "SIGTERM") {
    await this.stop(signal);
    const deadline = Date.now() + PATIENCE_MS;
    for (;;) {
      try {
        await this.#spawn(this.addr);
        return;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await sleep(200); // the old socket may take a moment to be released
      }
    }
  }

  /** Stops the process and removes its directory. */
  async dispose() {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  static async start(args = []) {
    const dir = mkdtempSync(join(tmpdir(), "roomcast-js-"));
    const server = new Server(dir, args);
    created.add(server);
    await server.#spawn("127.0.0.1:0");
    return server;
  }
}

/**
 * A JSON-protocol connection without the library: joins one room and sends messages, keeping what
 * it received (so its own echoes never pile up on the server).
 */
export class Peer {
  constructor(ws) {
    this.ws = ws;
    this.events = [];
    ws.onmessage = (ev) => this.events.push(JSON.parse(ev.data));
  }

  static async join(server, room, nick) {
    const url = `${server.wsUrl}?format=json&room=${encodeURIComponent(room)}&nick=${encodeURIComponent(nick)}`;
    const ws = new WebSocketImpl(url);
    const peer = new Peer(ws);
    await new Promise((res, rej) => {
      ws.onopen = res;
      ws.onerror = () => rej(new Error(`peer ${nick} could not connect to ${url}`));
    });
    await waitFor(`${nick} joined ${room}`, () => peer.events.some((e) => e.type === "joined" && e.room === room));
    return peer;
  }

  /** Sends `content` to `room` and waits for its echo; resolves with the echo. */
  async say(room, content) {
    const clientId = `peer-${Math.random().toString(36).slice(2)}`;
    this.ws.send(JSON.stringify({ type: "message", room, content, client_id: clientId }));
    return waitFor(`echo of ${content.slice(0, 40)}`, () =>
      this.events.find((e) => e.type === "message" && e.client_id === clientId),
    );
  }

  /** Sends many messages, waiting for the echoes only at the end; resolves with the echoes in order. */
  async sayMany(room, contents) {
    const ids = contents.map(() => `peer-${Math.random().toString(36).slice(2)}`);
    contents.forEach((content, i) => this.ws.send(JSON.stringify({ type: "message", room, content, client_id: ids[i] })));
    const wanted = new Set(ids);
    await waitFor(`${contents.length} echoes`, () => this.events.filter((e) => wanted.has(e.client_id)).length === ids.length);
    const echoes = this.events.filter((e) => wanted.has(e.client_id));
    this.events = this.events.filter((e) => !wanted.has(e.client_id));
    return echoes;
  }

  close() {
    this.ws.close();
  }
}

/** Collects a client's events by type, in order. */
export function recorder(client, types = ["state", "welcome", "joined", "left", "message", "presence", "error"]) {
  const seen = Object.fromEntries(types.map((t) => [t, []]));
  for (const type of types) client.on(type, (e) => seen[type].push(e));
  return seen;
}
