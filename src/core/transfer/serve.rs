//! The holder's side of a multi-source download: a peer fetches one of our shared
//! files (never anything else) and asks for blocks; we read, check each read against
//! the hash we shared, and put the blocks on the bulk channel in the order asked, as
//! fast as the channel and the read-ahead allow. The downloader decides which blocks
//! each holder sends; a holder only serves.

use std::collections::VecDeque;

use super::blocks::{block_count, block_len, hash_block};
use super::frame::{CancelCode, Control};
use super::{read_block, send_block, Step, TransferError, TransferId};
use crate::core::discovery::{ServedFile, ShareId};
use crate::core::net::Net;
use crate::core::output::{FileOp, FileSource, Output};
use crate::core::service::Service;
use crate::core::PeerId;

/// Blocks one downloader may have queued with us; it keeps a few in flight per holder,
/// so more means a faulty or hostile peer.
const MAX_QUEUED_BLOCKS: usize = 64;
/// Downloads one peer may have us serve at once.
pub const MAX_SERVES_PER_PEER: usize = 16;

#[derive(Debug)]
pub(crate) struct Serving {
    pub(crate) peer: PeerId,
    pub(crate) share: ShareId,
    file: ServedFile,
    queue: VecDeque<u32>,
    reading: Vec<u32>,
}

impl Serving {
    /// Starts serving `share` to `from` (already serving it `serving_them` others),
    /// sending the manifest if asked; nothing if refused.
    pub(crate) fn start(
        id: TransferId,
        net: &mut Net<'_>,
        from: &PeerId,
        share: ShareId,
        file: ServedFile,
        manifest: bool,
        serving_them: usize,
    ) -> Option<Serving> {
        if serving_them >= MAX_SERVES_PER_PEER {
            let reason = format!("already serving {MAX_SERVES_PER_PEER} downloads to you");
            net.send_control(from, &Control::Cancel { id, code: CancelCode::Protocol, reason });
            return None;
        }
        if manifest {
            net.send_service(from, &Service::Manifest { transfer: id, hashes: file.hashes.to_vec() });
        }
        Some(Serving { peer: from.clone(), share, file, queue: VecDeque::new(), reading: Vec::new() })
    }

    pub(crate) fn reading_bytes(&self) -> u64 {
        self.reading.iter().map(|b| block_len(self.file.size, *b)).sum()
    }

    /// The downloader asks for blocks.
    pub(crate) fn get(&mut self, blocks: Vec<u32>) -> Step {
        // Bounded before any work: a downloader keeps a few blocks in flight per holder,
        // and the queue stays small enough that checking it for repeats is cheap.
        if self.queue.len() + blocks.len() > MAX_QUEUED_BLOCKS {
            return Step::Fail(TransferError::Protocol(format!("more than {MAX_QUEUED_BLOCKS} blocks asked for at once")), true);
        }
        let count = block_count(self.file.size);
        for block in blocks {
            if block >= count {
                return Step::Fail(TransferError::Protocol(format!("block {block} asked for; the file has {count}")), true);
            }
            if !self.queue.contains(&block) && !self.reading.contains(&block) {
                self.queue.push_back(block);
            }
        }
        Step::Go
    }

    /// The downloader takes these blocks elsewhere: those not read yet are skipped,
    /// and one being read is not sent. Blocks already on the channel go out anyway.
    pub(crate) fn drop_blocks(&mut self, blocks: &[u32]) {
        self.queue.retain(|b| !blocks.contains(b));
        self.reading.retain(|b| !blocks.contains(b));
    }

    /// Cancel or complete from the downloader: stop serving it.
    pub(crate) fn on_control(&mut self, control: Control) -> Step {
        match control {
            Control::Cancel { .. } | Control::Complete { .. } => Step::Ended,
            other => Step::Fail(TransferError::Protocol(format!("unexpected {other:?} while serving")), true),
        }
    }

    /// Reads the next block asked for, if any.
    pub(crate) fn next_read(&mut self, id: TransferId, net: &mut Net<'_>) -> bool {
        let Some(block) = self.queue.pop_front() else { return false };
        self.reading.push(block);
        read_block(net, id, FileSource::Shared(self.share), self.file.size, block);
        true
    }

    /// A block of the shared file was read.
    pub(crate) fn block_read(&mut self, id: TransferId, net: &mut Net<'_>, block: u32, bytes: &[u8]) -> Step {
        let Some(at) = self.reading.iter().position(|b| *b == block) else {
            net.output(Output::File(FileOp::ReleaseBlock { id, block }));
            return Step::Go;
        };
        self.reading.swap_remove(at);
        let hash = hash_block(bytes);
        if self.file.hashes.get(block as usize) != Some(&hash) {
            // The file changed on disk since it was shared: what we would send is not
            // what we announced. Stop (and the mesh stops sharing it).
            let message = format!("shared file changed since it was shared (block {block})");
            net.warn(format!("stopped sharing {}: {message}", self.share));
            return Step::Fail(TransferError::Unreadable(message), true);
        }
        let len = bytes.len() as u32;
        send_block(net, &self.peer, id, block, len, true, hash);
        if len == 0 {
            net.output(Output::File(FileOp::ReleaseBlock { id, block }));
        }
        Step::Go
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testing::Harness;
    use crate::core::transfer::blocks::BLOCK_SIZE;
    use std::sync::Arc;

    fn served(blocks: u32) -> (ServedFile, Vec<u8>) {
        let bytes: Vec<u8> = (0..blocks as usize * BLOCK_SIZE as usize).map(|i| (i % 253) as u8).collect();
        let hashes: Arc<[_]> = bytes.chunks(BLOCK_SIZE as usize).map(hash_block).collect();
        (ServedFile { size: bytes.len() as u64, hashes }, bytes)
    }

    #[test]
    fn requests_are_bounded_before_any_work_and_checked_against_the_file() {
        let mut h = Harness::with_peer("b");
        let peer = h.peer();
        let id = TransferId(3);
        let (file, _) = served(4);
        let mut s = Serving::start(id, &mut h.net(), &peer, ShareId(1), file, true, 0).expect("served");
        assert!(matches!(h.sent_services(&peer).as_slice(), [Service::Manifest { hashes, .. }] if hashes.len() == 4));
        assert_eq!(s.get(vec![0, 1, 1, 0]), Step::Go);
        assert!(s.next_read(id, &mut h.net()) && s.next_read(id, &mut h.net()) && !s.next_read(id, &mut h.net()), "repeats are asked once");
        assert!(matches!(s.get(vec![4]), Step::Fail(TransferError::Protocol(_), true)));
        assert!(matches!(s.get((0..65).collect()), Step::Fail(TransferError::Protocol(m), true) if m.contains("64 blocks")));
        assert!(Serving::start(id, &mut h.net(), &peer, ShareId(1), served(1).0, false, MAX_SERVES_PER_PEER).is_none());
    }

    #[test]
    fn a_read_that_no_longer_matches_the_shared_hash_stops_the_serve() {
        let mut h = Harness::with_peer("b");
        let peer = h.peer();
        let id = TransferId(3);
        let (file, mut bytes) = served(2);
        let mut s = Serving::start(id, &mut h.net(), &peer, ShareId(1), file, false, 0).expect("served");
        s.get(vec![0, 1]);
        s.next_read(id, &mut h.net());
        s.next_read(id, &mut h.net());
        assert_eq!(s.block_read(id, &mut h.net(), 0, &bytes[..BLOCK_SIZE as usize]), Step::Go);
        assert!(!h.sent_bulk().is_empty(), "block 0 went out");
        bytes[BLOCK_SIZE as usize] ^= 1;
        let step = s.block_read(id, &mut h.net(), 1, &bytes[BLOCK_SIZE as usize..]);
        assert!(matches!(step, Step::Fail(TransferError::Unreadable(_), true)));
        assert!(h.sent_bulk().is_empty(), "nothing of the changed block went out");
    }
}
