//! The in-process [`Backend`]: one ratecard table in memory this process
//! owns, shared by every gRPC worker thread.
//!
//! This is the only module that calls `ratecard`: when its API moves, only
//! this file changes.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ratecard::{Api, Decision, Limiter, Nanos, Request, RuleTable, Seed, CLERK, NO_RULE};

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

/// One 64-byte line: the table wants 64-byte aligned memory.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([u8; 64]);

/// A limiter over memory it owns.
struct Owned {
    // Borrows `_memory`: declared, and so dropped, first.
    limiter: Limiter<'static>,
    _memory: Vec<Line>,
}

impl Owned {
    fn new(config: &ratecard::Config, seed: Seed) -> Result<Owned, ratecard::Error> {
        let bytes = Limiter::bytes_for(config.capacity).ok_or(ratecard::Error::Capacity)?;
        let mut memory = vec![Line([0; 64]); bytes.div_ceil(64)];
        let len = memory.len() * 64;
        // SAFETY: the buffer is ours, `len` bytes and 64-byte aligned; it is
        // never touched again except through the limiter, its heap block does
        // not move when the Vec does, and it is dropped after the limiter.
        let limiter =
            unsafe { Limiter::init_raw(memory.as_mut_ptr().cast(), len, config, CLERK, seed)? };
        Ok(Owned {
            limiter,
            _memory: memory,
        })
    }
}

/// Decisions from a table in this process.
pub struct Local {
    owned: Owned,
    epoch: Instant,
}

impl Local {
    /// A fresh table with Clerk's rules.
    pub fn new(config: &TableConfig) -> Result<Local, SetupError> {
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
        let owned = Owned::new(&core, Seed::from_bytes(config.seed))
            .map_err(|e| SetupError(format!("cannot make the table: {e}")))?;
        Ok(Local {
            owned,
            epoch: Instant::now(),
        })
    }

    /// Slots the table holds, after rounding.
    pub fn capacity(&self) -> u64 {
        self.owned.limiter.stats().capacity
    }

    /// The table's counters.
    pub fn counters(&self) -> Counters {
        let s = self.owned.limiter.stats();
        Counters {
            allowed: s.allowed,
            denied: s.denied,
            occupancy: s.occupancy,
            capacity: s.capacity,
            evicted: s.evicted,
        }
    }

    /// Decide synchronously: the table needs no I/O.
    pub fn decide(&self, request: &Classified<'_>, peek: bool) -> Result<Verdict, BackendError> {
        let ip = IpBytes::of(request.client_ip);
        let api = match request.api {
            ApiKind::Frontend => Api::Frontend,
            ApiKind::Backend => Api::Backend,
        };
        let r = Request::new(api, request.method, request.path)
            .ip(ip.bytes())
            .key(request.authorization)
            .tenant(request.tenant)
            .cost(request.cost);
        let now = self.now();
        let limiter = &self.owned.limiter;
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

/// A client address in network order, as the table takes it.
struct IpBytes {
    buf: [u8; 16],
    len: usize,
}

impl IpBytes {
    fn of(ip: Option<IpAddr>) -> IpBytes {
        let mut buf = [0; 16];
        let len = match ip {
            None => 0,
            Some(IpAddr::V4(v4)) => {
                buf[..4].copy_from_slice(&v4.octets());
                4
            }
            Some(IpAddr::V6(v6)) => {
                buf = v6.octets();
                16
            }
        };
        IpBytes { buf, len }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

fn verdict(rules: &RuleTable<'static>, d: &Decision) -> Verdict {
    let outcome = if d.rule == NO_RULE {
        Outcome::Unmatched
    } else if d.exempt {
        Outcome::Exempt
    } else if d.is_limited() && d.never_fits {
        Outcome::NeverFits
    } else if d.is_limited() {
        Outcome::Limited {
            retry_after_secs: d.retry_after_secs.max(1),
        }
    } else {
        Outcome::Allowed
    };
    let binding = match outcome {
        Outcome::Exempt | Outcome::Unmatched => None,
        _ => rules.get(d.rule as usize).map(|rule| Binding {
            rule: rule.name,
            limit: d.limit,
            period: Duration::from_nanos(rule.quota.period.0),
            remaining: d.remaining,
            reset: Duration::from_nanos(d.reset.0),
        }),
    };
    Verdict {
        outcome,
        dry_run: d.dry_run_denied,
        binding,
        ratelimit_policy: written(|b| d.write_ratelimit_policy(rules, b)),
        ratelimit: written(|b| d.write_ratelimit(rules, b)),
    }
}

/// The text a ratecard writer puts in a buffer, retried once at the length
/// it asks for.
fn written(write: impl Fn(&mut [u8]) -> Result<usize, usize>) -> String {
    let mut buf = [0u8; 256];
    let bytes = match write(&mut buf) {
        Ok(n) => buf.get(..n).unwrap_or_default().to_vec(),
        Err(needed) => {
            let mut big = vec![0u8; needed];
            let n = write(&mut big).unwrap_or(0);
            big.truncate(n);
            big
        }
    };
    // The writers emit rule names of [A-Za-z0-9._-] and digits only.
    String::from_utf8(bytes).unwrap_or_default()
}

fn error(e: ratecard::Error) -> BackendError {
    match e {
        ratecard::Error::MissingSubject => BackendError::Invalid(
            "the request lacks its rule's subject: a Frontend request needs \
             remote_address, a Backend request authorization or remote_address",
        ),
        ratecard::Error::InvalidIp => BackendError::Invalid("remote_address is not an IP address"),
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
            client_ip: Some(IpAddr::from(ip)),
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
