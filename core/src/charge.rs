//! The all-or-nothing charge of one request's rules, and the binding rule.
//!
//! Each matched rule is decided against its key's slot and charged by a
//! compare-and-swap; once a rule denies, the later ones are only decided
//! (to pick the binding rule), and the charges already made are undone, each
//! by a CAS from exactly the value it wrote: if a slot moved on since, the
//! charge stays (stricter, never looser).

use crate::config::Policy;
use crate::decision::{Decision, RuleId, RuleSet, Verdict};
use crate::params::RuleParams;
use crate::quota::Outcome;
use crate::rule::MAX_RULES;
use crate::table::counters::{Global, Outcome as Counted};
use crate::table::slot::{self, Cells, Found, MAX_RETRIES};
use crate::table::{self, tag, Insert, Table};
use crate::time::Nanos;

/// One rule of one request, with its key's tag.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Work {
    pub rule: u8,
    pub tag: u64,
    /// The first word of the subject's hash (the Redis mode's hash tag).
    pub base: u64,
}

/// The rules of one request.
pub(crate) type WorkList = heapless::Vec<Work, MAX_RULES>;

/// What undoing one charge needs: the slot, the value the charge wrote, and
/// the value before it.
#[derive(Copy, Clone)]
struct Undo {
    pos: usize,
    written: u128,
    before: u128,
}

/// One table, its rules and a handle's options: what a charge runs on.
pub(crate) struct Charger<'t, 'm> {
    pub table: &'t Table<'m>,
    pub params: &'t RuleParams,
    pub policy: Policy,
    pub dry_run: bool,
}

/// Picks the binding rule as outcomes arrive: on allow the tightest, on
/// deny the denial with the longest wait (a rule the cost never fits
/// first), the first one on ties.
#[derive(Default)]
pub(crate) struct Binder {
    tightest: Option<(usize, Outcome)>,
    denial: Option<(usize, Outcome)>,
}

impl Binder {
    /// Whether a rule has denied so far.
    pub fn denied(&self) -> bool {
        self.denial.is_some()
    }

    /// Add the outcome of `work[i]`.
    pub fn add(&mut self, params: &RuleParams, work: &[Work], i: usize, out: Outcome) {
        if !out.allowed {
            let longer = match &self.denial {
                None => true,
                Some((_, d)) => {
                    (out.never_fits && !d.never_fits)
                        || (out.never_fits == d.never_fits && out.retry_after > d.retry_after)
                }
            };
            if longer {
                self.denial = Some((i, out));
            }
        } else if self.denial.is_none() {
            let tighter = match (&self.tightest, work.get(i)) {
                (Some((b, bo)), Some(w)) => match work.get(*b) {
                    Some(bw) => tighter(params, w, &out, bw, bo),
                    None => true,
                },
                _ => true,
            };
            if tighter {
                self.tightest = Some((i, out));
            }
        }
    }

    /// The binding rule's index in the work list and outcome.
    pub fn finish(self) -> Option<(usize, Outcome)> {
        self.denial.or(self.tightest)
    }
}

/// On allow, the binding rule is the one with the smallest fraction of its
/// burst left (ties: the one furthest from full replenishment): whether `a`
/// (a later rule) binds rather than `b`.
fn tighter(params: &RuleParams, a: &Work, ao: &Outcome, b: &Work, bo: &Outcome) -> bool {
    let burst = |w: &Work| params.get(w.rule).map_or(1, |p| p.burst.max(1)) as u64;
    // u32 × u32 fits in u64.
    let lhs = (ao.remaining as u64).wrapping_mul(burst(b));
    let rhs = (bo.remaining as u64).wrapping_mul(burst(a));
    lhs < rhs || (lhs == rhs && ao.reset > bo.reset)
}

impl Charger<'_, '_> {
    /// Decide every rule of one request at `now`: all or nothing.
    #[inline]
    pub fn run(&self, work: &[Work], cost: u32, now: u64, peek: bool) -> Decision {
        let cost = cost.max(1);
        let judge = self.table.judge(now);
        if let [w] = work {
            // One rule: it binds, and a denial charged nothing to undo.
            let (out, _) = self.one(w, cost, now, judge, peek, false);
            return self.assemble(w, RuleSet::EMPTY.with(RuleId(w.rule)), &out, peek);
        }
        let mask = self.table.mask();
        for w in work {
            let (b1, b2) = tag::buckets(w.tag, mask);
            self.table.prefetch(b1);
            self.table.prefetch(b2);
        }
        let mut undo = heapless::Vec::<Undo, MAX_RULES>::new();
        let mut binder = Binder::default();
        for (i, w) in work.iter().enumerate() {
            let (out, charged) = self.one(w, cost, now, judge, peek, binder.denied());
            if let Some(u) = charged {
                // At most one charge per work item: it fits.
                let _ = undo.push(u);
            }
            binder.add(self.params, work, i, out);
        }
        let Some((bi, o)) = binder.finish() else {
            return Decision::UNMATCHED;
        };
        if !o.allowed {
            for u in undo.iter().rev() {
                let _ = self.table.cas(u.pos, u.written, u.before);
            }
        }
        let matched = work
            .iter()
            .fold(RuleSet::EMPTY, |m, w| m.with(RuleId(w.rule)));
        match work.get(bi) {
            Some(bw) => self.assemble(bw, matched, &o, peek),
            None => Decision::UNMATCHED,
        }
    }

    /// The decision with `bw` binding on outcome `o`; counts it unless this
    /// is a peek.
    #[inline(always)]
    pub fn assemble(&self, bw: &Work, matched: RuleSet, o: &Outcome, peek: bool) -> Decision {
        let limit = self.params.get(bw.rule).map_or(0, |p| p.quota.limit);
        let verdict = if o.allowed {
            Verdict::Allowed
        } else if o.never_fits {
            Verdict::NeverFits
        } else {
            Verdict::Limited {
                retry_after: Nanos(o.retry_after),
            }
        };
        let unenforced = self.dry_run && !o.allowed;
        if !peek {
            let counted = match (o.allowed, unenforced) {
                (true, _) => Counted::Allowed,
                (false, true) => Counted::DryRunLimited,
                (false, false) => Counted::Limited,
            };
            self.table
                .counters
                .rule(table::counters::here(), bw.rule, counted);
        }
        Decision {
            verdict,
            rule: Some(RuleId(bw.rule)),
            limit,
            remaining: o.remaining,
            reset: Nanos(o.reset),
            matched,
            dry_run: unenforced,
        }
    }

    /// Decide one rule; charge it unless this is a peek or an earlier rule
    /// already denied (a clamped wild state is stored then too, unless this
    /// is a peek). Returns the outcome and, if charged, what undoes it.
    #[inline(always)]
    fn one(
        &self,
        w: &Work,
        cost: u32,
        now: u64,
        judge: u64,
        peek: bool,
        denied: bool,
    ) -> (Outcome, Option<Undo>) {
        let Some(p) = self.params.get(w.rule) else {
            // Work only holds rules of the table; anything else is refused.
            return (refused(Outcome::default(), slot::MARKER_TTL), None);
        };
        let dry = peek || denied;
        for _ in 0..MAX_RETRIES {
            match slot::find(self.table, self.params, w.tag, judge) {
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
                        let undo = Undo {
                            pos,
                            written,
                            before: value,
                        };
                        return (out, Some(undo));
                    }
                }
                Found::Absent => {
                    let out = p.decide(0, now, cost);
                    if dry || !out.allowed {
                        return (out, None);
                    }
                    match self.insert(w.tag, out.state, judge) {
                        Insert::At(pos) => {
                            let undo = Undo {
                                pos,
                                written: slot::pack(w.tag, out.state),
                                before: 0,
                            };
                            return (out, Some(undo));
                        }
                        Insert::Untracked => return (out, None),
                        Insert::Refused(free_in) => return (refused(out, free_in), None),
                        Insert::Raced => {}
                    }
                }
                Found::Busy => {
                    if dry {
                        return (p.decide(0, now, cost), None);
                    }
                    core::hint::spin_loop();
                }
            }
        }
        // Racing writers never settled (or a claim outlived our retries):
        // deny briefly rather than admit untracked.
        (refused(p.decide(0, now, cost), slot::MARKER_TTL), None)
    }

    fn insert(&self, tag: u64, state: u64, judge: u64) -> Insert {
        let (insert, events) =
            table::insert(self.table, self.params, tag, state, judge, self.policy);
        let c = &self.table.counters;
        if events.inserted {
            c.add(tag, Global::Inserts);
        }
        if events.evicted {
            c.add(tag, Global::Evicted);
        }
        if events.evicted_in_debt {
            c.add(tag, Global::EvictedInDebt);
        }
        if events.full {
            c.add(tag, Global::Full);
        }
        insert
    }
}

/// A denial for `free_in` ns: the table had no room (Deny policy) or racing
/// writers never settled.
fn refused(out: Outcome, free_in: u64) -> Outcome {
    Outcome {
        allowed: false,
        never_fits: false,
        retry_after: free_in.max(1),
        ..out
    }
}
