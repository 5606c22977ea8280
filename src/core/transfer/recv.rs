//! The receiving side: look for a partial download of the offered content, let the
//! user decide (or resume by itself when the same sender comes back), then check every
//! block against its hash as its bytes arrive, have the driver store and commit it,
//! acknowledge it, and finish when the content hash over all blocks matches.

use super::blocks::{
    block_count, block_len, block_offset, content_hash, content_key, resume_response, resume_token, BlockSet, Hash, BLOCK_SIZE, MAX_FILE_SIZE,
};
use super::frame::{BulkHeader, CancelCode, Control, Proof};
use super::{FileMeta, Partial, ProgressMeter, StoreError, Transfer, TransferError, TransferId};
use crate::core::mesh::{Event, Mesh, Output};
use crate::core::{ConnId, Millis, PeerId};

/// Offers from one peer waiting for the user's answer at once; more are refused.
pub const MAX_PENDING_OFFERS_PER_PEER: usize = 8;
/// Offers from everyone waiting for an answer at once.
pub const MAX_PENDING_OFFERS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecvPhase {
    /// Asked the driver whether part of this content is already stored.
    Probing,
    /// Waiting for the user's accept or reject.
    Offered,
    /// Accepted; the driver is opening storage.
    Opening,
    Receiving,
    /// Every block verified; the driver is closing storage.
    Finishing,
    /// The sender left; waiting for it to offer again until then.
    Paused {
        until: Millis,
    },
}

#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) peer: PeerId,
    pub(crate) meta: FileMeta,
    pub(crate) phase: RecvPhase,
    pub(crate) key: String,
    blocks: u32,
    /// The content hash the offer announced, if any.
    offered_hash: Option<Hash>,
    /// Verified hashes: of committed blocks, and of blocks being committed. Empty, like
    /// `committed`, until the transfer is accepted: an offer costs its frame, never
    /// what its claimed size would need.
    hashes: Vec<Option<Hash>>,
    /// Blocks verified and stored for good.
    committed: BlockSet,
    /// Blocks of this content found in storage, until accepted.
    kept: Vec<(u32, Hash)>,
    /// The sender's content hash, once its end frame arrived.
    end_hash: Option<Hash>,
    /// The user accepted it once: resume without asking again.
    accepted: bool,
    /// Continuing what was accepted before (after a pause, or a reload found the
    /// partial): prove it with a response to `nonce`, never the token itself.
    resuming: bool,
    /// The nonce of the sender's latest offer.
    nonce: u64,
    pub(crate) meter: ProgressMeter,
}

impl Incoming {
    pub(crate) fn paused_until(&self) -> Option<Millis> {
        match self.phase {
            RecvPhase::Paused { until } => Some(until),
            _ => None,
        }
    }

    /// Whether an answer from the user is still awaited (it has not been accepted).
    fn pending(&self) -> bool {
        matches!(self.phase, RecvPhase::Probing | RecvPhase::Offered)
    }

    /// Whether `block` is one this transfer still waits for: in range, not verified.
    pub(crate) fn awaits_block(&self, block: u32) -> bool {
        self.hashes.get(block as usize).is_some_and(Option::is_none)
    }

    /// Whether the driver has (or is opening) storage for it.
    pub(crate) fn has_store(&self) -> bool {
        !matches!(self.phase, RecvPhase::Probing | RecvPhase::Offered)
    }
}

/// Where the bulk channel's byte stream stands on the receiving side.
#[derive(Debug, Default)]
pub(crate) enum RecvLane {
    /// The next frame is a header.
    #[default]
    Idle,
    /// The next frames are this block's bytes.
    Block { id: TransferId, block: u32, offset: u64, remaining: u64, hasher: Box<blake3::Hasher>, expected: Hash },
    /// The next frames are bytes to drop (a duplicate block, or one for no transfer).
    Skip { remaining: u64 },
}

/// What the driver does with a raw frame from the bulk channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkVerdict {
    /// Store the frame's bytes at `offset` of transfer `id`'s file.
    Store {
        /// The transfer.
        id: TransferId,
        /// Where in the file.
        offset: u64,
    },
    /// Nothing to store.
    Drop,
}

impl Mesh {
    /// Control frames for a transfer we receive (or are offered).
    pub(crate) fn receiver_control(&mut self, now: Millis, from: &PeerId, control: Control) {
        let id = control.id();
        match control {
            Control::Offer { size, block_size, head, hash, name, mime, nonce, .. } => {
                self.offered(now, from, id, FileMeta { name, size, mime }, block_size, head, hash, nonce)
            }
            Control::Cancel { code, reason, .. } => match self.transfers.get(&id) {
                Some(Transfer::In(t)) if t.peer == *from => self.fail(now, id, TransferError::from_wire(code, reason), false),
                _ => {}
            },
            other => self.warn(format!("peer {from} sent {other:?} for no transfer of ours")),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn offered(&mut self, _now: Millis, from: &PeerId, id: TransferId, meta: FileMeta, block_size: u32, head: Hash, hash: Option<Hash>, nonce: u64) {
        match self.transfers.get_mut(&id) {
            Some(Transfer::In(t)) if t.peer == *from && t.meta == meta => {
                // The sender came back (or repeats itself): pick up where we are.
                if let RecvPhase::Paused { .. } = t.phase {
                    t.phase = RecvPhase::Receiving;
                    t.nonce = nonce;
                    t.resuming = t.accepted;
                    t.meter.restart();
                    self.emit(Event::TransferResumed { id });
                    self.send_accept(id);
                }
                return;
            }
            Some(_) => {
                return self.refuse(from, id, CancelCode::Protocol, "transfer id already in use");
            }
            None => {}
        }
        if block_size as u64 != BLOCK_SIZE {
            return self.refuse(from, id, CancelCode::Protocol, &format!("unsupported block size {block_size}"));
        }
        if meta.size > MAX_FILE_SIZE {
            return self.refuse(
                from,
                id,
                CancelCode::Protocol,
                &format!("file of {} bytes is larger than the {MAX_FILE_SIZE}-byte limit", meta.size),
            );
        }
        // Offers cost the user attention and us memory until answered: a peer gets a
        // few at a time, the room a few more.
        let pending = self.transfers.values().filter_map(|t| match t {
            Transfer::In(t) if t.pending() => Some(&t.peer),
            _ => None,
        });
        let (mine, all) = pending.fold((0, 0), |(mine, all), peer| (mine + usize::from(peer == from), all + 1));
        if mine >= MAX_PENDING_OFFERS_PER_PEER {
            return self.refuse(
                from,
                id,
                CancelCode::Busy,
                &format!("the receiver has {MAX_PENDING_OFFERS_PER_PEER} offers from you waiting for an answer"),
            );
        }
        if all >= MAX_PENDING_OFFERS {
            return self.refuse(from, id, CancelCode::Busy, &format!("the receiver has {MAX_PENDING_OFFERS} offers waiting for an answer"));
        }
        let key = content_key(meta.size, &head);
        self.transfers.insert(
            id,
            Transfer::In(Incoming {
                peer: from.clone(),
                phase: RecvPhase::Probing,
                key: key.clone(),
                blocks: block_count(meta.size),
                offered_hash: hash,
                hashes: Vec::new(),
                committed: BlockSet::new(0),
                kept: Vec::new(),
                end_hash: None,
                accepted: false,
                resuming: false,
                nonce,
                meter: ProgressMeter::default(),
                meta,
            }),
        );
        self.push_output(Output::ProbeStore { id, key });
    }

    fn refuse(&mut self, to: &PeerId, id: TransferId, code: CancelCode, reason: &str) {
        if code != CancelCode::Busy {
            self.warn(format!("refused a transfer from {to}: {reason}"));
        }
        self.send_control(to, &Control::Cancel { id, code, reason: reason.to_owned() });
    }

    /// The driver looked for a partial download asked for with [`Output::ProbeStore`].
    pub fn handle_store_probed(&mut self, now: Millis, id: TransferId, partial: Option<Partial>) {
        if let Some(Transfer::Down(_)) = self.transfers.get(&id) {
            return self.download_probed(now, id, partial);
        }
        let Some(Transfer::In(t)) = self.transfers.get_mut(&id) else { return };
        if t.phase != RecvPhase::Probing {
            return;
        }
        let mut resumable = false;
        if let Some(partial) = partial {
            // Only this very transfer, stored before one of us reloaded, resumes by
            // itself; the same content sent again is a new offer that reuses the blocks.
            resumable = partial.transfer == Some(id) && partial.from.as_deref() == Some(t.peer.as_str());
            let blocks = t.blocks;
            t.kept = partial.blocks;
            t.kept.retain(|(block, _)| *block < blocks);
            t.kept.sort_unstable_by_key(|(block, _)| *block);
            t.kept.dedup_by_key(|(block, _)| *block);
        }
        let have: u64 = t.kept.iter().map(|(block, _)| block_len(t.meta.size, *block)).sum();
        t.meter.set(now, have);
        if resumable && have > 0 {
            // The same browser offers what it was sending us before (one of the two
            // reloaded): the user already accepted it.
            t.resuming = true;
            let (peer, meta) = (t.peer.clone(), t.meta.clone());
            self.emit(Event::TransferStarted { id, peer, meta });
            self.open_store(id);
        } else {
            t.phase = RecvPhase::Offered;
            let event = Event::FileOffer { id, from: t.peer.clone(), meta: t.meta.clone(), hash: t.offered_hash, have };
            self.emit(event);
        }
    }

    /// The user accepted an offer.
    pub fn accept_file(&mut self, _now: Millis, id: TransferId) -> Result<(), TransferError> {
        match self.transfers.get(&id) {
            Some(Transfer::In(t)) if t.phase == RecvPhase::Offered => {
                self.open_store(id);
                Ok(())
            }
            Some(Transfer::In(_)) => Ok(()),
            _ => Err(TransferError::Cancelled { by_peer: true, reason: "the offer is no longer open".into() }),
        }
    }

    /// The user declined an offer.
    pub fn reject_file(&mut self, _now: Millis, id: TransferId, reason: &str) {
        let Some(Transfer::In(t)) = self.transfers.get(&id) else { return };
        if t.phase != RecvPhase::Offered {
            return;
        }
        let peer = t.peer.clone();
        self.transfers.remove(&id);
        self.send_control(&peer, &Control::Reject { id, reason: reason.to_owned() });
    }

    fn open_store(&mut self, id: TransferId) {
        let Some(Transfer::In(t)) = self.transfers.get_mut(&id) else { return };
        t.phase = RecvPhase::Opening;
        t.accepted = true;
        // Accepted: now the per-block bookkeeping its size needs is worth having.
        t.hashes = vec![None; t.blocks as usize];
        t.committed = BlockSet::new(t.blocks);
        for (block, hash) in std::mem::take(&mut t.kept) {
            t.hashes[block as usize] = Some(hash);
            t.committed.insert(block);
        }
        let output = Output::OpenStore { id, key: t.key.clone(), from: Some(t.peer.clone()), meta: t.meta.clone() };
        self.push_output(output);
    }

    /// Storage opened (or failed to) after [`Output::OpenStore`].
    pub fn handle_store_opened(&mut self, now: Millis, id: TransferId, result: Result<(), StoreError>) {
        if let Some(Transfer::Down(_)) = self.transfers.get(&id) {
            return self.download_opened(now, id, result);
        }
        let Some(Transfer::In(t)) = self.transfers.get_mut(&id) else { return };
        if t.phase != RecvPhase::Opening {
            return;
        }
        if let Err(err) = result {
            return self.fail(now, id, store_error(err), true);
        }
        t.phase = RecvPhase::Receiving;
        let peer = t.peer.clone();
        if self.is_open(&peer) {
            self.send_accept(id);
        } else {
            let until = now + self.config.resume_timeout_ms;
            self.pause_receive(id, until);
        }
    }

    fn send_accept(&mut self, id: TransferId) {
        let Some(Transfer::In(t)) = self.transfers.get(&id) else { return };
        let token = resume_token(&self.config.local_key, id.0, t.peer.as_str());
        let proof = if t.resuming { Proof::Response(resume_response(&token, t.nonce)) } else { Proof::Token(token) };
        let accept = Control::Accept { id, have: t.committed.as_bytes().to_vec(), proof };
        let peer = t.peer.clone();
        self.send_control(&peer, &accept);
    }

    /// A frame from `conn`'s bulk channel.
    pub fn handle_bulk_frame(&mut self, now: Millis, conn: ConnId, frame: &[u8]) -> BulkVerdict {
        let Some(peer) = self.peer_of(conn) else { return BulkVerdict::Drop };
        if let Some(s) = self.session_mut(conn) {
            s.deadline = None; // alive
        }
        let Some(lane) = self.recv_lane(conn) else { return BulkVerdict::Drop };
        match std::mem::take(lane) {
            RecvLane::Idle => {
                self.bulk_header(now, conn, &peer, frame);
                BulkVerdict::Drop
            }
            RecvLane::Skip { remaining } => {
                let remaining = remaining.saturating_sub(frame.len() as u64);
                if remaining > 0 {
                    *lane = RecvLane::Skip { remaining };
                }
                BulkVerdict::Drop
            }
            RecvLane::Block { id, block, offset, remaining, mut hasher, expected } => {
                let len = frame.len() as u64;
                // THE WRITE INVARIANT: a byte is stored only if the peer it came from
                // owns its block right now — the sender of a direct transfer we are
                // receiving, or the holder a download assigned that block to — and the
                // block is not verified yet. A holder dropped or released mid-block,
                // a block re-assigned, verified or committed since its header: the
                // rest of that block is skipped here, and the lane expects a header
                // again, which must name a block the peer owns. So a verified block is
                // never written again, and what was verified is what is stored.
                if !self.owns_block(&peer, id, block) {
                    if let Some(lane) = self.recv_lane(conn) {
                        if remaining > len {
                            *lane = RecvLane::Skip { remaining: remaining - len };
                        }
                    }
                    return BulkVerdict::Drop;
                }
                if len > remaining || len == 0 {
                    let error = TransferError::Protocol(format!("block {block} overran its length"));
                    self.block_failed(now, &peer, id, error);
                    return BulkVerdict::Drop;
                }
                hasher.update(frame);
                let remaining = remaining - len;
                let digest = if remaining > 0 {
                    if let Some(lane) = self.recv_lane(conn) {
                        *lane = RecvLane::Block { id, block, offset: offset + len, remaining, hasher, expected };
                    }
                    None
                } else {
                    Some(*hasher.finalize().as_bytes())
                };
                let meter = match self.transfers.get_mut(&id) {
                    Some(Transfer::In(t)) => &mut t.meter,
                    Some(Transfer::Down(d)) => &mut d.meter,
                    _ => return BulkVerdict::Drop,
                };
                let received = meter.bytes + len;
                meter.set(now, received);
                if let Some(digest) = digest {
                    if digest != expected {
                        let error = TransferError::HashMismatch(format!("block {block} from {peer} does not match its hash"));
                        self.block_failed(now, &peer, id, error);
                        return BulkVerdict::Drop;
                    }
                    self.block_verified(now, &peer, id, block, digest);
                }
                self.report_progress(now, id, false);
                // Ordered before the commit `block_verified` queued: the driver stores
                // these bytes first, then commits.
                BulkVerdict::Store { id, offset }
            }
        }
    }

    /// Whether `peer` may write `block` of transfer `id` now (see the write invariant
    /// in [`Mesh::handle_bulk_frame`]).
    fn owns_block(&self, peer: &PeerId, id: TransferId, block: u32) -> bool {
        match self.transfers.get(&id) {
            Some(Transfer::In(t)) => t.peer == *peer && t.phase == RecvPhase::Receiving && t.awaits_block(block),
            Some(Transfer::Down(d)) => d.assigned_to(peer, block),
            _ => false,
        }
    }

    /// Every byte of `block` arrived from its owner and hashed to what its header said.
    fn block_verified(&mut self, now: Millis, peer: &PeerId, id: TransferId, block: u32, digest: Hash) {
        if matches!(self.transfers.get(&id), Some(Transfer::Down(_))) {
            return self.download_block_done(now, peer, id, block, digest);
        }
        let Some(Transfer::In(t)) = self.transfers.get_mut(&id) else { return };
        t.hashes[block as usize] = Some(digest);
        self.push_output(Output::CommitBlock { id, block, hash: digest });
    }

    /// A block's owner broke it: a direct transfer fails; a download drops that holder
    /// and gives its blocks to the others.
    fn block_failed(&mut self, now: Millis, peer: &PeerId, id: TransferId, error: TransferError) {
        if matches!(self.transfers.get(&id), Some(Transfer::Down(_))) {
            self.download_holder_failed(now, peer, id, error);
        } else {
            self.fail(now, id, error, true);
        }
    }

    fn bulk_header(&mut self, now: Millis, conn: ConnId, peer: &PeerId, frame: &[u8]) {
        let header = match BulkHeader::decode(frame) {
            Ok(header) => header,
            Err(err) => return self.warn(format!("bad bulk frame from {peer}: {err}")),
        };
        match header {
            BulkHeader::Block { id, block, len, data, hash } if matches!(self.transfers.get(&id), Some(Transfer::Down(_))) => {
                self.download_header(now, conn, peer, id, block, len, data, hash);
            }
            BulkHeader::Block { id, block, len, data, hash } => {
                let expected = match self.transfers.get(&id) {
                    Some(Transfer::In(t)) if t.peer == *peer && t.phase == RecvPhase::Receiving && block < t.blocks => {
                        Some((block_len(t.meta.size, block), t.hashes[block as usize]))
                    }
                    _ => None,
                };
                let skip = |mesh: &mut Mesh| {
                    if data && len > 0 {
                        if let Some(lane) = mesh.recv_lane(conn) {
                            *lane = RecvLane::Skip { remaining: u64::from(len).min(BLOCK_SIZE) };
                        }
                    }
                };
                let Some((block_len, ours)) = expected else {
                    self.warn(format!("peer {peer} sent block {block} for no transfer we receive"));
                    return skip(self);
                };
                if u64::from(len) != block_len {
                    skip(self);
                    return self.fail(now, id, TransferError::Protocol(format!("block {block} has length {len}, expected {block_len}")), true);
                }
                if !data {
                    // The sender says we hold this block: check our copy is theirs.
                    let resuming = matches!(self.transfers.get(&id), Some(Transfer::In(t)) if t.resuming);
                    if ours != Some(hash) && resuming && ours.is_some() {
                        let message = format!("the resumed sender's block {block} differs from the one kept");
                        return self.fail(now, id, TransferError::Protocol(message), true);
                    }
                    if ours != Some(hash) {
                        if let Some(Transfer::In(t)) = self.transfers.get_mut(&id) {
                            t.committed.remove(block);
                            t.hashes[block as usize] = None;
                        }
                        self.send_control(peer, &Control::Want { id, block });
                    }
                    return self.maybe_finish(now, id);
                }
                if ours.is_some() {
                    return skip(self); // a duplicate: we have it
                }
                let offset = block_offset(block);
                let hasher = Box::new(blake3::Hasher::new());
                if let Some(lane) = self.recv_lane(conn) {
                    *lane = RecvLane::Block { id, block, offset, remaining: block_len, hasher, expected: hash };
                }
            }
            BulkHeader::End { id, hash } => match self.transfers.get_mut(&id) {
                Some(Transfer::In(t)) if t.peer == *peer && t.phase == RecvPhase::Receiving => {
                    t.end_hash = Some(hash);
                    self.maybe_finish(now, id);
                }
                _ => self.warn(format!("peer {peer} ended a transfer we do not receive")),
            },
        }
    }

    /// The driver stored block `block` and its hash for good ([`Output::CommitBlock`]).
    pub fn handle_block_committed(&mut self, now: Millis, id: TransferId, block: u32) {
        if let Some(Transfer::Down(_)) = self.transfers.get(&id) {
            return self.download_committed(now, id, block);
        }
        let Some(Transfer::In(t)) = self.transfers.get_mut(&id) else { return };
        if block >= t.blocks || t.hashes[block as usize].is_none() || !t.committed.insert(block) {
            return;
        }
        let peer = t.peer.clone();
        self.send_control(&peer, &Control::Ack { id, block });
        self.maybe_finish(now, id);
    }

    fn maybe_finish(&mut self, now: Millis, id: TransferId) {
        let Some(Transfer::In(t)) = self.transfers.get_mut(&id) else { return };
        let Some(end) = t.end_hash else { return };
        if t.phase != RecvPhase::Receiving || !t.committed.is_full() {
            return;
        }
        let ours = content_hash(t.meta.size, t.hashes.iter().flatten());
        if ours != end || t.offered_hash.is_some_and(|h| h != end) {
            return self.fail(now, id, TransferError::HashMismatch("the file does not match its content hash".into()), true);
        }
        t.phase = RecvPhase::Finishing;
        self.push_output(Output::FinishStore { id });
    }

    /// Storage closed after [`Output::FinishStore`]: the file is complete.
    pub fn handle_store_finished(&mut self, now: Millis, id: TransferId, result: Result<(), StoreError>) {
        if let Some(Transfer::Down(_)) = self.transfers.get(&id) {
            return self.download_finished(now, id, result);
        }
        let Some(Transfer::In(t)) = self.transfers.get_mut(&id) else { return };
        if t.phase != RecvPhase::Finishing {
            return;
        }
        if let Err(err) = result {
            return self.fail(now, id, store_error(err), true);
        }
        let hash = content_hash(t.meta.size, t.hashes.iter().flatten());
        let peer = t.peer.clone();
        t.meter.set(now, t.meta.size);
        self.report_progress(now, id, true);
        self.transfers.remove(&id);
        self.send_control(&peer, &Control::Complete { id });
        self.emit(Event::TransferDone { id, hash });
    }

    /// Storage failed while receiving (a write or a commit).
    pub fn handle_store_failed(&mut self, now: Millis, id: TransferId, err: StoreError) {
        if matches!(self.transfers.get(&id), Some(Transfer::In(_) | Transfer::Down(_))) {
            self.fail(now, id, store_error(err), true);
        }
    }

    /// The sender left: keep what we have until it offers again or `until`.
    pub(crate) fn pause_receive(&mut self, id: TransferId, until: Millis) {
        let Some(Transfer::In(t)) = self.transfers.get_mut(&id) else { return };
        match t.phase {
            // An offer nobody answered: it is gone with its sender; the offer comes
            // again if the sender returns.
            RecvPhase::Probing | RecvPhase::Offered if !t.accepted => {
                let left = TransferError::PeerLeft(0);
                self.fail(Millis(0), id, left, false);
            }
            RecvPhase::Opening | RecvPhase::Receiving | RecvPhase::Offered | RecvPhase::Probing => {
                let committed = t.committed.bytes(t.meta.size);
                t.meter.set(Millis(0), committed);
                t.meter.restart();
                // Blocks verified but not committed are sent again; drop their hashes.
                for block in 0..t.blocks {
                    if !t.committed.contains(block) {
                        t.hashes[block as usize] = None;
                    }
                }
                if t.phase != RecvPhase::Opening {
                    t.phase = RecvPhase::Paused { until };
                }
                self.emit(Event::TransferPaused { id });
            }
            RecvPhase::Finishing | RecvPhase::Paused { .. } => {}
        }
    }
}

pub(crate) fn store_error(err: StoreError) -> TransferError {
    if err.full {
        TransferError::StorageFull(err.message)
    } else {
        TransferError::Storage(err.message)
    }
}
