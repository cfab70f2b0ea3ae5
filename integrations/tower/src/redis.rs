//! The layer on Redis (feature `redis`): one limit for every service
//! that shares a Redis, through [`ratecard_redis::RedisBackend`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use ratecard::{Decision, Nanos, Request, RuleTable};
use ratecard_redis::{Answer, Begun, Error, RedisBackend};

use crate::decider::{Check, Decider, Fallback};

type Boxed = Pin<Box<dyn Future<Output = Result<Decision, Error>> + Send>>;

/// The round trip of one request through Redis. Boxed: the backend's
/// future is an `async fn`'s, which has no name to store unboxed; one
/// allocation per request that goes to Redis, none for the others.
pub struct RedisCheck(Boxed);

impl Future for RedisCheck {
    type Output = Result<Decision, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl fmt::Debug for RedisCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RedisCheck")
    }
}

/// Decisions through Redis. Exempt, unmatched and cached-denied requests,
/// and every request while the breaker is open, are answered at once
/// ([`Check::Now`]); the others make their round trip in a [`RedisCheck`].
/// The layer's clock is not read: the backend keeps its own (Redis's
/// `TIME` for the shared state, a monotonic one for its local table).
///
/// When Redis does not answer, the backend's [`ratecard_redis::Policy`]
/// has: [`Answer::Closed`] takes the layer's path for any undecided
/// request ([`ratecard::FAIL_CLOSED_STATUS`] unless the layer is
/// `fail_open`), [`Answer::Open`] passes the request on with no field, and
/// [`Answer::Local`] is answered as a local decision. `on_error` hears of
/// each.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::{net::SocketAddr, sync::Arc};
/// use axum::{routing::post, Router};
/// use ratecard::{Config, Limiter, Seed, CLERK};
/// use ratecard_redis::{Options, RedisBackend};
/// use ratecard_tower::RateLimitLayer;
///
/// // Every service on this Redis: the same seed (its keys are keyed hashes).
/// let seed = *b"one seed, shared";
/// let limiter = Arc::new(Limiter::new(&Config::DEFAULT, CLERK, Seed::from_bytes(seed))?);
/// let redis = Arc::new(RedisBackend::new(limiter, Options::new("10.0.0.5:6379"))?);
/// let app = Router::new()
///     .route("/v1/client/sign_ins", post(|| async { "signed in" }))
///     .layer(RateLimitLayer::frontend(redis));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
/// # Ok(()) }
/// ```
impl Decider for RedisBackend {
    type Error = Error;
    type Future = RedisCheck;

    fn check(this: &Arc<Self>, request: &Request<'_>, _now: Nanos) -> Check<RedisCheck, Error> {
        match this.begin(request) {
            Ok(Begun::Decided(d)) => Check::Now(Ok(d)),
            Err(e) => Check::Now(Err(e)),
            Ok(Begun::Remote(trip)) => {
                let backend = Arc::clone(this);
                Check::Later(RedisCheck(Box::pin(
                    async move { backend.finish(trip).await },
                )))
            }
        }
    }

    fn rules(&self) -> &RuleTable<'_> {
        self.limiter().rules()
    }

    fn fallback(&self, error: &Error) -> Fallback {
        match error {
            Error::Remote {
                answer: Answer::Open,
                ..
            } => Fallback::Open,
            Error::Remote {
                answer: Answer::Local(d),
                ..
            } => Fallback::Decided(*d),
            Error::Remote {
                answer: Answer::Closed,
                ..
            }
            | Error::Request(_) => Fallback::Closed,
        }
    }
}
