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

    /// A huge page of the x86-64 and arm64 (4 KiB granule) MMU.
    #[cfg(all(feature = "std", target_os = "linux"))]
    pub(crate) const HUGE_PAGE: usize = 2 << 20;

    impl Owned {
        /// Allocate memory for a table of `capacity` slots and lay a zeroed
        /// table out in it. The table borrows memory that lives as long as
        /// the returned `Owned`: the caller keeps both together and drops the
        /// table first.
        ///
        /// On Linux (feature `std`), a table of at least a huge page is
        /// aligned to one and advised `MADV_HUGEPAGE` before it is touched,
        /// so that transparent huge pages back it where the system allows
        /// them (`enabled` = `always` or `madvise`; not under
        /// `PR_SET_THP_DISABLE`): a random lookup in a table of many MiB
        /// then costs no page walk. The advice is a hint: refused, the
        /// table is the same on 4 KiB pages.
        pub(crate) fn new<'m>(capacity: u64) -> Result<(Owned, Table<'m>), PlaceError> {
            let need = super::bytes_for(capacity).ok_or(PlaceError::Capacity)?;
            let owned = Self::zeroed(need)?;
            let ptr = owned.ptr;
            fits(ptr.as_ptr(), need, capacity)?;
            // SAFETY: we own `need` zeroed bytes at `ptr`, valid until `owned`
            // is dropped, which the caller does after the table (see above).
            let table = unsafe { place(ptr.as_ptr(), need, capacity)? };
            Ok((owned, table))
        }

        /// `need` zeroed bytes, 64-byte aligned (huge-page aligned and
        /// advised where that applies, see [`Owned::new`]).
        fn zeroed(need: usize) -> Result<Owned, PlaceError> {
            #[cfg(all(feature = "std", target_os = "linux"))]
            if need >= HUGE_PAGE {
                let layout =
                    Layout::from_size_align(need, HUGE_PAGE).map_err(|_| PlaceError::Capacity)?;
                // SAFETY: `need` is non-zero.
                let ptr = NonNull::new(unsafe { alloc::alloc::alloc(layout) })
                    .ok_or(PlaceError::OutOfMemory)?;
                // Advice before the first touch: the zeroing below then
                // faults in huge pages rather than 4 KiB ones. The whole
                // huge pages inside the allocation are advised (madvise
                // wants a page-aligned start; `ptr` is huge-page aligned).
                let advised = need & !(HUGE_PAGE - 1);
                // SAFETY: `ptr..ptr + advised` lies inside our allocation;
                // the advice changes no contents. Its result is ignored: a
                // kernel without THP refuses it and nothing else changes.
                unsafe {
                    libc::madvise(ptr.as_ptr().cast(), advised, libc::MADV_HUGEPAGE);
                    core::ptr::write_bytes(ptr.as_ptr(), 0, need);
                }
                return Ok(Owned { ptr, layout });
            }
            let layout = Layout::from_size_align(need, ALIGN).map_err(|_| PlaceError::Capacity)?;
            // SAFETY: `need` is non-zero (a header at least).
            let ptr =
                NonNull::new(unsafe { alloc_zeroed(layout) }).ok_or(PlaceError::OutOfMemory)?;
            Ok(Owned { ptr, layout })
        }

        /// The first byte of the memory (for tests of the advice).
        #[cfg(test)]
        pub(crate) fn as_ptr(&self) -> *const u8 {
            self.ptr.as_ptr()
        }
    }

    impl Drop for Owned {
        fn drop(&mut self) {
            // SAFETY: allocated in `new` with this layout.
            unsafe { dealloc(self.ptr.as_ptr(), self.layout) }
        }
    }

    #[cfg(all(test, feature = "std", target_os = "linux"))]
    mod tests {
        use super::{Owned, HUGE_PAGE};
        use std::string::String;

        /// The `VmFlags` of the mapping of this process that holds `at`.
        fn vm_flags(at: usize) -> Option<String> {
            let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
            let mut inside = false;
            for line in smaps.lines() {
                if let Some((range, _)) = line.split_once(' ') {
                    if let Some((lo, hi)) = range.split_once('-') {
                        if let (Ok(lo), Ok(hi)) =
                            (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
                        {
                            inside = lo <= at && at < hi;
                            continue;
                        }
                    }
                }
                if inside {
                    if let Some(flags) = line.strip_prefix("VmFlags:") {
                        return Some(flags.into());
                    }
                }
            }
            None
        }

        #[test]
        fn a_table_of_many_huge_pages_is_advised_huge_and_zeroed() {
            if std::fs::metadata("/sys/kernel/mm/transparent_hugepage/enabled").is_err() {
                return; // a kernel without THP: the advice is refused, by design
            }
            // 1M slots: about 20 MiB.
            let (owned, table) = Owned::new(1 << 20).unwrap();
            let at = owned.as_ptr() as usize;
            assert_eq!(at % HUGE_PAGE, 0, "huge-page aligned");
            let flags = vm_flags(at).expect("the table's mapping in /proc/self/smaps");
            assert!(
                flags.split_whitespace().any(|f| f == "hg"),
                "VmFlags:{flags}"
            );
            let zero = table
                .buckets
                .iter()
                .flat_map(|b| &b.0)
                .all(|s| s.load(core::sync::atomic::Ordering::Relaxed) == 0);
            assert!(zero, "zeroed");
            // `table` (a `Copy` view) is not used past here; `owned` goes last.
            drop(owned);
        }

        #[test]
        fn a_small_table_is_not_aligned_to_a_huge_page() {
            let (owned, _table) = Owned::new(1024).unwrap();
            assert_eq!(owned.layout.align(), super::super::ALIGN);
        }
    }
}
