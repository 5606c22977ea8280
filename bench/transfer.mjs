// File transfer benchmark: meshdrop `sendFile` against a hand-written RTCDataChannel
// (the ceiling) and PeerJS, same bytes, same machine, interleaved rounds; then small
// files one after another on an open connection (latency, each implementation); then
// memory growth on both sides during a large meshdrop transfer.
// Usage: node bench/transfer.mjs [--mib 256] [--reps 5] [--memory-mib 1024] [--kinds raw,meshdrop,peerjs]
//        [--cpu-profile 1]   (or `make bench`)
// --cpu-profile 1: also records a Chromium CPU profile of both renderers' pages and
// their workers during one fresh meshdrop transfer (and one raw transfer at the best
// fresh setting), writes the .cpuprofile files to bench/results/profiles/ and adds where
// the time went to the report.
//
// Sender and receiver are two contexts of one Chromium; the receiver's has a profile on
// disk (so OPFS is on disk, as for a real user); the file is a real file on disk picked through an
// <input type=file>, and every implementation reads it from there.
import { execSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os, { tmpdir } from "node:os";
import path from "node:path";
import { PeerServer } from "peer";
import { chromium } from "playwright-core";
import { CHROMIUM_ARGS, freePort, ROOT, startServer } from "../tests/e2e/helpers.mjs";
import { openRawPair, RAW_CHANNEL, RAW_SETTINGS } from "./raw-channel.mjs";

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const MiB = 1024 * 1024;
const TICKS = Number(execSync("getconf CLK_TCK").toString().trim());
const sizeMiB = Number(arg("mib", "256"));
const reps = Number(arg("reps", "5"));
const memoryMiB = Number(arg("memory-mib", "1024"));
const kinds = arg("kinds", "raw,meshdrop,peerjs").split(",");
const cpuProfile = arg("cpu-profile", "0") === "1";

const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return { min: s[0], median: s[Math.floor((s.length - 1) / 2)], max: s[s.length - 1] };
};

const work = await mkdtemp(path.join(tmpdir(), "meshdrop-bench-"));
// Stopped early (Ctrl-C, a kill), the bench still stops the signaling server it started
// and takes its files (browser profiles, a file of --mib) with it; Playwright closes the
// browser as the process exits.
const children = [];
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    for (const child of children) child.kill("SIGKILL");
    rmSync(work, { recursive: true, force: true });
    process.exit(130);
  });
}
function makeFile(mib) {
  const file = path.join(work, `file-${mib}.bin`);
  const fd = openSync(file, "w");
  const chunk = randomBytes(4 * MiB);
  for (let i = 0; i < mib / 4; i++) {
    chunk[0] = i & 255; // no two blocks alike
    chunk[1] = i >> 8;
    writeSync(fd, chunk);
  }
  closeSync(fd);
  return file;
}

const server = await startServer(await freePort());
children.push(server.child);
const peerjsPort = await freePort();
let peerHttp;
PeerServer({ host: "127.0.0.1", port: peerjsPort, path: "/" }, (server) => (peerHttp = server));
const PEERJS_LIB = readFileSync(path.join(ROOT, "node_modules/peerjs/dist/peerjs.min.js"), "utf8");
const extraArgs = ["--enable-precise-memory-info", ...(process.env.BENCH_CHROMIUM_ARGS ?? "").split(" ").filter(Boolean)];
const launch = async (name) =>
  chromium.launchPersistentContext(path.join(work, `profile-${name}`), {
    executablePath: process.env.CHROMIUM_BIN ?? "/usr/bin/chromium",
    headless: true,
    args: [...CHROMIUM_ARGS, ...extraArgs],
  });
// One browser, two contexts: the receiver in the profile's own context (OPFS on disk,
// as for a real user), the sender in a second, fresh context. (Two separate Chromium
// processes were 2-4 x slower for every implementation alike on this machine.)
const receiver = await launch("receiver");
const sender = await receiver.browser().newContext();

// In-page helpers: the raw baseline (bench/raw-channel.mjs), and small files.
const PAGE_HELPERS = `${RAW_CHANNEL}
// A file of \`size\` bytes no earlier one shares (its first 64 KiB random).
window.smallFile = (size) => {
  const bytes = new Uint8Array(size);
  crypto.getRandomValues(bytes.subarray(0, Math.min(size, 65536)));
  return new File([bytes], "small.bin");
};
`;

async function openPage(context, withFile) {
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error("pageerror:", e));
  await page.goto(`${server.url}/healthz`);
  await page.addScriptTag({ content: PAGE_HELPERS });
  await page.addScriptTag({ content: PEERJS_LIB });
  await page.evaluate(async () => {
    const mod = await import("/pkg/meshdrop.js");
    window.wasm = await mod.default();
    window.MeshdropPeer = mod.Peer;
    // A clean OPFS, so no round resumes from an earlier one.
    const root = await navigator.storage.getDirectory();
    await root.removeEntry("meshdrop", { recursive: true }).catch(() => {});
    document.body.innerHTML = '<input type="file" id="f">';
  });
  if (withFile) {
    await page.setInputFiles("#f", withFile);
    await page.evaluate(() => (window.file = document.getElementById("f").files[0]));
  }
  return page;
}

/** Bytes a "warm" connection carries before the measured transfer. */
const WARM_UP = 64 * MiB;

async function runRaw(a, b, size, setting, warm) {
  const { chunk, cap, low } = RAW_SETTINGS[setting];
  await openRawPair(a, b, low);
  if (warm) {
    // No more than the file holds (a smaller --mib), or the receiver would wait forever.
    const n = Math.min(WARM_UP, size);
    const warmed = b.evaluate((n) => window.rawReceive(n), n);
    warmed.catch(() => {}); // awaited below; the send may fail first (pages closed)
    await a.evaluate(({ n, chunk, cap }) => window.rawSend(window.file.slice(0, n), chunk, cap), { n, chunk, cap });
    await warmed;
  }
  const done = b.evaluate((n) => window.rawReceive(n), size);
  done.catch(() => {}); // awaited below; the send may fail first (pages closed)
  const t0 = await a.evaluate(({ chunk, cap }) => window.rawSend(window.file, chunk, cap), { chunk, cap });
  return (await done) - t0;
}

/** `b`, then `a`, join `room`; `b` accepts every offer, and `window.received` there
 *  resolves with the time the latest one is done (`window.expect()` waits for the next).
 *  Returns `b`'s id. */
async function joinMeshdropPair(a, b, room) {
  const ws = `ws://127.0.0.1:${server.port}/ws`;
  await b.evaluate(async ({ ws, room }) => {
    const peer = await window.MeshdropPeer.join({ signalingUrl: ws, room, identity: "ephemeral" });
    window.peer = peer;
    // Every offer is accepted; `received` resolves with the time the latest one is done.
    window.expect = () => {
      window.lastByteAt = undefined;
      window.received = new Promise((resolve, reject) => (window.settle = { resolve, reject }));
    };
    window.expect();
    peer.on("file-offer", (offer) => {
      const t = offer.accept();
      const size = offer.size;
      t.on("progress", ({ bytes, total }) => bytes === total && (window.lastByteAt ??= Date.now()));
      t.done.then((file) => (file.size === size ? window.settle.resolve(Date.now()) : window.settle.reject(new Error(`got ${file.size} bytes`))), window.settle.reject);
    });
  }, { ws, room });
  const bId = await b.evaluate(() => window.peer.id);
  await a.evaluate(async ({ ws, room, bId }) => {
    const peer = await window.MeshdropPeer.join({ signalingUrl: ws, room, identity: "ephemeral" });
    window.peer = peer;
    await new Promise((r) => (peer.peers().some((p) => p.id === bId) ? r() : peer.on("peer-joined", ({ id }) => id === bId && r())));
  }, { ws, room, bId });
  return bId;
}

async function runMeshdrop(a, b, size, room, warm = false) {
  const bId = await joinMeshdropPair(a, b, room);
  if (warm) {
    await a.evaluate(({ bId, n }) => window.peer.sendFile(bId, window.file.slice(0, n)).done, { bId, n: Math.min(WARM_UP, size) });
    await b.evaluate(() => window.received);
    await b.evaluate(() => window.expect());
  }
  const t0 = await a.evaluate((bId) => {
    const t0 = Date.now();
    window.transfer = window.peer.sendFile(bId, window.file);
    return t0;
  }, bId);
  const t1 = await b.evaluate(() => window.received);
  log("meshdrop: last byte to done", t1 - (await b.evaluate(() => window.lastByteAt)), "ms");
  await a.evaluate(() => window.transfer.done);
  await a.evaluate(() => window.peer.leave());
  await b.evaluate(() => window.peer.leave());
  return t1 - t0;
}

// PeerJS the way its docs show: register, connect by id, `conn.send(file)` with the
// default binary serialization; the receiver's "data" event gets the whole file.
/** PeerJS peers in `a` and `b`, `a` connected to `b`; `window.expectData(size)` in `b`
 *  makes `window.received` resolve with the time `size` bytes arrive in one "data". */
async function openPeerjsPair(a, b, room) {
  const config = { host: "127.0.0.1", port: peerjsPort, path: "/", config: { iceServers: [] } };
  await b.evaluate(({ id, config }) => new Promise((resolve, reject) => {
    const peer = new window.peerjs.Peer(id, config);
    window.pj = peer;
    window.expectData = (size) => {
      window.received = new Promise((done) => (window.onData = (data) => (data.byteLength ?? data.size) === size && done(Date.now())));
    };
    peer.on("connection", (conn) => conn.on("data", (data) => window.onData?.(data)));
    peer.on("open", resolve);
    peer.on("error", reject);
  }), { id: `${room}-b`, config });
  await a.evaluate(({ id, to, config }) => new Promise((resolve, reject) => {
    const peer = new window.peerjs.Peer(id, config);
    window.pj = peer;
    peer.on("open", () => {
      const conn = peer.connect(to, { reliable: true });
      window.conn = conn;
      conn.on("open", resolve);
    });
    peer.on("error", reject);
  }), { id: `${room}-a`, to: `${room}-b`, config });
}

async function runPeerjs(a, b, size, room) {
  await openPeerjsPair(a, b, room);
  await b.evaluate((size) => window.expectData(size), size);
  const t0 = await a.evaluate(() => {
    const t0 = Date.now();
    window.conn.send(window.file);
    return t0;
  });
  const t1 = await b.evaluate(() => window.received);
  await a.evaluate(() => window.pj.destroy());
  await b.evaluate(() => window.pj.destroy());
  return t1 - t0;
}

/** Small files: sizes sent one after another on one open connection, each once per
 *  round and kind; ms from the send call to the receiver holding the file. */
const SMALL_SIZES = [1024, MiB, 4 * MiB];
const SMALL_ROUNDS = 10;

async function smallFiles(kind, a, b, room) {
  const times = Object.fromEntries(SMALL_SIZES.map((size) => [size, []]));
  const bId = kind === "raw" ? await openRawPair(a, b, 0) : kind === "meshdrop" ? await joinMeshdropPair(a, b, room) : await openPeerjsPair(a, b, room);
  for (let round = 0; round < SMALL_ROUNDS; round++) {
    for (const size of SMALL_SIZES) {
      await a.evaluate((size) => (window.small = window.smallFile(size)), size);
      let t0;
      let t1;
      if (kind === "raw") {
        const done = b.evaluate((n) => window.rawReceive(n), size);
        t0 = await a.evaluate(() => window.rawSend(window.small, 256 * 1024, 256 * 1024));
        t1 = await done;
      } else if (kind === "meshdrop") {
        t0 = await a.evaluate((bId) => {
          const t0 = Date.now();
          window.transfer = window.peer.sendFile(bId, window.small);
          return t0;
        }, bId);
        t1 = await b.evaluate(() => window.received);
        await a.evaluate(() => window.transfer.done);
        await b.evaluate(() => window.expect());
      } else {
        await b.evaluate((size) => window.expectData(size), size);
        t0 = await a.evaluate(() => {
          const t0 = Date.now();
          window.conn.send(window.small);
          return t0;
        });
        t1 = await b.evaluate(() => window.received);
      }
      times[size].push(t1 - t0);
    }
  }
  return times;
}

const log = (...a) => process.env.BENCH_DEBUG && console.error(...a);
/** A transfer with no result by then has stalled (one such raw or meshdrop run hung an
 *  unattended bench for good): slower than 2 MB/s, and never less than two minutes. */
const deadlineMs = (bytes) => Math.max(120_000, bytes / 2e3);
/** `run`'s result, or an error once `ms` have passed without one. */
function within(run, ms, what) {
  run.catch(() => {}); // it may still reject after the deadline, when its pages close
  let timer;
  const late = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: stalled, no result after ${ms / 1000} s`)), ms)));
  return Promise.race([run, late]).finally(() => clearTimeout(timer));
}
// Every measured variant: each raw setting, meshdrop and PeerJS, on a fresh connection
// and on one that already carried data (PeerJS: fresh only, as its users meet it).
const variants = [];
for (const mode of ["fresh", "warm"]) {
  if (kinds.includes("raw")) for (const setting of Object.keys(RAW_SETTINGS)) variants.push({ kind: "raw", setting, mode });
  if (kinds.includes("meshdrop")) variants.push({ kind: "meshdrop", mode });
  if (kinds.includes("peerjs") && mode === "fresh") variants.push({ kind: "peerjs", mode });
}
const label = (v) => (v.kind === "raw" ? `raw ${v.setting}` : v.kind) + ` (${v.mode})`;
const samples = Object.fromEntries(variants.map((v) => [label(v), []]));
/** The same times by round (a stalled run leaves a hole), for ratios paired by round. */
const byRound = Object.fromEntries(variants.map((v) => [label(v), []]));
/** Runs that stalled, by variant: left out of the medians, listed in the report. */
const stalled = {};
const file = makeFile(sizeMiB);
for (let rep = 0; rep < reps; rep++) {
  const order = variants.map((_, i) => variants[(i + rep) % variants.length]);
  for (const v of order) {
    log("open pages", label(v));
    const a = await openPage(sender, file);
    const b = await openPage(receiver);
    const room = `bench-${v.kind}-${rep}-${Date.now()}`;
    const warm = v.mode === "warm";
    const run =
      v.kind === "raw" ? runRaw(a, b, sizeMiB * MiB, v.setting, warm) : v.kind === "meshdrop" ? runMeshdrop(a, b, sizeMiB * MiB, room, warm) : runPeerjs(a, b, sizeMiB * MiB, room);
    try {
      const ms = await within(run, deadlineMs(sizeMiB * MiB), label(v));
      samples[label(v)].push(ms);
      byRound[label(v)][rep] = ms;
      console.error(`${label(v)} round ${rep + 1}: ${ms} ms (${((sizeMiB * MiB) / 1e6 / (ms / 1000)).toFixed(1)} MB/s)`);
    } catch (err) {
      stalled[label(v)] = (stalled[label(v)] ?? 0) + 1;
      console.error(`${label(v)} round ${rep + 1}: ${err.message}`);
    }
    await a.close();
    await b.close();
  }
}

// Small files, each kind on a connection of its own (after the large transfers: the
// same pages' setup as theirs).
const small = {};
for (const kind of kinds) {
  const a = await openPage(sender, file);
  const b = await openPage(receiver);
  try {
    small[kind] = await within(smallFiles(kind, a, b, `bench-small-${kind}-${Date.now()}`), deadlineMs(0), `small files, ${kind}`);
    console.error(`small files, ${kind}: ${JSON.stringify(small[kind])}`);
  } catch (err) {
    console.error(err.message);
  }
  await a.close();
  await b.close();
}

const mbps = (ms) => (sizeMiB * MiB) / 1e6 / (ms / 1000);
const median = (name) => (samples[name]?.length ? stats(samples[name]).median : null);
/** The fastest raw setting (lowest median time) for `mode`: the ceiling. */
const bestRaw = (mode) =>
  Object.keys(RAW_SETTINGS)
    .map((setting) => ({ setting, ms: median(`raw ${setting} (${mode})`) }))
    .filter((r) => r.ms)
    .sort((x, y) => x.ms - y.ms)[0];
const ceilings = { fresh: bestRaw("fresh"), warm: bestRaw("warm") };
/** `name`'s speed ÷ `other`'s, round by round: the two ran minutes apart in every round,
 *  so a slow stretch of the machine (VM steal here drifts between runs and within one)
 *  slows both, and cancels. Median (min–max) over the rounds both finished. */
const pairedRatio = (name, other) => {
  const ratios = (byRound[name] ?? []).map((ms, i) => (ms && byRound[other]?.[i] ? byRound[other][i] / ms : undefined)).filter((r) => r !== undefined);
  return ratios.length ? stats(ratios) : null;
};
const ratioRange = (r) => (r ? `${r.median.toFixed(2)} (${r.min.toFixed(2)}–${r.max.toFixed(2)})` : "–");

// Memory: sample both renderers while a large file goes through meshdrop.
/** Chromium's processes: { pid, type } ("browser", "renderer", "GPU", a utility's service). */
async function chromiumProcesses() {
  const cdp = await receiver.browser().newBrowserCDPSession();
  const { processInfo } = await cdp.send("SystemInfo.getProcessInfo");
  await cdp.detach();
  return processInfo.map((p) => ({ pid: p.id, type: p.type }));
}
const rendererPids = async () => (await chromiumProcesses()).filter((p) => p.type === "renderer").map((p) => p.pid);

/** Opens a page and finds its renderer process: the one whose main thread's CPU grows
 *  while the page spins. (Looking for the process that appeared with the page is wrong:
 *  Chromium keeps a spare renderer ready, so the new process is the next page's; and
 *  starting that spare costs its main thread ~0.3 s, hence a spin well beyond that.) */
async function openMeasuredPage(context, withFile) {
  const page = await openPage(context, withFile);
  const pids = await rendererPids();
  // A renderer's main thread has the process's id.
  const mainCpu = () => new Map(pids.map((pid) => [pid, threadCpu([pid]).get(`${pid}/${pid}`)?.cpu ?? 0]));
  const before = mainCpu();
  await page.evaluate(() => {
    const t = performance.now();
    while (performance.now() - t < 1000);
  });
  const after = mainCpu();
  const grew = (pid) => after.get(pid) - before.get(pid);
  log("renderers", pids.map((pid) => `${pid}:${grew(pid).toFixed(2)}`).join(" "));
  return { page, pids: [pids.reduce((best, pid) => (grew(pid) > grew(best) ? pid : best))] };
}

function rendererRss(pids) {
  let kib = 0;
  for (const pid of pids) {
    try {
      kib += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]);
    } catch {
      /* gone */
    }
  }
  return kib * 1024;
}

/** JS heap of the page and of its workers (the OPFS worker), and wasm memory. */
async function heaps(page) {
  const cdp = await page.context().newCDPSession(page);
  const { usedSize: pageHeap } = await cdp.send("Runtime.getHeapUsage");
  let workerHeap = 0;
  for (const worker of page.workers()) {
    // Each worker's heap through its own target (non-flat attach: messages in envelopes).
    workerHeap += await workerHeapUsage(cdp, worker.url());
  }
  await cdp.detach();
  const wasm = await page.evaluate(() => window.wasm.memory.buffer.byteLength);
  return { pageHeap, workerHeap, wasm };
}

async function workerHeapUsage(cdp, url) {
  const attached = new Promise((resolve) => cdp.on("Target.attachedToTarget", (e) => e.targetInfo.url === url && resolve(e.sessionId)));
  await cdp.send("Target.setAutoAttach", { autoAttach: true, waitForDebuggerOnStart: false, flatten: false });
  const sessionId = await Promise.race([attached, new Promise((r) => setTimeout(() => r(null), 1000))]);
  if (!sessionId) return 0;
  const reply = new Promise((resolve) =>
    cdp.on("Target.receivedMessageFromTarget", (e) => {
      const m = JSON.parse(e.message);
      if (m.id === 1) resolve(m.result?.usedSize ?? 0);
    }),
  );
  await cdp.send("Target.sendMessageToTarget", { sessionId, message: JSON.stringify({ id: 1, method: "Runtime.getHeapUsage" }) });
  return Promise.race([reply, new Promise((r) => setTimeout(() => r(0), 1000))]);
}

/** Where each process's memory is, by Chromium's own allocators (a memory-infra dump,
 *  as chrome://tracing takes it): bytes per pid in the ArrayBuffer partition (received
 *  frames live there until a collection frees them) and in malloc. */
async function allocatorDump() {
  const cdp = await receiver.browser().newBrowserCDPSession();
  const events = [];
  cdp.on("Tracing.dataCollected", (e) => events.push(...e.value));
  const complete = new Promise((resolve) => cdp.once("Tracing.tracingComplete", resolve));
  await cdp.send("Tracing.start", {
    traceConfig: { includedCategories: ["disabled-by-default-memory-infra"], memoryDumpConfig: { triggers: [] } },
    transferMode: "ReportEvents",
  });
  await cdp.send("Tracing.requestMemoryDump", { levelOfDetail: "light" });
  await cdp.send("Tracing.end");
  await complete;
  await cdp.detach();
  const size = (allocators, name) => parseInt(allocators?.[name]?.attrs?.size?.value ?? "0", 16);
  const byPid = new Map();
  for (const e of events) {
    const allocators = e.ph === "v" ? e.args?.dumps?.allocators : null;
    if (allocators) byPid.set(e.pid, { arrayBuffers: size(allocators, "partition_alloc/partitions/array_buffer"), malloc: size(allocators, "malloc") });
  }
  return byPid;
}

async function measureMemory(mib, kind, bigFile) {
  const { page: a, pids: aPids } = await openMeasuredPage(sender, bigFile);
  const { page: b, pids: bPids } = await openMeasuredPage(receiver);
  if (aPids.length !== 1 || bPids.length !== 1) console.error(`renderer processes: sender ${aPids}, receiver ${bPids}`);
  const before = { a: await heaps(a), b: await heaps(b), aRss: rendererRss(aPids), bRss: rendererRss(bPids) };
  const peak = { aRss: 0, bRss: 0, aHeap: 0, bHeap: 0, bWorker: 0, aWasm: 0, bWasm: 0 };
  let running = true;
  const breakdownBefore = await allocatorDump();
  // A dump costs every process some CPU: taken once a second, not at every sample.
  const breakdown = (async () => {
    while (running) {
      const now = await allocatorDump();
      for (const [x, pid] of [["a", aPids[0]], ["b", bPids[0]]]) {
        const [was, is] = [breakdownBefore.get(pid), now.get(pid)];
        if (!was || !is) continue;
        peak[`${x}ArrayBuffers`] = Math.max(peak[`${x}ArrayBuffers`] ?? 0, is.arrayBuffers - was.arrayBuffers);
        peak[`${x}Malloc`] = Math.max(peak[`${x}Malloc`] ?? 0, is.malloc - was.malloc);
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  const sampler = (async () => {
    while (running) {
      const [ha, hb] = await Promise.all([heaps(a), heaps(b)]);
      const [ra, rb] = [rendererRss(aPids), rendererRss(bPids)];
      peak.aRss = Math.max(peak.aRss, ra - before.aRss);
      peak.bRss = Math.max(peak.bRss, rb - before.bRss);
      peak.aHeap = Math.max(peak.aHeap, ha.pageHeap + ha.workerHeap - before.a.pageHeap - before.a.workerHeap);
      peak.bHeap = Math.max(peak.bHeap, hb.pageHeap - before.b.pageHeap);
      peak.bWorker = Math.max(peak.bWorker, hb.workerHeap - before.b.workerHeap);
      peak.aWasm = Math.max(peak.aWasm, ha.wasm - before.a.wasm);
      peak.bWasm = Math.max(peak.bWasm, hb.wasm - before.b.wasm);
      await new Promise((r) => setTimeout(r, 250));
    }
  })();
  const run = kind === "raw" ? runRaw(a, b, mib * MiB, ceilings.fresh?.setting ?? "256K/256K/0", false) : runMeshdrop(a, b, mib * MiB, `bench-memory-${Date.now()}`);
  const ms = await within(run, deadlineMs(mib * MiB), `${kind} ${mib} MiB`).catch((err) => {
    console.error(err.message);
    return null;
  });
  running = false;
  await sampler;
  await breakdown;
  await a.close();
  await b.close();
  return { ms, peak };
}
// The same for the best raw setting: what a data channel alone costs the renderers.
const bigFile = memoryMiB > 0 ? makeFile(memoryMiB) : null;
const memory = memoryMiB > 0 ? { meshdrop: await measureMemory(memoryMiB, "meshdrop", bigFile), raw: await measureMemory(memoryMiB, "raw", bigFile) } : null;

// Where the time goes: CPU per thread of every Chromium process (from /proc, so the
// threads no JS profile sees count too: WebRTC's network thread, the IO threads, the
// network service), and JS/wasm CPU profiles of each page and its workers.
/** CPU seconds per thread (by pid and thread name) of the given processes. */
function threadCpu(pids) {
  const out = new Map();
  for (const pid of pids) {
    let tids = [];
    try {
      tids = readdirSync(`/proc/${pid}/task`);
    } catch {
      continue;
    }
    for (const tid of tids) {
      try {
        const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
        const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
        const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        out.set(`${pid}/${tid}`, { pid, name, cpu: (Number(fields[11]) + Number(fields[12])) / TICKS });
      } catch {
        /* gone */
      }
    }
  }
  return out;
}

/** Starts CPU profiles of `page` and each of its workers (workers through non-flat attach). */
async function startCpuProfiles(page) {
  const cdp = await page.context().newCDPSession(page);
  const replies = new Map();
  let nextId = 1;
  cdp.on("Target.receivedMessageFromTarget", (e) => {
    const m = JSON.parse(e.message);
    replies.get(m.id)?.(m.result ?? { error: m.error });
  });
  const workerSessions = [];
  cdp.on("Target.attachedToTarget", (e) => e.targetInfo.type === "worker" && workerSessions.push({ sessionId: e.sessionId, url: e.targetInfo.url }));
  await cdp.send("Target.setAutoAttach", { autoAttach: true, waitForDebuggerOnStart: false, flatten: false });
  for (let i = 0; i < 100 && workerSessions.length < page.workers().length; i++) await new Promise((r) => setTimeout(r, 20));
  // A worker that ended meanwhile answers with an error, or not at all.
  const inWorker = (sessionId, method, params = {}) =>
    new Promise((resolve) => {
      const id = nextId++;
      const timer = setTimeout(() => resolve({ error: "no reply" }), 5000);
      replies.set(id, (reply) => (clearTimeout(timer), resolve(reply)));
      cdp.send("Target.sendMessageToTarget", { sessionId, message: JSON.stringify({ id, method, params }) }).catch((err) => resolve({ error: err.message }));
    });
  const INTERVAL_US = 250;
  await cdp.send("Profiler.enable");
  await cdp.send("Profiler.setSamplingInterval", { interval: INTERVAL_US });
  await cdp.send("Profiler.start");
  for (const w of workerSessions) {
    await inWorker(w.sessionId, "Profiler.enable");
    await inWorker(w.sessionId, "Profiler.setSamplingInterval", { interval: INTERVAL_US });
    await inWorker(w.sessionId, "Profiler.start");
  }
  return async () => {
    const profiles = [{ thread: "page", profile: (await cdp.send("Profiler.stop")).profile }];
    for (const w of workerSessions) {
      const reply = await inWorker(w.sessionId, "Profiler.stop");
      if (reply.profile) profiles.push({ thread: `worker ${path.basename(w.url)}`, profile: reply.profile });
      else console.error(`bench: no CPU profile from worker ${w.url}: ${JSON.stringify(reply.error)}`);
    }
    await cdp.detach();
    return profiles;
  };
}

/** Self time of a V8 CPU profile by category and by function. */
function summarizeProfile(profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i + 1] ?? 0)));
  const categories = {};
  const functions = new Map();
  let total = 0;
  for (const [id, us] of self) {
    const { functionName, url } = byId.get(id).callFrame;
    total += us;
    const category =
      functionName === "(idle)" ? "idle" : functionName === "(garbage collector)" ? "GC" : functionName === "(program)" ? "native (program)" : url.startsWith("wasm://") || url.endsWith(".wasm") ? "wasm" : url ? "JS" : "browser API (native)";
    categories[category] = (categories[category] ?? 0) + us;
    if (category !== "idle") {
      const key = `${functionName || "(anonymous)"}${url ? ` @ ${path.basename(url.split("?")[0])}` : ""}`;
      functions.set(key, (functions.get(key) ?? 0) + us);
    }
  }
  const top = [...functions].sort((x, y) => y[1] - x[1]).slice(0, 6);
  return { total, categories, top };
}

/** The module as shipped but with its function names (`wasm-opt -g`, otherwise the
 *  release flags from Cargo.toml), so the profiles name Rust functions; served in place
 *  of the shipped one to the profiled pages. null (and unnamed profiles) if its glue
 *  would not match the served meshdrop.js. */
function namedWasm() {
  const out = path.join(ROOT, "target/bench-named");
  execSync("cargo build --quiet --release --target wasm32-unknown-unknown --lib", { cwd: ROOT, stdio: "inherit" });
  execSync(`wasm-bindgen --target web --out-dir ${out} target/wasm32-unknown-unknown/release/meshdrop.wasm`, { cwd: ROOT, stdio: "inherit" });
  const flags = /\[package\.metadata\.wasm-pack\.profile\.release\]\s*wasm-opt\s*=\s*\[([^\]]*)\]/.exec(readFileSync(path.join(ROOT, "Cargo.toml"), "utf8"))[1].match(/"[^"]*"/g).map((f) => JSON.parse(f));
  execSync(`${path.join(ROOT, "node_modules/.bin/wasm-opt")} ${flags.join(" ")} -g ${out}/meshdrop_bg.wasm -o ${out}/named.wasm`, { stdio: "inherit" });
  const imports = (file) => [...new Set(readFileSync(file, "utf8").match(/__wbg_\w+/g))].sort().join();
  if (imports(path.join(out, "meshdrop.js")) !== imports(path.join(ROOT, "www/pkg/meshdrop.js"))) {
    console.error("bench: www/pkg is not from the current source (make build); the profiles will show unnamed wasm functions");
    return null;
  }
  return readFileSync(path.join(out, "named.wasm"));
}

/** One transfer of `kind` with the profilers and the thread counters around it. */
async function profileTransfer(kind) {
  const { page: a, pids: aPids } = await openMeasuredPage(sender, file);
  const { page: b, pids: bPids } = await openMeasuredPage(receiver);
  const procs = await chromiumProcesses();
  // Let the receiver's worker (started by init) be there before attaching.
  const stops = [await startCpuProfiles(a), await startCpuProfiles(b)];
  const before = threadCpu(procs.map((p) => p.pid));
  const t0 = Date.now();
  const run = kind === "raw" ? runRaw(a, b, sizeMiB * MiB, ceilings.fresh?.setting ?? "256K/256K/0", false) : runMeshdrop(a, b, sizeMiB * MiB, `bench-profile-${Date.now()}`);
  const ms = await within(run, deadlineMs(sizeMiB * MiB), `profiled ${kind}`);
  const wall = (Date.now() - t0) / 1000;
  const after = threadCpu(procs.map((p) => p.pid));
  const [aProfiles, bProfiles] = [await stops[0](), await stops[1]()];
  const pages = { sender: aProfiles, receiver: bProfiles };
  mkdirSync(path.join(ROOT, "bench/results/profiles"), { recursive: true });
  for (const [side, profiles] of Object.entries(pages))
    for (const { thread, profile } of profiles) writeFileSync(path.join(ROOT, `bench/results/profiles/${kind}-${side}-${thread.replace(/\W+/g, "_")}.cpuprofile`), JSON.stringify(profile));
  // Thread CPU by process role and thread name (thread pools summed).
  const typeOf = new Map(procs.map((p) => [p.pid, p.type]));
  const rendererOf = new Map([...aPids.map((pid) => [pid, "sender renderer"]), ...bPids.map((pid) => [pid, "receiver renderer"])]);
  const threads = new Map();
  for (const [key, t] of after) {
    const used = t.cpu - (before.get(key)?.cpu ?? 0);
    if (used <= 0) continue;
    const role = typeOf.get(t.pid) === "renderer" ? rendererOf.get(t.pid) ?? `renderer ${t.pid}` : typeOf.get(t.pid);
    const name = `${role}: ${t.name.replace(/\d+$/, "")}`;
    threads.set(name, (threads.get(name) ?? 0) + used);
  }
  await a.close();
  await b.close();
  return { ms, wall, threads, pages };
}

let profiles = null;
if (cpuProfile) {
  const named = namedWasm();
  if (named) for (const context of [sender, receiver]) await context.route("**/meshdrop_bg.wasm", (route) => route.fulfill({ body: named, contentType: "application/wasm" }));
  try {
    profiles = { raw: await profileTransfer("raw"), meshdrop: await profileTransfer("meshdrop") };
  } catch (err) {
    console.error(`${err.message}: no profiles this run`);
  }
}

await sender.close();
await receiver.close();
await server.stop();
peerHttp?.closeAllConnections();
peerHttp?.close();
await rm(work, { recursive: true, force: true });

const peerjsMedian = median("peerjs (fresh)");
const rows = variants.map((v) => {
  const name = label(v);
  if (!samples[name].length) return `| ${name} | 0 | stalled | – | – | – | – |`;
  const s = stats(samples[name]);
  const ceiling = ceilings[v.mode];
  const vsRaw = ceiling ? (ceiling.ms / s.median).toFixed(2) : "–";
  const vsPeerjs = peerjsMedian ? (peerjsMedian / s.median).toFixed(2) : "–";
  const best = v.kind === "raw" && ceiling?.setting === v.setting ? " **best**" : "";
  const paired = ceiling ? ratioRange(pairedRatio(name, `raw ${ceiling.setting} (${v.mode})`)) : "–";
  return `| ${name}${best} | ${samples[name].length} | ${s.median} (${s.min}–${s.max}) | ${mbps(s.median).toFixed(1)} (${mbps(s.max).toFixed(1)}–${mbps(s.min).toFixed(1)}) | ${vsRaw} | ${paired} | ${vsPeerjs} |`;
});
const ratio = (mode) => {
  const mesh = median(`meshdrop (${mode})`);
  if (!mesh || !ceilings[mode]) return "–";
  const paired = pairedRatio(`meshdrop (${mode})`, `raw ${ceilings[mode].setting} (${mode})`);
  return `${(ceilings[mode].ms / mesh).toFixed(2)} × the best raw (${ceilings[mode].setting}), ${ratioRange(paired)} paired by round`;
};

function profileReport({ raw, meshdrop }) {
  const names = [...new Set([...raw.threads.keys(), ...meshdrop.threads.keys()])].filter((n) => (meshdrop.threads.get(n) ?? 0) + (raw.threads.get(n) ?? 0) >= 0.05);
  names.sort((x, y) => (meshdrop.threads.get(y) ?? 0) - (meshdrop.threads.get(x) ?? 0));
  const total = (r) => [...r.threads.values()].reduce((x, y) => x + y, 0);
  const cell = (r, n) => (r.threads.get(n) ? `${r.threads.get(n).toFixed(2)} s (${((100 * r.threads.get(n)) / r.wall).toFixed(0)} %)` : "–");
  let out = `
## Where the time goes (\`--cpu-profile 1\`: one fresh ${sizeMiB} MiB transfer each)

raw (${ceilings.fresh?.setting ?? "256K/256K/0"}): ${raw.ms} ms; meshdrop: ${meshdrop.ms} ms. CPU seconds of every Chromium thread during the transfer (from /proc; thread pools summed; % of the transfer's wall time, so 100 % is one core of the machine's ${os.cpus().length}), threads with ≥ 0.05 s:

| process: thread | raw | meshdrop |
|---|---:|---:|
${names.map((n) => `| ${n} | ${cell(raw, n)} | ${cell(meshdrop, n)} |`).join("\n")}
| **all** | **${total(raw).toFixed(2)} s (${((100 * total(raw)) / raw.wall).toFixed(0)} %)** | **${total(meshdrop).toFixed(2)} s (${((100 * total(meshdrop)) / meshdrop.wall).toFixed(0)} %)** |

JavaScript and wasm on meshdrop's threads (V8 CPU profiles, 250 µs sampling; the .cpuprofile files are in bench/results/profiles/, open them in Chromium's DevTools):

| side: thread | sampled | busy | by kind | top functions (self time) |
|---|---:|---:|---|---|
`;
  for (const [side, profiles] of Object.entries(meshdrop.pages)) {
    for (const { thread, profile } of profiles) {
      const p = summarizeProfile(profile);
      const ms = (us) => (us / 1000).toFixed(0);
      const busy = p.total - (p.categories.idle ?? 0);
      const kinds = Object.entries(p.categories).filter(([k]) => k !== "idle").sort((x, y) => y[1] - x[1]).map(([k, us]) => `${k} ${ms(us)}`).join(", ");
      const top = p.top.map(([f, us]) => `${f.replace(/\|/g, "\\|")} ${ms(us)}`).join("; ");
      out += `| ${side}: ${thread} | ${ms(p.total)} ms | ${ms(busy)} ms | ${kinds} | ${top} |\n`;
    }
  }
  return out;
}
function smallReport() {
  const shown = kinds.filter((kind) => small[kind]);
  if (!shown.length) return "";
  const name = { raw: "raw", meshdrop: "meshdrop", peerjs: "PeerJS" };
  const cell = (kind, size) => {
    const s = stats(small[kind][size]);
    return `${s.median} (${s.min}–${s.max})`;
  };
  const vs = (other, size) => (small.meshdrop && small[other] ? (stats(small.meshdrop[size]).median / stats(small[other][size]).median).toFixed(2) : "–");
  const kib = (size) => (size >= MiB ? `${size / MiB} MiB` : `${size / 1024} KiB`);
  return `
## Small files

One file after another on a connection already open (${SMALL_ROUNDS} of each size per implementation, sizes alternating): ms from the send call to the receiver holding the file, as above (meshdrop: verified, and stored in OPFS past 1 MiB: a file of one block, which cannot resume, is kept in memory; raw: 256 KiB messages, bytes counted; PeerJS: its "data" event). Time ratios (lower is faster).

| size | ${shown.map((k) => name[k]).join(" | ")} | meshdrop ÷ raw | meshdrop ÷ PeerJS |
|---|${shown.map(() => "---:").join("|")}|---:|---:|
${SMALL_SIZES.map((size) => `| ${kib(size)} | ${shown.map((k) => cell(k, size)).join(" | ")} | ${vs("raw", size)} | ${vs("peerjs", size)} |`).join("\n")}
`;
}
const m = (b) => (b / MiB).toFixed(1);
const chromiumVersion = execSync("/usr/bin/chromium --version 2>/dev/null").toString().trim();
const report = `# meshdrop file transfer benchmark

${new Date().toISOString()} · ${chromiumVersion} (headless; sender and receiver in two contexts of one browser, the receiver's with an on-disk profile) · loopback · ${sizeMiB} MiB file on disk, picked through <input type=file> · ${reps} interleaved rounds.
Time from the send call to the receiver holding all bytes: meshdrop's receiver has verified every block and the content hash and stored the file in OPFS (its \`done\` resolved to the File); raw's receiver counted the bytes and discarded them; PeerJS's receiver got its "data" event. "fresh": the transfer is the connection's first; "warm": the connection carried ${Math.min(WARM_UP / MiB, sizeMiB)} MiB first. The raw baseline is swept over message size / most buffered / low threshold; the ceiling for each mode is the best of those settings in this run. Speed ratios are of medians within this run (higher is faster); "paired by round" divides the two speeds of each round (every variant runs once per round, in a rotating order, minutes apart) and gives the median (min–max) of those ratios, which a machine whose speed drifts during the run moves less. Code: bench/transfer.mjs.

**meshdrop: fresh ${ratio("fresh")}; warm ${ratio("warm")}.**

| implementation | rounds | ms: median (min–max) | MB/s: median (min–max) | speed ÷ best raw (same mode) | paired by round | speed ÷ PeerJS |
|---|---:|---:|---:|---:|---:|---:|
${rows.join("\n")}
${smallReport()}${Object.keys(stalled).length ? `\nStalled (no result within ${deadlineMs(sizeMiB * MiB) / 1000} s; left out of the medians): ${Object.entries(stalled).map(([name, n]) => `${name} ${n} ×`).join(", ")}.\n` : ""}${memory ? `
## Memory during a ${memoryMiB} MiB transfer

meshdrop ${memory.meshdrop.ms === null ? "stalled" : `${memory.meshdrop.ms} ms (${((memoryMiB * MiB) / 1e6 / (memory.meshdrop.ms / 1000)).toFixed(1)} MB/s)`}, receiver verifying and storing in OPFS; raw ${ceilings.fresh?.setting ?? "256K/256K/0"} ${memory.raw.ms === null ? "stalled" : `${memory.raw.ms} ms`}, receiver discarding; raw's sender reads the file with \`slice().arrayBuffer()\`. Peak growth over the value before the transfer, sampled every 250 ms. Renderer RSS is the page's renderer process (the page, its workers, Blink's and WebRTC's buffers). Of that, by Chromium's memory-infra dump (taken once a second): ArrayBuffers is the renderer's ArrayBuffer partition, where every received frame lives until a collection frees it (V8 starts one when about 64 MiB of them are dead), and malloc is Blink's and WebRTC's own allocations.

| side | JS heap (page) | OPFS worker heap | wasm memory | ArrayBuffers | malloc | renderer RSS |
|---|---:|---:|---:|---:|---:|---:|
${[["meshdrop", "sender", "a"], ["meshdrop", "receiver", "b"], ["raw", "sender", "a"], ["raw", "receiver", "b"]]
  .map(([kind, side, x]) => {
    const p = memory[kind].peak;
    const dumped = (key) => (p[key] === undefined ? "–" : `${m(p[key])} MiB`);
    return `| ${kind} ${side} | ${m(p[`${x}Heap`])} MiB | ${x === "b" ? `${m(p.bWorker)} MiB` : "–"} | ${kind === "raw" ? "–" : `${m(p[`${x}Wasm`])} MiB`} | ${dumped(`${x}ArrayBuffers`)} | ${dumped(`${x}Malloc`)} | ${m(p[`${x}Rss`])} MiB |`;
  })
  .join("\n")}
` : ""}${profiles ? profileReport(profiles) : ""}`;
mkdirSync(path.join(ROOT, "bench/results"), { recursive: true });
writeFileSync(path.join(ROOT, "bench/results/transfer.md"), report);
console.log(report);
// PeerServer's own timers have no stop API and would keep Node running: everything this
// bench started is stopped above, so leave.
process.exit(0);
