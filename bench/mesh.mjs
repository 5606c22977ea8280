// Mesh setup benchmark: time from `Peer.join` to the first and to the last
// `peer-joined`, for rooms of N tabs that all join at once, in one headless Chromium,
// against the real signaling server. Also records the gzipped bundle size.
// Usage: node bench/mesh.mjs [--sizes 2,8] [--reps 5]    (or `make bench`)
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { freePort, launchBrowser, ROOT, startServer } from "../tests/e2e/helpers.mjs";

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const sizes = arg("sizes", "2,8").split(",").map(Number);
const reps = Number(arg("reps", "5"));

const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return { min: s[0], median: s[Math.floor((s.length - 1) / 2)], max: s[s.length - 1] };
};
const fmt = ({ min, median, max }) => `${median.toFixed(0)} (${min.toFixed(0)}–${max.toFixed(0)})`;

const server = await startServer(await freePort(), ["--max-room-peers", "64", "--max-frames-per-sec", "1000"]);
const browser = await launchBrowser();
const ws = `ws://127.0.0.1:${server.port}/ws`;

async function round(n, rep) {
  const context = await browser.newContext();
  const pages = await Promise.all(Array.from({ length: n }, () => context.newPage()));
  await Promise.all(
    pages.map(async (page) => {
      await page.goto(`${server.url}/healthz`);
      await page.evaluate(async () => {
        const mod = await import("/pkg/meshdrop.js");
        await mod.default();
        window.Peer = mod.Peer;
      });
    }),
  );
  const room = `bench-${n}-${rep}-${Date.now()}`;
  const results = await Promise.all(
    pages.map((page) =>
      page.evaluate(
        async ({ ws, room, expected }) => {
          const t0 = performance.now();
          let first = null;
          const peer = await window.Peer.join({ signalingUrl: ws, room });
          const joinedAt = performance.now() - t0;
          await new Promise((resolve, reject) => {
            let count = 0;
            const timer = setTimeout(() => reject(new Error(`only ${count}/${expected} peers after 60 s`)), 60000);
            peer.on("peer-joined", () => {
              count += 1;
              if (first === null) first = performance.now() - t0;
              if (count === expected) {
                clearTimeout(timer);
                resolve();
              }
            });
          });
          const all = performance.now() - t0;
          window.peer = peer;
          return { joinedAt, first, all };
        },
        { ws, room, expected: n - 1 },
      ),
    ),
  );
  await Promise.all(pages.map((p) => p.evaluate(() => window.peer.leave())));
  await context.close();
  return results;
}

const rows = [];
const samples = Object.fromEntries(sizes.map((n) => [n, []]));
for (let rep = 0; rep < reps; rep++) {
  for (const n of sizes) samples[n].push(...(await round(n, rep))); // interleaved sizes
}
for (const n of sizes) {
  const s = samples[n];
  rows.push(`| ${n} | ${s.length} | ${fmt(stats(s.map((r) => r.joinedAt)))} | ${fmt(stats(s.map((r) => r.first)))} | ${fmt(stats(s.map((r) => r.all)))} |`);
}
await browser.close();
await server.stop();

const size = (file) => {
  const bytes = readFileSync(path.join(ROOT, "pkg", file));
  return { raw: bytes.length, gz: gzipSync(bytes, { level: 9 }).length };
};
const wasm = size("meshdrop_bg.wasm");
const js = size("meshdrop.js");
const kib = (b) => (b / 1024).toFixed(1);

const chromium = (await import("node:child_process")).execSync("/usr/bin/chromium --version").toString().trim();
const report = `# meshdrop mesh benchmark

${new Date().toISOString()} · ${chromium} (headless, one browser, one tab per peer) · loopback · ${reps} interleaved rounds per size, every peer of every round is a sample.
All peers of a room call \`Peer.join\` at the same moment. Times in ms from that call: median (min–max).

| peers | samples | join resolved | first \`peer-joined\` | all \`peer-joined\` |
|---:|---:|---:|---:|---:|
${rows.join("\n")}

## Bundle size (pkg/, release, wasm-opt -Oz)

| file | bytes | gzip -9 |
|---|---:|---:|
| meshdrop_bg.wasm | ${kib(wasm.raw)} KiB | ${kib(wasm.gz)} KiB |
| meshdrop.js | ${kib(js.raw)} KiB | ${kib(js.gz)} KiB |
| **total** | ${kib(wasm.raw + js.raw)} KiB | **${kib(wasm.gz + js.gz)} KiB** |
`;
mkdirSync(path.join(ROOT, "bench/results"), { recursive: true });
writeFileSync(path.join(ROOT, "bench/results/mesh.md"), report);
console.log(report);
