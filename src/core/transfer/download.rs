//! Multi-source downloads: one file, by content hash, from every peer that shares it.
//!
//! The downloader fetches the block hashes (the manifest) from one holder and checks
//! them against the content hash it asked for, so every block can be verified on its
//! own as it arrives. Then it pulls: each holder has at most [`PER_SOURCE_WINDOW`]
//! blocks asked of it at a time and gets the next missing block as soon as one of its
//! blocks is verified — so faster holders serve more blocks. A holder that leaves, or
//! sends a block that does not match, loses its outstanding blocks to the others; if
//! every holder is gone the download pauses until one comes back (or fails after
//! `resume_timeout_ms`). Blocks arrive through the one receive path (`receive.rs`);
//! storage, commits and resume work as for direct transfers: a partial download is
//! kept under the same content key, and its blocks are checked against the manifest
//! before they count.

use std::collections::VecDeque;

use super::blocks::{block_count, block_len, block_offset, content_hash, content_key, hash_block, resumable, Hash, MAX_FILE_SIZE};
use super::frame::Control;
use super::receive::{Broken, Header, Receiving};
use super::{store_error, FileMeta, Partial, ProgressMeter, Step, StoreError, TransferError, TransferId};
use crate::core::discovery::ShareId;
use crate::core::net::Net;
use crate::core::output::{Event, Output, StoreOp};
use crate::core::service::Service;
use crate::core::{Millis, PeerId, SendError};

/// Blocks asked of one holder and not yet verified.
pub(crate) const PER_SOURCE_WINDOW: usize = 4;
/// A holder with blocks outstanding that verifies none for this long is dropped (its
/// blocks go to the others); if it was the last, the download fails.
pub const STALLED_HOLDER_MS: u64 = 15_000;

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
    /// When it last verified a block, or was given work while it had none.
    progress_at: Millis,
    /// Its recent rate, bytes per ms (from the time each verified block took).
    rate: Option<f64>,
}

impl Source {
    /// When it will have served what it was asked, at its rate (never, if it has none).
    /// Its blocks come one after another, so the first has been under way since
    /// `progress_at`: moving a block its holder has mostly sent would only start it
    /// over elsewhere. One overdue by the rate still counts as a whole block.
    fn busy_until(&self, now: Millis, block_bytes: u64) -> f64 {
        match self.rate {
            Some(rate) if rate > 0.0 => {
                let block_ms = block_bytes as f64 / rate;
                let under_way = now.0.saturating_sub(self.progress_at.0) as f64;
                let done = if self.assigned.is_empty() || under_way >= block_ms { 0.0 } else { under_way };
                now.0 as f64 + self.assigned.len() as f64 * block_ms - done
            }
            _ => f64::INFINITY,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DownPhase {
    /// Waiting for the block hashes from `manifest_from`.
    Manifest,
    Probing,
    /// Storage is open or opening (the driver performs store operations in order, so
    /// blocks may be written before it reports the open).
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
    /// A download of the content `hash` (`meta.size` bytes) from every listed holder;
    /// fails like a send if none of them is connected.
    pub(crate) fn start(id: TransferId, net: &mut Net<'_>, meta: FileMeta, hash: Hash, holders: &[(PeerId, ShareId)]) -> Result<Download, SendError> {
        let mut sources: Vec<Source> = Vec::new();
        for (peer, share) in holders {
            if !sources.iter().any(|s| s.peer == *peer) {
                let state = if net.is_open(peer) { SourceState::Live } else { SourceState::Gone };
                sources.push(Source { peer: peer.clone(), share: *share, state, assigned: Vec::new(), bytes: 0, progress_at: net.now, rate: None });
            }
        }
        let Some(first) = sources.iter().position(|s| s.state == SourceState::Live) else {
            let peer = holders.first().map_or_else(|| PeerId::new(""), |(p, _)| p.clone());
            return Err(SendError::NotConnected(peer));
        };
        if meta.size > MAX_FILE_SIZE {
            return Err(SendError::TooLarge { size: meta.size, max: MAX_FILE_SIZE });
        }
        let mut meter = ProgressMeter::default();
        meter.set(net.now, 0);
        for (ix, source) in sources.iter().enumerate().filter(|(_, s)| s.state == SourceState::Live) {
            net.send_service(&source.peer, &Service::Fetch { transfer: id, share: source.share.0, manifest: ix == first });
        }
        Ok(Download {
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
        })
    }

    pub(crate) fn paused_until(&self) -> Option<Millis> {
        self.paused_until
    }

    /// When a holder with blocks outstanding counts as stalled, if none has yet.
    pub(crate) fn stall_check(&self) -> Option<Millis> {
        if self.phase != DownPhase::Receiving {
            return None;
        }
        self.sources.iter().filter(|s| s.state == SourceState::Live && !s.assigned.is_empty()).map(|s| s.progress_at + STALLED_HOLDER_MS).min()
    }

    /// Drops the holders that stalled: their blocks go to the others.
    pub(crate) fn drop_stalled(&mut self, id: TransferId, net: &mut Net<'_>) -> Step {
        let now = net.now;
        let stalled: Vec<usize> = (0..self.sources.len())
            .filter(|&ix| {
                let s = &self.sources[ix];
                s.state == SourceState::Live && !s.assigned.is_empty() && now >= s.progress_at + STALLED_HOLDER_MS
            })
            .collect();
        let mut step = Step::Go;
        for ix in stalled {
            step = self.source_failed(id, net, ix, TransferError::Stalled(STALLED_HOLDER_MS), true);
            if step != Step::Go {
                return step;
            }
        }
        step
    }

    pub(crate) fn has_store(&self) -> bool {
        matches!(self.phase, DownPhase::Receiving | DownPhase::Finishing)
    }

    pub(crate) fn involves(&self, peer: &PeerId) -> bool {
        self.sources.iter().any(|s| s.peer == *peer && s.state != SourceState::Failed)
    }

    /// Whether `peer` is a holder that left (and is asked again when it is back).
    pub(crate) fn gone(&self, peer: &PeerId) -> bool {
        self.sources.iter().any(|s| s.peer == *peer && s.state == SourceState::Gone)
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

    /// A holder's block hashes: checked against the content hash asked for.
    pub(crate) fn manifest(&mut self, id: TransferId, net: &mut Net<'_>, from: &PeerId, hashes: Vec<Hash>) -> Step {
        let Some(ix) = self.source_of(from) else { return Step::Go };
        if self.phase != DownPhase::Manifest || self.manifest_from != Some(ix) {
            return Step::Go;
        }
        let size = self.meta.size;
        if hashes.len() as u64 != u64::from(block_count(size)) || content_hash(size, &hashes) != self.hash {
            let error = TransferError::HashMismatch(format!("the block hashes from {from} do not match the content hash"));
            return self.source_failed(id, net, ix, error, true);
        }
        let head = hashes.first().copied().unwrap_or_else(|| hash_block(&[]));
        self.status = vec![BlockState::Missing; hashes.len()];
        self.hashes = hashes;
        self.phase = DownPhase::Probing;
        if !resumable(size) {
            // Nothing of it can be kept: open at once, as if the probe found nothing.
            return self.probed(id, net, None);
        }
        net.output(Output::Store(StoreOp::Probe { id, key: content_key(size, &head) }));
        Step::Go
    }

    pub(crate) fn probed(&mut self, id: TransferId, net: &mut Net<'_>, partial: Option<Partial>) -> Step {
        if self.phase != DownPhase::Probing {
            return Step::Go;
        }
        // Kept blocks count only if they are the blocks of this content.
        for (block, hash) in partial.map(|p| p.blocks).unwrap_or_default() {
            if self.hashes.get(block as usize) == Some(&hash) {
                self.status[block as usize] = BlockState::Committed;
            }
        }
        self.meter.set(net.now, self.done_bytes());
        self.meter.restart();
        self.phase = DownPhase::Receiving;
        let head = self.hashes.first().copied().unwrap_or_else(|| hash_block(&[]));
        let key = content_key(self.meta.size, &head);
        // No sender to resume with by itself: any holder will do next time.
        let durable = resumable(self.meta.size);
        net.output(Output::Store(StoreOp::Open { id, key, from: None, meta: self.meta.clone(), durable }));
        // Blocks are asked for at once, not after the open (a few ms of the storage
        // worker): they are written after it in any case.
        self.missing = (0..self.status.len() as u32).filter(|&b| self.status[b as usize] == BlockState::Missing).collect();
        self.schedule(id, net);
        self.maybe_finish(id, net)
    }

    /// Storage opened, or could not: then the download fails.
    pub(crate) fn opened(&mut self, result: Result<(), StoreError>) -> Step {
        match result {
            Err(err) if self.has_store() => Step::Fail(store_error(err), true),
            _ => Step::Go,
        }
    }

    /// Asks every live source for blocks until its window is full; in the end game
    /// (nothing left to ask for), an idle holder takes the last block of a slower one.
    fn schedule(&mut self, id: TransferId, net: &mut Net<'_>) {
        if self.phase != DownPhase::Receiving || self.paused_until.is_some() {
            return;
        }
        for ix in 0..self.sources.len() {
            if self.sources[ix].state != SourceState::Live {
                continue;
            }
            let mut asked = Vec::new();
            while self.sources[ix].assigned.len() < PER_SOURCE_WINDOW {
                let Some(block) = self.missing.pop_front() else { break };
                if self.status[block as usize] != BlockState::Missing {
                    continue;
                }
                self.assign(net.now, ix, block);
                asked.push(block);
            }
            if !asked.is_empty() {
                net.send_service(&self.sources[ix].peer, &Service::Get { transfer: id, blocks: asked });
            }
        }
        // Each step moves a block to a faster holder, so this ends; bounded all the same.
        let end_game = self.missing.iter().all(|b| self.status[*b as usize] != BlockState::Missing);
        for _ in 0..if end_game { self.sources.len() * PER_SOURCE_WINDOW } else { 0 } {
            if !self.end_game_step(id, net) {
                break;
            }
        }
    }

    fn assign(&mut self, now: Millis, ix: usize, block: u32) {
        let source = &mut self.sources[ix];
        if source.assigned.is_empty() {
            source.progress_at = now; // idle until now: its clock starts with the work
        }
        self.status[block as usize] = BlockState::Assigned(ix);
        source.assigned.push(block);
    }

    /// Moves one block from the holder that will finish last to an idle holder that
    /// would have it sooner; the slow one is told to drop it (bytes of it that still
    /// arrive are not its to write any more). Returns whether it moved one.
    fn end_game_step(&mut self, id: TransferId, net: &mut Net<'_>) -> bool {
        let now = net.now;
        let block_bytes = super::blocks::BLOCK_SIZE;
        let live = |s: &Source| s.state == SourceState::Live;
        let Some(idle) = (0..self.sources.len())
            .filter(|&ix| live(&self.sources[ix]) && self.sources[ix].assigned.is_empty() && self.sources[ix].rate.is_some())
            .max_by(|&a, &b| self.sources[a].rate.partial_cmp(&self.sources[b].rate).unwrap_or(std::cmp::Ordering::Equal))
        else {
            return false;
        };
        let Some(slow) =
            (0..self.sources.len()).filter(|&ix| ix != idle && live(&self.sources[ix]) && !self.sources[ix].assigned.is_empty()).max_by(|&a, &b| {
                self.sources[a]
                    .busy_until(now, block_bytes)
                    .partial_cmp(&self.sources[b].busy_until(now, block_bytes))
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
        else {
            return false;
        };
        let idle_done = self.sources[idle].busy_until(now, block_bytes) + block_bytes as f64 / self.sources[idle].rate.unwrap_or(f64::MIN_POSITIVE);
        if idle_done >= self.sources[slow].busy_until(now, block_bytes) {
            return false;
        }
        let Some(block) = self.sources[slow].assigned.pop() else { return false };
        self.assign(now, idle, block);
        net.send_service(&self.sources[slow].peer, &Service::Drop { transfer: id, blocks: vec![block] });
        net.send_service(&self.sources[idle].peer, &Service::Get { transfer: id, blocks: vec![block] });
        true
    }

    pub(crate) fn committed(&mut self, id: TransferId, net: &mut Net<'_>, block: u32) -> Step {
        if self.status.get(block as usize) != Some(&BlockState::Verified) {
            return Step::Go;
        }
        self.status[block as usize] = BlockState::Committed;
        self.maybe_finish(id, net)
    }

    fn maybe_finish(&mut self, id: TransferId, net: &mut Net<'_>) -> Step {
        if self.phase != DownPhase::Receiving || self.status.iter().any(|s| *s != BlockState::Committed) {
            return Step::Go;
        }
        self.phase = DownPhase::Finishing;
        net.output(Output::Store(StoreOp::Finish { id }));
        Step::Go
    }

    pub(crate) fn finished(&mut self, id: TransferId, net: &mut Net<'_>, result: Result<(), StoreError>) -> Step {
        if self.phase != DownPhase::Finishing {
            return Step::Go;
        }
        if let Err(err) = result {
            return Step::Fail(store_error(err), true);
        }
        self.meter.set(net.now, self.meta.size);
        for peer in self.live_peers() {
            net.send_control(&peer, &Control::Complete { id });
        }
        Step::Done(self.hash)
    }

    /// A holder refused, failed or cheated: it serves no more of this download.
    fn source_failed(&mut self, id: TransferId, net: &mut Net<'_>, ix: usize, error: TransferError, tell: bool) -> Step {
        let peer = self.sources[ix].peer.clone();
        self.sources[ix].state = SourceState::Failed;
        self.release(ix);
        net.warn(format!("download {id}: holder {peer} dropped: {error}"));
        if tell {
            let (code, reason) = error.wire();
            net.send_control(&peer, &Control::Cancel { id, code, reason });
        }
        self.last_error = Some(error);
        self.sources_changed(id, net)
    }

    /// A holder left: its blocks go to the others; it is asked again if it returns.
    pub(crate) fn source_left(&mut self, id: TransferId, net: &mut Net<'_>, peer: &PeerId) -> Step {
        let Some(ix) = self.source_of(peer) else { return Step::Go };
        self.sources[ix].state = SourceState::Gone;
        self.release(ix);
        self.sources_changed(id, net)
    }

    /// After losing a source: carry on with the others, pause, or fail.
    fn sources_changed(&mut self, id: TransferId, net: &mut Net<'_>) -> Step {
        let live = self.sources.iter().position(|s| s.state == SourceState::Live);
        let gone = self.sources.iter().any(|s| s.state == SourceState::Gone);
        self.meter.set(net.now, self.done_bytes());
        match live {
            Some(first) => {
                if self.phase == DownPhase::Manifest && self.manifest_from.is_none_or(|m| self.sources[m].state != SourceState::Live) {
                    self.manifest_from = Some(first);
                    let fetch = Service::Fetch { transfer: id, share: self.sources[first].share.0, manifest: true };
                    net.send_service(&self.sources[first].peer, &fetch);
                }
                self.schedule(id, net);
                Step::Go
            }
            None if gone => {
                if self.paused_until.is_none() {
                    self.paused_until = Some(net.now + net.config.resume_timeout_ms);
                    self.meter.restart();
                    net.emit(Event::TransferPaused { id });
                }
                Step::Go
            }
            None => Step::Fail(self.last_error.clone().unwrap_or(TransferError::PeerLeft(0)), false),
        }
    }

    /// A holder that had left is back: ask it again.
    pub(crate) fn source_back(&mut self, id: TransferId, net: &mut Net<'_>, peer: &PeerId) -> Step {
        let Some(ix) = self.sources.iter().position(|s| s.peer == *peer && s.state == SourceState::Gone) else { return Step::Go };
        self.sources[ix].state = SourceState::Live;
        let needs_manifest = self.phase == DownPhase::Manifest && self.manifest_from.is_none_or(|m| self.sources[m].state != SourceState::Live);
        if needs_manifest {
            self.manifest_from = Some(ix);
        }
        net.send_service(peer, &Service::Fetch { transfer: id, share: self.sources[ix].share.0, manifest: needs_manifest });
        if self.paused_until.take().is_some() {
            net.emit(Event::TransferResumed { id });
        }
        self.schedule(id, net);
        Step::Go
    }

    /// A control frame from one of the holders: a cancel drops it; anything else is a
    /// protocol error that drops it too.
    pub(crate) fn on_control(&mut self, id: TransferId, net: &mut Net<'_>, from: &PeerId, control: Control) -> Step {
        let Some(ix) = self.source_of(from) else { return Step::Go };
        match control {
            Control::Cancel { code, reason, .. } => self.source_failed(id, net, ix, TransferError::from_wire(code, reason), false),
            other => self.source_failed(id, net, ix, TransferError::Protocol(format!("unexpected {other:?} from a holder")), true),
        }
    }
}

impl Receiving for Download {
    /// A block header from a holder: received if we asked it for that block and the
    /// hash is the manifest's.
    fn header(&mut self, peer: &PeerId, block: u32, len: u32, hash: Hash) -> Header {
        let Some(ix) = self.source_of(peer) else { return Header::Skip };
        if self.phase != DownPhase::Receiving || self.status.get(block as usize) != Some(&BlockState::Assigned(ix)) {
            return Header::Skip; // no longer asked of it (given to another, or done)
        }
        let expected = block_len(self.meta.size, block);
        if u64::from(len) != expected {
            return Header::Broken(TransferError::Protocol(format!("block {block} from {peer} has length {len}, expected {expected}")));
        }
        if hash != self.hashes[block as usize] {
            return Header::Broken(TransferError::HashMismatch(format!("block {block} from {peer} does not match its hash")));
        }
        Header::Receive { offset: block_offset(block) }
    }

    fn owns(&self, peer: &PeerId, block: u32) -> bool {
        self.source_of(peer).is_some_and(|ix| self.status.get(block as usize) == Some(&BlockState::Assigned(ix)))
    }

    fn meter(&mut self) -> &mut ProgressMeter {
        &mut self.meter
    }

    fn verified(&mut self, net: &mut Net<'_>, id: TransferId, peer: &PeerId, block: u32, digest: Hash) {
        let Some(ix) = self.source_of(peer) else { return };
        self.status[block as usize] = BlockState::Verified;
        let len = block_len(self.meta.size, block);
        let source = &mut self.sources[ix];
        source.assigned.retain(|b| *b != block);
        source.bytes += len;
        // Blocks come one after another from a holder: the time since its last one (or
        // since it got work) is what this one took.
        let took = net.now.0.saturating_sub(source.progress_at.0).max(1);
        let rate = len as f64 / took as f64;
        source.rate = Some(source.rate.map_or(rate, |r| 0.5 * r + 0.5 * rate));
        source.progress_at = net.now;
        net.output(Output::Store(StoreOp::Commit { id, block, hash: digest }));
        self.schedule(id, net);
    }

    fn broken(&mut self, net: &mut Net<'_>, id: TransferId, peer: &PeerId, error: TransferError) -> Broken {
        let Some(ix) = self.source_of(peer) else { return Broken::Continue };
        match self.source_failed(id, net, ix, error, true) {
            Step::Fail(error, _) => Broken::Fail(error),
            _ => Broken::Continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testing::Harness;
    use crate::core::transfer::blocks::BLOCK_SIZE;

    fn hashes(n: u32) -> Vec<Hash> {
        (0..n).map(|i| hash_block(&i.to_be_bytes())).collect()
    }

    /// A download of 10 blocks from the harness's one peer, its manifest in and its
    /// storage opening (not reported open: blocks are asked for at once).
    fn receiving(h: &mut Harness) -> (TransferId, Download, Vec<Hash>) {
        let peer = h.peer();
        let manifest = hashes(10);
        let meta = FileMeta { name: "f".into(), size: 10 * BLOCK_SIZE, mime: String::new() };
        let id = TransferId(4);
        let mut d =
            Download::start(id, &mut h.net(), meta, content_hash(10 * BLOCK_SIZE, &manifest), &[(peer.clone(), ShareId(1))]).expect("started");
        assert_eq!(d.manifest(id, &mut h.net(), &peer, manifest.clone()), Step::Go);
        d.probed(id, &mut h.net(), None);
        (id, d, manifest)
    }

    #[test]
    fn a_holder_is_asked_a_window_of_blocks_and_the_next_as_each_verifies() {
        let mut h = Harness::with_peer("b");
        let peer = h.peer();
        let (id, mut d, manifest) = receiving(&mut h);
        let gets: Vec<_> =
            h.sent_services(&peer).into_iter().filter_map(|s| if let Service::Get { blocks, .. } = s { Some(blocks) } else { None }).collect();
        assert_eq!(gets, vec![vec![0, 1, 2, 3]]);
        assert_eq!(d.header(&peer, 5, BLOCK_SIZE as u32, manifest[5]), Header::Skip, "not asked of it");
        assert!(matches!(d.header(&peer, 0, BLOCK_SIZE as u32, manifest[1]), Header::Broken(TransferError::HashMismatch(_))));
        assert_eq!(d.header(&peer, 1, BLOCK_SIZE as u32, manifest[1]), Header::Receive { offset: BLOCK_SIZE });
        d.verified(&mut h.net(), id, &peer, 1, manifest[1]);
        assert!(!d.owns(&peer, 1));
        let gets: Vec<_> =
            h.sent_services(&peer).into_iter().filter_map(|s| if let Service::Get { blocks, .. } = s { Some(blocks) } else { None }).collect();
        assert_eq!(gets, vec![vec![4]], "the freed slot asks for the next missing block");
    }

    #[test]
    fn a_forged_manifest_drops_its_holder_and_the_last_holder_gone_pauses() {
        let mut h = Harness::with_peer("b");
        let peer = h.peer();
        let meta = FileMeta { name: "f".into(), size: 2 * BLOCK_SIZE, mime: String::new() };
        let id = TransferId(4);
        let real = hashes(2);
        let mut d =
            Download::start(id, &mut h.net(), meta.clone(), content_hash(2 * BLOCK_SIZE, &real), &[(peer.clone(), ShareId(1))]).expect("started");
        let step = d.manifest(id, &mut h.net(), &peer, hashes(3)[1..].to_vec());
        assert!(matches!(step, Step::Fail(TransferError::HashMismatch(_), false)), "{step:?}");
        let mut d = Download::start(id, &mut h.net(), meta, content_hash(2 * BLOCK_SIZE, &real), &[(peer.clone(), ShareId(1))]).expect("started");
        assert_eq!(d.source_left(id, &mut h.net(), &peer), Step::Go);
        assert!(d.paused_until().is_some());
        assert!(h.events().contains(&Event::TransferPaused { id }));
    }

    #[test]
    fn storage_that_cannot_open_fails_the_download_and_an_open_changes_nothing() {
        let mut h = Harness::with_peer("b");
        let peer = h.peer();
        let (_, mut d, _) = receiving(&mut h);
        let work = h.driver_work();
        assert!(matches!(work.as_slice(), [Output::Store(StoreOp::Probe { .. }), Output::Store(StoreOp::Open { durable: true, .. })]), "{work:?}");
        let gets = h.sent_services(&peer).into_iter().filter(|s| matches!(s, Service::Get { .. })).count();
        assert_eq!(gets, 1, "the holder is asked for blocks before the open is reported");
        assert_eq!(d.opened(Ok(())), Step::Go);
        assert!(h.sent_services(&peer).is_empty() && h.driver_work().is_empty(), "the open asks for nothing more");
        let failed = d.opened(Err(StoreError { full: false, message: "gone".into() }));
        assert!(matches!(failed, Step::Fail(TransferError::Storage(_), true)), "{failed:?}");
    }

    #[test]
    fn content_of_one_block_opens_at_once_without_a_probe_and_is_not_durable() {
        let mut h = Harness::with_peer("b");
        let peer = h.peer();
        let manifest = vec![hash_block(b"small")];
        let meta = FileMeta { name: "f".into(), size: 5, mime: String::new() };
        let id = TransferId(6);
        let mut d = Download::start(id, &mut h.net(), meta, content_hash(5, &manifest), &[(peer.clone(), ShareId(1))]).expect("started");
        assert_eq!(d.manifest(id, &mut h.net(), &peer, manifest), Step::Go);
        let work = h.driver_work();
        assert!(matches!(work.as_slice(), [Output::Store(StoreOp::Open { durable: false, .. })]), "{work:?}");
        let gets: Vec<_> =
            h.sent_services(&peer).into_iter().filter_map(|s| if let Service::Get { blocks, .. } = s { Some(blocks) } else { None }).collect();
        assert_eq!(gets, vec![vec![0]]);
    }
}
