//! Behaviour of request classification on Clerk's table: which rules a
//! method + path reaches, with which captures, however the path is spelled;
//! and the compiled router held against the reference classifier
//! (`model/route.rs`, written from the documented semantics alone) on
//! generated paths, for Clerk's table and small custom tables.

mod model;
use model::route as reference;

use proptest::prelude::*;
use ratecard::route::{decoded, normalize, Match, NotCanonical, Router, MAX_ROUTES, MAX_SEGMENTS};
use ratecard::{
    Api, Config, InstanceKind, Limiter, Method, Quota, Route, Rule, RuleTable, Scope, Seed,
    SetupError, TableError, CLERK,
};

const PROD: InstanceKind = InstanceKind::Production;
const DEV: InstanceKind = InstanceKind::Development;

/// What `Router::classify` found, gathered in one place.
struct Classification<'p> {
    canonical: bool,
    exempt: Option<u8>,
    matched: u8,
    matches: Vec<Match<'p>>,
}

fn classify_folded<'p>(
    table: &RuleTable<'_>,
    fold: bool,
    api: Api,
    kind: InstanceKind,
    method: &[u8],
    path: &'p [u8],
) -> Classification<'p> {
    let router = Router::new(*table, fold).unwrap();
    let (s, m) = router.classify(api, kind, method, path);
    Classification {
        canonical: s.canonical,
        exempt: s.exempt,
        matched: s.matched,
        matches: m.to_vec(),
    }
}

fn classify<'p>(
    table: &RuleTable<'_>,
    api: Api,
    kind: InstanceKind,
    method: &[u8],
    path: &'p [u8],
) -> Classification<'p> {
    classify_folded(table, false, api, kind, method, path)
}

/// A match as its rule and decoded captures.
fn decoded_match(m: &Match<'_>) -> (u8, Vec<Vec<u8>>) {
    let caps = m.captures[..m.ncaptures as usize]
        .iter()
        .map(|raw| decoded(raw).collect())
        .collect();
    (m.rule, caps)
}

/// The matched rules as (name, decoded captures), in table order.
fn summary(c: &Classification<'_>) -> Vec<(&'static str, Vec<Vec<u8>>)> {
    c.matches
        .iter()
        .map(|m| {
            let (rule, caps) = decoded_match(m);
            (CLERK.rules()[rule as usize].name, caps)
        })
        .collect()
}

fn names(c: &Classification<'_>) -> Vec<&'static str> {
    c.matches
        .iter()
        .map(|m| CLERK.rules()[m.rule as usize].name)
        .collect()
}

fn exempt_name(c: &Classification<'_>) -> Option<&'static str> {
    c.exempt.map(|i| CLERK.rules()[i as usize].name)
}

fn fapi(method: &str, path: &str) -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let c = classify(
        &CLERK,
        Api::Frontend,
        DEV,
        method.as_bytes(),
        path.as_bytes(),
    );
    assert!(c.canonical, "{method} {path}");
    assert_eq!(c.exempt, None);
    summary(&c)
}

fn bapi(kind: InstanceKind, method: &str, path: &str) -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let c = classify(
        &CLERK,
        Api::Backend,
        kind,
        method.as_bytes(),
        path.as_bytes(),
    );
    assert!(c.canonical, "{method} {path}");
    summary(&c)
}

fn rule(name: &'static str, caps: &[&str]) -> (&'static str, Vec<Vec<u8>>) {
    (name, caps.iter().map(|c| c.as_bytes().to_vec()).collect())
}

#[test]
fn every_frontend_row_matches_its_shorthand_and_live_paths() {
    let cases: &[(&str, &str, &[&str])] = &[
        ("/v1/sign_ins", "fapi.sign_ins.create", &[]),
        ("/v1/client/sign_ins", "fapi.sign_ins.create", &[]),
        ("/v1/sign_ups", "fapi.sign_ups.create", &[]),
        ("/v1/client/sign_ups", "fapi.sign_ups.create", &[]),
        (
            "/v1/sign_ins/attempt_first_factor",
            "fapi.sign_ins.attempt",
            &[],
        ),
        (
            "/v1/sign_ins/attempt_second_factor",
            "fapi.sign_ins.attempt",
            &[],
        ),
        (
            "/v1/sign_ins/sia_1/attempt_first_factor",
            "fapi.sign_ins.attempt",
            &["sia_1"],
        ),
        (
            "/v1/client/sign_ins/sia_1/attempt_first_factor",
            "fapi.sign_ins.attempt",
            &["sia_1"],
        ),
        (
            "/v1/client/sign_ins/sia_2/attempt_second_factor",
            "fapi.sign_ins.attempt",
            &["sia_2"],
        ),
        (
            "/v1/sign_ups/attempt_verification",
            "fapi.sign_ups.attempt",
            &[],
        ),
        (
            "/v1/sign_ups/sua_1/attempt_verification",
            "fapi.sign_ups.attempt",
            &["sua_1"],
        ),
        (
            "/v1/client/sign_ups/sua_1/attempt_verification",
            "fapi.sign_ups.attempt",
            &["sua_1"],
        ),
    ];
    for &(path, name, caps) in cases {
        assert_eq!(fapi("POST", path), vec![rule(name, caps)], "POST {path}");
        // Only POST is limited.
        assert_eq!(fapi("GET", path), vec![], "GET {path}");
        // The Backend API has no such rule: instance limit only.
        assert_eq!(
            bapi(DEV, "POST", path),
            vec![rule("bapi.instance.development", &[])]
        );
    }
}

#[test]
fn frontend_paths_outside_the_table_match_nothing() {
    assert_eq!(fapi("POST", "/v1/client"), vec![]);
    assert_eq!(fapi("POST", "/v1/client/sign_ins/sia_1"), vec![]);
    assert_eq!(
        fapi("POST", "/v1/sign_ins/sia_1/prepare_first_factor"),
        vec![]
    );
    assert_eq!(fapi("POST", "/v1/invitations"), vec![]);
    assert_eq!(fapi("GET", "/v1/jwks"), vec![]);
}

#[test]
fn every_backend_row_matches_its_documented_route_on_top_of_the_instance_rule() {
    let cases: &[(&str, &str, &str, &[&str])] = &[
        ("POST", "/v1/invitations", "bapi.invitations.create", &[]),
        ("POST", "/v1/invitations/bulk", "bapi.invitations.bulk", &[]),
        (
            "POST",
            "/v1/organizations/org_1/invitations",
            "bapi.org_invitations.create",
            &["org_1"],
        ),
        (
            "POST",
            "/v1/organizations/org_1/invitations/bulk",
            "bapi.org_invitations.bulk",
            &["org_1"],
        ),
        (
            "PATCH",
            "/v1/users/user_1",
            "bapi.users.update",
            &["user_1"],
        ),
        (
            "PATCH",
            "/v1/users/user_1/metadata",
            "bapi.users.update",
            &["user_1"],
        ),
        (
            "PUT",
            "/v1/users/user_1/metadata",
            "bapi.users.update",
            &["user_1"],
        ),
        (
            "PATCH",
            "/v1/organizations/org_1",
            "bapi.organizations.update",
            &["org_1"],
        ),
        (
            "PATCH",
            "/v1/organizations/org_1/metadata",
            "bapi.organizations.update",
            &["org_1"],
        ),
        (
            "PUT",
            "/v1/organizations/org_1/metadata",
            "bapi.organizations.update",
            &["org_1"],
        ),
        (
            "PATCH",
            "/v1/organizations/org_1/memberships/user_1",
            "bapi.memberships.update",
            &["org_1", "user_1"],
        ),
        (
            "PATCH",
            "/v1/organizations/org_1/memberships/user_1/metadata",
            "bapi.memberships.update",
            &["org_1", "user_1"],
        ),
        (
            "PUT",
            "/v1/organizations/org_1/memberships/user_1/metadata",
            "bapi.memberships.update",
            &["org_1", "user_1"],
        ),
    ];
    for &(method, path, name, caps) in cases {
        assert_eq!(
            bapi(PROD, method, path),
            vec![rule("bapi.instance.production", &[]), rule(name, caps)],
            "{method} {path}"
        );
        assert_eq!(
            bapi(DEV, method, path),
            vec![rule("bapi.instance.development", &[]), rule(name, caps)],
            "{method} {path}"
        );
        // Another method reaches the instance rule only.
        assert_eq!(
            bapi(DEV, "DELETE", path),
            vec![rule("bapi.instance.development", &[])]
        );
        // The Frontend API has no such rule.
        assert_eq!(fapi(method, path), vec![]);
    }
}

#[test]
fn get_users_me_matches_only_the_instance_rule() {
    assert_eq!(
        bapi(PROD, "GET", "/v1/users/me"),
        vec![rule("bapi.instance.production", &[])]
    );
}

#[test]
fn bulk_invitations_match_bulk_and_instance_but_not_single_invitations() {
    let got = bapi(DEV, "POST", "/v1/invitations/bulk");
    assert_eq!(
        got,
        vec![
            rule("bapi.instance.development", &[]),
            rule("bapi.invitations.bulk", &[]),
        ]
    );
    let got = bapi(DEV, "POST", "/v1/organizations/o/invitations/bulk");
    assert_eq!(
        got,
        vec![
            rule("bapi.instance.development", &[]),
            rule("bapi.org_invitations.bulk", &["o"]),
        ]
    );
}

#[test]
fn get_jwks_is_exempt_and_other_methods_on_it_are_not() {
    for kind in [PROD, DEV] {
        let c = classify(&CLERK, Api::Backend, kind, b"GET", b"/v1/jwks");
        assert!(c.canonical);
        assert_eq!(exempt_name(&c), Some("bapi.jwks"));
        assert!(names(&c).contains(&"bapi.jwks"));
        let c = classify(&CLERK, Api::Backend, kind, b"get", b"/v1/jwks/?x#y");
        assert_eq!(exempt_name(&c), Some("bapi.jwks"));
        let c = classify(&CLERK, Api::Backend, kind, b"POST", b"/v1/jwks");
        assert_eq!(c.exempt, None);
        let c = classify(&CLERK, Api::Backend, kind, b"GET", b"/v1/jwks/extra");
        assert_eq!(c.exempt, None);
    }
}

#[test]
fn instance_kind_selects_the_matching_instance_rule() {
    for (kind, name) in [
        (PROD, "bapi.instance.production"),
        (DEV, "bapi.instance.development"),
    ] {
        for path in ["/", "", "/v1/users", "/v1/anything/at/all", "x"] {
            for method in ["GET", "POST", "BREW", ""] {
                assert_eq!(bapi(kind, method, path), vec![rule(name, &[])]);
            }
        }
    }
}

#[test]
fn bypass_spellings_reach_the_same_rules_and_decoded_captures() {
    let canonical = bapi(PROD, "PATCH", "/v1/users/u1");
    assert_eq!(
        canonical,
        vec![
            rule("bapi.instance.production", &[]),
            rule("bapi.users.update", &["u1"])
        ]
    );
    for path in [
        "//v1//users/u1/",
        "v1/users/u1",
        "/v1/./users/u1",
        "/./v1/users/./u1/.",
        "/v1/x/../users/u1",
        "/../../v1/users/u1",
        "/v1/users/u1/metadata/..",
        "/v1/jwks/../users/u1",
        "/%76%31/users/u%31",
        "/v1/%75sers/%75%31",
        "/v1/users/u1?x=1",
        "/v1/users/u1?",
        "/v1/users/u1#frag",
        "/v1/users/u1?a=/../../x#/..",
        "/v1/x/%2e%2e/users/u1",
        "/v1/x/%2E%2e/users/u1",
        "/v1/x/.%2e/users/u1",
        "/v1/%2e/users/u1",
        "/v1/users/u1/%2E",
    ] {
        let c = classify(&CLERK, Api::Backend, PROD, b"PATCH", path.as_bytes());
        assert!(c.canonical, "{path}");
        assert_eq!(c.exempt, None, "{path}");
        assert_eq!(summary(&c), canonical, "{path}");
    }
    for method in ["patch", "Patch", "pAtCh"] {
        assert_eq!(bapi(PROD, method, "/v1/users/u1"), canonical, "{method}");
    }
}

#[test]
fn segments_that_merely_start_with_a_dot_are_ordinary_segments() {
    assert_eq!(
        bapi(DEV, "PATCH", "/v1/users/.u1"),
        vec![
            rule("bapi.instance.development", &[]),
            rule("bapi.users.update", &[".u1"])
        ]
    );
    assert_eq!(
        bapi(DEV, "PATCH", "/v1/users/...%2e/metadata"),
        vec![
            rule("bapi.instance.development", &[]),
            rule("bapi.users.update", &["...."])
        ]
    );
    // As a last segment it has a format suffix: a dot past its first byte.
    // Its stem is the byte before that dot, and the stem's capture counts.
    assert_eq!(
        bapi(DEV, "PATCH", "/v1/users/...%2e"),
        vec![
            rule("bapi.instance.development", &[]),
            rule("bapi.users.update", &["."])
        ]
    );
}

#[test]
fn classify_with_hands_over_the_matches_of_classify() {
    let router = Router::new(CLERK, false).unwrap();
    let path = b"/v1/organizations/org_1/memberships/user_1/metadata";
    let mut handed = Vec::new();
    let summary = router.classify_with(Api::Backend, PROD, b"PATCH", path, |m, unlimited| {
        handed.push((m, unlimited))
    });
    let (s, matches) = router.classify(Api::Backend, PROD, b"PATCH", path);
    assert_eq!(summary, s);
    assert_eq!(
        handed.iter().map(|(m, _)| *m).collect::<Vec<_>>(),
        &matches[..]
    );
    assert!(handed.iter().all(|(_, unlimited)| !unlimited));
    assert_eq!(summary.matched, 2);
    assert!(summary.canonical && summary.exempt.is_none());
    let mut handed = Vec::new();
    let summary = router.classify_with(Api::Backend, DEV, b"GET", b"/v1/jwks", |m, unlimited| {
        handed.push((m.rule, unlimited))
    });
    let jwks = CLERK
        .rules()
        .iter()
        .position(|r| r.name == "bapi.jwks")
        .unwrap() as u8;
    assert_eq!(summary.exempt, Some(jwks));
    assert!(
        handed.contains(&(jwks, true)),
        "the exempting rule is handed over as unlimited"
    );
}

#[test]
fn the_exempt_route_used_as_a_detour_is_not_exempt() {
    let c = classify(&CLERK, Api::Backend, DEV, b"GET", b"/v1/jwks/../users/u1");
    assert_eq!(c.exempt, None);
    assert_eq!(names(&c), ["bapi.instance.development"]);
    let c = classify(&CLERK, Api::Backend, DEV, b"PATCH", b"/v1/jwks/../users/u1");
    assert_eq!(c.exempt, None);
    assert_eq!(
        names(&c),
        ["bapi.instance.development", "bapi.users.update"]
    );
}

#[test]
fn encoded_captures_are_recorded_raw_and_decode_to_the_same_id() {
    let c = classify(&CLERK, Api::Backend, PROD, b"PATCH", b"/v1/users/u%31");
    let m = c.matches[1];
    assert_eq!(m.ncaptures, 1);
    assert_eq!(m.captures[0], b"u%31");
    assert_eq!(decoded(m.captures[0]).collect::<Vec<u8>>(), b"u1");
}

#[test]
fn non_canonical_paths_match_every_method_compatible_rule_and_are_never_exempt() {
    let bad = [
        &b"/v1/users/a%2Fb"[..],
        b"/v1/users/a%2fb",
        b"/v1/users/%zz",
        b"/v1/users/%4",
        b"/v1/users/%",
        b"/v1/users/u\x001",
        b"/v1/users\\u1",
        b"/v1/users/%5Cu1",
        b"/v1/users/%00",
        b"/v1/jwks%2F..%2Fusers/u1",
        b"/v1/jwks/%zz/..",
    ];
    for path in bad {
        let show = String::from_utf8_lossy(path);
        let mut out = [0u8; 64];
        assert_eq!(normalize(path, &mut out), Err(NotCanonical::Path), "{show}");

        let c = classify(&CLERK, Api::Backend, DEV, b"POST", path);
        assert!(!c.canonical, "{show}");
        assert_eq!(c.exempt, None);
        assert!(c.matches.iter().all(|m| m.ncaptures == 0));
        assert_eq!(
            names(&c),
            [
                "bapi.instance.development",
                "bapi.invitations.create",
                "bapi.invitations.bulk",
                "bapi.org_invitations.create",
                "bapi.org_invitations.bulk",
            ],
            "{show}"
        );

        let c = classify(&CLERK, Api::Backend, PROD, b"patch", path);
        assert!(!c.canonical);
        assert_eq!(
            names(&c),
            [
                "bapi.instance.production",
                "bapi.users.update",
                "bapi.organizations.update",
                "bapi.memberships.update",
            ],
            "{show}"
        );

        // GET /v1/jwks is unlimited: a non-canonical GET is not exempt.
        let c = classify(&CLERK, Api::Backend, DEV, b"GET", path);
        assert_eq!(c.exempt, None);
        assert_eq!(names(&c), ["bapi.instance.development"], "{show}");

        let c = classify(&CLERK, Api::Frontend, DEV, b"POST", path);
        assert!(!c.canonical);
        assert_eq!(
            names(&c),
            [
                "fapi.sign_ins.create",
                "fapi.sign_ups.create",
                "fapi.sign_ins.attempt",
                "fapi.sign_ups.attempt",
            ],
            "{show}"
        );
        let c = classify(&CLERK, Api::Frontend, DEV, b"GET", path);
        assert!(c.matches.is_empty());
    }
}

#[test]
fn escapes_after_the_query_do_not_make_a_path_non_canonical() {
    let c = classify(
        &CLERK,
        Api::Backend,
        DEV,
        b"PATCH",
        b"/v1/users/u1?q=%zz%2F\\\0",
    );
    assert!(c.canonical);
    assert_eq!(
        names(&c),
        ["bapi.instance.development", "bapi.users.update"]
    );
}

#[test]
fn paths_deeper_than_the_segment_stack_only_match_the_instance_rule() {
    let mut path = String::from("/v1/users/u1/metadata");
    for _ in 0..20 {
        path.push_str("/x");
    }
    assert_eq!(
        bapi(PROD, "PUT", &path),
        vec![rule("bapi.instance.production", &[])]
    );
    // ... and popped back, they are the documented route again.
    for _ in 0..20 {
        path.push_str("/..");
    }
    assert_eq!(
        bapi(PROD, "PUT", &path),
        vec![
            rule("bapi.instance.production", &[]),
            rule("bapi.users.update", &["u1"])
        ]
    );
}

#[test]
fn a_one_mebibyte_path_is_classified_without_panicking() {
    let mut long = b"/v1/users/".to_vec();
    long.resize(1 << 20, b'a');
    let c = classify(&CLERK, Api::Backend, DEV, b"PATCH", &long);
    assert!(c.canonical);
    assert_eq!(c.matches[1].captures[0].len(), (1 << 20) - 10);
    assert_eq!(
        names(&c),
        ["bapi.instance.development", "bapi.users.update"]
    );

    let many: Vec<u8> = b"/a".repeat(1 << 19);
    let c = classify(&CLERK, Api::Backend, DEV, b"PATCH", &many);
    assert_eq!(names(&c), ["bapi.instance.development"]);
    let mut out = vec![0u8; many.len() + 1];
    assert_eq!(normalize(&many, &mut out), Ok(many.len()));

    let escapes: Vec<u8> = b"%41".repeat(1 << 18);
    let c = classify(&CLERK, Api::Backend, DEV, b"GET", &escapes);
    assert!(c.canonical);
}

#[test]
fn ten_thousand_parent_segments_stay_at_the_root() {
    let mut path = "../".repeat(10_000);
    path.push_str("v1/users/u1");
    assert_eq!(
        bapi(DEV, "PATCH", &path),
        vec![
            rule("bapi.instance.development", &[]),
            rule("bapi.users.update", &["u1"])
        ]
    );
    let mut deep = "/x".repeat(10_000);
    deep.push_str(&"/..".repeat(10_000));
    deep.push_str("/v1/jwks");
    let c = classify(&CLERK, Api::Backend, DEV, b"GET", deep.as_bytes());
    assert_eq!(exempt_name(&c), Some("bapi.jwks"));
    let mut out = vec![0u8; deep.len() + 1];
    let n = normalize(deep.as_bytes(), &mut out).unwrap();
    assert_eq!(&out[..n], b"/v1/jwks");
}

// --- path spellings (issue 11) --------------------------------------------

const FRONTEND_POST_RULES: [&str; 4] = [
    "fapi.sign_ins.create",
    "fapi.sign_ups.create",
    "fapi.sign_ins.attempt",
    "fapi.sign_ups.attempt",
];

#[test]
fn a_semicolon_in_any_segment_makes_a_path_non_canonical() {
    for path in [
        &b"/v1/client/sign_ins;jsessionid=1"[..],
        b"/v1;x/client/sign_ins",
        b"/v1/client/sign_ins/sia_1/attempt_first_factor;x",
        b"/v1/client/sign_ins%3Bx",
        b"/v1/client/sign_ins%3b",
        b";/v1/client/sign_ins",
    ] {
        let show = String::from_utf8_lossy(path);
        let mut out = [0u8; 128];
        assert_eq!(normalize(path, &mut out), Err(NotCanonical::Path), "{show}");
        let c = classify(&CLERK, Api::Frontend, DEV, b"POST", path);
        assert!(!c.canonical, "{show}");
        assert_eq!(names(&c), FRONTEND_POST_RULES, "{show}");
        assert!(c.matches.iter().all(|m| m.ncaptures == 0));
    }
    // After the query a `;` is anybody's business.
    let c = classify(
        &CLERK,
        Api::Frontend,
        DEV,
        b"POST",
        b"/v1/client/sign_ins?a=1;b=2",
    );
    assert!(c.canonical);
    assert_eq!(names(&c), ["fapi.sign_ins.create"]);
}

#[test]
fn a_semicolon_after_a_user_id_is_charged_without_the_id() {
    for suffix in ["x", "y", "jsessionid=ABC"] {
        let path = format!("/v1/users/user_1;{suffix}");
        let c = classify(&CLERK, Api::Backend, PROD, b"PATCH", path.as_bytes());
        assert!(!c.canonical);
        assert_eq!(
            summary(&c),
            [
                rule("bapi.instance.production", &[]),
                rule("bapi.users.update", &[]),
                rule("bapi.organizations.update", &[]),
                rule("bapi.memberships.update", &[]),
            ],
            "{path}: no capture, so no bucket per suffix"
        );
    }
}

#[test]
fn upper_case_literals_match_only_when_the_table_folds_case() {
    let c = classify(&CLERK, Api::Frontend, DEV, b"POST", b"/V1/client/SIGN_INS");
    assert!(
        c.canonical && c.matches.is_empty(),
        "case-sensitive by default"
    );
    let c = classify_folded(
        &CLERK,
        true,
        Api::Frontend,
        DEV,
        b"POST",
        b"/V1/client/SIGN_INS",
    );
    assert_eq!(names(&c), ["fapi.sign_ins.create"]);
    let c = classify_folded(
        &CLERK,
        true,
        Api::Frontend,
        DEV,
        b"POST",
        b"/V1/%43lient/Sign_Ins",
    );
    assert_eq!(names(&c), ["fapi.sign_ins.create"], "escapes fold too");
    // Captured ids keep their case.
    let c = classify_folded(
        &CLERK,
        true,
        Api::Backend,
        PROD,
        b"PATCH",
        b"/V1/USERS/User_AbC",
    );
    assert_eq!(
        summary(&c),
        [
            rule("bapi.instance.production", &[]),
            rule("bapi.users.update", &["User_AbC"])
        ]
    );
    let c = classify(&CLERK, Api::Backend, PROD, b"PATCH", b"/V1/USERS/User_AbC");
    assert_eq!(names(&c), ["bapi.instance.production"]);
}

#[test]
fn a_format_suffix_is_charged_like_its_stem_but_never_exempt() {
    assert_eq!(
        fapi("POST", "/v1/client/sign_ins.json"),
        [rule("fapi.sign_ins.create", &[])]
    );
    assert_eq!(
        fapi(
            "POST",
            "/v1/client/sign_ins/sia_1/attempt_first_factor.json"
        ),
        [rule("fapi.sign_ins.attempt", &["sia_1"])]
    );
    for path in [
        "/v1/users/user_1.json",
        "/v1/users/user_1.xml",
        "/v1/users/user_%31%2Ejson",
    ] {
        assert_eq!(
            bapi(PROD, "PATCH", path),
            [
                rule("bapi.instance.production", &[]),
                rule("bapi.users.update", &["user_1"])
            ],
            "{path}: the stem's capture, so user_1's bucket"
        );
    }
    let c = classify(&CLERK, Api::Backend, DEV, b"GET", b"/v1/jwks.json");
    assert!(c.canonical);
    assert_eq!(c.exempt, None, "a suffix never makes a request exempt");
    assert_eq!(names(&c), ["bapi.instance.development"]);
    // A leading dot is no suffix, and only the last segment has one.
    assert_eq!(
        bapi(DEV, "PATCH", "/v1/users/.json"),
        [
            rule("bapi.instance.development", &[]),
            rule("bapi.users.update", &[".json"])
        ]
    );
    assert_eq!(
        bapi(DEV, "PATCH", "/v1/users.json/user_1"),
        [rule("bapi.instance.development", &[])]
    );
}

#[test]
fn an_absolute_form_target_is_classified_by_its_path() {
    for target in [
        "http://host/v1/client/sign_ins",
        "https://user@host:8443/v1/client/sign_ins?x=1",
        "HTTP://host//v1/./client/sign_ins/",
    ] {
        assert_eq!(
            fapi("POST", target),
            [rule("fapi.sign_ins.create", &[])],
            "{target}"
        );
    }
    assert_eq!(
        bapi(PROD, "PATCH", "http://api.example/v1/users/user_1"),
        [
            rule("bapi.instance.production", &[]),
            rule("bapi.users.update", &["user_1"])
        ]
    );
    let c = classify(&CLERK, Api::Backend, DEV, b"GET", b"https://h/v1/jwks");
    assert_eq!(exempt_name(&c), Some("bapi.jwks"));
}

// --- the limits of a table --------------------------------------------------

fn validate_routes(routes: &[Route<'_>]) -> Result<(), TableError> {
    let rules = [Rule::new(
        "t.r",
        Api::Backend,
        Scope::Instance,
        routes,
        Quota::per_secs(1, 1),
    )];
    RuleTable::new(&rules).validate()
}

fn leaked_routes(paths: impl Iterator<Item = String>) -> Vec<Route<'static>> {
    paths
        .map(|p| Route::new(Method::Get, Box::leak(p.into_boxed_str())))
        .collect()
}

#[test]
fn patterns_of_more_than_eight_segments_are_bad_patterns() {
    let eight = "/a/b/c/d/e/f/g/h";
    assert_eq!(MAX_SEGMENTS, 8);
    assert_eq!(validate_routes(&[Route::new(Method::Get, eight)]), Ok(()));
    let eight_and_rest = "/a/b/c/d/e/f/g/h/*";
    assert_eq!(
        validate_routes(&[Route::new(Method::Get, eight_and_rest)]),
        Ok(())
    );
    let nine = "/a/b/c/d/e/f/g/h/i";
    assert_eq!(
        validate_routes(&[Route::new(Method::Get, nine)]),
        Err(TableError::BadPattern)
    );
    // And a limiter refuses such a table.
    let deep = [Route::new(Method::Get, nine)];
    let rules = [Rule::new(
        "t.deep",
        Api::Backend,
        Scope::Instance,
        &deep,
        Quota::per_secs(1, 1),
    )];
    let err = Limiter::new(
        &Config::DEFAULT,
        RuleTable::new(&rules),
        Seed::from_bytes([1; 16]),
    );
    assert_eq!(
        err.err(),
        Some(SetupError::InvalidRules(TableError::BadPattern))
    );
    // An eight-segment route matches a path of eight segments.
    let routes = [Route::new(Method::Get, "/a/b/c/d/e/f/g/{id}")];
    let ok = [Rule::new(
        "t.eight",
        Api::Backend,
        Scope::Instance,
        &routes,
        Quota::per_secs(1, 1),
    )];
    let c = classify(
        &RuleTable::new(&ok),
        Api::Backend,
        DEV,
        b"GET",
        b"/a/b/c/d/e/f/g/x",
    );
    assert_eq!(
        c.matches.iter().map(decoded_match).collect::<Vec<_>>(),
        [(0, vec![b"x".to_vec()])]
    );
}

#[test]
fn more_than_64_routes_or_128_literal_segments_are_too_many_routes() {
    assert_eq!(MAX_ROUTES, 64);
    let routes = leaked_routes((0..MAX_ROUTES).map(|i| format!("/r{i}/{{id}}")));
    assert_eq!(validate_routes(&routes), Ok(()));
    let routes = leaked_routes((0..=MAX_ROUTES).map(|i| format!("/r{i}/{{id}}")));
    assert_eq!(validate_routes(&routes), Err(TableError::TooManyRoutes));
    // 32 routes of four literals are 128; one more literal is too many.
    let routes = leaked_routes((0..32).map(|i| format!("/l{i}/b/c/d")));
    assert_eq!(validate_routes(&routes), Ok(()));
    let routes = leaked_routes(
        (0..32)
            .map(|i| format!("/l{i}/b/c/d"))
            .chain(["/x".to_string()]),
    );
    assert_eq!(validate_routes(&routes), Err(TableError::TooManyRoutes));
    let rules: &'static [Rule<'static>] = Box::leak(Box::new([Rule::new(
        "t.many",
        Api::Backend,
        Scope::Instance,
        Box::leak(routes.into_boxed_slice()),
        Quota::per_secs(1, 1),
    )]));
    let err = Limiter::new(
        &Config::DEFAULT,
        RuleTable::new(rules),
        Seed::from_bytes([1; 16]),
    );
    assert_eq!(
        err.err(),
        Some(SetupError::InvalidRules(TableError::TooManyRoutes))
    );
}

// --- the router against the reference classifier ----------------------------

/// The router's answer in the reference's terms, after checking that each
/// match whose captures hold an escape says so (decoding a capture without
/// one changes nothing, so a flag set without need is harmless).
fn router_classified(
    router: &Router<'_>,
    api: Api,
    kind: InstanceKind,
    method: &[u8],
    path: &[u8],
) -> Result<reference::Classified, TestCaseError> {
    let (s, matches) = router.classify(api, kind, method, path);
    prop_assert_eq!(s.matched as usize, matches.len());
    for m in &matches {
        let escaped = m.captures[..m.ncaptures as usize]
            .iter()
            .any(|c| c.contains(&b'%'));
        prop_assert!(m.encoded || !escaped, "encoded flag of {:?}", m);
    }
    Ok(reference::Classified {
        canonical: s.canonical,
        exempt: s.exempt,
        matches: matches.iter().map(decoded_match).collect(),
    })
}

fn agree(
    table: &RuleTable<'_>,
    fold: bool,
    method: &[u8],
    path: &[u8],
) -> Result<(), TestCaseError> {
    let router = Router::new(*table, fold).unwrap();
    for api in [Api::Frontend, Api::Backend] {
        for kind in [PROD, DEV] {
            let got = router_classified(&router, api, kind, method, path)?;
            let want = reference::classify(table, fold, api, kind, method, path);
            prop_assert_eq!(
                &got,
                &want,
                "{:?} {:?} {} {:?} (fold {})",
                api,
                kind,
                String::from_utf8_lossy(method),
                String::from_utf8_lossy(path),
                fold
            );
        }
    }
    Ok(())
}

const CLERK_SEGMENTS: &[&str] = &[
    "v1",
    "client",
    "sign_ins",
    "sign_ups",
    "users",
    "user_1",
    "me",
    "organizations",
    "org_1",
    "memberships",
    "metadata",
    "invitations",
    "bulk",
    "jwks",
    "sia_1",
    "attempt_first_factor",
    "attempt_second_factor",
    "attempt_verification",
    ".well-known",
    "{x}",
    "*",
];

/// What may follow a segment.
const DECORATIONS: &[&str] = &[
    "",
    "",
    "",
    "",
    "",
    ".json",
    ".xml",
    ".",
    ";x",
    ";jsessionid=1",
    "%3B",
    "%3b",
    "%2F",
    "%2f",
    "%5C",
    "%00",
    "%zz",
    "%4",
    "%",
    "\\",
    "\0",
    "%25",
    "%20",
    "\u{e9}",
];

/// Whole segments that are not names.
const SPECIALS: &[&str] = &["", ".", "..", "%2e", "%2E%2e", ".%2E", "...", "%2e.x"];

/// What may come before the path.
const PREFIXES: &[&str] = &[
    "",
    "",
    "",
    "http://host",
    "HTTPS://user@host:8443",
    "h2c+x-y.z://h",
    "1http://h",
    "http:",
    "//",
];

/// What may end the target.
const ENDINGS: &[&str] = &["", "", "/", "?x=1", "?a=/../..;%zz", "#f", "?", ".json"];

/// One segment of a generated path: a name, a case and escape pattern, and
/// what follows it.
fn segment(names: &'static [&'static str]) -> impl Strategy<Value = String> {
    (
        prop_oneof![
            8 => prop::sample::select(names).prop_map(str::to_string),
            1 => prop::sample::select(SPECIALS).prop_map(str::to_string),
        ],
        any::<u16>(),
        any::<u16>(),
        prop::sample::select(DECORATIONS),
    )
        .prop_map(|(name, case, escape, decoration)| {
            let mut s = String::new();
            for (i, c) in name.chars().enumerate() {
                let c = if case & (1 << (i % 16)) != 0 && i % 3 == 0 {
                    c.to_ascii_uppercase()
                } else {
                    c
                };
                if escape & (1 << (i % 16)) != 0 && i % 4 == 1 && c.is_ascii() {
                    let hex = format!("%{:02X}", c as u8);
                    s.push_str(&if i % 8 == 1 { hex.to_lowercase() } else { hex });
                } else {
                    s.push(c);
                }
            }
            s.push_str(decoration);
            s
        })
}

fn target(names: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(PREFIXES),
        prop::collection::vec((segment(names), any::<bool>()), 0..14),
        prop::sample::select(ENDINGS),
    )
        .prop_map(|(prefix, segs, ending)| {
            let mut t = prefix.to_string();
            for (s, slash) in segs {
                t.push('/');
                if !slash {
                    // `//`: an empty segment.
                    t.push('/');
                }
                t.push_str(&s);
            }
            t.push_str(ending);
            t.into_bytes()
        })
}

fn method() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec![
            "GET", "get", "POST", "post", "PATCH", "pAtCh", "PUT", "DELETE", "HEAD", "OPTIONS",
            "BREW", ""
        ])
        .prop_map(|m| m.as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 0..8),
    ]
}

/// Pattern segments of the custom tables, and the names their paths use.
const CUSTOM_SEGMENTS: &[&str] = &[
    "a",
    "b",
    "A",
    "ab",
    "x.y",
    "v1",
    "users",
    "lit%",
    "abcdefghijk",
    "abcdefghijK",
    "{p}",
    "{q}",
    "*",
];

#[derive(Clone, Debug)]
struct CustomRule {
    api: Api,
    kind: Option<InstanceKind>,
    unlimited: bool,
    routes: Vec<(Method, String)>,
}

fn pattern() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just("*".to_string()),
        1 => Just("/".to_string()),
        12 => (
            prop::collection::vec((prop::sample::select(CUSTOM_SEGMENTS), any::<bool>()), 0..5),
            prop_oneof![4 => Just(""), 1 => Just("/*"), 1 => Just("/")],
        )
            .prop_map(|(segs, end)| {
                let mut p = String::new();
                let mut captures = 0;
                for (s, double) in segs {
                    p.push_str(if double { "//" } else { "/" });
                    // At most two captures a pattern: a third is a literal.
                    let capture = s.starts_with('{');
                    captures += capture as usize;
                    p.push_str(if capture && captures > 2 { "a" } else { s });
                }
                if p.is_empty() && end.is_empty() {
                    p.push('/');
                }
                p.push_str(end);
                p
            }),
    ]
}

fn custom_rule() -> impl Strategy<Value = CustomRule> {
    (
        prop_oneof![Just(Api::Frontend), Just(Api::Backend)],
        prop_oneof![Just(None), Just(Some(PROD)), Just(Some(DEV))],
        prop::bool::weighted(0.2),
        prop::collection::vec(
            (
                prop::sample::select(vec![
                    Method::Any,
                    Method::Get,
                    Method::Post,
                    Method::Patch,
                    Method::Put,
                ]),
                pattern(),
            ),
            1..4,
        ),
    )
        .prop_map(|(api, kind, unlimited, routes)| CustomRule {
            api,
            kind,
            unlimited,
            routes,
        })
}

/// Run `f` on the rule table `rules` describe, if it is valid.
fn with_table(
    rules: &[CustomRule],
    f: impl FnOnce(&RuleTable<'_>) -> Result<(), TestCaseError>,
) -> Result<(), TestCaseError> {
    let routes: Vec<Vec<Route<'_>>> = rules
        .iter()
        .map(|r| r.routes.iter().map(|(m, p)| Route::new(*m, p)).collect())
        .collect();
    let names: Vec<String> = (0..rules.len()).map(|i| format!("custom.r{i}")).collect();
    let built: Vec<Rule<'_>> = rules
        .iter()
        .zip(&routes)
        .zip(&names)
        .map(|((r, routes), name)| {
            let quota = if r.unlimited {
                Quota::unlimited()
            } else {
                Quota::per_secs(1, 1)
            };
            let mut rule = Rule::new(name, r.api, Scope::InstanceParams, routes, quota);
            rule.kind = r.kind;
            rule
        })
        .collect();
    let table = RuleTable::new(&built);
    prop_assert_eq!(table.validate(), Ok(()), "the generator makes valid tables");
    f(&table)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_router_agrees_with_the_reference_on_clerks_table(
        method in method(),
        path in target(CLERK_SEGMENTS),
        fold in any::<bool>(),
    ) {
        agree(&CLERK, fold, &method, &path)?;
    }

    #[test]
    fn the_router_agrees_with_the_reference_on_arbitrary_bytes(
        method in method(),
        path in prop::collection::vec(any::<u8>(), 0..80),
        fold in any::<bool>(),
    ) {
        agree(&CLERK, fold, &method, &path)?;
    }

    #[test]
    fn the_router_agrees_with_the_reference_on_small_custom_tables(
        rules in prop::collection::vec(custom_rule(), 1..6),
        requests in prop::collection::vec((method(), target(CUSTOM_SEGMENTS)), 1..8),
        fold in any::<bool>(),
    ) {
        with_table(&rules, |table| {
            for (method, path) in &requests {
                agree(table, fold, method, path)?;
            }
            Ok(())
        })?;
    }

    #[test]
    fn arbitrary_paths_classify_like_their_normal_form(
        path in target(CLERK_SEGMENTS),
        method in method(),
    ) {
        let mut out = vec![0u8; path.len() + 1];
        let normal = normalize(&path, &mut out);
        prop_assert_eq!(normal.is_ok(), reference::segments(&path).is_some());
        for api in [Api::Frontend, Api::Backend] {
            for kind in [PROD, DEV] {
                let c = classify(&CLERK, api, kind, &method, &path);
                prop_assert_eq!(c.canonical, normal.is_ok());
                if c.canonical {
                    let n = *normal.as_ref().unwrap();
                    let d = classify(&CLERK, api, kind, &method, &out[..n]);
                    prop_assert!(d.canonical);
                    prop_assert_eq!(summary(&c), summary(&d));
                    prop_assert_eq!(exempt_name(&c), exempt_name(&d));
                    prop_assert_eq!(c.matched, d.matched);
                } else {
                    prop_assert_eq!(normal, Err(NotCanonical::Path));
                    prop_assert_eq!(c.exempt, None);
                    prop_assert!(c.matches.iter().all(|m| m.ncaptures == 0));
                }
            }
        }
        if let Ok(n) = normal {
            let once = out[..n].to_vec();
            prop_assert_eq!(once[0], b'/');
            prop_assert_eq!(reference::segments(&once), reference::segments(&path));
            let mut again = vec![0u8; n];
            prop_assert_eq!(normalize(&once, &mut again), Ok(n));
            prop_assert_eq!(&again[..], &once[..]);
        }
    }

    #[test]
    fn a_short_output_buffer_is_reported_not_overrun(
        path in target(CLERK_SEGMENTS),
        len in 0usize..16,
    ) {
        let mut out = vec![0u8; len];
        let mut full = vec![0u8; path.len() + 1];
        match (normalize(&path, &mut out), normalize(&path, &mut full)) {
            (Ok(n), Ok(m)) => prop_assert_eq!(&out[..n], &full[..m]),
            (Err(NotCanonical::BufferTooShort), Ok(_)) => {}
            (Err(NotCanonical::Path), Err(NotCanonical::Path)) => {}
            (a, b) => prop_assert!(false, "{:?} vs {:?}", a, b),
        }
    }
}

#[test]
fn the_router_agrees_with_the_reference_whatever_byte_sits_anywhere_in_a_path() {
    // Every prefix of a long Clerk path, with one byte replaced at every
    // position: the normaliser's fast branch must see every byte.
    let base = b"/v1/client/sign_ins/sia_1/attempt_first_factor/v1/users/user_123/metadata/x";
    for len in 1..base.len() {
        for at in 0..len {
            for b in [b'/', b'?', b'#', b'%', 0, b'\\', b'.', b';', b'S'] {
                let mut p = base[..len].to_vec();
                p[at] = b;
                for m in [&b"POST"[..], b"PATCH"] {
                    agree(&CLERK, at % 2 == 0, m, &p).unwrap();
                }
            }
        }
    }
}

#[test]
fn paths_around_the_fast_branchs_length_limit_agree_with_the_reference() {
    for len in [100, 127, 128, 129, 130, 1000] {
        let mut p = b"/v1/users/".to_vec();
        p.resize(len, b'u');
        for tail in [&b""[..], b"/metadata", b"?x=1", b".json", b";x"] {
            let mut q = p.clone();
            q.extend_from_slice(tail);
            for m in [&b"PATCH"[..], b"PUT"] {
                agree(&CLERK, false, m, &q).unwrap();
            }
        }
    }
}
