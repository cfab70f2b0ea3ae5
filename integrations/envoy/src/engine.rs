//! The in-process [`Backend`]: one ratecard table in memory this process
//! owns, shared by every gRPC worker thread.
//!
//! This module and [`crate::shared`] (the Redis backend) are the only ones
//! that call `ratecard`: when its API moves, only they change.

use std::time::{Duration, Instant};

use ratecard::{
    Api, CheckError, Decision, Limiter, Nanos, Request, RuleTable, Seed, Verdict as Said, CLERK,
};

use crate::backend::{ApiKind, Backend, BackendError, Binding, Classified, Outcome, Verdict};

/// Clerk's 429 body, sent as the denial's `raw_body`.
pub const TOO_MANY_REQUESTS_BODY: &str = ratecard::CLERK_429_BODY;

/// Slots a table may hold at most.
pub const MAX_CAPACITY: u32 = 1 << 28;

/// What the table is made with.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TableConfig {
    /// Slots (one per live rule and subject), rounded up by the table.
    pub capacity: u32,
    /// The 16-byte hash seed.
    pub seed: [u8; 16],
    /// Report would-be denials, never deny.
    pub dry_run: bool,
}

/// Why a table could not be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetupError(pub String);

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SetupError {}

/// Counters of the table, for the log line at shutdown.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Decisions allowed.
    pub allowed: u64,
    /// Decisions denied (dry-run denials included).
    pub denied: u64,
    /// Slots holding a key now.
    pub occupancy: u64,
    /// Slots in the table.
    pub capacity: u64,
    /// Inserts that evicted a key still in debt.
    pub evicted: u64,
}

/// Decisions from a table in this process.
pub struct Local {
    limiter: Limiter<'static>,
    epoch: Instant,
}

/// A fresh table with Clerk's rules.
pub(crate) fn table(config: &TableConfig) -> Result<Limiter<'static>, SetupError> {
    if config.capacity == 0 || config.capacity > MAX_CAPACITY {
        return Err(SetupError(format!(
            "capacity must be 1 to {MAX_CAPACITY} slots, not {}",
            config.capacity
        )));
    }
    let core = ratecard::Config {
        capacity: config.capacity,
        dry_run: config.dry_run,
        ..ratecard::Config::DEFAULT
    };
    Limiter::new(&core, CLERK, Seed::from_bytes(config.seed))
        .map_err(|e| SetupError(format!("cannot make the table: {e}")))
}

/// The counters of `limiter`.
pub(crate) fn counters(limiter: &Limiter<'_>) -> Counters {
    let s = limiter.stats();
    Counters {
        allowed: s.allowed,
        denied: s.limited.saturating_add(s.dry_run_limited),
        occupancy: s.occupancy,
        capacity: s.capacity,
        evicted: s.evicted_in_debt,
    }
}

/// `request` as ratecard's request.
pub(crate) fn request<'a>(request: &Classified<'a>) -> Request<'a> {
    let api = match request.api {
        ApiKind::Frontend => Api::Frontend,
        ApiKind::Backend => Api::Backend,
    };
    let mut r = Request::new(api, request.method, request.path)
        .key(request.authorization)
        .tenant(request.tenant)
        .cost(request.cost);
    r.client_ip = request.client_ip;
    r
}

impl Local {
    /// A fresh table with Clerk's rules.
    pub fn new(config: &TableConfig) -> Result<Local, SetupError> {
        Ok(Local {
            limiter: table(config)?,
            epoch: Instant::now(),
        })
    }

    /// Slots the table holds, after rounding.
    pub fn capacity(&self) -> u64 {
        self.limiter.stats().capacity
    }

    /// The table's counters.
    pub fn counters(&self) -> Counters {
        counters(&self.limiter)
    }

    /// Decide synchronously: the table needs no I/O.
    pub fn decide(&self, request: &Classified<'_>, peek: bool) -> Result<Verdict, BackendError> {
        let r = self::request(request);
        let now = self.now();
        let limiter = &self.limiter;
        let decided = if peek {
            limiter.peek(&r, now)
        } else {
            limiter.check(&r, now)
        };
        decided.map(|d| verdict(limiter.rules(), &d)).map_err(error)
    }

    fn now(&self) -> Nanos {
        Nanos(u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }
}

impl Backend for Local {
    fn check(
        &self,
        request: &Classified<'_>,
    ) -> impl std::future::Future<Output = Result<Verdict, BackendError>> + Send {
        std::future::ready(self.decide(request, false))
    }

    fn peek(
        &self,
        request: &Classified<'_>,
    ) -> impl std::future::Future<Output = Result<Verdict, BackendError>> + Send {
        std::future::ready(self.decide(request, true))
    }
}

pub(crate) fn verdict(rules: &RuleTable<'static>, d: &Decision) -> Verdict {
    let outcome = match d.verdict {
        Said::Unmatched => Outcome::Unmatched,
        Said::Exempt => Outcome::Exempt,
        Said::NeverFits => Outcome::NeverFits,
        Said::Limited { .. } => Outcome::Limited {
            retry_after_secs: d.retry_after_secs().unwrap_or(1).max(1),
        },
        Said::Allowed => Outcome::Allowed,
    };
    let binding = match outcome {
        Outcome::Exempt | Outcome::Unmatched => None,
        _ => d
            .rule
            .and_then(|id| rules.get(id.index()))
            .map(|rule| Binding {
                rule: rule.name,
                limit: d.limit,
                period: Duration::from_nanos(rule.quota.period.0),
                remaining: d.remaining,
                reset: Duration::from_nanos(d.reset.0),
            }),
    };
    // The fields as every ratecard host writes them.
    let mut buf = [0u8; 1024];
    let (policy, ratelimit) = match d.write_response(rules, &mut buf) {
        Ok(r) => (text(&buf, r.ratelimit_policy), text(&buf, r.ratelimit)),
        Err(needed) => {
            let mut big = vec![0u8; needed];
            match d.write_response(rules, &mut big) {
                Ok(r) => (text(&big, r.ratelimit_policy), text(&big, r.ratelimit)),
                Err(_) => (String::new(), String::new()),
            }
        }
    };
    Verdict {
        outcome,
        dry_run: d.dry_run,
        binding,
        ratelimit_policy: policy,
        ratelimit,
    }
}

/// A field of a written response, as text (rule names and digits only).
fn text(buf: &[u8], range: std::ops::Range<usize>) -> String {
    String::from_utf8(buf.get(range).unwrap_or_default().to_vec()).unwrap_or_default()
}

pub(crate) fn error(e: CheckError) -> BackendError {
    match e {
        CheckError::MissingSubject => BackendError::Invalid(
            "the request lacks its rule's subject: a Frontend request needs \
             remote_address, a Backend request authorization or remote_address",
        ),
        other => BackendError::Internal(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(dry_run: bool) -> Local {
        Local::new(&TableConfig {
            capacity: 1024,
            seed: [7; 16],
            dry_run,
        })
        .unwrap()
    }

    fn sign_in(ip: [u8; 4]) -> Classified<'static> {
        Classified {
            api: ApiKind::Frontend,
            method: b"POST",
            path: b"/v1/client/sign_ins",
            client_ip: Some(std::net::IpAddr::from(ip)),
            authorization: b"",
            tenant: b"",
            cost: 1,
        }
    }

    #[test]
    fn a_frontend_burst_is_allowed_then_limited_with_the_rule_named() {
        let l = local(false);
        let rule = &CLERK.rules()[0];
        for left in (0..rule.quota.limit).rev() {
            let v = l.decide(&sign_in([192, 0, 2, 1]), false).unwrap();
            assert_eq!(v.outcome, Outcome::Allowed);
            assert_eq!(v.binding.as_ref().unwrap().remaining, left);
        }
        let v = l.decide(&sign_in([192, 0, 2, 1]), false).unwrap();
        assert!(
            matches!(v.outcome, Outcome::Limited { retry_after_secs } if retry_after_secs >= 1)
        );
        let b = v.binding.unwrap();
        assert_eq!((b.rule, b.limit), (rule.name, rule.quota.limit));
        assert!(v
            .ratelimit
            .starts_with(&format!("\"{}\";r=0;t=", rule.name)));
        assert!(v.ratelimit_policy.contains(rule.name));
    }

    #[test]
    fn a_dry_run_reports_the_denial_and_keeps_allowing() {
        let l = local(true);
        let limit = CLERK.rules()[0].quota.limit;
        for _ in 0..limit {
            l.decide(&sign_in([192, 0, 2, 2]), false).unwrap();
        }
        let v = l.decide(&sign_in([192, 0, 2, 2]), false).unwrap();
        assert!(v.dry_run && v.is_limited() && !v.is_enforced_denial());
    }

    #[test]
    fn a_peek_charges_nothing() {
        let l = local(false);
        for _ in 0..50 {
            let v = l.decide(&sign_in([192, 0, 2, 3]), true).unwrap();
            assert_eq!(v.outcome, Outcome::Allowed);
        }
        let v = l.decide(&sign_in([192, 0, 2, 3]), false).unwrap();
        assert_eq!(
            v.binding.unwrap().remaining,
            CLERK.rules()[0].quota.limit - 1
        );
    }

    #[test]
    fn a_frontend_request_without_an_address_is_invalid() {
        let l = local(false);
        let mut r = sign_in([0; 4]);
        r.client_ip = None;
        assert!(matches!(l.decide(&r, false), Err(BackendError::Invalid(_))));
    }

    #[test]
    fn capacity_out_of_range_is_a_setup_error() {
        for capacity in [0, MAX_CAPACITY + 1] {
            let made = Local::new(&TableConfig {
                capacity,
                seed: [0; 16],
                dry_run: false,
            });
            assert!(made.is_err());
        }
    }
}
