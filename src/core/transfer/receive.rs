//! The one receive path, shared by direct transfers and multi-source downloads: what a
//! peer's bulk channel carries (a header, then that block's bytes as raw frames), which
//! peer owns which block, where its bytes go, and when a block is verified.
//!
//! THE WRITE INVARIANT: a byte is stored only if the peer it came from owns its block
//! right now — the sender of a direct transfer being received, or the holder a download
//! assigned that block to — and the block is not verified yet. A holder dropped or
//! released mid-block, a block re-assigned, verified or committed since its header: the
//! rest of that block is skipped, and the lane expects a header again, which must name
//! a block the peer owns. So a verified block is never written again, and what was
//! verified is exactly what is stored. [`receive_bytes`] enforces it, for every frame.

use super::blocks::{Hash, BLOCK_SIZE};
use super::progress::ProgressMeter;
use super::{TransferError, TransferId};
use crate::core::input::FrameId;
use crate::core::net::Net;
use crate::core::output::{Output, StoreOp};
use crate::core::PeerId;

/// Where one peer's incoming bulk byte stream stands.
#[derive(Debug, Default)]
pub(crate) enum RecvLane {
    /// The next frame is a header.
    #[default]
    Idle,
    /// The next frames are this block's bytes.
    Block { id: TransferId, block: u32, offset: u64, remaining: u64, hasher: Box<blake3::Hasher>, expected: Hash },
    /// The next frames are bytes to drop (a block nobody asked of this peer, a
    /// duplicate, or the rest of one it no longer owns).
    Skip { remaining: u64 },
}

impl RecvLane {
    /// After a header whose `len` bytes (if `data`) will not be stored.
    pub(crate) fn skip(data: bool, len: u32) -> RecvLane {
        if data && len > 0 {
            RecvLane::Skip { remaining: u64::from(len).min(BLOCK_SIZE) }
        } else {
            RecvLane::Idle
        }
    }

    /// After a header whose bytes `peer` may store at `offset`.
    pub(crate) fn block(id: TransferId, block: u32, offset: u64, len: u32, expected: Hash) -> RecvLane {
        RecvLane::Block { id, block, offset, remaining: u64::from(len), hasher: Box::new(blake3::Hasher::new()), expected }
    }
}

/// What a receiving transfer (direct or download) decides about its blocks.
pub(crate) trait Receiving {
    /// A header from `peer` for `block`, whose `len` bytes follow: whether they will be
    /// received (at the block's offset), skipped, or are a reason to stop.
    fn header(&mut self, peer: &PeerId, block: u32, len: u32, hash: Hash) -> Header;
    /// Whether `peer` owns `block` now and it is not verified (the write invariant).
    fn owns(&self, peer: &PeerId, block: u32) -> bool;
    fn meter(&mut self) -> &mut ProgressMeter;
    /// Every byte of `block` came from `peer` and hashed to the expected `digest`.
    fn verified(&mut self, net: &mut Net<'_>, id: TransferId, peer: &PeerId, block: u32, digest: Hash);
    /// `peer` broke the block it owned: a direct transfer fails, a download drops that
    /// holder and gives its blocks to the others.
    fn broken(&mut self, net: &mut Net<'_>, id: TransferId, peer: &PeerId, error: TransferError) -> Broken;
}

/// What to do with a header's bytes.
#[derive(Debug, PartialEq)]
pub(crate) enum Header {
    Receive {
        offset: u64,
    },
    Skip,
    /// Skip its bytes and let [`Receiving::broken`] decide.
    Broken(TransferError),
}

/// What a broken block means for the transfer.
#[derive(Debug, PartialEq)]
pub(crate) enum Broken {
    /// It goes on (a download without that holder).
    Continue,
    /// It ends with this error, told to the peer.
    Fail(TransferError),
}

/// One frame of a block's bytes, on a lane in [`RecvLane::Block`] state, for a
/// transfer that receives (`receiver`, if it still exists). Returns the lane's next
/// state and whether the transfer must fail.
#[allow(clippy::too_many_arguments)]
pub(crate) fn receive_bytes(
    net: &mut Net<'_>,
    receiver: Option<&mut dyn Receiving>,
    peer: &PeerId,
    lane: RecvLane,
    bytes: &[u8],
    frame: FrameId,
) -> (RecvLane, Option<TransferError>) {
    let RecvLane::Block { id, block, offset, remaining, mut hasher, expected } = lane else { return (lane, None) };
    let len = bytes.len() as u64;
    // The invariant, checked for every frame: owned now, and not verified.
    let Some(receiver) = receiver.filter(|r| r.owns(peer, block)) else {
        let rest = if remaining > len { RecvLane::Skip { remaining: remaining - len } } else { RecvLane::Idle };
        return (rest, None);
    };
    if len > remaining || len == 0 {
        let broken = receiver.broken(net, id, peer, TransferError::Protocol(format!("block {block} overran its length")));
        return (RecvLane::Idle, fatal(broken));
    }
    hasher.update(bytes);
    let remaining = remaining - len;
    let meter = receiver.meter();
    let received = meter.bytes + len;
    meter.set(net.now, received);
    if remaining > 0 {
        net.output(Output::Store(StoreOp::Write { id, offset, frame }));
        return (RecvLane::Block { id, block, offset: offset + len, remaining, hasher, expected }, None);
    }
    let digest = *hasher.finalize().as_bytes();
    if digest != expected {
        let error = TransferError::HashMismatch(format!("block {block} from {peer} does not match its hash"));
        return (RecvLane::Idle, fatal(receiver.broken(net, id, peer, error)));
    }
    // Written before the commit `verified` asks for: the driver stores, then commits.
    net.output(Output::Store(StoreOp::Write { id, offset, frame }));
    receiver.verified(net, id, peer, block, digest);
    (RecvLane::Idle, None)
}

fn fatal(broken: Broken) -> Option<TransferError> {
    match broken {
        Broken::Continue => None,
        Broken::Fail(error) => Some(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testing::Harness;
    use crate::core::transfer::blocks::hash_block;

    /// A receiver that owns blocks as told and records what it heard.
    #[derive(Default)]
    struct Fake {
        owned: Option<u32>,
        meter: ProgressMeter,
        verified: Vec<(u32, Hash)>,
        broken: Vec<TransferError>,
    }

    impl Receiving for Fake {
        fn header(&mut self, _: &PeerId, _: u32, _: u32, _: Hash) -> Header {
            Header::Skip
        }
        fn owns(&self, _: &PeerId, block: u32) -> bool {
            self.owned == Some(block)
        }
        fn meter(&mut self) -> &mut ProgressMeter {
            &mut self.meter
        }
        fn verified(&mut self, _: &mut Net<'_>, _: TransferId, _: &PeerId, block: u32, digest: Hash) {
            self.verified.push((block, digest));
        }
        fn broken(&mut self, _: &mut Net<'_>, _: TransferId, _: &PeerId, error: TransferError) -> Broken {
            self.broken.push(error);
            Broken::Continue
        }
    }

    fn writes(h: &mut Harness) -> Vec<(u64, u64)> {
        h.driver_work()
            .into_iter()
            .filter_map(|o| match o {
                Output::Store(StoreOp::Write { offset, frame, .. }) => Some((offset, frame.0)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_owned_block_is_written_frame_by_frame_and_verified_once_whole() {
        let mut h = Harness::with_peer("b");
        let peer = h.peer();
        let bytes = vec![7u8; 10];
        let mut fake = Fake { owned: Some(3), ..Fake::default() };
        let mut lane = RecvLane::block(TransferId(1), 3, 3 * BLOCK_SIZE, 10, hash_block(&bytes));
        for (i, part) in bytes.chunks(4).enumerate() {
            let (next, fail) = receive_bytes(&mut h.net(), Some(&mut fake), &peer, lane, part, FrameId(i as u64));
            assert!(fail.is_none());
            lane = next;
        }
        assert!(matches!(lane, RecvLane::Idle));
        assert_eq!(writes(&mut h), vec![(3 * BLOCK_SIZE, 0), (3 * BLOCK_SIZE + 4, 1), (3 * BLOCK_SIZE + 8, 2)]);
        assert_eq!(fake.verified, vec![(3, hash_block(&bytes))]);
    }

    #[test]
    fn bytes_of_a_block_no_longer_owned_are_skipped_to_its_end() {
        let mut h = Harness::with_peer("b");
        let peer = h.peer();
        let mut fake = Fake { owned: Some(3), ..Fake::default() };
        let lane = RecvLane::block(TransferId(1), 3, 0, 10, [0; 32]);
        let (lane, _) = receive_bytes(&mut h.net(), Some(&mut fake), &peer, lane, &[1; 4], FrameId(1));
        fake.owned = None; // dropped, re-assigned or verified meanwhile
        let (lane, _) = receive_bytes(&mut h.net(), Some(&mut fake), &peer, lane, &[1; 4], FrameId(2));
        assert!(matches!(lane, RecvLane::Skip { remaining: 2 }), "{lane:?}");
        assert_eq!(writes(&mut h), vec![(0, 1)], "only the frame received while owned");
        // And for a transfer that no longer exists at all.
        let lane = RecvLane::block(TransferId(1), 3, 0, 10, [0; 32]);
        let (lane, _) = receive_bytes(&mut h.net(), None, &peer, lane, &[1; 4], FrameId(3));
        assert!(matches!(lane, RecvLane::Skip { remaining: 6 }));
        assert!(writes(&mut h).is_empty());
    }

    #[test]
    fn a_block_that_does_not_hash_to_its_header_is_broken_and_its_last_frame_not_written() {
        let mut h = Harness::with_peer("b");
        let peer = h.peer();
        let mut fake = Fake { owned: Some(0), ..Fake::default() };
        let lane = RecvLane::block(TransferId(1), 0, 0, 4, hash_block(b"good"));
        let (lane, _) = receive_bytes(&mut h.net(), Some(&mut fake), &peer, lane, b"bad!", FrameId(1));
        assert!(matches!(lane, RecvLane::Idle));
        assert!(writes(&mut h).is_empty());
        assert!(fake.verified.is_empty());
        assert!(matches!(fake.broken.as_slice(), [TransferError::HashMismatch(_)]));
        // Overrunning a block is broken too.
        let lane = RecvLane::block(TransferId(1), 0, 0, 4, hash_block(b"good"));
        receive_bytes(&mut h.net(), Some(&mut fake), &peer, lane, b"good!", FrameId(2));
        assert!(matches!(fake.broken.as_slice(), [_, TransferError::Protocol(_)]));
    }
}
