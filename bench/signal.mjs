// Signaling servers side by side, in one run, with the same load client
// (signaling/examples/load.rs, pinned to core 1) and each server pinned to core 0:
// meshdrop-signal alone, two meshdrop-signal instances sharing rooms through Redis
// (both instances and redis-server on core 0), PeerServer (npm `peer`) and
// matchbox_server (crates.io; installed into target/bench-tools on first use), and the
// simplest WebSocket relay (signaling/examples/bare_relay.rs): what relaying the same
// load costs any server here, above all in the kernel (relay only, no idle phase).
//   1. memory per idle joined connection (RSS growth ÷ n) and time to open them all;
//   2. relay latency at fixed total rates, peers in pairs, ~1 KiB signals, up to the
//      first rate that loses a signal or passes p99 50 ms; server CPU per signal.
//      Each rate runs --trials times on the same server and the trial with the median
//      p99 stands for it: on a shared 2-core machine one trial's p99 can be several
//      times another's at the same rate and code.
// Usage: node bench/signal.mjs [--idle 10000] [--pairs 500] [--seconds 3] [--trials 3]
//        [--rates 10000,20000,40000,70000,100000,150000] [--kinds meshdrop,meshdrop-redis,peerjs,matchbox,bare]
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { once } from "node:events";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { freePort, ROOT, SERVER_BIN } from "../tests/e2e/helpers.mjs";

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const IDLE = Number(arg("idle", "10000"));
const PAIRS = Number(arg("pairs", "500"));
const SECONDS = Number(arg("seconds", "3"));
const TRIALS = Math.max(1, Number(arg("trials", "3")));
const RATES = arg("rates", "10000,20000,40000,70000,100000,150000").split(",").map(Number);
const KINDS = arg("kinds", "meshdrop,meshdrop-redis,peerjs,matchbox,bare").split(",");
const BYTES = 1024;
const P99_LIMIT_US = 50_000;
/** A rate counts only if the load client sent at least this share of it: past that
 *  the client, not the server, is the limit. */
const KEPT_SHARE = 0.95;
const kept = (row) => row.achieved >= KEPT_SHARE * row.rate;

execFileSync("cargo", ["build", "--profile", "server", "-p", "meshdrop-signal", "--bin", "meshdrop-signal", "--example", "load", "--example", "bare_relay"], { cwd: ROOT, stdio: "inherit" });
const LOAD = path.join(ROOT, "target/server/examples/load");
const BARE_RELAY = path.join(ROOT, "target/server/examples/bare_relay");
const TOOLS = path.join(ROOT, "target/bench-tools");
const MATCHBOX = process.env.MATCHBOX_SERVER ?? path.join(TOOLS, "bin/matchbox_server");
if (KINDS.includes("matchbox") && !existsSync(MATCHBOX)) {
  console.error("installing matchbox_server into target/bench-tools (once, a few minutes)");
  execFileSync("cargo", ["install", "--locked", "matchbox_server", "--root", TOOLS], { stdio: "inherit" });
}
const TICKS = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim());

const rssKiB = (pid) => Number(readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+)/)[1]);
/** CPU seconds a process has used in user space and in the kernel. */
const cpuTimes = (pid) => {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return { user: Number(fields[11]) / TICKS, system: Number(fields[12]) / TICKS };
};
/** CPU seconds (user + system) a process has used. */
const cpuSeconds = (pid) => {
  const { user, system } = cpuTimes(pid);
  return user + system;
};
/** CPU seconds of all `pids` together, read once: { total, system }. */
const serverCpu = (pids) => {
  const times = pids.map(cpuTimes);
  return { total: times.reduce((t, c) => t + c.user + c.system, 0), system: times.reduce((t, c) => t + c.system, 0) };
};
const sum = (pids, f) => pids.reduce((total, pid) => total + f(pid), 0);

async function untilHealthy(url) {
  for (let i = 0; i < 400; i++) {
    try {
      if ((await fetch(url)).status < 500) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${url} did not answer`);
}

function pinned(cmd, args, env = {}) {
  const child = spawn("taskset", ["-c", "0", cmd, ...args], { stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, ...env } });
  return child;
}

/** Starts one implementation; { bases: [ws base per instance], pids, stop }. */
async function start(kind) {
  const children = [];
  const bases = [];
  const meshdrop = async (extra) => {
    const port = await freePort();
    const limits = ["--max-room-peers", "64", "--max-frames-per-sec", "1000000", "--max-inbound-per-sec", "1000000", "--max-connections", "60000"];
    children.push(pinned(SERVER_BIN, ["--listen", `127.0.0.1:${port}`, ...limits, ...extra], { MESHDROP_LOG: "error" }));
    await untilHealthy(`http://127.0.0.1:${port}/healthz`);
    bases.push(`ws://127.0.0.1:${port}`);
  };
  if (kind === "meshdrop") await meshdrop([]);
  if (kind === "meshdrop-redis") {
    const port = await freePort();
    const redis = spawn("taskset", ["-c", "0", "redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: ["ignore", "pipe", "inherit"] });
    children.push(redis);
    let out = "";
    await new Promise((resolve) => redis.stdout.on("data", (d) => ((out += d), out.includes("Ready to accept") && resolve())));
    redis.stdout.resume();
    await meshdrop(["--redis", `redis://127.0.0.1:${port}`]);
    await meshdrop(["--redis", `redis://127.0.0.1:${port}`]);
  }
  if (kind === "peerjs") {
    const port = await freePort();
    const script = `import("peer").then(({ PeerServer }) => PeerServer({ host: "127.0.0.1", port: ${port}, path: "/", concurrent_limit: 1e7 }))`;
    children.push(spawn("taskset", ["-c", "0", process.execPath, "-e", script], { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] }));
    await untilHealthy(`http://127.0.0.1:${port}/`);
    bases.push(`ws://127.0.0.1:${port}`);
  }
  if (kind === "bare") {
    const port = await freePort();
    const relay = spawn("taskset", ["-c", "0", BARE_RELAY, `127.0.0.1:${port}`], { stdio: ["ignore", "pipe", "inherit"] });
    children.push(relay);
    // It serves no HTTP: ready once it says it is listening.
    for await (const line of readline.createInterface({ input: relay.stdout })) if (line === "listening") break;
    bases.push(`ws://127.0.0.1:${port}`);
  }
  if (kind === "matchbox") {
    const port = await freePort();
    children.push(pinned(MATCHBOX, [`127.0.0.1:${port}`], { RUST_LOG: "warn" }));
    await untilHealthy(`http://127.0.0.1:${port}/health`);
    bases.push(`ws://127.0.0.1:${port}`);
  }
  // taskset execs the server: the pid is the server's own.
  const pids = children.map((c) => c.pid);
  return {
    bases,
    pids,
    stop: async () => {
      for (const c of children) {
        if (c.exitCode === null && c.signalCode === null) {
          c.kill("SIGKILL");
          await once(c, "exit");
        }
      }
    },
  };
}

const PROTO = { meshdrop: "meshdrop", "meshdrop-redis": "meshdrop", peerjs: "peerjs", matchbox: "matchbox", bare: "meshdrop" };

async function idle(kind) {
  const server = await start(kind);
  await new Promise((r) => setTimeout(r, 300));
  const base = sum(server.pids, rssKiB);
  const serverCpuBefore = sum(server.pids, cpuSeconds);
  const client = spawn("taskset", ["-c", "1", LOAD, "idle", PROTO[kind], server.bases.join(","), String(IDLE)], { stdio: ["ignore", "pipe", "inherit"] });
  let openMs;
  // The server's CPU to open them, and the client's: when the client's equals the wall
  // time, the client (one core) set the pace, and the server's CPU is its own cost.
  let openServerCpu;
  let openClientCpu;
  for await (const line of readline.createInterface({ input: client.stdout })) {
    if (line.startsWith("opened")) {
      openMs = Number(line.split(" ")[2]);
      openServerCpu = sum(server.pids, cpuSeconds) - serverCpuBefore;
      openClientCpu = cpuSeconds(client.pid);
      break;
    }
  }
  await new Promise((r) => setTimeout(r, 1500)); // let allocators and buffers settle
  const loaded = sum(server.pids, rssKiB);
  client.kill("SIGKILL");
  await server.stop();
  return { kibPerConn: (loaded - base) / IDLE, openMs, openServerCpu, openClientCpu, base, loaded };
}

async function relayAt(server, kind, rate) {
  const [a, b] = [server.bases[0], server.bases.at(-1)];
  const client = spawn("taskset", ["-c", "1", LOAD, "relay", PROTO[kind], a, b, String(PAIRS), String(rate), String(SECONDS), String(BYTES)], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  // The load client's own CPU too (`taskset` execs it, so the pid is the client's): a
  // client core near 100 % means the client, not the server, set the limit.
  let start = { total: 0, system: 0 };
  let cpu = 0;
  let system = 0;
  let clientStart = 0;
  let clientCpu = 0;
  let result;
  for await (const line of readline.createInterface({ input: client.stdout })) {
    if (line === "start") {
      start = serverCpu(server.pids);
      clientStart = cpuSeconds(client.pid);
    } else if (line === "stop") {
      const end = serverCpu(server.pids);
      cpu = end.total - start.total;
      system = end.system - start.system;
      clientCpu = cpuSeconds(client.pid) - clientStart;
    } else if (line.startsWith("{")) result = JSON.parse(line);
  }
  await once(client, "exit").catch(() => {});
  // Shares and the rate achieved over the time sending took, which is longer than
  // asked when the one client thread cannot send that fast.
  const sending = result.send_ms / 1000;
  return { rate, ...result, achieved: result.sent / sending, cpuUsPerSignal: (cpu * 1e6) / result.sent, systemUsPerSignal: (system * 1e6) / result.sent, cpuShare: cpu / sending, clientShare: clientCpu / sending };
}

/** The trial with the median p99, with the spread of all trials' p99 and any loss in any of them. */
function representative(trials) {
  const byP99 = trials.slice().sort((x, y) => x.p99_us - y.p99_us);
  const median = byP99[(byP99.length - 1) >> 1];
  const lostInTrials = trials.reduce((lost, t) => lost + (t.sent - t.received), 0);
  return { ...median, p99MinUs: byP99[0].p99_us, p99MaxUs: byP99.at(-1).p99_us, lostInTrials };
}

async function relay(kind) {
  const server = await start(kind);
  const rows = [];
  try {
    for (const rate of RATES) {
      const trials = [];
      for (let t = 0; t < TRIALS; t++) {
        const trial = await relayAt(server, kind, rate);
        trials.push(trial);
        console.error(kind, JSON.stringify(trial));
      }
      const row = representative(trials);
      rows.push(row);
      if (row.lostInTrials > 0 || row.p99_us > P99_LIMIT_US || !kept(row)) break;
    }
  } finally {
    await server.stop();
  }
  return rows;
}

const results = {};
for (const kind of KINDS) {
  console.error(`== ${kind}`);
  // The bare relay is measured relaying only: its idle connections say nothing of a server's.
  results[kind] = { idle: kind === "bare" ? null : await idle(kind), relay: await relay(kind) };
  console.error(kind, JSON.stringify(results[kind].idle));
}

const ms = (us) => (us / 1000).toFixed(2);
const perSignal = (r) => `${r.cpuUsPerSignal.toFixed(1)} µs (${r.systemUsPerSignal.toFixed(1)} kernel)`;
const NAMES = { meshdrop: "meshdrop-signal", "meshdrop-redis": "meshdrop-signal ×2 + Redis", peerjs: "PeerServer (npm peer)", matchbox: "matchbox_server", bare: "bare relay (not a server)" };
const sustained = (rows) => rows.filter((r) => r.lostInTrials === 0 && r.p99_us <= P99_LIMIT_US && kept(r)).at(-1)?.rate ?? 0;
const at = (rows, rate) => rows.find((r) => r.rate === rate);
const versions = {
  peer: JSON.parse(readFileSync(path.join(ROOT, "node_modules/peer/package.json"), "utf8")).version,
  matchbox: KINDS.includes("matchbox") ? (() => { try { return execFileSync(MATCHBOX, ["--version"]).toString().trim(); } catch { return "matchbox_server"; } })() : "-",
  redis: KINDS.includes("meshdrop-redis") ? execFileSync("redis-server", ["--version"]).toString().split(" ")[2] : "-",
};

let report = `# signaling server benchmark

${new Date().toISOString()} · ${os.cpus()[0].model}, ${os.cpus().length} cores · each server pinned to core 0 (two instances and redis-server share it), the load client (signaling/examples/load.rs, one thread) pinned to core 1 · loopback · PeerServer ${versions.peer} on Node ${process.version}, ${versions.matchbox}, redis ${versions.redis}.
meshdrop-signal runs with its per-connection rate limits raised (\`--max-frames-per-sec\`, \`--max-inbound-per-sec\` 1000000): the others have none. Code: bench/signal.mjs.
"bare relay" is not a server: the simplest WebSocket relay (signaling/examples/bare_relay.rs, tokio-tungstenite, one thread), which pairs the two peers of a room and passes each frame to the other as it came, with no ids, checks, limits or timers. What it pays per signal, above all in the kernel, relaying this load costs any server on this machine. It has no idle phase.

## Summary

| server | KiB per idle joined connection (${IDLE}) | time to open ${IDLE} | server CPU to open them (client CPU) | relay p99 at 10k/s (median of ${TRIALS}) | server CPU per signal at 10k/s (of it in the kernel) | highest rate with no loss and p99 ≤ 50 ms |
|---|---:|---:|---:|---:|---:|---:|
`;
for (const kind of KINDS) {
  const r = results[kind];
  const ten = at(r.relay, 10000);
  const idle = r.idle ? `${r.idle.kibPerConn.toFixed(2)} | ${(r.idle.openMs / 1000).toFixed(2)} s | ${r.idle.openServerCpu.toFixed(2)} s (${r.idle.openClientCpu.toFixed(2)} s)` : "- | - | -";
  report += `| ${NAMES[kind]} | ${idle} | ${ten ? ms(ten.p99_us) + " ms" : "-"} | ${ten ? perSignal(ten) : "-"} | ${sustained(r.relay).toLocaleString("en")}/s |\n`;
}
report += `
## Relay at fixed rates

${PAIRS} pairs (${PAIRS * 2} peers, each pair one room; with two instances one peer of each pair on each), ${BYTES}-byte signals from one peer of each pair to the other, ${SECONDS} s per trial, ${TRIALS} trials per rate on the same server; a row is the trial with the median p99, "p99 range" the lowest and highest p99 of the trials, "lost" the signals lost in all of them; latency from the send call to the receiver's read, in the load client. "sent at" is the rate the load client achieved (its one thread has a limit too); a rate counts only if that was at least ${KEPT_SHARE * 100} % of it. A rate stops the series when any trial loses a signal, the median p99 passes 50 ms, or the client fell short of it in the median trial. "server CPU" is user + system time of the server process(es) during the sending window ÷ signals sent, and in brackets the system (kernel) part; "core" is the share of core 0 it took over that window; "client core" the load client's share of core 1 (near 100 %, the client is what limits the rate; on loopback the kernel's receive work for the other end is charged to whoever sends).

| server | rate/s | sent at /s | sent | lost | p50 ms | p99 ms | p99 range, ms | max ms | server CPU per signal | core | client core |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
`;
for (const kind of KINDS) {
  for (const r of results[kind].relay) {
    report += `| ${NAMES[kind]} | ${r.rate.toLocaleString("en")} | ${Math.round(r.achieved).toLocaleString("en")} | ${r.sent} | ${r.lostInTrials} | ${ms(r.p50_us)} | ${ms(r.p99_us)} | ${ms(r.p99MinUs)}–${ms(r.p99MaxUs)} | ${ms(r.max_us)} | ${perSignal(r)} | ${(r.cpuShare * 100).toFixed(0)}% | ${(r.clientShare * 100).toFixed(0)}% |\n`;
  }
}
report += `\nIdle RSS (KiB, all server processes): ${KINDS.filter((k) => results[k].idle).map((k) => `${NAMES[k]} ${results[k].idle.base} → ${results[k].idle.loaded}`).join("; ")}.\n`;
mkdirSync(path.join(ROOT, "bench/results"), { recursive: true });
writeFileSync(path.join(ROOT, "bench/results/signal.md"), report);
console.log(report);
process.exit(0);
