// esbuild does not emit what `new URL(..., import.meta.url)` points at: import the
// .wasm's URL with the file loader and hand it to init.
import wasmUrl from "meshdrop/meshdrop_bg.wasm";
import { start } from "./app.js";

await start({ module_or_path: wasmUrl });
