//! Time as a plain number passed in by the driver: the core never reads a clock
//! (`Instant::now()` panics on wasm32-unknown-unknown) and tests control time exactly.

use std::ops::Add;

/// Milliseconds on the driver's monotonic clock (e.g. `performance.now()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

impl Add<u64> for Millis {
    type Output = Millis;
    fn add(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }
}

/// Exponential backoff: `base`, 2×, 4×, … capped at `cap`, with up to 25 % jitter so
/// peers that lost the same server do not all come back in the same millisecond.
pub(crate) fn backoff(attempt: u32, base: u64, cap: u64, jitter_source: u64) -> u64 {
    let delay = base.saturating_mul(1u64 << attempt.min(16)).min(cap);
    delay + jitter_source % (delay / 4 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0, 250, 10_000, 0), 250);
        assert_eq!(backoff(3, 250, 10_000, 0), 2_000);
        assert_eq!(backoff(30, 250, 10_000, 0), 10_000);
        assert!((10_000..=12_500).contains(&backoff(30, 250, 10_000, u64::MAX)));
    }
}
