//! The Redis [`Backend`] (`--redis`): every replica on one Redis enforces
//! one limit, through [`ratecard_redis`]. The local table beside it caches
//! Redis's denials and, under `--redis-policy local`, decides when Redis
//! cannot.
//!
//! When Redis cannot answer, the policy's answer is the service's:
//! - `closed`: gRPC `UNAVAILABLE` (Envoy's `failure_mode_deny` then
//!   decides: 500, or let it through);
//! - `open`: `OK` with no limit and no headers;
//! - `local`: the local table's decision, per-replica limits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ratecard_redis::{Answer, Error, Options, RedisBackend};

use crate::backend::{Backend, BackendError, Classified, Outcome, Verdict};
use crate::engine::{self, Counters, SetupError, TableConfig};

/// Decisions through Redis.
pub struct Redis {
    redis: RedisBackend,
    /// The last second a Redis failure was logged: at most one line a second.
    logged: AtomicU64,
}

/// What the Redis side has counted, for the log line at shutdown.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoteCounters {
    /// Round trips that got the script's reply.
    pub calls: u64,
    /// Round trips that failed.
    pub errors: u64,
    /// Decisions the policy answered.
    pub policy_answers: u64,
    /// Denials answered from the local cache, with no round trip.
    pub cached: u64,
    /// Times the circuit breaker opened.
    pub breaker_opens: u64,
}

impl Redis {
    /// A table for `config` (its seed shared by every replica) and Redis at
    /// `options.addr`; connects lazily.
    pub fn new(config: &TableConfig, options: Options) -> Result<Redis, SetupError> {
        let limiter = Arc::new(engine::table(config)?);
        let redis =
            RedisBackend::new(limiter, options).map_err(|e| SetupError(format!("Redis: {e}")))?;
        Ok(Redis {
            redis,
            logged: AtomicU64::new(0),
        })
    }

    /// Slots the local table holds.
    pub fn capacity(&self) -> u64 {
        self.redis.limiter().stats().capacity
    }

    /// The local table's counters (decisions Redis made included).
    pub fn counters(&self) -> Counters {
        engine::counters(self.redis.limiter())
    }

    /// The Redis side's counters.
    pub fn remote_counters(&self) -> RemoteCounters {
        let s = self.redis.limiter().stats();
        RemoteCounters {
            calls: s.remote_calls,
            errors: s.remote_errors,
            policy_answers: s.remote_fallbacks,
            cached: s.remote_cached,
            breaker_opens: self.redis.client_stats().breaker_opens,
        }
    }

    async fn decide(&self, request: &Classified<'_>, peek: bool) -> Result<Verdict, BackendError> {
        let r = engine::request(request);
        let decided = if peek {
            self.redis.peek(&r).await
        } else {
            self.redis.check(&r).await
        };
        let rules = self.redis.limiter().rules();
        match decided {
            Ok(d) => Ok(engine::verdict(rules, &d)),
            Err(Error::Request(e)) => Err(engine::error(e)),
            Err(e) => {
                self.log(&e);
                match &e {
                    Error::Remote {
                        answer: Answer::Local(d),
                        ..
                    } => Ok(engine::verdict(rules, d)),
                    Error::Remote {
                        answer: Answer::Open,
                        ..
                    } => Ok(Verdict {
                        outcome: Outcome::Allowed,
                        dry_run: false,
                        binding: None,
                        ratelimit_policy: String::new(),
                        ratelimit: String::new(),
                    }),
                    _ => Err(BackendError::Unavailable(e.to_string())),
                }
            }
        }
    }

    fn log(&self, e: &Error) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if self.logged.swap(now, Ordering::Relaxed) != now {
            eprintln!("ratecard-rls: {e}");
        }
    }
}

impl Backend for Redis {
    fn check(
        &self,
        request: &Classified<'_>,
    ) -> impl std::future::Future<Output = Result<Verdict, BackendError>> + Send {
        self.decide(request, false)
    }

    fn peek(
        &self,
        request: &Classified<'_>,
    ) -> impl std::future::Future<Output = Result<Verdict, BackendError>> + Send {
        self.decide(request, true)
    }
}
