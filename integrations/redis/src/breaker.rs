//! The circuit breaker: after `threshold` consecutive failures, no call for
//! `open_for`; then one probe, whose outcome closes or reopens it.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

pub(crate) struct Breaker {
    threshold: u32,
    open_for: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    failures: u32,
    open_until: Option<Instant>,
    probing: bool,
}

/// Whether a call may go to Redis.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Closed: call.
    Pass,
    /// The interval is over: this call is the one probe.
    Probe,
    /// Open (or a probe is in flight): answer under the policy at once.
    Open,
}

impl Breaker {
    /// `threshold` 0 never opens.
    pub(crate) fn new(threshold: u32, open_for: Duration) -> Breaker {
        Breaker {
            threshold,
            open_for,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn admit(&self, now: Instant) -> Gate {
        let mut s = self.state();
        match s.open_until {
            None => Gate::Pass,
            Some(until) if now < until || s.probing => Gate::Open,
            Some(_) => {
                s.probing = true;
                Gate::Probe
            }
        }
    }

    /// Whether [`Breaker::admit`] would answer [`Gate::Open`] at `now`,
    /// changing nothing.
    pub(crate) fn refuses(&self, now: Instant) -> bool {
        let s = self.state();
        s.open_until.is_some_and(|until| now < until || s.probing)
    }

    /// Redis answered: closed again.
    pub(crate) fn success(&self) {
        *self.state() = State::default();
    }

    /// A call failed; true when this opened (or reopened) the breaker.
    pub(crate) fn failure(&self, now: Instant) -> bool {
        let mut s = self.state();
        s.failures = s.failures.saturating_add(1);
        if self.threshold == 0 || !(s.probing || s.failures >= self.threshold) {
            return false;
        }
        s.probing = false;
        s.open_until = Some(now.checked_add(self.open_for).unwrap_or(now));
        true
    }

    /// A probe is over (its outcome recorded, or none: its caller dropped
    /// it): the next call may probe.
    pub(crate) fn end_probe(&self) {
        self.state().probing = false;
    }

    pub(crate) fn is_open(&self) -> bool {
        self.state().open_until.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_then_lets_one_probe_through() {
        let b = Breaker::new(3, Duration::from_secs(1));
        let t = Instant::now();
        assert!(!b.failure(t) && !b.failure(t));
        assert_eq!(b.admit(t), Gate::Pass);
        assert!(b.failure(t), "the third failure opens it");
        assert!(b.refuses(t + Duration::from_millis(999)));
        assert_eq!(b.admit(t + Duration::from_millis(999)), Gate::Open);
        let later = t + Duration::from_secs(1);
        assert!(!b.refuses(later), "due for a probe");
        assert_eq!(b.admit(later), Gate::Probe);
        assert!(b.refuses(later), "the probe in flight");
        assert_eq!(b.admit(later), Gate::Open, "one probe at a time");
        assert!(b.failure(later), "a failed probe reopens it");
        assert_eq!(b.admit(later), Gate::Open);
        let after = later + Duration::from_secs(1);
        assert_eq!(b.admit(after), Gate::Probe);
        b.success();
        assert!(!b.refuses(after));
        assert_eq!(b.admit(after), Gate::Pass);
        assert!(!b.failure(after), "the count starts again");
    }

    #[test]
    fn a_success_resets_the_count_of_consecutive_failures() {
        let b = Breaker::new(2, Duration::from_secs(1));
        let t = Instant::now();
        assert!(!b.failure(t));
        b.success();
        assert!(!b.failure(t));
        assert!(b.failure(t));
    }

    #[test]
    fn a_probe_ended_without_an_outcome_lets_the_next_call_probe() {
        let b = Breaker::new(1, Duration::ZERO);
        let t = Instant::now();
        assert!(b.failure(t));
        assert_eq!(b.admit(t), Gate::Probe);
        b.end_probe();
        assert_eq!(b.admit(t), Gate::Probe);
    }

    #[test]
    fn threshold_zero_never_opens() {
        let b = Breaker::new(0, Duration::from_secs(1));
        let t = Instant::now();
        for _ in 0..100 {
            assert!(!b.failure(t));
        }
        assert_eq!(b.admit(t), Gate::Pass);
    }
}
