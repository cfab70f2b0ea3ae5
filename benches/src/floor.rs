//! The physical floor of a keyed decision: the same keyed hash ratecard
//! computes for a key, then one 16-byte read-modify-write (a load and CAS
//! by the same instructions the table issues, `table::wide`) of a slot the
//! hash picks, in an array of as many 16-byte slots as the table has. No bucket scan, no tag compare, no rate
//! math, no counters: what any shared table must pay at least.

use portable_atomic::AtomicU128;
use ratecard::hash::{self, Domain};
use ratecard::table::wide::Wide;

use crate::setup::SEED;

/// An array of 16-byte slots, a power of two of them.
pub struct Floor {
    slots: Vec<AtomicU128>,
    mask: usize,
    wide: Wide,
}

impl Floor {
    /// `slots` slots (rounded up to a power of two), zeroed.
    pub fn new(slots: usize) -> Floor {
        let n = slots.max(1).next_power_of_two();
        Floor {
            slots: (0..n).map(|_| AtomicU128::new(0)).collect(),
            mask: n - 1,
            wide: Wide::detect(),
        }
    }

    /// Hash `key` as ratecard's keyed check does and bump the slot it picks
    /// with one compare-and-swap; returns the new low word.
    #[inline]
    pub fn touch(&self, key: &[u8]) -> u64 {
        let h = hash::subject(&SEED, Domain::Raw, &[], key);
        let slot = &self.slots[h.0 as usize & self.mask];
        let old = self.wide.load(slot);
        let new = old.wrapping_add(1);
        // Single-threaded in the floor benchmarks: the CAS always succeeds.
        let _ = self.wide.cas(slot, old, new);
        new as u64
    }

    /// Bytes of slot memory.
    pub fn bytes(&self) -> usize {
        self.slots.len() * 16
    }
}
