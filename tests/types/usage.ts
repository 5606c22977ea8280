// Compiled by `make test` (tsc -p tests/types) against the generated pkg/meshdrop.d.ts:
// the README's usage must type-check, and misuse must not. Each @ts-expect-error
// fails the build if the line below it stops being an error.
import init, { Peer, type PeerEventMap, type PeerInfo, type SignalingState } from "meshdrop";

export async function usage(): Promise<void> {
  await init();
  const peer: Peer = await Peer.join({
    signalingUrl: "ws://127.0.0.1:8080/ws",
    room: "lobby",
    name: "alice",
    iceServers: [],
    iceTransportPolicy: "all",
  });
  const id: string = peer.id;
  const room: string = peer.room;
  const peers: PeerInfo[] = peer.peers();
  const state: SignalingState = peer.signalingState;

  peer.on("peer-connecting", ({ id, name }) => console.log("connecting", id, name));
  peer.on("peer-joined", ({ id, name }) => console.log(id.toUpperCase(), name?.length));
  peer.on("peer-left", ({ id }) => console.log(id));
  const onMessage = ({ from, data }: PeerEventMap["message"]) => {
    const text: string = typeof data === "string" ? data : new TextDecoder().decode(data);
    console.log(from, text);
  };
  peer.on("message", onMessage);
  peer.off("message", onMessage);
  peer.on("signaling", ({ state }) => {
    const s: "connected" | "reconnecting" | "closed" = state;
    console.log(s);
  });

  await peer.send(peers[0].id, "hi");
  await peer.send(peers[0].id, new Uint8Array([1, 2, 3]));
  const count: number = await peer.broadcast("everyone");
  await peer.leave();
  console.log(id, room, state, count);

  // @ts-expect-error: unknown event type
  peer.on("peer-joind", () => {});
  // @ts-expect-error: peer-left events carry no name
  peer.on("peer-left", ({ name }) => name);
  // @ts-expect-error: data is a string or Uint8Array, not a number
  peer.on("message", ({ data }) => data.toFixed());
  // @ts-expect-error: room is required
  await Peer.join({ signalingUrl: "ws://x" });
  // @ts-expect-error: numbers are not message data
  await peer.send("x", 42);
  // @ts-expect-error: iceTransportPolicy is "all" | "relay"
  await Peer.join({ signalingUrl: "ws://x", room: "r", iceTransportPolicy: "sometimes" });
}
