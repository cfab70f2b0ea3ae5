//! Decisions, and what to send back: `Retry-After`, the `RateLimit-Policy`
//! and `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers-11 syntax)
//! and Clerk's 429 body, written into caller buffers.

use core::fmt::Write;

use crate::rule::RuleTable;
use crate::time::{Nanos, NANOS_PER_SEC};

/// `rule` of a request that matched no rule.
pub const NO_RULE: u32 = u32::MAX;

/// Clerk's 429 response body.
pub const CLERK_429_BODY: &str = r#"{"errors":[{"message":"Too many requests","long_message":"Too many requests, retry later","code":"too_many_requests","meta":{}}]}"#;

/// The answer for one request.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Send the request on (always true on a dry-run handle).
    pub allowed: bool,
    /// An unlimited rule matched: nothing was counted or stored.
    pub exempt: bool,
    /// Dry run: the request would have been denied.
    pub dry_run_denied: bool,
    /// The cost exceeds the binding rule's burst: no wait helps.
    pub never_fits: bool,
    /// The binding rule's index, or [`NO_RULE`].
    pub rule: u32,
    /// The binding rule's limit.
    pub limit: u32,
    /// Units left in the binding rule (after this request, if allowed).
    pub remaining: u32,
    /// Time until the binding rule is fully replenished.
    pub reset: Nanos,
    /// On denial, time until the request would be allowed.
    pub retry_after: Nanos,
    /// The `Retry-After` value in seconds: `⌈retry_after⌉`, at least 1, on
    /// (dry-run) denial; 0 when allowed or when the cost never fits.
    pub retry_after_secs: u32,
    /// Bit `i` set: rule `i` matched.
    pub matched: u64,
}

impl Decision {
    /// The decision for a request that matched no rule.
    pub const fn no_rule() -> Decision {
        Decision {
            allowed: true,
            exempt: false,
            dry_run_denied: false,
            never_fits: false,
            rule: NO_RULE,
            limit: 0,
            remaining: 0,
            reset: Nanos::ZERO,
            retry_after: Nanos::ZERO,
            retry_after_secs: 0,
            matched: 0,
        }
    }

    /// Denied, or would have been on a dry-run handle.
    pub const fn is_limited(&self) -> bool {
        !self.allowed || self.dry_run_denied
    }

    /// Write the `Retry-After` value (`"2"`); writes nothing and returns
    /// `Ok(0)` when the decision carries none.
    pub fn write_retry_after(&self, out: &mut [u8]) -> Result<usize, usize> {
        let secs = self.retry_after_secs;
        emit(out, |w| {
            if secs > 0 {
                write!(w, "{secs}")?;
            }
            Ok(())
        })
    }

    /// Write the `RateLimit-Policy` value listing every matched rule, e.g.
    /// `"fapi.sign_ins.create";q=5;w=10`. Empty when no limited rule matched.
    pub fn write_ratelimit_policy(
        &self,
        rules: &RuleTable<'_>,
        out: &mut [u8],
    ) -> Result<usize, usize> {
        let matched = if self.exempt { 0 } else { self.matched };
        emit(out, |w| {
            let mut first = true;
            for (i, rule) in rules.rules().iter().enumerate().take(64) {
                if matched & (1 << i) == 0 || rule.quota.is_unlimited() {
                    continue;
                }
                if !first {
                    w.write_str(", ")?;
                }
                first = false;
                let secs = rule.quota.period.0.div_ceil(NANOS_PER_SEC);
                write!(w, "\"{}\";q={};w={}", rule.name, rule.quota.limit, secs)?;
            }
            Ok(())
        })
    }

    /// Write the `RateLimit` value for the binding rule, e.g.
    /// `"fapi.sign_ins.create";r=4;t=2`. Empty for exempt and unmatched
    /// requests.
    pub fn write_ratelimit(&self, rules: &RuleTable<'_>, out: &mut [u8]) -> Result<usize, usize> {
        let rule = if self.exempt {
            None
        } else {
            rules.get(self.rule as usize)
        };
        let (remaining, t) = (self.remaining, reset_secs(self.reset));
        emit(out, |w| {
            if let Some(rule) = rule {
                write!(w, "\"{}\";r={};t={}", rule.name, remaining, t)?;
            }
            Ok(())
        })
    }
}

/// `⌈reset⌉` in seconds after dropping a sub-microsecond remainder, so
/// that a reset of 2 s and a few ns reads 2, not 3.
pub const fn reset_secs(reset: Nanos) -> u64 {
    (reset.0 / 1_000).div_ceil(1_000_000)
}

/// Write Clerk's 429 body.
pub fn write_429_body(out: &mut [u8]) -> Result<usize, usize> {
    emit(out, |w| w.write_str(CLERK_429_BODY))
}

/// Format twice: once to measure, once to write if it fits, so a short
/// buffer is left untouched and the length needed is reported.
fn emit(out: &mut [u8], f: impl Fn(&mut dyn Write) -> core::fmt::Result) -> Result<usize, usize> {
    let mut count = Counter(0);
    let _ = f(&mut count);
    if count.0 > out.len() {
        return Err(count.0);
    }
    let mut w = Slice { out, len: 0 };
    let _ = f(&mut w);
    Ok(w.len)
}

struct Counter(usize);

impl Write for Counter {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

struct Slice<'a> {
    out: &'a mut [u8],
    len: usize,
}

impl Write for Slice<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len + s.len();
        let dst = self.out.get_mut(self.len..end).ok_or(core::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}
