// Where a transfer's time goes: Chromium's sampling CPU profiler on the sender's and
// the receiver's page while one file moves (warm connection), self time summed by
// function, top entries printed. The OPFS worker is not in a page profile; its share
// shows as the receiver page waiting. Usage: node bench/profile-transfer.mjs [--mib 128]
import { apiPage, freePort, launchBrowser, startServer } from "../tests/e2e/helpers.mjs";

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const MIB = Number(arg("mib", "128"));
const browser = await launchBrowser();
const server = await startServer(await freePort());
const [sender, receiver] = [await apiPage(browser, server), await apiPage(browser, server)];
const url = `ws://127.0.0.1:${server.port}/ws`;
for (const side of [sender, receiver]) {
  await side.page.evaluate(async (url) => {
    window.peer = await window.meshdrop.Peer.join({ signalingUrl: url, room: "profile", identity: "ephemeral" });
    window.peer.on("file-offer", (offer) => (window.received = offer.accept().done));
  }, url);
}
const receiverId = await receiver.page.evaluate(() => window.peer.id);
await sender.page.waitForFunction((id) => window.peer.peers().some((p) => p.id === id), receiverId, { timeout: 20000 });
const send = (mib) =>
  sender.page.evaluate(
    async ({ id, mib }) => {
      const bytes = new Uint8Array(mib * 1024 * 1024);
      for (let i = 0; i < bytes.length; i += 4096) bytes[i] = i & 255;
      const start = performance.now();
      await window.peer.sendFile(id, new File([bytes], `f${mib}.bin`)).done;
      return performance.now() - start;
    },
    { id: receiverId, mib },
  );
await send(32); // warm the connection and the code
const sessions = await Promise.all([sender, receiver].map((side) => side.context.newCDPSession(side.page)));
for (const cdp of sessions) {
  await cdp.send("Profiler.enable");
  await cdp.send("Profiler.setSamplingInterval", { interval: 200 });
  await cdp.send("Profiler.start");
}
const ms = await send(MIB);
const profiles = await Promise.all(sessions.map((cdp) => cdp.send("Profiler.stop").then((r) => r.profile)));

function summarize(profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const deltas = profile.timeDeltas;
  profile.samples.forEach((id, i) => {
    const node = byId.get(id);
    const f = node.callFrame;
    const name = f.functionName || (f.url ? "(anonymous)" : node.callFrame.functionName || "(program)");
    const where = f.url ? f.url.split("/").pop() : "";
    const key = where ? `${name} (${where})` : name;
    self.set(key, (self.get(key) ?? 0) + (deltas[i] ?? 0) / 1000);
  });
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  return { total, top: [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 12) };
}
console.log(`# ${MIB} MiB in ${ms.toFixed(0)} ms (${((MIB * 1.048576) / (ms / 1000)).toFixed(1)} MB/s), warm connection\n`);
for (const [label, profile] of [["sender", profiles[0]], ["receiver", profiles[1]]]) {
  const { total, top } = summarize(profile);
  console.log(`## ${label} page: self time, ms (share of ${total.toFixed(0)} ms sampled)\n`);
  console.log("| function | ms | share |\n|---|---:|---:|");
  for (const [name, t] of top) console.log(`| ${name.replace(/\|/g, "\\|")} | ${t.toFixed(0)} | ${((100 * t) / total).toFixed(1)}% |`);
  console.log();
}
await browser.close();
await server.stop();
process.exit(0);
