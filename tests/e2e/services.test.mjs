// Every peer is a server, in real pages: find over the room, a download from three
// holders at once while one of them leaves (bytes hashed independently here), requests
// with every error, and only shared files served.
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

/** A page in its own context (another person), joined to `room`. */
async function person(room, name, initScript) {
  const context = await browser.newContext();
  if (initScript) await context.addInitScript(initScript);
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${name}] pageerror:`, e));
  await page.goto(`${server.url}/healthz`);
  const id = await page.evaluate(
    async ({ url, room, name }) => {
      const mod = await import("/pkg/meshdrop.js");
      await mod.default();
      window.meshdrop = mod;
      window.peer = await mod.Peer.join({ signalingUrl: url, room, name, identity: "ephemeral" });
      return window.peer.id;
    },
    { url: `ws://127.0.0.1:${server.port}/ws`, room, name },
  );
  return { context, page, name, id };
}

async function room(name, count, initScripts = {}) {
  const people = [];
  for (let i = 0; i < count; i++) people.push(await person(name, `p${i}`, initScripts[i]));
  for (const p of people) await p.page.waitForFunction((k) => window.peer.peers().length === k, count - 1, { timeout: 20000 });
  return people;
}

async function closeAll(people) {
  for (const p of people) await p.context.close().catch(() => {});
}

/** The same pseudo-random bytes in every page that asks (xorshift32 from `seed`), as a
 *  File in window.file; returns their SHA-256. */
async function makeFile(page, size, name, seed) {
  return page.evaluate(
    async ({ size, name, seed }) => {
      const bytes = new Uint8Array(size);
      const words = new Uint32Array(bytes.buffer, 0, Math.floor(size / 4));
      let x = seed >>> 0 || 1;
      for (let i = 0; i < words.length; i++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        words[i] = x >>> 0;
      }
      window.file = new File([bytes], name, { type: "image/png" });
      return [...new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))];
    },
    { size, name, seed },
  );
}

test("three holders share a 40 MiB file; the fourth finds it and downloads from all three while one leaves", async () => {
  const people = await room("multi", 4);
  const [downloader, ...holders] = people;
  let digest;
  const shared = [];
  for (const h of holders) {
    digest = await makeFile(h.page, 40 * MiB, "image.png", 2026);
    shared.push(await h.page.evaluate(async () => window.peer.share(window.file)));
  }
  assert.equal(new Set(shared.map((s) => s.hash)).size, 1, "the same bytes, the same content hash");
  assert.deepEqual(await holders[0].page.evaluate(() => window.peer.shared().map((s) => [s.name, s.size])), [["image.png", 40 * MiB]]);

  const hits = await downloader.page.evaluate(() => window.peer.find("image.png", { timeoutMs: 5000 }));
  assert.deepEqual(hits.map((h) => h.peerId).sort(), holders.map((h) => h.id).sort());
  assert.ok(hits.every((h) => h.name === "image.png" && h.size === 40 * MiB && h.hash === shared[0].hash && h.type === "image/png"));

  await downloader.page.evaluate((hits) => {
    const t = window.peer.download(hits);
    window.download = t;
    window.paused = 0;
    t.on("paused", () => window.paused++);
    window.outcome = t.done.then(
      async (file) => ({ ok: true, name: file.name, size: file.size, type: file.type, digest: [...new Uint8Array(await crypto.subtle.digest("SHA-256", await file.arrayBuffer()))] }),
      (err) => ({ ok: false, name: err.name, message: err.message }),
    );
  }, hits);
  // Once every holder has served something, and well before the end, one leaves.
  await downloader.page.waitForFunction(() => {
    const s = window.download.sources();
    return s.length === 3 && s.every((x) => x.bytes > 0);
  }, null, { timeout: 30000 });
  const before = await downloader.page.evaluate(() => window.download.sources());
  const total = before.reduce((n, s) => n + s.bytes, 0);
  assert.ok(total < 30 * MiB, `too late to leave mid-download: ${total} bytes done`);
  const leaver = holders[1];
  await leaver.context.close();

  await downloader.page.waitForFunction(() => window.outcome, null, { timeout: 60000 });
  const got = await downloader.page.evaluate(() => window.outcome);
  assert.equal(got.ok, true, JSON.stringify(got));
  assert.deepEqual(got.digest, digest, "byte-identical");
  assert.deepEqual([got.name, got.size, got.type], ["image.png", 40 * MiB, "image/png"]);
  const sources = await downloader.page.evaluate(() => window.download.sources());
  assert.equal(sources.length, 3);
  for (const s of sources) assert.ok(s.bytes > 0, `holder ${s.peerId} served nothing: ${JSON.stringify(sources)}`);
  assert.equal(sources.reduce((n, s) => n + s.bytes, 0), 40 * MiB, "every block counted once");
  const left = sources.find((s) => s.peerId === leaver.id);
  assert.ok(left.bytes < 40 * MiB / 2, "the holder that left served only what it sent before leaving");
  assert.equal(await downloader.page.evaluate(() => window.paused), 0, "the others carried on without a pause");
  await closeAll(people);
});

test("find: exact by default, substring on request, [] when nobody has it", async () => {
  const people = await room("find", 3);
  const [asker, a, b] = people;
  await makeFile(a.page, 1000, "Holiday Photo.JPG", 1);
  await a.page.evaluate(() => window.peer.share(window.file));
  await makeFile(b.page, 2000, "notes.txt", 2);
  await b.page.evaluate(() => window.peer.share(window.file, { name: "photo-notes.txt" }));

  const result = await asker.page.evaluate(async () => {
    const started = performance.now();
    const missing = await window.peer.find("missing.png", { timeoutMs: 5000 });
    const elapsed = performance.now() - started;
    return {
      missing,
      elapsed,
      exact: (await window.peer.find("Holiday Photo.JPG")).map((h) => h.name),
      wrongCase: await window.peer.find("holiday photo.jpg"),
      substring: (await window.peer.find("PHOTO", { match: "substring" })).map((h) => h.name).sort(),
    };
  });
  assert.deepEqual(result.missing, []);
  assert.ok(result.elapsed < 2000, `every peer answered, so no wait for the timeout (${result.elapsed} ms)`);
  assert.deepEqual(result.exact, ["Holiday Photo.JPG"]);
  assert.deepEqual(result.wrongCase, []);
  assert.deepEqual(result.substring, ["Holiday Photo.JPG", "photo-notes.txt"]);

  // After unshare it is gone.
  await a.page.evaluate(() => window.peer.unshare(window.peer.shared()[0].id));
  assert.deepEqual(await asker.page.evaluate(() => window.peer.find("Holiday Photo.JPG")), []);
  const bad = await asker.page.evaluate(() => window.peer.find("x", { match: "regex" }).then(() => "resolved", (e) => e.name));
  assert.equal(bad, "TypeError");
  await closeAll(people);
});

// A peer that never answers queries, written here: it drops its outgoing answers
// (service messages of type 2) on the data channel.
function silentAnswers() {
  const send = RTCDataChannel.prototype.send;
  RTCDataChannel.prototype.send = function (data) {
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : null;
    if (bytes && bytes[0] === 0x18 && bytes[1] === 2) return;
    return send.call(this, data);
  };
}

test("find of a missing name returns [] after the timeout when a peer never answers", async () => {
  const people = await room("find-timeout", 3, { 2: silentAnswers });
  const [asker, holder] = people;
  await makeFile(holder.page, 10, "a.txt", 3);
  await holder.page.evaluate(() => window.peer.share(window.file));
  const result = await asker.page.evaluate(async () => {
    const started = performance.now();
    const missing = await window.peer.find("missing.png", { timeoutMs: 800 });
    const missingMs = performance.now() - started;
    const found = await window.peer.find("a.txt", { timeoutMs: 800 });
    return { missing, missingMs, found: found.map((h) => h.name) };
  });
  assert.deepEqual(result.missing, []);
  assert.ok(result.missingMs >= 790 && result.missingMs < 3000, `resolved after ${result.missingMs} ms`);
  assert.deepEqual(result.found, ["a.txt"], "the answers that came are kept");
  await closeAll(people);
});

test("requests: replies, and every error by name", async () => {
  const people = await room("requests", 3);
  const [caller, server1, server2] = people;
  await server1.page.evaluate(() => {
    window.calls = [];
    window.peer.handle("echo", (payload, ctx) => {
      window.calls.push({ from: ctx.from, method: ctx.method });
      return payload;
    });
    window.peer.handle("slow-echo", async (payload) => {
      await new Promise((r) => setTimeout(r, 50));
      return { got: payload };
    });
    window.peer.handle("fail", () => {
      throw new Error("out of paper");
    });
    window.peer.handle("reject", () => Promise.reject(new Error("jammed")));
    window.peer.handle("never", () => new Promise(() => {}));
  });
  await server2.page.evaluate(() => window.peer.handle("never", () => new Promise(() => {})));

  const results = await caller.page.evaluate(
    async ({ s1, s2 }) => {
      const p = window.peer;
      const outcome = (promise) => promise.then((value) => ({ value }), (e) => ({ error: e.name, message: e.message }));
      const bytes = new Uint8Array([1, 2, 3, 250]);
      const out = {
        json: await outcome(p.request(s1, "echo", { text: "hello", n: [1, 2.5, null], ok: true })),
        string: await outcome(p.request(s1, "echo", "plain")),
        nothing: await outcome(p.request(s1, "echo", undefined)),
        async: await outcome(p.request(s1, "slow-echo", 7)),
        noMethod: await outcome(p.request(s1, "fax", 1)),
        threw: await outcome(p.request(s1, "fail", 1)),
        rejected: await outcome(p.request(s1, "reject", 1)),
        timeout: await outcome(p.request(s1, "never", 1, { timeoutMs: 300 })),
        notConnected: await outcome(p.request("nobody-here", "echo", 1)),
        notJson: await outcome(p.request(s1, "echo", 10n)),
        tooLarge: await outcome(p.request(s1, "echo", new Uint8Array(16 * 1024 * 1024 + 1))),
        badMethod: await outcome(p.request(s1, "", 1)),
      };
      const echoed = await p.request(s1, "echo", bytes);
      out.bytes = { isBytes: echoed instanceof Uint8Array, values: [...echoed] };
      const big = new Uint8Array(3 * 1024 * 1024).map((_, i) => i % 251);
      const bigEcho = await p.request(s1, "echo", big);
      out.big = bigEcho.length === big.length && bigEcho.every((v, i) => v === big[i]);
      window.leftRequest = outcome(p.request(s2, "never", 1, { timeoutMs: 30000 }));
      return out;
    },
    { s1: server1.id, s2: server2.id },
  );
  assert.deepEqual(results.json, { value: { text: "hello", n: [1, 2.5, null], ok: true } });
  assert.deepEqual(results.string, { value: "plain" });
  assert.deepEqual(results.nothing, { value: null });
  assert.deepEqual(results.async, { value: { got: 7 } });
  assert.deepEqual(results.bytes, { isBytes: true, values: [1, 2, 3, 250] });
  assert.equal(results.big, true, "3 MiB of bytes round-trip");
  assert.equal(results.noMethod.error, "NoSuchMethodError");
  assert.match(results.noMethod.message, /fax/);
  assert.deepEqual(results.threw, { error: "HandlerError", message: "out of paper" });
  assert.deepEqual(results.rejected, { error: "HandlerError", message: "jammed" });
  assert.equal(results.timeout.error, "TimeoutError");
  assert.equal(results.notConnected.error, "NotConnectedError");
  assert.equal(results.notJson.error, "TypeError");
  assert.equal(results.tooLarge.error, "MessageTooLargeError");
  assert.equal(results.badMethod.error, "TypeError");
  const calls = await server1.page.evaluate(() => window.calls);
  assert.ok(calls.length >= 3 && calls.every((c) => c.from === caller.id && c.method === "echo"));

  // The peer leaves while our request waits on it.
  await server2.context.close();
  const left = await caller.page.evaluate(() => window.leftRequest);
  assert.equal(left.error, "PeerLeftError", JSON.stringify(left));

  // Unhandled methods are gone.
  await server1.page.evaluate(() => window.peer.unhandle("echo"));
  const after = await caller.page.evaluate((s1) => window.peer.request(s1, "echo", 1).catch((e) => e.name), server1.id);
  assert.equal(after, "NoSuchMethodError");
  await closeAll(people);
});

test("only shared files are served: a made-up hit fails with NotSharedError", async () => {
  const people = await room("consent", 2);
  const [asker, holder] = people;
  await makeFile(holder.page, 3 * MiB, "secret.bin", 5);
  const shared = await holder.page.evaluate(() => window.peer.share(window.file));
  const forged = { peerId: holder.id, id: "00000000000000ff", name: "secret.bin", size: shared.size, hash: shared.hash };
  const result = await asker.page.evaluate((hit) => window.peer.download(hit).done.then(() => "downloaded", (e) => `${e.name}: ${e.message}`), forged);
  assert.match(result, /^NotSharedError: .*not shared/);
  const bad = await asker.page.evaluate(() => {
    try {
      window.peer.download([]);
      return "no error";
    } catch (e) {
      return e.name;
    }
  });
  assert.equal(bad, "TypeError");
  // A malformed hit is refused, and the message says which hit and which field.
  const malformed = await asker.page.evaluate((hit) => {
    for (const hits of [[hit, { ...hit, size: "big" }], { ...hit, peerId: undefined }, [hit, 7]]) {
      try {
        window.peer.download(hits);
      } catch (e) {
        window.refusals = [...(window.refusals ?? []), `${e.name}: ${e.message}`];
      }
    }
    return window.refusals;
  }, forged);
  assert.equal(malformed.length, 3, String(malformed));
  assert.match(malformed[0], /^TypeError: hits\[1\]\.size: invalid type: string "big", expected u64/);
  assert.match(malformed[1], /^TypeError: hit: missing field `peerId`/);
  assert.match(malformed[2], /^TypeError: hits\[1\]: expected an object, got a number/);
  // The real hit works, as a single hit too.
  const [hit] = await asker.page.evaluate(() => window.peer.find("secret.bin"));
  const ok = await asker.page.evaluate((hit) => window.peer.download(hit).done.then((f) => f.size), hit);
  assert.equal(ok, 3 * MiB);
  await closeAll(people);
});
