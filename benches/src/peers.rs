//! The peers ratecard is measured against, all with the same quota as the
//! keyed rule (one cell per nanosecond, a burst of 2^32 − 1), so every
//! check is allowed.
//!
//! - governor's default keyed limiter: a `DashMap` with std's SipHash-1-3,
//!   reading quanta's clock on every check;
//! - governor's best configuration: the same `DashMap` store with `ahash`
//!   and a fake clock (no clock read);
//! - governor's direct (single-key) limiter, on either clock;
//! - a `std::collections::HashMap` plus a GCRA on one u64 TAT, used from
//!   one thread (`&mut`, no lock): the plainest map that can do the job.

use core::hash::Hash;
use core::num::NonZeroU32;
use core::time::Duration;
use std::collections::HashMap;

use dashmap::DashMap;
use governor::clock::FakeRelativeClock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos as GovNanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

/// governor's default keyed limiter.
pub type GovernorKeyed<K> = DefaultKeyedRateLimiter<K>;

/// governor's keyed store with `ahash` and a fake clock.
pub type GovernorBest<K> = RateLimiter<
    K,
    DashMap<K, InMemoryState, ahash::RandomState>,
    FakeRelativeClock,
    NoOpMiddleware<GovNanos>,
>;

/// governor's direct limiter on the default clock.
pub type GovernorDirect = DefaultDirectRateLimiter;

/// governor's direct limiter on a fake clock.
pub type GovernorDirectFake =
    RateLimiter<NotKeyed, InMemoryState, FakeRelativeClock, NoOpMiddleware<GovNanos>>;

/// The benchmarks' quota for governor: one cell per nanosecond, a burst
/// of 2^32 − 1 (the keyed rule's quota).
pub fn governor_quota() -> Quota {
    match Quota::with_period(Duration::from_nanos(1)) {
        Some(q) => q.allow_burst(NonZeroU32::MAX),
        None => unreachable!("a 1 ns period is not zero"),
    }
}

/// governor's default keyed limiter.
pub fn governor_keyed<K: Hash + Eq + Clone>() -> GovernorKeyed<K> {
    RateLimiter::keyed(governor_quota())
}

/// governor's keyed limiter in its fastest configuration.
pub fn governor_best<K: Hash + Eq + Clone>() -> GovernorBest<K> {
    let hasher = ahash::RandomState::with_seeds(1, 2, 3, 4);
    RateLimiter::new(
        governor_quota(),
        DashMap::with_hasher(hasher),
        FakeRelativeClock::default(),
    )
}

/// governor's direct limiter.
pub fn governor_direct() -> GovernorDirect {
    RateLimiter::direct(governor_quota())
}

/// governor's direct limiter on a fake clock.
pub fn governor_direct_fake() -> GovernorDirectFake {
    RateLimiter::direct_with_clock(governor_quota(), FakeRelativeClock::default())
}

/// A plain hash map of GCRA states: one u64 theoretical arrival time per
/// key, std's `HashMap` (SipHash-1-3, like ratecard and governor's default).
pub struct MapGcra<K> {
    tats: HashMap<K, u64>,
    /// Emission interval, ns.
    t: u64,
    /// Tolerance: (burst − 1) · t.
    tau: u64,
}

impl<K: Hash + Eq + Clone> MapGcra<K> {
    /// The benchmarks' quota: t = 1 ns, burst 2^32 − 1.
    pub fn new() -> MapGcra<K> {
        MapGcra {
            tats: HashMap::new(),
            t: 1,
            tau: u32::MAX as u64 - 1,
        }
    }

    /// Charge one cell to `key` at `now`; whether it conforms.
    #[inline]
    pub fn check(&mut self, key: &K, now: u64) -> bool {
        let (t, tau) = (self.t, self.tau);
        let charge = |tat: &mut u64| {
            let next = (*tat).max(now).saturating_add(t);
            let ok = next.saturating_sub(tau).saturating_sub(t) <= now;
            if ok {
                *tat = next;
            }
            ok
        };
        match self.tats.get_mut(key) {
            Some(tat) => charge(tat),
            None => charge(self.tats.entry(key.clone()).or_insert(0)),
        }
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.tats.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.tats.is_empty()
    }
}

impl<K: Hash + Eq + Clone> Default for MapGcra<K> {
    fn default() -> Self {
        MapGcra::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_peer_allows_a_hot_key_many_times() {
        let keyed = governor_keyed::<u64>();
        let best = governor_best::<u64>();
        let direct = governor_direct();
        let fake = governor_direct_fake();
        let mut map = MapGcra::<u64>::new();
        for _ in 0..100_000 {
            assert!(keyed.check_key(&7).is_ok());
            assert!(best.check_key(&7).is_ok());
            assert!(direct.check().is_ok());
            assert!(fake.check().is_ok());
            assert!(map.check(&7, 1));
        }
    }

    #[test]
    fn map_gcra_denies_past_the_burst() {
        let mut map = MapGcra::<u64> {
            tats: HashMap::new(),
            t: 10,
            tau: 20,
        };
        assert!((0..3).all(|_| map.check(&1, 100)));
        assert!(!map.check(&1, 100));
        assert!(map.check(&1, 110));
    }
}
