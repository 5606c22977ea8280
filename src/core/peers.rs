//! Every other peer of the room: who the server says is there, and a [`Session`] per
//! peer we connect to — who offers, the negotiation, timeouts, and the two channels
//! once open. It delegates when to try whom to [`Schedule`](super::schedule), each
//! connection's proof of who is at the other end to [`Binder`](super::binding), and
//! path recovery to [`Health`](super::health). Signals for the server and events for
//! the user go out through the mesh's queue; which peers opened or closed is handed
//! back as [`PeerChange`]s for the mesh to tell the other components.
//!
//! Who offers: of two peers, the one with the smaller id. Each side learns of the other
//! from the server exactly once (one from `welcome`, the other from `peer-joined`), so
//! the offerer offers and the answerer says `hello` (in case the offerer thinks it
//! already has a connection, e.g. after the answerer reloaded). Collisions that remain
//! possible are settled the perfect-negotiation way: the answerer is polite.

use std::collections::{HashMap, VecDeque};

use super::binding::{Binder, Ends};
use super::config::PeerSettings;
use super::health::{Change, Health, Step, RESTART_ANSWER_OVERDUE_MS};
use super::identity::{Identity, PublicKey};
use super::order::sorted;
use super::output::{warn, ConnectionOp, Event, Output, SdpKind, SignalingOp};
use super::path::{Failure, Gathered, IceState, Path};
use super::rng::Rng;
use super::schedule::Schedule;
use super::service::Service;
use super::session::{Session, Sessions};
use super::signal::PeerSignal;
use super::wire::{encode_service, Message};
use super::{ConnId, Millis, PeerId};

/// How long a peer the server says left has to show it is still there (any frame).
pub const LEFT_PROBE_MS: u64 = 3_000;

/// A peer's channels opened or closed, or its path went away and came back (the other
/// components care).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PeerChange {
    Opened(PeerId),
    Closed(PeerId),
    Reconnecting(PeerId),
    Reconnected(PeerId),
}

#[derive(Debug)]
pub(crate) struct Peers {
    settings: PeerSettings,
    rng: Rng,
    /// Our id, once welcomed.
    me: Option<PeerId>,
    /// Signals can go out now (joined).
    signaling: bool,
    /// The mesh left: nothing new starts.
    closed: bool,
    /// Who the server says is in the room, with their names.
    roster: HashMap<PeerId, Option<String>>,
    sessions: Sessions,
    /// When to connect to whom.
    schedule: Schedule,
    changes: Vec<PeerChange>,
    /// Binds each connection to the peer's key and the room's secret.
    binder: Binder,
}

impl Peers {
    pub(crate) fn new(settings: PeerSettings, seed: u64, identity: Identity, room: String, room_secret: Option<String>, entropy: [u8; 32]) -> Self {
        let mut rng = Rng::new(seed);
        let schedule = Schedule::new(rng.next_u64());
        Peers {
            settings,
            rng,
            me: None,
            signaling: false,
            closed: false,
            roster: HashMap::new(),
            sessions: Sessions::default(),
            schedule,
            changes: Vec::new(),
            binder: Binder::new(identity, room, room_secret, entropy),
        }
    }

    /// The key of a connected peer (its binding verified it).
    pub(crate) fn key_of(&self, peer: &PeerId) -> Option<PublicKey> {
        self.sessions.open(peer).and_then(|s| s.proof.peer_key)
    }

    /// Requires `peer` to hold `key` from now on.
    pub(crate) fn pin(&mut self, peer: PeerId, key: PublicKey) {
        self.binder.pin(peer, key);
    }

    pub(crate) fn is_pinned(&self, peer: &PeerId) -> bool {
        self.binder.is_pinned(peer)
    }

    /// A connection whose channel is up but whose binding has not arrived yet.
    pub(crate) fn binding_pending(&self, conn: ConnId) -> bool {
        self.sessions.by_conn(conn).is_some_and(|(_, s)| s.channel_up && !s.open)
    }

    /// Which peers opened or closed since the last call.
    pub(crate) fn take_changes(&mut self) -> Vec<PeerChange> {
        std::mem::take(&mut self.changes)
    }

    /// Peers with open channels, with their names, sorted by id.
    pub(crate) fn open(&self) -> Vec<(PeerId, Option<String>)> {
        let peers: Vec<_> =
            self.sessions.iter().filter(|(_, s)| s.open).map(|(id, _)| (id.clone(), self.roster.get(id).cloned().flatten())).collect();
        sorted(peers)
    }

    pub(crate) fn is_open(&self, peer: &PeerId) -> bool {
        self.sessions.open(peer).is_some()
    }

    /// The open peer a connection belongs to.
    pub(crate) fn peer_of(&self, conn: ConnId) -> Option<PeerId> {
        self.sessions.by_conn(conn).filter(|(_, s)| s.open).map(|(peer, _)| peer)
    }

    /// An open peer's session, for the channels.
    pub(crate) fn open_session(&mut self, peer: &PeerId) -> Option<&mut Session> {
        self.sessions.open_mut(peer)
    }

    pub(crate) fn session(&self, peer: &PeerId) -> Option<&Session> {
        self.sessions.get(peer)
    }

    pub(crate) fn deadlines(&self) -> impl Iterator<Item = Millis> + '_ {
        let health = self.sessions.iter().map(|(_, s)| s).filter_map(|s| s.health.deadline(self.settings.reconnect_timeout_ms));
        self.sessions.iter().map(|(_, s)| s).filter_map(|s| s.deadline).chain(self.schedule.deadlines()).chain(health)
    }

    // -- the room, as the server tells it ----------------------------------------------

    /// Welcomed: our id, and who is there.
    pub(crate) fn welcomed(&mut self, now: Millis, me: PeerId, roster: Vec<(PeerId, Option<String>)>, out: &mut VecDeque<Output>) {
        self.me = Some(me);
        self.signaling = true;
        self.roster = roster.into_iter().collect();
        for peer in sorted(self.roster.keys().cloned().collect()) {
            self.meet(now, peer, out);
        }
        // Paths that went down while we could not signal are restarted now, not at the
        // next retry: we may have been away because our own network changed.
        for peer in self.sessions.peers_where(|s| matches!(s.health, Health::Down { announced: true, .. })) {
            if let Some(s) = self.sessions.get_mut(&peer) {
                s.health.restart_now(now);
            }
            self.check_health(now, &peer, out);
        }
        // A restart offer (or its answer) sent while the old connection was already dead
        // is lost, though our end of the path may be back: offer again.
        for peer in self.sessions.peers_where(|s| s.open && s.awaiting_answer && s.health == Health::Up) {
            if let Some(s) = self.sessions.get_mut(&peer) {
                s.restart_ice(now, out);
            }
        }
    }

    /// The signaling connection is gone (for now, or for good).
    pub(crate) fn signaling_lost(&mut self) {
        self.signaling = false;
    }

    /// The server says `peer` joined. Right after it said the peer left, that is the
    /// peer's signaling connection coming back (its network changed, say): a session we
    /// still have is kept, not probed. A peer that reloaded offers or says hello on a
    /// new connection, which replaces the old session then.
    pub(crate) fn joined(&mut self, now: Millis, peer: PeerId, name: Option<String>, out: &mut VecDeque<Output>) {
        self.roster.insert(peer.clone(), name);
        if let Some(s) = self.sessions.open_mut(&peer) {
            s.deadline = None;
        }
        self.meet(now, peer, out);
    }

    /// The server says `peer` left. An open channel is the truth about a peer;
    /// signaling only introduces. But a closed tab's channel can take 15 s to close: ask
    /// it (`probe`), and close it if nothing at all comes back within [`LEFT_PROBE_MS`].
    /// A connection whose path is already down cannot answer: its ICE restart and
    /// `reconnect_timeout_ms` decide (a peer whose network changed loses its signaling
    /// connection too, and comes back with the same id). Returns whether to probe it.
    pub(crate) fn left(&mut self, now: Millis, peer: &PeerId, out: &mut VecDeque<Output>) -> bool {
        self.roster.remove(peer);
        self.schedule.forget(peer);
        if let Some(s) = self.sessions.open_mut(peer) {
            if matches!(s.health, Health::Down { .. }) {
                return false;
            }
            s.deadline = Some(now + LEFT_PROBE_MS);
            return true;
        }
        self.close_session(peer, out);
        if self.schedule.drop_peer(peer) {
            out.push_back(Output::Event(Event::PeerLeft { id: peer.clone() }));
        }
        self.start_queued_offers(now, out);
        false
    }

    /// A relayed signal from `from` (the server relays only within our room).
    pub(crate) fn signal(&mut self, now: Millis, from: PeerId, data: &str, out: &mut VecDeque<Output>) {
        if self.closed || Some(&from) == self.me.as_ref() {
            return;
        }
        let signal = match PeerSignal::parse(data) {
            Ok(signal) => signal,
            Err(err) => return warn(out, format!("bad signal from {from}: {err}")),
        };
        self.roster.entry(from.clone()).or_insert(None);
        match signal {
            PeerSignal::Hello => {
                if !self.we_offer(&from) {
                    return warn(out, format!("peer {from} asked us to offer, but it is the offerer"));
                }
                match self.sessions.get(&from) {
                    // Our offer is on its way; it answers that.
                    Some(s) if s.awaiting_answer => {}
                    // It has lost the connection we still hold (it reloaded): start over.
                    Some(_) => {
                        self.close_session(&from, out);
                        self.initiate(now, from, out);
                    }
                    None => self.initiate(now, from, out),
                }
            }
            PeerSignal::Restart { conn } => {
                if !self.we_offer(&from) {
                    return warn(out, format!("peer {from} asked us to restart ICE, but it is the offerer"));
                }
                self.restart_requested(now, &from, conn, out);
            }
            PeerSignal::Offer { conn, sdp, generation, pake } => {
                let polite = !self.we_offer(&from);
                if let Some(s) = self.sessions.get_mut(&from) {
                    if s.conn == conn && generation > s.generation && s.open {
                        // An ICE restart of the connection we have: same session, same
                        // channels; only the network path is negotiated again.
                        s.generation = generation;
                        out.push_back(Output::Connection(ConnectionOp::SetRemoteDescription { conn, kind: SdpKind::Offer, sdp }));
                        out.push_back(Output::Connection(ConnectionOp::CreateAnswer { conn }));
                        return;
                    }
                    if s.conn == conn {
                        return; // duplicate
                    }
                    if s.offerer && s.awaiting_answer && !polite {
                        return; // glare: the impolite side keeps its own offer
                    }
                    self.close_session(&from, out);
                }
                self.start_session(now, from.clone(), conn, false, out);
                if let (Some(me), Some(s)) = (&self.me, self.sessions.get_mut(&from)) {
                    self.binder.offer_received(&mut s.proof, Ends { me, peer: &from, conn }, &sdp, pake);
                }
                out.push_back(Output::Connection(ConnectionOp::SetRemoteDescription { conn, kind: SdpKind::Offer, sdp }));
                self.remote_description_issued(conn, out);
                // Issued without waiting: the browser's operations chain applies the
                // offer first, and skipping a round trip through us saves a task hop.
                out.push_back(Output::Connection(ConnectionOp::CreateAnswer { conn }));
            }
            PeerSignal::Answer { conn, sdp, generation, pake } => match self.sessions.get_mut(&from) {
                Some(s) if s.conn == conn && s.awaiting_answer && generation == s.generation => {
                    s.awaiting_answer = false;
                    self.binder.answer_received(&mut s.proof, &sdp, pake);
                    out.push_back(Output::Connection(ConnectionOp::SetRemoteDescription { conn, kind: SdpKind::Answer, sdp }));
                    self.remote_description_issued(conn, out);
                }
                _ => warn(out, format!("unexpected answer from {from}")),
            },
            PeerSignal::Candidate { conn, candidate } => {
                if let Some(s) = self.sessions.get_mut(&from).filter(|s| s.conn == conn) {
                    if let Some(candidate) = s.remote_candidate(candidate) {
                        out.push_back(Output::Connection(ConnectionOp::AddIceCandidate { conn, candidate }));
                    }
                }
            }
        }
    }

    // -- negotiation -------------------------------------------------------------------

    fn we_offer(&self, peer: &PeerId) -> bool {
        self.me.as_ref().is_some_and(|ours| ours < peer)
    }

    /// The server told us about `peer`: connect unless we already are.
    fn meet(&mut self, now: Millis, peer: PeerId, out: &mut VecDeque<Output>) {
        if Some(&peer) == self.me.as_ref() || self.sessions.contains(&peer) {
            return;
        }
        self.initiate(now, peer, out);
    }

    fn initiate(&mut self, now: Millis, peer: PeerId, out: &mut VecDeque<Output>) {
        if self.schedule.announce(&peer) {
            let name = self.roster.get(&peer).cloned().flatten();
            out.push_back(Output::Event(Event::PeerConnecting { id: peer.clone(), name }));
        }
        if self.we_offer(&peer) {
            if self.schedule.must_wait(&peer, self.offers_in_flight()) {
                return;
            }
            let conn = ConnId::from_raw(self.rng.next_u64());
            self.start_session(now, peer, conn, true, out);
        } else {
            self.send_signal(&peer, PeerSignal::Hello, out);
            // If the offer never comes, ask again.
            if self.roster.contains_key(&peer) && !self.closed {
                self.schedule.retry_in(now, &peer, self.settings.connect_timeout_ms);
            }
        }
    }

    fn offers_in_flight(&self) -> usize {
        self.sessions.iter().map(|(_, s)| s).filter(|s| s.offerer && !s.open).count()
    }

    /// Starts queued offers while there is room, skipping peers that left or that
    /// connected meanwhile (their own offer after a glare, say).
    fn start_queued_offers(&mut self, now: Millis, out: &mut VecDeque<Output>) {
        while let Some(peer) = self.schedule.next_queued(self.offers_in_flight()) {
            if !self.closed && self.roster.contains_key(&peer) && !self.sessions.contains(&peer) {
                let conn = ConnId::from_raw(self.rng.next_u64());
                self.start_session(now, peer, conn, true, out);
            }
        }
    }

    fn start_session(&mut self, now: Millis, peer: PeerId, conn: ConnId, offerer: bool, out: &mut VecDeque<Output>) {
        let deadline = now + self.settings.connect_timeout_ms;
        self.sessions.insert(peer.clone(), Session::new(conn, offerer, deadline, self.settings.max_message_bytes));
        self.schedule.started(&peer);
        out.push_back(Output::Connection(ConnectionOp::Create { peer, conn }));
        if offerer {
            out.push_back(Output::Connection(ConnectionOp::CreateOffer { conn }));
        }
    }

    fn send_signal(&mut self, to: &PeerId, signal: PeerSignal, out: &mut VecDeque<Output>) {
        if !self.signaling {
            // Nobody to carry it; the attempt times out and is retried after reconnect.
            return;
        }
        if let Some(text) = signal.frame_to(to) {
            out.push_back(Output::Signaling(SignalingOp::Send(text)));
        }
    }

    /// Candidates that arrived before the remote description may follow it now: the
    /// driver performs outputs in order and RTCPeerConnection's operations chain applies
    /// them after the description, without a round trip through us first.
    fn remote_description_issued(&mut self, conn: ConnId, out: &mut VecDeque<Output>) {
        let Some(s) = self.sessions.by_conn_mut(conn).map(|(_, s)| s) else { return };
        let early = s.remote_description_issued();
        out.extend(early.into_iter().map(|candidate| Output::Connection(ConnectionOp::AddIceCandidate { conn, candidate })));
    }

    #[inline(never)] // see `Mesh::handle`
    pub(crate) fn local_description(&mut self, conn: ConnId, kind: SdpKind, sdp: String, out: &mut VecDeque<Output>) {
        let Some((peer, s)) = self.sessions.by_conn_mut(conn) else { return };
        let generation = s.generation;
        let channel_up = s.channel_up;
        let pake =
            self.me.as_ref().and_then(|me| self.binder.local_description(&mut s.proof, Ends { me, peer: &peer, conn }, kind, &sdp, channel_up));
        let signal = match kind {
            SdpKind::Offer => PeerSignal::Offer { conn, sdp, generation, pake },
            SdpKind::Answer => PeerSignal::Answer { conn, sdp, generation, pake },
        };
        self.send_signal(&peer, signal, out);
    }

    #[inline(never)] // see `Mesh::handle`
    pub(crate) fn local_candidate(&mut self, conn: ConnId, candidate: String, out: &mut VecDeque<Output>) {
        let Some((peer, _)) = self.sessions.by_conn(conn) else { return };
        self.send_signal(&peer, PeerSignal::Candidate { conn, candidate }, out);
    }

    // -- channels ----------------------------------------------------------------------

    /// The message channel opened: our binding goes first, before anything else on it.
    /// The session opens when the peer's binding verifies ([`Peers::binding_received`]);
    /// until then the connect deadline still runs.
    #[inline(never)] // see `Mesh::handle`
    pub(crate) fn channel_opened(&mut self, _now: Millis, conn: ConnId, max_message_size: u64, out: &mut VecDeque<Output>) {
        let Some(me) = self.me.clone() else { return };
        let Some((peer, s)) = self.sessions.by_conn_mut(conn).filter(|(_, s)| !s.open && !s.channel_up) else { return };
        s.channel_up(max_message_size);
        let binding = self.binder.binding(&s.proof, Ends { me: &me, peer: &peer, conn });
        let frames = encode_service(&binding.encode(), s.max_frame());
        s.transmit(frames, true, out);
    }

    /// The first frame on a connection whose channel is up: it must be the peer's
    /// binding, for the connection we have, by the key of the id we connected to (and
    /// the pinned one, if pinned). Otherwise the connection is closed as an impostor's
    /// and nothing from it reaches the application.
    #[inline(never)] // see `Mesh::handle`
    pub(crate) fn binding_received(&mut self, now: Millis, conn: ConnId, frame: &[u8], out: &mut VecDeque<Output>) {
        let Some(me) = self.me.clone() else { return };
        let Some((peer, s)) = self.sessions.by_conn_mut(conn).filter(|(_, s)| s.channel_up && !s.open) else { return };
        let first = match s.reassembler.push(frame) {
            Ok(None) => return, // a binding is one frame, but a frame may come in parts
            Ok(Some(Message::Service(bytes))) => Service::decode(&bytes).ok(),
            _ => None,
        };
        let verdict = self.binder.check(&s.proof, Ends { me: &me, peer: &peer, conn }, first);
        match verdict {
            Ok(key) => {
                s.proof.peer_key = Some(key);
                self.session_verified(now, conn, &peer, out);
            }
            Err((reason, why)) => {
                let message = format!("closed the connection: {why}");
                warn(out, format!("{peer}: {message}"));
                out.push_back(Output::Event(Event::PeerFailed { id: peer.clone(), reason, message }));
                self.connection_closed(now, conn, reason.as_str(), out);
            }
        }
    }

    fn session_verified(&mut self, now: Millis, conn: ConnId, peer: &PeerId, out: &mut VecDeque<Output>) {
        let peer = peer.clone();
        let Some(s) = self.sessions.get_mut(&peer) else { return };
        s.verified();
        // Once the peer proved itself: what we take beyond the first protocol.
        let features = encode_service(&Service::Features { batches: true, inline_offers: true }.encode(), s.max_frame());
        s.transmit(features, true, out);
        self.schedule.connected(&peer);
        let name = self.roster.get(&peer).cloned().flatten();
        out.push_back(Output::Event(Event::PeerJoined { id: peer.clone(), name }));
        out.push_back(Output::Connection(ConnectionOp::ObservePath { conn }));
        self.changes.push(PeerChange::Opened(peer));
        self.start_queued_offers(now, out);
    }

    /// The connection's ICE state changed. An open connection that loses its path is
    /// kept: after a short grace (or at once if ICE failed) the offerer restarts ICE
    /// over signaling, and the session only ends if no path is back within
    /// `reconnect_timeout_ms`.
    #[inline(never)] // see `Mesh::handle`
    pub(crate) fn ice_state(&mut self, now: Millis, conn: ConnId, state: IceState, out: &mut VecDeque<Output>) {
        let Some((peer, s)) = self.sessions.by_conn_mut(conn).filter(|(_, s)| s.open) else { return };
        match s.health.ice_state(now, state) {
            Change::Back { announced } => {
                out.push_back(Output::Connection(ConnectionOp::ObservePath { conn }));
                if announced {
                    out.push_back(Output::Event(Event::PeerReconnected { id: peer.clone() }));
                    self.changes.push(PeerChange::Reconnected(peer));
                }
            }
            Change::CheckNow => self.check_health(now, &peer, out),
            Change::Nothing => {}
        }
    }

    /// Acts on a connection whose path is down: tell the user, restart ICE (the
    /// offerer, while signaling is up), and give up in the end.
    fn check_health(&mut self, now: Millis, peer: &PeerId, out: &mut VecDeque<Output>) {
        let give_up_after = self.settings.reconnect_timeout_ms;
        let we_offer = self.we_offer(peer);
        let Some(s) = self.sessions.get_mut(peer) else { return };
        let conn = s.conn;
        match s.health.check(now, give_up_after, self.signaling, we_offer) {
            Step::Wait => {}
            Step::GiveUp => {
                warn(out, format!("no network path to {peer} came back within {give_up_after} ms"));
                self.connection_closed(now, conn, "no path after an ICE restart", out);
            }
            Step::Restart { announce, restart_ice, ask_offerer } => {
                if announce {
                    out.push_back(Output::Event(Event::PeerReconnecting { id: peer.clone() }));
                    self.changes.push(PeerChange::Reconnecting(peer.clone()));
                }
                if restart_ice {
                    s.restart_ice(now, out);
                }
                if ask_offerer {
                    // The offerer may not have noticed yet (or was away).
                    self.send_signal(peer, PeerSignal::Restart { conn }, out);
                }
            }
        }
    }

    /// The answerer says its path on `conn` is down: restart now, unless a restart is
    /// on its way already and its answer not overdue. A path we think is still up is
    /// restarted all the same (the restart keeps it while it works); one we know is down
    /// restarts on its schedule.
    fn restart_requested(&mut self, now: Millis, peer: &PeerId, conn: ConnId, out: &mut VecDeque<Output>) {
        let Some(s) = self.sessions.get_mut(peer).filter(|s| s.conn == conn && s.open) else { return };
        if s.awaiting_answer {
            // Our offer or its answer was lost on the way if the answer is this late.
            if now >= s.restart_offered_at + RESTART_ANSWER_OVERDUE_MS {
                s.restart_ice(now, out);
            }
            return;
        }
        match &mut s.health {
            Health::Down { .. } => {
                s.health.restart_now(now);
                self.check_health(now, peer, out);
            }
            Health::Up => s.restart_ice(now, out),
        }
    }

    /// Gathering our candidates for `conn` completed.
    pub(crate) fn gathered(&mut self, conn: ConnId, gathered: Gathered) {
        if let Some(s) = self.sessions.by_conn_mut(conn).map(|(_, s)| s) {
            s.gathered = Some(gathered);
        }
    }

    /// The connection failed; an attempt that never opened is reported with why.
    #[inline(never)] // see `Mesh::handle`
    pub(crate) fn connection_failed(&mut self, now: Millis, conn: ConnId, failure: &Failure, out: &mut VecDeque<Output>) {
        let Some((peer, s)) = self.sessions.by_conn(conn) else { return };
        if s.open && matches!(failure, Failure::Ice { .. }) {
            return self.ice_state(now, conn, IceState::Failed, out);
        }
        let (reason, message) = failure.explain();
        if !s.open {
            out.push_back(Output::Event(Event::PeerFailed { id: peer.clone(), reason, message: message.clone() }));
        }
        self.connection_closed(now, conn, &format!("{reason}: {message}"), out);
    }

    /// How the connection travels: told to the user when first known and on a change.
    #[inline(never)] // see `Mesh::handle`
    pub(crate) fn path_observed(&mut self, conn: ConnId, path: Path, out: &mut VecDeque<Output>) {
        let Some((peer, s)) = self.sessions.by_conn_mut(conn).filter(|(_, s)| s.open) else { return };
        if s.path.as_ref() != Some(&path) {
            s.path = Some(path.clone());
            out.push_back(Output::Event(Event::PeerPath { id: peer, path }));
        }
    }

    /// How the connection to `peer` travels, once known.
    pub(crate) fn path(&self, peer: &PeerId) -> Option<&Path> {
        self.sessions.open(peer).and_then(|s| s.path.as_ref())
    }

    /// Anything at all from a peer shows it is there.
    pub(crate) fn heard_from(&mut self, peer: &PeerId) {
        if let Some(s) = self.sessions.open_mut(peer) {
            s.deadline = None;
        }
    }

    /// The session a connection belongs to, for its channels' queues.
    pub(crate) fn conn_session(&mut self, conn: ConnId) -> Option<&mut Session> {
        self.sessions.by_conn_mut(conn).map(|(_, s)| s)
    }

    /// The connection failed or a channel closed: the peer may still be there (a
    /// network blip), so it is tried again while it is listed.
    #[inline(never)] // see `Mesh::handle`
    pub(crate) fn connection_closed(&mut self, now: Millis, conn: ConnId, reason: &str, out: &mut VecDeque<Output>) {
        let Some((peer, _)) = self.sessions.by_conn(conn) else { return };
        if self.sessions.get(&peer).is_some_and(|s| !s.open) {
            warn(out, format!("connection to {peer} failed: {reason}"));
        }
        self.close_session(&peer, out);
        self.start_queued_offers(now, out);
        if self.roster.contains_key(&peer) && !self.closed {
            self.schedule.retry_after_failure(now, &peer);
        }
    }

    fn close_session(&mut self, peer: &PeerId, out: &mut VecDeque<Output>) {
        let Some(s) = self.sessions.remove(peer) else { return };
        out.push_back(Output::Connection(ConnectionOp::Close { conn: s.conn }));
        if s.open {
            out.push_back(Output::Event(Event::PeerLeft { id: peer.clone() }));
            self.changes.push(PeerChange::Closed(peer.clone()));
        }
    }

    /// Expires stalled attempts and silent peers, restarts lost paths, and retries
    /// peers that are due.
    pub(crate) fn handle_timeout(&mut self, now: Millis, out: &mut VecDeque<Output>) {
        let stalled: Vec<_> = self.sessions.iter().filter(|(_, s)| s.deadline.is_some_and(|d| d <= now)).map(|(p, s)| (s.conn, p.clone())).collect();
        for (conn, peer) in sorted(stalled) {
            if let Some(s) = self.sessions.get(&peer).filter(|s| !s.open) {
                let (reason, message) = s.stall_failure(self.settings.connect_timeout_ms);
                out.push_back(Output::Event(Event::PeerFailed { id: peer, reason, message }));
            }
            self.connection_closed(now, conn, "timed out", out);
        }
        for peer in self.sessions.peers_where(|s| matches!(s.health, Health::Down { .. })) {
            self.check_health(now, &peer, out);
        }
        for peer in self.schedule.due(now) {
            if self.signaling && self.roster.contains_key(&peer) && !self.sessions.contains(&peer) {
                self.schedule.retried(&peer);
                self.initiate(now, peer, out);
            }
        }
    }

    /// Closes every connection; nothing new starts. Final.
    pub(crate) fn close_all(&mut self, out: &mut VecDeque<Output>) {
        self.closed = true;
        self.signaling = false;
        out.extend(self.sessions.clear().into_iter().map(|conn| Output::Connection(ConnectionOp::Close { conn })));
        self.schedule.clear();
    }
}
