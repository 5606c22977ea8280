//! A flow-controlled queue for one data channel: items wait here until the channel's
//! buffer has room under the lane's window, which adapts to the connection.
//!
//! The window starts at [`MIN_WINDOW`]: with more queued, Chromium stalls fresh
//! connections for seconds (measured with Chromium 156: 57 of 63 fresh connections
//! nearly stopped for 0.9–3.4 s with ≥ 1 MiB queued). While the window is what holds
//! sending back, each [`EPOCH_MS`] of draining is measured: the window doubles while
//! the larger one drains no slower, goes back when it drains slower, and halves when
//! the channel stalls (no drain for [`STALL_MS`] with bytes waiting). The low
//! threshold the driver sets follows the window (half of it), so the channel is
//! refilled before it runs dry.
//!
//! Ties go to the larger window: on a connection that has carried data, a larger
//! window is a few per cent faster (raw's best setting there is its largest buffer),
//! less than one epoch's noise, so demanding a clear gain (15 %) kept the window small.
//! Same-run A/Bs (`bench/transfer.mjs`, 5 interleaved rounds, twice) measured warm
//! transfers 4.6–5 % faster with ties going up, fresh ones equal; on this two-core
//! machine a transfer is CPU-bound, which caps what any window can gain.

use std::collections::VecDeque;

use super::transfer::{BulkItem, TransferId};
use super::Millis;

/// The smallest window, where every lane starts.
pub(crate) const MIN_WINDOW: u64 = 256 * 1024;
/// The largest window.
pub(crate) const MAX_WINDOW: u64 = 4 * 1024 * 1024;
/// Largest frame we send, even if the peer's SCTP allows more.
pub(crate) const MAX_FRAME: u64 = 256 * 1024;
/// How long each measurement of the drain rate lasts.
pub(crate) const EPOCH_MS: u64 = 500;
/// No drain for this long, with bytes waiting to go, is a stall.
pub(crate) const STALL_MS: u64 = 500;
/// Epochs without growth after a stall or a window that drained slower (the first
/// time; each window that drained slower doubles it, up to [`MAX_HOLD_EPOCHS`]).
const HOLD_EPOCHS: u32 = 8;
const MAX_HOLD_EPOCHS: u32 = 128;
/// The `bufferedAmountLowThreshold` drivers set on a new channel (and whenever
/// the lane's low threshold changes: `ConnectionOp::SetLowThreshold`). `bufferedamountlow` fires once, when the buffer
/// falls to this; whatever it then reports, the next frame must fit under the window,
/// or sending would stall forever: `window >= threshold + MAX_FRAME` at every window.
pub const BUFFERED_LOW_THRESHOLD: u64 = 0;
const _: () = assert!(MIN_WINDOW >= BUFFERED_LOW_THRESHOLD + MAX_FRAME, "sending could stall after a low event");

/// The window and what it learnt: the drain rate measured at each size tried.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    size: u64,
    epoch_start: Option<Millis>,
    epoch_bytes: u64,
    /// The window held sending back at some point in this epoch.
    limited: bool,
    /// The window below this one and the rate it drained at: what a larger one must beat.
    below: Option<(u64, f64)>,
    hold: u32,
    /// How long the next hold lasts: doubles each time a larger window drained slower.
    next_hold: u32,
    /// The current epoch started a burst (the lane's first, one after an idle gap, or
    /// one after a stall).
    warming: bool,
    last_drain: Option<Millis>,
    /// Bytes were waiting at the last report: a gap since then with no drain is a
    /// stall; without them, it was idle time.
    was_waiting: bool,
}

impl Window {
    fn new() -> Self {
        Window {
            size: MIN_WINDOW,
            epoch_start: None,
            epoch_bytes: 0,
            limited: false,
            below: None,
            hold: 0,
            next_hold: HOLD_EPOCHS,
            warming: true,
            last_drain: None,
            was_waiting: false,
        }
    }

    /// The low threshold for this window: half of it, while a frame still fits above.
    fn low_threshold(&self) -> u64 {
        if self.size >= 2 * MAX_FRAME {
            self.size / 2
        } else {
            BUFFERED_LOW_THRESHOLD
        }
    }

    /// `drained` bytes left the buffer at `now`; `waiting`: bytes were held back.
    fn drained(&mut self, now: Millis, drained: u64, waiting: bool) {
        let was_waiting = std::mem::replace(&mut self.was_waiting, waiting);
        if self.last_drain.is_some_and(|last| now.0.saturating_sub(last.0) >= STALL_MS) {
            // Bytes waited all along and none drained: a stall. Without bytes waiting
            // at the last report, the gap was idle time and a new burst began.
            if was_waiting && waiting {
                self.size = (self.size / 2).max(MIN_WINDOW);
                self.below = None;
                self.hold = HOLD_EPOCHS;
            }
            // Either way the gap is no rate: the next epoch starts afresh.
            self.warming = true;
            self.epoch_start = Some(now);
            self.epoch_bytes = 0;
            self.limited = false;
            self.last_drain = Some(now);
            return;
        }
        self.last_drain = Some(now);
        let start = *self.epoch_start.get_or_insert(now);
        self.epoch_bytes += drained;
        let elapsed = now.0.saturating_sub(start.0);
        if elapsed < EPOCH_MS {
            return;
        }
        // The first epoch of a burst (from an empty buffer) is a warm-up, not a rate.
        if self.limited && !std::mem::replace(&mut self.warming, false) {
            self.judge(self.epoch_bytes as f64 / elapsed as f64);
        }
        self.hold = self.hold.saturating_sub(1);
        self.epoch_start = Some(now);
        self.epoch_bytes = 0;
        self.limited = false;
    }

    /// An epoch in which the window held sending back drained at `rate` (bytes/ms).
    fn judge(&mut self, rate: f64) {
        match self.below {
            Some((smaller, rate_below)) if self.size > smaller && rate < rate_below => {
                // Larger drained slower: back, and stay there a while (longer each time).
                self.size = smaller;
                self.hold = self.next_hold;
                self.next_hold = (self.next_hold * 2).min(MAX_HOLD_EPOCHS);
            }
            _ => {
                if self.hold == 0 && self.size < MAX_WINDOW {
                    self.below = Some((self.size, rate));
                    self.size = (self.size * 2).min(MAX_WINDOW);
                }
            }
        }
    }
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

#[derive(Debug)]
pub(crate) struct Lane<T> {
    buffered: u64,
    queue: VecDeque<T>,
    queued: u64,
    window: Window,
}

impl<T: WireLen> Lane<T> {
    pub(crate) fn new() -> Self {
        Lane { buffered: 0, queue: VecDeque::new(), queued: 0, window: Window::new() }
    }

    /// The window: at most this much is in the channel's buffer.
    #[cfg(test)]
    pub(crate) fn window(&self) -> u64 {
        self.window.size
    }

    /// The `bufferedAmountLowThreshold` the channel should have now.
    #[cfg(test)]
    pub(crate) fn low_threshold(&self) -> u64 {
        self.window.low_threshold()
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

    /// The browser reported the channel's real `bufferedAmount` at `now`. Returns the
    /// new low threshold when the window changed.
    pub(crate) fn set_buffered(&mut self, now: Millis, amount: u64) -> Option<u64> {
        let before = self.window.low_threshold();
        let drained = self.buffered.saturating_sub(amount);
        self.window.drained(now, drained, !self.queue.is_empty());
        self.buffered = amount;
        let after = self.window.low_threshold();
        (after != before).then_some(after)
    }

    /// Items that may go to the channel now without passing the window; one item always
    /// may when the buffer is empty, so an item larger than the window still goes.
    pub(crate) fn release(&mut self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(move || {
            let next = self.queue.front()?.wire_len();
            if self.buffered > 0 && self.buffered + next > self.window.size {
                self.window.limited = true;
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
    fn release_respects_the_window_and_resumes_on_low() {
        let mut lane = Lane::new();
        lane.push(vec![vec![0u8; 100 * 1024]; 5]);
        assert_eq!(lane.release().count(), 2);
        assert_eq!(lane.release().count(), 0);
        lane.set_buffered(Millis(1), 0);
        assert_eq!(lane.release().count(), 2);
        lane.set_buffered(Millis(2), 10);
        assert_eq!(lane.release().count(), 1);
    }

    #[test]
    fn a_low_event_always_releases_the_next_frame_at_any_window() {
        let mut lane = Lane::new();
        lane.push(vec![vec![0u8; MAX_FRAME as usize]; 4000]);
        let mut now = 0;
        let mut low = BUFFERED_LOW_THRESHOLD;
        while lane.queued() > 0 {
            assert!(lane.release().count() >= 1, "stalled after a low event at window {}", lane.window());
            now += 10;
            // The browser fires `bufferedamountlow` when the buffer falls to the threshold;
            // after a change, when it falls to the new one.
            while let Some(threshold) = lane.set_buffered(Millis(now), low) {
                low = threshold;
                now += 10;
            }
            assert!(lane.window() >= low + MAX_FRAME);
        }
    }

    /// Drives a lane whose channel drains `rate(window)` bytes per ms, with a low event
    /// every 10 ms; returns the window after `ms`.
    fn drive(lane: &mut Lane<Vec<u8>>, start: u64, ms: u64, rate: impl Fn(u64) -> u64) -> u64 {
        let mut buffered = 0u64;
        let mut now = start;
        while now < start + ms {
            lane.push(vec![vec![0u8; 64 * 1024]; 64]);
            buffered += lane.release().map(|f| f.len() as u64).sum::<u64>();
            now += 10;
            buffered = buffered.saturating_sub(rate(lane.window()) * 10);
            lane.set_buffered(Millis(now), buffered);
            lane.queue.clear();
            lane.queued = 0;
        }
        lane.window()
    }

    #[test]
    fn the_window_grows_while_a_larger_one_drains_faster() {
        let mut lane = Lane::new();
        // Each doubling drains more up to 2 MiB; beyond it, draining slows (as a fresh
        // connection's does with much queued).
        const TWO_MIB: u64 = 2 * 1024 * 1024;
        let window = drive(&mut lane, 0, 5_000, |w| if w <= TWO_MIB { w / 40 } else { TWO_MIB / 50 });
        assert_eq!(window, TWO_MIB, "grew to where a larger one drained slower");
        assert_eq!(lane.low_threshold(), 1024 * 1024);
    }

    #[test]
    fn the_window_grows_when_a_larger_one_drains_as_fast() {
        let mut lane = Lane::new();
        // A warm connection: the rate barely depends on the window. Ties go up.
        let window = drive(&mut lane, 0, 5_000, |_| 20_000);
        assert_eq!(window, MAX_WINDOW);
        assert_eq!(lane.low_threshold(), MAX_WINDOW / 2);
    }

    #[test]
    fn the_window_stays_small_when_larger_drains_slower() {
        let mut lane = Lane::new();
        // Probing a larger window now and then is the price of finding out: it must be
        // rare, and rarer the longer it does not pay.
        let mut at_min = 0;
        for second in 0..60 {
            if drive(&mut lane, second * 1_000, 1_000, |w| if w > MIN_WINDOW { 18_000 } else { 20_000 }) == MIN_WINDOW {
                at_min += 1;
            }
        }
        assert!(at_min >= 55, "at the smallest window {at_min} of 60 s (window now {})", lane.window());
    }

    #[test]
    fn a_stall_halves_the_window() {
        let mut lane = Lane::new();
        let grown = drive(&mut lane, 0, 5_000, |w| w / 40);
        assert_eq!(grown, MAX_WINDOW);
        // Bytes wait, and nothing drains for longer than a stall.
        lane.push(vec![vec![0u8; 64 * 1024]; 4]);
        lane.release().count();
        lane.push(vec![vec![0u8; 64 * 1024]; 4]);
        let threshold = lane.set_buffered(Millis(5_000 + STALL_MS + 10), MAX_WINDOW);
        assert_eq!(lane.window(), MAX_WINDOW / 2);
        assert_eq!(threshold, Some(MAX_WINDOW / 4));
        // And it does not grow again at once.
        let after = drive(&mut lane, 5_000 + STALL_MS + 10, 1_000, |w| w / 40);
        assert_eq!(after, MAX_WINDOW / 2);
    }

    #[test]
    fn a_new_burst_after_an_idle_gap_is_not_a_stall() {
        let mut lane = Lane::new();
        let grown = drive(&mut lane, 0, 5_000, |_| 20_000);
        assert_eq!(grown, MAX_WINDOW);
        // The burst ends: everything drained, nothing waits.
        lane.set_buffered(Millis(5_010), 0);
        // Seconds later a new burst fills the window, and the first report finds bytes
        // waiting: they waited only since the burst began.
        lane.push(vec![vec![0u8; 64 * 1024]; 256]);
        lane.release().count();
        lane.set_buffered(Millis(10_000), MAX_WINDOW / 2);
        assert_eq!(lane.window(), MAX_WINDOW);
        // And the idle gap is no rate: the window is not judged by it.
        let after = drive(&mut lane, 10_000, 2_000, |_| 20_000);
        assert_eq!(after, MAX_WINDOW);
    }

    #[test]
    fn a_lane_with_nothing_waiting_never_grows_or_stalls() {
        let mut lane: Lane<Vec<u8>> = Lane::new();
        // Idle for minutes, then a drain: not a stall, no growth.
        lane.set_buffered(Millis(1), 0);
        lane.set_buffered(Millis(600_000), 0);
        assert_eq!(lane.window(), MIN_WINDOW);
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
