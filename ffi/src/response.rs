//! What to send back (Retry-After, RateLimit-Policy, RateLimit, Clerk's 429
//! body) written into caller buffers; client IP parsing; the clock.

use std::net::IpAddr;

use ratecard_core::{write_429_body, FAIL_CLOSED_STATUS, LIMITED_STATUS};

use crate::boundary::{
    boundary, bytes_mut, ratecard_status, write, RATECARD_BUFFER_TOO_SHORT,
    RATECARD_CLOCK_UNAVAILABLE, RATECARD_INVALID_ARGUMENT, RATECARD_INVALID_IP_TEXT, RATECARD_OK,
};
use crate::limiter::ratecard_limiter;
use crate::request::ratecard_decision;

/// The HTTP status every host answers with when it fails closed (the
/// limiter could not decide: an error status, a Redis that is down under
/// the fail-closed policy): 503 Service Unavailable, a transient condition
/// of the server that clients and load balancers retry. A 429 would blame
/// the client; a 500 says nothing about retrying.
pub const RATECARD_FAIL_CLOSED_STATUS: u16 = 503;
/// The HTTP status of an enforced denial (Clerk's).
pub const RATECARD_LIMITED_STATUS: u16 = 429;

const _: () = assert!(
    RATECARD_FAIL_CLOSED_STATUS == FAIL_CLOSED_STATUS && RATECARD_LIMITED_STATUS == LIMITED_STATUS
);

/// Where one response field sits in the caller's buffer.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct ratecard_field {
    /// Offset of the value in the buffer.
    pub offset: usize,
    /// Its length; 0 when the field is absent.
    pub len: usize,
}

/// What to send back for a decision, written by ratecard_write_response():
/// every value sits in the caller's buffer (no field name, no NUL).
#[repr(C)]
pub struct ratecard_response {
    /// RATECARD_LIMITED_STATUS (429) for an enforced denial; 0 when the
    /// request goes on (allowed, dry-run denial, exempt, unmatched).
    pub status: u32,
    /// The Retry-After value (denials a wait can cure).
    pub retry_after: ratecard_field,
    /// The RateLimit-Policy value (every limited rule the request matched).
    pub ratelimit_policy: ratecard_field,
    /// The RateLimit value (the binding rule).
    pub ratelimit: ratecard_field,
    /// Clerk's 429 JSON body, to send with Content-Type: application/json
    /// (enforced denials only).
    pub body: ratecard_field,
    /// Zero.
    pub reserved: [u64; 2],
}

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
        handle: limiter;
        nonnull: decision, out_len;
        {
            // SAFETY: a readable decision (the caller's contract).
            let d = unsafe { ratecard_decision::read(decision) };
            let rules = limiter.get().rules();
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
        handle: limiter;
        nonnull: decision, out_len;
        {
            // SAFETY: a readable decision (the caller's contract).
            let d = unsafe { ratecard_decision::read(decision) };
            let rules = limiter.get().rules();
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

/// Write everything a host sends back for `decision` into `buf`, and say
/// where each value went in `*out`: the status, Retry-After,
/// RateLimit-Policy, RateLimit and Clerk's 429 body. One call for every
/// HTTP host, so they all answer alike:
/// - `status` 429: answer with it, the three fields (each only if its
///   length is not 0) and the body as `application/json`;
/// - `status` 0: let the request go on; RateLimit-Policy and RateLimit may
///   be added to the upstream's response (empty for exempt and unmatched
///   requests);
/// - a check that returned an error: no decision; answer
///   RATECARD_FAIL_CLOSED_STATUS (503) unless configured to fail open.
///
/// Returns RATECARD_OK with `*out` filled and `*out_len` = bytes written;
/// RATECARD_BUFFER_TOO_SHORT with `*out_len` = bytes needed (at most 1 KiB
/// for Clerk's table), `*out` and the buffer untouched; or
/// RATECARD_NULL_ARGUMENT, RATECARD_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn ratecard_write_response(
    limiter: *const ratecard_limiter,
    decision: *const ratecard_decision,
    buf: *mut u8,
    buf_len: usize,
    out: *mut ratecard_response,
    out_len: *mut usize,
) -> ratecard_status {
    boundary! {
        handle: limiter;
        nonnull: decision, out, out_len;
        {
            // SAFETY: a readable decision (the caller's contract).
            let d = unsafe { ratecard_decision::read(decision) };
            // SAFETY: the caller's contract for `buf`.
            let Some(dst) = (unsafe { bytes_mut(buf, buf_len) }) else {
                return RATECARD_INVALID_ARGUMENT;
            };
            match d.write_response(limiter.get().rules(), dst) {
                Ok(r) => {
                    let field = |range: std::ops::Range<usize>| ratecard_field {
                        offset: range.start,
                        len: range.len(),
                    };
                    let n = r.body.end.max(r.ratelimit.end).max(r.ratelimit_policy.end).max(r.retry_after.end);
                    let response = ratecard_response {
                        status: r.status as u32,
                        retry_after: field(r.retry_after),
                        ratelimit_policy: field(r.ratelimit_policy),
                        ratelimit: field(r.ratelimit),
                        body: field(r.body),
                        reserved: [0; 2],
                    };
                    // SAFETY: neither is NULL.
                    unsafe {
                        write(out, response);
                        write(out_len, n);
                    }
                    RATECARD_OK
                }
                Err(needed) => {
                    // SAFETY: `out_len` is not NULL.
                    unsafe { write(out_len, needed) };
                    RATECARD_BUFFER_TOO_SHORT
                }
            }
        }
    }
}

/// Parse a textual client IP (`text`, `len` bytes, no NUL needed) into the
/// bytes ratecard_request.client_ip takes: IPv4 dotted quad -> 4 bytes;
/// IPv6 -> 16 bytes, except IPv4-mapped (`::ffff:1.2.3.4`) -> the 4 bytes of
/// the IPv4 client. Surrounding ASCII whitespace and one pair of brackets
/// (`[::1]`) are accepted; ports and zone ids are not.
///
/// `out` has room for `out_cap` bytes (16 always suffice). Returns
/// RATECARD_OK, writing 4 or 16 bytes to `out` and that count to
/// `*out_len`; RATECARD_BUFFER_TOO_SHORT with `*out_len` = the bytes
/// needed and `out` untouched; or RATECARD_NULL_ARGUMENT,
/// RATECARD_INVALID_ARGUMENT, RATECARD_INVALID_IP_TEXT.
#[no_mangle]
pub unsafe extern "C" fn ratecard_ip_parse(
    text: *const u8,
    len: usize,
    out: *mut u8,
    out_cap: usize,
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
            if out_cap < n {
                // SAFETY: `out_len` is not NULL.
                unsafe { write(out_len, n) };
                return RATECARD_BUFFER_TOO_SHORT;
            }
            // SAFETY: `out` has room for `out_cap` >= n bytes (the caller's
            // contract), `out_len` is not NULL.
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
