//! ratecard: an embeddable rate-limit engine.
//!
//! `#![no_std]`, no allocation, no clock: the caller passes monotonic
//! nanoseconds. A fixed-capacity keyed state table, shared by threads and
//! processes through 128-bit compare-and-swap, enforces GCRA or fixed-window
//! quotas. [`CLERK`] is Clerk's documented rate-limit table as data.
#![no_std]
#![deny(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod clerk;
pub mod decision;
pub mod error;
pub mod gcra;
pub mod hash;
pub mod limiter;
pub mod quota;
pub mod remote;
pub mod route;
pub mod router;
pub mod rule;
pub mod table;
pub mod time;
pub mod window;

pub use clerk::CLERK;
pub use decision::{Decision, CLERK_429_BODY, NO_RULE};
pub use error::Error;
pub use hash::Seed;
pub use limiter::{Config, HandleOptions, Limiter, Policy, Request, StaticLimiter, Stats};
pub use quota::{Algorithm, Outcome, Quota};
pub use rule::{Api, InstanceKind, Method, Route, Rule, RuleTable, Scope};
pub use time::Nanos;

/// The README's Rust example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
