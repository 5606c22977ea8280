//! All of one peer's relationships: the signaling connection (join, reconnect with
//! backoff), the room roster, and a [`Session`] per peer (negotiation, data channel
//! framing, flow control). Sans-IO: `handle_*` feeds inputs, [`Mesh::poll_output`]
//! yields what the driver must do, [`Mesh::poll_timeout`] when to call
//! [`Mesh::handle_timeout`].
//!
//! Who offers: of two peers, the one with the smaller id. Each side learns of the other
//! from the server exactly once (one from `welcome`, the other from `peer-joined`), so
//! the offerer offers and the answerer says `hello` (in case the offerer thinks it
//! already has a connection, e.g. after the answerer reloaded). Collisions that remain
//! possible are settled the perfect-negotiation way: the answerer is polite.

use std::collections::{HashMap, HashSet, VecDeque};

use meshdrop_signal::protocol::{parse_server, ClientMessage, ServerEvent};
use serde_json::value::RawValue;

use super::discovery::{Discovery, Hit, QueryId, ShareId};
use super::error::{JoinError, SendError};
use super::request::{RequestError, RequestId, Requests};
use super::rng::Rng;
use super::service::Service;
use super::session::Session;
use super::signal::PeerSignal;
use super::time::backoff;
use super::transfer::frame::{Control, CONTROL};
use super::transfer::{BulkItem, FileMeta, Hash, Progress, RecvLane, Transfer, TransferError, TransferId};
use super::wire::{encode, encode_service, Message, Payload};
use super::{ConnId, Millis, PeerId};

/// Connection attempts we offer at once; the rest wait their turn. All at once, a
/// 32-peer room's 496 DTLS handshakes on two cores took long enough to hit the connect
/// timeout, and the retries made it worse (bench/mesh.mjs).
pub const MAX_OFFERS_IN_FLIGHT: usize = 8;

/// Largest frame taken from the signaling server: a welcome to a full room of 64 is
/// about 8 KiB; a server may allow larger rooms, but no frame of megabytes.
const MAX_SERVER_FRAME: usize = 1024 * 1024;

/// How long a peer the server says left has to show it is still there (any frame).
pub const LEFT_PROBE_MS: u64 = 3_000;

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
    /// A key that never leaves this device (unlike `secret`, which the server sees):
    /// a receiver proves with it that it is the one that accepted a transfer before,
    /// so a transfer resumes only with the same browser. Persist it with the secret.
    pub local_key: [u8; 32],
}

impl MeshConfig {
    /// Defaults: 16 MiB messages, 20 s connect timeout, transfers wait 2 minutes for a
    /// peer that left.
    /// `local_key` defaults to one derived from the secret: set a separate random one
    /// (as the browser driver does) for resume proofs the server cannot forge.
    pub fn new(room: impl Into<String>, name: Option<String>, secret: impl Into<String>) -> Self {
        let secret = secret.into();
        let local_key = *blake3::Hasher::new_derive_key("meshdrop 2026-11 local key from secret").update(secret.as_bytes()).finalize().as_bytes();
        MeshConfig {
            room: room.into(),
            name,
            secret,
            max_message_bytes: 16 * 1024 * 1024,
            connect_timeout_ms: 20_000,
            resume_timeout_ms: 120_000,
            local_key,
        }
    }
}

/// Where the signaling connection stands, as users see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalingState {
    /// Joined; new peers can be met.
    Connected,
    /// Lost; retrying with backoff. Open peer connections are unaffected.
    Reconnecting,
    /// Closed for good: `leave()`, the first join failed, or another connection took
    /// our id over (then open peer connections stay, but no new peer can be met).
    Closed,
}

impl SignalingState {
    /// The state's name in the JS API.
    pub fn as_str(self) -> &'static str {
        match self {
            SignalingState::Connected => "connected",
            SignalingState::Reconnecting => "reconnecting",
            SignalingState::Closed => "closed",
        }
    }
}

/// An SDP's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdpKind {
    /// `offer`
    Offer,
    /// `answer`
    Answer,
}

/// Things that happened, for the user.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The server welcomed us for the first time.
    Joined {
        /// Our id for the life of this mesh.
        id: PeerId,
    },
    /// The first join failed; the mesh is closed.
    JoinFailed(JoinError),
    /// The signaling connection changed state.
    Signaling {
        /// The new state.
        state: SignalingState,
        /// Why it closed, when it closed for a reason other than `leave()`.
        reason: Option<String>,
    },
    /// We started connecting to this peer; `PeerJoined` or `PeerLeft` follows.
    PeerConnecting {
        /// Who.
        id: PeerId,
        /// Their display name.
        name: Option<String>,
    },
    /// A data channel to this peer opened.
    PeerJoined {
        /// Who.
        id: PeerId,
        /// Their display name.
        name: Option<String>,
    },
    /// The data channel to this peer closed, or an announced attempt was abandoned
    /// because the peer left the room.
    PeerLeft {
        /// Who.
        id: PeerId,
    },
    /// A whole message arrived.
    Message {
        /// Sender.
        from: PeerId,
        /// What they sent.
        payload: Payload,
    },
    /// Something went wrong that needs no action: a peer's bad frame, a refused signal.
    Warning(String),
    /// A peer offers us a file; answer with [`Mesh::accept_file`] or [`Mesh::reject_file`].
    FileOffer {
        /// The transfer.
        id: TransferId,
        /// Who offers it.
        from: PeerId,
        /// What it is.
        meta: FileMeta,
        /// Its content hash, if the sender knows it already.
        hash: Option<Hash>,
        /// Bytes of it we hold already from an earlier, interrupted download.
        have: u64,
    },
    /// A transfer we receive started without an offer: the same sender came back with
    /// content we were receiving from it before (one of us reloaded).
    TransferStarted {
        /// The transfer.
        id: TransferId,
        /// The sender.
        peer: PeerId,
        /// What it is.
        meta: FileMeta,
    },
    /// The peer left mid-transfer; it continues if the peer comes back in time.
    TransferPaused {
        /// The transfer.
        id: TransferId,
    },
    /// The transfer is (again) moving bytes.
    TransferResumed {
        /// The transfer.
        id: TransferId,
    },
    /// Bytes done so far, at most every 200 ms.
    TransferProgress {
        /// The transfer.
        id: TransferId,
        /// Where it stands.
        progress: Progress,
    },
    /// Sent: the receiver verified and stored it. Received: verified and stored.
    TransferDone {
        /// The transfer.
        id: TransferId,
        /// The content hash.
        hash: Hash,
    },
    /// The transfer (or an offer not yet answered) ended without the file.
    TransferFailed {
        /// The transfer.
        id: TransferId,
        /// Why.
        error: TransferError,
    },
    /// Bytes each holder of a multi-source download served so far (verified), with
    /// each progress report and once more before it ends.
    TransferSources {
        /// The download.
        id: TransferId,
        /// Holders in the order given, with their bytes.
        sources: Vec<(PeerId, u64)>,
    },
    /// A query ended: every asked peer answered (or left), or time ran out.
    FindDone {
        /// The query.
        id: QueryId,
        /// What the peers have, sorted by name, then peer.
        hits: Vec<Hit>,
    },
    /// A peer calls a method we handle; answer with [`Mesh::respond`].
    Request {
        /// The caller.
        from: PeerId,
        /// The caller's id for it (pass to `respond`).
        id: u64,
        /// The method.
        method: String,
        /// Its argument.
        payload: Payload,
    },
    /// One of our requests ended.
    Response {
        /// The request.
        id: RequestId,
        /// The reply, or why there is none.
        result: Result<Payload, RequestError>,
    },
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Open the WebSocket to the signaling server; report `handle_signaling_open` or
    /// `handle_signaling_closed`.
    OpenSignaling,
    /// Send this text frame on the WebSocket.
    SendSignaling(String),
    /// Close the WebSocket; no further signaling events are expected from it.
    CloseSignaling,
    /// Create an RTCPeerConnection and its pre-negotiated data channel.
    CreateConnection {
        /// Remote peer.
        peer: PeerId,
        /// The attempt.
        conn: ConnId,
    },
    /// Create an offer, set it as local description, report `handle_local_description`.
    CreateOffer {
        /// The attempt.
        conn: ConnId,
    },
    /// Apply a remote description; report `handle_connection_closed` if it is rejected.
    /// `AddIceCandidate`s for the same connection may follow at once: apply them after
    /// it, in order (RTCPeerConnection's operations chain does).
    SetRemoteDescription {
        /// The attempt.
        conn: ConnId,
        /// Offer or answer.
        kind: SdpKind,
        /// The SDP text.
        sdp: String,
    },
    /// Create an answer, set it as local description, report `handle_local_description`.
    /// Follows `SetRemoteDescription` of the offer immediately: perform it after that
    /// one in the browser's order (RTCPeerConnection's operations chain does).
    CreateAnswer {
        /// The attempt.
        conn: ConnId,
    },
    /// Add a remote ICE candidate (JSON of an `RTCIceCandidateInit`).
    AddIceCandidate {
        /// The attempt.
        conn: ConnId,
        /// The candidate.
        candidate: String,
    },
    /// Send one frame on the data channel.
    Transmit {
        /// The attempt.
        conn: ConnId,
        /// The frame.
        frame: Vec<u8>,
    },
    /// Close and forget this connection; no further events are expected from it.
    CloseConnection {
        /// The attempt.
        conn: ConnId,
    },
    /// Tell the user.
    Event(Event),
    /// Read bytes `offset..offset + len` of transfer `id`'s file; report
    /// [`Mesh::handle_block_read`] or [`Mesh::handle_block_unreadable`].
    ReadBlock {
        /// The transfer.
        id: TransferId,
        /// The block.
        block: u32,
        /// Where in the file.
        offset: u64,
        /// How many bytes.
        len: u64,
    },
    /// Read bytes `offset..offset + len` of shared file `share` for transfer `id`;
    /// report like [`Output::ReadBlock`].
    ReadShared {
        /// The transfer (a download we serve).
        id: TransferId,
        /// The shared file.
        share: ShareId,
        /// The block.
        block: u32,
        /// Where in the file.
        offset: u64,
        /// How many bytes.
        len: u64,
    },
    /// Send this on the bulk channel.
    TransmitBulk {
        /// The attempt.
        conn: ConnId,
        /// What.
        item: BulkItem,
    },
    /// Drop every block of transfer `id` kept for slices, except `except`, whose
    /// remaining slices are still to be sent (a block half on the wire must be
    /// finished, or the receiver would read what follows as its bytes).
    ReleaseBlocks {
        /// The transfer.
        id: TransferId,
        /// A block still being sent.
        except: Option<u32>,
    },
    /// Look for a partial download stored under `key`; report [`Mesh::handle_store_probed`].
    ProbeStore {
        /// The transfer.
        id: TransferId,
        /// The content key.
        key: String,
    },
    /// Open storage for the content under `key`: the partial download that
    /// [`Output::ProbeStore`] reported for this transfer, if any, else a new one; report
    /// [`Mesh::handle_store_opened`]. Keep `id`, `from` and `meta` with it (a later
    /// probe reports them). A finished download is final: it is never reported as a
    /// partial or opened again, so nothing can write into a file once delivered.
    OpenStore {
        /// The transfer.
        id: TransferId,
        /// The content key.
        key: String,
        /// The sender (none for a multi-source download).
        from: Option<PeerId>,
        /// What it is.
        meta: FileMeta,
    },
    /// Every byte of `block` has been stored: record its hash after them; report
    /// [`Mesh::handle_block_committed`].
    CommitBlock {
        /// The transfer.
        id: TransferId,
        /// The block.
        block: u32,
        /// Its verified hash.
        hash: Hash,
    },
    /// The file is complete and verified: flush and close its storage, and make it
    /// available; report [`Mesh::handle_store_finished`].
    FinishStore {
        /// The transfer.
        id: TransferId,
    },
    /// Close the storage of a transfer that ended without the file; `delete` drops
    /// what was stored (it was cancelled), otherwise it stays for a later resume.
    CloseStore {
        /// The transfer.
        id: TransferId,
        /// Remove the partial download.
        delete: bool,
    },
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

/// The close code (RFC 6455 1008, policy) and reason prefix with which the server
/// closes a connection whose id another connection took over.
const REPLACED_CLOSE: (u16, &str) = (1008, "replaced");
/// The error code the server sends before that close.
const REPLACED_ERROR: &str = "replaced";

/// One peer's view of its room.
#[derive(Debug)]
pub struct Mesh {
    pub(crate) config: MeshConfig,
    rng: Rng,
    id: Option<PeerId>,
    link: Link,
    reconnect_attempt: u32,
    /// Who the server says is in the room, with their names.
    roster: HashMap<PeerId, Option<String>>,
    sessions: HashMap<PeerId, Session>,
    conns: HashMap<ConnId, PeerId>,
    /// When to try a peer again, and how many tries it has had.
    retries: HashMap<PeerId, Millis>,
    attempts: HashMap<PeerId, u32>,
    /// Announced with `PeerConnecting`, neither joined nor left since.
    connecting: HashSet<PeerId>,
    /// Peers we will offer to once fewer than [`MAX_OFFERS_IN_FLIGHT`] are in flight.
    offer_queue: VecDeque<PeerId>,
    outputs: VecDeque<Output>,
    /// Every transfer in progress, both directions.
    pub(crate) transfers: HashMap<TransferId, Transfer>,
    /// Per peer, the transfer that got the last read (for round-robin).
    pub(crate) send_cursor: HashMap<PeerId, TransferId>,
    /// Shared files and queries.
    pub(crate) discovery: Discovery,
    /// Requests both ways, and the methods we handle.
    pub(crate) requests: Requests,
}

impl Mesh {
    /// Starts a mesh: the first output asks the driver to open signaling.
    /// `seed` should come from a secure random source (ids and jitter derive from it).
    pub fn new(config: MeshConfig, seed: u64) -> Self {
        let mut outputs = VecDeque::new();
        outputs.push_back(Output::OpenSignaling);
        Mesh {
            config,
            rng: Rng::new(seed),
            id: None,
            link: Link::Connecting,
            reconnect_attempt: 0,
            roster: HashMap::new(),
            sessions: HashMap::new(),
            conns: HashMap::new(),
            retries: HashMap::new(),
            attempts: HashMap::new(),
            connecting: HashSet::new(),
            offer_queue: VecDeque::new(),
            outputs,
            transfers: HashMap::new(),
            send_cursor: HashMap::new(),
            discovery: Discovery::default(),
            requests: Requests::default(),
        }
    }

    /// Our id, once welcomed.
    pub fn id(&self) -> Option<&PeerId> {
        self.id.as_ref()
    }

    /// Peers with an open data channel, with their names, sorted by id.
    pub fn peers(&self) -> Vec<(PeerId, Option<String>)> {
        let mut peers: Vec<_> =
            self.sessions.iter().filter(|(_, s)| s.open).map(|(id, _)| (id.clone(), self.roster.get(id).cloned().flatten())).collect();
        peers.sort();
        peers
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

    /// When [`Mesh::handle_timeout`] wants to be called next.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let link = match self.link {
            Link::Waiting { until } => Some(until),
            _ => None,
        };
        let deadlines = self.sessions.values().filter_map(|s| s.deadline);
        let paused = self.transfers.values().filter_map(Transfer::paused_until);
        let services = self.discovery.next_deadline().into_iter().chain(self.requests.next_deadline());
        link.into_iter().chain(deadlines).chain(self.retries.values().copied()).chain(paused).chain(services).min()
    }

    // -- signaling ---------------------------------------------------------------------

    /// The WebSocket opened: join (again) with our secret so the id stays the same.
    pub fn handle_signaling_open(&mut self, _now: Millis) {
        if self.link != Link::Connecting {
            return;
        }
        let join = ClientMessage::Join { room: &self.config.room, name: self.config.name.as_deref(), secret: Some(&self.config.secret) };
        self.outputs.push_back(Output::SendSignaling(serde_json::to_string(&join).unwrap_or_default()));
    }

    /// The WebSocket closed or failed to open; `close` is its close frame's code and
    /// reason, if one came.
    pub fn handle_signaling_closed(&mut self, now: Millis, close: Option<(u16, &str)>) {
        if let Some((code, reason)) = close {
            if code == REPLACED_CLOSE.0 && reason.starts_with(REPLACED_CLOSE.1) {
                return self.stop_signaling(format!("the signaling server closed us: {reason}"));
            }
        }
        match self.link {
            Link::Connecting if self.id.is_none() => self.fail_join(JoinError::Unreachable),
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
        self.outputs.push_back(Output::CloseSignaling);
        self.warn(format!("{reason}; another tab or device uses this identity, so this one stops signaling (open connections stay)"));
        self.emit(Event::Signaling { state: SignalingState::Closed, reason: Some(reason) });
    }

    /// A text frame from the server.
    pub fn handle_signaling_frame(&mut self, now: Millis, text: &str) {
        if text.len() > MAX_SERVER_FRAME {
            return self.warn(format!("ignored a {}-byte frame from the signaling server", text.len()));
        }
        let event = match parse_server(text) {
            Ok(event) => event,
            Err(err) => return self.warn(format!("bad frame from signaling server: {err}")),
        };
        match event {
            ServerEvent::Welcome { id, peers } => self.welcomed(now, PeerId::new(id), peers),
            ServerEvent::PeerJoined(info) => {
                if self.link != Link::Joined {
                    return;
                }
                let peer = PeerId::new(info.id);
                self.roster.insert(peer.clone(), info.name);
                self.meet(now, peer);
            }
            ServerEvent::PeerLeft { id } => {
                let peer = PeerId::new(id);
                self.roster.remove(&peer);
                self.retries.remove(&peer);
                self.attempts.remove(&peer);
                // An open channel is the truth about a peer; signaling only introduces.
                // But a closed tab's channel can take 15 s to close: ask it, and close
                // it if nothing at all comes back within LEFT_PROBE_MS.
                let open = self.sessions.get(&peer).is_some_and(|s| s.open);
                if open {
                    if let Some(s) = self.sessions.get_mut(&peer) {
                        s.deadline = Some(now + LEFT_PROBE_MS);
                    }
                    self.send_service(&peer, &Service::Ping);
                } else {
                    self.close_session(now, &peer);
                    self.offer_queue.retain(|p| *p != peer);
                    if self.connecting.remove(&peer) {
                        self.emit(Event::PeerLeft { id: peer });
                    }
                    self.start_queued_offers(now);
                }
            }
            ServerEvent::Signal { from, data } => self.peer_signal(now, PeerId::new(from), &data),
            ServerEvent::Error { code_text, message, .. } if code_text == REPLACED_ERROR => {
                self.stop_signaling(format!("the signaling server closed us: {message}"));
            }
            ServerEvent::Error { code_text, message, .. } => match self.link {
                Link::Connecting if self.id.is_none() => {
                    self.outputs.push_back(Output::CloseSignaling);
                    self.fail_join(JoinError::Refused { code: code_text, message });
                }
                Link::Connecting => {
                    self.warn(format!("signaling server refused to rejoin: {code_text}: {message}"));
                    self.outputs.push_back(Output::CloseSignaling);
                    self.schedule_reconnect(now);
                }
                _ => self.warn(format!("signaling server: {code_text}: {message}")),
            },
        }
    }

    fn welcomed(&mut self, now: Millis, id: PeerId, peers: Vec<meshdrop_signal::protocol::PeerInfo>) {
        if self.link != Link::Connecting {
            return;
        }
        self.link = Link::Joined;
        self.reconnect_attempt = 0;
        match &self.id {
            None => {
                self.id = Some(id.clone());
                self.emit(Event::Joined { id });
            }
            Some(ours) if *ours != id => {
                self.warn(format!("signaling server gave us a new id {id}; keeping {ours}"));
            }
            Some(_) => {}
        }
        self.emit(Event::Signaling { state: SignalingState::Connected, reason: None });
        self.roster = peers.into_iter().map(|p| (PeerId::new(p.id), p.name)).collect();
        let mut known: Vec<_> = self.roster.keys().cloned().collect();
        known.sort();
        for peer in known {
            self.meet(now, peer);
        }
    }

    fn fail_join(&mut self, err: JoinError) {
        self.link = Link::Closed;
        self.emit(Event::JoinFailed(err));
        self.emit(Event::Signaling { state: SignalingState::Closed, reason: None });
    }

    fn schedule_reconnect(&mut self, now: Millis) {
        if self.link == Link::Joined {
            self.emit(Event::Signaling { state: SignalingState::Reconnecting, reason: None });
        }
        let delay = backoff(self.reconnect_attempt, 250, 10_000, self.rng.next_u64());
        self.reconnect_attempt = self.reconnect_attempt.saturating_add(1);
        self.link = Link::Waiting { until: now + delay };
    }

    fn send_signal(&mut self, to: &PeerId, signal: PeerSignal) {
        if self.link != Link::Joined {
            // Nobody to carry it; the attempt times out and is retried after reconnect.
            return;
        }
        let json = signal.to_json();
        let Ok(data) = RawValue::from_string(json) else { return };
        let frame = ClientMessage::Signal { to: to.as_str(), data: &data };
        self.outputs.push_back(Output::SendSignaling(serde_json::to_string(&frame).unwrap_or_default()));
    }

    // -- negotiation -------------------------------------------------------------------

    fn we_offer(&self, peer: &PeerId) -> bool {
        self.id.as_ref().is_some_and(|ours| ours < peer)
    }

    /// The server told us about `peer`: connect unless we already are.
    fn meet(&mut self, now: Millis, peer: PeerId) {
        if Some(&peer) == self.id.as_ref() || self.sessions.contains_key(&peer) {
            return;
        }
        self.initiate(now, peer);
    }

    fn initiate(&mut self, now: Millis, peer: PeerId) {
        if self.connecting.insert(peer.clone()) {
            let name = self.roster.get(&peer).cloned().flatten();
            self.emit(Event::PeerConnecting { id: peer.clone(), name });
        }
        if self.we_offer(&peer) {
            if self.offers_in_flight() >= MAX_OFFERS_IN_FLIGHT {
                if !self.offer_queue.contains(&peer) {
                    self.offer_queue.push_back(peer);
                }
                return;
            }
            let conn = ConnId::from_raw(self.rng.next_u64());
            self.start_session(now, peer, conn, true);
        } else {
            self.send_signal(&peer, PeerSignal::Hello);
            // If the offer never comes, ask again.
            self.schedule_retry(now, &peer, self.config.connect_timeout_ms);
        }
    }

    fn offers_in_flight(&self) -> usize {
        self.sessions.values().filter(|s| s.offerer && !s.open).count()
    }

    /// Starts queued offers while there is room, skipping peers that left or that
    /// connected meanwhile (their own offer after a glare, say).
    fn start_queued_offers(&mut self, now: Millis) {
        while self.offers_in_flight() < MAX_OFFERS_IN_FLIGHT {
            let Some(peer) = self.offer_queue.pop_front() else { return };
            if self.link != Link::Closed && self.roster.contains_key(&peer) && !self.sessions.contains_key(&peer) {
                let conn = ConnId::from_raw(self.rng.next_u64());
                self.start_session(now, peer, conn, true);
            }
        }
    }

    fn start_session(&mut self, now: Millis, peer: PeerId, conn: ConnId, offerer: bool) {
        let deadline = now + self.config.connect_timeout_ms;
        self.sessions.insert(peer.clone(), Session::new(conn, offerer, deadline, self.config.max_message_bytes));
        self.conns.insert(conn, peer.clone());
        self.retries.remove(&peer);
        self.outputs.push_back(Output::CreateConnection { peer, conn });
        if offerer {
            self.outputs.push_back(Output::CreateOffer { conn });
        }
    }

    fn peer_signal(&mut self, now: Millis, from: PeerId, data: &RawValue) {
        if self.link == Link::Closed || Some(&from) == self.id.as_ref() {
            return;
        }
        let signal = match PeerSignal::parse(data.get()) {
            Ok(signal) => signal,
            Err(err) => return self.warn(format!("bad signal from {from}: {err}")),
        };
        // The server relays only within our room, so the sender is a member.
        self.roster.entry(from.clone()).or_insert(None);
        match signal {
            PeerSignal::Hello => {
                if !self.we_offer(&from) {
                    return self.warn(format!("peer {from} asked us to offer, but it is the offerer"));
                }
                match self.sessions.get(&from) {
                    // Our offer is on its way; it answers that.
                    Some(s) if s.awaiting_answer => {}
                    // It has lost the connection we still hold (it reloaded): start over.
                    Some(_) => {
                        self.close_session(now, &from);
                        self.initiate(now, from);
                    }
                    None => self.initiate(now, from),
                }
            }
            PeerSignal::Offer { conn, sdp } => {
                if let Some(s) = self.sessions.get(&from) {
                    if s.conn == conn {
                        return; // duplicate
                    }
                    let polite = !self.we_offer(&from);
                    if s.offerer && s.awaiting_answer && !polite {
                        return; // glare: the impolite side keeps its own offer
                    }
                    self.close_session(now, &from);
                }
                self.start_session(now, from, conn, false);
                self.outputs.push_back(Output::SetRemoteDescription { conn, kind: SdpKind::Offer, sdp });
                self.remote_description_issued(conn);
                // Issued without waiting: the browser's operations chain applies the
                // offer first, and skipping a round trip through us saves a task hop.
                self.outputs.push_back(Output::CreateAnswer { conn });
            }
            PeerSignal::Answer { conn, sdp } => match self.sessions.get_mut(&from) {
                Some(s) if s.conn == conn && s.awaiting_answer => {
                    s.awaiting_answer = false;
                    self.outputs.push_back(Output::SetRemoteDescription { conn, kind: SdpKind::Answer, sdp });
                    self.remote_description_issued(conn);
                }
                _ => self.warn(format!("unexpected answer from {from}")),
            },
            PeerSignal::Candidate { conn, candidate } => {
                if let Some(s) = self.sessions.get_mut(&from).filter(|s| s.conn == conn) {
                    if let Some(candidate) = s.remote_candidate(candidate) {
                        self.outputs.push_back(Output::AddIceCandidate { conn, candidate });
                    }
                }
            }
        }
    }

    /// The browser created and set our local description.
    pub fn handle_local_description(&mut self, _now: Millis, conn: ConnId, kind: SdpKind, sdp: String) {
        let Some(peer) = self.conns.get(&conn).cloned() else { return };
        let signal = match kind {
            SdpKind::Offer => PeerSignal::Offer { conn, sdp },
            SdpKind::Answer => PeerSignal::Answer { conn, sdp },
        };
        self.send_signal(&peer, signal);
    }

    /// The browser gathered a local ICE candidate (JSON of `RTCIceCandidateInit`).
    pub fn handle_local_candidate(&mut self, _now: Millis, conn: ConnId, candidate: String) {
        let Some(peer) = self.conns.get(&conn).cloned() else { return };
        self.send_signal(&peer, PeerSignal::Candidate { conn, candidate });
    }

    /// Candidates that arrived before the remote description may follow it now: the
    /// driver performs outputs in order and RTCPeerConnection's operations chain applies
    /// them after the description, without a round trip through us first.
    fn remote_description_issued(&mut self, conn: ConnId) {
        let Some(s) = self.session_mut(conn) else { return };
        let early = s.remote_description_issued();
        self.outputs.extend(early.into_iter().map(|candidate| Output::AddIceCandidate { conn, candidate }));
    }

    // -- data channel ------------------------------------------------------------------

    /// The data channel opened. `max_message_size` is `pc.sctp.maxMessageSize` (0 if
    /// the browser does not say).
    pub fn handle_channel_open(&mut self, now: Millis, conn: ConnId, max_message_size: u64) {
        let Some(peer) = self.conns.get(&conn).cloned() else { return };
        let Some(s) = self.sessions.get_mut(&peer) else { return };
        if s.open {
            return;
        }
        s.opened(max_message_size);
        self.connecting.remove(&peer);
        self.retries.remove(&peer);
        self.attempts.remove(&peer);
        let name = self.roster.get(&peer).cloned().flatten();
        self.emit(Event::PeerJoined { id: peer.clone(), name });
        self.start_queued_offers(now);
        self.resume_sends(now, &peer);
        self.sources_rejoined(now, &peer);
    }

    /// A frame arrived on the data channel.
    pub fn handle_channel_message(&mut self, now: Millis, conn: ConnId, frame: &[u8]) {
        let Some(peer) = self.conns.get(&conn).cloned() else { return };
        let Some(s) = self.sessions.get_mut(&peer).filter(|s| s.open) else { return };
        s.deadline = None; // alive
        if frame.first() == Some(&CONTROL) {
            return self.transfer_control(now, &peer, frame);
        }
        match s.reassembler.push(frame) {
            Ok(Some(Message::App(payload))) => self.emit(Event::Message { from: peer, payload }),
            Ok(Some(Message::Service(bytes))) => self.service_message(now, &peer, &bytes),
            Ok(None) => {}
            Err(err) => self.warn(format!("bad frame from {peer}: {err}")),
        }
    }

    /// The channel's `bufferedAmount` fell to `buffered` (on `bufferedamountlow`).
    pub fn handle_buffered_amount_low(&mut self, _now: Millis, conn: ConnId, buffered: u64) {
        if let Some(s) = self.session_mut(conn) {
            s.set_buffered(buffered);
            self.flush(conn);
        }
    }

    /// The bulk channel's `bufferedAmount` fell to `buffered`.
    pub fn handle_bulk_buffered_low(&mut self, now: Millis, conn: ConnId, buffered: u64) {
        let Some(peer) = self.peer_of(conn) else { return };
        if let Some(s) = self.session_mut(conn) {
            s.bulk.set_buffered(buffered);
        }
        self.bulk_flush(&peer);
        self.pump_sends(now, &peer);
    }

    /// The connection failed or its channel closed.
    pub fn handle_connection_closed(&mut self, now: Millis, conn: ConnId, reason: &str) {
        let Some(peer) = self.conns.get(&conn).cloned() else { return };
        if self.sessions.get(&peer).is_some_and(|s| !s.open) {
            self.warn(format!("connection to {peer} failed: {reason}"));
        }
        self.close_session(now, &peer);
        self.start_queued_offers(now);
        // The peer may still be there (a network blip): try again while it is listed.
        let delay = backoff(self.attempts.get(&peer).copied().unwrap_or(0), 1_000, 15_000, self.rng.next_u64());
        self.schedule_retry(now, &peer, delay);
    }

    /// Time passed: reconnect signaling, expire stalled attempts, retry peers.
    pub fn handle_timeout(&mut self, now: Millis) {
        if let Link::Waiting { until } = self.link {
            if now >= until {
                self.link = Link::Connecting;
                self.outputs.push_back(Output::OpenSignaling);
            }
        }
        let mut stalled: Vec<_> = self.sessions.iter().filter(|(_, s)| s.deadline.is_some_and(|d| d <= now)).map(|(_, s)| s.conn).collect();
        stalled.sort();
        for conn in stalled {
            self.handle_connection_closed(now, conn, "timed out");
        }
        let mut expired: Vec<_> =
            self.transfers.iter().filter(|(_, t)| t.paused_until().is_some_and(|until| until <= now)).map(|(id, _)| *id).collect();
        expired.sort();
        for id in expired {
            self.fail(now, id, TransferError::PeerLeft(self.config.resume_timeout_ms), false);
        }
        self.expire_queries(now);
        self.expire_requests(now);
        let mut due: Vec<_> = self.retries.iter().filter(|(_, at)| **at <= now).map(|(p, _)| p.clone()).collect();
        due.sort();
        for peer in due {
            self.retries.remove(&peer);
            if self.link == Link::Joined && self.roster.contains_key(&peer) && !self.sessions.contains_key(&peer) {
                *self.attempts.entry(peer.clone()).or_default() += 1;
                self.initiate(now, peer);
            }
        }
    }

    fn schedule_retry(&mut self, now: Millis, peer: &PeerId, delay: u64) {
        if self.roster.contains_key(peer) && self.link != Link::Closed {
            self.retries.insert(peer.clone(), now + delay);
        }
    }

    // -- sending -----------------------------------------------------------------------

    /// Queues a message for `peer`; it is delivered whole, in order.
    pub fn send(&mut self, _now: Millis, peer: &PeerId, payload: &Payload) -> Result<(), SendError> {
        if self.link == Link::Closed {
            return Err(SendError::Closed);
        }
        if payload.len() > self.config.max_message_bytes {
            return Err(SendError::TooLarge { size: payload.len(), max: self.config.max_message_bytes });
        }
        let s = self.sessions.get_mut(peer).filter(|s| s.open).ok_or_else(|| SendError::NotConnected(peer.clone()))?;
        if !s.enqueue(encode(payload, s.max_frame())) {
            return Err(SendError::QueueFull(peer.clone()));
        }
        let conn = s.conn;
        self.flush(conn);
        Ok(())
    }

    /// Queues a message for every peer with an open channel; returns how many.
    pub fn broadcast(&mut self, now: Millis, payload: &Payload) -> Result<usize, SendError> {
        if self.link == Link::Closed {
            return Err(SendError::Closed);
        }
        let peers: Vec<_> = self.peers().into_iter().map(|(id, _)| id).collect();
        let mut sent = 0;
        for peer in peers {
            match self.send(now, &peer, payload) {
                Ok(()) => sent += 1,
                Err(SendError::QueueFull(p)) => self.warn(format!("broadcast skipped {p}: send queue full")),
                Err(err) => return Err(err),
            }
        }
        Ok(sent)
    }

    fn flush(&mut self, conn: ConnId) {
        let Some(peer) = self.conns.get(&conn) else { return };
        let Some(s) = self.sessions.get_mut(peer) else { return };
        self.outputs.extend(s.release().map(|frame| Output::Transmit { conn, frame }));
    }

    /// Closes every connection and the signaling link. Final.
    pub fn leave(&mut self, now: Millis) {
        if self.link == Link::Closed {
            return;
        }
        let mut ids: Vec<_> = self.transfers.keys().copied().collect();
        ids.sort();
        for id in ids {
            self.fail(now, id, TransferError::Closed, true);
        }
        self.close_requests();
        self.expire_queries(Millis(u64::MAX));
        let mut conns: Vec<_> = self.conns.keys().copied().collect();
        conns.sort();
        self.outputs.extend(conns.into_iter().map(|conn| Output::CloseConnection { conn }));
        self.sessions.clear();
        self.conns.clear();
        self.retries.clear();
        self.connecting.clear();
        self.offer_queue.clear();
        self.outputs.push_back(Output::CloseSignaling);
        if self.id.is_none() {
            self.emit(Event::JoinFailed(JoinError::Cancelled));
        }
        self.link = Link::Closed;
        self.emit(Event::Signaling { state: SignalingState::Closed, reason: None });
    }

    // -- helpers -----------------------------------------------------------------------

    pub(crate) fn session_mut(&mut self, conn: ConnId) -> Option<&mut Session> {
        let peer = self.conns.get(&conn)?;
        self.sessions.get_mut(peer).filter(|s| s.conn == conn)
    }

    fn close_session(&mut self, now: Millis, peer: &PeerId) {
        let Some(s) = self.sessions.remove(peer) else { return };
        self.conns.remove(&s.conn);
        self.outputs.push_back(Output::CloseConnection { conn: s.conn });
        if s.open {
            self.emit(Event::PeerLeft { id: peer.clone() });
            self.pause_transfers(now, peer);
            self.queries_peer_left(peer);
            self.requests_peer_left(peer);
        }
    }

    pub(crate) fn emit(&mut self, event: Event) {
        self.outputs.push_back(Output::Event(event));
    }

    pub(crate) fn push_output(&mut self, output: Output) {
        self.outputs.push_back(output);
    }

    pub(crate) fn warn(&mut self, message: String) {
        self.emit(Event::Warning(message));
    }

    /// Whether `peer` has an open data channel.
    pub(crate) fn is_open(&self, peer: &PeerId) -> bool {
        self.sessions.get(peer).is_some_and(|s| s.open)
    }

    pub(crate) fn peer_of(&self, conn: ConnId) -> Option<PeerId> {
        let peer = self.conns.get(&conn)?;
        self.sessions.get(peer).filter(|s| s.conn == conn && s.open).map(|_| peer.clone())
    }

    pub(crate) fn rng_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }

    pub(crate) fn new_transfer_id(&mut self) -> TransferId {
        loop {
            let id = TransferId(self.rng.next_u64());
            if !self.transfers.contains_key(&id) {
                return id;
            }
        }
    }

    // -- transfers: plumbing shared by both directions ------------------------------

    fn transfer_control(&mut self, now: Millis, peer: &PeerId, frame: &[u8]) {
        let control = match Control::decode(frame) {
            Ok(control) => control,
            Err(err) => return self.warn(format!("bad transfer frame from {peer}: {err}")),
        };
        match self.transfers.get(&control.id()) {
            Some(Transfer::Out(_)) => self.sender_control(now, peer, control),
            Some(Transfer::Down(_)) => self.download_control(now, peer, control),
            Some(Transfer::Serve(_)) => self.serve_control(now, peer, control),
            _ => self.receiver_control(now, peer, control),
        }
    }

    fn service_message(&mut self, now: Millis, peer: &PeerId, bytes: &[u8]) {
        let message = match Service::decode(bytes) {
            Ok(message) => message,
            Err(err) => return self.warn(format!("bad service message from {peer}: {err}")),
        };
        match message {
            Service::Query { id, substring, text } => self.query_received(peer, id, substring, &text),
            Service::Answer { id, hits } => self.answer_received(peer, id, hits),
            Service::Request { id, method, payload } => self.request_received(peer, id, method, payload),
            Service::Reply { id, payload } => self.reply_received(peer, id, Ok(payload)),
            Service::Failure { id, code, message } => self.reply_received(peer, id, Err((code, message))),
            Service::Fetch { transfer, share, manifest } => self.fetch_received(now, peer, transfer, ShareId(share), manifest),
            Service::Manifest { transfer, hashes } => self.manifest_received(now, peer, transfer, hashes),
            Service::Get { transfer, blocks } => self.get_received(now, peer, transfer, blocks),
            Service::Ping => {
                self.send_service(peer, &Service::Pong);
            }
            Service::Pong => {}
        }
    }

    /// Queues a service message for `peer`; false if it is not connected or its queue
    /// is full.
    pub(crate) fn send_service(&mut self, peer: &PeerId, message: &Service) -> bool {
        let Some(s) = self.sessions.get_mut(peer).filter(|s| s.open) else { return false };
        if !s.enqueue(encode_service(&message.encode(), s.max_frame())) {
            return false;
        }
        let conn = s.conn;
        self.flush(conn);
        true
    }

    /// Drops a transfer's items from `peer`'s bulk lane; returns a block half on the
    /// wire, whose remaining slices must still go.
    pub(crate) fn purge_bulk(&mut self, peer: &PeerId, id: TransferId) -> Option<u32> {
        self.sessions.get_mut(peer).and_then(|s| s.bulk.purge_transfer(id))
    }

    /// Sends a control frame if the peer's channel is open (if not, the transfer is
    /// paused or ending anyway).
    pub(crate) fn send_control(&mut self, peer: &PeerId, control: &Control) {
        let Some(s) = self.sessions.get_mut(peer).filter(|s| s.open) else { return };
        // Control frames are small and few (one ack per MiB): never refused.
        s.enqueue_unbounded(control.encode());
        let conn = s.conn;
        self.flush(conn);
    }

    /// The largest bulk frame for this peer.
    pub(crate) fn bulk_chunk(&self, peer: &PeerId) -> u32 {
        self.sessions.get(peer).map_or(16 * 1024, |s| s.max_frame() as u32)
    }

    pub(crate) fn bulk_queued(&self, peer: &PeerId) -> u64 {
        self.sessions.get(peer).map_or(0, |s| s.bulk.queued())
    }

    pub(crate) fn bulk_enqueue(&mut self, peer: &PeerId, items: Vec<BulkItem>) {
        let Some(s) = self.sessions.get_mut(peer).filter(|s| s.open) else { return };
        s.bulk.push(items);
        self.bulk_flush(peer);
    }

    fn bulk_flush(&mut self, peer: &PeerId) {
        let Some(s) = self.sessions.get_mut(peer) else { return };
        let conn = s.conn;
        self.outputs.extend(s.bulk.release().map(|item| Output::TransmitBulk { conn, item }));
    }

    pub(crate) fn recv_lane(&mut self, conn: ConnId) -> Option<&mut RecvLane> {
        self.session_mut(conn).map(|s| &mut s.bulk_recv)
    }

    fn pause_transfers(&mut self, now: Millis, peer: &PeerId) {
        let until = now + self.config.resume_timeout_ms;
        let mut ids: Vec<_> = self.transfers.iter().filter(|(_, t)| t.involves(peer)).map(|(id, _)| *id).collect();
        ids.sort();
        for id in ids {
            match self.transfers.get(&id) {
                Some(Transfer::Out(_)) => self.pause_send(id, until),
                Some(Transfer::In(_)) => self.pause_receive(id, until),
                Some(Transfer::Down(_)) => self.source_left(now, id, peer),
                // The downloader asks again when it is back.
                Some(Transfer::Serve(_)) => self.end_serve(now, id),
                None => {}
            }
        }
    }

    /// Ends a transfer without the file: tells the peer (if `tell_peer` and it is
    /// there), releases what the driver holds for it, and reports `error`.
    pub(crate) fn fail(&mut self, _now: Millis, id: TransferId, error: TransferError, tell_peer: bool) {
        let Some(transfer) = self.transfers.remove(&id) else { return };
        let peers = match &transfer {
            Transfer::Out(t) => vec![t.peer.clone()],
            Transfer::In(t) => vec![t.peer.clone()],
            Transfer::Serve(s) => vec![s.peer.clone()],
            Transfer::Down(d) => d.live_peers(),
        };
        if tell_peer {
            let (code, reason) = error.wire();
            for peer in &peers {
                self.send_control(peer, &Control::Cancel { id, code, reason: reason.clone() });
            }
        }
        let delete = matches!(error, TransferError::Cancelled { .. });
        // Serving has no user-facing transfer to fail.
        let serving = matches!(transfer, Transfer::Serve(_));
        match transfer {
            Transfer::Out(_) | Transfer::Serve(_) => {
                let except = self.purge_bulk(&peers[0], id);
                self.push_output(Output::ReleaseBlocks { id, except });
            }
            Transfer::In(t) if t.has_store() => self.push_output(Output::CloseStore { id, delete }),
            Transfer::Down(d) => {
                self.emit(Event::TransferSources { id, sources: d.served() });
                if d.has_store() {
                    self.push_output(Output::CloseStore { id, delete });
                }
            }
            Transfer::In(_) => {}
        }
        if !serving {
            self.emit(Event::TransferFailed { id, error });
        }
    }

    /// Emits progress if due (or `force`d).
    pub(crate) fn report_progress(&mut self, now: Millis, id: TransferId, force: bool) {
        let Some(transfer) = self.transfers.get_mut(&id) else { return };
        let (meter, total) = match transfer {
            Transfer::Out(t) => (&mut t.meter, t.meta.size),
            Transfer::In(t) => (&mut t.meter, t.meta.size),
            Transfer::Down(d) => (&mut d.meter, d.meta.size),
            Transfer::Serve(_) => return,
        };
        let Some(progress) = meter.report(now, total, force) else { return };
        if let Transfer::Down(d) = transfer {
            let sources = d.served();
            self.emit(Event::TransferSources { id, sources });
        }
        self.emit(Event::TransferProgress { id, progress });
    }

    /// Cancels a transfer (either direction) or declines an open offer; the peer is told.
    pub fn cancel_transfer(&mut self, now: Millis, id: TransferId, reason: &str) {
        self.fail(now, id, TransferError::Cancelled { by_peer: false, reason: reason.to_owned() }, true);
    }
}
