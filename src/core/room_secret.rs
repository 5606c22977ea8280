//! Room secrets the signaling server never sees. Two peers of a room with a secret run
//! SPAKE2 (RFC 9382's construction, the RustCrypto `spake2` crate on Ed25519) inside
//! their first offer and answer, which the server relays: it sees two group elements,
//! from which nothing about the secret can be tested offline. Each side's binding (the
//! first frame on the connection, see `identity.rs`) then carries a MAC under a key
//! derived from the shared SPAKE2 key, over the same message its signature covers:
//! both DTLS fingerprints, both ids and the room. Without the secret — the server
//! included — a connection gets one online guess, and both sides see it fail with
//! `wrong-room-secret` before any application byte.

use rand_core::{CryptoRng, RngCore};
use spake2::{Ed25519Group, Identity as PakeIdentity, Password, Spake2};

use super::{ConnId, PeerId};

/// One side of an exchange in progress.
pub(crate) type Exchange = Spake2<Ed25519Group>;

/// Starts this side's exchange for connection `conn` between `offerer` and `answerer`
/// (SPAKE2's A and B). Both identities name the room, the connection and the peer, so
/// a message cannot be replayed into another room, connection or pair. Returns the
/// state and the message to send.
pub(crate) fn start(
    secret: &str,
    room: &str,
    conn: ConnId,
    offerer: &PeerId,
    answerer: &PeerId,
    we_offer: bool,
    rng: &mut Drbg,
) -> (Exchange, Vec<u8>) {
    let side = |peer: &PeerId| format!("meshdrop/room-secret/v1\0{room}\0{conn}\0{peer}");
    let (a, b) = (PakeIdentity::new(side(offerer).as_bytes()), PakeIdentity::new(side(answerer).as_bytes()));
    let password = Password::new(secret.as_bytes());
    if we_offer {
        Spake2::<Ed25519Group>::start_a_with_rng(&password, &a, &b, rng)
    } else {
        Spake2::<Ed25519Group>::start_b_with_rng(&password, &a, &b, rng)
    }
}

/// The MAC key both sides hold if their secrets matched (and a different one on each
/// side if not). `None` for a malformed message.
pub(crate) fn finish(exchange: Exchange, theirs: &[u8]) -> Option<[u8; 32]> {
    let shared = exchange.finish(theirs).ok()?;
    Some(blake3::derive_key("meshdrop 2026-11 room secret binding key", &shared))
}

/// The MAC a binding carries.
pub(crate) fn mac(key: &[u8; 32], binding: &[u8]) -> [u8; 32] {
    *blake3::keyed_hash(key, binding).as_bytes()
}

/// Whether `mac` is right; constant-time (`blake3::Hash` compares so).
pub(crate) fn mac_matches(key: &[u8; 32], binding: &[u8], mac: &[u8; 32]) -> bool {
    blake3::keyed_hash(key, binding) == blake3::Hash::from(*mac)
}

/// The core's cryptographic randomness: keyed BLAKE3 as a PRF in counter mode over 256
/// bits of entropy from the driver (the browser's `crypto.getRandomValues`). Block `i`
/// of stream `counter` is the keyed hash of a label, `counter` and `i`: a fresh stream
/// for each use. The core has no other source, and needs none but this. (Not BLAKE3's
/// XOF: its output function was a second compression routine, 10 KiB of wasm.)
pub(crate) struct Drbg {
    key: [u8; 32],
    stream: u64,
    next_block: u64,
    block: [u8; 32],
    used: usize,
}

impl Drbg {
    /// The stream number `counter` of `entropy`.
    pub(crate) fn new(entropy: &[u8; 32], counter: u64) -> Drbg {
        Drbg { key: *entropy, stream: counter, next_block: 0, block: [0; 32], used: 32 }
    }

    fn refill(&mut self) {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        hasher.update(b"meshdrop 2026-11 core randomness").update(&self.stream.to_be_bytes()).update(&self.next_block.to_be_bytes());
        self.block = *hasher.finalize().as_bytes();
        self.next_block += 1;
        self.used = 0;
    }
}

impl RngCore for Drbg {
    fn next_u32(&mut self) -> u32 {
        let mut bytes = [0; 4];
        self.fill_bytes(&mut bytes);
        u32::from_le_bytes(bytes)
    }

    fn next_u64(&mut self) -> u64 {
        let mut bytes = [0; 8];
        self.fill_bytes(&mut bytes);
        u64::from_le_bytes(bytes)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for byte in dest {
            if self.used == self.block.len() {
                self.refill();
            }
            *byte = self.block[self.used];
            self.used += 1;
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for Drbg {}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(a_secret: &str, b_secret: &str) -> (Option<[u8; 32]>, Option<[u8; 32]>) {
        let (offerer, answerer) = (PeerId::new("a"), PeerId::new("b"));
        let conn = ConnId::from_raw(7);
        let (a, a_msg) = start(a_secret, "r", conn, &offerer, &answerer, true, &mut Drbg::new(&[1; 32], 0));
        let (b, b_msg) = start(b_secret, "r", conn, &offerer, &answerer, false, &mut Drbg::new(&[2; 32], 0));
        (finish(a, &b_msg), finish(b, &a_msg))
    }

    #[test]
    fn the_same_secret_gives_the_same_key_and_another_does_not() {
        let (a, b) = exchange("correct horse", "correct horse");
        assert_eq!(a, b);
        let key = a.unwrap();
        let binding = b"meshdrop/bind/v1 ...";
        assert!(mac_matches(&key, binding, &mac(&key, binding)));
        assert!(!mac_matches(&key, b"meshdrop/bind/v1 other", &mac(&key, binding)));
        let (a, b) = exchange("correct horse", "correct hose");
        assert_ne!(a.unwrap(), b.unwrap());
    }

    #[test]
    fn malformed_or_reflected_messages_give_no_key() {
        let (offerer, answerer) = (PeerId::new("a"), PeerId::new("b"));
        let (a, a_msg) = start("s", "r", ConnId::from_raw(1), &offerer, &answerer, true, &mut Drbg::new(&[1; 32], 0));
        assert_eq!(finish(a, &a_msg), None, "our own message reflected");
        let (a, _) = start("s", "r", ConnId::from_raw(1), &offerer, &answerer, true, &mut Drbg::new(&[1; 32], 1));
        assert_eq!(finish(a, &[0; 5]), None);
    }

    #[test]
    fn streams_differ_by_counter_and_entropy() {
        let take = |entropy: [u8; 32], counter| {
            let mut bytes = [0; 32];
            Drbg::new(&entropy, counter).fill_bytes(&mut bytes);
            bytes
        };
        assert_ne!(take([1; 32], 0), take([1; 32], 1));
        assert_ne!(take([1; 32], 0), take([2; 32], 0));
    }

    #[test]
    fn a_stream_reads_the_same_in_any_pieces_and_its_blocks_differ() {
        let mut whole = [0; 100];
        Drbg::new(&[3; 32], 5).fill_bytes(&mut whole);
        let mut pieces = [0; 100];
        let mut drbg = Drbg::new(&[3; 32], 5);
        let (a, rest) = pieces.split_at_mut(7);
        let (b, c) = rest.split_at_mut(40);
        drbg.fill_bytes(a);
        drbg.fill_bytes(b);
        drbg.fill_bytes(c);
        assert_eq!(whole, pieces);
        assert_ne!(whole[..32], whole[32..64]);
        assert_eq!(whole[..8], Drbg::new(&[3; 32], 5).next_u64().to_le_bytes());
    }
}
