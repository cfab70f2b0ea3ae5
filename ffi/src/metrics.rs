//! Prometheus metrics of one or more tables, in the text exposition format.

use ratecard_core::metrics::{self, MetricsError, MAX_ZONES};
use ratecard_core::Limiter;

use crate::boundary::{
    boundary, bytes, bytes_mut, handle, ratecard_status, read_nth, write,
    RATECARD_BUFFER_TOO_SHORT, RATECARD_INVALID_ARGUMENT, RATECARD_OK,
};
use crate::limiter::ratecard_limiter;

/// One table in a metrics page: a handle and the `zone` label its samples
/// carry.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ratecard_metrics_zone {
    /// The handle.
    pub limiter: *const ratecard_limiter,
    /// The zone's name, UTF-8 (escaped as the format requires).
    pub name: *const u8,
    /// Length of `name`.
    pub name_len: usize,
}

/// Write the counters of `zones_len` tables (at most 32) into `buf`, in
/// Prometheus' text exposition format (Content-Type
/// `text/plain; version=0.0.4`): decisions by rule and outcome, inserts,
/// evictions (in debt apart), table size and occupancy, and the Redis
/// mode's round trips, errors, fallbacks and cached denials. Labels are
/// zones, rules and outcomes, never subjects. Counters only grow while a
/// table lives and are exact when no decision is in flight. Occupancy is a
/// scan of each table: call this for a scrape, not per request.
///
/// Returns RATECARD_OK with `*out_len` = bytes written;
/// RATECARD_BUFFER_TOO_SHORT with `*out_len` = bytes needed, the buffer
/// untouched; RATECARD_NULL_ARGUMENT; RATECARD_INVALID_ARGUMENT (more than
/// 32 zones, a name that is not UTF-8, a misaligned handle).
#[no_mangle]
pub unsafe extern "C" fn ratecard_write_metrics(
    zones: *const ratecard_metrics_zone,
    zones_len: usize,
    buf: *mut u8,
    buf_len: usize,
    out_len: *mut usize,
) -> ratecard_status {
    boundary! {
        nonnull: out_len;
        {
            if zones_len > MAX_ZONES || (zones.is_null() && zones_len > 0) {
                return RATECARD_INVALID_ARGUMENT;
            }
            // A scrape, not a decision: a small allocation is fine here.
            let mut list: Vec<(&str, &Limiter<'static>)> = Vec::with_capacity(zones_len);
            for i in 0..zones_len {
                // SAFETY: `zones_len` readable zones (the caller's contract).
                let Some(z) = (unsafe { read_nth(zones, zones_len, i) }) else {
                    return RATECARD_INVALID_ARGUMENT;
                };
                // SAFETY: a live handle (the caller's contract).
                let l = match unsafe { handle(z.limiter) } {
                    Ok(l) => l,
                    Err(status) => return status,
                };
                // SAFETY: the caller's contract for the name.
                let name = match unsafe { bytes(z.name, z.name_len) }.map(std::str::from_utf8) {
                    Some(Ok(name)) => name,
                    _ => return RATECARD_INVALID_ARGUMENT,
                };
                list.push((name, l.get()));
            }
            // SAFETY: the caller's contract for `buf`.
            let Some(out) = (unsafe { bytes_mut(buf, buf_len) }) else {
                return RATECARD_INVALID_ARGUMENT;
            };
            let (status, n) = match metrics::write(&list, out) {
                Ok(n) => (RATECARD_OK, n),
                Err(MetricsError::BufferTooShort(n)) => (RATECARD_BUFFER_TOO_SHORT, n),
                Err(MetricsError::TooManyZones) => return RATECARD_INVALID_ARGUMENT,
            };
            // SAFETY: `out_len` is not NULL.
            unsafe { write(out_len, n) };
            status
        }
    }
}
