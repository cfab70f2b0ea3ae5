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
/// classifier.
pub const MAX_ROUTES: usize = 96;
/// The most segments a compiled pattern or a fast-path request path has.
pub const MAX_SEGMENTS: usize = 8;
const PARAM: u8 = u8::MAX;

#[derive(Copy, Clone, Debug)]
struct Entry<'a> {
    pattern: &'a [u8],
    /// (offset, length) of each segment in `pattern`; length `PARAM` for a
    /// `{param}` capture.
    segs: [(u8, u8); MAX_SEGMENTS],
    nsegs: u8,
    rule: u8,
    method: Method,
    /// `*` alone: every path.
    every: bool,
    /// A final `/*`: any remaining segments, or none.
    rest: bool,
}

const EMPTY: Entry<'static> = Entry {
    pattern: &[],
    segs: [(0, 0); MAX_SEGMENTS],
    nsegs: 0,
    rule: 0,
    method: Method::Any,
    every: false,
    rest: false,
};

/// Compiled routes, grouped by API, in table order within each API.
#[derive(Clone, Debug)]
pub struct Router<'a> {
    table: RuleTable<'a>,
    entries: [Entry<'a>; MAX_ROUTES],
    /// `entries[ranges[api]..ranges[api + 1]]` are the routes of `api`.
    frontend: (u16, u16),
    backend: (u16, u16),
    /// False when some pattern did not compile: always use the general path.
    compiled: bool,
}

impl<'a> Router<'a> {
    /// Compile `table`'s routes.
    pub fn new(table: RuleTable<'a>) -> Router<'a> {
        let mut r = Router {
            table,
            entries: [EMPTY; MAX_ROUTES],
            frontend: (0, 0),
            backend: (0, 0),
            compiled: true,
        };
        let mut n = 0usize;
        for api in [Api::Frontend, Api::Backend] {
            let start = n;
            for (i, rule) in table.rules().iter().enumerate() {
                if rule.api != api {
                    continue;
                }
                for route in rule.routes {
                    match (compile(route.path.as_bytes()), r.entries.get_mut(n)) {
                        (Some(mut e), Some(slot)) => {
                            e.rule = i as u8;
                            e.method = route.method;
                            *slot = e;
                            n += 1;
                        }
                        _ => r.compiled = false,
                    }
                }
            }
            let range = (start as u16, n as u16);
            match api {
                Api::Frontend => r.frontend = range,
                Api::Backend => r.backend = range,
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
        let segs = if self.compiled { split(path) } else { None };
        let Some((segs, n)) = segs else {
            return route::classify_with(&self.table, api, kind, method, path, f);
        };
        let method = Method::parse(method);
        let (start, end) = match api {
            Api::Frontend => self.frontend,
            Api::Backend => self.backend,
        };
        let rules = self.table.rules();
        let mut summary = Summary {
            matched: 0,
            exempt: None,
            canonical: true,
        };
        let mut last_rule = u16::MAX;
        for e in &self.entries[start as usize..end as usize] {
            // Cheapest and most selective first: the segment count.
            if !e.every && e.nsegs as usize != n && !(e.rest && n >= e.nsegs as usize) {
                continue;
            }
            if e.rule as u16 == last_rule || !e.method.matches(method) {
                continue;
            }
            let rule = &rules[e.rule as usize];
            if rule.kind.is_some_and(|k| k != kind) {
                continue;
            }
            let Some(m) = e.matches(path, &segs[..n]) else {
                continue;
            };
            last_rule = e.rule as u16;
            summary.matched += 1;
            if rule.quota.is_unlimited() && summary.exempt.is_none() {
                summary.exempt = Some(e.rule);
            }
            f(m);
        }
        summary
    }
}

impl Entry<'_> {
    #[inline]
    fn matches<'p>(&self, path: &'p [u8], segs: &[(u32, u32)]) -> Option<Match<'p>> {
        let mut m = Match {
            rule: self.rule,
            ncaptures: 0,
            captures: [&[]; MAX_CAPTURES],
        };
        if self.every {
            return Some(m);
        }
        let n = self.nsegs as usize;
        for (&(off, len), &(s, e)) in self.segs[..n].iter().zip(segs) {
            let seg = path.get(s as usize..e as usize)?;
            if len == PARAM {
                if let Some(c) = m.captures.get_mut(m.ncaptures as usize) {
                    *c = seg;
                    m.ncaptures += 1;
                }
            } else if !short_eq(
                seg,
                self.pattern
                    .get(off as usize..off as usize + len as usize)?,
            ) {
                return None;
            }
        }
        Some(m)
    }
}

/// Equality of two short byte strings without a call into `memcmp`.
#[inline(always)]
fn short_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i + 8 <= a.len() {
        if word(a, i) != word(b, i) {
            return false;
        }
        i += 8;
    }
    let tail = a.len() - i;
    if tail == 0 {
        return true;
    }
    // The last 8 bytes (overlapping what was compared) when there are 8.
    if a.len() >= 8 {
        return word(a, a.len() - 8) == word(b, b.len() - 8);
    }
    a[i..] == b[i..]
}

#[inline(always)]
fn word(s: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&s[at..at + 8]);
    u64::from_le_bytes(w)
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
        e.segs[n] = (start as u8, if capture { PARAM } else { seg.len() as u8 });
        e.nsegs += 1;
    }
    Some(e)
}

/// Split an already-canonical path into at most [`MAX_SEGMENTS`] segments,
/// or `None` if it needs the general classifier.
#[inline]
fn split(path: &[u8]) -> Option<([(u32, u32); MAX_SEGMENTS], usize)> {
    let mut segs = [(0u32, 0u32); MAX_SEGMENTS];
    let mut n = 0;
    let mut start = 0usize;
    let mut i = 0usize;
    if path.len() > u32::MAX as usize {
        return None;
    }
    loop {
        let b = path.get(i).copied();
        match b {
            None | Some(b'/' | b'?' | b'#') => {
                let seg = &path[start..i];
                if !seg.is_empty() {
                    if seg == b"." || seg == b".." || n == MAX_SEGMENTS {
                        return None;
                    }
                    segs[n] = (start as u32, i as u32);
                    n += 1;
                }
                if b != Some(b'/') {
                    return Some((segs, n));
                }
                start = i + 1;
            }
            Some(b'%' | b'\\' | 0) => return None,
            Some(_) => {}
        }
        i += 1;
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
