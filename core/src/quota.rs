//! Quotas (`limit` per `period`, with a burst) and the algorithms that
//! enforce them.

use crate::time::Nanos;

/// How a rule turns its quota into decisions.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Algorithm {
    /// Generic cell rate algorithm: a smooth rate with a burst allowance.
    Gcra = 0,
    /// Windows aligned on multiples of `period`, at most `limit` in each.
    FixedWindow = 1,
}

/// `limit` requests per `period`, with a `burst` allowance.
///
/// A `limit` of zero means unlimited: a rule with such a quota makes a
/// request exempt.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Quota {
    /// Requests admitted per period; 0 = unlimited.
    pub limit: u32,
    /// The period.
    pub period: Nanos,
    /// Requests that may be sent back to back (GCRA only); 0 = `limit`.
    pub burst: u32,
}

impl Quota {
    /// `limit` per `period`, burst equal to the limit.
    pub const fn new(limit: u32, period: Nanos) -> Quota {
        Quota {
            limit,
            period,
            burst: 0,
        }
    }

    /// `limit` per `secs` seconds.
    pub const fn per_secs(limit: u32, secs: u64) -> Quota {
        Quota::new(limit, Nanos::from_secs(secs))
    }

    /// `limit` per hour.
    pub const fn per_hour(limit: u32) -> Quota {
        Quota::per_secs(limit, 3600)
    }

    /// No limit at all: requests matching it are exempt.
    pub const fn unlimited() -> Quota {
        Quota::new(0, Nanos::ZERO)
    }

    /// The same quota with an explicit burst (1 = pace mode).
    pub const fn with_burst(self, burst: u32) -> Quota {
        Quota { burst, ..self }
    }

    /// Whether this quota admits everything.
    pub const fn is_unlimited(&self) -> bool {
        self.limit == 0
    }

    /// The effective burst: `burst`, or `limit` when `burst` is 0.
    pub const fn burst(&self) -> u32 {
        if self.burst == 0 {
            self.limit
        } else {
            self.burst
        }
    }

    /// GCRA's emission interval `T = ⌈period / limit⌉` in ns (at least 1).
    pub const fn emission_interval(&self) -> u64 {
        if self.limit == 0 {
            return 1;
        }
        let t = self.period.0.div_ceil(self.limit as u64);
        if t == 0 {
            1
        } else {
            t
        }
    }

    /// The period in ns, at least 1 (a fixed window of length 0 is one ns).
    pub const fn period_ns(&self) -> u64 {
        if self.period.0 == 0 {
            1
        } else {
            self.period.0
        }
    }
}

/// What one algorithm decided for one rule on one state word.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The request conforms.
    pub allowed: bool,
    /// The cost can never fit (it exceeds the burst); implies `!allowed`.
    pub never_fits: bool,
    /// The state word to store: the charged state when allowed, the clamped
    /// state when a wild state was clamped, else the old state.
    pub state: u64,
    /// Units left after this decision (this request counted when allowed).
    pub remaining: u32,
    /// Nanoseconds until the quota is fully replenished.
    pub reset: u64,
    /// On denial, nanoseconds until the request would conform; 0 otherwise.
    pub retry_after: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emission_interval_rounds_up_and_is_never_zero() {
        assert_eq!(Quota::per_secs(3, 10).emission_interval(), 3_333_333_334);
        assert_eq!(Quota::per_secs(5, 10).emission_interval(), 2_000_000_000);
        assert_eq!(Quota::new(10, Nanos(3)).emission_interval(), 1);
        assert_eq!(Quota::new(10, Nanos(0)).emission_interval(), 1);
    }

    #[test]
    fn burst_defaults_to_limit_and_unlimited_is_limit_zero() {
        assert_eq!(Quota::per_hour(25).burst(), 25);
        assert_eq!(Quota::per_hour(25).with_burst(1).burst(), 1);
        assert!(Quota::unlimited().is_unlimited());
        assert!(!Quota::per_hour(1).is_unlimited());
    }
}
