#!/usr/bin/env node
// Builds every [[package]] declared in wasm-pack.toml with wasm-pack, once, and
// finishes it as the npm package users install: the storage worker beside the module
// that starts it, the entry that checks `init()` was called, declarations without the
// wasm internals, the npm README and metadata. Then copies it where `copy-to` says and
// packs it where `pack-to` says.
// The file uses a small TOML subset (tables of `key = "string"`); anything else is an
// error rather than silently ignored, so the file always means what it says.
import { copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const KEYS = new Set(["target", "out-dir", "scope", "profile", "copy-to", "pack-to"]);
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

function run(cmd, args, options = {}) {
  console.log(`${cmd} ${args.join(" ")}`);
  const r = spawnSync(cmd, args, { stdio: "inherit", cwd: ROOT, ...options });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

/** The wasm-bindgen snippet that starts the worker; the worker file goes beside it. */
function placeWorker(dir) {
  const snippets = path.join(dir, "snippets");
  const starters = readdirSync(snippets)
    .map((crate) => path.join("snippets", crate, "src/web/glue.js"))
    .filter((file) => existsSync(path.join(dir, file)));
  if (starters.length !== 1) throw new Error(`expected one src/web/glue.js snippet in ${dir}, found ${starters.length}`);
  copyFileSync(path.join(ROOT, "src/web/store_worker.js"), path.join(dir, path.dirname(starters[0]), "store_worker.js"));
}

/** Declarations: the Disposable lib referenced (no tsconfig change for users), and
 *  `InitOutput` without the ~60 raw wasm exports nobody should call. */
function finishDeclarations(file) {
  let text = readFileSync(file, "utf8");
  const start = text.indexOf("export interface InitOutput {");
  const end = text.indexOf("\n}\n", start);
  if (start < 0 || end < 0) throw new Error(`${file}: no InitOutput interface to trim`);
  const initOutput =
    "/** What `init` resolves to. */\nexport interface InitOutput {\n    /** The module's memory. Everything else in it is internal. */\n    readonly memory: WebAssembly.Memory;\n}";
  text = text.slice(0, start) + initOutput + text.slice(end + 2);
  // wasm-bindgen's own members and types, documented for the API reference.
  const documented = [
    [
      "    free(): void;\n    [Symbol.dispose](): void;",
      "    /** Releases this object's memory in the WebAssembly module now rather than when it is\n     *  garbage-collected; using the object afterwards throws. Rarely needed. */\n    free(): void;\n    /** `free()`, for `using` declarations. */\n    [Symbol.dispose](): void;",
    ],
    ["export type InitInput =", "/** Where `init` gets the module: its URL (the default), a Response, its bytes, or a compiled module. */\nexport type InitInput ="],
    ["export type SyncInitInput =", "/** What `initSync` takes: the module's bytes, or a compiled module. */\nexport type SyncInitInput ="],
  ];
  for (const [from, to] of documented) {
    if (!text.includes(from)) throw new Error(`${file}: expected ${JSON.stringify(from)} to document`);
    text = text.replaceAll(from, to);
  }
  text = `/// <reference lib="esnext.disposable" />\n${text}`;
  writeFileSync(file, text);
}

/** Has V8 compile every function of the generated glue when the module loads (off the
 *  main thread where the browser streams it), not each at its first call: a first join
 *  called ~80 of them (with glue.js's), whose compiling cost each tab ~3 ms of its main
 *  thread, 0.4 ms with the hint (Chromium trace, 2 peers). It must come before any
 *  function; after wasm-bindgen's leading `@ts-self-types` comment is fine. */
function compileGlueEagerly(file) {
  const hint = "//# allFunctionsCalledOnLoad";
  const text = readFileSync(file, "utf8");
  const firstLineEnd = text.indexOf("\n") + 1;
  const first = text.slice(0, firstLineEnd);
  if (!first.startsWith("/* @ts-self-types=")) throw new Error(`${file}: expected wasm-bindgen's @ts-self-types comment first, found ${JSON.stringify(first)}`);
  writeFileSync(file, `${first}${hint}\n${text.slice(firstLineEnd)}`);
}

function finishPackageJson(file) {
  const pkg = JSON.parse(readFileSync(file, "utf8"));
  const repository = pkg.repository?.url ?? "https://github.com/meshdrop/meshdrop";
  Object.assign(pkg, {
    main: "index.js",
    module: "index.js",
    types: "index.d.ts",
    exports: {
      ".": { types: "./index.d.ts", default: "./index.js" },
      // For bundlers that do not emit it by themselves (esbuild): import its URL.
      "./meshdrop_bg.wasm": "./meshdrop_bg.wasm",
      "./package.json": "./package.json",
    },
    // index.js wraps Peer.join; the snippets start the worker and read identity.
    sideEffects: ["./index.js", "./snippets/*"],
    bugs: { url: `${repository}/issues` },
  });
  pkg.files = [...new Set([...(pkg.files ?? []), "index.js", "index.d.ts", "README.md"])];
  writeFileSync(file, `${JSON.stringify(pkg, null, 2)}\n`);
}

function finish(dir) {
  placeWorker(dir);
  for (const name of ["index.js", "index.d.ts", "README.md"]) copyFileSync(path.join(ROOT, "npm", name), path.join(dir, name));
  finishDeclarations(path.join(dir, "meshdrop.d.ts"));
  compileGlueEagerly(path.join(dir, "meshdrop.js"));
  finishPackageJson(path.join(dir, "package.json"));
  rmSync(path.join(dir, ".gitignore"), { force: true });
}

const packages = parsePackages(readFileSync(path.join(ROOT, "wasm-pack.toml"), "utf8"));
for (const p of packages) {
  const args = ["build", "--target", p.target, "--out-dir", p["out-dir"], "--out-name", "meshdrop", `--${p.profile ?? "release"}`];
  if (p.scope) args.push("--scope", p.scope);
  // wasm-pack keeps the snippets of earlier builds, which would then ship.
  rmSync(path.join(ROOT, p["out-dir"]), { recursive: true, force: true });
  run("wasm-pack", args);
  const dir = path.join(ROOT, p["out-dir"]);
  finish(dir);
  if (p["copy-to"]) {
    const to = path.join(ROOT, p["copy-to"]);
    rmSync(to, { recursive: true, force: true });
    cpSync(dir, to, { recursive: true });
    console.log(`copied ${p["out-dir"]} to ${p["copy-to"]}`);
  }
  if (p["pack-to"]) {
    const to = path.join(ROOT, p["pack-to"]);
    mkdirSync(to, { recursive: true });
    run("npm", ["pack", "--silent", "--pack-destination", to], { cwd: dir });
  }
}
