//! One connection attempt with one peer: where its negotiation stands, the ICE
//! candidates that arrived too early, and the flow-controlled queues of its two
//! channels. It knows frames only as bytes and [`BulkItem`]s; what they mean is the
//! business of the layers above.

use super::identity::PublicKey;
use super::lane::{Lane, MAX_FRAME};
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

/// Whether an open connection has a working network path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Health {
    Up,
    /// Lost since `since`; `failed` if ICE gave up (not just `disconnected`);
    /// `announced` once the user was told; `restart_at` when to (re)start ICE next.
    Down {
        since: Millis,
        failed: bool,
        announced: bool,
        restart_at: Millis,
    },
}

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
    /// The DTLS fingerprints in our description and in the peer's: what each side's
    /// binding signs.
    pub(crate) local_fingerprints: Option<String>,
    pub(crate) remote_fingerprints: Option<String>,
    /// The message channel is open; `open` waits for the peer's binding.
    pub(crate) channel_up: bool,
    /// The peer's key, once its binding verified.
    pub(crate) peer_key: Option<PublicKey>,
    /// In a room with a secret: our SPAKE2 exchange until the answer brings theirs
    /// (offerer), our reply until the answer goes out (answerer), and the MAC key both
    /// derive (the same on both sides only if the secrets matched).
    pub(crate) pake: Option<super::room_secret::Exchange>,
    pub(crate) pake_reply: Option<Vec<u8>>,
    pub(crate) pake_key: Option<[u8; 32]>,
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
            local_fingerprints: None,
            remote_fingerprints: None,
            channel_up: false,
            peer_key: None,
            pake: None,
            pake_reply: None,
            pake_key: None,
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

    /// Queues frames unless that would pass [`MAX_QUEUED`].
    pub(crate) fn enqueue(&mut self, frames: Vec<Vec<u8>>) -> bool {
        let bytes: u64 = frames.iter().map(|f| f.len() as u64).sum();
        if self.outbox.queued() + bytes > MAX_QUEUED && self.outbox.queued() > 0 {
            return false;
        }
        self.outbox.push(frames);
        true
    }

    /// Queues a frame whatever the queue holds (small control frames).
    pub(crate) fn enqueue_unbounded(&mut self, frame: Vec<u8>) {
        self.outbox.push([frame]);
    }

    /// The browser reported the message channel's real `bufferedAmount` at `now`;
    /// the new low threshold if the lane's window changed.
    pub(crate) fn set_buffered(&mut self, now: super::Millis, amount: u64) -> Option<u64> {
        self.outbox.set_buffered(now, amount)
    }

    /// Message frames that may go to the channel now (see [`Lane::release`]).
    pub(crate) fn release(&mut self) -> impl Iterator<Item = Vec<u8>> + '_ {
        self.outbox.release()
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
        assert!(s.enqueue(vec![vec![0; (MAX_QUEUED / 2) as usize]]));
        assert!(!s.enqueue(vec![vec![0; (MAX_QUEUED / 2 + 1) as usize]]));
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
