//! Request classification: method + path → every matching rule, with the
//! `{param}` captures that extend a rule's subject. One normaliser
//! ([`path`]) and one matcher (this module), with the path that cannot be
//! made canonical as the matcher's slow branch.
//!
//! The routes of a rule table are compiled once, when a limiter is made:
//! each route is an entry, the literal segments of all routes share one
//! pool of heads (first eight bytes) and lengths. Which entries can match a
//! request is mostly known before its path is compared: bit `i` of
//! `by_count[api][n]` is set when entry `i` belongs to `api` and can match
//! a path of `n` segments, of `by_method[m]` when its method matches `m`,
//! of `by_kind[k]` when its rule applies to instances of kind `k`, and of
//! `by_last[bucket]` unless the entry ends in a literal of another bucket.
//! The candidates are the intersection, visited in table order; each is
//! confirmed by comparing its literals' heads and lengths with the path's.
//!
//! Semantics:
//! - A rule matches when its API is the request's, its kind is `None` or
//!   the request's, and one of its routes matches the method (ignoring
//!   ASCII case) and the normalised path. The captures recorded are those of
//!   the rule's first matching route.
//! - Pattern syntax (see [`crate::Route`]): `{name}` captures one segment, a
//!   final `*` segment matches any remaining segments or none, the pattern
//!   `*` matches every path, any other segment is literal and compared with
//!   the decoded path segment (a literal `%` in a pattern matches only
//!   `%25`); empty pattern segments are ignored, like empty path segments.
//! - Literal comparison is case-sensitive unless the router folds ASCII
//!   case (`Config::fold_case`); captured ids keep their bytes either way.
//! - A path with a format suffix on its last segment (`sign_ins.json`)
//!   matches the limited rules its stem matches, too, with the stem's
//!   captures (so rotating suffixes cannot open new per-id buckets); it is
//!   exempt only if its exact path is.
//! - A path that cannot be made canonical matches every limited rule of
//!   the API and kind that has a route for its method, with no captures,
//!   and is never exempt.
//! - If a matching rule is unlimited, the request is exempt.

pub mod path;
mod scan;

use crate::rule::{Api, InstanceKind, Method, RuleTable, MAX_CAPTURES, MAX_RULES};
pub use path::{decoded, normalize, NotCanonical, Segments, MAX_SEGMENTS};

/// The most routes, over all rules, a table may have (candidate sets are
/// `u64` bit masks).
pub const MAX_ROUTES: usize = 64;
/// The most literal segments, over all routes, a table may have.
pub const MAX_LITERALS: usize = 128;
const METHODS: usize = Method::Other as usize + 1;
const LAST_BUCKETS: usize = 64;
/// `by_count` index for paths deeper than [`MAX_SEGMENTS`].
const DEEP: usize = MAX_SEGMENTS + 1;

const _: () = assert!(MAX_ROUTES <= 64 && MAX_LITERALS <= 256 && MAX_SEGMENTS <= 8);

/// One matched rule and the raw bytes of its captured segments.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Match<'p> {
    /// Index of the rule in its table.
    pub rule: u8,
    /// Number of captures used.
    pub ncaptures: u8,
    /// The captured segments as they appear in the path.
    pub captures: [&'p [u8]; MAX_CAPTURES],
    /// Some capture holds percent escapes: decode with [`decoded`].
    pub encoded: bool,
}

/// What [`Router::classify_with`] found, besides the matches it handed over.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// How many rules matched.
    pub matched: u8,
    /// An unlimited rule that matched: the request is exempt.
    pub exempt: Option<u8>,
    /// Whether the path could be made canonical.
    pub canonical: bool,
}

/// One compiled route.
#[derive(Copy, Clone, Debug)]
struct Entry {
    /// Its literal segments are `lit..lit + nlits` in the pool.
    lit: u8,
    nlits: u8,
    /// Segment indices of its `{param}` captures.
    caps: [u8; MAX_CAPTURES],
    ncaps: u8,
    rule: u8,
    /// Index of the route in its rule (to find the pattern again).
    route: u8,
    /// The rule's quota is unlimited: a match makes the request exempt.
    unlimited: bool,
}

const EMPTY: Entry = Entry {
    lit: 0,
    nlits: 0,
    caps: [0; MAX_CAPTURES],
    ncaps: 0,
    rule: 0,
    route: 0,
    unlimited: false,
};

/// One literal pattern segment besides its head: its length, its index
/// among the pattern's segments and its offset in the pattern.
#[derive(Copy, Clone, Debug)]
struct Lit {
    len: u32,
    off: u32,
    index: u8,
}

const NO_LIT: Lit = Lit {
    len: 0,
    off: 0,
    index: 0,
};

/// A rule table's routes, compiled for classification.
#[derive(Clone, Debug)]
pub struct Router<'a> {
    table: RuleTable<'a>,
    entries: [Entry; MAX_ROUTES],
    heads: [u64; MAX_LITERALS],
    lits: [Lit; MAX_LITERALS],
    by_count: [[u64; DEEP + 1]; 2],
    by_method: [u64; METHODS],
    by_kind: [u64; 2],
    by_last: [u64; LAST_BUCKETS],
    by_api: [u64; 2],
    /// Entries of limited rules.
    limited: u64,
    fold: bool,
}

/// Why a table's routes do not compile (checked by [`RuleTable::validate`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CompileError {
    /// A pattern is malformed or deeper than [`MAX_SEGMENTS`] segments.
    Pattern,
    /// More than [`MAX_ROUTES`] routes or [`MAX_LITERALS`] literal segments.
    TooLarge,
}

impl<'a> Router<'a> {
    /// Compile `table`'s routes; `fold`: compare literal segments ignoring
    /// ASCII case. A table that [`RuleTable::validate`] accepts compiles.
    #[allow(
        clippy::arithmetic_side_effects,
        clippy::indexing_slicing,
        reason = "n < MAX_ROUTES and nlits ≤ MAX_LITERALS, checked on the way; a, k are 0 or 1"
    )]
    pub fn new(table: RuleTable<'a>, fold: bool) -> Result<Router<'a>, CompileError> {
        let mut r = Router {
            table,
            entries: [EMPTY; MAX_ROUTES],
            heads: [0; MAX_LITERALS],
            lits: [NO_LIT; MAX_LITERALS],
            by_count: [[0; DEEP + 1]; 2],
            by_method: [0; METHODS],
            by_kind: [0; 2],
            by_last: [0; LAST_BUCKETS],
            by_api: [0; 2],
            limited: 0,
            fold,
        };
        let (mut n, mut nlits) = (0usize, 0usize);
        for (a, api) in [Api::Frontend, Api::Backend].into_iter().enumerate() {
            for (i, rule) in table.rules().iter().enumerate().take(MAX_RULES) {
                if rule.api != api {
                    continue;
                }
                for (ri, route) in rule.routes.iter().enumerate() {
                    let c = compile(route.path.as_bytes(), fold).ok_or(CompileError::Pattern)?;
                    let entry = r.entries.get_mut(n).ok_or(CompileError::TooLarge)?;
                    let pool = nlits..nlits + c.nlits;
                    let (Some(heads), Some(lits)) =
                        (r.heads.get_mut(pool.clone()), r.lits.get_mut(pool))
                    else {
                        return Err(CompileError::TooLarge);
                    };
                    for ((h, l), &(head, lit)) in heads.iter_mut().zip(lits).zip(&c.lits) {
                        *h = head;
                        *l = lit;
                    }
                    *entry = Entry {
                        lit: nlits as u8,
                        nlits: c.nlits as u8,
                        caps: c.caps,
                        ncaps: c.ncaps,
                        rule: i as u8,
                        route: u8::try_from(ri).map_err(|_| CompileError::TooLarge)?,
                        unlimited: rule.quota.is_unlimited(),
                    };
                    nlits += c.nlits;
                    let bit = 1u64 << n;
                    r.by_api[a] |= bit;
                    if !rule.quota.is_unlimited() {
                        r.limited |= bit;
                    }
                    let nsegs = c.nsegs as usize;
                    for (count, mask) in r.by_count[a].iter_mut().enumerate() {
                        let fits = if count == DEEP {
                            c.every || c.rest
                        } else {
                            c.every || count == nsegs || (c.rest && count >= nsegs)
                        };
                        if fits {
                            *mask |= bit;
                        }
                    }
                    for (m, mask) in r.by_method.iter_mut().enumerate() {
                        if route.method.matches(method_of(m)) {
                            *mask |= bit;
                        }
                    }
                    for (k, kind) in [InstanceKind::Production, InstanceKind::Development]
                        .into_iter()
                        .enumerate()
                    {
                        if rule.kind.is_none_or(|rk| rk == kind) {
                            r.by_kind[k] |= bit;
                        }
                    }
                    match c.last_lit() {
                        Some((head, lit)) => {
                            if let Some(mask) = r.by_last.get_mut(last_bucket(head, lit.len)) {
                                *mask |= bit;
                            }
                        }
                        None => r.by_last.iter_mut().for_each(|m| *m |= bit),
                    }
                    n += 1;
                }
            }
        }
        Ok(r)
    }

    /// The rule table.
    pub fn table(&self) -> &RuleTable<'a> {
        &self.table
    }

    /// Classify a request, handing each matched rule to `f` in table order,
    /// with whether its quota is unlimited.
    #[inline]
    #[allow(
        clippy::arithmetic_side_effects,
        clippy::indexing_slicing,
        reason = "method index clamped below METHODS; api and kind indices are 0 or 1; at most MAX_RULES matches"
    )]
    pub fn classify_with<'p>(
        &self,
        api: Api,
        kind: InstanceKind,
        method: &[u8],
        path: &'p [u8],
        mut f: impl FnMut(Match<'p>, bool),
    ) -> Summary {
        let method = Method::parse(method);
        let base = self.by_api[api_index(api)]
            & self.by_method[(method as usize).min(METHODS - 1)]
            & self.by_kind[kind as usize & 1];
        let mut segs = Segments::new(path);
        if segs.parse_into(path, self.fold).is_err() {
            return self.non_canonical(base, f);
        }
        if segs.has_suffix() {
            return self.with_suffix(api, base, &segs, f);
        }
        let mut summary = Summary {
            matched: 0,
            exempt: None,
            canonical: true,
        };
        self.each_match(self.candidates(api, base, &segs), &segs, |m, unlimited| {
            summary.matched += 1;
            if unlimited && summary.exempt.is_none() {
                summary.exempt = Some(m.rule);
            }
            f(m, unlimited);
        });
        summary
    }

    /// Every matched rule of a request, for tests, fuzzing and tools (a
    /// few kilobytes: the hot path uses [`Router::classify_with`]).
    pub fn classify<'p>(
        &self,
        api: Api,
        kind: InstanceKind,
        method: &[u8],
        path: &'p [u8],
    ) -> (Summary, heapless::Vec<Match<'p>, MAX_RULES>) {
        let mut out = heapless::Vec::new();
        let summary = self.classify_with(api, kind, method, path, |m, _| {
            // At most one match per rule, and at most MAX_RULES rules.
            let _ = out.push(m);
        });
        (summary, out)
    }

    /// The entries that may match `segs`, among `base`.
    #[inline(always)]
    #[allow(
        clippy::arithmetic_side_effects,
        clippy::indexing_slicing,
        reason = "count ≤ DEEP and api index ≤ 1 index arrays of DEEP + 1 and 2; buckets are below LAST_BUCKETS"
    )]
    fn candidates(&self, api: Api, base: u64, segs: &Segments<'_>) -> u64 {
        let count = if segs.n > MAX_SEGMENTS { DEEP } else { segs.n };
        let mut c = base & self.by_count[api_index(api)][count];
        if let Some(last) = segs.n.checked_sub(1).filter(|&l| l < MAX_SEGMENTS) {
            if let (Some(&h), Some(&l)) = (segs.heads.get(last), segs.lens.get(last)) {
                c &= self.by_last[last_bucket(h, l)];
            }
        }
        c
    }

    /// Hand `f` the first matching entry of each rule among `candidates`.
    #[inline(always)]
    #[allow(
        clippy::arithmetic_side_effects,
        reason = "candidates ≠ 0 where decremented"
    )]
    fn each_match<'p>(
        &self,
        mut candidates: u64,
        segs: &Segments<'p>,
        mut f: impl FnMut(Match<'p>, bool),
    ) {
        let mut last_rule = u16::MAX;
        while candidates != 0 {
            let i = candidates.trailing_zeros() as usize;
            candidates &= candidates - 1;
            let Some(e) = self.entries.get(i) else {
                break;
            };
            if e.rule as u16 == last_rule || !self.lits_match(e, segs) {
                continue;
            }
            let mut m = Match {
                rule: e.rule,
                ncaptures: 0,
                captures: [&[]; MAX_CAPTURES],
                encoded: false,
            };
            let ncaps = (e.ncaps as usize).min(MAX_CAPTURES);
            for (c, &index) in m.captures.iter_mut().zip(&e.caps).take(ncaps) {
                let (raw, encoded) = segs.raw(index as usize);
                *c = raw;
                m.encoded |= encoded;
            }
            m.ncaptures = ncaps as u8;
            last_rule = e.rule as u16;
            f(m, e.unlimited);
        }
    }

    /// Whether the literals of entry `e` equal the path's segments.
    #[inline(always)]
    #[allow(
        clippy::arithmetic_side_effects,
        reason = "lit + nlits ≤ MAX_LITERALS, checked when compiled"
    )]
    fn lits_match(&self, e: &Entry, segs: &Segments<'_>) -> bool {
        let (start, end) = (e.lit as usize, e.lit as usize + e.nlits as usize);
        let (Some(heads), Some(lits)) = (self.heads.get(start..end), self.lits.get(start..end))
        else {
            return false;
        };
        for (&head, lit) in heads.iter().zip(lits) {
            let i = lit.index as usize;
            let (Some(&h), Some(&l)) = (segs.heads.get(i), segs.lens.get(i)) else {
                return false;
            };
            if head != h || lit.len != l || (lit.len > 8 && !self.tail_eq(e, lit, segs)) {
                return false;
            }
        }
        true
    }

    /// Whether bytes 8.. of a literal longer than eight equal the path's.
    #[cold]
    fn tail_eq(&self, e: &Entry, lit: &Lit, segs: &Segments<'_>) -> bool {
        let pattern = self
            .table
            .get(e.rule as usize)
            .and_then(|rule| rule.routes.get(e.route as usize))
            .map_or(&[][..], |route| route.path.as_bytes());
        let (off, len) = (lit.off as usize, lit.len as usize);
        match pattern.get(off..off.saturating_add(len)) {
            Some(literal) => segs.tail_eq(lit.index as usize, literal, 8, self.fold),
            None => false,
        }
    }

    /// A path that cannot be made canonical: every limited rule with a
    /// route for the method, without captures.
    #[cold]
    #[inline(never)]
    #[allow(
        clippy::arithmetic_side_effects,
        reason = "candidates ≠ 0 where decremented; at most MAX_RULES matches"
    )]
    fn non_canonical<'p>(&self, base: u64, mut f: impl FnMut(Match<'p>, bool)) -> Summary {
        let mut summary = Summary {
            matched: 0,
            exempt: None,
            canonical: false,
        };
        let mut candidates = base & self.limited;
        let mut last_rule = u16::MAX;
        while candidates != 0 {
            let i = candidates.trailing_zeros() as usize;
            candidates &= candidates - 1;
            let Some(e) = self.entries.get(i) else {
                break;
            };
            if e.rule as u16 == last_rule {
                continue;
            }
            last_rule = e.rule as u16;
            summary.matched += 1;
            f(
                Match {
                    rule: e.rule,
                    ncaptures: 0,
                    captures: [&[]; MAX_CAPTURES],
                    encoded: false,
                },
                false,
            );
        }
        summary
    }

    /// A path whose last segment has a format suffix: the exact path's
    /// matches, and the stem's for limited rules (preferred: its captures
    /// are what a suffix-stripping framework routes on), in table order.
    #[cold]
    #[inline(never)]
    #[allow(clippy::arithmetic_side_effects, reason = "at most MAX_RULES matches")]
    fn with_suffix<'p>(
        &self,
        api: Api,
        base: u64,
        segs: &Segments<'p>,
        mut f: impl FnMut(Match<'p>, bool),
    ) -> Summary {
        let mut exact: heapless::Vec<(Match<'p>, bool), MAX_RULES> = heapless::Vec::new();
        let mut stem: heapless::Vec<Match<'p>, MAX_RULES> = heapless::Vec::new();
        self.each_match(self.candidates(api, base, segs), segs, |m, u| {
            let _ = exact.push((m, u));
        });
        if let Some(stemmed) = segs.stemmed(self.fold) {
            let c = self.candidates(api, base & self.limited, &stemmed);
            self.each_match(c, &stemmed, |m, _| {
                let _ = stem.push(m);
            });
        }
        let mut summary = Summary {
            matched: 0,
            exempt: exact.iter().find(|(_, u)| *u).map(|(m, _)| m.rule),
            canonical: true,
        };
        let (mut a, mut b) = (exact.iter().peekable(), stem.iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some(&&(ma, ua)), Some(&&mb)) => {
                    if ma.rule < mb.rule {
                        a.next();
                        (ma, ua)
                    } else {
                        if ma.rule == mb.rule {
                            a.next();
                        }
                        b.next();
                        (mb, false)
                    }
                }
                (Some(&&(ma, ua)), None) => {
                    a.next();
                    (ma, ua)
                }
                (None, Some(&&mb)) => {
                    b.next();
                    (mb, false)
                }
            };
            summary.matched += 1;
            f(next.0, next.1);
        }
        summary
    }
}

fn api_index(api: Api) -> usize {
    match api {
        Api::Frontend => 0,
        Api::Backend => 1,
    }
}

/// The method with discriminant `m` (`Other` past the end).
fn method_of(m: usize) -> Method {
    match m {
        0 => Method::Any,
        1 => Method::Get,
        2 => Method::Head,
        3 => Method::Post,
        4 => Method::Put,
        5 => Method::Patch,
        6 => Method::Delete,
        7 => Method::Options,
        _ => Method::Other,
    }
}

/// The bucket of a last segment of head `head` and length `len`.
#[inline(always)]
fn last_bucket(head: u64, len: u32) -> usize {
    ((head ^ len as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize % LAST_BUCKETS
}

/// A pattern, compiled: its literal segments (head and the rest, in
/// pattern order) and captures.
struct Compiled {
    lits: [(u64, Lit); MAX_SEGMENTS],
    nlits: usize,
    caps: [u8; MAX_CAPTURES],
    ncaps: u8,
    nsegs: u8,
    /// `*` alone: every path.
    every: bool,
    /// A final `/*`: any remaining segments, or none.
    rest: bool,
}

impl Compiled {
    /// The literal a path must end in to match, if there is one.
    #[allow(
        clippy::arithmetic_side_effects,
        reason = "an index below MAX_SEGMENTS"
    )]
    fn last_lit(&self) -> Option<(u64, Lit)> {
        if self.every || self.rest || self.nsegs == 0 {
            return None;
        }
        let &last = self.lits.get(..self.nlits)?.last()?;
        (last.1.index as usize + 1 == self.nsegs as usize).then_some(last)
    }
}

/// Compile a pattern; `None` if it is malformed or too deep.
#[allow(
    clippy::arithmetic_side_effects,
    reason = "counts below MAX_SEGMENTS and MAX_CAPTURES, checked on the way"
)]
fn compile(p: &[u8], fold: bool) -> Option<Compiled> {
    let mut c = Compiled {
        lits: [(0, NO_LIT); MAX_SEGMENTS],
        nlits: 0,
        caps: [0; MAX_CAPTURES],
        ncaps: 0,
        nsegs: 0,
        every: false,
        rest: false,
    };
    if p == b"*" {
        c.every = true;
        return Some(c);
    }
    if p.first() != Some(&b'/') || p.len() > u32::MAX as usize {
        return None;
    }
    let mut start = 0usize;
    let mut pieces = p.split(|&b| b == b'/').peekable();
    while let Some(seg) = pieces.next() {
        let at = start;
        start = start.saturating_add(seg.len()).saturating_add(1);
        if seg.is_empty() {
            continue;
        }
        let last = pieces.clone().all(<[u8]>::is_empty);
        if seg == b"*" && last {
            c.rest = true;
            break;
        }
        let n = c.nsegs as usize;
        if n == MAX_SEGMENTS {
            return None;
        }
        if seg.len() >= 2 && seg.first() == Some(&b'{') && seg.last() == Some(&b'}') {
            let slot = c.caps.get_mut(c.ncaps as usize)?;
            *slot = n as u8;
            c.ncaps += 1;
        } else {
            let head = scan::head(seg);
            let lit = Lit {
                len: seg.len() as u32,
                off: at as u32,
                index: n as u8,
            };
            *c.lits.get_mut(c.nlits)? = (if fold { scan::lowercase(head) } else { head }, lit);
            c.nlits += 1;
        }
        c.nsegs += 1;
    }
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::Quota;
    use crate::rule::{Route, Rule, Scope};
    use crate::CLERK;

    const ROUTES: &[Route<'static>] = &[
        Route::new(Method::Get, "/a/{x}/b/{y}"),
        Route::new(Method::Post, "/pre/*"),
        Route::new(Method::Put, "//lit%/"),
        Route::new(Method::Delete, "/a/*/c"),
        Route::new(Method::Patch, "/Abcdefghijkl/x"),
    ];
    const RULES: &[Rule<'static>] = &[
        Rule::new(
            "t.r",
            Api::Backend,
            Scope::Instance,
            ROUTES,
            Quota::per_secs(1, 1),
        ),
        Rule::new(
            "t.free",
            Api::Backend,
            Scope::Instance,
            &[Route::new(Method::Get, "/free")],
            Quota::unlimited(),
        ),
    ];
    const TABLE: RuleTable<'static> = RuleTable::new(RULES);

    fn rules_of(fold: bool, method: &[u8], path: &[u8]) -> std::vec::Vec<u8> {
        let r = Router::new(TABLE, fold).unwrap();
        let (_, m) = r.classify(Api::Backend, InstanceKind::Development, method, path);
        m.iter().map(|m| m.rule).collect()
    }

    #[test]
    fn patterns_capture_prefix_match_and_compare_decoded_literals() {
        let r = Router::new(TABLE, false).unwrap();
        let (_, m) = r.classify(
            Api::Backend,
            InstanceKind::Development,
            b"GET",
            b"/a/1/b/%32",
        );
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].ncaptures, 2);
        assert_eq!(m[0].captures, [&b"1"[..], &b"%32"[..]]);
        assert!(m[0].encoded);
        assert_eq!(rules_of(false, b"GET", b"/a/1/b"), []);
        assert_eq!(rules_of(false, b"GET", b"/a/1/b/2/3"), []);
        assert_eq!(rules_of(false, b"POST", b"/pre"), [0]);
        assert_eq!(rules_of(false, b"POST", b"/pre/x/y"), [0]);
        assert_eq!(rules_of(false, b"POST", b"/prefix"), []);
        assert_eq!(rules_of(false, b"PUT", b"/lit%25"), [0]);
        assert_eq!(rules_of(false, b"PUT", b"/lit"), []);
        assert_eq!(
            rules_of(false, b"DELETE", b"/a/*/c"),
            [0],
            "a `*` not last is literal"
        );
        assert_eq!(rules_of(false, b"DELETE", b"/a/b/c"), []);
        assert_eq!(rules_of(false, b"PATCH", b"/Abcdefghijkl/x"), [0]);
        assert_eq!(
            rules_of(false, b"PATCH", b"/Abcdefghijkm/x"),
            [],
            "past the head"
        );
        let (s, _) = r.classify(Api::Backend, InstanceKind::Development, b"get", b"/free/");
        assert_eq!(s.exempt, Some(1));
        let (s, m) = r.classify(Api::Frontend, InstanceKind::Development, b"GET", b"/free");
        assert!(m.is_empty() && s.exempt.is_none(), "another API");
    }

    #[test]
    fn case_folding_is_opt_in_and_only_for_literals() {
        assert_eq!(rules_of(false, b"PATCH", b"/abcdefghijkl/X"), []);
        assert_eq!(rules_of(true, b"PATCH", b"/abcdefghijKL/X"), [0]);
        let r = Router::new(TABLE, true).unwrap();
        let (_, m) = r.classify(
            Api::Backend,
            InstanceKind::Development,
            b"GET",
            b"/A/Id/B/y",
        );
        assert_eq!(m[0].captures[0], b"Id", "captured ids keep their case");
    }

    #[test]
    fn paths_deeper_than_the_kept_depth_only_match_trailing_wildcards() {
        assert_eq!(rules_of(false, b"POST", b"/pre/1/2/3/4/5/6/7/8/9/10"), [0]);
        assert_eq!(rules_of(false, b"GET", b"/a/1/b/2/3/4/5/6/7/8/9"), []);
        let back = b"/a/1/b/2/x/x/x/x/x/x/x/x/../../../../../../../..";
        assert_eq!(rules_of(false, b"GET", &back[..]), [0]);
    }

    #[test]
    fn a_path_without_canonical_form_is_charged_to_every_limited_rule_of_its_method() {
        let r = Router::new(TABLE, false).unwrap();
        for p in [&b"/free%2f"[..], b"/free;x", b"/a\\b"] {
            let (s, m) = r.classify(Api::Backend, InstanceKind::Development, b"GET", p);
            assert!(!s.canonical);
            assert_eq!(s.exempt, None, "never exempt");
            assert_eq!(m.iter().map(|m| m.rule).collect::<std::vec::Vec<_>>(), [0]);
        }
    }

    #[test]
    fn a_format_suffix_matches_the_stems_limited_rules_but_never_exempts() {
        assert_eq!(rules_of(false, b"POST", b"/pre.json"), [0]);
        assert_eq!(rules_of(false, b"GET", b"/free.json"), []);
        let r = Router::new(TABLE, false).unwrap();
        let (s, m) = r.classify(
            Api::Backend,
            InstanceKind::Development,
            b"GET",
            b"/a/1/b/u_1.xml",
        );
        assert_eq!(s.matched, 1);
        assert_eq!(m[0].captures[1], b"u_1", "the stem's capture");
    }

    #[test]
    fn every_clerk_route_compiles_and_the_router_stays_small() {
        assert!(Router::new(CLERK, false).is_ok());
        assert!(core::mem::size_of::<Router<'static>>() <= 4 * 1024);
    }

    #[test]
    fn malformed_or_oversized_tables_do_not_compile() {
        let deep = [Route::new(Method::Get, "/1/2/3/4/5/6/7/8/9")];
        let rules = [Rule::new(
            "d",
            Api::Backend,
            Scope::Instance,
            &deep,
            Quota::per_secs(1, 1),
        )];
        assert_eq!(
            Router::new(RuleTable::new(&rules), false).err(),
            Some(CompileError::Pattern)
        );
        let many = [Route::new(Method::Get, "/x"); MAX_ROUTES + 1];
        let rules = [Rule::new(
            "m",
            Api::Backend,
            Scope::Instance,
            &many,
            Quota::per_secs(1, 1),
        )];
        assert_eq!(
            Router::new(RuleTable::new(&rules), false).err(),
            Some(CompileError::TooLarge)
        );
    }
}
