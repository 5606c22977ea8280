//! One connection attempt with one peer: where its negotiation stands, the ICE
//! candidates that arrived too early, and the flow-controlled queues of its two
//! channels. It knows frames only as bytes and [`BulkItem`]s; what they mean is the
//! business of the layers above.

use std::collections::VecDeque;

use super::binding::ConnectionProof;
use super::health::Health;
use super::lane::{Lane, MAX_FRAME};
use super::output::{Channel, ConnectionOp, Output};
use super::path::{Gathered, Path};
use super::transfer::BulkItem;
use super::wire::Reassembler;
use super::{ConnId, Millis};

/// Most bytes queued in the core for one peer before `send` refuses.
pub(crate) const MAX_QUEUED: u64 = 64 * 1024 * 1024;
/// Frame size when the browser reports no max message size (the interoperable minimum).
pub(crate) const DEFAULT_FRAME: u64 = 64 * 1024;
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
    /// How it travels, once known.
    pub(crate) path: Option<Path>,
    /// What gathering our candidates found, once it completed.
    pub(crate) gathered: Option<Gathered>,
    /// The message channel is open; `open` waits for the peer's binding.
    pub(crate) channel_up: bool,
    /// The connection's binding to the peer's key, as far as it got.
    pub(crate) proof: ConnectionProof,
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
            path: None,
            gathered: None,
            channel_up: false,
            proof: ConnectionProof::default(),
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

    /// Whether the peer's description came (so the peer took part in the attempt).
    pub(crate) fn remote_issued(&self) -> bool {
        self.remote_issued
    }

    /// The remote description was issued: the candidates that waited for it.
    pub(crate) fn remote_description_issued(&mut self) -> Vec<String> {
        self.remote_issued = true;
        std::mem::take(&mut self.early_candidates)
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
    pub(crate) fn drained(&mut self, now: Millis, buffered: u64, out: &mut VecDeque<Output>) {
        let conn = self.conn;
        if let Some(bytes) = self.outbox.set_buffered(now, buffered) {
            out.push_back(Output::Connection(ConnectionOp::SetLowThreshold { conn, channel: Channel::Messages, bytes }));
        }
        self.flush(out);
    }

    /// The same for the bulk channel.
    pub(crate) fn bulk_drained(&mut self, now: Millis, buffered: u64, out: &mut VecDeque<Output>) {
        let conn = self.conn;
        if let Some(bytes) = self.bulk.set_buffered(now, buffered) {
            out.push_back(Output::Connection(ConnectionOp::SetLowThreshold { conn, channel: Channel::Bulk, bytes }));
        }
        self.flush_bulk(out);
    }

    fn flush(&mut self, out: &mut VecDeque<Output>) {
        let conn = self.conn;
        out.extend(self.outbox.release().map(|frame| Output::Connection(ConnectionOp::Transmit { conn, frame })));
    }

    fn flush_bulk(&mut self, out: &mut VecDeque<Output>) {
        let conn = self.conn;
        out.extend(self.bulk.release().map(|item| Output::Connection(ConnectionOp::TransmitBulk { conn, item })));
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
