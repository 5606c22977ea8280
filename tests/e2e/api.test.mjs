// The JS API in real pages: identity across a server restart, hostile peers written
// here (raw WebSocket clients speaking the signaling protocol), and the page's module.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { freePort, launchBrowser, startServer, apiPage as sharedApiPage } from "./helpers.mjs";

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

const apiPage = (server) => sharedApiPage(browser, server);

/** Joins in the page; records every event in window.events. */
async function join(page, url, room, name) {
  return page.evaluate(
    async ({ url, room, name }) => {
      const peer = await window.meshdrop.Peer.join({ signalingUrl: url, room, name });
      window.peer = peer;
      for (const type of ["peer-connecting", "peer-joined", "peer-left", "message", "signaling", "warning"]) {
        peer.on(type, (e) => window.events.push({ type, ...e, data: e.data instanceof Uint8Array ? [...e.data] : e.data }));
      }
      return peer.id;
    },
    { url, room, name },
  );
}

async function waitForEvent(page, predicateSource, arg, timeout = 20000) {
  await page.waitForFunction(
    ({ src, arg }) => window.events.some((e) => new Function("e", "arg", `return ${src}`)(e, arg)),
    { src: predicateSource, arg },
    { timeout },
  );
}

test("ids survive a server restart and newcomers reach old peers by them", async () => {
  const port = await freePort();
  let server = await startServer(port);
  const ws = `ws://127.0.0.1:${port}/ws`;
  const a = await apiPage(server);
  const b = await apiPage(server);
  try {
    const idA = await join(a.page, ws, "ident", "a");
    const idB = await join(b.page, ws, "ident", "b");
    await waitForEvent(a.page, "e.type === 'peer-joined' && e.id === arg", idB);
    await server.stop("SIGTERM");
    await waitForEvent(a.page, "e.type === 'signaling' && e.state === 'reconnecting'");
    server = await startServer(port);
    await waitForEvent(a.page, "e.type === 'signaling' && e.state === 'connected'");
    await waitForEvent(b.page, "e.type === 'signaling' && e.state === 'connected'");
    assert.equal(await a.page.evaluate(() => window.peer.id), idA);
    const c = await apiPage(server);
    await join(c.page, ws, "ident", "c");
    await waitForEvent(c.page, "e.type === 'peer-joined' && e.id === arg", idA);
    await waitForEvent(c.page, "e.type === 'peer-joined' && e.id === arg", idB);
    const peers = await c.page.evaluate(() => window.peer.peers());
    assert.deepEqual(peers.map((p) => p.name).sort(), ["a", "b"]);
    const order = await c.page.evaluate((id) => window.events.filter((e) => e.id === id).map((e) => e.type), idA);
    assert.deepEqual(order, ["peer-connecting", "peer-joined"], "connecting is announced first, once");
    await c.context.close();
  } finally {
    await a.context.close();
    await b.context.close();
    await server.stop();
  }
});

test("a hostile peer's garbage signals are reported and change nothing", async () => {
  const server = await startServer(await freePort());
  const ws = `ws://127.0.0.1:${server.port}/ws`;
  const a = await apiPage(server);
  const b = await apiPage(server);
  try {
    const idA = await join(a.page, ws, "hostile", "a");
    const idB = await join(b.page, ws, "hostile", "b");
    await waitForEvent(a.page, "e.type === 'peer-joined'");
    // The attacker is a raw WebSocket client in a third page, written here.
    const attacker = await apiPage(server);
    await attacker.page.evaluate(
      async ({ ws, target }) => {
        const sock = new WebSocket(ws);
        await new Promise((r) => (sock.onopen = r));
        sock.send(JSON.stringify({ type: "join", room: "hostile", name: "mallory" }));
        await new Promise((r) => (sock.onmessage = r)); // welcome
        const garbage = [
          "not an object",
          { kind: "offer" },
          { kind: "offer", conn: "zzzz", sdp: "v=0" },
          { kind: "answer", conn: "0000000000000001", sdp: "v=0" },
          { kind: "candidate", conn: "0000000000000001", candidate: "nope" },
          { kind: "offer", conn: "0000000000000002", sdp: "this is not SDP" },
          { kind: "teleport" },
        ];
        for (const data of garbage) sock.send(JSON.stringify({ type: "signal", to: target, data }));
        await new Promise((r) => setTimeout(r, 200)); // let the frames leave before closing
        sock.close();
      },
      { ws, target: idA },
    );
    await a.page.waitForFunction(() => window.events.filter((e) => e.type === "warning").length >= 5, null, { timeout: 10000 });
    // The real peers still talk.
    await b.page.evaluate((to) => window.peer.send(to, new Uint8Array([1, 2, 3])), idA);
    await waitForEvent(a.page, "e.type === 'message' && e.from === arg && e.data.join() === '1,2,3'", idB);
    const left = await a.page.evaluate((b) => window.events.filter((e) => e.type === "peer-left" && e.id === b).length, idB);
    assert.equal(left, 0, "the real peer was never dropped");
    await attacker.context.close();
  } finally {
    await a.context.close();
    await b.context.close();
    await server.stop();
  }
});

test("a burst of messages sent in one task arrives whole and in order (in batches)", async () => {
  const server = await startServer(await freePort());
  const ws = `ws://127.0.0.1:${server.port}/ws`;
  const a = await apiPage(server);
  const b = await apiPage(server);
  try {
    await join(a.page, ws, "burst", "a");
    const idB = await join(b.page, ws, "burst", "b");
    await waitForEvent(a.page, "e.type === 'peer-joined' && e.id === arg", idB);
    await waitForEvent(b.page, "e.type === 'peer-joined'");
    // 600 messages, ~600 KiB: text of every width and bytes, all sent before any goes.
    const sent = await a.page.evaluate((idB) => {
      const sent = [];
      for (let i = 0; i < 600; i++) {
        const data = i % 3 === 2 ? Array.from({ length: 700 + (i % 50) }, (_, j) => (i + j) % 256) : `${i} ✓ ${"é".repeat(i % 300)}`;
        sent.push(data);
        if (i % 100 === 99) window.peer.broadcast(data instanceof Array ? new Uint8Array(data) : data);
        else window.peer.send(idB, data instanceof Array ? new Uint8Array(data) : data);
      }
      return sent;
    }, idB);
    await b.page.waitForFunction((n) => window.events.filter((e) => e.type === "message").length >= n, sent.length, { timeout: 20000 });
    const got = await b.page.evaluate(() => window.events.filter((e) => e.type === "message").map((e) => e.data));
    assert.deepEqual(got, sent);
    const warnings = await b.page.evaluate(() => window.events.filter((e) => e.type === "warning"));
    assert.deepEqual(warnings, []);
  } finally {
    await a.context.close();
    await b.context.close();
    await server.stop();
  }
});

test("join rejects with the server's code when the room is full", async () => {
  const server = await startServer(await freePort(), ["--max-room-peers", "1"]);
  const ws = `ws://127.0.0.1:${server.port}/ws`;
  const a = await apiPage(server);
  try {
    await join(a.page, ws, "tiny", "first");
    const err = await a.page.evaluate(async (ws) => {
      try {
        await window.meshdrop.Peer.join({ signalingUrl: ws, room: "tiny", name: "second" });
        return null;
      } catch (e) {
        return { name: e.name, code: e.code, message: e.message };
      }
    }, ws);
    assert.equal(err?.name, "SignalingError");
    assert.equal(err.code, "room-full");
  } finally {
    await a.context.close();
    await server.stop();
  }
});

test("the package's entry: Peer.join before init() says to call init(), and works after it", async () => {
  const port = await freePort();
  const server = await startServer(port);
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(`${server.url}/healthz`);
    const result = await page.evaluate(async (ws) => {
      const { default: init, Peer } = await import("/pkg/index.js");
      let before;
      try {
        await Peer.join({ signalingUrl: ws, room: "early" });
      } catch (e) {
        before = e.message;
      }
      await init();
      const peer = await Peer.join({ signalingUrl: ws, room: "early", identity: "ephemeral" });
      const after = peer.id.length;
      await peer.leave();
      return { before, after };
    }, `ws://127.0.0.1:${port}/ws`);
    assert.match(result.before ?? "", /call `await init\(\)`/);
    assert.equal(result.after, 32);
  } finally {
    await context.close();
    await server.stop();
  }
});

/** A context whose pages record every RTCPeerConnection they build, from before the
 *  module loads. */
async function countingConnections() {
  const context = await browser.newContext();
  await context.addInitScript(() => {
    window.builtConnections = [];
    const Native = window.RTCPeerConnection;
    window.RTCPeerConnection = function (...args) {
      const pc = new Native(...args);
      window.builtConnections.push(pc);
      return pc;
    };
    window.RTCPeerConnection.prototype = Native.prototype;
  });
  return context;
}

/** `b` joins `room`, then `a` (a counting page) until it has met `b`; the states of
 *  every connection `a` built. */
async function meetAndListConnections(a, b, ws, room) {
  await join(b, ws, room, "b");
  const idB = await b.evaluate(() => window.peer.id);
  await join(a, ws, room, "a");
  await waitForEvent(a, "e.type === 'peer-joined' && e.id === arg", idB);
  return a.evaluate(() => window.builtConnections.map((pc) => pc.connectionState));
}

test("the first join takes the connection init() made while the page was idle", async () => {
  const server = await startServer(await freePort());
  const ws = `ws://127.0.0.1:${server.port}/ws`;
  const a = await sharedApiPage(browser, server, await countingConnections());
  const b = await apiPage(server);
  try {
    // Made once init()'s page is idle, before any join.
    await a.page.waitForFunction(() => window.builtConnections.length === 1, null, { timeout: 10000 });
    assert.equal(await a.page.evaluate(() => window.builtConnections[0].connectionState), "new");
    // The join built none of its own: its first peer came over the premade one.
    assert.deepEqual(await meetAndListConnections(a.page, b.page, ws, "premade"), ["connected"]);
  } finally {
    await a.context.close();
    await b.context.close();
    await server.stop();
  }
});

test("a page that left joins again with its storage worker already started", async () => {
  const server = await startServer(await freePort());
  const ws = `ws://127.0.0.1:${server.port}/ws`;
  const { page, context } = await apiPage(server);
  try {
    const started = [];
    page.on("worker", (worker) => started.push(worker.url()));
    await join(page, ws, "rejoin-first", "a");
    const next = page.waitForEvent("worker", { timeout: 10000 });
    await page.evaluate(() => window.peer.leave());
    assert.match((await next).url(), /store_worker\.js$/, "leaving starts the next join's storage worker");
    const startedBeforeRejoin = started.length;
    await join(page, ws, "rejoin-second", "a");
    assert.equal(started.length, startedBeforeRejoin, "the second join started no worker of its own");
    assert.equal(await page.evaluate(() => window.peer.persistentStorage), true, "its downloads go to OPFS, through that worker");
  } finally {
    await context.close();
    await server.stop();
  }
});

test("a connection init() made is closed after a minute without a join, and a later join makes its own", async () => {
  const server = await startServer(await freePort());
  const ws = `ws://127.0.0.1:${server.port}/ws`;
  const context = await countingConnections();
  // The page's timers on a clock the test moves (it runs on by itself meanwhile).
  await context.clock.install();
  const a = await sharedApiPage(browser, server, context);
  const b = await apiPage(server);
  try {
    await a.page.waitForFunction(() => window.builtConnections.length === 1, null, { timeout: 10000 });
    await a.page.clock.fastForward(59_000);
    assert.equal(await a.page.evaluate(() => window.builtConnections[0].signalingState), "stable");
    await a.page.clock.fastForward(2_000);
    assert.equal(await a.page.evaluate(() => window.builtConnections[0].signalingState), "closed");
    assert.deepEqual(await meetAndListConnections(a.page, b.page, ws, "late"), ["closed", "connected"]);
  } finally {
    await a.context.close();
    await b.context.close();
    await server.stop();
  }
});

/** The identity locks held in the page's origin (this context's tabs), once there are
 *  `count` of them: the lock manager has no event, so it is asked every 20 ms (10 s at
 *  most, then the last answer is returned). */
function identityLocks(page, count) {
  return page.evaluate(async (count) => {
    const held = async () => (await navigator.locks.query()).held.map((lock) => lock.name).filter((name) => name.startsWith("meshdrop-identity:"));
    for (let i = 0; i < 500; i++) {
      const names = await held();
      if (names.length === count) return names;
      await new Promise((r) => setTimeout(r, 20));
    }
    return held();
  }, count);
}

test("the first join uses the identity init() claimed while the page was idle; an ephemeral join gives it back", async () => {
  const server = await startServer(await freePort());
  const ws = `ws://127.0.0.1:${server.port}/ws`;
  const a = await apiPage(server);
  const b = await apiPage(server);
  try {
    // Claimed before any join.
    const claimed = await identityLocks(a.page, 1);
    assert.equal(claimed.length, 1, "init() claimed an identity");
    await join(a.page, ws, "preclaim", "a");
    assert.deepEqual(await identityLocks(a.page, 1), claimed, "the join kept the claimed identity and claimed no other");
    assert.equal((await identityLocks(b.page, 1)).length, 1);
    await b.page.evaluate((url) => window.meshdrop.Peer.join({ signalingUrl: url, room: "preclaim", identity: "ephemeral" }), ws);
    assert.deepEqual(await identityLocks(b.page, 0), [], "the ephemeral join released the claimed identity");
  } finally {
    await a.context.close();
    await b.context.close();
    await server.stop();
  }
});

test("an identity init() claimed is released after a minute without a join, and a later join claims it again", async () => {
  const server = await startServer(await freePort());
  const ws = `ws://127.0.0.1:${server.port}/ws`;
  const context = await browser.newContext();
  await context.clock.install();
  const a = await sharedApiPage(browser, server, context);
  try {
    const claimed = await identityLocks(a.page, 1);
    assert.equal(claimed.length, 1, "init() claimed an identity");
    await a.page.clock.fastForward(59_000);
    assert.deepEqual(await identityLocks(a.page, 1), claimed, "still held before the minute is over");
    await a.page.clock.fastForward(2_000);
    assert.deepEqual(await identityLocks(a.page, 0), [], "released after a minute");
    await join(a.page, ws, "late-claim", "a");
    assert.deepEqual(await identityLocks(a.page, 1), claimed, "the join claimed the same stored identity");
  } finally {
    await context.close();
    await server.stop();
  }
});
