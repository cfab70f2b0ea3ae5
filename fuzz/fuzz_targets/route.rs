//! Request classification on arbitrary method and path bytes.
//!
//! Input: `FLAGS METHOD PATH` (split at the first two spaces; the path may
//! hold more), so seeds read as requests: `F POST /v1/client/sign_ins`.
//! `FLAGS[0]` picks the API and kind (`F` Frontend, `B` Backend development,
//! `P` Backend production), `FLAGS[1]` the rule table (`c` Clerk, `x` a
//! table of awkward patterns the router compiles, `y` one it cannot).
//!
//! Checked: nothing panics; `route::normalize` writes a path that
//! normalises to itself, never needs more than `len + 1` bytes, refuses
//! exactly the paths classification calls non-canonical, and a short buffer
//! either fits or says so; the normalised path classifies like the original
//! (same rules, same decoded captures, same exemption); the compiled
//! `Router` agrees with `route::classify_with`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ratecard::route::{self, decoded, Match, NotCanonical, Summary};
use ratecard::router::Router;
use ratecard::{Api, InstanceKind, Method, Quota, Route, Rule, RuleTable, Scope, CLERK};
use std::sync::OnceLock;

/// Patterns the router compiles, chosen to sit on its edge cases: a bare
/// `*`, a final `/*`, empty pattern segments, literal `%`, two captures,
/// and eight segments (its maximum).
const AWKWARD: &[Route<'static>] = &[
    Route::new(Method::Get, "/a/{x}/b/{y}"),
    Route::new(Method::Post, "/pre/*"),
    Route::new(Method::Put, "//lit%/"),
    Route::new(Method::Any, "/1/2/3/4/5/6/7/{z}"),
    Route::new(Method::Delete, "/v1/{id}"),
];
const EVERY: &[Route<'static>] = &[Route::new(Method::Any, "*")];
const FREE: &[Route<'static>] = &[Route::new(Method::Get, "/free/*")];
const AWKWARD_RULES: &[Rule<'static>] = &[
    Rule::new(
        "t.free",
        Api::Backend,
        Scope::Instance,
        FREE,
        Quota::unlimited(),
    ),
    Rule::new(
        "t.r",
        Api::Backend,
        Scope::InstanceParams,
        AWKWARD,
        Quota::per_secs(1, 1),
    ),
    Rule::new(
        "t.fe",
        Api::Frontend,
        Scope::ClientIp,
        AWKWARD,
        Quota::per_secs(1, 1),
    ),
    Rule::new(
        "t.all",
        Api::Backend,
        Scope::Instance,
        EVERY,
        Quota::per_secs(9, 1),
    )
    .for_kind(InstanceKind::Production),
];
/// Nine segments: more than the router compiles, so it falls back.
const DEEP: &[Route<'static>] = &[
    Route::new(Method::Post, "/a/b/c/d/e/f/g/h/{i}"),
    Route::new(Method::Post, "/v1/sign_ins"),
];
const DEEP_RULES: &[Rule<'static>] = &[
    Rule::new(
        "d.deep",
        Api::Frontend,
        Scope::ClientIp,
        DEEP,
        Quota::per_secs(1, 1),
    ),
    Rule::new(
        "d.every",
        Api::Frontend,
        Scope::ClientIp,
        EVERY,
        Quota::per_secs(1, 1),
    ),
];

fn tables() -> &'static [(RuleTable<'static>, Router<'static>); 3] {
    static T: OnceLock<[(RuleTable<'static>, Router<'static>); 3]> = OnceLock::new();
    T.get_or_init(|| {
        let a = RuleTable::new(AWKWARD_RULES);
        let d = RuleTable::new(DEEP_RULES);
        assert_eq!(a.validate(), Ok(()));
        assert_eq!(d.validate(), Ok(()));
        [
            (CLERK, Router::new(CLERK)),
            (a, Router::new(a)),
            (d, Router::new(d)),
        ]
    })
}

/// A classification with decoded captures, comparable across paths.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    matches: Vec<(u8, Vec<Vec<u8>>)>,
    summary: Summary,
}

fn seen(m: &mut Vec<(u8, Vec<Vec<u8>>)>, x: Match<'_>) {
    let n = x.ncaptures as usize;
    assert!(n <= x.captures.len(), "ncaptures {n} beyond the array");
    let caps = x.captures[..n]
        .iter()
        .map(|c| decoded(c).collect())
        .collect();
    m.push((x.rule, caps));
}

fn general(t: &RuleTable<'_>, api: Api, kind: InstanceKind, method: &[u8], path: &[u8]) -> Seen {
    let mut matches = Vec::new();
    let summary = route::classify_with(t, api, kind, method, path, |x| seen(&mut matches, x));
    Seen { matches, summary }
}

fn compiled(r: &Router<'_>, api: Api, kind: InstanceKind, method: &[u8], path: &[u8]) -> Seen {
    let mut matches = Vec::new();
    let summary = r.classify_with(api, kind, method, path, |x| seen(&mut matches, x));
    Seen { matches, summary }
}

fn split_at_space(b: &[u8]) -> (&[u8], &[u8]) {
    match b.iter().position(|&c| c == b' ') {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &[]),
    }
}

fuzz_target!(|data: &[u8]| {
    let (flags, rest) = split_at_space(data);
    let (method, path) = split_at_space(rest);
    let (api, kind) = match flags.first().copied().unwrap_or(b'F') {
        b'F' | b'f' => (Api::Frontend, InstanceKind::Development),
        b'B' | b'b' => (Api::Backend, InstanceKind::Development),
        b'P' | b'p' => (Api::Backend, InstanceKind::Production),
        x => match x % 3 {
            0 => (Api::Frontend, InstanceKind::Development),
            1 => (Api::Backend, InstanceKind::Development),
            _ => (Api::Backend, InstanceKind::Production),
        },
    };
    let which = match flags.get(1).copied() {
        None | Some(b'c') => 0,
        Some(b'x') => 1,
        Some(b'y') => 2,
        Some(x) => x as usize % 3,
    };
    let (table, router) = &tables()[which];

    let original = general(table, api, kind, method, path);
    assert_eq!(original.summary.matched as usize, original.matches.len());
    let fast = compiled(router, api, kind, method, path);
    assert_eq!(fast, original, "Router and route::classify_with disagree");
    // The convenience form gives the same answer.
    let c = route::classify(table, api, kind, method, path);
    assert_eq!(c.matches.len(), original.matches.len());
    assert_eq!(
        (c.exempt, c.canonical),
        (original.summary.exempt, original.summary.canonical)
    );

    // `len + 1` bytes always suffice.
    let mut buf = vec![0u8; path.len() + 1];
    match route::normalize(path, &mut buf) {
        Err(NotCanonical::BufferTooShort) => panic!("len + 1 bytes did not suffice"),
        Err(NotCanonical::Path) => {
            assert!(
                !original.summary.canonical,
                "normalize refused a canonical path"
            );
            assert_eq!(
                original.summary.exempt, None,
                "a non-canonical path is never exempt"
            );
            assert!(original.matches.iter().all(|(_, caps)| caps.is_empty()));
        }
        Ok(n) => {
            assert!(
                original.summary.canonical,
                "normalize accepted a non-canonical path"
            );
            assert!(n >= 1 && n <= buf.len());
            let norm = buf[..n].to_vec();
            assert_eq!(norm[0], b'/');
            // Idempotent.
            let mut again = vec![0u8; norm.len() + 1];
            let m = route::normalize(&norm, &mut again).expect("a normalised path is canonical");
            assert_eq!(&again[..m], &norm[..], "normalize is not idempotent");
            // Same rules, same decoded captures.
            let renorm = general(table, api, kind, method, &norm);
            assert_eq!(
                renorm, original,
                "the normalised path classifies differently"
            );
            let refast = compiled(router, api, kind, method, &norm);
            assert_eq!(refast, original);
            // A short buffer: either the whole answer or BufferTooShort.
            let short = data.len() % (n + 1);
            let mut small = vec![0u8; short];
            match route::normalize(path, &mut small) {
                Ok(k) => assert_eq!(&small[..k], &norm[..]),
                Err(e) => assert_eq!(e, NotCanonical::BufferTooShort),
            }
        }
    }
});
