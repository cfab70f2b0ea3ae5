//! Pure fixed-window math on one u64 state word.
//!
//! Windows are aligned multiples of `period`. The state packs the window
//! index (high 32 bits, the index modulo 2^32) and the count in that window
//! (low 32 bits); 0 is a fresh key.

use crate::quota::Outcome;

fn pack(index: u32, count: u32) -> u64 {
    (index as u64) << 32 | count as u64
}

fn unpack(state: u64) -> (u32, u32) {
    ((state >> 32) as u32, state as u32)
}

/// The window a request at `now` counts in, as the state sees it.
struct View {
    index: u32,
    count: u32,
    /// Nanoseconds from `now` to the end of that window.
    end: u64,
    /// A wild state was clamped: store `(index, count)` even on denial.
    clamped: bool,
}

/// How many windows ahead of `now` a state may be before it counts as
/// wild: a clock that stepped back a little hands back nothing.
const PLAUSIBLY_AHEAD: i32 = 2;

#[allow(
    clippy::arithmetic_side_effects,
    reason = "period ≥ 1; window bounds are computed in u128 from u64 operands"
)]
fn view(state: u64, now: u64, limit: u32, period: u64) -> View {
    let cur = now / period;
    let to_end = |windows_ahead: u64| {
        let end = (cur as u128 + windows_ahead as u128 + 1) * period as u128 - now as u128;
        end.min(u64::MAX as u128) as u64
    };
    let (index, count) = unpack(state);
    let ahead = index.wrapping_sub(cur as u32) as i32;
    if count == 0 || ahead < 0 {
        View {
            index: cur as u32,
            count: 0,
            end: to_end(0),
            clamped: false,
        }
    } else if ahead <= PLAUSIBLY_AHEAD {
        // The current window, or one the clock stepped back from.
        View {
            index,
            count,
            end: to_end(ahead as u64),
            clamped: false,
        }
    } else {
        // Only a wild clock makes a window this far ahead: the current
        // window, full.
        View {
            index: cur as u32,
            count: limit,
            end: to_end(0),
            clamped: true,
        }
    }
}

/// Decide a request of `cost` (≥ 1) at `now`: at most `limit` per window of
/// `period` ns (≥ 1).
#[allow(
    clippy::arithmetic_side_effects,
    reason = "period ≥ 1; cost ≤ left = limit − count, so count + cost ≤ limit"
)]
pub fn decide(state: u64, now: u64, cost: u32, limit: u32, period: u64) -> Outcome {
    let period = period.max(1);
    let cost = cost.max(1);
    let v = view(state, now, limit, period);
    let stored = if v.clamped {
        pack(v.index, v.count)
    } else {
        state
    };
    let left = limit.saturating_sub(v.count);
    if cost > limit {
        return Outcome {
            allowed: false,
            never_fits: true,
            state: stored,
            remaining: left,
            reset: v.end,
            retry_after: 0,
        };
    }
    if cost <= left {
        Outcome {
            allowed: true,
            never_fits: false,
            state: pack(v.index, v.count + cost),
            remaining: left - cost,
            reset: v.end,
            retry_after: 0,
        }
    } else {
        Outcome {
            allowed: false,
            never_fits: false,
            state: stored,
            remaining: left,
            reset: v.end,
            retry_after: v.end,
        }
    }
}

/// Fraction of the window's limit in use at `now`, in 32-bit fixed point.
#[allow(
    clippy::arithmetic_side_effects,
    reason = "limit ≥ 1 there; count·2^32 fits in u64 as count < 2^32"
)]
pub fn debt(state: u64, now: u64, limit: u32, period: u64) -> u32 {
    let count = view(state, now, limit, period.max(1)).count;
    if count == 0 || limit == 0 {
        return 0;
    }
    let f = ((count as u64) << 32) / limit as u64;
    f.min(u32::MAX as u64) as u32
}

/// One state at least as strict as both `a` and `b` at `now` and at every
/// later time: each as [`decide`] would see it at `now` (a window the clock
/// stepped back from keeps its count, a wild one is the current window,
/// full), the later window, and both counts in it.
#[allow(
    clippy::arithmetic_side_effects,
    reason = "period ≥ 1 (clamped on entry)"
)]
pub fn merge(a: u64, b: u64, now: u64, limit: u32, period: u64) -> u64 {
    let period = period.max(1);
    let cur = (now / period) as u32;
    let (va, vb) = (view(a, now, limit, period), view(b, now, limit, period));
    let count = va.count.saturating_add(vb.count);
    if count == 0 {
        return a.max(b);
    }
    // Both views are at most PLAUSIBLY_AHEAD windows ahead of `cur`.
    let ahead = |v: &View| v.index.wrapping_sub(cur);
    let index = if ahead(&va) >= ahead(&vb) {
        va.index
    } else {
        vb.index
    };
    pack(index, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = 10_000_000_000;

    #[test]
    fn at_most_limit_per_aligned_window() {
        let mut s = 0;
        let now = 3 * P + 7;
        for i in 0..3 {
            let o = decide(s, now, 1, 3, P);
            assert!(o.allowed);
            assert_eq!(o.remaining, 2 - i);
            s = o.state;
        }
        let o = decide(s, now, 1, 3, P);
        assert!(!o.allowed);
        assert_eq!(o.retry_after, P - 7);
        assert!(
            decide(s, 4 * P, 1, 3, P).allowed,
            "the next window is fresh"
        );
    }

    #[test]
    fn a_clock_stepping_back_a_window_hands_back_nothing() {
        let mut s = 0;
        for _ in 0..3 {
            s = decide(s, 5 * P + 1, 1, 3, P).state;
        }
        let o = decide(s, 5 * P - 1, 1, 3, P);
        assert!(!o.allowed, "the later window is still full");
        assert_eq!(o.retry_after, P + 1);
        assert!(!decide(s, 5 * P + 2, 1, 3, P).allowed);
    }

    #[test]
    fn a_window_from_the_future_is_clamped_to_the_current_one_full() {
        let wild = pack(1_000, 1);
        let o = decide(wild, 5 * P, 1, 3, P);
        assert!(!o.allowed);
        assert_eq!(o.state, pack(5, 3));
        assert!(decide(o.state, 6 * P, 1, 3, P).allowed);
    }

    #[test]
    fn cost_above_limit_never_fits() {
        let o = decide(0, 0, 4, 3, P);
        assert!(o.never_fits && !o.allowed);
        assert_eq!(o.retry_after, 0);
    }

    #[test]
    fn merge_adds_counts_and_keeps_the_later_window() {
        let a = pack(2, 2);
        let b = pack(2, 1);
        assert_eq!(merge(a, b, 2 * P, 9, P), pack(2, 3));
        assert_eq!(
            merge(a, pack(1, 3), 2 * P, 9, P),
            pack(2, 2),
            "a past window is fresh"
        );
        assert_eq!(
            merge(a, pack(3, 3), 2 * P, 9, P),
            pack(3, 5),
            "a later window wins"
        );
        assert_eq!(merge(pack(3, 3), a, 2 * P, 9, P), pack(3, 5));
        assert_eq!(
            merge(0, pack(900, 1), 2 * P, 9, P),
            pack(2, 9),
            "a wild window is full"
        );
    }

    proptest::proptest! {
        /// Whatever two states that are not wild at `now` (a wild one is
        /// clamped where it is seen), the merge denies whenever either state
        /// would, now and in every later window.
        #[test]
        fn a_merged_state_is_at_least_as_strict_as_either(
            da in -3i64..=2, ca in 0u32..6, db in -3i64..=2, cb in 0u32..6,
            now in 3 * P..8 * P, later in 0u64..4 * P, cost in 1u32..4, limit in 1u32..6,
        ) {
            let cur = (now / P) as i64;
            let (a, b) = (pack((cur + da) as u32, ca), pack((cur + db) as u32, cb));
            let m = merge(a, b, now, limit, P);
            for t in [now, now + later] {
                let dm = decide(m, t, cost, limit, P);
                for s in [a, b] {
                    if !decide(s, t, cost, limit, P).allowed {
                        proptest::prop_assert!(!dm.allowed, "{s:x} denies at {t}, merge {m:x} allows");
                    }
                }
            }
        }
    }

    #[test]
    fn extreme_times_and_periods_do_not_panic() {
        let _ = decide(u64::MAX, u64::MAX, u32::MAX, u32::MAX, u64::MAX);
        let _ = decide(0, u64::MAX, 1, 1, 0);
        assert_eq!(debt(pack(0, 3), 0, 3, P), u32::MAX);
    }
}
