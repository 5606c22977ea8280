//! The sending side: hash the first block, offer, then stream blocks to the bulk
//! channel (reading ahead a little, never more than the receiver's window), tell the
//! hashes of blocks the receiver already has, end with the content hash, and finish
//! when the receiver says it verified and stored everything.

use std::collections::VecDeque;

use super::blocks::{block_count, block_len, content_hash, hash_block, resume_response, BlockSet, Hash, BLOCK_SIZE};
use super::frame::{BulkHeader, Control, Proof, INLINE_OFFER_MAX, OFFER_FIELDS_MAX};
use super::{read_block, send_block, BulkItem, FileMeta, ProgressMeter, Step, TransferError, TransferId, WINDOW_BLOCKS};
use crate::core::net::Net;
use crate::core::output::{Event, FileOp, FileSource, Output};
use crate::core::{Millis, PeerId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendPhase {
    /// Reading block 0 for the offer's head hash.
    Hashing,
    /// Offered; waiting for accept or reject.
    Offered,
    Sending,
    /// The peer left; waiting for it to come back until then.
    Paused {
        until: Millis,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Hash it, then put it on the channel.
    Send,
    /// Only its hash is needed (the receiver has the bytes).
    Hash,
}

/// What a sending transfer does next, when its window allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Read(u32, Purpose),
    /// Send the block whose bytes the driver still holds from hashing it for the offer.
    SendHeld(u32, Hash),
    /// Tell the receiver the hash of a block it has, so it can check its copy.
    Announce(u32, Hash),
}

#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) peer: PeerId,
    pub(crate) meta: FileMeta,
    phase: SendPhase,
    blocks: u32,
    hashes: Vec<Option<Hash>>,
    /// Blocks the receiver holds (from its accept, then its acks).
    have: BlockSet,
    /// Next block to consider, in order; `wants` go first.
    next: u32,
    wants: VecDeque<u32>,
    reading: Vec<(u32, Purpose)>,
    /// Blocks put on the channel and not yet acknowledged.
    unacked: u32,
    end_sent: bool,
    pub(crate) meter: ProgressMeter,
    /// The receiver's resume token, from its first accept: later accepts must prove it.
    token: Option<Hash>,
    /// The nonce of our latest offer.
    nonce: u64,
    /// The driver still holds the file's only block, read to hash it for the offer: on
    /// accept it goes out without a second read (a small file's read took ~1.5 ms).
    held: bool,
    /// Our latest offer carried the whole file.
    inline: bool,
}

impl Outgoing {
    pub(crate) fn new(peer: PeerId, meta: FileMeta) -> Self {
        let blocks = block_count(meta.size);
        Outgoing {
            peer,
            phase: SendPhase::Hashing,
            blocks,
            hashes: vec![None; blocks as usize],
            have: BlockSet::new(blocks),
            next: 0,
            wants: VecDeque::new(),
            reading: Vec::new(),
            unacked: 0,
            end_sent: false,
            meter: ProgressMeter::default(),
            token: None,
            nonce: 0,
            held: false,
            inline: false,
            meta,
        }
    }

    /// Reads the first block for the offer's head hash (an empty file offers at once).
    pub(crate) fn start(&mut self, id: TransferId, net: &mut Net<'_>) {
        if self.blocks == 0 {
            self.offer(id, net, None);
        } else {
            self.read(id, net, 0, Purpose::Hash);
        }
    }

    pub(crate) fn paused_until(&self) -> Option<Millis> {
        match self.phase {
            SendPhase::Paused { until } => Some(until),
            _ => None,
        }
    }

    pub(crate) fn sending(&self) -> bool {
        self.phase == SendPhase::Sending
    }

    /// What the driver may hold for this transfer before it was accepted: a whole
    /// block's buffer, however small the file (the driver reads into block-sized buffers).
    pub(crate) fn held_bytes(&self) -> u64 {
        if self.held {
            BLOCK_SIZE
        } else {
            0
        }
    }

    pub(crate) fn reading_bytes(&self) -> u64 {
        self.reading.iter().filter(|(_, p)| *p == Purpose::Send).map(|(b, _)| block_len(self.meta.size, *b)).sum()
    }

    fn read(&mut self, id: TransferId, net: &mut Net<'_>, block: u32, purpose: Purpose) {
        self.reading.push((block, purpose));
        read_block(net, id, FileSource::Sending, self.meta.size, block);
    }

    /// Offers the file; `file`: all of it, which goes with the offer if it is small and
    /// the peer takes that (then it has the file the moment it accepts).
    fn offer(&mut self, id: TransferId, net: &mut Net<'_>, file: Option<&[u8]>) {
        self.phase = SendPhase::Offered;
        if !net.is_open(&self.peer) {
            let until = net.now + net.config.resume_timeout_ms;
            self.pause(id, net, until);
            return;
        }
        self.nonce = net.random();
        let head = if self.blocks == 0 { hash_block(&[]) } else { self.hashes[0].unwrap_or_default() };
        let hash = self.hashes.iter().copied().collect::<Option<Vec<_>>>().map(|all| content_hash(self.meta.size, &all));
        let data = file
            .filter(|file| !file.is_empty() && file.len() <= INLINE_OFFER_MAX && net.takes_inline_offer(&self.peer, OFFER_FIELDS_MAX + file.len()))
            .map(<[u8]>::to_vec);
        self.inline = data.is_some();
        let offer = Control::Offer {
            id,
            size: self.meta.size,
            block_size: BLOCK_SIZE as u32,
            head,
            hash,
            name: self.meta.name.clone(),
            mime: self.meta.mime.clone(),
            nonce: self.nonce,
            data,
        };
        net.send_control(&self.peer, &offer);
    }

    /// A block asked for with [`FileOp::Read`] was read. `may_hold`: the driver may
    /// keep a one-block file's bytes until the offer is answered.
    pub(crate) fn block_read(&mut self, id: TransferId, net: &mut Net<'_>, block: u32, bytes: &[u8], may_hold: bool) -> Step {
        let Some(at) = self.reading.iter().position(|(b, _)| *b == block) else {
            net.output(Output::File(FileOp::ReleaseBlock { id, block }));
            return Step::Go;
        };
        let (_, purpose) = self.reading.swap_remove(at);
        if bytes.len() as u64 != block_len(self.meta.size, block) {
            return Step::Fail(TransferError::Unreadable(format!("block {block} read {} bytes; the file changed size", bytes.len())), true);
        }
        let hash = hash_block(bytes);
        let known = &mut self.hashes[block as usize];
        if known.is_some_and(|k| k != hash) {
            return Step::Fail(TransferError::Unreadable(format!("block {block} changed while sending")), true);
        }
        *known = Some(hash);
        let keep = match self.phase {
            SendPhase::Hashing => {
                let whole = (self.blocks == 1).then_some(bytes);
                self.offer(id, net, whole);
                self.held = self.phase == SendPhase::Offered && !self.inline && may_hold && self.blocks == 1;
                self.held
            }
            SendPhase::Sending => {
                let data = purpose == Purpose::Send;
                if data {
                    self.unacked += 1;
                }
                send_block(net, &self.peer, id, block, bytes.len() as u32, data, hash);
                data
            }
            SendPhase::Offered | SendPhase::Paused { .. } => false,
        };
        if !keep {
            net.output(Output::File(FileOp::ReleaseBlock { id, block }));
        }
        Step::Go
    }

    /// A control frame from the receiver.
    pub(crate) fn on_control(&mut self, id: TransferId, net: &mut Net<'_>, control: Control) -> Step {
        match control {
            Control::Accept { have, proof, .. } if self.phase == SendPhase::Offered => {
                let Some(have) = BlockSet::from_bytes(self.blocks, &have) else {
                    return Step::Fail(TransferError::Protocol("accept with a bitmap of the wrong length".into()), true);
                };
                // Only the receiver that accepted first may continue: whoever else got its
                // id (the signaling server could) cannot answer our nonce.
                let proven = match (self.token, proof) {
                    (None, Proof::Token(token)) => {
                        self.token = Some(token);
                        true
                    }
                    (Some(known), Proof::Token(token)) => known == token,
                    (Some(known), Proof::Response(r)) => resume_response(&known, self.nonce) == r,
                    (None, Proof::Response(_)) => false,
                };
                if !proven {
                    return Step::Fail(TransferError::Protocol("the peer resuming this transfer is not the one that accepted it".into()), true);
                }
                if self.held && have.contains(0) {
                    self.held = false;
                    net.output(Output::File(FileOp::ReleaseBlock { id, block: 0 }));
                }
                self.meter.restart();
                self.meter.set(net.now, have.bytes(self.meta.size));
                self.have = have;
                self.phase = SendPhase::Sending;
                self.next = 0;
                self.wants.clear();
                self.reading.clear();
                self.unacked = 0;
                self.end_sent = false;
                if self.inline && self.have.is_full() {
                    // It took the file from the offer: nothing to send; its complete ends it.
                    self.next = self.blocks;
                    self.end_sent = true;
                }
                net.emit(Event::TransferResumed { id });
                Step::Go
            }
            Control::Reject { reason, .. } if self.phase == SendPhase::Offered => Step::Fail(TransferError::Declined(reason), false),
            Control::Ack { block, .. } if self.phase == SendPhase::Sending && block < self.blocks => {
                if self.have.insert(block) {
                    self.unacked = self.unacked.saturating_sub(1);
                    self.meter.set(net.now, self.have.bytes(self.meta.size));
                }
                Step::Go
            }
            Control::Want { block, .. } if self.phase == SendPhase::Sending && block < self.blocks => {
                // The receiver's copy of this block differs from ours: send it.
                self.have.remove(block);
                if !self.wants.contains(&block) {
                    self.wants.push_back(block);
                }
                Step::Go
            }
            Control::Complete { .. } if self.phase == SendPhase::Sending && self.end_sent && self.have.is_full() => {
                let hashes: Vec<_> = self.hashes.iter().flatten().copied().collect();
                Step::Done(content_hash(self.meta.size, &hashes))
            }
            Control::Cancel { code, reason, .. } => Step::Fail(TransferError::from_wire(code, reason), false),
            other => Step::Fail(TransferError::Protocol(format!("unexpected {other:?} for transfer {id}")), true),
        }
    }

    /// The next thing to do for this transfer, if the window allows one.
    pub(crate) fn next_action(&mut self) -> Option<Action> {
        let window_full = self.unacked + self.reading.len() as u32 >= WINDOW_BLOCKS;
        if let Some(&block) = self.wants.front() {
            if window_full {
                return None;
            }
            self.wants.pop_front();
            return Some(Action::Read(block, Purpose::Send));
        }
        if self.next >= self.blocks {
            return None;
        }
        let block = self.next;
        let action = match (self.have.contains(block), self.hashes[block as usize]) {
            (true, Some(hash)) => Action::Announce(block, hash),
            (true, None) => Action::Read(block, Purpose::Hash),
            (false, _) if window_full => return None,
            (false, Some(hash)) if self.held => Action::SendHeld(block, hash),
            (false, _) => Action::Read(block, Purpose::Send),
        };
        self.next += 1;
        Some(action)
    }

    pub(crate) fn act(&mut self, id: TransferId, net: &mut Net<'_>, action: Action) {
        match action {
            Action::Read(block, purpose) => self.read(id, net, block, purpose),
            Action::SendHeld(block, hash) => {
                self.held = false;
                self.unacked += 1;
                send_block(net, &self.peer, id, block, block_len(self.meta.size, block) as u32, true, hash);
            }
            Action::Announce(block, hash) => {
                let header = BulkHeader::Block { id, block, len: block_len(self.meta.size, block) as u32, data: false, hash };
                net.send_bulk(&self.peer, vec![BulkItem::Frame { id, bytes: header.encode() }]);
            }
        }
    }

    /// Sends the end frame once every block went out.
    pub(crate) fn maybe_end(&mut self, id: TransferId, net: &mut Net<'_>) {
        let all_dispatched = self.next >= self.blocks && self.reading.is_empty() && self.wants.is_empty();
        if !all_dispatched || self.end_sent {
            return;
        }
        if let Some(all) = self.hashes.iter().copied().collect::<Option<Vec<_>>>() {
            self.end_sent = true;
            let end = BulkHeader::End { id, hash: content_hash(self.meta.size, &all) };
            net.send_bulk(&self.peer, vec![BulkItem::Frame { id, bytes: end.encode() }]);
        }
    }

    /// The peer came back: offer again, if we were waiting for it.
    pub(crate) fn peer_back(&mut self, id: TransferId, net: &mut Net<'_>) -> Step {
        if matches!(self.phase, SendPhase::Paused { .. }) {
            self.offer(id, net, None);
        }
        Step::Go
    }

    /// The peer left: keep our side until it comes back or `until`.
    pub(crate) fn pause(&mut self, id: TransferId, net: &mut Net<'_>, until: Millis) -> Step {
        match self.phase {
            // Not offered yet: it still offers once its first block is hashed, if the peer is back.
            SendPhase::Hashing | SendPhase::Paused { .. } => return Step::Go,
            SendPhase::Offered | SendPhase::Sending => {}
        }
        self.phase = SendPhase::Paused { until };
        self.held = false;
        self.inline = false;
        self.reading.clear();
        self.unacked = 0;
        self.meter.restart();
        net.output(Output::File(FileOp::Release { id, except: None }));
        net.emit(Event::TransferPaused { id });
        Step::Go
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::output::Output;
    use crate::core::testing::Harness;
    use crate::core::transfer::blocks::BlockSet;

    fn file(blocks: u32) -> (FileMeta, Vec<u8>) {
        let bytes: Vec<u8> = (0..blocks as usize * BLOCK_SIZE as usize).map(|i| (i % 251) as u8).collect();
        (FileMeta { name: "f".into(), size: bytes.len() as u64, mime: String::new() }, bytes)
    }

    fn reads(h: &mut Harness) -> Vec<u32> {
        h.driver_work()
            .into_iter()
            .filter_map(|o| match o {
                Output::File(FileOp::Read { block, .. }) => Some(block),
                _ => None,
            })
            .collect()
    }

    fn block(bytes: &[u8], b: u32) -> &[u8] {
        &bytes[b as usize * BLOCK_SIZE as usize..(b as usize + 1) * BLOCK_SIZE as usize]
    }

    #[test]
    fn offers_after_hashing_then_sends_within_the_window_announces_what_is_there_and_ends() {
        let mut h = Harness::with_peer("b");
        let peer = h.peer();
        let id = TransferId(7);
        let (meta, bytes) = file(10);
        let mut out = Outgoing::new(peer.clone(), meta);
        out.start(id, &mut h.net());
        assert_eq!(reads(&mut h), vec![0], "block 0 is read for the head hash");
        assert_eq!(out.block_read(id, &mut h.net(), 0, block(&bytes, 0), false), Step::Go);
        assert!(matches!(h.sent_controls(&peer).as_slice(), [Control::Offer { size, .. }] if *size == 10 * BLOCK_SIZE));
        // The receiver holds block 0 already (from an earlier partial).
        let mut have = BlockSet::new(10);
        have.insert(0);
        let accept = Control::Accept { id, have: have.as_bytes().to_vec(), proof: Proof::Token([1; 32]) };
        assert_eq!(out.on_control(id, &mut h.net(), accept), Step::Go);
        let mut actions = Vec::new();
        while let Some(action) = out.next_action() {
            out.act(id, &mut h.net(), action);
            actions.push(action);
        }
        // Block 0 is announced by its hash (known from the offer); 8 reads fill the window.
        assert_eq!(actions[0], Action::Announce(0, hash_block(block(&bytes, 0))));
        assert_eq!(actions.len(), 1 + WINDOW_BLOCKS as usize);
        for b in reads(&mut h) {
            out.block_read(id, &mut h.net(), b, block(&bytes, b), false);
        }
        assert_eq!(out.next_action(), None, "the window is full until acks come");
        for b in 1..=8 {
            out.on_control(id, &mut h.net(), Control::Ack { id, block: b });
        }
        while let Some(action) = out.next_action() {
            out.act(id, &mut h.net(), action);
        }
        for b in reads(&mut h) {
            out.block_read(id, &mut h.net(), b, block(&bytes, b), false);
        }
        out.maybe_end(id, &mut h.net());
        let bulk = h.sent_bulk();
        let ends = bulk.iter().filter(|i| matches!(i, BulkItem::Frame { bytes, .. } if bytes[0] == 0x17)).count();
        assert_eq!(ends, 1);
        out.on_control(id, &mut h.net(), Control::Ack { id, block: 9 });
        let hashes: Vec<_> = (0..10).map(|b| hash_block(block(&bytes, b))).collect();
        assert_eq!(out.on_control(id, &mut h.net(), Control::Complete { id }), Step::Done(content_hash(10 * BLOCK_SIZE, &hashes)));
    }

    #[test]
    fn only_the_receiver_that_accepted_first_may_continue() {
        let mut h = Harness::with_peer("b");
        let peer = h.peer();
        let id = TransferId(7);
        let (meta, bytes) = file(2);
        let mut out = Outgoing::new(peer.clone(), meta);
        out.start(id, &mut h.net());
        out.block_read(id, &mut h.net(), 0, block(&bytes, 0), false);
        let bitmap = BlockSet::new(2).as_bytes().to_vec();
        assert_eq!(out.on_control(id, &mut h.net(), Control::Accept { id, have: bitmap.clone(), proof: Proof::Token([1; 32]) }), Step::Go);
        // The peer left and came back: the new accept must answer the new nonce.
        out.pause(id, &mut h.net(), Millis(1 << 40));
        out.peer_back(id, &mut h.net());
        let step = out.on_control(id, &mut h.net(), Control::Accept { id, have: bitmap, proof: Proof::Token([2; 32]) });
        assert!(matches!(&step, Step::Fail(TransferError::Protocol(m), true) if m.contains("not the one that accepted")), "{step:?}");
        // A bitmap of the wrong length is refused as well.
        let mut other = Outgoing::new(peer, file(2).0);
        other.start(id, &mut h.net());
        other.block_read(id, &mut h.net(), 0, block(&bytes, 0), false);
        let step = other.on_control(id, &mut h.net(), Control::Accept { id, have: vec![0; 9], proof: Proof::Token([1; 32]) });
        assert!(matches!(step, Step::Fail(TransferError::Protocol(_), true)));
    }

    #[test]
    fn a_small_file_goes_with_its_offer_only_to_a_peer_that_takes_that() {
        let (meta, bytes) = (FileMeta { name: "f".into(), size: 2000, mime: String::new() }, vec![3u8; 2000]);
        for takes in [false, true] {
            let mut h = Harness::with_peer("b");
            if takes {
                h.peer_takes_inline_offers();
            }
            let peer = h.peer();
            let id = TransferId(7);
            let mut out = Outgoing::new(peer.clone(), meta.clone());
            out.start(id, &mut h.net());
            out.block_read(id, &mut h.net(), 0, &bytes, true);
            let offers = h.sent_controls(&peer);
            assert!(matches!(offers.as_slice(), [Control::Offer { data, .. }] if data.is_some() == takes), "{offers:?}");
            // The block is kept for a plain offer, and let go when the offer carried it.
            let released = h.driver_work().iter().any(|o| matches!(o, Output::File(FileOp::ReleaseBlock { block: 0, .. })));
            assert_eq!(released, takes);
            // Its accept (the receiver has it all) leaves nothing to send.
            let mut have = BlockSet::new(1);
            have.insert(0);
            out.on_control(id, &mut h.net(), Control::Accept { id, have: have.as_bytes().to_vec(), proof: Proof::Token([1; 32]) });
            while let Some(action) = out.next_action() {
                out.act(id, &mut h.net(), action);
            }
            out.maybe_end(id, &mut h.net());
            let bulk = h.sent_bulk();
            assert_eq!(bulk.is_empty(), takes, "{bulk:?}");
            let hash = content_hash(2000, [&hash_block(&bytes)]);
            if takes {
                assert_eq!(out.on_control(id, &mut h.net(), Control::Complete { id }), Step::Done(hash));
            }
        }
    }
}
