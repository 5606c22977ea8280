//! Peer ids: derived from a client's secret (stable across reconnects and server
//! restarts, unforgeable without the secret) or random for clients without one.

use sha2::{Digest, Sha256};

/// 128 bits, hex: unguessable and short enough to log.
const ID_BYTES: usize = 16;

/// The id a secret maps to. Domain-separated so the hash is useful for nothing else.
pub fn id_from_secret(secret: &str) -> String {
    let digest = Sha256::new().chain_update(b"meshdrop/peer-id/v1\0").chain_update(secret.as_bytes()).finalize();
    hex(&digest[..ID_BYTES])
}

/// A fresh random id from the operating system's generator.
pub fn random_id() -> String {
    let mut bytes = [0u8; ID_BYTES];
    // The OS generator failing means the machine cannot do cryptography at all; ids
    // would then be guessable, which is worse than refusing to run.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut bytes).expect("operating system random number generator unavailable");
    hex(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes.iter().flat_map(|b| [DIGITS[usize::from(b >> 4)] as char, DIGITS[usize::from(b & 15)] as char]).collect()
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
