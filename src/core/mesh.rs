//! One peer's view of its room. [`Mesh`] routes: what the signaling server says goes
//! through the [`SignalingLink`](super::link) to the [`Peers`](super::peers), which
//! negotiate and run the channels; what the channels carry goes to requests,
//! discovery or transfers; every command a user gives goes to its component the same
//! way. Each component owns its state and sees the rest of the mesh only through
//! [`Net`]. Sans-IO: [`Mesh::handle`] feeds inputs, [`Mesh::poll_output`] yields what
//! the driver must do, [`Mesh::poll_timeout`] when to feed [`Input::Timeout`].

use std::collections::VecDeque;

use super::config::{MeshConfig, PeerSettings};
use super::discovery::{Discovery, Hit, ManifestError, Match, QueryId, ShareId, SharedFile};
use super::error::SendError;
use super::identity::{safety_code, PublicKey};
use super::input::Input;
use super::link::{JoinAs, RoomNews, SignalingLink};
use super::net::Net;
use super::output::{warn, Event, Output, SignalingState};
use super::path::{IceState, Path};
use super::peers::{PeerChange, Peers};
use super::request::{RequestId, Requests};
use super::rng::Rng;
use super::service::Service;
use super::transfer::{FileMeta, Hash, TransferError, TransferId, Transfers};
use super::wire::{encode, Message, Payload};
use super::{Millis, PeerId};

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
    link: SignalingLink,
    peers: Peers,
    outputs: VecDeque<Output>,
    parts: Components,
}

impl Mesh {
    /// Starts a mesh at `now`: the first output asks the driver to open signaling.
    /// `seed` should come from a secure random source (ids and jitter derive from it).
    pub fn new(config: MeshConfig, seed: u64, now: Millis) -> Self {
        let mut rng = Rng::new(seed);
        let settings = PeerSettings::from(&config);
        let mut peers =
            Peers::new(settings, rng.next_u64(), config.identity.clone(), config.room.clone(), config.room_secret.clone(), config.entropy);
        for (peer, key) in &config.pinned {
            peers.pin(peer.clone(), *key);
        }
        let mut outputs = VecDeque::new();
        let join =
            JoinAs { room: config.room.clone(), name: config.name.clone(), identity: config.identity.clone(), servers: config.signaling_servers };
        let link = SignalingLink::new(join, rng.next_u64(), now, &mut outputs);
        Mesh { config, rng, link, peers, outputs, parts: Components::default() }
    }

    /// A component's view of the rest of the mesh, and the components.
    fn split(&mut self, now: Millis) -> (Net<'_>, &mut Components) {
        (Net::new(now, &self.config, &mut self.peers, &mut self.outputs, &mut self.rng), &mut self.parts)
    }

    /// Our id, once welcomed.
    pub fn id(&self) -> Option<&PeerId> {
        self.link.id()
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
        self.link.state()
    }

    /// Whether `leave` was called or the first join failed.
    pub fn is_closed(&self) -> bool {
        self.link.is_closed()
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Input::Timeout`] is wanted next.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let link = self.link.deadline();
        let parts = [self.parts.requests.next_deadline(), self.parts.discovery.next_deadline(), self.parts.transfers.next_deadline()];
        link.into_iter().chain(self.peers.deadlines()).chain(parts.into_iter().flatten()).min()
    }

    /// Feeds one input; what it causes comes from [`Mesh::poll_output`].
    ///
    /// Each kind of input goes to a method kept out of line (`#[inline(never)]`): with
    /// them inlined this was one 54 KB wasm function, which V8 recompiled with its
    /// optimising compiler in every tab that joined (140–380 ms of CPU each time,
    /// measured with `--trace-wasm-compilation-times`); now only what runs hot is.
    pub fn handle(&mut self, now: Millis, input: Input<'_>) {
        match input {
            Input::SignalingOpened => self.link.opened(now, false, &mut self.outputs),
            Input::SignalingOpenedAsked => self.link.opened(now, true, &mut self.outputs),
            Input::SignalingClosed { close } => {
                let news = self.link.closed(now, close.as_ref().map(|(code, reason)| (*code, reason.as_ref())), &mut self.outputs);
                self.room_news(now, news);
            }
            Input::SignalingFrame(text) => {
                let news = self.link.frame(now, &text, &mut self.outputs);
                self.room_news(now, news);
            }
            Input::LocalDescription { conn, kind, sdp } => self.peers.local_description(conn, kind, sdp, &mut self.outputs),
            Input::LocalCandidate { conn, candidate } => self.peers.local_candidate(conn, candidate, &mut self.outputs),
            Input::ConnectionClosed { conn, reason } => self.peers.connection_closed(now, conn, &reason, &mut self.outputs),
            Input::IceState { conn, state } => {
                // A path that went away may mean our network changed, and with it the
                // signaling connection an ICE restart needs: make sure it is alive.
                if matches!(state, IceState::Disconnected | IceState::Failed) {
                    self.link.probe(now, &mut self.outputs);
                }
                self.peers.ice_state(now, conn, state, &mut self.outputs)
            }
            Input::ConnectionFailed { conn, failure } => self.peers.connection_failed(now, conn, &failure, &mut self.outputs),
            Input::CandidatesGathered { conn, gathered } => self.peers.gathered(conn, gathered),
            Input::PathObserved { conn, path } => self.peers.path_observed(conn, path, &mut self.outputs),
            Input::ChannelOpened { conn, max_message_size } => self.peers.channel_opened(now, conn, max_message_size, &mut self.outputs),
            Input::ChannelFrame { conn, frame } => self.channel_frame(now, conn, &frame),
            Input::ChannelDrained { conn, buffered } => {
                if let Some(s) = self.peers.conn_session(conn) {
                    s.drained(now, buffered, &mut self.outputs);
                }
            }
            Input::BulkFrame { conn, bytes, frame } => {
                if let Some(peer) = self.peers.peer_of(conn) {
                    self.peers.heard_from(&peer);
                    let (mut net, parts) = self.split(now);
                    parts.transfers.on_bulk(&mut net, &peer, &bytes, frame);
                }
            }
            Input::BulkDrained { conn, buffered } => {
                if let Some(s) = self.peers.conn_session(conn) {
                    s.bulk_drained(now, buffered, &mut self.outputs);
                }
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
    #[inline(never)] // see `Mesh::handle`
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

    #[inline(never)] // see `Mesh::handle`
    fn handle_timeout(&mut self, now: Millis) {
        let news = self.link.timeout(now, &mut self.outputs);
        self.room_news(now, news);
        self.peers.handle_timeout(now, &mut self.outputs);
        let (mut net, parts) = self.split(now);
        parts.transfers.handle_timeout(&mut net);
        parts.discovery.handle_timeout(&mut net);
        parts.requests.handle_timeout(&mut net);
    }

    /// Hands what the server said about the room to the peers.
    #[inline(never)] // see `Mesh::handle`
    fn room_news(&mut self, now: Millis, news: Option<RoomNews>) {
        let Some(news) = news else { return };
        match news {
            RoomNews::Welcomed { me, roster } => self.peers.welcomed(now, me, roster, &mut self.outputs),
            RoomNews::Joined { peer, name } => self.peers.joined(now, peer, name, &mut self.outputs),
            RoomNews::Left(peer) => {
                if self.peers.left(now, &peer, &mut self.outputs) {
                    // Still connected: any frame back keeps it (see `Peers::left`).
                    let (mut net, _) = self.split(now);
                    net.send_service(&peer, &Service::Ping);
                }
            }
            RoomNews::Signal { from, data } => self.peers.signal(now, from, &data, &mut self.outputs),
            RoomNews::Lost => self.peers.signaling_lost(),
        }
    }

    fn emit(&mut self, event: Event) {
        self.outputs.push_back(Output::Event(event));
    }

    // -- what the channels carry -------------------------------------------------------

    #[inline(never)] // see `Mesh::handle`
    fn channel_frame(&mut self, now: Millis, conn: super::ConnId, frame: &[u8]) {
        if self.peers.binding_pending(conn) {
            // Opens the session, or closes an impostor's (see `Peers::binding_received`).
            // The binding comes alone: no peer batches before it has our `features`,
            // which follow it, so a batch here is checked (and refused) as a first frame.
            return self.peers.binding_received(now, conn, frame, &mut self.outputs);
        }
        match super::wire::unbatch(frame) {
            // Checked whole: every frame of it is there.
            Ok(frames) => frames.flatten().for_each(|frame| self.one_frame(now, conn, frame)),
            Err(err) => {
                let from = self.peers.peer_of(conn).map_or_else(|| "a connecting peer".to_owned(), |peer| peer.to_string());
                warn(&mut self.outputs, format!("bad frame from {from}: {err}"));
            }
        }
    }

    /// One frame of an open session, alone or out of a batch: the same either way.
    fn one_frame(&mut self, now: Millis, conn: super::ConnId, frame: &[u8]) {
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

    #[inline(never)] // see `Mesh::handle`
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
            Service::Features { batches, inline_offers } => {
                if let Some(session) = self.peers.open_session(peer) {
                    session.takes_batches = batches;
                    session.takes_inline_offers = inline_offers;
                }
            }
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
        let s = self.peers.open_session(peer).ok_or_else(|| SendError::NotConnected(peer.clone()))?;
        let frames = encode(payload, s.max_frame());
        if !s.transmit(frames, false, &mut self.outputs) {
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
            let Some(s) = self.peers.open_session(&peer) else { continue };
            let max_frame = s.max_frame();
            let frames = match encoded.iter().find(|(size, _)| *size == max_frame) {
                Some((_, frames)) => frames.clone(),
                None => {
                    let frames = encode(payload, max_frame);
                    encoded.push((max_frame, frames.clone()));
                    frames
                }
            };
            if s.transmit(frames, false, &mut self.outputs) {
                sent += 1;
            } else {
                warn(&mut self.outputs, format!("broadcast skipped {peer}: send queue full"));
            }
        }
        Ok(sent)
    }

    /// Closes every connection and the signaling link. Final.
    pub fn leave(&mut self, now: Millis) {
        if self.link.is_closed() {
            return;
        }
        let (mut net, parts) = self.split(now);
        parts.transfers.close(&mut net);
        parts.requests.close(&mut net);
        parts.discovery.close(&mut net);
        self.peers.close_all(&mut self.outputs);
        self.link.leave(&mut self.outputs);
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
