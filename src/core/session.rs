//! One connection attempt with one peer: where its negotiation stands, the ICE
//! candidates that arrived too early, and the flow-controlled queue of outgoing frames.

use std::collections::VecDeque;

use super::transfer::{BulkItem, RecvLane, TransferId};
use super::wire::Reassembler;
use super::{ConnId, Millis};

/// Keep at most this much in the data channel's send buffer. Chromium stalls for
/// seconds with ≥ 1 MiB queued on a fresh connection (see NOTES.md); chat needs little.
pub(crate) const HIGH_WATER: u64 = 256 * 1024;
/// Most bytes queued in the core for one peer before `send` refuses.
pub(crate) const MAX_QUEUED: u64 = 64 * 1024 * 1024;
/// Largest frame we send, even if the peer's SCTP allows more.
pub(crate) const MAX_FRAME: u64 = 256 * 1024;
/// The `bufferedAmountLowThreshold` drivers must set. `bufferedamountlow` fires once,
/// when the buffer falls to this; whatever it then reports, the next frame must fit
/// under `HIGH_WATER`, or sending would stall forever. Hence
/// `HIGH_WATER >= BUFFERED_LOW_THRESHOLD + MAX_FRAME`, checked at compile time.
pub const BUFFERED_LOW_THRESHOLD: u64 = 0;
const _: () = assert!(HIGH_WATER >= BUFFERED_LOW_THRESHOLD + MAX_FRAME, "sending could stall after a low event");
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
    /// The bulk channel: outgoing file data, flow-controlled like the message channel.
    pub(crate) bulk: Lane<BulkItem>,
    /// Where the incoming bulk byte stream stands.
    pub(crate) bulk_recv: RecvLane,
}

/// A flow-controlled queue for one data channel: items wait here until the channel's
/// buffer has room under [`HIGH_WATER`].
#[derive(Debug)]
pub(crate) struct Lane<T> {
    buffered: u64,
    queue: VecDeque<T>,
    queued: u64,
}

/// Something with a size on the wire.
pub(crate) trait WireLen {
    fn wire_len(&self) -> u64;
}

impl WireLen for Vec<u8> {
    fn wire_len(&self) -> u64 {
        self.len() as u64
    }
}

impl WireLen for BulkItem {
    fn wire_len(&self) -> u64 {
        self.len()
    }
}

impl Lane<BulkItem> {
    /// Removes transfer `id`'s queued items, except the rest of a block already on the
    /// wire (its header went out: the receiver expects its bytes). Returns that block.
    pub(crate) fn purge_transfer(&mut self, id: TransferId) -> Option<u32> {
        let header_of = |frame: &[u8]| -> Option<TransferId> {
            if !matches!(frame.first(), Some(0x16 | 0x17)) {
                return None;
            }
            let raw: [u8; 8] = frame.get(1..9)?.try_into().ok()?;
            Some(TransferId(u64::from_be_bytes(raw)))
        };
        // The first queued item of this transfer tells whether a block is under way: a
        // slice before any of its headers means the header was sent already.
        let started = self.queue.iter().find_map(|item| match item {
            BulkItem::Slice { id: t, block, .. } if *t == id => Some(Some(*block)),
            BulkItem::Frame(f) if header_of(f) == Some(id) => Some(None),
            _ => None,
        });
        let started = started.flatten();
        let before = self.queue.len();
        self.queue.retain(|item| match item {
            BulkItem::Slice { id: t, block, .. } => *t != id || Some(*block) == started,
            BulkItem::Frame(f) => header_of(f) != Some(id),
        });
        if self.queue.len() != before {
            self.queued = self.queue.iter().map(WireLen::wire_len).sum();
        }
        started
    }
}

impl<T: WireLen> Lane<T> {
    fn new() -> Self {
        Lane { buffered: 0, queue: VecDeque::new(), queued: 0 }
    }

    /// Bytes waiting in the queue.
    pub(crate) fn queued(&self) -> u64 {
        self.queued
    }

    pub(crate) fn push(&mut self, items: impl IntoIterator<Item = T>) {
        for item in items {
            self.queued += item.wire_len();
            self.queue.push_back(item);
        }
    }

    /// The browser reported the channel's real `bufferedAmount`.
    pub(crate) fn set_buffered(&mut self, amount: u64) {
        self.buffered = amount;
    }

    /// Items that may go to the channel now without passing [`HIGH_WATER`]; one item
    /// always may when the buffer is empty, so an item larger than the mark still goes.
    pub(crate) fn release(&mut self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(move || {
            let next = self.queue.front()?.wire_len();
            if self.buffered > 0 && self.buffered + next > HIGH_WATER {
                return None;
            }
            let item = self.queue.pop_front()?;
            self.buffered += next;
            self.queued -= next;
            Some(item)
        })
    }
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
            bulk_recv: RecvLane::default(),
        }
    }

    /// Marks the channel open; `max_message_size` is the browser's SCTP limit (0 if
    /// unknown).
    pub(crate) fn opened(&mut self, max_message_size: u64) {
        self.open = true;
        self.deadline = None;
        let size = if max_message_size == 0 { DEFAULT_FRAME } else { max_message_size.min(MAX_FRAME) };
        self.max_frame = size as usize;
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

    /// The browser reported the message channel's real `bufferedAmount`.
    pub(crate) fn set_buffered(&mut self, amount: u64) {
        self.outbox.set_buffered(amount);
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
    fn release_respects_high_water_and_resumes_on_low() {
        let mut s = Session::new(ConnId::from_raw(1), true, Millis(0), 1 << 20);
        s.opened(256 * 1024);
        assert!(s.enqueue(vec![vec![0; 100 * 1024]; 5]));
        assert_eq!(s.release().count(), 2);
        assert_eq!(s.release().count(), 0);
        s.set_buffered(0);
        assert_eq!(s.release().count(), 2);
        s.set_buffered(10);
        assert_eq!(s.release().count(), 1);
    }

    #[test]
    fn a_low_event_always_releases_the_next_frame() {
        let mut s = Session::new(ConnId::from_raw(1), true, Millis(0), 1 << 30);
        s.opened(MAX_FRAME);
        assert!(s.enqueue(vec![vec![0; MAX_FRAME as usize]; 3]));
        assert_eq!(s.release().count(), 1);
        for _ in 0..2 {
            s.set_buffered(BUFFERED_LOW_THRESHOLD);
            assert_eq!(s.release().count(), 1, "stalled after a low event");
        }
    }

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
}
