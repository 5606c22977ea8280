// A strict Content-Security-Policy must not hang transfers: the storage worker loads
// from its file under `worker-src 'self'` (the server's default policy for the demo);
// with no worker allowed storage goes to memory and says so; with the worker file
// missing (a bundler that does not emit it) the `blob:` fallback takes over.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { freePort, launchBrowser, ROOT, startServer } from "./helpers.mjs";

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

/** A page of the demo (served with the server's CSP) with the package loaded. */
async function pageUnderPolicy(server) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error("pageerror:", e));
  const response = await page.goto(`${server.url}/style.css`);
  const policy = response.headers()["content-security-policy"] ?? null;
  await page.evaluate(async () => {
    window.meshdrop = await import("/pkg/meshdrop.js");
    await window.meshdrop.default();
  });
  return { context, page, policy };
}

async function joinRoom(page, ws) {
  return page.evaluate(async (ws) => {
    window.warnings = [];
    window.peer = await window.meshdrop.Peer.join({ signalingUrl: ws, room: "csp", identity: "ephemeral" });
    window.peer.on("warning", ({ message }) => window.warnings.push(message));
    window.peer.on("file-offer", (offer) => {
      offer.accept().done.then(
        async (file) => (window.received = [...new Uint8Array(await crypto.subtle.digest("SHA-256", await file.arrayBuffer()))]),
        (e) => (window.received = `${e.name}: ${e.message}`),
      );
    });
    return window.peer.persistentStorage;
  }, ws);
}

/** Sends 3 MiB of random bytes from a to b and checks them; returns b's warnings. */
async function transfer(a, b) {
  await a.page.waitForFunction(() => window.peer.peers().length === 1, null, { timeout: 20000 });
  const digest = await a.page.evaluate(async () => {
    const bytes = new Uint8Array(3 * 1024 * 1024);
    for (let i = 0; i < bytes.length; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
    const t = window.peer.sendFile(window.peer.peers()[0].id, new File([bytes], "x.bin"));
    await t.done;
    return [...new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))];
  });
  await b.page.waitForFunction(() => window.received, null, { timeout: 20000 });
  assert.deepEqual(await b.page.evaluate(() => window.received), digest);
  return b.page.evaluate(() => window.warnings);
}

async function scenario(args, www, body) {
  const port = await freePort();
  const server = await startServer(port, [...args, ...(www ? ["--www", www] : [])]);
  const pages = [];
  try {
    pages.push(await pageUnderPolicy(server), await pageUnderPolicy(server));
    await body(pages, `ws://127.0.0.1:${port}/ws`);
  } finally {
    for (const p of pages) await p.context.close();
    await server.stop();
  }
}

test("the server's strict policy: blob: workers are refused, the worker file loads, files go to OPFS", async () => {
  await scenario([], null, async ([a, b], ws) => {
    assert.match(a.policy, /worker-src 'self'/);
    const blobWorker = await a.page.evaluate(
      () =>
        new Promise((resolve) => {
          const worker = new Worker(URL.createObjectURL(new Blob(["postMessage('ran')"], { type: "text/javascript" })));
          worker.onmessage = () => resolve("ran");
          worker.onerror = () => resolve("refused");
          document.addEventListener("securitypolicyviolation", () => resolve("refused"), { once: true });
        }),
    );
    assert.equal(blobWorker, "refused", "the policy really blocks blob: workers");
    assert.equal(await joinRoom(a.page, ws), true);
    assert.equal(await joinRoom(b.page, ws), true, "persistent storage under the strict policy");
    assert.deepEqual(await transfer(a, b), []);
  });
});

test("no worker allowed at all: storage in memory, a warning that says why, the transfer completes", async () => {
  const policy = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'none'; connect-src 'self'";
  await scenario(["--www-csp", policy], null, async ([a, b], ws) => {
    assert.equal(await joinRoom(a.page, ws), false);
    assert.equal(await joinRoom(b.page, ws), false, "persistentStorage says the truth");
    const warnings = await transfer(a, b);
    assert.ok(warnings.some((w) => /storage worker could not start/.test(w) && /worker-src/.test(w)), JSON.stringify(warnings));
  });
});

test("the worker file missing (as esbuild leaves it): the blob: fallback stores to OPFS", async () => {
  const www = mkdtempSync(path.join(tmpdir(), "meshdrop-www-"));
  try {
    cpSync(path.join(ROOT, "www"), www, { recursive: true });
    const snippets = path.join(www, "pkg/snippets");
    for (const crate of readdirSync(snippets)) rmSync(path.join(snippets, crate, "src/web/store_worker.js"), { force: true });
    const policy = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:; connect-src 'self'";
    await scenario(["--www-csp", policy], www, async ([a, b], ws) => {
      assert.equal(await joinRoom(a.page, ws), true);
      assert.equal(await joinRoom(b.page, ws), true);
      assert.deepEqual(await transfer(a, b), []);
    });
  } finally {
    rmSync(www, { recursive: true, force: true });
  }
});
