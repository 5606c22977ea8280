//! Block arithmetic and hashing. Files are cut into fixed 1 MiB blocks; each block has
//! a BLAKE3 hash, and the content hash commits to the size and every block hash, so a
//! resumed or multi-source download can check each block on its own and the whole at
//! the end. All offsets are `u64`: files pass 4 GiB and `usize` is 32 bits on wasm32.

/// Bytes per block. Part of the protocol: every sender of a file must cut it the same
/// way for block hashes to agree.
pub const BLOCK_SIZE: u64 = 1 << 20;
/// Largest file we agree to receive (1 TiB): bounds the per-block bookkeeping a
/// peer's offer can make us allocate (32 bytes per block).
pub const MAX_FILE_SIZE: u64 = 1 << 40;

/// A BLAKE3 digest.
pub type Hash = [u8; 32];

/// Whether a partial download of a file of `size` bytes can be worth keeping: one of at
/// most one block resumes from nothing (blocks are kept only once verified whole).
pub fn resumable(size: u64) -> bool {
    block_count(size) > 1
}

/// Blocks in a file of `size` bytes (a zero-byte file has none).
pub fn block_count(size: u64) -> u32 {
    // MAX_FILE_SIZE / BLOCK_SIZE fits in u32; larger sizes are refused before this.
    u32::try_from(size.div_ceil(BLOCK_SIZE)).unwrap_or(u32::MAX)
}

/// Byte offset of `block`.
pub fn block_offset(block: u32) -> u64 {
    u64::from(block) * BLOCK_SIZE
}

/// Length of `block` in a file of `size` bytes (the last one may be short).
pub fn block_len(size: u64, block: u32) -> u64 {
    size.saturating_sub(block_offset(block)).min(BLOCK_SIZE)
}

/// The hash of one block.
pub fn hash_block(bytes: &[u8]) -> Hash {
    *blake3::hash(bytes).as_bytes()
}

/// Names a partial download: derived from the size and the first block's hash (which a
/// sender knows before it offers, unlike the content hash), so a receiver finds what it
/// already has of the same content. Every kept block is still checked against the new
/// sender's hashes.
pub fn content_key(size: u64, head: &Hash) -> String {
    let mut hasher = blake3::Hasher::new_derive_key("meshdrop 2026-11 content key v1");
    hasher.update(&size.to_le_bytes());
    hasher.update(head);
    hex(&hasher.finalize().as_bytes()[..16])
}

/// The content hash: commits to the size, the block size and every block's hash.
pub fn content_hash<'a>(size: u64, blocks: impl IntoIterator<Item = &'a Hash>) -> Hash {
    let mut hasher = blake3::Hasher::new_derive_key("meshdrop 2026-11 content v1");
    hasher.update(&size.to_le_bytes());
    hasher.update(&BLOCK_SIZE.to_le_bytes());
    for block in blocks {
        hasher.update(block);
    }
    *hasher.finalize().as_bytes()
}

/// A receiver's resume token for transfer `id` from `sender`: keyed by a key that never
/// leaves the receiver's browser, and the same after it reloads.
pub(crate) fn resume_token(local_key: &Hash, id: u64, sender: &str) -> Hash {
    let mut hasher = blake3::Hasher::new_keyed(local_key);
    hasher.update(b"meshdrop resume token v1");
    hasher.update(&id.to_be_bytes());
    hasher.update(sender.as_bytes());
    *hasher.finalize().as_bytes()
}

/// The answer to a resumed offer's nonce: proves the token without revealing it.
pub(crate) fn resume_response(token: &Hash, nonce: u64) -> Hash {
    let mut hasher = blake3::Hasher::new_keyed(token);
    hasher.update(b"meshdrop resume response v1");
    hasher.update(&nonce.to_be_bytes());
    *hasher.finalize().as_bytes()
}

/// Lowercase hex (the one encoder, shared with the signaling protocol's ids and keys).
pub use meshdrop_signal::protocol::to_hex as hex;

/// A set of block indexes, as a bitmap (also its wire form in `accept`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockSet {
    bits: Vec<u8>,
    len: u32,
    count: u32,
}

impl BlockSet {
    /// An empty set for `len` blocks.
    pub fn new(len: u32) -> Self {
        BlockSet { bits: vec![0; len.div_ceil(8) as usize], len, count: 0 }
    }

    /// Reads a peer's bitmap for `len` blocks; `None` if its length is wrong.
    pub fn from_bytes(len: u32, bytes: &[u8]) -> Option<Self> {
        if bytes.len() != len.div_ceil(8) as usize {
            return None;
        }
        let mut set = BlockSet::new(len);
        for block in 0..len {
            if bytes[(block / 8) as usize] & (1 << (block % 8)) != 0 {
                set.insert(block);
            }
        }
        Some(set)
    }

    /// The bitmap.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }

    /// Whether `block` is in the set (false when out of range).
    pub fn contains(&self, block: u32) -> bool {
        block < self.len && self.bits[(block / 8) as usize] & (1 << (block % 8)) != 0
    }

    /// Adds `block`; false if it was there already or is out of range.
    pub fn insert(&mut self, block: u32) -> bool {
        if block >= self.len || self.contains(block) {
            return false;
        }
        self.bits[(block / 8) as usize] |= 1 << (block % 8);
        self.count += 1;
        true
    }

    /// Removes `block`; false if it was not there.
    pub fn remove(&mut self, block: u32) -> bool {
        if !self.contains(block) {
            return false;
        }
        self.bits[(block / 8) as usize] &= !(1 << (block % 8));
        self.count -= 1;
        true
    }

    /// How many blocks are in the set.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether every block is in the set.
    pub fn is_full(&self) -> bool {
        self.count == self.len
    }

    /// Bytes the set covers in a file of `size` bytes.
    pub fn bytes(&self, size: u64) -> u64 {
        let mut total = u64::from(self.count) * BLOCK_SIZE;
        let last = self.len.saturating_sub(1);
        if self.len > 0 && self.contains(last) {
            total -= BLOCK_SIZE - block_len(size, last);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_math_at_the_edges() {
        assert_eq!(block_count(0), 0);
        assert_eq!(block_count(1), 1);
        assert_eq!(block_count(BLOCK_SIZE), 1);
        assert_eq!(block_count(BLOCK_SIZE + 1), 2);
        assert_eq!(block_len(BLOCK_SIZE + 1, 1), 1);
        assert_eq!(block_len(3 * BLOCK_SIZE, 2), BLOCK_SIZE);
        assert_eq!(block_count(MAX_FILE_SIZE), 1 << 20);
        // 5 GiB: offsets past 4 GiB stay exact.
        assert_eq!(block_offset(5 * 1024), 5 * 1024 * BLOCK_SIZE);
    }

    #[test]
    fn block_sets_round_trip_and_count_bytes() {
        let mut set = BlockSet::new(10);
        assert!(set.insert(0) && set.insert(9) && !set.insert(9) && !set.insert(10));
        assert_eq!(set.count(), 2);
        let again = BlockSet::from_bytes(10, set.as_bytes()).unwrap();
        assert_eq!(again, set);
        assert_eq!(BlockSet::from_bytes(10, &[0]), None);
        let size = 9 * BLOCK_SIZE + 5;
        assert_eq!(set.bytes(size), BLOCK_SIZE + 5);
        assert!(set.remove(9) && !set.remove(9));
        assert!(!set.is_full());
    }

    #[test]
    fn content_hash_depends_on_size_and_blocks() {
        let a = hash_block(b"a");
        let b = hash_block(b"b");
        assert_ne!(content_hash(1, [&a]), content_hash(2, [&a]));
        assert_ne!(content_hash(2, [&a, &b]), content_hash(2, [&b, &a]));
        assert_eq!(content_key(1, &a).len(), 32);
        assert_eq!(hex(&[0, 0xab]), "00ab");
    }
}
