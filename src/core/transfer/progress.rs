//! Progress and speed: samples over a sliding two-second window, reported at most
//! every [`PROGRESS_INTERVAL_MS`](super::PROGRESS_INTERVAL_MS).

use std::collections::VecDeque;

use super::{Progress, PROGRESS_INTERVAL_MS};
use crate::core::Millis;

const WINDOW_MS: u64 = 2_000;

#[derive(Debug, Default)]
pub(crate) struct ProgressMeter {
    pub(crate) bytes: u64,
    samples: VecDeque<(Millis, u64)>,
    last_report: Option<Millis>,
}

impl ProgressMeter {
    /// Sets the byte count (it may go down: a resumed transfer recounts).
    pub(crate) fn set(&mut self, now: Millis, bytes: u64) {
        if bytes < self.bytes {
            self.samples.clear();
        }
        self.bytes = bytes;
        self.samples.push_back((now, bytes));
        while self.samples.len() > 2 && self.samples.front().is_some_and(|(t, _)| now.0.saturating_sub(t.0) > WINDOW_MS) {
            self.samples.pop_front();
        }
    }

    /// Forgets the speed history (a pause is not slowness).
    pub(crate) fn restart(&mut self) {
        self.samples.clear();
    }

    /// A report if one is due (or `force`d, e.g. at the end).
    pub(crate) fn report(&mut self, now: Millis, total: u64, force: bool) -> Option<Progress> {
        let due = self.last_report.is_none_or(|t| now.0.saturating_sub(t.0) >= PROGRESS_INTERVAL_MS);
        if !due && !force {
            return None;
        }
        self.last_report = Some(now);
        let bytes_per_second = match (self.samples.front(), self.samples.back()) {
            (Some((t0, b0)), Some((t1, b1))) if t1.0 > t0.0 => (b1 - b0) as f64 * 1000.0 / (t1.0 - t0.0) as f64,
            _ => 0.0,
        };
        Some(Progress { bytes: self.bytes, total, bytes_per_second })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_throttled_and_measure_speed() {
        let mut m = ProgressMeter::default();
        m.set(Millis(0), 0);
        assert!(m.report(Millis(0), 100, false).is_some());
        m.set(Millis(100), 1_000);
        assert!(m.report(Millis(100), 100, false).is_none());
        m.set(Millis(500), 5_000);
        let p = m.report(Millis(500), 10_000, false).unwrap();
        assert_eq!(p.bytes, 5_000);
        assert!((p.bytes_per_second - 10_000.0).abs() < 1.0);
        assert!(m.report(Millis(501), 10_000, true).is_some());
    }
}
