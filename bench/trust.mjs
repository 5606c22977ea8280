// What "trust no server" costs a connection: time from the second peer's join to its
// "peer-joined" (the connection opened and both bindings verified), median over many
// fresh pairs, without and with a room secret; and, given `--baseline DIR` (a www/
// directory holding an older build's pkg/), the same for that build, in the same run.
// Usage: node bench/trust.mjs [--pairs 24] [--baseline /path/to/old/www]
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { apiPage, freePort, launchBrowser, ROOT, startServer } from "../tests/e2e/helpers.mjs";

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const PAIRS = Number(arg("pairs", "24"));
const BASELINE = arg("baseline", null);

const browser = await launchBrowser();
const servers = { current: await startServer(await freePort()) };
if (BASELINE) servers.baseline = await startServer(await freePort(), ["--www", BASELINE]);

const tab = (server) => apiPage(browser, server);

/** Ms from the second peer's join call to its join resolving, and to the first peer
 *  connected (its "peer-joined", which may come before the join resolves). */
async function pair(server, room, roomSecret) {
  const [a, b] = [await tab(server), await tab(server)];
  const url = `ws://127.0.0.1:${server.port}/ws`;
  await a.page.evaluate(
    async ({ url, room, roomSecret }) => {
      window.peer = await window.meshdrop.Peer.join({ signalingUrl: url, room, identity: "ephemeral", ...(roomSecret ? { roomSecret } : {}) });
    },
    { url, room, roomSecret },
  );
  const ms = await b.page.evaluate(
    async ({ url, room, roomSecret }) => {
      const start = performance.now();
      const peer = await window.meshdrop.Peer.join({ signalingUrl: url, room, identity: "ephemeral", ...(roomSecret ? { roomSecret } : {}) });
      const joined = performance.now();
      await new Promise((resolve) => (peer.peers().length ? resolve() : peer.on("peer-joined", resolve)));
      window.peer = peer;
      return { join: joined - start, connect: performance.now() - start };
    },
    { url, room, roomSecret },
  );
  await a.context.close();
  await b.context.close();
  return ms;
}

const median = (xs) => {
  const s = [...xs].sort((p, q) => p - q);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const modes = [
  ["current", "no room secret", undefined],
  ["current", "room secret", "correct horse battery staple"],
];
if (BASELINE) modes.unshift(["baseline", "before identity keys (baseline build)", undefined]);
const samples = Object.fromEntries(modes.map(([, label]) => [label, []]));
// Interleaved, so drift hits every mode alike; one warm-up pair each first.
for (let round = -1; round < PAIRS; round++) {
  for (const [server, label, secret] of modes) {
    const ms = await pair(servers[server], `trust-${round + 1}-${label.replace(/\W/g, "")}`, secret);
    if (round >= 0) samples[label].push(ms);
  }
}
let report = `# what trust costs a connection

${new Date().toISOString()} · Chromium, one browser, loopback · ${PAIRS} fresh pairs per mode (interleaved, after one warm-up), each peer in its own context. "join": from the second peer's \`Peer.join\` call to its promise resolving (challenge, signed join, welcome, storage); "connected": from the same call to the first peer connected ("peer-joined": offer/answer, ICE, DTLS, both bindings verified; with a room secret also the SPAKE2 exchange and MACs). Code: bench/trust.mjs.

| mode | join, ms: median (min–max) | connected, ms: median (min–max) |
|---|---:|---:|
`;
for (const [label, xs] of Object.entries(samples)) {
  const j = xs.map((x) => x.join);
  const c = xs.map((x) => x.connect);
  report += `| ${label} | ${median(j).toFixed(1)} (${Math.min(...j).toFixed(1)}–${Math.max(...j).toFixed(1)}) | ${median(c).toFixed(1)} (${Math.min(...c).toFixed(1)}–${Math.max(...c).toFixed(1)}) |\n`;
}
mkdirSync(path.join(ROOT, "bench/results"), { recursive: true });
writeFileSync(path.join(ROOT, "bench/results/trust.md"), report);
console.log(report);
await browser.close();
for (const server of Object.values(servers)) await server.stop();
process.exit(0);
