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
        emit(out, |s| self.retry_after_into(s))
    }

    /// Write the `RateLimit-Policy` value listing every matched limited
    /// rule, e.g. `"fapi.sign_ins.create";q=5;w=10`. Empty when exempt or
    /// unmatched.
    pub fn write_ratelimit_policy(
        &self,
        rules: &RuleTable<'_>,
        out: &mut [u8],
    ) -> Result<usize, usize> {
        emit(out, |s| self.policy_into(rules, s))
    }

    /// Write the `RateLimit` value for the binding rule, e.g.
    /// `"fapi.sign_ins.create";r=4;t=2`. Empty when exempt or unmatched.
    pub fn write_ratelimit(&self, rules: &RuleTable<'_>, out: &mut [u8]) -> Result<usize, usize> {
        emit(out, |s| self.ratelimit_into(rules, s))
    }

    /// The whole answer a host sends, written into `out`: the status and
    /// the field values (see the module docs). `Err` holds the length
    /// needed; the buffer is then left untouched.
    ///
    /// One pass measures (lengths only: digit counts and name lengths),
    /// one writes; no `core::fmt`.
    pub fn write_response(&self, rules: &RuleTable<'_>, out: &mut [u8]) -> Result<Response, usize> {
        let denied = !self.allowed();
        let mut need = Measure(0);
        self.response_into(rules, denied, &mut need);
        if need.0 > out.len() {
            return Err(need.0);
        }
        let mut fill = Fill { out, len: 0 };
        let [retry_after, ratelimit_policy, ratelimit, body] =
            self.response_into(rules, denied, &mut fill);
        Ok(Response {
            status: if denied { LIMITED_STATUS } else { 0 },
            retry_after,
            ratelimit_policy,
            ratelimit,
            body,
        })
    }

    /// Every field of the answer into `s`, in order; the range each took.
    fn response_into<S: Sink + ?Sized>(
        &self,
        rules: &RuleTable<'_>,
        denied: bool,
        s: &mut S,
    ) -> [Range<usize>; 4] {
        let a = s.len();
        if denied {
            // Retry-After only goes with a 429.
            self.retry_after_into(s);
        }
        let b = s.len();
        self.policy_into(rules, s);
        let c = s.len();
        self.ratelimit_into(rules, s);
        let d = s.len();
        if denied {
            s.put(CLERK_429_BODY.as_bytes());
        }
        let e = s.len();
        [a..b, b..c, c..d, d..e]
    }

    fn retry_after_into<S: Sink + ?Sized>(&self, s: &mut S) {
        if let Some(secs) = self.retry_after_secs() {
            s.uint(u64::from(secs));
        }
    }

    fn policy_into<S: Sink + ?Sized>(&self, rules: &RuleTable<'_>, s: &mut S) {
        if !self.limits() {
            return;
        }
        let mut first = true;
        for id in self.matched.iter() {
            let Some(rule) = rules.get(id.index()) else {
                continue;
            };
            if rule.quota.is_unlimited() {
                continue;
            }
            if !first {
                s.put(b", ");
            }
            first = false;
            s.put(b"\"");
            s.put(rule.name.as_bytes());
            s.put(b"\";q=");
            s.uint(u64::from(rule.quota.limit));
            s.put(b";w=");
            s.uint(rule.quota.period.0.div_ceil(NANOS_PER_SEC));
        }
    }

    fn ratelimit_into<S: Sink + ?Sized>(&self, rules: &RuleTable<'_>, s: &mut S) {
        let rule = match self.rule {
            Some(id) if self.limits() => rules.get(id.index()),
            _ => None,
        };
        if let Some(rule) = rule {
            s.put(b"\"");
            s.put(rule.name.as_bytes());
            s.put(b"\";r=");
            s.uint(u64::from(self.remaining));
            s.put(b";t=");
            s.uint(reset_secs(self.reset));
        }
    }
}

/// `⌈reset⌉` in seconds after dropping a sub-microsecond remainder, so
/// that a reset of 2 s and a few ns reads 2, not 3.
pub const fn reset_secs(reset: Nanos) -> u64 {
    (reset.0 / 1_000).div_ceil(1_000_000)
}

/// Write Clerk's 429 body.
pub fn write_429_body(out: &mut [u8]) -> Result<usize, usize> {
    emit(out, |s| s.put(CLERK_429_BODY.as_bytes()))
}

/// Where field bytes go: a measuring pass, then a writing pass, through the
/// same code, so the two cannot disagree.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
    fn uint(&mut self, n: u64);
    fn len(&self) -> usize;
}

/// Counts bytes.
struct Measure(usize);

impl Sink for Measure {
    fn put(&mut self, bytes: &[u8]) {
        self.0 = self.0.saturating_add(bytes.len());
    }
    fn uint(&mut self, n: u64) {
        self.0 = self.0.saturating_add(digits(n));
    }
    fn len(&self) -> usize {
        self.0
    }
}

/// Copies bytes into a buffer already known to be long enough (a write
/// past the end is dropped, never a panic).
struct Fill<'a> {
    out: &'a mut [u8],
    len: usize,
}

impl Sink for Fill<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.len.saturating_add(bytes.len());
        if let Some(dst) = self.out.get_mut(self.len..end) {
            dst.copy_from_slice(bytes);
            self.len = end;
        }
    }
    fn uint(&mut self, n: u64) {
        let mut buf = [0u8; 20];
        let mut at = buf.len();
        let mut n = n;
        loop {
            at = at.saturating_sub(1);
            if let Some(d) = buf.get_mut(at) {
                // `n % 10 < 10`: the cast and the add cannot overflow.
                *d = b'0'.wrapping_add((n % 10) as u8);
            }
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.put(buf.get(at..).unwrap_or(&[]));
    }
    fn len(&self) -> usize {
        self.len
    }
}

/// Decimal digits of `n`.
const fn digits(mut n: u64) -> usize {
    let mut d: usize = 1;
    while n >= 10 {
        n /= 10;
        d = d.saturating_add(1);
    }
    d
}

/// Measure, then write if it fits: a short buffer is left untouched and the
/// length needed is reported.
fn emit(out: &mut [u8], f: impl Fn(&mut dyn Sink)) -> Result<usize, usize> {
    let mut count = Measure(0);
    f(&mut count);
    if count.0 > out.len() {
        return Err(count.0);
    }
    let mut w = Fill { out, len: 0 };
    f(&mut w);
    Ok(w.len)
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

    #[test]
    fn fields_match_a_formatted_reference_at_extreme_values() {
        use std::format;
        let values = [0u64, 1, 9, 10, 99, 100, 4_294_967_295, u64::MAX];
        let mut buf = [0u8; 1024];
        for (i, &v) in values.iter().enumerate() {
            let d = Decision {
                verdict: Verdict::Limited {
                    retry_after: Nanos(v),
                },
                rule: Some(RuleId(1)),
                remaining: v as u32,
                reset: Nanos(v),
                matched: RuleSet::EMPTY.with(RuleId(1)).with(RuleId(8)),
                ..denied()
            };
            let r = d.write_response(&CLERK, &mut buf).unwrap();
            let rule = &CLERK.rules()[1];
            let secs = d.retry_after_secs().unwrap();
            assert_eq!(
                &buf[r.retry_after.clone()],
                format!("{secs}").as_bytes(),
                "{i}"
            );
            let want = format!(
                "\"{}\";r={};t={}",
                rule.name,
                v as u32,
                reset_secs(Nanos(v))
            );
            assert_eq!(&buf[r.ratelimit.clone()], want.as_bytes(), "{i}");
            let policy: std::vec::Vec<_> = [1usize, 8]
                .iter()
                .map(|&k| &CLERK.rules()[k])
                .filter(|r| !r.quota.is_unlimited())
                .map(|r| {
                    format!(
                        "\"{}\";q={};w={}",
                        r.name,
                        r.quota.limit,
                        r.quota.period.0.div_ceil(NANOS_PER_SEC)
                    )
                })
                .collect();
            assert_eq!(
                &buf[r.ratelimit_policy.clone()],
                policy.join(", ").as_bytes(),
                "{i}"
            );
            let need = d.write_response(&CLERK, &mut []).unwrap_err();
            assert_eq!(need, r.body.end, "{i}: measured as written");
        }
    }
}
