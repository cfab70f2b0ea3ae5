//! ratecard-rls: a rate limit service for Envoy's `envoy.filters.http.ratelimit`
//! filter (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`),
//! deciding with ratecard and Clerk's table: every rule a request matches is
//! charged, all or nothing, and a denial carries Clerk's 429 body.
//!
//! - [`descriptor`]: the request as it arrives and the protocol (which
//!   descriptor entries mean what, which requests are refused);
//! - [`backend`]: the [`Backend`](backend::Backend) trait between the gRPC
//!   layer and the place decisions are made;
//! - [`engine`]: the in-process backend;
//! - [`shared`]: the Redis backend, one limit for every replica;
//! - [`response`]: a decision as Envoy's `RateLimitResponse`;
//! - [`server`]: the gRPC service, the health service, graceful shutdown;
//! - [`config`]: flags and the settings file.

pub mod backend;
pub mod config;
pub mod descriptor;
pub mod engine;
pub mod response;
pub mod server;
pub mod shared;
