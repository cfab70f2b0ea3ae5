//! A limiter's configuration: what every process sharing one table records
//! in its header (and so decides alike), and what each handle may set for
//! itself.

use crate::quota::Algorithm;
use crate::rule::InstanceKind;

/// What a handle does when both of a new key's buckets hold only keys still
/// in debt.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Policy {
    /// Evict the candidate using the smallest fraction of its burst (counted).
    Evict = 0,
    /// Deny the new key until a candidate is replenished (fail closed).
    Deny = 1,
    /// Admit the new key without tracking it (fail open).
    Admit = 2,
}

impl Policy {
    /// The policy for a C-side value.
    pub const fn from_u8(v: u8) -> Option<Policy> {
        match v {
            0 => Some(Policy::Evict),
            1 => Some(Policy::Deny),
            2 => Some(Policy::Admit),
            _ => None,
        }
    }
}

/// A limiter's configuration. All but `dry_run` is recorded in the table's
/// header, so every process attached to one table decides alike.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Slots in the table (rounded up; see [`crate::Limiter::bytes_for`]).
    pub capacity: u32,
    /// IPv6 clients are keyed on this many leading bits (0..=128).
    pub ipv6_prefix: u8,
    /// Instance kind of a secret key with an unknown prefix.
    pub unknown_kind: InstanceKind,
    /// Pace mode: burst 1 on every GCRA rule, so at most `limit` requests in
    /// any window of `period`, whatever the far side runs.
    pub pace: bool,
    /// Enforce every rule with this algorithm instead of its own.
    pub algorithm: Option<Algorithm>,
    /// What to do when a new key finds only keys in debt.
    pub policy: Policy,
    /// Compare the literal segments of route patterns ignoring ASCII case,
    /// for upstreams that route case-insensitively (`/V1/Client/SIGN_INS`);
    /// captured ids keep their case.
    pub fold_case: bool,
    /// Never deny: report would-be denials (per handle, not recorded).
    pub dry_run: bool,
}

impl Config {
    /// The defaults: 65 536 slots, IPv6 /64, unknown keys are development
    /// instances, no pace mode, each rule's own algorithm, evict,
    /// case-sensitive literals, enforce.
    pub const DEFAULT: Config = Config {
        capacity: 1 << 16,
        ipv6_prefix: 64,
        unknown_kind: InstanceKind::Development,
        pace: false,
        algorithm: None,
        policy: Policy::Evict,
        fold_case: false,
        dry_run: false,
    };
}

impl Default for Config {
    fn default() -> Config {
        Config::DEFAULT
    }
}

/// Per-handle options for [`crate::Limiter::attach`]: these may differ
/// between processes sharing one table.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct HandleOptions {
    /// Never deny on this handle.
    pub dry_run: bool,
    /// Override the recorded policy on this handle.
    pub policy: Option<Policy>,
}
