// roomcast web client: the page over roomcast.js, the client library (clients/js/ in the repository,
// served at /roomcast.js). The library owns the connection, reconnects, resume, de-duplication and
// history paging; this file only renders what it emits and turns the user's actions into its calls.
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

import { RoomcastClient, dmPeer, dmRoom, nickProblem, roomNameProblem, utf8Length } from "/roomcast.js";

// ---- Tunables -------------------------------------------------------------------------------

const HISTORY_PAGE = 50; // messages per history request (capped by the server's `max_history_page`)
const NEAR_TOP_PX = 48; // scrolling this close to the top loads older messages
const NEAR_BOTTOM_PX = 64; // when this close to the bottom, new messages keep the view pinned
const PENDING_TIMEOUT_MS = 15000; // an unconfirmed message is marked failed after this
const TYPING_SHOWN_MS = 5000; // a typing notice is shown this long unless its user posts first
const READ_EVERY_MS = 3000; // read markers of the room on screen go out at most this often

// ---- State ----------------------------------------------------------------------------------

const state = {
  /** @type {RoomcastClient | null} created at login */
  client: null,
  connection: "offline", // offline | connecting | online | waiting (the status line's data-state)
  views: new Map(), // room name -> View (insertion order = sidebar order)
  current: null, // name of the room on screen
  editing: null, // { room, id } while the composer edits one of your messages
};

/** Creates a room's page state and its DOM (sidebar entry + message log). */
function makeView(name, dmTo = null) {
  const view = {
    name,
    dmTo, // a direct-message room not joined yet: its first message goes out as `dm` to this user
    unread: 0,
    ids: new Set(), // ids shown in the log
    oldestId: null, // lowest id shown
    atStart: false, // the server said there is nothing older
    history: null, // "older" while a page is being loaded
    historyOff: false, // the server answered history_unavailable on this connection
    leaving: false, // leave() was called; the view goes when the library says the room is left
    pending: new Map(), // client_id -> { li, content, timer }
    typing: new Map(), // user -> timer: who is typing (shown under the log while on screen)
    readTimer: null, // a read marker is due (see markSeen)
    log: document.createElement("ol"),
    marker: document.createElement("li"),
    tab: document.createElement("li"),
    badge: document.createElement("span"),
  };
  view.log.className = "log";
  view.log.dataset.room = name;
  view.log.setAttribute("role", "log");
  view.log.setAttribute("aria-live", "polite");
  view.log.setAttribute("aria-label", `Messages in ${isolatedText(name)}`);
  view.log.tabIndex = 0; // scrollable with the keyboard
  view.log.hidden = true;
  view.marker.className = "marker";
  view.log.append(view.marker);
  view.log.addEventListener("scroll", () => onLogScroll(view));
  $("logs").append(view.log);
  buildTab(view);
  state.views.set(name, view);
  renderMarker(view);
  return view;
}

/** Sidebar entry: a button that switches to the room, an unread badge, and a leave button. */
function buildTab(view) {
  const open = document.createElement("button");
  open.type = "button";
  open.className = "room-open";
  const label = document.createElement("bdi");
  label.className = "room-name";
  // A direct-message room shows as "@other".
  const peer = view.dmTo ?? dmPeer(view.name, state.client?.user ?? "");
  label.textContent = peer ? `@${peer}` : view.name;
  if (peer) view.tab.classList.add("dm");
  view.badge.className = "badge";
  view.badge.hidden = true;
  open.append(label, view.badge);
  open.addEventListener("click", () => switchRoom(view.name));

  const leave = document.createElement("button");
  leave.type = "button";
  leave.className = "room-leave";
  leave.textContent = "×";
  leave.setAttribute("aria-label", `Leave ${isolatedText(view.name)}`);
  leave.title = `Leave ${isolatedText(view.name)}`;
  leave.addEventListener("click", () => leaveRoom(view.name));

  view.tab.className = "room";
  view.tab.dataset.room = view.name;
  view.tab.append(open, leave);
  $("room-list").append(view.tab);
}

// ---- Small helpers --------------------------------------------------------------------------

function $(id) {
  return document.getElementById(id);
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

function currentView() {
  return state.current ? state.views.get(state.current) : null;
}

/** The library's subscription behind a view (absent once left). */
function roomOf(view) {
  return state.client ? state.client.room(view.name) : undefined;
}

function localTime(ts) {
  const date = new Date(ts);
  if (Number.isNaN(date.getTime())) return "";
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// ---- Connection -----------------------------------------------------------------------------

/** Creates the client and wires its events to the page. The first room goes in its URL. */
function startClient(nick, firstRoom) {
  const client = new RoomcastClient({ nick });
  state.client = client;
  for (const [type, handler] of Object.entries(handlers)) client.on(type, handler);
  client.join(firstRoom);
  client.connect();
}

function setConnection(connection, text) {
  state.connection = connection;
  const el = $("status");
  el.dataset.state = connection;
  el.textContent = text || connection;
  updateComposer();
}

function updateComposer() {
  const view = currentView();
  const room = view && roomOf(view);
  const usable = state.connection === "online" && ((!!room && room.joined) || !!view?.dmTo);
  $("text").disabled = !usable;
  $("send-button").disabled = !usable;
}

// ---- What the library emits -----------------------------------------------------------------

const handlers = {
  state(event) {
    if (event.state === "connected") {
      setConnection("online");
      return;
    }
    if (event.state === "connecting") {
      setConnection("connecting");
      return;
    }
    for (const view of state.views.values()) {
      // Mark the gap once per outage, not once per failed attempt.
      if (event.previous === "connected") {
        // Application close codes (4000–4999, docs/PROTOCOL.md) carry the server's reason: show it.
        const told = event.code >= 4000 && event.code <= 4999 ? `closed by the server: ${event.reason || event.code}` : null;
        systemLine(view, "system", told ?? (event.willReconnect ? "connection lost, reconnecting…" : "connection closed"));
      }
      view.history = null;
      view.historyOff = false;
      renderMarker(view);
    }
    renderPresence();
    const why = event.reason ? `: ${event.reason}` : event.code && event.code !== 1006 ? ` (code ${event.code})` : "";
    if (event.willReconnect) {
      setConnection("waiting", `reconnecting in ${Math.ceil(event.retryInMs / 1000)} s${why}`);
    } else {
      setConnection("offline", `offline${why}`);
    }
  },

  welcome(event) {
    $("me").replaceChildren("as ", isolated(event.user));
  },

  dmRooms(event) {
    // Your direct-message rooms (after welcome, or someone just wrote to you): in the sidebar.
    for (const name of event.rooms) {
      if (state.views.has(name) || !dmPeer(name, state.client.user)) continue;
      try {
        state.client.join(name);
      } catch {
        continue; // too many rooms: it stays listed in the next dm_rooms
      }
      makeView(name);
    }
  },

  joined(event) {
    const view = state.views.get(event.room);
    if (!view) return;
    if (event.reset) {
      // The server's ids started again (a restart without persistence, a new database): what this
      // page holds of the room is from another id space. Start the room afresh.
      forgetRoomIds(view);
    }
    if (event.rejoin) systemLine(view, "system", "rejoined ", isolated(view.name));
    else systemLine(view, "system", "you joined ", isolated(view.name), ` (${event.memberCount} here)`);
    // First visit (or nothing shown yet): the page just before the join point. Live messages all
    // have higher ids, so the two never overlap.
    if (!event.rejoin || view.ids.size === 0) loadOlder(view);
    if (view.name === state.current) renderPresence();
    updateComposer();
  },

  presence(event) {
    const view = state.views.get(event.room);
    if (!view) return;
    // The server also announces our own arrival to us; `joined` already said so.
    if (!event.self) systemLine(view, "system", isolated(event.user), event.event === "join" ? " joined" : " left");
    if (view.name === state.current) renderPresence();
  },

  message(m) {
    const view = state.views.get(m.room);
    if (!view) return;
    stopTyping(view, m.user);
    const pending = m.confirms ? view.pending.get(m.confirms) : undefined;
    if (view.ids.has(m.id)) {
      if (pending) dropPending(view, m.confirms);
      return;
    }
    const follow = isNearBottom(view.log);
    let li;
    if (pending) {
      li = pending.li;
      dropPending(view, m.confirms);
      li.classList.remove("pending", "failed");
      li.querySelector(".retry")?.remove();
      li.removeAttribute("aria-busy");
      fillMessage(li, m);
      li.remove(); // re-inserted at its id's place below
    } else {
      li = renderMessage(m);
    }
    placeMessage(view, li, m.id);
    if (follow || pending) scrollToBottom(view);
    if (view.name !== state.current && !m.mine) {
      view.unread += 1;
      renderBadge(view);
    } else if (view.name === state.current) {
      markSeen(view);
    }
  },

  edited(e) {
    const view = state.views.get(e.room);
    const li = view && messageElement(view, e.id);
    if (!li || li.classList.contains("deleted")) return; // not shown, or deleted already
    li.querySelector(".content").textContent = e.content;
    showEdited(li, e.editedTs);
  },

  deleted(e) {
    const view = state.views.get(e.room);
    const li = view && messageElement(view, e.id);
    if (li) showDeleted(li);
    if (state.editing && state.editing.room === e.room && state.editing.id === e.id) stopEditing();
  },

  typing(e) {
    const view = state.views.get(e.room);
    if (!view || e.user === state.client?.user) return;
    clearTimeout(view.typing.get(e.user));
    view.typing.set(e.user, setTimeout(() => stopTyping(view, e.user), TYPING_SHOWN_MS));
    if (view.name === state.current) renderTyping();
  },

  read(e) {
    // Your user's marker, from this tab or another: what is at or below it is read.
    const view = state.views.get(e.room);
    if (!view) return;
    if (e.unread !== null) view.unread = view.name === state.current ? 0 : e.unread;
    else if (e.id >= newestId(view)) view.unread = 0;
    renderBadge(view);
  },

  error(event) {
    // Errors belong to the conversation the user is looking at (that is where they acted).
    const view = currentView();
    systemLine(view, "error", isolated(event.code), ": ", isolated(event.message || ""));
    if (view) scrollToBottom(view);
  },
};

/** Drops everything this page knows of a room's ids (after a `joined` with `reset`). */
function forgetRoomIds(view) {
  view.ids.clear();
  view.oldestId = null;
  view.atStart = false;
  systemLine(view, "system", "the server's history started over; earlier lines are from before");
}

function dropPending(view, clientId) {
  const entry = view.pending.get(clientId);
  if (!entry) return;
  clearTimeout(entry.timer);
  view.pending.delete(clientId);
}

// ---- History --------------------------------------------------------------------------------

/** Loads the page of messages older than the oldest one shown (once at a time per room). */
function loadOlder(view) {
  const room = roomOf(view);
  if (!room || !room.joined || view.atStart || view.history || view.historyOff) return;
  view.history = "older";
  renderMarker(view);
  room.loadOlder({ limit: HISTORY_PAGE }).then(
    (page) => {
      view.history = null;
      if (state.views.get(view.name) !== view) return;
      const log = view.log;
      const fromBottom = log.scrollHeight - log.scrollTop;
      const fresh = page.messages.filter((m) => !view.ids.has(m.id));
      for (const m of fresh) placeMessage(view, renderMessage(m), m.id);
      if (!page.hasMore) view.atStart = true;
      // Keep what the reader was looking at in place: older messages grow the log upwards.
      if (view.ids.size === fresh.length) scrollToBottom(view);
      else log.scrollTop = log.scrollHeight - fromBottom;
      renderMarker(view);
      // A short first page may not fill the view, so no scroll event would ever ask for more.
      if (!view.atStart && log.scrollHeight <= log.clientHeight + NEAR_TOP_PX) loadOlder(view);
    },
    (err) => {
      view.history = null;
      // Without history the log starts at the join; stop asking until the next connection.
      if (err.code === "history_unavailable") view.historyOff = true;
      renderMarker(view);
    },
  );
}

function onLogScroll(view) {
  if (view.log.scrollTop <= NEAR_TOP_PX) loadOlder(view);
}

function renderMarker(view) {
  const m = view.marker;
  if (view.atStart) m.textContent = "Beginning of the conversation";
  else if (view.history === "older") m.textContent = "Loading older messages…";
  else if (view.historyOff) m.textContent = "Older messages are not available";
  else m.textContent = "Scroll up for older messages";
  m.dataset.state = view.atStart ? "start" : view.history === "older" ? "loading" : "more";
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
  const time = li.querySelector(".time");
  time.textContent = localTime(m.ts);
  time.dateTime = m.ts || "";
  if (m.deleted) {
    showDeleted(li);
    return;
  }
  const mine = m.user === state.client?.user;
  if (mine) li.classList.add("mine");
  li.querySelector(".user").textContent = m.user;
  li.querySelector(".content").textContent = m.content;
  if (m.editedTs) showEdited(li, m.editedTs);
  if (mine && m.id !== undefined && !li.querySelector(".actions")) li.append(messageActions(li));
}

/** Edit and Delete buttons on one of your own messages. */
function messageActions(li) {
  const actions = document.createElement("span");
  actions.className = "actions";
  const editButton = document.createElement("button");
  editButton.type = "button";
  editButton.className = "edit";
  editButton.textContent = "Edit";
  editButton.addEventListener("click", () => startEditing(li));
  const deleteButton = document.createElement("button");
  deleteButton.type = "button";
  deleteButton.className = "delete";
  deleteButton.textContent = "Delete";
  deleteButton.addEventListener("click", () => {
    const view = currentView();
    const room = view && roomOf(view);
    if (!room || !room.joined || state.connection !== "online") return;
    try {
      room.delete(Number(li.dataset.id));
    } catch (err) {
      systemLine(view, "error", isolated(err.code || "error"), ": ", isolated(err.message));
    }
  });
  actions.append(editButton, deleteButton);
  return actions;
}

function showEdited(li, editedTs) {
  let tag = li.querySelector(".edited");
  if (!tag) {
    tag = document.createElement("span");
    tag.className = "edited";
    tag.textContent = "(edited)";
    li.querySelector(".head").append(tag);
  }
  tag.title = editedTs ? `edited ${localTime(editedTs)}` : "edited";
}

/** A deleted message: its place stays, its words go. */
function showDeleted(li) {
  li.classList.add("deleted");
  li.classList.remove("mine");
  li.querySelector(".user").textContent = "";
  li.querySelector(".content").textContent = "message deleted";
  li.querySelector(".actions")?.remove();
  li.querySelector(".edited")?.remove();
}

function messageElement(view, id) {
  return view.log.querySelector(`li[data-id="${Number(id)}"]`);
}

/** The highest message id shown in the room (0: none). */
function newestId(view) {
  let newest = 0;
  for (const id of view.ids) newest = Math.max(newest, id);
  return newest;
}

/**
 * The room is on screen: its newest message is read (every tab of this user hears of it). Sent at
 * most once per READ_EVERY_MS per room (a busy room must not spend the connection's frame budget on
 * markers), with the newest id at that moment.
 */
function markSeen(view) {
  if (view.readTimer) return;
  view.readTimer = setTimeout(() => {
    view.readTimer = null;
    const room = roomOf(view);
    const newest = newestId(view);
    if (room && newest > 0 && view.name === state.current && document.visibilityState !== "hidden") {
      room.markRead(newest);
    }
  }, READ_EVERY_MS);
}

function stopTyping(view, user) {
  if (!view.typing.has(user)) return;
  clearTimeout(view.typing.get(user));
  view.typing.delete(user);
  if (view.name === state.current) renderTyping();
}

/** "ann is typing…" under the log of the room on screen. */
function renderTyping() {
  const view = currentView();
  const names = view ? [...view.typing.keys()].sort((a, b) => a.localeCompare(b)) : [];
  const line = $("typing");
  if (names.length === 0) {
    line.replaceChildren();
    return;
  }
  const parts = [];
  names.slice(0, 3).forEach((name, i) => {
    if (i > 0) parts.push(", ");
    parts.push(isolated(name));
  });
  if (names.length > 3) parts.push(` and ${names.length - 3} more`);
  parts.push(names.length === 1 ? " is typing…" : " are typing…");
  line.replaceChildren(...parts);
}

// ---- Editing --------------------------------------------------------------------------------

/** Puts one of your messages in the composer; Enter saves the edit, Escape cancels. */
function startEditing(li) {
  const view = currentView();
  if (!view || !li.dataset.id || li.classList.contains("deleted")) return;
  state.editing = { room: view.name, id: Number(li.dataset.id) };
  const text = $("text");
  text.value = li.querySelector(".content").textContent;
  text.placeholder = "Editing: Enter saves, Escape cancels";
  $("send-button").textContent = "Save";
  $("send").classList.add("editing");
  text.focus();
}

function stopEditing() {
  state.editing = null;
  $("text").value = "";
  $("text").placeholder = "Message (Enter sends)";
  $("send-button").textContent = "Send";
  $("send").classList.remove("editing");
}

/** Your newest message still shown (not deleted), for the Up arrow. */
function lastOwnMessage(view) {
  const mine = view.log.querySelectorAll("li.msg.mine[data-id]:not(.pending)");
  return mine.length > 0 ? mine[mine.length - 1] : null;
}

/**
 * Inserts a confirmed message at its place by id and records the id. Unconfirmed (pending)
 * messages always stay last; lines without an id (system lines) stay where they were written.
 */
function placeMessage(view, li, id) {
  const log = view.log;
  if (view.oldestId !== null && id < view.oldestId) {
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
  view.ids.add(id);
  view.oldestId = view.oldestId === null ? id : Math.min(view.oldestId, id);
}

/**
 * A line without an id: joins, leaves, errors. `parts` are the app's own strings and isolated()
 * elements for what came from users or the server.
 */
function systemLine(view, kind, ...parts) {
  if (!view) {
    $("login-error").replaceChildren(...parts);
    return;
  }
  const li = document.createElement("li");
  li.className = kind;
  if (kind === "error") li.setAttribute("role", "alert");
  li.append(...parts);
  const follow = isNearBottom(view.log);
  view.log.append(li);
  if (follow) scrollToBottom(view);
}

function isNearBottom(log) {
  return log.scrollHeight - log.scrollTop - log.clientHeight <= NEAR_BOTTOM_PX;
}

function scrollToBottom(view) {
  view.log.scrollTop = view.log.scrollHeight;
}

// ---- Sending --------------------------------------------------------------------------------

/** Shows the message at once (pending) and sends it with a client_id; the echo confirms it. */
function sendMessage(view, content) {
  const limit = state.client.limits?.max_message_bytes;
  const bytes = utf8Length(content);
  if (limit !== undefined && bytes > limit) {
    systemLine(view, "error", `message is ${bytes} bytes; the limit is ${limit}`);
    return false;
  }
  let sent;
  try {
    // A conversation not opened yet goes out as `dm`: the server joins us and tells the other user.
    const room = roomOf(view);
    sent = view.dmTo && !(room && room.joined) ? state.client.dm(view.dmTo, content) : state.client.publish(view.name, content);
  } catch (err) {
    systemLine(view, "error", isolated(err.code || "error"), ": ", isolated(err.message));
    return false;
  }
  const li = renderMessage({ user: state.client.user, content, ts: new Date().toISOString() });
  li.classList.add("pending", "mine");
  li.dataset.clientId = sent.clientId;
  li.setAttribute("aria-busy", "true");
  view.log.append(li);
  scrollToBottom(view);
  const timer = setTimeout(() => markFailed(view, sent.clientId), PENDING_TIMEOUT_MS);
  view.pending.set(sent.clientId, { li, content, timer });
  // Refused by the server (e.g. `unavailable` in cluster mode): offer to send it again.
  sent.confirmed.catch(() => markFailed(view, sent.clientId));
  return true;
}

/** No echo in time: say so and offer to send again (as a new message). */
function markFailed(view, clientId) {
  const entry = view.pending.get(clientId);
  if (!entry) return;
  entry.li.classList.add("failed");
  if (entry.li.querySelector(".retry")) return;
  const retry = document.createElement("button");
  retry.type = "button";
  retry.className = "retry";
  retry.textContent = "Not confirmed — send again";
  retry.addEventListener("click", () => {
    const room = roomOf(view);
    if (state.connection !== "online" || !room || !room.joined) return;
    dropPending(view, clientId);
    state.client.discard(clientId);
    entry.li.remove();
    sendMessage(view, entry.content);
  });
  entry.li.append(retry);
}

// ---- Rooms ----------------------------------------------------------------------------------

function joinRoom(name) {
  if (!state.views.has(name)) {
    try {
      state.client.join(name); // offline: joined on reconnect
    } catch (err) {
      $("join-error").textContent = err.message;
      return;
    }
    makeView(name);
  }
  switchRoom(name);
}

function leaveRoom(name) {
  const view = state.views.get(name);
  if (!view || view.leaving) return;
  if (state.views.size === 1) {
    systemLine(view, "error", "You are in only this room: join another before leaving it.");
    return;
  }
  view.leaving = true;
  state.client.leave(name).then(() => removeView(view));
}

function removeView(view) {
  for (const entry of view.pending.values()) clearTimeout(entry.timer);
  for (const timer of view.typing.values()) clearTimeout(timer);
  clearTimeout(view.readTimer);
  view.log.remove();
  view.tab.remove();
  state.views.delete(view.name);
  if (state.current === view.name) {
    const next = state.views.keys().next().value;
    state.current = null;
    if (next) switchRoom(next);
  }
}

function switchRoom(name) {
  const view = state.views.get(name);
  if (!view) return;
  state.current = name;
  for (const other of state.views.values()) {
    const on = other === view;
    other.log.hidden = !on;
    other.tab.classList.toggle("current", on);
    other.tab.querySelector(".room-open").setAttribute("aria-current", on ? "true" : "false");
  }
  view.unread = 0;
  renderBadge(view);
  markSeen(view);
  if (state.editing && state.editing.room !== name) stopEditing();
  renderTyping();
  $("room-title").replaceChildren(isolated(name));
  renderPresence();
  updateComposer();
  scrollToBottom(view);
}

function renderBadge(view) {
  view.badge.hidden = view.unread === 0;
  view.badge.textContent = view.unread > 99 ? "99+" : String(view.unread);
  view.badge.setAttribute("aria-label", `${view.unread} unread`);
}

function renderPresence() {
  const view = currentView();
  const room = view && roomOf(view);
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
    if (name === state.client.user) li.classList.add("mine");
    list.append(li);
  }
  const hidden = room.memberCount - names.length;
  if (hidden > 0) {
    const li = document.createElement("li");
    li.className = "more";
    li.textContent = `and ${hidden} more`;
    list.append(li);
  }
  $("people-count").textContent = `(${Math.max(room.memberCount, names.length)})`;
}

// ---- Forms ----------------------------------------------------------------------------------

$("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const nick = $("nick").value.trim();
  const roomName = $("first-room").value.trim();
  const problem = nickProblem(nick) || roomNameProblem(roomName);
  $("login-error").textContent = problem || "";
  if (problem) return;
  $("login").hidden = true;
  $("chat").hidden = false;
  makeView(roomName);
  switchRoom(roomName);
  startClient(nick, roomName);
  $("text").focus();
});

$("join").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const name = $("join-room").value.trim();
  if (name.startsWith("@")) {
    // "@bob": a direct conversation with bob (opened by the first message).
    const to = name.slice(1).trim();
    const me = state.client?.user;
    const problem = nickProblem(to) || (to === me ? "That is you." : null) || (me ? null : "Not connected yet.");
    $("join-error").textContent = problem || "";
    if (problem) return;
    $("join-room").value = "";
    const room = dmRoom(me, to);
    if (!state.views.has(room)) makeView(room, to);
    switchRoom(room);
    return;
  }
  const problem = roomNameProblem(name);
  $("join-error").textContent = problem || "";
  if (problem) return;
  $("join-room").value = "";
  joinRoom(name);
});

// Enter submits the form (the browser does that for a single-line input in a form).
$("send").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const view = currentView();
  const room = view && roomOf(view);
  const content = $("text").value;
  const opening = !!view?.dmTo && !(room && room.joined); // a conversation's first message
  if ((!opening && (!room || !room.joined)) || content.trim() === "") return;
  if (state.editing && state.editing.room === view.name) {
    try {
      room.edit(state.editing.id, content);
      stopEditing();
    } catch (err) {
      systemLine(view, "error", isolated(err.code || "error"), ": ", isolated(err.message));
    }
  } else if (sendMessage(view, content)) {
    $("text").value = "";
  }
  $("text").focus();
});

// Up in an empty composer edits your last message; Escape cancels an edit. Typing tells the room.
$("text").addEventListener("keydown", (ev) => {
  const view = currentView();
  if (!view) return;
  if (ev.key === "ArrowUp" && $("text").value === "" && !state.editing) {
    const li = lastOwnMessage(view);
    if (li) {
      ev.preventDefault();
      startEditing(li);
    }
  } else if (ev.key === "Escape" && state.editing) {
    ev.preventDefault();
    stopEditing();
  }
});
$("text").addEventListener("input", () => {
  const view = currentView();
  const room = view && roomOf(view);
  if (room && $("text").value !== "" && !state.editing) room.typing();
});

// Back in this tab: what is on screen is read.
document.addEventListener("visibilitychange", () => {
  const view = currentView();
  if (view && document.visibilityState === "visible") markSeen(view);
});

// Back online after the OS said we were offline: do not wait out the backoff.
window.addEventListener("online", () => state.client?.reconnectNow());

// Phones: start with the member list folded so the conversation gets the space.
if (window.matchMedia("(max-width: 700px)").matches) $("people-details").open = false;

// For the browser tests and the console: the page's state and the handlers of library events.
window.roomcastApp = { state, handlers };
