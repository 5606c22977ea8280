// Hash speed in Chromium's wasm: BLAKE3 (portable, and with wasm SIMD) against
// SHA-256, on 1 MiB buffers (meshdrop's block size). Builds bench/hash/ first.
// Usage: node bench/hash.mjs    (or `make bench`)
import { execSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { launchBrowser, ROOT } from "../tests/e2e/helpers.mjs";

const dir = path.join(ROOT, "bench/hash");
const build = (flags, features, target, out) => {
  execSync(`cargo build --quiet --release --target wasm32-unknown-unknown ${features} --target-dir ${target}`, {
    cwd: dir,
    stdio: "inherit",
    env: { ...process.env, RUSTFLAGS: flags },
  });
  execSync(`wasm-bindgen --target web --out-dir out/${out} ${target}/wasm32-unknown-unknown/release/meshdrop_hash_bench.wasm`, { cwd: dir, stdio: "inherit" });
};
build("", "", "target", "plain");
build("-C target-feature=+simd128", "--features simd", "target-simd", "simd");

const browser = await launchBrowser();
const page = await browser.newPage();
await page.route("http://127.0.0.1:9/**", (route) => {
  const file = path.join(dir, "out", new URL(route.request().url()).pathname);
  const type = file.endsWith(".wasm") ? "application/wasm" : "text/javascript";
  route.fulfill({ body: readFileSync(file), contentType: type });
});
await page.goto("http://127.0.0.1:9/plain/meshdrop_hash_bench.js");
const results = await page.evaluate(async () => {
  const MiB = 1024 * 1024;
  const data = new Uint8Array(MiB);
  crypto.getRandomValues(data.subarray(0, 65536));
  const out = {};
  for (const variant of ["plain", "simd"]) {
    const mod = await import(`/${variant}/meshdrop_hash_bench.js`);
    await mod.default();
    for (const [name, fn] of [["blake3", mod.blake3_rounds], ["sha256", mod.sha256_rounds]]) {
      if (variant === "simd" && name === "sha256") continue; // sha2 has no wasm SIMD path
      fn(data, 8); // warm up (tier-up)
      const speeds = [];
      for (let i = 0; i < 5; i++) {
        const t0 = performance.now();
        fn(data, 64);
        speeds.push((64 * MiB) / 1e6 / ((performance.now() - t0) / 1000));
      }
      speeds.sort((a, b) => a - b);
      out[`${name} (${variant === "simd" ? "wasm SIMD" : "portable"})`] = speeds;
    }
  }
  return out;
});
await browser.close();

const rows = Object.entries(results).map(([name, s]) => `| ${name} | ${s[2].toFixed(0)} | ${s[0].toFixed(0)}–${s[4].toFixed(0)} |`);
const report = `# Hash speed in the browser

${new Date().toISOString()} · ${execSync("/usr/bin/chromium --version").toString().trim()} · 64 × 1 MiB per sample, 5 samples. Code: bench/hash.mjs.

| hash | MB/s median | min–max |
|---|---:|---:|
${rows.join("\n")}
`;
mkdirSync(path.join(ROOT, "bench/results"), { recursive: true });
writeFileSync(path.join(ROOT, "bench/results/hash.md"), report);
console.log(report);
