//! Where a table's memory comes from: caller memory (a shared mapping, an
//! arena), a Rust `static`, or, with the `alloc` feature, memory the table
//! owns. Every `unsafe` block that handles raw memory is in this file; the
//! 16-byte atomic instructions are in [`super::wide`].
//!
//! Layout, every part 64-byte aligned: the [`Header`] (256 bytes), the
//! counter [`Stripe`]s, then the buckets.

use core::mem::size_of;

use super::counters::{Stripe, STRIPES};
use super::header::Header;
use super::slot::BUCKET_SLOTS;
use super::{Bucket, Table};

/// The most slots a table may have.
pub const MAX_CAPACITY: u64 = 1 << 28;
/// Alignment the table's memory must have.
pub const ALIGN: usize = 64;

/// Buckets for `capacity` slots: rounded up to a power of two.
pub fn buckets_for(capacity: u64) -> Option<u64> {
    if capacity == 0 || capacity > MAX_CAPACITY {
        return None;
    }
    Some(capacity.div_ceil(BUCKET_SLOTS as u64).next_power_of_two())
}

/// Bytes of memory a table of `capacity` slots takes, header included.
pub fn bytes_for(capacity: u64) -> Option<usize> {
    let buckets = usize::try_from(buckets_for(capacity)?).ok()?;
    size_of::<Header>()
        .checked_add(STRIPES.checked_mul(size_of::<Stripe>())?)?
        .checked_add(buckets.checked_mul(size_of::<Bucket>())?)
}

const STRIPES_AT: usize = size_of::<Header>();
#[allow(
    clippy::arithmetic_side_effects,
    reason = "constant evaluation: an overflow fails the build"
)]
const BUCKETS_AT: usize = STRIPES_AT + STRIPES * size_of::<Stripe>();
const _: () = assert!(STRIPES_AT.is_multiple_of(ALIGN) && BUCKETS_AT.is_multiple_of(ALIGN));

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
    /// The allocator had no memory (owned tables only).
    OutOfMemory,
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

/// View `len` bytes at `mem` as a table of `capacity` slots.
///
/// # Safety
/// `mem` must be valid for reads and writes of `len` bytes for `'m`, and
/// every other user of that memory (threads, other processes) must only
/// access it through this crate, that is, through atomics.
pub unsafe fn place<'m>(mem: *mut u8, len: usize, capacity: u64) -> Result<Table<'m>, PlaceError> {
    let (buckets, _) = fits(mem, len, capacity)?;
    // SAFETY: `fits` checked that the region holds the header, the stripes
    // and `buckets` buckets, each at a 64-byte aligned offset of a 64-byte
    // aligned start; every bit pattern is a valid atomic; the caller
    // guarantees validity and atomic-only sharing for 'm.
    unsafe {
        let header = &*(mem as *const Header);
        let stripes = core::slice::from_raw_parts(mem.add(STRIPES_AT) as *const Stripe, STRIPES);
        let buckets = core::slice::from_raw_parts(mem.add(BUCKETS_AT) as *const Bucket, buckets);
        Ok(Table::new(header, stripes, buckets))
    }
}

/// Zero the whole region a table of `capacity` slots takes at `mem`
/// (header, counters with their padding, slots), then view it.
///
/// # Safety
/// As for [`place`]; in addition nobody may use the region while it is
/// being zeroed (another process attaching meanwhile sees a header that is
/// not ready and is refused).
pub unsafe fn place_zeroed<'m>(
    mem: *mut u8,
    len: usize,
    capacity: u64,
) -> Result<Table<'m>, PlaceError> {
    let (_, need) = fits(mem, len, capacity)?;
    // SAFETY: `fits` checked that `need` bytes at `mem` are the caller's.
    unsafe {
        core::ptr::write_bytes(mem, 0, need);
        place(mem, len, capacity)
    }
}

/// Memory laid out for a table, inline: usable as a Rust `static`.
#[repr(C)]
pub struct StaticMemory<const BUCKETS: usize> {
    header: Header,
    stripes: [Stripe; STRIPES],
    buckets: [Bucket; BUCKETS],
}

impl<const BUCKETS: usize> StaticMemory<BUCKETS> {
    /// Zeroed memory; `BUCKETS` must be a power of two (checked when
    /// evaluated in a const context, such as a `static`).
    pub const fn new() -> Self {
        assert!(BUCKETS.is_power_of_two(), "BUCKETS must be a power of two");
        StaticMemory {
            header: Header::zeroed(),
            stripes: [const { Stripe::new() }; STRIPES],
            buckets: [const { Bucket::new() }; BUCKETS],
        }
    }

    /// View the memory as a table.
    pub fn table(&self) -> Table<'_> {
        Table::new(&self.header, &self.stripes, &self.buckets)
    }
}

impl<const BUCKETS: usize> Default for StaticMemory<BUCKETS> {
    fn default() -> Self {
        Self::new()
    }
}

/// Hint that `bucket` will be read soon.
#[inline(always)]
pub(crate) fn prefetch(bucket: &Bucket) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching is a hint that never faults, on a valid reference;
    // SSE is part of the x86_64 baseline.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            bucket as *const Bucket as *const i8,
        )
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bucket;
}

#[cfg(feature = "alloc")]
pub use owned::Owned;

#[cfg(feature = "alloc")]
mod owned {
    use super::{fits, place, PlaceError, Table, ALIGN};
    use alloc::alloc::{alloc_zeroed, dealloc, Layout};
    use core::ptr::NonNull;

    /// Zeroed, 64-byte aligned memory a table owns, freed on drop.
    pub struct Owned {
        ptr: NonNull<u8>,
        layout: Layout,
    }

    // SAFETY: the memory is only ever accessed through atomics (the tables
    // placed in it), so sharing and sending it between threads is sound.
    unsafe impl Send for Owned {}
    // SAFETY: as above.
    unsafe impl Sync for Owned {}

    impl Owned {
        /// Allocate memory for a table of `capacity` slots and lay a zeroed
        /// table out in it. The table borrows memory that lives as long as
        /// the returned `Owned`: the caller keeps both together and drops the
        /// table first.
        pub(crate) fn new<'m>(capacity: u64) -> Result<(Owned, Table<'m>), PlaceError> {
            let need = super::bytes_for(capacity).ok_or(PlaceError::Capacity)?;
            let layout = Layout::from_size_align(need, ALIGN).map_err(|_| PlaceError::Capacity)?;
            // SAFETY: `need` is non-zero (a header at least).
            let ptr =
                NonNull::new(unsafe { alloc_zeroed(layout) }).ok_or(PlaceError::OutOfMemory)?;
            let owned = Owned { ptr, layout };
            fits(ptr.as_ptr(), need, capacity)?;
            // SAFETY: we own `need` zeroed bytes at `ptr`, valid until `owned`
            // is dropped, which the caller does after the table (see above).
            let table = unsafe { place(ptr.as_ptr(), need, capacity)? };
            Ok((owned, table))
        }
    }

    impl Drop for Owned {
        fn drop(&mut self) {
            // SAFETY: allocated in `new` with this layout.
            unsafe { dealloc(self.ptr.as_ptr(), self.layout) }
        }
    }
}
