// roomcast minimal web client: one room, JSON protocol. Every server string is rendered with
// textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
let socket = null;
let me = null;
let currentRoom = null;

function setStatus(online, text) {
  const el = $("status");
  el.textContent = text;
  el.className = "status " + (online ? "online" : "offline");
  $("text").disabled = !online;
  $("send-button").disabled = !online;
}

function line(cls, parts) {
  const li = document.createElement("li");
  li.className = cls;
  for (const [partCls, text] of parts) {
    const span = document.createElement("span");
    span.className = partCls;
    span.textContent = text;
    li.appendChild(span);
  }
  const log = $("log");
  log.appendChild(li);
  li.scrollIntoView({ block: "end" });
}

function connect(nick, room) {
  if (socket) socket.close(1000);
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const params = new URLSearchParams({ format: "json", nick, room });
  socket = new WebSocket(`${proto}//${location.host}/ws?${params}`);
  currentRoom = room;
  setStatus(false, "connecting");
  socket.onopen = () => setStatus(true, "online");
  socket.onclose = () => setStatus(false, "offline");
  socket.onmessage = (ev) => {
    let msg;
    try { msg = JSON.parse(ev.data); } catch { return; }
    switch (msg.type) {
      case "welcome": me = msg.user; break;
      case "joined": line("system", [["", `joined ${msg.room} (${msg.member_count} here)`]]); break;
      case "message": {
        const time = new Date(msg.ts).toLocaleTimeString();
        line(msg.user === me ? "mine" : "", [["time", time], ["user", msg.user], ["content", msg.content]]);
        break;
      }
      case "presence": line("system", [["", `${msg.user} ${msg.event === "join" ? "joined" : "left"}`]]); break;
      case "error": line("error", [["", `${msg.code}: ${msg.message}`]]); break;
    }
  };
}

$("join").addEventListener("submit", (ev) => {
  ev.preventDefault();
  connect($("nick").value.trim(), $("room").value.trim());
});

$("send").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("text").value;
  if (!text || !socket || socket.readyState !== WebSocket.OPEN) return;
  socket.send(JSON.stringify({ type: "message", room: currentRoom, content: text }));
  $("text").value = "";
});
