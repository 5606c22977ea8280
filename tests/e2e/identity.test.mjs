// One identity in two browsers (a copied profile): the server gives the id to the newer
// connection and closes the older one. The older must stop signaling and say why,
// instead of reconnecting and taking the id back forever.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { freePort, launchBrowser, startServer } from "./helpers.mjs";

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

const IDENTITIES = "meshdrop.identities/v3";

/** A page with the API loaded; `identities` is copied into its localStorage first. */
async function page(identities) {
  const context = await browser.newContext();
  if (identities) await context.addInitScript(([key, value]) => localStorage.setItem(key, value), [IDENTITIES, identities]);
  const p = await context.newPage();
  p.on("pageerror", (e) => console.error("pageerror:", e));
  await p.goto(`${server.url}/healthz`);
  await p.evaluate(async () => {
    const mod = await import("/pkg/meshdrop.js");
    await mod.default();
    window.meshdrop = mod;
  });
  return { context, page: p };
}

async function join(p, room) {
  return p.page.evaluate(
    async ({ url, room }) => {
      window.events = [];
      const peer = await window.meshdrop.Peer.join({ signalingUrl: url, room });
      for (const type of ["signaling", "warning", "peer-joined", "peer-left"]) peer.on(type, (e) => window.events.push({ type, ...e }));
      window.peer = peer;
      return peer.id;
    },
    { url: `ws://127.0.0.1:${server.port}/ws`, room },
  );
}

test("the older of two tabs with one identity stops signaling with a reason, without a tug of war", async () => {
  const older = await page();
  const observer = await page();
  const olderId = await join(older, "twins");
  await join(observer, "twins");
  await observer.page.waitForFunction(() => window.peer.peers().length === 1, null, { timeout: 20000 });
  const identities = await older.page.evaluate((key) => localStorage.getItem(key), IDENTITIES);
  const newer = await page(identities);
  const newerId = await join(newer, "twins");
  assert.equal(newerId, olderId, "the copied identity gives the same id");

  await older.page.waitForFunction(() => window.peer.signalingState === "closed", null, { timeout: 10000 });
  const events = await older.page.evaluate(() => window.events);
  const closed = events.filter((e) => e.type === "signaling" && e.state === "closed");
  assert.equal(closed.length, 1, JSON.stringify(events));
  assert.match(closed[0].reason, /replaced|another connection/);
  assert.ok(events.some((e) => e.type === "warning" && /identity/.test(e.message)), JSON.stringify(events));

  // Once the room settled on the newer tab, nothing changes for five seconds: nobody
  // takes the id back (the old client did, every ~300 ms).
  await observer.page.waitForFunction((id) => window.events.some((e) => e.type === "peer-joined" && e.id === id) && window.peer.peers().length === 1, newerId, {
    timeout: 20000,
  });
  await new Promise((r) => setTimeout(r, 1000));
  await observer.page.evaluate(() => (window.events = []));
  await new Promise((r) => setTimeout(r, 5000));
  assert.equal(await newer.page.evaluate(() => window.peer.signalingState), "connected");
  assert.equal(await older.page.evaluate(() => window.peer.signalingState), "closed");
  const seen = await observer.page.evaluate(() => window.events.filter((e) => e.type === "peer-joined" || e.type === "peer-left"));
  assert.deepEqual(seen, [], "the tabs keep replacing each other");
  assert.deepEqual(await observer.page.evaluate(() => window.peer.peers().map((p) => p.id)), [newerId]);
  for (const p of [older, newer, observer]) await p.context.close();
});
