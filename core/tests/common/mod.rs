//! Helpers shared by the integration tests.
#![allow(dead_code)]

use ratecard::{Config, Limiter, RuleTable, Seed, CLERK};
use std::alloc::{alloc_zeroed, dealloc, Layout};

/// 64-byte aligned heap memory for a table.
pub struct Arena {
    ptr: *mut u8,
    layout: Layout,
}

// SAFETY: the arena is plain memory; the limiter over it only uses atomics.
unsafe impl Send for Arena {}
unsafe impl Sync for Arena {}

impl Arena {
    pub fn new(len: usize) -> Arena {
        let layout = Layout::from_size_align(len.max(64), 64).unwrap();
        // SAFETY: non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        assert!(!ptr.is_null());
        Arena { ptr, layout }
    }

    pub fn for_capacity(capacity: u32) -> Arena {
        Arena::new(Limiter::bytes_for(capacity).unwrap())
    }

    pub fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: we own `len` bytes at `ptr`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }

    pub fn ptr(&self) -> *mut u8 {
        self.ptr
    }

    pub fn len(&self) -> usize {
        self.layout.size()
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout.
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

pub const SEED: Seed = Seed {
    k0: 0x0123_4567_89ab_cdef,
    k1: 0xfedc_ba98_7654_3210,
};

/// A limiter on the Clerk table with `config`, leaking its arena so the
/// handle is `'static` (tests only).
pub fn limiter_with(config: Config, rules: RuleTable<'static>) -> Limiter<'static> {
    let arena = Box::leak(Box::new(Arena::for_capacity(config.capacity)));
    Limiter::init(arena.bytes(), &config, rules, SEED).unwrap()
}

pub fn clerk() -> Limiter<'static> {
    limiter_with(
        Config {
            capacity: 4096,
            ..Config::DEFAULT
        },
        CLERK,
    )
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
