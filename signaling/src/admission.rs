//! Who gets a connection: at most `max_connections` at once, and at most
//! `max_connections_per_ip` from one address. Past those limits a few more are let in
//! to be told so (HTTP 503; `/healthz` still answers 200, so a monitor sees a server
//! that is full, not one that is down); past those, connections are closed at once.
//! Every slot is released when its connection ends, WebSocket or not.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::time::{Duration, Instant};
use tracing::warn;

/// Connections let in past a limit, to be answered 503 and closed.
const BUSY_SLOTS: usize = 64;
/// Of those, from one address.
const BUSY_SLOTS_PER_IP: usize = 4;
/// At most one "limit reached" log line this often.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Why a connection is only told to come back later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Busy {
    /// `max_connections` are open.
    Full,
    /// `max_connections_per_ip` are open from its address.
    PerIp,
}

pub(crate) enum Admitted {
    Serve(Slot),
    Busy(Slot, Busy),
    Refused,
}

#[derive(Default)]
struct Counts {
    live: usize,
    busy: usize,
    /// Per address: (served, busy).
    per_ip: HashMap<IpAddr, (usize, usize)>,
    last_log: Option<Instant>,
}

pub(crate) struct Admission {
    max: usize,
    /// 0: no per-address limit.
    max_per_ip: usize,
    counts: Mutex<Counts>,
}

/// A connection's place; dropping it frees the place.
pub(crate) struct Slot {
    admission: Arc<Admission>,
    ip: IpAddr,
    busy: bool,
}

impl Admission {
    pub(crate) fn new(max: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Admission { max: max.max(1), max_per_ip, counts: Mutex::new(Counts::default()) })
    }

    /// Connections being served (not counting those told to come back later).
    #[cfg(test)]
    pub(crate) fn live(&self) -> usize {
        self.lock().live
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Admitted {
        let mut counts = self.lock();
        let (served, busy) = counts.per_ip.get(&ip).copied().unwrap_or_default();
        let why = if counts.live >= self.max {
            Busy::Full
        } else if self.max_per_ip > 0 && served >= self.max_per_ip {
            Busy::PerIp
        } else {
            counts.live += 1;
            counts.per_ip.insert(ip, (served + 1, busy));
            return Admitted::Serve(Slot { admission: self.clone(), ip, busy: false });
        };
        let now = Instant::now();
        if counts.last_log.is_none_or(|at| now.saturating_duration_since(at) >= LOG_EVERY) {
            counts.last_log = Some(now);
            match why {
                Busy::Full => warn!(max = self.max, "connection limit reached: new connections get HTTP 503 (raise --max-connections)"),
                Busy::PerIp => warn!(%ip, max = self.max_per_ip, "per-address connection limit reached: its new connections get HTTP 503"),
            }
        }
        if counts.busy >= BUSY_SLOTS || busy >= BUSY_SLOTS_PER_IP {
            return Admitted::Refused;
        }
        counts.busy += 1;
        counts.per_ip.insert(ip, (served, busy + 1));
        Admitted::Busy(Slot { admission: self.clone(), ip, busy: true }, why)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.admission.lock();
        if self.busy {
            counts.busy -= 1;
        } else {
            counts.live -= 1;
        }
        let busy = self.busy;
        if let Some((served, held)) = counts.per_ip.get_mut(&self.ip) {
            if busy {
                *held -= 1;
            } else {
                *served -= 1;
            }
            if *served == 0 && *held == 0 {
                counts.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_then_busy_then_refused_and_slots_come_back() {
        let admission = Admission::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let served = |admitted| match admitted {
            Admitted::Serve(slot) => slot,
            _ => panic!("expected to be served"),
        };
        let busy = |admitted, expected| match admitted {
            Admitted::Busy(slot, why) if why == expected => slot,
            _ => panic!("expected busy ({expected:?})"),
        };
        let mut held = vec![served(admission.admit(a)), served(admission.admit(a))];
        held.push(busy(admission.admit(a), Busy::PerIp));
        held.push(served(admission.admit(b)));
        held.push(busy(admission.admit(b), Busy::Full));
        assert_eq!(admission.live(), 3);
        for _ in 1..BUSY_SLOTS_PER_IP {
            held.push(busy(admission.admit(a), Busy::Full));
        }
        assert!(matches!(admission.admit(a), Admitted::Refused), "one address cannot take every busy slot");
        held.clear();
        assert_eq!(admission.live(), 0);
        assert!(admission.lock().per_ip.is_empty() && admission.lock().busy == 0);
        let _again = served(admission.admit(a));
    }
}
