// meshdrop between browser engines: Chromium ↔ Firefox both ways (and Firefox ↔
// Firefox): chat, files hash-checked here, a receiver reload that resumes, a download
// from one holder in each engine at once, and a request/reply. Each case is a table of
// engine pairs; adding a pair is one line.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { freePort, startServer } from "./helpers.mjs";
import { closeAll, openPage } from "./engines.mjs";

const MiB = 1024 * 1024;
let server;
let ws;
before(async () => {
  const port = await freePort();
  server = await startServer(port);
  ws = `ws://127.0.0.1:${port}/ws`;
});
after(async () => {
  await closeAll();
  await server?.stop();
});

/** Runs in the page after every load: the package, and helpers the cases call. */
function install() {
  const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
  const digest = async (blob) => hex(await crypto.subtle.digest("SHA-256", await blob.arrayBuffer()));
  window.events = [];
  window.received = [];
  window.failures = [];
  window.bulkBytesSent = 0;
  const send = RTCDataChannel.prototype.send;
  RTCDataChannel.prototype.send = function (data) {
    if (this.label === "meshdrop-bulk" && data.byteLength > 4096) window.bulkBytesSent += data.byteLength;
    return send.call(this, data);
  };
  window.lib = {
    async load() {
      window.meshdrop = await import("/pkg/meshdrop.js");
      await window.meshdrop.default();
    },
    async join({ ws, room, name }) {
      const peer = await window.meshdrop.Peer.join({ signalingUrl: ws, room, name });
      window.peer = peer;
      for (const type of ["peer-joined", "peer-left", "message", "warning"]) {
        peer.on(type, (e) => window.events.push({ type, ...e, data: e.data instanceof Uint8Array ? [...e.data] : e.data }));
      }
      const follow = (t) => {
        window.current = t;
        window.progress = 0;
        t.on("progress", ({ bytes }) => (window.progress = bytes));
        t.done.then(
          async (file) => window.received.push({ name: file.name, digest: await digest(file) }),
          (e) => window.failures.push(`${e.name}: ${e.message}`),
        );
      };
      peer.on("file-offer", (offer) => follow(offer.accept()));
      peer.on("transfer", (t) => {
        window.resumed = true;
        follow(t);
      });
      peer.handle("echo", (payload, { from }) => ({ payload, from, engine: navigator.userAgent.includes("Firefox") ? "firefox" : "chromium" }));
      return { id: peer.id, persistent: peer.persistentStorage };
    },
    /** `size` bytes from `seed` (the same bytes in every engine), as window.file. */
    async makeFile({ size, name, seed }) {
      const bytes = new Uint8Array(size);
      let x = seed >>> 0 || 1;
      const words = new Uint32Array(bytes.buffer, 0, size >> 2);
      for (let i = 0; i < words.length; i++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        words[i] = x >>> 0;
      }
      window.file = new File([bytes], name);
      return digest(window.file);
    },
    sendTo(id) {
      window.sent = null;
      window.peer.sendFile(id, window.file).done.then(
        () => (window.sent = "ok"),
        (e) => (window.sent = `${e.name}: ${e.message}`),
      );
    },
  };
}

async function person(engine, name) {
  const p = await openPage(engine, name);
  await p.goto(`${server.url}/healthz`);
  await p.evaluate(install);
  await p.evaluate(() => window.lib.load());
  return p;
}

/** People of the given engines in one fresh room, all connected to each other. */
async function room(engines, label) {
  const name = `${label}-${Math.random().toString(36).slice(2, 8)}`;
  const people = [];
  for (const [i, engine] of engines.entries()) {
    const p = await person(engine, `${engine}${i}`);
    p.room = name;
    p.info = await p.evaluate((args) => window.lib.join(args), { ws, room: name, name: p.name });
    people.push(p);
  }
  for (const p of people) await p.waitFor((n) => window.peer.peers().length === n, engines.length - 1);
  return people;
}

async function closeRoom(people) {
  for (const p of people) await p.close().catch(() => {});
}

const both = [
  ["chromium", "firefox"],
  ["firefox", "chromium"],
];

for (const [x, y] of both) {
  test(`chat ${x} → ${y} and back, text and bytes`, async () => {
    const [a, b] = await room([x, y], "chat");
    try {
      await a.evaluate((id) => window.peer.send(id, `hello from ${navigator.userAgent.includes("Firefox") ? "firefox" : "chromium"}`), b.info.id);
      const text = await b.waitFor(() => window.events.find((e) => e.type === "message")?.data);
      assert.equal(text, `hello from ${x}`);
      await b.evaluate((id) => window.peer.send(id, new Uint8Array([1, 2, 3, 250])), a.info.id);
      assert.deepEqual(await a.waitFor(() => window.events.find((e) => e.type === "message")?.data), [1, 2, 3, 250]);
    } finally {
      await closeRoom([a, b]);
    }
  });
}

for (const [x, y] of [...both, ["firefox", "firefox"]]) {
  test(`a 20 MiB file ${x} → ${y}, verified, stored to OPFS; a 3 KiB one that comes with its offer`, async () => {
    const [a, b] = await room([x, y], "file");
    try {
      assert.equal(b.info.persistent, true, `${y} stores to OPFS`);
      const digest = await a.evaluate((args) => window.lib.makeFile(args), { size: 20 * MiB, name: "twenty.bin", seed: 7 });
      await a.evaluate((id) => window.lib.sendTo(id), b.info.id);
      const got = await b.waitFor(() => window.received[0] ?? window.failures[0], null, 60000);
      assert.deepEqual(got, { name: "twenty.bin", digest });
      assert.equal(await a.waitFor(() => window.sent), "ok");
      // Small enough to go whole with its offer (transfer control type 8).
      const small = await a.evaluate((args) => window.lib.makeFile(args), { size: 3000, name: "note.txt", seed: 3 });
      await a.evaluate((id) => window.lib.sendTo(id), b.info.id);
      const note = await b.waitFor(() => window.received[1] ?? window.failures[0], null, 20000);
      assert.deepEqual(note, { name: "note.txt", digest: small });
      assert.equal(await a.waitFor(() => window.sent), "ok");
    } finally {
      await closeRoom([a, b]);
    }
  });
}

for (const [x, y] of both) {
  test(`${y} reloads while receiving from ${x}: the download resumes by itself`, async () => {
    const size = 48 * MiB;
    const [a, b] = await room([x, y], "reload");
    try {
      const digest = await a.evaluate((args) => window.lib.makeFile(args), { size, name: "resume.bin", seed: 11 });
      await a.evaluate((id) => window.lib.sendTo(id), b.info.id);
      await b.waitFor((n) => window.progress > n, size * 0.4, 60000);
      const before = await a.evaluate(() => window.bulkBytesSent);
      await b.reload();
      await b.evaluate(install);
      await b.evaluate(() => window.lib.load());
      const again = await b.evaluate((args) => window.lib.join(args), { ws, room: b.room, name: b.name });
      assert.equal(again.id, b.info.id, "the reloaded tab got its identity back");
      const got = await b.waitFor(() => window.received[0] ?? window.failures[0], null, 90000);
      assert.deepEqual(got, { name: "resume.bin", digest });
      assert.equal(await b.evaluate(() => window.resumed === true), true, "resumed without a new offer");
      assert.equal(await a.waitFor(() => window.sent), "ok");
      const resent = (await a.evaluate(() => window.bulkBytesSent)) - before;
      assert.ok(resent < size * 0.75, `resent ${resent} of ${size} bytes`);
    } finally {
      await closeRoom([a, b]);
    }
  });
}

for (const downloader of ["chromium", "firefox"]) {
  test(`${downloader} downloads from a Chromium and a Firefox holder at once`, async () => {
    const [c, f, d] = await room(["chromium", "firefox", downloader], "multi");
    try {
      let digest;
      for (const holder of [c, f]) {
        digest = await holder.evaluate((args) => window.lib.makeFile(args), { size: 24 * MiB, name: "shared.bin", seed: 23 });
        await holder.evaluate(() => window.peer.share(window.file));
      }
      const hits = await d.evaluate(() => window.peer.find("shared.bin", { timeoutMs: 5000 }));
      assert.equal(hits.length, 2, JSON.stringify(hits));
      await d.evaluate(async () => {
        const hits = await window.peer.find("shared.bin", { timeoutMs: 5000 });
        window.download = window.peer.download(hits);
        window.download.done.then(async (file) => {
          const buffer = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
          window.downloaded = [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
        }, (e) => (window.downloaded = `${e.name}: ${e.message}`));
      });
      assert.equal(await d.waitFor(() => window.downloaded, null, 90000), digest);
      const sources = await d.evaluate(() => window.download.sources());
      assert.equal(sources.length, 2);
      for (const s of sources) assert.ok(s.bytes > 0, `every holder served: ${JSON.stringify(sources)}`);
    } finally {
      await closeRoom([c, f, d]);
    }
  });
}

for (const [x, y] of both) {
  test(`a request from ${x} is answered by a handler in ${y}`, async () => {
    const [a, b] = await room([x, y], "request");
    try {
      const reply = await a.evaluate((id) => window.peer.request(id, "echo", { n: 42, list: ["é", null] }), b.info.id);
      assert.deepEqual(reply, { payload: { n: 42, list: ["é", null] }, from: a.info.id, engine: y });
      const error = await a.evaluate((id) => window.peer.request(id, "nope", 1).catch((e) => e.name), b.info.id);
      assert.equal(error, "NoSuchMethodError");
    } finally {
      await closeRoom([a, b]);
    }
  });
}
