//! What ratecard's benchmarks share: the keys, the limiters under test and
//! the baselines they are measured against (the memory floor, governor, a
//! plain hash map), so the criterion harness and the `memory` binary
//! measure the same setups.
//!
//! - [`keys`]: deterministic distinct keys of three kinds (u64, IPv6,
//!   48-byte secret keys), as owned values for the peers and as bytes for
//!   ratecard;
//! - [`setup`]: the limiters under test and their requests;
//! - [`floor`]: one keyed hash plus one 16-byte read-modify-write;
//! - [`peers`]: governor in its default and best configurations, and a
//!   `std` hash map with a plain GCRA;
//! - [`serial`]: the fence that keeps latency-mode cache misses apart.

pub mod floor;
pub mod keys;
pub mod peers;
pub mod serial;
pub mod setup;
