//! ratecard: an embeddable rate-limit engine.
//!
//! `#![no_std]`, no allocation, no clock: the caller passes monotonic
//! nanoseconds. A fixed-capacity keyed state table, shared by threads and
//! processes through 128-bit compare-and-swap, enforces GCRA or fixed-window
//! quotas. [`CLERK`] is Clerk's documented rate-limit table as data.
//!
//! ```
//! # #[cfg(feature = "alloc")] {
//! use ratecard::{Api, Config, Limiter, Nanos, Request, Seed, Verdict, CLERK};
//!
//! let seed = Seed::from_bytes([7; 16]); // use 16 random bytes (Seed::random with `std`)
//! let limiter = Limiter::new(&Config::DEFAULT, CLERK, seed).unwrap();
//! let sign_in = Request::new(Api::Frontend, b"POST", b"/v1/client/sign_ins").ip([203, 0, 113, 9]);
//! let now = Nanos::from_secs(1_000); // CLOCK_MONOTONIC in a real program
//! for _ in 0..5 {
//!     assert!(limiter.check(&sign_in, now).unwrap().allowed());
//! }
//! let denied = limiter.check(&sign_in, now).unwrap();
//! assert_eq!(denied.verdict, Verdict::Limited { retry_after: Nanos::from_secs(2) });
//! assert_eq!(denied.retry_after_secs(), Some(2)); // 5 per 10 s: one every 2 s
//! # }
//! ```
//!
//! Features: `alloc` gives `Limiter::new`, a table in memory it owns;
//! `std` (with `alloc`) adds `Seed::random` and, on Linux, huge pages for
//! owned tables of 2 MiB or more. Without them the crate needs
//! neither: the table goes into caller memory ([`Limiter::init`], a shared
//! mapping for several processes) or a `static` ([`StaticLimiter`]).
//!
//! Modules hidden from the docs are the engine's internals, public only
//! for the crate's own fuzzing, benchmarks and protocol tests: no promise
//! of stability.
#![no_std]
#![deny(missing_docs)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::undocumented_unsafe_blocks
)]
// Tests may index, unwrap and panic: a failed test is the point.
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

mod charge;
mod clerk;
mod config;
mod decision;
mod distributed;
mod error;
#[doc(hidden)]
pub mod gcra;
#[doc(hidden)]
pub mod hash;
mod limiter;
pub mod metrics;
mod params;
mod quota;
pub mod remote;
mod request;
#[doc(hidden)]
pub mod route;
mod rule;
mod stats;
mod subject;
#[doc(hidden)]
pub mod table;
mod time;
#[doc(hidden)]
pub mod window;

pub use clerk::CLERK;
pub use config::{Config, HandleOptions, Policy};
pub use decision::{
    reset_secs, write_429_body, Decision, Response, RuleId, RuleSet, Verdict, CLERK_429_BODY,
    FAIL_CLOSED_STATUS, LIMITED_STATUS,
};
pub use distributed::{Pending, Prepared, PENDING_BYTES};
pub use error::{CheckError, SetupError};
pub use hash::Seed;
pub use limiter::{Limiter, StaticLimiter};
pub use quota::{Algorithm, Outcome, Quota};
pub use request::Request;
pub use rule::{Api, InstanceKind, Method, Route, Rule, RuleTable, Scope, TableError, MAX_RULES};
pub use stats::{RuleStats, Stats};
pub use subject::{key_kind, strip_bearer, ClientKey};
pub use time::{Nanos, NANOS_PER_SEC};

/// The README's Rust example, compiled and run as a doctest.
#[cfg(all(doctest, feature = "alloc"))]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
