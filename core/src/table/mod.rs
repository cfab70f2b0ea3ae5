//! The shared state table: a power-of-two number of 64-byte buckets of four
//! 16-byte slots, after a header and striped counters, in memory that never
//! changes size. Slots change only by 128-bit compare-and-swap, so one table
//! may be shared by threads and by processes mapping the same memory.

pub mod evict;
pub mod header;
pub mod slot;

use core::mem::size_of;
use core::sync::atomic::{AtomicU64, Ordering};
use portable_atomic::AtomicU128;

use crate::rule::MAX_RULES;
use header::Header;
use slot::{Cells, BUCKET_SLOTS};

/// The most slots a table may have.
pub const MAX_CAPACITY: u64 = 1 << 28;
/// Counter stripes; a decision writes one counter in the stripe its key
/// hashes to, so no single cache line is written by every decision.
pub const STRIPES: usize = 8;
/// Alignment the table's memory must have.
pub const ALIGN: usize = 64;

/// Four slots in one cache line.
#[repr(C, align(64))]
pub struct Bucket([AtomicU128; BUCKET_SLOTS]);

impl Bucket {
    /// A bucket of empty slots.
    pub const fn new() -> Bucket {
        Bucket([const { AtomicU128::new(0) }; BUCKET_SLOTS])
    }
}

impl Default for Bucket {
    fn default() -> Bucket {
        Bucket::new()
    }
}

/// One stripe of counters.
#[repr(C, align(64))]
pub struct Stripe {
    /// Per rule: decisions allowed and denied with that rule binding.
    pub rules: [[AtomicU64; 2]; MAX_RULES],
    /// Inserts that evicted a key still in debt.
    pub evicted: AtomicU64,
    /// Keys inserted.
    pub inserts: AtomicU64,
    /// Requests admitted untracked (fail-open policy) or refused (fail-closed)
    /// because every candidate slot was in debt.
    pub full: AtomicU64,
}

impl Stripe {
    /// A stripe of zero counters.
    pub const fn new() -> Stripe {
        Stripe {
            rules: [const { [const { AtomicU64::new(0) }; 2] }; MAX_RULES],
            evicted: AtomicU64::new(0),
            inserts: AtomicU64::new(0),
            full: AtomicU64::new(0),
        }
    }
}

impl Default for Stripe {
    fn default() -> Stripe {
        Stripe::new()
    }
}

/// Buckets for `capacity` slots: rounded up to a power of two.
pub fn buckets_for(capacity: u64) -> Option<u64> {
    if capacity == 0 || capacity > MAX_CAPACITY {
        return None;
    }
    Some(capacity.div_ceil(BUCKET_SLOTS as u64).next_power_of_two())
}

/// Bytes of memory a table of `capacity` slots takes, header included.
pub fn bytes_for(capacity: u64) -> Option<usize> {
    let buckets = buckets_for(capacity)? as usize;
    Some(size_of::<Header>() + STRIPES * size_of::<Stripe>() + buckets * size_of::<Bucket>())
}

/// Memory laid out for a table, inline: usable as a Rust `static`.
#[repr(C)]
pub struct StaticMemory<const BUCKETS: usize> {
    pub(crate) header: Header,
    pub(crate) stripes: [Stripe; STRIPES],
    pub(crate) buckets: [Bucket; BUCKETS],
}

impl<const BUCKETS: usize> StaticMemory<BUCKETS> {
    /// Zeroed memory; `BUCKETS` must be a power of two.
    pub const fn new() -> Self {
        assert!(BUCKETS.is_power_of_two(), "BUCKETS must be a power of two");
        StaticMemory {
            header: Header::zeroed(),
            stripes: [const { Stripe::new() }; STRIPES],
            buckets: [const { Bucket::new() }; BUCKETS],
        }
    }
}

impl<const BUCKETS: usize> Default for StaticMemory<BUCKETS> {
    fn default() -> Self {
        Self::new()
    }
}

/// Why memory cannot hold a table.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PlaceError {
    /// Capacity zero or above [`MAX_CAPACITY`].
    Capacity,
    /// Fewer bytes than [`bytes_for`] the capacity.
    TooSmall,
    /// Not aligned to [`ALIGN`] bytes.
    Misaligned,
    /// A null pointer.
    Null,
}

/// A view of a table's memory.
#[derive(Copy, Clone)]
pub struct Table<'m> {
    pub(crate) header: &'m Header,
    pub(crate) stripes: &'m [Stripe; STRIPES],
    buckets: &'m [Bucket],
    mask: u64,
}

impl<'m> Table<'m> {
    /// View `len` bytes at `mem` as a table of `capacity` slots.
    ///
    /// # Safety
    /// `mem` must be valid for reads and writes of `len` bytes for `'m`, and
    /// every other user of that memory (threads, other processes) must only
    /// access it through this crate, that is, through atomics.
    pub unsafe fn place(mem: *mut u8, len: usize, capacity: u64) -> Result<Table<'m>, PlaceError> {
        let (buckets, _) = Self::fits(mem, len, capacity)?;
        let stripes_at = size_of::<Header>();
        let buckets_at = stripes_at + STRIPES * size_of::<Stripe>();
        // SAFETY: the region is large enough and aligned for each part (all
        // sizes are multiples of 64), every bit pattern is a valid atomic,
        // and the caller guarantees validity and atomic-only sharing for 'm.
        unsafe {
            Ok(Table {
                header: &*(mem as *const Header),
                stripes: &*(mem.add(stripes_at) as *const [Stripe; STRIPES]),
                buckets: core::slice::from_raw_parts(mem.add(buckets_at) as *const Bucket, buckets),
                mask: buckets as u64 - 1,
            })
        }
    }

    /// Zero the whole region a table of `capacity` slots takes at `mem`
    /// (header, counters with their padding, slots), then view it.
    ///
    /// # Safety
    /// As for [`Table::place`]; in addition nobody may use the region while
    /// it is being zeroed (another process attaching meanwhile sees a header
    /// that is not ready and is refused).
    pub unsafe fn place_zeroed(
        mem: *mut u8,
        len: usize,
        capacity: u64,
    ) -> Result<Table<'m>, PlaceError> {
        let (_, need) = Self::fits(mem, len, capacity)?;
        // SAFETY: `fits` checked that `need` bytes at `mem` are the caller's.
        unsafe {
            core::ptr::write_bytes(mem, 0, need);
            Self::place(mem, len, capacity)
        }
    }

    /// Check memory for a table of `capacity` slots: (buckets, bytes needed).
    fn fits(mem: *mut u8, len: usize, capacity: u64) -> Result<(usize, usize), PlaceError> {
        if mem.is_null() {
            return Err(PlaceError::Null);
        }
        let buckets = buckets_for(capacity).ok_or(PlaceError::Capacity)? as usize;
        let need = bytes_for(capacity).ok_or(PlaceError::Capacity)?;
        if len < need {
            return Err(PlaceError::TooSmall);
        }
        if !(mem as usize).is_multiple_of(ALIGN) {
            return Err(PlaceError::Misaligned);
        }
        Ok((buckets, need))
    }

    /// View static memory as a table.
    pub fn of_static<const B: usize>(mem: &'m StaticMemory<B>) -> Table<'m> {
        Table {
            header: &mem.header,
            stripes: &mem.stripes,
            buckets: &mem.buckets,
            mask: B as u64 - 1,
        }
    }

    /// Slots in the table.
    pub fn capacity(&self) -> u64 {
        self.buckets.len() as u64 * BUCKET_SLOTS as u64
    }

    /// The stripe counters for a key's tag.
    pub fn stripe(&self, tag: u64) -> &'m Stripe {
        &self.stripes[(tag >> 40) as usize % STRIPES]
    }

    /// Slots currently holding a key (a full scan: for statistics only).
    pub fn occupancy(&self) -> u64 {
        let mut n = 0;
        for b in self.buckets {
            for s in &b.0 {
                if slot::kind_of(s.load(Ordering::Relaxed)) == slot::Kind::Live {
                    n += 1;
                }
            }
        }
        n
    }

    /// Sum one counter over every stripe.
    pub fn sum(&self, f: impl Fn(&Stripe) -> &AtomicU64) -> u64 {
        self.stripes
            .iter()
            .map(|s| f(s).load(Ordering::Relaxed))
            .fold(0u64, u64::wrapping_add)
    }
}

impl Cells for Table<'_> {
    fn mask(&self) -> u64 {
        self.mask
    }

    #[inline]
    fn load(&self, i: usize) -> u128 {
        self.buckets[i / BUCKET_SLOTS].0[i % BUCKET_SLOTS].load(Ordering::SeqCst)
    }

    #[inline]
    fn load_bucket(&self, b: u64) -> [u128; BUCKET_SLOTS] {
        let bucket = &self.buckets[b as usize];
        core::array::from_fn(|j| bucket.0[j].load(Ordering::SeqCst))
    }

    #[inline]
    fn match_bucket(&self, b: u64, tag: u64) -> (u32, usize, u128) {
        let bucket = &self.buckets[b as usize];
        let v: [u128; BUCKET_SLOTS] = core::array::from_fn(|j| bucket.0[j].load(Ordering::SeqCst));
        let mut hits = 0u32;
        for (j, &v) in v.iter().enumerate() {
            hits |= ((slot::identity(v) == tag) as u32) << j;
        }
        let j = hits.trailing_zeros() as usize % BUCKET_SLOTS;
        (hits.count_ones(), b as usize * BUCKET_SLOTS + j, v[j])
    }

    #[inline]
    fn cas(&self, i: usize, current: u128, new: u128) -> Result<(), u128> {
        self.buckets[i / BUCKET_SLOTS].0[i % BUCKET_SLOTS]
            .compare_exchange(current, new, Ordering::SeqCst, Ordering::SeqCst)
            .map(|_| ())
    }

    #[inline]
    fn prefetch(&self, b: u64) {
        #[cfg(target_arch = "x86_64")]
        if let Some(bucket) = self.buckets.get(b as usize) {
            // SAFETY: prefetching is a hint and never faults; SSE is part of
            // the x86_64 baseline.
            unsafe {
                core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                    bucket as *const Bucket as *const i8,
                )
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = b;
    }
}

/// Whether 128-bit compare-and-swap is lock-free on the running CPU. Where
/// it is not, a library fallback would take a lock private to one process,
/// which would not protect memory shared with another: tables refuse to run.
pub fn cas_is_lock_free() -> bool {
    AtomicU128::is_lock_free()
}
