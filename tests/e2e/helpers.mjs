// Shared setup for the end-to-end tests and benchmarks: the real signaling server
// binary serving the real demo page, and Debian's Chromium driven by playwright-core.
import { spawn } from "node:child_process";
import { once } from "node:events";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const SERVER_BIN = process.env.MESHDROP_SIGNAL_BIN ?? path.join(ROOT, "target/server/meshdrop-signal");

/** A free TCP port on 127.0.0.1. */
export async function freePort() {
  const srv = net.createServer();
  srv.listen(0, "127.0.0.1");
  await once(srv, "listening");
  const { port } = srv.address();
  srv.close();
  await once(srv, "close");
  return port;
}

// A test or benchmark that throws never reaches its `stop()`: the servers it started
// still go when its process does.
const running = new Set();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** Starts meshdrop-signal serving www/ (or the `--www` in `extraArgs`) on `port`;
 *  resolves when /healthz answers. */
export async function startServer(port, extraArgs = []) {
  const www = extraArgs.includes("--www") ? [] : ["--www", path.join(ROOT, "www")];
  const child = spawn(SERVER_BIN, ["--listen", `127.0.0.1:${port}`, ...www, ...extraArgs], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, MESHDROP_LOG: process.env.MESHDROP_LOG ?? "warn" },
  });
  running.add(child);
  child.once("exit", () => running.delete(child));
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const exited = once(child, "exit");
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`meshdrop-signal exited: ${stderr}`);
    try {
      const r = await fetch(`http://127.0.0.1:${port}/healthz`);
      if (r.ok) return { child, port, url: `http://127.0.0.1:${port}`, stop: (signal) => stopServer(child, exited, signal) };
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  child.kill("SIGKILL");
  throw new Error(`meshdrop-signal did not start: ${stderr}`);
}

/** Stops the server the way a person would (Ctrl-C sends SIGINT) and waits for exit. */
async function stopServer(child, exited, signal = "SIGINT") {
  if (child.exitCode === null && child.signalCode === null) {
    child.kill(signal);
    await exited;
  }
}

export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
  "--disable-gpu",
  "--disable-background-timer-throttling",
  "--disable-renderer-backgrounding",
  "--disable-backgrounding-occluded-windows",
];

export async function launchBrowser(extraArgs = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_BIN ?? "/usr/bin/chromium",
    headless: true,
    args: [...CHROMIUM_ARGS, ...extraArgs],
  });
}

/** A page on the server's origin with the package loaded as `window.meshdrop`, in a
 *  fresh context (another person) unless `context` is given. */
export async function apiPage(browser, server, context) {
  context ??= await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error("pageerror:", e));
  await page.goto(`${server.url}/healthz`);
  await page.evaluate(async () => {
    const mod = await import("/pkg/meshdrop.js");
    await mod.default();
    window.meshdrop = mod;
    window.events = [];
  });
  return { page, context };
}

/** Opens the demo page in a fresh browser context (its own storage, like another person). */
export async function openDemo(browser, baseUrl, room, name) {
  const context = await browser.newContext();
  await context.addInitScript((n) => localStorage.setItem("meshdrop.name", n), name);
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${name}] pageerror:`, e));
  await page.goto(`${baseUrl}/#room=${room}`);
  return { context, page, name };
}

/** Waits until the page lists exactly `n` peers, all connected. */
export async function waitForPeerCount(person, n, timeout = 20000) {
  await person.page.waitForFunction(
    (k) => document.querySelectorAll("#peers li").length === k && document.querySelectorAll('#peers li[data-state="connected"]').length === k,
    n,
    { timeout },
  );
}

/** Types a chat message and sends it to everyone. */
export async function chat(person, text) {
  await person.page.fill("#chat-input", text);
  await person.page.click("#send");
}

/** Waits for a chat line containing `text` from someone else. */
export async function waitForMessage(person, text, timeout = 10000) {
  await person.page.waitForFunction(
    (t) => [...document.querySelectorAll("#log li.msg:not(.mine)")].some((li) => li.textContent.includes(t)),
    text,
    { timeout },
  );
}

/** The peer names a page lists. */
export async function listedNames(person) {
  return person.page.$$eval("#peers li .name", (els) => els.map((e) => e.textContent).sort());
}
