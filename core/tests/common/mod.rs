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

/// Caller memory for the tests that need raw bytes under a table (attach,
/// corrupt headers, garbage slots): a `Vec` with a 64-byte aligned window.
pub struct Memory {
    buf: Vec<u8>,
    at: usize,
    len: usize,
}

impl Memory {
    /// `len` zeroed bytes at a 64-byte aligned address.
    pub fn new(len: usize) -> Memory {
        let buf = vec![0u8; len + 64];
        let at = buf.as_ptr().align_offset(64);
        Memory { buf, at, len }
    }

    /// Exactly the bytes a table of `capacity` slots takes.
    pub fn for_capacity(capacity: u32) -> Memory {
        Memory::new(Limiter::bytes_for(capacity).unwrap())
    }

    pub fn bytes(&mut self) -> &mut [u8] {
        &mut self.buf[self.at..self.at + self.len]
    }
}
