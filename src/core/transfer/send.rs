//! The sending side: hash the first block, offer, then stream blocks to the bulk
//! channel (reading ahead a little, never more than the receiver's window), tell the
//! hashes of blocks the receiver already has, end with the content hash, and finish
//! when the receiver says it verified and stored everything.

use std::collections::VecDeque;

use super::blocks::resume_response;
use super::blocks::{block_count, block_len, block_offset, content_hash, hash_block, BlockSet, Hash, BLOCK_SIZE};
use super::frame::{BulkHeader, Control, Proof};
use super::{BulkItem, FileMeta, ProgressMeter, Transfer, TransferError, TransferId, READ_AHEAD, WINDOW_BLOCKS};
use crate::core::mesh::{Event, Mesh, Output};
use crate::core::{Millis, PeerId, SendError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendPhase {
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
enum Purpose {
    /// Hash it, then put it on the channel.
    Send,
    /// Only its hash is needed (the receiver has the bytes).
    Hash,
}

enum Action {
    Read(u32, Purpose),
    /// Tell the receiver the hash of a block it has, so it can check its copy.
    Announce(u32, Hash),
}

#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) peer: PeerId,
    pub(crate) meta: FileMeta,
    pub(crate) phase: SendPhase,
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
}

impl Outgoing {
    fn reading_bytes(&self) -> u64 {
        self.reading.iter().filter(|(_, p)| *p == Purpose::Send).map(|(b, _)| block_len(self.meta.size, *b)).sum()
    }

    /// The next thing to do for this transfer, if the window allows one.
    fn next_action(&mut self) -> Option<Action> {
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
            (false, _) => Action::Read(block, Purpose::Send),
        };
        self.next += 1;
        Some(action)
    }

    pub(crate) fn paused_until(&self) -> Option<Millis> {
        match self.phase {
            SendPhase::Paused { until } => Some(until),
            _ => None,
        }
    }

    fn all_dispatched(&self) -> bool {
        self.next >= self.blocks && self.reading.is_empty() && self.wants.is_empty()
    }
}

impl Mesh {
    /// Offers a file to `peer`; its blocks are read with [`Output::ReadBlock`] as
    /// needed. Fails like [`Mesh::send`] when the peer is not connected.
    pub fn send_file(&mut self, now: Millis, peer: &PeerId, meta: FileMeta) -> Result<TransferId, SendError> {
        if self.is_closed() {
            return Err(SendError::Closed);
        }
        if !self.is_open(peer) {
            return Err(SendError::NotConnected(peer.clone()));
        }
        let id = self.new_transfer_id();
        let blocks = block_count(meta.size);
        let out = Outgoing {
            peer: peer.clone(),
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
            meta,
        };
        self.transfers.insert(id, Transfer::Out(out));
        if blocks == 0 {
            self.offer(now, id);
        } else {
            self.read(id, 0, Purpose::Hash);
        }
        Ok(id)
    }

    fn read(&mut self, id: TransferId, block: u32, purpose: Purpose) {
        let Some(Transfer::Out(t)) = self.transfers.get_mut(&id) else { return };
        t.reading.push((block, purpose));
        let len = block_len(t.meta.size, block);
        self.push_output(Output::ReadBlock { id, block, offset: block_offset(block), len });
    }

    fn offer(&mut self, now: Millis, id: TransferId) {
        let Some(Transfer::Out(t)) = self.transfers.get(&id) else { return };
        if !self.is_open(&t.peer) {
            let until = now + self.config.resume_timeout_ms;
            if let Some(Transfer::Out(t)) = self.transfers.get_mut(&id) {
                t.phase = SendPhase::Offered;
            }
            return self.pause_send(id, until);
        }
        let nonce = self.rng_u64();
        let Some(Transfer::Out(t)) = self.transfers.get_mut(&id) else { return };
        t.phase = SendPhase::Offered;
        t.nonce = nonce;
        let head = if t.blocks == 0 { hash_block(&[]) } else { t.hashes[0].unwrap_or_default() };
        let hash = t.hashes.iter().copied().collect::<Option<Vec<_>>>().map(|all| content_hash(t.meta.size, &all));
        let offer = Control::Offer {
            id,
            size: t.meta.size,
            block_size: BLOCK_SIZE as u32,
            head,
            hash,
            name: t.meta.name.clone(),
            mime: t.meta.mime.clone(),
            nonce,
        };
        let peer = t.peer.clone();
        self.send_control(&peer, &offer);
    }

    /// The driver read a block asked for with [`Output::ReadBlock`]. Returns whether
    /// the driver must keep the bytes for the [`BulkItem::Slice`]s that follow.
    pub fn handle_block_read(&mut self, now: Millis, id: TransferId, block: u32, bytes: &[u8]) -> bool {
        if let Some(Transfer::Serve(_)) = self.transfers.get(&id) {
            return self.serve_block_read(now, id, block, bytes);
        }
        let Some(Transfer::Out(t)) = self.transfers.get_mut(&id) else { return false };
        let peer = t.peer.clone();
        let Some(at) = t.reading.iter().position(|(b, _)| *b == block) else { return false };
        let (_, purpose) = t.reading.swap_remove(at);
        if bytes.len() as u64 != block_len(t.meta.size, block) {
            self.fail(now, id, TransferError::Unreadable(format!("block {block} read {} bytes; the file changed size", bytes.len())), true);
            return false;
        }
        let hash = hash_block(bytes);
        let known = &mut t.hashes[block as usize];
        if known.is_some_and(|k| k != hash) {
            self.fail(now, id, TransferError::Unreadable(format!("block {block} changed while sending")), true);
            return false;
        }
        *known = Some(hash);
        let keep = match t.phase {
            SendPhase::Hashing => {
                self.offer(now, id);
                false
            }
            SendPhase::Sending => {
                let data = purpose == Purpose::Send;
                if data {
                    t.unacked += 1;
                }
                self.enqueue_block(&peer, id, block, bytes.len() as u32, data, hash);
                data
            }
            SendPhase::Offered | SendPhase::Paused { .. } => false,
        };
        self.pump_sends(now, &peer);
        keep
    }

    /// Puts a block's header on `peer`'s bulk lane and, if `data`, its `len` bytes as
    /// slices of the block the driver holds (no copy to prepend the header).
    pub(crate) fn enqueue_block(&mut self, peer: &PeerId, id: TransferId, block: u32, len: u32, data: bool, hash: Hash) {
        let header = BulkHeader::Block { id, block, len, data, hash };
        let chunk = self.bulk_chunk(peer);
        let mut items = vec![BulkItem::Frame(header.encode())];
        let mut start = 0;
        while data && start < len {
            let n = chunk.min(len - start);
            items.push(BulkItem::Slice { id, block, start, len: n, last: start + n == len });
            start += n;
        }
        self.bulk_enqueue(peer, items);
    }

    /// The driver could not read a block.
    pub fn handle_block_unreadable(&mut self, now: Millis, id: TransferId, message: &str) {
        if matches!(self.transfers.get(&id), Some(Transfer::Out(_) | Transfer::Serve(_))) {
            self.fail(now, id, TransferError::Unreadable(message.to_owned()), true);
        }
    }

    /// Control frames for a transfer we send.
    pub(crate) fn sender_control(&mut self, now: Millis, from: &PeerId, control: Control) {
        let id = control.id();
        let Some(Transfer::Out(t)) = self.transfers.get_mut(&id) else { return };
        if t.peer != *from {
            return self.warn(format!("peer {from} sent a frame for a transfer that is not theirs"));
        }
        match control {
            Control::Accept { have, proof, .. } if t.phase == SendPhase::Offered => {
                let Some(have) = BlockSet::from_bytes(t.blocks, &have) else {
                    return self.fail(now, id, TransferError::Protocol("accept with a bitmap of the wrong length".into()), true);
                };
                // Only the receiver that accepted first may continue: whoever else got
                // its id (the signaling server could) cannot answer our nonce.
                let proven = match (t.token, proof) {
                    (None, Proof::Token(token)) => {
                        t.token = Some(token);
                        true
                    }
                    (Some(known), Proof::Token(token)) => known == token,
                    (Some(known), Proof::Response(r)) => resume_response(&known, t.nonce) == r,
                    (None, Proof::Response(_)) => false,
                };
                if !proven {
                    let message = "the peer resuming this transfer is not the one that accepted it".to_owned();
                    return self.fail(now, id, TransferError::Protocol(message), true);
                }
                t.meter.restart();
                t.meter.set(now, have.bytes(t.meta.size));
                t.have = have;
                t.phase = SendPhase::Sending;
                t.next = 0;
                t.wants.clear();
                t.reading.clear();
                t.unacked = 0;
                t.end_sent = false;
                self.emit(Event::TransferResumed { id });
                self.pump_sends(now, from);
            }
            Control::Reject { reason, .. } if t.phase == SendPhase::Offered => {
                self.fail(now, id, TransferError::Declined(reason), false);
            }
            Control::Ack { block, .. } if t.phase == SendPhase::Sending && block < t.blocks => {
                if t.have.insert(block) {
                    t.unacked = t.unacked.saturating_sub(1);
                    let bytes = t.have.bytes(t.meta.size);
                    t.meter.set(now, bytes);
                    self.report_progress(now, id, false);
                    self.pump_sends(now, from);
                }
            }
            Control::Want { block, .. } if t.phase == SendPhase::Sending && block < t.blocks => {
                // The receiver's copy of this block differs from ours: send it.
                t.have.remove(block);
                if !t.wants.contains(&block) {
                    t.wants.push_back(block);
                }
                self.pump_sends(now, from);
            }
            Control::Complete { .. } if t.phase == SendPhase::Sending && t.end_sent && t.have.is_full() => {
                let hash = t.hashes.iter().flatten().copied().collect::<Vec<_>>();
                let hash = content_hash(t.meta.size, &hash);
                self.report_progress(now, id, true);
                self.transfers.remove(&id);
                self.push_output(Output::ReleaseBlocks { id, except: None });
                self.emit(Event::TransferDone { id, hash });
            }
            Control::Cancel { code, reason, .. } => {
                self.fail(now, id, TransferError::from_wire(code, reason), false);
            }
            other => {
                let message = format!("unexpected {other:?} for transfer {id}");
                self.fail(now, id, TransferError::Protocol(message), true);
            }
        }
    }

    /// Issues reads for `peer`'s sending transfers while the windows and the read-ahead
    /// allow, then sends each one's end frame once every block went out.
    pub(crate) fn pump_sends(&mut self, _now: Millis, peer: &PeerId) {
        let peer = peer.clone();
        // Round-robin over this peer's transfers: one read each per turn, starting after
        // the one served last (or the lowest id would win every freed slot).
        loop {
            let mut progressed = false;
            let mut ids = self.sending_to(&peer);
            if let Some(last) = self.send_cursor.get(&peer) {
                let next = ids.iter().position(|id| id > last).unwrap_or(0);
                ids.rotate_left(next);
            }
            for id in ids {
                if self.bulk_queued(&peer) + self.reading_bytes(&peer) >= READ_AHEAD {
                    return;
                }
                if let Some(Transfer::Serve(_)) = self.transfers.get(&id) {
                    if self.next_serve_read(id) {
                        self.send_cursor.insert(peer.clone(), id);
                        progressed = true;
                    }
                    continue;
                }
                let Some(Transfer::Out(t)) = self.transfers.get_mut(&id) else { continue };
                let size = t.meta.size;
                match t.next_action() {
                    Some(Action::Read(block, purpose)) => {
                        self.send_cursor.insert(peer.clone(), id);
                        self.read(id, block, purpose);
                        progressed = true;
                        continue;
                    }
                    Some(Action::Announce(block, hash)) => {
                        let header = BulkHeader::Block { id, block, len: block_len(size, block) as u32, data: false, hash };
                        self.bulk_enqueue(&peer, vec![BulkItem::Frame(header.encode())]);
                        progressed = true;
                        continue;
                    }
                    None => {}
                }
                if t.all_dispatched() && !t.end_sent {
                    if let Some(all) = t.hashes.iter().copied().collect::<Option<Vec<_>>>() {
                        let hash = content_hash(t.meta.size, &all);
                        t.end_sent = true;
                        self.bulk_enqueue(&peer, vec![BulkItem::Frame(BulkHeader::End { id, hash }.encode())]);
                    }
                }
            }
            if !progressed {
                return;
            }
        }
    }

    fn sending_to(&self, peer: &PeerId) -> Vec<TransferId> {
        let mut ids: Vec<_> = self
            .transfers
            .iter()
            .filter(|(_, t)| match t {
                Transfer::Out(o) => o.peer == *peer && o.phase == SendPhase::Sending,
                Transfer::Serve(s) => s.peer == *peer,
                _ => false,
            })
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        ids
    }

    fn reading_bytes(&self, peer: &PeerId) -> u64 {
        self.transfers
            .values()
            .filter_map(|t| match t {
                Transfer::Out(o) if o.peer == *peer => Some(o.reading_bytes()),
                Transfer::Serve(s) if s.peer == *peer => Some(s.reading_bytes()),
                _ => None,
            })
            .sum()
    }

    /// The peer came back: offer our paused transfers again.
    pub(crate) fn resume_sends(&mut self, now: Millis, peer: &PeerId) {
        let mut ids: Vec<_> = self
            .transfers
            .iter()
            .filter(|(_, t)| matches!(t, Transfer::Out(o) if o.peer == *peer && matches!(o.phase, SendPhase::Paused { .. })))
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        for id in ids {
            self.offer(now, id);
        }
    }

    /// The peer left: keep our side until it comes back or `until`.
    pub(crate) fn pause_send(&mut self, id: TransferId, until: Millis) {
        let Some(Transfer::Out(t)) = self.transfers.get_mut(&id) else { return };
        match t.phase {
            // Not offered yet: it still offers once its first block is hashed, if the peer is back.
            SendPhase::Hashing | SendPhase::Paused { .. } => return,
            SendPhase::Offered | SendPhase::Sending => {}
        }
        t.phase = SendPhase::Paused { until };
        t.reading.clear();
        t.unacked = 0;
        t.meter.restart();
        self.push_output(Output::ReleaseBlocks { id, except: None });
        self.emit(Event::TransferPaused { id });
    }
}
