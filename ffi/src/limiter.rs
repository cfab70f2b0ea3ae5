//! Limiter handles: configuration, custom rule tables, new / init / attach /
//! free, counters and rule look-ups.

use std::alloc::{alloc, Layout};
use std::ffi::c_char;
use std::mem::offset_of;

use ratecard_core::{
    Algorithm, Api, Config, HandleOptions, InstanceKind, Limiter, Method, Nanos, Policy, Quota,
    Route, Rule, RuleId, RuleTable, Scope, Seed, CLERK, MAX_RULES,
};

use crate::boundary::{
    boundary, bytes, ratecard_status, read_in, read_nth, setup_status, write,
    RATECARD_INVALID_ARGUMENT, RATECARD_INVALID_CONFIG, RATECARD_INVALID_RULES, RATECARD_OK,
    RATECARD_OUT_OF_MEMORY, RATECARD_UNKNOWN_RULE,
};

/// Eviction policy (ratecard_config.policy): when both buckets of a new key
/// hold only keys still in debt, evict the one using the smallest fraction
/// of its burst (counted in ratecard_stats.evicted). The default.
pub const RATECARD_POLICY_EVICT: u8 = 0;
/// Eviction policy: deny the new key until a slot frees up (fail closed).
pub const RATECARD_POLICY_DENY: u8 = 1;
/// Eviction policy: admit the new key without tracking it (fail open).
pub const RATECARD_POLICY_ADMIT: u8 = 2;

/// Instance kind (ratecard_rule.kind): the rule applies to every instance.
/// As ratecard_config.unknown_kind: the default, development (and how
/// ratecard_limiter_config() reports development, so the default reads
/// back as it was written).
pub const RATECARD_KIND_ANY: u8 = 0;
/// Instance kind: production (`sk_live_` / `live_` keys).
pub const RATECARD_KIND_PRODUCTION: u8 = 1;
/// Instance kind: development (`sk_test_` / `test_` keys, and a missing key).
pub const RATECARD_KIND_DEVELOPMENT: u8 = 2;

/// Rule scope (ratecard_rule.scope): one client IP (IPv4, or an IPv6
/// prefix), within the request's tenant if any.
pub const RATECARD_SCOPE_CLIENT_IP: u8 = 0;
/// Rule scope: one instance (the tenant if given, else the secret key, else
/// the client IP); the route's `{param}` captures do not split it.
pub const RATECARD_SCOPE_INSTANCE: u8 = 1;
/// Rule scope: one instance and the ids the route's `{param}`s capture
/// (per user, per organization).
pub const RATECARD_SCOPE_INSTANCE_PARAMS: u8 = 2;

/// Algorithm: in ratecard_config, each rule's own; in ratecard_rule, GCRA.
pub const RATECARD_ALGORITHM_DEFAULT: u8 = 0;
/// Algorithm: GCRA, a smooth rate with a burst allowance.
pub const RATECARD_ALGORITHM_GCRA: u8 = 1;
/// Algorithm: fixed windows aligned on multiples of the period.
pub const RATECARD_ALGORITHM_FIXED_WINDOW: u8 = 2;

/// ratecard_config.flags: compare the literal segments of route patterns
/// ignoring ASCII case (`/V1/Client/SIGN_INS` is the sign-in route), for
/// upstreams that route case-insensitively; captured ids keep their case.
pub const RATECARD_CONFIG_FOLD_CASE: u32 = 1;
const KNOWN_FLAGS: u32 = RATECARD_CONFIG_FOLD_CASE;

/// A limiter: a rule table and a configuration over a state table, in memory
/// the library owns (ratecard_limiter_new) or the caller owns
/// (ratecard_limiter_init, ratecard_limiter_attach).
///
/// Thread safety: every function taking a `const ratecard_limiter *` may be
/// called from any number of threads at once on one handle.
/// ratecard_limiter_free must not race with any other call on the handle.
pub struct ratecard_limiter {
    // Borrows `custom` (and the caller's region, or memory it owns itself):
    // declared, and so dropped, first.
    limiter: Limiter<'static>,
    custom: Option<CustomRules>,
}

/// Limiter configuration. Fill it with ratecard_config_default(), then
/// change what you need.
///
/// Passed in: every `reserved` word must be zero (RATECARD_INVALID_ARGUMENT
/// otherwise); later versions give zero the behaviour of this layout.
#[repr(C)]
pub struct ratecard_config {
    /// Slots in the state table (one per live (rule, subject) pair), rounded
    /// up; 1 to 2^28; see ratecard_limiter_bytes(). Default 65536.
    pub capacity: u32,
    /// The 16-byte secret hash seed; NULL (with seed_len 0) for one from the
    /// operating system. Processes sharing a table use the recorded seed.
    pub seed: *const u8,
    /// 16 when `seed` is given, else 0.
    pub seed_len: usize,
    /// IPv6 clients are keyed on this many leading bits, 0 to 128.
    /// Default 64.
    pub ipv6_prefix_len: u8,
    /// This handle never denies: would-be denials set
    /// ratecard_decision.dry_run_denied and consume nothing.
    pub dry_run: bool,
    /// RATECARD_POLICY_*: what to do when a new key finds only keys in debt.
    pub policy: u8,
    /// Instance kind of a secret key with an unknown prefix:
    /// RATECARD_KIND_ANY (0, the default) or RATECARD_KIND_DEVELOPMENT for
    /// development (the stricter limit), RATECARD_KIND_PRODUCTION for
    /// production.
    pub unknown_kind: u8,
    /// Pace mode: burst 1 on every GCRA rule, so at most `limit` requests in
    /// any window of `period` (for clients pacing calls to an API).
    pub pace: bool,
    /// RATECARD_ALGORITHM_*: enforce every rule with this algorithm;
    /// RATECARD_ALGORITHM_DEFAULT (0) keeps each rule's own.
    pub algorithm: u8,
    /// A custom rule table of `rules_len` rules (at most 64), copied at
    /// new / init / attach_with; NULL and 0 for the built-in Clerk table.
    pub rules: *const ratecard_rule,
    /// Number of rules at `rules`.
    pub rules_len: usize,
    /// RATECARD_CONFIG_* bits; an unknown bit is RATECARD_INVALID_ARGUMENT.
    pub flags: u32,
    /// Must be zero.
    pub reserved32: u32,
    /// Must be zero.
    pub reserved: [u64; 3],
}

/// One route of a custom rule: an HTTP method and a path pattern.
///
/// Frozen layout: later versions extend routes through ratecard_rule's
/// reserved words, never by changing this struct.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ratecard_route {
    /// The method, any ASCII case (GET, HEAD, POST, PUT, PATCH, DELETE,
    /// OPTIONS); empty for every method. Another name is
    /// RATECARD_INVALID_RULES.
    pub method: *const u8,
    /// Length of `method`.
    pub method_len: usize,
    /// The path pattern, UTF-8, starting with `/`: a `{param}` segment
    /// captures one path segment (at most two per pattern), a final `*`
    /// segment matches any rest (or none), and `*` alone every path.
    pub path: *const u8,
    /// Length of `path`.
    pub path_len: usize,
}

/// One row of a custom rule table. A request is checked against every rule
/// it matches and allowed only if all allow.
///
/// Passed in: every `reserved` word must be zero.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ratecard_rule {
    /// Stable name of `[A-Za-z0-9._-]` characters, e.g. `fapi.sign_ins.create`;
    /// used in RateLimit fields.
    pub name: *const u8,
    /// Length of `name`.
    pub name_len: usize,
    /// RATECARD_API_FRONTEND or RATECARD_API_BACKEND.
    pub api: u32,
    /// RATECARD_SCOPE_*.
    pub scope: u8,
    /// RATECARD_KIND_*: only for instances of this kind, or any.
    pub kind: u8,
    /// The routes; a request matching any of them matches the rule.
    pub routes: *const ratecard_route,
    /// Number of routes.
    pub routes_len: usize,
    /// Requests per period; 0 = unlimited (matching requests are exempt
    /// from every rule).
    pub limit: u32,
    /// The period in nanoseconds; not 0 for a limited rule.
    pub period_ns: u64,
    /// Requests that may be sent back to back (GCRA); 0 = `limit`.
    pub burst: u32,
    /// RATECARD_ALGORITHM_*: 0 or GCRA for GCRA, or FIXED_WINDOW.
    pub algorithm: u8,
    /// Must be zero.
    pub reserved: [u64; 2],
}

/// Counters of a table, summed over every handle attached to it.
///
/// What a reader may rely on: every counter only grows between restarts of
/// the table (it wraps at 2^64), each decision is counted once (peeks are
/// not counted), and with no decision in flight the sums are exact; while
/// decisions run, a sum may miss those still in flight, never more.
///
/// Written by the library: `reserved` words are zeroed.
#[repr(C)]
pub struct ratecard_stats {
    /// Decisions allowed (charged).
    pub allowed: u64,
    /// Decisions denied and enforced (a cost that never fits included).
    pub limited: u64,
    /// Would-be denials on dry-run handles.
    pub dry_run_limited: u64,
    /// Requests exempt from every rule (GET /v1/jwks).
    pub exempt: u64,
    /// Requests that matched no rule.
    pub unmatched: u64,
    /// Requests refused with an error status (a missing subject, an IP of
    /// the wrong length).
    pub errors: u64,
    /// Keys inserted.
    pub inserts: u64,
    /// Inserts that replaced a live key (fully replenished or not).
    pub evicted: u64,
    /// Inserts that replaced a key still in debt (each may let that key
    /// exceed its limit once).
    pub evicted_in_debt: u64,
    /// Inserts that found every candidate in debt and were refused or
    /// admitted untracked (RATECARD_POLICY_DENY, RATECARD_POLICY_ADMIT).
    pub full: u64,
    /// Round trips to Redis that got a reply (the Redis mode).
    pub remote_calls: u64,
    /// Round trips to Redis that failed (timeout, connection, bad reply).
    pub remote_errors: u64,
    /// Decisions the host's policy answered because Redis could not.
    pub remote_fallbacks: u64,
    /// Denials answered from the local cache of Redis denials.
    pub remote_cached: u64,
    /// Slots holding a key now (a scan of the table).
    pub occupancy: u64,
    /// Slots in the table.
    pub capacity: u64,
    /// Zero.
    pub reserved: [u64; 4],
}

/// One rule's decisions, by the rule that bound them (same guarantees as
/// ratecard_stats).
#[repr(C)]
pub struct ratecard_rule_stats {
    /// Allowed with this rule binding.
    pub allowed: u64,
    /// Denied (enforced) with this rule binding.
    pub limited: u64,
    /// Would-be denials on dry-run handles.
    pub dry_run_limited: u64,
    /// Made exempt by this (unlimited) rule.
    pub exempt: u64,
    /// Zero.
    pub reserved: [u64; 2],
}

/// `ratecard_config` as read from C: bytes instead of `bool`, since C may
/// hand over any byte there.
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

impl Clone for ConfigBits {
    fn clone(&self) -> Self {
        *self
    }
}
impl Copy for ConfigBits {}

const _: () = {
    assert!(size_of::<ConfigBits>() == size_of::<ratecard_config>());
    assert!(align_of::<ConfigBits>() == align_of::<ratecard_config>());
    assert!(offset_of!(ConfigBits, dry_run) == offset_of!(ratecard_config, dry_run));
    assert!(offset_of!(ConfigBits, pace) == offset_of!(ratecard_config, pace));
    assert!(offset_of!(ConfigBits, algorithm) == offset_of!(ratecard_config, algorithm));
    assert!(offset_of!(ConfigBits, rules) == offset_of!(ratecard_config, rules));
    assert!(offset_of!(ConfigBits, flags) == offset_of!(ratecard_config, flags));
    assert!(offset_of!(ConfigBits, reserved) == offset_of!(ratecard_config, reserved));
};

/// A configuration read and checked.
struct Settings {
    config: Config,
    seed: Option<Seed>,
    custom: Option<CustomRules>,
}

impl Settings {
    /// Read `config` (NULL = defaults).
    ///
    /// # Safety
    /// A non-NULL `config` must point to a readable `ratecard_config` whose
    /// seed and rules pointers follow its documented contract.
    unsafe fn read(config: *const ratecard_config) -> Result<Settings, ratecard_status> {
        if config.is_null() {
            return Ok(Settings {
                config: Config::DEFAULT,
                seed: None,
                custom: None,
            });
        }
        // SAFETY: non-NULL and readable (caller); every field of ConfigBits
        // is valid for any bit pattern, and the layouts match (asserted).
        let c = unsafe { read_in(config as *const ConfigBits) };
        if c.reserved != [0; 3] || c.reserved32 != 0 || c.flags & !KNOWN_FLAGS != 0 {
            return Err(RATECARD_INVALID_ARGUMENT);
        }
        // SAFETY: the caller's contract for `seed`.
        let seed = unsafe { bytes(c.seed, c.seed_len) }.ok_or(RATECARD_INVALID_ARGUMENT)?;
        let seed = match (c.seed.is_null(), <[u8; 16]>::try_from(seed)) {
            (true, _) => None,
            (false, Ok(s)) => Some(Seed::from_bytes(s)),
            (false, Err(_)) => return Err(RATECARD_INVALID_CONFIG),
        };
        if c.ipv6_prefix_len > 128 {
            return Err(RATECARD_INVALID_CONFIG);
        }
        let unknown_kind = match c.unknown_kind {
            RATECARD_KIND_ANY | RATECARD_KIND_DEVELOPMENT => InstanceKind::Development,
            RATECARD_KIND_PRODUCTION => InstanceKind::Production,
            _ => return Err(RATECARD_INVALID_CONFIG),
        };
        let algorithm = match c.algorithm {
            RATECARD_ALGORITHM_DEFAULT => None,
            RATECARD_ALGORITHM_GCRA => Some(Algorithm::Gcra),
            RATECARD_ALGORITHM_FIXED_WINDOW => Some(Algorithm::FixedWindow),
            _ => return Err(RATECARD_INVALID_CONFIG),
        };
        let policy = Policy::from_u8(c.policy).ok_or(RATECARD_INVALID_CONFIG)?;
        // SAFETY: the caller's contract for `rules`.
        let custom = unsafe { CustomRules::copy(c.rules, c.rules_len) }?;
        Ok(Settings {
            config: Config {
                capacity: c.capacity,
                ipv6_prefix: c.ipv6_prefix_len,
                unknown_kind,
                pace: c.pace != 0,
                algorithm,
                policy,
                fold_case: c.flags & RATECARD_CONFIG_FOLD_CASE != 0,
                dry_run: c.dry_run != 0,
            },
            seed,
            custom,
        })
    }

    fn rules(&self) -> RuleTable<'static> {
        match &self.custom {
            Some(c) => c.table(),
            None => CLERK,
        }
    }

    fn seed(&self) -> Result<Seed, ratecard_status> {
        match self.seed {
            Some(s) => Ok(s),
            None => Seed::random().map_err(setup_status),
        }
    }
}

/// A custom rule table copied into memory the handle owns. Names are
/// followed by a NUL byte, for ratecard_rule_name().
struct CustomRules {
    // Never mutated once built: `rules` and `routes` hold slices of the
    // heap buffers below, which moving a Vec leaves in place.
    _text: Vec<u8>,
    _routes: Vec<Route<'static>>,
    rules: Vec<Rule<'static>>,
}

impl CustomRules {
    /// Copy and check `len` C rules; `None` for an empty table (the Clerk
    /// table is used).
    ///
    /// # Safety
    /// A non-NULL `ptr` must point to `len` readable `ratecard_rule`s (any
    /// alignment), whose pointers follow their documented contract.
    unsafe fn copy(
        ptr: *const ratecard_rule,
        len: usize,
    ) -> Result<Option<CustomRules>, ratecard_status> {
        if len == 0 {
            return Ok(None);
        }
        if ptr.is_null() {
            return Err(RATECARD_INVALID_ARGUMENT);
        }
        if len > MAX_RULES {
            return Err(RATECARD_INVALID_RULES);
        }
        // Copy the structs first: C may hand them over at any alignment.
        // SAFETY (each read): `len` readable rules at `ptr`, and each rule's
        // `routes_len` readable routes (the caller's contract).
        let c_rules: Vec<ratecard_rule> = (0..len)
            // SAFETY: as above.
            .map(|i| unsafe { read_nth(ptr, len, i) })
            .collect::<Option<_>>()
            .ok_or(RATECARD_INVALID_ARGUMENT)?;
        let total_routes = c_rules
            .iter()
            .try_fold(0usize, |n, r| n.checked_add(r.routes_len))
            .ok_or(RATECARD_INVALID_RULES)?;
        if total_routes > ratecard_core::route::MAX_ROUTES {
            return Err(RATECARD_INVALID_RULES);
        }
        let mut c_routes: Vec<Vec<ratecard_route>> = Vec::with_capacity(len);
        for r in &c_rules {
            if r.reserved != [0; 2] {
                return Err(RATECARD_INVALID_ARGUMENT);
            }
            if r.routes_len > 0 && r.routes.is_null() {
                return Err(RATECARD_INVALID_ARGUMENT);
            }
            let routes: Vec<ratecard_route> = (0..r.routes_len)
                // SAFETY: as above.
                .map(|i| unsafe { read_nth(r.routes, r.routes_len, i) })
                .collect::<Option<_>>()
                .ok_or(RATECARD_INVALID_ARGUMENT)?;
            c_routes.push(routes);
        }
        // Then every string into one buffer, each checked.
        let mut text = Vec::new();
        let mut spans = Vec::new();
        let mut push = |p: *const u8, n: usize, nul: bool| -> Result<(), ratecard_status> {
            // SAFETY: the caller's contract for every string of the table.
            let b = unsafe { bytes(p, n) }.ok_or(RATECARD_INVALID_ARGUMENT)?;
            text.try_reserve(b.len().saturating_add(1))
                .map_err(|_| RATECARD_OUT_OF_MEMORY)?;
            spans.push((text.len(), b.len()));
            text.extend_from_slice(b);
            if nul {
                text.push(0);
            }
            Ok(())
        };
        for (r, routes) in c_rules.iter().zip(&c_routes) {
            push(r.name, r.name_len, true)?;
            for route in routes {
                push(route.method, route.method_len, false)?;
                push(route.path, route.path_len, false)?;
            }
        }
        // SAFETY: `text` is final: never mutated or reallocated again, and
        // its heap buffer lives as long as the handle (see `ratecard_limiter`).
        let all: &'static [u8] = unsafe { std::slice::from_raw_parts(text.as_ptr(), text.len()) };
        let mut spans = spans.into_iter();
        let mut next = || -> Result<&'static [u8], ratecard_status> {
            let (at, n) = spans.next().ok_or(RATECARD_INVALID_ARGUMENT)?;
            all.get(at..at.saturating_add(n))
                .ok_or(RATECARD_INVALID_ARGUMENT)
        };
        let utf8 = |b: &'static [u8]| std::str::from_utf8(b).map_err(|_| RATECARD_INVALID_RULES);
        let mut names = Vec::with_capacity(len);
        let mut routes = Vec::with_capacity(total_routes);
        for r in &c_routes {
            names.push(utf8(next()?)?);
            for _ in r {
                let method = next()?;
                let method = match Method::parse(method) {
                    _ if method.is_empty() => Method::Any,
                    Method::Other => return Err(RATECARD_INVALID_RULES),
                    m => m,
                };
                routes.push(Route::new(method, utf8(next()?)?));
            }
        }
        // SAFETY: as for `all`: `routes` is final.
        let all_routes: &'static [Route<'static>] =
            unsafe { std::slice::from_raw_parts(routes.as_ptr(), routes.len()) };
        let mut rules = Vec::with_capacity(len);
        let mut first = 0usize;
        for ((r, name), c) in c_rules.iter().zip(names).zip(&c_routes) {
            let end = first.saturating_add(c.len());
            let rule_routes = all_routes
                .get(first..end)
                .ok_or(RATECARD_INVALID_ARGUMENT)?;
            first = end;
            rules.push(rule_of(r, name, rule_routes)?);
        }
        let custom = CustomRules {
            _text: text,
            _routes: routes,
            rules,
        };
        custom
            .table()
            .validate()
            .map_err(|_| RATECARD_INVALID_RULES)?;
        Ok(Some(custom))
    }

    fn table(&self) -> RuleTable<'static> {
        // SAFETY: as for the strings: `rules` is never mutated, and lives as
        // long as the handle, which drops its limiter first.
        RuleTable::new(unsafe { std::slice::from_raw_parts(self.rules.as_ptr(), self.rules.len()) })
    }
}

fn rule_of(
    r: &ratecard_rule,
    name: &'static str,
    routes: &'static [Route<'static>],
) -> Result<Rule<'static>, ratecard_status> {
    let api = Api::from_u32(r.api).ok_or(RATECARD_INVALID_RULES)?;
    let scope = match r.scope {
        RATECARD_SCOPE_CLIENT_IP => Scope::ClientIp,
        RATECARD_SCOPE_INSTANCE => Scope::Instance,
        RATECARD_SCOPE_INSTANCE_PARAMS => Scope::InstanceParams,
        _ => return Err(RATECARD_INVALID_RULES),
    };
    let kind = match r.kind {
        RATECARD_KIND_ANY => None,
        RATECARD_KIND_PRODUCTION => Some(InstanceKind::Production),
        RATECARD_KIND_DEVELOPMENT => Some(InstanceKind::Development),
        _ => return Err(RATECARD_INVALID_RULES),
    };
    let algorithm = match r.algorithm {
        RATECARD_ALGORITHM_DEFAULT | RATECARD_ALGORITHM_GCRA => Algorithm::Gcra,
        RATECARD_ALGORITHM_FIXED_WINDOW => Algorithm::FixedWindow,
        _ => return Err(RATECARD_INVALID_RULES),
    };
    Ok(Rule {
        name,
        api,
        scope,
        kind,
        routes,
        quota: Quota {
            limit: r.limit,
            period: Nanos(r.period_ns),
            burst: r.burst,
        },
        algorithm,
    })
}

impl ratecard_limiter {
    /// Move a handle to the heap; RATECARD_OUT_OF_MEMORY rather than an
    /// abort when that fails. Freed with `Box::from_raw`.
    fn boxed(
        limiter: Limiter<'static>,
        custom: Option<CustomRules>,
    ) -> Result<*mut ratecard_limiter, ratecard_status> {
        let layout = Layout::new::<ratecard_limiter>();
        // SAFETY: the handle is not zero-sized.
        let ptr = unsafe { alloc(layout) }.cast::<ratecard_limiter>();
        if ptr.is_null() {
            return Err(RATECARD_OUT_OF_MEMORY);
        }
        // SAFETY: freshly allocated for one `ratecard_limiter`; memory from
        // the global allocator with `Layout::new::<T>()` is what
        // `Box::from_raw` expects.
        unsafe { ptr.write(ratecard_limiter { limiter, custom }) };
        Ok(ptr)
    }

    /// The core limiter.
    pub(crate) fn get(&self) -> &Limiter<'static> {
        &self.limiter
    }

    pub(crate) fn name(&self, rule: u32) -> *const c_char {
        match &self.custom {
            // Custom names are stored followed by a NUL byte.
            Some(c) => c
                .rules
                .get(rule as usize)
                .map_or(std::ptr::null(), |r| r.name.as_ptr().cast()),
            None => clerk_names::get(rule as usize),
        }
    }
}

/// The Clerk table's rule names, NUL-terminated, built at compile time.
mod clerk_names {
    use std::ffi::c_char;

    use ratecard_core::CLERK;

    const RULES: usize = CLERK.len();

    #[allow(
        clippy::indexing_slicing,
        reason = "const evaluation: out of bounds fails the build"
    )]
    const LEN: usize = {
        let mut n = 0;
        let mut i = 0;
        while i < RULES {
            n += CLERK.rules()[i].name.len() + 1;
            i += 1;
        }
        n
    };

    #[allow(
        clippy::indexing_slicing,
        reason = "const evaluation: out of bounds fails the build"
    )]
    static TEXT: ([u8; LEN], [usize; RULES]) = {
        let mut text = [0u8; LEN];
        let mut starts = [0usize; RULES];
        let mut at = 0;
        let mut i = 0;
        while i < RULES {
            starts[i] = at;
            let name = CLERK.rules()[i].name.as_bytes();
            let mut j = 0;
            while j < name.len() {
                text[at] = name[j];
                at += 1;
                j += 1;
            }
            at += 1; // the NUL, already zero
            i += 1;
        }
        (text, starts)
    };

    /// The NUL-terminated name of rule `i`, or NULL.
    pub(super) fn get(i: usize) -> *const c_char {
        match TEXT.1.get(i).and_then(|&at| TEXT.0.get(at..)) {
            Some(s) => s.as_ptr().cast(),
            None => std::ptr::null(),
        }
    }
}

/// Hand a new handle to the caller, or the status why there is none.
///
/// # Safety
/// `out` must be valid for a write.
unsafe fn deliver(
    made: Result<*mut ratecard_limiter, ratecard_status>,
    out: *mut *mut ratecard_limiter,
) -> ratecard_status {
    match made {
        Ok(handle) => {
            // SAFETY: forwarded.
            unsafe { write(out, handle) };
            RATECARD_OK
        }
        Err(e) => e,
    }
}

/// Fill `*out` with the defaults: capacity 65536, seed from the operating
/// system, IPv6 /64, enforcing (no dry run), RATECARD_POLICY_EVICT, unknown
/// key prefixes are development instances, no pace mode, each rule's own
/// algorithm, the built-in Clerk table, no flags, reserved words zero.
///
/// `out` NULL: does nothing.
#[no_mangle]
pub unsafe extern "C" fn ratecard_config_default(out: *mut ratecard_config) {
    boundary! {
        nonnull: out;
        {
            let config = c_config(&Config::DEFAULT, 0);
            // SAFETY: `out` is not NULL and points to a ratecard_config.
            unsafe { write(out, config) }
        }
    }
}

/// The C form of a configuration (no seed: it is never handed out).
fn c_config(c: &Config, rules_len: usize) -> ratecard_config {
    ratecard_config {
        capacity: c.capacity,
        seed: std::ptr::null(),
        seed_len: 0,
        ipv6_prefix_len: c.ipv6_prefix,
        dry_run: c.dry_run,
        policy: c.policy as u8,
        unknown_kind: match c.unknown_kind {
            InstanceKind::Production => RATECARD_KIND_PRODUCTION,
            InstanceKind::Development => RATECARD_KIND_ANY,
        },
        pace: c.pace,
        algorithm: match c.algorithm {
            None => RATECARD_ALGORITHM_DEFAULT,
            Some(Algorithm::Gcra) => RATECARD_ALGORITHM_GCRA,
            Some(Algorithm::FixedWindow) => RATECARD_ALGORITHM_FIXED_WINDOW,
        },
        rules: std::ptr::null(),
        rules_len,
        flags: if c.fold_case {
            RATECARD_CONFIG_FOLD_CASE
        } else {
            0
        },
        reserved32: 0,
        reserved: [0; 3],
    }
}

/// Write the configuration in force on `limiter` to `*out`: the table's
/// recorded values (capacity after rounding, IPv6 prefix, policy, unknown
/// key kind, pace mode, algorithm, flags) and this handle's own dry run and
/// policy, in the form ratecard_config_default() writes them (an unknown
/// key kind of development reads back as RATECARD_KIND_ANY). The seed is
/// never handed out (`seed` NULL, `seed_len` 0); `rules` is NULL and
/// `rules_len` the number of rules; reserved words are zero. A host uses
/// it to notice, on reload, that its configuration no longer matches a
/// table it attached to.
///
/// Thread safety: reads only the handle. Statuses: RATECARD_OK,
/// RATECARD_NULL_ARGUMENT, RATECARD_INVALID_ARGUMENT (a pointer no handle
/// has).
#[no_mangle]
pub unsafe extern "C" fn ratecard_limiter_config(
    limiter: *const ratecard_limiter,
    out: *mut ratecard_config,
) -> ratecard_status {
    boundary! {
        handle: limiter;
        nonnull: out;
        {
            let l = limiter.get();
            let mut c = *l.config();
            // The table's slots: the configured capacity rounded up.
            let slots = Limiter::bytes_for(c.capacity)
                .and_then(|_| ratecard_core::table::buckets_for(c.capacity as u64))
                .map_or(0, |b| b.saturating_mul(4));
            c.capacity = u32::try_from(slots).unwrap_or(u32::MAX);
            // SAFETY: `out` is not NULL and points to a ratecard_config.
            unsafe { write(out, c_config(&c, l.rules().len())) };
            RATECARD_OK
        }
    }
}

/// Bytes of memory a table of `capacity` slots takes, header included,
/// after rounding the capacity up (a power-of-two number of 4-slot
/// buckets). 0 when `capacity` is 0 or above 2^28.
#[no_mangle]
pub extern "C" fn ratecard_limiter_bytes(capacity: u32) -> usize {
    boundary! {
        {
            Limiter::bytes_for(capacity).unwrap_or(0)
        }
    }
}

/// Create a limiter in memory the library allocates (64-byte aligned,
/// zeroed, ratecard_limiter_bytes(config->capacity) bytes). Free it with
/// ratecard_limiter_free(). On Linux a table of 2 MiB or more is 2 MiB
/// aligned and advised MADV_HUGEPAGE, for transparent huge pages where the
/// system allows them (enabled = always or madvise).
///
/// `config` NULL: the defaults (see ratecard_config_default()). A custom
/// rule table in `config` is copied: the caller's rules may be freed after
/// the call. `config`, its rules and routes may have any alignment.
///
/// Returns RATECARD_OK and sets `*out`; or RATECARD_NULL_ARGUMENT (`out`),
/// RATECARD_INVALID_ARGUMENT, RATECARD_INVALID_CONFIG, RATECARD_INVALID_RULES,
/// RATECARD_INVALID_CAPACITY, RATECARD_OUT_OF_MEMORY,
/// RATECARD_SEED_UNAVAILABLE, RATECARD_NO_LOCK_FREE_CAS.
#[no_mangle]
pub unsafe extern "C" fn ratecard_limiter_new(
    config: *const ratecard_config,
    out: *mut *mut ratecard_limiter,
) -> ratecard_status {
    boundary! {
        nonnull: out;
        {
            // SAFETY: the caller's contract for `config`.
            let made = unsafe { Settings::read(config) }.and_then(|s| {
                let seed = s.seed()?;
                let limiter = Limiter::new(&s.config, s.rules(), seed).map_err(setup_status)?;
                ratecard_limiter::boxed(limiter, s.custom)
            });
            // SAFETY: `out` is not NULL.
            unsafe { deliver(made, out) }
        }
    }
}

/// Lay a new table out in caller memory `mem` of `len` bytes, erasing what
/// it held, and return a handle on it. `mem` must be 64-byte aligned and at
/// least ratecard_limiter_bytes(config->capacity) bytes; a MAP_SHARED
/// mapping (or an nginx shared zone) lets other processes join with
/// ratecard_limiter_attach(). The memory must stay mapped until every
/// handle on it is freed; ratecard_limiter_free() never writes it. Large
/// tables in memory the caller maps may ask for huge pages (Linux:
/// madvise(MADV_HUGEPAGE) on the mapping, or MAP_HUGETLB) before this call:
/// one TLB entry then covers 2 MiB of slots.
///
/// `config` NULL: the defaults. Call once per region, before any attach.
///
/// Returns RATECARD_OK and sets `*out`; or RATECARD_NULL_ARGUMENT (`mem`,
/// `out`), RATECARD_MISALIGNED, RATECARD_MEMORY_TOO_SMALL, and the statuses
/// of ratecard_limiter_new().
#[no_mangle]
pub unsafe extern "C" fn ratecard_limiter_init(
    mem: *mut std::ffi::c_void,
    len: usize,
    config: *const ratecard_config,
    out: *mut *mut ratecard_limiter,
) -> ratecard_status {
    boundary! {
        nonnull: mem, out;
        {
            // SAFETY: the caller's contract for `config`.
            let made = unsafe { Settings::read(config) }.and_then(|s| {
                let rules = s.rules();
                let seed = s.seed()?;
                // SAFETY: the caller hands over `len` bytes at `mem` until
                // the handle is freed, shared only through this library.
                let limiter =
                    unsafe { Limiter::init_raw(mem.cast(), len, &s.config, rules, seed) }
                        .map_err(setup_status)?;
                ratecard_limiter::boxed(limiter, s.custom)
            });
            // SAFETY: `out` is not NULL.
            unsafe { deliver(made, out) }
        }
    }
}

/// Join the table that ratecard_limiter_init() laid out in `mem` (perhaps
/// in another process), after verifying its header and checksum. The
/// configuration recorded in the table applies; the handle enforces (no dry
/// run) with the recorded policy. Only for tables on the built-in Clerk
/// table: use ratecard_limiter_attach_with() for a custom one.
///
/// Returns RATECARD_OK and sets `*out`; or RATECARD_NULL_ARGUMENT,
/// RATECARD_MEMORY_TOO_SMALL, RATECARD_MISALIGNED, RATECARD_NOT_A_TABLE,
/// RATECARD_CORRUPT, RATECARD_NOT_SEEDED (initialisation not finished),
/// RATECARD_RULES_MISMATCH, RATECARD_NO_LOCK_FREE_CAS.
#[no_mangle]
pub unsafe extern "C" fn ratecard_limiter_attach(
    mem: *mut std::ffi::c_void,
    len: usize,
    out: *mut *mut ratecard_limiter,
) -> ratecard_status {
    boundary! {
        nonnull: mem, out;
        {
            // SAFETY: as for ratecard_limiter_init.
            let made = unsafe { Limiter::attach_raw(mem.cast(), len, CLERK, HandleOptions::default()) }
                .map_err(setup_status)
                .and_then(|limiter| ratecard_limiter::boxed(limiter, None));
            // SAFETY: `out` is not NULL.
            unsafe { deliver(made, out) }
        }
    }
}

/// ratecard_limiter_attach() with the rule table of `config` (which must be
/// the one the table was made with: RATECARD_RULES_MISMATCH otherwise) and
/// this handle's own options from `config`: `dry_run` and `policy`. Every
/// other field of `config` is ignored: the table's recorded configuration
/// wins. `config` NULL: the Clerk table, enforcing, RATECARD_POLICY_EVICT.
///
/// Returns the statuses of ratecard_limiter_attach(), and
/// RATECARD_INVALID_ARGUMENT, RATECARD_INVALID_CONFIG (`policy`),
/// RATECARD_INVALID_RULES.
#[no_mangle]
pub unsafe extern "C" fn ratecard_limiter_attach_with(
    mem: *mut std::ffi::c_void,
    len: usize,
    config: *const ratecard_config,
    out: *mut *mut ratecard_limiter,
) -> ratecard_status {
    boundary! {
        nonnull: mem, out;
        {
            // SAFETY: the caller's contract for `config`.
            let made = unsafe { Settings::read(config) }.and_then(|s| {
                let options = HandleOptions {
                    dry_run: s.config.dry_run,
                    policy: Some(s.config.policy),
                };
                // SAFETY: as for ratecard_limiter_init.
                let limiter = unsafe { Limiter::attach_raw(mem.cast(), len, s.rules(), options) }
                    .map_err(setup_status)?;
                ratecard_limiter::boxed(limiter, s.custom)
            });
            // SAFETY: `out` is not NULL.
            unsafe { deliver(made, out) }
        }
    }
}

/// Free a handle from ratecard_limiter_new(), _init(), _attach() or
/// _attach_with(). On an _init/_attach handle only the process's own memory
/// is freed; the caller's region is never written, and other handles on it
/// keep working. NULL: does nothing. The handle must not be used after, nor
/// concurrently with, this call.
#[no_mangle]
pub unsafe extern "C" fn ratecard_limiter_free(limiter: *mut ratecard_limiter) {
    boundary! {
        {
            if !limiter.is_null() && limiter.is_aligned() {
                // SAFETY: a handle from Box::into_raw in this module, freed
                // once (the caller's contract).
                drop(unsafe { Box::from_raw(limiter) });
            }
        }
    }
}

/// Counters of the limiter's table, summed over every handle and process on
/// it (see ratecard_stats for what they promise). The occupancy is a scan
/// of the whole table: for monitoring, not for every request.
///
/// Returns RATECARD_OK and fills `*out`, or RATECARD_NULL_ARGUMENT,
/// RATECARD_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn ratecard_limiter_stats(
    limiter: *const ratecard_limiter,
    out: *mut ratecard_stats,
) -> ratecard_status {
    boundary! {
        handle: limiter;
        nonnull: out;
        {
            let s = limiter.get().stats();
            let stats = ratecard_stats {
                allowed: s.allowed,
                limited: s.limited,
                dry_run_limited: s.dry_run_limited,
                exempt: s.exempt,
                unmatched: s.unmatched,
                errors: s.errors,
                inserts: s.inserts,
                evicted: s.evicted,
                evicted_in_debt: s.evicted_in_debt,
                full: s.full,
                remote_calls: s.remote_calls,
                remote_errors: s.remote_errors,
                remote_fallbacks: s.remote_fallbacks,
                remote_cached: s.remote_cached,
                occupancy: s.occupancy,
                capacity: s.capacity,
                reserved: [0; 4],
            };
            // SAFETY: `out` is not NULL.
            unsafe { write(out, stats) };
            RATECARD_OK
        }
    }
}

/// Decisions with rule `rule` binding, over every handle on the table.
///
/// Returns RATECARD_OK and fills `*out`, or RATECARD_NULL_ARGUMENT,
/// RATECARD_INVALID_ARGUMENT, RATECARD_UNKNOWN_RULE.
#[no_mangle]
pub unsafe extern "C" fn ratecard_limiter_rule_stats(
    limiter: *const ratecard_limiter,
    rule: u32,
    out: *mut ratecard_rule_stats,
) -> ratecard_status {
    boundary! {
        handle: limiter;
        nonnull: out;
        {
            let Some(id) = rule_id(rule) else {
                return RATECARD_UNKNOWN_RULE;
            };
            match limiter.get().rule_stats(id) {
                Some(r) => {
                    let stats = ratecard_rule_stats {
                        allowed: r.allowed,
                        limited: r.limited,
                        dry_run_limited: r.dry_run_limited,
                        exempt: r.exempt,
                        reserved: [0; 2],
                    };
                    // SAFETY: `out` is not NULL.
                    unsafe { write(out, stats) };
                    RATECARD_OK
                }
                None => RATECARD_UNKNOWN_RULE,
            }
        }
    }
}

/// The rule id of a C rule index, if it can be one.
pub(crate) fn rule_id(rule: u32) -> Option<RuleId> {
    u8::try_from(rule).ok().map(RuleId)
}

/// The number of rules in the limiter's table; rules are numbered from 0.
///
/// Returns RATECARD_OK and sets `*out`, or RATECARD_NULL_ARGUMENT,
/// RATECARD_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn ratecard_rule_count(
    limiter: *const ratecard_limiter,
    out: *mut u32,
) -> ratecard_status {
    boundary! {
        handle: limiter;
        nonnull: out;
        {
            let n = limiter.get().rules().len();
            // SAFETY: `out` is not NULL; a table has at most 64 rules.
            unsafe { write(out, n as u32) };
            RATECARD_OK
        }
    }
}

/// One rule's quota, as the table enforces it.
#[repr(C)]
pub struct ratecard_rule_info {
    /// RATECARD_API_FRONTEND or RATECARD_API_BACKEND.
    pub api: u32,
    /// Requests per period; 0 = unlimited (exempt).
    pub limit: u32,
    /// The period in nanoseconds.
    pub period_ns: u64,
    /// The burst as enforced (1 in pace mode).
    pub burst: u32,
    /// RATECARD_SCOPE_*.
    pub scope: u8,
    /// RATECARD_ALGORITHM_GCRA or RATECARD_ALGORITHM_FIXED_WINDOW, as
    /// enforced.
    pub algorithm: u8,
    /// Zero.
    pub reserved: [u64; 2],
}

/// Describe rule `rule`: API, limit, period, burst and algorithm as
/// enforced (with the configuration's pace mode and algorithm applied), so
/// bindings read Clerk's table from the library instead of copying it.
///
/// Returns RATECARD_OK and fills `*out`, or RATECARD_NULL_ARGUMENT,
/// RATECARD_INVALID_ARGUMENT, RATECARD_UNKNOWN_RULE.
#[no_mangle]
pub unsafe extern "C" fn ratecard_limiter_rule_info(
    limiter: *const ratecard_limiter,
    rule: u32,
    out: *mut ratecard_rule_info,
) -> ratecard_status {
    boundary! {
        handle: limiter;
        nonnull: out;
        {
            let l = limiter.get();
            let Some(r) = l.rules().get(rule as usize) else {
                return RATECARD_UNKNOWN_RULE;
            };
            let c = l.config();
            let algorithm = c.algorithm.unwrap_or(r.algorithm);
            let burst = if c.pace && algorithm == Algorithm::Gcra && !r.quota.is_unlimited() {
                1
            } else {
                r.quota.burst()
            };
            let info = ratecard_rule_info {
                api: r.api as u32,
                limit: r.quota.limit,
                period_ns: r.quota.period.0,
                burst,
                scope: match r.scope {
                    Scope::ClientIp => RATECARD_SCOPE_CLIENT_IP,
                    Scope::Instance => RATECARD_SCOPE_INSTANCE,
                    Scope::InstanceParams => RATECARD_SCOPE_INSTANCE_PARAMS,
                },
                algorithm: match algorithm {
                    Algorithm::Gcra => RATECARD_ALGORITHM_GCRA,
                    Algorithm::FixedWindow => RATECARD_ALGORITHM_FIXED_WINDOW,
                },
                reserved: [0; 2],
            };
            // SAFETY: `out` is not NULL.
            unsafe { write(out, info) };
            RATECARD_OK
        }
    }
}

/// The NUL-terminated name of rule `rule` (e.g. "fapi.sign_ins.create"),
/// valid as long as the handle; NULL when `limiter` is NULL or `rule` is out
/// of range (RATECARD_NO_RULE included).
#[no_mangle]
pub unsafe extern "C" fn ratecard_rule_name(
    limiter: *const ratecard_limiter,
    rule: u32,
) -> *const c_char {
    boundary! {
        handle: limiter;
        {
            limiter.name(rule)
        }
    }
}

/// The index of the rule named `name` (`name_len` bytes, no NUL needed).
///
/// Returns RATECARD_OK and sets `*out`, or RATECARD_NULL_ARGUMENT,
/// RATECARD_INVALID_ARGUMENT, RATECARD_UNKNOWN_RULE.
#[no_mangle]
pub unsafe extern "C" fn ratecard_rule_find(
    limiter: *const ratecard_limiter,
    name: *const u8,
    name_len: usize,
    out: *mut u32,
) -> ratecard_status {
    boundary! {
        handle: limiter;
        nonnull: out;
        bytes: name / name_len;
        {
            let rules = limiter.get().rules().rules();
            match rules.iter().position(|r| r.name.as_bytes() == name) {
                Some(i) => {
                    // SAFETY: `out` is not NULL; a table has at most 64 rules.
                    unsafe { write(out, i as u32) };
                    RATECARD_OK
                }
                None => RATECARD_UNKNOWN_RULE,
            }
        }
    }
}
