//! Whether an open connection has a working network path, and what to do when it
//! loses it: wait a short grace (a `disconnected` path often comes back by itself),
//! tell the user, have the offerer restart ICE over signaling (the answerer asks it
//! to), retry the restart, and give up after the reconnect timeout. Time is passed in.

use super::path::IceState;
use super::Millis;

/// A connection whose ICE path went `disconnected` gets this long to come back by itself
/// before it is restarted.
pub const ICE_GRACE_MS: u64 = 2_000;
/// A restart that has not brought the path back after this long is tried again.
pub const ICE_RESTART_RETRY_MS: u64 = 5_000;
/// A restart's answer not back after this long is taken as lost (it takes one round
/// trip through the server), so a peer that asks again gets a new offer.
pub(crate) const RESTART_ANSWER_OVERDUE_MS: u64 = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Health {
    Up,
    /// Lost since `since`; `failed` if ICE gave up (not just `disconnected`);
    /// `announced` once the user was told; `restart_at` when to (re)start ICE next.
    Down {
        since: Millis,
        failed: bool,
        announced: bool,
        restart_at: Millis,
    },
}

/// What an ICE state change means for the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Nothing,
    /// The path is back; `announced` if the user had been told it was gone.
    Back {
        announced: bool,
    },
    /// ICE failed: act now ([`Health::check`]).
    CheckNow,
}

/// What to do about a path that is down, now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Up, or not yet time.
    Wait,
    /// No path came back in time: the session ends.
    GiveUp,
    /// Tell the user (first time only), and restart ICE (the offerer) or ask the
    /// offerer to (the answerer); neither while signaling is down.
    Restart { announce: bool, restart_ice: bool, ask_offerer: bool },
}

impl Health {
    /// When [`Health::check`] is due next.
    pub(crate) fn deadline(&self, give_up_after: u64) -> Option<Millis> {
        match *self {
            Health::Down { since, restart_at, .. } => Some(restart_at.min(since + give_up_after)),
            Health::Up => None,
        }
    }

    /// The connection's ICE state changed at `now`.
    pub(crate) fn ice_state(&mut self, now: Millis, state: IceState) -> Change {
        match (state, *self) {
            (IceState::Connected, Health::Down { announced, .. }) => {
                *self = Health::Up;
                Change::Back { announced }
            }
            (IceState::Disconnected, Health::Up) => {
                *self = Health::Down { since: now, failed: false, announced: false, restart_at: now + ICE_GRACE_MS };
                Change::Nothing
            }
            (IceState::Failed, Health::Up) => {
                *self = Health::Down { since: now, failed: true, announced: false, restart_at: now };
                Change::CheckNow
            }
            (IceState::Failed, Health::Down { since, announced, restart_at, .. }) => {
                *self = Health::Down { since, failed: true, announced, restart_at };
                Change::Nothing
            }
            _ => Change::Nothing,
        }
    }

    /// Makes a down path's restart due now (the peer asked, or signaling came back).
    pub(crate) fn restart_now(&mut self, now: Millis) {
        if let Health::Down { restart_at, .. } = self {
            *restart_at = now;
        }
    }

    /// What to do at `now` about a path that is down; schedules the next try.
    pub(crate) fn check(&mut self, now: Millis, give_up_after: u64, signaling: bool, we_offer: bool) -> Step {
        let Health::Down { since, failed, announced, restart_at } = *self else { return Step::Wait };
        if now >= since + give_up_after {
            return Step::GiveUp;
        }
        if now < restart_at {
            return Step::Wait;
        }
        // Without signaling nothing can carry an offer (or a request for one): soon.
        let next = if signaling { now + ICE_RESTART_RETRY_MS } else { now + ICE_GRACE_MS };
        *self = Health::Down { since, failed, announced: true, restart_at: next };
        Step::Restart { announce: !announced, restart_ice: signaling && we_offer, ask_offerer: signaling && !we_offer }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIVE_UP: u64 = 30_000;

    #[test]
    fn a_disconnected_path_gets_a_grace_then_is_restarted_once_per_retry_and_announced_once() {
        let mut health = Health::Up;
        assert_eq!(health.ice_state(Millis(100), IceState::Disconnected), Change::Nothing);
        assert_eq!(health.deadline(GIVE_UP), Some(Millis(100 + ICE_GRACE_MS)));
        assert_eq!(health.check(Millis(101), GIVE_UP, true, true), Step::Wait, "within the grace");
        let first = Millis(100 + ICE_GRACE_MS);
        assert_eq!(health.check(first, GIVE_UP, true, true), Step::Restart { announce: true, restart_ice: true, ask_offerer: false });
        let retry = first + ICE_RESTART_RETRY_MS;
        assert_eq!(health.deadline(GIVE_UP), Some(retry));
        assert_eq!(health.check(retry, GIVE_UP, true, true), Step::Restart { announce: false, restart_ice: true, ask_offerer: false });
        assert_eq!(health.ice_state(retry + 1, IceState::Connected), Change::Back { announced: true });
        assert_eq!(health, Health::Up);
    }

    #[test]
    fn a_failed_path_acts_at_once_and_the_answerer_asks_the_offerer() {
        let mut health = Health::Up;
        assert_eq!(health.ice_state(Millis(5), IceState::Failed), Change::CheckNow);
        assert_eq!(health.check(Millis(5), GIVE_UP, true, false), Step::Restart { announce: true, restart_ice: false, ask_offerer: true });
    }

    #[test]
    fn without_signaling_nothing_is_sent_and_the_next_try_comes_soon() {
        let mut health = Health::Up;
        health.ice_state(Millis(0), IceState::Failed);
        assert_eq!(health.check(Millis(0), GIVE_UP, false, true), Step::Restart { announce: true, restart_ice: false, ask_offerer: false });
        assert_eq!(health.deadline(GIVE_UP), Some(Millis(ICE_GRACE_MS)));
        health.restart_now(Millis(10));
        assert_eq!(health.deadline(GIVE_UP), Some(Millis(10)), "signaling came back: due now");
    }

    #[test]
    fn a_path_that_never_returns_is_given_up_at_the_reconnect_timeout() {
        let mut health = Health::Up;
        health.ice_state(Millis(0), IceState::Disconnected);
        assert_eq!(health.check(Millis(GIVE_UP - 1), GIVE_UP, true, true), Step::Restart { announce: true, restart_ice: true, ask_offerer: false });
        assert_eq!(health.deadline(GIVE_UP), Some(Millis(GIVE_UP)));
        assert_eq!(health.check(Millis(GIVE_UP), GIVE_UP, true, true), Step::GiveUp);
    }
}
