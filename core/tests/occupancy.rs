//! The table's occupancy promise: up to 85% of slots live, fewer than 1% of
//! inserts evict a slot still in debt (random keys, 2^20 slots).

mod common;
use common::*;
use ratecard::{Api, Config, Nanos, Quota, Route, Rule, RuleId, RuleTable, Scope};

const ROUTES: &[Route<'static>] = &[];
/// One rule that keeps every key in debt for an hour.
const SLOW: &[Rule<'static>] = &[Rule::new(
    "test.slow",
    Api::Backend,
    Scope::Instance,
    ROUTES,
    Quota::per_hour(10),
)];

/// xorshift64*: a fixed-seed stream of random keys.
fn keys(mut x: u64) -> impl Iterator<Item = u64> {
    std::iter::from_fn(move || {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        Some(x.wrapping_mul(0x2545_f491_4f6c_dd1d))
    })
}

/// In-debt evictions per insert while filling to each fraction in `marks`.
fn curve(capacity: u32, seed: u64, marks: &[f64]) -> Vec<(f64, u64, u64)> {
    let l = limiter_with(
        Config {
            capacity,
            ..Config::DEFAULT
        },
        RuleTable::new(SLOW),
    );
    let slots = l.stats().capacity;
    let now = Nanos(1_000 * SEC);
    let mut out = Vec::new();
    let mut keys = keys(seed);
    let mut inserted = 0u64;
    let mut last_evicted = 0;
    for &mark in marks {
        let target = (slots as f64 * mark) as u64;
        while inserted < target {
            let k = keys.next().unwrap();
            let d = l.check_key(RuleId(0), &k.to_le_bytes(), 1, now).unwrap();
            assert!(d.allowed());
            inserted += 1;
        }
        let s = l.stats();
        out.push((mark, s.evicted_in_debt - last_evicted, s.inserts));
        last_evicted = s.evicted_in_debt;
    }
    out
}

#[test]
fn fewer_than_one_percent_of_inserts_evict_in_debt_up_to_85_percent() {
    for seed in [1, 2, 3] {
        let c = curve(1 << 20, seed, &[0.50, 0.70, 0.85]);
        let evicted: u64 = c.iter().map(|&(_, e, _)| e).sum();
        let inserts = c.last().unwrap().2;
        assert!(
            evicted * 100 < inserts,
            "seed {seed}: {evicted} in-debt evictions in {inserts} inserts: {c:?}"
        );
    }
}

#[test]
#[ignore = "prints the occupancy curve: cargo test --release --test occupancy -- --ignored --nocapture"]
fn print_occupancy_curve() {
    let c = curve(1 << 20, 7, &[0.50, 0.70, 0.85, 0.90, 0.95, 1.0]);
    let mut prev_inserts = 0;
    for (mark, evicted, inserts) in c {
        let n = inserts - prev_inserts;
        println!(
            "fill {:>3.0}%: {} in-debt evictions in {} inserts ({:.3}%)",
            mark * 100.0,
            evicted,
            n,
            100.0 * evicted as f64 / n as f64
        );
        prev_inserts = inserts;
    }
}
