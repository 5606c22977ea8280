// The demo page as people use it: several windows in one room, chatting, one leaving,
// the signaling server stopped (Ctrl-C) and restarted, a newcomer afterwards.
import { test } from "node:test";
import assert from "node:assert/strict";
import { chat, freePort, launchBrowser, listedNames, openDemo, startServer, waitForMessage, waitForPeerCount } from "./helpers.mjs";

test("three windows chat; one leaves; chat survives a server restart; a fourth meets everyone", async () => {
  const port = await freePort();
  let server = await startServer(port);
  const browser = await launchBrowser();
  try {
    const room = `demo-${Date.now()}`;
    const [alice, bob, carol] = [
      await openDemo(browser, server.url, room, "alice"),
      await openDemo(browser, server.url, room, "bob"),
      await openDemo(browser, server.url, room, "carol"),
    ];
    const everyone = [alice, bob, carol];
    for (const p of everyone) await waitForPeerCount(p, 2);
    assert.deepEqual(await listedNames(alice), ["bob", "carol"]);
    assert.deepEqual(await listedNames(carol), ["alice", "bob"]);
    for (const p of everyone) assert.equal(await p.page.getAttribute("#status", "data-state"), "connected");

    for (const sender of everyone) {
      await chat(sender, `hello from ${sender.name}`);
      for (const other of everyone.filter((p) => p !== sender)) await waitForMessage(other, `hello from ${sender.name}`);
    }

    // carol closes her window: the others see her leave.
    await carol.context.close();
    for (const p of [alice, bob]) {
      await waitForPeerCount(p, 1);
      await p.page.waitForSelector('#log li:has-text("carol left")');
    }

    // The server goes away: the page says so, and the open channels keep working.
    await server.stop("SIGINT");
    for (const p of [alice, bob]) await p.page.waitForSelector('#status[data-state="reconnecting"]', { timeout: 10000 });
    await chat(alice, "still talking without a server");
    await waitForMessage(bob, "still talking without a server");
    await chat(bob, "me too");
    await waitForMessage(alice, "me too");

    // It comes back on the same address: both reconnect by themselves (backoff ≤ 12.5 s).
    server = await startServer(port);
    for (const p of [alice, bob]) await p.page.waitForSelector('#status[data-state="connected"]', { timeout: 20000 });
    assert.deepEqual(await listedNames(alice), ["bob"], "the existing connection was kept, not duplicated");

    const dave = await openDemo(browser, server.url, room, "dave");
    await waitForPeerCount(dave, 2);
    assert.deepEqual(await listedNames(dave), ["alice", "bob"]);
    for (const p of [alice, bob]) await waitForPeerCount(p, 2);
    await chat(dave, "hi, I'm new");
    await waitForMessage(alice, "hi, I'm new");
    await waitForMessage(bob, "hi, I'm new");
    await chat(alice, "welcome dave");
    await waitForMessage(dave, "welcome dave");
    for (const p of [alice, bob]) {
      const left = await p.page.$$eval("#log li", (els) => els.filter((e) => /bob left|alice left/.test(e.textContent)).length);
      assert.equal(left, 0, "nobody dropped during the outage");
    }
  } finally {
    await browser.close();
    await server.stop();
  }
});

test("a page whose server is unreachable says so", async () => {
  const port = await freePort();
  const server = await startServer(port);
  const browser = await launchBrowser();
  try {
    const context = await browser.newContext();
    const page = await context.newPage();
    // The page loads from the server, then is pointed at a signaling port nobody listens on.
    const dead = await freePort();
    await page.goto(`${server.url}/?signal=ws://127.0.0.1:${dead}/ws#room=nowhere`);
    await page.waitForSelector('#status[data-state="error"]', { timeout: 10000 });
    assert.match(await page.textContent("#log"), /Could not join: .*unreachable/);
  } finally {
    await browser.close();
    await server.stop();
  }
});
