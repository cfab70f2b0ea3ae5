//! The C ABI, called as C would call it, under AddressSanitizer.
//!
//! Arbitrary configurations (as raw bytes where C may put any byte in a
//! `bool`), custom rule tables, requests, decisions handed back to the
//! response writers, and every NULL / non-NULL combination. A non-NULL
//! pointer always comes with a length within its buffer (an out-of-bounds
//! length would be the caller's bug, not the library's); `(NULL, n > 0)`
//! is fair game. Output buffers are often tiny.
//!
//! Checked: every status is one the function documents, never
//! `RATECARD_PANIC` (a panic caught at the boundary is still a bug);
//! outputs are written only on success (except `*out_len` on
//! `RATECARD_BUFFER_TOO_SHORT`, which is documented, and then the buffer
//! is untouched); written `bool`s are 0 or 1; names and status texts are
//! NUL-terminated.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ratecard_ffi::*;
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ffi::{c_char, c_void, CStr};
use std::mem::size_of;
use std::ptr::{null, null_mut};

const SENTINEL: u8 = 0xA5;

// --- inputs ---------------------------------------------------------------

/// A byte string as C might pass it.
#[derive(Arbitrary, Debug, Clone)]
enum Bytes {
    /// `(NULL, 0)`: the empty string.
    Null,
    /// `(NULL, n)` with n > 0: a length without a pointer.
    NullWithLen(u8),
    /// `(p, len)` with `len ≤ bytes.len()`.
    Some(Vec<u8>, u8),
}

impl Bytes {
    fn parts(&self) -> (*const u8, usize) {
        match self {
            Bytes::Null => (null(), 0),
            Bytes::NullWithLen(n) => (null(), 1 + *n as usize),
            Bytes::Some(v, cut) => {
                // A non-NULL pointer even for an empty Vec.
                let len = if v.is_empty() {
                    0
                } else {
                    v.len() - *cut as usize % (v.len() + 1)
                };
                let p = if v.is_empty() {
                    std::ptr::NonNull::<u8>::dangling().as_ptr() as *const u8
                } else {
                    v.as_ptr()
                };
                (p, len)
            }
        }
    }

    fn is_bad(&self) -> bool {
        matches!(self, Bytes::NullWithLen(_))
    }
}

#[derive(Arbitrary, Debug)]
struct ConfigIn {
    capacity: u32,
    seed: Bytes,
    ipv6_prefix_len: u8,
    dry_run: u8,
    policy: u8,
    unknown_kind: u8,
    pace: u8,
    algorithm: u8,
    rules: Option<Vec<RuleIn>>,
    rules_null_len: u8,
    /// The config's last four words: `flags` and `reserved32` (the first
    /// word's low and high halves), then the three reserved words.
    reserved: [u64; 4],
}

#[derive(Arbitrary, Debug)]
struct RuleIn {
    name: Bytes,
    api: u32,
    scope: u8,
    kind: u8,
    routes: Option<Vec<(Bytes, Bytes)>>,
    limit: u32,
    period_ns: u64,
    burst: u32,
    algorithm: u8,
    reserved: [u64; 2],
}

/// A config, or (one time in sixteen: the default table of 65 536 slots
/// is slow to clear under ASan) NULL.
#[derive(Arbitrary, Debug)]
struct MaybeConfig(u8, ConfigIn);

impl MaybeConfig {
    fn get(&self) -> Option<&ConfigIn> {
        (!self.0.is_multiple_of(16)).then_some(&self.1)
    }
}

#[derive(Arbitrary, Debug)]
enum Make {
    New(MaybeConfig),
    Init {
        config: MaybeConfig,
        offset: u8,
        short: u8,
        attach: Attach,
    },
}

#[derive(Arbitrary, Debug)]
enum Attach {
    No,
    Plain,
    With(Option<ConfigIn>),
}

#[derive(Arbitrary, Debug)]
struct RequestIn {
    api: u32,
    method: Bytes,
    path: Bytes,
    client_ip: Bytes,
    secret_key: Bytes,
    tenant: Bytes,
    cost: u32,
}

#[derive(Arbitrary, Debug)]
struct DecisionIn {
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
}

#[derive(Arbitrary, Debug)]
enum Which {
    /// The last decision `check` or `peek` wrote.
    Last,
    Made(DecisionIn),
    Null,
}

#[derive(Arbitrary, Debug)]
struct Buf {
    null: bool,
    len: u8,
}

#[derive(Arbitrary, Debug)]
enum Call {
    Check {
        req: Option<RequestIn>,
        now: u64,
        out_null: bool,
        peek: bool,
    },
    CheckKey {
        rule: u32,
        key: Bytes,
        cost: u32,
        now: u64,
        out_null: bool,
        peek: bool,
    },
    Reset {
        req: Option<RequestIn>,
        out_null: bool,
    },
    ResetKey {
        rule: u32,
        key: Bytes,
        out_null: bool,
    },
    Stats {
        out_null: bool,
    },
    RuleStats {
        rule: u32,
        out_null: bool,
        /// Unused since the counters come in one struct; kept so that the
        /// seeds' encoding stays valid.
        _spare: bool,
    },
    RuleCount {
        out_null: bool,
    },
    RuleName {
        rule: u32,
    },
    RuleFind {
        name: Bytes,
        out_null: bool,
    },
    RetryAfter {
        d: Which,
        buf: Buf,
        len_null: bool,
    },
    Policy {
        d: Which,
        buf: Buf,
        len_null: bool,
    },
    RateLimit {
        d: Which,
        buf: Buf,
        len_null: bool,
    },
    Body {
        buf: Buf,
        len_null: bool,
    },
    IpParse {
        text: Bytes,
        out_null: bool,
        len_null: bool,
    },
    StatusStr {
        status: u32,
    },
    Bytes {
        capacity: u32,
    },
    Now {
        out_null: bool,
    },
    /// Calls on a NULL handle.
    NullHandle {
        now: u64,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    make: Make,
    calls: Vec<Call>,
}

// --- C-shaped structs with bytes where C may put any byte -----------------

/// `ratecard_config` with `u8` for its `bool`s.
#[repr(C)]
struct ConfigBits {
    capacity: u32,
    seed: *const u8,
    seed_len: usize,
    ipv6_prefix_len: u8,
    dry_run: u8,
    policy: u8,
    unknown_kind: u8,
    pace: u8,
    algorithm: u8,
    rules: *const ratecard_rule,
    rules_len: usize,
    flags: u32,
    reserved32: u32,
    reserved: [u64; 3],
}

/// `ratecard_decision` with `u8` for its `bool`s.
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
    assert!(size_of::<ConfigBits>() == size_of::<ratecard_config>());
    assert!(size_of::<DecisionBits>() == size_of::<ratecard_decision>());
};

/// Owns everything a `ConfigBits` points into.
struct ConfigOwned {
    bits: ConfigBits,
    _rules: Vec<ratecard_rule>,
    _routes: Vec<Vec<ratecard_route>>,
}

impl ConfigOwned {
    /// Whether the config holds a `(NULL, n > 0)` byte string, an unknown
    /// flag or a reserved word not zero, so `RATECARD_INVALID_ARGUMENT` is
    /// expected.
    fn build(c: &ConfigIn) -> (Box<ConfigOwned>, bool) {
        let (flags, reserved32) = (c.reserved[0] as u32, (c.reserved[0] >> 32) as u32);
        let reserved = [c.reserved[1], c.reserved[2], c.reserved[3]];
        let mut bad = c.seed.is_bad()
            || flags & !RATECARD_CONFIG_FOLD_CASE != 0
            || reserved32 != 0
            || reserved != [0; 3];
        let mut routes_all = Vec::new();
        let mut rules = Vec::new();
        if let Some(rs) = &c.rules {
            for r in rs.iter().take(70) {
                let routes: Vec<ratecard_route> = r
                    .routes
                    .iter()
                    .flatten()
                    .take(8)
                    .map(|(m, p)| {
                        bad |= m.is_bad() || p.is_bad();
                        let (method, method_len) = m.parts();
                        let (path, path_len) = p.parts();
                        ratecard_route {
                            method,
                            method_len,
                            path,
                            path_len,
                        }
                    })
                    .collect();
                bad |= r.name.is_bad() || r.reserved != [0; 2];
                let (name, name_len) = r.name.parts();
                let (routes_ptr, routes_len) = match &r.routes {
                    None => (null(), 0),
                    Some(_) => (routes.as_ptr(), routes.len()),
                };
                rules.push(ratecard_rule {
                    name,
                    name_len,
                    api: r.api,
                    scope: r.scope,
                    kind: r.kind,
                    routes: routes_ptr,
                    routes_len,
                    limit: r.limit,
                    period_ns: r.period_ns,
                    burst: r.burst,
                    algorithm: r.algorithm,
                    reserved: r.reserved,
                });
                routes_all.push(routes);
            }
        }
        let (rules_ptr, rules_len) = match &c.rules {
            None if c.rules_null_len > 0 => {
                bad = true;
                (null(), c.rules_null_len as usize)
            }
            None => (null(), 0),
            Some(_) => (rules.as_ptr(), rules.len()),
        };
        let (seed, seed_len) = c.seed.parts();
        // Keep allocations small: capacities above 2^28 are refused before
        // allocating, others are folded to at most 4096 slots.
        let capacity = if c.capacity > 1 << 28 {
            c.capacity
        } else {
            c.capacity % 4097
        };
        let bits = ConfigBits {
            capacity,
            seed,
            seed_len,
            ipv6_prefix_len: c.ipv6_prefix_len,
            dry_run: c.dry_run,
            policy: c.policy,
            unknown_kind: c.unknown_kind,
            pace: c.pace,
            algorithm: c.algorithm,
            rules: rules_ptr,
            rules_len,
            flags,
            reserved32,
            reserved,
        };
        (
            Box::new(ConfigOwned {
                bits,
                _rules: rules,
                _routes: routes_all,
            }),
            bad,
        )
    }

    fn ptr(&self) -> *const ratecard_config {
        &self.bits as *const ConfigBits as *const ratecard_config
    }
}

// --- checks ---------------------------------------------------------------

fn known(status: ratecard_status, allowed: &[ratecard_status], what: &str) {
    assert_ne!(
        status, RATECARD_PANIC,
        "{what}: a panic was caught at the boundary"
    );
    assert!(
        allowed.contains(&status),
        "{what}: status {status} ({:?}) not documented",
        status_text(status)
    );
}

fn status_text(status: ratecard_status) -> String {
    // SAFETY: ratecard_status_str returns static NUL-terminated text.
    unsafe { CStr::from_ptr(ratecard_status_str(status)) }
        .to_string_lossy()
        .into_owned()
}

/// Aligned scratch for one output value, prefilled with a sentinel.
#[repr(C, align(16))]
struct Out<const N: usize>([u8; N]);

impl<const N: usize> Out<N> {
    fn new() -> Self {
        Out([SENTINEL; N])
    }
    fn untouched(&self) -> bool {
        self.0.iter().all(|&b| b == SENTINEL)
    }
    fn ptr<T>(&mut self) -> *mut T {
        assert!(size_of::<T>() <= N);
        self.0.as_mut_ptr().cast()
    }
}

const DECISION: usize = size_of::<ratecard_decision>();

fn check_decision_bytes(b: &[u8; DECISION], count: u32) -> DecisionBits {
    // SAFETY: DECISION bytes, every field valid for any bits.
    let d: DecisionBits = unsafe { std::ptr::read_unaligned(b.as_ptr().cast()) };
    for v in [d.allowed, d.exempt, d.dry_run_denied, d.never_fits] {
        assert!(v <= 1, "a bool written as {v}");
    }
    assert_eq!(d.reserved, [0; 4], "reserved words are zeroed");
    assert!(
        d.rule == RATECARD_NO_RULE || d.rule < count,
        "rule {}",
        d.rule
    );
    if d.rule == RATECARD_NO_RULE {
        assert!(d.allowed == 1 && d.matched == 0);
    }
    d
}

struct Request {
    req: ratecard_request,
    bad: bool,
}

fn request(r: &RequestIn) -> Request {
    let (method, method_len) = r.method.parts();
    let (path, path_len) = r.path.parts();
    let (client_ip, client_ip_len) = r.client_ip.parts();
    let (secret_key, secret_key_len) = r.secret_key.parts();
    let (tenant, tenant_len) = r.tenant.parts();
    Request {
        req: ratecard_request {
            api: r.api,
            method,
            method_len,
            path,
            path_len,
            client_ip,
            client_ip_len,
            secret_key,
            secret_key_len,
            tenant,
            tenant_len,
            cost: r.cost,
        },
        bad: [&r.method, &r.path, &r.client_ip, &r.secret_key, &r.tenant]
            .iter()
            .any(|b| b.is_bad()),
    }
}

const MAKE_STATUSES: &[ratecard_status] = &[
    RATECARD_OK,
    RATECARD_NULL_ARGUMENT,
    RATECARD_INVALID_ARGUMENT,
    RATECARD_INVALID_CONFIG,
    RATECARD_INVALID_RULES,
    RATECARD_INVALID_CAPACITY,
    RATECARD_OUT_OF_MEMORY,
    RATECARD_SEED_UNAVAILABLE,
    RATECARD_NO_LOCK_FREE_CAS,
    RATECARD_MISALIGNED,
    RATECARD_MEMORY_TOO_SMALL,
];
const ATTACH_STATUSES: &[ratecard_status] = &[
    RATECARD_OK,
    RATECARD_NULL_ARGUMENT,
    RATECARD_INVALID_ARGUMENT,
    RATECARD_INVALID_CONFIG,
    RATECARD_INVALID_RULES,
    RATECARD_MEMORY_TOO_SMALL,
    RATECARD_MISALIGNED,
    RATECARD_NOT_A_TABLE,
    RATECARD_CORRUPT,
    RATECARD_NOT_SEEDED,
    RATECARD_RULES_MISMATCH,
    RATECARD_NO_LOCK_FREE_CAS,
];
const CHECK_STATUSES: &[ratecard_status] = &[
    RATECARD_OK,
    RATECARD_NULL_ARGUMENT,
    RATECARD_INVALID_ARGUMENT,
    RATECARD_UNKNOWN_API,
    RATECARD_INVALID_IP,
    RATECARD_MISSING_SUBJECT,
];
const KEY_STATUSES: &[ratecard_status] = &[
    RATECARD_OK,
    RATECARD_NULL_ARGUMENT,
    RATECARD_INVALID_ARGUMENT,
    RATECARD_UNKNOWN_RULE,
];
const WRITE_STATUSES: &[ratecard_status] = &[
    RATECARD_OK,
    RATECARD_NULL_ARGUMENT,
    RATECARD_INVALID_ARGUMENT,
    RATECARD_BUFFER_TOO_SHORT,
];

/// Caller memory for `_init` / `_attach`, 64-byte aligned at `base`.
struct Memory {
    base: *mut u8,
    layout: Layout,
}

impl Drop for Memory {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout.
        unsafe { dealloc(self.base, self.layout) }
    }
}

/// Make the handles the input asks for: the first, and maybe a second
/// attached to the same memory.
// Boxed: the library reads each config through a pointer into it.
#[allow(clippy::vec_box)]
fn make(
    m: &Make,
    keep: &mut Vec<Box<ConfigOwned>>,
) -> (Vec<*mut ratecard_limiter>, Option<Memory>) {
    let mut handles = Vec::new();
    match m {
        Make::New(config) => {
            let (ptr, bad) = match config.get() {
                None => (null(), false),
                Some(c) => {
                    let (o, bad) = ConfigOwned::build(c);
                    let p = o.ptr();
                    keep.push(o);
                    (p, bad)
                }
            };
            let mut out = Out::<8>::new();
            // SAFETY: pointers valid for their lengths (see Bytes).
            let s = unsafe { ratecard_limiter_new(ptr, out.ptr()) };
            known(s, MAKE_STATUSES, "limiter_new");
            if bad {
                assert_ne!(s, RATECARD_OK, "limiter_new took an invalid argument");
            }
            if s == RATECARD_OK {
                // SAFETY: written on success.
                handles.push(unsafe { *out.ptr::<*mut ratecard_limiter>() });
            } else {
                assert!(out.untouched(), "limiter_new wrote *out on failure");
            }
            // SAFETY: NULL `out`.
            let s = unsafe { ratecard_limiter_new(ptr, null_mut()) };
            assert_eq!(s, RATECARD_NULL_ARGUMENT);
            (handles, None)
        }
        Make::Init {
            config,
            offset,
            short,
            attach,
        } => {
            let (ptr, bad, capacity) = match config.get() {
                None => (null(), false, 65536u32),
                Some(c) => {
                    let (o, bad) = ConfigOwned::build(c);
                    let p = o.ptr();
                    let cap = o.bits.capacity;
                    keep.push(o);
                    (p, bad, cap)
                }
            };
            let need = ratecard_limiter_bytes(capacity);
            let full = if need == 0 { 4096 } else { need };
            let offset = if offset % 4 == 0 {
                0
            } else {
                *offset as usize % 64
            };
            let len = full.saturating_sub(*short as usize % 3 * (*short as usize));
            let layout = Layout::from_size_align(offset + full, 64).unwrap();
            // SAFETY: non-zero size.
            let base = unsafe { alloc_zeroed(layout) };
            assert!(!base.is_null());
            let mem = Memory { base, layout };
            // SAFETY: within the allocation.
            let at = unsafe { base.add(offset) } as *mut c_void;
            let mut out = Out::<8>::new();
            // SAFETY: `len` ≤ the bytes at `at`; config pointers valid.
            let s = unsafe { ratecard_limiter_init(at, len, ptr, out.ptr()) };
            known(s, MAKE_STATUSES, "limiter_init");
            if bad {
                assert_ne!(s, RATECARD_OK, "limiter_init took an invalid argument");
            }
            if s != RATECARD_OK {
                assert!(out.untouched(), "limiter_init wrote *out on failure");
                return (handles, Some(mem));
            }
            // SAFETY: written on success.
            handles.push(unsafe { *out.ptr::<*mut ratecard_limiter>() });
            let mut out = Out::<8>::new();
            let (s, what) = match attach {
                Attach::No => return (handles, Some(mem)),
                // SAFETY: as for init.
                Attach::Plain => (
                    unsafe { ratecard_limiter_attach(at, len, out.ptr()) },
                    "attach",
                ),
                Attach::With(c) => {
                    let p = match c {
                        None => null(),
                        Some(c) => {
                            let (o, _) = ConfigOwned::build(c);
                            let p = o.ptr();
                            keep.push(o);
                            p
                        }
                    };
                    // SAFETY: as for init.
                    (
                        unsafe { ratecard_limiter_attach_with(at, len, p, out.ptr()) },
                        "attach_with",
                    )
                }
            };
            known(s, ATTACH_STATUSES, what);
            if s == RATECARD_OK {
                // SAFETY: written on success.
                handles.push(unsafe { *out.ptr::<*mut ratecard_limiter>() });
            } else {
                assert!(out.untouched(), "{what} wrote *out on failure");
            }
            (handles, Some(mem))
        }
    }
}

fn decision_ptr(
    w: &Which,
    last: &Option<[u8; DECISION]>,
    made: &mut Out<DECISION>,
) -> *const ratecard_decision {
    match w {
        Which::Null => null(),
        Which::Last => match last {
            Some(b) => {
                made.0.copy_from_slice(b);
                made.ptr::<ratecard_decision>()
            }
            None => null(),
        },
        Which::Made(d) => {
            let bits = DecisionBits {
                allowed: d.allowed,
                exempt: d.exempt,
                dry_run_denied: d.dry_run_denied,
                never_fits: d.never_fits,
                rule: d.rule,
                limit: d.limit,
                remaining: d.remaining,
                reset_ns: d.reset_ns,
                retry_after_ns: d.retry_after_ns,
                retry_after_secs: d.retry_after_secs,
                matched: d.matched,
                reserved: [0; 4],
            };
            let p = made.ptr::<DecisionBits>();
            // SAFETY: aligned scratch of the right size.
            unsafe { p.write(bits) };
            p as *const ratecard_decision
        }
    }
}

/// Call a response writer and check the buffer rules.
fn write_into(
    what: &str,
    buf: &Buf,
    len_null: bool,
    decision_null: bool,
    f: impl FnOnce(*mut u8, usize, *mut usize) -> ratecard_status,
) {
    let mut space = vec![SENTINEL; 256];
    let len = buf.len as usize % 200;
    let (p, n) = if buf.null {
        (null_mut(), if len.is_multiple_of(2) { 0 } else { len })
    } else {
        (space.as_mut_ptr(), len)
    };
    let mut out_len = usize::MAX;
    let out_len_ptr = if len_null {
        null_mut()
    } else {
        &mut out_len as *mut usize
    };
    let s = f(p, n, out_len_ptr);
    known(s, WRITE_STATUSES, what);
    if len_null || decision_null {
        assert_eq!(s, RATECARD_NULL_ARGUMENT, "{what}");
    }
    match s {
        RATECARD_OK => {
            assert!(out_len <= n, "{what}: wrote {out_len} into {n}");
            assert!(
                space[n..].iter().all(|&b| b == SENTINEL),
                "{what}: wrote past the buffer"
            );
            if out_len > 0 {
                assert!(!buf.null);
            }
        }
        RATECARD_BUFFER_TOO_SHORT => {
            assert!(out_len > n, "{what}: needs {out_len}, had {n}");
            assert!(
                space.iter().all(|&b| b == SENTINEL),
                "{what}: buffer touched"
            );
        }
        _ => {
            assert_eq!(out_len, usize::MAX, "{what}: *out_len written on failure");
            assert!(
                space.iter().all(|&b| b == SENTINEL),
                "{what}: buffer touched"
            );
        }
    }
}

fn run(input: &Input) {
    let mut keep = Vec::new();
    let (handles, _memory) = make(&input.make, &mut keep);
    let mut last: Option<[u8; DECISION]> = None;
    for (i, call) in input.calls.iter().take(48).enumerate() {
        let h = if handles.is_empty() {
            null()
        } else {
            handles[i % handles.len()] as *const ratecard_limiter
        };
        let count = if h.is_null() {
            0
        } else {
            let mut n = 0u32;
            // SAFETY: live handle, valid out.
            assert_eq!(unsafe { ratecard_rule_count(h, &mut n) }, RATECARD_OK);
            n
        };
        // SAFETY (every call below): handles are live; every pointer is
        // NULL or valid for its length; outputs are aligned scratch.
        unsafe {
            match call {
                Call::Check {
                    req,
                    now,
                    out_null,
                    peek,
                } => {
                    let r = req.as_ref().map(request);
                    let rp = r
                        .as_ref()
                        .map_or(null(), |r| &r.req as *const ratecard_request);
                    let mut out = Out::<DECISION>::new();
                    let op = if *out_null { null_mut() } else { out.ptr() };
                    let s = if *peek {
                        ratecard_peek(h, rp, *now, op)
                    } else {
                        ratecard_check(h, rp, *now, op)
                    };
                    known(s, CHECK_STATUSES, "check");
                    if h.is_null() || rp.is_null() || op.is_null() {
                        assert_eq!(s, RATECARD_NULL_ARGUMENT);
                    } else if r.as_ref().is_some_and(|r| r.bad) {
                        assert_eq!(s, RATECARD_INVALID_ARGUMENT);
                    }
                    if s == RATECARD_OK {
                        check_decision_bytes(&out.0, count);
                        last = Some(out.0);
                    } else {
                        assert!(out.untouched(), "check wrote its decision on failure");
                    }
                }
                Call::CheckKey {
                    rule,
                    key,
                    cost,
                    now,
                    out_null,
                    peek,
                } => {
                    let (k, kl) = key.parts();
                    let mut out = Out::<DECISION>::new();
                    let op = if *out_null { null_mut() } else { out.ptr() };
                    let rule = rule % (count + 3);
                    let s = if *peek {
                        ratecard_peek_key(h, rule, k, kl, *cost, *now, op)
                    } else {
                        ratecard_check_key(h, rule, k, kl, *cost, *now, op)
                    };
                    known(s, KEY_STATUSES, "check_key");
                    if s == RATECARD_OK {
                        let d = check_decision_bytes(&out.0, count);
                        assert_eq!(d.rule, rule);
                        last = Some(out.0);
                    } else {
                        assert!(out.untouched(), "check_key wrote on failure");
                    }
                }
                Call::Reset { req, out_null } => {
                    let r = req.as_ref().map(request);
                    let rp = r
                        .as_ref()
                        .map_or(null(), |r| &r.req as *const ratecard_request);
                    let mut out = Out::<4>::new();
                    let op = if *out_null { null_mut() } else { out.ptr() };
                    let s = ratecard_reset(h, rp, op);
                    known(s, CHECK_STATUSES, "reset");
                    if s == RATECARD_OK {
                        assert!(*out.ptr::<u32>() <= count);
                    } else {
                        assert!(out.untouched(), "reset wrote on failure");
                    }
                }
                Call::ResetKey {
                    rule,
                    key,
                    out_null,
                } => {
                    let (k, kl) = key.parts();
                    let mut out = Out::<4>::new();
                    let op = if *out_null { null_mut() } else { out.ptr() };
                    let s = ratecard_reset_key(h, rule % (count + 3), k, kl, op);
                    known(s, KEY_STATUSES, "reset_key");
                    if s == RATECARD_OK {
                        // 2 only when a racing relocation left a duplicate.
                        assert!(*out.ptr::<u32>() <= 2);
                    } else {
                        assert!(out.untouched(), "reset_key wrote on failure");
                    }
                }
                Call::Stats { out_null } => {
                    let mut out = Out::<{ size_of::<ratecard_stats>() }>::new();
                    let op = if *out_null { null_mut() } else { out.ptr() };
                    let s = ratecard_limiter_stats(h, op);
                    known(s, &[RATECARD_OK, RATECARD_NULL_ARGUMENT], "stats");
                    if s == RATECARD_OK {
                        let st = &*out.ptr::<ratecard_stats>();
                        assert!(st.occupancy <= st.capacity);
                        assert_eq!(st.reserved, [0; 4]);
                    } else {
                        assert!(out.untouched());
                    }
                }
                Call::RuleStats { rule, out_null, .. } => {
                    let mut out = Out::<{ size_of::<ratecard_rule_stats>() }>::new();
                    let op = if *out_null { null_mut() } else { out.ptr() };
                    let s = ratecard_limiter_rule_stats(h, rule % (count + 3), op);
                    known(
                        s,
                        &[RATECARD_OK, RATECARD_NULL_ARGUMENT, RATECARD_UNKNOWN_RULE],
                        "rule_stats",
                    );
                    if s == RATECARD_OK {
                        let st = &*out.ptr::<ratecard_rule_stats>();
                        assert_eq!(st.reserved, [0; 2]);
                    } else {
                        assert!(out.untouched(), "rule_stats wrote on failure");
                    }
                }
                Call::RuleCount { out_null } => {
                    let mut out = Out::<4>::new();
                    let op = if *out_null { null_mut() } else { out.ptr() };
                    let s = ratecard_rule_count(h, op);
                    known(s, &[RATECARD_OK, RATECARD_NULL_ARGUMENT], "rule_count");
                    if s == RATECARD_OK {
                        assert!(*out.ptr::<u32>() <= 64);
                    } else {
                        assert!(out.untouched());
                    }
                }
                Call::RuleName { rule } => {
                    let r = rule % (count + 3);
                    let p = ratecard_rule_name(h, r);
                    if h.is_null() || r >= count {
                        assert!(p.is_null(), "a name for rule {r} of {count}");
                    } else {
                        assert!(!p.is_null());
                        let name = CStr::from_ptr(p as *const c_char).to_bytes();
                        // The name finds its rule (the first of that name).
                        let mut at = Out::<4>::new();
                        let s = ratecard_rule_find(h, name.as_ptr(), name.len(), at.ptr());
                        assert_eq!(s, RATECARD_OK);
                        assert!(*at.ptr::<u32>() <= r);
                    }
                }
                Call::RuleFind { name, out_null } => {
                    let (n, nl) = name.parts();
                    let mut out = Out::<4>::new();
                    let op = if *out_null { null_mut() } else { out.ptr() };
                    let s = ratecard_rule_find(h, n, nl, op);
                    known(
                        s,
                        &[
                            RATECARD_OK,
                            RATECARD_NULL_ARGUMENT,
                            RATECARD_INVALID_ARGUMENT,
                            RATECARD_UNKNOWN_RULE,
                        ],
                        "rule_find",
                    );
                    if s == RATECARD_OK {
                        assert!(*out.ptr::<u32>() < count);
                    } else {
                        assert!(out.untouched());
                    }
                }
                Call::RetryAfter { d, buf, len_null } => {
                    let mut scratch = Out::<DECISION>::new();
                    let dp = decision_ptr(d, &last, &mut scratch);
                    write_into("retry_after", buf, *len_null, dp.is_null(), |b, n, o| {
                        ratecard_write_retry_after(dp, b, n, o)
                    });
                }
                Call::Policy { d, buf, len_null } => {
                    let mut scratch = Out::<DECISION>::new();
                    let dp = decision_ptr(d, &last, &mut scratch);
                    let null = dp.is_null() || h.is_null();
                    write_into("ratelimit_policy", buf, *len_null, null, |b, n, o| {
                        ratecard_write_ratelimit_policy(h, dp, b, n, o)
                    });
                }
                Call::RateLimit { d, buf, len_null } => {
                    let mut scratch = Out::<DECISION>::new();
                    let dp = decision_ptr(d, &last, &mut scratch);
                    let null = dp.is_null() || h.is_null();
                    write_into("ratelimit", buf, *len_null, null, |b, n, o| {
                        ratecard_write_ratelimit(h, dp, b, n, o)
                    });
                }
                Call::Body { buf, len_null } => {
                    write_into("429_body", buf, *len_null, false, |b, n, o| {
                        ratecard_write_429_body(b, n, o)
                    });
                }
                Call::IpParse {
                    text,
                    out_null,
                    len_null,
                } => {
                    let (t, tl) = text.parts();
                    let mut out = Out::<16>::new();
                    let mut n = Out::<8>::new();
                    let op = if *out_null { null_mut() } else { out.ptr() };
                    let np = if *len_null { null_mut() } else { n.ptr() };
                    // Mostly room for any address; now and then a short buffer.
                    let cap = if tl % 5 == 1 { tl % 17 } else { 16 };
                    let s = ratecard_ip_parse(t, tl, op, cap, np);
                    known(
                        s,
                        &[
                            RATECARD_OK,
                            RATECARD_NULL_ARGUMENT,
                            RATECARD_INVALID_ARGUMENT,
                            RATECARD_INVALID_IP_TEXT,
                            RATECARD_BUFFER_TOO_SHORT,
                        ],
                        "ip_parse",
                    );
                    if s == RATECARD_BUFFER_TOO_SHORT {
                        let k = *n.ptr::<usize>();
                        assert!(
                            (k == 4 || k == 16) && k > cap,
                            "{k} bytes needed, {cap} given"
                        );
                        assert!(out.untouched(), "ip_parse wrote a short buffer");
                    } else if s == RATECARD_OK {
                        let k = *n.ptr::<usize>();
                        assert!(k == 4 || k == 16, "{k} bytes");
                        assert!(out.0[k..].iter().all(|&b| b == SENTINEL));
                    } else {
                        assert!(
                            out.untouched() && n.untouched(),
                            "ip_parse wrote on failure"
                        );
                    }
                }
                Call::StatusStr { status } => {
                    let p = ratecard_status_str(*status);
                    assert!(!p.is_null());
                    let _ = CStr::from_ptr(p).to_bytes();
                }
                Call::Bytes { capacity } => {
                    let n = ratecard_limiter_bytes(*capacity);
                    assert_eq!(n == 0, *capacity == 0 || *capacity > 1 << 28);
                }
                Call::Now { out_null } => {
                    let mut out = Out::<8>::new();
                    let op = if *out_null { null_mut() } else { out.ptr() };
                    let s = ratecard_now_ns(op);
                    known(
                        s,
                        &[
                            RATECARD_OK,
                            RATECARD_NULL_ARGUMENT,
                            RATECARD_CLOCK_UNAVAILABLE,
                        ],
                        "now_ns",
                    );
                }
                Call::NullHandle { now } => {
                    let mut out = Out::<DECISION>::new();
                    let r = ratecard_request {
                        api: RATECARD_API_FRONTEND,
                        method: null(),
                        method_len: 0,
                        path: null(),
                        path_len: 0,
                        client_ip: null(),
                        client_ip_len: 0,
                        secret_key: null(),
                        secret_key_len: 0,
                        tenant: null(),
                        tenant_len: 0,
                        cost: 0,
                    };
                    let s = ratecard_check(null(), &r, *now, out.ptr());
                    assert_eq!(s, RATECARD_NULL_ARGUMENT);
                    assert!(out.untouched());
                    assert!(ratecard_rule_name(null(), 0).is_null());
                    ratecard_limiter_free(null_mut());
                }
            }
        }
    }
    // Free the attached handle first, then the one that laid the table out.
    for h in handles.into_iter().rev() {
        // SAFETY: each handle freed once, none used after.
        unsafe { ratecard_limiter_free(h) };
    }
}

fuzz_target!(|input: Input| {
    // SAFETY: static NUL-terminated text.
    assert!(!unsafe { CStr::from_ptr(ratecard_version()) }
        .to_bytes()
        .is_empty());
    run(&input);
});
