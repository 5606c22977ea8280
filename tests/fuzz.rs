//! Random inputs for every decoder, through the surfaces that feed them: a peer's data
//! channel and bulk channel (every frame, control, service and bulk decoder behind
//! them), the client's signaling input (server frames and the peer signals inside), the
//! client's JSON reader (held to serde_json's verdicts), and the server's parser. Each
//! gets a million inputs: random bytes, random bytes behind a
//! valid header, and valid frames of real traffic, mutated. Deterministic (seeded), so
//! a failure reproduces; run in release by `make test` (`cargo test --release --test
//! fuzz`), a few seconds each.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use std::time::{Duration, Instant};

use common::World;
use meshdrop::core::transfer::blocks::BLOCK_SIZE;
use meshdrop::core::wire::{encode, Message, Reassembler};
use meshdrop::core::{ConnId, ConnectionOp, FileMeta, FileOp, FrameId, Input, Match, Mesh, Millis, Output, Payload, StoreOp};
use meshdrop_signal::protocol::{
    parse_client, parse_server, validate_name, validate_room, validate_secret, ClientRequest, ErrorCode, MAX_FRAME_BYTES,
};

const INPUTS: usize = 1_000_000;
/// The whole of one surface's run must stay well inside this.
const BUDGET: Duration = Duration::from_secs(100);

/// SplitMix64: deterministic and fast.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Values that tend to sit on boundaries.
const INTERESTING: [u8; 8] = [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff, 0x10, 0x20];

/// One of several small edits to a valid frame.
fn mutate(rng: &mut Rng, frame: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut out = frame.to_vec();
    for _ in 0..1 + rng.below(3) {
        let len = out.len();
        match rng.below(8) {
            0 if len > 0 => {
                let at = rng.below(len);
                out[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                out[at] = *rng.pick(&INTERESTING);
            }
            2 => out.truncate(rng.below(len + 1)),
            3 => {
                let n = rng.below(64);
                let extra = rng.bytes(n);
                out.extend(extra);
            }
            4 if len > 1 => {
                let (a, b) = (rng.below(len), rng.below(len));
                let (a, b) = (a.min(b), a.max(b));
                out.drain(a..b);
            }
            5 if len > 0 => {
                let (a, n) = (rng.below(len), 1 + rng.below(16));
                let chunk = out[a..(a + n).min(len)].to_vec();
                let at = rng.below(out.len() + 1);
                out.splice(at..at, chunk);
            }
            6 => {
                // Splice: the head of this frame, the tail of another.
                let other = rng.pick(corpus);
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            _ if len >= 8 => {
                // A length or count field set to something huge or zero.
                let at = rng.below(len - 7);
                let value = [0u64, 1, u64::from(u32::MAX), u64::MAX, 1 << 40][rng.below(5)];
                out[at..at + 8].copy_from_slice(&value.to_be_bytes());
            }
            _ => {}
        }
    }
    out
}

/// Random bytes, random bytes behind a real first byte, or a mutated real frame.
fn input(rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    match rng.below(4) {
        0 => {
            let len = rng.below(96);
            rng.bytes(len)
        }
        1 => {
            let n = 1 + rng.below(96);
            let mut frame = rng.bytes(n);
            frame[0] = rng.pick(corpus).first().copied().unwrap_or(0);
            frame
        }
        _ => {
            let frame = rng.below(corpus.len());
            mutate(rng, &corpus[frame], corpus)
        }
    }
}

/// Real traffic between four peers: messages of every size, a transfer with a resume,
/// a multi-source download, queries, requests and their errors.
fn real_traffic() -> World {
    let mut w = World::new();
    w.capture = true;
    let n: Vec<usize> = ["p0", "p1", "p2", "p3"].iter().map(|label| w.add("room", label)).collect();
    w.settle();
    let peer = |w: &World, from: usize, to: usize| common::pid(&w.nodes[from], &w.nodes[to].id());
    let now = w.now;
    for payload in [Payload::Text("hi".into()), Payload::Text("é".repeat(200_000)), Payload::Binary(vec![7; 70_000])] {
        let to = peer(&w, n[0], n[1]);
        w.nodes[n[0]].mesh.send(now, &to, &payload).expect("send");
    }
    let bytes: Vec<u8> = (0..3 * BLOCK_SIZE as usize + 5).map(|i| (i * 7) as u8).collect();
    let id = w.send_file(n[0], n[1], "f.bin", bytes.clone());
    w.settle();
    w.nodes[n[1]].mesh.accept_file(now, id).expect("accept");
    let rejected = w.send_file(n[2], n[1], "no.bin", vec![1; 10]);
    w.settle();
    w.nodes[n[1]].mesh.reject_file(now, rejected, "no");
    for holder in [n[1], n[2], n[3]] {
        w.share(holder, "img.png", bytes.clone());
    }
    w.settle();
    let query = w.nodes[n[0]].mesh.find(now, "img", Match::Substring, 1_000);
    w.settle();
    let hits = w.nodes[n[0]]
        .take_events()
        .into_iter()
        .find_map(|e| match e {
            meshdrop::core::Event::FindDone { id, hits } if id == query => Some(hits),
            _ => None,
        })
        .expect("answers");
    w.nodes[n[0]].mesh.download_hits(now, &hits).expect("download");
    w.nodes[n[3]].mesh.serve_method("echo");
    for method in ["echo", "nope"] {
        let to = peer(&w, n[0], n[3]);
        w.nodes[n[0]].mesh.request(now, &to, method, Payload::Binary(vec![1, 2, 3]), 1_000).expect("request");
    }
    w.settle();
    let requests: Vec<_> = w.nodes[n[3]]
        .take_events()
        .into_iter()
        .filter_map(|e| match e {
            meshdrop::core::Event::Request { from, id, .. } => Some((from, id)),
            _ => None,
        })
        .collect();
    for (from, id) in requests {
        w.nodes[n[3]].mesh.respond(now, &from, id, Ok(Payload::Text("[1]".into())));
    }
    let conn = w.conn_between(n[0], n[2]).expect("connected");
    w.bulk_budget = Some(3);
    w.send_file(n[2], n[0], "cut.bin", bytes);
    w.settle();
    w.break_conn(conn);
    w.bulk_budget = None;
    w.advance(30_000);
    w
}

/// What the random input reached, by the events it caused.
#[derive(Default, Debug)]
struct Reached {
    offers: usize,
    requests: usize,
    messages: usize,
    /// Bytes stored for accepted transfers.
    stored: u64,
    warnings: std::collections::BTreeMap<String, usize>,
    /// The bulk frame just handed in, and its length.
    last_frame: Option<(FrameId, u64)>,
    /// Accepted offers: their sizes, so every write can be checked against them.
    accepted: std::collections::HashMap<meshdrop::core::TransferId, u64>,
}

impl Reached {
    fn saw(&mut self, event: &meshdrop::core::Event) {
        use meshdrop::core::Event;
        match event {
            Event::FileOffer { .. } => self.offers += 1,
            Event::Request { .. } => self.requests += 1,
            Event::Message { .. } => self.messages += 1,
            // The warning's kind: its words up to the first colon or peer id.
            Event::Warning(m) => *self.warnings.entry(m.split([':', '0', '1', '2']).next().unwrap_or("").trim().to_owned()).or_default() += 1,
            _ => {}
        }
    }
}

/// Performs the outputs that keep a mesh moving (storage answers, drained channels)
/// and drops the rest; how many there were.
fn drain(mesh: &mut Mesh, now: Millis, reached: &mut Reached) -> usize {
    let mut count = 0;
    while let Some(output) = mesh.poll_output() {
        count += 1;
        match output {
            Output::Event(event) => {
                reached.saw(&event);
                match event {
                    // Every other offer is accepted (the small ones), so the receive path
                    // meets random bulk frames too.
                    meshdrop::core::Event::FileOffer { id, meta, .. } if reached.offers % 2 == 0 && meta.size <= 16 * BLOCK_SIZE => {
                        reached.accepted.insert(id, meta.size);
                        let _ = mesh.accept_file(now, id);
                    }
                    meshdrop::core::Event::FileOffer { id, .. } => mesh.reject_file(now, id, "fuzz"),
                    meshdrop::core::Event::Request { from, id, .. } => mesh.respond(now, &from, id, Ok(Payload::Text("1".into()))),
                    _ => {}
                }
            }
            Output::Store(StoreOp::Probe { id, .. }) => mesh.handle(now, Input::StoreProbed { id, partial: None }),
            Output::Store(StoreOp::Open { id, .. }) => mesh.handle(now, Input::StoreOpened { id, result: Ok(()) }),
            Output::Store(StoreOp::Commit { id, block, .. }) => mesh.handle(now, Input::BlockCommitted { id, block }),
            Output::Store(StoreOp::Finish { id }) => mesh.handle(now, Input::StoreFinished { id, result: Ok(()) }),
            Output::Store(StoreOp::Put { id, offset, bytes }) => {
                let size = reached.accepted.get(&id).copied().expect("a put for a transfer not accepted");
                assert!(offset + bytes.len() as u64 <= size, "{} bytes put at {offset} of {size}", bytes.len());
                reached.stored += bytes.len() as u64;
            }
            Output::Store(StoreOp::Write { id, offset, frame }) => {
                // The only frame in hand is the one just handed in.
                let len = reached.last_frame.filter(|(f, _)| *f == frame).map(|(_, len)| len);
                let size = reached.accepted.get(&id).copied();
                let (Some(len), Some(size)) = (len, size) else { panic!("a write of frame {frame:?} for {id:?}, not in hand or not accepted") };
                assert!(offset + len <= size, "{len} bytes written at {offset} of {size}");
                reached.stored += len;
            }
            Output::Connection(ConnectionOp::Transmit { conn, .. }) => mesh.handle(now, Input::ChannelDrained { conn, buffered: 0 }),
            Output::Connection(ConnectionOp::TransmitBulk { conn, .. }) => mesh.handle(now, Input::BulkDrained { conn, buffered: 0 }),
            Output::File(FileOp::Read { id, .. }) => mesh.handle(now, Input::BlockUnreadable { id, message: "fuzz".into() }),
            _ => {}
        }
    }
    count
}

fn run(name: &str, mut each: impl FnMut(usize)) {
    let started = Instant::now();
    for i in 0..INPUTS {
        each(i);
        if i % 65_536 == 0 {
            assert!(started.elapsed() < BUDGET, "{name}: {i} inputs took {:?}", started.elapsed());
        }
    }
    eprintln!("{name}: {INPUTS} inputs in {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn a_peers_data_and_bulk_channels() {
    let mut w = real_traffic();
    let message_corpus = std::mem::take(&mut w.captured.message);
    let bulk_corpus = std::mem::take(&mut w.captured.bulk);
    assert!(message_corpus.len() > 25 && bulk_corpus.len() > 5, "{} / {} frames captured", message_corpus.len(), bulk_corpus.len());
    let conn: ConnId = w.conn_between(0, 1).expect("connected");
    let mut rng = Rng(0x5eed_0001);
    let mut now = w.now;
    let mut reached = Reached::default();
    let mesh = &mut w.nodes[0].mesh;
    // Share something, so fetches and gets for it reach the serving code.
    mesh.serve_method("echo");
    let hashes = vec![[3u8; 32]; 4];
    mesh.share(FileMeta { name: "s.bin".into(), size: 4 * BLOCK_SIZE, mime: String::new() }, hashes).expect("share");
    run("data and bulk channels", |i| {
        if i % 2 == 0 {
            let frame = input(&mut rng, &message_corpus);
            mesh.handle(now, Input::ChannelFrame { conn, frame: frame.into() });
        } else {
            let bytes = input(&mut rng, &bulk_corpus);
            let frame = FrameId(i as u64);
            reached.last_frame = Some((frame, bytes.len() as u64));
            mesh.handle(now, Input::BulkFrame { conn, bytes: bytes.into(), frame });
        }
        let outputs = drain(mesh, now, &mut reached);
        assert!(outputs < 10_000, "one input made {outputs} outputs");
        if i % 10_000 == 0 {
            now = now + 1_000;
            mesh.handle(now, Input::Timeout);
            drain(mesh, now, &mut reached);
        }
    });
    eprintln!(
        "reached: {} offers ({} accepted, {} bytes stored in bounds), {} requests, {} messages, warnings {:?}",
        reached.offers,
        reached.accepted.len(),
        reached.stored,
        reached.requests,
        reached.messages,
        reached.warnings
    );
    // Every decoder behind the channels saw input it accepted and input it refused.
    assert!(reached.offers > 0 && reached.requests > 0 && reached.messages > 0, "offers, requests and messages all decoded");
    for kind in ["bad transfer frame from", "bad service message from", "bad bulk frame from", "bad frame from"] {
        assert!(reached.warnings.keys().any(|k| k.starts_with(kind)), "no input reached \"{kind}\": {:?}", reached.warnings);
    }
    assert!(reached.stored > 0, "no fuzzed bytes reached an accepted transfer's storage");
    // The channel still carries messages the other way.
    let to = common::pid(&w.nodes[0], &w.nodes[1].id());
    w.nodes[0].mesh.send(now, &to, &Payload::Text("still here".into())).expect("send after the storm");
    w.nodes[1].take_events();
    w.settle();
    let got = w.nodes[1]
        .take_events()
        .into_iter()
        .any(|e| matches!(e, meshdrop::core::Event::Message { payload: Payload::Text(t), .. } if t == "still here"));
    assert!(got, "a message sent after the random input did not arrive");
}

#[test]
fn the_message_reassembler() {
    let max = 4096;
    let mut rng = Rng(0x5eed_0002);
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    for len in [0, 1, 15, 16, 17, 100, 5000] {
        corpus.extend(encode(&Payload::Binary(rng.bytes(len)), 64));
        corpus.extend(encode(&Payload::Text("ü".repeat(len)), 64));
    }
    let mut reassembler = Reassembler::new(max);
    run("reassembler", |_| {
        let frame = input(&mut rng, &corpus);
        if let Ok(Some(message)) = reassembler.push(&frame) {
            let len = match message {
                Message::App(payload) => payload.len(),
                Message::Service(bytes) | Message::TransferControl(bytes) => bytes.len() as u64,
            };
            assert!(len <= 32 * 1024 * 1024 + 64 * 1024, "a message of {len} bytes passed the limits");
        }
    });
}

#[test]
fn the_clients_signaling_input() {
    let w = real_traffic();
    let mut corpus: Vec<Vec<u8>> = w.server_log.iter().map(|(_, f)| f.clone().into_bytes()).collect();
    corpus.push(br#"{"type":"error","code":"room-full","message":"full"}"#.to_vec());
    corpus.push(br#"{"type":"error","code":"replaced","message":"x"}"#.to_vec());
    let mut rng = Rng(0x5eed_0003);
    let mut now = Millis(1_000);
    let mut mesh = Mesh::new(meshdrop::core::MeshConfig::new("room", None, "s".repeat(32)), 7, now);
    let mut reached = Reached::default();
    mesh.handle(now, Input::SignalingOpened);
    mesh.handle(now, Input::SignalingFrame(String::from_utf8_lossy(&corpus[0])));
    run("client signaling", |i| {
        let frame = input(&mut rng, &corpus);
        let text = String::from_utf8_lossy(&frame);
        let _ = parse_server(&text);
        mesh.handle(now, Input::SignalingFrame(text));
        let outputs = drain(&mut mesh, now, &mut reached);
        assert!(outputs < 10_000, "one input made {outputs} outputs");
        if i % 5_000 == 0 {
            now = now + 30_000;
            mesh.handle(now, Input::Timeout);
            drain(&mut mesh, now, &mut reached);
        }
    });
}

#[test]
fn the_servers_parser() {
    let w = real_traffic();
    let mut corpus: Vec<Vec<u8>> = w.captured.to_server.iter().map(|t| t.clone().into_bytes()).collect();
    corpus.push(br#"{"type":"join","room":"r","name":"alice","secret":"ssssssssssssssssssssssssssssssssss"}"#.to_vec());
    corpus.push(br#"{"type":"ping"}"#.to_vec());
    corpus.push(br#"{"type":"challenge"}"#.to_vec());
    corpus.push(format!(r#"{{"type":"join","room":"r","key":"{}","proof":"{}"}}"#, "ab".repeat(32), "cd".repeat(64)).into_bytes());
    assert!(corpus.len() > 20);
    let mut rng = Rng(0x5eed_0004);
    run("server parser", |_| {
        let frame = input(&mut rng, &corpus);
        let text = String::from_utf8_lossy(&frame);
        match parse_client(&text) {
            Ok(ClientRequest::Join { room, name, secret, keyed }) => {
                assert!(keyed.is_none() || secret.is_none(), "a join with both a key and a secret");
                assert!(validate_room(&room).is_ok(), "accepted room {room:?}");
                assert!(name.as_deref().is_none_or(|n| validate_name(n).is_ok()), "accepted name {name:?}");
                assert!(secret.as_deref().is_none_or(|s| validate_secret(s).is_ok()), "accepted secret {secret:?}");
            }
            Ok(ClientRequest::Signal { data, .. }) => {
                assert!(serde_json::from_str::<serde_json::Value>(data.get()).is_ok(), "relayed data that is not JSON");
            }
            Ok(ClientRequest::Ping | ClientRequest::Challenge) | Err(_) => {}
        }
        if text.len() > MAX_FRAME_BYTES {
            assert!(parse_client(&text).is_err());
        }
    });
}

/// serde_json's reading of a server frame, as the client did it until 2026-12: the
/// reference the client's own JSON reader is held to.
mod serde_reference {
    use meshdrop_signal::protocol::{from_hex, ErrorCode, IceServer, PeerInfo, ServerEvent};
    use serde::Deserialize;
    use serde_json::value::RawValue;

    #[derive(Deserialize)]
    struct Peer {
        id: String,
        #[serde(default)]
        name: Option<String>,
    }

    #[derive(Deserialize)]
    struct Ice {
        urls: Vec<String>,
        #[serde(default)]
        username: Option<String>,
        #[serde(default)]
        credential: Option<String>,
    }

    #[derive(Deserialize)]
    struct Frame {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        id: Option<String>,
        #[serde(default)]
        peers: Option<Vec<Peer>>,
        #[serde(default, rename = "iceServers")]
        ice_servers: Option<Vec<Ice>>,
        #[serde(default)]
        peer: Option<Peer>,
        #[serde(default)]
        from: Option<String>,
        #[serde(default)]
        data: Option<Box<RawValue>>,
        #[serde(default)]
        code: Option<String>,
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        nonce: Option<String>,
    }

    fn peer(p: Peer) -> PeerInfo {
        PeerInfo { id: p.id, name: p.name }
    }

    fn ice(servers: Vec<Ice>) -> Vec<IceServer> {
        servers.into_iter().map(|s| IceServer { urls: s.urls, username: s.username, credential: s.credential }).collect()
    }

    pub fn parse_server(text: &str) -> Result<ServerEvent, ErrorCode> {
        let frame: Frame = serde_json::from_str(text).map_err(|err| match err.classify() {
            serde_json::error::Category::Data => ErrorCode::BadMessage,
            _ => ErrorCode::BadJson,
        })?;
        let missing = ErrorCode::BadMessage;
        Ok(match frame.kind.as_str() {
            "welcome" => ServerEvent::Welcome {
                id: frame.id.ok_or(missing)?,
                peers: frame.peers.unwrap_or_default().into_iter().map(peer).collect(),
                ice_servers: ice(frame.ice_servers.unwrap_or_default()),
            },
            "ice-servers" => ServerEvent::IceServers(ice(frame.ice_servers.ok_or(missing)?)),
            "peer-joined" => ServerEvent::PeerJoined(peer(frame.peer.ok_or(missing)?)),
            "peer-left" => ServerEvent::PeerLeft { id: frame.id.ok_or(missing)? },
            "signal" => ServerEvent::Signal { from: frame.from.ok_or(missing)?, data: frame.data.ok_or(missing)?.get().to_owned() },
            "error" => {
                let code_text = frame.code.unwrap_or_default();
                let code = serde_json::from_value(serde_json::Value::String(code_text.clone())).ok();
                ServerEvent::Error { code, code_text, message: frame.message.unwrap_or_default() }
            }
            "pong" => ServerEvent::Pong,
            "challenge" => ServerEvent::Challenge { nonce: frame.nonce.filter(|n| from_hex::<32>(n).is_some()).ok_or(missing)? },
            _ => return Err(ErrorCode::UnknownType),
        })
    }
}

#[test]
fn the_clients_json_reader_agrees_with_serde_json() {
    let w = real_traffic();
    let mut corpus: Vec<Vec<u8>> = w.server_log.iter().map(|(_, f)| f.clone().into_bytes()).collect();
    for crafted in [
        r#"{"type":"welcome","id":"me","peers":[{"id":"a","name":"\u00e9\ud83d\ude00 \"x\""},{"id":"b"}],"iceServers":[{"urls":["stun:192.0.2.1"]},{"urls":["turn:192.0.2.1?transport=udp"],"username":"1:me","credential":"c/+="}]}"#,
        r#"{"type":"ice-servers","iceServers":[{"urls":["turns:192.0.2.2:443"],"username":"u","credential":null}]}"#,
        r#"{"type":"peer-joined","peer":{"id":"p","name":null,"extra":[1,-2.5e+3,true,false,null,{}]}}"#,
        r#"{"type":"peer-left","id":"p"}"#,
        r#"{"type":"signal","from":"p","data":{"kind":"candidate","conn":"000000000000002a","candidate":{"candidate":"candidate:1 1 udp 1 192.0.2.1 9 typ host","sdpMid":"0","sdpMLineIndex":0}}}"#,
        r#" { "type" : "error" , "code" : "room-full" , "message" : "full\n" } "#,
        r#"{"type":"error","code":"from-the-future","message":"x"}"#,
        r#"{"type":"challenge","nonce":"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"}"#,
        r#"{"type":"pong"}"#,
    ] {
        corpus.push(crafted.as_bytes().to_vec());
    }
    let mut rng = Rng(0x5eed_0005);
    let mut accepted = 0;
    run("client JSON reader", |_| {
        let frame = input(&mut rng, &corpus);
        let text = String::from_utf8_lossy(&frame);
        // Of a frame with both a syntax and a data error, each reader reports the one it
        // reads first (serde_json reads and checks in one pass); either way the client
        // warns and drops the frame. So the two are compared as "malformed".
        let malformed = |code| if code == ErrorCode::BadMessage { ErrorCode::BadJson } else { code };
        let ours = parse_server(&text).map_err(|err| malformed(err.code));
        if text.trim_start_matches([' ', '\t', '\n', '\r']).starts_with('{') {
            // The same frames accepted, as the same events; the same refused.
            assert_eq!(ours, serde_reference::parse_server(&text).map_err(malformed), "{text}");
        } else {
            // serde also reads a struct from an array (`["pong"]`); frames are objects.
            assert_eq!(ours.as_ref().err(), Some(&ErrorCode::BadJson), "{text}");
        }
        accepted += usize::from(ours.is_ok());
    });
    // The mutations must reach the readers' acceptance paths, not only their errors.
    assert!(accepted > INPUTS / 100, "only {accepted} inputs were accepted");
}
