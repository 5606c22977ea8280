//! One connection attempt with one peer: where its negotiation stands, the ICE
//! candidates that arrived too early, and the flow-controlled queues of its two
//! channels. It knows frames only as bytes and [`BulkItem`]s; what they mean is the
//! business of the layers above.

use std::collections::{HashMap, VecDeque};

use super::binding::ConnectionProof;
use super::health::Health;
use super::lane::{Lane, MAX_FRAME};
use super::order::sorted;
use super::output::{Channel, ConnectionOp, Output};
use super::path::{FailReason, Failure, Gathered, Path};
use super::transfer::BulkItem;
use super::wire::Reassembler;
use super::{ConnId, Millis, PeerId};

/// Most bytes queued in the core for one peer before `send` refuses.
pub(crate) const MAX_QUEUED: u64 = 64 * 1024 * 1024;
/// Frame size when the browser reports no max message size (the interoperable minimum).
pub(crate) const DEFAULT_FRAME: u64 = 64 * 1024;
/// The largest batch of small frames (within the channel's max message size too).
const BATCH_LIMIT: usize = 64 * 1024;
/// A peer may trickle this many candidates before its description arrives.
const MAX_EARLY_CANDIDATES: usize = 64;

#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) conn: ConnId,
    /// We create the offer for this connection.
    pub(crate) offerer: bool,
    /// The offer went out and no answer came back yet.
    pub(crate) awaiting_answer: bool,
    /// The remote description has been handed to the browser.
    remote_issued: bool,
    pub(crate) open: bool,
    /// While connecting: when to give up. While open: when to close it, if the server
    /// said the peer left and nothing has come from it since.
    pub(crate) deadline: Option<Millis>,
    early_candidates: Vec<String>,
    max_frame: usize,
    /// The message channel's queue.
    outbox: Lane<Vec<u8>>,
    pub(crate) reassembler: Reassembler,
    /// The bulk channel's queue: outgoing file data.
    pub(crate) bulk: Lane<BulkItem>,
    /// Whether the path works (open sessions).
    pub(crate) health: Health,
    /// Offers made on this connection so far, less one: every ICE restart offers again,
    /// with the next generation, so a repeated offer is told from a new one.
    pub(crate) generation: u32,
    /// When the latest ICE restart offered.
    pub(crate) restart_offered_at: Millis,
    /// How it travels, once known.
    pub(crate) path: Option<Path>,
    /// What gathering our candidates found, once it completed.
    pub(crate) gathered: Option<Gathered>,
    /// The message channel is open; `open` waits for the peer's binding.
    pub(crate) channel_up: bool,
    /// The connection's binding to the peer's key, as far as it got.
    pub(crate) proof: ConnectionProof,
    /// The peer said it takes batches of frames (service message `Features`).
    pub(crate) takes_batches: bool,
    /// The peer said it takes offers that carry a small file whole (`Features`).
    pub(crate) takes_inline_offers: bool,
}

impl Session {
    pub(crate) fn new(conn: ConnId, offerer: bool, deadline: Millis, max_message: u64) -> Self {
        Session {
            conn,
            offerer,
            awaiting_answer: offerer,
            remote_issued: false,
            open: false,
            deadline: Some(deadline),
            early_candidates: Vec::new(),
            max_frame: DEFAULT_FRAME as usize,
            outbox: Lane::new(),
            reassembler: Reassembler::new(max_message),
            bulk: Lane::new(),
            health: Health::Up,
            generation: 0,
            restart_offered_at: Millis(0),
            path: None,
            gathered: None,
            channel_up: false,
            proof: ConnectionProof::default(),
            takes_batches: false,
            takes_inline_offers: false,
        }
    }

    /// Marks the channel open; `max_message_size` is the browser's SCTP limit (0 if
    /// unknown).
    pub(crate) fn channel_up(&mut self, max_message_size: u64) {
        self.channel_up = true;
        let size = if max_message_size == 0 { DEFAULT_FRAME } else { max_message_size.min(MAX_FRAME) };
        self.max_frame = size as usize;
    }

    /// The peer's binding verified: the session is open for everything.
    pub(crate) fn verified(&mut self) {
        self.open = true;
        self.deadline = None;
    }

    pub(crate) fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// A remote candidate: returned if it can be applied now, kept if the remote
    /// description has not been issued yet (the browser would reject it).
    pub(crate) fn remote_candidate(&mut self, candidate: String) -> Option<String> {
        if self.remote_issued {
            return Some(candidate);
        }
        if self.early_candidates.len() < MAX_EARLY_CANDIDATES {
            self.early_candidates.push(candidate);
        }
        None
    }

    /// The remote description was issued: the candidates that waited for it.
    pub(crate) fn remote_description_issued(&mut self) -> Vec<String> {
        self.remote_issued = true;
        std::mem::take(&mut self.early_candidates)
    }

    /// Restarts ICE (we offer): the next offer is a new generation of this connection.
    pub(crate) fn restart_ice(&mut self, now: Millis, out: &mut VecDeque<Output>) {
        self.generation += 1;
        self.awaiting_answer = true;
        self.restart_offered_at = now;
        out.push_back(Output::Connection(ConnectionOp::RestartIce { conn: self.conn }));
    }

    /// Why an attempt that did not open in time failed. Both sides took part and
    /// gathered, yet no path worked: that is ICE failing (browsers take longer to say
    /// so), and what was gathered says why. Otherwise it is a plain timeout.
    pub(crate) fn stall_failure(&self, connect_timeout_ms: u64) -> (FailReason, String) {
        match self.gathered {
            Some(gathered) if self.remote_issued => Failure::Ice(gathered).explain(),
            _ => (FailReason::Timeout, format!("the connection did not open within {connect_timeout_ms} ms")),
        }
    }

    /// Queues message frames (within [`MAX_QUEUED`] unless `unbounded`: small
    /// control frames) and releases what the channel takes now; false if full.
    pub(crate) fn transmit(&mut self, frames: Vec<Vec<u8>>, unbounded: bool, out: &mut VecDeque<Output>) -> bool {
        let bytes: u64 = frames.iter().map(|f| f.len() as u64).sum();
        if !unbounded && self.outbox.queued() + bytes > MAX_QUEUED && self.outbox.queued() > 0 {
            return false;
        }
        self.outbox.push(frames);
        self.flush(out);
        true
    }

    /// Queues file data for the bulk channel and releases what it takes now.
    pub(crate) fn transmit_bulk(&mut self, items: Vec<BulkItem>, out: &mut VecDeque<Output>) {
        self.bulk.push(items);
        self.flush_bulk(out);
    }

    /// The browser reported the message channel's real `bufferedAmount` at `now`:
    /// a new low threshold if the lane's window changed, and what fits now.
    #[inline(never)] // see `Mesh::handle`
    pub(crate) fn drained(&mut self, now: Millis, buffered: u64, out: &mut VecDeque<Output>) {
        let conn = self.conn;
        if let Some(bytes) = self.outbox.set_buffered(now, buffered) {
            out.push_back(Output::Connection(ConnectionOp::SetLowThreshold { conn, channel: Channel::Messages, bytes }));
        }
        self.flush(out);
    }

    /// The same for the bulk channel.
    #[inline(never)] // see `Mesh::handle`
    pub(crate) fn bulk_drained(&mut self, now: Millis, buffered: u64, out: &mut VecDeque<Output>) {
        let conn = self.conn;
        if let Some(bytes) = self.bulk.set_buffered(now, buffered) {
            out.push_back(Output::Connection(ConnectionOp::SetLowThreshold { conn, channel: Channel::Bulk, bytes }));
        }
        self.flush_bulk(out);
    }

    fn flush(&mut self, out: &mut VecDeque<Output>) {
        let conn = self.conn;
        let batch = self.takes_batches.then_some(BATCH_LIMIT.min(self.max_frame));
        out.extend(self.outbox.release().map(|frame| Output::Connection(ConnectionOp::Transmit { conn, frame, batch })));
    }

    fn flush_bulk(&mut self, out: &mut VecDeque<Output>) {
        let conn = self.conn;
        out.extend(self.bulk.release().map(|item| Output::Connection(ConnectionOp::TransmitBulk { conn, item })));
    }
}

/// The sessions, by peer and by connection: a connection belongs to the session of
/// the peer it was made for as long as that session is the peer's current one.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    by_peer: HashMap<PeerId, Session>,
    by_conn: HashMap<ConnId, PeerId>,
}

impl Sessions {
    pub(crate) fn get(&self, peer: &PeerId) -> Option<&Session> {
        self.by_peer.get(peer)
    }

    pub(crate) fn get_mut(&mut self, peer: &PeerId) -> Option<&mut Session> {
        self.by_peer.get_mut(peer)
    }

    /// A peer's session if it is open (verified).
    pub(crate) fn open(&self, peer: &PeerId) -> Option<&Session> {
        self.by_peer.get(peer).filter(|s| s.open)
    }

    pub(crate) fn open_mut(&mut self, peer: &PeerId) -> Option<&mut Session> {
        self.by_peer.get_mut(peer).filter(|s| s.open)
    }

    pub(crate) fn contains(&self, peer: &PeerId) -> bool {
        self.by_peer.contains_key(peer)
    }

    /// The peer and session `conn` belongs to.
    pub(crate) fn by_conn(&self, conn: ConnId) -> Option<(PeerId, &Session)> {
        let peer = self.by_conn.get(&conn)?;
        self.by_peer.get(peer).filter(|s| s.conn == conn).map(|s| (peer.clone(), s))
    }

    pub(crate) fn by_conn_mut(&mut self, conn: ConnId) -> Option<(PeerId, &mut Session)> {
        let peer = self.by_conn.get(&conn)?;
        self.by_peer.get_mut(peer).filter(|s| s.conn == conn).map(|s| (peer.clone(), s))
    }

    pub(crate) fn insert(&mut self, peer: PeerId, session: Session) {
        self.remove(&peer);
        self.by_conn.insert(session.conn, peer.clone());
        self.by_peer.insert(peer, session);
    }

    pub(crate) fn remove(&mut self, peer: &PeerId) -> Option<Session> {
        let session = self.by_peer.remove(peer)?;
        self.by_conn.remove(&session.conn);
        Some(session)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&PeerId, &Session)> {
        self.by_peer.iter()
    }

    /// The peers whose sessions match, sorted (so what follows is deterministic).
    pub(crate) fn peers_where(&self, matches: impl Fn(&Session) -> bool) -> Vec<PeerId> {
        sorted(self.by_peer.iter().filter(|(_, s)| matches(s)).map(|(p, _)| p.clone()).collect())
    }

    /// Forgets every session; returns their connections, sorted.
    pub(crate) fn clear(&mut self) -> Vec<ConnId> {
        let conns = sorted(self.by_conn.drain().map(|(conn, _)| conn).collect());
        self.by_peer.clear();
        conns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_candidates_wait_for_the_description() {
        let mut s = Session::new(ConnId::from_raw(1), false, Millis(0), 1 << 20);
        assert_eq!(s.remote_candidate("a".into()), None);
        assert_eq!(s.remote_candidate("b".into()), None);
        assert_eq!(s.remote_description_issued(), vec!["a".to_string(), "b".to_string()]);
        assert_eq!(s.remote_candidate("c".into()), Some("c".into()));
    }

    #[test]
    fn queue_is_bounded() {
        let mut s = Session::new(ConnId::from_raw(1), false, Millis(0), 1 << 20);
        let mut out = VecDeque::new();
        // The first frame goes to the channel at once; the next wait in the queue.
        assert!(s.transmit(vec![vec![0; 16]], false, &mut out));
        assert_eq!(out.len(), 1);
        assert!(s.transmit(vec![vec![0; (MAX_QUEUED / 2) as usize]], false, &mut out));
        assert!(!s.transmit(vec![vec![0; (MAX_QUEUED / 2 + 1) as usize]], false, &mut out));
        assert!(s.transmit(vec![vec![0; 16]], true, &mut out), "control frames are never refused");
    }

    #[test]
    fn the_frame_size_follows_the_browser_up_to_the_cap() {
        let mut s = Session::new(ConnId::from_raw(1), true, Millis(0), 1 << 20);
        s.channel_up(0);
        assert_eq!(s.max_frame() as u64, DEFAULT_FRAME);
        s.channel_up(1 << 30);
        assert_eq!(s.max_frame() as u64, MAX_FRAME);
    }
}
