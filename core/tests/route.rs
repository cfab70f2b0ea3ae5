//! Behaviour of request classification on Clerk's table: which rules a
//! method + path reaches, with which captures, however the path is spelled.

use proptest::prelude::*;
use ratecard::route::{classify, classify_with, decoded, normalize, Classification, NotCanonical};
use ratecard::{Api, InstanceKind, CLERK};

const PROD: InstanceKind = InstanceKind::Production;
const DEV: InstanceKind = InstanceKind::Development;

/// The matched rules as (name, decoded captures), in table order.
fn summary(c: &Classification<'_>) -> Vec<(&'static str, Vec<Vec<u8>>)> {
    c.matches
        .iter()
        .map(|m| {
            let caps = m.captures[..m.ncaptures as usize]
                .iter()
                .map(|raw| decoded(raw).collect())
                .collect();
            (CLERK.rules()[m.rule as usize].name, caps)
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
        bapi(DEV, "PATCH", "/v1/users/...%2e"),
        vec![
            rule("bapi.instance.development", &[]),
            rule("bapi.users.update", &["...."])
        ]
    );
}

#[test]
fn classify_with_hands_over_the_matches_of_classify() {
    let mut handed = Vec::new();
    let summary = classify_with(
        &CLERK,
        Api::Backend,
        PROD,
        b"PATCH",
        b"/v1/organizations/org_1/memberships/user_1/metadata",
        |m| handed.push(m),
    );
    let c = classify(
        &CLERK,
        Api::Backend,
        PROD,
        b"PATCH",
        b"/v1/organizations/org_1/memberships/user_1/metadata",
    );
    assert_eq!(&handed[..], &c.matches[..]);
    assert_eq!(summary.matched, 2);
    assert!(summary.canonical && summary.exempt.is_none());
    let summary = classify_with(&CLERK, Api::Backend, DEV, b"GET", b"/v1/jwks", |_| {});
    assert_eq!(
        summary.exempt.map(|i| CLERK.rules()[i as usize].name),
        Some("bapi.jwks")
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

fn path_strategy() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(&b"/"[..]),
        Just(&b"//"[..]),
        Just(&b"/v1"[..]),
        Just(&b"v1"[..]),
        Just(&b"/users"[..]),
        Just(&b"/organizations"[..]),
        Just(&b"/memberships"[..]),
        Just(&b"/metadata"[..]),
        Just(&b"/invitations"[..]),
        Just(&b"/bulk"[..]),
        Just(&b"/jwks"[..]),
        Just(&b"/client"[..]),
        Just(&b"/sign_ins"[..]),
        Just(&b"/attempt_first_factor"[..]),
        Just(&b"/u1"[..]),
        Just(&b"/."[..]),
        Just(&b"/.."[..]),
        Just(&b"."[..]),
        Just(&b"%2e"[..]),
        Just(&b"%2E"[..]),
        Just(&b"%2F"[..]),
        Just(&b"%5c"[..]),
        Just(&b"%00"[..]),
        Just(&b"%76"[..]),
        Just(&b"%31"[..]),
        Just(&b"%3f"[..]),
        Just(&b"%25"[..]),
        Just(&b"%"[..]),
        Just(&b"%4"[..]),
        Just(&b"%zz"[..]),
        Just(&b"?"[..]),
        Just(&b"#"[..]),
        Just(&b"\\"[..]),
        Just(&b"\0"[..]),
        Just(&b"\xff"[..]),
        Just(&b"{x}"[..]),
        Just(&b"*"[..]),
    ];
    prop_oneof![
        prop::collection::vec(token, 0..40).prop_map(|ts| ts.concat()),
        prop::collection::vec(any::<u8>(), 0..80),
    ]
}

fn method_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec![
            "GET", "post", "PATCH", "Put", "DELETE", "HEAD", "BREW", ""
        ])
        .prop_map(|m| m.as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 0..8),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_paths_classify_like_their_normal_form(
        path in path_strategy(),
        method in method_strategy(),
    ) {
        let mut out = vec![0u8; path.len() + 1];
        let normal = normalize(&path, &mut out);
        for api in [Api::Frontend, Api::Backend] {
            for kind in [PROD, DEV] {
                let c = classify(&CLERK, api, kind, &method, &path);
                prop_assert_eq!(c.canonical, normal.is_ok());
                let mut handed = Vec::new();
                let with = classify_with(&CLERK, api, kind, &method, &path, |m| handed.push(m));
                prop_assert_eq!(&handed[..], &c.matches[..]);
                prop_assert_eq!(with.matched as usize, c.matches.len());
                prop_assert_eq!(with.exempt, c.exempt);
                prop_assert_eq!(with.canonical, c.canonical);
                if c.canonical {
                    let n = *normal.as_ref().unwrap();
                    let d = classify(&CLERK, api, kind, &method, &out[..n]);
                    prop_assert!(d.canonical);
                    prop_assert_eq!(summary(&c), summary(&d));
                    prop_assert_eq!(exempt_name(&c), exempt_name(&d));
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
            let mut again = vec![0u8; n];
            prop_assert_eq!(normalize(&once, &mut again), Ok(n));
            prop_assert_eq!(&again[..], &once[..]);
        }
    }

    #[test]
    fn a_short_output_buffer_is_reported_not_overrun(
        path in path_strategy(),
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
