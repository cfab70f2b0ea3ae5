//! The physical floor of a keyed decision: the same keyed hash ratecard
//! computes for a key, then one 16-byte read-modify-write (a load and CAS
//! by the same instructions the table issues, `table::wide`) of a slot the
//! hash picks, in an array of as many 16-byte slots as the table has, on
//! the same kind of pages (see [`Floor::new`]). No bucket scan, no tag
//! compare, no rate math, no counters: what any shared table must pay at
//! least.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::ptr::NonNull;

use portable_atomic::AtomicU128;
use ratecard::hash::{self, Domain};
use ratecard::table::wide::Wide;

use crate::setup::SEED;

/// A huge page (x86-64, arm64 with 4 KiB pages).
const HUGE_PAGE: usize = 2 << 20;

/// An array of 16-byte slots, a power of two of them.
pub struct Floor {
    slots: NonNull<AtomicU128>,
    layout: Layout,
    mask: usize,
    wide: Wide,
}

// SAFETY: `Floor` owns its slots, which are atomics.
unsafe impl Send for Floor {}
// SAFETY: as above.
unsafe impl Sync for Floor {}

impl Floor {
    /// `slots` slots (rounded up to a power of two), zeroed. Like the tables
    /// ratecard's `Limiter::new` owns, an array of at least a huge page is
    /// huge-page aligned and advised `MADV_HUGEPAGE` before it is touched,
    /// so the floor and the table it bounds sit on the same kind of pages.
    pub fn new(slots: usize) -> Floor {
        let n = slots.max(1).next_power_of_two();
        let bytes = n * 16;
        let huge = bytes >= HUGE_PAGE;
        let align = if huge { HUGE_PAGE } else { 64 };
        let layout = Layout::from_size_align(bytes, align).expect("floor layout");
        // SAFETY: `bytes` is non-zero.
        let ptr = unsafe { alloc(layout) };
        let ptr = NonNull::new(ptr).unwrap_or_else(|| handle_alloc_error(layout));
        #[cfg(target_os = "linux")]
        if huge {
            // SAFETY: inside our allocation, page aligned; advice only.
            unsafe {
                libc::madvise(ptr.as_ptr().cast(), bytes, libc::MADV_HUGEPAGE);
            }
        }
        // SAFETY: we own `bytes` bytes at `ptr`; zero is a valid AtomicU128.
        unsafe { ptr.as_ptr().write_bytes(0, bytes) };
        Floor {
            slots: ptr.cast(),
            layout,
            mask: n - 1,
            wide: Wide::detect(),
        }
    }

    /// Hash `key` as ratecard's keyed check does and bump the slot it picks
    /// with one compare-and-swap; returns the new low word.
    #[inline]
    pub fn touch(&self, key: &[u8]) -> u64 {
        let h = hash::subject(&SEED, Domain::Raw, &[], key);
        // SAFETY: `h & mask` < the number of slots, all initialised.
        let slot = unsafe { &*self.slots.as_ptr().add(h.0 as usize & self.mask) };
        let old = self.wide.load(slot);
        let new = old.wrapping_add(1);
        // Single-threaded in the floor benchmarks: the CAS always succeeds.
        let _ = self.wide.cas(slot, old, new);
        new as u64
    }

    /// Bytes of slot memory.
    pub fn bytes(&self) -> usize {
        self.layout.size()
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with `layout`.
        unsafe { dealloc(self.slots.as_ptr().cast(), self.layout) }
    }
}
