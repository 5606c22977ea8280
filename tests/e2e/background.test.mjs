// A hidden tab must not slow a transfer: Chromium throttles timers in hidden pages, so
// meshdrop's send and receive paths run on channel events and the storage worker,
// never on a timer. Here the sender's tab is hidden (another tab brought to front, in
// a Chromium launched without the flags that switch background throttling off) and
// its speed is compared with the same tab visible, interleaved, in one run. While
// bytes flow, a visible tab holds a Screen Wake Lock, released at the end.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import puppeteer from "puppeteer-core";
import { freePort, startServer } from "./helpers.mjs";

const MiB = 1024 * 1024;
const SIZE = 48 * MiB;
let browser;
let server;
before(async () => {
  server = await startServer(await freePort());
  // Deliberately none of CHROMIUM_ARGS' --disable-background-* / --disable-renderer-backgrounding.
  browser = await puppeteer.launch({ executablePath: process.env.CHROMIUM_BIN ?? "/usr/bin/chromium", headless: true, args: ["--no-sandbox", "--disable-gpu"], protocolTimeout: 60000 });
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Counts wake locks taken and released, before the page's own scripts run. */
function recordWakeLocks() {
  window.wakeLocks = { taken: 0, released: 0 };
  if (!navigator.wakeLock) return;
  const request = navigator.wakeLock.request.bind(navigator.wakeLock);
  navigator.wakeLock.request = async (type) => {
    const sentinel = await request(type);
    window.wakeLocks.taken += 1;
    sentinel.addEventListener("release", () => (window.wakeLocks.released += 1));
    return sentinel;
  };
}

async function person(context, ws, room) {
  const page = await context.newPage();
  await page.evaluateOnNewDocument(recordWakeLocks);
  await page.goto(`${server.url}/healthz`);
  const id = await page.evaluate(
    async ({ ws, room }) => {
      const mod = await import("/pkg/meshdrop.js");
      await mod.default();
      window.peer = await mod.Peer.join({ signalingUrl: ws, room, identity: "ephemeral" });
      window.received = [];
      window.peer.on("file-offer", (offer) => offer.accept().done.then((file) => window.received.push(file.size)));
      return window.peer.id;
    },
    { ws, room },
  );
  return { page, id };
}

const visibility = (page) => page.evaluate(() => document.visibilityState);

test("a hidden sender keeps its speed, and a visible one holds a wake lock while sending", async () => {
  const ws = `ws://127.0.0.1:${server.port}/ws`;
  const room = `background-${Date.now()}`;
  const receiver = await person(await browser.createBrowserContext(), ws, room);
  const senderContext = await browser.createBrowserContext();
  const sender = await person(senderContext, ws, room);
  const other = await senderContext.newPage(); // brought to front, it hides the sender
  await other.goto(`${server.url}/healthz`);
  await sender.page.waitForFunction(() => window.peer.peers().length === 1, { timeout: 20000 });
  await sender.page.evaluate((size) => {
    const bytes = new Uint8Array(size);
    for (let i = 0; i < size; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
    window.file = new File([bytes], "payload.bin");
  }, SIZE);

  // The median of five interleaved rounds each: on a busy two-core machine a single
  // 48 MiB transfer varies by ±25 % (visible 11–21 MiB/s in one run). The best of
  // three put an unchanged build at 0.89 in one run of four, and the best of five at
  // 0.88 when one visible round ran at 20.1 MiB/s and the rest at 15.3–16.2 (hidden
  // 15.4–17.8): one lucky round decides a best, not a median. A sender driven by
  // timers would lose every hidden round (Chromium runs them once a second).
  const rates = { visible: [], hidden: [] };
  for (let round = 0; round < 5; round++) {
    for (const mode of ["visible", "hidden"]) {
      await (mode === "visible" ? sender.page : other).bringToFront();
      assert.equal(await visibility(sender.page), mode, "the sender's tab is as intended");
      const count = await receiver.page.evaluate(() => window.received.length);
      const ms = await sender.page.evaluate(async (to) => {
        const t0 = performance.now();
        await window.peer.sendFile(to, window.file).done;
        return performance.now() - t0;
      }, receiver.id);
      await receiver.page.waitForFunction((n) => window.received.length > n, { timeout: 20000 }, count);
      rates[mode].push(SIZE / MiB / (ms / 1000));
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const ratio = median(rates.hidden) / median(rates.visible);
  console.log(`visible ${rates.visible.map((r) => r.toFixed(1)).join(", ")} MiB/s; hidden ${rates.hidden.map((r) => r.toFixed(1)).join(", ")} MiB/s; hidden ÷ visible ${ratio.toFixed(2)}`);
  assert.ok(ratio >= 0.9, `hidden ${ratio.toFixed(2)} × visible`);

  // The rounds with the sender visible took a wake lock and gave it back.
  const locks = await sender.page.evaluate(() => window.wakeLocks);
  if (await sender.page.evaluate(() => Boolean(navigator.wakeLock))) {
    assert.ok(locks.taken >= 1, `a wake lock was taken: ${JSON.stringify(locks)}`);
    assert.equal(locks.released, locks.taken, "and released after each transfer");
  }
});
