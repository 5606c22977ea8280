//! Sorting for deterministic order, in little code. The core sorts only so that what
//! it does next does not depend on a hash map's order, never on a hot path, and
//! `slice::sort_unstable` costs about 3 KiB of wasm for every element type it sorts
//! (ten types: 31.5 KiB before `wasm-opt`, `node bench/bundle.mjs`). A heap sort
//! through std's `BinaryHeap` is O(n log n) too, in a fraction of that.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// `items` in ascending order.
pub(crate) fn sorted<T: Ord>(items: Vec<T>) -> Vec<T> {
    BinaryHeap::from(items).into_sorted_vec()
}

/// `items` in ascending order of `key` (equal keys in no particular order).
pub(crate) fn sorted_by_key<T, K: Ord>(items: Vec<T>, key: impl Fn(&T) -> K) -> Vec<T> {
    let keyed: Vec<Keyed<K, T>> = items.into_iter().map(|item| Keyed { key: key(&item), item }).collect();
    sorted(keyed).into_iter().map(|keyed| keyed.item).collect()
}

/// An item ordered by its key alone.
struct Keyed<K, T> {
    key: K,
    item: T,
}

impl<K: Ord, T> PartialEq for Keyed<K, T> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl<K: Ord, T> Eq for Keyed<K, T> {}

impl<K: Ord, T> PartialOrd for Keyed<K, T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<K: Ord, T> Ord for Keyed<K, T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_like_the_standard_sort() {
        // Every arrangement a small pseudo-random generator makes, duplicates included.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in [0usize, 1, 2, 3, 7, 64, 1000] {
            let items: Vec<u64> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state % 50
                })
                .collect();
            let mut expected = items.clone();
            expected.sort_unstable();
            assert_eq!(sorted(items), expected, "{len} items");
        }
    }

    #[test]
    fn sorts_by_key_keeping_every_item() {
        let items = vec![("b", 2), ("a", 9), ("c", 1), ("a", 3)];
        let by_number = sorted_by_key(items.clone(), |(_, n)| *n);
        assert_eq!(by_number, vec![("c", 1), ("b", 2), ("a", 3), ("a", 9)]);
        let by_name: Vec<&str> = sorted_by_key(items, |(name, _)| *name).into_iter().map(|(name, _)| name).collect();
        assert_eq!(by_name, vec!["a", "a", "b", "c"]);
    }
}
