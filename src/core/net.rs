//! What a component (requests, discovery, transfers) may do to the rest of the mesh,
//! lent to it for one call, as quinn-proto lends its connection's streams through a
//! narrow view: talk to open peers on either channel, raise events, ask the driver
//! for work, draw random numbers. It sees neither the sessions nor the other
//! components.

use std::collections::VecDeque;

use super::config::MeshConfig;
use super::output::{Event, Output};
use super::peers::Peers;
use super::rng::Rng;
use super::service::Service;
use super::transfer::frame::Control;
use super::transfer::{BulkItem, TransferId};
use super::wire::encode_service;
use super::{Millis, PeerId};

pub(crate) struct Net<'a> {
    pub(crate) now: Millis,
    pub(crate) config: &'a MeshConfig,
    peers: &'a mut Peers,
    out: &'a mut VecDeque<Output>,
    rng: &'a mut Rng,
}

impl<'a> Net<'a> {
    pub(crate) fn new(now: Millis, config: &'a MeshConfig, peers: &'a mut Peers, out: &'a mut VecDeque<Output>, rng: &'a mut Rng) -> Self {
        Net { now, config, peers, out, rng }
    }

    pub(crate) fn is_open(&self, peer: &PeerId) -> bool {
        self.peers.is_open(peer)
    }

    /// Peers with open channels, sorted.
    pub(crate) fn open_peers(&self) -> Vec<PeerId> {
        self.peers.open().into_iter().map(|(peer, _)| peer).collect()
    }

    /// Queues a service message; false if the peer is not connected or its queue is full.
    pub(crate) fn send_service(&mut self, peer: &PeerId, message: &Service) -> bool {
        let Some(s) = self.peers.open_session(peer) else { return false };
        let frames = encode_service(&message.encode(), s.max_frame());
        s.transmit(frames, false, self.out)
    }

    /// Whether an offer frame of `len` bytes may carry its file to `peer`: it said it
    /// takes those, and the frame fits in one message to it.
    pub(crate) fn takes_inline_offer(&self, peer: &PeerId, len: usize) -> bool {
        self.peers.session(peer).is_some_and(|s| s.takes_inline_offers && len <= s.max_frame())
    }

    /// Sends a transfer control frame if the peer's channel is open (if not, the
    /// transfer is paused or ending anyway). Control frames are small and few (one ack
    /// per MiB): never refused.
    pub(crate) fn send_control(&mut self, peer: &PeerId, control: &Control) {
        if let Some(s) = self.peers.open_session(peer) {
            s.transmit(vec![control.encode()], true, self.out);
        }
    }

    pub(crate) fn send_bulk(&mut self, peer: &PeerId, items: Vec<BulkItem>) {
        if let Some(s) = self.peers.open_session(peer) {
            s.transmit_bulk(items, self.out);
        }
    }

    /// Bytes waiting in the peer's bulk queue.
    pub(crate) fn bulk_queued(&self, peer: &PeerId) -> u64 {
        self.peers.session(peer).map_or(0, |s| s.bulk.queued())
    }

    /// The largest bulk frame for this peer.
    pub(crate) fn bulk_frame_size(&self, peer: &PeerId) -> u32 {
        self.peers.session(peer).map_or(16 * 1024, |s| s.max_frame() as u32)
    }

    /// Drops a transfer's items from the peer's bulk queue; returns a block half on the
    /// wire, whose remaining slices must still go.
    pub(crate) fn purge_bulk(&mut self, peer: &PeerId, id: TransferId) -> Option<u32> {
        self.peers.open_session(peer).and_then(|s| s.bulk.purge_transfer(id))
    }

    pub(crate) fn emit(&mut self, event: Event) {
        self.out.push_back(Output::Event(event));
    }

    pub(crate) fn warn(&mut self, message: String) {
        self.emit(Event::Warning(message));
    }

    /// Asks the driver for work.
    pub(crate) fn output(&mut self, output: Output) {
        self.out.push_back(output);
    }

    pub(crate) fn random(&mut self) -> u64 {
        self.rng.next_u64()
    }
}
