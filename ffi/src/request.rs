//! Requests and decisions: check, peek, the generic keyed check, reset.

use std::mem::offset_of;

use ratecard_core::{Api, Decision, Nanos, Request, NO_RULE};

use crate::boundary::{
    boundary, bytes, ratecard_status, status_of, write, RATECARD_INVALID_ARGUMENT, RATECARD_OK,
    RATECARD_UNKNOWN_API,
};
use crate::limiter::ratecard_limiter;

/// ratecard_request.api: the Frontend API, keyed by client IP.
pub const RATECARD_API_FRONTEND: u32 = 1;
/// ratecard_request.api: the Backend API, keyed by secret key (or tenant).
pub const RATECARD_API_BACKEND: u32 = 2;
/// ratecard_decision.rule of a request that matched no rule.
pub const RATECARD_NO_RULE: u32 = u32::MAX;

const _: () = assert!(RATECARD_NO_RULE == NO_RULE);

/// One request to decide. Every byte string is a pointer and a length, not
/// NUL-terminated, not required to be UTF-8; `(NULL, 0)` is empty.
///
/// Frozen layout: later inputs come with new functions, never by changing
/// this struct.
#[repr(C)]
pub struct ratecard_request {
    /// RATECARD_API_FRONTEND or RATECARD_API_BACKEND.
    pub api: u32,
    /// The HTTP method, any case.
    pub method: *const u8,
    /// Length of `method`.
    pub method_len: usize,
    /// The request target's path; may carry a query string.
    pub path: *const u8,
    /// Length of `path`.
    pub path_len: usize,
    /// The client IP in network order: 4 or 16 bytes (IPv4-mapped IPv6 is
    /// the IPv4 client), or empty; see ratecard_ip_parse().
    pub client_ip: *const u8,
    /// Length of `client_ip`: 0, 4 or 16.
    pub client_ip_len: usize,
    /// The secret key, raw or as an Authorization value ("Bearer sk_...").
    pub secret_key: *const u8,
    /// Length of `secret_key`.
    pub secret_key_len: usize,
    /// Optional namespace: a Frontend subject is tenant + IP; on the Backend
    /// the tenant names the instance in place of the secret key.
    pub tenant: *const u8,
    /// Length of `tenant`.
    pub tenant_len: usize,
    /// Units this request costs; 0 means 1.
    pub cost: u32,
}

/// The answer for one request.
///
/// Written by the library: `reserved` words are zeroed. When passed back to
/// the response writers, `reserved` is ignored.
#[repr(C)]
pub struct ratecard_decision {
    /// Send the request on (always true on a dry-run handle).
    pub allowed: bool,
    /// An unlimited rule matched (GET /v1/jwks): nothing counted or stored.
    pub exempt: bool,
    /// Dry run: the request would have been denied.
    pub dry_run_denied: bool,
    /// The cost exceeds the binding rule's burst: no retry helps.
    pub never_fits: bool,
    /// The binding rule (see ratecard_rule_name()), or RATECARD_NO_RULE.
    pub rule: u32,
    /// The binding rule's limit.
    pub limit: u32,
    /// Units left in the binding rule (after this request, if allowed).
    pub remaining: u32,
    /// Nanoseconds until the binding rule is fully replenished.
    pub reset_ns: u64,
    /// On denial, nanoseconds until the request would be allowed.
    pub retry_after_ns: u64,
    /// The Retry-After value in seconds; 0 when allowed or never_fits (a
    /// dry-run denial fills it).
    pub retry_after_secs: u32,
    /// Bit i set: rule i matched (for RateLimit-Policy).
    pub matched: u64,
    /// Zero.
    pub reserved: [u64; 4],
}

/// `ratecard_decision` as read back from C: bytes instead of `bool`.
#[repr(C)]
struct DecisionBits {
    allowed: u8,
    exempt: u8,
    dry_run_denied: u8,
    never_fits: u8,
    rule: u32,
    limit: u32,
    remaining: u32,
    reset_ns: u64,
    retry_after_ns: u64,
    retry_after_secs: u32,
    matched: u64,
    reserved: [u64; 4],
}

const _: () = {
    assert!(size_of::<DecisionBits>() == size_of::<ratecard_decision>());
    assert!(align_of::<DecisionBits>() == align_of::<ratecard_decision>());
    assert!(offset_of!(DecisionBits, never_fits) == offset_of!(ratecard_decision, never_fits));
    assert!(offset_of!(DecisionBits, reset_ns) == offset_of!(ratecard_decision, reset_ns));
    assert!(offset_of!(DecisionBits, matched) == offset_of!(ratecard_decision, matched));
};

impl ratecard_decision {
    pub(crate) fn from_core(d: &Decision) -> ratecard_decision {
        ratecard_decision {
            allowed: d.allowed,
            exempt: d.exempt,
            dry_run_denied: d.dry_run_denied,
            never_fits: d.never_fits,
            rule: d.rule,
            limit: d.limit,
            remaining: d.remaining,
            reset_ns: d.reset.0,
            retry_after_ns: d.retry_after.0,
            retry_after_secs: d.retry_after_secs,
            matched: d.matched,
            reserved: [0; 4],
        }
    }

    /// Read a decision the caller hands back.
    ///
    /// # Safety
    /// `d` must point to a readable `ratecard_decision`.
    pub(crate) unsafe fn read(d: *const ratecard_decision) -> Decision {
        // SAFETY: readable (caller); every field of DecisionBits is valid
        // for any bit pattern, and the layouts match (asserted).
        let b = unsafe { (d as *const DecisionBits).read_unaligned() };
        Decision {
            allowed: b.allowed != 0,
            exempt: b.exempt != 0,
            dry_run_denied: b.dry_run_denied != 0,
            never_fits: b.never_fits != 0,
            rule: b.rule,
            limit: b.limit,
            remaining: b.remaining,
            reset: Nanos(b.reset_ns),
            retry_after: Nanos(b.retry_after_ns),
            retry_after_secs: b.retry_after_secs,
            matched: b.matched,
        }
    }
}

/// The core request for a C request.
///
/// # Safety
/// Every non-NULL pointer in `r` must be valid for reads of its length for `'a`.
unsafe fn request_of(r: &ratecard_request) -> Result<Request<'_>, ratecard_status> {
    // SAFETY (each): the caller's contract for the request's byte strings.
    let method = unsafe { bytes(r.method, r.method_len) };
    let path = unsafe { bytes(r.path, r.path_len) };
    let client_ip = unsafe { bytes(r.client_ip, r.client_ip_len) };
    let secret_key = unsafe { bytes(r.secret_key, r.secret_key_len) };
    let tenant = unsafe { bytes(r.tenant, r.tenant_len) };
    match (method, path, client_ip, secret_key, tenant) {
        (Some(method), Some(path), Some(client_ip), Some(secret_key), Some(tenant)) => {
            Ok(Request {
                api: Api::from_u32(r.api).ok_or(RATECARD_UNKNOWN_API)?,
                method,
                path,
                client_ip,
                secret_key,
                tenant,
                cost: r.cost,
            })
        }
        _ => Err(RATECARD_INVALID_ARGUMENT),
    }
}

/// Deliver a decision through `out`.
///
/// # Safety
/// `out` must be valid for a write of a `ratecard_decision`.
unsafe fn deliver(
    d: Result<Decision, ratecard_core::Error>,
    out: *mut ratecard_decision,
) -> ratecard_status {
    match d {
        Ok(d) => {
            // SAFETY: forwarded.
            unsafe { write(out, ratecard_decision::from_core(&d)) };
            RATECARD_OK
        }
        Err(e) => status_of(e),
    }
}

/// Decide `request` at `now_ns` (CLOCK_MONOTONIC nanoseconds, shared by
/// every user of the table; see ratecard_now_ns()), charging every matched
/// rule if it is allowed. A request is allowed only if every rule it
/// matches allows; a denied one consumes nothing. A request that matches no
/// rule is allowed with `rule` = RATECARD_NO_RULE.
///
/// Thread-safe; lock-free; does not allocate.
///
/// Returns RATECARD_OK and fills `*out`; or RATECARD_NULL_ARGUMENT,
/// RATECARD_INVALID_ARGUMENT (a length without a pointer),
/// RATECARD_UNKNOWN_API, RATECARD_INVALID_IP, RATECARD_MISSING_SUBJECT.
/// A host should fail closed (answer 429 or 500) on an error unless
/// configured otherwise.
#[no_mangle]
pub unsafe extern "C" fn ratecard_check(
    limiter: *const ratecard_limiter,
    request: *const ratecard_request,
    now_ns: u64,
    out: *mut ratecard_decision,
) -> ratecard_status {
    boundary! {
        nonnull: limiter, request, out;
        {
            // SAFETY: live handle and readable request (the caller's contract).
            let (l, r) = unsafe { (&*limiter, &*request) };
            // SAFETY: the request's byte strings (the caller's contract).
            match unsafe { request_of(r) } {
                // SAFETY: `out` is not NULL.
                Ok(req) => unsafe { deliver(l.get().check(&req, Nanos(now_ns)), out) },
                Err(e) => e,
            }
        }
    }
}

/// The decision ratecard_check() would give, consuming nothing and counting
/// nothing. Same arguments and statuses.
#[no_mangle]
pub unsafe extern "C" fn ratecard_peek(
    limiter: *const ratecard_limiter,
    request: *const ratecard_request,
    now_ns: u64,
    out: *mut ratecard_decision,
) -> ratecard_status {
    boundary! {
        nonnull: limiter, request, out;
        {
            // SAFETY: live handle and readable request (the caller's contract).
            let (l, r) = unsafe { (&*limiter, &*request) };
            // SAFETY: the request's byte strings (the caller's contract).
            match unsafe { request_of(r) } {
                // SAFETY: `out` is not NULL.
                Ok(req) => unsafe { deliver(l.get().peek(&req, Nanos(now_ns)), out) },
                Err(e) => e,
            }
        }
    }
}

/// Generic check, for callers that classify requests themselves (an Envoy
/// descriptor, a job queue): charge `cost` units (0 means 1) of rule `rule`
/// to the opaque `key` (`key_len` bytes, any bytes, may be empty). The
/// rule's routes, API and scope are not consulted; its quota and algorithm
/// are. Keys of this call never meet the subjects of ratecard_check().
///
/// Returns RATECARD_OK and fills `*out`; or RATECARD_NULL_ARGUMENT,
/// RATECARD_INVALID_ARGUMENT, RATECARD_UNKNOWN_RULE.
#[no_mangle]
pub unsafe extern "C" fn ratecard_check_key(
    limiter: *const ratecard_limiter,
    rule: u32,
    key: *const u8,
    key_len: usize,
    cost: u32,
    now_ns: u64,
    out: *mut ratecard_decision,
) -> ratecard_status {
    boundary! {
        nonnull: limiter, out;
        bytes: key / key_len;
        {
            // SAFETY: a live handle (the caller's contract).
            let l = unsafe { &*limiter };
            let d = l.get().check_key(rule, key, cost, Nanos(now_ns));
            // SAFETY: `out` is not NULL.
            unsafe { deliver(d, out) }
        }
    }
}

/// The decision ratecard_check_key() would give, consuming nothing. Same
/// arguments and statuses.
#[no_mangle]
pub unsafe extern "C" fn ratecard_peek_key(
    limiter: *const ratecard_limiter,
    rule: u32,
    key: *const u8,
    key_len: usize,
    cost: u32,
    now_ns: u64,
    out: *mut ratecard_decision,
) -> ratecard_status {
    boundary! {
        nonnull: limiter, out;
        bytes: key / key_len;
        {
            // SAFETY: a live handle (the caller's contract).
            let l = unsafe { &*limiter };
            let d = l.get().peek_key(rule, key, cost, Nanos(now_ns));
            // SAFETY: `out` is not NULL.
            unsafe { deliver(d, out) }
        }
    }
}

/// Forget the state of every rule `request` matches, for its subject (for
/// example after a successful sign-in). `*cleared` is the number of slots
/// cleared (0 if none held state). `cost` is ignored.
///
/// Returns RATECARD_OK and sets `*cleared`; or the error statuses of
/// ratecard_check().
#[no_mangle]
pub unsafe extern "C" fn ratecard_reset(
    limiter: *const ratecard_limiter,
    request: *const ratecard_request,
    cleared: *mut u32,
) -> ratecard_status {
    boundary! {
        nonnull: limiter, request, cleared;
        {
            // SAFETY: live handle and readable request (the caller's contract).
            let (l, r) = unsafe { (&*limiter, &*request) };
            // SAFETY: the request's byte strings (the caller's contract).
            let n = match unsafe { request_of(r) } {
                Ok(req) => l.get().reset(&req).map_err(status_of),
                Err(e) => Err(e),
            };
            match n {
                Ok(n) => {
                    // SAFETY: `cleared` is not NULL.
                    unsafe { write(cleared, n) };
                    RATECARD_OK
                }
                Err(e) => e,
            }
        }
    }
}

/// Forget the state of rule `rule` for `key` (see ratecard_check_key()).
///
/// Returns RATECARD_OK and sets `*cleared` (0 or 1; 2 when a duplicate
/// slot a racing relocation left behind was cleared too); or
/// RATECARD_NULL_ARGUMENT, RATECARD_INVALID_ARGUMENT, RATECARD_UNKNOWN_RULE.
#[no_mangle]
pub unsafe extern "C" fn ratecard_reset_key(
    limiter: *const ratecard_limiter,
    rule: u32,
    key: *const u8,
    key_len: usize,
    cleared: *mut u32,
) -> ratecard_status {
    boundary! {
        nonnull: limiter, cleared;
        bytes: key / key_len;
        {
            // SAFETY: a live handle (the caller's contract).
            let l = unsafe { &*limiter };
            match l.get().reset_key(rule, key) {
                Ok(n) => {
                    // SAFETY: `cleared` is not NULL.
                    unsafe { write(cleared, n) };
                    RATECARD_OK
                }
                Err(e) => status_of(e),
            }
        }
    }
}
