// Bundle size by feature, so growth is visible: every function of the wasm (after
// wasm-bindgen, before wasm-opt, where the names still are) is attributed to its crate —
// and for meshdrop itself to its module (core::mesh, core::transfer, web, api, …) —
// and the shares are applied to the shipped, gzipped package. The build `make build`
// runs (wasm-pack, release) leaves that wasm in target/wasm32-unknown-unknown/release.
// Usage: node bench/bundle.mjs
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { ROOT } from "../tests/e2e/helpers.mjs";

const RAW = path.join(ROOT, "target/wasm32-unknown-unknown/release/meshdrop.wasm");
const PKG = path.join(ROOT, "pkg");
if (!existsSync(RAW) || !existsSync(path.join(PKG, "meshdrop_bg.wasm"))) {
  console.error("build first: make build");
  process.exit(1);
}

/** The function bodies' sizes, their names, and the data segments' size. */
function readWasm(bytes) {
  let at = 8;
  const leb = () => {
    let value = 0;
    let shift = 0;
    for (;;) {
      const byte = bytes[at++];
      value += (byte & 0x7f) * 2 ** shift;
      shift += 7;
      if (byte < 0x80) return value;
    }
  };
  const skipName = () => {
    const len = leb();
    at += len;
  };
  let imported = 0;
  const bodies = [];
  const names = new Map();
  let data = 0;
  while (at < bytes.length) {
    const id = bytes[at++];
    const size = leb();
    const end = at + size;
    if (id === 2) {
      // Imported functions come first in the function index space.
      for (let n = leb(); n > 0; n--) {
        skipName();
        skipName();
        const kind = bytes[at++];
        if (kind === 0) {
          leb();
          imported += 1;
        } else if (kind === 1) {
          at += 1;
          if (leb() & 1) leb();
          leb();
        } else if (kind === 2) {
          if (leb() & 1) leb();
          leb();
        } else if (kind === 3) at += 2;
        else if (kind === 4) at += 1, leb();
      }
    } else if (id === 10) {
      for (let n = leb(); n > 0; n--) {
        const len = leb();
        bodies.push(len);
        at += len;
      }
    } else if (id === 11) {
      data += size;
    } else if (id === 0) {
      const nameLen = leb();
      const name = new TextDecoder().decode(bytes.subarray(at, at + nameLen));
      at += nameLen;
      if (name === "name") {
        while (at < end) {
          const sub = bytes[at++];
          const subSize = leb();
          const subEnd = at + subSize;
          if (sub === 1) {
            for (let n = leb(); n > 0; n--) {
              const index = leb();
              const len = leb();
              names.set(index, new TextDecoder().decode(bytes.subarray(at, at + len)));
              at += len;
            }
          }
          at = subEnd;
        }
      }
    }
    at = end;
  }
  return { bodies: bodies.map((size, i) => ({ size, name: names.get(imported + i) ?? "" })), data };
}

/** The identifiers of a mangled Rust symbol (v0 or legacy), crate first. */
function pathOf(symbol) {
  if (symbol.startsWith("_R")) {
    // v0: the first crate root (`Cs<hash>_<len><name>`), then the identifiers after it.
    const crate = symbol.match(/C(?:s[0-9A-Za-z]*_)?(\d+)([A-Za-z_][A-Za-z0-9_]*)/);
    if (!crate) return [];
    const len = Number(crate[1]);
    const parts = [crate[2].slice(0, len)];
    let rest = symbol.slice(crate.index + crate[0].length - (crate[2].length - len));
    for (let m; parts.length < 3 && (m = rest.match(/^[A-Za-z]*?(\d+)([A-Za-z_][A-Za-z0-9_]*)/)); ) {
      const n = Number(m[1]);
      parts.push(m[2].slice(0, n));
      rest = rest.slice(m[0].length - (m[2].length - n));
    }
    return parts;
  }
  if (symbol.startsWith("_ZN")) {
    const parts = [];
    let rest = symbol.slice(3);
    for (let m; parts.length < 3 && (m = rest.match(/^(\d+)/)); ) {
      const n = Number(m[1]);
      parts.push(rest.slice(m[1].length, m[1].length + n));
      rest = rest.slice(m[1].length + n);
    }
    // An impl, `<crate::module::Type as Trait>::method`: the path of its type.
    if (parts[0]?.startsWith("_$LT$")) {
      const type = parts[0].slice(5).replace(/^(\$RF\$|mut\$u20\$|\$BP\$|const\$u20\$)+/, "").split(/\$u20\$|\$LT\$|\$GT\$/)[0];
      return type.split("..").slice(0, 3);
    }
    return parts;
  }
  // Demangled, as wasm-bindgen writes names: `<&mut crate[hash]::module::Type as Trait>::f`.
  const demangled = symbol.replace(/^(<|&mut |&|dyn |\*const |\*mut )+/, "").match(/^[A-Za-z_][A-Za-z0-9_]*(\[[0-9a-f]+\])?(::[A-Za-z_][A-Za-z0-9_]*)*/);
  if (demangled && demangled[0].includes("::")) return demangled[0].replace(/\[[0-9a-f]+\]/g, "").split("::").slice(0, 3);
  return [];
}

function groupOf(name) {
  const [crate, first, second] = pathOf(name);
  if (!crate) return /^__wbindgen|^__wbg|^__externref|shim$/.test(name) ? "wasm_bindgen" : "(unnamed)";
  if (crate === "meshdrop") return ["core", "web", "api"].includes(first) && second ? `meshdrop::${first}::${second}` : `meshdrop::${first ?? ""}`;
  if (["core", "alloc", "std"].includes(crate)) return "Rust std (core, alloc: formatting, collections)";
  return crate;
}

/** The wasm as wasm-bindgen leaves it (names kept): without the type descriptions
 *  it runs and then removes, which never ship but are most of wasm_bindgen's and
 *  js_sys's code before it. */
function afterBindgen() {
  const dir = mkdtempSync(path.join(os.tmpdir(), "meshdrop-bundle-"));
  try {
    const cli = path.join(os.homedir(), ".cargo/bin/wasm-bindgen");
    execFileSync(existsSync(cli) ? cli : "wasm-bindgen", ["--target", "web", "--keep-debug", "--out-dir", dir, RAW], { stdio: "inherit" });
    return readFileSync(path.join(dir, "meshdrop_bg.wasm"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const raw = readWasm(afterBindgen());
const groups = new Map();
for (const { size, name } of raw.bodies) groups.set(groupOf(name), (groups.get(groupOf(name)) ?? 0) + size);
const code = [...groups.values()].reduce((a, b) => a + b, 0);
const shipped = readFileSync(path.join(PKG, "meshdrop_bg.wasm"));
const shippedGz = gzipSync(shipped, { level: 9 }).length;
const glueGz = gzipSync(readFileSync(path.join(PKG, "meshdrop.js")), { level: 9 }).length;
// The JS files meshdrop.js imports or starts (the storage worker, small helpers): loaded
// by every page that uses the package, so they count.
const snippets = readdirSync(path.join(PKG, "snippets"), { recursive: true })
  .filter((f) => f.endsWith(".js"))
  .map((f) => ({ name: path.basename(f), gz: gzipSync(readFileSync(path.join(PKG, "snippets", f)), { level: 9 }).length }))
  .sort((a, b) => b.gz - a.gz);
const snippetsGz = snippets.reduce((sum, f) => sum + f.gz, 0);
const kib = (n) => (n / 1024).toFixed(1);
const rows = [...groups.entries()].sort((a, b) => b[1] - a[1]);
const top = rows.slice(0, 30);
const rest = rows.slice(30).reduce((sum, [, size]) => sum + size, 0);

let report = `# meshdrop bundle by feature

The shipped package: meshdrop_bg.wasm ${kib(shipped.length)} KiB (${kib(shippedGz)} KiB gzip -9) + meshdrop.js ${kib(glueGz)} KiB gzip + the JS files it loads (${snippets.map((f) => `${f.name} ${kib(f.gz)}`).join(", ")}) = **${kib(shippedGz + glueGz + snippetsGz)} KiB gzip** (wasm and meshdrop.js alone, the figure reports before 2026-12-01 gave: ${kib(shippedGz + glueGz)} KiB).

Each function of the wasm after wasm-bindgen and before \`wasm-opt -Oz\` (${kib(code)} KiB of code, ${kib(raw.data)} KiB of data segments) is attributed to its crate, and meshdrop's own to its module; code inlined into a function counts where it was inlined (LLVM inlines small and single-caller functions, so a module holds some of its callees' code). "≈ gzip" applies each share to the shipped wasm's gzip size (the data segments' share included), so it is an estimate. Code: bench/bundle.mjs.

| feature (crate or module) | code before wasm-opt | share | ≈ gzip |
|---|---:|---:|---:|
`;
const total = code + raw.data;
for (const [group, size] of top) report += `| ${group} | ${kib(size)} KiB | ${((100 * size) / total).toFixed(1)} % | ${kib((shippedGz * size) / total)} KiB |\n`;
if (rest > 0) report += `| ${rows.length - top.length} more | ${kib(rest)} KiB | ${((100 * rest) / total).toFixed(1)} % | ${kib((shippedGz * rest) / total)} KiB |\n`;
report += `| data segments (strings, tables) | ${kib(raw.data)} KiB | ${((100 * raw.data) / total).toFixed(1)} % | ${kib((shippedGz * raw.data) / total)} KiB |\n`;
mkdirSync(path.join(ROOT, "bench/results"), { recursive: true });
writeFileSync(path.join(ROOT, "bench/results/bundle.md"), report);
console.log(report);
