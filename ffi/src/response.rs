//! What to send back (Retry-After, RateLimit-Policy, RateLimit, Clerk's 429
//! body) written into caller buffers; client IP parsing; the clock.

use std::net::IpAddr;

use ratecard_core::decision::write_429_body;

use crate::boundary::{
    boundary, bytes_mut, ratecard_status, write, RATECARD_BUFFER_TOO_SHORT,
    RATECARD_CLOCK_UNAVAILABLE, RATECARD_INVALID_ARGUMENT, RATECARD_INVALID_IP_TEXT, RATECARD_OK,
};
use crate::limiter::ratecard_limiter;
use crate::request::ratecard_decision;

/// Run a core writer on the caller's buffer and report the length.
///
/// # Safety
/// A non-NULL `buf` must be valid for writes of `buf_len` bytes; `out_len`
/// must be valid for a write.
unsafe fn emit(
    buf: *mut u8,
    buf_len: usize,
    out_len: *mut usize,
    f: impl FnOnce(&mut [u8]) -> Result<usize, usize>,
) -> ratecard_status {
    // SAFETY: forwarded.
    let Some(out) = (unsafe { bytes_mut(buf, buf_len) }) else {
        return RATECARD_INVALID_ARGUMENT;
    };
    let (status, n) = match f(out) {
        Ok(n) => (RATECARD_OK, n),
        Err(needed) => (RATECARD_BUFFER_TOO_SHORT, needed),
    };
    // SAFETY: forwarded.
    unsafe { write(out_len, n) };
    status
}

/// Write the Retry-After value for `decision` (e.g. `2`: the value only, no
/// field name, no NUL) into `buf`. Writes nothing (`*out_len` = 0) when the
/// decision carries none: allowed, or a cost that never fits.
///
/// `(NULL, 0)` is an empty buffer (a way to ask for the length). Returns
/// RATECARD_OK with `*out_len` = bytes written; RATECARD_BUFFER_TOO_SHORT
/// with `*out_len` = bytes needed and the buffer untouched;
/// RATECARD_NULL_ARGUMENT; RATECARD_INVALID_ARGUMENT (`buf` NULL, `buf_len` > 0).
#[no_mangle]
pub unsafe extern "C" fn ratecard_write_retry_after(
    decision: *const ratecard_decision,
    buf: *mut u8,
    buf_len: usize,
    out_len: *mut usize,
) -> ratecard_status {
    boundary! {
        nonnull: decision, out_len;
        {
            // SAFETY: a readable decision (the caller's contract).
            let d = unsafe { ratecard_decision::read(decision) };
            // SAFETY: the caller's contract for `buf`; `out_len` is not NULL.
            unsafe { emit(buf, buf_len, out_len, |out| d.write_retry_after(out)) }
        }
    }
}

/// Write the RateLimit-Policy value for `decision` (every limited rule the
/// request matched, e.g. `"fapi.sign_ins.create";q=5;w=10`; value only) into
/// `buf`. Empty when no limited rule matched (exempt or unmatched).
/// `decision` must come from this limiter's table.
///
/// Statuses and buffer rules as ratecard_write_retry_after().
#[no_mangle]
pub unsafe extern "C" fn ratecard_write_ratelimit_policy(
    limiter: *const ratecard_limiter,
    decision: *const ratecard_decision,
    buf: *mut u8,
    buf_len: usize,
    out_len: *mut usize,
) -> ratecard_status {
    boundary! {
        nonnull: limiter, decision, out_len;
        {
            // SAFETY: a live handle and a readable decision (the caller's contract).
            let (l, d) = unsafe { (&*limiter, ratecard_decision::read(decision)) };
            let rules = l.get().rules();
            // SAFETY: the caller's contract for `buf`; `out_len` is not NULL.
            unsafe { emit(buf, buf_len, out_len, |out| d.write_ratelimit_policy(rules, out)) }
        }
    }
}

/// Write the RateLimit value for the decision's binding rule (e.g.
/// `"fapi.sign_ins.create";r=4;t=2`; value only) into `buf`. Empty for
/// exempt and unmatched requests.
///
/// Statuses and buffer rules as ratecard_write_retry_after().
#[no_mangle]
pub unsafe extern "C" fn ratecard_write_ratelimit(
    limiter: *const ratecard_limiter,
    decision: *const ratecard_decision,
    buf: *mut u8,
    buf_len: usize,
    out_len: *mut usize,
) -> ratecard_status {
    boundary! {
        nonnull: limiter, decision, out_len;
        {
            // SAFETY: a live handle and a readable decision (the caller's contract).
            let (l, d) = unsafe { (&*limiter, ratecard_decision::read(decision)) };
            let rules = l.get().rules();
            // SAFETY: the caller's contract for `buf`; `out_len` is not NULL.
            unsafe { emit(buf, buf_len, out_len, |out| d.write_ratelimit(rules, out)) }
        }
    }
}

/// Write Clerk's 429 response body (JSON, 129 bytes) into `buf`.
///
/// Statuses and buffer rules as ratecard_write_retry_after().
#[no_mangle]
pub unsafe extern "C" fn ratecard_write_429_body(
    buf: *mut u8,
    buf_len: usize,
    out_len: *mut usize,
) -> ratecard_status {
    boundary! {
        nonnull: out_len;
        {
            // SAFETY: the caller's contract for `buf`; `out_len` is not NULL.
            unsafe { emit(buf, buf_len, out_len, write_429_body) }
        }
    }
}

/// Parse a textual client IP (`text`, `len` bytes, no NUL needed) into the
/// bytes ratecard_request.client_ip takes: IPv4 dotted quad -> 4 bytes;
/// IPv6 -> 16 bytes, except IPv4-mapped (`::ffff:1.2.3.4`) -> the 4 bytes of
/// the IPv4 client. Surrounding ASCII whitespace and one pair of brackets
/// (`[::1]`) are accepted; ports and zone ids are not.
///
/// `out` must have room for 16 bytes. Returns RATECARD_OK, writing 4 or 16
/// bytes to `out` and that count to `*out_len`; or RATECARD_NULL_ARGUMENT,
/// RATECARD_INVALID_ARGUMENT, RATECARD_INVALID_IP_TEXT.
#[no_mangle]
pub unsafe extern "C" fn ratecard_ip_parse(
    text: *const u8,
    len: usize,
    out: *mut u8,
    out_len: *mut usize,
) -> ratecard_status {
    boundary! {
        nonnull: out, out_len;
        bytes: text / len;
        {
            let mut t = text.trim_ascii();
            if let Some(inner) = t.strip_prefix(b"[").and_then(|r| r.strip_suffix(b"]")) {
                t = inner;
            }
            let parsed = std::str::from_utf8(t).ok().and_then(|s| s.parse::<IpAddr>().ok());
            let mut buf = [0u8; 16];
            let n = match parsed {
                Some(IpAddr::V4(v4)) => {
                    buf[..4].copy_from_slice(&v4.octets());
                    4
                }
                Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                    Some(v4) => {
                        buf[..4].copy_from_slice(&v4.octets());
                        4
                    }
                    None => {
                        buf = v6.octets();
                        16
                    }
                },
                None => return RATECARD_INVALID_IP_TEXT,
            };
            // SAFETY: `out` has room for 16 bytes (the caller's contract),
            // `out_len` is not NULL.
            unsafe {
                std::ptr::copy_nonoverlapping(buf.as_ptr(), out, n);
                write(out_len, n);
            }
            RATECARD_OK
        }
    }
}

/// The current CLOCK_MONOTONIC time in nanoseconds: the `now_ns` to pass to
/// ratecard_check(). Every process sharing one table must use the same
/// clock (CLOCK_MONOTONIC is system-wide).
///
/// Returns RATECARD_OK and sets `*out`, or RATECARD_NULL_ARGUMENT,
/// RATECARD_CLOCK_UNAVAILABLE.
#[no_mangle]
pub unsafe extern "C" fn ratecard_now_ns(out: *mut u64) -> ratecard_status {
    boundary! {
        nonnull: out;
        {
            let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: `ts` is a valid timespec to write.
            if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
                return RATECARD_CLOCK_UNAVAILABLE;
            }
            let ns = (ts.tv_sec as u64)
                .saturating_mul(1_000_000_000)
                .saturating_add(ts.tv_nsec as u64);
            // SAFETY: `out` is not NULL.
            unsafe { write(out, ns) };
            RATECARD_OK
        }
    }
}
