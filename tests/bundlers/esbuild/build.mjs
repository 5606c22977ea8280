// esbuild: the file loader for the .wasm (see entry.js), and the storage worker copied
// beside the bundle, where the package looks for it (without it, the worker starts
// from a blob: URL, which a strict Content-Security-Policy refuses).
import { copyFileSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import path from "node:path";
import { build } from "esbuild";

const here = path.dirname(new URL(import.meta.url).pathname);
const dist = path.join(here, "dist");
rmSync(dist, { recursive: true, force: true });
mkdirSync(dist);
await build({
  entryPoints: [path.join(here, "entry.js")],
  bundle: true,
  format: "esm",
  outfile: path.join(dist, "main.js"),
  loader: { ".wasm": "file" },
});
const snippets = path.join(here, "node_modules/meshdrop/snippets");
for (const crate of readdirSync(snippets)) copyFileSync(path.join(snippets, crate, "src/web/store_worker.js"), path.join(dist, "store_worker.js"));
copyFileSync(path.join(here, "index.html"), path.join(dist, "index.html"));
