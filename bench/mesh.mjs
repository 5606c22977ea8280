// Mesh setup benchmark: time from `Peer.join` to the first and to the last
// `peer-joined`, for rooms of N tabs that all join at once, in one headless Chromium,
// against the real signaling server. Also records the gzipped bundle size.
// Usage: node bench/mesh.mjs [--sizes 2,8] [--reps 5]    (or `make bench`)
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { PeerServer } from "peer";
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
const browser = await launchBrowser((process.env.BENCH_CHROMIUM_ARGS ?? "").split(" ").filter(Boolean));
const ws = `ws://127.0.0.1:${server.port}/ws`;
// PeerJS's own signaling server, as its docs set it up, on loopback.
const peerjsPort = await freePort();
const peerServer = PeerServer({ host: "127.0.0.1", port: peerjsPort, path: "/" });
await new Promise((r) => setTimeout(r, 200));
const PEERJS_LIB = readFileSync(path.join(ROOT, "node_modules/peerjs/dist/peerjs.min.js"), "utf8");
const SIMPLE_PEER_LIB = readFileSync(path.join(ROOT, "node_modules/simple-peer/simplepeer.min.js"), "utf8");

// The ceiling: hand-written RTCPeerConnection + negotiated data channel, trickle ICE,
// the same server and the same rule for who offers. No library, no wasm.
const RAW_PEER = `
window.rawJoin = (ws, room, expected) => new Promise((resolve, reject) => {
  const t0 = performance.now();
  const sock = new WebSocket(ws);
  const pcs = new Map();
  let me, joinedAt, first = null, open = 0;
  const send = (to, data) => sock.send(JSON.stringify({ type: "signal", to, data }));
  const connect = (id) => {
    const pc = new RTCPeerConnection({ iceServers: [] });
    const dc = pc.createDataChannel("raw", { negotiated: true, id: 0 });
    dc.onopen = () => {
      open += 1;
      if (first === null) first = performance.now() - t0;
      if (open === expected) resolve({ joinedAt, first, all: performance.now() - t0 });
    };
    pc.onicecandidate = (e) => e.candidate && send(id, { c: e.candidate.toJSON() });
    pcs.set(id, pc);
    return pc;
  };
  const offer = async (id) => {
    const pc = connect(id);
    await pc.setLocalDescription();
    send(id, { sdp: pc.localDescription });
  };
  sock.onopen = () => sock.send(JSON.stringify({ type: "join", room }));
  sock.onerror = reject;
  sock.onmessage = async (e) => {
    const m = JSON.parse(e.data);
    if (m.type === "welcome") {
      me = m.id;
      joinedAt = performance.now() - t0;
      for (const p of m.peers) if (me < p.id) offer(p.id);
    } else if (m.type === "peer-joined") {
      if (me < m.peer.id) offer(m.peer.id);
    } else if (m.type === "signal") {
      const pc = pcs.get(m.from) ?? connect(m.from);
      if (m.data.sdp) {
        await pc.setRemoteDescription(m.data.sdp);
        if (m.data.sdp.type === "offer") {
          await pc.setLocalDescription();
          send(m.from, { sdp: pc.localDescription });
        }
      } else if (m.data.c) {
        await pc.addIceCandidate(m.data.c);
      }
    }
  };
  window.rawSockets = (window.rawSockets ?? []).concat([sock, pcs]);
});`;

// simple-peer through the same server and offer rule as raw: its documented usage.
const SIMPLE_PEER = `
window.simpleJoin = (ws, room, expected) => new Promise((resolve, reject) => {
  const t0 = performance.now();
  const sock = new WebSocket(ws);
  const peers = new Map();
  let me, joinedAt, first = null, open = 0;
  const make = (id, initiator) => {
    const p = new SimplePeer({ initiator, trickle: true, config: { iceServers: [] } });
    p.on("signal", (data) => sock.send(JSON.stringify({ type: "signal", to: id, data })));
    p.on("connect", () => {
      open += 1;
      if (first === null) first = performance.now() - t0;
      if (open === expected) resolve({ joinedAt, first, all: performance.now() - t0 });
    });
    p.on("error", reject);
    peers.set(id, p);
    return p;
  };
  sock.onopen = () => sock.send(JSON.stringify({ type: "join", room }));
  sock.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.type === "welcome") {
      me = m.id;
      joinedAt = performance.now() - t0;
      for (const p of m.peers) if (me < p.id) make(p.id, true);
    } else if (m.type === "peer-joined") {
      if (me < m.peer.id) make(m.peer.id, true);
    } else if (m.type === "signal") {
      (peers.get(m.from) ?? make(m.from, false)).signal(m.data);
    }
  };
  window.keep = [sock, peers];
});`;

// PeerJS as documented: register with its server, then connect by id. It has no
// rooms, so ids are agreed in advance; each page connects to the ids after its own.
const PEERJS_PEER = `
window.peerjsJoin = (port, ids, index) => new Promise((resolve, reject) => {
  const t0 = performance.now();
  const expected = ids.length - 1;
  let joinedAt, first = null, open = 0;
  const peer = new window.peerjs.Peer(ids[index], { host: "127.0.0.1", port, path: "/", config: { iceServers: [] } });
  const opened = () => {
    open += 1;
    if (first === null) first = performance.now() - t0;
    if (open === expected) resolve({ joinedAt, first, all: performance.now() - t0 });
  };
  peer.on("connection", (conn) => conn.on("open", opened));
  peer.on("error", reject);
  peer.on("open", () => {
    joinedAt = performance.now() - t0;
    const tryConnect = (id, attempt) => {
      const conn = peer.connect(id, { reliable: true });
      conn.on("open", opened);
      // The other page may not have registered yet: PeerJS reports it and we retry.
      conn.on("error", () => attempt < 50 && setTimeout(() => tryConnect(id, attempt + 1), 10));
    };
    for (const id of ids.slice(index + 1)) tryConnect(id, 0);
  });
  peer.on("error", (e) => { if (e.type !== "peer-unavailable") reject(e); });
  window.keep = peer;
});`;

async function round(kind, n, rep) {
  const context = await browser.newContext();
  const pages = await Promise.all(Array.from({ length: n }, () => context.newPage()));
  await Promise.all(
    pages.map(async (page) => {
      await page.goto(`${server.url}/healthz`);
      await page.addScriptTag({ content: RAW_PEER });
      await page.addScriptTag({ content: SIMPLE_PEER_LIB + SIMPLE_PEER });
      await page.addScriptTag({ content: PEERJS_LIB + PEERJS_PEER });
      await page.evaluate(async () => {
        const mod = await import("/pkg/meshdrop.js");
        await mod.default();
        window.MeshdropPeer = mod.Peer;
      });
    }),
  );
  const room = `bench-${kind}-${n}-${rep}-${Date.now()}`;
  const ids = pages.map((_, i) => `${room}-${i}`);
  const results = await Promise.all(
    pages.map((page, index) =>
      page.evaluate(
        async ({ kind, ws, room, expected, peerjsPort, ids, index }) => {
          if (kind === "raw") return window.rawJoin(ws, room, expected);
          if (kind === "simple-peer") return window.simpleJoin(ws, room, expected);
          if (kind === "peerjs") return window.peerjsJoin(peerjsPort, ids, index);
          const t0 = performance.now();
          let first = null;
          const peer = await window.MeshdropPeer.join({ signalingUrl: ws, room });
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
          window.peer = peer;
          return { joinedAt, first, all: performance.now() - t0 };
        },
        { kind, ws, room, expected: n - 1, peerjsPort, ids, index },
      ),
    ),
  );
  await context.close();
  return results;
}

const KINDS = ["meshdrop", "raw", "simple-peer", "peerjs"];
const rows = [];
const samples = Object.fromEntries(sizes.flatMap((n) => KINDS.map((k) => [`${k}/${n}`, []])));
for (let rep = 0; rep < reps; rep++) {
  // Interleaved: sizes and implementations rotate, so drift hits all alike.
  const order = KINDS.map((_, i) => KINDS[(i + rep) % KINDS.length]);
  for (const n of sizes) for (const kind of order) samples[`${kind}/${n}`].push(...(await round(kind, n, rep)));
}
for (const n of sizes) {
  const median = (kind, key) => stats(samples[`${kind}/${n}`].map((r) => r[key])).median;
  for (const kind of KINDS) {
    const s = samples[`${kind}/${n}`];
    const ratio = (median(kind, "all") / median("raw", "all")).toFixed(2);
    rows.push(`| ${n} | ${kind} | ${s.length} | ${fmt(stats(s.map((r) => r.joinedAt)))} | ${fmt(stats(s.map((r) => r.first)))} | ${fmt(stats(s.map((r) => r.all)))} | ${ratio} |`);
  }
}
await browser.close();
await server.stop();
peerServer.close?.();

const size = (file) => {
  const bytes = readFileSync(path.join(ROOT, "pkg", file));
  return { raw: bytes.length, gz: gzipSync(bytes, { level: 9 }).length };
};
const wasm = size("meshdrop_bg.wasm");
const js = size("meshdrop.js");
const kib = (b) => (b / 1024).toFixed(1);

const chromium = (await import("node:child_process")).execSync("/usr/bin/chromium --version 2>/dev/null").toString().trim();
const report = `# meshdrop mesh benchmark

${new Date().toISOString()} · ${chromium} (headless, one browser, one tab per peer) · loopback · ${reps} interleaved rounds per size, every peer of every round is a sample.
All peers of a room call \`Peer.join\` at the same moment. Times in ms from that call: median (min–max).
"raw" is the ceiling: a hand-written RTCPeerConnection with a negotiated data channel and trickle ICE through the same server; "simple-peer" uses that server too; "peerjs" uses its own PeerServer (npm \`peer\`) on loopback, registers, then connects to ids agreed in advance ("welcomed" = registered). All code in bench/mesh.mjs.

| peers | implementation | samples | welcomed | first channel open (\`peer-joined\`) | all channels open | all-open time ÷ raw |
|---:|---|---:|---:|---:|---:|---:|
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
