// The same small app in every bundler's project: joins the room named in the query
// (signaling URL too), accepts offers, and exposes what the test checks as window.app.
import init, { Peer } from "meshdrop";

const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");

export async function start(initArgument) {
  await init(initArgument);
  const params = new URLSearchParams(location.search);
  const peer = await Peer.join({ signalingUrl: params.get("signal"), room: params.get("room"), identity: "ephemeral" });
  const app = { peer, persistent: peer.persistentStorage, warnings: [], received: null };
  peer.on("warning", ({ message }) => app.warnings.push(message));
  peer.on("file-offer", (offer) => {
    offer.accept().done.then(
      async (file) => (app.received = hex(await crypto.subtle.digest("SHA-256", await file.arrayBuffer()))),
      (e) => (app.received = `${e.name}: ${e.message}`),
    );
  });
  app.send = async (size) => {
    const bytes = new Uint8Array(size);
    for (let i = 0; i < size; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
    await peer.sendFile(peer.peers()[0].id, new File([bytes], "bundled.bin")).done;
    return hex(await crypto.subtle.digest("SHA-256", bytes));
  };
  window.app = app;
}
