// The storage worker from the file shipped beside this module: the form bundlers
// (Vite, webpack) recognise and emit, and that a strict `worker-src 'self'` allows.
// The build copies store_worker.js here (scripts/build-wasm.mjs).
export function startStoreWorker() {
  return new Worker(new URL("./store_worker.js", import.meta.url), { type: "module" });
}
