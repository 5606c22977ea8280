// Signaling instances sharing rooms through a real redis-server, and browsers given all
// of their URLs: an instance killed with SIGKILL, then another drained with SIGTERM,
// and the peers stay connected with the same ids, no peer-left, while a newcomer still
// meets everyone.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { freePort, launchBrowser, startServer } from "./helpers.mjs";

let browser;
let redis;
const servers = [];

async function startRedis() {
  const port = await freePort();
  const child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  await new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("exit", () => reject(new Error(`redis-server exited: ${out}`)));
    child.stdout.on("data", (d) => {
      out += d;
      if (out.includes("Ready to accept connections")) resolve();
    });
  });
  child.stdout.resume();
  return { child, url: `redis://127.0.0.1:${port}` };
}

before(async () => {
  redis = await startRedis();
  for (let i = 0; i < 3; i++) servers.push(await startServer(await freePort(), ["--redis", redis.url]));
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  for (const server of servers) await server.stop();
  if (redis) {
    redis.child.kill("SIGKILL");
    if (redis.child.exitCode === null && redis.child.signalCode === null) await once(redis.child, "exit");
  }
});

const ws = (server) => `ws://127.0.0.1:${server.port}/ws`;

/** A tab with the API loaded from the instance that stays up, joined with `urls`. */
async function person(name, urls) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${name}] pageerror:`, e));
  await page.goto(`${servers[2].url}/healthz`);
  const id = await page.evaluate(
    async ({ name, urls }) => {
      const mod = await import("/pkg/meshdrop.js");
      await mod.default();
      window.events = [];
      window.received = [];
      const peer = await mod.Peer.join({ signalingUrl: urls, room: "failover", name });
      for (const type of ["signaling", "peer-joined", "peer-left", "peer-reconnecting"]) peer.on(type, (e) => window.events.push({ type, at: performance.now(), ...e }));
      peer.on("message", (e) => window.received.push(e.data));
      window.peer = peer;
      return peer.id;
    },
    { name, urls },
  );
  return { name, page, id };
}

const connectedTo = (p, n) => p.page.waitForFunction((k) => window.peer.peers().length === k, n, { timeout: 20000 });

/** Ms (page clock) until this tab's signaling is "connected" again after `since`. */
async function signalingBack(p, since) {
  await p.page.waitForFunction((t) => window.events.some((e) => e.type === "signaling" && e.state === "connected" && e.at > t), since, { timeout: 20000 });
  return p.page.evaluate((t) => window.events.find((e) => e.type === "signaling" && e.state === "connected" && e.at > t).at - t, since);
}

async function messagesFlow(from, to, text) {
  await from.page.evaluate(({ to, text }) => window.peer.send(to, text), { to: to.id, text });
  await to.page.waitForFunction((t) => window.received.includes(t), text, { timeout: 10000 });
}

test("a killed instance and a drained one: same ids, no peer-left, newcomers still meet everyone", async () => {
  const [a, b, c] = servers;
  const alice = await person("alice", [ws(a), ws(b), ws(c)]);
  const bob = await person("bob", [ws(a), ws(c), ws(b)]);
  await connectedTo(alice, 1);
  await connectedTo(bob, 1);
  await messagesFlow(alice, bob, "before");

  // SIGKILL: no goodbye; the sockets just drop.
  const killedAt = await alice.page.evaluate(() => performance.now());
  const bobKilledAt = await bob.page.evaluate(() => performance.now());
  a.child.kill("SIGKILL");
  const aliceBack = await signalingBack(alice, killedAt);
  const bobBack = await signalingBack(bob, bobKilledAt);
  // Both were on the dead one; a newcomer whose list starts with it still gets in.
  const newcomerStart = Date.now();
  const carol = await person("carol", [ws(a), ws(b), ws(c)]);
  await connectedTo(carol, 2);
  const newcomerMs = Date.now() - newcomerStart;
  await messagesFlow(bob, alice, "after the kill");
  await messagesFlow(carol, alice, "from the newcomer");

  // SIGTERM on the instance alice is on now: told to reconnect (1012), at once.
  const drainedAt = await alice.page.evaluate(() => performance.now());
  await b.stop("SIGTERM");
  const aliceDrained = await signalingBack(alice, drainedAt);
  await messagesFlow(alice, bob, "after the drain");

  for (const p of [alice, bob, carol]) {
    const events = await p.page.evaluate(() => window.events);
    assert.deepEqual(events.filter((e) => e.type === "peer-left"), [], `${p.name} saw nobody leave`);
    assert.equal(await p.page.evaluate(() => window.peer.id), p.id, "same id");
    assert.equal(await p.page.evaluate(() => window.peer.signalingState), "connected");
  }
  console.log(
    `SIGKILL → signaling back: alice ${aliceBack.toFixed(0)} ms, bob ${bobBack.toFixed(0)} ms; newcomer connected to both in ${newcomerMs} ms; ` +
      `SIGTERM → alice back in ${aliceDrained.toFixed(0)} ms`,
  );
});
