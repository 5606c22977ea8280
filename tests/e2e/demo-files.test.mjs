// Files on the demo page as people send them: pick a file for everyone, the other
// window sees "alice wants to send you …", accepts, watches progress, and saves a file
// whose SHA-256 (computed here, independently) matches; drop a file on a peer; decline.
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

/** SHA-256 of what the page's Save link points at. */
async function savedDigest(person, id) {
  return person.page.evaluate(async (id) => {
    const link = document.querySelector(`#transfers li[data-id="${id}"] a.save`);
    const bytes = await (await fetch(link.href)).arrayBuffer();
    const hex = [...new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))].map((b) => b.toString(16).padStart(2, "0"));
    return { hex: hex.join(""), name: link.download };
  }, id);
}

test("a 50 MiB file sent to everyone is accepted, tracked and saved intact", async () => {
  const room = `files-${Date.now()}`;
  const alice = await openDemo(browser, server.url, room, "alice");
  const bob = await openDemo(browser, server.url, room, "bob");
  await waitForPeerCount(alice, 1);
  await waitForPeerCount(bob, 1);
  const bytes = randomBytes(50 * 1024 * 1024);
  const file = path.join(dir, "holiday video.mp4");
  await writeFile(file, bytes);
  const expected = createHash("sha256").update(bytes).digest("hex");

  await alice.page.setInputFiles("#send-all", file);
  const offer = bob.page.locator("#transfers li[data-state=offered]");
  await offer.waitFor();
  assert.match(await offer.locator(".title").textContent(), /^alice wants to send you holiday video\.mp4 \(52\.4 MB\)$/);
  const id = await offer.getAttribute("data-id");
  await offer.locator("button", { hasText: "Accept" }).click();
  // Progress shows bytes and speed on the way.
  await bob.page.waitForFunction((id) => /MB\/s/.test(document.querySelector(`#transfers li[data-id="${id}"] .detail`)?.textContent), id, { timeout: 30000 });
  await bob.page.waitForSelector(`#transfers li[data-id="${id}"][data-state=done] a.save`, { timeout: 60000 });
  await alice.page.waitForSelector(`#transfers li[data-id="${id}"][data-state=done]`);
  assert.match(await alice.page.textContent(`#transfers li[data-id="${id}"] .detail`), /Delivered and verified/);
  assert.deepEqual(await savedDigest(bob, id), { hex: expected, name: "holiday video.mp4" });
  await alice.context.close();
  await bob.context.close();
});

test("a file dropped on a peer goes to that peer; declining shows on both sides", async () => {
  const room = `drop-${Date.now()}`;
  const alice = await openDemo(browser, server.url, room, "alice");
  const bob = await openDemo(browser, server.url, room, "bob");
  await waitForPeerCount(alice, 1);
  await waitForPeerCount(bob, 1);
  for (const name of ["notes.txt", "unwanted.txt"]) {
    await alice.page.evaluate((name) => {
      const transfer = new DataTransfer();
      transfer.items.add(new File([`contents of ${name}`], name, { type: "text/plain" }));
      const target = document.querySelector("#peers li");
      target.dispatchEvent(new DragEvent("dragover", { dataTransfer: transfer, bubbles: true, cancelable: true }));
      target.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }, name);
  }
  const offers = bob.page.locator("#transfers li[data-state=offered]");
  await bob.page.waitForFunction(() => document.querySelectorAll("#transfers li[data-state=offered]").length === 2);
  const wanted = offers.filter({ hasText: "notes.txt" });
  const wantedId = await wanted.getAttribute("data-id");
  await wanted.locator("button", { hasText: "Accept" }).click();
  const unwanted = offers.filter({ hasText: "unwanted.txt" });
  const unwantedId = await unwanted.getAttribute("data-id");
  await unwanted.locator("button", { hasText: "Decline" }).click();
  await bob.page.waitForSelector(`#transfers li[data-id="${wantedId}"][data-state=done] a.save`);
  const expected = createHash("sha256").update("contents of notes.txt").digest("hex");
  assert.deepEqual(await savedDigest(bob, wantedId), { hex: expected, name: "notes.txt" });
  await alice.page.waitForSelector(`#transfers li[data-id="${unwantedId}"][data-state=failed]`);
  assert.equal(await alice.page.textContent(`#transfers li[data-id="${unwantedId}"] .detail`), "Declined");
  await alice.context.close();
  await bob.context.close();
});

test("sending the same file twice shows a second offer and saves a second intact copy", async () => {
  const room = `twice-${Date.now()}`;
  const alice = await openDemo(browser, server.url, room, "alice");
  const bob = await openDemo(browser, server.url, room, "bob");
  await waitForPeerCount(alice, 1);
  await waitForPeerCount(bob, 1);
  const bytes = randomBytes(3 * 1024 * 1024);
  const file = path.join(dir, "same.bin");
  await writeFile(file, bytes);
  const expected = createHash("sha256").update(bytes).digest("hex");
  const ids = [];
  for (let round = 0; round < 2; round++) {
    await alice.page.setInputFiles("#send-all", []);
    await alice.page.setInputFiles("#send-all", file);
    const offer = bob.page.locator("#transfers li[data-state=offered]");
    await offer.waitFor();
    const id = await offer.getAttribute("data-id");
    await offer.locator("button", { hasText: "Accept" }).click();
    await bob.page.waitForSelector(`#transfers li[data-id="${id}"][data-state=done] a.save`, { timeout: 30000 });
    await alice.page.waitForSelector(`#transfers li[data-id="${id}"][data-state=done]`);
    ids.push(id);
  }
  assert.notEqual(ids[0], ids[1]);
  for (const id of ids) assert.deepEqual(await savedDigest(bob, id), { hex: expected, name: "same.bin" });
  await alice.context.close();
  await bob.context.close();
});
