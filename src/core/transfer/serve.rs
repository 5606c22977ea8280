//! The holder's side of a multi-source download: a peer fetches one of our shared
//! files (never anything else) and asks for blocks; we read, check each read against
//! the hash we shared, and put the blocks on the bulk channel in the order asked, as
//! fast as the channel and the read-ahead allow. The downloader decides which blocks
//! each holder sends; a holder only serves.

use std::collections::VecDeque;

use super::blocks::{block_count, block_len, block_offset, hash_block};
use super::frame::{CancelCode, Control};
use super::{Transfer, TransferError, TransferId};
use crate::core::discovery::ShareId;
use crate::core::mesh::{Mesh, Output};
use crate::core::service::Service;
use crate::core::{Millis, PeerId};

/// Blocks one downloader may have queued with us; it keeps a few in flight per holder,
/// so more means a faulty or hostile peer.
const MAX_QUEUED_BLOCKS: usize = 64;
/// Downloads one peer may have us serve at once.
pub const MAX_SERVES_PER_PEER: usize = 16;

#[derive(Debug)]
pub(crate) struct Serving {
    pub(crate) peer: PeerId,
    pub(crate) share: ShareId,
    size: u64,
    queue: VecDeque<u32>,
    reading: Vec<u32>,
}

impl Serving {
    pub(crate) fn reading_bytes(&self) -> u64 {
        self.reading.iter().map(|b| block_len(self.size, *b)).sum()
    }
}

impl Mesh {
    /// A peer wants to download one of our shared files.
    pub(crate) fn fetch_received(&mut self, now: Millis, from: &PeerId, id: TransferId, share: ShareId, manifest: bool) {
        let Some(shared) = self.discovery.shares.get(&share) else {
            let cancel = Control::Cancel { id, code: CancelCode::NotShared, reason: format!("file {share} is not shared") };
            return self.send_control(from, &cancel);
        };
        let size = shared.file.meta.size;
        let hashes = manifest.then(|| shared.hashes.clone());
        match self.transfers.get(&id) {
            // Asked again (e.g. for the manifest): start over with what it asks next.
            Some(Transfer::Serve(s)) if s.peer == *from && s.share == share => self.end_serve(now, id),
            Some(_) => {
                let cancel = Control::Cancel { id, code: CancelCode::Protocol, reason: "transfer id already in use".into() };
                return self.send_control(from, &cancel);
            }
            None => {}
        }
        let serving_them = self.transfers.values().filter(|t| matches!(t, Transfer::Serve(s) if s.peer == *from)).count();
        if serving_them >= MAX_SERVES_PER_PEER {
            let reason = format!("already serving {MAX_SERVES_PER_PEER} downloads to you");
            return self.send_control(from, &Control::Cancel { id, code: CancelCode::Protocol, reason });
        }
        let serving = Serving { peer: from.clone(), share, size, queue: VecDeque::new(), reading: Vec::new() };
        self.transfers.insert(id, Transfer::Serve(serving));
        if let Some(hashes) = hashes {
            self.send_service(from, &Service::Manifest { transfer: id, hashes });
        }
    }

    /// The downloader asks for blocks.
    pub(crate) fn get_received(&mut self, now: Millis, from: &PeerId, id: TransferId, blocks: Vec<u32>) {
        let Some(Transfer::Serve(s)) = self.transfers.get_mut(&id) else {
            return self.warn(format!("peer {from} asked for blocks of transfer {id}, which we do not serve"));
        };
        if s.peer != *from {
            return self.warn(format!("peer {from} asked for blocks of a transfer that is not theirs"));
        }
        // Bounded before any work: a downloader keeps a few blocks in flight per holder,
        // and the queue stays small enough that checking it for repeats is cheap.
        if s.queue.len() + blocks.len() > MAX_QUEUED_BLOCKS {
            let message = format!("more than {MAX_QUEUED_BLOCKS} blocks asked for at once");
            return self.fail(now, id, TransferError::Protocol(message), true);
        }
        let count = block_count(s.size);
        for block in blocks {
            if block >= count {
                let message = format!("block {block} asked for; the file has {count}");
                return self.fail(now, id, TransferError::Protocol(message), true);
            }
            if !s.queue.contains(&block) && !s.reading.contains(&block) {
                s.queue.push_back(block);
            }
        }
        self.pump_sends(now, from);
    }

    /// Cancel or complete from the downloader: stop serving it.
    pub(crate) fn serve_control(&mut self, now: Millis, from: &PeerId, control: Control) {
        let id = control.id();
        if !matches!(self.transfers.get(&id), Some(Transfer::Serve(s)) if s.peer == *from) {
            return;
        }
        match control {
            Control::Cancel { .. } | Control::Complete { .. } => self.end_serve(now, id),
            other => self.fail(now, id, TransferError::Protocol(format!("unexpected {other:?} while serving")), true),
        }
    }

    /// Stops serving without a word (it finished, was cancelled, or the peer left),
    /// still finishing a block half on the wire.
    pub(crate) fn end_serve(&mut self, _now: Millis, id: TransferId) {
        let Some(Transfer::Serve(s)) = self.transfers.remove(&id) else { return };
        let except = self.purge_bulk(&s.peer, id);
        self.push_output(Output::ReleaseBlocks { id, except });
    }

    /// The next block to read for this serve, if any.
    pub(crate) fn next_serve_read(&mut self, id: TransferId) -> bool {
        let Some(Transfer::Serve(s)) = self.transfers.get_mut(&id) else { return false };
        let Some(block) = s.queue.pop_front() else { return false };
        s.reading.push(block);
        let (share, len) = (s.share, block_len(s.size, block));
        self.push_output(Output::ReadShared { id, share, block, offset: block_offset(block), len });
        true
    }

    /// A block of a shared file was read for a downloader.
    pub(crate) fn serve_block_read(&mut self, now: Millis, id: TransferId, block: u32, bytes: &[u8]) -> bool {
        let Some(Transfer::Serve(s)) = self.transfers.get_mut(&id) else { return false };
        let Some(at) = s.reading.iter().position(|b| *b == block) else { return false };
        s.reading.swap_remove(at);
        let (peer, share) = (s.peer.clone(), s.share);
        let hash = hash_block(bytes);
        let expected = self.discovery.shares.get(&share).and_then(|sh| sh.hashes.get(block as usize).copied());
        if expected != Some(hash) {
            // The file changed on disk since it was shared: what we would send is not
            // what we announced. Stop sharing it.
            let message = format!("shared file changed since it was shared (block {block})");
            self.discovery.shares.remove(&share);
            self.warn(format!("stopped sharing {share}: {message}"));
            self.fail(now, id, TransferError::Unreadable(message), true);
            return false;
        }
        let len = bytes.len() as u32;
        self.enqueue_block(&peer, id, block, len, true, hash);
        self.pump_sends(now, &peer);
        len > 0
    }

    /// Serves of one shared file, sorted.
    pub(crate) fn serves_of(&self, share: ShareId) -> Vec<TransferId> {
        let mut ids: Vec<_> = self.transfers.iter().filter(|(_, t)| matches!(t, Transfer::Serve(s) if s.share == share)).map(|(id, _)| *id).collect();
        ids.sort();
        ids
    }
}
