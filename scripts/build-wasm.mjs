#!/usr/bin/env node
// Builds every [[package]] declared in wasm-pack.toml with wasm-pack.
// The file uses a small TOML subset (tables of `key = "string"`); anything else is an
// error rather than silently ignored, so the file always means what it says.
import { readFileSync } from "node:fs";
import { spawnSync } from "node:child_process";

const KEYS = new Set(["target", "out-dir", "scope", "profile"]);
const TARGETS = new Set(["web", "bundler", "nodejs", "no-modules", "deno"]);

export function parsePackages(text) {
  const packages = [];
  text.split("\n").forEach((raw, i) => {
    const line = raw.replace(/#.*$/, "").trim();
    if (!line) return;
    if (line === "[[package]]") {
      packages.push({});
      return;
    }
    const m = line.match(/^([a-z-]+)\s*=\s*"([^"]*)"$/);
    if (!m || !packages.length) throw new Error(`wasm-pack.toml:${i + 1}: expected [[package]] or key = "value", got: ${raw}`);
    if (!KEYS.has(m[1])) throw new Error(`wasm-pack.toml:${i + 1}: unknown key ${m[1]}`);
    packages[packages.length - 1][m[1]] = m[2];
  });
  for (const p of packages) {
    if (!TARGETS.has(p.target)) throw new Error(`wasm-pack.toml: bad or missing target in ${JSON.stringify(p)}`);
    if (!p["out-dir"]) throw new Error(`wasm-pack.toml: missing out-dir in ${JSON.stringify(p)}`);
  }
  if (!packages.length) throw new Error("wasm-pack.toml declares no [[package]]");
  return packages;
}

const packages = parsePackages(readFileSync(new URL("../wasm-pack.toml", import.meta.url), "utf8"));
for (const p of packages) {
  const args = ["build", "--target", p.target, "--out-dir", p["out-dir"], "--out-name", "meshdrop", `--${p.profile ?? "release"}`];
  if (p.scope) args.push("--scope", p.scope);
  console.log(`wasm-pack ${args.join(" ")}`);
  const r = spawnSync("wasm-pack", args, { stdio: "inherit" });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
