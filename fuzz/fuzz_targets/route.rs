//! Request classification on arbitrary method and path bytes.
//!
//! Input: `FLAGS METHOD PATH` (split at the first two spaces; the path may
//! hold more), so seeds read as requests: `F POST /v1/client/sign_ins`.
//! `FLAGS[0]` picks the API and kind (`F` Frontend, `B` Backend development,
//! `P` Backend production), `FLAGS[1]` the rule table and case folding
//! (`c` Clerk, `x` a table of awkward patterns at the router's limits,
//! `y` Clerk folding case, `z` the awkward table folding case).
//!
//! Checked: nothing panics; the compiled `Router` agrees with the
//! reference classifier of `core/tests/model/route.rs` (written from the
//! documented semantics alone: the same rules, decoded captures, exemption
//! and canonicity); `route::normalize` writes a path that normalises to
//! itself, never needs more than `len + 1` bytes, refuses exactly the paths
//! classification calls non-canonical, and a short buffer either fits or
//! says so; the normalised path classifies like the original.
#![no_main]

#[path = "../../core/tests/model/route.rs"]
mod reference;

use libfuzzer_sys::fuzz_target;
use ratecard::route::{self, decoded, Match, NotCanonical, Router, Summary};
use ratecard::{
    Api, InstanceKind, Method, Quota, Route, Rule, RuleTable, Scope, TableError, CLERK,
};
use std::sync::OnceLock;

/// Patterns the router compiles, chosen to sit on its edge cases: a bare
/// `*`, a final `/*`, empty pattern segments, literal `%`, two captures,
/// eight segments (its maximum), literals longer than eight bytes and
/// with upper-case letters (for case folding), a dot in a literal.
const AWKWARD: &[Route<'static>] = &[
    Route::new(Method::Get, "/a/{x}/b/{y}"),
    Route::new(Method::Post, "/pre/*"),
    Route::new(Method::Put, "//lit%/"),
    Route::new(Method::Any, "/1/2/3/4/5/6/7/{z}"),
    Route::new(Method::Delete, "/v1/{id}"),
    Route::new(Method::Patch, "/Abcdefghijkl/x.y/{id}"),
    Route::new(Method::Head, "/dot/x.y"),
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
/// Nine segments: more than a route may have, so the table is refused.
const DEEP: &[Route<'static>] = &[Route::new(Method::Post, "/a/b/c/d/e/f/g/h/{i}")];
const DEEP_RULES: &[Rule<'static>] = &[Rule::new(
    "d.deep",
    Api::Frontend,
    Scope::ClientIp,
    DEEP,
    Quota::per_secs(1, 1),
)];

/// The rule tables and their routers: Clerk and the awkward table, each
/// case-sensitive and folding case.
fn tables() -> &'static [(RuleTable<'static>, bool, Router<'static>); 4] {
    static T: OnceLock<[(RuleTable<'static>, bool, Router<'static>); 4]> = OnceLock::new();
    T.get_or_init(|| {
        let a = RuleTable::new(AWKWARD_RULES);
        assert_eq!(a.validate(), Ok(()));
        assert_eq!(
            RuleTable::new(DEEP_RULES).validate(),
            Err(TableError::BadPattern)
        );
        let router = |t, fold| Router::new(t, fold).expect("a valid table compiles");
        [
            (CLERK, false, router(CLERK, false)),
            (a, false, router(a, false)),
            (CLERK, true, router(CLERK, true)),
            (a, true, router(a, true)),
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
    let caps: Vec<&[u8]> = x.captures[..n].to_vec();
    // A capture with an escape must be flagged, or it would be hashed raw.
    assert!(
        x.encoded || !caps.iter().any(|c| c.contains(&b'%')),
        "an escaped capture not flagged: {x:?}"
    );
    m.push((x.rule, caps.iter().map(|c| decoded(c).collect()).collect()));
}

fn compiled(r: &Router<'_>, api: Api, kind: InstanceKind, method: &[u8], path: &[u8]) -> Seen {
    let mut matches = Vec::new();
    let summary = r.classify_with(api, kind, method, path, |x, _| seen(&mut matches, x));
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
        Some(b'z') => 3,
        Some(x) => x as usize % 4,
    };
    let (table, fold, router) = &tables()[which];

    let original = compiled(router, api, kind, method, path);
    assert_eq!(original.summary.matched as usize, original.matches.len());
    let want = reference::classify(table, *fold, api, kind, method, path);
    assert_eq!(
        (
            &original.matches,
            original.summary.exempt,
            original.summary.canonical
        ),
        (&want.matches, want.exempt, want.canonical),
        "the router and the reference classifier disagree"
    );
    // The convenience form gives the same answer.
    let (s, matches) = router.classify(api, kind, method, path);
    assert_eq!(s, original.summary);
    assert_eq!(matches.len(), original.matches.len());

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
            let renorm = compiled(router, api, kind, method, &norm);
            assert_eq!(
                renorm, original,
                "the normalised path classifies differently"
            );
            assert_eq!(reference::segments(&norm), reference::segments(path));
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
