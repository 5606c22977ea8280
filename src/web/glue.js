//# allFunctionsCalledOnLoad
// (V8: compile this file's functions as it loads, not each at its first call: a join
// calls most of them.)
// The web driver's JavaScript half: the browser calls that are simpler in JS than
// through web-sys. One module, so a page loads one file for them, not five (each was
// a request of its own; wasm-bindgen-test-runner's server also stalled on that many
// parallel requests).

// --- Reading files (src/web/blob.rs) ---
// Reads part of a Blob into a buffer the caller reuses (why: src/web/blob.rs).
// Resolves to a Uint8Array of bytes `start..end`, over `buffer`'s memory (under a new
// ArrayBuffer object: a read takes the buffer over) when it is big enough and Blob
// streams take BYOB reads here; else over a new buffer.

// Streams being read. Chromium collects a Blob's stream nothing references even while
// a read is pending, and that read then never settles (every read hung with gc() every
// few ms); held here, they live until their read is over.
const reading = new Set();

export async function readBlobInto(blob, start, end, buffer) {
  const len = end - start;
  if (buffer && buffer.byteLength >= len && len > 0) {
    const stream = blob.slice(start, end).stream();
    let reader;
    try {
      reader = stream.getReader({ mode: "byob" });
    } catch {
      reader = null; // not a byte stream here: read it the plain way below
    }
    if (reader) {
      reading.add(stream);
      try {
        let filled = 0;
        for (;;) {
          const { value, done } = await reader.read(new Uint8Array(buffer, filled, len - filled));
          if (value) buffer = value.buffer;
          if (done) break;
          filled += value.byteLength;
          if (filled === len) {
            reader.cancel().catch(() => {});
            break;
          }
        }
        return new Uint8Array(buffer, 0, filled);
      } finally {
        reading.delete(stream);
      }
    }
  }
  return new Uint8Array(await blob.slice(start, end).arrayBuffer());
}

// --- The storage worker (src/web/store.rs) ---
// The storage worker from the file shipped beside this module: the form bundlers
// (Vite, webpack) recognise and emit, and that a strict `worker-src 'self'` allows.
// The build copies store_worker.js here (scripts/build-wasm.mjs).
export function startStoreWorker() {
  return new Worker(new URL("./store_worker.js", import.meta.url), { type: "module" });
}

// --- Screen Wake Lock while transferring (src/web/wake_lock.rs) ---
// Taken once transfers have run for a second: no screen sleeps sooner, and asking for
// a lock (and giving it back) cost each small file ~0.5 ms on both sides.
const WAKE_LOCK_AFTER_MS = 1000;
let wanted = false;
let sentinel = null;
let listening = false;
let pending = null;
async function acquire() {
  if (!wanted || sentinel || typeof document === "undefined" || document.visibilityState !== "visible" || !navigator.wakeLock) return;
  try {
    const lock = await navigator.wakeLock.request("screen");
    if (!wanted) return void lock.release();
    sentinel = lock;
    lock.addEventListener("release", () => { if (sentinel === lock) sentinel = null; });
  } catch {
    // Refused (hidden page, permissions policy): try again when shown.
  }
}
export function setWakeLock(on) {
  if (on === wanted) return;
  wanted = on;
  if (on) {
    pending = setTimeout(() => {
      pending = null;
      if (!listening && typeof document !== "undefined") {
        listening = true;
        document.addEventListener("visibilitychange", acquire);
      }
      acquire();
    }, WAKE_LOCK_AFTER_MS);
    return;
  }
  clearTimeout(pending);
  pending = null;
  if (sentinel) { sentinel.release(); sentinel = null; }
}

// --- Identities and pinned keys in localStorage, held with Web Locks (src/web/identity.rs) ---
export async function claimIdentity(storageKey, legacyKey) {
  const storage = globalThis.localStorage;
  const locks = globalThis.navigator && globalThis.navigator.locks;
  if (!storage || !locks) return null;
  // Those secrets went to signaling servers: useless as keys, so not kept.
  // (Read first: a read is served from the page's copy, a write goes to the browser.)
  try { if (storage.getItem(legacyKey) !== null) storage.removeItem(legacyKey); } catch {}
  let pool = [];
  try { pool = JSON.parse(storage.getItem(storageKey) || "[]"); } catch {}
  if (!Array.isArray(pool)) pool = [];
  const hold = (secret) => new Promise((resolve) => {
    locks.request("meshdrop-identity:" + secret, { ifAvailable: true }, (lock) => {
      if (!lock) { resolve(null); return undefined; }
      // The lock is held until `release` is called (or the tab goes away).
      return new Promise((release) => resolve({ secret, release }));
    }).catch(() => resolve(null));
  });
  const random = () => btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(24)))).replace(/\+/g, "-").replace(/\//g, "_");
  for (const entry of pool) {
    if (!entry || typeof entry.secret !== "string" || typeof entry.key !== "string") continue;
    const held = await hold(entry.secret);
    if (held) return { ...held, key: entry.key };
  }
  const entry = { secret: random(), key: random() };
  const held = await hold(entry.secret);
  if (!held) return null;
  pool.push(entry);
  storage.setItem(storageKey, JSON.stringify(pool.slice(-64)));
  return { ...held, key: entry.key };
}

// The first localStorage access in a page loads its storage area synchronously.
export function touchStorage(storageKey) {
  try { globalThis.localStorage && globalThis.localStorage.getItem(storageKey); } catch {}
}

export function loadPins(storageKey, owner) {
  try {
    const all = JSON.parse(globalThis.localStorage.getItem(storageKey) || "{}");
    const mine = all && typeof all === "object" ? all[owner] : null;
    return mine && typeof mine === "object" ? Object.entries(mine).filter(([, key]) => typeof key === "string") : [];
  } catch { return []; }
}

export function savePin(storageKey, owner, peer, key) {
  try {
    const storage = globalThis.localStorage;
    let all = JSON.parse(storage.getItem(storageKey) || "{}");
    if (!all || typeof all !== "object") all = {};
    all[owner] = { ...(all[owner] || {}), [peer]: key };
    storage.setItem(storageKey, JSON.stringify(all));
    return true;
  } catch { return false; }
}

// --- The selected candidate pair from getStats (src/web/rtc.rs) ---
export function selectedPair(report) {
  const stats = [...report.values()];
  const byId = new Map(stats.map((s) => [s.id, s]));
  const transport = stats.find((s) => s.type === "transport" && s.selectedCandidatePairId);
  const pair = transport
    ? byId.get(transport.selectedCandidatePairId)
    : stats.find((s) => s.type === "candidate-pair" && (s.selected || (s.nominated && s.state === "succeeded")));
  if (!pair) return null;
  const side = (c) => c && { candidateType: c.candidateType, protocol: c.protocol, relayProtocol: c.relayProtocol, url: c.url };
  const local = side(byId.get(pair.localCandidateId));
  const remote = side(byId.get(pair.remoteCandidateId));
  if (!local || !remote) return null;
  return { local, remote, rttMs: pair.currentRoundTripTime === undefined ? null : pair.currentRoundTripTime * 1000, bytesSent: pair.bytesSent ?? 0, bytesReceived: pair.bytesReceived ?? 0 };
}
