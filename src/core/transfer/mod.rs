//! File transfers, one component: direct transfers both ways (offer, accept or reject,
//! blocks with their hashes on the bulk channel, acks once stored, a final content-hash
//! check, resume from whatever the receiver holds), multi-source downloads, and serving
//! shared files to downloaders. Sans-IO like the rest of the core: the driver reads
//! blocks when asked ([`FileOp::Read`]) and stores what it is told to
//! ([`StoreOp`]); every decision is made here.
//!
//! `Transfers` owns every transfer and routes each input to the state machine it is
//! for (`any::Transfer`: `send::Outgoing`, `recv::Incoming`, `download::Download`,
//! `serve::Serving`), which decide, and return a `Step`; ending a transfer is done
//! here, once. Bytes arriving on a bulk channel go through the one receive path
//! (`receive.rs`), shared by direct transfers and downloads; bytes leaving go through
//! one pump (`outbound.rs`), shared by sends and serves.
//!
//! [`FileOp::Read`]: crate::core::FileOp::Read
//! [`StoreOp`]: crate::core::StoreOp

mod any;
pub mod blocks;
mod download;
pub(crate) mod frame;
mod outbound;
mod progress;
mod receive;
mod recv;
mod send;
mod serve;
mod types;

use std::collections::HashMap;

pub use blocks::{Hash, BLOCK_SIZE};
pub use download::STALLED_HOLDER_MS;
pub use frame::{CancelCode, FrameError};
pub(crate) use outbound::{read_block, send_block};
pub(crate) use progress::ProgressMeter;
pub use recv::{MAX_PENDING_OFFERS, MAX_PENDING_OFFERS_PER_PEER};
pub use serve::MAX_SERVES_PER_PEER;
pub use types::{BulkItem, Direction, FileMeta, Partial, Progress, StoreError, TransferError, TransferId};

use self::any::Transfer;
use self::download::Download;
use self::frame::{BulkHeader, Control};
use self::receive::{receive_bytes, Header, RecvLane};
use self::recv::Incoming;
use self::send::Outgoing;
use self::serve::Serving;
use super::discovery::{Hit, ServedFile, ShareId};
use super::input::FrameId;
use super::net::Net;
use super::order::sorted;
use super::output::{Event, FileOp, Output, StoreOp};
use super::{Millis, PeerId, SendError};

/// Unacknowledged blocks a sender may have in flight to one receiver: bounds the
/// receiver's memory when its storage is slower than the network.
pub(crate) const WINDOW_BLOCKS: u32 = 8;
/// Bytes read ahead of the bulk channel per peer, so the next block is ready before
/// the current one drains.
pub(crate) const READ_AHEAD: u64 = 2 * BLOCK_SIZE;
/// What a sender may keep of one-block files it hashed until their offers are answered
/// (`send.rs`): a block's buffer each, so eight offers; others read again on accept.
pub(crate) const OFFERS_HELD_MAX_BYTES: u64 = 8 * BLOCK_SIZE;
/// Progress events at most this often per transfer (at least 4 a second while bytes flow).
pub(crate) const PROGRESS_INTERVAL_MS: u64 = 200;

/// What a state machine decided.
#[derive(Debug, PartialEq)]
pub(crate) enum Step {
    /// It goes on.
    Go,
    /// It ended with the file.
    Done(Hash),
    /// A serve ended quietly: finished, cancelled by the downloader, or asked again.
    Ended,
    /// It ended without the file; `tell` the other side(s) why.
    Fail(TransferError, bool),
}

/// Every transfer, both directions, and the state of every peer's bulk channel.
#[derive(Debug, Default)]
pub(crate) struct Transfers {
    map: HashMap<TransferId, Transfer>,
    /// Per peer, the transfer that got the last read (for round-robin).
    send_cursor: HashMap<PeerId, TransferId>,
    /// Per peer, where its incoming bulk byte stream stands.
    lanes: HashMap<PeerId, RecvLane>,
    /// Shares found changed on disk while serving: the mesh stops sharing them.
    changed_shares: Vec<ShareId>,
}

impl Transfers {
    pub(crate) fn next_deadline(&self) -> Option<Millis> {
        self.map.values().filter_map(Transfer::deadline).min()
    }

    /// Shares that must no longer be shared (their file changed), since the last call.
    pub(crate) fn take_changed_shares(&mut self) -> Vec<ShareId> {
        std::mem::take(&mut self.changed_shares)
    }

    fn new_id(&self, net: &mut Net<'_>) -> TransferId {
        loop {
            let id = TransferId(net.random());
            if !self.map.contains_key(&id) {
                return id;
            }
        }
    }

    // -- commands ----------------------------------------------------------------------

    /// Offers a file to `peer`; its blocks are read with [`FileOp::Read`] as needed.
    pub(crate) fn send_file(&mut self, net: &mut Net<'_>, peer: &PeerId, meta: FileMeta) -> Result<TransferId, SendError> {
        if !net.is_open(peer) {
            return Err(SendError::NotConnected(peer.clone()));
        }
        let id = self.new_id(net);
        let mut out = Outgoing::new(peer.clone(), meta);
        out.start(id, net);
        self.map.insert(id, Transfer::Send(out));
        Ok(id)
    }

    /// The user accepted an offer.
    pub(crate) fn accept(&mut self, net: &mut Net<'_>, id: TransferId) -> Result<(), TransferError> {
        match self.map.get_mut(&id) {
            Some(Transfer::Receive(t)) => t.accept(id, net),
            _ => Err(TransferError::Cancelled { by_peer: true, reason: "the offer is no longer open".into() }),
        }
    }

    /// The user declined an offer.
    pub(crate) fn reject(&mut self, net: &mut Net<'_>, id: TransferId, reason: &str) {
        if let Some(Transfer::Receive(t)) = self.map.get(&id) {
            if t.reject(id, net, reason) {
                self.map.remove(&id);
            }
        }
    }

    /// Cancels a transfer (either direction) or declines an open offer; the peer is told.
    pub(crate) fn cancel(&mut self, net: &mut Net<'_>, id: TransferId, reason: &str) {
        self.fail(net, id, TransferError::Cancelled { by_peer: false, reason: reason.to_owned() }, true);
    }

    /// Downloads the content `hash` from every listed holder (peer and its share id).
    pub(crate) fn download(&mut self, net: &mut Net<'_>, meta: FileMeta, hash: Hash, holders: &[(PeerId, ShareId)]) -> Result<TransferId, SendError> {
        let id = self.new_id(net);
        let download = Download::start(id, net, meta, hash, holders)?;
        self.map.insert(id, Transfer::Download(download));
        Ok(id)
    }

    /// Downloads what a query found: the first hit's content, from every hit with that
    /// content (the same hash and size; other bytes under the same name are another file).
    pub(crate) fn download_hits(&mut self, net: &mut Net<'_>, hits: &[Hit]) -> Result<TransferId, SendError> {
        let Some(first) = hits.first() else { return Err(SendError::NotConnected(PeerId::new(""))) };
        let holders: Vec<_> =
            hits.iter().filter(|h| h.hash == first.hash && h.meta.size == first.meta.size).map(|h| (h.peer.clone(), h.id)).collect();
        self.download(net, first.meta.clone(), first.hash, &holders)
    }

    /// Bytes each holder of a download served so far (verified), in the order given.
    pub(crate) fn download_sources(&self, id: TransferId) -> Option<Vec<(PeerId, u64)>> {
        match self.map.get(&id) {
            Some(Transfer::Download(d)) => Some(d.served()),
            _ => None,
        }
    }

    /// A file is no longer shared: its serves end with `NotShared` for the downloader.
    pub(crate) fn end_serves_of(&mut self, net: &mut Net<'_>, share: ShareId) {
        let ids: Vec<_> = self.map.iter().filter(|(_, t)| matches!(t, Transfer::Serve(s) if s.share == share)).map(|(id, _)| *id).collect();
        for id in sorted(ids) {
            self.fail(net, id, TransferError::NotShared("the holder stopped sharing this file".into()), true);
        }
    }

    // -- frames from peers -------------------------------------------------------------

    /// A transfer control frame from `from`.
    #[inline(never)] // see `Mesh::handle`
    pub(crate) fn on_control(&mut self, net: &mut Net<'_>, from: &PeerId, frame: &[u8]) {
        let control = match Control::decode(frame) {
            Ok(control) => control,
            Err(err) => return net.warn(format!("bad transfer frame from {from}: {err}")),
        };
        let id = control.id();
        let step = match self.map.get_mut(&id) {
            Some(Transfer::Send(t)) if t.peer == *from => t.on_control(id, net, control),
            Some(Transfer::Receive(t)) if t.peer == *from => t.on_control(id, net, control),
            Some(Transfer::Download(d)) => d.on_control(id, net, from, control),
            Some(Transfer::Serve(s)) if s.peer == *from => s.on_control(control),
            Some(_) if matches!(control, Control::Offer { .. }) => {
                return recv::refuse(net, from, id, CancelCode::Protocol, "transfer id already in use")
            }
            Some(_) => return net.warn(format!("peer {from} sent a frame for a transfer that is not theirs")),
            None => match control {
                Control::Offer { .. } => return self.offered(net, from, control),
                Control::Cancel { .. } => return,
                other => return net.warn(format!("peer {from} sent {other:?} for no transfer of ours")),
            },
        };
        self.apply(net, id, step);
        // An accept, an ack or a want may have opened the sender's window.
        self.pump(net, from);
    }

    fn offered(&mut self, net: &mut Net<'_>, from: &PeerId, offer: Control) {
        let pending = self.map.values().filter_map(|t| match t {
            Transfer::Receive(t) if t.pending() => Some(&t.peer),
            _ => None,
        });
        let (mine, all) = pending.fold((0, 0), |(mine, all), peer| (mine + usize::from(peer == from), all + 1));
        if let Some((id, incoming)) = Incoming::offered(net, from, offer, mine, all) {
            self.map.insert(id, Transfer::Receive(incoming));
        }
    }

    /// A frame on `from`'s bulk channel.
    #[inline(never)] // see `Mesh::handle`
    pub(crate) fn on_bulk(&mut self, net: &mut Net<'_>, from: &PeerId, bytes: &[u8], frame: FrameId) {
        let lane = std::mem::take(self.lanes.entry(from.clone()).or_default());
        let next = match lane {
            RecvLane::Idle => self.bulk_header(net, from, bytes),
            RecvLane::Skip { remaining } => {
                let remaining = remaining.saturating_sub(bytes.len() as u64);
                if remaining > 0 {
                    RecvLane::Skip { remaining }
                } else {
                    RecvLane::Idle
                }
            }
            RecvLane::Block { id, .. } => {
                let receiver = self.map.get_mut(&id).and_then(Transfer::receiving);
                let (next, failed) = receive_bytes(net, receiver, from, lane, bytes, frame);
                match failed {
                    Some(error) => self.fail(net, id, error, true),
                    None => self.report_progress(net, id, false),
                }
                next
            }
        };
        self.lanes.insert(from.clone(), next);
    }

    /// A frame that is not a block's bytes: a header, or a transfer's end.
    fn bulk_header(&mut self, net: &mut Net<'_>, from: &PeerId, bytes: &[u8]) -> RecvLane {
        let header = match BulkHeader::decode(bytes) {
            Ok(header) => header,
            Err(err) => {
                net.warn(format!("bad bulk frame from {from}: {err}"));
                return RecvLane::Idle;
            }
        };
        match header {
            BulkHeader::Block { id, block, len, data: true, hash } => {
                let Some(receiver) = self.map.get_mut(&id).and_then(Transfer::receiving) else {
                    net.warn(format!("peer {from} sent block {block} for no transfer we receive"));
                    return RecvLane::skip(true, len);
                };
                match receiver.header(from, block, len, hash) {
                    Header::Receive { offset } => RecvLane::block(id, block, offset, len, hash),
                    Header::Skip => RecvLane::skip(true, len),
                    Header::Broken(error) => {
                        if let receive::Broken::Fail(error) = receiver.broken(net, id, from, error) {
                            self.fail(net, id, error, true);
                        }
                        RecvLane::skip(true, len)
                    }
                }
            }
            BulkHeader::Block { id, block, len, data: false, hash } => {
                let step = match self.map.get_mut(&id) {
                    Some(Transfer::Receive(t)) if t.peer == *from => t.announced(id, net, block, len, hash),
                    _ => return RecvLane::Idle,
                };
                self.apply(net, id, step);
                RecvLane::Idle
            }
            BulkHeader::End { id, hash } => {
                let step = match self.map.get_mut(&id) {
                    Some(Transfer::Receive(t)) if t.peer == *from => t.ended(id, net, hash),
                    _ => {
                        net.warn(format!("peer {from} ended a transfer we do not receive"));
                        return RecvLane::Idle;
                    }
                };
                self.apply(net, id, step);
                RecvLane::Idle
            }
        }
    }

    /// A downloader asks for one of our shared files (`served`, if it is shared).
    pub(crate) fn on_fetch(&mut self, net: &mut Net<'_>, from: &PeerId, id: TransferId, share: ShareId, served: Option<ServedFile>, manifest: bool) {
        let Some(served) = served else {
            let cancel = Control::Cancel { id, code: CancelCode::NotShared, reason: format!("file {share} is not shared") };
            return net.send_control(from, &cancel);
        };
        match self.map.get(&id) {
            // Asked again (e.g. for the manifest): start over with what it asks next.
            Some(Transfer::Serve(s)) if s.peer == *from && s.share == share => self.apply(net, id, Step::Ended),
            Some(_) => {
                let cancel = Control::Cancel { id, code: CancelCode::Protocol, reason: "transfer id already in use".into() };
                return net.send_control(from, &cancel);
            }
            None => {}
        }
        let serving_them = self.map.values().filter(|t| matches!(t, Transfer::Serve(s) if s.peer == *from)).count();
        if let Some(serving) = Serving::start(id, net, from, share, served, manifest, serving_them) {
            self.map.insert(id, Transfer::Serve(serving));
        }
    }

    /// A holder's block hashes.
    pub(crate) fn on_manifest(&mut self, net: &mut Net<'_>, from: &PeerId, id: TransferId, hashes: Vec<Hash>) {
        if let Some(Transfer::Download(d)) = self.map.get_mut(&id) {
            let step = d.manifest(id, net, from, hashes);
            self.apply(net, id, step);
        }
    }

    /// A downloader asks for blocks.
    pub(crate) fn on_get(&mut self, net: &mut Net<'_>, from: &PeerId, id: TransferId, blocks: Vec<u32>) {
        let step = match self.map.get_mut(&id) {
            Some(Transfer::Serve(s)) if s.peer == *from => s.get(blocks),
            Some(Transfer::Serve(_)) => return net.warn(format!("peer {from} asked for blocks of a transfer that is not theirs")),
            _ => return net.warn(format!("peer {from} asked for blocks of transfer {id}, which we do not serve")),
        };
        self.apply(net, id, step);
        self.pump(net, from);
    }

    /// A downloader takes blocks it asked us for to another holder.
    pub(crate) fn on_drop(&mut self, from: &PeerId, id: TransferId, blocks: &[u32]) {
        match self.map.get_mut(&id) {
            Some(Transfer::Serve(s)) if s.peer == *from => s.drop_blocks(blocks),
            // Late (the serve ended) or not theirs: nothing to do either way.
            _ => {}
        }
    }

    // -- files and storage -------------------------------------------------------------

    /// A block was read ([`FileOp::Read`]); the driver holds its bytes.
    #[inline(never)] // see `Mesh::handle`
    pub(crate) fn block_read(&mut self, net: &mut Net<'_>, id: TransferId, block: u32, bytes: &[u8]) {
        let held: u64 = self.map.values().map(|t| if let Transfer::Send(o) = t { o.held_bytes() } else { 0 }).sum();
        let may_hold = held + BLOCK_SIZE <= OFFERS_HELD_MAX_BYTES;
        let (peer, step) = match self.map.get_mut(&id) {
            Some(Transfer::Send(t)) => (t.peer.clone(), t.block_read(id, net, block, bytes, may_hold)),
            Some(Transfer::Serve(s)) => {
                let step = s.block_read(id, net, block, bytes);
                if matches!(step, Step::Fail(TransferError::Unreadable(_), _)) {
                    self.changed_shares.push(s.share);
                }
                (s.peer.clone(), step)
            }
            _ => return net.output(Output::File(FileOp::ReleaseBlock { id, block })),
        };
        self.apply(net, id, step);
        self.pump(net, &peer);
    }

    #[inline(never)] // see `Mesh::handle`
    pub(crate) fn block_unreadable(&mut self, net: &mut Net<'_>, id: TransferId, message: &str) {
        if matches!(self.map.get(&id), Some(Transfer::Send(_) | Transfer::Serve(_))) {
            self.fail(net, id, TransferError::Unreadable(message.to_owned()), true);
        }
    }

    #[inline(never)] // see `Mesh::handle`
    pub(crate) fn store_probed(&mut self, net: &mut Net<'_>, id: TransferId, partial: Option<Partial>) {
        let step = match self.map.get_mut(&id) {
            Some(Transfer::Receive(t)) => t.probed(id, net, partial),
            Some(Transfer::Download(d)) => d.probed(id, net, partial),
            _ => return,
        };
        self.apply(net, id, step);
    }

    #[inline(never)] // see `Mesh::handle`
    pub(crate) fn store_opened(&mut self, net: &mut Net<'_>, id: TransferId, result: Result<(), StoreError>) {
        let step = match self.map.get_mut(&id) {
            Some(Transfer::Receive(t)) => t.opened(result),
            Some(Transfer::Download(d)) => d.opened(result),
            _ => return,
        };
        self.apply(net, id, step);
    }

    #[inline(never)] // see `Mesh::handle`
    pub(crate) fn block_committed(&mut self, net: &mut Net<'_>, id: TransferId, block: u32) {
        let step = match self.map.get_mut(&id) {
            Some(Transfer::Receive(t)) => t.committed(id, net, block),
            Some(Transfer::Download(d)) => d.committed(id, net, block),
            _ => return,
        };
        self.apply(net, id, step);
    }

    #[inline(never)] // see `Mesh::handle`
    pub(crate) fn store_finished(&mut self, net: &mut Net<'_>, id: TransferId, result: Result<(), StoreError>) {
        let step = match self.map.get_mut(&id) {
            Some(Transfer::Receive(t)) => t.finished(id, net, result),
            Some(Transfer::Download(d)) => d.finished(id, net, result),
            _ => return,
        };
        self.apply(net, id, step);
    }

    #[inline(never)] // see `Mesh::handle`
    pub(crate) fn store_failed(&mut self, net: &mut Net<'_>, id: TransferId, error: StoreError) {
        if matches!(self.map.get(&id), Some(Transfer::Receive(_) | Transfer::Download(_))) {
            self.fail(net, id, store_error(error), true);
        }
    }

    // -- peers and time ----------------------------------------------------------------

    /// `peer`'s channels opened: a fresh bulk stream, and what waited for it goes on.
    pub(crate) fn peer_opened(&mut self, net: &mut Net<'_>, peer: &PeerId) {
        self.lanes.remove(peer);
        for id in self.ids(|t| t.involves(peer) || matches!(t, Transfer::Download(d) if d.gone(peer))) {
            let step = match self.map.get_mut(&id) {
                Some(Transfer::Send(t)) => t.peer_back(id, net),
                Some(Transfer::Download(d)) => d.source_back(id, net, peer),
                _ => Step::Go,
            };
            self.apply(net, id, step);
        }
    }

    /// `peer`'s channels closed: what it takes part in pauses (or ends).
    pub(crate) fn peer_closed(&mut self, net: &mut Net<'_>, peer: &PeerId) {
        self.lanes.remove(peer);
        let until = net.now + net.config.resume_timeout_ms;
        for id in self.ids(|t| t.involves(peer)) {
            let step = match self.map.get_mut(&id) {
                Some(Transfer::Send(t)) => t.pause(id, net, until),
                Some(Transfer::Receive(t)) => t.pause(id, net, until),
                Some(Transfer::Download(d)) => d.source_left(id, net, peer),
                // The downloader asks again when it is back.
                Some(Transfer::Serve(_)) => Step::Ended,
                None => Step::Go,
            };
            self.apply(net, id, step);
        }
    }

    /// `peer`'s network path went away (`stalled`) or came back: its transfers say
    /// they paused or resumed; they carry on by themselves on the same session.
    pub(crate) fn peer_stalled(&mut self, net: &mut Net<'_>, peer: &PeerId, stalled: bool) {
        for id in self.ids(|t| matches!(t, Transfer::Send(_) | Transfer::Receive(_) | Transfer::Download(_)) && t.involves(peer)) {
            net.emit(if stalled { Event::TransferPaused { id } } else { Event::TransferResumed { id } });
        }
        if !stalled {
            self.pump(net, peer);
        }
    }

    /// The bulk channel to `peer` drained: more may go.
    #[inline(never)] // see `Mesh::handle`
    pub(crate) fn bulk_drained(&mut self, net: &mut Net<'_>, peer: &PeerId) {
        self.pump(net, peer);
    }

    /// Paused transfers whose peer did not come back in time fail.
    pub(crate) fn handle_timeout(&mut self, net: &mut Net<'_>) {
        let now = net.now;
        for id in self.ids(|t| t.paused_until().is_some_and(|until| until <= now)) {
            self.fail(net, id, TransferError::PeerLeft(net.config.resume_timeout_ms), false);
        }
        for id in self.ids(|t| matches!(t, Transfer::Download(d) if d.stall_check().is_some_and(|at| at <= now))) {
            let step = match self.map.get_mut(&id) {
                Some(Transfer::Download(d)) => d.drop_stalled(id, net),
                _ => continue,
            };
            self.apply(net, id, step);
        }
    }

    /// Every transfer ends: `leave()` was called.
    pub(crate) fn close(&mut self, net: &mut Net<'_>) {
        for id in self.ids(|_| true) {
            self.fail(net, id, TransferError::Closed, true);
        }
    }

    fn ids(&self, which: impl Fn(&Transfer) -> bool) -> Vec<TransferId> {
        sorted(self.map.iter().filter(|(_, t)| which(t)).map(|(id, _)| *id).collect())
    }

    // -- ending ------------------------------------------------------------------------

    /// Applies a state machine's decision.
    fn apply(&mut self, net: &mut Net<'_>, id: TransferId, step: Step) {
        match step {
            Step::Go => self.report_progress(net, id, false),
            Step::Done(hash) => self.finish(net, id, hash),
            Step::Ended => self.end_serve(net, id),
            Step::Fail(error, tell) => self.fail(net, id, error, tell),
        }
    }

    fn finish(&mut self, net: &mut Net<'_>, id: TransferId, hash: Hash) {
        self.report_progress(net, id, true);
        match self.map.remove(&id) {
            Some(Transfer::Send(_)) => net.output(Output::File(FileOp::Release { id, except: None })),
            Some(Transfer::Download(d)) => net.emit(Event::TransferSources { id, sources: d.served() }),
            Some(Transfer::Receive(_)) => {}
            Some(Transfer::Serve(_)) | None => return,
        }
        net.emit(Event::TransferDone { id, hash });
    }

    /// Stops serving without a word, still finishing a block half on the wire (the
    /// downloader would read what follows as its bytes).
    fn end_serve(&mut self, net: &mut Net<'_>, id: TransferId) {
        if let Some(Transfer::Serve(s)) = self.map.remove(&id) {
            let except = net.purge_bulk(&s.peer, id);
            net.output(Output::File(FileOp::Release { id, except }));
        }
    }

    /// Ends a transfer without the file: tells the peer(s) (if `tell` and they are
    /// there), releases what the driver holds for it, and reports `error`.
    fn fail(&mut self, net: &mut Net<'_>, id: TransferId, error: TransferError, tell: bool) {
        let Some(transfer) = self.map.remove(&id) else { return };
        let peers = match &transfer {
            Transfer::Send(t) => vec![t.peer.clone()],
            Transfer::Receive(t) => vec![t.peer.clone()],
            Transfer::Serve(s) => vec![s.peer.clone()],
            Transfer::Download(d) => d.live_peers(),
        };
        if tell {
            let (code, reason) = error.wire();
            for peer in &peers {
                net.send_control(peer, &Control::Cancel { id, code, reason: reason.clone() });
            }
        }
        let delete = matches!(error, TransferError::Cancelled { .. });
        match transfer {
            Transfer::Send(_) => {
                let except = net.purge_bulk(&peers[0], id);
                net.output(Output::File(FileOp::Release { id, except }));
            }
            // Serving has no user-facing transfer to fail.
            Transfer::Serve(_) => {
                let except = net.purge_bulk(&peers[0], id);
                return net.output(Output::File(FileOp::Release { id, except }));
            }
            Transfer::Receive(t) if t.has_store() => net.output(Output::Store(StoreOp::Close { id, delete })),
            Transfer::Receive(_) => {}
            Transfer::Download(d) => {
                net.emit(Event::TransferSources { id, sources: d.served() });
                if d.has_store() {
                    net.output(Output::Store(StoreOp::Close { id, delete }));
                }
            }
        }
        net.emit(Event::TransferFailed { id, error });
    }

    /// Emits progress if due (or `force`d).
    fn report_progress(&mut self, net: &mut Net<'_>, id: TransferId, force: bool) {
        let Some(transfer) = self.map.get_mut(&id) else { return };
        let (meter, total) = match transfer {
            Transfer::Send(t) => (&mut t.meter, t.meta.size),
            Transfer::Receive(t) => (&mut t.meter, t.meta.size),
            Transfer::Download(d) => (&mut d.meter, d.meta.size),
            Transfer::Serve(_) => return,
        };
        let Some(progress) = meter.report(net.now, total, force) else { return };
        if let Transfer::Download(d) = transfer {
            net.emit(Event::TransferSources { id, sources: d.served() });
        }
        net.emit(Event::TransferProgress { id, progress });
    }
}

pub(crate) fn store_error(err: StoreError) -> TransferError {
    if err.full {
        TransferError::StorageFull(err.message)
    } else {
        TransferError::Storage(err.message)
    }
}
