//! Peer ids: derived from a client's public key, checked by a signature over a nonce
//! (the server holds nothing that could claim the id); or, the older scheme, from a
//! client's secret (stable across reconnects and server restarts, unforgeable without
//! the secret, but known to the server); or random for clients with neither.

use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::protocol::{id_from_key, join_proof_message, to_hex, ErrorCode, ProtocolError};

/// 128 bits, hex: unguessable and short enough to log.
const ID_BYTES: usize = 16;

/// The id a secret maps to. Domain-separated so the hash is useful for nothing else.
pub fn id_from_secret(secret: &str) -> String {
    let digest = Sha256::new().chain_update(b"meshdrop/peer-id/v1\0").chain_update(secret.as_bytes()).finalize();
    to_hex(&digest[..ID_BYTES])
}

/// The id of a keyed join, if `proof` is `key`'s signature over this connection's
/// `nonce` and `room`. Strict verification (RFC 8032 with the canonical-encoding and
/// small-order checks): one key, one valid signature form.
pub fn id_from_proof(key: &[u8; 32], proof: &[u8; 64], nonce: Option<&str>, room: &str) -> Result<String, ProtocolError> {
    let nonce =
        nonce.ok_or_else(|| ProtocolError::new(ErrorCode::BadProof, "send `challenge` first and sign its nonce (each nonce serves one join)"))?;
    let key = VerifyingKey::from_bytes(key).map_err(|_| ProtocolError::new(ErrorCode::BadProof, "`key` is not an Ed25519 public key"))?;
    key.verify_strict(&join_proof_message(nonce, room), &Signature::from_bytes(proof))
        .map_err(|_| ProtocolError::new(ErrorCode::BadProof, "`proof` does not verify for this key, nonce and room"))?;
    Ok(id_from_key(key.as_bytes()))
}

/// A fresh random id from the operating system's generator.
pub fn random_id() -> String {
    to_hex(&random::<ID_BYTES>())
}

/// A fresh challenge nonce: 256 random bits, hex.
pub fn nonce() -> String {
    to_hex(&random::<32>())
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The OS generator failing means the machine cannot do cryptography at all; ids
    // would then be guessable, which is worse than refusing to run.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut bytes).expect("operating system random number generator unavailable");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_secret_same_id_and_ids_differ() {
        let s = "k".repeat(40);
        assert_eq!(id_from_secret(&s), id_from_secret(&s));
        assert_ne!(id_from_secret(&s), id_from_secret(&"j".repeat(40)));
        assert_eq!(id_from_secret(&s).len(), 32);
        assert_ne!(random_id(), random_id());
    }
}
