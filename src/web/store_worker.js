// meshdrop's storage worker: file bytes go to the Origin Private File System through
// synchronous access handles (writes in place, no swap file, kept across reloads).
// Layout: meshdrop/<content key>/{data, hashes, meta.json}; `hashes` holds 32 bytes per
// block at block * 32, zero until that block is verified and written.
"use strict";
let rootDir;
const open = new Map(); // transfer id -> { key, data, hashes }

async function root() {
  rootDir ??= await (await navigator.storage.getDirectory()).getDirectoryHandle("meshdrop", { create: true });
  return rootDir;
}

function failure(id, op, err) {
  const full = err && (err.name === "QuotaExceededError" || /quota/i.test(String(err.message)));
  return { op, id, error: String((err && err.message) || err), full: Boolean(full) };
}

async function readFile(dir, name) {
  const handle = await dir.getFileHandle(name);
  return handle.getFile();
}

const ops = {
  async probe({ id, key }) {
    try {
      const dir = await (await root()).getDirectoryHandle(key);
      const meta = JSON.parse(await (await readFile(dir, "meta.json")).text());
      const hashes = await (await readFile(dir, "hashes")).arrayBuffer();
      return { op: "probed", id, from: String(meta.from), hashes };
    } catch {
      return { op: "probed", id };
    }
  },
  async open({ id, key, meta }) {
    try {
      const dir = await (await root()).getDirectoryHandle(key, { create: true });
      const metaFile = await dir.getFileHandle("meta.json", { create: true });
      const metaHandle = await metaFile.createSyncAccessHandle();
      const text = new TextEncoder().encode(JSON.stringify(meta));
      metaHandle.truncate(0);
      metaHandle.write(text, { at: 0 });
      metaHandle.close();
      const dataFile = await dir.getFileHandle("data", { create: true });
      const data = await dataFile.createSyncAccessHandle();
      const hashes = await (await dir.getFileHandle("hashes", { create: true })).createSyncAccessHandle();
      open.set(id, { key, data, hashes, dataFile });
      return { op: "opened", id };
    } catch (err) {
      return failure(id, "opened", err);
    }
  },
  write({ id, offset, buffer }) {
    const entry = open.get(id);
    if (!entry) return null;
    try {
      entry.data.write(new Uint8Array(buffer), { at: offset });
      return null;
    } catch (err) {
      return failure(id, "failed", err);
    }
  },
  commit({ id, block, hash }) {
    const entry = open.get(id);
    if (!entry) return null;
    try {
      entry.hashes.write(new Uint8Array(hash), { at: block * 32 });
      return { op: "committed", id, block };
    } catch (err) {
      return failure(id, "failed", err);
    }
  },
  async finish({ id }) {
    const entry = open.get(id);
    if (!entry) return failure(id, "finished", new Error("storage is not open"));
    try {
      // No flush(): it would wait for the disk (seconds for large files on slow disks)
      // for no gain a reload needs; the OS writes the data back as usual.
      entry.data.close();
      entry.hashes.close();
      open.delete(id);
      return { op: "finished", id, file: await entry.dataFile.getFile() };
    } catch (err) {
      return failure(id, "finished", err);
    }
  },
  async close({ id, remove }) {
    const entry = open.get(id);
    if (!entry) return null;
    open.delete(id);
    try {
      entry.data.close();
      entry.hashes.close();
      if (remove) await (await root()).removeEntry(entry.key, { recursive: true });
    } catch {
      // Best effort: cleanup removes what is left.
    }
    return null;
  },
  async cleanup({ maxAgeMs }) {
    const dir = await root();
    const now = Date.now();
    for await (const [name, handle] of dir.entries()) {
      if (handle.kind !== "directory" || [...open.values()].some((e) => e.key === name)) continue;
      try {
        const data = await readFile(handle, "data");
        if (now - data.lastModified > maxAgeMs) await dir.removeEntry(name, { recursive: true });
      } catch {
        await dir.removeEntry(name, { recursive: true }).catch(() => {});
      }
    }
    return null;
  },
};

// One operation at a time, in arrival order: a block's commit lands after its bytes.
let queue = Promise.resolve();
self.onmessage = (event) => {
  const message = event.data;
  queue = queue.then(async () => {
    const op = ops[message.op];
    const reply = op ? await op(message) : null;
    if (reply) self.postMessage(reply);
  });
};
