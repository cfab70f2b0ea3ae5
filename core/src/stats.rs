//! What a table has counted, summed over its counter stripes.
//!
//! What a reader may rely on: every counter only grows between restarts
//! (it wraps at 2^64; another process's stray write to shared memory can
//! break this, and sums then wrap rather than fail), each decision is
//! counted exactly once (peeks are not counted), and at quiescence the
//! sums are exact. While decisions run, a sum may miss increments of
//! decisions still in flight, never more. `occupancy` is a scan of the
//! slots, not a counter: a moment's picture.

/// Counters summed over the stripes, and the table's occupancy.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Decisions allowed (charged), summed over the binding rules.
    pub allowed: u64,
    /// Decisions denied and enforced (a cost that never fits included).
    pub limited: u64,
    /// Decisions that would have been denied on a dry-run handle.
    pub dry_run_limited: u64,
    /// Requests exempt from every rule.
    pub exempt: u64,
    /// Requests that matched no rule.
    pub unmatched: u64,
    /// Requests refused with an error (a missing subject, say).
    pub errors: u64,
    /// Keys inserted.
    pub inserts: u64,
    /// Inserts that replaced a live key (fully replenished or not).
    pub evicted: u64,
    /// Inserts that replaced a key still in debt (each may let that key
    /// exceed its limit once).
    pub evicted_in_debt: u64,
    /// Inserts that found every candidate slot in debt and were refused
    /// (Deny policy) or admitted untracked (Admit policy).
    pub full: u64,
    /// Round trips to a remote store (Redis) that got a reply.
    pub remote_calls: u64,
    /// Round trips that failed (timeout, connection, a bad reply).
    pub remote_errors: u64,
    /// Decisions the host's policy answered because the remote store could
    /// not (fail open, fail closed, or the local table).
    pub remote_fallbacks: u64,
    /// Denials answered from the local cache of remote denials, with no
    /// round trip.
    pub remote_cached: u64,
    /// Slots holding a key now.
    pub occupancy: u64,
    /// Slots in the table.
    pub capacity: u64,
}

/// One rule's decisions, by the rule that bound them.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleStats {
    /// Allowed with this rule binding.
    pub allowed: u64,
    /// Denied (enforced) with this rule binding.
    pub limited: u64,
    /// Would have been denied on a dry-run handle.
    pub dry_run_limited: u64,
    /// Made exempt by this (unlimited) rule.
    pub exempt: u64,
}
