//! Decisions, and what to send back: `Retry-After`, the `RateLimit-Policy`
//! and `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers-11 syntax)
//! and Clerk's 429 body, written into caller buffers.
//!
//! Every HTTP host (the Go middleware, nginx, the tower layer, the Envoy
//! service) answers the same way, through [`Decision::write_response`]:
//! - enforced denial: status 429, `Retry-After` (not when the cost can never
//!   fit: no wait helps), `RateLimit-Policy`, `RateLimit`, Clerk's JSON body;
//! - allowed (also a dry-run denial): the request goes on; `RateLimit-Policy`
//!   and `RateLimit` may be added to the upstream's response;
//! - exempt or unmatched: the request goes on, no field;
//! - an error (no decision): [`FAIL_CLOSED_STATUS`] unless the host is
//!   configured to fail open.

use core::fmt::Write;
use core::ops::Range;

use crate::rule::RuleTable;
use crate::time::{Nanos, NANOS_PER_SEC};

/// Clerk's 429 response body.
pub const CLERK_429_BODY: &str = r#"{"errors":[{"message":"Too many requests","long_message":"Too many requests, retry later","code":"too_many_requests","meta":{}}]}"#;

/// The status every host answers with when it fails closed: the limiter
/// could not decide (an error, an unreachable Redis under the fail-closed
/// policy). 503 Service Unavailable: the condition is the server's and
/// transient, so clients and load balancers retry; a 429 would blame the
/// client, and a 500 says nothing about retrying.
pub const FAIL_CLOSED_STATUS: u16 = 503;

/// The status of an enforced denial.
pub const LIMITED_STATUS: u16 = 429;

/// A rule's index in its table.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleId(pub u8);

impl RuleId {
    /// The index.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// A set of rules of one table (bit `i`: rule `i`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RuleSet(pub u64);

impl RuleSet {
    /// No rule.
    pub const EMPTY: RuleSet = RuleSet(0);

    /// Whether `rule` is in the set.
    pub const fn contains(self, rule: RuleId) -> bool {
        rule.0 < 64 && self.0 & (1 << rule.0) != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The set with `rule` added (rules past 63 are ignored).
    pub const fn with(self, rule: RuleId) -> RuleSet {
        if rule.0 < 64 {
            RuleSet(self.0 | 1 << rule.0)
        } else {
            self
        }
    }

    /// The rules, in index order.
    pub fn iter(self) -> impl Iterator<Item = RuleId> {
        let mut bits = self.0;
        core::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let i = bits.trailing_zeros() as u8;
            bits &= bits.wrapping_sub(1);
            Some(RuleId(i))
        })
    }
}

/// What was decided.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every matched rule conforms: the request was charged.
    Allowed,
    /// A matched rule does not conform; nothing was charged. The request
    /// would conform after `retry_after`.
    Limited {
        /// Time until the request would be allowed.
        retry_after: Nanos,
    },
    /// The cost exceeds the binding rule's burst: no wait helps.
    NeverFits,
    /// An unlimited rule matched (`GET /v1/jwks`): nothing was counted.
    Exempt,
    /// No rule matched: nothing was counted.
    Unmatched,
}

/// The answer for one request.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// What was decided.
    pub verdict: Verdict,
    /// The binding rule: on denial the one with the longest wait, on allow
    /// the one with the smallest fraction of its burst left; the exempting
    /// rule; `None` when no rule matched.
    pub rule: Option<RuleId>,
    /// The binding rule's limit (0 when exempt or unmatched).
    pub limit: u32,
    /// Units left in the binding rule (after this request, if allowed).
    pub remaining: u32,
    /// Time until the binding rule is fully replenished.
    pub reset: Nanos,
    /// Every rule the request matched.
    pub matched: RuleSet,
    /// Decided on a dry-run handle: a `Limited` or `NeverFits` verdict was
    /// not enforced (the request goes on, nothing was charged).
    pub dry_run: bool,
}

/// Where [`Decision::write_response`] put each field, as byte ranges of the
/// caller's buffer (empty when a field is absent).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    /// 429 for an enforced denial; 0: let the request go on.
    pub status: u16,
    /// The `Retry-After` value.
    pub retry_after: Range<usize>,
    /// The `RateLimit-Policy` value.
    pub ratelimit_policy: Range<usize>,
    /// The `RateLimit` value.
    pub ratelimit: Range<usize>,
    /// The body to send with `Content-Type: application/json` (denials only).
    pub body: Range<usize>,
}

impl Decision {
    /// The decision for a request that matched no rule.
    pub const UNMATCHED: Decision = Decision {
        verdict: Verdict::Unmatched,
        rule: None,
        limit: 0,
        remaining: 0,
        reset: Nanos::ZERO,
        matched: RuleSet::EMPTY,
        dry_run: false,
    };

    /// Whether the request may go on (always, on a dry-run handle).
    pub const fn allowed(&self) -> bool {
        self.dry_run || !self.is_limited()
    }

    /// Whether a rule denied it (enforced or, on a dry-run handle, not).
    pub const fn is_limited(&self) -> bool {
        matches!(self.verdict, Verdict::Limited { .. } | Verdict::NeverFits)
    }

    /// On denial, the time until the request would be allowed.
    pub const fn retry_after(&self) -> Option<Nanos> {
        match self.verdict {
            Verdict::Limited { retry_after } => Some(retry_after),
            _ => None,
        }
    }

    /// The `Retry-After` value in seconds: `⌈retry_after⌉`, at least 1, on
    /// a (dry-run) denial that a wait can cure.
    pub const fn retry_after_secs(&self) -> Option<u32> {
        match self.verdict {
            Verdict::Limited { retry_after } => {
                let s = retry_after.0.div_ceil(NANOS_PER_SEC);
                Some(if s == 0 {
                    1
                } else if s > u32::MAX as u64 {
                    u32::MAX
                } else {
                    s as u32
                })
            }
            _ => None,
        }
    }

    /// Whether the request counts against rules (not exempt, not unmatched).
    const fn limits(&self) -> bool {
        !matches!(self.verdict, Verdict::Exempt | Verdict::Unmatched)
    }

    /// Write the `Retry-After` value (`"2"`); writes nothing and returns
    /// `Ok(0)` when the decision carries none.
    pub fn write_retry_after(&self, out: &mut [u8]) -> Result<usize, usize> {
        let secs = self.retry_after_secs();
        emit(out, |w| match secs {
            Some(s) => write!(w, "{s}"),
            None => Ok(()),
        })
    }

    /// Write the `RateLimit-Policy` value listing every matched limited
    /// rule, e.g. `"fapi.sign_ins.create";q=5;w=10`. Empty when exempt or
    /// unmatched.
    pub fn write_ratelimit_policy(
        &self,
        rules: &RuleTable<'_>,
        out: &mut [u8],
    ) -> Result<usize, usize> {
        let matched = if self.limits() {
            self.matched
        } else {
            RuleSet::EMPTY
        };
        emit(out, |w| {
            let mut first = true;
            for id in matched.iter() {
                let Some(rule) = rules.get(id.index()) else {
                    continue;
                };
                if rule.quota.is_unlimited() {
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
    /// `"fapi.sign_ins.create";r=4;t=2`. Empty when exempt or unmatched.
    pub fn write_ratelimit(&self, rules: &RuleTable<'_>, out: &mut [u8]) -> Result<usize, usize> {
        let rule = match self.rule {
            Some(id) if self.limits() => rules.get(id.index()),
            _ => None,
        };
        let (remaining, t) = (self.remaining, reset_secs(self.reset));
        emit(out, |w| match rule {
            Some(rule) => write!(w, "\"{}\";r={};t={}", rule.name, remaining, t),
            None => Ok(()),
        })
    }

    /// The whole answer a host sends, written into `out`: the status and
    /// the field values (see the module docs). `Err` holds the length
    /// needed; the buffer is then left untouched.
    pub fn write_response(&self, rules: &RuleTable<'_>, out: &mut [u8]) -> Result<Response, usize> {
        let denied = !self.allowed();
        let mut need = 0usize;
        let mut lens = [0usize; 4];
        for (k, len) in lens.iter_mut().enumerate() {
            let mut probe = [0u8; 0];
            let n = match k {
                // Retry-After only goes with a 429.
                0 if !denied => Ok(0),
                0 => self.write_retry_after(&mut probe),
                1 => self.write_ratelimit_policy(rules, &mut probe),
                2 => self.write_ratelimit(rules, &mut probe),
                _ => write_429_body(&mut probe).map(|n| if denied { n } else { 0 }),
            };
            *len = match n {
                Ok(n) | Err(n) => n,
            };
            if k == 3 && !denied {
                *len = 0;
            }
            need = need.saturating_add(*len);
        }
        if need > out.len() {
            return Err(need);
        }
        let mut at = 0usize;
        let mut ranges: [Range<usize>; 4] = [0..0, 0..0, 0..0, 0..0];
        for (k, range) in ranges.iter_mut().enumerate() {
            let len = lens.get(k).copied().unwrap_or(0);
            let dst = out.get_mut(at..at.saturating_add(len)).unwrap_or(&mut []);
            let written = match k {
                0 if len == 0 => Ok(0),
                0 => self.write_retry_after(dst),
                1 => self.write_ratelimit_policy(rules, dst),
                2 => self.write_ratelimit(rules, dst),
                _ if len > 0 => write_429_body(dst),
                _ => Ok(0),
            };
            let n = written.unwrap_or(0);
            *range = at..at.saturating_add(n);
            at = at.saturating_add(n);
        }
        let [retry_after, ratelimit_policy, ratelimit, body] = ranges;
        Ok(Response {
            status: if denied { LIMITED_STATUS } else { 0 },
            retry_after,
            ratelimit_policy,
            ratelimit,
            body,
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
        self.0 = self.0.saturating_add(s.len());
        Ok(())
    }
}

struct Slice<'a> {
    out: &'a mut [u8],
    len: usize,
}

impl Write for Slice<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(core::fmt::Error)?;
        let dst = self.out.get_mut(self.len..end).ok_or(core::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CLERK;

    fn denied() -> Decision {
        Decision {
            verdict: Verdict::Limited {
                retry_after: Nanos(1_500_000_000),
            },
            rule: Some(RuleId(0)),
            limit: 5,
            remaining: 0,
            reset: Nanos(10_000_000_000),
            matched: RuleSet::EMPTY.with(RuleId(0)),
            dry_run: false,
        }
    }

    #[test]
    fn a_denial_writes_every_field_and_clerks_body() {
        let mut buf = [0u8; 512];
        let r = denied().write_response(&CLERK, &mut buf).unwrap();
        assert_eq!(r.status, 429);
        assert_eq!(&buf[r.retry_after.clone()], b"2");
        assert_eq!(
            &buf[r.ratelimit_policy.clone()],
            br#""fapi.sign_ins.create";q=5;w=10"#
        );
        assert_eq!(
            &buf[r.ratelimit.clone()],
            br#""fapi.sign_ins.create";r=0;t=10"#
        );
        assert_eq!(&buf[r.body.clone()], CLERK_429_BODY.as_bytes());
    }

    #[test]
    fn a_short_buffer_reports_the_length_needed_and_stays_untouched() {
        let need = denied().write_response(&CLERK, &mut []).unwrap_err();
        let mut buf = [7u8; 512];
        assert_eq!(
            denied().write_response(&CLERK, &mut buf[..need - 1]),
            Err(need)
        );
        assert!(buf.iter().all(|&b| b == 7));
        assert!(denied().write_response(&CLERK, &mut buf[..need]).is_ok());
    }

    #[test]
    fn allowed_dry_run_exempt_and_unmatched_answers() {
        let mut buf = [0u8; 512];
        let dry = Decision {
            dry_run: true,
            ..denied()
        };
        let r = dry.write_response(&CLERK, &mut buf).unwrap();
        assert_eq!(r.status, 0, "a dry-run denial goes on");
        assert!(r.body.is_empty() && r.retry_after.is_empty());
        assert!(!r.ratelimit.is_empty());
        assert_eq!(dry.retry_after_secs(), Some(2));
        let r = Decision::UNMATCHED
            .write_response(&CLERK, &mut buf)
            .unwrap();
        assert_eq!(r, Response::default());
        let exempt = Decision {
            verdict: Verdict::Exempt,
            rule: Some(RuleId(6)),
            matched: RuleSet::EMPTY.with(RuleId(6)),
            ..Decision::UNMATCHED
        };
        assert_eq!(
            exempt.write_response(&CLERK, &mut buf).unwrap(),
            Response::default()
        );
        let never = Decision {
            verdict: Verdict::NeverFits,
            ..denied()
        };
        let r = never.write_response(&CLERK, &mut buf).unwrap();
        assert_eq!(r.status, 429);
        assert!(r.retry_after.is_empty(), "no wait helps");
    }

    #[test]
    fn retry_after_rounds_up_to_at_least_one_second() {
        let at = |ns| Decision {
            verdict: Verdict::Limited {
                retry_after: Nanos(ns),
            },
            ..denied()
        };
        assert_eq!(at(1).retry_after_secs(), Some(1));
        assert_eq!(at(0).retry_after_secs(), Some(1));
        assert_eq!(at(2_000_000_000).retry_after_secs(), Some(2));
        assert_eq!(at(2_000_000_001).retry_after_secs(), Some(3));
        assert_eq!(at(u64::MAX).retry_after_secs(), Some(u32::MAX));
    }
}
