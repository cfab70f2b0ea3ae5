//! `Limiter`: a rule table, a configuration and a seed over a state table,
//! wherever its memory came from.

use core::sync::atomic::Ordering;

use crate::decision::Decision;
use crate::error::Error;
use crate::hash::{self, Domain, Seed, Subject};
use crate::quota::{Algorithm, Outcome, Quota};
use crate::route::{self, Match};
use crate::router::Router;
use crate::rule::{Api, InstanceKind, RuleTable, Scope, MAX_RULES};
use crate::table::evict::{self, Room};
use crate::table::header::Fields;
use crate::table::slot::{self, Cells, Found, Inserted, Rules, MAX_RETRIES};
use crate::table::{self, StaticMemory, Table};
use crate::time::{Nanos, NANOS_PER_SEC};
use crate::{gcra, window};

/// What a handle does when both of a new key's buckets hold only keys still
/// in debt.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Policy {
    /// Evict the candidate using the smallest fraction of its burst (counted).
    Evict = 0,
    /// Deny the new key until a candidate is replenished (fail closed).
    Deny = 1,
    /// Admit the new key without tracking it (fail open).
    Admit = 2,
}

impl Policy {
    /// The policy for a C-side value.
    pub const fn from_u8(v: u8) -> Option<Policy> {
        match v {
            0 => Some(Policy::Evict),
            1 => Some(Policy::Deny),
            2 => Some(Policy::Admit),
            _ => None,
        }
    }
}

/// A limiter's configuration. All but `dry_run` is recorded in the table's
/// header, so every process attached to one table decides alike.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Slots in the table (rounded up; see [`Limiter::bytes_for`]).
    pub capacity: u32,
    /// IPv6 clients are keyed on this many leading bits (0..=128).
    pub ipv6_prefix: u8,
    /// Instance kind of a secret key with an unknown prefix.
    pub unknown_kind: InstanceKind,
    /// Pace mode: burst 1 on every GCRA rule, so at most `limit` requests in
    /// any window of `period`, whatever the far side runs.
    pub pace: bool,
    /// Enforce every rule with this algorithm instead of its own.
    pub algorithm: Option<Algorithm>,
    /// What to do when a new key finds only keys in debt.
    pub policy: Policy,
    /// Never deny: report would-be denials in `dry_run_denied` (per handle).
    pub dry_run: bool,
}

impl Config {
    /// The defaults: 65 536 slots, IPv6 /64, unknown keys are development
    /// instances, no pace mode, each rule's own algorithm, evict, enforce.
    pub const DEFAULT: Config = Config {
        capacity: 1 << 16,
        ipv6_prefix: 64,
        unknown_kind: InstanceKind::Development,
        pace: false,
        algorithm: None,
        policy: Policy::Evict,
        dry_run: false,
    };

    fn pack(&self) -> u64 {
        let algorithm = match self.algorithm {
            None => 0,
            Some(a) => 1 + a as u64,
        };
        self.ipv6_prefix as u64
            | (self.unknown_kind as u64) << 8
            | (self.pace as u64) << 16
            | (self.policy as u64) << 24
            | algorithm << 32
    }

    fn unpack(v: u64, capacity: u32) -> Option<Config> {
        let algorithm = match (v >> 32) & 0xff {
            0 => None,
            1 => Some(Algorithm::Gcra),
            2 => Some(Algorithm::FixedWindow),
            _ => return None,
        };
        let unknown_kind = match (v >> 8) & 0xff {
            0 => InstanceKind::Production,
            1 => InstanceKind::Development,
            _ => return None,
        };
        let config = Config {
            capacity,
            ipv6_prefix: v as u8,
            unknown_kind,
            pace: match (v >> 16) & 0xff {
                0 => false,
                1 => true,
                _ => return None,
            },
            algorithm,
            policy: Policy::from_u8((v >> 24) as u8)?,
            dry_run: false,
        };
        (config.pack() == v && config.ipv6_prefix <= 128).then_some(config)
    }
}

impl Default for Config {
    fn default() -> Config {
        Config::DEFAULT
    }
}

/// Per-handle options for [`Limiter::attach`]: these may differ between
/// processes sharing one table.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct HandleOptions {
    /// Never deny on this handle.
    pub dry_run: bool,
    /// Override the recorded policy on this handle.
    pub policy: Option<Policy>,
}

/// One request to decide.
#[derive(Copy, Clone, Debug)]
pub struct Request<'r> {
    /// The API addressed.
    pub api: Api,
    /// The HTTP method (any case).
    pub method: &'r [u8],
    /// The request target's path; may carry a query string.
    pub path: &'r [u8],
    /// Client IP in network order: empty, 4 bytes or 16 bytes.
    pub client_ip: &'r [u8],
    /// Secret key, raw or as an `Authorization` value (`Bearer sk_…`).
    pub secret_key: &'r [u8],
    /// Optional tenant: namespaces clients; names the instance on Backend.
    pub tenant: &'r [u8],
    /// Units this request costs; 0 means 1.
    pub cost: u32,
}

impl<'r> Request<'r> {
    /// A request of cost 1 with no IP, key or tenant.
    pub const fn new(api: Api, method: &'r [u8], path: &'r [u8]) -> Request<'r> {
        Request {
            api,
            method,
            path,
            client_ip: &[],
            secret_key: &[],
            tenant: &[],
            cost: 1,
        }
    }

    /// The same request from `ip` (4 or 16 bytes).
    pub const fn ip(self, client_ip: &'r [u8]) -> Request<'r> {
        Request { client_ip, ..self }
    }

    /// The same request with a secret key or `Authorization` value.
    pub const fn key(self, secret_key: &'r [u8]) -> Request<'r> {
        Request { secret_key, ..self }
    }

    /// The same request in a tenant.
    pub const fn tenant(self, tenant: &'r [u8]) -> Request<'r> {
        Request { tenant, ..self }
    }

    /// The same request with a cost.
    pub const fn cost(self, cost: u32) -> Request<'r> {
        Request { cost, ..self }
    }
}

/// Counters summed over every stripe.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Decisions allowed (exempt ones included; unmatched ones not counted).
    pub allowed: u64,
    /// Decisions denied (dry-run denials included).
    pub denied: u64,
    /// Inserts that evicted a key still in debt.
    pub evicted: u64,
    /// Keys inserted.
    pub inserts: u64,
    /// Requests refused or admitted untracked because the table was full of
    /// keys in debt (Deny and Admit policies).
    pub full: u64,
    /// Slots holding a key now.
    pub occupancy: u64,
    /// Slots in the table.
    pub capacity: u64,
}

/// Per-rule parameters, precomputed so the hot path does no division.
#[derive(Copy, Clone, Debug)]
struct Params {
    quota: Quota,
    /// GCRA's emission interval, `quota.emission_interval()`.
    t: u64,
    /// `gcra::reciprocal(t)`, to divide by `t` without a division.
    recip: u64,
    /// The fixed window's length, `quota.period_ns()`.
    period: u64,
    /// `quota.burst()`.
    burst: u32,
    algorithm: Algorithm,
    scope: Scope,
    unlimited: bool,
}

const NO_PARAMS: Params = Params::new(Quota::unlimited(), Algorithm::Gcra, Scope::Instance);

impl Params {
    const fn new(quota: Quota, algorithm: Algorithm, scope: Scope) -> Params {
        Params {
            quota,
            t: quota.emission_interval(),
            recip: gcra::reciprocal(quota.emission_interval()),
            period: quota.period_ns(),
            burst: quota.burst(),
            algorithm,
            scope,
            unlimited: quota.is_unlimited(),
        }
    }

    /// [`Algorithm::decide`] on the precomputed parameters.
    #[inline(always)]
    fn decide(&self, state: u64, now: u64, cost: u32) -> Outcome {
        match self.algorithm {
            Algorithm::Gcra => gcra::decide_with(state, now, cost, self.t, self.burst, self.recip),
            Algorithm::FixedWindow => {
                window::decide(state, now, cost, self.quota.limit, self.period)
            }
        }
    }
}

/// A rule-limiter over one state table. `check` takes `&self`: share one
/// handle between threads, or attach one handle per process to shared memory.
pub struct Limiter<'a> {
    table: Table<'a>,
    rules: RuleTable<'a>,
    router: Router<'a>,
    params: [Params; MAX_RULES],
    config: Config,
    seed: Seed,
}

/// One rule of one request, with its slot tag.
#[derive(Copy, Clone)]
struct Work {
    rule: u8,
    tag: u64,
}

/// The tags of one request's matched rules, as they are matched.
struct Tagger<'l, 'r> {
    limiter: &'l Limiter<'l>,
    tenant: &'r [u8],
    key: &'r [u8],
    ip: Option<&'r ClientIp>,
    /// The subject hashes, computed at the first rule that needs each.
    by_ip: Option<Subject>,
    by_instance: Option<Subject>,
    /// A matched rule had no subject to count.
    missing: bool,
    /// The first matched rule with an unlimited quota.
    exempt: Option<u8>,
    work: &'r mut heapless::Vec<Work, MAX_RULES>,
}

impl Tagger<'_, '_> {
    /// Add the tag of one matched rule; `plain` says its captures hold no
    /// percent escape (else they are checked).
    #[inline(always)]
    fn add(&mut self, m: Match<'_>, plain: bool) {
        let l = self.limiter;
        let p = l.params(m.rule);
        let subject = match p.scope {
            Scope::ClientIp => match (self.by_ip, self.ip) {
                (Some(s), _) => s,
                (None, Some(ip)) => *self.by_ip.insert(hash::subject_lazy(
                    &l.seed,
                    Domain::Ip,
                    self.tenant,
                    ip.bytes(),
                )),
                (None, None) => {
                    self.missing = true;
                    return;
                }
            },
            Scope::Instance | Scope::InstanceParams => match self.by_instance {
                Some(s) => s,
                None => match instance_subject(&l.seed, self.tenant, self.key, self.ip) {
                    Some(s) => *self.by_instance.insert(s),
                    None => {
                        self.missing = true;
                        return;
                    }
                },
            },
        };
        let tag = if p.scope == Scope::InstanceParams {
            capture_tag(&subject, &m, plain)
        } else {
            hash::tag_of_h1(subject.h1(), m.rule)
        };
        // Capacity equals MAX_RULES and a table has at most that many.
        let _ = self.work.push(Work { rule: m.rule, tag });
    }
}

impl<'a> Limiter<'a> {
    /// Bytes of memory a table of `capacity` slots takes, header included;
    /// `None` for 0 or above 2^28.
    pub fn bytes_for(capacity: u32) -> Option<usize> {
        table::bytes_for(capacity as u64)
    }

    fn new(table: Table<'a>, rules: RuleTable<'a>, config: Config, seed: Seed) -> Limiter<'a> {
        let mut params = [NO_PARAMS; MAX_RULES];
        for (p, rule) in params.iter_mut().zip(rules.rules()) {
            let mut quota = rule.quota;
            let algorithm = config.algorithm.unwrap_or(rule.algorithm);
            if config.pace && algorithm == Algorithm::Gcra {
                quota = quota.with_burst(1);
            }
            *p = Params::new(quota, algorithm, rule.scope);
        }
        Limiter {
            table,
            rules,
            router: Router::new(rules),
            params,
            config,
            seed,
        }
    }

    fn check_setup(rules: &RuleTable<'_>, config: &Config) -> Result<(), Error> {
        rules.validate()?;
        if config.ipv6_prefix > 128 {
            return Err(Error::InvalidConfig);
        }
        if !table::cas_is_lock_free() {
            return Err(Error::NoLockFreeCas);
        }
        Ok(())
    }

    /// Lay a new table out in `mem`, erasing what it held.
    ///
    /// # Safety
    /// `mem` must be valid for reads and writes of `len` bytes for `'a`, and
    /// anyone else using that memory (other threads, other processes) must
    /// do so only through this crate.
    pub unsafe fn init_raw(
        mem: *mut u8,
        len: usize,
        config: &Config,
        rules: RuleTable<'a>,
        seed: Seed,
    ) -> Result<Limiter<'a>, Error> {
        Self::check_setup(&rules, config)?;
        // SAFETY: forwarded from the caller.
        let table = unsafe { Table::place_zeroed(mem, len, config.capacity as u64)? };
        table.header.write(&Fields {
            capacity: table.capacity(),
            config: config.pack(),
            fingerprint: rules.fingerprint(),
            seed,
            nrules: rules.len() as u64,
        });
        Ok(Limiter::new(table, rules, *config, seed))
    }

    /// Join a table another handle (perhaps another process) laid out in
    /// `mem`, after verifying its header, checksum and rule fingerprint. The
    /// recorded configuration applies; `options` are this handle's own.
    ///
    /// # Safety
    /// As for [`Limiter::init_raw`].
    pub unsafe fn attach_raw(
        mem: *mut u8,
        len: usize,
        rules: RuleTable<'a>,
        options: HandleOptions,
    ) -> Result<Limiter<'a>, Error> {
        if mem.is_null() {
            return Err(Error::Null);
        }
        if len < table::bytes_for(1).unwrap_or(0) {
            return Err(Error::TooSmall);
        }
        if !(mem as usize).is_multiple_of(table::ALIGN) {
            return Err(Error::Misaligned);
        }
        // SAFETY: the header fits (checked above) and is aligned; every bit
        // pattern is a valid atomic; validity for 'a comes from the caller.
        let header = unsafe { &*(mem as *const table::header::Header) };
        let fields = header.read()?;
        let capacity = u32::try_from(fields.capacity).map_err(|_| Error::Corrupt)?;
        if table::buckets_for(capacity as u64).map(|b| b * 4) != Some(fields.capacity) {
            return Err(Error::Corrupt);
        }
        let mut config = Config::unpack(fields.config, capacity).ok_or(Error::Corrupt)?;
        Self::check_setup(&rules, &config)?;
        if fields.fingerprint != rules.fingerprint() || fields.nrules != rules.len() as u64 {
            return Err(Error::RulesMismatch);
        }
        config.dry_run = options.dry_run;
        if let Some(p) = options.policy {
            config.policy = p;
        }
        // SAFETY: forwarded from the caller; the capacity is our own copy,
        // checked against `len` by `place`.
        let table = unsafe { Table::place(mem, len, capacity as u64)? };
        Ok(Limiter::new(table, rules, config, fields.seed))
    }

    /// Lay a new table out in `mem` (64-byte aligned, at least
    /// [`Limiter::bytes_for`] bytes).
    pub fn init(
        mem: &'a mut [u8],
        config: &Config,
        rules: RuleTable<'a>,
        seed: Seed,
    ) -> Result<Limiter<'a>, Error> {
        // SAFETY: an exclusive borrow for 'a is valid memory no one else uses.
        unsafe { Limiter::init_raw(mem.as_mut_ptr(), mem.len(), config, rules, seed) }
    }

    /// Join the table laid out in `mem` by [`Limiter::init`].
    pub fn attach(
        mem: &'a mut [u8],
        rules: RuleTable<'a>,
        options: HandleOptions,
    ) -> Result<Limiter<'a>, Error> {
        // SAFETY: as for `init`.
        unsafe { Limiter::attach_raw(mem.as_mut_ptr(), mem.len(), rules, options) }
    }

    /// The rule table.
    pub fn rules(&self) -> &RuleTable<'a> {
        &self.rules
    }

    /// The configuration in force on this handle.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Decide `request` at `now`, charging every matched rule if it is allowed.
    pub fn check(&self, request: &Request<'_>, now: Nanos) -> Result<Decision, Error> {
        self.decide(request, now.0, false)
    }

    /// The decision [`Limiter::check`] would give, consuming nothing.
    pub fn peek(&self, request: &Request<'_>, now: Nanos) -> Result<Decision, Error> {
        self.decide(request, now.0, true)
    }

    /// Decide one unit-or-more of rule `rule` for an opaque `key` (for
    /// callers that classify requests themselves).
    pub fn check_key(
        &self,
        rule: u32,
        key: &[u8],
        cost: u32,
        now: Nanos,
    ) -> Result<Decision, Error> {
        self.decide_key(rule, key, cost, now.0, false)
    }

    /// The decision [`Limiter::check_key`] would give, consuming nothing.
    pub fn peek_key(
        &self,
        rule: u32,
        key: &[u8],
        cost: u32,
        now: Nanos,
    ) -> Result<Decision, Error> {
        self.decide_key(rule, key, cost, now.0, true)
    }

    /// Forget the state of every rule `request` matches, for its subject.
    /// Returns the number of slots cleared.
    pub fn reset(&self, request: &Request<'_>) -> Result<u32, Error> {
        let mut work = heapless::Vec::<Work, MAX_RULES>::new();
        match self.classify(request, &mut work)? {
            Classified::Work => Ok(work.iter().map(|w| self.forget(w.tag)).sum()),
            _ => Ok(0),
        }
    }

    /// Forget the state of rule `rule` for `key` (see [`Limiter::check_key`]).
    pub fn reset_key(&self, rule: u32, key: &[u8]) -> Result<u32, Error> {
        let tag = self.key_tag(rule, key)?;
        Ok(self.forget(tag))
    }

    /// Remove every live slot of `tag`. Markers are left alone: without a
    /// clock, a reset cannot tell an expired claim from a fresh one.
    fn forget(&self, tag: u64) -> u32 {
        let mut cleared = 0;
        for i in slot::candidates(tag, self.table.mask()) {
            for _ in 0..MAX_RETRIES {
                let v = self.table.load(i);
                if slot::identity(v) != tag || slot::kind_of(v) != slot::Kind::Live {
                    break;
                }
                if self.table.cas(i, v, 0).is_ok() {
                    cleared += 1;
                    break;
                }
            }
        }
        cleared
    }

    /// Counters summed over the stripes, and the table's occupancy (a scan).
    pub fn stats(&self) -> Stats {
        let mut s = Stats {
            evicted: self.table.sum(|s| &s.evicted),
            inserts: self.table.sum(|s| &s.inserts),
            full: self.table.sum(|s| &s.full),
            occupancy: self.table.occupancy(),
            capacity: self.table.capacity(),
            ..Stats::default()
        };
        for r in 0..self.rules.len() {
            let (a, d) = self.rule_stats(r as u32).unwrap_or((0, 0));
            // Counters live in shared memory another process may corrupt:
            // sums wrap rather than panic.
            s.allowed = s.allowed.wrapping_add(a);
            s.denied = s.denied.wrapping_add(d);
        }
        s
    }

    /// Decisions allowed and denied with rule `rule` binding.
    pub fn rule_stats(&self, rule: u32) -> Option<(u64, u64)> {
        let r = rule as usize;
        if r >= self.rules.len() {
            return None;
        }
        Some((
            self.table.sum(|s| &s.rules[r][0]),
            self.table.sum(|s| &s.rules[r][1]),
        ))
    }

    fn key_tag(&self, rule: u32, key: &[u8]) -> Result<u64, Error> {
        if rule as usize >= self.rules.len() {
            return Err(Error::UnknownRule);
        }
        // A tag without captures needs only the first half of the hash.
        let subject = hash::subject_lazy(&self.seed, Domain::Raw, &[], key);
        Ok(hash::tag_of_h1(subject.h1(), rule as u8))
    }

    fn decide_key(
        &self,
        rule: u32,
        key: &[u8],
        cost: u32,
        now: u64,
        peek: bool,
    ) -> Result<Decision, Error> {
        let tag = self.key_tag(rule, key)?;
        let p = &self.params[rule as usize];
        if p.unlimited {
            return Ok(self.exempt(rule as u8, now, peek));
        }
        Ok(self.run(
            &[Work {
                rule: rule as u8,
                tag,
            }],
            cost,
            now,
            peek,
        ))
    }

    fn decide(&self, request: &Request<'_>, now: u64, peek: bool) -> Result<Decision, Error> {
        let mut work = heapless::Vec::<Work, MAX_RULES>::new();
        match self.classify(request, &mut work)? {
            Classified::NoRule => Ok(Decision::no_rule()),
            Classified::Exempt(rule) => Ok(self.exempt(rule, now, peek)),
            Classified::Work => Ok(self.run(&work, request.cost, now, peek)),
        }
    }

    fn exempt(&self, rule: u8, now: u64, peek: bool) -> Decision {
        if !peek {
            let stripe = &self.table.stripes[(now >> 10) as usize % table::STRIPES];
            stripe.rules[rule as usize][0].fetch_add(1, Ordering::Relaxed);
        }
        Decision {
            exempt: true,
            rule: rule as u32,
            matched: 1 << rule,
            ..Decision::no_rule()
        }
    }

    /// Classify `request` and compute the tag of every matched rule.
    fn classify(
        &self,
        request: &Request<'_>,
        work: &mut heapless::Vec<Work, MAX_RULES>,
    ) -> Result<Classified, Error> {
        let ip = client_ip(request.client_ip, self.config.ipv6_prefix)?;
        let key = strip_bearer(request.secret_key);
        let kind = if key.is_empty() {
            InstanceKind::Development
        } else {
            key_kind(key).unwrap_or(self.config.unknown_kind)
        };
        let mut t = Tagger {
            limiter: self,
            tenant: request.tenant,
            key,
            ip: ip.as_ref(),
            by_ip: None,
            by_instance: None,
            missing: false,
            exempt: None,
            work,
        };
        match self
            .router
            .route(request.api, kind, request.method, request.path)
        {
            Some(mut routed) => {
                while let Some((m, unlimited)) = routed.next_match() {
                    if unlimited && t.exempt.is_none() {
                        t.exempt = Some(m.rule);
                    }
                    // The fast path takes only paths without escapes.
                    t.add(m, true);
                }
            }
            None => self.classify_general(request, kind, &mut t),
        }
        if let Some(rule) = t.exempt {
            return Ok(Classified::Exempt(rule));
        }
        if t.missing {
            return Err(Error::MissingSubject);
        }
        if t.work.is_empty() {
            return Ok(Classified::NoRule);
        }
        Ok(Classified::Work)
    }

    /// [`Limiter::classify`] for requests the router leaves to the general
    /// classifier.
    #[cold]
    #[inline(never)]
    fn classify_general(&self, request: &Request<'_>, kind: InstanceKind, t: &mut Tagger<'_, '_>) {
        let summary = route::classify_with(
            &self.rules,
            request.api,
            kind,
            request.method,
            request.path,
            |m| t.add(m, false),
        );
        t.exempt = summary.exempt;
    }

    /// Decide every rule of one request: all or nothing.
    #[inline]
    fn run(&self, work: &[Work], cost: u32, now: u64, peek: bool) -> Decision {
        let cost = cost.max(1);
        if let [w] = work {
            // One rule: it binds, and a denial charged nothing to undo.
            let (out, _) = self.one(w, cost, now, peek, false);
            return self.assemble(w, 1 << w.rule, &out, !out.allowed, peek);
        }
        let mask = self.table.mask();
        for w in work {
            let (b1, b2) = hash::buckets(w.tag, mask);
            self.table.prefetch(b1);
            self.table.prefetch(b2);
        }
        let mut charged = heapless::Vec::<(usize, u128, u128), MAX_RULES>::new();
        // The binding rule so far: on allow the tightest, on deny the
        // denial with the longest wait (a rule the cost never fits first),
        // the first one on ties. Index into `work` and its outcome.
        let mut tightest: Option<(usize, Outcome)> = None;
        let mut denial: Option<(usize, Outcome)> = None;
        for (i, w) in work.iter().enumerate() {
            let (out, undo) = self.one(w, cost, now, peek, denial.is_some());
            if let Some(undo) = undo {
                let _ = charged.push(undo);
            }
            if !out.allowed {
                let longer = match &denial {
                    None => true,
                    Some((_, d)) => {
                        (out.never_fits && !d.never_fits)
                            || (out.never_fits == d.never_fits && out.retry_after > d.retry_after)
                    }
                };
                if longer {
                    denial = Some((i, out));
                }
            } else if denial.is_none() {
                tightest = match tightest {
                    Some((b, bo)) if !self.tighter(w, &out, &work[b], &bo) => Some((b, bo)),
                    _ => Some((i, out)),
                };
            }
        }
        let denied = denial.is_some();
        if denied {
            // Undo only from exactly what we wrote: if a slot moved on since,
            // our charge stays (stricter, never looser).
            for &(pos, written, before) in charged.iter().rev() {
                let _ = self.table.cas(pos, written, before);
            }
        }
        let Some((bi, o)) = denial.or(tightest) else {
            return Decision::no_rule();
        };
        let Some(bw) = work.get(bi) else {
            return Decision::no_rule();
        };
        let matched = work.iter().fold(0, |m, w| m | 1 << w.rule);
        self.assemble(bw, matched, &o, denied, peek)
    }

    /// The decision with `bw` binding on outcome `o`; counts it unless this
    /// is a peek.
    #[inline(always)]
    fn assemble(&self, bw: &Work, matched: u64, o: &Outcome, denied: bool, peek: bool) -> Decision {
        let rule = bw.rule;
        let mut d = Decision::no_rule();
        d.rule = rule as u32;
        d.limit = self.params(rule).quota.limit;
        d.remaining = o.remaining;
        d.reset = Nanos(o.reset);
        d.matched = matched;
        if denied {
            d.never_fits = o.never_fits;
            d.retry_after = Nanos(o.retry_after);
            if !o.never_fits {
                d.retry_after_secs = o
                    .retry_after
                    .div_ceil(NANOS_PER_SEC)
                    .clamp(1, u32::MAX as u64) as u32;
            }
            d.allowed = self.config.dry_run;
            d.dry_run_denied = self.config.dry_run;
        }
        if !peek {
            let stripe = self.table.stripe(bw.tag);
            if let Some(c) = stripe.rules.get(rule as usize) {
                c[denied as usize].fetch_add(1, Ordering::Relaxed);
            }
        }
        d
    }

    /// The parameters of rule `rule` (`NO_PARAMS` past the table).
    #[inline(always)]
    fn params(&self, rule: u8) -> &Params {
        self.params.get(rule as usize).unwrap_or(&NO_PARAMS)
    }

    /// On allow, the binding rule is the one with the smallest fraction of
    /// its burst left (ties: the one furthest from full replenishment):
    /// whether `a` (a later rule) binds rather than `b`.
    #[inline(always)]
    fn tighter(&self, a: &Work, ao: &Outcome, b: &Work, bo: &Outcome) -> bool {
        let burst = |w: &Work| self.params(w.rule).burst.max(1) as u64;
        let lhs = ao.remaining as u64 * burst(b);
        let rhs = bo.remaining as u64 * burst(a);
        // Ties go to the rule that takes longest to replenish.
        lhs < rhs || (lhs == rhs && ao.reset > bo.reset)
    }

    /// Decide one rule; charge it unless this is a peek or an earlier rule
    /// already denied (a clamped wild state is stored then too, unless this
    /// is a peek). Returns the outcome and, if charged, the undo record.
    #[inline(always)]
    fn one(
        &self,
        w: &Work,
        cost: u32,
        now: u64,
        peek: bool,
        denied: bool,
    ) -> (Outcome, Option<(usize, u128, u128)>) {
        let p = self.params(w.rule);
        let dry = peek || denied;
        for _ in 0..MAX_RETRIES {
            match slot::find(&self.table, self, w.tag, now) {
                Found::Live { pos, value } => {
                    let state = slot::word_of(value);
                    let out = p.decide(state, now, cost);
                    if dry || !out.allowed {
                        // Only a clamp changes the state of a denial (a clamped
                        // state is full, so it always denies): store it.
                        if !peek && !out.allowed && out.state != state {
                            let _ = self.table.cas(pos, value, slot::pack(w.tag, out.state));
                        }
                        return (out, None);
                    }
                    let written = slot::pack(w.tag, out.state);
                    if self.table.cas(pos, value, written).is_ok() {
                        return (out, Some((pos, written, value)));
                    }
                }
                Found::Absent => {
                    let out = p.decide(0, now, cost);
                    if dry || !out.allowed {
                        return (out, None);
                    }
                    match self.insert(w.tag, out.state, now) {
                        Insert::At(pos) => {
                            return (out, Some((pos, slot::pack(w.tag, out.state), 0)))
                        }
                        Insert::Untracked => return (out, None),
                        Insert::Refused(free_in) => return (refused(out, free_in), None),
                        Insert::Raced => {}
                    }
                }
                Found::Busy { until } => {
                    if dry {
                        return (p.decide(0, now, cost), None);
                    }
                    core::hint::spin_loop();
                    let _ = until;
                }
            }
        }
        // Racing writers never settled (or a claim outlived our retries):
        // deny briefly rather than admit untracked.
        (refused(p.decide(0, now, cost), slot::MARKER_TTL), None)
    }

    fn insert(&self, tag: u64, state: u64, now: u64) -> Insert {
        let stripe = self.table.stripe(tag);
        let (pos, old, in_debt) = match evict::room(&self.table, self, tag, now) {
            Room::Free { pos, old } => (pos, old, false),
            Room::Victim { pos, old, free_in } => match self.config.policy {
                Policy::Evict => (pos, old, true),
                Policy::Deny => {
                    stripe.full.fetch_add(1, Ordering::Relaxed);
                    return Insert::Refused(free_in);
                }
                Policy::Admit => {
                    stripe.full.fetch_add(1, Ordering::Relaxed);
                    return Insert::Untracked;
                }
            },
            Room::None => return Insert::Raced,
        };
        match slot::claim_and_store(&self.table, tag, pos, old, state, now) {
            Inserted::At(pos) => {
                stripe.inserts.fetch_add(1, Ordering::Relaxed);
                if in_debt {
                    stripe.evicted.fetch_add(1, Ordering::Relaxed);
                }
                Insert::At(pos)
            }
            Inserted::Raced => Insert::Raced,
        }
    }
}

enum Classified {
    NoRule,
    Exempt(u8),
    Work,
}

enum Insert {
    At(usize),
    Untracked,
    Refused(u64),
    Raced,
}

fn refused(out: Outcome, free_in: u64) -> Outcome {
    Outcome {
        allowed: false,
        never_fits: false,
        retry_after: free_in.max(1),
        ..out
    }
}

impl Rules for Limiter<'_> {
    fn debt(&self, tag: u64, state: u64, now: u64) -> u32 {
        match self.params.get(hash::rule_of(tag)) {
            Some(p) if !p.unlimited => p.algorithm.debt(&p.quota, state, now),
            _ => 0,
        }
    }

    fn merge(&self, tag: u64, a: u64, b: u64, now: u64) -> u64 {
        match self.params.get(hash::rule_of(tag)) {
            Some(p) => p.algorithm.merge(&p.quota, a, b, now),
            None => a.max(b),
        }
    }

    fn replenish(&self, tag: u64, state: u64, now: u64) -> u64 {
        match self.params.get(hash::rule_of(tag)) {
            Some(p) if !p.unlimited => p.decide(state, now, 1).reset,
            _ => 0,
        }
    }
}

fn capture_tag(subject: &Subject, m: &Match<'_>, plain: bool) -> u64 {
    let n = m.ncaptures as usize;
    if n == 0 {
        return hash::tag_of_h1(subject.h1(), m.rule);
    }
    let subject = subject.full();
    let captures = &m.captures[..n.min(m.captures.len())];
    debug_assert!(!plain || captures.iter().all(|c| !c.contains(&b'%')));
    if plain || captures.iter().all(|c| !c.contains(&b'%')) {
        // Nothing to decode: hash the bytes a word at a time.
        return hash::tag_with_plain_captures(subject, m.rule, captures);
    }
    hash::tag_with_captures(subject, m.rule, captures.iter().map(|c| route::decoded(c)))
}

/// A client address as its key bytes: IPv4 (also IPv4-mapped IPv6) as 4
/// bytes, IPv6 masked to its prefix as 16.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ClientIp {
    bytes: [u8; 16],
    len: u8,
}

impl ClientIp {
    /// The key bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// Parse a client IP of 0, 4 or 16 bytes; `None` for 0 bytes.
pub fn client_ip(ip: &[u8], ipv6_prefix: u8) -> Result<Option<ClientIp>, Error> {
    let mut bytes = [0u8; 16];
    match ip.len() {
        0 => Ok(None),
        4 => {
            bytes[..4].copy_from_slice(ip);
            Ok(Some(ClientIp { bytes, len: 4 }))
        }
        16 if ip[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff] => {
            bytes[..4].copy_from_slice(&ip[12..]);
            Ok(Some(ClientIp { bytes, len: 4 }))
        }
        16 => {
            let prefix = ipv6_prefix.min(128) as u32;
            let v = u128::from_be_bytes(ip.try_into().map_err(|_| Error::InvalidIp)?);
            let masked = if prefix == 0 {
                0
            } else {
                v & (u128::MAX << (128 - prefix))
            };
            bytes.copy_from_slice(&masked.to_be_bytes());
            Ok(Some(ClientIp { bytes, len: 16 }))
        }
        _ => Err(Error::InvalidIp),
    }
}

/// The secret key of a raw key or an `Authorization` value: surrounding
/// whitespace trimmed and a `Bearer ` scheme (any case) stripped.
pub fn strip_bearer(value: &[u8]) -> &[u8] {
    let v = value.trim_ascii();
    match v.get(..6) {
        Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer") => match v.get(6) {
            // "Bearer" alone (its blank was trimmed) carries no key.
            None => &[],
            Some(b' ' | b'\t') => v[7..].trim_ascii(),
            Some(_) => v,
        },
        _ => v,
    }
}

/// The instance kind a key's prefix names, if it names one.
pub fn key_kind(key: &[u8]) -> Option<InstanceKind> {
    if key.starts_with(b"sk_live_") || key.starts_with(b"live_") {
        Some(InstanceKind::Production)
    } else if key.starts_with(b"sk_test_") || key.starts_with(b"test_") {
        Some(InstanceKind::Development)
    } else {
        None
    }
}

fn instance_subject(
    seed: &Seed,
    tenant: &[u8],
    key: &[u8],
    ip: Option<&ClientIp>,
) -> Option<Subject> {
    if !tenant.is_empty() {
        Some(hash::subject_lazy(seed, Domain::Tenant, tenant, &[]))
    } else if !key.is_empty() {
        Some(hash::subject_lazy(seed, Domain::SecretKey, &[], key))
    } else {
        ip.map(|ip| hash::subject_lazy(seed, Domain::Ip, &[], ip.bytes()))
    }
}

/// A limiter whose memory is a Rust `static`. It refuses checks until a
/// seed is set at run time, since a seed compiled into the binary would be
/// no secret.
pub struct StaticLimiter<const BUCKETS: usize> {
    memory: StaticMemory<BUCKETS>,
    rules: RuleTable<'static>,
    config: Config,
}

impl<const BUCKETS: usize> StaticLimiter<BUCKETS> {
    /// An unseeded limiter of `BUCKETS` 4-slot buckets (a power of two).
    pub const fn new(rules: RuleTable<'static>, config: Config) -> Self {
        StaticLimiter {
            memory: StaticMemory::new(),
            rules,
            config,
        }
    }

    /// Set the seed (the first call wins; later seeds are ignored) and
    /// return a handle.
    pub fn seed(&'static self, seed: Seed) -> Result<Limiter<'static>, Error> {
        Limiter::check_setup(&self.rules, &self.config)?;
        let table = Table::of_static(&self.memory);
        table.header.write_once(&Fields {
            capacity: table.capacity(),
            config: self.config.pack(),
            fingerprint: self.rules.fingerprint(),
            seed,
            nrules: self.rules.len() as u64,
        });
        self.limiter()
    }

    /// A handle, or [`Error::NotSeeded`] until [`StaticLimiter::seed`].
    pub fn limiter(&'static self) -> Result<Limiter<'static>, Error> {
        let table = Table::of_static(&self.memory);
        let fields = table.header.read().map_err(|_| Error::NotSeeded)?;
        let mut config = self.config;
        config.capacity = table.capacity() as u32;
        Ok(Limiter::new(table, self.rules, config, fields.seed))
    }
}
