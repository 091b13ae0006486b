// roomcast.js: the client library of the roomcast chat server (JSON protocol, `roomcast.v1.json`).
//
// A dependency-free ES module for browsers and Node 20+. It owns the protocol logic so that a user
// interface only renders what it emits:
// - one WebSocket, a connection state machine (connecting → connected → disconnected, with a reason)
//   and reconnects with full-jitter backoff (0.5 s → 20 s) whose count starts over only after a
//   connection stayed up 10 s; no reconnect after a close code in 4500–4999 ("do not reconnect");
// - a heartbeat watchdog (a ping unanswered for a whole period drops the socket);
// - per-room subscriptions that rejoin after every reconnect with `since` (the room's cursor) and the
//   `epoch` that cursor is from, and forget the cursor when the server answers `joined.reset`;
// - every message delivered once, in id order: a message at or below the room's cursor is a duplicate
//   and dropped, and the cursor moves only after the `message` listeners have run;
// - history paging below the point the subscription started, and confirmation of sent messages
//   (by `client_id`, or by sender and content for a message replayed after a reconnect);
// - a token provider called before every connection attempt and again when the server says the
//   token expired (then sent in band as `refresh`: the connection stays); the token goes in the
//   `bearer.<token>` subprotocol entry, not the URL.
// docs/PROTOCOL.md in the roomcast repository is the protocol; clients/js/README.md the API.

/** Version of this library. */
export const VERSION = "0.1.0";

/** Defaults of the tunable options (milliseconds, or a count of messages). */
export const DEFAULTS = Object.freeze({
  backoffBaseMs: 500, // first reconnect delay ceiling (before jitter)
  backoffMaxMs: 20000, // reconnect delay ceiling
  stableAfterMs: 10000, // a connection up this long resets the backoff count
  heartbeatMs: 25000, // ping period; a ping unanswered for a whole period drops the socket
  connectTimeoutMs: 15000, // no `welcome` this long after opening a socket drops it (and retries)
  historyPageSize: 50, // messages per history page (capped by the server's `max_history_page`)
  maxUnconfirmed: 1000, // sent messages awaiting their echo, per client; the oldest is given up past it
});

/** WebSocket `readyState` of an open socket (the same in browsers, Node and the `ws` package). */
const OPEN = 1;
const MAX_ROOM_BYTES = 64;
const MAX_NICK_CHARS = 32;
const MAX_CLIENT_ID_BYTES = 128;

/** An error of this library or of the server (`code` is the server's error code where it has one). */
export class RoomcastError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   */
  constructor(code, message) {
    super(message);
    this.name = "RoomcastError";
    /** Machine-readable reason: a server error code (`rate_limited`, …) or one of this library's. */
    this.code = code;
  }
}

// ---- Rules shared with the server (docs/PROTOCOL.md) -------------------------------------------

const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const BIDI = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;

/** UTF-8 length of a string. */
export function utf8Length(text) {
  return new TextEncoder().encode(text).length;
}

/**
 * Why `name` is not a valid room name (1–64 bytes, no control or bidirectional control
 * characters), or `null` when it is.
 * @param {string} name
 * @returns {string | null}
 */
export function roomNameProblem(name) {
  if (typeof name !== "string" || name.length === 0) return "Enter a room name.";
  if (utf8Length(name) > MAX_ROOM_BYTES) return `A room name has at most ${MAX_ROOM_BYTES} bytes.`;
  if (CONTROL.test(name)) return "A room name cannot contain control characters.";
  if (BIDI.test(name)) return "A room name cannot contain bidirectional control characters.";
  return null;
}

/**
 * Why `nick` (already trimmed) is not a valid nickname (1–32 characters, no control or
 * bidirectional control characters), or `null` when it is.
 * @param {string} nick
 * @returns {string | null}
 */
/**
 * The direct-message room of users `a` and `b`: `dm:<first>,<second>`, the names sorted (the
 * server's rule, docs/PROTOCOL.md "Direct messages").
 * @param {string} a
 * @param {string} b
 */
export function dmRoom(a, b) {
  const [first, second] = a < b ? [a, b] : [b, a];
  return `dm:${first},${second}`;
}

/**
 * The other user of a direct-message room for `me`, or `null` when `room` is not one of yours.
 * @param {string} room
 * @param {string} me
 */
export function dmPeer(room, me) {
  if (typeof room !== "string" || !room.startsWith("dm:")) return null;
  const [a, b, extra] = room.slice(3).split(",");
  if (extra !== undefined || !a || !b) return null;
  return a === me ? b : b === me ? a : null;
}

export function nickProblem(nick) {
  const chars = typeof nick === "string" ? [...nick].length : 0;
  if (chars === 0) return "Pick a nickname.";
  if (chars > MAX_NICK_CHARS) return `A nickname has at most ${MAX_NICK_CHARS} characters.`;
  if (CONTROL.test(nick)) return "A nickname cannot contain control characters.";
  if (BIDI.test(nick)) return "A nickname cannot contain bidirectional control characters.";
  return null;
}

/**
 * Whether a close code allows a reconnect: every code does but 4500–4999, which the server uses
 * for "do not reconnect" (a decision about this client, not a failure). 1008 (rate limit, idle) and
 * 1013 (slow consumer, history busy) reconnect with backoff.
 * @param {number | undefined} code
 */
export function reconnectAllowed(code) {
  return !(typeof code === "number" && code >= 4500 && code <= 4999);
}

/**
 * The delay before reconnect attempt `attempt` (0 for the first): full jitter, a uniformly random
 * time between 0 and min(maxMs, baseMs × 2^attempt), so clients dropped together do not come back
 * in lockstep.
 * @param {number} attempt
 * @param {{ backoffBaseMs: number, backoffMaxMs: number }} policy
 * @param {() => number} [random] uniform in [0, 1)
 */
export function backoffDelay(attempt, policy, random = Math.random) {
  const ceiling = Math.min(policy.backoffMaxMs, policy.backoffBaseMs * 2 ** Math.min(attempt, 40));
  return Math.round(random() * ceiling);
}

// ---- Rooms --------------------------------------------------------------------------------------

/** A room this client is subscribed to. Its fields are read-only for the application. */
export class Room {
  /**
   * @param {RoomcastClient} client
   * @param {string} name
   */
  constructor(client, name) {
    /** @type {RoomcastClient} */
    this.client = client;
    /** The room's name. */
    this.name = name;
    /** The server confirmed membership on the current connection (`joined`). */
    this.joined = false;
    /** Names of members the server listed or announced. */
    this.members = new Set();
    /** Members in the room (the server may list fewer names). */
    this.memberCount = 0;
    /**
     * The resume cursor: the highest id delivered to the application, or the room's `last_id` when
     * the subscription started (everything up to it is history). `null` before the first `joined`.
     * @type {number | null}
     */
    this.lastId = null;
    /** The `welcome.epoch` that `lastId` is from. @type {string | null} */
    this.cursorEpoch = null;
    /** `last_id` of the `joined` that started the subscription (or the last reset). @type {number | null} */
    this.startId = null;
    /** Lowest id handed out by `loadOlder`. @type {number | null} */
    this.oldestId = null;
    /** `loadOlder` reached the beginning of the room. */
    this.atStart = false;
    /** @internal in-flight `loadOlder` page */
    this._older = null;
    /** Your user's read marker in the room, as far as this client knows. @type {number | null} */
    this.readId = null;
    /** @internal when the last `typing` notice was sent (client clock) */
    this._typingAt = null;
  }

  /** Loads the page of messages just older than what this subscription handed out so far. */
  loadOlder(options) {
    return this.client._loadOlder(this, options);
  }

  /** Sends a message to this room (see {@link RoomcastClient#publish}). */
  publish(content, options) {
    return this.client.publish(this.name, content, options);
  }

  /** Edits one of your messages in this room (see {@link RoomcastClient#edit}). */
  edit(id, content) {
    return this.client.edit(this.name, id, content);
  }

  /** Deletes one of your messages in this room (see {@link RoomcastClient#delete}). */
  delete(id) {
    return this.client.delete(this.name, id);
  }

  /** Tells the room's other members you are typing (see {@link RoomcastClient#typing}). */
  typing() {
    return this.client.typing(this.name);
  }

  /** Moves your read marker in this room (see {@link RoomcastClient#markRead}). */
  markRead(id) {
    return this.client.markRead(this.name, id);
  }

  /** Leaves this room (see {@link RoomcastClient#leave}). */
  leave() {
    return this.client.leave(this.name);
  }
}

// ---- The client ---------------------------------------------------------------------------------

/** Turns a server message (live or from history) into the library's message shape. */
function toMessage(raw, room, fields) {
  return {
    id: raw.id,
    room,
    user: raw.user,
    content: raw.content,
    ts: raw.ts ?? raw.created_at,
    clientId: raw.client_id,
    editedTs: raw.edited_ts,
    deleted: !!raw.deleted,
    ...fields,
  };
}

/** A promise whose rejection is never "unhandled" by itself (callers who chain on it still see it). */
function quiet(promise) {
  promise.catch(() => {});
  return promise;
}

/** Reports an exception thrown by an application listener without stopping the library. */
function reportListenerError(err) {
  if (typeof globalThis.reportError === "function") globalThis.reportError(err);
  else setTimeout(() => { throw err; });
}

/**
 * One connection to a roomcast server, kept up across outages, with the rooms subscribed to.
 *
 * Events (`client.on(type, listener)`): `state`, `welcome`, `joined`, `left`, `message`, `edited`,
 * `deleted`, `read`, `typing`, `dmRooms`, `presence`, `error`, `unknown`. See clients/js/README.md.
 */
export class RoomcastClient {
  #options;
  #WebSocket;
  #clock;
  #random;
  #listeners = new Map();
  /** @type {Map<string, Room>} */
  #rooms = new Map();
  #socket = null;
  #generation = 0;
  #state = "disconnected";
  #reason = { kind: "initial", willReconnect: false };
  #started = false;
  #user = null;
  #epoch = null;
  #limits = null;
  #attempt = 0;
  #retryTimer = null;
  #stableTimer = null;
  #heartbeatTimer = null;
  #awaitingPong = false;
  /** History commands answered in the order sent: `{ room, resolve, reject }`. */
  #historyWaiting = [];
  /** client_id → `{ room, content, resolve, reject }`, oldest first. */
  #unconfirmed = new Map();
  #clientSeq = 0;
  /** room name → `leave()` calls waiting for `left`. */
  #leaving = new Map();

  /**
   * @param {import("./roomcast.d.ts").ClientOptions} [options]
   */
  constructor(options = {}) {
    const WebSocketImpl = options.WebSocket ?? globalThis.WebSocket;
    if (typeof WebSocketImpl !== "function") {
      throw new RoomcastError(
        "no_websocket",
        "no WebSocket implementation: pass one as options.WebSocket (Node 20: the `ws` package, or run node with --experimental-websocket)",
      );
    }
    let url = options.url;
    if (url === undefined && globalThis.location?.host) {
      url = `${globalThis.location.protocol === "https:" ? "wss:" : "ws:"}//${globalThis.location.host}/ws`;
    }
    if (typeof url !== "string") throw new RoomcastError("bad_option", "options.url is required outside a browser page");
    const parsed = new URL(url);
    if (parsed.protocol === "http:") parsed.protocol = "ws:";
    if (parsed.protocol === "https:") parsed.protocol = "wss:";
    if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
      throw new RoomcastError("bad_option", `options.url must be ws:, wss:, http: or https:, not ${parsed.protocol}`);
    }
    if (options.nick !== undefined) {
      const problem = nickProblem(String(options.nick).trim());
      if (problem) throw new RoomcastError("invalid_nick", problem);
    }
    this.#options = { ...DEFAULTS, ...options, url: parsed.toString() };
    this.#WebSocket = WebSocketImpl;
    this.#clock = options.clock ?? { setTimeout: (f, ms) => setTimeout(f, ms), clearTimeout: (t) => clearTimeout(t) };
    this.#random = options.random ?? Math.random;
  }

  // ---- Reading state ----

  /** `"connecting"`, `"connected"` (after `welcome`) or `"disconnected"`. */
  get state() {
    return this.#state;
  }
  /** Why the client is disconnected (or last was): `{ kind, code?, reason?, willReconnect, retryInMs? }`. */
  get reason() {
    return this.#reason;
  }
  /** The user name the server gave this connection (`welcome.user`), or `null` before the first. */
  get user() {
    return this.#user;
  }
  /** The server's id space (`welcome.epoch`). */
  get epoch() {
    return this.#epoch;
  }
  /** The server's limits (`welcome.limits`), or `null` before the first `welcome`. */
  get limits() {
    return this.#limits;
  }
  /** Reconnect attempts since the last connection that stayed up `stableAfterMs`. */
  get attempt() {
    return this.#attempt;
  }
  /** The subscribed rooms, in the order they were joined. @returns {ReadonlyMap<string, Room>} */
  get rooms() {
    return this.#rooms;
  }
  /** The subscription to `name`, if any. */
  room(name) {
    return this.#rooms.get(name);
  }

  // ---- Events ----

  /** Adds a listener; returns a function that removes it. */
  on(type, listener) {
    if (!this.#listeners.has(type)) this.#listeners.set(type, new Set());
    this.#listeners.get(type).add(listener);
    return () => this.off(type, listener);
  }

  /** Removes a listener. */
  off(type, listener) {
    this.#listeners.get(type)?.delete(listener);
  }

  #emit(type, event) {
    const listeners = this.#listeners.get(type);
    if (!listeners) return;
    for (const listener of [...listeners]) {
      try {
        listener(event);
      } catch (err) {
        reportListenerError(err);
      }
    }
  }

  // ---- Connecting ----

  /** Starts connecting (and keeps reconnecting until {@link close}). Does nothing if started. */
  connect() {
    if (this.#started) return;
    this.#started = true;
    this.#attempt = 0;
    this.#open();
  }

  /** Closes the connection for good (no reconnect); `connect()` starts again. */
  close() {
    this.#started = false;
    this.#clock.clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    const ws = this.#socket;
    if (ws) {
      this.#socket = null;
      try {
        ws.close(1000);
      } catch {
        // already closing
      }
    }
    this.#teardown(new RoomcastError("closed", "the client was closed"));
    this.#setState("disconnected", { kind: "client", willReconnect: false });
  }

  /** While waiting to reconnect, reconnects now (e.g. when the browser says it is online again). */
  reconnectNow() {
    if (this.#started && this.#retryTimer !== null) {
      this.#clock.clearTimeout(this.#retryTimer);
      this.#retryTimer = null;
      this.#open();
    }
  }

  async #open() {
    this.#retryTimer = null;
    const generation = ++this.#generation;
    this.#setState("connecting", { kind: "connecting", willReconnect: true });
    let token;
    try {
      token = await this.#token();
    } catch (err) {
      if (generation === this.#generation && this.#started) {
        this.#lost({ kind: "token", message: String(err?.message ?? err) });
      }
      return;
    }
    if (generation !== this.#generation || !this.#started) return;
    const url = new URL(this.#options.url);
    url.searchParams.set("format", "json");
    if (this.#options.nick !== undefined) url.searchParams.set("nick", String(this.#options.nick).trim());
    // A token travels as a `bearer.<token>` subprotocol entry next to `roomcast.v1.json`, out of the
    // URL (and so out of access logs); the server selects `roomcast.v1.json` and never echoes it.
    const protocols = token ? ["roomcast.v1.json", `bearer.${token}`] : undefined;
    // The first room goes in the URL (a connection starts in a room); the others are joined after
    // `welcome`. Without one the server puts the connection in `general`, which is left at once.
    const first = this.#rooms.values().next().value;
    if (first) {
      url.searchParams.set("room", first.name);
      if (first.lastId !== null) {
        url.searchParams.set("since", String(first.lastId));
        if (first.cursorEpoch) url.searchParams.set("epoch", first.cursorEpoch);
      }
    }
    let ws;
    try {
      ws = protocols ? new this.#WebSocket(url.toString(), protocols) : new this.#WebSocket(url.toString());
    } catch (err) {
      this.#lost({ kind: "refused", message: String(err?.message ?? err) });
      return;
    }
    this.#socket = ws;
    const urlRoom = first ? first.name : null;
    // A socket can hang before it opens or before `welcome` (a server going away mid-handshake):
    // give up on it after connectTimeoutMs, like the heartbeat does on a silent connection.
    this.#clock.clearTimeout(this.#heartbeatTimer);
    this.#heartbeatTimer = this.#clock.setTimeout(() => {
      if (this.#socket === ws && this.#state === "connecting") this.#drop(ws, { kind: "timeout", message: "no welcome in time" });
    }, this.#options.connectTimeoutMs);
    ws.onmessage = (ev) => {
      if (this.#socket === ws) this.#onData(ev.data, urlRoom);
    };
    ws.onclose = (ev) => {
      if (this.#socket === ws) {
        this.#socket = null;
        this.#lost({ kind: "closed", code: ev.code, reason: ev.reason || "", wasClean: !!ev.wasClean });
      }
    };
    ws.onerror = () => {}; // a close event follows
  }

  /** The token to connect or refresh with: `tokenProvider` (or `token`) called, or `token` as given. */
  async #token() {
    const source = this.#options.tokenProvider ?? this.#options.token;
    return typeof source === "function" ? await source() : source;
  }

  /**
   * The server said the token expired: ask the provider for a new one and send `refresh` on the
   * same socket (the server closes it with 4001 if none comes within its grace; the reconnect then
   * asks the provider again). A static token cannot be renewed: nothing is sent.
   */
  async #refreshToken(ws) {
    const source = this.#options.tokenProvider ?? this.#options.token;
    if (typeof source !== "function") return;
    let token;
    try {
      token = await source();
    } catch (err) {
      this.#emit("error", { code: "token", message: `the token provider failed: ${String(err?.message ?? err)}` });
      return;
    }
    if (token && this.#socket === ws && ws.readyState === OPEN) ws.send(JSON.stringify({ type: "refresh", token: String(token) }));
  }

  /** The socket went away (closed, failed, dropped by the watchdog): clean up and maybe retry. */
  #lost(reason) {
    this.#teardown(new RoomcastError("disconnected", "the connection was lost"));
    if (!this.#started) {
      this.#setState("disconnected", { ...reason, willReconnect: false });
      return;
    }
    if (!reconnectAllowed(reason.code)) {
      this.#started = false;
      this.#setState("disconnected", { ...reason, willReconnect: false });
      return;
    }
    const delay = backoffDelay(this.#attempt, this.#options, this.#random);
    this.#attempt += 1;
    this.#setState("disconnected", { ...reason, willReconnect: true, retryInMs: delay });
    // A listener may have closed the client meanwhile.
    if (this.#started && this.#retryTimer === null && this.#socket === null) {
      this.#retryTimer = this.#clock.setTimeout(() => this.#open(), delay);
    }
  }

  /** Forgets everything tied to the socket that ended. */
  #teardown(why) {
    this.#clock.clearTimeout(this.#stableTimer);
    this.#stableTimer = null;
    this.#clock.clearTimeout(this.#heartbeatTimer);
    this.#heartbeatTimer = null;
    for (const room of this.#rooms.values()) {
      room.joined = false;
      room._older = null;
    }
    const waiting = this.#historyWaiting;
    this.#historyWaiting = [];
    for (const request of waiting) request.reject(why);
    // Not joined any more on any socket: nothing left to wait for.
    const leaving = [...this.#leaving.values()].flat();
    this.#leaving.clear();
    for (const resolve of leaving) resolve();
  }

  #setState(state, reason) {
    const previous = this.#state;
    this.#state = state;
    this.#reason = reason;
    this.#emit("state", { state, previous, ...reason });
  }

  /** Gives up on a socket that has not closed by itself, and goes on as if it had. */
  #drop(ws, reason) {
    this.#socket = null;
    try {
      ws.close();
    } catch {
      // already closing
    }
    this.#lost(reason);
  }

  #startHeartbeat(ws) {
    this.#clock.clearTimeout(this.#heartbeatTimer);
    this.#awaitingPong = false;
    const beat = () => {
      if (this.#socket !== ws) return;
      if (this.#awaitingPong) {
        // Nothing heard for a whole period: the connection is dead without the socket noticing.
        this.#drop(ws, { kind: "heartbeat", message: "no answer to a ping" });
        return;
      }
      this.#awaitingPong = this.send({ type: "ping" });
      this.#heartbeatTimer = this.#clock.setTimeout(beat, this.#options.heartbeatMs);
    };
    this.#heartbeatTimer = this.#clock.setTimeout(beat, this.#options.heartbeatMs);
  }

  // ---- Sending ----

  /**
   * Sends one protocol command as it is (for commands this library does not wrap). Returns false
   * when there is no open socket.
   */
  send(command) {
    const ws = this.#socket;
    if (!ws || ws.readyState !== OPEN) return false;
    ws.send(JSON.stringify(command));
    return true;
  }

  /**
   * Subscribes to `name` (joined now when connected, else on the next connection) and returns the
   * subscription. Joining a room already subscribed returns it.
   * @param {string} name
   * @returns {Room}
   */
  join(name) {
    const existing = this.#rooms.get(name);
    if (existing) return existing;
    const problem = roomNameProblem(name);
    if (problem) throw new RoomcastError("invalid_room", problem);
    if (this.#limits && this.#rooms.size >= this.#limits.max_rooms) {
      throw new RoomcastError("too_many_rooms", `You can be in at most ${this.#limits.max_rooms} rooms.`);
    }
    const room = new Room(this, name);
    this.#rooms.set(name, room);
    if (this.#state === "connected") this.send({ type: "join", room: name });
    return room;
  }

  /**
   * Unsubscribes from `name`: no more events for it, no rejoin. Resolves once the server said
   * `left` (at once when the room is not joined on the current connection).
   * @param {string} name
   * @returns {Promise<void>}
   */
  leave(name) {
    const room = this.#rooms.get(name);
    if (!room) return Promise.resolve();
    this.#rooms.delete(name);
    for (const [clientId, entry] of this.#unconfirmed) {
      if (entry.room === name) this.#settle(clientId, new RoomcastError("left", `left ${name} before the echo`));
    }
    if (!room.joined || !this.send({ type: "leave", room: name })) return Promise.resolve();
    room.joined = false;
    return new Promise((resolve) => {
      if (!this.#leaving.has(name)) this.#leaving.set(name, []);
      this.#leaving.get(name).push(resolve);
    });
  }

  /**
   * Sends a message to a joined room. `confirmed` resolves with the message as the server stored it
   * (its echo), or rejects when the server refused it with an error naming its `client_id`.
   * @param {string} roomName
   * @param {string} content
   * @param {{ clientId?: string }} [options]
   * @returns {{ clientId: string, confirmed: Promise<import("./roomcast.d.ts").Message> }}
   */
  publish(roomName, content, options = {}) {
    const room = this.#rooms.get(roomName);
    if (!room) throw new RoomcastError("not_joined", `not subscribed to ${roomName}`);
    if (typeof content !== "string" || content.length === 0) {
      throw new RoomcastError("empty_message", "a message needs content");
    }
    const max = this.#limits?.max_message_bytes;
    const bytes = utf8Length(content);
    if (max !== undefined && bytes > max) {
      throw new RoomcastError("message_too_large", `message is ${bytes} bytes; the limit is ${max}`);
    }
    const clientId = options.clientId ?? this.#newClientId();
    if (utf8Length(clientId) > MAX_CLIENT_ID_BYTES) {
      throw new RoomcastError("invalid_client_id", `client_id is longer than ${MAX_CLIENT_ID_BYTES} bytes`);
    }
    if (this.#state !== "connected" || !room.joined) {
      throw new RoomcastError("not_connected", `not connected to ${roomName} right now`);
    }
    const confirmed = quiet(
      new Promise((resolve, reject) => this.#unconfirmed.set(clientId, { room: roomName, content, resolve, reject })),
    );
    while (this.#unconfirmed.size > this.#options.maxUnconfirmed) {
      const oldest = this.#unconfirmed.keys().next().value;
      this.#settle(oldest, new RoomcastError("unconfirmed", "given up: too many messages awaiting their echo"));
    }
    this.send({ type: "message", room: roomName, content, client_id: clientId });
    return { clientId, confirmed };
  }

  /**
   * Replaces the content of your message `id` in `roomName`; every member gets an `edited` event.
   * The server answers `forbidden` (not yours), `not_found` (unknown or deleted) as `error` events.
   * @param {string} roomName
   * @param {number} id
   * @param {string} content
   */
  edit(roomName, id, content) {
    this.#checkAmend(roomName, id);
    if (typeof content !== "string" || content.length === 0) {
      throw new RoomcastError("empty_message", "an edit needs content");
    }
    const max = this.#limits?.max_message_bytes;
    if (max !== undefined && utf8Length(content) > max) {
      throw new RoomcastError("message_too_large", `content is ${utf8Length(content)} bytes; the limit is ${max}`);
    }
    this.send({ type: "edit", room: roomName, id, content });
  }

  /**
   * Deletes your message `id` in `roomName`; every member gets a `deleted` event.
   * @param {string} roomName
   * @param {number} id
   */
  delete(roomName, id) {
    this.#checkAmend(roomName, id);
    this.send({ type: "delete", room: roomName, id });
  }

  #checkAmend(roomName, id) {
    const room = this.#rooms.get(roomName);
    if (!room) throw new RoomcastError("not_joined", `not subscribed to ${roomName}`);
    if (!Number.isSafeInteger(id) || id < 1) throw new RoomcastError("invalid_parameter", `not a message id: ${id}`);
    if (this.#state !== "connected" || !room.joined) {
      throw new RoomcastError("not_connected", `not connected to ${roomName} right now`);
    }
  }

  /**
   * Tells the room's other members you are typing. Call it on every key press: at most one notice
   * per `typingEveryMs` (2 s, the server's own limit) is sent, and nothing while disconnected.
   * @param {string} roomName
   */
  typing(roomName) {
    const room = this.#rooms.get(roomName);
    if (!room || !room.joined || this.#state !== "connected") return;
    const now = this.#clock.now?.() ?? Date.now();
    if (room._typingAt !== null && now - room._typingAt < 2000) return;
    room._typingAt = now;
    this.send({ type: "typing", room: roomName });
  }

  /**
   * Moves your read marker in `roomName` up to message `id` (ignored if not above the marker you
   * know); every connection of your user in the room gets a `read` event.
   * @param {string} roomName
   * @param {number} id
   */
  markRead(roomName, id) {
    const room = this.#rooms.get(roomName);
    if (!room || !room.joined || this.#state !== "connected") return;
    if (!Number.isSafeInteger(id) || id <= (room.readId ?? 0)) return;
    room.readId = id;
    this.send({ type: "read", room: roomName, id });
  }

  /**
   * Sends a direct message to user `to`: in the pair's room (`dmRoom`), which this client subscribes
   * to if it has not yet (the server joins this connection to it and tells `to`'s open connections).
   * @param {string} to
   * @param {string} content
   * @param {{ clientId?: string }} [options]
   * @returns {{ room: string, clientId: string, confirmed: Promise<import("./roomcast.d.ts").Message> }}
   */
  dm(to, content, options = {}) {
    const problem = nickProblem(to);
    if (problem) throw new RoomcastError("invalid_nick", problem);
    if (this.#state !== "connected" || !this.#user) throw new RoomcastError("not_connected", "not connected right now");
    if (to.trim() === this.#user) throw new RoomcastError("invalid_parameter", "a direct message needs someone else");
    const name = dmRoom(this.#user, to.trim());
    const existing = this.#rooms.get(name);
    if (existing && existing.joined) return { room: name, ...this.publish(name, content, options) };
    if (typeof content !== "string" || content.length === 0) throw new RoomcastError("empty_message", "a message needs content");
    // Subscribed without a `join`: the server's answer to `dm` joins this connection.
    if (!existing) this.#rooms.set(name, new Room(this, name));
    const clientId = options.clientId ?? this.#newClientId();
    const confirmed = quiet(
      new Promise((resolve, reject) => this.#unconfirmed.set(clientId, { room: name, content, resolve, reject })),
    );
    this.send({ type: "dm", to: to.trim(), content, client_id: clientId });
    return { room: name, clientId, confirmed };
  }

  /** Stops waiting for the echo of `clientId` (its `confirmed` rejects with `discarded`). */
  discard(clientId) {
    this.#settle(clientId, new RoomcastError("discarded", "no longer waiting for this message"));
  }

  #settle(clientId, error, message) {
    const entry = this.#unconfirmed.get(clientId);
    if (!entry) return;
    this.#unconfirmed.delete(clientId);
    if (error) entry.reject(error);
    else entry.resolve(message);
  }

  #newClientId() {
    this.#clientSeq += 1;
    const rand = Math.floor(this.#random() * 2 ** 40).toString(36);
    return `${Date.now().toString(36)}-${rand}-${this.#clientSeq}`;
  }

  // ---- History ----

  /**
   * One history page of `room` as the server answers it (no cursor bookkeeping): newest first
   * without a cursor or with `beforeId`, oldest first with `afterId`. Needs an open connection.
   * @param {string} room
   * @param {{ beforeId?: number, afterId?: number, limit?: number }} [page]
   */
  history(room, page = {}) {
    const problem = roomNameProblem(room);
    if (problem) return quiet(Promise.reject(new RoomcastError("invalid_room", problem)));
    const limit = Math.max(1, Math.min(page.limit ?? this.#options.historyPageSize, this.#limits?.max_history_page ?? 200));
    const command = { type: "history", room, limit };
    if (page.beforeId !== undefined) command.before_id = page.beforeId;
    if (page.afterId !== undefined) command.after_id = page.afterId;
    return quiet(
      new Promise((resolve, reject) => {
        if (this.#state !== "connected" || !this.send(command)) {
          reject(new RoomcastError("not_connected", "not connected"));
          return;
        }
        this.#historyWaiting.push({ room, resolve, reject });
      }),
    );
  }

  /** @internal {@link Room#loadOlder} */
  _loadOlder(room, options = {}) {
    if (this.#rooms.get(room.name) !== room) return quiet(Promise.reject(new RoomcastError("not_joined", "left")));
    if (room._older) return room._older;
    if (room.atStart || room.startId === 0) {
      room.atStart = true;
      return Promise.resolve({ messages: [], hasMore: false });
    }
    if (!room.joined || room.startId === null) {
      return quiet(Promise.reject(new RoomcastError("not_joined", `${room.name} is not joined right now`)));
    }
    const before = room.oldestId ?? room.startId + 1;
    // A page in flight when the socket ends is rejected with it, so a page never outlives a reset.
    const request = quiet(
      this.history(room.name, { beforeId: before, limit: options.limit }).then(
        (page) => {
          if (room._older === request) room._older = null;
          const messages = page.messages.filter((m) => m.id < before).sort((a, b) => a.id - b.id);
          if (messages.length > 0) room.oldestId = messages[0].id;
          if (!page.hasMore) room.atStart = true;
          return { messages, hasMore: page.hasMore };
        },
        (err) => {
          if (room._older === request) room._older = null;
          throw err;
        },
      ),
    );
    room._older = request;
    return request;
  }

  // ---- Server events ----

  #onData(data, urlRoom) {
    let text = data;
    if (typeof data !== "string") {
      try {
        text = new TextDecoder().decode(data);
      } catch {
        return; // not text (JSON connections get no binary frames)
      }
    }
    let event;
    try {
      event = JSON.parse(text);
    } catch {
      this.#emit("error", { code: "bad_frame", message: `unreadable frame from the server: ${text.slice(0, 80)}` });
      return;
    }
    if (event === null || typeof event !== "object") return;
    this.#awaitingPong = false; // anything heard proves the connection alive
    switch (event.type) {
      case "welcome":
        this.#onWelcome(event, urlRoom);
        break;
      case "joined":
        this.#onJoined(event);
        break;
      case "left":
        this.#onLeft(event);
        break;
      case "message":
        this.#onMessage(event);
        break;
      case "edited":
      case "deleted":
      case "read":
        this.#onLogEvent(event);
        break;
      case "dm_rooms":
        this.#emit("dmRooms", { rooms: Array.isArray(event.rooms) ? event.rooms.filter((r) => typeof r === "string") : [] });
        break;
      case "typing":
        if (this.#rooms.has(event.room)) this.#emit("typing", { room: event.room, user: event.user });
        break;
      case "presence":
        this.#onPresence(event);
        break;
      case "history":
        this.#onHistory(event);
        break;
      case "pong":
        break;
      case "refreshed":
        this.#emit("refreshed", { expiresIn: event.expires_in });
        break;
      case "error":
        this.#onError(event);
        break;
      default:
        this.#emit("unknown", event); // a newer server: the application may know it
    }
  }

  #onWelcome(event, urlRoom) {
    const ws = this.#socket;
    this.#user = event.user;
    this.#epoch = event.epoch ?? null;
    if (event.limits) this.#limits = event.limits;
    // Not `attempt = 0` here: a server that welcomes and then closes would get a reconnect every
    // half second from every client. The count starts over once this socket stayed up.
    this.#clock.clearTimeout(this.#stableTimer);
    this.#stableTimer = this.#clock.setTimeout(() => {
      if (this.#socket === ws) this.#attempt = 0;
    }, this.#options.stableAfterMs);
    this.#startHeartbeat(ws);
    this.#setState("connected", { kind: "connected", willReconnect: false });
    this.#emit("welcome", {
      user: event.user,
      epoch: this.#epoch,
      limits: this.#limits,
      connectionId: event.connection_id,
      expiresIn: event.expires_in,
    });
    // The user's direct-message rooms (absent without history or for an anonymous connection).
    if (Array.isArray(event.dm_rooms)) {
      this.#emit("dmRooms", { rooms: event.dm_rooms.filter((r) => typeof r === "string") });
    }
    // Rejoin every other room from its cursor: the server sends what was missed before live ones.
    for (const room of this.#rooms.values()) {
      if (room.name === urlRoom || this.#socket !== ws) continue;
      const join = { type: "join", room: room.name };
      if (room.lastId !== null) {
        join.since = room.lastId;
        if (room.cursorEpoch) join.epoch = room.cursorEpoch;
      }
      this.send(join);
    }
  }

  #onJoined(event) {
    const room = this.#rooms.get(event.room);
    if (!room) {
      // A room this client does not want (left while the join was in flight, or `general`).
      this.send({ type: "leave", room: event.room });
      return;
    }
    const lastId = Number(event.last_id) || 0;
    const reset = !!event.reset;
    const rejoin = room.startId !== null && !reset;
    if (reset || room.lastId === null) {
      // A new subscription, or the server's ids started again (a restart without persistence, a new
      // database): what came before is history below `lastId`, paged afresh.
      room.lastId = lastId;
      room.startId = lastId;
      room.oldestId = null;
      room.atStart = false;
    }
    room.cursorEpoch = this.#epoch;
    room.joined = true;
    room.members = new Set(Array.isArray(event.members) ? event.members : []);
    room.memberCount = Number(event.member_count) || room.members.size;
    this.#emit("joined", {
      room: room.name,
      members: [...room.members],
      memberCount: room.memberCount,
      lastId,
      reset,
      rejoin,
      readId: typeof event.read_id === "number" ? event.read_id : null,
      unread: typeof event.unread === "number" ? event.unread : null,
    });
    // The user's read marker in the room, as a `read` event (absent without history).
    if (typeof event.read_id === "number" && event.read_id > 0) {
      room.readId = Math.max(room.readId ?? 0, event.read_id);
      this.#emit("read", { room: room.name, id: event.read_id, unread: typeof event.unread === "number" ? event.unread : null });
    }
  }

  #onLeft(event) {
    // After leave() the subscription is gone already; only the waiting calls remain.
    const waiting = this.#leaving.get(event.room);
    if (waiting) {
      this.#leaving.delete(event.room);
      for (const resolve of waiting) resolve();
    }
    // Still subscribed: the server left the room for us (a refreshed token no longer grants it).
    const room = this.#rooms.get(event.room);
    if (room) {
      room.joined = false;
      this.#rooms.delete(event.room);
    }
    this.#emit("left", { room: event.room, byServer: !!room });
  }

  #onMessage(event) {
    const room = this.#rooms.get(event.room);
    if (!room || typeof event.id !== "number") return;
    if (room.lastId !== null && event.id <= room.lastId) return; // seen already (resume overlap)
    let confirms;
    if (event.client_id && this.#unconfirmed.has(event.client_id)) {
      confirms = event.client_id;
    } else if (!event.client_id && event.user === this.#user) {
      // Replayed after a reconnect: history keeps no client_id, so match sender and content.
      for (const [clientId, entry] of this.#unconfirmed) {
        if (entry.room === room.name && entry.content === event.content) {
          confirms = clientId;
          break;
        }
      }
    }
    const message = toMessage(event, room.name, { confirms, mine: event.user === this.#user });
    this.#emit("message", message);
    // Delivered: only now does the cursor move (and a rejoin resumes after this message).
    if (this.#rooms.get(room.name) === room && (room.lastId === null || event.id > room.lastId)) {
      room.lastId = event.id;
      room.cursorEpoch = this.#epoch;
    }
    if (confirms) this.#settle(confirms, null, message);
  }

  /**
   * `edited`, `deleted` and `read`: events of the room's log with their own place (`seq`), so they
   * are de-duplicated and advance the cursor like messages (a resume replays the ones missed, once).
   */
  #onLogEvent(event) {
    const room = this.#rooms.get(event.room);
    if (!room || typeof event.id !== "number") return;
    const seq = typeof event.seq === "number" ? event.seq : null;
    if (seq !== null && room.lastId !== null && seq <= room.lastId) return; // seen already
    if (event.type === "edited") {
      this.#emit("edited", {
        room: room.name,
        id: event.id,
        user: event.user,
        content: event.content,
        editedTs: event.edited_ts,
        seq,
        mine: event.user === this.#user,
      });
    } else if (event.type === "deleted") {
      this.#emit("deleted", { room: room.name, id: event.id, seq });
    } else {
      room.readId = Math.max(room.readId ?? 0, event.id);
      this.#emit("read", { room: room.name, id: event.id, unread: null });
    }
    if (seq !== null && this.#rooms.get(room.name) === room && (room.lastId === null || seq > room.lastId)) {
      room.lastId = seq;
      room.cursorEpoch = this.#epoch;
    }
  }

  #onPresence(event) {
    const room = this.#rooms.get(event.room);
    if (!room) return;
    if (event.event === "join") {
      if (!room.members.has(event.user)) room.memberCount += 1;
      room.members.add(event.user);
    } else if (event.event === "leave") {
      if (room.members.delete(event.user)) room.memberCount = Math.max(0, room.memberCount - 1);
    }
    this.#emit("presence", { room: room.name, user: event.user, event: event.event, self: event.user === this.#user });
  }

  #onHistory(event) {
    const index = this.#historyWaiting.findIndex((r) => r.room === event.room);
    if (index < 0) return;
    const [request] = this.#historyWaiting.splice(index, 1);
    const messages = (Array.isArray(event.messages) ? event.messages : []).map((m) =>
      toMessage(m, event.room, { mine: m.user === this.#user }),
    );
    request.resolve({ room: event.room, messages, hasMore: !!event.has_more });
  }

  #onError(event) {
    const code = event.code || "error";
    const error = new RoomcastError(code, event.message || code);
    if (code === "token_expired") this.#refreshToken(this.#socket);
    if (code === "history_unavailable" && this.#historyWaiting.length > 0) {
      // Answers come in the order the commands were sent: the oldest waiting one is refused.
      this.#historyWaiting.shift().reject(error);
    }
    if (event.client_id) this.#settle(event.client_id, error);
    this.#emit("error", { code, message: event.message || "", clientId: event.client_id });
  }
}
