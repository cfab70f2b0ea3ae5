//! Across hosts: the same limits for every gateway, with the state in Redis.
//!
//! Nothing changes but where the state lives: the request is classified,
//! its subjects hashed and its binding rule picked by this crate, exactly
//! as for the local table; one round trip runs [`crate::remote::SCRIPT`],
//! which charges every matched rule all or nothing with the same math.
//!
//! A decision in three steps, the host doing the I/O in between:
//! 1. [`Limiter::prepare`] classifies the request. Exempt and unmatched
//!    requests, and subjects this gateway saw denied, are decided here with
//!    no round trip ([`Prepared::Decided`]); anything else is a
//!    [`Pending`] call.
//! 2. [`Limiter::remote_call`] describes the call for the encoders of
//!    [`crate::remote`] (KEYS and ARGV for a client library, or the whole
//!    RESP command for a socket); the host sends it.
//! 3. [`Limiter::finish`] (outcomes a client decoded) or
//!    [`Limiter::finish_reply`] (raw reply bytes) gives the [`Decision`],
//!    counted like a local one. When Redis cannot answer, the host's policy
//!    decides: fail closed ([`crate::FAIL_CLOSED_STATUS`]), fail open, or
//!    [`Limiter::fallback`], which charges the local table (per-host
//!    limits); [`Limiter::count_remote_error`] keeps the counters honest.
//!
//! **Keys.** A rule's key is the local table's tag of (tenant, rule,
//! subject, captured ids), a keyed hash: every gateway must share the seed
//! (configure it; never draw it from the OS in this mode), and no secret
//! reaches Redis in clear. Every key of one request carries one Cluster
//! hash tag, derived from its subject (the instance, or the client IP), so
//! they live in one slot; a table whose API mixes subject kinds in one
//! request cannot be co-located and is refused
//! ([`CheckError::MixedSubjects`]).
//!
//! **Denials cached near the gateway.** A subject Redis has just limited
//! stays limited until its `Retry-After` whatever other gateways do: their
//! charges only push its state later. So a GCRA denial is remembered in
//! this gateway's local table (under a tag of its own, at the state Redis
//! reported), and until it lapses the gateway answers it with no round
//! trip: never looser, and a flood from one client costs Redis nothing.
//! An administrative reset deletes the keys in Redis and clears this
//! gateway's cache ([`Limiter::forget_cached`]); other gateways keep their
//! cached denials until they lapse, at most the rule's period. Fixed-window
//! denials are not cached: the local clock's windows are not Redis's.

use crate::charge::{Binder, Work, WorkList};

use crate::config::Policy;
use crate::decision::{Decision, RuleId, RuleSet};
use crate::error::CheckError;
use crate::limiter::{spread, Classified, Limiter};
use crate::quota::{Algorithm, Outcome};
use crate::remote::{self, Call, Clock, RemoteRule, ReplyError};
use crate::request::Request;
use crate::rule::MAX_RULES;
use crate::table::counters::Global;
use crate::table::slot::{self, Cells, Found};
use crate::table::{self, tag, Insert};
use crate::time::Nanos;

/// A round trip still to make: everything [`Limiter::finish`] needs, by
/// value (no references), so a host may keep it anywhere between the two
/// calls, and a C host may hold it in plain bytes.
#[derive(Clone, Debug)]
pub struct Pending {
    work: WorkList,
    rules: heapless::Vec<RemoteRule, MAX_RULES>,
    hashtag: u64,
    cost: u32,
    peek: bool,
    /// The gateway's own clock at `prepare`: for the cache and the fallback.
    now: u64,
}

/// What [`Limiter::prepare`] found.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Prepared {
    /// Decided here, with no round trip: exempt, unmatched, or a subject
    /// this gateway saw denied that is still limited.
    Decided(Decision),
    /// Decided by Redis: the [`Pending`] call is filled in; send it.
    Remote,
}

impl Default for Pending {
    fn default() -> Pending {
        Pending::new()
    }
}

impl Pending {
    /// An empty call, for [`Limiter::prepare`] to fill.
    pub const fn new() -> Pending {
        Pending {
            work: heapless::Vec::new(),
            rules: heapless::Vec::new(),
            hashtag: 0,
            cost: 1,
            peek: false,
            now: 0,
        }
    }

    /// The Cluster hash tag every key of the call carries.
    pub fn hashtag(&self) -> u64 {
        self.hashtag
    }

    /// The number of rules (keys) of the call.
    pub fn rules(&self) -> usize {
        self.rules.len()
    }
}

/// Bytes of a [`Pending`] call in [`Pending::to_bytes`]'s form.
pub const PENDING_BYTES: usize = 1152;

const PENDING_MAGIC: u32 = u32::from_le_bytes(*b"RCp1");
const PENDING_HEAD: usize = 4 + 1 + 1 + 4 + 8 + 8;
const PENDING_WORK: usize = 1 + 8 + 8;
const _: () = assert!(PENDING_HEAD + MAX_RULES * PENDING_WORK <= PENDING_BYTES);

impl Pending {
    /// The call as plain bytes, for hosts that keep it outside Rust (a C
    /// host's buffer); [`Limiter::pending_from_bytes`] reads it back.
    pub fn to_bytes(&self, out: &mut [u8; PENDING_BYTES]) {
        *out = [0; PENDING_BYTES];
        let mut w = Writer { out, at: 0 };
        w.put(&PENDING_MAGIC.to_le_bytes());
        w.put(&[self.work.len() as u8, self.peek as u8]);
        w.put(&self.cost.to_le_bytes());
        w.put(&self.hashtag.to_le_bytes());
        w.put(&self.now.to_le_bytes());
        for x in &self.work {
            w.put(&[x.rule]);
            w.put(&x.tag.to_le_bytes());
            w.put(&x.base.to_le_bytes());
        }
    }
}

struct Writer<'o> {
    out: &'o mut [u8; PENDING_BYTES],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, b: &[u8]) {
        let end = self.at.saturating_add(b.len());
        if let Some(dst) = self.out.get_mut(self.at..end) {
            dst.copy_from_slice(b);
        }
        self.at = end;
    }
}

/// Read `N` bytes at `at`.
fn take<const N: usize>(b: &[u8], at: &mut usize) -> Option<[u8; N]> {
    let end = at.checked_add(N)?;
    let v = b.get(*at..end)?.try_into().ok()?;
    *at = end;
    Some(v)
}

impl<'a> Limiter<'a> {
    /// A call written by [`Pending::to_bytes`] for this limiter's table;
    /// `None` for bytes it never wrote (any bytes in: a value or `None`).
    pub fn pending_from_bytes(&self, b: &[u8]) -> Option<Pending> {
        let mut at = 0usize;
        if u32::from_le_bytes(take(b, &mut at)?) != PENDING_MAGIC {
            return None;
        }
        let [n, peek] = take(b, &mut at)?;
        let cost = u32::from_le_bytes(take(b, &mut at)?);
        let hashtag = u64::from_le_bytes(take(b, &mut at)?);
        let now = u64::from_le_bytes(take(b, &mut at)?);
        if n == 0 || n as usize > MAX_RULES || peek > 1 || cost == 0 {
            return None;
        }
        let mut pending = Pending::new();
        for _ in 0..n {
            let [rule] = take(b, &mut at)?;
            let tag = u64::from_le_bytes(take(b, &mut at)?);
            let base = u64::from_le_bytes(take(b, &mut at)?);
            let p = self.params.get(rule)?;
            if tag::rule_of(tag) != rule as usize || tag == 0 || p.unlimited {
                return None;
            }
            pending.work.push(Work { rule, tag, base }).ok()?;
            pending
                .rules
                .push(RemoteRule {
                    tag,
                    algorithm: p.algorithm,
                    quota: p.quota,
                })
                .ok()?;
        }
        pending.hashtag = hashtag;
        pending.cost = cost;
        pending.peek = peek == 1;
        pending.now = now;
        Some(pending)
    }

    /// Classify `request` at `now` (this gateway's monotonic clock) for a
    /// decision through Redis; `peek` decides without charging anything.
    /// When a round trip is needed, `pending` holds the call.
    ///
    /// A subject still limited by a denial this gateway cached is denied
    /// here. The cached denial names the rule that denied it then; should a
    /// costlier request now also be over another rule's limit, Redis would
    /// name that rule and a longer wait. Never looser either way.
    pub fn prepare(
        &self,
        request: &Request<'_>,
        now: Nanos,
        peek: bool,
        pending: &mut Pending,
    ) -> Result<Prepared, CheckError> {
        self.prepare_with(request, now, peek, true, pending)
    }

    /// [`Limiter::prepare`] without the denial cache: every limited request
    /// makes a round trip, and every decision is exactly the one a local
    /// table holding Redis's state would give.
    pub fn prepare_exact(
        &self,
        request: &Request<'_>,
        now: Nanos,
        peek: bool,
        pending: &mut Pending,
    ) -> Result<Prepared, CheckError> {
        self.prepare_with(request, now, peek, false, pending)
    }

    fn prepare_with(
        &self,
        request: &Request<'_>,
        now: Nanos,
        peek: bool,
        cache: bool,
        pending: &mut Pending,
    ) -> Result<Prepared, CheckError> {
        let now = now.0;
        pending.work.clear();
        pending.rules.clear();
        let work = &mut pending.work;
        let classified = match self.classify(request, work) {
            Ok(c) => c,
            Err(e) => {
                if !peek {
                    self.table.counters.add(spread(now), Global::Errors);
                }
                return Err(e);
            }
        };
        match classified {
            Classified::NoRule => {
                if !peek {
                    self.table.counters.add(spread(now), Global::Unmatched);
                }
                return Ok(Prepared::Decided(Decision::UNMATCHED));
            }
            Classified::Exempt(rule) => return Ok(Prepared::Decided(self.exempt(rule, now, peek))),
            Classified::Work => {}
        }
        let base = work.first().map_or(0, |w| w.base);
        if work.iter().any(|w| w.base != base) {
            return Err(CheckError::MixedSubjects);
        }
        let cost = request.cost.max(1);
        if cache {
            if let Some(d) = self.cached_denial(work, cost, now, peek) {
                return Ok(Prepared::Decided(d));
            }
        }
        for w in work.iter() {
            let p = self.params.get(w.rule).ok_or(CheckError::UnknownRule)?;
            // At most one per work item: it fits.
            let _ = pending.rules.push(RemoteRule {
                tag: w.tag,
                algorithm: p.algorithm,
                quota: p.quota,
            });
        }
        pending.hashtag = hashtag_of(base);
        pending.cost = cost;
        pending.peek = peek;
        pending.now = now;
        Ok(Prepared::Remote)
    }

    /// The script call for `pending`, for the encoders of
    /// [`crate::remote`]: keys under `prefix`, time from `clock`.
    pub fn remote_call<'p>(
        &self,
        pending: &'p Pending,
        prefix: &'p [u8],
        clock: Clock,
    ) -> Call<'p> {
        Call {
            prefix,
            hashtag: pending.hashtag,
            rules: &pending.rules,
            cost: pending.cost,
            peek: pending.peek,
            clock,
        }
    }

    /// The decision from the script's outcomes (one per rule, in call
    /// order, as [`remote::decode_ints`] or [`remote::decode_reply`] give
    /// them): binding rule, fields and counters exactly as a local decision,
    /// and a denial cached for the subject.
    pub fn finish(&self, pending: &Pending, outcomes: &[Outcome]) -> Decision {
        self.table
            .counters
            .add(spread(pending.now), Global::RemoteCalls);
        let mut binder = Binder::default();
        for (i, o) in outcomes.iter().enumerate().take(pending.work.len()) {
            binder.add(&self.params, &pending.work, i, *o);
        }
        let Some((bi, o)) = binder.finish() else {
            return Decision::UNMATCHED;
        };
        if !o.allowed && !pending.peek {
            for (w, o) in pending.work.iter().zip(outcomes) {
                self.cache_denial(w, o, pending.cost, pending.now);
            }
        }
        match pending.work.get(bi) {
            Some(bw) => self
                .charger()
                .assemble(bw, matched(&pending.work), &o, pending.peek),
            None => Decision::UNMATCHED,
        }
    }

    /// [`Limiter::finish`] from the reply's raw RESP bytes; also the bytes
    /// the reply took. `Err` says what the server answered instead (and
    /// counts the round trip as failed, except for `Incomplete`).
    pub fn finish_reply<'r>(
        &self,
        pending: &Pending,
        reply: &'r [u8],
    ) -> Result<(Decision, usize), ReplyError<'r>> {
        let mut outcomes = [Outcome::default(); MAX_RULES];
        let n = pending.rules.len().min(MAX_RULES);
        let out = outcomes.get_mut(..n).unwrap_or(&mut []);
        match remote::decode_reply(reply, out) {
            Ok(decoded) => Ok((self.finish(pending, out), decoded.consumed)),
            Err(ReplyError::Incomplete) => Err(ReplyError::Incomplete),
            Err(e) => {
                self.count_remote_error(Nanos(pending.now));
                Err(e)
            }
        }
    }

    /// The decision the local table gives when Redis cannot: the same
    /// rules charged here (per-host limits). Counted as a fallback.
    pub fn fallback(&self, pending: &Pending) -> Decision {
        self.table
            .counters
            .add(spread(pending.now), Global::RemoteFallbacks);
        self.charger()
            .run(&pending.work, pending.cost, pending.now, pending.peek)
    }

    /// Count a round trip that failed (a timeout, a refused connection, a
    /// reply that is not the script's).
    pub fn count_remote_error(&self, now: Nanos) {
        self.table.counters.add(spread(now.0), Global::RemoteErrors);
    }

    /// Count a decision the host's fail-open or fail-closed policy made
    /// because Redis could not ([`Limiter::fallback`] counts itself).
    pub fn count_remote_fallback(&self, now: Nanos) {
        self.table
            .counters
            .add(spread(now.0), Global::RemoteFallbacks);
    }

    /// Clear this gateway's cached denials of `pending`'s keys (after an
    /// administrative reset in Redis). Returns the entries cleared.
    pub fn forget_cached(&self, pending: &Pending) -> u32 {
        pending
            .work
            .iter()
            .map(|w| table::forget(&self.table, tag::cached(w.tag)))
            .fold(0, u32::saturating_add)
    }

    /// A denial still standing in the cache for one of `work`'s rules.
    fn cached_denial(&self, work: &[Work], cost: u32, now: u64, peek: bool) -> Option<Decision> {
        let judge = self.table.judge(now);
        let mut binder = Binder::default();
        for (i, w) in work.iter().enumerate() {
            let p = self.params.get(w.rule)?;
            if p.algorithm != Algorithm::Gcra {
                continue;
            }
            if let Found::Live { value, .. } =
                slot::find(&self.table, &self.params, tag::cached(w.tag), judge)
            {
                let out = p.decide(slot::word_of(value), now, cost);
                if !out.allowed && !out.never_fits {
                    binder.add(&self.params, work, i, out);
                }
            }
        }
        let (bi, o) = binder.finish()?;
        let bw = work.get(bi)?;
        if !peek {
            self.table.counters.add(bw.tag, Global::RemoteCached);
        }
        Some(self.charger().assemble(bw, matched(work), &o, peek))
    }

    /// Remember Redis's denial of `w`: the state Redis reported (its TAT,
    /// in this gateway's clock) under the key's cache tag. Best effort:
    /// no room, no cache (a cache entry never evicts a key in debt).
    fn cache_denial(&self, w: &Work, o: &Outcome, cost: u32, now: u64) {
        let Some(p) = self.params.get(w.rule) else {
            return;
        };
        if o.allowed || o.never_fits || p.algorithm != Algorithm::Gcra {
            return;
        }
        // Denied at `now` with `retry_after`: Redis's TAT is
        // now + retry_after + span − cost·T.
        let span = p.t.saturating_mul(u64::from(p.burst));
        let tat = now
            .saturating_add(o.retry_after)
            .saturating_add(span)
            .saturating_sub(p.t.saturating_mul(u64::from(cost)));
        let cached = tag::cached(w.tag);
        let judge = self.table.judge(now);
        for _ in 0..slot::MAX_RETRIES {
            match slot::find(&self.table, &self.params, cached, judge) {
                Found::Live { pos, value } => {
                    if slot::word_of(value) >= tat
                        || self.table.cas(pos, value, slot::pack(cached, tat)).is_ok()
                    {
                        return;
                    }
                }
                Found::Absent => {
                    let (insert, _) =
                        table::insert(&self.table, &self.params, cached, tat, judge, Policy::Admit);
                    if !matches!(insert, Insert::Raced) {
                        return;
                    }
                }
                Found::Busy => return,
            }
        }
    }
}

/// Every rule of a work list.
fn matched(work: &[Work]) -> RuleSet {
    work.iter()
        .fold(RuleSet::EMPTY, |m, w| m.with(RuleId(w.rule)))
}

/// A request's Cluster hash tag from its subject: 24 bits are plenty to
/// spread 16384 slots, and keep keys short (four characters).
fn hashtag_of(base: u64) -> u64 {
    (base.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) & 0xff_ffff
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use crate::{Api, Config, Seed, CLERK};

    fn limiter() -> Limiter<'static> {
        let c = Config {
            capacity: 64,
            ..Config::DEFAULT
        };
        Limiter::new(&c, CLERK, Seed::from_bytes([5; 16])).unwrap()
    }

    #[test]
    fn a_call_survives_its_byte_form() {
        let l = limiter();
        let r = Request::new(Api::Backend, b"PATCH", b"/v1/users/user_1")
            .key(b"sk_live_x")
            .cost(3);
        let mut p = Pending::new();
        assert_eq!(
            l.prepare(&r, Nanos(77), false, &mut p).unwrap(),
            Prepared::Remote
        );
        let mut bytes = [0u8; PENDING_BYTES];
        p.to_bytes(&mut bytes);
        let back = l.pending_from_bytes(&bytes).unwrap();
        assert_eq!(
            (back.work.clone(), back.rules.clone()),
            (p.work.clone(), p.rules.clone())
        );
        assert_eq!(
            (back.hashtag, back.cost, back.peek, back.now),
            (p.hashtag, 3, false, 77)
        );
        // A rule index another table does not have, or a torn buffer: refused.
        bytes[PENDING_HEAD] = 63;
        assert!(l.pending_from_bytes(&bytes).is_none());
        assert!(l.pending_from_bytes(&[0; 8]).is_none());
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_read_as_a_call_are_a_call_or_nothing(
            b in proptest::collection::vec(proptest::num::u8::ANY, 0..PENDING_BYTES),
            magic in proptest::bool::ANY,
        ) {
            let l = limiter();
            let mut b = b;
            if magic && b.len() >= 4 {
                b[..4].copy_from_slice(&PENDING_MAGIC.to_le_bytes());
            }
            if let Some(p) = l.pending_from_bytes(&b) {
                proptest::prop_assert!(!p.work.is_empty() && p.cost >= 1);
                proptest::prop_assert_eq!(p.work.len(), p.rules.len());
            }
        }
    }
}
