// The meshdrop demo: join the room named in the URL hash, list peers, chat, send files
// (drop on a peer, or send to everyone) with accept/decline, progress and resume, share
// files and find them in the room (downloaded from every holder at once), and offer
// and call a "print" service.
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

// `#room=name&secret=…`: the secret part of a shared link stays in the fragment, which
// browsers never send to a server; meshdrop never sends it either (roomSecret).
function secretFromHash() {
  const m = location.hash.match(/secret=([^&]{1,1024})/);
  return m ? decodeURIComponent(m[1]) : undefined;
}

function defaultName() {
  return localStorage.getItem("meshdrop.name") || `guest-${Math.random().toString(36).slice(2, 6)}`;
}

// id -> { name, state: "connecting" | "connected" }, in the order peers appeared.
// shelf: File -> its shared entry ({ id, hash, ... }), or null while it is hashed.
const state = { peer: null, room: roomFromHash(), names: new Map(), peers: new Map(), shelf: new Map() };

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

/** "direct · 12 ms", "relayed (TURN/UDP) · 40 ms", "reconnecting…", or why it failed. */
function peerStatus(connection, path, rttMs, failure) {
  if (connection === "reconnecting") return "reconnecting…";
  if (connection !== "connected") return failure ? `failed: ${failure}` : "connecting…";
  if (!path) return "";
  const how = path.path === "relayed" ? `relayed (TURN/${path.protocol.toUpperCase()})` : "direct";
  return rttMs == null ? how : `${how} · ${Math.round(rttMs)} ms`;
}

function updatePeer(id, changes) {
  const known = state.peers.get(id);
  if (!known) return;
  state.peers.set(id, { ...known, ...changes });
  renderPeers();
}

/** Round-trip times for the peer list, every few seconds. */
async function refreshPaths() {
  for (const [id, info] of state.peers) {
    if (info.state !== "connected" || !state.peer) continue;
    const connection = await state.peer.connection(id).catch(() => null);
    if (connection && state.peers.get(id)) state.peers.set(id, { ...state.peers.get(id), rttMs: connection.rttMs, path: connection });
  }
  renderPeers();
}
setInterval(() => refreshPaths(), 3000);

function renderPeers() {
  const list = $("peers");
  list.replaceChildren();
  for (const [id, { name, state: connection, path, rttMs, failure }] of state.peers) {
    const li = document.createElement("li");
    li.dataset.id = id;
    li.dataset.state = connection;
    const label = document.createElement("span");
    label.className = "name";
    label.textContent = name ?? "anonymous";
    const status = document.createElement("span");
    status.className = "conn";
    status.textContent = peerStatus(connection, path, rttMs, failure);
    if (failure) status.title = failure;
    const short = document.createElement("span");
    short.className = "id";
    short.textContent = id.slice(0, 8);
    short.title = id;
    const send = document.createElement("button");
    send.type = "button";
    send.className = "send-file";
    send.textContent = "Send file";
    send.disabled = connection !== "connected";
    send.addEventListener("click", () => pickFiles((files) => files.forEach((f) => sendFile(id, f))));
    li.addEventListener("dragover", (e) => {
      if (connection !== "connected") return;
      e.preventDefault();
      li.classList.add("drop-target");
    });
    li.addEventListener("dragleave", () => li.classList.remove("drop-target"));
    li.addEventListener("drop", (e) => {
      e.preventDefault();
      li.classList.remove("drop-target");
      [...(e.dataTransfer?.files ?? [])].forEach((f) => sendFile(id, f));
    });
    li.append(label, status, short);
    // The safety code: the same on both screens means nobody, the server included, is
    // in between. "Verify" once it matched remembers this peer's key.
    const code = connection === "connected" ? state.peer?.safetyCode(id) : undefined;
    if (code) {
      const verified = state.peer.isVerified(id);
      const badge = document.createElement("span");
      badge.className = "safety";
      badge.dataset.verified = String(verified);
      badge.textContent = verified ? `✓ verified · ${code}` : `code ${code}`;
      badge.title = "Compare this code with the one the other person sees. Equal codes: you are connected to each other directly.";
      li.append(badge);
      if (!verified) {
        const verify = document.createElement("button");
        verify.type = "button";
        verify.className = "verify";
        verify.textContent = "Codes match";
        verify.addEventListener("click", () => {
          state.peer.verify(id);
          renderPeers();
        });
        li.append(verify);
      }
    }
    li.append(send);
    list.append(li);
  }
  const connected = [...state.peers.values()].filter((p) => p.state === "connected").length;
  $("peer-count").textContent = String(connected);
  $("no-peers").hidden = state.peers.size > 0;
  renderPrinters();
}

async function join(name) {
  setStatus("connecting", "connecting…");
  const roomSecret = secretFromHash();
  const peer = await Peer.join({ signalingUrl, room: state.room, name, ...(roomSecret ? { roomSecret } : {}) });
  state.peer = peer;
  $("me").textContent = `${name} (${peer.id.slice(0, 8)})`;
  $("me").title = peer.id;
  peer.on("peer-connecting", ({ id, name }) => {
    state.peers.set(id, { name, state: "connecting" });
    renderPeers();
  });
  peer.on("peer-path", ({ id, ...path }) => updatePeer(id, { path }));
  peer.on("peer-reconnecting", ({ id }) => updatePeer(id, { state: "reconnecting" }));
  peer.on("peer-reconnected", ({ id }) => updatePeer(id, { state: "connected" }));
  peer.on("peer-failed", ({ id, message }) => {
    updatePeer(id, { failure: message });
    log(`Could not connect to ${state.names.get(id) ?? id.slice(0, 8)}: ${message}`, { system: true });
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
  peer.on("signaling", ({ state: s, reason }) => {
    // Closed for a reason (this identity opened elsewhere): say so; chat with peers
    // already connected goes on.
    setStatus(s, reason ? "signaling stopped" : s);
    if (reason) log(`Signaling stopped: ${reason}. New peers cannot join you from this window.`, { system: true });
  });
  peer.on("file-offer", (offer) => showOffer(offer));
  peer.on("transfer", (t) => showTransfer(t, { resumed: true }));
  peer.on("warning", ({ message }) => console.warn("meshdrop:", message));
  setStatus("connected");
  renderPeers();
  $("send").disabled = false;
  offerPrint($("offer-print").checked);
  // A new Peer (after a rename) shares the shelf again.
  for (const file of state.shelf.keys()) shareOne(file, true);
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

// -- files --------------------------------------------------------------------------

function formatBytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function formatEta(seconds) {
  if (!isFinite(seconds)) return "";
  if (seconds < 60) return `${Math.ceil(seconds)} s left`;
  return `${Math.floor(seconds / 60)} min ${Math.ceil(seconds % 60)} s left`;
}

function pickFiles(then) {
  const input = document.createElement("input");
  input.type = "file";
  input.multiple = true;
  input.addEventListener("change", () => then([...input.files]));
  input.click();
}

function peerName(id) {
  return state.names.get(id) ?? id.slice(0, 8);
}

/** A card in the Files list; returns its parts. */
function card(id) {
  let li = document.querySelector(`#transfers li[data-id="${id}"]`);
  if (!li) {
    li = document.createElement("li");
    li.dataset.id = id;
    $("transfers").prepend(li);
  }
  li.replaceChildren();
  const title = document.createElement("div");
  title.className = "title";
  const detail = document.createElement("div");
  detail.className = "detail";
  const actions = document.createElement("div");
  actions.className = "actions";
  li.append(title, detail, actions);
  $("no-transfers").hidden = true;
  return { li, title, detail, actions };
}

function button(text, onClick, secondary = false) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  if (secondary) b.className = "secondary";
  b.addEventListener("click", onClick);
  return b;
}

function showOffer(offer) {
  const { li, title, detail, actions } = card(offer.id);
  li.dataset.state = "offered";
  title.textContent = `${peerName(offer.from)} wants to send you ${offer.name} (${formatBytes(offer.size)})`;
  detail.textContent = offer.resumeBytes > 0 ? `${formatBytes(offer.resumeBytes)} of it is already here from an earlier try` : offer.type || "";
  offer.on("withdrawn", ({ name }) => {
    li.dataset.state = "failed";
    detail.textContent = name === "CancelledError" ? `${peerName(offer.from)} cancelled the offer` : `${peerName(offer.from)} left; the offer is gone`;
    actions.replaceChildren();
  });
  actions.append(
    button("Accept", () => showTransfer(offer.accept())),
    button("Decline", () => {
      offer.reject("declined");
      li.dataset.state = "failed";
      detail.textContent = "Declined";
      actions.replaceChildren();
    }, true),
  );
}

function sendFile(peerId, file) {
  try {
    showTransfer(state.peer.sendFile(peerId, file));
  } catch (err) {
    log(`Cannot send ${file.name}: ${err.message}`, { system: true });
  }
}

function showTransfer(t, { resumed = false, download = false } = {}) {
  const { li, title, detail, actions } = card(t.id);
  const sending = t.direction === "send";
  li.dataset.state = "active";
  const from = () => t.sources().map((s) => peerName(s.peerId)).join(", ");
  title.textContent = sending ? `${t.name} → ${peerName(t.peerId)}` : `${t.name} from ${download ? from() : peerName(t.peerId)}`;
  const served = document.createElement("div");
  served.className = "detail sources";
  if (download) li.insertBefore(served, actions);
  const showSources = () => (served.textContent = "served: " + t.sources().map((s) => `${peerName(s.peerId)} ${formatBytes(s.bytes)}`).join(" · "));
  const bar = document.createElement("progress");
  bar.max = t.size || 1;
  bar.value = 0;
  detail.textContent = sending ? "Waiting for them to accept…" : resumed ? "Resuming where it stopped…" : download ? "Asking the holders…" : "Starting…";
  li.insertBefore(bar, actions);
  actions.append(button("Cancel", () => t.cancel("cancelled"), true));
  t.on("progress", ({ bytes, total, bytesPerSecond }) => {
    bar.value = bytes;
    const rate = bytesPerSecond > 0 ? `${formatBytes(bytesPerSecond)}/s · ${formatEta((total - bytes) / bytesPerSecond)}` : "";
    detail.textContent = `${formatBytes(bytes)} of ${formatBytes(total)} ${rate ? "· " + rate : ""}`;
    if (download) showSources();
  });
  t.on("paused", () => (detail.textContent = download ? "Paused: every holder left — waiting for one to come back…" : `Paused: ${peerName(t.peerId)} left — waiting for them to come back…`));
  t.on("resumed", () => (detail.textContent = "Resuming…"));
  t.done.then(
    (file) => {
      li.dataset.state = "done";
      bar.value = bar.max;
      actions.replaceChildren();
      if (sending) {
        detail.textContent = `Delivered and verified (${formatBytes(t.size)})`;
        return;
      }
      detail.textContent = `Received and verified (${formatBytes(file.size)})`;
      if (download) showSources();
      const save = document.createElement("a");
      save.href = URL.createObjectURL(file);
      save.download = file.name;
      save.textContent = "Save";
      save.className = "save";
      actions.append(save);
    },
    (err) => {
      li.dataset.state = "failed";
      actions.replaceChildren();
      const reasons = {
        DeclinedError: "Declined",
        CancelledError: "Cancelled",
        PeerLeftError: `${peerName(t.peerId)} left and did not come back`,
        HashMismatchError: "Failed: the data did not match its hash (nothing was saved)",
        StorageFullError: "Failed: the receiver's storage is full",
        NotSharedError: "Failed: the holders stopped sharing it",
      };
      detail.textContent = reasons[err.name] ?? `Failed: ${err.message}`;
      detail.title = err.message;
    },
  );
}

$("send-all").addEventListener("change", (e) => {
  const files = [...e.target.files];
  e.target.value = "";
  const peers = state.peer?.peers() ?? [];
  if (peers.length === 0) log("Nobody to send to yet.", { system: true });
  for (const { id } of peers) files.forEach((f) => sendFile(id, f));
});

// -- sharing and finding ------------------------------------------------------------

function sameFile(a, b) {
  return a.name === b.name && a.size === b.size && a.lastModified === b.lastModified;
}

async function shareOne(file, again = false) {
  if (!again && [...state.shelf.keys()].some((f) => sameFile(f, file))) return;
  state.shelf.set(file, null);
  renderShelf();
  try {
    const entry = await state.peer.share(file);
    if (state.shelf.has(file)) state.shelf.set(file, entry);
    else state.peer.unshare(entry.id); // removed while it was being hashed
  } catch (err) {
    state.shelf.delete(file);
    log(`Cannot share ${file.name}: ${err.message}`, { system: true });
  }
  renderShelf();
}

function renderShelf() {
  const list = $("shared");
  list.replaceChildren();
  for (const [file, entry] of state.shelf) {
    const li = document.createElement("li");
    li.dataset.state = entry ? "shared" : "hashing";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = file.name;
    const detail = document.createElement("span");
    detail.className = "detail";
    detail.textContent = entry ? formatBytes(file.size) : `${formatBytes(file.size)} · hashing…`;
    const remove = button("Unshare", () => {
      if (entry) state.peer?.unshare(entry.id);
      state.shelf.delete(file);
      renderShelf();
    });
    li.append(name, detail, remove);
    list.append(li);
  }
}

$("share-input").addEventListener("change", (e) => {
  const files = [...e.target.files];
  e.target.value = "";
  files.forEach((f) => shareOne(f));
});
const shelf = $("shelf");
shelf.addEventListener("dragover", (e) => {
  e.preventDefault();
  shelf.classList.add("drop-target");
});
shelf.addEventListener("dragleave", () => shelf.classList.remove("drop-target"));
shelf.addEventListener("drop", (e) => {
  e.preventDefault();
  shelf.classList.remove("drop-target");
  [...(e.dataTransfer?.files ?? [])].forEach((f) => shareOne(f));
});

$("find-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("find-input").value.trim();
  if (!text || !state.peer) return;
  const match = $("find-substring").checked ? "substring" : "exact";
  $("find-status").textContent = `Asking the room for ${text}…`;
  $("hits").replaceChildren();
  const hits = await state.peer.find(text, { match, timeoutMs: 2000 });
  // The same content (hash) from several holders is one file, downloaded from all.
  const files = new Map();
  for (const hit of hits) files.set(hit.hash, [...(files.get(hit.hash) ?? []), hit]);
  $("find-status").textContent = files.size === 0 ? `Nobody here has ${text}.` : `${files.size} file${files.size === 1 ? "" : "s"} found`;
  for (const group of files.values()) {
    const li = document.createElement("li");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = group[0].name;
    const detail = document.createElement("span");
    detail.className = "detail";
    const holders = group.map((h) => peerName(h.peerId)).join(", ");
    detail.textContent = `${formatBytes(group[0].size)} · ${group.length} holder${group.length === 1 ? "" : "s"}: ${holders}`;
    li.append(name, detail, button("Download", () => {
      try {
        showTransfer(state.peer.download(group), { download: true });
      } catch (err) {
        log(`Cannot download ${group[0].name}: ${err.message}`, { system: true });
      }
    }));
    $("hits").append(li);
  }
});

// -- the print service --------------------------------------------------------------

function offerPrint(on) {
  if (!state.peer) return;
  if (!on) {
    state.peer.unhandle("print");
    return;
  }
  state.peer.handle("print", (payload, { from }) => {
    const text = typeof payload?.text === "string" ? payload.text : JSON.stringify(payload);
    $("print-from").textContent = `from ${peerName(from)}`;
    $("print-paper").textContent = text;
    $("print-preview").hidden = false;
    log(`${peerName(from)} printed ${text.length} characters here`, { system: true });
    return "printed";
  });
}

function renderPrinters() {
  const select = $("print-peer");
  const chosen = select.value;
  select.replaceChildren();
  for (const [id, { name, state: connection }] of state.peers) {
    if (connection !== "connected") continue;
    const option = document.createElement("option");
    option.value = id;
    option.textContent = name ?? id.slice(0, 8);
    select.append(option);
  }
  if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
  $("print").disabled = select.options.length === 0;
}

$("offer-print").addEventListener("change", (e) => offerPrint(e.target.checked));

$("print-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const to = $("print-peer").value;
  const text = $("print-text").value;
  if (!to || !state.peer) return;
  const result = $("print-result");
  result.textContent = `Sending to ${peerName(to)}…`;
  try {
    const reply = await state.peer.request(to, "print", { text }, { timeoutMs: 5000 });
    result.textContent = `${peerName(to)}: ${reply}`;
  } catch (err) {
    const reasons = { NoSuchMethodError: "does not offer printing", TimeoutError: "did not answer in time", PeerLeftError: "left" };
    result.textContent = `${peerName(to)}: ${reasons[err.name] ?? err.message}`;
  }
});

// Dropping a file elsewhere on the page must not navigate away from the room.
addEventListener("dragover", (e) => e.preventDefault());
addEventListener("drop", (e) => e.preventDefault());

addEventListener("hashchange", () => location.reload());
start();
