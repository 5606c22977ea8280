// Reads part of a Blob into a buffer the caller reuses (why: src/web/blob.rs).
// Resolves to a Uint8Array of bytes `start..end`, over `buffer`'s memory (under a new
// ArrayBuffer object: a read takes the buffer over) when it is big enough and Blob
// streams take BYOB reads here; else over a new buffer.

// Streams being read. Chromium collects a Blob's stream nothing references even while
// a read is pending, and that read then never settles (every read hung with gc() every
// few ms); held here, they live until their read is over.
const reading = new Set();

export async function readBlobInto(blob, start, end, buffer) {
  const len = end - start;
  if (buffer && buffer.byteLength >= len && len > 0) {
    const stream = blob.slice(start, end).stream();
    let reader;
    try {
      reader = stream.getReader({ mode: "byob" });
    } catch {
      reader = null; // not a byte stream here: read it the plain way below
    }
    if (reader) {
      reading.add(stream);
      try {
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
      } finally {
        reading.delete(stream);
      }
    }
  }
  return new Uint8Array(await blob.slice(start, end).arrayBuffer());
}
