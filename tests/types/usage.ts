// Compiled by `make test` (tsc --strict -p tests/types) against the package's
// declarations (pkg/index.d.ts), with no lib beyond ES2022 and DOM: the README's usage
// must type-check, and misuse must not. Each @ts-expect-error fails the build if the
// line below it stops being an error.
import init, {
  Peer, Transfer, FileOffer, type FindHit, type MeshdropError, type MeshdropErrorName, type PeerEventMap, type PeerInfo,
  type ReceiveTransfer, type SendTransfer, type SharedFile, type SignalingError, type SignalingErrorCode, type SignalingState,
  type TransferEventMap, type TransferSource,
} from "meshdrop";

export async function usage(): Promise<void> {
  await init();
  const peer: Peer = await Peer.join({
    signalingUrl: "ws://127.0.0.1:8080/ws",
    room: "lobby",
    name: "alice",
    iceServers: [],
    iceTransportPolicy: "all",
    reconnectTimeoutMs: 30000,
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
  peer.on("signaling", ({ state, reason }) => {
    const s: "connected" | "reconnecting" | "closed" = state;
    const why: string | undefined = reason;
    console.log(s, why);
  });
  peer.on("peer-reconnecting", ({ id }) => console.log("reconnecting", id));
  peer.on("peer-reconnected", ({ id }) => console.log("reconnected", id));
  peer.on("peer-path", ({ id, path, local, remote, protocol }) => {
    const how: "direct" | "relayed" = path;
    const kind: "host" | "srflx" | "prflx" | "relay" = local;
    console.log(id, how, kind, remote, protocol.toUpperCase());
  });
  peer.on("peer-failed", ({ id, reason, message }) => {
    const code: "no-candidates" | "ice-failed" | "dtls-failed" | "timeout" | "impostor" | "wrong-room-secret" = reason;
    console.log(id, code, message);
  });
  // Safety codes and verified keys.
  const safety: string | undefined = peer.safetyCode("someone");
  const pinned: boolean = peer.verify("someone") && peer.isVerified("someone");
  console.log(safety?.split(" "), pinned);
  const info = await peer.connection("someone");
  if (info) {
    const rtt: number | null = info.rttMs;
    const sent: number = info.bytesSent + info.bytesReceived;
    console.log(info.path, rtt, sent);
  }
  // @ts-expect-error: a path is direct or relayed, nothing else
  peer.on("peer-path", ({ path }) => { const p: "direct" = path; console.log(p); });

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
  // A room secret.
  await Peer.join({ signalingUrl: "ws://x", room: "r", roomSecret: "correct horse battery staple" });
  // Several instances sharing rooms.
  await Peer.join({ signalingUrl: ["wss://a.example/ws", "wss://b.example/ws"], room: "r" });
  // @ts-expect-error: URLs are strings
  await Peer.join({ signalingUrl: [1, 2], room: "r" });
}

export async function errors(): Promise<void> {
  const output = await init();
  const memory: WebAssembly.Memory = output.memory;
  // @ts-expect-error: the module's raw exports are not public
  output.peer_join;
  try {
    await Peer.join({ signalingUrl: "ws://x", room: "r" });
  } catch (e) {
    const err = e as SignalingError;
    const code: SignalingErrorCode = err.code;
    if (code === "room-full" || code === "unreachable") console.log(err.message);
    const name: "SignalingError" = err.name;
    console.log(name, memory);
  }
  const any = new Error("x") as MeshdropError;
  const name: MeshdropErrorName = any.name;
  if (name === "PeerLeftError" || name === "HashMismatchError") console.log(name);
  // @ts-expect-error: not one of meshdrop's error names
  const wrong: MeshdropErrorName = "NoSuchError";
  console.log(wrong);
}

export async function files(peer: Peer, file: File): Promise<void> {
  const t: Transfer = peer.sendFile("someone", file, { name: "video.mp4" });
  const meta: [string, string, string, number, string] = [t.id, t.peerId, t.name, t.size, t.type];
  const direction: "send" | "receive" = t.direction;
  t.on("progress", ({ bytes, total, bytesPerSecond }) => console.log(bytes / total, bytesPerSecond));
  t.on("paused", () => console.log("paused"));
  const onProgress = (p: TransferEventMap["progress"]) => console.log(p.bytes);
  t.off("progress", onProgress);
  t.cancel("no longer needed");
  await t.done;
  peer.sendFile("someone", new Blob(["x"]));
  peer.on("file-offer", (offer: FileOffer) => {
    const info: [string, string, string, number, string, string | undefined, number] = [
      offer.id, offer.from, offer.name, offer.size, offer.type, offer.hash, offer.resumeBytes,
    ];
    console.log(info);
    offer.on("withdrawn", ({ name, reason }) => console.log(name, reason));
    if (offer.size > 1e9) return offer.reject("too big");
    offer.accept().done.then((received: File) => console.log(received.name));
  });
  peer.on("transfer", (resumed: ReceiveTransfer) => resumed.done.then((f: File) => console.log(f.size)));
  const persistent: boolean = peer.persistentStorage;
  console.log(meta, direction, persistent);

  // Transfers are typed by direction: a send's done resolves to nothing, a receive's to a File.
  const sending: SendTransfer = peer.sendFile("someone", file);
  const nothing: void = await sending.done;
  const asBase: Transfer = sending;
  console.log(nothing, asBase);
  // @ts-expect-error: a send transfer's done resolves to nothing, not a File
  const notAFile: File = await peer.sendFile("someone", file).done;
  // @ts-expect-error: a send transfer is not a receive transfer
  const wrongWay: ReceiveTransfer = peer.sendFile("someone", file);
  console.log(notAFile, wrongWay);

  // @ts-expect-error: sendFile takes a Blob, not a string
  peer.sendFile("someone", "not a file");
  // @ts-expect-error: unknown transfer event
  t.on("finished", () => {});
  // @ts-expect-error: progress carries numbers
  t.on("progress", ({ bytes }) => bytes.toUpperCase());
  // @ts-expect-error: identity is "persistent" | "ephemeral"
  await Peer.join({ signalingUrl: "ws://x", room: "r", identity: "forever" });
}

export async function services(peer: Peer, file: File): Promise<void> {
  const s: SharedFile = await peer.share(file, { name: "image.png" });
  const info: [string, string, number, string, string] = [s.id, s.name, s.size, s.hash, s.type];
  const all: SharedFile[] = peer.shared();
  const removed: boolean = peer.unshare(s.id);
  const hits: FindHit[] = await peer.find("image.png", { timeoutMs: 2000 });
  await peer.find("image", { match: "substring" });
  const hit: [string, string, string, number, string] = [hits[0].peerId, hits[0].id, hits[0].name, hits[0].size, hits[0].hash];
  const t: ReceiveTransfer = peer.download(hits);
  peer.download(hits[0], { name: "copy.png" });
  const sources: TransferSource[] = t.sources();
  const served: number = sources[0].bytes + sources[0].peerId.length;
  const received: File = await t.done;
  peer.handle("print", async (payload, { from, method }) => {
    const text = typeof payload === "object" && payload !== null && "text" in payload ? String(payload.text) : "";
    return `printed ${text} for ${from} via ${method}`;
  });
  peer.handle("bytes", (payload) => (payload instanceof Uint8Array ? payload.slice(1) : null));
  const reply: unknown = await peer.request(hits[0].peerId, "print", { text: "hi" }, { timeoutMs: 5000 });
  const printed: string = await peer.request<string>(hits[0].peerId, "print", { text: "hi" });
  await peer.request(hits[0].peerId, "bytes", new Uint8Array([1, 2]));
  console.log(printed);
  // @ts-expect-error: a payload comes from another peer: unknown until checked
  peer.handle("print", (payload) => payload.text);
  // @ts-expect-error: a reply is unknown unless the caller says what it expects
  const untyped: string = await peer.request(hits[0].peerId, "print", {});
  console.log(untyped);
  const unhandled: boolean = peer.unhandle("print");
  console.log(info, all, removed, hit, served, received.name, reply, unhandled);

  // @ts-expect-error: share takes a Blob
  await peer.share("not a file");
  // @ts-expect-error: match is "exact" | "substring"
  await peer.find("x", { match: "regex" });
  // @ts-expect-error: a handler is a function
  peer.handle("print", "printed");
  // @ts-expect-error: request options have no retries
  await peer.request("p", "m", 1, { retries: 3 });
}

