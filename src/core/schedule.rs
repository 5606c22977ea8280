//! When to connect to whom: offers wait their turn so only a few are in flight at
//! once, a failed peer is tried again after a backoff that grows with its failures,
//! and the user hears `peer-connecting` once per attempt series. Time is passed in;
//! the sessions themselves are the peers' business.

use std::collections::{HashMap, HashSet, VecDeque};

use super::order::sorted;
use super::rng::Rng;
use super::time::backoff;
use super::{Millis, PeerId};

/// Connection attempts we offer at once; the rest wait their turn. All at once, a
/// 32-peer room's 496 DTLS handshakes on two cores once took long enough to hit the
/// connect timeout, and the retries made it worse (bench/mesh.mjs). 8 then held back
/// the first peer of a 16-peer room, which offers to 15: with 16, 16 tabs on two cores
/// were all connected in 2.9–3.1 s instead of 3.1–3.5 (32 tabs: 11.8–13.2 s against
/// 12.6–16.6), for less CPU.
pub const MAX_OFFERS_IN_FLIGHT: usize = 16;

#[derive(Debug)]
pub(crate) struct Schedule {
    rng: Rng,
    /// When to try a peer again, and how many tries it has had.
    retries: HashMap<PeerId, Millis>,
    attempts: HashMap<PeerId, u32>,
    /// Announced with `PeerConnecting`, neither joined nor left since.
    connecting: HashSet<PeerId>,
    /// Peers we will offer to once fewer than [`MAX_OFFERS_IN_FLIGHT`] are in flight.
    queue: VecDeque<PeerId>,
}

impl Schedule {
    pub(crate) fn new(seed: u64) -> Self {
        Schedule { rng: Rng::new(seed), retries: HashMap::new(), attempts: HashMap::new(), connecting: HashSet::new(), queue: VecDeque::new() }
    }

    pub(crate) fn deadlines(&self) -> impl Iterator<Item = Millis> + '_ {
        self.retries.values().copied()
    }

    /// An attempt at `peer` starts: true if the user is to be told (the first of a
    /// series).
    pub(crate) fn announce(&mut self, peer: &PeerId) -> bool {
        self.connecting.insert(peer.clone())
    }

    /// Whether an offer to `peer` must wait, given how many are in flight; queues it
    /// if so.
    pub(crate) fn must_wait(&mut self, peer: &PeerId, in_flight: usize) -> bool {
        if in_flight < MAX_OFFERS_IN_FLIGHT {
            return false;
        }
        if !self.queue.contains(peer) {
            self.queue.push_back(peer.clone());
        }
        true
    }

    /// The next queued peer, if one more offer fits.
    pub(crate) fn next_queued(&mut self, in_flight: usize) -> Option<PeerId> {
        if in_flight >= MAX_OFFERS_IN_FLIGHT {
            return None;
        }
        self.queue.pop_front()
    }

    /// An attempt started: no retry is pending any more.
    pub(crate) fn started(&mut self, peer: &PeerId) {
        self.retries.remove(peer);
    }

    /// Connected: the series is over.
    pub(crate) fn connected(&mut self, peer: &PeerId) {
        self.connecting.remove(peer);
        self.retries.remove(peer);
        self.attempts.remove(peer);
    }

    /// The server says `peer` left: no more retries.
    pub(crate) fn forget(&mut self, peer: &PeerId) {
        self.retries.remove(peer);
        self.attempts.remove(peer);
    }

    /// `peer` left with no connection: true if the user was told it was connecting
    /// (and so must hear that it left).
    pub(crate) fn drop_peer(&mut self, peer: &PeerId) -> bool {
        self.queue.retain(|p| p != peer);
        self.connecting.remove(peer)
    }

    /// Tries `peer` again at `now + delay`.
    pub(crate) fn retry_in(&mut self, now: Millis, peer: &PeerId, delay: u64) {
        self.retries.insert(peer.clone(), now + delay);
    }

    /// Tries `peer` again after a failure, later the more it failed (1 s to 15 s,
    /// plus up to a quarter of jitter).
    pub(crate) fn retry_after_failure(&mut self, now: Millis, peer: &PeerId) {
        let delay = backoff(self.attempts.get(peer).copied().unwrap_or(0), 1_000, 15_000, self.rng.next_u64());
        self.retry_in(now, peer, delay);
    }

    /// Peers whose retry is due at `now`, sorted; no longer pending.
    pub(crate) fn due(&mut self, now: Millis) -> Vec<PeerId> {
        let due = sorted(self.retries.iter().filter(|(_, at)| **at <= now).map(|(p, _)| p.clone()).collect());
        for peer in &due {
            self.retries.remove(peer);
        }
        due
    }

    /// A retry was made: the next failure waits longer.
    pub(crate) fn retried(&mut self, peer: &PeerId) {
        *self.attempts.entry(peer.clone()).or_default() += 1;
    }

    pub(crate) fn clear(&mut self) {
        self.retries.clear();
        self.connecting.clear();
        self.queue.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str) -> PeerId {
        PeerId::new(name.to_owned())
    }

    #[test]
    fn offers_past_the_limit_queue_once_each_and_start_in_order() {
        let mut schedule = Schedule::new(1);
        assert!(!schedule.must_wait(&peer("a"), MAX_OFFERS_IN_FLIGHT - 1));
        assert!(schedule.must_wait(&peer("b"), MAX_OFFERS_IN_FLIGHT));
        assert!(schedule.must_wait(&peer("c"), MAX_OFFERS_IN_FLIGHT));
        assert!(schedule.must_wait(&peer("b"), MAX_OFFERS_IN_FLIGHT));
        assert_eq!(schedule.next_queued(MAX_OFFERS_IN_FLIGHT), None, "still full");
        assert_eq!(schedule.next_queued(MAX_OFFERS_IN_FLIGHT - 1), Some(peer("b")));
        assert!(!schedule.drop_peer(&peer("c")), "never announced");
        assert_eq!(schedule.next_queued(0), None, "c left the queue when it left");
    }

    #[test]
    fn retries_back_off_with_each_failure_and_stop_when_connected() {
        let mut schedule = Schedule::new(2);
        let p = peer("p");
        let mut delays = Vec::new();
        let mut now = Millis(0);
        for _ in 0..5 {
            schedule.retry_after_failure(now, &p);
            let Some(at) = schedule.deadlines().next() else { panic!("a retry is pending") };
            delays.push(at.0 - now.0);
            assert_eq!(schedule.due(Millis(at.0 - 1)), Vec::<PeerId>::new());
            assert_eq!(schedule.due(at), vec![p.clone()]);
            schedule.retried(&p);
            now = at;
        }
        assert!(delays.iter().all(|d| (1_000..=15_000 * 5 / 4).contains(d)), "1 s to 15 s, plus jitter: {delays:?}");
        assert!(delays[4] > delays[0], "later retries wait longer: {delays:?}");
        schedule.connected(&p);
        schedule.retry_after_failure(now, &p);
        let Some(at) = schedule.deadlines().next() else { panic!("a retry is pending") };
        assert!(at.0 - now.0 <= 1_250, "a new series starts from the shortest delay");
    }

    #[test]
    fn the_user_hears_of_an_attempt_series_once() {
        let mut schedule = Schedule::new(3);
        assert!(schedule.announce(&peer("p")));
        assert!(!schedule.announce(&peer("p")));
        assert!(schedule.drop_peer(&peer("p")), "announced: the user must hear it left");
        assert!(schedule.announce(&peer("p")));
    }
}
