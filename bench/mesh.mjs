// Mesh benchmark: for rooms of N tabs that all join at once, in one headless Chromium,
// against the real signaling server: time from `Peer.join` to the first and to the
// last `peer-joined`, then broadcast delivery once everyone is connected (one message
// to all; every peer broadcasting a burst at once). Also records the bundle size.
// Usage: node bench/mesh.mjs [--sizes 2,4,8,16,32] [--reps 3] [--kinds meshdrop,raw,...]
//        [--settle MS]: join MS after the pages loaded their libraries (default 0: at
//        once, as a page that joins right after `init()`; 1000: as a page where the
//        user clicks "join" later, which is when work `init()` starts can have finished).
//        [--phases 1]: also time each tab's way to "all open" step by step (socket, challenge
//        and join, welcome, first connection, channels), from the browser's own objects, to
//        show where setup time goes; adds a listener or two to every socket and connection
//        of every kind.
//        It also traces the joins (Chromium's trace: each tab's main-thread CPU from its
//        join to "all open", and how much of it went to compiling JS and wasm), and
//        meshdrop's first burst (the time V8's optimising compiler spent on its wasm).
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { PeerServer } from "peer";
import { freePort, launchBrowser, ROOT, startServer } from "../tests/e2e/helpers.mjs";

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const sizes = arg("sizes", "2,4,8,16,32").split(",").map(Number);
const reps = Number(arg("reps", "3"));
const settleMs = Number(arg("settle", "0"));
const phases = arg("phases", "0") === "1";
/** Messages in a burst, all peers together: each of N peers broadcasts its share to
 *  the N − 1 others (at least 2 each). A fixed total keeps the load comparable across
 *  sizes; 20 each at 32 peers (19,840 messages) took raw channels 90 s here and made
 *  Chromium drop meshdrop's connections. */
const BURST_TOTAL = 2000;
const burstOf = (n) => Math.max(2, Math.round(BURST_TOTAL / (n * (n - 1))));
const MESSAGE = "x".repeat(1024);
/** How far ahead the tabs' common start is set (plus 20 ms a tab): long enough for
 *  every tab to have been handed its join. */
const START_LEAD_MS = 200;

const stats = (xs) => {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  return { min: s[0], median: s[Math.floor((s.length - 1) / 2)], max: s[s.length - 1] };
};
const fmt = (st) => (st ? `${st.median.toFixed(0)} (${st.min.toFixed(0)}–${st.max.toFixed(0)})` : "–");

const server = await startServer(await freePort(), ["--max-room-peers", "64", "--max-frames-per-sec", "1000"]);
const browser = await launchBrowser((process.env.BENCH_CHROMIUM_ARGS ?? "").split(" ").filter(Boolean));
const ws = `ws://127.0.0.1:${server.port}/ws`;
// PeerJS's own signaling server, as its docs set it up, on loopback.
const peerjsPort = await freePort();
let peerHttp;
PeerServer({ host: "127.0.0.1", port: peerjsPort, path: "/" }, (server) => (peerHttp = server));
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
  const channels = [];
  window.broadcast = (data) => channels.forEach((dc) => dc.send(data));
  let me, joinedAt, first = null, open = 0;
  const send = (to, data) => sock.send(JSON.stringify({ type: "signal", to, data }));
  const connect = (id) => {
    const pc = new RTCPeerConnection({ iceServers: [] });
    const dc = pc.createDataChannel("raw", { negotiated: true, id: 0 });
    dc.onmessage = () => window.onBroadcast();
    dc.onopen = () => {
      channels.push(dc);
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
  window.broadcast = (data) => peers.forEach((p) => p.connected && p.send(data));
  let me, joinedAt, first = null, open = 0;
  const make = (id, initiator) => {
    const p = new SimplePeer({ initiator, trickle: true, config: { iceServers: [] } });
    p.on("signal", (data) => sock.send(JSON.stringify({ type: "signal", to: id, data })));
    p.on("data", () => window.onBroadcast());
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
  const conns = [];
  window.broadcast = (data) => conns.forEach((c) => c.send(data));
  const opened = (conn) => {
    conns.push(conn);
    conn.on("data", () => window.onBroadcast());
    open += 1;
    if (first === null) first = performance.now() - t0;
    if (open === expected) resolve({ joinedAt, first, all: performance.now() - t0 });
  };
  peer.on("connection", (conn) => conn.on("open", () => opened(conn)));
  peer.on("error", reject);
  peer.on("open", () => {
    joinedAt = performance.now() - t0;
    const tryConnect = (id, attempt) => {
      const conn = peer.connect(id, { reliable: true });
      conn.on("open", () => opened(conn));
      // The other page may not have registered yet: PeerJS reports it and we retry.
      conn.on("error", () => attempt < 50 && setTimeout(() => tryConnect(id, attempt + 1), 10));
    };
    for (const id of ids.slice(index + 1)) tryConnect(id, 0);
  });
  peer.on("error", (e) => { if (e.type !== "peer-unavailable") reject(e); });
  window.keep = peer;
});`;

/** CPU ms used so far by every process of the browser (from /proc; the clock ticks at
 *  100 Hz): on a two-core machine setup is CPU-bound, and CPU is steadier than time. */
async function chromiumCpuMs() {
  const cdp = await browser.newBrowserCDPSession();
  const { processInfo } = await cdp.send("SystemInfo.getProcessInfo");
  await cdp.detach();
  let ticks = 0;
  for (const { id } of processInfo) {
    try {
      const stat = readFileSync(`/proc/${id}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // The process ended meanwhile.
    }
  }
  return ticks * 10;
}

/** Starts a Chromium trace of every process; the returned function stops it and
 *  resolves to its events. Categories: task and V8 compile events with thread time,
 *  the pages' `console.timeStamp` marks, and wasm's lazy compilation. */
async function startTrace() {
  const cdp = await browser.newBrowserCDPSession();
  const events = [];
  cdp.on("Tracing.dataCollected", (e) => events.push(...e.value));
  const categories = ["toplevel", "devtools.timeline", "v8", "disabled-by-default-v8.compile", "v8.wasm"];
  await cdp.send("Tracing.start", { traceConfig: { includedCategories: categories }, transferMode: "ReportEvents" });
  return async () => {
    const complete = new Promise((resolve) => cdp.once("Tracing.tracingComplete", resolve));
    await cdp.send("Tracing.end");
    await complete;
    await cdp.detach();
    return events;
  };
}

/** Each tab's main thread from its join mark (`console.timeStamp("bench-join-<index>")`)
 *  for `ms[index]`: CPU (thread time of the tasks that started then), and of it the time
 *  V8 spent compiling JS functions and wasm functions on their first call. */
function mainThreadCosts(events, ms) {
  const starts = new Map();
  for (const e of events) {
    const mark = e.name === "TimeStamp" ? /^bench-join-(\d+)$/.exec(e.args?.data?.message ?? "") : null;
    if (mark) starts.set(Number(mark[1]), { pid: e.pid, tid: e.tid, ts: e.ts });
  }
  return ms.map((duration, index) => {
    const start = starts.get(index);
    if (!start) return null;
    const end = start.ts + duration * 1000;
    const sum = { cpu: 0, js: 0, wasm: 0 };
    for (const e of events) {
      if (e.ph !== "X" || e.pid !== start.pid || e.tid !== start.tid || e.ts < start.ts || e.ts > end) continue;
      const cpu = (e.tdur ?? e.dur ?? 0) / 1000;
      if (e.name === "ThreadControllerImpl::RunTask") sum.cpu += cpu;
      else if (e.name === "V8.CompileCode") sum.js += cpu;
      else if (e.name === "wasm.CompileLazy") sum.wasm += cpu;
    }
    return sum;
  });
}

/** Step times for `--phases`, ms from the tab's join, recorded by wrapping the
 *  browser's WebSocket and RTCPeerConnection: the same for every implementation. */
const PHASES = `(() => {
  const marks = (window.phaseMarks = {});
  const at = () => performance.now() - window.phaseStart;
  const first = (name) => window.phaseStart !== undefined && !(name in marks) && (marks[name] = at());
  const latest = (name) => window.phaseStart !== undefined && (marks[name] = at());
  const Socket = window.WebSocket;
  window.WebSocket = class extends Socket {
    constructor(...args) {
      super(...args);
      first("socket created");
      this.addEventListener("open", () => first("socket open"));
      this.addEventListener("message", (e) => {
        if (typeof e.data !== "string") return;
        if (/"type":"(welcome|OPEN)"/.test(e.data)) first("welcomed");
        if (e.data.includes('"type":"challenge"')) first("challenged");
      });
    }
    send(data) {
      if (typeof data === "string" && data.includes('"type":"join"')) first("join sent");
      return super.send(data);
    }
  };
  const Connection = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Connection {
    constructor(...args) {
      super(...args);
      first("first connection");
      this.addEventListener("connectionstatechange", () => this.connectionState === "connected" && first("first connected"));
      const watch = (channel) => channel.addEventListener("open", () => (first("first channel open"), latest("last channel open")));
      this.addEventListener("datachannel", (e) => watch(e.channel));
      const create = this.createDataChannel.bind(this);
      this.createDataChannel = (...a) => {
        const channel = create(...a);
        watch(channel);
        return channel;
      };
    }
  };
})();`;
const PHASE_NAMES = ["socket created", "socket open", "challenged", "join sent", "welcomed", "first connection", "first connected", "first channel open", "last channel open"];

async function round(kind, n, rep) {
  const context = await browser.newContext();
  if (phases) await context.addInitScript({ content: PHASES });
  try {
    return await roundIn(context, kind, n, rep);
  } finally {
    await context.close().catch(() => {});
  }
}

async function roundIn(context, kind, n, rep) {
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
  if (settleMs > 0) await new Promise((resolve) => setTimeout(resolve, settleMs));
  const room = `bench-${kind}-${n}-${rep}-${Date.now()}`;
  const ids = pages.map((_, i) => `${room}-${i}`);
  const cpuBefore = await chromiumCpuMs();
  const stopTrace = phases ? await startTrace() : null;
  // Every tab starts at one instant: handed over one by one, the starts spread by
  // 20–130 ms, and each tab's time counts from its own start, so a tab that started
  // late found the others waiting and one that started early waited for them.
  const startAt = Date.now() + START_LEAD_MS + 20 * n;
  const results = await Promise.all(
    pages.map((page, index) =>
      page.evaluate(
        async ({ kind, ws, room, expected, peerjsPort, ids, index, startAt }) => {
          await new Promise((resolve) => setTimeout(resolve, startAt - (performance.timeOrigin + performance.now())));
          const late = performance.timeOrigin + performance.now() - startAt;
          window.phaseStart = performance.now();
          console.timeStamp(`bench-join-${index}`);
          const meshdropJoin = async () => {
            const t0 = performance.now();
            let first = null;
            const peer = await window.MeshdropPeer.join({ signalingUrl: ws, room });
            const joinedAt = performance.now() - t0;
            await new Promise((resolve, reject) => {
              let count = 0;
              const timer = setTimeout(() => reject(new Error(`only ${count}/${expected} peers after 120 s`)), 120000);
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
            peer.on("message", () => window.onBroadcast());
            window.broadcast = (data) => peer.broadcast(data);
            return { joinedAt, first, all: performance.now() - t0 };
          };
          const joins = {
            raw: () => window.rawJoin(ws, room, expected),
            "simple-peer": () => window.simpleJoin(ws, room, expected),
            peerjs: () => window.peerjsJoin(peerjsPort, ids, index),
            meshdrop: meshdropJoin,
          };
          return { ...(await joins[kind]()), late, marks: window.phaseMarks };
        },
        { kind, ws, room, expected: n - 1, peerjsPort, ids, index, startAt },
      ),
    ),
  );
  const late = Math.max(...results.map((r) => r.late));
  if (late > 5) console.error(`bench: a tab started ${late.toFixed(0)} ms after the common start (${kind}, ${n} tabs)`);
  const setupCpuMs = (await chromiumCpuMs()) - cpuBefore;
  if (stopTrace) {
    const costs = mainThreadCosts(await stopTrace(), results.map((r) => r.all));
    costs.forEach((main, i) => (results[i].main = main));
  }
  const broadcast = await measureBroadcast(pages, phases);
  return { setup: results, setupCpuMs, broadcast };
}

// Wall-clock time comparable across the tabs of one browser.
const NOW = "performance.timeOrigin + performance.now()";

/** One message from the first tab to all, then every tab broadcasting a burst
 *  at once; returns the latency to the last receiver and the burst's delivery time.
 *  `traced`: the first burst runs under a Chromium trace, for the thread time V8's
 *  optimising compiler spent on wasm meanwhile (per tab). */
async function measureBroadcast(pages, traced) {
  const n = pages.length;
  const arm = (expected) =>
    Promise.all(
      pages.map((page) =>
        page.evaluate(
          ({ expected, NOW }) => {
            const now = new Function(`return ${NOW}`);
            window.got = 0;
            window.allAt = new Promise((resolve, reject) => {
              const timer = setTimeout(() => reject(new Error(`broadcast: ${window.got}/${expected} messages after 120 s`)), 120000);
              window.onBroadcast = () => {
                window.got += 1;
                if (window.got === expected) {
                  clearTimeout(timer);
                  resolve(now());
                }
              };
            });
          },
          { expected, NOW },
        ),
      ),
    );
  // One message, first tab to all.
  await arm(1);
  const sentAt = await pages[0].evaluate(({ message, NOW }) => {
    const at = new Function(`return ${NOW}`)();
    window.broadcast(message);
    return at;
  }, { message: MESSAGE, NOW });
  const arrivals = await Promise.all(pages.slice(1).map((page) => page.evaluate(() => window.allAt)));
  const latency = Math.max(...arrivals) - sentAt;
  // Every tab broadcasts a burst at the same moment; then again: the first burst also
  // pays for each library's code running for the first time (V8 compiles wasm lazily
  // and optimises what is hot), the second shows the steady state.
  const burst = burstOf(n);
  const burstOnce = async () => {
    await arm(burst * (n - 1));
    const starts = await Promise.all(
      pages.map((page) =>
        page.evaluate(({ message, burst, NOW }) => {
          const at = new Function(`return ${NOW}`)();
          for (let i = 0; i < burst; i++) window.broadcast(message);
          return at;
        }, { message: MESSAGE, burst, NOW }),
      ),
    );
    const done = await Promise.all(pages.map((page) => page.evaluate(() => window.allAt)));
    return Math.max(...done) - Math.min(...starts);
  };
  const stopTrace = traced ? await startTrace() : null;
  const burstMs = await burstOnce();
  const events = stopTrace ? await stopTrace() : [];
  // Each unit is one function optimised on a background thread of a tab's renderer.
  const optimisingUs = events.filter((e) => e.name === "wasm.ExecuteCompilationUnits").reduce((sum, e) => sum + (e.tdur ?? 0), 0);
  const secondBurstMs = await burstOnce();
  return { latency, burstMs, secondBurstMs, messages: burst * n * (n - 1), wasmOptimisingMs: traced ? optimisingUs / 1000 / n : undefined };
}

const KINDS = arg("kinds", "meshdrop,raw,simple-peer,peerjs").split(",");
const rows = [];
const broadcastRows = [];
const phaseRows = [];
const mainRows = [];
const optimisingRows = [];
const samples = Object.fromEntries(sizes.flatMap((n) => KINDS.map((k) => [`${k}/${n}`, []])));
const setupCpu = Object.fromEntries(sizes.flatMap((n) => KINDS.map((k) => [`${k}/${n}`, []])));
const casts = Object.fromEntries(sizes.flatMap((n) => KINDS.map((k) => [`${k}/${n}`, []])));
const failures = Object.fromEntries(sizes.flatMap((n) => KINDS.map((k) => [`${k}/${n}`, []])));
/** Each round's median all-open time over its tabs and its CPU, by round (a failed round
 *  leaves a hole): ratios to raw paired by round. */
const byRound = Object.fromEntries(sizes.flatMap((n) => KINDS.map((k) => [`${k}/${n}`, []])));
for (let rep = 0; rep < reps; rep++) {
  // Interleaved: sizes and implementations rotate, so drift hits all alike.
  const order = KINDS.map((_, i) => KINDS[(i + rep) % KINDS.length]);
  for (const n of sizes) {
    for (const kind of order) {
      let outcome;
      try {
        outcome = await round(kind, n, rep);
      } catch (err) {
        // A library that cannot connect the room (or deliver) is a result, not a crash.
        failures[`${kind}/${n}`].push(String(err.message).split("\n")[0]);
        console.error(`${kind} ${n} peers, round ${rep + 1}: FAILED: ${err.message.split("\n")[0]}`);
        continue;
      }
      const { setup, setupCpuMs, broadcast } = outcome;
      samples[`${kind}/${n}`].push(...setup);
      setupCpu[`${kind}/${n}`].push(setupCpuMs);
      casts[`${kind}/${n}`].push(broadcast);
      byRound[`${kind}/${n}`][rep] = { all: stats(setup.map((r) => r.all)).median, cpu: setupCpuMs };
      console.error(`${kind} ${n} peers, round ${rep + 1}: all connected ${Math.max(...setup.map((r) => r.all)).toFixed(0)} ms, burst ${broadcast.burstMs.toFixed(0)} ms, second burst ${broadcast.secondBurstMs.toFixed(0)} ms`);
    }
  }
}
for (const n of sizes) {
  // Without raw in --kinds there is no ceiling: the ratios show as "–".
  const median = (kind, key) => stats((samples[`${kind}/${n}`] ?? []).map((r) => r[key]))?.median ?? NaN;
  const castMedian = (kind, key) => stats((casts[`${kind}/${n}`] ?? []).map((r) => r[key]))?.median ?? NaN;
  const ratioText = (x) => (Number.isFinite(x) ? x.toFixed(2) : "–");
  /** `kind`'s `key` ÷ raw's, round by round (both ran within a minute of each other, so a
   *  slow stretch of the machine slows both and cancels): median (min–max). */
  const pairedText = (kind, key) => {
    const raw = byRound[`raw/${n}`] ?? [];
    const ratios = (byRound[`${kind}/${n}`] ?? []).map((r, i) => (r && raw[i] ? r[key] / raw[i][key] : undefined)).filter((x) => Number.isFinite(x));
    const st = ratios.length ? stats(ratios) : null;
    return st ? `${st.median.toFixed(2)} (${st.min.toFixed(2)}–${st.max.toFixed(2)})` : "–";
  };
  for (const kind of KINDS) {
    const s = samples[`${kind}/${n}`];
    const ratio = ratioText(median(kind, "all") / median("raw", "all"));
    const failed = failures[`${kind}/${n}`];
    const rounds = `${reps - failed.length}/${reps}${failed.length ? ` (failed: ${[...new Set(failed)].join("; ")})` : ""}`;
    const cpu = stats(setupCpu[`${kind}/${n}`]);
    const cpuRatio = ratioText(cpu?.median / stats(setupCpu[`raw/${n}`] ?? [])?.median);
    const phase = (name) => fmt(stats(s.map((r) => r.marks?.[name]).filter((t) => t !== undefined)));
    phaseRows.push(`| ${n} | ${kind} | ${PHASE_NAMES.map(phase).join(" | ")} | ${fmt(stats(s.map((r) => r.all)))} |`);
    const main = (key) => stats(s.map((r) => r.main?.[key]).filter((t) => t !== undefined));
    const mainMedian = (k, key) => stats((samples[`${k}/${n}`] ?? []).map((r) => r.main?.[key]).filter((t) => t !== undefined))?.median;
    const fmt1 = (st) => (st ? `${st.median.toFixed(1)} (${st.min.toFixed(1)}–${st.max.toFixed(1)})` : "–");
    mainRows.push(`| ${n} | ${kind} | ${fmt1(main("cpu"))} | ${ratioText(mainMedian(kind, "cpu") / mainMedian("raw", "cpu"))} | ${fmt1(main("js"))} | ${fmt1(main("wasm"))} |`);
    rows.push(`| ${n} | ${kind} | ${rounds} | ${s.length} | ${fmt(stats(s.map((r) => r.joinedAt)))} | ${fmt(stats(s.map((r) => r.first)))} | ${fmt(stats(s.map((r) => r.all)))} | ${ratio} | ${pairedText(kind, "all")} | ${fmt(cpu)} | ${cpuRatio} | ${pairedText(kind, "cpu")} |`);
    const c = casts[`${kind}/${n}`];
    const rate = (r) => r.messages / (r.burstMs / 1000);
    const burstRatio = ratioText(castMedian("raw", "burstMs") / castMedian(kind, "burstMs"));
    const secondRatio = ratioText(castMedian("raw", "secondBurstMs") / castMedian(kind, "secondBurstMs"));
    const rateText = c.length ? `${(stats(c.map(rate)).median / 1000).toFixed(1)}k` : "–";
    const optimising = stats(c.map((r) => r.wasmOptimisingMs).filter((t) => t !== undefined));
    if (optimising && kind === "meshdrop") {
      optimisingRows.push(`| ${n} | ${fmt(optimising)} | ${fmt(stats(c.map((r) => r.burstMs)))} |`);
    }
    broadcastRows.push(
      `| ${n} | ${kind} | ${c.length} | ${fmt(stats(c.map((r) => r.latency)))} | ${fmt(stats(c.map((r) => r.burstMs)))} | ${rateText} | ${burstRatio} | ${fmt(stats(c.map((r) => r.secondBurstMs)))} | ${secondRatio} |`,
    );
  }
}
await browser.close();
await server.stop();
peerHttp?.closeAllConnections();
peerHttp?.close();

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
All peers of a room call \`Peer.join\` at the same moment (an instant set ahead, which each tab waits for), ${settleMs > 0 ? `${settleMs} ms after every page loaded its library (\`init()\` done: a page where the user joins later)` : "as soon as every page has loaded its library (right after \`init()\` and the common start's lead: 200 ms + 20 ms a tab)"}. Times in ms from that call: median (min–max). CPU: every Chromium process's, from /proc, from just before the joins until every tab is connected (on two cores setup is CPU-bound; CPU varies less than time). "Paired by round": each round's value (its tabs' median time, its CPU) ÷ raw's in the same round, median (min–max) over the rounds; the implementations of a round run within a minute of each other, so a slow stretch of the machine moves these ratios less than the ratio of medians beside them.
"raw" is the ceiling: a hand-written RTCPeerConnection with a negotiated data channel and trickle ICE through the same server; "simple-peer" uses that server too; "peerjs" uses its own PeerServer (npm \`peer\`) on loopback, registers, then connects to ids agreed in advance ("welcomed" = registered). All code in bench/mesh.mjs.

| peers | implementation | rounds connected | samples | welcomed | first channel open (\`peer-joined\`) | all channels open | all-open time ÷ raw | paired by round | Chromium CPU ms, join → all open (per round) | CPU ÷ raw | paired by round |
|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|
${rows.join("\n")}

${
  phases
    ? `## Setup step by step (\`--phases 1\`)

Per tab, ms from its join to the first time each step happened (the last, for "last channel open"), from wrappers around the browser's WebSocket and RTCPeerConnection: median (min–max) over every tab. meshdrop opens two channels per connection and then exchanges a signed binding before \`peer-joined\`; PeerJS's "welcomed" is its server's OPEN.

| peers | implementation | ${PHASE_NAMES.join(" | ")} | all open |
|---:|---|${PHASE_NAMES.map(() => "---:|").join("")}---:|
${phaseRows.join("\n")}

Each tab's main thread over the same span (join → all open), from a Chromium trace of these rounds: CPU is the thread time of the tasks it ran (not time waiting for a core), median (min–max) over every tab; "compiling" is the part V8 spent compiling JS functions and wasm functions at their first call (both compile lazily; meshdrop's \`init()\` rehearses the core so that its wasm is compiled before a join, and its JS glue asks V8 to compile every function as it loads).

| peers | implementation | main-thread CPU, ms | ÷ raw | of it compiling JS, ms | compiling wasm, ms |
|---:|---|---:|---:|---:|---:|
${mainRows.join("\n")}

V8 optimises a wasm function once it has run enough, on a background thread of the tab's renderer, while the slower first code keeps running; a large hot function takes it long, and on two cores that thread competes with the tabs. During meshdrop's first burst (traced in these rounds, so its times here run under the trace), V8's optimising compiler took, per tab, in thread time:

| peers | optimising wasm during the first burst, ms per tab | that burst, ms |
|---:|---:|---:|
${optimisingRows.join("\n")}

`
    : ""
}## Broadcast delivery, once everyone is connected

"one to all": the first tab broadcasts one 1 KiB message; ms until the last tab has it. "burst": every tab broadcasts k × 1 KiB at the same moment, k = max(2, ${BURST_TOTAL} / (N × (N − 1))) (${sizes.map((n) => `${burstOf(n)} at ${n}`).join(", ")}); ms until every tab has all k × (N − 1), and the messages delivered per second. One sample per round: median (min–max). Speed ÷ raw: raw's burst time ÷ this one's (above 1 is faster than raw). "second burst": the same burst again at once on the same connections; the first also pays for code running for the first time (V8 compiles wasm lazily and optimises what is hot).

| peers | implementation | rounds | one to all, ms | burst, ms | burst, messages/s | burst speed ÷ raw | second burst, ms | second burst speed ÷ raw |
|---:|---|---:|---:|---:|---:|---:|---:|---:|
${broadcastRows.join("\n")}

## Bundle size (pkg/, release, wasm-opt -Oz)

| file | bytes | gzip -9 |
|---|---:|---:|
| meshdrop_bg.wasm | ${kib(wasm.raw)} KiB | ${kib(wasm.gz)} KiB |
| meshdrop.js | ${kib(js.raw)} KiB | ${kib(js.gz)} KiB |
| **total** | ${kib(wasm.raw + js.raw)} KiB | **${kib(wasm.gz + js.gz)} KiB** |
`;
mkdirSync(path.join(ROOT, "bench/results"), { recursive: true });
writeFileSync(path.join(ROOT, `bench/results/mesh${settleMs > 0 ? "-settled" : ""}.md`), report);
console.log(report);
// PeerServer's own timers have no stop API and would keep Node running: everything this
// bench started is stopped above, so leave.
process.exit(0);
