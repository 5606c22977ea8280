//! The receiving side of a direct transfer: look for a partial download of the offered
//! content, let the user decide (or resume by itself when the very transfer comes
//! back), then take blocks through the one receive path (`receive.rs`), acknowledge
//! each once stored, and finish when the content hash over all blocks matches.

use super::blocks::{
    block_count, block_len, block_offset, content_hash, content_key, hash_block, resumable, resume_response, resume_token, BlockSet, Hash,
    BLOCK_SIZE, MAX_FILE_SIZE,
};
use super::frame::{CancelCode, Control, Proof};
use super::receive::{Broken, Header, Receiving};
use super::{store_error, FileMeta, Partial, ProgressMeter, Step, StoreError, TransferError, TransferId};
use crate::core::net::Net;
use crate::core::order::sorted_by_key;
use crate::core::output::{Event, Output, StoreOp};
use crate::core::{Millis, PeerId};

/// Offers from one peer waiting for the user's answer at once; more are refused.
pub const MAX_PENDING_OFFERS_PER_PEER: usize = 8;
/// Offers from everyone waiting for an answer at once.
pub const MAX_PENDING_OFFERS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecvPhase {
    /// Asked the driver whether part of this content is already stored.
    Probing,
    /// Waiting for the user's accept or reject.
    Offered,
    /// Accepted: storage is open or opening (the driver performs store operations in
    /// order, so blocks may be written before it reports the open).
    Receiving,
    /// Every block verified; the driver is closing storage.
    Finishing,
    /// The sender left; waiting for it to offer again until then.
    Paused { until: Millis },
}

#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) peer: PeerId,
    pub(crate) meta: FileMeta,
    phase: RecvPhase,
    key: String,
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
    /// The whole file, verified, from an offer that carried it: stored on accept.
    inline: Option<Vec<u8>>,
    /// Accepted with the file from the offer: our accept says we have it.
    took_inline: bool,
}

/// Refuses an offer with a reason the sender sees.
pub(crate) fn refuse(net: &mut Net<'_>, to: &PeerId, id: TransferId, code: CancelCode, reason: &str) {
    if code != CancelCode::Busy {
        net.warn(format!("refused a transfer from {to}: {reason}"));
    }
    net.send_control(to, &Control::Cancel { id, code, reason: reason.to_owned() });
}

impl Incoming {
    /// A new offer from `from`, who has `mine` offers waiting for an answer here (of
    /// `all`): the transfer, or nothing if it was refused.
    pub(crate) fn offered(net: &mut Net<'_>, from: &PeerId, offer: Control, mine: usize, all: usize) -> Option<(TransferId, Incoming)> {
        let Control::Offer { id, size, block_size, head, hash, name, mime, nonce, data } = offer else { return None };
        let reason = if u64::from(block_size) != BLOCK_SIZE {
            Some((CancelCode::Protocol, format!("unsupported block size {block_size}")))
        } else if size > MAX_FILE_SIZE {
            Some((CancelCode::Protocol, format!("file of {size} bytes is larger than the {MAX_FILE_SIZE}-byte limit")))
        } else if mine >= MAX_PENDING_OFFERS_PER_PEER {
            // Offers cost the user attention and us memory until answered: a peer gets a
            // few at a time, the room a few more.
            Some((CancelCode::Busy, format!("the receiver has {MAX_PENDING_OFFERS_PER_PEER} offers from you waiting for an answer")))
        } else if all >= MAX_PENDING_OFFERS {
            Some((CancelCode::Busy, format!("the receiver has {MAX_PENDING_OFFERS} offers waiting for an answer")))
        } else {
            data.as_deref().and_then(|data| inline_problem(data, size, &head, hash.as_ref())).map(|why| (CancelCode::Protocol, why))
        };
        if let Some((code, reason)) = reason {
            refuse(net, from, id, code, &reason);
            return None;
        }
        let key = content_key(size, &head);
        let mut incoming = Incoming {
            peer: from.clone(),
            phase: RecvPhase::Probing,
            key,
            blocks: block_count(size),
            offered_hash: hash,
            hashes: Vec::new(),
            committed: BlockSet::new(0),
            kept: Vec::new(),
            end_hash: None,
            accepted: false,
            resuming: false,
            nonce,
            meter: ProgressMeter::default(),
            meta: FileMeta { name, size, mime },
            inline: data,
            took_inline: false,
        };
        if resumable(size) {
            net.output(Output::Store(StoreOp::Probe { id, key: incoming.key.clone() }));
        } else {
            // Nothing of it can be kept: offered at once, as if the probe found nothing.
            incoming.probed(id, net, None);
        }
        Some((id, incoming))
    }

    /// Whether an answer from the user is still awaited (it has not been accepted).
    pub(crate) fn pending(&self) -> bool {
        matches!(self.phase, RecvPhase::Probing | RecvPhase::Offered)
    }

    pub(crate) fn paused_until(&self) -> Option<Millis> {
        match self.phase {
            RecvPhase::Paused { until } => Some(until),
            _ => None,
        }
    }

    /// Whether the driver has (or is opening) storage for it.
    pub(crate) fn has_store(&self) -> bool {
        !self.pending()
    }

    /// The driver looked for a partial download.
    pub(crate) fn probed(&mut self, id: TransferId, net: &mut Net<'_>, partial: Option<Partial>) -> Step {
        if self.phase != RecvPhase::Probing {
            return Step::Go;
        }
        let mut resumable = false;
        if let Some(partial) = partial {
            // Only this very transfer, stored before one of us reloaded, resumes by
            // itself; the same content sent again is a new offer that reuses the blocks.
            resumable = partial.transfer == Some(id) && partial.from.as_deref() == Some(self.peer.as_str());
            let blocks = self.blocks;
            let mut kept = partial.blocks;
            kept.retain(|(block, _)| *block < blocks);
            self.kept = sorted_by_key(kept, |(block, _)| *block);
            self.kept.dedup_by_key(|(block, _)| *block);
        }
        let have: u64 = self.kept.iter().map(|(block, _)| block_len(self.meta.size, *block)).sum();
        self.meter.set(net.now, have);
        if resumable && have > 0 {
            // The same browser offers what it was sending us before (one of the two
            // reloaded): the user already accepted it.
            self.resuming = true;
            net.emit(Event::TransferStarted { id, peer: self.peer.clone(), meta: self.meta.clone() });
            self.open_store(id, net);
        } else {
            self.phase = RecvPhase::Offered;
            net.emit(Event::FileOffer { id, from: self.peer.clone(), meta: self.meta.clone(), hash: self.offered_hash, have });
        }
        Step::Go
    }

    /// The user accepted.
    pub(crate) fn accept(&mut self, id: TransferId, net: &mut Net<'_>) -> Result<(), TransferError> {
        if self.phase == RecvPhase::Offered {
            self.open_store(id, net);
        }
        Ok(())
    }

    /// The user declined; whether the offer was open (and is now gone).
    pub(crate) fn reject(&self, id: TransferId, net: &mut Net<'_>, reason: &str) -> bool {
        if self.phase != RecvPhase::Offered {
            return false;
        }
        net.send_control(&self.peer, &Control::Reject { id, reason: reason.to_owned() });
        true
    }

    /// Opens storage and asks for the blocks at once, not after the open: opening
    /// takes the storage worker a few ms (8-9 ms in Chromium 156), and the blocks are
    /// written after it in any case.
    fn open_store(&mut self, id: TransferId, net: &mut Net<'_>) {
        self.phase = RecvPhase::Receiving;
        self.accepted = true;
        // Accepted: now the per-block bookkeeping its size needs is worth having.
        self.hashes = vec![None; self.blocks as usize];
        self.committed = BlockSet::new(self.blocks);
        for (block, hash) in std::mem::take(&mut self.kept) {
            self.hashes[block as usize] = Some(hash);
            self.committed.insert(block);
        }
        let durable = resumable(self.meta.size);
        net.output(Output::Store(StoreOp::Open { id, key: self.key.clone(), from: Some(self.peer.clone()), meta: self.meta.clone(), durable }));
        if let Some(data) = self.inline.take() {
            // The offer brought it, verified: stored now, ended by its content hash.
            let hash = hash_block(&data);
            self.hashes[0] = Some(hash);
            self.end_hash = Some(content_hash(self.meta.size, [&hash]));
            self.took_inline = true;
            net.output(Output::Store(StoreOp::Put { id, offset: 0, bytes: data }));
            net.output(Output::Store(StoreOp::Commit { id, block: 0, hash }));
        }
        if net.is_open(&self.peer) {
            self.send_accept(id, net);
        } else {
            let until = net.now + net.config.resume_timeout_ms;
            self.pause(id, net, until);
        }
    }

    /// Storage opened, or could not: then the transfer fails.
    pub(crate) fn opened(&mut self, result: Result<(), StoreError>) -> Step {
        match result {
            Err(err) if self.has_store() => Step::Fail(store_error(err), true),
            _ => Step::Go,
        }
    }

    fn send_accept(&self, id: TransferId, net: &mut Net<'_>) {
        let token = resume_token(&net.config.local_key, id.0, self.peer.as_str());
        let proof = if self.resuming { Proof::Response(resume_response(&token, self.nonce)) } else { Proof::Token(token) };
        let mut have = self.committed.clone();
        if self.took_inline {
            have.insert(0);
        }
        let accept = Control::Accept { id, have: have.as_bytes().to_vec(), proof };
        net.send_control(&self.peer, &accept);
    }

    /// A control frame from the sender of this transfer.
    pub(crate) fn on_control(&mut self, id: TransferId, net: &mut Net<'_>, control: Control) -> Step {
        match control {
            // The sender came back (or repeats itself): pick up where we are.
            Control::Offer { size, ref name, ref mime, nonce, .. }
                if self.meta.size == size && self.meta.name == *name && self.meta.mime == *mime =>
            {
                if let RecvPhase::Paused { .. } = self.phase {
                    self.phase = RecvPhase::Receiving;
                    self.nonce = nonce;
                    self.resuming = self.accepted;
                    self.meter.restart();
                    net.emit(Event::TransferResumed { id });
                    self.send_accept(id, net);
                }
                Step::Go
            }
            Control::Offer { .. } => {
                refuse(net, &self.peer.clone(), id, CancelCode::Protocol, "transfer id already in use");
                Step::Go
            }
            Control::Cancel { code, reason, .. } => Step::Fail(TransferError::from_wire(code, reason), false),
            other => {
                net.warn(format!("peer {} sent {other:?} for a transfer it sends", self.peer));
                Step::Go
            }
        }
    }

    /// A header-only block: the sender says we hold it; check our copy is theirs.
    pub(crate) fn announced(&mut self, id: TransferId, net: &mut Net<'_>, block: u32, len: u32, hash: Hash) -> Step {
        if self.phase != RecvPhase::Receiving || block >= self.blocks {
            return Step::Go;
        }
        let expected = block_len(self.meta.size, block);
        if u64::from(len) != expected {
            return Step::Fail(TransferError::Protocol(format!("block {block} has length {len}, expected {expected}")), true);
        }
        let ours = self.hashes[block as usize];
        if ours != Some(hash) {
            if self.resuming && ours.is_some() {
                return Step::Fail(TransferError::Protocol(format!("the resumed sender's block {block} differs from the one kept")), true);
            }
            self.committed.remove(block);
            self.hashes[block as usize] = None;
            net.send_control(&self.peer, &Control::Want { id, block });
        }
        self.maybe_finish(id, net)
    }

    /// The sender's end frame: every block went out.
    pub(crate) fn ended(&mut self, id: TransferId, net: &mut Net<'_>, hash: Hash) -> Step {
        if self.phase != RecvPhase::Receiving {
            net.warn(format!("peer {} ended a transfer we do not receive", self.peer));
            return Step::Go;
        }
        self.end_hash = Some(hash);
        self.maybe_finish(id, net)
    }

    /// A block and its hash are stored for good.
    pub(crate) fn committed(&mut self, id: TransferId, net: &mut Net<'_>, block: u32) -> Step {
        if block >= self.blocks || self.hashes[block as usize].is_none() || !self.committed.insert(block) {
            return Step::Go;
        }
        net.send_control(&self.peer, &Control::Ack { id, block });
        self.maybe_finish(id, net)
    }

    fn maybe_finish(&mut self, id: TransferId, net: &mut Net<'_>) -> Step {
        let Some(end) = self.end_hash else { return Step::Go };
        if self.phase != RecvPhase::Receiving || !self.committed.is_full() {
            return Step::Go;
        }
        let ours = content_hash(self.meta.size, self.hashes.iter().flatten());
        if ours != end || self.offered_hash.is_some_and(|h| h != end) {
            return Step::Fail(TransferError::HashMismatch("the file does not match its content hash".into()), true);
        }
        self.phase = RecvPhase::Finishing;
        net.output(Output::Store(StoreOp::Finish { id }));
        Step::Go
    }

    /// Storage closed after `Finish`: the file is complete.
    pub(crate) fn finished(&mut self, id: TransferId, net: &mut Net<'_>, result: Result<(), StoreError>) -> Step {
        if self.phase != RecvPhase::Finishing {
            return Step::Go;
        }
        if let Err(err) = result {
            return Step::Fail(store_error(err), true);
        }
        self.meter.set(net.now, self.meta.size);
        net.send_control(&self.peer, &Control::Complete { id });
        Step::Done(content_hash(self.meta.size, self.hashes.iter().flatten()))
    }

    /// The sender left: keep what we have until it offers again or `until`.
    pub(crate) fn pause(&mut self, id: TransferId, net: &mut Net<'_>, until: Millis) -> Step {
        match self.phase {
            // An offer nobody answered: it is gone with its sender; the offer comes again
            // if the sender returns.
            RecvPhase::Probing | RecvPhase::Offered if !self.accepted => Step::Fail(TransferError::PeerLeft(0), false),
            RecvPhase::Receiving | RecvPhase::Offered | RecvPhase::Probing => {
                self.meter.set(net.now, self.committed.bytes(self.meta.size));
                self.meter.restart();
                // Blocks verified but not committed are sent again; drop their hashes.
                for block in 0..self.blocks {
                    if !self.committed.contains(block) {
                        self.hashes[block as usize] = None;
                    }
                }
                self.phase = RecvPhase::Paused { until };
                self.took_inline = false;
                net.emit(Event::TransferPaused { id });
                Step::Go
            }
            RecvPhase::Finishing | RecvPhase::Paused { .. } => Step::Go,
        }
    }
}

/// What is wrong with the file an offer carried whole, if anything: it must be the
/// offered file (its size, its head hash, the content hash if one was given).
fn inline_problem(data: &[u8], size: u64, head: &Hash, hash: Option<&Hash>) -> Option<String> {
    if data.len() as u64 != size {
        return Some(format!("an offer carried {} bytes of a {size}-byte file", data.len()));
    }
    let digest = hash_block(data);
    if digest != *head || hash.is_some_and(|hash| *hash != content_hash(size, [&digest])) {
        return Some("the file an offer carried does not match its hash".into());
    }
    None
}

impl Receiving for Incoming {
    fn header(&mut self, peer: &PeerId, block: u32, len: u32, _hash: Hash) -> Header {
        if *peer != self.peer || self.phase != RecvPhase::Receiving || block >= self.blocks {
            return Header::Skip;
        }
        let expected = block_len(self.meta.size, block);
        if u64::from(len) != expected {
            return Header::Broken(TransferError::Protocol(format!("block {block} has length {len}, expected {expected}")));
        }
        if self.hashes[block as usize].is_some() {
            return Header::Skip; // a duplicate: we have it
        }
        Header::Receive { offset: block_offset(block) }
    }

    fn owns(&self, peer: &PeerId, block: u32) -> bool {
        *peer == self.peer && self.phase == RecvPhase::Receiving && self.hashes.get(block as usize).is_some_and(Option::is_none)
    }

    fn meter(&mut self) -> &mut ProgressMeter {
        &mut self.meter
    }

    fn verified(&mut self, net: &mut Net<'_>, id: TransferId, _peer: &PeerId, block: u32, digest: Hash) {
        self.hashes[block as usize] = Some(digest);
        net.output(Output::Store(StoreOp::Commit { id, block, hash: digest }));
    }

    fn broken(&mut self, _net: &mut Net<'_>, _id: TransferId, _peer: &PeerId, error: TransferError) -> Broken {
        Broken::Fail(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testing::Harness;

    fn offer(id: u64, size: u64) -> Control {
        Control::Offer {
            id: TransferId(id),
            size,
            block_size: BLOCK_SIZE as u32,
            head: [1; 32],
            hash: None,
            name: "f".into(),
            mime: String::new(),
            nonce: 5,
            data: None,
        }
    }

    #[test]
    fn offers_past_the_caps_are_refused_with_busy_and_cost_nothing() {
        let mut h = Harness::with_peer("b");
        let peer = h.peer();
        assert!(Incoming::offered(&mut h.net(), &peer, offer(1, MAX_FILE_SIZE), MAX_PENDING_OFFERS_PER_PEER - 1, 0).is_some());
        assert!(Incoming::offered(&mut h.net(), &peer, offer(2, 1), MAX_PENDING_OFFERS_PER_PEER, 0).is_none());
        assert!(Incoming::offered(&mut h.net(), &peer, offer(3, 1), 0, MAX_PENDING_OFFERS).is_none());
        assert!(Incoming::offered(&mut h.net(), &peer, offer(4, MAX_FILE_SIZE + 1), 0, 0).is_none());
        let codes: Vec<_> =
            h.sent_controls(&peer).into_iter().map(|c| if let Control::Cancel { code, .. } = c { code } else { panic!("{c:?}") }).collect();
        assert_eq!(codes, vec![CancelCode::Busy, CancelCode::Busy, CancelCode::Protocol]);
        let (_, t) = Incoming::offered(&mut h.net(), &peer, offer(5, MAX_FILE_SIZE), 0, 0).expect("offered");
        assert!(t.hashes.is_empty() && t.committed.as_bytes().is_empty(), "nothing sized by the claim before an accept");
    }

    #[test]
    fn only_the_very_transfer_resumes_by_itself_and_a_resend_is_offered_with_what_is_kept() {
        let mut h = Harness::with_peer("b");
        let peer = h.peer();
        let kept =
            Partial { from: Some(peer.as_str().to_owned()), transfer: Some(TransferId(9)), blocks: vec![(0, [2; 32]), (0, [2; 32]), (99, [3; 32])] };
        let (id, mut same) = Incoming::offered(&mut h.net(), &peer, offer(9, 4 * BLOCK_SIZE), 0, 0).expect("offered");
        same.probed(id, &mut h.net(), Some(kept.clone()));
        assert!(matches!(h.events().as_slice(), [Event::TransferStarted { .. }]));
        let (id, mut other) = Incoming::offered(&mut h.net(), &peer, offer(10, 4 * BLOCK_SIZE), 0, 0).expect("offered");
        other.probed(id, &mut h.net(), Some(kept));
        let events = h.events();
        assert!(
            matches!(events.as_slice(), [Event::FileOffer { have, .. }] if *have == BLOCK_SIZE),
            "one kept block in range counts once: {events:?}"
        );
    }

    #[test]
    fn a_header_for_a_verified_block_is_skipped_and_a_verified_block_is_not_owned() {
        let mut h = Harness::with_peer("b");
        let peer = h.peer();
        let (id, mut t) = Incoming::offered(&mut h.net(), &peer, offer(9, 2 * BLOCK_SIZE), 0, 0).expect("offered");
        t.probed(id, &mut h.net(), None);
        t.accept(id, &mut h.net()).expect("accept");
        t.opened(Ok(()));
        let hash = hash_block(&[0; 8]);
        assert_eq!(t.header(&peer, 1, BLOCK_SIZE as u32, hash), Header::Receive { offset: BLOCK_SIZE });
        assert!(t.owns(&peer, 1));
        t.verified(&mut h.net(), id, &peer, 1, hash);
        assert!(!t.owns(&peer, 1), "a verified block is never written again");
        assert_eq!(t.header(&peer, 1, BLOCK_SIZE as u32, hash), Header::Skip);
        assert_eq!(t.header(&PeerId::new("c"), 0, BLOCK_SIZE as u32, hash), Header::Skip, "only the sender writes");
        assert!(matches!(t.header(&peer, 0, 7, hash), Header::Broken(TransferError::Protocol(_))));
    }

    #[test]
    fn an_accept_opens_storage_and_asks_for_the_blocks_at_once_and_a_failed_open_fails_it() {
        let mut h = Harness::with_peer("b");
        let peer = h.peer();
        let (id, mut t) = Incoming::offered(&mut h.net(), &peer, offer(9, 2 * BLOCK_SIZE), 0, 0).expect("offered");
        t.probed(id, &mut h.net(), None);
        h.driver_work();
        t.accept(id, &mut h.net()).expect("accept");
        let work = h.driver_work();
        assert!(matches!(work.as_slice(), [Output::Store(StoreOp::Open { id: opening, .. })] if *opening == id), "{work:?}");
        // No StoreOpened yet: the sender is asked already, and blocks are taken (the
        // driver writes them after the open).
        let sent = h.sent_controls(&peer);
        assert!(matches!(sent.as_slice(), [Control::Accept { id: accepted, .. }] if *accepted == id), "{sent:?}");
        let hash = hash_block(&[0; 8]);
        assert_eq!(t.header(&peer, 1, BLOCK_SIZE as u32, hash), Header::Receive { offset: BLOCK_SIZE });
        t.verified(&mut h.net(), id, &peer, 1, hash);
        assert!(matches!(h.driver_work().as_slice(), [Output::Store(StoreOp::Commit { block: 1, .. })]));
        assert_eq!(t.opened(Ok(())), Step::Go);
        assert!(h.sent_controls(&peer).is_empty(), "the open asks for nothing more");
        let failed = t.opened(Err(StoreError { full: true, message: "quota".into() }));
        assert!(matches!(failed, Step::Fail(TransferError::StorageFull(_), true)), "{failed:?}");
    }

    #[test]
    fn a_file_of_one_block_is_offered_without_a_probe_and_kept_out_of_durable_storage() {
        let mut h = Harness::with_peer("b");
        let peer = h.peer();
        for (size, resumes) in [(0, false), (BLOCK_SIZE, false), (BLOCK_SIZE + 1, true)] {
            let (id, mut t) = Incoming::offered(&mut h.net(), &peer, offer(size + 1, size), 0, 0).expect("offered");
            let probed = h.driver_work();
            if resumes {
                assert!(matches!(probed.as_slice(), [Output::Store(StoreOp::Probe { .. })]), "{size}: {probed:?}");
                assert!(h.events().is_empty(), "{size}: offered once the probe answers");
                t.probed(id, &mut h.net(), None);
            } else {
                assert!(probed.is_empty(), "{size}: nothing to look for: {probed:?}");
            }
            let events = h.events();
            assert!(matches!(events.as_slice(), [Event::FileOffer { have: 0, .. }]), "{size}: {events:?}");
            t.accept(id, &mut h.net()).expect("accept");
            let opened = h.driver_work();
            assert!(matches!(opened.as_slice(), [Output::Store(StoreOp::Open { durable, .. })] if *durable == resumes), "{size}: {opened:?}");
        }
    }

    #[test]
    fn an_offer_that_carries_other_bytes_than_it_names_is_refused() {
        let mut h = Harness::with_peer("b");
        let peer = h.peer();
        let file = vec![5u8; 300];
        let head = hash_block(&file);
        let carrying = |id: u64, size: u64, head: Hash, hash: Option<Hash>, data: &[u8]| Control::Offer {
            id: TransferId(id),
            size,
            block_size: BLOCK_SIZE as u32,
            head,
            hash,
            name: "f".into(),
            mime: String::new(),
            nonce: 5,
            data: Some(data.to_vec()),
        };
        let good = content_hash(300, [&head]);
        for bad in [
            carrying(1, 301, head, None, &file),
            carrying(2, 300, [1; 32], None, &file),
            carrying(3, 300, head, Some([2; 32]), &file),
            carrying(4, 300, head, Some(good), &file[..299]),
        ] {
            assert!(Incoming::offered(&mut h.net(), &peer, bad, 0, 0).is_none());
        }
        let codes: Vec<_> =
            h.sent_controls(&peer).into_iter().map(|c| if let Control::Cancel { code, .. } = c { code } else { panic!("{c:?}") }).collect();
        assert_eq!(codes, vec![CancelCode::Protocol; 4]);
        assert!(h.events().iter().all(|e| !matches!(e, Event::FileOffer { .. })));
        // The file it names: offered, and on accept stored whole, the accept saying so.
        let (id, mut t) = Incoming::offered(&mut h.net(), &peer, carrying(5, 300, head, Some(good), &file), 0, 0).expect("offered");
        assert!(matches!(h.events().as_slice(), [Event::FileOffer { .. }]));
        t.accept(id, &mut h.net()).expect("accept");
        let work = h.driver_work();
        assert!(work.iter().any(|o| matches!(o, Output::Store(StoreOp::Put { offset: 0, bytes, .. }) if *bytes == file)), "{work:?}");
        assert!(matches!(h.sent_controls(&peer).as_slice(), [Control::Accept { have, .. }] if have == &[1]));
    }
}
