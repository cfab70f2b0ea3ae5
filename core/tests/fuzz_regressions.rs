//! Minimal reproductions of what the fuzz targets in `fuzz/` found, kept
//! outside the fuzzer so `cargo test` guards them.
//!
//! A test marked `#[ignore]` reproduces a finding not fixed yet: run it
//! with `cargo test -p ratecard --test fuzz_regressions -- --ignored`, and
//! drop the `ignore` with the fix.

mod common;
use common::*;

use ratecard::table::counters::{Stripe, OUTCOMES};
use ratecard::table::header::Header;
use ratecard::{Config, HandleOptions, Limiter, CLERK};
use std::mem::size_of;

/// fuzz target `table_memory`, case `Counters`: garbage (or merely huge)
/// per-rule counters in a shared table make `stats()` overflow: it sums
/// each rule's counters with wrapping adds, then the rules with a plain
/// `+=` (`Limiter::stats`), which panics with debug assertions
/// ("attempt to add with overflow"). Another process's stray write is
/// enough; nothing may panic.
#[test]
fn stats_on_counters_near_u64_max_does_not_overflow() {
    let config = Config {
        capacity: 4,
        ..Config::DEFAULT
    };
    let mut memory = Memory::for_capacity(config.capacity);
    Limiter::init(memory.bytes(), &config, CLERK, SEED).unwrap();
    // Stripe 0, rule 0 and rule 1, "allowed": u64::MAX + 1 overflows.
    let stripe0 = size_of::<Header>();
    let rule1 = stripe0 + OUTCOMES * 8;
    let mem = memory.bytes();
    mem[stripe0..stripe0 + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    mem[rule1..rule1 + 8].copy_from_slice(&1u64.to_le_bytes());
    assert!(size_of::<Stripe>() >= 2 * OUTCOMES * 8);
    let l = Limiter::attach(memory.bytes(), CLERK, HandleOptions::default()).unwrap();
    assert_eq!(l.stats().allowed, 0, "the sum wraps");
}
