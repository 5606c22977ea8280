// meshdrop's storage worker: file bytes go to the Origin Private File System through
// synchronous access handles (writes in place, no swap file, kept across reloads).
// Layout: meshdrop/<content key>/<transfer id>/{data, hashes, meta.json[, done]}: one
// directory per download, so the same content received twice never shares storage.
// `hashes` holds 32 bytes per block at block * 32, zero until that block is verified
// and written. A download with `done` is final: never reported as a partial, never
// opened again (the File handed to the user reads it).
"use strict"; // also loaded as a classic script, from a blob: URL

// Frees a written frame's bytes now rather than at a garbage collection: the buffer
// moves into a message on a channel whose both ends then close, and the closed
// channel drops it. Dead frames otherwise pile up until V8 counts ~64 MiB of them
// (1 GiB download, `node bench/transfer.mjs`: receiver renderer +31 MiB this way,
// +89 MiB with frames left to the collector). Not `buffer.transfer(0)`: V8 then stops
// counting the bytes, but Blink holds them until a collection that never comes
// (+570 MiB). Only an optimisation: a buffer it cannot move is left to the collector.
function release(buffer) {
  try {
    const { port1, port2 } = new MessageChannel();
    port1.postMessage(null, [buffer]);
    port1.close();
    port2.close();
  } catch {}
}

const open = new Map(); // transfer id -> { key, slot, data, hashes, dataFile }
const probed = new Map(); // transfer id -> the partial found: { key, slot }, for `open`

// Looked up anew each time (only when a download opens, closes or is looked for): a
// handle kept from before would point at nothing once the site's data is cleared, or
// another tab's cleanup removes the directory, and every later download would fail.
async function root() {
  return (await navigator.storage.getDirectory()).getDirectoryHandle("meshdrop", { create: true });
}

function failure(id, op, err) {
  const full = err && (err.name === "QuotaExceededError" || /quota/i.test(String(err.message)));
  return { op, id, error: String((err && err.message) || err), full: Boolean(full) };
}

async function readFile(dir, name) {
  const handle = await dir.getFileHandle(name);
  return handle.getFile();
}

async function exists(dir, name) {
  try {
    await dir.getFileHandle(name);
    return true;
  } catch {
    return false;
  }
}

function isOpen(key, slot) {
  for (const entry of open.values()) if (entry.key === key && entry.slot === slot) return true;
  return false;
}

// Open, or found by a probe for the `open` that follows: cleanup runs a while after a
// join, and may come between them.
function isInUse(key, slot) {
  for (const entry of probed.values()) if (entry.key === key && entry.slot === slot) return true;
  return isOpen(key, slot);
}

// The partial download of `key` to continue: this transfer's own if it has one, else
// the one with the most verified blocks. Finished and in-use ones are never picked.
async function findPartial(key, id) {
  let keyDir;
  try {
    keyDir = await (await root()).getDirectoryHandle(key);
  } catch {
    return null;
  }
  let best = null;
  try {
    for await (const [slot, dir] of keyDir.entries()) {
      if (dir.kind !== "directory" || isOpen(key, slot) || (await exists(dir, "done"))) continue;
      try {
        const meta = JSON.parse(await (await readFile(dir, "meta.json")).text());
        const hashes = await (await readFile(dir, "hashes")).arrayBuffer();
        const bytes = new Uint8Array(hashes);
        let blocks = 0;
        for (let at = 0; at + 32 <= bytes.length; at += 32) if (bytes.subarray(at, at + 32).some((b) => b !== 0)) blocks++;
        const candidate = { slot, meta, hashes, blocks, own: meta.transfer === id };
        if (!best || candidate.own > best.own || (candidate.own === best.own && candidate.blocks > best.blocks)) best = candidate;
      } catch {
        // Unreadable: not a partial worth continuing; cleanup removes it.
      }
    }
  } catch {
    // The directory went while we read it (the site's data was cleared): nothing to resume.
    return null;
  }
  return best;
}

const ops = {
  async probe({ id, key }) {
    const partial = await findPartial(key, id);
    if (!partial) {
      probed.delete(id);
      return { op: "probed", id };
    }
    probed.set(id, { key, slot: partial.slot });
    const { meta, hashes } = partial;
    return { op: "probed", id, from: meta.from ?? null, transfer: meta.transfer ?? null, hashes };
  },
  async open({ id, key, meta }) {
    let handles = [];
    try {
      const keyDir = await (await root()).getDirectoryHandle(key, { create: true });
      // The partial the probe reported (the core counts its blocks), or a new one.
      const slot = probed.get(id)?.slot ?? id;
      probed.delete(id);
      const dir = await keyDir.getDirectoryHandle(slot, { create: true });
      // The three files at once: each is two round trips to the browser (~1 ms apiece in
      // Chromium 156), and the open is on the way of a transfer's first block.
      const settled = await Promise.allSettled(
        ["meta.json", "data", "hashes"].map(async (name) => {
          const file = await dir.getFileHandle(name, { create: true });
          return { file, handle: await file.createSyncAccessHandle() };
        }),
      );
      handles = settled.filter((r) => r.status === "fulfilled").map((r) => r.value.handle);
      const failed = settled.find((r) => r.status === "rejected");
      if (failed) throw failed.reason;
      const [metaFile, data, hashes] = settled.map((r) => r.value);
      const text = new TextEncoder().encode(JSON.stringify({ ...meta, transfer: id }));
      metaFile.handle.truncate(0);
      metaFile.handle.write(text, { at: 0 });
      metaFile.handle.close();
      open.set(id, { key, slot, dir, data: data.handle, hashes: hashes.handle, dataFile: data.file });
      return { op: "opened", id };
    } catch (err) {
      // A file that did open must not stay locked (another tab could not open it).
      for (const handle of handles) {
        try {
          handle.close();
        } catch {}
      }
      return failure(id, "opened", err);
    }
  },
  write({ id, offset, buffer }) {
    const entry = open.get(id);
    if (!entry) return null;
    try {
      entry.data.write(new Uint8Array(buffer), { at: offset });
      release(buffer);
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
      // Final from here: nothing opens it again, so the File below stays as verified.
      await entry.dir.getFileHandle("done", { create: true });
      return { op: "finished", id, file: await entry.dataFile.getFile() };
    } catch (err) {
      return failure(id, "finished", err);
    }
  },
  async close({ id, remove }) {
    probed.delete(id);
    const entry = open.get(id);
    if (!entry) return null;
    open.delete(id);
    try {
      entry.data.close();
      entry.hashes.close();
      if (remove) await (await (await root()).getDirectoryHandle(entry.key)).removeEntry(entry.slot, { recursive: true });
    } catch {
      // Best effort: cleanup removes what is left.
    }
    return null;
  },
  async cleanup({ maxAgeMs }) {
    const top = await root();
    const now = Date.now();
    const stale = async (dir) => {
      try {
        return now - (await readFile(dir, "data")).lastModified > maxAgeMs;
      } catch {
        return true;
      }
    };
    for await (const [key, keyDir] of top.entries()) {
      if (keyDir.kind !== "directory") continue;
      let left = 0;
      for await (const [slot, dir] of keyDir.entries()) {
        // Files of the layout before per-download directories count as stale.
        if (dir.kind === "directory" && (isInUse(key, slot) || !(await stale(dir)))) {
          left++;
          continue;
        }
        await keyDir.removeEntry(slot, { recursive: true }).catch(() => {});
      }
      if (!left) await top.removeEntry(key, { recursive: true }).catch(() => {});
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
    let reply;
    try {
      reply = op ? await op(message) : null;
    } catch (err) {
      // Each operation answers its own errors; one that escapes (a directory removed
      // under `cleanup`, say) must not stop the queue: every later one would wait forever.
      reply = message.id === undefined ? null : failure(message.id, "failed", err);
    }
    if (reply) self.postMessage(reply);
  });
};

// The first word: whether OPFS with synchronous access handles works here (a private
// window or an old browser may lack it), before any operation is sent.
(async () => {
  try {
    await root();
    if (typeof FileSystemFileHandle === "undefined" || !("createSyncAccessHandle" in FileSystemFileHandle.prototype)) {
      throw new Error("no synchronous access handles");
    }
    self.postMessage({ op: "ready" });
  } catch (err) {
    self.postMessage({ op: "unusable", error: String((err && err.message) || err) });
  }
})();
