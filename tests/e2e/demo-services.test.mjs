// The demo page as people use its shelf, search and print service: two windows share
// the same file, a third finds it, sees both holders, downloads it from both and saves
// it intact (SHA-256 computed here); a print job shows in the other window's preview
// and comes back "printed"; a window that stops offering printing says so.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { freePort, launchBrowser, openDemo, startServer, waitForPeerCount } from "./helpers.mjs";

let browser;
let server;
let dir;
before(async () => {
  browser = await launchBrowser();
  server = await startServer(await freePort());
  dir = await mkdtemp(path.join(tmpdir(), "meshdrop-e2e-"));
});
after(async () => {
  await server?.stop();
  await browser?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function room(names) {
  const room = `demo-services-${Date.now()}`;
  const people = [];
  for (const name of names) people.push(await openDemo(browser, server.url, room, name));
  for (const p of people) await waitForPeerCount(p, names.length - 1);
  return people;
}

test("shared on two pages, found and downloaded from both on a third, saved intact", async () => {
  const [alice, bob, carol] = await room(["alice", "bob", "carol"]);
  const bytes = randomBytes(12 * 1024 * 1024);
  const file = path.join(dir, "image.png");
  await writeFile(file, bytes);
  const expected = createHash("sha256").update(bytes).digest("hex");
  for (const holder of [alice, bob]) {
    await holder.page.setInputFiles("#share-input", file);
    await holder.page.waitForSelector('#shared li[data-state=shared]:has-text("image.png")');
  }

  await carol.page.fill("#find-input", "image.png");
  await carol.page.click("#find");
  const hit = carol.page.locator("#hits li");
  await hit.waitFor();
  assert.equal(await hit.count(), 1, "one file: the same content from two holders");
  assert.match(await hit.locator(".detail").textContent(), /^12\.6 MB · 2 holders: (alice, bob|bob, alice)$/);
  await hit.locator("button", { hasText: "Download" }).click();
  const card = carol.page.locator("#transfers li").first();
  const id = await card.getAttribute("data-id");
  await carol.page.waitForSelector(`#transfers li[data-id="${id}"][data-state=done] a.save`, { timeout: 60000 });
  assert.match(await card.locator(".detail").first().textContent(), /Received and verified/);
  assert.match(await card.locator(".sources").textContent(), /^served: (alice|bob) [\d.]+ MB · (alice|bob) [\d.]+ MB$/);
  const saved = await carol.page.evaluate(async (id) => {
    const link = document.querySelector(`#transfers li[data-id="${id}"] a.save`);
    const buffer = await (await fetch(link.href)).arrayBuffer();
    return { name: link.download, hex: [...new Uint8Array(await crypto.subtle.digest("SHA-256", buffer))].map((b) => b.toString(16).padStart(2, "0")).join("") };
  }, id);
  assert.deepEqual(saved, { name: "image.png", hex: expected });

  // Unshared: no longer found.
  for (const holder of [alice, bob]) await holder.page.click('#shared li:has-text("image.png") button');
  await carol.page.click("#find");
  await carol.page.waitForFunction(() => /Nobody here has image\.png/.test(document.querySelector("#find-status").textContent));
  for (const p of [alice, bob, carol]) await p.context.close();
});

test("the print service: a job shows in the other window and comes back printed", async () => {
  const [alice, bob] = await room(["alice", "bob"]);
  await alice.page.fill("#print-text", "Hello from alice\nsecond line");
  await alice.page.selectOption("#print-peer", { label: "bob" });
  await alice.page.click("#print");
  await alice.page.waitForFunction(() => document.querySelector("#print-result").textContent === "bob: printed");
  assert.equal(await bob.page.isVisible("#print-preview"), true);
  assert.equal(await bob.page.textContent("#print-paper"), "Hello from alice\nsecond line");
  assert.equal(await bob.page.textContent("#print-from"), "from alice");

  // Bob stops offering it: alice is told plainly.
  await bob.page.uncheck("#offer-print");
  await alice.page.click("#print");
  await alice.page.waitForFunction(() => document.querySelector("#print-result").textContent === "bob: does not offer printing");
  await alice.context.close();
  await bob.context.close();
});
