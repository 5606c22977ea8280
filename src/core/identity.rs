//! Who a peer is, without trusting the server: an Ed25519 key pair that never leaves
//! this device. The peer id is a hash of the public key
//! ([`meshdrop_signal::protocol::id_from_key`]); the signaling server checks a
//! signature over its nonce at `join`, and every connection is bound to the keys at both
//! ends: each side signs the DTLS fingerprints of the connection as it sees them
//! ([`binding_message`]) in the first frame it sends, so a server that relays offers
//! with its own fingerprints (to sit in the middle) or announces a peer under another's
//! id is caught at the first connection.
//!
//! Standard constructions only: Ed25519 (RFC 8032, `verify_strict`), SHA-256 for ids,
//! BLAKE3's key-derivation mode for seeds and safety codes; every signed or hashed
//! message starts with its own domain tag.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use meshdrop_signal::protocol::{id_from_key, join_proof_message};

use super::id::PeerId;

/// A public key, as sent to the server and to peers.
pub type PublicKey = [u8; 32];

/// This peer's key pair.
#[derive(Clone)]
pub struct Identity {
    signing: SigningKey,
    id: PeerId,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Identity {
    /// From 32 secret random bytes.
    pub fn from_seed(seed: [u8; 32]) -> Identity {
        let signing = SigningKey::from_bytes(&seed);
        let id = PeerId::new(id_from_key(signing.verifying_key().as_bytes()));
        Identity { signing, id }
    }

    /// The key pair a stored secret stands for (the secret stays on this device).
    pub fn from_secret(secret: &str) -> Identity {
        Identity::from_seed(blake3::derive_key("meshdrop 2026-11 identity key from secret", secret.as_bytes()))
    }

    /// The id the server gives, and peers check, for this key.
    pub fn id(&self) -> &PeerId {
        &self.id
    }

    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        self.signing.verifying_key().to_bytes()
    }

    /// The `proof` of a keyed join: the signature over the server's nonce and the room.
    pub(crate) fn join_proof(&self, nonce: &str, room: &str) -> [u8; 64] {
        self.signing.sign(&join_proof_message(nonce, room)).to_bytes()
    }

    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }
}

/// What a connection's binding signs: a domain tag, the room, both ids and both DTLS
/// fingerprints, the signer's first, each length-prefixed so no two field lists give
/// the same bytes. Both ends compute it from what they see: the signer's own
/// fingerprint is in its local description, the receiver's in the remote one.
pub fn binding_message(room: &str, signer: &PeerId, receiver: &PeerId, signer_fingerprint: &str, receiver_fingerprint: &str) -> Vec<u8> {
    let mut message = b"meshdrop/bind/v1\0".to_vec();
    for field in [room, signer.as_str(), receiver.as_str(), signer_fingerprint, receiver_fingerprint] {
        message.extend_from_slice(&(field.len() as u32).to_be_bytes());
        message.extend_from_slice(field.as_bytes());
    }
    message
}

/// Whether `signature` is `key`'s over `message` (strict: no malleable or small-order
/// forms).
pub fn verify(key: &PublicKey, message: &[u8], signature: &[u8; 64]) -> bool {
    VerifyingKey::from_bytes(key).is_ok_and(|key| key.verify_strict(message, &Signature::from_bytes(signature)).is_ok())
}

/// Whether `key` is the key of peer `id`.
pub fn key_matches(key: &PublicKey, id: &PeerId) -> bool {
    // Ids are public: no secret to protect with a constant-time comparison here.
    id_from_key(key) == id.as_str()
}

/// The DTLS fingerprints in an SDP (`a=fingerprint:` lines), normalized and sorted, so
/// both ends describe a certificate alike; `None` if it has none.
pub fn fingerprints(sdp: &str) -> Option<String> {
    let found: Vec<String> = sdp
        .lines()
        .filter_map(|line| line.trim().strip_prefix("a=fingerprint:"))
        .map(|value| value.split_whitespace().collect::<Vec<_>>().join(" ").to_ascii_lowercase())
        .collect();
    let mut found = super::order::sorted(found);
    found.dedup();
    (!found.is_empty()).then(|| found.join(","))
}

/// A code two people compare (read aloud, or side by side) to know they are talking to
/// each other and not to someone in between: 20 digits in groups of 5, the same on both
/// sides (the keys are sorted), different for any other pair of keys. 20 digits (66
/// bits) keep a man in the middle from grinding keys until his two codes match.
pub fn safety_code(a: &PublicKey, b: &PublicKey) -> String {
    let (first, second) = if a <= b { (a, b) } else { (b, a) };
    let mut hasher = blake3::Hasher::new_derive_key("meshdrop 2026-11 safety code");
    hasher.update(first).update(second);
    let digest = hasher.finalize();
    let mut wide = [0u8; 16];
    wide.copy_from_slice(&digest.as_bytes()[..16]);
    let digits = format!("{:020}", u128::from_be_bytes(wide) % 10u128.pow(20));
    digits.as_bytes().chunks(5).map(|group| String::from_utf8_lossy(group).into_owned()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_keys_and_secrets_stay_local() {
        let a = Identity::from_secret(&"a".repeat(40));
        assert_eq!(a.id().as_str(), id_from_key(&a.public_key()));
        assert_eq!(a.id(), Identity::from_secret(&"a".repeat(40)).id(), "stable");
        assert_ne!(a.id(), Identity::from_secret(&"b".repeat(40)).id());
        assert!(key_matches(&a.public_key(), a.id()));
        assert!(!key_matches(&Identity::from_seed([1; 32]).public_key(), a.id()));
    }

    #[test]
    fn bindings_verify_only_for_the_same_fields() {
        let (a, b) = (Identity::from_seed([1; 32]), Identity::from_seed([2; 32]));
        let message = binding_message("r", a.id(), b.id(), "sha-256 aa", "sha-256 bb");
        let signature = a.sign(&message);
        assert!(verify(&a.public_key(), &message, &signature));
        assert!(!verify(&b.public_key(), &message, &signature), "another key");
        for other in [
            binding_message("s", a.id(), b.id(), "sha-256 aa", "sha-256 bb"),
            binding_message("r", b.id(), a.id(), "sha-256 aa", "sha-256 bb"),
            binding_message("r", a.id(), b.id(), "sha-256 bb", "sha-256 aa"),
            binding_message("r", a.id(), b.id(), "sha-256 aa", "sha-256 cc"),
        ] {
            assert!(!verify(&a.public_key(), &other, &signature));
        }
        // Length prefixes: moving bytes between fields changes the message.
        assert_ne!(binding_message("r", a.id(), b.id(), "ab", "c"), binding_message("r", a.id(), b.id(), "a", "bc"));
        let mut flipped = signature;
        flipped[5] ^= 1;
        assert!(!verify(&a.public_key(), &message, &flipped));
    }

    #[test]
    fn safety_codes_are_symmetric_and_change_with_any_key() {
        let keys: Vec<PublicKey> = (1..=4).map(|i| Identity::from_seed([i; 32]).public_key()).collect();
        let code = safety_code(&keys[0], &keys[1]);
        assert_eq!(code, safety_code(&keys[1], &keys[0]), "the same on both sides");
        assert_eq!(code.len(), 23);
        assert!(code.split(' ').all(|group| group.len() == 5 && group.bytes().all(|c| c.is_ascii_digit())));
        assert_ne!(code, safety_code(&keys[0], &keys[2]));
        assert_ne!(code, safety_code(&keys[2], &keys[1]));
        assert_ne!(code, safety_code(&keys[2], &keys[3]));
        let mut near = keys[1];
        near[31] ^= 1;
        assert_ne!(code, safety_code(&keys[0], &near), "one bit of one key");
    }

    #[test]
    fn fingerprints_are_read_from_any_sdp_layout() {
        let sdp = "v=0\r\na=fingerprint:sha-256 AB:CD\r\nm=application 9\r\na=fingerprint:sha-256  AB:CD\r\n";
        assert_eq!(fingerprints(sdp).as_deref(), Some("sha-256 ab:cd"));
        assert_eq!(fingerprints("v=0\r\n"), None);
    }
}
