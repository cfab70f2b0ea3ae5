//! The boundary: status codes, the one macro every export is wrapped in,
//! and the checked conversions from C pointers to Rust values.

use std::ffi::c_char;

use ratecard_core::{CheckError, SetupError};

use crate::limiter::ratecard_limiter;

/// The result of a call: `RATECARD_OK` (0) or one of the `RATECARD_*`
/// status codes below. Values are never reused; `ratecard_status_str()`
/// names each.
#[allow(non_camel_case_types)]
pub type ratecard_status = u32;

/// Success.
pub const RATECARD_OK: ratecard_status = 0;
/// A pointer the call needs was NULL.
pub const RATECARD_NULL_ARGUMENT: ratecard_status = 1;
/// A malformed argument: a length without a pointer (`(NULL, n > 0)`), or a
/// non-zero reserved field.
pub const RATECARD_INVALID_ARGUMENT: ratecard_status = 2;
/// A client IP that is not 0, 4 or 16 bytes.
pub const RATECARD_INVALID_IP: ratecard_status = 3;
/// A request whose `api` is not a `RATECARD_API_*` value.
pub const RATECARD_UNKNOWN_API: ratecard_status = 4;
/// A request matched a rule but lacks that rule's subject (a Frontend
/// request without a client IP, a Backend request with neither key, tenant
/// nor IP).
pub const RATECARD_MISSING_SUBJECT: ratecard_status = 5;
/// A rule index or name that is not in the limiter's rule table.
pub const RATECARD_UNKNOWN_RULE: ratecard_status = 6;
/// A configuration value out of range (IPv6 prefix above 128, an unknown
/// policy, instance kind or algorithm, a seed that is not 16 bytes).
pub const RATECARD_INVALID_CONFIG: ratecard_status = 7;
/// A custom rule table that cannot be used (more than 64 rules, a bad name
/// or route pattern, an unknown method, api, scope, kind or algorithm, a
/// limited rule with a zero period, text that is not UTF-8).
pub const RATECARD_INVALID_RULES: ratecard_status = 8;
/// A capacity of 0 or above 2^28 slots.
pub const RATECARD_INVALID_CAPACITY: ratecard_status = 9;
/// The output buffer is too short; `*out_len` holds the length needed and
/// the buffer is untouched.
pub const RATECARD_BUFFER_TOO_SHORT: ratecard_status = 10;
/// Memory shorter than `ratecard_limiter_bytes()` of the capacity.
pub const RATECARD_MEMORY_TOO_SMALL: ratecard_status = 11;
/// Memory not aligned to 64 bytes.
pub const RATECARD_MISALIGNED: ratecard_status = 12;
/// Memory that does not hold a ratecard table (or one of another layout
/// version).
pub const RATECARD_NOT_A_TABLE: ratecard_status = 13;
/// A table header that fails its checksum or holds impossible values.
pub const RATECARD_CORRUPT: ratecard_status = 14;
/// A table whose initialisation has not finished.
pub const RATECARD_NOT_SEEDED: ratecard_status = 15;
/// The table was made with a different rule table.
pub const RATECARD_RULES_MISMATCH: ratecard_status = 16;
/// 128-bit compare-and-swap is not lock-free on this CPU, so a table cannot
/// be shared safely.
pub const RATECARD_NO_LOCK_FREE_CAS: ratecard_status = 17;
/// An allocation failed.
pub const RATECARD_OUT_OF_MEMORY: ratecard_status = 18;
/// The operating system could not supply a random seed.
pub const RATECARD_SEED_UNAVAILABLE: ratecard_status = 19;
/// Text that is not an IPv4 or IPv6 address.
pub const RATECARD_INVALID_IP_TEXT: ratecard_status = 20;
/// A bug inside the library was caught at the boundary; nothing was done.
pub const RATECARD_PANIC: ratecard_status = 21;
/// The monotonic clock could not be read.
pub const RATECARD_CLOCK_UNAVAILABLE: ratecard_status = 22;
/// A reply that is a proper prefix of the script's: read more bytes and
/// call again with all of them.
pub const RATECARD_REMOTE_INCOMPLETE: ratecard_status = 23;
/// Redis answered with an error (see ratecard_remote_reply.error): no
/// decision; answer under the host's policy.
pub const RATECARD_REMOTE_SERVER_ERROR: ratecard_status = 24;
/// A reply that is not the script's (another script under its name, a
/// proxy's answer, bytes that are not RESP): no decision.
pub const RATECARD_REMOTE_BAD_REPLY: ratecard_status = 25;
/// The request's rules count by different subjects, so their Redis keys
/// cannot share one Cluster slot (a custom table mixing client-IP and
/// instance rules in one API).
pub const RATECARD_MIXED_SUBJECTS: ratecard_status = 26;
/// A ratecard_remote_call this limiter did not prepare (or one that was
/// overwritten).
pub const RATECARD_INVALID_CALL: ratecard_status = 27;
/// The last status code this version defines.
pub const RATECARD_LAST_STATUS: ratecard_status = RATECARD_INVALID_CALL;

/// The status for a check error. Exhaustive on purpose: a new core error
/// must get its own status code before this crate builds again.
pub(crate) fn check_status(e: CheckError) -> ratecard_status {
    match e {
        CheckError::MissingSubject => RATECARD_MISSING_SUBJECT,
        CheckError::UnknownRule => RATECARD_UNKNOWN_RULE,
        CheckError::MixedSubjects => RATECARD_MIXED_SUBJECTS,
    }
}

/// The status for a setup error (exhaustive, as [`check_status`]).
pub(crate) fn setup_status(e: SetupError) -> ratecard_status {
    match e {
        SetupError::InvalidConfig => RATECARD_INVALID_CONFIG,
        SetupError::InvalidRules(_) => RATECARD_INVALID_RULES,
        SetupError::Capacity => RATECARD_INVALID_CAPACITY,
        SetupError::TooSmall => RATECARD_MEMORY_TOO_SMALL,
        SetupError::Misaligned => RATECARD_MISALIGNED,
        SetupError::Null => RATECARD_NULL_ARGUMENT,
        SetupError::NotATable => RATECARD_NOT_A_TABLE,
        SetupError::Corrupt => RATECARD_CORRUPT,
        SetupError::NotSeeded => RATECARD_NOT_SEEDED,
        SetupError::RulesMismatch => RATECARD_RULES_MISMATCH,
        SetupError::NoLockFreeCas => RATECARD_NO_LOCK_FREE_CAS,
        SetupError::OutOfMemory => RATECARD_OUT_OF_MEMORY,
        SetupError::SeedUnavailable => RATECARD_SEED_UNAVAILABLE,
    }
}

/// Static text for a status (also for unknown codes).
pub(crate) fn status_text(status: ratecard_status) -> &'static std::ffi::CStr {
    match status {
        RATECARD_OK => c"ok",
        RATECARD_NULL_ARGUMENT => c"null pointer argument",
        RATECARD_INVALID_ARGUMENT => {
            c"invalid argument: length without pointer or non-zero reserved field"
        }
        RATECARD_INVALID_IP => c"client IP is not 4 or 16 bytes",
        RATECARD_UNKNOWN_API => c"unknown api",
        RATECARD_MISSING_SUBJECT => c"request lacks the subject its rule needs",
        RATECARD_UNKNOWN_RULE => c"unknown rule",
        RATECARD_INVALID_CONFIG => c"configuration value out of range",
        RATECARD_INVALID_RULES => c"rule table is invalid",
        RATECARD_INVALID_CAPACITY => c"capacity is zero or above the maximum",
        RATECARD_BUFFER_TOO_SHORT => c"buffer too short",
        RATECARD_MEMORY_TOO_SMALL => c"memory is too small for the table",
        RATECARD_MISALIGNED => c"memory is not 64-byte aligned",
        RATECARD_NOT_A_TABLE => c"memory does not hold a ratecard table",
        RATECARD_CORRUPT => c"table header is corrupt",
        RATECARD_NOT_SEEDED => c"table is not initialised",
        RATECARD_RULES_MISMATCH => c"table was made with a different rule table",
        RATECARD_NO_LOCK_FREE_CAS => c"128-bit compare-and-swap is not lock-free on this CPU",
        RATECARD_OUT_OF_MEMORY => c"out of memory",
        RATECARD_SEED_UNAVAILABLE => c"no random seed available from the operating system",
        RATECARD_INVALID_IP_TEXT => c"not an IP address",
        RATECARD_PANIC => c"internal error caught at the library boundary",
        RATECARD_CLOCK_UNAVAILABLE => c"monotonic clock unavailable",
        RATECARD_REMOTE_INCOMPLETE => c"Redis reply incomplete: read more",
        RATECARD_REMOTE_SERVER_ERROR => c"Redis answered with an error",
        RATECARD_REMOTE_BAD_REPLY => c"Redis reply is not the script's",
        RATECARD_MIXED_SUBJECTS => c"the request's rules count by different subjects",
        RATECARD_INVALID_CALL => c"not a call this limiter prepared",
        _ => c"unknown status",
    }
}

/// What an export returns when the boundary refuses its arguments or
/// catches a panic.
pub(crate) trait Boundary {
    /// The value for a refused call with `status`.
    fn refused(status: ratecard_status) -> Self;
}

impl Boundary for ratecard_status {
    fn refused(status: ratecard_status) -> Self {
        status
    }
}

impl Boundary for *const c_char {
    fn refused(_: ratecard_status) -> Self {
        std::ptr::null()
    }
}

impl Boundary for *const u8 {
    fn refused(_: ratecard_status) -> Self {
        std::ptr::null()
    }
}

impl Boundary for usize {
    fn refused(_: ratecard_status) -> Self {
        0
    }
}

impl Boundary for () {
    fn refused(_: ratecard_status) {}
}

/// Wraps the body of every `extern "C"` function:
/// - `handle: l;` turns the `*const ratecard_limiter` named `l` into a
///   `&ratecard_limiter` of the same name: NULL returns
///   `RATECARD_NULL_ARGUMENT`, a pointer no handle can have (misaligned)
///   `RATECARD_INVALID_ARGUMENT`; the one place a handle is dereferenced;
/// - `nonnull: a, b;` returns `RATECARD_NULL_ARGUMENT` if any is NULL;
/// - `bytes: ptr / len;` turns a byte string into a `&[u8]` named `ptr`:
///   `(NULL, 0)` is empty, `(NULL, n > 0)` returns `RATECARD_INVALID_ARGUMENT`;
/// - a panic in the body returns `RATECARD_PANIC` (or NULL, 0, nothing)
///   instead of unwinding into C. Release builds abort on panic, so the
///   body must not panic at all; this is the second line of defence.
///
/// Non-status exports (pointers, sizes, `void`) return NULL, 0 or nothing
/// where a status would be returned.
macro_rules! boundary {
    (
        $(handle: $h:ident;)?
        $(nonnull: $($p:ident),+ ;)?
        $(bytes: $($b:ident / $blen:ident),+ ;)?
        $body:block
    ) => {{
        let result = ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| {
            $(
                let $h: &$crate::limiter::ratecard_limiter =
                    // SAFETY: a handle pointer the caller got from this
                    // library and has not freed (the header's contract).
                    match unsafe { $crate::boundary::handle($h) } {
                        Ok(h) => h,
                        Err(status) => return $crate::boundary::Boundary::refused(status),
                    };
            )?
            $($(
                if $p.is_null() {
                    return $crate::boundary::Boundary::refused(
                        $crate::boundary::RATECARD_NULL_ARGUMENT,
                    );
                }
            )+)?
            $($(
                // SAFETY: the caller passes `len` readable bytes at `ptr`
                // (the header's contract for every byte string).
                let $b = match unsafe { $crate::boundary::bytes($b, $blen) } {
                    Some(b) => b,
                    None => {
                        return $crate::boundary::Boundary::refused(
                            $crate::boundary::RATECARD_INVALID_ARGUMENT,
                        )
                    }
                };
            )+)?
            $body
        }));
        match result {
            Ok(v) => v,
            Err(_) => $crate::boundary::Boundary::refused($crate::boundary::RATECARD_PANIC),
        }
    }};
}
pub(crate) use boundary;

/// A handle pointer as a reference: NULL and misaligned pointers refused.
///
/// # Safety
/// A non-NULL, aligned `p` must be a live handle from
/// ratecard_limiter_new / _init / _attach / _attach_with (the header's
/// contract), not freed during `'a`.
pub(crate) unsafe fn handle<'a>(
    p: *const ratecard_limiter,
) -> Result<&'a ratecard_limiter, ratecard_status> {
    if p.is_null() {
        return Err(RATECARD_NULL_ARGUMENT);
    }
    if !p.is_aligned() {
        return Err(RATECARD_INVALID_ARGUMENT);
    }
    // SAFETY: non-NULL and aligned (checked), live (the caller's contract).
    Ok(unsafe { &*p })
}

/// Read a struct the caller passes in, wherever it sits: C may hand over
/// a pointer with any alignment, so the value is copied byte-wise.
///
/// # Safety
/// `p` must be non-NULL and valid for reads of one `T`; every bit pattern
/// must be a valid `T` (plain integers and raw pointers only).
pub(crate) unsafe fn read_in<T: Copy>(p: *const T) -> T {
    // SAFETY: forwarded; unaligned reads accept any address.
    unsafe { p.read_unaligned() }
}

/// The `i`-th of `len` structs at `p`, read as [`read_in`] does; `None`
/// past the end.
///
/// # Safety
/// A non-NULL `p` must be valid for reads of `len` values of `T`, with
/// every bit pattern a valid `T`.
pub(crate) unsafe fn read_nth<T: Copy>(p: *const T, len: usize, i: usize) -> Option<T> {
    if p.is_null() || i >= len {
        return None;
    }
    // SAFETY: i < len values are readable at `p` (the caller's contract);
    // `wrapping_add` keeps pointer arithmetic defined.
    Some(unsafe { p.wrapping_add(i).read_unaligned() })
}

/// A C byte string as a slice: `(NULL, 0)` and `(p, 0)` are empty;
/// `(NULL, n > 0)` (and lengths no slice can have) are `None`.
///
/// # Safety
/// A non-NULL `ptr` must be valid for reads of `len` bytes for `'a`.
pub(crate) unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> Option<&'a [u8]> {
    // SAFETY: forwarded.
    unsafe { slice(ptr, len) }
}

/// A C array of `len` values as a slice, with the rules of [`bytes`];
/// `None` also when `ptr` is not aligned for `T` (the caller then reads it
/// element by element with [`read_nth`]).
///
/// # Safety
/// A non-NULL `ptr` must be valid for reads of `len` values of `T` for `'a`.
pub(crate) unsafe fn slice<'a, T>(ptr: *const T, len: usize) -> Option<&'a [T]> {
    if len == 0 {
        return Some(&[]);
    }
    if ptr.is_null()
        || !ptr.is_aligned()
        || len
            > (isize::MAX as usize)
                .checked_div(std::mem::size_of::<T>())
                .unwrap_or(usize::MAX)
    {
        return None;
    }
    // SAFETY: non-NULL, aligned, a length a slice can have, validity from
    // the caller.
    Some(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A C output buffer as a mutable slice, with the rules of [`bytes`].
///
/// # Safety
/// A non-NULL `ptr` must be valid for writes of `len` bytes for `'a`, and
/// nothing else may access them meanwhile.
pub(crate) unsafe fn bytes_mut<'a>(ptr: *mut u8, len: usize) -> Option<&'a mut [u8]> {
    if len == 0 {
        return Some(&mut []);
    }
    if ptr.is_null() || len > isize::MAX as usize {
        return None;
    }
    // SAFETY: non-NULL, a length a slice can have, validity from the caller.
    Some(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

/// Write `value` through an output pointer the boundary checked for NULL.
///
/// # Safety
/// `out` must be valid for a write of `T` (it may be unaligned).
pub(crate) unsafe fn write<T>(out: *mut T, value: T) {
    // SAFETY: forwarded; unaligned writes accept any address.
    unsafe { out.write_unaligned(value) }
}

/// The library's version, e.g. "0.1.0": static, NUL-terminated.
#[no_mangle]
pub extern "C" fn ratecard_version() -> *const c_char {
    boundary! {
        {
            concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
        }
    }
}

/// Static, NUL-terminated text naming `status`; "unknown status" for a code
/// this version does not know. Never NULL.
#[no_mangle]
pub extern "C" fn ratecard_status_str(status: ratecard_status) -> *const c_char {
    boundary! {
        {
            status_text(status).as_ptr()
        }
    }
}

#[cfg(test)]
#[allow(clippy::panic, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use super::*;

    fn export(p: *const u8, b: *const u8, b_len: usize, fail: bool) -> ratecard_status {
        boundary! {
            nonnull: p;
            bytes: b / b_len;
            {
                if fail {
                    panic!("a bug");
                }
                if b.is_empty() { RATECARD_OK } else { RATECARD_BUFFER_TOO_SHORT }
            }
        }
    }

    fn name(fail: bool) -> *const c_char {
        boundary! {
            {
                if fail {
                    panic!("a bug");
                }
                c"x".as_ptr()
            }
        }
    }

    #[test]
    fn a_panic_in_the_body_is_caught_and_reported() {
        let x = 0u8;
        assert_eq!(export(&x, std::ptr::null(), 0, true), RATECARD_PANIC);
        assert!(name(true).is_null());
        assert!(!name(false).is_null());
    }

    #[test]
    fn nulls_then_lengths_without_pointers_are_refused_before_the_body() {
        let x = 0u8;
        let null = std::ptr::null();
        assert_eq!(export(null, null, 0, true), RATECARD_NULL_ARGUMENT);
        assert_eq!(export(&x, null, 3, true), RATECARD_INVALID_ARGUMENT);
        assert_eq!(export(&x, null, 0, false), RATECARD_OK);
        assert_eq!(export(&x, &x, 0, false), RATECARD_OK);
        assert_eq!(export(&x, &x, 1, false), RATECARD_BUFFER_TOO_SHORT);
    }

    #[test]
    fn lengths_no_slice_can_have_are_refused() {
        let x = 0u64;
        // SAFETY: refused before any read.
        unsafe {
            assert!(bytes(&0u8, usize::MAX).is_none());
            assert!(slice(&x, usize::MAX / 4).is_none());
            assert!(bytes_mut(std::ptr::null_mut(), 1).is_none());
            assert_eq!(bytes_mut(std::ptr::null_mut(), 0).map(|b| b.len()), Some(0));
        }
    }

    #[test]
    fn every_status_has_its_own_text() {
        let texts: Vec<_> = (RATECARD_OK..=RATECARD_LAST_STATUS)
            .map(status_text)
            .collect();
        for (i, t) in texts.iter().enumerate() {
            assert_ne!(*t, c"unknown status");
            assert!(!texts[..i].contains(t), "{t:?}");
        }
        assert_eq!(status_text(RATECARD_LAST_STATUS + 1), c"unknown status");
    }
}
