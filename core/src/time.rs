//! Time as the caller gives it: nanoseconds of a monotonic clock.
//!
//! Nothing in this crate reads a clock. Every operation takes `now` as an
//! argument, and all arithmetic on it saturates, so a wild timestamp
//! (`u64::MAX`, a clock from another boot) can never overflow.

/// Nanoseconds of the caller's monotonic clock (CLOCK_MONOTONIC on Linux).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nanos(pub u64);

/// Nanoseconds in one second.
pub const NANOS_PER_SEC: u64 = 1_000_000_000;

impl Nanos {
    /// Zero nanoseconds.
    pub const ZERO: Nanos = Nanos(0);
    /// The largest representable instant or duration.
    pub const MAX: Nanos = Nanos(u64::MAX);

    /// `secs` seconds, saturating.
    pub const fn from_secs(secs: u64) -> Nanos {
        Nanos(secs.saturating_mul(NANOS_PER_SEC))
    }

    /// `millis` milliseconds, saturating.
    pub const fn from_millis(millis: u64) -> Nanos {
        Nanos(millis.saturating_mul(1_000_000))
    }

    /// The raw nanosecond count.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// `self + other`, saturating at [`Nanos::MAX`].
    pub const fn saturating_add(self, other: Nanos) -> Nanos {
        Nanos(self.0.saturating_add(other.0))
    }

    /// `self - other`, saturating at zero.
    pub const fn saturating_sub(self, other: Nanos) -> Nanos {
        Nanos(self.0.saturating_sub(other.0))
    }

    /// Whole seconds, rounded up: the value of a `Retry-After` field.
    pub const fn ceil_secs(self) -> u64 {
        self.0.div_ceil(NANOS_PER_SEC)
    }
}

impl From<u64> for Nanos {
    fn from(ns: u64) -> Nanos {
        Nanos(ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_overflowing() {
        assert_eq!(Nanos::MAX.saturating_add(Nanos(1)), Nanos::MAX);
        assert_eq!(Nanos(1).saturating_sub(Nanos(2)), Nanos::ZERO);
        assert_eq!(Nanos::from_secs(u64::MAX), Nanos::MAX);
    }

    #[test]
    fn ceil_secs_rounds_partial_seconds_up() {
        assert_eq!(Nanos(0).ceil_secs(), 0);
        assert_eq!(Nanos(1).ceil_secs(), 1);
        assert_eq!(Nanos::from_secs(2).ceil_secs(), 2);
        assert_eq!(Nanos(2 * NANOS_PER_SEC + 1).ceil_secs(), 3);
        assert_eq!(Nanos::MAX.ceil_secs(), u64::MAX / NANOS_PER_SEC + 1);
    }
}
