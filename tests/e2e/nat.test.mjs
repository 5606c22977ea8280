// meshdrop across real NATs: two Chromiums, each in its own home network behind its
// own NAT (network namespaces), meshdrop-signal and coturn on a public network between
// them. Each case asserts the path the API reports and a verified file transfer, and
// records how long joining took and how fast the file went (test-results/nat.md).
// Needs root (network namespaces); skipped otherwise, with the reason.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { freePort, ROOT } from "./helpers.mjs";
import { isRoot, PUBLIC, Topology } from "./netns.mjs";

const MiB = 1024 * 1024;
const SECRET = "a secret shared by meshdrop-signal and coturn";
const skip = isRoot() ? false : "needs root to build network namespaces";
const rows = [];

after(() => {
  if (!rows.length) return;
  const table = ["| case | path (a / b) | join → open | transfer |", "|---|---|---:|---:|", ...rows.map((r) => `| ${r.join(" | ")} |`)].join("\n");
  mkdirSync(path.join(ROOT, "test-results"), { recursive: true });
  writeFileSync(path.join(ROOT, "test-results/nat.md"), `${table}\n`);
  console.log(table);
});

/** Builds the networks, starts coturn and meshdrop-signal (with `signalArgs`), and
 *  joins one page per home; runs `body` and tears everything down, whatever happens. */
async function scenario(nat, { turnServer = true, signalArgs = [], signalSecret = SECRET }, body) {
  const topology = new Topology(nat).up();
  try {
    if (turnServer) await topology.turn(SECRET);
    const secretFile = path.join(topology.dir, "turn-secret");
    writeFileSync(secretFile, `${signalSecret}\n`);
    const args = signalArgs.map((a) => a.replace("$SECRET_FILE", secretFile));
    const server = await topology.signal(await freePort(), args);
    const pages = {};
    for (const side of ["a", "b"]) {
      const browser = await topology.browser(side, server.url);
      const context = await browser.newContext();
      await context.addInitScript(countBulkBytes);
      const page = await context.newPage();
      page.on("pageerror", (e) => console.error(`[${side}] pageerror:`, e));
      await page.goto(`${server.url}/healthz`);
      await page.evaluate(async () => {
        const mod = await import("/pkg/meshdrop.js");
        await mod.default();
        window.meshdrop = mod;
      });
      pages[side] = page;
    }
    return await body({ topology, server, pages });
  } finally {
    topology.destroy();
  }
}

/** Installed in every page: counts the file bytes it puts on bulk channels. */
function countBulkBytes() {
  window.bulkBytes = 0;
  const send = RTCDataChannel.prototype.send;
  RTCDataChannel.prototype.send = function (data) {
    if (this.label === "meshdrop-bulk" && data.byteLength > 4096) window.bulkBytes += data.byteLength;
    return send.call(this, data);
  };
}

/** Joins the room on both pages; events go to `window.log` with their time. */
async function join(pages, server, options = {}) {
  for (const page of Object.values(pages)) {
    await page.evaluate(
      async ({ ws, options }) => {
        window.log = [];
        window.t0 = performance.now();
        const peer = await window.meshdrop.Peer.join({ signalingUrl: ws, room: "nat", identity: "ephemeral", ...options });
        window.peer = peer;
        const at = () => Math.round(performance.now() - window.t0);
        for (const type of ["peer-joined", "peer-left", "peer-path", "peer-failed", "peer-reconnecting", "peer-reconnected", "signaling", "warning"]) {
          peer.on(type, (e) => window.log.push({ type, at: at(), ...e }));
        }
        window.received = null;
        window.bytes = 0;
        peer.on("file-offer", (offer) => {
          const t = offer.accept();
          window.receiving = t;
          window.progress = [];
          t.on("progress", (p) => {
            window.bytes = p.bytes;
            window.progress.push([at(), p.bytes]);
          });
          t.done.then(
            async (file) => {
              const digest = [...new Uint8Array(await crypto.subtle.digest("SHA-256", await file.arrayBuffer()))];
              window.received = { ok: true, digest, at: at() };
            },
            (err) => (window.received = { ok: false, name: err.name, message: err.message }),
          );
        });
      },
      { ws: server.ws, options },
    );
  }
}

const event = (page, type, timeout = 40000) =>
  page.waitForFunction((type) => window.log.find((e) => e.type === type), type, { timeout }).then((h) => h.jsonValue());

/** The first path both sides report, and how long after joining each opened. */
async function paths(pages) {
  const result = {};
  for (const [side, page] of Object.entries(pages)) {
    const path = await event(page, "peer-path");
    const opened = await event(page, "peer-joined");
    result[side] = { ...path, openMs: opened.at };
  }
  return result;
}

/** Sends `size` random bytes from a to b; returns MB/s, after checking every byte. */
async function transfer(pages, size) {
  const digest = await pages.a.evaluate(async (size) => {
    const parts = [];
    const chunk = new Uint8Array(64 * 1024);
    for (let off = 0; off < size; off += chunk.length) {
      crypto.getRandomValues(chunk);
      parts.push(chunk.slice(0, Math.min(chunk.length, size - off)));
    }
    window.file = new File(parts, "payload.bin");
    return [...new Uint8Array(await crypto.subtle.digest("SHA-256", await window.file.arrayBuffer()))];
  }, size);
  const started = Date.now();
  await pages.a.evaluate(() => {
    const [other] = window.peer.peers();
    window.sending = window.peer.sendFile(other.id, window.file);
    window.sent = window.sending.done.then(
      () => ({ ok: true }),
      (e) => ({ ok: false, name: e.name, message: e.message }),
    );
  });
  await pages.b.waitForFunction(() => window.received, null, { timeout: 120000 }).catch(async (e) => {
    // What each side saw, for the failure message.
    const seen = {};
    for (const [side, page] of Object.entries(pages)) seen[side] = await page.evaluate(() => ({ log: window.log, bytes: window.bytes })).catch((x) => String(x));
    throw new Error(`${e.message}\n${JSON.stringify(seen)}`);
  });
  const seconds = (Date.now() - started) / 1000;
  const received = await pages.b.evaluate(() => window.received);
  assert.equal(received.ok, true, JSON.stringify(received));
  assert.deepEqual(received.digest, digest, "the bytes differ");
  assert.deepEqual(await pages.a.evaluate(() => window.sent), { ok: true });
  return size / MiB / seconds;
}

const describe = (p) => (p.path === "relayed" ? `relayed (TURN/${p.protocol.toUpperCase()})` : `direct (${p.local}/${p.remote})`);
const turnArgs = [
  "--stun-url", `stun:${PUBLIC}:3478`,
  "--turn-url", `turn:${PUBLIC}:3478?transport=udp`,
  "--turn-url", `turn:${PUBLIC}:3478?transport=tcp`,
  "--turn-secret-file", "$SECRET_FILE",
];
let directRate;

test("1. full-cone NATs: direct, through server-reflexive candidates", { skip }, async () => {
  await scenario({ a: "full-cone", b: "full-cone" }, { signalArgs: turnArgs }, async ({ server, pages }) => {
    await join(pages, server);
    const p = await paths(pages);
    for (const side of ["a", "b"]) assert.equal(p[side].path, "direct", JSON.stringify(p));
    assert.ok([p.a.local, p.b.local].includes("srflx"), `a NAT's mapping was used: ${JSON.stringify(p)}`);
    const info = await pages.a.evaluate(() => window.peer.connection(window.peer.peers()[0].id));
    assert.equal(info.path, "direct");
    directRate = await transfer(pages, 16 * MiB);
    rows.push(["1 full cone", `${describe(p.a)} / ${describe(p.b)}`, `${p.a.openMs} / ${p.b.openMs} ms`, `${directRate.toFixed(1)} MB/s`]);
  });
});

test("2. symmetric NATs: relayed over TURN/UDP with credentials from welcome; a wrong secret says so", { skip }, async () => {
  await scenario({ a: "symmetric", b: "symmetric" }, { signalArgs: turnArgs }, async ({ server, pages }) => {
    await join(pages, server); // no iceServers of its own: all from the signaling server
    const p = await paths(pages);
    for (const side of ["a", "b"]) assert.equal(p[side].path, "relayed", JSON.stringify(p));
    assert.equal([p.a, p.b].find((x) => x.local === "relay")?.protocol ?? p.a.protocol, "udp");
    const rate = await transfer(pages, 16 * MiB);
    rows.push(["2 symmetric", `${describe(p.a)} / ${describe(p.b)}`, `${p.a.openMs} / ${p.b.openMs} ms`, `${rate.toFixed(1)} MB/s`]);
  });
  // meshdrop-signal's secret is not coturn's: the credentials it hands out are refused.
  await scenario({ a: "symmetric", b: "symmetric" }, { signalArgs: turnArgs, signalSecret: "not the secret coturn has" }, async ({ server, pages }) => {
    await join(pages, server, { connectTimeoutMs: 8000 });
    const failed = await event(pages.a, "peer-failed", 30000);
    assert.equal(failed.reason, "ice-failed", JSON.stringify(failed));
    assert.match(failed.message, /credentials/);
    rows.push(["2b wrong TURN secret", "peer-failed: ice-failed", `${failed.at} ms`, `"${failed.message}"`]);
  });
});

test("3. UDP blocked from one home: relayed over TURN/TCP", { skip }, async () => {
  await scenario({ a: "udp-blocked", b: "symmetric" }, { signalArgs: turnArgs }, async ({ server, pages }) => {
    await join(pages, server);
    const p = await paths(pages);
    assert.equal(p.a.path, "relayed", JSON.stringify(p));
    assert.equal(p.a.protocol, "tcp", `a reaches its relay over TCP: ${JSON.stringify(p)}`);
    const rate = await transfer(pages, 16 * MiB);
    rows.push(["3 UDP blocked (a)", `${describe(p.a)} / ${describe(p.b)}`, `${p.a.openMs} / ${p.b.openMs} ms`, `${rate.toFixed(1)} MB/s`]);
  });
});

test("4. symmetric NATs and no TURN server: peer-failed says a TURN server is needed, in time", { skip }, async () => {
  await scenario({ a: "symmetric", b: "symmetric" }, { turnServer: true, signalArgs: ["--stun-url", `stun:${PUBLIC}:3478`] }, async ({ server, pages }) => {
    await join(pages, server, { connectTimeoutMs: 8000 });
    const failed = await event(pages.a, "peer-failed", 20000);
    assert.equal(failed.reason, "ice-failed", JSON.stringify(failed));
    assert.match(failed.message, /no TURN server configured/);
    assert.ok(failed.at < 12000, `failed only after ${failed.at} ms`);
    rows.push(["4 no TURN, symmetric", "peer-failed: ice-failed", `${failed.at} ms`, `"${failed.message}"`]);
  });
});

/** Starts a 24 MiB transfer a → b through a 40 Mbit/s uplink, calls `move` a quarter
 *  of the way in, and checks that the session survived it: no peer-left, the file whole,
 *  little sent twice. Returns what the move cost. */
async function moveMidTransfer({ topology, server, pages }, move) {
  topology.limit("a", "40mbit"); // a few seconds of transfer to interrupt
  await join(pages, server);
  await paths(pages);
  const size = 24 * MiB;
  const sending = transfer(pages, size);
  await pages.b.waitForFunction((n) => window.bytes > n, size * 0.25, { timeout: 60000, polling: 100 });
  const movedAt = await pages.a.evaluate(() => Math.round(performance.now() - window.t0));
  move();
  const rate = await sending;
  const logs = { a: await pages.a.evaluate(() => window.log), b: await pages.b.evaluate(() => window.log) };
  for (const side of ["a", "b"]) assert.deepEqual(logs[side].filter((e) => e.type === "peer-left"), [], `${side}: no peer-left: ${JSON.stringify(logs)}`);
  const resent = (await pages.a.evaluate(() => window.bulkBytes)) - size;
  assert.ok(resent < size / 2, `${resent} bytes sent again`);
  // The longest time b's progress stood still: what the move cost.
  const progress = await pages.b.evaluate(() => window.progress);
  const stalledMs = Math.max(...progress.slice(1).map(([at], i) => at - progress[i][0]));
  return { rate, resent, logs, movedAt, stalledMs };
}

test("5. the NAT's public address changes mid-transfer: ICE restarts over a new signaling connection; the session and the file survive", { skip }, async () => {
  // b's NAT lets in only replies to what b sent: once a's address changes, b drops
  // a's packets until a restart tells b the new address, and the signaling connection
  // that must carry it went down with a's old address, silently.
  await scenario({ a: "full-cone", b: "restricted" }, { signalArgs: turnArgs }, async (ctx) => {
    const r = await moveMidTransfer(ctx, () => ctx.topology.renumber("a", "203.0.113.11"));
    // Whichever side saw its path go down for longer than the grace announces it
    // (both clocks start at join, within milliseconds of each other).
    const side = ["a", "b"].find((s) => r.logs[s].some((e) => e.type === "peer-reconnecting"));
    const reconnected = side && r.logs[side].find((e) => e.type === "peer-reconnected");
    assert.ok(reconnected, `an ICE restart: ${JSON.stringify(r.logs)}`);
    assert.ok(r.logs.a.some((e) => e.type === "signaling" && e.state === "reconnecting"), "the dead signaling connection was noticed");
    const after = r.logs.a.filter((e) => e.type === "peer-path").at(-1);
    rows.push(["5 NAT address change mid-transfer", `ICE restart: path back (${describe(after)}) in ${reconnected.at - r.movedAt} ms; bytes stood still ${r.stalledMs} ms; ${r.resent} bytes sent again`, "–", `${r.rate.toFixed(1)} MB/s overall`]);
  });
});

test("5b. the host moves to another address mid-transfer: the session and the file survive", { skip }, async () => {
  await scenario({ a: "full-cone", b: "full-cone" }, { signalArgs: turnArgs }, async (ctx) => {
    const r = await moveMidTransfer(ctx, () => ctx.topology.renumberHost("a", "192.0.2.3"));
    const reconnected = r.logs.a.find((e) => e.type === "peer-reconnected");
    const how = reconnected ? `ICE restart, path back in ${reconnected.at - r.movedAt} ms` : "no restart needed (ICE followed the new address)";
    rows.push(["5b host address change mid-transfer", `${how}; bytes stood still ${r.stalledMs} ms; ${r.resent} bytes sent again`, "–", `${r.rate.toFixed(1)} MB/s overall`]);
  });
});

test("6. iceTransportPolicy relay forces the relay where direct would work", { skip }, async () => {
  await scenario({ a: "full-cone", b: "full-cone" }, { signalArgs: turnArgs }, async ({ server, pages }) => {
    await join(pages, server, { iceTransportPolicy: "relay" });
    const p = await paths(pages);
    for (const side of ["a", "b"]) assert.equal(p[side].path, "relayed", JSON.stringify(p));
    const rate = await transfer(pages, 16 * MiB);
    const compare = directRate ? ` (${(rate / directRate).toFixed(2)} × direct)` : "";
    rows.push(["6 relay forced, full cone", `${describe(p.a)} / ${describe(p.b)}`, `${p.a.openMs} / ${p.b.openMs} ms`, `${rate.toFixed(1)} MB/s${compare}`]);
  });
});
