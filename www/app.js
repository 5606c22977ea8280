// The meshdrop demo: join the room named in the URL hash, list peers, chat.
import init, { Peer } from "./pkg/meshdrop.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const signalingUrl = params.get("signal") ?? `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;

function roomFromHash() {
  const m = location.hash.match(/room=([A-Za-z0-9_-]{1,64})/);
  if (m) return m[1];
  const room = "room-" + Math.random().toString(36).slice(2, 8);
  history.replaceState(null, "", `#room=${room}`);
  return room;
}

function defaultName() {
  return localStorage.getItem("meshdrop.name") || `guest-${Math.random().toString(36).slice(2, 6)}`;
}

// id -> { name, state: "connecting" | "connected" }, in the order peers appeared.
const state = { peer: null, room: roomFromHash(), names: new Map(), peers: new Map() };

function log(text, { from, mine = false, system = false } = {}) {
  const li = document.createElement("li");
  li.className = system ? "system msg-system" : mine ? "msg mine" : "msg";
  if (from !== undefined) {
    const who = document.createElement("span");
    who.className = "from";
    who.textContent = from;
    li.append(who);
  }
  li.append(document.createTextNode(text));
  $("log").append(li);
  li.scrollIntoView({ block: "end" });
}

function setStatus(stateName, text = stateName) {
  const badge = $("status");
  badge.dataset.state = stateName;
  badge.textContent = stateName === "reconnecting" ? "signaling offline — reconnecting…" : text;
}

function renderPeers() {
  const list = $("peers");
  list.replaceChildren();
  for (const [id, { name, state: connection }] of state.peers) {
    const li = document.createElement("li");
    li.dataset.id = id;
    li.dataset.state = connection;
    const label = document.createElement("span");
    label.className = "name";
    label.textContent = name ?? "anonymous";
    const status = document.createElement("span");
    status.className = "conn";
    status.textContent = connection === "connected" ? "" : "connecting…";
    const short = document.createElement("span");
    short.className = "id";
    short.textContent = id.slice(0, 8);
    short.title = id;
    li.append(label, status, short);
    list.append(li);
  }
  const connected = [...state.peers.values()].filter((p) => p.state === "connected").length;
  $("peer-count").textContent = String(connected);
  $("no-peers").hidden = state.peers.size > 0;
}

async function join(name) {
  setStatus("connecting", "connecting…");
  const peer = await Peer.join({ signalingUrl, room: state.room, name });
  state.peer = peer;
  $("me").textContent = `${name} (${peer.id.slice(0, 8)})`;
  $("me").title = peer.id;
  peer.on("peer-connecting", ({ id, name }) => {
    state.peers.set(id, { name, state: "connecting" });
    renderPeers();
  });
  peer.on("peer-joined", ({ id, name }) => {
    state.names.set(id, name ?? "anonymous");
    state.peers.set(id, { name, state: "connected" });
    log(`${name ?? "anonymous"} joined`, { system: true });
    renderPeers();
  });
  peer.on("peer-left", ({ id }) => {
    const was = state.peers.get(id);
    state.peers.delete(id);
    if (was?.state === "connected") log(`${state.names.get(id) ?? id.slice(0, 8)} left`, { system: true });
    renderPeers();
  });
  peer.on("message", ({ from, data }) => {
    const text = typeof data === "string" ? data : `(${data.byteLength} bytes)`;
    log(text, { from: state.names.get(from) ?? from.slice(0, 8) });
  });
  peer.on("signaling", ({ state: s }) => setStatus(s));
  peer.on("warning", ({ message }) => console.warn("meshdrop:", message));
  setStatus("connected");
  renderPeers();
  $("send").disabled = false;
  return peer;
}

async function start() {
  await init();
  $("room-name").textContent = state.room;
  const name = defaultName();
  $("name").value = name;
  $("send").disabled = true;
  try {
    await join(name);
  } catch (err) {
    setStatus("error", `cannot join: ${err.message}`);
    log(`Could not join: ${err.message}`, { system: true });
  }
}

$("chat-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const input = $("chat-input");
  const text = input.value.trim();
  if (!text || !state.peer) return;
  input.value = "";
  try {
    await state.peer.broadcast(text);
    log(text, { from: "you", mine: true });
  } catch (err) {
    log(`Not sent: ${err.message}`, { system: true });
  }
});

$("name-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const name = $("name").value.trim();
  if (!name) return;
  localStorage.setItem("meshdrop.name", name);
  if (state.peer) await state.peer.leave();
  state.peer = null;
  state.peers.clear();
  renderPeers();
  try {
    await join(name);
  } catch (err) {
    setStatus("error", `cannot join: ${err.message}`);
  }
});

$("copy-link").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(location.href);
    $("copy-link").textContent = "Copied!";
  } catch {
    prompt("Copy this link:", location.href);
  }
  setTimeout(() => ($("copy-link").textContent = "Copy link"), 1500);
});

addEventListener("hashchange", () => location.reload());
start();
