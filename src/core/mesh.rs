//! One peer's view of its room. [`Mesh`] owns the signaling link (join, reconnect with
//! backoff) and routes: every [`Input`] goes to the component it is for — the
//! [`Peers`](super::peers) for negotiation and channels, then requests, discovery or
//! transfers for what the channels carry — and every command a user gives goes to
//! its component the same way. Each component owns its state and sees the rest of the
//! mesh only through [`Net`]. Sans-IO: [`Mesh::handle`] feeds inputs,
//! [`Mesh::poll_output`] yields what the driver must do, [`Mesh::poll_timeout`] when
//! to feed [`Input::Timeout`].

use std::collections::VecDeque;

use meshdrop_signal::protocol::{parse_server, to_hex, ClientMessage, ServerEvent};

use super::discovery::{Discovery, Hit, ManifestError, Match, QueryId, ShareId, SharedFile};
use super::error::{JoinError, SendError};
use super::identity::{safety_code, Identity, PublicKey};
use super::input::Input;
use super::net::Net;
use super::output::{ConnectionOp, Event, Output, SignalingOp, SignalingState};
use super::path::{IceState, Path};
use super::peers::{warn, PeerChange, PeerSettings, Peers};
use super::request::{RequestId, Requests};
use super::rng::Rng;
use super::service::Service;
use super::time::backoff;
use super::transfer::{FileMeta, Hash, TransferError, TransferId, Transfers};
use super::wire::{encode, Message, Payload};
use super::{Millis, PeerId};

/// Largest frame taken from the signaling server: a welcome to a full room of 64 is
/// about 8 KiB; a server may allow larger rooms, but no frame of megabytes.
const MAX_SERVER_FRAME: usize = 1024 * 1024;

/// The close code (RFC 6455 1008, policy) and reason prefix with which the server
/// closes a connection whose id another connection took over.
const REPLACED_CLOSE: (u16, &str) = (1008, "replaced");
/// The server is restarting or draining: reconnect at once (see PROTOCOL.md).
const SERVICE_RESTART_CLOSE: u16 = 1012;
/// The error code the server sends before that close.
const REPLACED_ERROR: &str = "replaced";

/// A joined link silent this long is asked whether it is alive (`ping`). Browsers
/// cannot see WebSocket pings, and a connection whose NAT mapping went away (a new
/// public address, a sleeping laptop) stays open to them for minutes.
pub const SIGNALING_IDLE_MS: u64 = 20_000;
/// A `ping` not answered by any frame within this long means the link is dead: it is
/// closed and joined again.
pub const PONG_TIMEOUT_MS: u64 = 3_000;
/// A WebSocket that has not opened and brought a `welcome` within this long is given
/// up (and tried again, or the first join fails): a connect whose packets go nowhere
/// hangs for minutes in a browser.
pub const SIGNALING_CONNECT_MS: u64 = 10_000;

/// Settings for one mesh.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// Room to join.
    pub room: String,
    /// Display name, if any.
    pub name: Option<String>,
    /// Random secret (32–128 of `[A-Za-z0-9_-]`) from which the server derives our id:
    /// the same secret keeps the same id across reconnects.
    pub secret: String,
    /// Largest message accepted from a peer, in bytes.
    pub max_message_bytes: u64,
    /// Give up on a connection attempt that has not opened after this long.
    pub connect_timeout_ms: u64,
    /// How long a transfer waits for a peer that left to come back.
    pub resume_timeout_ms: u64,
    /// How long a connection that lost its network path may take to get one back (ICE
    /// restarts) before the peer counts as gone.
    pub reconnect_timeout_ms: u64,
    /// A key that never leaves this device (unlike `secret`, which the server sees):
    /// a receiver proves with it that it is the one that accepted a transfer before,
    /// so a transfer resumes only with the same browser. Persist it with the secret.
    pub local_key: [u8; 32],
    /// Our key pair (derived from `secret` by default): the server checks our id with
    /// it, and peers check every connection against it. It never leaves this device.
    pub identity: Identity,
    /// Peers whose keys the user verified (see [`Mesh::pin`]), from earlier sessions.
    pub pinned: Vec<(PeerId, PublicKey)>,
    /// The room's secret, known to its members and never sent anywhere: each
    /// connection proves both ends know it (SPAKE2), or closes with `WrongRoomSecret`.
    pub room_secret: Option<String>,
    /// 256 bits from a secure random source, the core's only randomness for
    /// cryptography (the room-secret exchanges). Drivers must set it; the default is
    /// derived from the secret, for tests.
    pub entropy: [u8; 32],
    /// How many signaling servers (URLs) the driver can open: [`SignalingOp::Open`]
    /// names one. Each attempt after a failure goes to the next, so peers of a server
    /// that died or restarts find another; a first join fails only when every one did.
    pub signaling_servers: usize,
}

impl MeshConfig {
    /// Defaults: 16 MiB messages, 20 s connect timeout, transfers wait 2 minutes for a
    /// peer that left.
    /// `local_key` defaults to one derived from the secret: set a separate random one
    /// (as the browser driver does) for resume proofs the server cannot forge.
    pub fn new(room: impl Into<String>, name: Option<String>, secret: impl Into<String>) -> Self {
        let secret: String = secret.into();
        let identity = Identity::from_secret(&secret);
        let entropy = blake3::derive_key("meshdrop 2026-11 test entropy from secret", secret.as_bytes());
        let local_key = *blake3::Hasher::new_derive_key("meshdrop 2026-11 local key from secret").update(secret.as_bytes()).finalize().as_bytes();
        MeshConfig {
            room: room.into(),
            name,
            secret,
            max_message_bytes: 16 * 1024 * 1024,
            connect_timeout_ms: 20_000,
            resume_timeout_ms: 120_000,
            reconnect_timeout_ms: 30_000,
            local_key,
            identity,
            pinned: Vec::new(),
            room_secret: None,
            entropy,
            signaling_servers: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Connecting,
    Joined,
    Waiting {
        until: Millis,
    },
    /// Signaling ended for good without `leave()`: another connection joined with our
    /// id. Reconnecting would only take it back and start a tug of war.
    Stopped,
    Closed,
}

/// The components: what the data channels carry, by who handles it.
#[derive(Debug, Default)]
struct Components {
    requests: Requests,
    discovery: Discovery,
    transfers: Transfers,
}

/// One peer's view of its room.
#[derive(Debug)]
pub struct Mesh {
    config: MeshConfig,
    rng: Rng,
    id: Option<PeerId>,
    link: Link,
    reconnect_attempt: u32,
    /// The signaling server in use (an index into the driver's list).
    server: usize,
    /// Servers that failed us in a row before a welcome.
    failed_servers: usize,
    /// When the server last sent us anything.
    server_heard: Millis,
    /// Connecting, or a `ping` is out: the link is dead unless the server says
    /// something (a welcome, when connecting) by then.
    server_due: Option<Millis>,
    peers: Peers,
    outputs: VecDeque<Output>,
    parts: Components,
}

impl Mesh {
    /// Starts a mesh at `now`: the first output asks the driver to open signaling.
    /// `seed` should come from a secure random source (ids and jitter derive from it).
    pub fn new(config: MeshConfig, seed: u64, now: Millis) -> Self {
        let mut rng = Rng::new(seed);
        let settings = PeerSettings {
            connect_timeout_ms: config.connect_timeout_ms,
            max_message_bytes: config.max_message_bytes,
            reconnect_timeout_ms: config.reconnect_timeout_ms,
        };
        let mut peers =
            Peers::new(settings, rng.next_u64(), config.identity.clone(), config.room.clone(), config.room_secret.clone(), config.entropy);
        for (peer, key) in &config.pinned {
            peers.pin(peer.clone(), *key);
        }
        Mesh {
            config,
            rng,
            id: None,
            link: Link::Connecting,
            reconnect_attempt: 0,
            server: 0,
            failed_servers: 0,
            server_heard: now,
            server_due: Some(now + SIGNALING_CONNECT_MS),
            peers,
            outputs: VecDeque::from([Output::Signaling(SignalingOp::Open { server: 0 })]),
            parts: Components::default(),
        }
    }

    /// A component's view of the rest of the mesh, and the components.
    fn split(&mut self, now: Millis) -> (Net<'_>, &mut Components) {
        (Net::new(now, &self.config, &mut self.peers, &mut self.outputs, &mut self.rng), &mut self.parts)
    }

    /// Our id, once welcomed.
    pub fn id(&self) -> Option<&PeerId> {
        self.id.as_ref()
    }

    /// Peers with an open data channel, with their names, sorted by id.
    pub fn peers(&self) -> Vec<(PeerId, Option<String>)> {
        self.peers.open()
    }

    /// How the connection to `peer` travels, once known.
    pub fn path(&self, peer: &PeerId) -> Option<&Path> {
        self.peers.path(peer)
    }

    /// The open connection to `peer`, for a driver that looks at it.
    pub fn connection_of(&self, peer: &PeerId) -> Option<super::ConnId> {
        self.peers.session(peer).filter(|s| s.open).map(|s| s.conn)
    }

    /// The signaling link as users see it.
    pub fn signaling_state(&self) -> SignalingState {
        match self.link {
            Link::Joined => SignalingState::Connected,
            Link::Closed | Link::Stopped => SignalingState::Closed,
            Link::Connecting | Link::Waiting { .. } => SignalingState::Reconnecting,
        }
    }

    /// Whether `leave` was called or the first join failed.
    pub fn is_closed(&self) -> bool {
        self.link == Link::Closed
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Input::Timeout`] is wanted next.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let link = match self.link {
            Link::Waiting { until } => Some(until),
            Link::Joined => Some(self.server_due.unwrap_or(self.server_heard + SIGNALING_IDLE_MS)),
            Link::Connecting => self.server_due,
            _ => None,
        };
        let parts = [self.parts.requests.next_deadline(), self.parts.discovery.next_deadline(), self.parts.transfers.next_deadline()];
        link.into_iter().chain(self.peers.deadlines()).chain(parts.into_iter().flatten()).min()
    }

    /// Feeds one input; what it causes comes from [`Mesh::poll_output`].
    pub fn handle(&mut self, now: Millis, input: Input<'_>) {
        match input {
            Input::SignalingOpened => self.signaling_opened(),
            Input::SignalingClosed { close } => self.signaling_closed(now, close.as_ref().map(|(code, reason)| (*code, reason.as_ref()))),
            Input::SignalingFrame(text) => self.signaling_frame(now, &text),
            Input::LocalDescription { conn, kind, sdp } => self.peers.local_description(conn, kind, sdp, &mut self.outputs),
            Input::LocalCandidate { conn, candidate } => self.peers.local_candidate(conn, candidate, &mut self.outputs),
            Input::ConnectionClosed { conn, reason } => self.peers.connection_closed(now, conn, &reason, &mut self.outputs),
            Input::IceState { conn, state } => {
                // A path that went away may mean our network changed, and with it the
                // signaling connection an ICE restart needs: make sure it is alive.
                if matches!(state, IceState::Disconnected | IceState::Failed) {
                    self.probe_signaling(now);
                }
                self.peers.ice_state(now, conn, state, &mut self.outputs)
            }
            Input::ConnectionFailed { conn, failure } => self.peers.connection_failed(now, conn, &failure, &mut self.outputs),
            Input::CandidatesGathered { conn, gathered } => self.peers.gathered(conn, gathered),
            Input::PathObserved { conn, path } => self.peers.path_observed(conn, path, &mut self.outputs),
            Input::ChannelOpened { conn, max_message_size } => self.peers.channel_opened(now, conn, max_message_size, &mut self.outputs),
            Input::ChannelFrame { conn, frame } => self.channel_frame(now, conn, &frame),
            Input::ChannelDrained { conn, buffered } => self.peers.channel_drained(now, conn, buffered, &mut self.outputs),
            Input::BulkFrame { conn, bytes, frame } => {
                if let Some(peer) = self.peers.peer_of(conn) {
                    self.peers.heard_from(&peer);
                    let (mut net, parts) = self.split(now);
                    parts.transfers.on_bulk(&mut net, &peer, &bytes, frame);
                }
            }
            Input::BulkDrained { conn, buffered } => {
                self.peers.bulk_drained(now, conn, buffered, &mut self.outputs);
                if let Some(peer) = self.peers.peer_of(conn) {
                    let (mut net, parts) = self.split(now);
                    parts.transfers.bulk_drained(&mut net, &peer);
                }
            }
            Input::BlockRead { id, block, bytes } => {
                let (mut net, parts) = self.split(now);
                parts.transfers.block_read(&mut net, id, block, &bytes);
            }
            Input::BlockUnreadable { id, message } => {
                let (mut net, parts) = self.split(now);
                parts.transfers.block_unreadable(&mut net, id, &message);
            }
            Input::StoreProbed { id, partial } => {
                let (mut net, parts) = self.split(now);
                parts.transfers.store_probed(&mut net, id, partial);
            }
            Input::StoreOpened { id, result } => {
                let (mut net, parts) = self.split(now);
                parts.transfers.store_opened(&mut net, id, result);
            }
            Input::BlockCommitted { id, block } => {
                let (mut net, parts) = self.split(now);
                parts.transfers.block_committed(&mut net, id, block);
            }
            Input::StoreFinished { id, result } => {
                let (mut net, parts) = self.split(now);
                parts.transfers.store_finished(&mut net, id, result);
            }
            Input::StoreFailed { id, error } => {
                let (mut net, parts) = self.split(now);
                parts.transfers.store_failed(&mut net, id, error);
            }
            Input::Timeout => self.handle_timeout(now),
        }
        self.route_changes(now);
    }

    /// Tells the components which peers opened or closed, and stops sharing files
    /// found changed; until nothing more changes.
    fn route_changes(&mut self, now: Millis) {
        loop {
            let changes = self.peers.take_changes();
            let (mut net, parts) = self.split(now);
            let changed = parts.transfers.take_changed_shares();
            if changes.is_empty() && changed.is_empty() {
                return;
            }
            for share in changed {
                parts.discovery.unshare(share);
            }
            for change in changes {
                match change {
                    PeerChange::Opened(peer) => parts.transfers.peer_opened(&mut net, &peer),
                    PeerChange::Reconnecting(peer) => parts.transfers.peer_stalled(&mut net, &peer, true),
                    PeerChange::Reconnected(peer) => parts.transfers.peer_stalled(&mut net, &peer, false),
                    PeerChange::Closed(peer) => {
                        parts.transfers.peer_closed(&mut net, &peer);
                        parts.discovery.peer_left(&mut net, &peer);
                        parts.requests.peer_left(&mut net, &peer);
                    }
                }
            }
        }
    }

    fn handle_timeout(&mut self, now: Millis) {
        match self.link {
            Link::Waiting { until } if now >= until => {
                self.open_signaling(now);
            }
            Link::Connecting if self.server_due.is_some_and(|due| now >= due) => {
                self.outputs.push_back(Output::Signaling(SignalingOp::Close));
                if self.id.is_none() {
                    return self.first_join_failed(now);
                }
                warn(&mut self.outputs, format!("the signaling server did not welcome us within {SIGNALING_CONNECT_MS} ms; trying again"));
                self.schedule_reconnect(now);
            }
            Link::Joined if self.server_due.is_some_and(|due| now >= due) => {
                warn(&mut self.outputs, format!("the signaling server did not answer within {PONG_TIMEOUT_MS} ms; connecting again"));
                self.outputs.push_back(Output::Signaling(SignalingOp::Close));
                self.schedule_reconnect(now);
            }
            Link::Joined if now >= self.server_heard + SIGNALING_IDLE_MS => self.probe_signaling(now),
            _ => {}
        }
        self.peers.handle_timeout(now, &mut self.outputs);
        let (mut net, parts) = self.split(now);
        parts.transfers.handle_timeout(&mut net);
        parts.discovery.handle_timeout(&mut net);
        parts.requests.handle_timeout(&mut net);
    }

    // -- signaling ---------------------------------------------------------------------

    /// The WebSocket opened: ask for a nonce to sign, to join (again) with our key so
    /// the id stays the same.
    fn signaling_opened(&mut self) {
        if self.link != Link::Connecting {
            return;
        }
        if let Ok(text) = serde_json::to_string(&ClientMessage::Challenge) {
            self.outputs.push_back(Output::Signaling(SignalingOp::Send(text)));
        }
    }

    /// The server's nonce: join, proving we hold the key our id derives from.
    fn challenged(&mut self, nonce: &str) {
        if self.link != Link::Connecting {
            return;
        }
        let key = to_hex(&self.config.identity.public_key());
        let proof = to_hex(&self.config.identity.join_proof(nonce, &self.config.room));
        let join =
            ClientMessage::Join { room: &self.config.room, name: self.config.name.as_deref(), secret: None, key: Some(&key), proof: Some(&proof) };
        if let Ok(text) = serde_json::to_string(&join) {
            self.outputs.push_back(Output::Signaling(SignalingOp::Send(text)));
        }
    }

    /// Asks the server for a `pong` (unless already waiting for one): any frame back
    /// shows the link is alive.
    fn probe_signaling(&mut self, now: Millis) {
        if self.link != Link::Joined || self.server_due.is_some() {
            return;
        }
        if let Ok(text) = serde_json::to_string(&ClientMessage::Ping) {
            self.outputs.push_back(Output::Signaling(SignalingOp::Send(text)));
            self.server_due = Some(now + PONG_TIMEOUT_MS);
        }
    }

    fn signaling_closed(&mut self, now: Millis, close: Option<(u16, &str)>) {
        if let Some((code, reason)) = close {
            if code == REPLACED_CLOSE.0 && reason.starts_with(REPLACED_CLOSE.1) {
                return self.stop_signaling(format!("the signaling server closed us: {reason}"));
            }
        }
        match self.link {
            Link::Connecting if self.id.is_none() => self.first_join_failed(now),
            // The server is going away and asks us to come back (to another instance,
            // with the same id): at once, not after a backoff.
            Link::Connecting | Link::Joined if close.is_some_and(|(code, _)| code == SERVICE_RESTART_CLOSE) => {
                self.schedule_reconnect(now);
                self.link = Link::Waiting { until: now };
            }
            Link::Connecting | Link::Joined => self.schedule_reconnect(now),
            Link::Waiting { .. } | Link::Stopped | Link::Closed => {}
        }
    }

    /// Another connection took our id over (the same identity open elsewhere): stop
    /// signaling for good and say so, keeping the peers we are connected to.
    fn stop_signaling(&mut self, reason: String) {
        if matches!(self.link, Link::Stopped | Link::Closed) {
            return;
        }
        if self.id.is_none() {
            return self.fail_join(JoinError::Refused { code: REPLACED_ERROR.into(), message: reason });
        }
        self.link = Link::Stopped;
        self.peers.signaling_lost();
        self.outputs.push_back(Output::Signaling(SignalingOp::Close));
        warn(&mut self.outputs, format!("{reason}; another tab or device uses this identity, so this one stops signaling (open connections stay)"));
        self.emit(Event::Signaling { state: SignalingState::Closed, reason: Some(reason) });
    }

    fn signaling_frame(&mut self, now: Millis, text: &str) {
        self.server_heard = now;
        // Connecting, only the welcome counts (an error frame may precede the close).
        if self.link == Link::Joined {
            self.server_due = None;
        }
        if text.len() > MAX_SERVER_FRAME {
            return warn(&mut self.outputs, format!("ignored a {}-byte frame from the signaling server", text.len()));
        }
        let event = match parse_server(text) {
            Ok(event) => event,
            Err(err) => return warn(&mut self.outputs, format!("bad frame from signaling server: {err}")),
        };
        match event {
            ServerEvent::Welcome { id, peers, ice_servers } => {
                if !ice_servers.is_empty() {
                    self.outputs.push_back(Output::Connection(ConnectionOp::UseIceServers(ice_servers)));
                }
                self.welcomed(now, PeerId::new(id), peers);
            }
            ServerEvent::IceServers(servers) => self.outputs.push_back(Output::Connection(ConnectionOp::UseIceServers(servers))),
            ServerEvent::PeerJoined(info) if self.link == Link::Joined => self.peers.joined(now, PeerId::new(info.id), info.name, &mut self.outputs),
            ServerEvent::PeerJoined(_) => {}
            ServerEvent::PeerLeft { id } => {
                let peer = PeerId::new(id);
                if self.peers.left(now, &peer, &mut self.outputs) {
                    // Still connected: any frame back keeps it (see `Peers::left`).
                    let (mut net, _) = self.split(now);
                    net.send_service(&peer, &Service::Ping);
                }
            }
            ServerEvent::Signal { from, data } if self.link != Link::Closed => self.peers.signal(now, PeerId::new(from), &data, &mut self.outputs),
            ServerEvent::Signal { .. } => {}
            ServerEvent::Pong => {}
            ServerEvent::Challenge { nonce } => self.challenged(&nonce),
            ServerEvent::Error { code_text, message, .. } if code_text == REPLACED_ERROR => {
                self.stop_signaling(format!("the signaling server closed us: {message}"));
            }
            ServerEvent::Error { code_text, message, .. } => match self.link {
                Link::Connecting if self.id.is_none() => {
                    self.outputs.push_back(Output::Signaling(SignalingOp::Close));
                    self.fail_join(JoinError::Refused { code: code_text, message });
                }
                Link::Connecting => {
                    warn(&mut self.outputs, format!("signaling server refused to rejoin: {code_text}: {message}"));
                    self.outputs.push_back(Output::Signaling(SignalingOp::Close));
                    self.schedule_reconnect(now);
                }
                _ => warn(&mut self.outputs, format!("signaling server: {code_text}: {message}")),
            },
        }
    }

    fn welcomed(&mut self, now: Millis, id: PeerId, peers: Vec<meshdrop_signal::protocol::PeerInfo>) {
        if self.link != Link::Connecting {
            return;
        }
        self.link = Link::Joined;
        self.server_due = None;
        self.reconnect_attempt = 0;
        self.failed_servers = 0;
        match &self.id {
            None => {
                self.id = Some(id.clone());
                self.emit(Event::Joined { id: id.clone() });
            }
            Some(ours) if *ours != id => warn(&mut self.outputs, format!("signaling server gave us a new id {id}; keeping {ours}")),
            Some(_) => {}
        }
        self.emit(Event::Signaling { state: SignalingState::Connected, reason: None });
        let me = self.id.clone().unwrap_or(id);
        let roster = peers.into_iter().map(|p| (PeerId::new(p.id), p.name)).collect();
        self.peers.welcomed(now, me, roster, &mut self.outputs);
    }

    fn fail_join(&mut self, err: JoinError) {
        self.link = Link::Closed;
        self.emit(Event::JoinFailed(err));
        self.emit(Event::Signaling { state: SignalingState::Closed, reason: None });
    }

    fn open_signaling(&mut self, now: Millis) {
        self.link = Link::Connecting;
        self.server_due = Some(now + SIGNALING_CONNECT_MS);
        self.outputs.push_back(Output::Signaling(SignalingOp::Open { server: self.server }));
    }

    /// The next server in the list (the same one when there is only one).
    fn next_server(&mut self) {
        self.server = (self.server + 1) % self.config.signaling_servers.max(1);
    }

    /// No welcome yet and this server failed: the next one, until each has failed.
    fn first_join_failed(&mut self, now: Millis) {
        self.failed_servers += 1;
        if self.failed_servers >= self.config.signaling_servers.max(1) {
            return self.fail_join(JoinError::Unreachable);
        }
        self.next_server();
        self.open_signaling(now);
    }

    fn schedule_reconnect(&mut self, now: Millis) {
        self.next_server();
        if self.link == Link::Joined {
            self.emit(Event::Signaling { state: SignalingState::Reconnecting, reason: None });
        }
        self.peers.signaling_lost();
        self.server_due = None;
        let delay = backoff(self.reconnect_attempt, 250, 10_000, self.rng.next_u64());
        self.reconnect_attempt = self.reconnect_attempt.saturating_add(1);
        self.link = Link::Waiting { until: now + delay };
    }

    fn emit(&mut self, event: Event) {
        self.outputs.push_back(Output::Event(event));
    }

    // -- what the channels carry -------------------------------------------------------

    fn channel_frame(&mut self, now: Millis, conn: super::ConnId, frame: &[u8]) {
        if self.peers.binding_pending(conn) {
            // Opens the session, or closes an impostor's (see `Peers::binding_received`).
            return self.peers.binding_received(now, conn, frame, &mut self.outputs);
        }
        let Some(peer) = self.peers.peer_of(conn) else { return };
        self.peers.heard_from(&peer);
        let Some(session) = self.peers.open_session(&peer) else { return };
        match session.reassembler.push(frame) {
            Ok(Some(Message::App(payload))) => self.emit(Event::Message { from: peer, payload }),
            Ok(Some(Message::Service(bytes))) => self.service_message(now, &peer, &bytes),
            Ok(Some(Message::TransferControl(frame))) => {
                let (mut net, parts) = self.split(now);
                parts.transfers.on_control(&mut net, &peer, &frame);
            }
            Ok(None) => {}
            Err(err) => warn(&mut self.outputs, format!("bad frame from {peer}: {err}")),
        }
    }

    fn service_message(&mut self, now: Millis, peer: &PeerId, bytes: &[u8]) {
        let message = match Service::decode(bytes) {
            Ok(message) => message,
            Err(err) => return warn(&mut self.outputs, format!("bad service message from {peer}: {err}")),
        };
        let (mut net, parts) = self.split(now);
        let net = &mut net;
        match message {
            Service::Query { id, substring, text } => parts.discovery.on_query(net, peer, id, substring, &text),
            Service::Answer { id, hits } => parts.discovery.on_answer(net, peer, id, hits),
            Service::Request { id, method, payload } => parts.requests.on_request(net, peer, id, method, payload),
            Service::Reply { id, payload } => parts.requests.on_reply(net, peer, id, Ok(payload)),
            Service::Failure { id, code, message } => parts.requests.on_reply(net, peer, id, Err((code, message))),
            Service::Fetch { transfer, share, manifest } => {
                let share = ShareId(share);
                let served = parts.discovery.served(share);
                parts.transfers.on_fetch(net, peer, transfer, share, served, manifest);
            }
            Service::Manifest { transfer, hashes } => parts.transfers.on_manifest(net, peer, transfer, hashes),
            Service::Get { transfer, blocks } => parts.transfers.on_get(net, peer, transfer, blocks),
            Service::Drop { transfer, blocks } => parts.transfers.on_drop(peer, transfer, &blocks),
            Service::Ping => {
                net.send_service(peer, &Service::Pong);
            }
            Service::Pong => {}
            // One per connection, first, and handled then: a later one is noise.
            Service::Bind { .. } => warn(&mut self.outputs, format!("{peer} sent a second binding; ignored")),
        }
    }

    // -- commands ----------------------------------------------------------------------

    /// A connected peer's public key: its connection's binding proved it.
    pub fn peer_key(&self, peer: &PeerId) -> Option<PublicKey> {
        self.peers.key_of(peer)
    }

    /// The code to compare with a connected peer (the same on its side), from both
    /// public keys; `None` if the peer is not connected.
    pub fn safety_code(&self, peer: &PeerId) -> Option<String> {
        Some(safety_code(&self.config.identity.public_key(), &self.peers.key_of(peer)?))
    }

    /// Pins a connected peer's key (the user compared the safety codes): a later
    /// connection to this id from another key is refused as an impostor. Returns the key
    /// to keep for later sessions ([`MeshConfig::pinned`]), or `None` if not connected.
    pub fn pin(&mut self, peer: &PeerId) -> Option<PublicKey> {
        let key = self.peers.key_of(peer)?;
        self.peers.pin(peer.clone(), key);
        Some(key)
    }

    /// Whether `peer`'s key is pinned.
    pub fn is_pinned(&self, peer: &PeerId) -> bool {
        self.peers.is_pinned(peer)
    }

    /// Queues a message for `peer`; it is delivered whole, in order.
    pub fn send(&mut self, _now: Millis, peer: &PeerId, payload: &Payload) -> Result<(), SendError> {
        if self.is_closed() {
            return Err(SendError::Closed);
        }
        if payload.len() > self.config.max_message_bytes {
            return Err(SendError::TooLarge { size: payload.len(), max: self.config.max_message_bytes });
        }
        let max_frame = self.peers.session(peer).filter(|s| s.open).map(|s| s.max_frame()).ok_or_else(|| SendError::NotConnected(peer.clone()))?;
        if !self.peers.transmit(peer, encode(payload, max_frame), false, &mut self.outputs) {
            return Err(SendError::QueueFull(peer.clone()));
        }
        Ok(())
    }

    /// Queues a message for every peer with an open channel; returns how many.
    pub fn broadcast(&mut self, _now: Millis, payload: &Payload) -> Result<usize, SendError> {
        if self.is_closed() {
            return Err(SendError::Closed);
        }
        if payload.len() > self.config.max_message_bytes {
            return Err(SendError::TooLarge { size: payload.len(), max: self.config.max_message_bytes });
        }
        // Encoded once per frame size (peers nearly always share one), not once per peer.
        let mut encoded: Vec<(usize, Vec<Vec<u8>>)> = Vec::new();
        let mut sent = 0;
        for (peer, _) in self.peers.open() {
            let Some(max_frame) = self.peers.session(&peer).map(|s| s.max_frame()) else { continue };
            let frames = match encoded.iter().find(|(size, _)| *size == max_frame) {
                Some((_, frames)) => frames.clone(),
                None => {
                    let frames = encode(payload, max_frame);
                    encoded.push((max_frame, frames.clone()));
                    frames
                }
            };
            if self.peers.transmit(&peer, frames, false, &mut self.outputs) {
                sent += 1;
            } else {
                warn(&mut self.outputs, format!("broadcast skipped {peer}: send queue full"));
            }
        }
        Ok(sent)
    }

    /// Closes every connection and the signaling link. Final.
    pub fn leave(&mut self, now: Millis) {
        if self.link == Link::Closed {
            return;
        }
        let (mut net, parts) = self.split(now);
        parts.transfers.close(&mut net);
        parts.requests.close(&mut net);
        parts.discovery.close(&mut net);
        self.peers.close_all(&mut self.outputs);
        self.outputs.push_back(Output::Signaling(SignalingOp::Close));
        if self.id.is_none() {
            self.emit(Event::JoinFailed(JoinError::Cancelled));
        }
        self.link = Link::Closed;
        self.emit(Event::Signaling { state: SignalingState::Closed, reason: None });
    }

    /// Runs a component command, failing with `Closed` after `leave()`.
    fn command<R>(&mut self, now: Millis, f: impl FnOnce(&mut Net<'_>, &mut Components) -> Result<R, SendError>) -> Result<R, SendError> {
        if self.is_closed() {
            return Err(SendError::Closed);
        }
        let (mut net, parts) = self.split(now);
        let result = f(&mut net, parts);
        self.route_changes(now);
        result
    }

    /// Offers a file to `peer`; its blocks are read with [`FileOp::Read`](super::FileOp::Read)
    /// as needed. Fails like [`Mesh::send`] when the peer is not connected.
    pub fn send_file(&mut self, now: Millis, peer: &PeerId, meta: FileMeta) -> Result<TransferId, SendError> {
        self.command(now, |net, parts| parts.transfers.send_file(net, peer, meta))
    }

    /// The user accepted an offer.
    pub fn accept_file(&mut self, now: Millis, id: TransferId) -> Result<(), TransferError> {
        let (mut net, parts) = self.split(now);
        parts.transfers.accept(&mut net, id)
    }

    /// The user declined an offer.
    pub fn reject_file(&mut self, now: Millis, id: TransferId, reason: &str) {
        let (mut net, parts) = self.split(now);
        parts.transfers.reject(&mut net, id, reason);
    }

    /// Cancels a transfer (either direction) or declines an open offer; the peer is told.
    pub fn cancel_transfer(&mut self, now: Millis, id: TransferId, reason: &str) {
        let (mut net, parts) = self.split(now);
        parts.transfers.cancel(&mut net, id, reason);
    }

    /// Downloads the content `hash` (`meta.size` bytes) from every listed holder (peer
    /// and its share id) at once. Fails like [`Mesh::send`] if none of them is
    /// connected. Progress, pause, resume, done and failure come as for any transfer.
    pub fn download(&mut self, now: Millis, meta: FileMeta, hash: Hash, holders: &[(PeerId, ShareId)]) -> Result<TransferId, SendError> {
        self.command(now, |net, parts| parts.transfers.download(net, meta, hash, holders))
    }

    /// Downloads what a query found: the first hit's content, from every hit with that
    /// content (the same hash and size; other bytes under the same name are another
    /// file and are left out). Fails like [`Mesh::download`].
    pub fn download_hits(&mut self, now: Millis, hits: &[Hit]) -> Result<TransferId, SendError> {
        self.command(now, |net, parts| parts.transfers.download_hits(net, hits))
    }

    /// Bytes each holder of a download served so far (verified), in the order given.
    pub fn download_sources(&self, id: TransferId) -> Option<Vec<(PeerId, u64)>> {
        self.parts.transfers.download_sources(id)
    }

    /// Shares a file with the room: `hashes` are its blocks' hashes (see
    /// [`super::transfer::blocks::hash_block`]), read and computed by the driver. Only
    /// shared files are ever served to others.
    pub fn share(&mut self, meta: FileMeta, hashes: Vec<Hash>) -> Result<SharedFile, ManifestError> {
        let (mut net, parts) = self.split(Millis(0));
        parts.discovery.share(&mut net, meta, hashes)
    }

    /// Stops sharing a file; downloads it is serving end with a `NotShared` error for
    /// the downloader. Returns whether it was shared.
    pub fn unshare(&mut self, now: Millis, id: ShareId) -> bool {
        let (mut net, parts) = self.split(now);
        let shared = parts.discovery.unshare(id);
        if shared {
            parts.transfers.end_serves_of(&mut net, id);
        }
        shared
    }

    /// What we share, sorted by name.
    pub fn shared(&self) -> Vec<SharedFile> {
        self.parts.discovery.shared()
    }

    /// Asks every connected peer for files matching `text`. [`Event::FindDone`] follows
    /// once every asked peer answered (or left), or after `timeout_ms`.
    pub fn find(&mut self, now: Millis, text: &str, how: Match, timeout_ms: u64) -> QueryId {
        let (mut net, parts) = self.split(now);
        parts.discovery.find(&mut net, text, how, timeout_ms)
    }

    /// Calls `method` on `peer`; [`Event::Response`] with this id follows, exactly once.
    pub fn request(&mut self, now: Millis, peer: &PeerId, method: &str, payload: Payload, timeout_ms: u64) -> Result<RequestId, SendError> {
        self.command(now, |net, parts| parts.requests.request(net, peer, method, payload, timeout_ms))
    }

    /// Serves `method`: requests for it become [`Event::Request`]s.
    pub fn serve_method(&mut self, method: &str) {
        self.parts.requests.serve_method(method);
    }

    /// Stops serving `method`: later requests get `NoSuchMethod`.
    pub fn unserve_method(&mut self, method: &str) -> bool {
        self.parts.requests.unserve_method(method)
    }

    /// Answers a request from [`Event::Request`]: a reply, or the handler's error
    /// message. Ignored if the asker has left since.
    pub fn respond(&mut self, now: Millis, to: &PeerId, id: u64, result: Result<Payload, String>) {
        let (mut net, parts) = self.split(now);
        parts.requests.respond(&mut net, to, id, result);
    }
}
