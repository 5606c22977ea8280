// Reads part of a Blob into a buffer the caller reuses. A transfer reads every byte of
// its file; `slice().arrayBuffer()` makes a new buffer each time, and V8 frees dead
// buffers only at its next collection, which comes late: in a page reading 512 MiB in
// 1 MiB pieces the renderer grew 165 MiB that way, 56 MiB through a reused buffer.

// Resolves to a Uint8Array of the bytes `start..end`: over `buffer`'s memory (the
// ArrayBuffer object is a new one: a read takes the buffer over) when `buffer` is big
// enough and the browser's Blob streams take BYOB reads, else over a new buffer.
export async function readBlobInto(blob, start, end, buffer) {
  const len = end - start;
  if (buffer && buffer.byteLength >= len && len > 0) {
    let reader;
    try {
      reader = blob.slice(start, end).stream().getReader({ mode: "byob" });
    } catch {
      reader = null; // not a byte stream here: read it the plain way below
    }
    if (reader) {
      let filled = 0;
      for (;;) {
        const { value, done } = await reader.read(new Uint8Array(buffer, filled, len - filled));
        if (value) buffer = value.buffer;
        if (done) break;
        filled += value.byteLength;
        if (filled === len) {
          reader.cancel().catch(() => {});
          break;
        }
      }
      return new Uint8Array(buffer, 0, filled);
    }
  }
  return new Uint8Array(await blob.slice(start, end).arrayBuffer());
}
