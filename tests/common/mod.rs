//! A simulated world for driving several [`Mesh`]es in lockstep: a signaling server
//! built on the real `Rooms` routing, and fake RTCPeerConnections that "connect" once
//! both sides have exchanged descriptions and candidates. Time moves only when a test
//! says so.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};

use meshdrop::core::transfer::blocks::{hash_block, BLOCK_SIZE};
use meshdrop::core::wire::{unbatch, Batch};
use meshdrop::core::Identity;
use meshdrop::core::{
    BulkItem, CandidateType, ConnId, ConnectionOp, Event, Failure, FileMeta, FileOp, FileSource, FrameId, Gathered, Hash, IceState, Input, Mesh,
    MeshConfig, Millis, Output, Partial, Path, PeerId, SdpKind, ShareId, SharedFile, SignalingOp, StoreError, StoreOp, TransferId,
};
use meshdrop_signal::protocol::{id_from_key, join_proof_message, parse_client, ClientRequest, IceServer, ServerMessage};
use meshdrop_signal::rooms::{Rooms, Route};

/// SCTP max message size the fake connections report.
pub const MAX_MESSAGE_SIZE: u64 = 256 * 1024;

#[derive(Default)]
struct FakePc {
    local: bool,
    remote: bool,
    candidates_added: usize,
    open: bool,
    /// The network path is gone (ICE disconnected or failed): nothing crosses.
    path_down: bool,
    /// An ICE restart is being negotiated on it.
    restarting: bool,
}

/// What a node keeps in its (simulated) OPFS, across reloads.
#[derive(Debug, Clone, Default)]
pub struct Stored {
    pub from: Option<String>,
    /// The transfer it was opened for.
    pub transfer: Option<TransferId>,
    pub data: Vec<u8>,
    pub hashes: HashMap<u32, Hash>,
    pub complete: bool,
    /// Opened as durable (kept across a reload); a file of one block is not.
    pub durable: bool,
}

pub struct Node {
    pub mesh: Mesh,
    config: MeshConfig,
    /// Files this node sends, by transfer.
    pub files: HashMap<TransferId, Vec<u8>>,
    held: HashMap<(TransferId, u32), Vec<u8>>,
    /// Every block read from this node's files, by transfer and block, in order.
    pub reads: Vec<(TransferId, u32)>,
    /// Files stored whole from their offers ([`StoreOp::Put`]).
    pub puts: usize,
    pub store: HashMap<String, Stored>,
    open_stores: HashMap<TransferId, String>,
    /// Files delivered to this node.
    pub delivered: HashMap<TransferId, Vec<u8>>,
    /// Data bytes this node put on bulk channels.
    pub bulk_data_sent: u64,
    /// The transfer of every block header (with data) this node sent, in order.
    pub data_blocks_sent: Vec<u64>,
    /// Fail the next store open as if the quota were exhausted.
    pub storage_full: bool,
    /// Flip a byte in the data of this block when sending it.
    pub corrupt_block: Option<u32>,
    pub events: Vec<Event>,
    /// Files this node shares, by share id.
    pub shares: HashMap<ShareId, Vec<u8>>,
    /// The STUN/TURN servers the core told the driver to use.
    pub ice_servers: Vec<IceServer>,
    /// Every ICE restart this node's core asked for.
    pub ice_restarts: usize,
    /// Messages from this node are lost (a peer that never answers).
    pub muted: bool,
    /// The type byte of every service message this node sent, in order.
    pub service_sent: Vec<u8>,
    /// This node's own bulk output is lost: a hostile holder whose bulk channel the
    /// test speaks for with [`World::inject_bulk`].
    pub bulk_muted: bool,
    /// Every write into this node's storage: who sent the bytes, where they went.
    pub writes: Vec<Write>,
    /// Bulk frames handed to the core and not written yet: (sender, bytes).
    frames: HashMap<FrameId, (usize, Vec<u8>)>,
    /// The WebSocket is open (the server accepted it).
    ws_open: bool,
    /// The nonce the server gave this node's connection, for its keyed join.
    nonce: Option<String>,
    /// The WebSocket is open to both ends but carries nothing either way (its NAT
    /// mapping went away): until the node closes it, and the server never hears that.
    ws_silent: bool,
    joined: Option<(String, String)>,
    pcs: HashMap<ConnId, FakePc>,
    /// Frames for peers that take batches, sent when this node's outputs run out (as
    /// the browser driver sends them at the end of a task).
    batches: Vec<(ConnId, Batch)>,
    /// Batches this node sent (two or more frames in one).
    pub batches_sent: usize,
}

impl Node {
    /// Every event so far, removing them.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    pub fn peers(&self) -> Vec<String> {
        self.mesh.peers().into_iter().map(|(id, _)| id.as_str().to_owned()).collect()
    }

    pub fn open_conns(&self) -> usize {
        self.pcs.values().filter(|pc| pc.open).count()
    }

    pub fn id(&self) -> String {
        self.mesh.id().map(|id| id.as_str().to_owned()).unwrap_or_default()
    }
}

/// One write the driver was told to make ([`StoreOp::Write`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Write {
    /// The node whose bulk channel carried the bytes.
    pub from: usize,
    pub id: TransferId,
    pub offset: u64,
    pub len: u64,
}

/// Real traffic, by where it travels.
#[derive(Debug, Default)]
pub struct Captured {
    pub message: Vec<Vec<u8>>,
    /// Bulk frames built by the core (headers, ends), not file bytes.
    pub bulk: Vec<Vec<u8>>,
    /// What clients sent the server (what it sent them is in `server_log`).
    pub to_server: Vec<String>,
}

/// Rewrites of the frames between the nodes and the honest room logic: a signaling
/// server (or a proxy in front of one) with its own intentions.
pub struct HostileServer {
    /// Applied to each frame node `n` sends, before the server reads it.
    pub from_node: Box<dyn FnMut(usize, String) -> String>,
    /// Applied to each frame for node `n`, before it arrives.
    pub to_node: Box<dyn FnMut(usize, String) -> String>,
}

/// Rewrites a message-channel frame node `n` sends: `(n, frame) -> frame`.
pub type ChannelRewrite = Box<dyn FnMut(usize, Vec<u8>) -> Vec<u8>>;

pub struct World {
    pub now: Millis,
    pub nodes: Vec<Node>,
    rooms: Rooms<usize>,
    server_up: bool,
    max_room_peers: usize,
    /// Frames from the server to a node, in order.
    to_node: VecDeque<(usize, String)>,
    /// WebSockets the server closes once the frames before are delivered: (node, code,
    /// reason).
    ws_closes: VecDeque<(usize, u16, String)>,
    /// Data-channel frames in flight: (receiving node, conn, frame).
    frames: VecDeque<(usize, ConnId, Vec<u8>)>,
    /// Bulk-channel frames in flight.
    bulk: VecDeque<(usize, ConnId, Vec<u8>)>,
    /// Deliver at most this many bulk frames, then stop (to cut a transfer midway).
    pub bulk_budget: Option<usize>,
    /// Remote closes to report: (node, conn).
    closes: VecDeque<(usize, ConnId)>,
    /// Connections the test broke: they never open again.
    broken: HashSet<ConnId>,
    /// Node pairs whose connections never open (no network path between them).
    partitions: HashSet<(usize, usize)>,
    /// Every frame the server sent, for assertions.
    pub server_log: Vec<(usize, String)>,
    /// Slow connections: their bulk frames move one turn in eight.
    pub slow: HashSet<ConnId>,
    /// Every frame any node sent (message channel, bulk headers, signaling text), kept
    /// when `capture` is set: a corpus of real traffic for the random-input tests.
    pub capture: bool,
    pub captured: Captured,
    /// What the server hands joiners as STUN/TURN servers.
    pub ice_servers: Vec<IceServer>,
    /// Connections whose lost path cannot come back (restarts never succeed).
    pub unreachable: HashSet<ConnId>,
    /// How each connection travels, as its ObservePath reports (host/host if absent).
    pub paths: HashMap<ConnId, Path>,
    /// New WebSockets neither open nor fail: their packets go nowhere.
    pub server_blackholed: bool,
    /// A signaling server that rewrites what it relays.
    pub hostile_server: Option<HostileServer>,
    /// A hostile peer's channel: applied to each message-channel frame (or batch) node
    /// `n` sends, as it goes out.
    pub hostile_channel: Option<ChannelRewrite>,
    /// Every frame the nodes sent the server, as sent.
    pub heard_by_server: Vec<String>,
    next_frame: u64,
    turn: u64,
}

/// A secret whose derived id (in this world) sorts as `label` does.
pub fn secret(label: &str) -> String {
    // Ids are hashes of keys: ground (and cached) so the id starts with the label's first
    // byte and its second's low nibble in hex, so "a" < "b" and "p1" < "p2" as ids too
    // (the smaller id offers, and holders are asked in id order: tests rely on both).
    static FOUND: std::sync::Mutex<Option<HashMap<String, String>>> = std::sync::Mutex::new(None);
    let mut found = FOUND.lock().unwrap();
    let found = found.get_or_insert_with(HashMap::new);
    if let Some(secret) = found.get(label) {
        return secret.clone();
    }
    let bytes = label.as_bytes();
    let prefix = format!("{:02x}{:x}", bytes.first().copied().unwrap_or(b'_'), bytes.get(1).map_or(0, |b| b & 15));
    let secret = (0u32..).map(|i| format!("{label:_<32}{i}")).find(|s| Identity::from_secret(s).id().as_str().starts_with(&prefix)).unwrap();
    found.insert(label.to_owned(), secret.clone());
    secret
}

impl World {
    pub fn new() -> World {
        World::with_room_limit(64)
    }

    pub fn with_room_limit(max_room_peers: usize) -> World {
        World {
            now: Millis(1_000),
            nodes: Vec::new(),
            rooms: Rooms::new(max_room_peers),
            server_up: true,
            max_room_peers,
            to_node: VecDeque::new(),
            ws_closes: VecDeque::new(),
            frames: VecDeque::new(),
            bulk: VecDeque::new(),
            bulk_budget: None,
            closes: VecDeque::new(),
            broken: HashSet::new(),
            partitions: HashSet::new(),
            server_log: Vec::new(),
            slow: HashSet::new(),
            capture: false,
            captured: Captured::default(),
            ice_servers: Vec::new(),
            unreachable: HashSet::new(),
            paths: HashMap::new(),
            server_blackholed: false,
            hostile_server: None,
            hostile_channel: None,
            heard_by_server: Vec::new(),
            next_frame: 0,
            turn: 0,
        }
    }

    /// Adds a peer that starts joining `room`; its id will be `label` padded with `_`.
    pub fn add(&mut self, room: &str, label: &str) -> usize {
        self.add_configured(room, label, |_| {})
    }

    /// A node's tab closes for good: its connections and socket go, nothing else.
    pub fn leave_for_good(&mut self, n: usize) {
        self.restart_node(n, false);
    }

    /// Adds a peer with an explicit local key (the one that never leaves its device).
    pub fn add_with_key(&mut self, room: &str, label: &str, local_key: [u8; 32]) -> usize {
        self.add_configured(room, label, |config| config.local_key = local_key)
    }

    /// Adds a peer whose settings `configure` changes from the defaults.
    pub fn add_configured(&mut self, room: &str, label: &str, configure: impl FnOnce(&mut MeshConfig)) -> usize {
        let mut config = MeshConfig::new(room, Some(format!("name-{label}")), secret(label));
        config.local_key = *blake3_key(label);
        configure(&mut config);
        let seed = 0x5eed ^ (self.nodes.len() as u64 * 7919);
        self.nodes.push(Node {
            mesh: Mesh::new(config.clone(), seed, self.now),
            config,
            files: HashMap::new(),
            held: HashMap::new(),
            reads: Vec::new(),
            puts: 0,
            store: HashMap::new(),
            open_stores: HashMap::new(),
            delivered: HashMap::new(),
            bulk_data_sent: 0,
            data_blocks_sent: Vec::new(),
            storage_full: false,
            corrupt_block: None,
            events: Vec::new(),
            shares: HashMap::new(),
            ice_servers: Vec::new(),
            ice_restarts: 0,
            muted: false,
            service_sent: Vec::new(),
            bulk_muted: false,
            writes: Vec::new(),
            frames: HashMap::new(),
            ws_open: false,
            nonce: None,
            ws_silent: false,
            joined: None,
            pcs: HashMap::new(),
            batches: Vec::new(),
            batches_sent: 0,
        });
        self.nodes.len() - 1
    }

    /// A world where `labels` joined `room`, everything settled and no event pending.
    pub fn connected(room: &str, labels: &[&str]) -> (World, Vec<usize>) {
        let mut w = World::new();
        let nodes: Vec<usize> = labels.iter().map(|l| w.add(room, l)).collect();
        w.settle();
        for &n in &nodes {
            w.nodes[n].take_events();
        }
        (w, nodes)
    }

    /// The id the server derives for `label`: its key's.
    pub fn id_of(label: &str) -> String {
        Identity::from_secret(&secret(label)).id().as_str().to_owned()
    }

    /// Runs until nothing is left to deliver without time passing.
    pub fn settle(&mut self) {
        for _ in 0..100_000 {
            let mut progress = false;
            for n in 0..self.nodes.len() {
                while let Some(output) = self.nodes[n].mesh.poll_output() {
                    progress = true;
                    self.perform(n, output);
                }
                progress |= self.send_batches(n);
            }
            if self.to_node.is_empty() {
                if let Some((n, code, reason)) = self.ws_closes.pop_front() {
                    progress = true;
                    if self.nodes[n].ws_open {
                        self.nodes[n].ws_open = false;
                        let now = self.now;
                        self.nodes[n].mesh.handle(now, Input::SignalingClosed { close: Some((code, reason.into())) });
                    }
                }
            }
            if let Some((n, text)) = self.to_node.pop_front() {
                progress = true;
                if self.nodes[n].ws_open && !self.nodes[n].ws_silent {
                    let text = match &mut self.hostile_server {
                        Some(hostile) => (hostile.to_node)(n, text),
                        None => text,
                    };
                    let now = self.now;
                    self.nodes[n].mesh.handle(now, Input::SignalingFrame(text.into()));
                }
            }
            // Frames wait while their connection's path is down, as SCTP holds them.
            let next_frame = self.frames.iter().position(|(n, c, _)| !self.nodes[*n].pcs.get(c).is_some_and(|pc| pc.path_down));
            if let Some((n, conn, frame)) = next_frame.and_then(|i| self.frames.remove(i)) {
                progress = true;
                if self.nodes[n].pcs.get(&conn).is_some_and(|pc| pc.open) {
                    let now = self.now;
                    self.nodes[n].mesh.handle(now, Input::ChannelFrame { conn, frame: frame.into() });
                }
            }
            self.turn += 1;
            let turn = self.turn;
            let down = |n: &usize, c: &ConnId| self.nodes[*n].pcs.get(c).is_some_and(|pc| pc.path_down);
            let next_bulk = self.bulk.iter().position(|(n, c, _)| !down(n, c) && (!self.slow.contains(c) || turn % 8 == 0));
            // Slow frames still waiting for their turn keep the world going.
            progress |= self.bulk_budget != Some(0) && self.bulk.iter().any(|(n, c, _)| !down(n, c));
            if self.bulk_budget != Some(0) && next_bulk.is_some() {
                if let Some((n, conn, frame)) = next_bulk.and_then(|i| self.bulk.remove(i)) {
                    progress = true;
                    if let Some(b) = self.bulk_budget.as_mut() {
                        *b -= 1;
                    }
                    let drained = !self.bulk.iter().any(|(m, c, _)| *c == conn && *m == n);
                    let sender = (0..self.nodes.len()).find(|&s| s != n && self.nodes[s].pcs.get(&conn).is_some_and(|pc| pc.open));
                    if let (true, Some(s)) = (drained, sender) {
                        let now = self.now;
                        self.nodes[s].mesh.handle(now, Input::BulkDrained { conn, buffered: 0 });
                    }
                    self.deliver_bulk(n, conn, &frame);
                }
            }
            if let Some((n, conn)) = self.closes.pop_front() {
                progress = true;
                if self.nodes[n].pcs.remove(&conn).is_some() {
                    let now = self.now;
                    self.nodes[n].mesh.handle(now, Input::ConnectionClosed { conn, reason: "remote closed".into() });
                }
            }
            progress |= self.open_ready_connections();
            if !progress {
                return;
            }
        }
        panic!("world did not settle");
    }

    /// Moves time forward in steps, firing every timer that falls due, settling after each.
    pub fn advance(&mut self, ms: u64) {
        let end = self.now + ms;
        self.settle();
        loop {
            let next = self.nodes.iter().filter_map(|n| n.mesh.poll_timeout()).min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    for node in &mut self.nodes {
                        if node.mesh.poll_timeout().is_some_and(|t| t <= now) {
                            node.mesh.handle(now, Input::Timeout);
                        }
                    }
                    self.settle();
                }
                _ => break,
            }
        }
        self.now = end;
    }

    /// Stops the server: every WebSocket closes, and new ones fail until `server_start`.
    pub fn server_stop(&mut self) {
        self.server_up = false;
        self.rooms = Rooms::new(self.max_room_peers);
        self.to_node.clear();
        for n in 0..self.nodes.len() {
            if self.nodes[n].ws_open {
                self.nodes[n].ws_open = false;
                self.nodes[n].joined = None;
                let now = self.now;
                self.nodes[n].mesh.handle(now, Input::SignalingClosed { close: None });
            }
        }
        self.settle();
    }

    /// Node `n`'s WebSocket drops (its data channels stay); it reconnects by itself.
    pub fn drop_socket(&mut self, n: usize) {
        if self.nodes[n].ws_open {
            self.nodes[n].ws_open = false;
            self.server_disconnect(n);
            let now = self.now;
            self.nodes[n].mesh.handle(now, Input::SignalingClosed { close: None });
        }
        self.settle();
    }

    /// Node `n`'s WebSocket stays open but carries nothing, either way: what a NAT that
    /// changed its public address leaves behind. Nobody is told.
    pub fn silence_socket(&mut self, n: usize) {
        self.nodes[n].ws_silent = true;
    }

    pub fn server_start(&mut self) {
        self.server_up = true;
    }

    /// Breaks a connection: both ends see it close, as after an ICE failure.
    pub fn break_conn(&mut self, conn: ConnId) {
        self.broken.insert(conn);
        for n in 0..self.nodes.len() {
            if self.nodes[n].pcs.contains_key(&conn) {
                self.closes.push_back((n, conn));
            }
        }
        self.settle();
    }

    /// The network path of an open connection goes away (ICE `disconnected`, or
    /// `failed`); frames on it wait. It comes back when an ICE restart completes, unless
    /// the connection is in `unreachable`.
    pub fn lose_path(&mut self, conn: ConnId, failed: bool) {
        let state = if failed { IceState::Failed } else { IceState::Disconnected };
        for n in 0..self.nodes.len() {
            if let Some(pc) = self.nodes[n].pcs.get_mut(&conn) {
                pc.path_down = true;
                let now = self.now;
                self.nodes[n].mesh.handle(now, Input::IceState { conn, state });
            }
        }
        self.settle();
    }

    /// Only node `n` sees the path of `conn` go (ICE `disconnected`); the other end
    /// has not noticed yet.
    pub fn lose_path_seen_by(&mut self, n: usize, conn: ConnId) {
        self.path_seen_by(n, conn, IceState::Disconnected);
    }

    /// Only node `n` sees the path of `conn` come back (ICE found its new address by
    /// itself); the other end still has it down.
    pub fn regain_path_seen_by(&mut self, n: usize, conn: ConnId) {
        self.path_seen_by(n, conn, IceState::Connected);
    }

    fn path_seen_by(&mut self, n: usize, conn: ConnId, state: IceState) {
        if let Some(pc) = self.nodes[n].pcs.get_mut(&conn) {
            pc.path_down = state != IceState::Connected;
            let now = self.now;
            self.nodes[n].mesh.handle(now, Input::IceState { conn, state });
        }
        self.settle();
    }

    /// The offer and answer of an ICE restart were both applied: the path is back, if
    /// it can be.
    fn restart_done(&mut self, conn: ConnId) {
        if self.unreachable.contains(&conn) {
            return;
        }
        for n in 0..self.nodes.len() {
            if let Some(pc) = self.nodes[n].pcs.get_mut(&conn) {
                pc.restarting = false;
                if std::mem::take(&mut pc.path_down) {
                    let now = self.now;
                    self.nodes[n].mesh.handle(now, Input::IceState { conn, state: IceState::Connected });
                }
            }
        }
    }

    /// Gathering candidates completed on `n`'s end of `conn`, finding this.
    pub fn gathered(&mut self, n: usize, conn: ConnId, gathered: Gathered) {
        let now = self.now;
        self.nodes[n].mesh.handle(now, Input::CandidatesGathered { conn, gathered });
        self.settle();
    }

    /// An attempt fails as the browser would report it.
    pub fn fail_conn(&mut self, conn: ConnId, failure: Failure) {
        for n in 0..self.nodes.len() {
            if self.nodes[n].pcs.remove(&conn).is_some() {
                let now = self.now;
                self.nodes[n].mesh.handle(now, Input::ConnectionFailed { conn, failure: failure.clone() });
            }
        }
        self.settle();
    }

    /// No connection between `a` and `b` will ever open (signaling still works).
    pub fn partition(&mut self, a: usize, b: usize) {
        self.partitions.insert((a.min(b), a.max(b)));
    }

    /// Connections node `n` has created that have not opened.
    pub fn unopened(&self, n: usize) -> usize {
        self.nodes[n].pcs.values().filter(|pc| !pc.open).count()
    }

    /// A connection attempt between two nodes that has not opened.
    pub fn pending_conn(&self, a: usize, b: usize) -> Option<ConnId> {
        self.nodes[a].pcs.iter().find(|(c, pc)| !pc.open && self.nodes[b].pcs.contains_key(c)).map(|(c, _)| *c)
    }

    /// Drops every node's events so far.
    pub fn take_all_events(&mut self) {
        for node in &mut self.nodes {
            node.take_events();
        }
    }

    /// The open connection between two nodes.
    pub fn conn_between(&self, a: usize, b: usize) -> Option<ConnId> {
        self.nodes[a].pcs.iter().find(|(c, pc)| pc.open && self.nodes[b].pcs.get(c).is_some_and(|p| p.open)).map(|(c, _)| *c)
    }

    /// Sends a raw signal as node `from` (a hostile peer speaking through the server).
    pub fn inject_signal(&mut self, from: usize, to: &str, data: &str) {
        let text = format!(r#"{{"type":"signal","to":"{to}","data":{data}}}"#);
        self.server_receive(from, &text);
        self.settle();
    }

    /// Puts raw bytes on the data channel from `from` to `to` (a hostile peer).
    pub fn inject_frame(&mut self, from: usize, to: usize, frame: Vec<u8>) {
        let conn = self.conn_between(from, to).expect("no open connection");
        self.frames.push_back((to, conn, frame));
        self.settle();
    }

    /// Hands a bulk frame to node `n` as its channel `conn` received it, and performs
    /// what that asks at once: a frame no write names by then is not needed.
    fn deliver_bulk(&mut self, n: usize, conn: ConnId, frame: &[u8]) {
        if !self.nodes[n].pcs.get(&conn).is_some_and(|pc| pc.open) {
            return;
        }
        let from = (0..self.nodes.len()).find(|&m| m != n && self.nodes[m].pcs.contains_key(&conn)).unwrap_or(usize::MAX);
        self.next_frame += 1;
        let id = FrameId(self.next_frame);
        self.nodes[n].frames.insert(id, (from, frame.to_vec()));
        let now = self.now;
        self.nodes[n].mesh.handle(now, Input::BulkFrame { conn, bytes: frame.into(), frame: id });
        while let Some(output) = self.nodes[n].mesh.poll_output() {
            self.perform(n, output);
        }
        self.send_batches(n);
        self.nodes[n].frames.clear();
    }

    /// Node `from` puts raw bytes on its bulk channel to `to` (a hostile holder); they
    /// arrive at once, ahead of anything queued.
    pub fn inject_bulk(&mut self, from: usize, to: usize, frame: &[u8]) {
        let conn = self.conn_between(from, to).expect("no open connection");
        self.deliver_bulk(to, conn, frame);
    }

    /// Sends node `n`'s batches; true if it sent any.
    fn send_batches(&mut self, n: usize) -> bool {
        let batches = std::mem::take(&mut self.nodes[n].batches);
        let mut sent = false;
        for (conn, mut batch) in batches {
            if let Some(frame) = batch.take() {
                self.transmit(n, conn, frame);
                sent = true;
            }
        }
        sent
    }

    /// One frame (or batch) on node `n`'s message channel `conn`.
    fn transmit(&mut self, n: usize, conn: ConnId, frame: Vec<u8>) {
        let now = self.now;
        assert!(frame.len() as u64 <= MAX_MESSAGE_SIZE, "frame over the max message size");
        if self.capture {
            self.captured.message.push(frame.clone());
        }
        // Outputs queued before a remote close was processed meet a channel that
        // is gone, as a browser's send would; one that never opened is a bug.
        let Some(pc) = self.nodes[n].pcs.get(&conn) else { return };
        assert!(pc.open, "transmit on a channel that is not open");
        let frames: Vec<&[u8]> = unbatch(&frame).expect("a batch this node made is valid").flatten().collect();
        if frames.len() > 1 {
            self.nodes[n].batches_sent += 1;
        }
        for inner in frames {
            if inner.first() == Some(&0x18) || inner.first() == Some(&0x19) {
                let kind = if inner[0] == 0x18 { inner.get(1) } else { inner.get(9) };
                self.nodes[n].service_sent.extend(kind.copied());
            }
        }
        if !self.nodes[n].muted {
            if let Some(m) = (0..self.nodes.len()).find(|&m| m != n && self.nodes[m].pcs.contains_key(&conn)) {
                let frame = match &mut self.hostile_channel {
                    Some(rewrite) => rewrite(n, frame),
                    None => frame,
                };
                self.frames.push_back((m, conn, frame));
            }
        }
        // The fake channel drains instantly (a muted peer's frames are lost).
        self.nodes[n].mesh.handle(now, Input::ChannelDrained { conn, buffered: 0 });
    }

    fn perform(&mut self, n: usize, output: Output) {
        match output {
            Output::Signaling(op) => self.perform_signaling(n, op),
            Output::Connection(op) => self.perform_connection(n, op),
            Output::Event(event) => self.nodes[n].events.push(event),
            Output::File(op) => self.perform_file(n, op),
            Output::Store(op) => self.perform_store(n, op),
        }
    }

    fn perform_signaling(&mut self, n: usize, op: SignalingOp) {
        let now = self.now;
        match op {
            SignalingOp::Open { .. } => {
                if self.server_blackholed {
                    // Nothing happens, for as long as the browser cares to wait.
                } else if self.server_up {
                    self.nodes[n].ws_open = true;
                    self.nodes[n].mesh.handle(now, Input::SignalingOpened);
                } else {
                    self.nodes[n].mesh.handle(now, Input::SignalingClosed { close: None });
                }
            }
            SignalingOp::Send(text) => {
                if self.capture {
                    self.captured.to_server.push(text.clone());
                }
                if self.nodes[n].ws_open && !self.nodes[n].ws_silent {
                    self.heard_by_server.push(text.clone());
                    let text = match &mut self.hostile_server {
                        Some(hostile) => (hostile.from_node)(n, text),
                        None => text,
                    };
                    self.server_receive(n, &text);
                }
            }
            SignalingOp::Close => {
                self.nodes[n].ws_open = false;
                // A silent socket's close never reaches the server either.
                if !std::mem::take(&mut self.nodes[n].ws_silent) {
                    self.server_disconnect(n);
                }
            }
        }
    }

    fn perform_connection(&mut self, n: usize, op: ConnectionOp) {
        let now = self.now;
        match op {
            ConnectionOp::Create { conn, .. } => {
                self.nodes[n].pcs.insert(conn, FakePc::default());
            }
            ConnectionOp::CreateOffer { conn } | ConnectionOp::CreateAnswer { conn } => {
                let kind = if self.nodes[n].pcs.get(&conn).is_some_and(|pc| pc.remote) { SdpKind::Answer } else { SdpKind::Offer };
                if let Some(pc) = self.nodes[n].pcs.get_mut(&conn) {
                    if pc.open {
                        // Answering an ICE restart: no new candidates are needed here.
                        let mesh = &mut self.nodes[n].mesh;
                        let sdp = format!("v=0 {kind:?} again {conn}\r\na=fingerprint:sha-256 node-{n}");
                        mesh.handle(now, Input::LocalDescription { conn, kind, sdp });
                        return;
                    }
                    pc.local = true;
                    let mesh = &mut self.nodes[n].mesh;
                    // Each node's certificate, as its fingerprint in every description.
                    let sdp = format!("v=0 {kind:?} {conn}\r\na=fingerprint:sha-256 node-{n}");
                    mesh.handle(now, Input::LocalDescription { conn, kind, sdp });
                    mesh.handle(now, Input::LocalCandidate { conn, candidate: format!(r#"{{"candidate":"host {n}","sdpMid":"0"}}"#) });
                }
            }
            ConnectionOp::SetRemoteDescription { conn, kind, .. } => {
                if let Some(pc) = self.nodes[n].pcs.get_mut(&conn) {
                    pc.remote = true;
                    if pc.open && kind == SdpKind::Offer {
                        pc.restarting = true;
                    }
                    if pc.open && kind == SdpKind::Answer && pc.restarting {
                        self.restart_done(conn);
                    }
                }
            }
            ConnectionOp::RestartIce { conn } => {
                self.nodes[n].ice_restarts += 1;
                if let Some(pc) = self.nodes[n].pcs.get_mut(&conn) {
                    pc.restarting = true;
                    let mesh = &mut self.nodes[n].mesh;
                    mesh.handle(
                        now,
                        Input::LocalDescription { conn, kind: SdpKind::Offer, sdp: format!("v=0 restart {conn}\r\na=fingerprint:sha-256 node-{n}") },
                    );
                }
            }
            // The sim's channels drain at once: thresholds do not matter to it.
            ConnectionOp::SetLowThreshold { .. } => {}
            ConnectionOp::ObservePath { conn } => {
                let path = self.paths.get(&conn).cloned().unwrap_or(Path {
                    relayed: false,
                    local: CandidateType::Host,
                    remote: CandidateType::Host,
                    protocol: "udp".into(),
                });
                self.nodes[n].mesh.handle(now, Input::PathObserved { conn, path });
            }
            ConnectionOp::UseIceServers(servers) => self.nodes[n].ice_servers = servers,
            ConnectionOp::AddIceCandidate { conn, candidate } => {
                assert!(candidate.starts_with('{'), "candidate handed to the browser must be JSON: {candidate}");
                let pc = self.nodes[n].pcs.get_mut(&conn).expect("candidate for an unknown connection");
                assert!(pc.remote, "candidate added before the remote description");
                pc.candidates_added += 1;
            }
            ConnectionOp::Transmit { conn, frame, batch: None } => {
                // Behind anything batched before, as it was sent.
                if let Some(at) = self.nodes[n].batches.iter().position(|(c, _)| *c == conn) {
                    if let Some(batch) = self.nodes[n].batches.swap_remove(at).1.take() {
                        self.transmit(n, conn, batch);
                    }
                }
                self.transmit(n, conn, frame);
            }
            ConnectionOp::Transmit { conn, frame, batch: Some(limit) } => {
                let node = &mut self.nodes[n];
                let at = node.batches.iter().position(|(c, _)| *c == conn).unwrap_or_else(|| {
                    node.batches.push((conn, Batch::default()));
                    node.batches.len() - 1
                });
                if let Some(full) = node.batches[at].1.push(&frame, limit) {
                    self.transmit(n, conn, full);
                }
            }
            ConnectionOp::TransmitBulk { conn, item } => {
                assert!(item.len() <= MAX_MESSAGE_SIZE, "bulk frame over the max message size");
                let node = &mut self.nodes[n];
                let frame = match item {
                    BulkItem::Frame { bytes, .. } => {
                        if self.capture {
                            self.captured.bulk.push(bytes.clone());
                        }
                        // A block header whose data follows: [0x16][transfer u64][block][len][flags]...
                        if bytes.len() > 17 && bytes[0] == 0x16 && bytes[17] & 1 == 1 {
                            node.data_blocks_sent.push(u64::from_be_bytes(bytes[1..9].try_into().expect("8 bytes")));
                        }
                        bytes
                    }
                    BulkItem::Slice { id, block, start, len, last } => {
                        let held = node.held.get(&(id, block)).expect("slice of a block the driver does not hold");
                        let mut bytes = held[start as usize..(start + len) as usize].to_vec();
                        if node.corrupt_block == Some(block) && start == 0 {
                            bytes[0] ^= 0xff;
                        }
                        if last {
                            node.held.remove(&(id, block));
                        }
                        node.bulk_data_sent += u64::from(len);
                        bytes
                    }
                };
                if node.bulk_muted {
                    node.mesh.handle(now, Input::BulkDrained { conn, buffered: 0 });
                    return;
                }
                // Like a real channel, the buffer drains as the peer receives: the sender
                // hears `bufferedamountlow` when its last frame in flight is delivered.
                if let Some(m) = (0..self.nodes.len()).find(|&m| m != n && self.nodes[m].pcs.contains_key(&conn)) {
                    self.bulk.push_back((m, conn, frame));
                }
            }
            ConnectionOp::Close { conn } => {
                if self.nodes[n].pcs.remove(&conn).is_some() {
                    for m in 0..self.nodes.len() {
                        if m != n && self.nodes[m].pcs.contains_key(&conn) {
                            self.closes.push_back((m, conn));
                        }
                    }
                }
            }
        }
    }

    fn perform_file(&mut self, n: usize, op: FileOp) {
        let now = self.now;
        let node = &mut self.nodes[n];
        match op {
            FileOp::Read { id, source, block, offset, len } => {
                let file = match source {
                    FileSource::Sending => node.files.get(&id).expect("read of an unknown file"),
                    FileSource::Shared(share) => node.shares.get(&share).expect("read of a file that is not shared"),
                };
                let bytes = file[offset as usize..(offset + len) as usize].to_vec();
                node.reads.push((id, block));
                // The driver holds what it read until it is told to let it go.
                node.held.insert((id, block), bytes.clone());
                node.mesh.handle(now, Input::BlockRead { id, block, bytes: bytes.into() });
            }
            FileOp::ReleaseBlock { id, block } => {
                node.held.remove(&(id, block));
            }
            FileOp::Release { id, except } => node.held.retain(|(t, b), _| *t != id || Some(*b) == except),
        }
    }

    fn perform_store(&mut self, n: usize, op: StoreOp) {
        let now = self.now;
        let node = &mut self.nodes[n];
        match op {
            StoreOp::Probe { id, key } => {
                // A finished download is final: never reported as a partial.
                // Nor is one kept in memory (it would not outlive a reload).
                let partial = node.store.get(&key).filter(|s| !s.complete && s.durable).map(|s| Partial {
                    from: s.from.clone(),
                    transfer: s.transfer,
                    blocks: s.hashes.iter().map(|(b, h)| (*b, *h)).collect(),
                });
                node.mesh.handle(now, Input::StoreProbed { id, partial });
            }
            StoreOp::Open { id, key, from, meta, durable } => {
                if std::mem::take(&mut node.storage_full) {
                    node.mesh.handle(now, Input::StoreOpened { id, result: Err(StoreError { full: true, message: "quota exceeded".into() }) });
                    return;
                }
                // A finished download is never opened again: a new one takes its place
                // (what was delivered from it was copied out already).
                if node.store.get(&key).is_some_and(|s| s.complete) {
                    node.store.remove(&key);
                }
                let stored = node.store.entry(key.clone()).or_insert_with(|| Stored { data: vec![0; meta.size as usize], ..Stored::default() });
                stored.from = from.map(|p| p.as_str().to_owned());
                stored.transfer = Some(id);
                stored.durable = durable;
                node.open_stores.insert(id, key);
                node.mesh.handle(now, Input::StoreOpened { id, result: Ok(()) });
            }
            StoreOp::Write { id, offset, frame } => {
                let (from, bytes) = node.frames.remove(&frame).expect("a write of a frame the driver no longer holds");
                let key = node.open_stores.get(&id).expect("store for a transfer with no open store");
                let stored = node.store.get_mut(key).expect("open store exists");
                let end = offset as usize + bytes.len();
                assert!(end <= stored.data.len(), "write past the end of the file");
                stored.data[offset as usize..end].copy_from_slice(&bytes);
                node.writes.push(Write { from, id, offset, len: bytes.len() as u64 });
            }
            StoreOp::Put { id, offset, bytes } => {
                // A small file that came whole with its offer.
                let key = node.open_stores.get(&id).expect("store for a transfer with no open store");
                let stored = node.store.get_mut(key).expect("open store exists");
                let end = offset as usize + bytes.len();
                assert!(end <= stored.data.len(), "put past the end of the file");
                stored.data[offset as usize..end].copy_from_slice(&bytes);
                node.puts += 1;
            }
            StoreOp::Commit { id, block, hash } => {
                let key = &node.open_stores[&id];
                node.store.get_mut(key).expect("open store").hashes.insert(block, hash);
                node.mesh.handle(now, Input::BlockCommitted { id, block });
            }
            StoreOp::Finish { id } => {
                let key = node.open_stores.remove(&id).expect("finish of an unopened store");
                let stored = node.store.get_mut(&key).expect("open store");
                stored.complete = true;
                node.delivered.insert(id, stored.data.clone());
                node.mesh.handle(now, Input::StoreFinished { id, result: Ok(()) });
            }
            StoreOp::Close { id, delete } => {
                if let Some(key) = node.open_stores.remove(&id) {
                    if delete {
                        node.store.remove(&key);
                    }
                }
            }
        }
    }

    /// Offers `bytes` from node `from` to node `to`.
    /// Bytes the driver of node `n` holds from reads, not yet let go.
    pub fn held_bytes(&self, n: usize) -> usize {
        self.nodes[n].held.values().map(Vec::len).sum()
    }

    pub fn send_file(&mut self, from: usize, to: usize, name: &str, bytes: Vec<u8>) -> TransferId {
        let peer = pid(&self.nodes[from], &self.nodes[to].id());
        let now = self.now;
        let meta = FileMeta { name: name.into(), size: bytes.len() as u64, mime: "application/octet-stream".into() };
        let id = self.nodes[from].mesh.send_file(now, &peer, meta).expect("send_file");
        self.nodes[from].files.insert(id, bytes);
        id
    }

    /// Node `n` shares `bytes` as `name`.
    pub fn share(&mut self, n: usize, name: &str, bytes: Vec<u8>) -> SharedFile {
        let hashes = bytes.chunks(BLOCK_SIZE as usize).map(hash_block).collect();
        let meta = FileMeta { name: name.into(), size: bytes.len() as u64, mime: "image/png".into() };
        let shared = self.nodes[n].mesh.share(meta, hashes).expect("share");
        self.nodes[n].shares.insert(shared.id, bytes);
        shared
    }

    /// A tab reload: node `n` disappears (its connections close, its socket drops) and
    /// comes back with the same secret and the same storage, nothing else.
    pub fn reload(&mut self, n: usize) {
        self.restart_node(n, true);
    }

    fn restart_node(&mut self, n: usize, rejoin: bool) {
        let conns: Vec<ConnId> = self.nodes[n].pcs.keys().copied().collect();
        for conn in conns {
            for m in 0..self.nodes.len() {
                if m != n && self.nodes[m].pcs.contains_key(&conn) {
                    self.closes.push_back((m, conn));
                }
            }
        }
        self.bulk.retain(|(m, _, _)| *m != n);
        self.frames.retain(|(m, _, _)| *m != n);
        self.server_disconnect(n);
        let node = &mut self.nodes[n];
        node.ws_open = false;
        node.ws_silent = false;
        node.pcs.clear();
        node.held.clear();
        node.files.clear();
        node.shares.clear();
        node.open_stores.clear();
        node.events.clear();
        node.mesh = Mesh::new(node.config.clone(), 0xbeef ^ n as u64, self.now);
        if !rejoin {
            // A mesh that never starts: it has no connections to close or tell.
            node.mesh.leave(self.now);
            while node.mesh.poll_output().is_some() {}
        }
        self.settle();
    }

    /// Drops bulk frames in flight (a connection cut loses what was on the wire).
    pub fn drop_in_flight(&mut self) {
        self.bulk.clear();
    }

    fn open_ready_connections(&mut self) -> bool {
        let mut opened = false;
        let mut ready: Vec<(usize, ConnId)> = Vec::new();
        for (n, node) in self.nodes.iter().enumerate() {
            for (conn, pc) in &node.pcs {
                if pc.open || !pc.local || !pc.remote || pc.candidates_added == 0 || self.broken.contains(conn) {
                    continue;
                }
                let other = self.nodes.iter().enumerate().find(|(m, o)| *m != n && o.pcs.contains_key(conn));
                if let Some((m, o)) = other {
                    if self.partitions.contains(&(n.min(m), n.max(m))) {
                        continue;
                    }
                    let opc = &o.pcs[conn];
                    if opc.local && opc.remote && opc.candidates_added > 0 {
                        ready.push((n, *conn));
                    }
                }
            }
        }
        for (n, conn) in ready {
            let now = self.now;
            if let Some(pc) = self.nodes[n].pcs.get_mut(&conn) {
                pc.open = true;
                opened = true;
                self.nodes[n].mesh.handle(now, Input::ChannelOpened { conn, max_message_size: MAX_MESSAGE_SIZE });
            }
        }
        opened
    }

    fn server_receive(&mut self, n: usize, text: &str) {
        let request = match parse_client(text) {
            Ok(r) => r,
            Err(err) => {
                let frame = ServerMessage::Error { code: err.code, message: &err.message }.to_json();
                self.to_node.push_back((n, frame));
                return;
            }
        };
        match request {
            ClientRequest::Challenge => {
                let nonce = format!("{:064x}", self.next_frame * 1_000 + n as u64);
                self.next_frame += 1;
                self.nodes[n].nonce = Some(nonce.clone());
                self.to_node.push_back((n, ServerMessage::Challenge { nonce: &nonce }.to_json()));
            }
            ClientRequest::Join { room, name, secret, keyed } => {
                // As the real server checks a keyed join: the key signed this node's nonce.
                let id = match keyed {
                    Some((key, proof)) => {
                        let nonce = self.nodes[n].nonce.take().unwrap_or_default();
                        if !meshdrop::core::identity::verify(&key, &join_proof_message(&nonce, &room), &proof) {
                            let frame = r#"{"type":"error","code":"bad-proof","message":"proof does not verify"}"#;
                            self.to_node.push_back((n, frame.to_owned()));
                            return;
                        }
                        id_from_key(&key)
                    }
                    None => secret.map(|s| s.into_owned()).unwrap_or_else(|| format!("anon{n}")),
                };
                match self.rooms.join(n, &room, &id, name.as_deref(), &self.ice_servers) {
                    Ok(joined) => {
                        // As the real server does: the connection that held the id hears
                        // why, and is closed.
                        if let Some(old) = joined.replaced.filter(|old| *old != n) {
                            let frame = r#"{"type":"error","code":"replaced","message":"another connection joined with this id"}"#;
                            self.to_node.push_back((old, frame.to_owned()));
                            self.nodes[old].joined = None;
                            self.ws_closes.push_back((old, 1008, "replaced by a newer connection".to_owned()));
                        }
                        self.nodes[n].joined = Some((room.into_owned(), id));
                        self.to_node.extend(joined.outbox.iter().cloned());
                        self.server_log.extend(joined.outbox);
                    }
                    Err(err) => {
                        let frame = ServerMessage::Error { code: err.code, message: &err.message }.to_json();
                        self.to_node.push_back((n, frame));
                    }
                }
            }
            ClientRequest::Ping => self.to_node.push_back((n, ServerMessage::Pong.to_json())),
            ClientRequest::Signal { to, data } => {
                let Some((room, from)) = self.nodes[n].joined.clone() else { return };
                match self.rooms.relay(&room, &from, &to, data) {
                    Ok(Route::Local(conn, frame)) => {
                        self.server_log.push((conn, frame.clone()));
                        self.to_node.push_back((conn, frame));
                    }
                    // One server here: every member is local.
                    Ok(Route::Remote(_)) => unreachable!("no other instance in the simulation"),
                    Err(err) => {
                        let frame = ServerMessage::Error { code: err.code, message: &err.message }.to_json();
                        self.to_node.push_back((n, frame));
                    }
                }
            }
        }
    }

    fn server_disconnect(&mut self, n: usize) {
        if let Some((room, id)) = self.nodes[n].joined.take() {
            let out = self.rooms.leave(&room, &id, &n);
            self.to_node.extend(out);
        }
    }
}

/// The ids from `PeerJoined` events, in order.
pub fn joined(events: &[Event]) -> Vec<String> {
    events.iter().filter_map(|e| if let Event::PeerJoined { id, .. } = e { Some(id.as_str().to_owned()) } else { None }).collect()
}

/// The ids from `PeerLeft` events, in order.
pub fn left(events: &[Event]) -> Vec<String> {
    events.iter().filter_map(|e| if let Event::PeerLeft { id } = e { Some(id.as_str().to_owned()) } else { None }).collect()
}

/// The `PeerId` of a connected peer, as `node` knows it.
pub fn pid(node: &Node, id: &str) -> PeerId {
    node.mesh.peers().into_iter().map(|(p, _)| p).find(|p| p.as_str() == id).expect("peer not connected")
}

fn blake3_key(label: &str) -> Box<[u8; 32]> {
    let mut key = [0u8; 32];
    for (i, b) in label.bytes().enumerate() {
        key[i % 32] ^= b.wrapping_mul(31).wrapping_add(i as u8);
    }
    key[31] ^= 0xa5;
    Box::new(key)
}
