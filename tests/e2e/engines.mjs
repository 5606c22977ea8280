// Every browser engine we test, driven the same way: Debian's Chromium and Firefox ESR,
// both through puppeteer-core (CDP for Chromium, WebDriver BiDi for Firefox), so a
// cross-engine case is written once and run for every pair of engines.
import puppeteer from "puppeteer-core";
import { CHROMIUM_ARGS } from "./helpers.mjs";

export const ENGINES = {
  chromium: { browser: "chrome", executablePath: process.env.CHROMIUM_BIN ?? "/usr/bin/chromium", args: CHROMIUM_ARGS },
  firefox: { browser: "firefox", executablePath: process.env.FIREFOX_BIN ?? "/usr/bin/firefox-esr", args: [] },
};

/** One launched browser per engine, started on first use and closed by `closeAll`. */
const launched = new Map();

async function browserFor(engine) {
  if (!launched.has(engine)) {
    const { browser, executablePath, args } = ENGINES[engine];
    launched.set(engine, puppeteer.launch({ browser, executablePath, args, headless: true, protocolTimeout: 180000 }));
  }
  return launched.get(engine);
}

export async function closeAll() {
  for (const browser of launched.values()) await (await browser).close().catch(() => {});
  launched.clear();
}

/** A page in its own context (its own storage, like another person's browser). */
export async function openPage(engine, name) {
  const browser = await browserFor(engine);
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${name} ${engine}] pageerror:`, e.message ?? e));
  return {
    engine,
    name,
    page,
    goto: (url) => page.goto(url),
    reload: () => page.reload(),
    evaluate: (fn, arg) => page.evaluate(fn, arg),
    /** Resolves with `fn(arg)`'s value once it is truthy. */
    waitFor: async (fn, arg, timeout = 30000) => (await page.waitForFunction(fn, { timeout, polling: 100 }, arg)).jsonValue(),
    close: () => context.close(),
  };
}
