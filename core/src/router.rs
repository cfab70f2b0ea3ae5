//! A rule table's routes compiled once, when a limiter is made, so the hot
//! path matches a request without re-reading pattern strings.
//!
//! [`Router::classify_with`] gives exactly the answers of
//! [`route::classify_with`] (a property test
//! pins this down). It handles the common case itself: a path already in
//! canonical form (no escape, NUL, backslash, `.` or `..` segment, at most
//! [`MAX_SEGMENTS`] segments, at most [`MAX_PATH`] bytes; empty segments,
//! a query and a fragment are fine) on a table whose patterns all compile.
//! Everything else goes to the general classifier.
//!
//! The compiled form is small (a few KB), so a limiter fits on an embedded
//! stack: routes are 8-byte entries, and the literal segments of all routes
//! share one pool of heads (their first eight bytes) and byte-sized lengths,
//! indices and offsets.

use crate::route::{self, Match, Summary};
use crate::rule::{Api, InstanceKind, Method, RuleTable, MAX_CAPTURES};

/// The most routes a compiled table holds; larger tables use the general
/// classifier. At most 64: candidate sets are `u64` bit masks.
pub const MAX_ROUTES: usize = 64;
/// The most literal segments, over all routes, a compiled table holds.
pub const MAX_LITERALS: usize = 128;
/// The most segments a compiled pattern or a fast-path request path has.
pub const MAX_SEGMENTS: usize = 8;
/// The longest request path (query included) the fast path takes, so that
/// segment offsets and lengths fit in a byte.
pub const MAX_PATH: usize = 255;
const METHODS: usize = Method::Other as usize + 1;

const _: () = assert!(MAX_ROUTES <= 64 && MAX_LITERALS <= 256 && MAX_SEGMENTS == 8);

/// One compiled route.
#[derive(Copy, Clone, Debug)]
struct Entry {
    /// Its literal segments are `lit..lit + nlits` in the pool, last first:
    /// the last one tells most patterns of a table apart.
    lit: u8,
    nlits: u8,
    /// Segment indices of the first [`MAX_CAPTURES`] `{param}` captures.
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
    len: u8,
    index: u8,
    off: u8,
}

const NO_LIT: Lit = Lit {
    len: 0,
    index: 0,
    off: 0,
};

/// Compiled routes, grouped by API, in table order within each API.
///
/// Which entries can match a request is mostly known before its path is
/// compared: bit `i` of `by_count[api][n]` is set when entry `i` belongs to
/// `api` and can match a path of `n` segments, of `by_method[m]` when its
/// method matches `m`, of `by_kind[k]` when its rule applies to instances
/// of kind `k`. The candidates are the intersection, visited in order.
#[derive(Clone, Debug)]
pub struct Router<'a> {
    table: RuleTable<'a>,
    entries: [Entry; MAX_ROUTES],
    /// The literal pool: each literal's first (up to) eight bytes as a
    /// little-endian word, zero-padded...
    heads: [u64; MAX_LITERALS],
    /// ...and the rest of it.
    lits: [Lit; MAX_LITERALS],
    by_count: [[u64; MAX_SEGMENTS + 1]; 2],
    by_method: [u64; METHODS],
    by_kind: [u64; 2],
    /// Bit `i` of `by_last[last_bucket(seg)]` is set unless entry `i` ends
    /// in a literal other than `seg` (for a path of at least one segment).
    by_last: [u64; LAST_BUCKETS],
    /// False when some pattern did not compile (or the table is too large):
    /// always use the general path.
    compiled: bool,
}

impl<'a> Router<'a> {
    /// Compile `table`'s routes.
    pub fn new(table: RuleTable<'a>) -> Router<'a> {
        let mut r = Router {
            table,
            entries: [EMPTY; MAX_ROUTES],
            heads: [0; MAX_LITERALS],
            lits: [NO_LIT; MAX_LITERALS],
            by_count: [[0; MAX_SEGMENTS + 1]; 2],
            by_method: [0; METHODS],
            by_kind: [0; 2],
            by_last: [0; LAST_BUCKETS],
            compiled: true,
        };
        let (mut n, mut nlits) = (0usize, 0usize);
        for (a, api) in [Api::Frontend, Api::Backend].into_iter().enumerate() {
            for (i, rule) in table.rules().iter().enumerate() {
                if rule.api != api {
                    continue;
                }
                for (ri, route) in rule.routes.iter().enumerate() {
                    let Some(c) = compile(route.path.as_bytes()) else {
                        r.compiled = false;
                        continue;
                    };
                    let fits = n < MAX_ROUTES
                        && nlits + c.nlits <= MAX_LITERALS
                        && ri <= u8::MAX as usize
                        && i <= u8::MAX as usize;
                    if !fits {
                        r.compiled = false;
                        continue;
                    }
                    // Literals last first.
                    for (k, &(head, lit)) in c.lits[..c.nlits].iter().rev().enumerate() {
                        r.heads[nlits + k] = head;
                        r.lits[nlits + k] = lit;
                    }
                    r.entries[n] = Entry {
                        lit: nlits as u8,
                        nlits: c.nlits as u8,
                        caps: c.caps,
                        ncaps: c.ncaps,
                        rule: i as u8,
                        route: ri as u8,
                        unlimited: rule.quota.is_unlimited(),
                    };
                    nlits += c.nlits;
                    let bit = 1u64 << n;
                    let nsegs = c.nsegs as usize;
                    for (count, mask) in r.by_count[a].iter_mut().enumerate() {
                        if c.every || count == nsegs || (c.rest && count >= nsegs) {
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
                        Some((head, lit)) => r.by_last[last_bucket(head, lit.len as usize)] |= bit,
                        None => {
                            for mask in &mut r.by_last {
                                *mask |= bit;
                            }
                        }
                    }
                    n += 1;
                }
            }
        }
        r
    }

    /// Classify a request, handing each matched rule to `f` in table order.
    #[inline]
    pub fn classify_with<'p>(
        &self,
        api: Api,
        kind: InstanceKind,
        method: &[u8],
        path: &'p [u8],
        mut f: impl FnMut(Match<'p>),
    ) -> Summary {
        let Some(mut routed) = self.route(api, kind, method, path) else {
            return route::classify_with(&self.table, api, kind, method, path, f);
        };
        let mut summary = Summary {
            matched: 0,
            exempt: None,
            canonical: true,
        };
        while let Some((m, unlimited)) = routed.next_match() {
            summary.matched += 1;
            if unlimited && summary.exempt.is_none() {
                summary.exempt = Some(m.rule);
            }
            f(m);
        }
        summary
    }

    /// Start classifying a request on the fast path; `None` when it needs
    /// the general classifier ([`route::classify_with`]), which then gives
    /// the whole answer. The matches come from [`Routed::next_match`], in
    /// table order; the request is exempt when one of them says so, and its
    /// path is canonical.
    #[inline]
    pub fn route<'r, 'p>(
        &'r self,
        api: Api,
        kind: InstanceKind,
        method: &[u8],
        path: &'p [u8],
    ) -> Option<Routed<'r, 'a, 'p>> {
        if !self.compiled {
            return None;
        }
        let segs = split(path)?;
        let method = Method::parse(method);
        let a = match api {
            Api::Frontend => 0,
            Api::Backend => 1,
        };
        let mut candidates = self.by_count[a][segs.n.min(MAX_SEGMENTS)]
            & self.by_method[(method as usize).min(METHODS - 1)]
            & self.by_kind[kind as usize & 1];
        if let Some(last) = segs.n.checked_sub(1) {
            let last = last % MAX_SEGMENTS;
            candidates &= self.by_last[last_bucket(segs.heads[last], segs.lens[last] as usize)];
        }
        Some(Routed {
            router: self,
            path,
            segs,
            candidates,
            last_rule: u16::MAX,
        })
    }

    /// Whether the literals of entry `e` equal the path's segments.
    #[inline(always)]
    fn lits_match(&self, e: &Entry, segs: &Segments, path: &[u8]) -> bool {
        let (start, end) = (e.lit as usize, e.lit as usize + e.nlits as usize);
        let (Some(heads), Some(lits)) = (self.heads.get(start..end), self.lits.get(start..end))
        else {
            return false;
        };
        for (&head, lit) in heads.iter().zip(lits) {
            // A literal's index is below its pattern's segment count, which
            // the candidate masks matched to the path's.
            let i = lit.index as usize % MAX_SEGMENTS;
            if head != segs.heads[i]
                || lit.len != segs.lens[i]
                || (lit.len > 8 && !self.tail_eq(e, lit, segs.bytes(path, i)))
            {
                return false;
            }
        }
        true
    }

    /// Whether bytes 8.. of a literal longer than eight equal `seg`'s.
    #[cold]
    fn tail_eq(&self, e: &Entry, lit: &Lit, seg: &[u8]) -> bool {
        let pattern = self
            .table
            .get(e.rule as usize)
            .and_then(|rule| rule.routes.get(e.route as usize))
            .map_or(&[][..], |route| route.path.as_bytes());
        let (off, len) = (lit.off as usize, lit.len as usize);
        match (pattern.get(off + 8..off + len), seg.get(8..)) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }
}

/// A request being classified on the fast path (see [`Router::route`]).
pub struct Routed<'r, 'a, 'p> {
    router: &'r Router<'a>,
    path: &'p [u8],
    segs: Segments,
    /// Entries not yet visited that may match.
    candidates: u64,
    /// The rule of the last match (`u16::MAX` before the first): one match
    /// per rule, its first matching route.
    last_rule: u16,
}

impl<'p> Routed<'_, '_, 'p> {
    /// The next matched rule, and whether its quota is unlimited (the
    /// request is then exempt).
    #[inline(always)]
    pub fn next_match(&mut self) -> Option<(Match<'p>, bool)> {
        let router = self.router;
        while self.candidates != 0 {
            let i = self.candidates.trailing_zeros() as usize;
            self.candidates &= self.candidates - 1;
            let Some(e) = router.entries.get(i) else {
                break;
            };
            if e.rule as u16 == self.last_rule || !router.lits_match(e, &self.segs, self.path) {
                continue;
            }
            let mut m = Match {
                rule: e.rule,
                ncaptures: 0,
                captures: [&[]; MAX_CAPTURES],
            };
            let ncaps = (e.ncaps as usize).min(MAX_CAPTURES);
            for (c, &index) in m.captures[..ncaps].iter_mut().zip(&e.caps) {
                *c = self.segs.bytes(self.path, index as usize % MAX_SEGMENTS);
            }
            m.ncaptures = ncaps as u8;
            self.last_rule = e.rule as u16;
            return Some((m, e.unlimited));
        }
        None
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

/// Buckets of [`Router::by_last`].
const LAST_BUCKETS: usize = 64;

/// The bucket of a last segment of head `head` and length `len`.
#[inline(always)]
fn last_bucket(head: u64, len: usize) -> usize {
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
    fn last_lit(&self) -> Option<(u64, Lit)> {
        if self.every || self.rest || self.nsegs == 0 {
            return None;
        }
        let last = *self.lits[..self.nlits].last()?;
        (last.1.index + 1 == self.nsegs).then_some(last)
    }
}

/// Compile a pattern, or `None` if it needs the general classifier.
fn compile(p: &[u8]) -> Option<Compiled> {
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
    if p.len() > 250 || p.first() != Some(&b'/') {
        return None;
    }
    let mut i = 0;
    while i < p.len() {
        let start = i;
        while i < p.len() && p[i] != b'/' {
            i += 1;
        }
        let seg = &p[start..i];
        i += 1;
        if seg.is_empty() {
            continue;
        }
        if seg == b"*" {
            if i < p.len() {
                return None; // `*` not last: the general classifier decides
            }
            c.rest = true;
            break;
        }
        let n = c.nsegs as usize;
        if n == MAX_SEGMENTS {
            return None;
        }
        let capture = seg.len() >= 2 && seg[0] == b'{' && seg[seg.len() - 1] == b'}';
        // Literals are compared with decoded path bytes by the general
        // classifier; a literal that could equal a decoded escape, or that
        // holds braces or dots, is left to it.
        let plain = seg
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'~'));
        if !capture && !plain {
            return None;
        }
        if capture {
            if let Some(slot) = c.caps.get_mut(c.ncaps as usize) {
                *slot = n as u8;
                c.ncaps += 1;
            }
        } else {
            c.lits[c.nlits] = (
                head(seg),
                Lit {
                    len: seg.len() as u8,
                    index: n as u8,
                    off: start as u8,
                },
            );
            c.nlits += 1;
        }
        c.nsegs += 1;
    }
    Some(c)
}

/// The first (up to) eight bytes of `s`, little-endian, zero-padded.
#[inline(always)]
fn head(s: &[u8]) -> u64 {
    if let Some(w) = load8(s, 0) {
        return w;
    }
    let n = s.len();
    let (mut out, mut i) = (0u64, 0usize);
    if n >= 4 {
        out = u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as u64;
        i = 4;
    }
    if n >= i + 2 {
        out |= (u16::from_le_bytes([s[i], s[i + 1]]) as u64) << (8 * i);
        i += 2;
    }
    if n > i {
        out |= (s[i] as u64) << (8 * i);
    }
    out
}

/// The eight bytes of `s` at `at`, little-endian, if it has them.
#[inline(always)]
fn load8(s: &[u8], at: usize) -> Option<u64> {
    let w: [u8; 8] = s.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(w))
}

/// A split path: its first `n` non-empty segments, each as its [`head`],
/// its offset in the path and its length (the rest of the arrays is zero).
#[derive(Copy, Clone)]
struct Segments {
    heads: [u64; MAX_SEGMENTS],
    starts: [u8; MAX_SEGMENTS],
    lens: [u8; MAX_SEGMENTS],
    n: usize,
}

impl Segments {
    /// The bytes of segment `i` of `path`.
    #[inline(always)]
    fn bytes<'p>(&self, path: &'p [u8], i: usize) -> &'p [u8] {
        let (start, len) = (self.starts[i] as usize, self.lens[i] as usize);
        path.get(start..start + len).unwrap_or(&[])
    }

    /// Add the non-empty segment `path[start..end]`; `None` for a dot
    /// segment or one too many.
    #[inline(always)]
    fn push(&mut self, path: &[u8], start: usize, end: usize) -> Option<()> {
        let len = end.checked_sub(start)?;
        let total = path.len();
        // Eight bytes from the segment's start when the path has them,
        // masked to the segment; else the path's last eight bytes, shifted
        // down to the segment (it ends within them); else byte by byte.
        let head = match load8(path, start) {
            Some(w) if len >= 8 => w,
            Some(w) => w & ((1u64 << (8 * len)) - 1),
            None if total >= 8 => {
                let w = load8(path, total - 8)?;
                (w >> (8 * (start + 8 - total))) & ((1u64 << (8 * len)) - 1)
            }
            None => head(path.get(start..end)?),
        };
        if (len == 1 && head == b'.' as u64) || (len == 2 && head == 0x2e2e) {
            return None;
        }
        let n = self.n;
        if n >= MAX_SEGMENTS || end > MAX_PATH {
            return None;
        }
        self.heads[n] = head;
        self.starts[n] = start as u8;
        self.lens[n] = len as u8;
        self.n = n + 1;
        Some(())
    }
}

/// What [`split`] does at each byte: 0 go on, 1 `/`, 2 end of path (`?`,
/// `#`), 3 not canonical (`%`, NUL, `\`).
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b'/' as usize] = 1;
    t[b'?' as usize] = 2;
    t[b'#' as usize] = 2;
    t[b'%' as usize] = 3;
    t[0] = 3;
    t[b'\\' as usize] = 3;
    t
};

/// Split an already-canonical path into at most [`MAX_SEGMENTS`] segments,
/// or `None` if it needs the general classifier.
#[inline]
fn split(path: &[u8]) -> Option<Segments> {
    let mut out = Segments {
        heads: [0; MAX_SEGMENTS],
        starts: [0; MAX_SEGMENTS],
        lens: [0; MAX_SEGMENTS],
        n: 0,
    };
    let len = path.len();
    if !(16..=64).contains(&len) {
        if len > MAX_PATH {
            return None;
        }
        split_bytes(path, &mut out)?;
        return Some(out);
    }
    // Sixteen bytes at a time, the last block overlapping the one before.
    let (mut slash, mut stop, mut bad) = (0u64, 0u64, 0u64);
    let mut at = 0;
    let mut covered = false;
    while let Some(Ok(block)) = path.get(at..at + 16).map(<&[u8; 16]>::try_from) {
        let (s, q, b) = scan16(block);
        slash |= (s as u64) << at;
        stop |= (q as u64) << at;
        bad |= (b as u64) << at;
        if at + 16 == len {
            covered = true;
            break;
        }
        at = (at + 16).min(len - 16);
    }
    if !covered {
        split_bytes(path, &mut out)?;
        return Some(out);
    }
    // The path ends at its query or fragment.
    let end = if stop == 0 {
        len
    } else {
        stop.trailing_zeros() as usize
    };
    let keep = if end >= 64 {
        u64::MAX
    } else {
        (1u64 << end) - 1
    };
    if bad & keep != 0 {
        return None;
    }
    let mut slash = slash & keep;
    let mut start = 0usize;
    while slash != 0 {
        let i = slash.trailing_zeros() as usize;
        slash &= slash - 1;
        if i > start {
            out.push(path, start, i)?;
        }
        start = i + 1;
    }
    if end > start {
        out.push(path, start, end)?;
    }
    Some(out)
}

/// Per byte of a block, as bit masks: `/`; `?` or `#` (the end of the
/// path); `%`, NUL or `\\` (not canonical).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn scan16(w: &[u8; 16]) -> (u16, u16, u16) {
    use core::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8, _mm_set_epi64x,
        _mm_setzero_si128,
    };
    let lo = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
    let hi = u64::from_le_bytes([w[8], w[9], w[10], w[11], w[12], w[13], w[14], w[15]]);
    // SAFETY: these intrinsics only need SSE2, which is part of the x86_64
    // baseline (every x86_64 CPU has it); none of them touches memory.
    unsafe {
        let v = _mm_set_epi64x(hi as i64, lo as i64);
        let eq = |c: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8));
        let slash = _mm_movemask_epi8(eq(b'/'));
        let stop = _mm_movemask_epi8(_mm_or_si128(eq(b'?'), eq(b'#')));
        let bad = _mm_or_si128(
            _mm_or_si128(eq(b'%'), eq(b'\\')),
            _mm_cmpeq_epi8(v, _mm_setzero_si128()),
        );
        (slash as u16, stop as u16, _mm_movemask_epi8(bad) as u16)
    }
}

/// Per byte of a block, as bit masks: `/`; `?` or `#` (the end of the
/// path); `%`, NUL or `\\` (not canonical).
#[cfg(not(target_arch = "x86_64"))]
#[inline(never)]
fn scan16(w: &[u8; 16]) -> (u16, u16, u16) {
    let (mut slash, mut stop, mut bad) = (0u16, 0u16, 0u16);
    for (k, &b) in w.iter().enumerate() {
        slash |= ((b == b'/') as u16) << k;
        stop |= (((b == b'?') | (b == b'#')) as u16) << k;
        bad |= (((b == b'%') | (b == 0) | (b == b'\\')) as u16) << k;
    }
    (slash, stop, bad)
}

/// [`split`] one byte at a time.
fn split_bytes(path: &[u8], out: &mut Segments) -> Option<()> {
    let mut start = 0usize;
    let mut end = path.len();
    for (i, &b) in path.iter().enumerate() {
        match CLASS[b as usize] {
            0 => continue,
            1 => {
                if i > start {
                    out.push(path, start, i)?;
                }
                start = i + 1;
            }
            2 => {
                end = i;
                break;
            }
            _ => return None,
        }
    }
    if end > start {
        out.push(path, start, end)?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CLERK;

    type Matches = heapless::Vec<(u8, heapless::Vec<u8, 64>), 64>;

    /// Record a match as its rule and decoded captures, `|`-separated.
    fn record(out: &mut Matches, m: Match<'_>) {
        let mut caps = heapless::Vec::new();
        for c in &m.captures[..m.ncaptures as usize] {
            for b in route::decoded(c) {
                let _ = caps.push(b);
            }
            let _ = caps.push(b'|');
        }
        let _ = out.push((m.rule, caps));
    }

    fn general(api: Api, kind: InstanceKind, method: &[u8], path: &[u8]) -> (Summary, Matches) {
        let mut out = Matches::new();
        let s = route::classify_with(&CLERK, api, kind, method, path, |m| record(&mut out, m));
        (s, out)
    }

    fn compiled(api: Api, kind: InstanceKind, method: &[u8], path: &[u8]) -> (Summary, Matches) {
        let mut out = Matches::new();
        let s = Router::new(CLERK).classify_with(api, kind, method, path, |m| record(&mut out, m));
        (s, out)
    }

    #[test]
    fn every_clerk_pattern_compiles() {
        assert!(Router::new(CLERK).compiled);
    }

    #[test]
    fn a_compiled_router_stays_small() {
        // It lives inside every `Limiter`, which may sit on an embedded stack.
        assert!(core::mem::size_of::<Router<'static>>() <= 3 * 1024);
        assert!(core::mem::size_of::<crate::Limiter<'static>>() <= 6 * 1024);
    }

    #[test]
    fn tables_beyond_the_compiled_limits_fall_back_and_agree() {
        use crate::{Quota, Route, Rule, Scope};
        // More routes than candidate masks have bits.
        let routes: std::vec::Vec<Route<'static>> = (0..MAX_ROUTES + 1)
            .map(|i| {
                let p: &'static str =
                    std::boxed::Box::leak(std::format!("/r{i}/{{id}}").into_boxed_str());
                Route::new(Method::Get, p)
            })
            .collect();
        let routes: &'static [Route<'static>] = std::boxed::Box::leak(routes.into_boxed_slice());
        let rules: &'static [Rule<'static>] =
            std::boxed::Box::leak(std::boxed::Box::new([Rule::new(
                "many",
                Api::Backend,
                Scope::InstanceParams,
                routes,
                Quota::per_secs(1, 1),
            )]));
        let table = RuleTable::new(rules);
        assert!(!Router::new(table).compiled);
        let r = Router::new(table);
        let mut seen = std::vec::Vec::new();
        let s = r.classify_with(
            Api::Backend,
            InstanceKind::Production,
            b"GET",
            b"/r64/x",
            |m| seen.push((m.rule, m.captures[0].to_vec())),
        );
        assert_eq!(s.matched, 1);
        assert_eq!(seen, [(0, b"x".to_vec())]);
        // More literal segments than the pool holds.
        let deep: std::vec::Vec<Route<'static>> = (0..MAX_LITERALS / 7 + 1)
            .map(|i| {
                let p: &'static str =
                    std::boxed::Box::leak(std::format!("/a{i}/b/c/d/e/f/g").into_boxed_str());
                Route::new(Method::Get, p)
            })
            .collect();
        let deep: &'static [Route<'static>] = std::boxed::Box::leak(deep.into_boxed_slice());
        let rules: &'static [Rule<'static>] =
            std::boxed::Box::leak(std::boxed::Box::new([Rule::new(
                "deep",
                Api::Frontend,
                Scope::ClientIp,
                deep,
                Quota::per_secs(1, 1),
            )]));
        let r = Router::new(RuleTable::new(rules));
        assert!(!r.compiled);
        let s = r.classify_with(
            Api::Frontend,
            InstanceKind::Production,
            b"GET",
            b"/a18/b/c/d/e/f/g",
            |_| {},
        );
        assert_eq!(s.matched, 1);
    }

    #[test]
    fn paths_longer_than_the_fast_path_takes_agree() {
        for len in [MAX_PATH - 1, MAX_PATH, MAX_PATH + 1, 1000] {
            let mut p = b"/v1/users/".to_vec();
            p.resize(len, b'u');
            for tail in [&b""[..], b"/metadata", b"?x=1"] {
                let mut q = p.clone();
                q.extend_from_slice(tail);
                for m in [&b"PATCH"[..], b"PUT"] {
                    let kind = InstanceKind::Production;
                    assert_eq!(
                        compiled(Api::Backend, kind, m, &q),
                        general(Api::Backend, kind, m, &q)
                    );
                }
            }
        }
    }

    #[test]
    fn the_fast_path_agrees_on_clerk_requests() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"POST", b"/v1/client/sign_ins"),
            (
                b"post",
                b"/v1/client/sign_ins/sia_1/attempt_first_factor?x=1",
            ),
            (b"PATCH", b"/v1/users/user_1"),
            (b"PUT", b"//v1/users/user_1/metadata/"),
            (
                b"PATCH",
                b"/v1/organizations/org_1/memberships/user_2/metadata",
            ),
            (b"GET", b"/v1/jwks"),
            (b"GET", b"/v1/jwks/../users"),
            (b"POST", b"/v1/invitations/bulk#frag"),
            (b"BREW", b"/v1/a/b/c/d/e/f/g/h/i/j"),
            (b"GET", b""),
            (b"GET", b"v1/users/me"),
        ];
        for &(m, p) in cases {
            for api in [Api::Frontend, Api::Backend] {
                for kind in [InstanceKind::Production, InstanceKind::Development] {
                    assert_eq!(
                        compiled(api, kind, m, p),
                        general(api, kind, m, p),
                        "{:?} {:?}",
                        core::str::from_utf8(m),
                        core::str::from_utf8(p)
                    );
                }
            }
        }
    }

    #[test]
    fn the_block_scan_sees_every_byte_of_paths_of_every_length() {
        let base = b"/v1/client/sign_ins/sia_1/attempt_first_factor/v1/users/user_123/metadata/x";
        for len in 1..base.len() {
            for at in 0..len {
                for b in [b'/', b'?', b'#', b'%', 0, b'\\', b'.'] {
                    let mut p = base[..len].to_vec();
                    p[at] = b;
                    for (api, m) in [(Api::Frontend, &b"POST"[..]), (Api::Backend, &b"PATCH"[..])] {
                        let kind = InstanceKind::Production;
                        assert_eq!(
                            compiled(api, kind, m, &p),
                            general(api, kind, m, &p),
                            "{p:?}"
                        );
                    }
                }
            }
        }
    }

    const METHODS: &[&[u8]] = &[b"GET", b"POST", b"patch", b"PUT", b"DELETE", b"X"];
    const SEGMENTS: &[&str] = &[
        "v1",
        "client",
        "sign_ins",
        "sign_ups",
        "users",
        "u1",
        "organizations",
        "org_1",
        "memberships",
        "metadata",
        "invitations",
        "bulk",
        "jwks",
        "attempt_first_factor",
        "attempt_second_factor",
        "attempt_verification",
        "",
        ".",
        "..",
        "%41",
        "a%2Fb",
        "?q=1",
        "#f",
        "me",
        ".well-known",
    ];

    proptest::proptest! {
        #[test]
        fn the_fast_path_agrees_with_the_general_classifier(
            method in proptest::sample::select(METHODS),
            segs in proptest::collection::vec(proptest::sample::select(SEGMENTS), 0..12),
            api in proptest::sample::select(&[Api::Frontend, Api::Backend][..]),
            live in proptest::bool::ANY,
        ) {
            let mut path = std::string::String::new();
            for s in &segs {
                path.push('/');
                path.push_str(s);
            }
            let kind = if live { InstanceKind::Production } else { InstanceKind::Development };
            proptest::prop_assert_eq!(
                compiled(api, kind, method, path.as_bytes()),
                general(api, kind, method, path.as_bytes()),
                "{}", path
            );
        }
    }
}
