//! Pure GCRA math on one u64 state word: the theoretical arrival time (TAT).
//!
//! For a quota with emission interval `T` and burst `b`, a request of cost
//! `c` at `now` conforms iff `max(TAT, now) + c·T ≤ now + b·T`, and then
//! `TAT' = max(TAT, now) + c·T`. All arithmetic is done in u128, so no input
//! can overflow; a TAT that would not fit in u64 is never stored (the
//! request is denied instead: stricter, never looser).

use crate::quota::Outcome;

/// Decide a request of `cost` (≥ 1) at `now` against `tat`.
///
/// `t` is the emission interval in ns (≥ 1) and `burst` the burst (≥ 1).
#[inline]
pub fn decide(tat: u64, now: u64, cost: u32, t: u64, burst: u32) -> Outcome {
    decide_with(tat, now, cost, t, burst, reciprocal(t))
}

/// [`decide`] given `recip = reciprocal(t)`, precomputed so that the
/// common case divides by nothing. Same outcomes.
#[inline]
pub fn decide_with(tat: u64, now: u64, cost: u32, t: u64, burst: u32, recip: u64) -> Outcome {
    // Fast path in u64 when nothing can overflow: every realistic input.
    if let Some(o) = decide_u64(tat, now, cost, t, burst, recip) {
        return o;
    }
    decide_wide(tat, now, cost, t, burst)
}

/// `⌊(2^64 − 1) / t⌋` (0 for `t = 0`): the multiplier [`div_by`] uses.
pub const fn reciprocal(t: u64) -> u64 {
    match u64::MAX.checked_div(t) {
        Some(r) => r,
        None => 0,
    }
}

/// `⌊x / t⌋` for `t ≥ 1` and `recip = reciprocal(t)`, exactly, with a
/// multiplication instead of a division.
///
/// `recip ≥ (2^64 − t) / t`, so `x·recip / 2^64` lies in `(x/t − 1, x/t]`
/// for every `x < 2^64`: its floor `q` is `⌊x/t⌋` or one less, and one
/// comparison of the remainder `x − q·t` (< 2t, no overflow) settles it.
#[inline(always)]
#[allow(
    clippy::arithmetic_side_effects,
    reason = "x·recip < 2^128; q ≤ x/t so q·t ≤ x, and q + 1 ≤ x/t when taken"
)]
pub fn div_by(x: u64, t: u64, recip: u64) -> u64 {
    let q = ((x as u128 * recip as u128) >> 64) as u64;
    if x - q * t >= t {
        q + 1
    } else {
        q
    }
}

#[inline]
#[allow(
    clippy::arithmetic_side_effects,
    reason = "every operand is below 2^62 (checked on entry): no sum or product overflows"
)]
fn decide_u64(tat: u64, now: u64, cost: u32, t: u64, burst: u32, recip: u64) -> Option<Outcome> {
    const LIMIT: u64 = 1 << 62;
    if t == 0 || burst == 0 || cost == 0 || cost > burst || now >= LIMIT || tat >= LIMIT {
        return None;
    }
    let span = t.checked_mul(burst as u64).filter(|&s| s < LIMIT)?;
    if tat > now + wild_after(span as u128) as u64 {
        return None; // a wild state: the clamp is on the wide path
    }
    let base = if tat > now { tat } else { now };
    let new_tat = base + cost as u64 * t; // < 2^62 + 2^63: no overflow
    if new_tat <= now + span {
        Some(Outcome {
            allowed: true,
            never_fits: false,
            state: new_tat,
            remaining: div_by(now + span - new_tat, t, recip) as u32,
            reset: new_tat - now,
            retry_after: 0,
        })
    } else {
        Some(Outcome {
            allowed: false,
            never_fits: false,
            state: tat,
            remaining: div_by((now + span).saturating_sub(base), t, recip) as u32,
            reset: base - now,
            retry_after: new_tat - span - now,
        })
    }
}

#[allow(
    clippy::arithmetic_side_effects,
    reason = "u128 of u64 operands: products of two and sums of a few stay below 2^128"
)]
fn decide_wide(tat: u64, now: u64, cost: u32, t: u64, burst: u32) -> Outcome {
    let t = t.max(1) as u128;
    let burst = burst.max(1);
    let cost = cost.max(1);
    let span = burst as u128 * t; // τ + T
    let now_w = now as u128;
    let (tat_w, clamped) = clamp(tat as u128, now_w, span);
    let stored = if clamped { saturate(tat_w) } else { tat };
    let base = tat_w.max(now_w);
    let left_before = (now_w + span).saturating_sub(base) / t;

    if cost > burst {
        return Outcome {
            allowed: false,
            never_fits: true,
            state: stored,
            remaining: left_before as u32,
            reset: saturate(base - now_w),
            retry_after: 0,
        };
    }
    let new_tat = base + cost as u128 * t;
    if new_tat <= now_w + span && new_tat <= u64::MAX as u128 {
        Outcome {
            allowed: true,
            never_fits: false,
            state: new_tat as u64,
            remaining: ((now_w + span - new_tat) / t) as u32,
            reset: (new_tat - now_w) as u64,
            retry_after: 0,
        }
    } else {
        Outcome {
            allowed: false,
            never_fits: false,
            state: stored,
            remaining: left_before as u32,
            reset: saturate(base - now_w),
            retry_after: saturate(new_tat.saturating_sub(span + now_w)).max(1),
        }
    }
}

/// How far ahead of `now` a TAT may be before it counts as wild: two full
/// bursts, and never less than one burst plus [`WILD_SLACK`].
///
/// The slack keeps a merely stale `now` (a thread that took its timestamp,
/// then stalled while others charged the key) from tripping the clamp on a
/// short burst — in pace mode one burst is one emission interval, often a
/// few milliseconds — which would hand quota back. A wild clock (another
/// boot, `u64::MAX`) is off by far more than a second.
#[allow(
    clippy::arithmetic_side_effects,
    reason = "span < 2^96, so 2·span and span + 2^30 fit in u128"
)]
const fn wild_after(span: u128) -> u128 {
    let two = 2 * span;
    let slack = span + WILD_SLACK as u128;
    if two > slack {
        two
    } else {
        slack
    }
}

/// A stale timestamp up to this far behind is never mistaken for a wild one.
pub const WILD_SLACK: u64 = 1_000_000_000;

/// A TAT beyond [`wild_after`] can only come from a wild clock: clamp it to
/// one burst ahead.
#[allow(
    clippy::arithmetic_side_effects,
    reason = "now and the wild bound are below 2^97 in u128"
)]
fn clamp(tat: u128, now: u128, span: u128) -> (u128, bool) {
    if tat > now + wild_after(span) {
        (now + span, true)
    } else {
        (tat, false)
    }
}

fn saturate(v: u128) -> u64 {
    if v > u64::MAX as u128 {
        u64::MAX
    } else {
        v as u64
    }
}

/// Fraction of the burst in use at `now`, in 32-bit fixed point.
#[allow(
    clippy::arithmetic_side_effects,
    reason = "tat > now, (tat − now)·2^32 < 2^96, span ≥ 1"
)]
pub fn debt(tat: u64, now: u64, t: u64, burst: u32) -> u32 {
    if tat <= now {
        return 0;
    }
    let span = burst.max(1) as u128 * t.max(1) as u128;
    let f = (((tat - now) as u128) << 32) / span;
    if f > u32::MAX as u128 {
        u32::MAX
    } else {
        f as u32
    }
}

/// One state that charges both `a` and `b`: the later TAT plus whatever
/// debt the earlier one still carried at `now`.
pub fn merge(a: u64, b: u64, now: u64) -> u64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    hi.saturating_add(lo.saturating_sub(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 2_000_000_000; // 5 per 10 s

    #[test]
    fn fresh_key_allows_burst_then_one_per_interval() {
        let mut tat = 0;
        let now = 1_000;
        for i in 0..5 {
            let o = decide(tat, now, 1, T, 5);
            assert!(o.allowed, "request {i}");
            assert_eq!(o.remaining, 4 - i);
            tat = o.state;
        }
        let o = decide(tat, now, 1, T, 5);
        assert!(!o.allowed);
        assert_eq!(o.retry_after, T);
        assert_eq!(o.state, tat, "a denial stores nothing");
        let o = decide(tat, now + T - 1, 1, T, 5);
        assert!(!o.allowed);
        assert_eq!(o.retry_after, 1);
        let o = decide(tat, now + T, 1, T, 5);
        assert!(o.allowed);
        assert_eq!(o.remaining, 0);
    }

    #[test]
    fn reset_is_time_to_full_replenishment() {
        let o = decide(0, 10, 2, T, 5);
        assert_eq!(o.reset, 2 * T);
        assert_eq!(o.remaining, 3);
    }

    #[test]
    fn cost_above_burst_never_fits_and_stores_nothing() {
        let o = decide(0, 10, 6, T, 5);
        assert!(!o.allowed && o.never_fits);
        assert_eq!(o.retry_after, 0);
        assert_eq!(o.state, 0);
        assert_eq!(o.remaining, 5);
    }

    #[test]
    fn wild_tat_is_clamped_to_one_burst_and_stored_on_denial() {
        let now = 50 * T;
        let o = decide(u64::MAX, now, 1, T, 5);
        assert!(!o.allowed);
        assert_eq!(o.state, now + 5 * T);
        assert_eq!(o.retry_after, T);
        // Two bursts ahead is still plausible and kept as it is.
        let o = decide(now + 10 * T, now, 1, T, 5);
        assert_eq!(o.state, now + 10 * T);
    }

    #[test]
    fn a_stale_timestamp_under_a_second_is_not_mistaken_for_a_wild_clock() {
        const SEC: u64 = 1_000_000_000;
        // Pace mode: burst 1, T = 10 ms. A thread stalled 500 ms behind
        // the key's latest charge must not clamp (that would hand back).
        let t = 10_000_000;
        let now = 1_000 * SEC;
        let tat = now + t; // charged at `now` by another thread
        let o = decide(tat, now - 500_000_000, 1, t, 1);
        assert!(!o.allowed);
        assert_eq!(o.state, tat, "kept as it is, not clamped");
        // A second and a burst behind is wild: clamped.
        let o = decide(tat, now - 2 * SEC, 1, t, 1);
        assert_eq!(o.state, now - 2 * SEC + t);
    }

    #[test]
    fn time_at_the_end_of_u64_never_overflows_or_loosens() {
        let o = decide(0, u64::MAX, 1, T, 5);
        assert!(!o.allowed, "a TAT past u64::MAX cannot be stored");
        assert!(o.retry_after >= 1);
        let o = decide(u64::MAX - T, u64::MAX - T, u32::MAX, u64::MAX, u32::MAX);
        assert!(!o.allowed);
    }

    #[test]
    fn stepping_back_in_time_hands_back_nothing() {
        let mut tat = 0;
        let now = 100 * T;
        for _ in 0..5 {
            tat = decide(tat, now, 1, T, 5).state;
        }
        assert!(!decide(tat, now - 7 * T, 1, T, 5).allowed);
    }

    #[test]
    fn division_by_the_reciprocal_is_exact_at_the_edges() {
        for t in [
            1,
            2,
            3,
            7,
            10,
            1 << 32,
            (1 << 32) + 1,
            u64::MAX / 2,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let r = reciprocal(t);
            for x in [0, 1, t - 1, t, t.saturating_add(1), u64::MAX - 1, u64::MAX] {
                assert_eq!(div_by(x, t, r), x / t, "{x} / {t}");
            }
            for k in [1u64, 2, 3, 1000, 1 << 31] {
                if let Some(x) = k.checked_mul(t) {
                    assert_eq!(div_by(x, t, r), k);
                    assert_eq!(div_by(x - 1, t, r), k - 1);
                }
            }
        }
    }

    #[test]
    fn debt_is_the_fraction_of_burst_in_use() {
        assert_eq!(debt(0, 10, T, 5), 0);
        assert_eq!(debt(10 + 5 * T, 10, T, 5), u32::MAX);
        let half = debt(10 + 5 * T / 2, 10, T, 4);
        assert!(half > u32::MAX / 2 && half < u32::MAX / 4 * 3);
    }

    #[test]
    fn merge_is_at_least_as_strict_as_both() {
        assert_eq!(merge(100, 80, 50), 130);
        assert_eq!(merge(80, 100, 50), 130);
        assert_eq!(merge(100, 10, 50), 100);
        assert_eq!(merge(u64::MAX, u64::MAX, 0), u64::MAX);
    }

    proptest::proptest! {
        #[test]
        fn the_u64_fast_path_agrees_with_the_wide_path(
            tat in proptest::prop_oneof![0..u64::MAX, 0..1u64 << 40],
            now in proptest::prop_oneof![0..u64::MAX, 0..1u64 << 40],
            cost in 0..40u32,
            t in proptest::prop_oneof![1..u64::MAX, 1..1u64 << 32],
            burst in 0..40u32,
        ) {
            if let Some(fast) = decide_u64(tat, now, cost, t, burst, reciprocal(t)) {
                proptest::prop_assert_eq!(fast, decide_wide(tat, now, cost, t, burst));
            }
        }

        #[test]
        fn division_by_the_reciprocal_is_exact(
            x in proptest::prop_oneof![0..u64::MAX, 0..1u64 << 40, u64::MAX - 1000..=u64::MAX],
            t in proptest::prop_oneof![1..u64::MAX, 1..1u64 << 32, 1..100u64],
        ) {
            proptest::prop_assert_eq!(div_by(x, t, reciprocal(t)), x / t);
            // Near multiples of t, where rounding would show.
            let k = x / t;
            for y in [k * t, (k * t).wrapping_sub(1), (k * t).saturating_add(t - 1)] {
                proptest::prop_assert_eq!(div_by(y, t, reciprocal(t)), y / t);
            }
        }
    }
}
