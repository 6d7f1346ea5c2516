//! The notifier's state machine of one subscription (RFC 6665 §4.1.2, §4.2.1, §4.2.2; RFC 3856
//! §6.4–§6.6): `pending` until authorized, `active` until it expires, is refreshed with
//! `Expires: 0`, is rejected, or its watcher goes away, then `terminated` with a reason.
//!
//! Pure: the caller passes the current time and turns the returned [`SubscriptionState`] into
//! the `Subscription-State` header of the NOTIFY it must send.

use std::time::{Duration, Instant};

use super::event::{Reason, SubscriptionState};

/// Where a subscription stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the presentity's authorization (RFC 6665 §4.2.1.2).
    Pending,
    /// Authorized; NOTIFYs carry state.
    Active,
    /// Over; the reason went into the final NOTIFY.
    Terminated(Reason),
}

/// One subscription, from the notifier's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifecycle {
    phase: Phase,
    expires_at: Instant,
}

impl Lifecycle {
    /// A new subscription granted `expires` seconds at `now`. `Expires: 0` is a fetch
    /// (RFC 6665 §4.4.3): it starts terminated, and its one NOTIFY says `timeout`.
    pub fn new(authorized: bool, expires: u32, now: Instant) -> Lifecycle {
        let phase = match (expires, authorized) {
            (0, _) => Phase::Terminated(Reason::Timeout),
            (_, true) => Phase::Active,
            (_, false) => Phase::Pending,
        };
        Lifecycle {
            phase,
            expires_at: now + Duration::from_secs(u64::from(expires)),
        }
    }

    /// Rebuilds a subscription from stored state (after a restart).
    pub fn restore(pending: bool, expires_at: Instant) -> Lifecycle {
        Lifecycle {
            phase: if pending {
                Phase::Pending
            } else {
                Phase::Active
            },
            expires_at,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// When it expires unless refreshed.
    pub fn expires_at(&self) -> Instant {
        self.expires_at
    }

    /// Whether NOTIFYs may carry the presentity's state (not while pending).
    pub fn shows_state(&self) -> bool {
        !matches!(self.phase, Phase::Pending)
    }

    /// True once terminated.
    pub fn is_terminated(&self) -> bool {
        matches!(self.phase, Phase::Terminated(_))
    }

    /// The Subscription-State for a NOTIFY sent at `now` (RFC 6665 §4.2.2: `expires` is the
    /// time left).
    pub fn state(&self, now: Instant) -> SubscriptionState {
        let left = self.expires_at.saturating_duration_since(now).as_secs();
        let expires = u32::try_from(left).unwrap_or(u32::MAX);
        match self.phase {
            Phase::Pending => SubscriptionState::Pending { expires },
            Phase::Active => SubscriptionState::Active { expires },
            Phase::Terminated(reason) => SubscriptionState::Terminated {
                reason: Some(reason),
                retry_after: None,
            },
        }
    }

    /// A refreshing SUBSCRIBE granted `expires` seconds (RFC 6665 §4.2.1.2); `0` ends it
    /// (§4.2.1.4). Returns the state for the NOTIFY that follows; `None` when already over.
    pub fn refresh(&mut self, expires: u32, now: Instant) -> Option<SubscriptionState> {
        if self.is_terminated() {
            return None;
        }
        self.expires_at = now + Duration::from_secs(u64::from(expires));
        if expires == 0 {
            self.phase = Phase::Terminated(Reason::Timeout);
        }
        Some(self.state(now))
    }

    /// The presentity's authorization changed. A pending subscription becomes active when
    /// allowed; an active one that is no longer allowed ends with `rejected`. Returns the
    /// state to notify, or `None` when nothing changed.
    pub fn authorize(&mut self, allowed: bool, now: Instant) -> Option<SubscriptionState> {
        self.phase = match (self.phase, allowed) {
            (Phase::Pending, true) => Phase::Active,
            (Phase::Active, false) => Phase::Terminated(Reason::Rejected),
            _ => return None,
        };
        Some(self.state(now))
    }

    /// Called when its expiry timer fires: at or after `expires_at` the subscription ends
    /// with `timeout` (RFC 6665 §4.2.2); a timer left over from before a refresh does nothing.
    pub fn expire(&mut self, now: Instant) -> Option<SubscriptionState> {
        if self.is_terminated() || now < self.expires_at {
            return None;
        }
        self.phase = Phase::Terminated(Reason::Timeout);
        Some(self.state(now))
    }

    /// Ends it for `reason` (the presentity went away, the node drains it...).
    pub fn terminate(&mut self, reason: Reason, now: Instant) -> Option<SubscriptionState> {
        if self.is_terminated() {
            return None;
        }
        self.phase = Phase::Terminated(reason);
        Some(self.state(now))
    }
}

/// Whether the outcome of a NOTIFY means the watcher is gone and the subscription must be
/// removed without another NOTIFY (RFC 6665 §4.2.2: a `481`, or a transaction timeout —
/// `None` — ends it; other failures leave it in place).
pub fn notify_failure_ends(status: Option<u16>) -> bool {
    matches!(status, None | Some(481))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// A virtual clock: `t0` plus whatever the test says has passed.
    struct Clock(Instant);
    impl Clock {
        fn at(&self, s: u64) -> Instant {
            self.0 + secs(s)
        }
    }

    #[test]
    fn authorized_subscription_counts_down_and_expires() {
        let c = Clock(Instant::now());
        let mut s = Lifecycle::new(true, 3600, c.at(0));
        assert_eq!(
            s.state(c.at(0)),
            SubscriptionState::Active { expires: 3600 }
        );
        assert_eq!(
            s.state(c.at(1)),
            SubscriptionState::Active { expires: 3599 }
        );
        assert_eq!(s.expire(c.at(3599)), None, "not yet");
        assert_eq!(
            s.expire(c.at(3600)),
            Some(SubscriptionState::Terminated {
                reason: Some(Reason::Timeout),
                retry_after: None
            })
        );
        assert_eq!(s.expire(c.at(3700)), None, "only once");
        assert_eq!(s.state(c.at(3600)).to_string(), "terminated;reason=timeout");
    }

    #[test]
    fn refresh_moves_expiry_and_stale_timers_do_nothing() {
        let c = Clock(Instant::now());
        let mut s = Lifecycle::new(true, 600, c.at(0));
        assert_eq!(
            s.refresh(600, c.at(500)),
            Some(SubscriptionState::Active { expires: 600 })
        );
        // The timer armed for the first expiry fires at 600 s: the refresh moved it to 1100.
        assert_eq!(s.expire(c.at(600)), None);
        assert!(s.expire(c.at(1100)).is_some());
        assert_eq!(s.refresh(600, c.at(1200)), None, "no refresh after the end");
    }

    #[test]
    fn unsubscribe_and_fetch_terminate_with_timeout() {
        let c = Clock(Instant::now());
        let mut s = Lifecycle::new(true, 600, c.at(0));
        assert_eq!(
            s.refresh(0, c.at(10)).map(|st| st.to_string()).as_deref(),
            Some("terminated;reason=timeout")
        );
        let fetch = Lifecycle::new(true, 0, c.at(0));
        assert!(fetch.is_terminated());
        assert!(fetch.shows_state(), "a fetch reports the state once");
    }

    #[test]
    fn pending_until_authorized_then_rejected_when_withdrawn() {
        let c = Clock(Instant::now());
        let mut s = Lifecycle::new(false, 300, c.at(0));
        assert_eq!(s.phase(), Phase::Pending);
        assert!(!s.shows_state());
        assert_eq!(s.state(c.at(0)).to_string(), "pending;expires=300");
        assert_eq!(s.authorize(false, c.at(5)), None, "still pending");
        assert_eq!(
            s.authorize(true, c.at(10)),
            Some(SubscriptionState::Active { expires: 290 })
        );
        assert_eq!(s.authorize(true, c.at(11)), None);
        assert_eq!(
            s.authorize(false, c.at(20))
                .map(|st| st.to_string())
                .as_deref(),
            Some("terminated;reason=rejected")
        );
        assert!(s.is_terminated());
    }

    #[test]
    fn restored_subscription_keeps_its_deadline() {
        let c = Clock(Instant::now());
        let mut s = Lifecycle::restore(false, c.at(100));
        assert_eq!(s.state(c.at(40)), SubscriptionState::Active { expires: 60 });
        assert!(s.expire(c.at(100)).is_some());
        let p = Lifecycle::restore(true, c.at(100));
        assert_eq!(p.phase(), Phase::Pending);
    }

    #[test]
    fn only_481_and_timeouts_end_a_subscription() {
        assert!(notify_failure_ends(None));
        assert!(notify_failure_ends(Some(481)));
        assert!(!notify_failure_ends(Some(200)));
        assert!(!notify_failure_ends(Some(500)));
        assert!(!notify_failure_ends(Some(408)));
    }

    #[test]
    fn terminate_once() {
        let c = Clock(Instant::now());
        let mut s = Lifecycle::new(true, 60, c.at(0));
        assert!(s.terminate(Reason::Noresource, c.at(1)).is_some());
        assert_eq!(s.terminate(Reason::Deactivated, c.at(2)), None);
        assert_eq!(s.phase(), Phase::Terminated(Reason::Noresource));
    }
}
