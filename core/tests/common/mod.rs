//! Helpers shared by the integration tests.
#![allow(dead_code)]

use ratecard::{Config, Limiter, RuleTable, Seed, CLERK};

pub const SEED: Seed = Seed {
    k0: 0x0123_4567_89ab_cdef,
    k1: 0xfedc_ba98_7654_3210,
};

/// A limiter on `rules` with `config`, in memory it owns.
pub fn limiter_with(config: Config, rules: RuleTable<'static>) -> Limiter<'static> {
    Limiter::new(&config, rules, SEED).unwrap()
}

pub fn clerk() -> Limiter<'static> {
    clerk_with(|_| {})
}

pub fn clerk_with(f: impl FnOnce(&mut Config)) -> Limiter<'static> {
    let mut config = Config {
        capacity: 4096,
        ..Config::DEFAULT
    };
    f(&mut config);
    limiter_with(config, CLERK)
}

pub const SEC: u64 = 1_000_000_000;
