//! A tower [`Layer`](tower_layer::Layer) that rate-limits HTTP services
//! (axum, hyper, tonic) with [`ratecard`]: Clerk's limits from
//! [`ratecard::CLERK`], answered as every ratecard host answers.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::{net::SocketAddr, sync::Arc};
//! use axum::{routing::post, Router};
//! use ratecard::{Config, Limiter, Seed, CLERK};
//! use ratecard_tower::RateLimitLayer;
//!
//! let limiter = Arc::new(Limiter::new(&Config::DEFAULT, CLERK, Seed::random()?)?);
//! let app = Router::new()
//!     .route("/v1/client/sign_ins", post(|| async { "signed in" }))
//!     .layer(RateLimitLayer::frontend(limiter));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//! # Ok(()) }
//! ```
//!
//! # Modes
//!
//! - **Frontend** ([`RateLimitLayer::frontend`]): the subject is the client
//!   IP, the connection's peer address (see [`Builder::peer_ip`] for where
//!   it is read). `X-Forwarded-For` is believed only when the peer is one
//!   of [`Builder::trusted_proxies`]; the client is then the right-most
//!   address not in them (see [`client_ip`]).
//! - **Backend** ([`RateLimitLayer::backend`]): the subject is the secret
//!   key in `Authorization` (`Bearer sk_live_…`); the core's classifier
//!   takes user and organization ids from the path (`PATCH
//!   /v1/users/{user_id}` counts per user and against the instance). A
//!   request without a key is limited by client IP at the development
//!   limit.
//!
//! # Answers
//!
//! Every answer comes from [`ratecard::Decision::write_response`], as in
//! the other hosts:
//! - enforced denial: `429`, `Retry-After` (unless no wait can help),
//!   `RateLimit-Policy`, `RateLimit`, Clerk's JSON body with
//!   `Content-Type: application/json`; the inner service is not called;
//! - allowed (a dry-run denial too): the request goes on and
//!   `RateLimit-Policy` and `RateLimit` are added to the inner service's
//!   response;
//! - exempt (`GET /v1/jwks`) or unmatched: the request goes on untouched;
//! - no decision (a [`Decider`] error, say a sign-in without a client IP):
//!   [`ratecard::FAIL_CLOSED_STATUS`] (503) with an empty body, or the
//!   request goes on when [`Builder::fail_open`] is set.
//!
//! # Redis
//!
//! With the `redis` feature, [`Decider`] is implemented for
//! `ratecard_redis::RedisBackend`: every service on one Redis enforces
//! one limit. `RateLimitLayer::frontend(Arc::new(backend))`, as with a
//! local [`ratecard::Limiter`]. When Redis does not answer, the backend's
//! policy answers ([`Decider::fallback`]): fail closed as above, fail open,
//! or the local table's decision.
//!
//! # Time
//!
//! The default clock is [`monotonic_now`]: [`std::time::Instant`]
//! nanoseconds since a process-wide origin, so every layer of one process
//! shares one timeline. A table shared with other processes (memory laid
//! out by [`ratecard::Limiter::init_raw`], attached by nginx workers) needs
//! their clock, CLOCK_MONOTONIC: pass it with [`Builder::clock`].
#![deny(missing_docs)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod answer;
mod body;
mod client_ip;
mod decider;
mod layer;
mod metrics;
#[cfg(feature = "redis")]
mod redis;
mod service;

pub use body::ResponseBody;
pub use client_ip::{client_ip, Network, NetworkError};
pub use decider::{Check, Decider, Fallback};
pub use layer::{default_peer_ip, monotonic_now, Builder, RateLimitLayer, RequestHead};
pub use metrics::{MetricsService, TooManyZones};
#[cfg(feature = "redis")]
pub use redis::RedisCheck;
pub use service::{RateLimitService, ResponseFuture};
