//! Statistics, striped over several cache lines so that no single line is
//! written by every decision: a decision adds to the stripe its key's tag
//! picks (one relaxed atomic add), and a reader sums the stripes.
//!
//! What a reader may rely on: every counter only grows (wrapping at 2^64,
//! which no table reaches in practice; another process's stray write to
//! shared memory can break that, and sums wrap rather than fail), each
//! increment is counted exactly once, and at quiescence (no decision in
//! flight) the sums are exact. While decisions run, a sum may miss the
//! increments of decisions still in flight, never more.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::rule::MAX_RULES;

/// Counter stripes.
pub const STRIPES: usize = 8;

/// What a decision's binding rule counts, per rule.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Outcome {
    /// Allowed (charged).
    Allowed = 0,
    /// Denied (also: a cost that never fits).
    Limited = 1,
    /// Denied on a dry-run handle: would have been limited, was allowed.
    DryRunLimited = 2,
    /// The rule is unlimited and made the request exempt.
    Exempt = 3,
}

/// Per-rule outcome counters.
pub const OUTCOMES: usize = 4;

/// One stripe of counters.
#[repr(C, align(64))]
pub struct Stripe {
    /// Per rule and [`Outcome`]: decisions with that rule binding.
    pub(crate) rules: [[AtomicU64; OUTCOMES]; MAX_RULES],
    /// Requests that matched no rule.
    pub(crate) unmatched: AtomicU64,
    /// Requests refused with an error (a missing subject, say).
    pub(crate) errors: AtomicU64,
    /// Keys inserted.
    pub(crate) inserts: AtomicU64,
    /// Inserts that replaced a live key (replenished or not).
    pub(crate) evicted: AtomicU64,
    /// Inserts that replaced a key still in debt.
    pub(crate) evicted_in_debt: AtomicU64,
    /// Inserts that found every candidate in debt and were refused or
    /// admitted untracked by the policy.
    pub(crate) full: AtomicU64,
    /// Round trips to a remote store (Redis) that got a reply.
    pub(crate) remote_calls: AtomicU64,
    /// Round trips that failed (timeout, connection, a bad reply).
    pub(crate) remote_errors: AtomicU64,
    /// Decisions the host's policy answered because the remote store could
    /// not (fail open, fail closed, or the local table).
    pub(crate) remote_fallbacks: AtomicU64,
    /// Denials answered from the local cache of remote denials, with no
    /// round trip.
    pub(crate) remote_cached: AtomicU64,
}

impl Stripe {
    /// A stripe of zero counters.
    pub const fn new() -> Stripe {
        Stripe {
            rules: [const { [const { AtomicU64::new(0) }; OUTCOMES] }; MAX_RULES],
            unmatched: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            inserts: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            evicted_in_debt: AtomicU64::new(0),
            full: AtomicU64::new(0),
            remote_calls: AtomicU64::new(0),
            remote_errors: AtomicU64::new(0),
            remote_fallbacks: AtomicU64::new(0),
            remote_cached: AtomicU64::new(0),
        }
    }
}

impl Default for Stripe {
    fn default() -> Stripe {
        Stripe::new()
    }
}

/// The counters of one table.
#[derive(Copy, Clone)]
pub struct Counters<'m> {
    stripes: &'m [Stripe],
}

/// A global counter.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Global {
    /// Requests that matched no rule.
    Unmatched,
    /// Requests refused with an error (a missing subject, say).
    Errors,
    /// Keys inserted.
    Inserts,
    /// Inserts that replaced a live key (replenished or not).
    Evicted,
    /// Inserts that replaced a key still in debt.
    EvictedInDebt,
    /// Inserts that found every candidate in debt and were refused or
    /// admitted untracked by the policy.
    Full,
    /// Round trips to a remote store (Redis) that got a reply.
    RemoteCalls,
    /// Round trips that failed (timeout, connection, a bad reply).
    RemoteErrors,
    /// Decisions the host's policy answered because the remote store could
    /// not (fail open, fail closed, or the local table).
    RemoteFallbacks,
    /// Denials answered from the local cache of remote denials, with no
    /// round trip.
    RemoteCached,
}

/// A well-mixed word that differs between threads and stays put within
/// one: the address of a local on the calling thread's stack, in 16 KiB
/// units (threads' stacks lie megabytes apart; one thread's call depth
/// moves it little). Counting a decision in the stripe it picks, rather
/// than the stripe of the key, keeps two threads deciding one hot key off
/// each other's counter line: the slot is then the only line they share.
#[inline(always)]
pub fn here() -> u64 {
    let marker = 0u8;
    let at = core::ptr::addr_of!(marker).addr() as u64;
    core::hint::black_box(&marker);
    (at >> 14).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl<'m> Counters<'m> {
    pub(crate) fn new(stripes: &'m [Stripe]) -> Self {
        Counters { stripes }
    }

    /// The stripe of `spread`: its high 32 bits scaled to the stripe count
    /// (a multiply and a shift, not a division on every decision; both
    /// factors are below 2^32, so the product never wraps).
    #[inline(always)]
    fn stripe(&self, spread: u64) -> Option<&'m Stripe> {
        let n = self.stripes.len() as u64 & u64::from(u32::MAX);
        self.stripes
            .get(((spread >> 32).wrapping_mul(n) >> 32) as usize)
    }

    /// Count one decision of `rule` with `outcome`, in the stripe `spread`
    /// (a tag, or any well-mixed word) picks.
    #[inline(always)]
    pub fn rule(&self, spread: u64, rule: u8, outcome: Outcome) {
        if let Some(c) = self
            .stripe(spread)
            .and_then(|s| s.rules.get(rule as usize))
            .and_then(|r| r.get(outcome as usize))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Count one event of a global counter.
    #[inline]
    pub fn add(&self, spread: u64, which: Global) {
        if let Some(s) = self.stripe(spread) {
            s.global(which).fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A per-rule counter summed over the stripes.
    pub fn rule_sum(&self, rule: usize, outcome: Outcome) -> u64 {
        self.stripes
            .iter()
            .filter_map(|s| s.rules.get(rule)?.get(outcome as usize))
            .map(|c| c.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    /// A global counter summed over the stripes.
    pub fn sum(&self, which: Global) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.global(which).load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

impl Stripe {
    fn global(&self, which: Global) -> &AtomicU64 {
        match which {
            Global::Unmatched => &self.unmatched,
            Global::Errors => &self.errors,
            Global::Inserts => &self.inserts,
            Global::Evicted => &self.evicted,
            Global::EvictedInDebt => &self.evicted_in_debt,
            Global::Full => &self.full,
            Global::RemoteCalls => &self.remote_calls,
            Global::RemoteErrors => &self.remote_errors,
            Global::RemoteFallbacks => &self.remote_fallbacks,
            Global::RemoteCached => &self.remote_cached,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spread_picks_a_stripe_in_range_and_each_stripe_is_reached() {
        let stripes = [Stripe::new(), Stripe::new(), Stripe::new()];
        let c = Counters::new(&stripes);
        // The high 32 bits h choose stripe h * 3 / 2^32: thirds of the range.
        let picks = [
            0u64,
            0x5555_5555 << 32,
            0x5555_5556 << 32,
            0xAAAA_AAAB << 32,
            u64::MAX,
        ];
        let want = [0usize, 0, 1, 2, 2];
        for (&spread, &i) in picks.iter().zip(&want) {
            let s = c.stripe(spread).expect("a stripe");
            assert!(core::ptr::eq(s, &stripes[i]), "spread {spread:#x}");
        }
        let middle = c.stripe(u64::MAX / 2).expect("a stripe");
        assert!(core::ptr::eq(middle, &stripes[1]));
        c.add(u64::MAX, Global::Inserts);
        c.add(0, Global::Inserts);
        assert_eq!(c.sum(Global::Inserts), 2);
        assert_eq!(stripes[2].inserts.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn here_is_stable_within_a_thread_and_spreads_threads() {
        use std::sync::{Arc, Barrier};
        assert_eq!(here(), here());
        // Eight threads alive at once (a joined thread's stack may be
        // reused by the next): their stacks lie apart, so their words
        // differ, and they pick more than one of the stripes (all eight
        // on one stripe of eight by chance: 8^-7).
        let barrier = Arc::new(Barrier::new(8));
        let words: std::vec::Vec<u64> = (0..8)
            .map(|_| {
                let b = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    let w = here();
                    b.wait();
                    w
                })
            })
            .collect::<std::vec::Vec<_>>()
            .into_iter()
            .map(|t| t.join().expect("no panic"))
            .collect();
        let stripes: std::vec::Vec<u64> = words
            .iter()
            .map(|&h| (h >> 32).wrapping_mul(STRIPES as u64) >> 32)
            .collect();
        let mut distinct = words.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 8, "{words:x?}");
        assert!(stripes.iter().any(|&p| p != stripes[0]), "{stripes:?}");
    }

    #[test]
    fn no_stripes_counts_nothing_and_does_not_panic() {
        let c = Counters::new(&[]);
        assert!(c.stripe(u64::MAX).is_none());
        c.add(7, Global::Errors);
        c.rule(7, 0, Outcome::Allowed);
        assert_eq!(c.sum(Global::Errors), 0);
    }
}
