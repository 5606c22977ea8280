// Multi-source download benchmark, where it matters: on loopback every holder shares
// one CPU, so more holders show nothing. Here each holder is its own host (a network
// namespace with its own Chromium) whose uplink `tc` limits to --holder-mbit, and the
// downloader's downlink to --downloader-mbit; a file shared by all is downloaded from
// 1, 2, 3 and 4 of them, interleaved, and compared with N × one holder's rate.
// Needs root (namespaces); documentation addresses only; everything it creates is
// removed at the end. Usage: node bench/multisource.mjs [--mib 48] [--reps 2]
//   [--holder-mbit 16] [--downloader-mbit 320]   (or `make bench`)
// 16 Mbit/s a holder by default: at 32 four holders send 11 MB/s, and their browsers
// and the downloader's (five Chromiums) keep both cores of a two-core machine busy
// (vmstat: 5–10 % idle), so the bench would measure the CPU, not the scaling.
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { freePort, ROOT } from "../tests/e2e/helpers.mjs";
import { isRoot, Lan } from "../tests/e2e/netns.mjs";

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const MiB = 1024 * 1024;
const sizeMiB = Number(arg("mib", "48"));
const reps = Number(arg("reps", "2"));
const holderMbit = Number(arg("holder-mbit", "16"));
const downloaderMbit = Number(arg("downloader-mbit", "320"));
const HOLDERS = 4;

if (!isRoot()) {
  console.error("bench/multisource.mjs needs root (network namespaces); skipped");
  process.exit(0);
}

const hosts = { downloader: { down: `${downloaderMbit}mbit` } };
for (let i = 1; i <= HOLDERS; i++) hosts[`holder${i}`] = { up: `${holderMbit}mbit` };
const lan = new Lan(hosts).up();
const results = {};
try {
  const server = await lan.signal(await freePort());
  const room = `multi-${Date.now()}`;
  /** A page of the package in `host`'s own Chromium, joined to the room. */
  async function person(host) {
    // Host candidates as addresses, not mDNS names: there is no STUN server here, and
    // the namespaces do not resolve each other's .local names.
    const browser = await lan.chromium(host, server.url, ["--disable-features=WebRtcHideLocalIpsWithMdns"]);
    const page = await (await browser.newContext()).newPage();
    page.on("pageerror", (e) => console.error(`[${host}]`, e));
    await page.goto(`${server.url}/healthz`);
    await page.evaluate(
      async ({ ws, room }) => {
        const mod = await import("/pkg/meshdrop.js");
        await mod.default();
        window.peer = await mod.Peer.join({ signalingUrl: ws, room, identity: "ephemeral" });
      },
      { ws: server.ws, room },
    );
    return page;
  }
  const downloader = await person("downloader");
  const holders = [];
  for (let i = 1; i <= HOLDERS; i++) holders.push(await person(`holder${i}`));
  await downloader.waitForFunction((n) => window.peer.peers().length === n, HOLDERS, { timeout: 60000 });
  // The same bytes on every holder (from one seed), shared under one name.
  for (const holder of holders) {
    await holder.evaluate(async (size) => {
      const bytes = new Uint8Array(size);
      const words = new Uint32Array(bytes.buffer);
      let x = 0x9e3779b9;
      for (let i = 0; i < words.length; i++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        words[i] = x >>> 0;
      }
      await window.peer.share(new File([bytes], "big.bin"));
    }, sizeMiB * MiB);
  }
  for (let rep = 0; rep < reps; rep++) {
    for (const k of rep % 2 ? [4, 3, 2, 1] : [1, 2, 3, 4]) {
      const ms = await downloader.evaluate(async (k) => {
        const hits = await window.peer.find("big.bin", { timeoutMs: 5000 });
        if (hits.length < k) throw new Error(`only ${hits.length} holders found`);
        const t0 = performance.now();
        const t = window.peer.download(hits.slice(0, k));
        await t.done;
        return performance.now() - t0;
      }, k);
      (results[k] ??= []).push(ms);
      console.error(`${k} holder(s), round ${rep + 1}: ${ms.toFixed(0)} ms (${((sizeMiB * MiB) / 1e6 / (ms / 1000)).toFixed(2)} MB/s)`);
    }
  }
} finally {
  lan.destroy();
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
const rate = (ms) => (sizeMiB * MiB) / 1e6 / (ms / 1000);
const one = rate(median(results[1]));
const rows = Object.keys(results).map((k) => {
  const r = rate(median(results[k]));
  return `| ${k} | ${results[k].length} | ${median(results[k]).toFixed(0)} | ${r.toFixed(2)} | ${(r / (k * one)).toFixed(2)} |`;
});
const report = `# meshdrop multi-source download benchmark

${new Date().toISOString()} · each holder its own host (network namespace and Chromium) with its uplink limited to ${holderMbit} Mbit/s (${(holderMbit / 8).toFixed(1)} MB/s), the downloader's downlink to ${downloaderMbit} Mbit/s · ${sizeMiB} MiB file shared by all · ${reps} interleaved rounds · time from \`download\` to its \`done\` (every block verified, stored in OPFS). "÷ N × one" is the rate over N times the one-holder rate (1.00 is perfect scaling). Code: bench/multisource.mjs.

| holders | rounds | ms (median) | MB/s | ÷ N × one |
|---:|---:|---:|---:|---:|
${rows.join("\n")}
`;
mkdirSync(path.join(ROOT, "bench/results"), { recursive: true });
writeFileSync(path.join(ROOT, "bench/results/multisource.md"), report);
console.log(report);
process.exit(0);
