//! Long randomised time walks on one key, checking the bounds DESIGN.md
//! promises: GCRA admits at most `burst + ⌊L/T⌋` units in any interval of
//! length `L`; pace mode at most `limit` in any half-open window of length
//! `period`; a fixed window at most `limit` per aligned window.
//!
//! `T` is computed here as `⌈period / limit⌉`, not taken from the crate.

mod common;
use common::*;

use proptest::prelude::*;

use ratecard::{
    Algorithm, Api, Config, Limiter, Method, Nanos, Quota, Route, Rule, RuleId, RuleTable, Scope,
};

const ROUTES: &[Route<'static>] = &[Route::new(Method::Get, "/unused")];

const fn rule(name: &'static str, quota: Quota) -> Rule<'static> {
    Rule::new(name, Api::Backend, Scope::Instance, ROUTES, quota)
}

/// Quotas with round, rounded-up, tiny and custom-burst emission intervals.
const QUOTAS: &[Rule<'static>] = &[
    rule("q.5_per_10s", Quota::per_secs(5, 10)),
    rule("q.3_per_10s", Quota::per_secs(3, 10)),
    rule("q.1000_per_10s", Quota::per_secs(1000, 10)),
    rule("q.100_per_hour", Quota::per_hour(100)),
    rule("q.7_per_1000ns", Quota::new(7, Nanos(1_000))),
    rule("q.10_per_s_burst_3", Quota::per_secs(10, 1).with_burst(3)),
    rule("q.4_per_3ns", Quota::new(4, Nanos(3))),
    rule("q.1_per_s", Quota::per_secs(1, 1)),
];
const TABLE: RuleTable<'static> = RuleTable::new(QUOTAS);

fn limiter(pace: bool, algorithm: Option<Algorithm>) -> Limiter<'static> {
    limiter_with(
        Config {
            capacity: 64,
            pace,
            algorithm,
            ..Config::DEFAULT
        },
        TABLE,
    )
}

/// `(T, burst)` of a quota, from DESIGN.md.
fn params(q: &Quota, pace: bool) -> (u64, u64) {
    let t = q.period.0.div_ceil(q.limit as u64).max(1);
    let burst = if pace {
        1
    } else if q.burst == 0 {
        q.limit
    } else {
        q.burst
    };
    (t, burst as u64)
}

/// One step of a walk: how time moves (a fraction of a scale), and the cost.
#[derive(Clone, Debug)]
enum Step {
    Forward(u64),
    Zero,
    Back(u64),
    Leap(u64),
}

fn steps() -> impl Strategy<Value = Vec<(Step, u32)>> {
    let step = prop_oneof![
        6 => (0u64..=3_000).prop_map(Step::Forward),
        3 => Just(Step::Zero),
        2 => (0u64..=1_000).prop_map(Step::Back),
        1 => (1u64..=20).prop_map(Step::Leap),
    ];
    prop::collection::vec((step, 0u32..=12), 1..400)
}

/// Apply `step` to `now`: forward by up to 3 `t`, leaping by whole
/// `period`s, or back by up to `back_max` but never more than `back_max`
/// below `high`, the latest time seen (an ordinary step back, not a wild
/// clock: DESIGN.md clamps states more than two bursts ahead).
fn advance(now: u64, high: u64, step: &Step, t: u64, back_max: u64, period: u64) -> u64 {
    match *step {
        Step::Forward(f) => now + (t as u128 * f as u128 / 1_000) as u64,
        Step::Zero => now,
        Step::Back(f) => now
            .saturating_sub((back_max as u128 * f as u128 / 1_000) as u64)
            .max(high.saturating_sub(back_max)),
        Step::Leap(n) => now + n * period,
    }
}

/// The shape of one walk on one rule.
struct Shape {
    rule: RuleId,
    start: u64,
    /// The emission interval: forward steps are fractions of 3 `t`.
    t: u64,
    /// The longest step back below the latest time seen.
    back_max: u64,
    period: u64,
    /// Costs are drawn from `0..=max_cost`.
    max_cost: u32,
    /// The largest cost that fits the burst.
    fits: u32,
}

/// Run a walk on one key; returns the admissions as (time, units).
/// The admitted `(now, cost)` pairs, in request order.
fn walk(l: &Limiter<'_>, shape: &Shape, walk: &[(Step, u32)]) -> Vec<(u64, u64)> {
    let Shape {
        rule,
        start,
        t,
        back_max,
        period,
        max_cost,
        fits,
    } = *shape;
    let mut now = start;
    let mut high = start;
    let mut admitted = Vec::new();
    for (i, (step, cost)) in walk.iter().enumerate() {
        now = advance(now, high, step, t, back_max, period);
        high = high.max(now);
        let cost = cost % (max_cost + 1);
        let d = l.check_key(rule, b"one-key", cost, Nanos(now)).unwrap();
        if i == 0 {
            assert!(
                d.allowed() || cost.max(1) > fits,
                "a fresh key admits its first request: {d:?}"
            );
        }
        if d.allowed() {
            admitted.push((now, cost.max(1) as u64));
        }
    }
    admitted
}

/// Every interval `[a, b]` between admission times holds at most
/// `burst + ⌊(b − a) / T⌋` units.
fn assert_gcra_bound(admitted: &[(u64, u64)], burst: u64, t: u64) -> Result<(), TestCaseError> {
    let mut prefix = vec![0u64];
    for &(_, c) in admitted {
        prefix.push(prefix.last().unwrap() + c);
    }
    let n = admitted.len();
    for i in 0..n {
        if i > 0 && admitted[i - 1].0 == admitted[i].0 {
            continue; // start at the first admission of a tie
        }
        for j in i..n {
            if j + 1 < n && admitted[j + 1].0 == admitted[j].0 {
                continue; // end at the last admission of a tie
            }
            let units = prefix[j + 1] - prefix[i];
            let len = admitted[j].0 - admitted[i].0;
            prop_assert!(
                units <= burst + len / t,
                "{units} units in [{}, {}] (L = {len}), bound {} + {}",
                admitted[i].0,
                admitted[j].0,
                burst,
                len / t
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn gcra_admits_at_most_burst_plus_elapsed_over_t_in_any_interval(
        q in 0..QUOTAS.len(),
        start in 0u64..(1 << 50),
        walk_steps in steps(),
    ) {
        let l = limiter(false, None);
        let quota = QUOTAS[q].quota;
        let (t, burst) = params(&quota, false);
        // Small steps back: up to one full burst (`burst·T`).
        let shape = Shape {
            rule: RuleId(q as u8),
            start,
            t,
            back_max: burst * t,
            period: quota.period.0,
            max_cost: burst as u32 + 1,
            fits: burst as u32,
        };
        let mut admitted = walk(&l, &shape, &walk_steps);
        admitted.sort();
        assert_gcra_bound(&admitted, burst, t)?;
    }

    #[test]
    fn pace_mode_admits_at_most_limit_in_any_half_open_window_of_one_period(
        q in 0..QUOTAS.len(),
        start in 0u64..(1 << 50),
        walk_steps in steps(),
    ) {
        let l = limiter(true, None);
        let quota = QUOTAS[q].quota;
        let (t, _) = params(&quota, true);
        // Costs 0..=2: a cost of 2 never fits a burst of 1.
        let shape = Shape {
            rule: RuleId(q as u8),
            start,
            t,
            back_max: t,
            period: quota.period.0,
            max_cost: 2,
            fits: 1,
        };
        let mut admitted = walk(&l, &shape, &walk_steps);
        admitted.sort();
        prop_assert!(admitted.iter().all(|&(_, c)| c == 1), "pace mode admits one unit at a time");
        let period = quota.period.0;
        for (i, &(a, _)) in admitted.iter().enumerate() {
            let units: u64 = admitted[i..]
                .iter()
                .take_while(|&&(b, _)| b < a.saturating_add(period))
                .map(|&(_, c)| c)
                .sum();
            prop_assert!(
                units <= quota.limit as u64,
                "{units} units in [{a}, {a} + {period}), limit {}",
                quota.limit
            );
        }
    }

    #[test]
    fn fixed_window_admits_at_most_limit_per_aligned_window_on_a_monotonic_clock(
        q in 0..QUOTAS.len(),
        start in 0u64..(1 << 50),
        walk_steps in steps(),
    ) {
        let walk_steps: Vec<_> = walk_steps
            .into_iter()
            .map(|(s, c)| (if matches!(s, Step::Back(_)) { Step::Zero } else { s }, c))
            .collect();
        assert_window_bound(q, start, &walk_steps)?;
    }

    #[test]
    fn fixed_window_admits_at_most_limit_per_aligned_window_with_small_steps_back(
        q in 0..QUOTAS.len(),
        start in 0u64..(1 << 50),
        walk_steps in steps(),
    ) {
        assert_window_bound(q, start, &walk_steps)?;
    }
}

fn assert_window_bound(
    q: usize,
    start: u64,
    walk_steps: &[(Step, u32)],
) -> Result<(), TestCaseError> {
    let l = limiter(false, Some(Algorithm::FixedWindow));
    let quota = QUOTAS[q].quota;
    let period = quota.period.0;
    let (t, _) = params(&quota, false);
    // Steps back of up to one period.
    let shape = Shape {
        rule: RuleId(q as u8),
        start,
        t,
        back_max: period,
        period,
        max_cost: quota.limit + 1,
        fits: quota.limit,
    };
    let admitted = walk(&l, &shape, walk_steps);
    // A clock that steps back hands nothing back: a unit admitted after a
    // step back counts in the latest window already charged. Only steps
    // back of at most two periods behind that are ordinary (further back is
    // a wild clock, clamped: tested elsewhere).
    let mut per_window = std::collections::BTreeMap::<u64, u64>::new();
    let mut latest = 0u64;
    for &(now, c) in &admitted {
        if latest.saturating_sub(now) > 2 * period {
            break;
        }
        latest = latest.max(now);
        *per_window.entry(latest / period).or_default() += c;
    }
    for (w, units) in per_window {
        prop_assert!(
            units <= quota.limit as u64,
            "{units} units in window {w} of {period} ns, limit {}",
            quota.limit
        );
    }
    Ok(())
}

#[test]
fn a_step_back_across_a_window_boundary_does_not_hand_back_the_later_window() {
    // Spelled out: the shrunk case of the ignored property above.
    let l = limiter(false, Some(Algorithm::FixedWindow));
    let p = 10 * SEC;
    let k = 1_000 * p;
    let key = b"k";
    for _ in 0..5 {
        assert!(l
            .check_key(RuleId(0), key, 1, Nanos(k + 1))
            .unwrap()
            .allowed());
    }
    assert!(!l
        .check_key(RuleId(0), key, 1, Nanos(k + 1))
        .unwrap()
        .allowed());
    // 2 ns back, into the previous window: nothing is handed back there...
    assert!(!l
        .check_key(RuleId(0), key, 1, Nanos(k - 1))
        .unwrap()
        .allowed());
    // ...and back in window k the five admitted there still count.
    let again = (0..5)
        .filter(|_| {
            l.check_key(RuleId(0), key, 1, Nanos(k + 2))
                .unwrap()
                .allowed()
        })
        .count();
    assert_eq!(
        again, 0,
        "window k admitted {again} more after a 2 ns step back"
    );
}

#[test]
fn a_fresh_key_gets_a_full_window_whatever_the_window_index() {
    // 10 per millisecond: window indexes pass 2^31 after about 25 days of
    // uptime, and 2^32 after about 50.
    const RULES: &[Rule<'static>] = &[rule("q.10_per_ms", Quota::new(10, Nanos(1_000_000)))
        .with_algorithm(Algorithm::FixedWindow)];
    let l = limiter_with(
        Config {
            capacity: 64,
            ..Config::DEFAULT
        },
        RuleTable::new(RULES),
    );
    let ms = 1_000_000u64;
    for (i, window) in [
        5u64,
        (1 << 31) - 1,
        1 << 31,
        (1 << 31) + 7,
        (1 << 32) - 1,
        1 << 32,
        3 << 31,
    ]
    .into_iter()
    .enumerate()
    {
        let key = [i as u8];
        let now = window * ms + 17;
        let allowed = (0..12)
            .filter(|_| {
                l.check_key(RuleId(0), &key, 1, Nanos(now))
                    .unwrap()
                    .allowed()
            })
            .count();
        assert_eq!(allowed, 10, "window {window}");
    }
}
