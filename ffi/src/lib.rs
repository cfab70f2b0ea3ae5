//! The C ABI of [ratecard](ratecard_core): `libratecard.a`, `libratecard.so`
//! and `include/ratecard.h`, generated from this crate by cbindgen.
//!
//! Files split by concept:
//! - [`boundary`]: status codes, the one macro every export is wrapped in
//!   (panics caught, NULL pointers and lengths without pointers refused
//!   first), the checked pointer conversions, version and status text;
//! - [`limiter`]: configuration, custom rule tables, new / init / attach /
//!   free, counters and rule look-ups;
//! - [`request`]: requests and decisions: check, peek, the generic keyed
//!   check, reset;
//! - [`response`]: the response writers, IP parsing, the clock;
//! - [`metrics`]: counters in Prometheus' text format;
//! - [`remote`]: the Redis mode (one limit across hosts).
//!
//! Every export is `unsafe extern "C"` where it takes pointers: its contract
//! (pointers valid for their lengths, handles live) is the header's. The
//! header's preamble (`cbindgen.toml`) states the conventions and the ABI
//! evolution rules.
#![deny(missing_docs, unsafe_op_in_unsafe_fn)]
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
// C names: `ratecard_limiter`, `ratecard_status`, ...
#![allow(non_camel_case_types)]
// The pointer contract of every export is written once, for C readers, in
// the header and its preamble.
#![allow(clippy::missing_safety_doc)]

pub mod boundary;
pub mod limiter;
pub mod metrics;
pub mod remote;
pub mod request;
pub mod response;
pub mod version;

pub use boundary::*;
pub use limiter::*;
pub use metrics::*;
pub use remote::*;
pub use request::*;
pub use response::*;
pub use version::*;
