// Signaling server leanness: memory per idle connection and relayed messages per
// second, for the real release binary pinned to ONE core (taskset -c 0), with the
// load generator (signaling/examples/load.rs) on the other.
// Usage: node bench/signal.mjs [--idle 10000] [--pairs 16] [--seconds 5]   (or `make bench`)
import { spawn, execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { once } from "node:events";
import path from "node:path";
import readline from "node:readline";
import { freePort, ROOT, SERVER_BIN } from "../tests/e2e/helpers.mjs";

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const idle = Number(arg("idle", "10000"));
const pairs = Number(arg("pairs", "16"));
const seconds = Number(arg("seconds", "5"));

execFileSync("cargo", ["build", "--release", "-p", "meshdrop-signal", "--example", "load"], { cwd: ROOT, stdio: "inherit" });
const LOAD = path.join(ROOT, "target/release/examples/load");
const rssKiB = (pid) => Number(readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+)/)[1]);

async function startPinned() {
  const port = await freePort();
  const child = spawn("taskset", ["-c", "0", SERVER_BIN, "--listen", `127.0.0.1:${port}`, "--max-room-peers", "64", "--max-frames-per-sec", "1000000"], {
    stdio: "ignore",
    env: { ...process.env, MESHDROP_LOG: "error" },
  });
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/healthz`)).ok) break;
    } catch {}
    await new Promise((r) => setTimeout(r, 25));
  }
  return { child, url: `ws://127.0.0.1:${port}/ws` };
}

// 1. Idle connections.
let server = await startPinned();
const base = rssKiB(server.child.pid);
const client = spawn("taskset", ["-c", "1", LOAD, "idle", server.url, String(idle)], { stdio: ["ignore", "pipe", "inherit"] });
for await (const line of readline.createInterface({ input: client.stdout })) if (line.startsWith("ready")) break;
await new Promise((r) => setTimeout(r, 1000)); // let buffers settle
const loaded = rssKiB(server.child.pid);
client.kill();
server.child.kill("SIGTERM");
await once(server.child, "exit");
const perConn = ((loaded - base) * 1024) / idle;

// 2. Relay throughput.
server = await startPinned();
const out = execFileSync("taskset", ["-c", "1", LOAD, "relay", server.url, String(pairs), String(seconds)]).toString();
server.child.kill("SIGTERM");
await once(server.child, "exit");
const rate = Number(out.match(/= (\d+) msg\/s/)[1]);

const report = `# signaling server benchmark

${new Date().toISOString()} · release meshdrop-signal pinned to one core (taskset -c 0), load generator (signaling/examples/load.rs) on the other · loopback.

| measure | result | target (issue 2, for a later round) |
|---|---:|---:|
| memory per idle joined connection (${idle} connections, RSS growth ÷ n) | ${(perConn / 1024).toFixed(2)} KiB | ≤ 4 KiB |
| relayed signals per second (${pairs} pairs, ${seconds} s, ~200-byte candidate frames) | ${rate} msg/s | ≥ 50,000 |

RSS: ${base} KiB at start, ${loaded} KiB with ${idle} idle connections.
`;
mkdirSync(path.join(ROOT, "bench/results"), { recursive: true });
writeFileSync(path.join(ROOT, "bench/results/signal.md"), report);
console.log(report);
