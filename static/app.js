// roomcast web client: one WebSocket, several rooms, JSON protocol.
//
// Rules this file keeps:
// - Every string that came from a user or the server is put in the DOM with textContent (never
//   innerHTML), so chat text, nicknames and room names can never become markup.
// - Every such string is also bidi-isolated (a <bdi> element, `dir="auto"` on blocks, U+2068…U+2069
//   around it in attribute values), so right-to-left text or a stray override character in it can
//   never reorder the text around it ("\u202eevil joined" must not display as "denioj live").
// - The page runs under a strict CSP: no inline script or style, no eval.
// - Messages are keyed by their server id. Each room's log is kept sorted by id, and an id is shown
//   at most once, whichever way it arrived (live, history page, resume after a reconnect).
"use strict";

// ---- Tunables -------------------------------------------------------------------------------

const HISTORY_PAGE = 50; // messages per history request (capped by the server's `max_history_page`)
const NEAR_TOP_PX = 48; // scrolling this close to the top loads older messages
const NEAR_BOTTOM_PX = 64; // when this close to the bottom, new messages keep the view pinned
const BACKOFF_BASE_MS = 500; // first reconnect delay (before jitter)
const BACKOFF_MAX_MS = 15000; // reconnect delay cap
const STABLE_AFTER_MS = 10000; // a connection up this long resets the backoff
const PENDING_TIMEOUT_MS = 15000; // an unconfirmed message is marked failed after this
const HEARTBEAT_MS = 25000; // ping period; a ping unanswered for a whole period drops the socket
const MAX_NICK_CHARS = 32;
const MAX_ROOM_BYTES = 64;

// ---- State ----------------------------------------------------------------------------------

const state = {
  nick: "", // what the user typed
  user: null, // the name the server gave us (from `welcome`)
  epoch: null, // the id space of our resume points (`welcome.epoch`)
  // Replaced by the server's `welcome` before any command is sent; until then nothing is capped.
  limits: { max_message_bytes: Infinity, max_rooms: Infinity, max_history_page: Infinity },
  socket: null,
  connection: "offline", // offline | connecting | online | waiting
  attempt: 0, // reconnect attempts since the last connection that stayed up STABLE_AFTER_MS
  retryTimer: null,
  stableTimer: null,
  heartbeatTimer: null,
  awaitingPong: false,
  rooms: new Map(), // name -> Room (insertion order = sidebar order)
  current: null, // name of the room on screen
  clientSeq: 0,
};

/** Creates the per-room state and its DOM (sidebar entry + message log). */
function makeRoom(name) {
  const room = {
    name,
    joined: false, // the server confirmed membership on the current socket
    members: new Set(),
    memberTotal: 0, // the server may list fewer names than there are members
    unread: 0,
    ids: new Set(), // ids shown in the log
    lastId: 0, // highest id shown: the resume point after a reconnect
    oldestId: null, // lowest id shown: the cursor for older pages
    atStart: false, // the server said there is nothing older
    history: null, // in-flight history request: "older" | "newer" | null
    historyOff: false, // the server answered history_unavailable on this socket
    leaving: false, // a `leave` was sent; the room goes when `left` arrives
    pending: new Map(), // client_id -> { li, content, timer }
    log: document.createElement("ol"),
    marker: document.createElement("li"),
    tab: document.createElement("li"),
    badge: document.createElement("span"),
  };
  room.log.className = "log";
  room.log.dataset.room = name;
  room.log.setAttribute("role", "log");
  room.log.setAttribute("aria-live", "polite");
  room.log.setAttribute("aria-label", `Messages in ${isolatedText(name)}`);
  room.log.tabIndex = 0; // scrollable with the keyboard
  room.log.hidden = true;
  room.marker.className = "marker";
  room.log.append(room.marker);
  room.log.addEventListener("scroll", () => onLogScroll(room));
  $("logs").append(room.log);
  buildTab(room);
  state.rooms.set(name, room);
  return room;
}

/** Sidebar entry: a button that switches to the room, an unread badge, and a leave button. */
function buildTab(room) {
  const open = document.createElement("button");
  open.type = "button";
  open.className = "room-open";
  const label = document.createElement("bdi");
  label.className = "room-name";
  label.textContent = room.name;
  room.badge.className = "badge";
  room.badge.hidden = true;
  open.append(label, room.badge);
  open.addEventListener("click", () => switchRoom(room.name));

  const leave = document.createElement("button");
  leave.type = "button";
  leave.className = "room-leave";
  leave.textContent = "×";
  leave.setAttribute("aria-label", `Leave ${isolatedText(room.name)}`);
  leave.title = `Leave ${isolatedText(room.name)}`;
  leave.addEventListener("click", () => leaveRoom(room.name));

  room.tab.className = "room";
  room.tab.dataset.room = room.name;
  room.tab.append(open, leave);
  $("room-list").append(room.tab);
}

// ---- Small helpers --------------------------------------------------------------------------

function $(id) {
  return document.getElementById(id);
}

function hasControlChars(s) {
  // Same rule as the server: no C0/C1 control characters.
  return /[\u0000-\u001f\u007f-\u009f]/.test(s);
}

function hasBidiControls(s) {
  // Same rule as the server: no bidirectional formatting characters in names.
  return /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/.test(s);
}

/** A user-provided string as an isolated element: its direction cannot leak into its neighbours. */
function isolated(text) {
  const bdi = document.createElement("bdi");
  bdi.textContent = text;
  return bdi;
}

/** The same for attribute values (titles, labels): FIRST STRONG ISOLATE … POP DIRECTIONAL ISOLATE. */
function isolatedText(text) {
  return `\u2068${text}\u2069`;
}

function utf8Length(s) {
  return new TextEncoder().encode(s).length;
}

function checkNick(nick) {
  const chars = [...nick].length;
  if (chars === 0) return "Pick a nickname.";
  if (chars > MAX_NICK_CHARS) return `A nickname has at most ${MAX_NICK_CHARS} characters.`;
  if (hasControlChars(nick)) return "A nickname cannot contain control characters.";
  if (hasBidiControls(nick)) return "A nickname cannot contain bidirectional control characters.";
  return null;
}

function checkRoom(name) {
  if (name.length === 0) return "Enter a room name.";
  if (utf8Length(name) > MAX_ROOM_BYTES) return `A room name has at most ${MAX_ROOM_BYTES} bytes.`;
  if (hasControlChars(name)) return "A room name cannot contain control characters.";
  if (hasBidiControls(name)) return "A room name cannot contain bidirectional control characters.";
  return null;
}

function newClientId() {
  state.clientSeq += 1;
  const rand = Math.random().toString(36).slice(2, 10);
  return `${Date.now().toString(36)}-${rand}-${state.clientSeq}`;
}

function currentRoom() {
  return state.current ? state.rooms.get(state.current) : null;
}

function localTime(ts) {
  const date = new Date(ts);
  if (Number.isNaN(date.getTime())) return "";
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// ---- Connection -----------------------------------------------------------------------------

function send(command) {
  const ws = state.socket;
  if (!ws || ws.readyState !== WebSocket.OPEN) return false;
  ws.send(JSON.stringify(command));
  return true;
}

/** Opens the socket. The first room goes in the URL; the others are joined after `welcome`. */
function connect() {
  clearTimeout(state.retryTimer);
  state.retryTimer = null;
  const first = currentRoom() || state.rooms.values().next().value;
  if (!first) return;
  const params = new URLSearchParams({ format: "json", room: first.name, nick: state.nick });
  if (first.lastId > 0) params.set("since", String(first.lastId));
  // The id space our `since` values are from: a server whose ids started again answers `reset`.
  if (first.lastId > 0 && state.epoch) params.set("epoch", state.epoch);
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}/ws?${params}`);
  state.socket = ws;
  setConnection("connecting");
  // Handlers ignore events from a socket that has been replaced.
  ws.onmessage = (ev) => {
    if (ws === state.socket) onFrame(ev.data, first.name);
  };
  ws.onclose = (ev) => {
    if (ws === state.socket) onSocketClosed(ev);
  };
}

function onSocketClosed(ev) {
  const wasOnline = state.connection === "online";
  state.socket = null;
  stopHeartbeat();
  clearTimeout(state.stableTimer);
  state.stableTimer = null;
  for (const room of state.rooms.values()) {
    // Mark the gap once per outage, not once per failed attempt.
    if (wasOnline) systemLine(room, "system", "connection lost, reconnecting…");
    room.joined = false;
    room.history = null;
    room.historyOff = false;
  }
  renderPresence();
  if (!mayReconnect(ev.code, ev.reason)) return;
  scheduleReconnect(ev.code, ev.reason);
}

/**
 * Application close codes (docs/PROTOCOL.md, "Close codes"): 4000–4499 say why and allow a
 * reconnect, 4500–4999 (kicked, banned) say why and forbid one. Returns whether to reconnect.
 */
function mayReconnect(code, reason) {
  if (code < 4000 || code > 4999) return true;
  const why = reason || `code ${code}`;
  for (const room of state.rooms.values()) systemLine(room, "system", `closed by the server: ${why}`);
  if (code < 4500) return true;
  state.retryTimer = null;
  setConnection("offline", `disconnected by the server: ${why} (reload the page to try again)`);
  return false;
}

/**
 * Exponential backoff with full jitter: the nth retry waits a random time between 0 and
 * min(cap, base * 2^n), so many clients dropped by one restart do not come back in lockstep. The
 * count starts over only once a connection has stayed up for STABLE_AFTER_MS (see onWelcome): a
 * server that accepts and then closes at once (shutting down, overloaded) is not hammered.
 */
function scheduleReconnect(code, reason) {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** state.attempt);
  const delay = Math.round(Math.random() * ceiling);
  state.attempt += 1;
  const why = reason ? `: ${reason}` : code && code !== 1006 ? ` (code ${code})` : "";
  setConnection("waiting", `reconnecting in ${Math.ceil(delay / 1000)} s${why}`);
  state.retryTimer = setTimeout(connect, delay);
}

function startHeartbeat() {
  stopHeartbeat();
  state.awaitingPong = false;
  state.heartbeatTimer = setInterval(() => {
    if (state.awaitingPong && state.socket) {
      // No pong for a whole period: the connection is dead without the browser noticing.
      state.socket.close();
      return;
    }
    state.awaitingPong = send({ type: "ping" });
  }, HEARTBEAT_MS);
}

function stopHeartbeat() {
  clearInterval(state.heartbeatTimer);
  state.heartbeatTimer = null;
}

function setConnection(connection, text) {
  state.connection = connection;
  const el = $("status");
  el.dataset.state = connection;
  el.textContent = text || connection;
  updateComposer();
}

function updateComposer() {
  const room = currentRoom();
  const usable = state.connection === "online" && !!room && room.joined;
  $("text").disabled = !usable;
  $("send-button").disabled = !usable;
}

// ---- Server events --------------------------------------------------------------------------

function onFrame(data, firstRoom) {
  let event;
  try {
    event = JSON.parse(data);
  } catch {
    systemLine(currentRoom(), "error", "unreadable frame from the server: ", isolated(String(data).slice(0, 80)));
    return;
  }
  switch (event.type) {
    case "welcome":
      onWelcome(event, firstRoom);
      break;
    case "joined":
      onJoined(event);
      break;
    case "left":
      onLeft(event);
      break;
    case "message":
      onMessage(event);
      break;
    case "presence":
      onPresence(event);
      break;
    case "history":
      onHistory(event);
      break;
    case "pong":
      state.awaitingPong = false;
      break;
    case "error":
      onServerError(event);
      break;
    default:
      break; // newer server, older client: ignore unknown events
  }
}

function onWelcome(event, firstRoom) {
  state.user = event.user;
  if (event.limits) state.limits = event.limits;
  // Kept until a `joined` says `reset` for every room resumed from an older epoch.
  const resumedEpoch = state.epoch;
  state.epoch = event.epoch || null;
  // Not `state.attempt = 0` here: a server that welcomes and then closes would get a reconnect
  // every half second from every client. The backoff starts over once this socket stayed up.
  clearTimeout(state.stableTimer);
  const ws = state.socket;
  state.stableTimer = setTimeout(() => {
    if (state.socket === ws) state.attempt = 0;
  }, STABLE_AFTER_MS);
  $("me").replaceChildren("as ", isolated(event.user));
  setConnection("online");
  startHeartbeat();
  // Rejoin every other room, each from the last id this page saw, so the server sends what we
  // missed before the live messages.
  for (const room of state.rooms.values()) {
    if (room.name === firstRoom) continue;
    const join = { type: "join", room: room.name };
    if (room.lastId > 0) join.since = room.lastId;
    if (room.lastId > 0 && resumedEpoch) join.epoch = resumedEpoch;
    send(join);
  }
}

function onJoined(event) {
  const room = state.rooms.get(event.room);
  if (!room) {
    // Joined a room this page no longer wants (left while the join was in flight).
    send({ type: "leave", room: event.room });
    return;
  }
  if (event.reset) {
    // The server's ids started again (a restart without persistence, a new database): what this
    // page holds of the room is from another id space. Start the room afresh.
    forgetRoomIds(room);
  }
  const rejoin = room.ids.size > 0;
  room.joined = true;
  room.members = new Set(event.members);
  room.memberTotal = event.member_count;
  if (rejoin) systemLine(room, "system", "rejoined ", isolated(room.name));
  else systemLine(room, "system", "you joined ", isolated(room.name), ` (${event.member_count} here)`);
  if (!rejoin) {
    // First visit: fetch the page just before the join point. Live messages all have ids above
    // last_id, so the two never overlap. (last_id 0: the server knows nothing yet; ask for the
    // newest page and let the id check drop any overlap.)
    requestHistory(room, "older", event.last_id > 0 ? event.last_id + 1 : null);
  } else if (event.last_id === 0 && room.lastId > 0) {
    // The server knows no message at all (e.g. it restarted without persistence), so `since` could
    // not trigger a resume: ask history for anything newer than what we saw, in case it has some.
    requestHistory(room, "newer", room.lastId);
  }
  if (room.name === state.current) renderPresence();
  updateComposer();
}

/** Drops everything this page knows of `room`'s ids (after a `joined` with `reset`). */
function forgetRoomIds(room) {
  room.ids.clear();
  room.lastId = 0;
  room.oldestId = null;
  room.atStart = false;
  systemLine(room, "system", "the server's history started over; earlier lines are from before");
}

function onLeft(event) {
  const room = state.rooms.get(event.room);
  if (room && room.leaving) removeRoom(room);
}

function onPresence(event) {
  const room = state.rooms.get(event.room);
  if (!room) return;
  // The server also announces our own arrival to us; `joined` already said so.
  const self = event.user === state.user;
  if (event.event === "join") {
    if (!room.members.has(event.user)) room.memberTotal += 1;
    room.members.add(event.user);
    if (!self) systemLine(room, "system", isolated(event.user), " joined");
  } else {
    if (room.members.delete(event.user)) room.memberTotal = Math.max(0, room.memberTotal - 1);
    if (!self) systemLine(room, "system", isolated(event.user), " left");
  }
  if (room.name === state.current) renderPresence();
}

function onMessage(event) {
  const room = state.rooms.get(event.room);
  if (!room) return;
  const pending = findPending(room, event);
  if (room.ids.has(event.id)) {
    // Already shown (e.g. a resume page overlapping a history page); only settle the echo.
    if (pending) dropPending(room, pending.clientId);
    return;
  }
  const follow = isNearBottom(room.log);
  let li;
  if (pending) {
    li = pending.entry.li;
    dropPending(room, pending.clientId);
    li.classList.remove("pending", "failed");
    li.querySelector(".retry")?.remove();
    li.removeAttribute("aria-busy");
    fillMessage(li, event);
    li.remove(); // re-inserted at its id's place below
  } else {
    li = renderMessage(event);
  }
  placeMessage(room, li, event.id);
  if (follow || pending) scrollToBottom(room);
  if (room.name !== state.current && event.user !== state.user) {
    room.unread += 1;
    renderBadge(room);
  }
}

/**
 * Finds the optimistic entry a `message` event confirms: by client_id, or, for messages replayed
 * after a reconnect (history carries no client_id), by sender and identical content.
 */
function findPending(room, event) {
  if (event.client_id && room.pending.has(event.client_id)) {
    return { clientId: event.client_id, entry: room.pending.get(event.client_id) };
  }
  if (!event.client_id && event.user === state.user) {
    for (const [clientId, entry] of room.pending) {
      if (entry.content === event.content) return { clientId, entry };
    }
  }
  return null;
}

function dropPending(room, clientId) {
  const entry = room.pending.get(clientId);
  if (!entry) return;
  clearTimeout(entry.timer);
  room.pending.delete(clientId);
}

function onHistory(event) {
  const room = state.rooms.get(event.room);
  if (!room) return;
  const kind = room.history;
  room.history = null;
  // Newest-first for `before_id` pages, oldest-first for `after_id` ones: sort to be sure.
  const page = event.messages.filter((m) => !room.ids.has(m.id)).sort((a, b) => a.id - b.id);
  const log = room.log;
  const fromBottom = log.scrollHeight - log.scrollTop;
  for (const m of page) {
    placeMessage(room, renderMessage({ ...m, ts: m.created_at }), m.id);
  }
  if (kind === "older") {
    if (!event.has_more) room.atStart = true;
    // Keep what the reader was looking at in place: older messages grow the log upwards.
    if (room.ids.size === page.length) scrollToBottom(room);
    else log.scrollTop = log.scrollHeight - fromBottom;
    renderMarker(room);
    // A short first page may not fill the view, so no scroll event would ever ask for more.
    if (!room.atStart && log.scrollHeight <= log.clientHeight + NEAR_TOP_PX) loadOlder(room);
  } else if (kind === "newer") {
    if (event.has_more && page.length > 0) requestHistory(room, "newer", room.lastId);
    scrollToBottom(room);
  }
}

function onServerError(event) {
  const code = event.code || "error";
  if (code === "history_unavailable") {
    // Without history the log starts at the join; stop asking until the next connection.
    for (const room of state.rooms.values()) {
      if (room.history) {
        room.history = null;
        room.historyOff = true;
        renderMarker(room);
      }
    }
  }
  // Errors belong to the conversation the user is looking at (that is where they acted).
  const room = currentRoom();
  systemLine(room, "error", isolated(code), ": ", isolated(event.message || ""));
  if (room) scrollToBottom(room);
}

// ---- History --------------------------------------------------------------------------------

function requestHistory(room, kind, cursor) {
  if (room.history || room.historyOff || !room.joined) return;
  const limit = Math.min(HISTORY_PAGE, state.limits.max_history_page);
  const command = { type: "history", room: room.name, limit };
  if (cursor !== null && kind === "older") command.before_id = cursor;
  if (cursor !== null && kind === "newer") command.after_id = cursor;
  if (send(command)) {
    room.history = kind;
    renderMarker(room);
  }
}

function loadOlder(room) {
  if (room.atStart) return;
  requestHistory(room, "older", room.oldestId);
}

function onLogScroll(room) {
  if (room.log.scrollTop <= NEAR_TOP_PX) loadOlder(room);
}

function renderMarker(room) {
  const m = room.marker;
  if (room.atStart) m.textContent = "Beginning of the conversation";
  else if (room.history === "older") m.textContent = "Loading older messages…";
  else if (room.historyOff) m.textContent = "Older messages are not available";
  else m.textContent = "Scroll up for older messages";
  m.dataset.state = room.atStart ? "start" : room.history === "older" ? "loading" : "more";
}

// ---- Message log ----------------------------------------------------------------------------

function renderMessage(m) {
  const li = document.createElement("li");
  li.className = "msg";
  const head = document.createElement("div");
  head.className = "head";
  const user = document.createElement("bdi");
  user.className = "user";
  const time = document.createElement("time");
  time.className = "time";
  head.append(user, time);
  const content = document.createElement("div");
  content.className = "content";
  content.dir = "auto";
  li.append(head, content);
  fillMessage(li, m);
  return li;
}

/** Writes a message's fields into its element (text only). `m.id` may be absent (pending). */
function fillMessage(li, m) {
  if (m.id !== undefined) li.dataset.id = String(m.id);
  if (m.user === state.user) li.classList.add("mine");
  li.querySelector(".user").textContent = m.user;
  const time = li.querySelector(".time");
  time.textContent = localTime(m.ts);
  time.dateTime = m.ts || "";
  li.querySelector(".content").textContent = m.content;
}

/**
 * Inserts a confirmed message at its place by id and records the id. Unconfirmed (pending)
 * messages always stay last; lines without an id (system lines) stay where they were written.
 */
function placeMessage(room, li, id) {
  const log = room.log;
  if (room.oldestId !== null && id < room.oldestId) {
    // Older than everything shown: goes right before the oldest message.
    log.querySelector("li[data-id]").before(li);
  } else {
    let ref = log.lastElementChild;
    while (ref && (ref.classList.contains("pending") || (ref.dataset.id && Number(ref.dataset.id) > id))) {
      ref = ref.previousElementSibling;
    }
    if (ref) ref.after(li);
    else log.prepend(li);
  }
  room.ids.add(id);
  room.lastId = Math.max(room.lastId, id);
  room.oldestId = room.oldestId === null ? id : Math.min(room.oldestId, id);
}

/**
 * A line without an id: joins, leaves, errors. `parts` are the app's own strings and isolated()
 * elements for what came from users or the server.
 */
function systemLine(room, kind, ...parts) {
  if (!room) {
    $("login-error").replaceChildren(...parts);
    return;
  }
  const li = document.createElement("li");
  li.className = kind;
  if (kind === "error") li.setAttribute("role", "alert");
  li.append(...parts);
  const follow = isNearBottom(room.log);
  room.log.append(li);
  if (follow) scrollToBottom(room);
}

function isNearBottom(log) {
  return log.scrollHeight - log.scrollTop - log.clientHeight <= NEAR_BOTTOM_PX;
}

function scrollToBottom(room) {
  room.log.scrollTop = room.log.scrollHeight;
}

// ---- Sending --------------------------------------------------------------------------------

/** Shows the message at once (pending) and sends it with a client_id; the echo confirms it. */
function sendMessage(room, content) {
  const bytes = utf8Length(content);
  if (bytes > state.limits.max_message_bytes) {
    systemLine(room, "error", `message is ${bytes} bytes; the limit is ${state.limits.max_message_bytes}`);
    return false;
  }
  const clientId = newClientId();
  const li = renderMessage({ user: state.user, content, ts: new Date().toISOString() });
  li.classList.add("pending", "mine");
  li.dataset.clientId = clientId;
  li.setAttribute("aria-busy", "true");
  room.log.append(li);
  scrollToBottom(room);
  const timer = setTimeout(() => markFailed(room, clientId), PENDING_TIMEOUT_MS);
  room.pending.set(clientId, { li, content, timer });
  send({ type: "message", room: room.name, content, client_id: clientId });
  return true;
}

/** No echo in time: say so and offer to send again (as a new message). */
function markFailed(room, clientId) {
  const entry = room.pending.get(clientId);
  if (!entry) return;
  entry.li.classList.add("failed");
  if (entry.li.querySelector(".retry")) return;
  const retry = document.createElement("button");
  retry.type = "button";
  retry.className = "retry";
  retry.textContent = "Not confirmed — send again";
  retry.addEventListener("click", () => {
    if (state.connection !== "online" || !room.joined) return;
    dropPending(room, clientId);
    entry.li.remove();
    sendMessage(room, entry.content);
  });
  entry.li.append(retry);
}

// ---- Rooms ----------------------------------------------------------------------------------

function joinRoom(name) {
  let room = state.rooms.get(name);
  if (!room) {
    if (state.rooms.size >= state.limits.max_rooms) {
      $("join-error").textContent = `You can be in at most ${state.limits.max_rooms} rooms.`;
      return;
    }
    room = makeRoom(name);
    renderMarker(room);
    send({ type: "join", room: name }); // offline: joined on reconnect
  }
  switchRoom(name);
}

function leaveRoom(name) {
  const room = state.rooms.get(name);
  if (!room) return;
  if (state.rooms.size === 1) {
    systemLine(room, "error", "You are in only this room: join another before leaving it.");
    return;
  }
  room.leaving = true;
  // Not joined on this socket (offline, or join still in flight): nothing to tell the server.
  if (!room.joined || !send({ type: "leave", room: name })) removeRoom(room);
}

function removeRoom(room) {
  for (const entry of room.pending.values()) clearTimeout(entry.timer);
  room.log.remove();
  room.tab.remove();
  state.rooms.delete(room.name);
  if (state.current === room.name) {
    const next = state.rooms.keys().next().value;
    state.current = null;
    if (next) switchRoom(next);
  }
}

function switchRoom(name) {
  const room = state.rooms.get(name);
  if (!room) return;
  state.current = name;
  for (const other of state.rooms.values()) {
    const on = other === room;
    other.log.hidden = !on;
    other.tab.classList.toggle("current", on);
    other.tab.querySelector(".room-open").setAttribute("aria-current", on ? "true" : "false");
  }
  room.unread = 0;
  renderBadge(room);
  $("room-title").replaceChildren(isolated(name));
  renderPresence();
  updateComposer();
  scrollToBottom(room);
}

function renderBadge(room) {
  room.badge.hidden = room.unread === 0;
  room.badge.textContent = room.unread > 99 ? "99+" : String(room.unread);
  room.badge.setAttribute("aria-label", `${room.unread} unread`);
}

function renderPresence() {
  const room = currentRoom();
  const list = $("people");
  list.replaceChildren();
  if (!room || !room.joined) {
    $("people-count").textContent = "";
    return;
  }
  const names = [...room.members].sort((a, b) => a.localeCompare(b));
  for (const name of names) {
    const li = document.createElement("li");
    li.append(isolated(name));
    if (name === state.user) li.classList.add("mine");
    list.append(li);
  }
  const hidden = room.memberTotal - names.length;
  if (hidden > 0) {
    const li = document.createElement("li");
    li.className = "more";
    li.textContent = `and ${hidden} more`;
    list.append(li);
  }
  $("people-count").textContent = `(${Math.max(room.memberTotal, names.length)})`;
}

// ---- Forms ----------------------------------------------------------------------------------

$("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const nick = $("nick").value.trim();
  const roomName = $("first-room").value.trim();
  const problem = checkNick(nick) || checkRoom(roomName);
  $("login-error").textContent = problem || "";
  if (problem) return;
  state.nick = nick;
  $("login").hidden = true;
  $("chat").hidden = false;
  const room = makeRoom(roomName);
  renderMarker(room);
  switchRoom(roomName);
  connect();
  $("text").focus();
});

$("join").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const name = $("join-room").value.trim();
  const problem = checkRoom(name);
  $("join-error").textContent = problem || "";
  if (problem) return;
  $("join-room").value = "";
  joinRoom(name);
});

// Enter submits the form (the browser does that for a single-line input in a form).
$("send").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const room = currentRoom();
  const content = $("text").value;
  if (!room || !room.joined || content.trim() === "") return;
  if (sendMessage(room, content)) $("text").value = "";
  $("text").focus();
});

// Back online after the OS said we were offline: do not wait out the backoff.
window.addEventListener("online", () => {
  if (state.retryTimer) connect();
});

// Phones: start with the member list folded so the conversation gets the space.
if (window.matchMedia("(max-width: 700px)").matches) $("people-details").open = false;
