// The raw baseline every transfer benchmark measures meshdrop against: a hand-written
// RTCDataChannel, the settings it is swept over, and the page script that drives it.
// Used by bench/transfer.mjs (Chromium) and bench/engines.mjs (Firefox and Chromium).

/** Message size / most buffered / bufferedAmountLowThreshold: the ceiling is the best
 *  of these in each run. */
export const RAW_SETTINGS = {
  "256K/256K/0": { chunk: 256 * 1024, cap: 256 * 1024, low: 0 },
  "64K/1M/512K": { chunk: 64 * 1024, cap: 1024 * 1024, low: 512 * 1024 },
  "256K/4M/2M": { chunk: 256 * 1024, cap: 4 * 1024 * 1024, low: 2 * 1024 * 1024 },
};

/** In-page helpers: a negotiated channel, 1 MiB Blob.slice reads with one read ahead,
 *  messages of `chunk` bytes sent while at most `cap` is buffered, refilled at
 *  `bufferedamountlow` (threshold `low`); the receiver discards the bytes. */
export const RAW_CHANNEL = `window.rawPc = async (low) => {
  const pc = new RTCPeerConnection({ iceServers: [] });
  const dc = pc.createDataChannel("raw", { negotiated: true, id: 0 });
  dc.binaryType = "arraybuffer";
  dc.bufferedAmountLowThreshold = low;
  window.raw = { pc, dc };
  return pc;
};
window.rawSdp = async (remote) => {
  const { pc } = window.raw;
  if (remote) await pc.setRemoteDescription(remote);
  await pc.setLocalDescription();
  await new Promise((r) => (pc.iceGatheringState === "complete" ? r() : pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && r())));
  return pc.localDescription.toJSON();
};
window.rawOpen = () => new Promise((r) => (window.raw.dc.readyState === "open" ? r() : (window.raw.dc.onopen = r)));
window.rawReceive = (total) => new Promise((resolve) => {
  let got = 0;
  window.raw.dc.onmessage = (e) => {
    got += e.data.byteLength;
    if (got >= total) resolve(Date.now());
  };
});
window.rawSend = async (file, chunk, cap) => {
  const { dc } = window.raw;
  const BLOCK = 1024 * 1024;
  const t0 = Date.now();
  const read = (off) => off < file.size ? file.slice(off, off + BLOCK).arrayBuffer() : null;
  let next = read(0);
  for (let off = 0; off < file.size; off += BLOCK) {
    const block = new Uint8Array(await next);
    next = read(off + BLOCK);
    for (let i = 0; i < block.length; i += chunk) {
      while (dc.bufferedAmount > 0 && dc.bufferedAmount + chunk > cap) await new Promise((r) => dc.addEventListener("bufferedamountlow", r, { once: true }));
      dc.send(block.subarray(i, i + chunk));
    }
  }
  return t0;
};
`;

/** A raw channel from page `a` to page `b` (low threshold `low`), open: both pages have
 *  RAW_CHANNEL and an `evaluate(fn, arg)` (Playwright's and puppeteer's pages do). */
export async function openRawPair(a, b, low) {
  await a.evaluate((low) => window.rawPc(low), low);
  await b.evaluate((low) => window.rawPc(low), low);
  const offer = await a.evaluate(() => window.rawSdp());
  const answer = await b.evaluate((o) => window.rawSdp(o), offer);
  await a.evaluate((s) => window.raw.pc.setRemoteDescription(s), answer);
  await Promise.all([a.evaluate(() => window.rawOpen()), b.evaluate(() => window.rawOpen())]);
}
