// The npm package as another project uses it: installed from the tarball `make build`
// packs, bundled by Vite 8, Vite 7, webpack 5 and esbuild (each project in
// tests/bundlers/ with exactly the configuration the README shows), served by
// meshdrop-signal under its strict Content-Security-Policy, and run in Chromium: two
// pages of the bundle join, and a file goes from one to the other, verified, stored in
// OPFS by the worker the bundler emitted. Vite's dev server is checked too.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { freePort, launchBrowser, ROOT, startServer } from "./helpers.mjs";

const BUNDLERS = path.join(ROOT, "tests/bundlers");
const version = JSON.parse(readFileSync(path.join(ROOT, "pkg/package.json"), "utf8")).version;
const TARBALL = path.join(ROOT, "target/npm", `meshdrop-${version}.tgz`);
const sizes = [];
let browser;

before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  if (sizes.length) console.log(sizes.join("\n"));
});

function run(cwd, cmd, args) {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8", env: { ...process.env, npm_config_audit: "false", npm_config_fund: "false" } });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} in ${cwd} failed:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** The project's own dependencies (from its lockfile), the app, and meshdrop from the tarball. */
function prepare(name) {
  const dir = path.join(BUNDLERS, name);
  assert.ok(existsSync(TARBALL), `${TARBALL} is missing: make build packs it`);
  run(dir, "npm", ["install", "--loglevel=error"]);
  run(dir, "npm", ["install", "--no-save", "--loglevel=error", TARBALL]);
  for (const file of readdirSync(path.join(BUNDLERS, "app"))) copyFileSync(path.join(BUNDLERS, "app", file), path.join(dir, file));
  return dir;
}

/** The gzipped size of what the bundle ships (JS and wasm), for the report. */
function bundleSize(dist) {
  let raw = 0;
  let gz = 0;
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const file = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(file);
      else if (/\.(js|mjs|wasm)$/.test(entry.name)) {
        const bytes = readFileSync(file);
        raw += bytes.length;
        gz += Number(run(dir, "sh", ["-c", `gzip -9c '${file}' | wc -c`]).trim());
      }
    }
  };
  walk(dist);
  return `${(raw / 1024).toFixed(1)} KiB, ${(gz / 1024).toFixed(1)} KiB gzipped`;
}

/** Two pages of the app at `url` (a room of their own) exchange a verified file. */
async function twoPagesTransfer(url, ws) {
  const room = `bundle-${Math.random().toString(36).slice(2, 8)}`;
  const pages = [];
  try {
    for (let i = 0; i < 2; i++) {
      const context = await browser.newContext();
      const page = await context.newPage();
      const errors = [];
      page.on("pageerror", (e) => errors.push(String(e)));
      page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
      await page.goto(`${url}?signal=${encodeURIComponent(ws)}&room=${room}`);
      await page.waitForFunction(() => window.app, null, { timeout: 20000 }).catch((e) => {
        throw new Error(`${e.message}\n${errors.join("\n")}`);
      });
      pages.push({ context, page, errors });
    }
    const [a, b] = pages;
    await a.page.waitForFunction(() => window.app.peer.peers().length === 1, null, { timeout: 20000 });
    const digest = await a.page.evaluate(() => window.app.send(2 * 1024 * 1024));
    await b.page.waitForFunction(() => window.app.received, null, { timeout: 20000 });
    assert.equal(await b.page.evaluate(() => window.app.received), digest);
    const state = await b.page.evaluate(() => ({ persistent: window.app.persistent, warnings: window.app.warnings }));
    assert.deepEqual(state, { persistent: true, warnings: [] }, "the bundled worker stores to OPFS");
  } finally {
    for (const p of pages) await p.context.close();
  }
}

async function servedBuild(name, dist) {
  const port = await freePort();
  const server = await startServer(port, ["--www", dist]);
  try {
    await twoPagesTransfer(`${server.url}/index.html`, `ws://127.0.0.1:${port}/ws`);
  } finally {
    await server.stop();
  }
  sizes.push(`${name}: ${bundleSize(dist)}`);
}

/** `vite` (dev) on a free port; resolves once it serves, with a stop function. */
async function viteDev(dir) {
  const port = await freePort();
  const child = spawn(path.join(dir, "node_modules/.bin/vite"), ["--port", String(port), "--strictPort", "--host", "127.0.0.1"], { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  child.stdout.on("data", (d) => (log += d));
  child.stderr.on("data", (d) => (log += d));
  const url = `http://127.0.0.1:${port}/index.html`;
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`vite exited: ${log}`);
    if (await fetch(url).then((r) => r.ok, () => false)) return { url, stop: () => child.kill("SIGTERM"), log: () => log };
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill("SIGKILL");
  throw new Error(`vite dev did not start: ${log}`);
}

async function devTransfer(dir) {
  const dev = await viteDev(dir);
  const port = await freePort();
  const server = await startServer(port);
  try {
    await twoPagesTransfer(dev.url, `ws://127.0.0.1:${port}/ws`);
  } catch (e) {
    throw new Error(`${e.message}\nvite: ${dev.log()}`);
  } finally {
    dev.stop();
    await server.stop();
  }
}

for (const name of ["vite8", "vite7"]) {
  test(`${name}: build, served under a strict CSP, and the dev server`, async () => {
    const dir = prepare(name);
    run(dir, path.join(dir, "node_modules/.bin/vite"), ["build", "--logLevel", "error"]);
    await servedBuild(name, path.join(dir, "dist"));
    await devTransfer(dir);
  });
}

test("webpack 5: build, served under a strict CSP", async () => {
  const dir = prepare("webpack5");
  run(dir, "node", ["build.mjs"]);
  await servedBuild("webpack5", path.join(dir, "dist"));
});

test("esbuild: build with the file loader, served under a strict CSP", async () => {
  const dir = prepare("esbuild");
  run(dir, "node", ["build.mjs"]);
  await servedBuild("esbuild", path.join(dir, "dist"));
});
