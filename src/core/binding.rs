//! Binding every connection to the peer's key, and to the room's secret when there is
//! one: what makes a malicious signaling server harmless. Each side signs the DTLS
//! fingerprints of the connection as it sees them (`identity.rs`) and, in a room with a
//! secret, MACs that with a key from a SPAKE2 exchange carried in the offer and answer
//! (`room_secret.rs`). The first frame on the message channel is that binding; a
//! connection whose binding does not verify is closed before anything from it reaches
//! the application.
//!
//! [`Binder`] holds what is the same for every connection (our key, the room, its
//! secret, pinned keys); [`ConnectionProof`] what one connection gathered so far.

use super::identity::{binding_message, fingerprints, key_matches, verify, Identity, PublicKey};
use super::output::SdpKind;
use super::path::FailReason;
use super::room_secret;
use super::service::Service;
use super::{ConnId, PeerId};

/// One connection's binding so far.
#[derive(Debug, Default)]
pub(crate) struct ConnectionProof {
    /// The DTLS fingerprints in our description and in the peer's: what each side's
    /// binding signs.
    local_fingerprints: Option<String>,
    remote_fingerprints: Option<String>,
    /// In a room with a secret: our SPAKE2 exchange until the answer brings theirs
    /// (offerer), our reply until the answer goes out (answerer), and the MAC key both
    /// derive (the same on both sides only if the secrets matched).
    exchange: Option<room_secret::Exchange>,
    reply: Option<Vec<u8>>,
    mac_key: Option<[u8; 32]>,
    /// The peer's key, once its binding verified.
    pub(crate) peer_key: Option<PublicKey>,
}

/// The two ends of a connection, as the bindings name them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ends<'a> {
    pub(crate) me: &'a PeerId,
    pub(crate) peer: &'a PeerId,
    pub(crate) conn: ConnId,
}

/// Why a binding was refused, and the message for the user.
pub(crate) type Refusal = (FailReason, String);

#[derive(Debug)]
pub(crate) struct Binder {
    /// Our key pair: it signs each connection's binding.
    identity: Identity,
    room: String,
    /// Keys the user verified: a pinned peer must keep its key.
    pinned: std::collections::HashMap<PeerId, PublicKey>,
    room_secret: Option<String>,
    /// The driver's entropy, and how many streams of it were used.
    entropy: [u8; 32],
    streams: u64,
}

impl Binder {
    pub(crate) fn new(identity: Identity, room: String, room_secret: Option<String>, entropy: [u8; 32]) -> Self {
        Binder { identity, room, pinned: Default::default(), room_secret, entropy, streams: 0 }
    }

    /// Requires `peer` to hold `key` from now on.
    pub(crate) fn pin(&mut self, peer: PeerId, key: PublicKey) {
        self.pinned.insert(peer, key);
    }

    pub(crate) fn is_pinned(&self, peer: &PeerId) -> bool {
        self.pinned.contains_key(peer)
    }

    /// This side's SPAKE2 message for a new connection, if the room has a secret.
    fn start_exchange(&mut self, ends: Ends<'_>, we_offer: bool) -> Option<(room_secret::Exchange, Vec<u8>)> {
        let secret = self.room_secret.as_deref()?;
        let (offerer, answerer) = if we_offer { (ends.me, ends.peer) } else { (ends.peer, ends.me) };
        self.streams += 1;
        let mut rng = room_secret::Drbg::new(&self.entropy, self.streams);
        Some(room_secret::start(secret, &self.room, ends.conn, offerer, answerer, we_offer, &mut rng))
    }

    /// The offer of a new connection (we answer): its fingerprints, and our half of
    /// the exchange, finished with theirs; ours goes out with the answer (no key
    /// without theirs).
    pub(crate) fn offer_received(&mut self, proof: &mut ConnectionProof, ends: Ends<'_>, sdp: &str, theirs: Option<Vec<u8>>) {
        proof.remote_fingerprints = fingerprints(sdp);
        if let Some((exchange, ours)) = self.start_exchange(ends, false) {
            proof.mac_key = theirs.and_then(|theirs| room_secret::finish(exchange, &theirs));
            proof.reply = Some(ours);
        }
    }

    /// The answer to our offer: its fingerprints, and the key from their half.
    pub(crate) fn answer_received(&mut self, proof: &mut ConnectionProof, sdp: &str, theirs: Option<Vec<u8>>) {
        if let (Some(exchange), Some(theirs)) = (proof.exchange.take(), theirs) {
            proof.mac_key = room_secret::finish(exchange, &theirs);
        }
        if proof.remote_fingerprints.is_none() {
            proof.remote_fingerprints = fingerprints(sdp);
        }
    }

    /// Our description is ready: it names our fingerprints. Returns the SPAKE2
    /// message to send with it: the first offer starts the exchange, the answer carries
    /// the reply, later offers (ICE restarts) carry none.
    pub(crate) fn local_description(
        &mut self,
        proof: &mut ConnectionProof,
        ends: Ends<'_>,
        kind: SdpKind,
        sdp: &str,
        channel_up: bool,
    ) -> Option<Vec<u8>> {
        if proof.local_fingerprints.is_none() {
            proof.local_fingerprints = fingerprints(sdp);
        }
        match kind {
            SdpKind::Offer if proof.exchange.is_none() && proof.mac_key.is_none() && !channel_up => {
                let (exchange, ours) = self.start_exchange(ends, true)?;
                proof.exchange = Some(exchange);
                Some(ours)
            }
            SdpKind::Offer => None,
            SdpKind::Answer => proof.reply.take(),
        }
    }

    /// The message both sides sign: the room, both ids and both fingerprints, the
    /// signer's first.
    fn message(&self, proof: &ConnectionProof, signer: &PeerId, other: &PeerId, signer_is_us: bool) -> Vec<u8> {
        let local = proof.local_fingerprints.as_deref().unwrap_or_default();
        let remote = proof.remote_fingerprints.as_deref().unwrap_or_default();
        let (signer_fp, other_fp) = if signer_is_us { (local, remote) } else { (remote, local) };
        binding_message(&self.room, signer, other, signer_fp, other_fp)
    }

    /// Our binding: the first frame we send on the message channel.
    pub(crate) fn binding(&self, proof: &ConnectionProof, ends: Ends<'_>) -> Service {
        let message = self.message(proof, ends.me, ends.peer, true);
        // With a room secret there is always a MAC, so a peer without one refuses us
        // too; without a key (no exchange came back) it is one nobody can check.
        let mac = match (&self.room_secret, proof.mac_key) {
            (Some(_), Some(key)) => Some(room_secret::mac(&key, &message)),
            (Some(_), None) => Some([0; 32]),
            (None, _) => None,
        };
        Service::Bind { key: self.identity.public_key(), signature: self.identity.sign(&message), mac }
    }

    /// The peer's first message on the channel (`None` if it was not a service
    /// message): it must be a binding for this connection, by the key of the id we
    /// connected to (and the pinned one, if pinned), with the room secret's MAC if the
    /// room has one. Returns the peer's key.
    pub(crate) fn check(&self, proof: &ConnectionProof, ends: Ends<'_>, first: Option<Service>) -> Result<PublicKey, Refusal> {
        let peer = ends.peer;
        let impostor = |why: String| Err((FailReason::Impostor, why));
        let Some(Service::Bind { key, signature, mac }) = first else {
            return impostor("its first frame was not a binding".to_owned());
        };
        let message = self.message(proof, peer, ends.me, false);
        if !key_matches(&key, peer) {
            return impostor(format!("its key is not the key of {peer}: the server introduced someone else under that id"));
        }
        if self.pinned.get(peer).is_some_and(|pinned| *pinned != key) {
            return impostor(format!("its key is not the one verified for {peer}"));
        }
        if proof.local_fingerprints.is_none() || proof.remote_fingerprints.is_none() {
            return impostor("the connection's descriptions carry no DTLS fingerprints to check".to_owned());
        }
        if !verify(&key, &message, &signature) {
            return impostor(format!("{peer} signed other DTLS fingerprints than this connection's: someone is in the middle"));
        }
        // The peer is who it says; now, does it (and whoever relayed the exchange)
        // know the room's secret?
        let wrong = |why: String| Err((FailReason::WrongRoomSecret, why));
        match (&self.room_secret, proof.mac_key, mac) {
            (None, _, None) => Ok(key),
            (None, _, Some(_)) => wrong(format!("{peer} joined with a room secret, and this peer without one")),
            (Some(_), Some(shared), Some(mac)) if room_secret::mac_matches(&shared, &message, &mac) => Ok(key),
            (Some(_), _, _) => wrong(format!("{peer} does not know this room's secret")),
        }
    }
}
