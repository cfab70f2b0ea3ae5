//! Request classification: method + path → every matching rule, with the
//! `{param}` captures that extend a rule's subject.
//!
//! CONTRACT (implementation pending):
//! - `classify` normalises the path without allocating: query string and
//!   fragment stripped, repeated slashes folded, a trailing slash ignored,
//!   `.` and `..` segments resolved (`..` above the root stays at the root),
//!   percent-encoded characters decoded for comparison (so `%76%31` is `v1`
//!   and `%2e%2e` is `..`).
//! - A path that cannot be made canonical (a bad escape such as `%G1` or a
//!   truncated `%4`, an encoded slash or backslash `%2F`/`%5C`, a raw
//!   backslash, NUL raw or encoded) is `canonical = false` and matches
//!   every non-exempt rule of the API and kind that has a route with a
//!   matching method, with no captures.
//! - Methods compare case-insensitively.
//! - If a matching rule is unlimited, `exempt` is its index (the first one).

use crate::rule::{Api, InstanceKind, RuleTable, MAX_CAPTURES, MAX_RULES};

/// One matched rule and the raw bytes of its captured segments.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Match<'p> {
    /// Index of the rule in its table.
    pub rule: u8,
    /// Number of captures used.
    pub ncaptures: u8,
    /// The captured segments as they appear in the path (percent escapes
    /// not yet decoded: see [`decoded`]).
    pub captures: [&'p [u8]; MAX_CAPTURES],
}

/// Every rule a request matches.
#[derive(Clone, Debug, Default)]
pub struct Classification<'p> {
    /// The matched rules, in table order.
    pub matches: heapless::Vec<Match<'p>, MAX_RULES>,
    /// An unlimited rule that matched: the request is exempt.
    pub exempt: Option<u8>,
    /// Whether the path could be made canonical.
    pub canonical: bool,
}

/// Classify a request.
pub fn classify<'p>(
    table: &RuleTable<'_>,
    api: Api,
    kind: InstanceKind,
    method: &[u8],
    path: &'p [u8],
) -> Classification<'p> {
    let _ = (table, api, kind, method, path);
    Classification::default()
}

/// The bytes of a captured segment with its percent escapes decoded.
pub fn decoded(raw: &[u8]) -> impl Iterator<Item = u8> + '_ {
    raw.iter().copied()
}
