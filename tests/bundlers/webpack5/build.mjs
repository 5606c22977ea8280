// webpack 5 emits the .wasm and the storage worker from their `new URL(...)` by itself:
// the configuration is the entry and the output, nothing for meshdrop.
import { copyFileSync, mkdirSync } from "node:fs";
import path from "node:path";
import webpack from "webpack";

const here = path.dirname(new URL(import.meta.url).pathname);
const compiler = webpack({
  mode: "production",
  entry: "./main.js",
  context: here,
  output: { path: path.join(here, "dist"), filename: "main.js", publicPath: "auto", clean: true },
});
compiler.run((err, stats) => {
  if (err || stats.hasErrors()) {
    console.error(err ?? stats.toString("errors-only"));
    process.exit(1);
  }
  mkdirSync(path.join(here, "dist"), { recursive: true });
  copyFileSync(path.join(here, "index.html"), path.join(here, "dist/index.html"));
  compiler.close(() => {});
});
