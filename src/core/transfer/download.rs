//! Multi-source downloads: one file, by content hash, from every peer that shares it.
//!
//! The downloader fetches the block hashes (the manifest) from one holder and checks
//! them against the content hash it asked for, so every block can be verified on its
//! own as it arrives. Then it pulls: each holder has at most [`PER_SOURCE_WINDOW`]
//! blocks asked of it at a time and gets the next missing block as soon as one of its
//! blocks is verified — so faster holders serve more blocks. A holder that leaves, or
//! sends a block that does not match, loses its outstanding blocks to the others; if
//! every holder is gone the download pauses until one comes back (or fails after
//! `resume_timeout_ms`). Storage, commits and resume work as for direct transfers: a
//! partial download is kept under the same content key, and its blocks are checked
//! against the manifest before they count.

use std::collections::VecDeque;

use super::blocks::{block_count, block_len, block_offset, content_hash, content_key, hash_block, Hash, BLOCK_SIZE, MAX_FILE_SIZE};
use super::frame::Control;
use super::recv::RecvLane;
use super::{FileMeta, Partial, ProgressMeter, StoreError, Transfer, TransferError, TransferId};
use crate::core::discovery::{Hit, ShareId};
use crate::core::mesh::{Event, Mesh, Output};
use crate::core::service::Service;
use crate::core::{ConnId, Millis, PeerId, SendError};

/// Blocks asked of one holder and not yet verified.
pub(crate) const PER_SOURCE_WINDOW: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockState {
    Missing,
    /// Asked of this source.
    Assigned(usize),
    /// Verified; being committed.
    Verified,
    Committed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceState {
    /// Connected and asked.
    Live,
    /// Left; asked again if it comes back.
    Gone,
    /// Refused, or sent a bad block: not asked again.
    Failed,
}

#[derive(Debug)]
struct Source {
    peer: PeerId,
    share: ShareId,
    state: SourceState,
    assigned: Vec<u32>,
    /// Verified bytes it served.
    bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DownPhase {
    /// Waiting for the block hashes from `manifest_from`.
    Manifest,
    Probing,
    Opening,
    Receiving,
    Finishing,
}

#[derive(Debug)]
pub(crate) struct Download {
    pub(crate) meta: FileMeta,
    hash: Hash,
    phase: DownPhase,
    /// Every source is gone: wait for one until then.
    paused_until: Option<Millis>,
    manifest_from: Option<usize>,
    hashes: Vec<Hash>,
    status: Vec<BlockState>,
    /// Blocks to ask for next (may hold blocks no longer missing: skipped then).
    missing: VecDeque<u32>,
    sources: Vec<Source>,
    /// Why the last source failed (the download's error if none is left).
    last_error: Option<TransferError>,
    pub(crate) meter: ProgressMeter,
}

impl Download {
    pub(crate) fn paused_until(&self) -> Option<Millis> {
        self.paused_until
    }

    pub(crate) fn has_store(&self) -> bool {
        matches!(self.phase, DownPhase::Opening | DownPhase::Receiving | DownPhase::Finishing)
    }

    pub(crate) fn involves(&self, peer: &PeerId) -> bool {
        self.sources.iter().any(|s| s.peer == *peer && s.state != SourceState::Failed)
    }

    /// Peers to tell when it ends.
    pub(crate) fn live_peers(&self) -> Vec<PeerId> {
        self.sources.iter().filter(|s| s.state == SourceState::Live).map(|s| s.peer.clone()).collect()
    }

    /// Bytes each holder served (verified), in the order they were given.
    pub(crate) fn served(&self) -> Vec<(PeerId, u64)> {
        self.sources.iter().map(|s| (s.peer.clone(), s.bytes)).collect()
    }

    fn source_of(&self, peer: &PeerId) -> Option<usize> {
        self.sources.iter().position(|s| s.peer == *peer && s.state == SourceState::Live)
    }

    /// Whether `block` is asked of `peer` now, which is live (the only way its bytes
    /// may be stored: see the write invariant in `Mesh::handle_bulk_frame`).
    pub(crate) fn assigned_to(&self, peer: &PeerId, block: u32) -> bool {
        self.source_of(peer).is_some_and(|ix| self.status.get(block as usize) == Some(&BlockState::Assigned(ix)))
    }

    fn done_bytes(&self) -> u64 {
        let size = self.meta.size;
        (0..self.status.len() as u32)
            .filter(|&b| matches!(self.status[b as usize], BlockState::Verified | BlockState::Committed))
            .map(|b| block_len(size, b))
            .sum()
    }

    /// Gives a source's outstanding blocks back to the others.
    fn release(&mut self, ix: usize) {
        for block in std::mem::take(&mut self.sources[ix].assigned).into_iter().rev() {
            if self.status[block as usize] == BlockState::Assigned(ix) {
                self.status[block as usize] = BlockState::Missing;
                self.missing.push_front(block);
            }
        }
    }
}

impl Mesh {
    /// Downloads the content `hash` (`meta.size` bytes) from every listed holder
    /// (peer and its share id) at once. Fails like [`Mesh::send`] if none of them is
    /// connected. Progress, pause, resume, done and failure come as for any transfer.
    pub fn download(&mut self, now: Millis, meta: FileMeta, hash: Hash, holders: &[(PeerId, ShareId)]) -> Result<TransferId, SendError> {
        if self.is_closed() {
            return Err(SendError::Closed);
        }
        let mut sources: Vec<Source> = Vec::new();
        for (peer, share) in holders {
            if !sources.iter().any(|s| s.peer == *peer) {
                let state = if self.is_open(peer) { SourceState::Live } else { SourceState::Gone };
                sources.push(Source { peer: peer.clone(), share: *share, state, assigned: Vec::new(), bytes: 0 });
            }
        }
        let Some(first) = sources.iter().position(|s| s.state == SourceState::Live) else {
            let peer = holders.first().map_or_else(|| PeerId::new(""), |(p, _)| p.clone());
            return Err(SendError::NotConnected(peer));
        };
        if meta.size > MAX_FILE_SIZE {
            return Err(SendError::TooLarge { size: meta.size, max: MAX_FILE_SIZE });
        }
        let id = self.new_transfer_id();
        let mut meter = ProgressMeter::default();
        meter.set(now, 0);
        let download = Download {
            meta,
            hash,
            phase: DownPhase::Manifest,
            paused_until: None,
            manifest_from: Some(first),
            hashes: Vec::new(),
            status: Vec::new(),
            missing: VecDeque::new(),
            sources,
            last_error: None,
            meter,
        };
        let fetches: Vec<_> = download
            .sources
            .iter()
            .enumerate()
            .filter(|(_, s)| s.state == SourceState::Live)
            .map(|(ix, s)| (s.peer.clone(), Service::Fetch { transfer: id, share: s.share.0, manifest: ix == first }))
            .collect();
        self.transfers.insert(id, Transfer::Down(download));
        for (peer, fetch) in fetches {
            self.send_service(&peer, &fetch);
        }
        Ok(id)
    }

    /// Downloads what a query found: the first hit's content, from every hit with
    /// that content (the same hash and size; other bytes under the same name are
    /// another file and are left out). Fails like [`Mesh::download`].
    pub fn download_hits(&mut self, now: Millis, hits: &[Hit]) -> Result<TransferId, SendError> {
        let Some(first) = hits.first() else { return Err(SendError::NotConnected(PeerId::new(""))) };
        let holders: Vec<_> =
            hits.iter().filter(|h| h.hash == first.hash && h.meta.size == first.meta.size).map(|h| (h.peer.clone(), h.id)).collect();
        self.download(now, first.meta.clone(), first.hash, &holders)
    }

    /// Bytes each holder of a download served so far (verified), in the order given.
    pub fn download_sources(&self, id: TransferId) -> Option<Vec<(PeerId, u64)>> {
        match self.transfers.get(&id) {
            Some(Transfer::Down(d)) => Some(d.served()),
            _ => None,
        }
    }

    pub(crate) fn manifest_received(&mut self, now: Millis, from: &PeerId, id: TransferId, hashes: Vec<Hash>) {
        let Some(Transfer::Down(d)) = self.transfers.get_mut(&id) else { return };
        let Some(ix) = d.source_of(from) else { return };
        if d.phase != DownPhase::Manifest || d.manifest_from != Some(ix) {
            return;
        }
        let size = d.meta.size;
        if hashes.len() as u64 != u64::from(block_count(size)) || content_hash(size, &hashes) != d.hash {
            let error = TransferError::HashMismatch(format!("the block hashes from {from} do not match the content hash"));
            return self.source_failed(now, id, ix, error, true);
        }
        let head = hashes.first().copied().unwrap_or_else(|| hash_block(&[]));
        d.status = vec![BlockState::Missing; hashes.len()];
        d.hashes = hashes;
        d.phase = DownPhase::Probing;
        let key = content_key(size, &head);
        self.push_output(Output::ProbeStore { id, key });
    }

    pub(crate) fn download_probed(&mut self, now: Millis, id: TransferId, partial: Option<Partial>) {
        let Some(Transfer::Down(d)) = self.transfers.get_mut(&id) else { return };
        if d.phase != DownPhase::Probing {
            return;
        }
        // Kept blocks count only if they are the blocks of this content.
        for (block, hash) in partial.map(|p| p.blocks).unwrap_or_default() {
            if d.hashes.get(block as usize) == Some(&hash) {
                d.status[block as usize] = BlockState::Committed;
            }
        }
        let have = d.done_bytes();
        d.meter.set(now, have);
        d.meter.restart();
        d.phase = DownPhase::Opening;
        let head = d.hashes.first().copied().unwrap_or_else(|| hash_block(&[]));
        let key = content_key(d.meta.size, &head);
        // No sender to resume with by itself: any holder will do next time.
        let output = Output::OpenStore { id, key, from: None, meta: d.meta.clone() };
        self.push_output(output);
    }

    pub(crate) fn download_opened(&mut self, now: Millis, id: TransferId, result: Result<(), StoreError>) {
        let Some(Transfer::Down(d)) = self.transfers.get_mut(&id) else { return };
        if d.phase != DownPhase::Opening {
            return;
        }
        if let Err(err) = result {
            return self.fail(now, id, super::recv::store_error(err), true);
        }
        d.phase = DownPhase::Receiving;
        d.missing = (0..d.status.len() as u32).filter(|&b| d.status[b as usize] == BlockState::Missing).collect();
        self.schedule(now, id);
        self.maybe_finish_download(now, id);
    }

    /// Asks every live source for blocks until its window is full.
    fn schedule(&mut self, _now: Millis, id: TransferId) {
        let Some(Transfer::Down(d)) = self.transfers.get_mut(&id) else { return };
        if d.phase != DownPhase::Receiving || d.paused_until.is_some() {
            return;
        }
        let mut gets = Vec::new();
        for ix in 0..d.sources.len() {
            if d.sources[ix].state != SourceState::Live {
                continue;
            }
            let mut asked = Vec::new();
            while d.sources[ix].assigned.len() < PER_SOURCE_WINDOW {
                let Some(block) = d.missing.pop_front() else { break };
                if d.status[block as usize] != BlockState::Missing {
                    continue;
                }
                d.status[block as usize] = BlockState::Assigned(ix);
                d.sources[ix].assigned.push(block);
                asked.push(block);
            }
            if !asked.is_empty() {
                gets.push((d.sources[ix].peer.clone(), Service::Get { transfer: id, blocks: asked }));
            }
        }
        for (peer, get) in gets {
            self.send_service(&peer, &get);
        }
    }

    /// A block header from a holder: receive its bytes if we asked it for that block
    /// and the hash is the manifest's.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn download_header(&mut self, now: Millis, conn: ConnId, from: &PeerId, id: TransferId, block: u32, len: u32, data: bool, hash: Hash) {
        let skip = |mesh: &mut Mesh| {
            if data && len > 0 {
                if let Some(lane) = mesh.recv_lane(conn) {
                    *lane = RecvLane::Skip { remaining: u64::from(len).min(BLOCK_SIZE) };
                }
            }
        };
        let Some(Transfer::Down(d)) = self.transfers.get_mut(&id) else { return skip(self) };
        let Some(ix) = d.source_of(from) else { return skip(self) };
        if d.phase != DownPhase::Receiving || d.status.get(block as usize) != Some(&BlockState::Assigned(ix)) || !data {
            return skip(self); // no longer asked of it (given to another, or done)
        }
        let expected_len = block_len(d.meta.size, block);
        if u64::from(len) != expected_len {
            skip(self);
            let error = TransferError::Protocol(format!("block {block} from {from} has length {len}, expected {expected_len}"));
            return self.source_failed(now, id, ix, error, true);
        }
        if hash != d.hashes[block as usize] {
            skip(self);
            let error = TransferError::HashMismatch(format!("block {block} from {from} does not match its hash"));
            return self.source_failed(now, id, ix, error, true);
        }
        let hasher = Box::new(blake3::Hasher::new());
        if let Some(lane) = self.recv_lane(conn) {
            *lane = RecvLane::Block { id, block, offset: block_offset(block), remaining: u64::from(len), hasher, expected: hash };
        }
    }

    /// The last bytes of a block from `from` arrived and hashed to `digest`, the
    /// manifest's hash for it (checked with its header and again by the lane).
    pub(crate) fn download_block_done(&mut self, now: Millis, from: &PeerId, id: TransferId, block: u32, digest: Hash) {
        let Some(Transfer::Down(d)) = self.transfers.get_mut(&id) else { return };
        let Some(ix) = d.source_of(from) else { return };
        if d.hashes.get(block as usize) != Some(&digest) {
            let error = TransferError::HashMismatch(format!("block {block} from {from} does not match its hash"));
            return self.source_failed(now, id, ix, error, true);
        }
        d.status[block as usize] = BlockState::Verified;
        d.sources[ix].assigned.retain(|b| *b != block);
        d.sources[ix].bytes += block_len(d.meta.size, block);
        self.push_output(Output::CommitBlock { id, block, hash: digest });
        self.schedule(now, id);
    }

    /// A holder broke the block it was sending (overran it, or it did not match).
    pub(crate) fn download_holder_failed(&mut self, now: Millis, from: &PeerId, id: TransferId, error: TransferError) {
        let Some(Transfer::Down(d)) = self.transfers.get(&id) else { return };
        if let Some(ix) = d.source_of(from) {
            self.source_failed(now, id, ix, error, true);
        }
    }

    pub(crate) fn download_committed(&mut self, now: Millis, id: TransferId, block: u32) {
        let Some(Transfer::Down(d)) = self.transfers.get_mut(&id) else { return };
        if d.status.get(block as usize) == Some(&BlockState::Verified) {
            d.status[block as usize] = BlockState::Committed;
            self.maybe_finish_download(now, id);
        }
    }

    fn maybe_finish_download(&mut self, now: Millis, id: TransferId) {
        let Some(Transfer::Down(d)) = self.transfers.get_mut(&id) else { return };
        if d.phase != DownPhase::Receiving || d.status.iter().any(|s| *s != BlockState::Committed) {
            return;
        }
        // Every block matched the manifest, which matched the content hash; checked
        // once more over what was committed.
        if content_hash(d.meta.size, &d.hashes) != d.hash {
            return self.fail(now, id, TransferError::HashMismatch("the file does not match its content hash".into()), true);
        }
        d.phase = DownPhase::Finishing;
        self.push_output(Output::FinishStore { id });
    }

    pub(crate) fn download_finished(&mut self, now: Millis, id: TransferId, result: Result<(), StoreError>) {
        let Some(Transfer::Down(d)) = self.transfers.get_mut(&id) else { return };
        if d.phase != DownPhase::Finishing {
            return;
        }
        if let Err(err) = result {
            return self.fail(now, id, super::recv::store_error(err), true);
        }
        d.meter.set(now, d.meta.size);
        self.report_progress(now, id, true);
        let Some(Transfer::Down(d)) = self.transfers.remove(&id) else { return };
        for peer in d.live_peers() {
            self.send_control(&peer, &Control::Complete { id });
        }
        self.emit(Event::TransferDone { id, hash: d.hash });
    }

    /// A holder refused, failed or cheated: it serves no more of this download.
    fn source_failed(&mut self, now: Millis, id: TransferId, ix: usize, error: TransferError, tell: bool) {
        let Some(Transfer::Down(d)) = self.transfers.get_mut(&id) else { return };
        let peer = d.sources[ix].peer.clone();
        d.sources[ix].state = SourceState::Failed;
        d.release(ix);
        self.warn(format!("download {id}: holder {peer} dropped: {error}"));
        if tell {
            let (code, reason) = error.wire();
            self.send_control(&peer, &Control::Cancel { id, code, reason });
        }
        if let Some(Transfer::Down(d)) = self.transfers.get_mut(&id) {
            d.last_error = Some(error);
        }
        self.sources_changed(now, id);
    }

    /// A holder left: its blocks go to the others; it is asked again if it returns.
    pub(crate) fn source_left(&mut self, now: Millis, id: TransferId, peer: &PeerId) {
        let Some(Transfer::Down(d)) = self.transfers.get_mut(&id) else { return };
        let Some(ix) = d.source_of(peer) else { return };
        d.sources[ix].state = SourceState::Gone;
        d.release(ix);
        self.sources_changed(now, id);
    }

    /// After losing a source: carry on with the others, pause, or fail.
    fn sources_changed(&mut self, now: Millis, id: TransferId) {
        let resume_timeout = self.config.resume_timeout_ms;
        let Some(Transfer::Down(d)) = self.transfers.get_mut(&id) else { return };
        let live = d.sources.iter().position(|s| s.state == SourceState::Live);
        let gone = d.sources.iter().any(|s| s.state == SourceState::Gone);
        let done = d.done_bytes();
        d.meter.set(now, done);
        match live {
            Some(first) => {
                if d.phase == DownPhase::Manifest && d.manifest_from.is_none_or(|m| d.sources[m].state != SourceState::Live) {
                    d.manifest_from = Some(first);
                    let fetch = Service::Fetch { transfer: id, share: d.sources[first].share.0, manifest: true };
                    let peer = d.sources[first].peer.clone();
                    self.send_service(&peer, &fetch);
                }
                self.schedule(now, id);
            }
            None if gone => {
                if d.paused_until.is_none() {
                    d.paused_until = Some(now + resume_timeout);
                    d.meter.restart();
                    self.emit(Event::TransferPaused { id });
                }
            }
            None => {
                let error = d.last_error.clone().unwrap_or(TransferError::PeerLeft(0));
                self.fail(now, id, error, false);
            }
        }
    }

    /// A peer (re)joined: downloads it is a holder of ask it again.
    pub(crate) fn sources_rejoined(&mut self, now: Millis, peer: &PeerId) {
        let mut ids: Vec<_> = self
            .transfers
            .iter()
            .filter(|(_, t)| matches!(t, Transfer::Down(d) if d.sources.iter().any(|s| s.peer == *peer && s.state == SourceState::Gone)))
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        for id in ids {
            let Some(Transfer::Down(d)) = self.transfers.get_mut(&id) else { continue };
            let Some(ix) = d.sources.iter().position(|s| s.peer == *peer) else { continue };
            d.sources[ix].state = SourceState::Live;
            let needs_manifest = d.phase == DownPhase::Manifest && d.manifest_from.is_none_or(|m| d.sources[m].state != SourceState::Live);
            if needs_manifest {
                d.manifest_from = Some(ix);
            }
            let fetch = Service::Fetch { transfer: id, share: d.sources[ix].share.0, manifest: needs_manifest };
            let resumed = d.paused_until.take().is_some();
            self.send_service(peer, &fetch);
            if resumed {
                self.emit(Event::TransferResumed { id });
            }
            self.schedule(now, id);
        }
    }

    /// A cancel from one of the holders.
    pub(crate) fn download_control(&mut self, now: Millis, from: &PeerId, control: Control) {
        let id = control.id();
        let Some(Transfer::Down(d)) = self.transfers.get(&id) else { return };
        let Some(ix) = d.source_of(from) else { return };
        match control {
            Control::Cancel { code, reason, .. } => self.source_failed(now, id, ix, TransferError::from_wire(code, reason), false),
            other => {
                let error = TransferError::Protocol(format!("unexpected {other:?} from a holder"));
                self.source_failed(now, id, ix, error, true);
            }
        }
    }
}
