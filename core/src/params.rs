//! Each rule's quota as the engine applies it: the configuration's pace
//! mode and algorithm override folded in, and GCRA's emission interval and
//! its reciprocal precomputed so the hot path divides by nothing.

use crate::config::Config;
use crate::quota::{Algorithm, Outcome, Quota};
use crate::rule::{RuleTable, Scope, MAX_RULES};
use crate::table::slot::Rules;
use crate::table::tag;
use crate::{gcra, window};

/// One rule's parameters.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Params {
    pub quota: Quota,
    /// GCRA's emission interval, `quota.emission_interval()`.
    pub t: u64,
    /// `gcra::reciprocal(t)`, to divide by `t` without a division.
    recip: u64,
    /// The fixed window's length, `quota.period_ns()`.
    pub period: u64,
    /// `quota.burst()`.
    pub burst: u32,
    pub algorithm: Algorithm,
    pub scope: Scope,
    pub unlimited: bool,
}

const NONE: Params = Params::new(Quota::unlimited(), Algorithm::Gcra, Scope::Instance);

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

    /// Decide a request of `cost` against `state` at `now`.
    #[inline(always)]
    pub fn decide(&self, state: u64, now: u64, cost: u32) -> Outcome {
        match self.algorithm {
            Algorithm::Gcra => gcra::decide_with(state, now, cost, self.t, self.burst, self.recip),
            Algorithm::FixedWindow => {
                window::decide(state, now, cost, self.quota.limit, self.period)
            }
        }
    }

    /// The fraction of the burst (or window) in use, in 32-bit fixed point.
    fn debt(&self, state: u64, now: u64) -> u32 {
        match self.algorithm {
            Algorithm::Gcra => gcra::debt(state, now, self.t, self.burst),
            Algorithm::FixedWindow => window::debt(state, now, self.quota.limit, self.period),
        }
    }

    fn merge(&self, a: u64, b: u64, now: u64) -> u64 {
        match self.algorithm {
            Algorithm::Gcra => gcra::merge(a, b, now),
            Algorithm::FixedWindow => window::merge(a, b, now, self.quota.limit, self.period),
        }
    }
}

/// Every rule's parameters, by index.
pub(crate) struct RuleParams {
    params: [Params; MAX_RULES],
    len: usize,
}

impl RuleParams {
    pub fn new(rules: &RuleTable<'_>, config: &Config) -> RuleParams {
        let mut params = [NONE; MAX_RULES];
        for (p, rule) in params.iter_mut().zip(rules.rules()) {
            let mut quota = rule.quota;
            let algorithm = config.algorithm.unwrap_or(rule.algorithm);
            if config.pace && algorithm == Algorithm::Gcra {
                quota = quota.with_burst(1);
            }
            *p = Params::new(quota, algorithm, rule.scope);
        }
        RuleParams {
            params,
            len: rules.len().min(MAX_RULES),
        }
    }

    /// Rule `rule`'s parameters; `None` past the table.
    #[inline(always)]
    pub fn get(&self, rule: u8) -> Option<&Params> {
        self.params.get(..self.len)?.get(rule as usize)
    }
}

/// How the table judges slots. A tag whose rule index is past the table
/// can only be garbage (another process's stray write): it holds no one's
/// debt, so it is free to reuse.
impl Rules for RuleParams {
    fn debt(&self, tag: u64, state: u64, now: u64) -> u32 {
        match self.get(tag::rule_of(tag) as u8) {
            Some(p) if !p.unlimited => p.debt(state, now),
            _ => 0,
        }
    }

    fn merge(&self, tag: u64, a: u64, b: u64, now: u64) -> u64 {
        match self.get(tag::rule_of(tag) as u8) {
            Some(p) => p.merge(a, b, now),
            // Garbage: keep the larger word, as the stricter guess.
            None => a.max(b),
        }
    }

    fn replenish(&self, tag: u64, state: u64, now: u64) -> u64 {
        match self.get(tag::rule_of(tag) as u8) {
            Some(p) if !p.unlimited => p.decide(state, now, 1).reset,
            _ => 0,
        }
    }
}
