//! For unit tests of one component: a [`Net`] over a real [`Peers`] with one peer
//! connected (through the ordinary welcome, offer and open), whose outputs the test
//! reads back as the frames and events they are.

use std::collections::VecDeque;

use super::config::MeshConfig;
use super::config::PeerSettings;
use super::identity::{binding_message, Identity};
use super::net::Net;
use super::output::{ConnectionOp, Event, Output, SdpKind};
use super::peers::Peers;
use super::rng::Rng;
use super::service::Service;
use super::signal::PeerSignal;
use super::transfer::frame::Control;
use super::transfer::BulkItem;
use super::wire::{encode_service, Message, Reassembler};
use super::{ConnId, Millis, PeerId};

pub(crate) struct Harness {
    pub(crate) now: Millis,
    pub(crate) config: MeshConfig,
    peers: Peers,
    out: VecDeque<Output>,
    rng: Rng,
    peer: PeerId,
    conn: ConnId,
    /// Outputs read back but not asked for yet.
    kept: Vec<Output>,
}

impl Harness {
    /// We are "a"; `label` is connected.
    pub(crate) fn with_peer(label: &str) -> Harness {
        let config = MeshConfig::new("room", None, "s".repeat(32));
        let settings = PeerSettings {
            connect_timeout_ms: config.connect_timeout_ms,
            max_message_bytes: config.max_message_bytes,
            reconnect_timeout_ms: config.reconnect_timeout_ms,
        };
        let mut peers = Peers::new(settings, 1, config.identity.clone(), config.room.clone(), None, [0; 32]);
        let mut out = VecDeque::new();
        let now = Millis(1_000);
        // The peer's id is its key's; ours sorts first, so we offer.
        let them = Identity::from_secret(label);
        let peer = them.id().clone();
        let me = PeerId::new("0");
        peers.welcomed(now, me.clone(), vec![(peer.clone(), None)], &mut out);
        let conn = out
            .iter()
            .find_map(|o| match o {
                Output::Connection(ConnectionOp::Create { conn, .. }) => Some(*conn),
                _ => None,
            })
            .expect("we offer to a larger id");
        // Descriptions with fingerprints, and the peer's binding of them: verified.
        peers.local_description(conn, SdpKind::Offer, "a=fingerprint:sha-256 00".into(), &mut out);
        let answer = PeerSignal::Answer { conn, sdp: "a=fingerprint:sha-256 11".into(), generation: 0, pake: None }.to_json();
        peers.signal(now, peer.clone(), &answer, &mut out);
        peers.channel_opened(now, conn, 256 * 1024, &mut out);
        let message = binding_message(&config.room, &peer, &me, "sha-256 11", "sha-256 00");
        let binding = Service::Bind { key: them.public_key(), signature: them.sign(&message), mac: None };
        for frame in encode_service(&binding.encode(), 256 * 1024) {
            peers.binding_received(now, conn, &frame, &mut out);
        }
        assert!(peers.is_open(&peer), "the harness's binding verifies");
        peers.take_changes();
        out.clear();
        Harness { now, config, peers, out, rng: Rng::new(2), peer, conn, kept: Vec::new() }
    }

    pub(crate) fn net(&mut self) -> Net<'_> {
        Net::new(self.now, &self.config, &mut self.peers, &mut self.out, &mut self.rng)
    }

    pub(crate) fn peer(&self) -> PeerId {
        self.peer.clone()
    }

    /// The peer says (as its `features` would) that it takes offers carrying a file.
    pub(crate) fn peer_takes_inline_offers(&mut self) {
        if let Some(s) = self.peers.open_session(&self.peer) {
            s.takes_inline_offers = true;
        }
    }

    /// Takes every output so far, the channel draining as a real one would.
    fn collect(&mut self) {
        while let Some(output) = self.out.pop_front() {
            match &output {
                Output::Connection(ConnectionOp::Transmit { conn, .. }) => {
                    if let Some(s) = self.peers.conn_session(*conn) {
                        s.drained(self.now, 0, &mut self.out);
                    }
                }
                Output::Connection(ConnectionOp::TransmitBulk { conn, .. }) => {
                    if let Some(s) = self.peers.conn_session(*conn) {
                        s.bulk_drained(self.now, 0, &mut self.out);
                    }
                }
                _ => {}
            }
            self.kept.push(output);
        }
    }

    fn take(&mut self, mut pick: impl FnMut(&Output) -> bool) -> Vec<Output> {
        self.collect();
        let (taken, kept) = std::mem::take(&mut self.kept).into_iter().partition(|o| pick(o));
        self.kept = kept;
        taken
    }

    /// Events raised so far.
    pub(crate) fn events(&mut self) -> Vec<Event> {
        self.take(|o| matches!(o, Output::Event(_)))
            .into_iter()
            .filter_map(|o| match o {
                Output::Event(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    /// Work asked of the driver so far (everything but events and channel frames).
    pub(crate) fn driver_work(&mut self) -> Vec<Output> {
        self.take(|o| matches!(o, Output::File(_) | Output::Store(_)))
    }

    fn message_frames(&mut self, peer: &PeerId) -> Vec<Message> {
        assert_eq!(*peer, self.peer, "only one peer is connected");
        let conn = self.conn;
        let mut reassembler = Reassembler::new(u64::MAX);
        self.take(|o| matches!(o, Output::Connection(ConnectionOp::Transmit { conn: c, .. }) if *c == conn))
            .into_iter()
            .filter_map(|o| match o {
                Output::Connection(ConnectionOp::Transmit { frame, .. }) => reassembler.push(&frame).ok().flatten(),
                _ => None,
            })
            .collect()
    }

    /// Service messages sent to `peer` so far.
    pub(crate) fn sent_services(&mut self, peer: &PeerId) -> Vec<Service> {
        self.message_frames(peer)
            .into_iter()
            .filter_map(|m| match m {
                Message::Service(bytes) => Service::decode(&bytes).ok(),
                _ => None,
            })
            .collect()
    }

    /// Transfer control frames sent to `peer` so far.
    pub(crate) fn sent_controls(&mut self, peer: &PeerId) -> Vec<Control> {
        self.message_frames(peer)
            .into_iter()
            .filter_map(|m| match m {
                Message::TransferControl(frame) => Control::decode(&frame).ok(),
                _ => None,
            })
            .collect()
    }

    /// Bulk items sent so far.
    pub(crate) fn sent_bulk(&mut self) -> Vec<BulkItem> {
        self.take(|o| matches!(o, Output::Connection(ConnectionOp::TransmitBulk { .. })))
            .into_iter()
            .filter_map(|o| match o {
                Output::Connection(ConnectionOp::TransmitBulk { item, .. }) => Some(item),
                _ => None,
            })
            .collect()
    }
}
