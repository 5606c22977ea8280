// File transfers through the JS API in real pages: bytes arrive identical (hashed
// independently here with SHA-256), decline and cancel from each side, resume after the
// receiver reloads and after the sender's connection drops, and a corrupting sender
// written here (it flips a byte on the wire) is caught.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { freePort, launchBrowser, startServer } from "./helpers.mjs";

const MiB = 1024 * 1024;
let browser;
let server;
before(async () => {
  browser = await launchBrowser();
  server = await startServer(await freePort());
});
after(async () => {
  await server?.stop();
  await browser?.close();
});

// Installed in sender pages: counts the file bytes put on bulk channels, and (when
// window.corruptFrame is set) flips a byte in that bulk frame — a hostile sender.
function senderInstruments() {
  window.bulkBytesSent = 0;
  window.bulkFrames = 0;
  window.peerConnections = [];
  const NativePc = window.RTCPeerConnection;
  window.RTCPeerConnection = function (...args) {
    const pc = new NativePc(...args);
    window.peerConnections.push(pc);
    return pc;
  };
  window.RTCPeerConnection.prototype = NativePc.prototype;
  const send = RTCDataChannel.prototype.send;
  RTCDataChannel.prototype.send = function (data) {
    if (this.label === "meshdrop-bulk" && data.byteLength > 4096) {
      window.bulkBytesSent += data.byteLength;
      window.bulkFrames += 1;
      if (window.corruptFrame === window.bulkFrames) {
        const copy = new Uint8Array(data.byteLength);
        copy.set(new Uint8Array(data.buffer ?? data, data.byteOffset ?? 0, data.byteLength));
        copy[100] ^= 0xff;
        return send.call(this, copy);
      }
    }
    return send.call(this, data);
  };
}

async function apiPage({ instrument = false, context } = {}) {
  context ??= await browser.newContext();
  if (instrument) await context.addInitScript(senderInstruments);
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error("pageerror:", e));
  await loadApi(page);
  return { page, context };
}

async function loadApi(page) {
  await page.goto(`${server.url}/healthz`);
  await page.evaluate(async () => {
    const mod = await import("/pkg/meshdrop.js");
    await mod.default();
    window.meshdrop = mod;
  });
}

/** Joins `room`; the receiver side keeps offers and transfers in window state. */
async function join(page, room, name) {
  return page.evaluate(
    async ({ url, room, name }) => {
      const peer = await window.meshdrop.Peer.join({ signalingUrl: url, room, name });
      window.peer = peer;
      window.offers = [];
      window.received = [];
      window.autoAccept = false;
      const track = (t) => {
        window.transfer = t;
        window.progress = [];
        t.on("progress", (p) => window.progress.push(p));
        window.outcome = t.done.then(
          async (file) => {
            const digest = file ? [...new Uint8Array(await crypto.subtle.digest("SHA-256", await file.arrayBuffer()))] : null;
            const result = { ok: true, name: file?.name, size: file?.size, type: file?.type, digest };
            window.received.push(result);
            return result;
          },
          (err) => ({ ok: false, name: err.name, message: err.message }),
        );
      };
      window.track = track;
      peer.on("file-offer", (offer) => {
        window.offers.push({ id: offer.id, from: offer.from, name: offer.name, size: offer.size, type: offer.type, resumeBytes: offer.resumeBytes });
        window.lastOffer = offer;
        offer.on("withdrawn", (e) => (window.withdrawn = e));
        if (window.autoAccept) track(offer.accept());
      });
      peer.on("transfer", (t) => {
        window.resumedBy = t.id;
        track(t);
      });
      return peer.id;
    },
    { url: `ws://127.0.0.1:${server.port}/ws`, room, name },
  );
}

async function waitPeers(page, n) {
  await page.waitForFunction((k) => window.peer.peers().length === k, n, { timeout: 20000 });
}

/** Makes a File of `size` pseudo-random bytes in the page; returns its SHA-256. */
async function makeFile(page, size, name = "data.bin") {
  return page.evaluate(
    async ({ size, name }) => {
      const parts = [];
      const chunk = new Uint8Array(64 * 1024);
      for (let off = 0; off < size; off += chunk.length) {
        crypto.getRandomValues(chunk);
        parts.push(chunk.slice(0, Math.min(chunk.length, size - off)));
      }
      window.file = new File(parts, name, { type: "application/x-test" });
      return [...new Uint8Array(await crypto.subtle.digest("SHA-256", await window.file.arrayBuffer()))];
    },
    { size, name },
  );
}

/** The transfer's outcome in the page, once it has one. */
async function outcome(page) {
  await page.waitForFunction(() => window.outcome, null, { timeout: 60000 });
  return page.evaluate(() => window.outcome);
}

async function pair(room, { instrument = true } = {}) {
  const a = await apiPage({ instrument });
  const b = await apiPage();
  const idA = await join(a.page, room, "alice");
  const idB = await join(b.page, room, "bob");
  await waitPeers(a.page, 1);
  await waitPeers(b.page, 1);
  return { a, b, idA, idB };
}

async function send(a, idB) {
  return a.page.evaluate((to) => {
    window.track(window.peer.sendFile(to, window.file));
    return window.transfer.id;
  }, idB);
}

test("a 50 MiB file arrives byte-identical, with progress on both sides", async () => {
  const { a, b, idB } = await pair("big");
  const digest = await makeFile(a.page, 50 * MiB, "video.mp4");
  await b.page.evaluate(() => (window.autoAccept = true));
  const id = await send(a, idB);
  const sent = await outcome(a.page);
  const got = await outcome(b.page);
  assert.deepEqual(sent, { ok: true, name: undefined, size: undefined, type: undefined, digest: null });
  assert.equal(got.ok, true, JSON.stringify(got));
  assert.deepEqual(got.digest, digest, "receiver's bytes differ from the sender's");
  assert.deepEqual([got.name, got.size, got.type], ["video.mp4", 50 * MiB, "application/x-test"]);
  const offers = await b.page.evaluate(() => window.offers);
  assert.deepEqual(offers.map((o) => [o.id, o.name, o.size]), [[id, "video.mp4", 50 * MiB]]);
  for (const side of [a, b]) {
    const progress = await side.page.evaluate(() => window.progress);
    assert.ok(progress.length >= 3, `only ${progress.length} progress events`);
    assert.deepEqual(progress.at(-1).bytes, 50 * MiB);
    assert.ok(progress.some((p) => p.bytesPerSecond > 0));
  }
  assert.equal(await a.page.evaluate(() => window.bulkBytesSent), 50 * MiB, "every byte sent once");
  await a.context.close();
  await b.context.close();
});

test("declining rejects the sender's done with DeclinedError", async () => {
  const { a, b, idB } = await pair("decline");
  await makeFile(a.page, 3 * MiB);
  await send(a, idB);
  await b.page.waitForFunction(() => window.offers.length === 1);
  await b.page.evaluate(() => window.lastOffer.reject("too big"));
  const sent = await outcome(a.page);
  assert.equal(sent.name, "DeclinedError");
  assert.match(sent.message, /too big/);
  await a.context.close();
  await b.context.close();
});

for (const canceller of ["sender", "receiver"]) {
  test(`cancel from the ${canceller} mid-transfer rejects both sides with CancelledError`, async () => {
    const { a, b, idB } = await pair(`cancel-${canceller}`);
    await makeFile(a.page, 64 * MiB);
    await b.page.evaluate(() => (window.autoAccept = true));
    await send(a, idB);
    await b.page.waitForFunction(() => window.progress?.some((p) => p.bytes > 4 * 1024 * 1024), null, { timeout: 20000 });
    const side = canceller === "sender" ? a : b;
    await side.page.evaluate(() => window.transfer.cancel("enough"));
    const [sent, got] = await Promise.all([outcome(a.page), outcome(b.page)]);
    assert.equal(sent.name, "CancelledError", JSON.stringify(sent));
    assert.equal(got.name, "CancelledError", JSON.stringify(got));
    await a.context.close();
    await b.context.close();
  });
}

test("the receiver reloads at ~40 %: the download resumes by itself, resending less than the file", async () => {
  const size = 80 * MiB;
  const { a, b, idB } = await pair("reload");
  const digest = await makeFile(a.page, size, "movie.mkv");
  await b.page.evaluate(() => (window.autoAccept = true));
  await send(a, idB);
  await b.page.waitForFunction((n) => window.progress?.some((p) => p.bytes > n), size * 0.4, { timeout: 30000 });
  const before = await a.page.evaluate(() => window.bulkBytesSent);
  await b.page.reload();
  await loadApi(b.page);
  const idB2 = await join(b.page, "reload", "bob");
  assert.equal(idB2, idB, "the reloaded tab got its identity back");
  const got = await outcome(b.page);
  assert.equal(got.ok, true, JSON.stringify(got));
  assert.deepEqual(got.digest, digest);
  assert.ok(await b.page.evaluate(() => Boolean(window.resumedBy)), "resumed without a new offer");
  assert.deepEqual(await b.page.evaluate(() => window.offers), []);
  const sent = await outcome(a.page);
  assert.equal(sent.ok, true);
  const resent = (await a.page.evaluate(() => window.bulkBytesSent)) - before;
  assert.ok(resent < size * 0.75, `resent ${resent} of ${size} bytes`);
  await a.context.close();
  await b.context.close();
});

test("the sender's connection drops mid-transfer: both pause, reconnect and finish", async () => {
  const size = 64 * MiB;
  const { a, b, idB } = await pair("drop");
  const digest = await makeFile(a.page, size);
  await b.page.evaluate(() => (window.autoAccept = true));
  await send(a, idB);
  await b.page.waitForFunction(() => window.progress?.some((p) => p.bytes > 16 * 1024 * 1024), null, { timeout: 30000 });
  await b.page.evaluate(() => {
    window.paused = false;
    window.transfer.on("paused", () => (window.paused = true));
  });
  const before = await a.page.evaluate(() => {
    window.peerConnections.forEach((pc) => pc.close());
    return window.bulkBytesSent;
  });
  await b.page.waitForFunction(() => window.paused, null, { timeout: 20000 });
  const got = await outcome(b.page);
  assert.equal(got.ok, true, JSON.stringify(got));
  assert.deepEqual(got.digest, digest);
  const resent = (await a.page.evaluate(() => window.bulkBytesSent)) - before;
  assert.ok(resent < size * 0.85, `resent ${resent} of ${size}`);
  await a.context.close();
  await b.context.close();
});

test("a sender that corrupts a block on the wire is caught: HashMismatchError, no file", async () => {
  const { a, b, idB } = await pair("corrupt");
  await makeFile(a.page, 8 * MiB);
  await a.page.evaluate(() => (window.corruptFrame = 9));
  await b.page.evaluate(() => (window.autoAccept = true));
  await send(a, idB);
  const [sent, got] = await Promise.all([outcome(a.page), outcome(b.page)]);
  assert.equal(got.name, "HashMismatchError", JSON.stringify(got));
  assert.equal(sent.name, "HashMismatchError", JSON.stringify(sent));
  assert.deepEqual(await b.page.evaluate(() => window.received), []);
  await a.context.close();
  await b.context.close();
});

test("stored downloads older than storageMaxAgeMs are removed when a Peer joins", async () => {
  const { a, b, idB } = await pair("cleanup");
  await makeFile(a.page, 3 * MiB);
  await b.page.evaluate(() => (window.autoAccept = true));
  await send(a, idB);
  assert.equal((await outcome(b.page)).ok, true);
  const stored = () =>
    b.page.evaluate(async () => {
      const root = await navigator.storage.getDirectory();
      const dir = await root.getDirectoryHandle("meshdrop", { create: true });
      const names = [];
      for await (const name of dir.keys()) names.push(name);
      return names;
    });
  assert.equal((await stored()).length, 1, "the download is kept in OPFS");
  await b.page.evaluate(async (url) => {
    await window.peer.leave();
    window.peer = await window.meshdrop.Peer.join({ signalingUrl: url, room: "cleanup-2", storageMaxAgeMs: 1 });
  }, `ws://127.0.0.1:${server.port}/ws`);
  // The cleanup reports nothing when done: look at OPFS until it is empty (or 10 s).
  const emptied = await b.page.evaluate(async () => {
    const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle("meshdrop");
    for (let i = 0; i < 100; i++) {
      let empty = true;
      for await (const _ of dir.keys()) empty = false;
      if (empty) return true;
      await new Promise((r) => setTimeout(r, 100));
    }
    return false;
  });
  assert.ok(emptied, "the old download is still stored");
  await a.context.close();
  await b.context.close();
});

test("storage wiped while the page is open (site data cleared, another tab's cleanup): downloads still go to OPFS", async () => {
  const a = await apiPage({ instrument: true });
  const b = await apiPage();
  // Removes meshdrop's OPFS directory under the running storage worker, as clearing the
  // site's data or another tab's cleanup does; says what the page then holds there.
  const wipe = () =>
    b.page.evaluate(async () => (await navigator.storage.getDirectory()).removeEntry("meshdrop", { recursive: true }).catch(() => {}));
  const stored = () =>
    b.page.evaluate(async () => {
      const root = await navigator.storage.getDirectory();
      const dir = await root.getDirectoryHandle("meshdrop").catch(() => null);
      const names = [];
      if (dir) for await (const name of dir.keys()) names.push(name);
      return names;
    });
  // The worker started with `init()`; its directory goes before the join's cleanup runs.
  await wipe();
  const idB = await join(b.page, "wiped", "bob");
  await b.page.evaluate(() => {
    window.warnings = [];
    window.peer.on("warning", (w) => window.warnings.push(w.message));
    window.autoAccept = true;
  });
  await join(a.page, "wiped", "alice");
  await waitPeers(a.page, 1);
  await waitPeers(b.page, 1);
  for (const round of [1, 2]) {
    const digest = await makeFile(a.page, 3 * MiB, `file${round}.bin`);
    await b.page.evaluate(() => (window.outcome = undefined));
    await send(a, idB);
    const got = await outcome(b.page);
    assert.equal(got.ok, true, `download ${round}: ${JSON.stringify(got)}`);
    assert.deepEqual(got.digest, digest, `download ${round}: bytes differ`);
    assert.equal((await stored()).length, 1, `download ${round} is in OPFS`);
    await wipe();
  }
  assert.deepEqual(await b.page.evaluate(() => window.warnings), [], "storage stayed persistent");
  await a.context.close();
  await b.context.close();
});

test("an offer the sender cancels before an answer is withdrawn on the receiver", async () => {
  const { a, b, idB } = await pair("withdraw");
  await makeFile(a.page, 1 * MiB);
  await send(a, idB);
  await b.page.waitForFunction(() => window.offers.length === 1);
  await a.page.evaluate(() => window.transfer.cancel("changed my mind"));
  await b.page.waitForFunction(() => window.withdrawn, null, { timeout: 10000 });
  const withdrawn = await b.page.evaluate(() => window.withdrawn);
  assert.equal(withdrawn.name, "CancelledError");
  assert.match(withdrawn.reason, /changed my mind/);
  assert.equal((await outcome(a.page)).name, "CancelledError");
  await a.context.close();
  await b.context.close();
});

test("the same file sent twice to the same peer is offered twice and both copies stay intact", async () => {
  const { a, b, idB } = await pair("twice");
  const digest = await makeFile(a.page, 3 * MiB, "report.pdf");
  await b.page.evaluate(() => {
    window.autoAccept = true;
    window.files = [];
    window.peer.on("file-offer", () => {});
  });
  for (let round = 1; round <= 3; round++) {
    await send(a, idB);
    const sent = await outcome(a.page);
    assert.equal(sent.ok, true, `round ${round}: ${JSON.stringify(sent)}`);
    await b.page.waitForFunction((n) => window.received.length === n, round, { timeout: 20000 });
    await b.page.evaluate(() => window.transfer.done.then((f) => window.files.push(f)));
  }
  const offers = await b.page.evaluate(() => window.offers.length);
  assert.equal(offers, 3, "every send is a new offer");
  // Every copy, the first one too, still reads as the sender's bytes.
  const digests = await b.page.evaluate(async () =>
    Promise.all(window.files.map(async (f) => [...new Uint8Array(await crypto.subtle.digest("SHA-256", await f.arrayBuffer()))])),
  );
  assert.equal(digests.length, 3);
  for (const d of digests) assert.deepEqual(d, digest);
  await a.context.close();
  await b.context.close();
});

test("files sent at once, of sizes that are not whole blocks, each arrive byte-identical", async () => {
  const { a, b, idB } = await pair("at-once");
  const sizes = { "one.bin": MiB + 1, "two.bin": 2.5 * MiB + 17, "three.bin": 4 * MiB - 3 };
  const digests = {};
  for (const [name, size] of Object.entries(sizes)) {
    digests[name] = await makeFile(a.page, size, name);
    await a.page.evaluate((name) => ((window.files ??= {})[name] = window.file), name);
  }
  await b.page.evaluate(() => (window.autoAccept = true));
  // All three read their blocks at the same time (and reuse each other's buffers).
  const sent = await a.page.evaluate(
    (to) => Promise.all(Object.values(window.files).map((file) => window.peer.sendFile(to, file).done.then(() => "ok", (err) => err.name))),
    idB,
  );
  assert.deepEqual(sent, ["ok", "ok", "ok"]);
  await b.page.waitForFunction(() => window.received.length === 3, null, { timeout: 30000 });
  const received = await b.page.evaluate(() => window.received);
  assert.deepEqual(Object.fromEntries(received.map((r) => [r.name, r.size])), sizes);
  for (const r of received) assert.deepEqual(r.digest, digests[r.name], `${r.name}: receiver's bytes differ from the sender's`);
  await a.context.close();
  await b.context.close();
});

test("files of at most one block arrive byte-identical from memory, without storage; a larger one is stored", async () => {
  const { a, b, idB } = await pair("one-block");
  await b.page.evaluate(() => (window.autoAccept = true));
  const sizes = { "empty.txt": 0, "note.txt": 1000, "photo.jpg": MiB, "longer.bin": MiB + 1 };
  for (const [name, size] of Object.entries(sizes)) {
    const digest = await makeFile(a.page, size, name);
    await b.page.evaluate(() => (window.outcome = undefined));
    await send(a, idB);
    const got = await outcome(b.page);
    assert.equal(got.ok, true, `${name}: ${JSON.stringify(got)}`);
    assert.deepEqual([got.name, got.size, got.type, got.digest], [name, size, "application/x-test", digest], name);
  }
  // Nothing of a one-block file could resume: only the larger one has a directory.
  const stored = await b.page.evaluate(async () => {
    const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle("meshdrop");
    const names = [];
    for await (const name of dir.keys()) names.push(name);
    return names.length;
  });
  assert.equal(stored, 1, "one download stored in OPFS");
  await a.context.close();
  await b.context.close();
});

// Chromium collects a Blob's stream that nothing references, even mid-read, and then
// its read never settles; the sender reads blocks from such streams. Collections are
// forced here every few ms, as a busy page would have them: every read must still end.
test("a sender collecting garbage all the time still reads every block: share and send finish", async () => {
  const gcBrowser = await launchBrowser(["--js-flags=--expose-gc"]);
  const b = await apiPage();
  try {
    const page = await (await gcBrowser.newContext()).newPage();
    page.on("pageerror", (e) => console.error("pageerror:", e));
    await loadApi(page);
    await join(page, "gc", "alice");
    const idB = await join(b.page, "gc", "bob");
    await waitPeers(page, 1);
    await waitPeers(b.page, 1);
    const digest = await makeFile(page, 24 * MiB + 5, "collected.bin");
    await b.page.evaluate(() => (window.autoAccept = true));
    const result = await page.evaluate(async (to) => {
      // A read that never settles shows as a time-out here, not as a hung test.
      const within = (p) => Promise.race([p, new Promise((resolve) => setTimeout(() => resolve("timed out"), 30000))]);
      const collecting = setInterval(() => gc(), 2);
      try {
        const shared = await within(window.peer.share(window.file).then((s) => s.size, (err) => `${err.name}: ${err.message}`));
        const sent = await within(window.peer.sendFile(to, window.file).done.then(() => "ok", (err) => `${err.name}: ${err.message}`));
        return { shared, sent };
      } finally {
        clearInterval(collecting);
      }
    }, idB);
    assert.deepEqual(result, { shared: 24 * MiB + 5, sent: "ok" });
    const got = await outcome(b.page);
    assert.equal(got.ok, true, JSON.stringify(got));
    assert.deepEqual(got.digest, digest, "byte-identical");
  } finally {
    await b.context.close();
    await gcBrowser.close();
  }
});
