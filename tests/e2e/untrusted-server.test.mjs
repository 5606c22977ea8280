// meshdrop in real browsers behind a signaling path that is not trusted: a proxy in
// front of meshdrop-signal, written here, that sees (and may rewrite) every frame.
// An honest proxy learns nothing that claims an id, the safety codes agree, and a
// verified key is remembered; a proxy that presents one peer under an absent peer's id
// is caught at the first connection ("impostor") and no message gets through.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { WebSocketServer, WebSocket } from "ws";
import { apiPage, freePort, launchBrowser, startServer } from "./helpers.mjs";

let browser;
let server;
/** `close` of every proxy not closed yet. */
const openProxies = new Set();
before(async () => {
  browser = await launchBrowser();
  server = await startServer(await freePort());
});
after(async () => {
  // A test that failed before closing its proxy would keep this process alive.
  await Promise.all([...openProxies].map((close) => close()));
  await browser?.close();
  await server?.stop();
});

/** A WebSocket proxy to the server; `rewrite(direction, text)` may change frames
 *  ("up": client → server, "down": server → client). Records the URLs clients asked
 *  for, what they sent, and what they were sent. Upstream it asks for `/ws` alone
 *  (as a server that knows no query parameters would see it) unless `keepQuery`. */
async function proxy(rewrite = (_direction, text) => text, { keepQuery = false } = {}) {
  const port = await freePort();
  const heard = [];
  const told = [];
  const asked = [];
  const wss = new WebSocketServer({ host: "127.0.0.1", port });
  wss.on("connection", (client, request) => {
    asked.push(request.url);
    const query = keepQuery ? new URL(request.url, "ws://relay").search : "";
    const upstream = new WebSocket(`ws://127.0.0.1:${server.port}/ws${query}`);
    const pending = [];
    upstream.on("open", () => pending.splice(0).forEach((t) => upstream.send(t)));
    client.on("message", (data) => {
      const text = data.toString();
      heard.push(text);
      const out = rewrite("up", text);
      if (upstream.readyState === WebSocket.OPEN) upstream.send(out);
      else pending.push(out);
    });
    upstream.on("message", (data) => {
      told.push(data.toString());
      if (client.readyState === WebSocket.OPEN) client.send(rewrite("down", data.toString()));
    });
    client.on("close", () => upstream.close());
    upstream.on("close", () => client.close());
  });
  await new Promise((resolve) => wss.on("listening", resolve));
  const close = () => {
    openProxies.delete(close);
    // Open connections would keep the server from closing.
    for (const client of wss.clients) client.terminate();
    return new Promise((resolve) => wss.close(resolve));
  };
  openProxies.add(close);
  return { url: `ws://127.0.0.1:${port}/ws`, heard, told, asked, close };
}

const tab = (context) => apiPage(browser, server, context);

async function join(t, url, room, roomSecret) {
  return t.page.evaluate(
    async ({ url, room, roomSecret }) => {
      window.events = [];
      window.received = [];
      const peer = await window.meshdrop.Peer.join({ signalingUrl: url, room, ...(roomSecret ? { roomSecret } : {}) });
      for (const type of ["peer-joined", "peer-failed", "warning"]) peer.on(type, (e) => window.events.push({ type, ...e }));
      peer.on("message", (e) => window.received.push(e.data));
      window.peer = peer;
      return peer.id;
    },
    { url, room, roomSecret },
  );
}

test("the client connects with ?challenge=first and still asks: one nonce, whether the server pushes it or only answers", async () => {
  const types = (frames) => frames.map((text) => JSON.parse(text).type);
  for (const keepQuery of [true, false]) {
    const relay = await proxy(undefined, { keepQuery });
    const erin = await tab();
    try {
      await join(erin, relay.url, `first-${keepQuery}`);
      assert.match(relay.asked[0], /[?&]challenge=first(&|$)/);
      // The request older servers need is sent either way, then the signed join.
      assert.deepEqual(types(relay.heard).slice(0, 2), ["challenge", "join"]);
      // One nonce, and it is the one signed: the welcome follows.
      assert.deepEqual(types(relay.told).slice(0, 2), ["challenge", "welcome"], keepQuery ? "pushed" : "answered");
      assert.equal(types(relay.told).filter((type) => type === "challenge").length, 1);
    } finally {
      await erin.context.close();
      await relay.close();
    }
  }
});

test("an honest relay learns no secret; both sides show the same safety code; a verified key is remembered", async () => {
  const relay = await proxy();
  const carol = await tab();
  const dave = await tab();
  const carolId = await join(carol, relay.url, "codes");
  const daveId = await join(dave, relay.url, "codes");
  await carol.page.waitForFunction((id) => window.peer.peers().some((p) => p.id === id), daveId, { timeout: 20000 });
  await dave.page.waitForFunction((id) => window.peer.peers().some((p) => p.id === id), carolId, { timeout: 20000 });
  const carolCode = await carol.page.evaluate((id) => window.peer.safetyCode(id), daveId);
  const daveCode = await dave.page.evaluate((id) => window.peer.safetyCode(id), carolId);
  assert.match(carolCode, /^\d{5} \d{5} \d{5} \d{5}$/);
  assert.equal(carolCode, daveCode, "the same code on both sides");
  assert.equal(await carol.page.evaluate(() => window.peer.safetyCode("0".repeat(32))), undefined);

  // Nothing the relay saw can claim an id: the stored secrets never crossed it.
  for (const t of [carol, dave]) {
    const stored = await t.page.evaluate(() => JSON.parse(localStorage.getItem("meshdrop.identities/v3")));
    assert.ok(stored.length >= 1);
    for (const { secret, key } of stored) {
      assert.ok(relay.heard.every((frame) => !frame.includes(secret) && !frame.includes(key)), "a stored secret went to the server");
    }
  }
  assert.ok(relay.heard.some((frame) => frame.includes('"proof"')), "joins carry a signature");

  // Verified, and still verified when the tab comes back.
  assert.equal(await dave.page.evaluate((id) => window.peer.verify(id), carolId), true);
  assert.equal(await dave.page.evaluate((id) => window.peer.isVerified(id), carolId), true);
  await dave.page.evaluate(() => window.peer.leave());
  await dave.page.close();
  const daveAgain = await tab(dave.context);
  assert.equal(await join(daveAgain, relay.url, "codes"), daveId, "same identity after a reload");
  assert.equal(await daveAgain.page.evaluate((id) => window.peer.isVerified(id), carolId), true);
  await daveAgain.page.waitForFunction((id) => window.peer.peers().some((p) => p.id === id), carolId, { timeout: 20000 });
  await relay.close();
});

test("a server that presents a peer under an absent peer's id is caught before any message", async () => {
  const bob = await tab();
  const bobId = await join(bob, `ws://127.0.0.1:${server.port}/ws`, "claim");
  // Next to bob's id, so alice's id sorts against both alike and the two agree on who
  // offers (the smaller id): the lie is then in the ids alone.
  const last = parseInt(bobId.at(-1), 16);
  const absent = bobId.slice(0, -1) + (last === 15 ? last - 1 : last + 1).toString(16);
  // Alice's server shows her bob as `absent`, and routes her signals for `absent` to bob.
  const liar = await proxy((direction, text) => (direction === "down" ? text.replaceAll(bobId, absent) : text.replaceAll(absent, bobId)));
  const alice = await tab();
  await join(alice, liar.url, "claim");
  await alice.page.waitForFunction(
    (id) => window.events.some((e) => e.type === "peer-failed" && e.id === id && e.reason === "impostor"),
    absent,
    { timeout: 20000 },
  );
  const sent = await alice.page.evaluate(async (id) => window.peer.send(id, "for the absent peer only").then(() => "sent", (e) => e.name), absent);
  assert.equal(sent, "NotConnectedError");
  const aliceEvents = await alice.page.evaluate(() => window.events);
  assert.deepEqual(aliceEvents.filter((e) => e.type === "peer-joined"), [], "no session opened");
  const failure = aliceEvents.find((e) => e.type === "peer-failed");
  assert.match(failure.message, /not the key of/);
  const bobSide = await bob.page.evaluate(() => ({ events: window.events, received: window.received }));
  assert.deepEqual(bobSide.events.filter((e) => e.type === "peer-joined"), [], "bob opened nothing either");
  assert.deepEqual(bobSide.received, []);
  await liar.close();
});

test("a room secret: members connect, a wrong secret never does, and the server never sees it", async () => {
  const relay = await proxy();
  const secret = "correct horse battery staple";
  const [erin, frank, mallory] = [await tab(), await tab(), await tab()];
  const erinId = await join(erin, relay.url, "locked", secret);
  const frankId = await join(frank, relay.url, "locked", secret);
  // Each side opens the session once it verified the other's binding: frank sends, so
  // his side must be open too, not only erin's.
  await erin.page.waitForFunction((id) => window.peer.peers().some((p) => p.id === id), frankId, { timeout: 20000 });
  await frank.page.waitForFunction((id) => window.peer.peers().some((p) => p.id === id), erinId, { timeout: 20000 });
  await frank.page.evaluate((id) => window.peer.send(id, "members only"), erinId);
  await erin.page.waitForFunction(() => window.received.includes("members only"), null, { timeout: 10000 });

  const malloryId = await join(mallory, relay.url, "locked", "correct horse battery stable");
  for (const [t, other] of [
    [mallory, erinId],
    [erin, malloryId],
  ]) {
    await t.page.waitForFunction(
      (id) => window.events.some((e) => e.type === "peer-failed" && e.id === id && e.reason === "wrong-room-secret"),
      other,
      { timeout: 20000 },
    );
  }
  const malloryPeers = await mallory.page.evaluate(() => window.peer.peers());
  assert.deepEqual(malloryPeers, [], "nobody connected with the wrong secret");
  assert.ok(relay.heard.length > 0);
  assert.ok(relay.heard.every((frame) => !frame.includes(secret) && !frame.includes("correct horse")), "the secret went to the server");
  assert.ok(relay.heard.some((frame) => frame.includes('"pake":"')), "the exchange went through signaling");
  await relay.close();
});
