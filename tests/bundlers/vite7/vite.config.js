// Vite 7 (and older): the dev server pre-bundles dependencies with esbuild, which loses
// the package's `new URL("meshdrop_bg.wasm", import.meta.url)`: leave meshdrop out.
export default {
  optimizeDeps: { exclude: ["meshdrop"] },
};
