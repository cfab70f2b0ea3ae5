//! Requests and decisions: check, peek, the generic keyed check, reset.

use std::mem::offset_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ratecard_core::{Api, CheckError, Decision, Nanos, Request, RuleSet, Verdict};

use crate::boundary::{
    boundary, bytes, check_status, ratecard_status, read_in, write, RATECARD_INVALID_ARGUMENT,
    RATECARD_INVALID_IP, RATECARD_OK, RATECARD_UNKNOWN_API, RATECARD_UNKNOWN_RULE,
};
use crate::limiter::{ratecard_limiter, rule_id};

/// ratecard_request.api: the Frontend API, keyed by client IP.
pub const RATECARD_API_FRONTEND: u32 = 1;
/// ratecard_request.api: the Backend API, keyed by secret key (or tenant).
pub const RATECARD_API_BACKEND: u32 = 2;
/// ratecard_decision.rule of a request that matched no rule.
pub const RATECARD_NO_RULE: u32 = u32::MAX;

/// One request to decide. Every byte string is a pointer and a length, not
/// NUL-terminated, not required to be UTF-8; `(NULL, 0)` is empty.
///
/// Frozen layout: later inputs come with new functions, never by changing
/// this struct. It may sit at any alignment.
#[repr(C)]
#[derive(Clone, Copy)]
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
#[derive(Clone, Copy)]
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
        let (exempt, never_fits, retry_after_ns) = match d.verdict {
            Verdict::Exempt => (true, false, 0),
            Verdict::NeverFits => (false, true, 0),
            Verdict::Limited { retry_after } => (false, false, retry_after.0),
            Verdict::Allowed | Verdict::Unmatched => (false, false, 0),
        };
        ratecard_decision {
            allowed: d.allowed(),
            exempt,
            dry_run_denied: d.dry_run,
            never_fits,
            rule: d.rule.map_or(RATECARD_NO_RULE, |r| r.0 as u32),
            limit: d.limit,
            remaining: d.remaining,
            reset_ns: d.reset.0,
            retry_after_ns,
            retry_after_secs: d.retry_after_secs().unwrap_or(0),
            matched: d.matched.0,
            reserved: [0; 4],
        }
    }

    /// Read a decision the caller hands back (any alignment; any bytes in
    /// its `bool` fields).
    ///
    /// # Safety
    /// `d` must point to a readable `ratecard_decision`.
    pub(crate) unsafe fn read(d: *const ratecard_decision) -> Decision {
        // SAFETY: readable (caller); every field of DecisionBits is valid
        // for any bit pattern, and the layouts match (asserted).
        let b = unsafe { read_in(d as *const DecisionBits) };
        let allowed = b.allowed != 0;
        let verdict = if b.exempt != 0 {
            Verdict::Exempt
        } else if b.rule == RATECARD_NO_RULE {
            Verdict::Unmatched
        } else if b.never_fits != 0 {
            Verdict::NeverFits
        } else if !allowed || b.dry_run_denied != 0 {
            Verdict::Limited {
                retry_after: Nanos(b.retry_after_ns),
            }
        } else {
            Verdict::Allowed
        };
        Decision {
            verdict,
            rule: rule_id(b.rule),
            limit: b.limit,
            remaining: b.remaining,
            reset: Nanos(b.reset_ns),
            matched: RuleSet(b.matched),
            dry_run: b.dry_run_denied != 0,
        }
    }
}

/// The core request for a C request; `Err` with the status why not.
///
/// # Safety
/// Every non-NULL pointer in `r` must be valid for reads of its length for `'a`.
pub(crate) unsafe fn request_of(r: &ratecard_request) -> Result<Request<'_>, ratecard_status> {
    // SAFETY: the caller's contract for the request's byte strings.
    let method = unsafe { bytes(r.method, r.method_len) };
    // SAFETY: as above.
    let path = unsafe { bytes(r.path, r.path_len) };
    // SAFETY: as above.
    let client_ip = unsafe { bytes(r.client_ip, r.client_ip_len) };
    // SAFETY: as above.
    let secret_key = unsafe { bytes(r.secret_key, r.secret_key_len) };
    // SAFETY: as above.
    let tenant = unsafe { bytes(r.tenant, r.tenant_len) };
    let (Some(method), Some(path), Some(client_ip), Some(secret_key), Some(tenant)) =
        (method, path, client_ip, secret_key, tenant)
    else {
        return Err(RATECARD_INVALID_ARGUMENT);
    };
    let api = Api::from_u32(r.api).ok_or(RATECARD_UNKNOWN_API)?;
    let client_ip = match client_ip.len() {
        0 => None,
        4 => <[u8; 4]>::try_from(client_ip)
            .ok()
            .map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        16 => <[u8; 16]>::try_from(client_ip)
            .ok()
            .map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        _ => return Err(RATECARD_INVALID_IP),
    };
    Ok(Request {
        api,
        method,
        path,
        client_ip,
        secret_key,
        tenant,
        cost: r.cost,
    })
}

/// Deliver a decision through `out`.
///
/// # Safety
/// `out` must be valid for a write of a `ratecard_decision`.
unsafe fn deliver(d: Result<Decision, CheckError>, out: *mut ratecard_decision) -> ratecard_status {
    match d {
        Ok(d) => {
            // SAFETY: forwarded.
            unsafe { write(out, ratecard_decision::from_core(&d)) };
            RATECARD_OK
        }
        Err(e) => check_status(e),
    }
}

/// The body of ratecard_check() and ratecard_peek().
///
/// # Safety
/// `request` must point to a readable request whose strings follow the
/// header's contract; `out` must be valid for a write.
unsafe fn decide(
    l: &ratecard_limiter,
    request: *const ratecard_request,
    now_ns: u64,
    out: *mut ratecard_decision,
    peek: bool,
) -> ratecard_status {
    // SAFETY: readable (the caller's contract), any alignment.
    let r = unsafe { read_in(request) };
    // SAFETY: the request's byte strings (the caller's contract).
    match unsafe { request_of(&r) } {
        Ok(req) => {
            let now = Nanos(now_ns);
            let d = if peek {
                l.get().peek(&req, now)
            } else {
                l.get().check(&req, now)
            };
            // SAFETY: forwarded.
            unsafe { deliver(d, out) }
        }
        Err(status) => {
            if !peek {
                l.get().count_error(Nanos(now_ns));
            }
            status
        }
    }
}

/// The body of ratecard_check_key() and ratecard_peek_key().
///
/// # Safety
/// `out` must be valid for a write.
unsafe fn decide_key(
    l: &ratecard_limiter,
    rule: u32,
    key: &[u8],
    cost: u32,
    now_ns: u64,
    out: *mut ratecard_decision,
    peek: bool,
) -> ratecard_status {
    let Some(id) = rule_id(rule) else {
        return RATECARD_UNKNOWN_RULE;
    };
    let now = Nanos(now_ns);
    let d = if peek {
        l.get().peek_key(id, key, cost, now)
    } else {
        l.get().check_key(id, key, cost, now)
    };
    // SAFETY: forwarded.
    unsafe { deliver(d, out) }
}

/// Decide `request` at `now_ns` (CLOCK_MONOTONIC nanoseconds, shared by
/// every user of the table; see ratecard_now_ns()), charging every matched
/// rule if it is allowed. A request is allowed only if every rule it
/// matches allows; a denied one consumes nothing. A request that matches no
/// rule is allowed with `rule` = RATECARD_NO_RULE. `request` may have any
/// alignment.
///
/// Thread-safe; lock-free; does not allocate.
///
/// Returns RATECARD_OK and fills `*out`; or RATECARD_NULL_ARGUMENT,
/// RATECARD_INVALID_ARGUMENT (a length without a pointer),
/// RATECARD_UNKNOWN_API, RATECARD_INVALID_IP, RATECARD_MISSING_SUBJECT.
/// A host fails closed on an error (RATECARD_FAIL_CLOSED_STATUS, 503)
/// unless configured otherwise.
#[no_mangle]
pub unsafe extern "C" fn ratecard_check(
    limiter: *const ratecard_limiter,
    request: *const ratecard_request,
    now_ns: u64,
    out: *mut ratecard_decision,
) -> ratecard_status {
    boundary! {
        handle: limiter;
        nonnull: request, out;
        {
            // SAFETY: a readable request and a writable `out` (the caller's
            // contract; both non-NULL).
            unsafe { decide(limiter, request, now_ns, out, false) }
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
        handle: limiter;
        nonnull: request, out;
        {
            // SAFETY: as for ratecard_check.
            unsafe { decide(limiter, request, now_ns, out, true) }
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
        handle: limiter;
        nonnull: out;
        bytes: key / key_len;
        {
            // SAFETY: `out` is not NULL.
            unsafe { decide_key(limiter, rule, key, cost, now_ns, out, false) }
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
        handle: limiter;
        nonnull: out;
        bytes: key / key_len;
        {
            // SAFETY: `out` is not NULL.
            unsafe { decide_key(limiter, rule, key, cost, now_ns, out, true) }
        }
    }
}

/// Forget the state of every rule `request` matches, for its subject (for
/// example after a successful sign-in). `*cleared` is the number of slots
/// cleared (0 if none held state). `cost` is ignored. Other processes'
/// handles see the reset at once; a host that caches denials near itself
/// (the Redis mode) keeps its own cached denial until its Retry-After.
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
        handle: limiter;
        nonnull: request, cleared;
        {
            // SAFETY: readable (the caller's contract), any alignment.
            let r = unsafe { read_in(request) };
            // SAFETY: the request's byte strings (the caller's contract).
            let n = match unsafe { request_of(&r) } {
                Ok(req) => limiter.get().reset(&req).map_err(check_status),
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
        handle: limiter;
        nonnull: cleared;
        bytes: key / key_len;
        {
            let Some(id) = rule_id(rule) else {
                return RATECARD_UNKNOWN_RULE;
            };
            match limiter.get().reset_key(id, key) {
                Ok(n) => {
                    // SAFETY: `cleared` is not NULL.
                    unsafe { write(cleared, n) };
                    RATECARD_OK
                }
                Err(e) => check_status(e),
            }
        }
    }
}
