//! `Limiter`: a rule table, a configuration and a seed over a state table,
//! wherever its memory came from. It ties the parts together: classify the
//! request ([`crate::route`]), find its subjects' tags ([`crate::subject`]),
//! charge all matched rules or none ([`crate::charge`]).

use crate::charge::{Charger, Work, WorkList};
use crate::config::{Config, HandleOptions};
use crate::decision::{Decision, RuleId, RuleSet, Verdict};
use crate::error::{CheckError, SetupError};
use crate::hash::Seed;
use crate::params::RuleParams;
use crate::request::Request;
use crate::route::{Match, Router};
use crate::rule::{RuleTable, MAX_RULES};
use crate::stats::{RuleStats, Stats};
use crate::subject::{self, Subjects};
use crate::table::counters::{Global, Outcome as Counted};
use crate::table::header::{self, Fields};
use crate::table::{self, memory, StaticMemory, Table};
use crate::time::Nanos;

/// A rate limiter over one state table. `check` takes `&self`: share one
/// handle between threads, or attach one handle per process to shared
/// memory.
pub struct Limiter<'a> {
    pub(crate) table: Table<'a>,
    rules: RuleTable<'a>,
    router: Router<'a>,
    pub(crate) params: RuleParams,
    pub(crate) config: Config,
    seed: Seed,
    /// The memory `table` views, when the limiter owns it. Declared last:
    /// dropped after the views into it.
    #[cfg(feature = "alloc")]
    _owned: Option<memory::Owned>,
}

/// How a request was classified.
pub(crate) enum Classified {
    NoRule,
    Exempt(u8),
    /// The work list holds the matched rules and their tags.
    Work,
}

impl<'a> Limiter<'a> {
    /// Bytes of memory a table of `capacity` slots takes, header included;
    /// `None` for 0 or above 2^28.
    pub fn bytes_for(capacity: u32) -> Option<usize> {
        table::bytes_for(capacity as u64)
    }

    fn assemble(
        table: Table<'a>,
        rules: RuleTable<'a>,
        config: Config,
        seed: Seed,
    ) -> Result<Limiter<'a>, SetupError> {
        let router = Router::new(rules, config.fold_case)
            .map_err(|_| SetupError::InvalidRules(crate::rule::TableError::BadPattern))?;
        Ok(Limiter {
            table,
            rules,
            router,
            params: RuleParams::new(&rules, &config),
            config,
            seed,
            #[cfg(feature = "alloc")]
            _owned: None,
        })
    }

    fn check_setup(rules: &RuleTable<'_>, config: &Config) -> Result<(), SetupError> {
        rules.validate()?;
        if config.ipv6_prefix > 128 {
            return Err(SetupError::InvalidConfig);
        }
        if !table::cas_is_lock_free() {
            return Err(SetupError::NoLockFreeCas);
        }
        Ok(())
    }

    fn fields(table: &Table<'_>, config: &Config, rules: &RuleTable<'_>, seed: Seed) -> Fields {
        Fields {
            capacity: table.capacity(),
            config: header::pack_config(config),
            fingerprint: rules.fingerprint(),
            seed,
            nrules: rules.len() as u64,
        }
    }

    /// A limiter on memory it owns (zeroed, 64-byte aligned, from the
    /// global allocator), for one process: its threads share it through
    /// `&Limiter`. On Linux with feature `std`, a table of 2 MiB or more is
    /// aligned to 2 MiB and advised `MADV_HUGEPAGE` before it is zeroed, so
    /// transparent huge pages back it where the system allows them: a
    /// lookup in a table of many MiB then seldom misses the TLB.
    #[cfg(feature = "alloc")]
    pub fn new(
        config: &Config,
        rules: RuleTable<'a>,
        seed: Seed,
    ) -> Result<Limiter<'a>, SetupError> {
        Self::check_setup(&rules, config)?;
        let (owned, table) = memory::Owned::new(config.capacity as u64)?;
        table
            .header
            .write(&Self::fields(&table, config, &rules, seed));
        let mut l = Self::assemble(table, rules, *config, seed)?;
        l._owned = Some(owned);
        Ok(l)
    }

    /// Lay a new table out in `mem`, erasing what it held.
    ///
    /// A table of many MiB in memory the caller maps may ask for huge pages
    /// first (Linux: `madvise(MADV_HUGEPAGE)` on a 2 MiB-aligned mapping,
    /// or `MAP_HUGETLB`): one TLB entry then covers 2 MiB of slots, and a
    /// random lookup costs no page walk. `Limiter::new` (feature `std`)
    /// does this for the memory it owns.
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
    ) -> Result<Limiter<'a>, SetupError> {
        Self::check_setup(&rules, config)?;
        // SAFETY: forwarded from the caller.
        let table = unsafe { memory::place_zeroed(mem, len, config.capacity as u64)? };
        table
            .header
            .write(&Self::fields(&table, config, &rules, seed));
        Self::assemble(table, rules, *config, seed)
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
    ) -> Result<Limiter<'a>, SetupError> {
        // A table of one slot is the smallest: place its header to read it.
        // SAFETY: forwarded from the caller; `place` checks size and alignment.
        let probe = unsafe { memory::place(mem, len, 1)? };
        let fields = probe.header.read()?;
        let capacity = u32::try_from(fields.capacity).map_err(|_| SetupError::Corrupt)?;
        if table::buckets_for(capacity as u64).map(|b| b.saturating_mul(4)) != Some(fields.capacity)
        {
            return Err(SetupError::Corrupt);
        }
        let mut config =
            header::unpack_config(fields.config, capacity).ok_or(SetupError::Corrupt)?;
        Self::check_setup(&rules, &config)?;
        if fields.fingerprint != rules.fingerprint() || fields.nrules != rules.len() as u64 {
            return Err(SetupError::RulesMismatch);
        }
        config.dry_run = options.dry_run;
        if let Some(p) = options.policy {
            config.policy = p;
        }
        // SAFETY: forwarded from the caller; the capacity is our own copy,
        // checked against `len` by `place`.
        let table = unsafe { memory::place(mem, len, capacity as u64)? };
        Self::assemble(table, rules, config, fields.seed)
    }

    /// Lay a new table out in `mem` (64-byte aligned, at least
    /// [`Limiter::bytes_for`] bytes).
    pub fn init(
        mem: &'a mut [u8],
        config: &Config,
        rules: RuleTable<'a>,
        seed: Seed,
    ) -> Result<Limiter<'a>, SetupError> {
        // SAFETY: an exclusive borrow for 'a is valid memory no one else uses.
        unsafe { Limiter::init_raw(mem.as_mut_ptr(), mem.len(), config, rules, seed) }
    }

    /// Join the table laid out in `mem` by [`Limiter::init`].
    pub fn attach(
        mem: &'a mut [u8],
        rules: RuleTable<'a>,
        options: HandleOptions,
    ) -> Result<Limiter<'a>, SetupError> {
        // SAFETY: as for `init`.
        unsafe { Limiter::attach_raw(mem.as_mut_ptr(), mem.len(), rules, options) }
    }

    /// The rule table.
    pub fn rules(&self) -> &RuleTable<'a> {
        &self.rules
    }

    /// The rule named `name`.
    pub fn rule_id(&self, name: &str) -> Option<RuleId> {
        let i = self.rules.rules().iter().position(|r| r.name == name)?;
        u8::try_from(i).ok().map(RuleId)
    }

    /// The configuration in force on this handle.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Decide `request` at `now`, charging every matched rule if it is allowed.
    #[inline]
    pub fn check(&self, request: &Request<'_>, now: Nanos) -> Result<Decision, CheckError> {
        self.decide(request, now.0, false)
    }

    /// The decision [`Limiter::check`] would give, consuming nothing.
    pub fn peek(&self, request: &Request<'_>, now: Nanos) -> Result<Decision, CheckError> {
        self.decide(request, now.0, true)
    }

    /// Decide `cost` units of rule `rule` for an opaque `key` (for callers
    /// that classify requests themselves).
    #[inline]
    pub fn check_key(
        &self,
        rule: RuleId,
        key: &[u8],
        cost: u32,
        now: Nanos,
    ) -> Result<Decision, CheckError> {
        self.decide_key(rule, key, cost, now.0, false)
    }

    /// The decision [`Limiter::check_key`] would give, consuming nothing.
    pub fn peek_key(
        &self,
        rule: RuleId,
        key: &[u8],
        cost: u32,
        now: Nanos,
    ) -> Result<Decision, CheckError> {
        self.decide_key(rule, key, cost, now.0, true)
    }

    /// Forget the state of every rule `request` matches, for its subject.
    /// Returns the number of slots cleared.
    pub fn reset(&self, request: &Request<'_>) -> Result<u32, CheckError> {
        let mut work = WorkList::new();
        match self.classify(request, &mut work)? {
            Classified::Work => Ok(work
                .iter()
                .map(|w| table::forget(&self.table, w.tag))
                .fold(0, u32::saturating_add)),
            _ => Ok(0),
        }
    }

    /// Forget the state of rule `rule` for `key` (see [`Limiter::check_key`]).
    pub fn reset_key(&self, rule: RuleId, key: &[u8]) -> Result<u32, CheckError> {
        let tag = self.key_tag(rule, key)?;
        Ok(table::forget(&self.table, tag))
    }

    /// Counters summed over the stripes, and the table's occupancy (a scan).
    pub fn stats(&self) -> Stats {
        let c = &self.table.counters;
        let mut s = Stats {
            unmatched: c.sum(Global::Unmatched),
            errors: c.sum(Global::Errors),
            inserts: c.sum(Global::Inserts),
            evicted: c.sum(Global::Evicted),
            evicted_in_debt: c.sum(Global::EvictedInDebt),
            full: c.sum(Global::Full),
            remote_calls: c.sum(Global::RemoteCalls),
            remote_errors: c.sum(Global::RemoteErrors),
            remote_fallbacks: c.sum(Global::RemoteFallbacks),
            remote_cached: c.sum(Global::RemoteCached),
            occupancy: self.table.occupancy(),
            capacity: self.table.capacity(),
            ..Stats::default()
        };
        for r in 0..self.rules.len().min(MAX_RULES) {
            let rs = self.rule_stats(RuleId(r as u8)).unwrap_or_default();
            // Counters live in shared memory another process may corrupt:
            // sums wrap rather than panic.
            s.allowed = s.allowed.wrapping_add(rs.allowed);
            s.limited = s.limited.wrapping_add(rs.limited);
            s.dry_run_limited = s.dry_run_limited.wrapping_add(rs.dry_run_limited);
            s.exempt = s.exempt.wrapping_add(rs.exempt);
        }
        s
    }

    /// Decisions with rule `rule` binding.
    pub fn rule_stats(&self, rule: RuleId) -> Option<RuleStats> {
        let r = rule.index();
        if r >= self.rules.len() {
            return None;
        }
        let c = &self.table.counters;
        Some(RuleStats {
            allowed: c.rule_sum(r, Counted::Allowed),
            limited: c.rule_sum(r, Counted::Limited),
            dry_run_limited: c.rule_sum(r, Counted::DryRunLimited),
            exempt: c.rule_sum(r, Counted::Exempt),
        })
    }

    /// Count one request a host refused before it reached the limiter (an
    /// argument the host could not turn into a request), so that the
    /// `errors` counter covers every refusal.
    pub fn count_error(&self, now: Nanos) {
        self.table.counters.add(spread(now.0), Global::Errors);
    }

    pub(crate) fn charger(&self) -> Charger<'_, 'a> {
        Charger {
            table: &self.table,
            params: &self.params,
            policy: self.config.policy,
            dry_run: self.config.dry_run,
        }
    }

    fn key_tag(&self, rule: RuleId, key: &[u8]) -> Result<u64, CheckError> {
        if rule.index() >= self.rules.len() {
            return Err(CheckError::UnknownRule);
        }
        Ok(subject::raw_tag(&self.seed, rule.0, key))
    }

    fn decide_key(
        &self,
        rule: RuleId,
        key: &[u8],
        cost: u32,
        now: u64,
        peek: bool,
    ) -> Result<Decision, CheckError> {
        let tag = self.key_tag(rule, key)?;
        let p = self.params.get(rule.0).ok_or(CheckError::UnknownRule)?;
        if p.unlimited {
            return Ok(self.exempt(rule.0, now, peek));
        }
        let work = Work {
            rule: rule.0,
            tag,
            base: tag,
        };
        Ok(self.charger().run(&[work], cost, now, peek))
    }

    #[inline]
    fn decide(&self, request: &Request<'_>, now: u64, peek: bool) -> Result<Decision, CheckError> {
        let mut work = WorkList::new();
        match self.classify(request, &mut work) {
            Ok(Classified::NoRule) => {
                if !peek {
                    self.table.counters.add(spread(now), Global::Unmatched);
                }
                Ok(Decision::UNMATCHED)
            }
            Ok(Classified::Exempt(rule)) => Ok(self.exempt(rule, now, peek)),
            Ok(Classified::Work) => Ok(self.charger().run(&work, request.cost, now, peek)),
            Err(e) => {
                if !peek {
                    self.table.counters.add(spread(now), Global::Errors);
                }
                Err(e)
            }
        }
    }

    pub(crate) fn exempt(&self, rule: u8, now: u64, peek: bool) -> Decision {
        if !peek {
            self.table.counters.rule(spread(now), rule, Counted::Exempt);
        }
        Decision {
            verdict: Verdict::Exempt,
            rule: Some(RuleId(rule)),
            matched: RuleSet::EMPTY.with(RuleId(rule)),
            ..Decision::UNMATCHED
        }
    }

    /// Classify `request` and compute the tag of every matched rule.
    #[inline(always)]
    pub(crate) fn classify<'p>(
        &self,
        request: &Request<'p>,
        work: &mut WorkList,
    ) -> Result<Classified, CheckError> {
        let mut subjects = Subjects::new(
            self.seed,
            request.tenant,
            request.secret_key,
            &request.client_ip,
            self.config.ipv6_prefix,
        );
        let kind = subjects.kind(self.config.unknown_kind);
        let mut matches = heapless::Vec::<Match<'p>, MAX_RULES>::new();
        let summary =
            self.router
                .classify_with(request.api, kind, request.method, request.path, |m, _| {
                    // At most one match per rule: it fits.
                    let _ = matches.push(m);
                });
        if let Some(rule) = summary.exempt {
            return Ok(Classified::Exempt(rule));
        }
        if matches.is_empty() {
            return Ok(Classified::NoRule);
        }
        for m in &matches {
            let p = self.params.get(m.rule).ok_or(CheckError::UnknownRule)?;
            let (tag, base) = subjects.tag(p.scope, m).ok_or(CheckError::MissingSubject)?;
            let _ = work.push(Work {
                rule: m.rule,
                tag,
                base,
            });
        }
        Ok(Classified::Work)
    }
}

/// A well-mixed word of `now`, to spread counters of decisions that have no
/// key (exempt, unmatched, errors) over the stripes.
pub(crate) fn spread(now: u64) -> u64 {
    now.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// A limiter whose memory is a Rust `static`. It refuses checks until a
/// seed is set at run time, since a seed compiled into the binary would be
/// no secret.
pub struct StaticLimiter<const BUCKETS: usize> {
    memory: StaticMemory<BUCKETS>,
    rules: RuleTable<'static>,
    config: Config,
}

/// How long a second caller of [`StaticLimiter::seed`] waits for the first
/// to finish writing the header (spins; the write is a few stores).
const SEED_WAIT: usize = 1 << 22;

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
    /// return a handle. A caller racing the first waits until its write is
    /// done.
    pub fn seed(&'static self, seed: Seed) -> Result<Limiter<'static>, SetupError> {
        Limiter::check_setup(&self.rules, &self.config)?;
        let table = self.memory.table();
        let mut config = self.config;
        config.capacity = u32::try_from(table.capacity()).map_err(|_| SetupError::Capacity)?;
        let fields = Limiter::fields(&table, &config, &self.rules, seed);
        if !table.header.write_once(&fields) {
            for _ in 0..SEED_WAIT {
                if !table.header.writing() {
                    break;
                }
                core::hint::spin_loop();
            }
        }
        self.limiter()
    }

    /// A handle, or [`SetupError::NotSeeded`] until [`StaticLimiter::seed`].
    pub fn limiter(&'static self) -> Result<Limiter<'static>, SetupError> {
        let table = self.memory.table();
        let fields = table.header.read().map_err(|_| SetupError::NotSeeded)?;
        let mut config = self.config;
        config.capacity = u32::try_from(table.capacity()).map_err(|_| SetupError::Capacity)?;
        Limiter::assemble(table, self.rules, config, fields.seed)
    }
}
