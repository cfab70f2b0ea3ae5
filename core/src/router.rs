//! A rule table's routes compiled once, when a limiter is made, so the hot
//! path matches a request without re-reading pattern strings.
//!
//! [`Router::classify_with`] gives exactly the answers of
//! [`route::classify_with`](crate::route::classify_with) (a property test
//! pins this down). It handles the common case itself: a path already in
//! canonical form (no escape, NUL, backslash, `.` or `..` segment, at most
//! [`MAX_SEGMENTS`] segments; empty segments, a query and a fragment are
//! fine) on a table whose patterns all compile. Everything else goes to
//! the general classifier.

use crate::route::{self, Match, Summary};
use crate::rule::{Api, InstanceKind, Method, RuleTable, MAX_CAPTURES};

/// The most routes a compiled table holds; larger tables use the general
/// classifier. At most 128: candidate sets are `u128` bit masks.
pub const MAX_ROUTES: usize = 96;
/// The most segments a compiled pattern or a fast-path request path has.
pub const MAX_SEGMENTS: usize = 8;
const METHODS: usize = Method::Other as usize + 1;

const _: () = assert!(MAX_ROUTES <= 128);

/// One literal pattern segment: its length, its first (up to) eight bytes
/// as a little-endian word, its offset in the pattern and its index among
/// the pattern's segments.
#[derive(Copy, Clone, Debug)]
struct Lit {
    head: u64,
    off: u8,
    len: u8,
    index: u8,
}

const NO_LIT: Lit = Lit {
    head: 0,
    off: 0,
    len: 0,
    index: 0,
};

#[derive(Copy, Clone, Debug)]
struct Entry<'a> {
    pattern: &'a [u8],
    /// The literal segments, last first: the last one tells most patterns
    /// of a table apart.
    lits: [Lit; MAX_SEGMENTS],
    nlits: u8,
    /// Segment indices of the first [`MAX_CAPTURES`] `{param}` captures.
    caps: [u8; MAX_CAPTURES],
    ncaps: u8,
    nsegs: u8,
    rule: u8,
    method: Method,
    /// `*` alone: every path.
    every: bool,
    /// A final `/*`: any remaining segments, or none.
    rest: bool,
    /// The rule's quota is unlimited: a match makes the request exempt.
    unlimited: bool,
}

const EMPTY: Entry<'static> = Entry {
    pattern: &[],
    lits: [NO_LIT; MAX_SEGMENTS],
    nlits: 0,
    caps: [0; MAX_CAPTURES],
    ncaps: 0,
    nsegs: 0,
    rule: 0,
    method: Method::Any,
    every: false,
    rest: false,
    unlimited: false,
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
    entries: [Entry<'a>; MAX_ROUTES],
    by_count: [[u128; MAX_SEGMENTS + 1]; 2],
    by_method: [u128; METHODS],
    by_kind: [u128; 2],
    /// Bit `i` of `by_last[last_bucket(seg)]` is set unless entry `i` ends
    /// in a literal other than `seg` (for a path of at least one segment).
    by_last: [u128; LAST_BUCKETS],
    /// False when some pattern did not compile: always use the general path.
    compiled: bool,
}

impl<'a> Router<'a> {
    /// Compile `table`'s routes.
    pub fn new(table: RuleTable<'a>) -> Router<'a> {
        let mut r = Router {
            table,
            entries: [EMPTY; MAX_ROUTES],
            by_count: [[0; MAX_SEGMENTS + 1]; 2],
            by_method: [0; METHODS],
            by_kind: [0; 2],
            by_last: [0; LAST_BUCKETS],
            compiled: true,
        };
        let mut n = 0usize;
        for (a, api) in [Api::Frontend, Api::Backend].into_iter().enumerate() {
            for (i, rule) in table.rules().iter().enumerate() {
                if rule.api != api {
                    continue;
                }
                for route in rule.routes {
                    match (compile(route.path.as_bytes()), r.entries.get_mut(n)) {
                        (Some(mut e), Some(slot)) => {
                            e.rule = i as u8;
                            e.method = route.method;
                            e.unlimited = rule.quota.is_unlimited();
                            *slot = e;
                            let bit = 1u128 << n;
                            for (count, mask) in r.by_count[a].iter_mut().enumerate() {
                                let fits = e.every
                                    || count == e.nsegs as usize
                                    || (e.rest && count >= e.nsegs as usize);
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
                            match e.last_lit() {
                                Some(lit) => {
                                    r.by_last[last_bucket(lit.head, lit.len as usize)] |= bit
                                }
                                None => {
                                    for mask in &mut r.by_last {
                                        *mask |= bit;
                                    }
                                }
                            }
                            n += 1;
                        }
                        _ => r.compiled = false,
                    }
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
        let mut segs = Segments {
            segs: [Seg {
                bytes: &[],
                head: 0,
            }; MAX_SEGMENTS],
            n: 0,
        };
        if !self.compiled || split(path, &mut segs).is_none() {
            return route::classify_with(&self.table, api, kind, method, path, f);
        }
        let method = Method::parse(method);
        let a = match api {
            Api::Frontend => 0,
            Api::Backend => 1,
        };
        let mut candidates = self.by_count[a][segs.n.min(MAX_SEGMENTS)]
            & self.by_method[(method as usize).min(METHODS - 1)]
            & self.by_kind[kind as usize & 1];
        if let Some(last) = segs.n.checked_sub(1).and_then(|i| segs.segs.get(i)) {
            candidates &= self.by_last[last_bucket(last.head, last.bytes.len())];
        }
        let mut summary = Summary {
            matched: 0,
            exempt: None,
            canonical: true,
        };
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
            let Some(m) = e.matches(&segs) else {
                continue;
            };
            last_rule = e.rule as u16;
            summary.matched += 1;
            if e.unlimited && summary.exempt.is_none() {
                summary.exempt = Some(e.rule);
            }
            f(m);
        }
        summary
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

impl Entry<'_> {
    /// The literal a path must end in to match, if there is one.
    fn last_lit(&self) -> Option<Lit> {
        if self.every || self.rest || self.nsegs == 0 {
            return None;
        }
        // Literals are stored last first.
        let lit = self.lits[..self.nlits as usize].first()?;
        (lit.index + 1 == self.nsegs).then_some(*lit)
    }

    /// Match against a split path whose segment count this entry accepts.
    #[inline(always)]
    fn matches<'p>(&self, segs: &Segments<'p>) -> Option<Match<'p>> {
        let nlits = (self.nlits as usize).min(MAX_SEGMENTS);
        for lit in &self.lits[..nlits] {
            let seg = segs.segs.get(lit.index as usize)?;
            if lit.head != seg.head
                || lit.len as usize != seg.bytes.len()
                || (lit.len > 8 && !self.tail_eq(lit, seg.bytes))
            {
                return None;
            }
        }
        let mut m = Match {
            rule: self.rule,
            ncaptures: 0,
            captures: [&[]; MAX_CAPTURES],
        };
        let ncaps = (self.ncaps as usize).min(MAX_CAPTURES);
        for (c, &index) in m.captures[..ncaps].iter_mut().zip(&self.caps) {
            *c = segs.segs.get(index as usize)?.bytes;
        }
        m.ncaptures = ncaps as u8;
        Some(m)
    }

    /// Whether bytes 8.. of a literal longer than eight equal `seg`'s.
    #[cold]
    fn tail_eq(&self, lit: &Lit, seg: &[u8]) -> bool {
        let (off, len) = (lit.off as usize, lit.len as usize);
        match (self.pattern.get(off + 8..off + len), seg.get(8..)) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }
}

/// Compile a pattern, or `None` if it needs the general classifier.
fn compile(p: &[u8]) -> Option<Entry<'_>> {
    let mut e = Entry {
        pattern: p,
        ..EMPTY
    };
    if p == b"*" {
        e.every = true;
        return Some(e);
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
            e.rest = true;
            break;
        }
        let n = e.nsegs as usize;
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
            if let Some(c) = e.caps.get_mut(e.ncaps as usize) {
                *c = n as u8;
                e.ncaps += 1;
            }
        } else {
            // Kept in pattern order here, reversed below.
            e.lits[e.nlits as usize] = Lit {
                head: head(seg),
                off: start as u8,
                len: seg.len() as u8,
                index: n as u8,
            };
            e.nlits += 1;
        }
        e.nsegs += 1;
    }
    e.lits[..e.nlits as usize].reverse();
    Some(e)
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

/// One segment of a split path: its bytes and their [`head`].
#[derive(Copy, Clone)]
struct Seg<'p> {
    bytes: &'p [u8],
    head: u64,
}

/// A split path: its first `n` segments.
struct Segments<'p> {
    segs: [Seg<'p>; MAX_SEGMENTS],
    n: usize,
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
fn split<'p>(path: &'p [u8], out: &mut Segments<'p>) -> Option<()> {
    let len = path.len();
    if !(16..=64).contains(&len) {
        return split_bytes(path, out);
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
        return split_bytes(path, out);
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
    Some(())
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
fn split_bytes<'p>(path: &'p [u8], out: &mut Segments<'p>) -> Option<()> {
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

impl<'p> Segments<'p> {
    /// Add the non-empty segment `path[start..end]`; `None` for a dot
    /// segment or one too many.
    #[inline(always)]
    fn push(&mut self, path: &'p [u8], start: usize, end: usize) -> Option<()> {
        let bytes = path.get(start..end)?;
        if bytes[0] == b'.' && (bytes.len() == 1 || (bytes.len() == 2 && bytes[1] == b'.')) {
            return None;
        }
        let len = bytes.len();
        // Eight bytes from the segment's start when the path has them,
        // masked to the segment; else the segment alone.
        let head = match load8(path, start) {
            Some(w) if len >= 8 => w,
            Some(w) => w & ((1u64 << (8 * len)) - 1),
            None => head(bytes),
        };
        let slot = self.segs.get_mut(self.n)?;
        *slot = Seg { bytes, head };
        self.n += 1;
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CLERK;

    fn general(
        api: Api,
        kind: InstanceKind,
        method: &[u8],
        path: &[u8],
    ) -> (Summary, heapless::Vec<(u8, heapless::Vec<u8, 64>), 64>) {
        let mut out = heapless::Vec::new();
        let s = route::classify_with(&CLERK, api, kind, method, path, |m| {
            let mut caps = heapless::Vec::new();
            for c in &m.captures[..m.ncaptures as usize] {
                for b in route::decoded(c) {
                    let _ = caps.push(b);
                }
                let _ = caps.push(b'|');
            }
            let _ = out.push((m.rule, caps));
        });
        (s, out)
    }

    fn compiled(
        api: Api,
        kind: InstanceKind,
        method: &[u8],
        path: &[u8],
    ) -> (Summary, heapless::Vec<(u8, heapless::Vec<u8, 64>), 64>) {
        let router = Router::new(CLERK);
        let mut out = heapless::Vec::new();
        let s = router.classify_with(api, kind, method, path, |m| {
            let mut caps = heapless::Vec::new();
            for c in &m.captures[..m.ncaptures as usize] {
                for b in route::decoded(c) {
                    let _ = caps.push(b);
                }
                let _ = caps.push(b'|');
            }
            let _ = out.push((m.rule, caps));
        });
        (s, out)
    }

    #[test]
    fn every_clerk_pattern_compiles() {
        assert!(Router::new(CLERK).compiled);
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
