//! Racing inserts on a full table, checked against the invariant directly
//! (issue 11): every key's state lost, and every admission beyond a key's
//! bound, is paid for by an in-debt eviction the table counted.
//!
//! Each round makes a fresh limiter of 8 slots on one rule of 1 per hour at
//! a fixed clock, so every admitted key stays in debt for the whole round;
//! fills it with admitted keys; then 2 to 4 threads check one new key they
//! share and a few new keys of their own, all at once. Afterwards:
//! - `excess` = Σ over keys of max(0, admitted − 1), the admissions beyond
//!   the bound;
//! - `lost` = the keys admitted (pre-filled or in the race) that a peek now
//!   finds fresh again: their state is gone;
//! - each in-debt eviction can lose one key's state once, so
//!   `excess + lost <= stats().evicted_in_debt`.
//!
//! With the Deny policy nothing may be evicted: `excess == 0 && lost == 0`.
//!
//! Rounds: `RATECARD_STRESS_ROUNDS` (default 1 500, about 2 s in a debug
//! build here), stopped early after `RATECARD_STRESS_SECS` (default 60).

use ratecard::{Api, Config, Limiter, Nanos, Policy, Quota, Rule, RuleId, RuleTable, Scope, Seed};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

const RULES: &[Rule<'static>] = &[Rule::new(
    "stress.one_per_hour",
    Api::Backend,
    Scope::Instance,
    &[],
    Quota::per_hour(1),
)];
const RULE: RuleId = RuleId(0);
const CAPACITY: u32 = 8;
const NOW: Nanos = Nanos::from_secs(1_000);
/// New keys of its own each thread checks besides the shared one.
const OWN_KEYS: u64 = 3;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Key `i` of round `round`.
fn key(round: u64, i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&round.to_le_bytes());
    k[8..].copy_from_slice(&i.to_le_bytes());
    k
}

/// What one round saw.
#[derive(Default, Debug)]
struct Round {
    excess: u64,
    lost: u64,
    evicted_in_debt: u64,
}

fn round(round: u64, threads: u64, policy: Policy) -> Round {
    let config = Config {
        capacity: CAPACITY,
        policy,
        ..Config::DEFAULT
    };
    let seed = Seed::from_bytes(key(round, 0xfeed));
    let l = Limiter::new(&config, RuleTable::new(RULES), seed).unwrap();
    let slots = l.stats().capacity;
    // Keys 0..slots pre-fill the table; key `slots` is the shared new key;
    // then each thread's own.
    let shared = slots;
    let own = |t: u64, j: u64| shared + 1 + t * OWN_KEYS + j;
    let nkeys = own(threads, 0);
    let admitted: Vec<AtomicU32> = (0..nkeys).map(|_| AtomicU32::new(0)).collect();
    for i in 0..slots {
        let d = l.check_key(RULE, &key(round, i), 1, NOW).unwrap();
        if d.allowed() {
            admitted[i as usize].fetch_add(1, Ordering::Relaxed);
        }
    }
    let barrier = Barrier::new(threads as usize);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (l, admitted, barrier) = (&l, &admitted, &barrier);
            s.spawn(move || {
                barrier.wait();
                // The shared key first and last, its own keys between.
                let mut order = vec![shared];
                order.extend((0..OWN_KEYS).map(|j| own(t, j)));
                order.push(shared);
                for k in order {
                    let d = l.check_key(RULE, &key(round, k), 1, NOW).unwrap();
                    if d.allowed() {
                        admitted[k as usize].fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let mut r = Round {
        evicted_in_debt: l.stats().evicted_in_debt,
        ..Round::default()
    };
    for (k, a) in admitted.iter().enumerate() {
        let a = a.load(Ordering::Relaxed) as u64;
        r.excess += a.saturating_sub(1);
        if a > 0 {
            let d = l.peek_key(RULE, &key(round, k as u64), 1, NOW).unwrap();
            r.lost += d.allowed() as u64;
        }
    }
    r
}

/// Run rounds of `policy`, checking each with `ok`; returns the rounds run.
fn run(policy: Policy, ok: impl Fn(&Round) -> bool) -> (u64, Duration, Round) {
    let rounds = env_or("RATECARD_STRESS_ROUNDS", 1_500);
    let budget = Duration::from_secs(env_or("RATECARD_STRESS_SECS", 60));
    let start = Instant::now();
    let mut total = Round::default();
    let mut n = 0;
    while n < rounds && start.elapsed() < budget {
        let threads = 2 + n % 3;
        let r = round(n, threads, policy);
        assert!(ok(&r), "{policy:?} round {n} with {threads} threads: {r:?}");
        total.excess += r.excess;
        total.lost += r.lost;
        total.evicted_in_debt += r.evicted_in_debt;
        n += 1;
    }
    let elapsed = start.elapsed();
    println!(
        "{policy:?}: {n} rounds in {:.2} s: {} admissions beyond the bound, {} states lost, {} in-debt evictions counted",
        elapsed.as_secs_f64(),
        total.excess,
        total.lost,
        total.evicted_in_debt
    );
    (n, elapsed, total)
}

#[test]
fn racing_inserts_on_a_full_table_lose_no_more_than_the_in_debt_evictions_counted() {
    let (n, _, total) = run(Policy::Evict, |r| r.excess + r.lost <= r.evicted_in_debt);
    assert!(n > 0);
    // Every round's inserts found the table full of keys in debt.
    assert!(total.evicted_in_debt >= n, "{total:?}");
}

#[test]
fn with_the_deny_policy_racing_inserts_on_a_full_table_lose_nothing() {
    let (n, _, total) = run(Policy::Deny, |r| {
        r.excess == 0 && r.lost == 0 && r.evicted_in_debt == 0
    });
    assert!(n > 0, "{total:?}");
}
