//! Rate limits: what a client may send, and what one client may be sent by everyone
//! else together.

use tokio::time::{Duration, Instant};

/// Refusals closer together than this belong to one burst.
const BURST_GAP: Duration = Duration::from_secs(1);

/// What the bucket says about one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Pass,
    /// Dropped; `first` says it starts a burst of refusals (tell the client once).
    Refused {
        first: bool,
    },
    /// More than two seconds' worth of frames refused in one burst: a flood.
    Flood,
}

/// Allows `rate` frames a second with bursts of twice that (at least 10).
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    /// Frames refused in the current burst, and when the last one was.
    refused: u32,
    last_refused: Option<Instant>,
}

impl TokenBucket {
    pub(crate) fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        let burst = (rate * 2.0).max(10.0);
        TokenBucket { rate, burst, tokens: burst, last: Instant::now(), refused: 0, last_refused: None }
    }

    pub(crate) fn check(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Pass;
        }
        // A sustained flood just over the rate alternates passes and refusals: it is
        // still one burst, so it gets one error, and it is closed like any flood.
        let first = self.last_refused.is_none_or(|at| now.saturating_duration_since(at) > BURST_GAP);
        if first {
            self.refused = 0;
        }
        self.refused += 1;
        self.last_refused = Some(now);
        if f64::from(self.refused) > self.rate * 2.0 {
            Verdict::Flood
        } else {
            Verdict::Refused { first }
        }
    }
}

/// Lets something happen at most once per period.
#[derive(Debug)]
pub(crate) struct Throttle {
    every: Duration,
    last: Option<Instant>,
}

impl Throttle {
    pub(crate) fn new(every: Duration) -> Self {
        Throttle { every, last: None }
    }

    /// Whether it may happen now (and then it counts as having happened).
    pub(crate) fn ready(&mut self, now: Instant) -> bool {
        if self.last.is_some_and(|at| now.saturating_duration_since(at) < self.every) {
            return false;
        }
        self.last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_just_over_the_rate_is_one_burst_then_a_flood() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10);
        for i in 0..20 {
            assert_eq!(bucket.check(start), Verdict::Pass, "burst allowance, frame {i}");
        }
        // Twice the rate, evenly: every other frame passes.
        let mut firsts = 0;
        let mut verdict = Verdict::Pass;
        for i in 1..=100u64 {
            verdict = bucket.check(start + Duration::from_millis(i * 50));
            match verdict {
                Verdict::Refused { first: true } => firsts += 1,
                Verdict::Flood => break,
                _ => {}
            }
        }
        assert_eq!(firsts, 1, "one error for the whole burst");
        assert_eq!(verdict, Verdict::Flood);
    }

    #[test]
    fn refusals_a_second_apart_are_separate_bursts() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(1);
        for _ in 0..10 {
            bucket.check(start);
        }
        assert_eq!(bucket.check(start), Verdict::Refused { first: true });
        assert_eq!(bucket.check(start), Verdict::Refused { first: false });
        // 1.5 s later a token is back; the next refusal after it starts a new burst.
        let later = start + Duration::from_millis(1500);
        assert_eq!(bucket.check(later), Verdict::Pass);
        assert_eq!(bucket.check(later), Verdict::Refused { first: true });
    }
}
