// Transfers across browser engines: meshdrop's `sendFile` against the raw channel
// (bench/raw-channel.mjs, swept over its settings; the ceiling is the best of them in
// this run) with Firefox at one or both ends, where bench/transfer.mjs measures
// Chromium to Chromium. Same bytes, interleaved rounds, fresh connections.
// Usage: node bench/engines.mjs [--mib 64] [--reps 5]
//        [--pairs firefox>firefox,chromium>firefox,firefox>chromium]   (or `make bench`)
//
// Every page is a browser context of its own (its own storage, as another person's
// browser); both engines run headless through puppeteer-core (tests/e2e/engines.mjs).
// The file is a file on disk picked through an <input type=file>; meshdrop's receiver
// verifies every block and stores the file in OPFS, raw's receiver discards the bytes.
import { randomBytes } from "node:crypto";
import { closeSync, mkdirSync, openSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import os, { tmpdir } from "node:os";
import path from "node:path";
import { closeAll, openPage as openEnginePage } from "../tests/e2e/engines.mjs";
import { freePort, ROOT, startServer } from "../tests/e2e/helpers.mjs";
import { openRawPair, RAW_CHANNEL, RAW_SETTINGS } from "./raw-channel.mjs";

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const MiB = 1024 * 1024;
const sizeMiB = Number(arg("mib", "64"));
const reps = Number(arg("reps", "5"));
const pairs = arg("pairs", "firefox>firefox,chromium>firefox,firefox>chromium")
  .split(",")
  .map((pair) => {
    const [from, to] = pair.split(">");
    return { from, to, name: `${from} → ${to}` };
  });

const work = await mkdtemp(path.join(tmpdir(), "meshdrop-bench-"));
const server = await startServer(await freePort());
// Stopped early (Ctrl-C, a kill), the bench still stops the server it started and takes
// its file with it; puppeteer closes the browsers as the process exits.
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    server.child.kill("SIGKILL");
    rmSync(work, { recursive: true, force: true });
    process.exit(130);
  });
}
const file = path.join(work, `file-${sizeMiB}.bin`);
{
  const fd = openSync(file, "w");
  for (let written = 0; written < sizeMiB; written += 1) writeSync(fd, randomBytes(MiB));
  closeSync(fd);
}

const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return { min: s[0], median: s[Math.floor((s.length - 1) / 2)], max: s[s.length - 1] };
};
const log = (...a) => console.error(new Date().toISOString().slice(11, 23), ...a);

/** A page of `engine` with meshdrop loaded and the raw helpers, and the file picked if
 *  `withFile`. */
async function openPage(engine, name, withFile) {
  const person = await openEnginePage(engine, name);
  await person.goto(`${server.url}/healthz`);
  await person.page.addScriptTag({ content: RAW_CHANNEL });
  await person.evaluate(async () => {
    const mod = await import("/pkg/meshdrop.js");
    await mod.default();
    window.MeshdropPeer = mod.Peer;
    document.body.innerHTML = '<input type="file" id="f">';
  });
  if (withFile) {
    const input = await person.page.$("#f");
    await input.uploadFile(file);
    await person.evaluate(() => (window.file = document.getElementById("f").files[0]));
  }
  return person;
}

async function runRaw(a, b, setting) {
  const { chunk, cap, low } = RAW_SETTINGS[setting];
  await openRawPair(a, b, low);
  const done = b.evaluate((n) => window.rawReceive(n), sizeMiB * MiB);
  done.catch(() => {}); // awaited below; the send may fail first (pages closed)
  const t0 = await a.evaluate(({ chunk, cap }) => window.rawSend(window.file, chunk, cap), { chunk, cap });
  return (await done) - t0;
}

async function runMeshdrop(a, b, room) {
  const ws = `ws://127.0.0.1:${server.port}/ws`;
  await b.evaluate(
    async ({ ws, room }) => {
      const peer = await window.MeshdropPeer.join({ signalingUrl: ws, room, identity: "ephemeral" });
      window.peer = peer;
      window.received = new Promise((resolve, reject) =>
        peer.on("file-offer", (offer) => offer.accept().done.then((f) => resolve({ at: Date.now(), size: f.size }), reject)),
      );
    },
    { ws, room },
  );
  const bId = await b.evaluate(() => window.peer.id);
  await a.evaluate(
    async ({ ws, room, bId }) => {
      const peer = await window.MeshdropPeer.join({ signalingUrl: ws, room, identity: "ephemeral" });
      window.peer = peer;
      await new Promise((r) => (peer.peers().some((p) => p.id === bId) ? r() : peer.on("peer-joined", ({ id }) => id === bId && r())));
    },
    { ws, room, bId },
  );
  const t0 = await a.evaluate((bId) => {
    const t0 = Date.now();
    window.transfer = window.peer.sendFile(bId, window.file);
    return t0;
  }, bId);
  const { at, size } = await b.evaluate(() => window.received);
  if (size !== sizeMiB * MiB) throw new Error(`meshdrop delivered ${size} bytes of ${sizeMiB * MiB}`);
  await a.evaluate(() => window.transfer.done);
  return at - t0;
}

/** `run`'s result, or an error once it has taken longer than a 1 MB/s transfer would. */
function within(run, what) {
  const ms = Math.max(60_000, (sizeMiB * MiB) / 1e3);
  run.catch(() => {}); // it may still reject after the deadline, when its pages close
  let timer;
  const late = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: stalled, no result after ${ms / 1000} s`)), ms)));
  return Promise.race([run, late]).finally(() => clearTimeout(timer));
}

const variants = ["meshdrop", ...Object.keys(RAW_SETTINGS).map((s) => `raw ${s}`)];
const versions = {};
const results = [];
for (const pair of pairs) {
  const byRound = Object.fromEntries(variants.map((v) => [v, []]));
  const stalled = {};
  for (let rep = 0; rep < reps; rep++) {
    const order = variants.map((_, i) => variants[(i + rep) % variants.length]);
    for (const variant of order) {
      const a = await openPage(pair.from, "sender", true);
      const b = await openPage(pair.to, "receiver", false);
      versions[pair.from] ??= await a.page.browser().version();
      versions[pair.to] ??= await b.page.browser().version();
      const run = variant === "meshdrop" ? runMeshdrop(a, b, `bench-engines-${rep}-${Date.now()}`) : runRaw(a, b, variant.slice(4));
      try {
        const ms = await within(run, `${pair.name}, ${variant}`);
        byRound[variant][rep] = ms;
        log(`${pair.name}, ${variant}, round ${rep + 1}: ${ms} ms (${((sizeMiB * MiB) / 1e6 / (ms / 1000)).toFixed(1)} MB/s)`);
      } catch (err) {
        stalled[variant] = (stalled[variant] ?? 0) + 1;
        log(`${pair.name}, ${variant}, round ${rep + 1}: ${err.message}`);
      }
      await a.close();
      await b.close();
    }
  }
  results.push({ pair, byRound, stalled });
}
await closeAll();
await server.stop();
rmSync(work, { recursive: true, force: true });

const mbps = (ms) => (sizeMiB * MiB) / 1e6 / (ms / 1000);
const done = (times) => times.filter((ms) => ms !== undefined);
const rows = [];
const summary = [];
for (const { pair, byRound, stalled } of results) {
  const medians = Object.fromEntries(variants.filter((v) => done(byRound[v]).length).map((v) => [v, stats(done(byRound[v]))]));
  const best = variants.filter((v) => v !== "meshdrop" && medians[v]).sort((x, y) => medians[x].median - medians[y].median)[0];
  /** `v`'s speed ÷ the best raw's, round by round (both ran within a minute). */
  const paired = (v) => {
    const ratios = byRound[v].map((ms, i) => (ms && byRound[best][i] ? byRound[best][i] / ms : undefined)).filter((r) => r !== undefined);
    return ratios.length ? stats(ratios) : null;
  };
  for (const v of variants) {
    const st = medians[v];
    const p = best && v !== best ? paired(v) : null;
    rows.push(
      `| ${pair.name} | ${v}${v === best ? " **best raw**" : ""} | ${st ? `${st.median} (${st.min}–${st.max})` : "–"} | ${st ? mbps(st.median).toFixed(1) : "–"} | ${
        st && best ? (medians[best].median / st.median).toFixed(2) : "–"
      } | ${v === best ? "–" : p ? `${p.median.toFixed(2)} (${p.min.toFixed(2)}–${p.max.toFixed(2)})` : "–"} | ${done(byRound[v]).length}/${reps}${stalled[v] ? `, ${stalled[v]} stalled` : ""} |`,
    );
  }
  if (medians.meshdrop && best) {
    const p = paired("meshdrop");
    summary.push(`${pair.name} ${(medians[best].median / medians.meshdrop.median).toFixed(2)} (paired ${p ? p.median.toFixed(2) : "–"})`);
  }
}

const report = `# Transfers across browser engines

${new Date().toISOString()} · ${Object.entries(versions)
  .map(([engine, v]) => `${engine}: ${v}`)
  .join(" · ")} · ${os.cpus()[0]?.model ?? "cpu"}, ${os.cpus().length} cores · loopback · ${sizeMiB} MiB, ${reps} interleaved rounds per pair.

Time from the send call to the receiver holding every byte, on a fresh connection: meshdrop's receiver has verified every block and the content hash and stored the file in OPFS (its \`done\` resolved to the File); raw's receiver counted the bytes and discarded them. Each page is a browser context of its own; both engines headless. The raw channel (bench/raw-channel.mjs) is swept over message size / most buffered / low threshold, and the ceiling is the fastest of those settings for each pair in this run. "÷ best raw" is a ratio of medians (higher is faster); "paired by round" divides the two speeds of each round (all variants of a round run within a minute, in a rotating order) and gives the median (min–max) of those ratios. Chromium to Chromium is bench/transfer.mjs's. Code: bench/engines.mjs.

**meshdrop ÷ best raw: ${summary.join("; ")}.**

| sender → receiver | implementation | ms: median (min–max) | MB/s | ÷ best raw | paired by round | rounds |
|---|---|---:|---:|---:|---:|---:|
${rows.join("\n")}
`;
mkdirSync(path.join(ROOT, "bench/results"), { recursive: true });
writeFileSync(path.join(ROOT, "bench/results/engines.md"), report);
console.log(report);
process.exit(0);
