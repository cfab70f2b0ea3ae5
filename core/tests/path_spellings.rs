//! Path spellings that upstream servers route like the plain path, decided
//! through `Limiter::check` (issue 11): `;` path parameters are charged as
//! non-canonical, to every limited rule of the method; upper-case literals
//! match under `Config::fold_case` only; a format suffix and an
//! absolute-form target are charged like the plain path, in the same
//! buckets. Limits come from the reference model's rows.

mod common;
use common::*;
mod model;

use ratecard::{Api, Decision, Limiter, Nanos, Request, RuleSet, Verdict};

const T0: u64 = 5_000 * SEC;
const IP: [u8; 4] = [198, 51, 100, 23];
const KEY: &[u8] = b"sk_live_spellings0123456789";

fn limit(name: &str) -> u32 {
    model::row(name).limit
}

fn set(names: &[&str]) -> RuleSet {
    names
        .iter()
        .fold(RuleSet::EMPTY, |s, n| s.with(model::engine_index(n)))
}

fn fapi(path: &[u8]) -> Request<'_> {
    Request::new(Api::Frontend, b"POST", path).ip(IP)
}

fn bapi<'r>(method: &'r [u8], path: &'r [u8]) -> Request<'r> {
    Request::new(Api::Backend, method, path).key(KEY)
}

fn check(l: &Limiter<'_>, r: &Request<'_>) -> Decision {
    l.check(r, Nanos(T0)).unwrap()
}

const FRONTEND_POST: [&str; 4] = [
    "fapi.sign_ins.create",
    "fapi.sign_ups.create",
    "fapi.sign_ins.attempt",
    "fapi.sign_ups.attempt",
];

#[test]
fn path_parameters_are_charged_to_every_limited_frontend_post_rule() {
    for path in [
        &b"/v1/client/sign_ins;jsessionid=1"[..],
        b"/v1;x/client/sign_ins",
        b"/v1/client/sign_ins/sia_1/attempt_first_factor;x",
        b"/v1/client/sign_ins%3Bx",
    ] {
        let show = String::from_utf8_lossy(path);
        let l = clerk();
        let attempts = limit("fapi.sign_ins.attempt");
        for i in 0..attempts {
            let d = check(&l, &fapi(path));
            assert_eq!(d.verdict, Verdict::Allowed, "{show} {i}: {d:?}");
            assert_eq!(d.matched, set(&FRONTEND_POST), "{show}");
        }
        // The attempt rules' burst (3) is spent, so the next is denied...
        let d = check(&l, &fapi(path));
        assert!(!d.allowed(), "{show}: {d:?}");
        assert!(
            d.rule == Some(model::engine_index("fapi.sign_ins.attempt"))
                || d.rule == Some(model::engine_index("fapi.sign_ups.attempt")),
            "{show}: {d:?}"
        );
        // ... and so is a plain attempt from the same client; sign-in
        // creation has 5 - 3 left.
        let plain = fapi(b"/v1/client/sign_ins/sia_9/attempt_first_factor");
        assert!(!check(&l, &plain).allowed(), "{show}");
        let d = check(&l, &fapi(b"/v1/client/sign_ins"));
        assert!(d.allowed());
        assert_eq!(
            d.remaining,
            limit("fapi.sign_ins.create") - attempts - 1,
            "{show}"
        );
    }
}

#[test]
fn a_path_parameter_after_a_user_id_opens_no_bucket_per_suffix() {
    let l = clerk();
    let users = limit("bapi.users.update");
    let matched = set(&[
        "bapi.instance.production",
        "bapi.users.update",
        "bapi.organizations.update",
        "bapi.memberships.update",
    ]);
    for i in 0..users {
        let path = format!("/v1/users/user_1;v={i}");
        let d = check(&l, &bapi(b"PATCH", path.as_bytes()));
        assert!(d.allowed(), "{path}: {d:?}");
        assert_eq!(d.matched, matched);
    }
    // A fresh suffix, even a fresh user: one bucket for every such spelling.
    for path in [&b"/v1/users/user_1;v=new"[..], b"/v1/users/user_2;x"] {
        let d = check(&l, &bapi(b"PATCH", path));
        assert!(!d.allowed(), "{:?}: {d:?}", String::from_utf8_lossy(path));
        assert_eq!(d.limit, users);
    }
    // The plain route keeps its own per-user bucket.
    assert!(check(&l, &bapi(b"PATCH", b"/v1/users/user_1")).allowed());
}

#[test]
fn upper_case_routes_are_limited_only_when_case_folding_is_on() {
    let path = b"/V1/client/SIGN_INS";
    let l = clerk();
    for _ in 0..2 * limit("fapi.sign_ins.create") {
        assert_eq!(
            check(&l, &fapi(path)),
            Decision::UNMATCHED,
            "case-sensitive by default"
        );
    }
    let l = clerk_with(|c| c.fold_case = true);
    let burst = limit("fapi.sign_ins.create");
    for i in 0..burst {
        let r = if i % 2 == 0 {
            fapi(path)
        } else {
            fapi(b"/v1/client/sign_ins")
        };
        let d = check(&l, &r);
        assert!(d.allowed(), "{i}: {d:?}");
        assert_eq!(d.rule, Some(model::engine_index("fapi.sign_ins.create")));
    }
    assert!(
        !check(&l, &fapi(path)).allowed(),
        "one bucket for both spellings"
    );
    assert!(!check(&l, &fapi(b"/v1/client/sign_ins")).allowed());
}

#[test]
fn with_case_folding_captured_ids_keep_their_case() {
    let l = clerk_with(|c| c.fold_case = true);
    let users = limit("bapi.users.update");
    for _ in 0..users {
        assert!(check(&l, &bapi(b"PATCH", b"/V1/USERS/User_1")).allowed());
    }
    // Another spelling of the route, the same id: the same bucket.
    assert!(!check(&l, &bapi(b"PATCH", b"/v1/Users/User_1")).allowed());
    // The id in another case is another user.
    let d = check(&l, &bapi(b"PATCH", b"/v1/users/user_1"));
    assert!(d.allowed());
    assert_eq!(d.rule, Some(model::engine_index("bapi.users.update")));
    assert_eq!(d.remaining, users - 1);
}

#[test]
fn a_format_suffix_is_charged_like_the_plain_route() {
    let l = clerk();
    let burst = limit("fapi.sign_ins.create");
    for i in 0..burst {
        let r = if i % 2 == 0 {
            fapi(b"/v1/client/sign_ins.json")
        } else {
            fapi(b"/v1/client/sign_ins")
        };
        let d = check(&l, &r);
        assert!(d.allowed(), "{i}: {d:?}");
        assert_eq!(d.matched, set(&["fapi.sign_ins.create"]));
    }
    assert!(!check(&l, &fapi(b"/v1/client/sign_ins.json")).allowed());
    assert!(!check(&l, &fapi(b"/v1/client/sign_ins")).allowed());
}

#[test]
fn a_format_suffix_on_a_user_id_shares_that_users_bucket() {
    let l = clerk();
    let users = limit("bapi.users.update");
    let spellings: [&[u8]; 3] = [
        b"/v1/users/user_1.json",
        b"/v1/users/user_1",
        b"/v1/users/user_1.xml",
    ];
    for i in 0..users as usize {
        let d = check(&l, &bapi(b"PATCH", spellings[i % 3]));
        assert!(d.allowed(), "{i}: {d:?}");
        assert_eq!(d.remaining, users - 1 - i as u32, "one bucket for user_1");
    }
    for path in spellings {
        assert!(!check(&l, &bapi(b"PATCH", path)).allowed());
    }
    let d = check(&l, &bapi(b"PATCH", b"/v1/users/user_2.json"));
    assert!(d.allowed(), "user_2 is another user: {d:?}");
}

#[test]
fn a_suffix_never_makes_a_request_exempt() {
    let l = clerk();
    let jwks = check(&l, &bapi(b"GET", b"/v1/jwks"));
    assert_eq!(jwks.verdict, Verdict::Exempt);
    let d = check(&l, &bapi(b"GET", b"/v1/jwks.json"));
    assert_eq!(d.verdict, Verdict::Allowed, "{d:?}");
    assert_eq!(
        d.rule,
        Some(model::engine_index("bapi.instance.production"))
    );
    assert_eq!(d.matched, set(&["bapi.instance.production"]));
    assert_eq!(
        d.remaining,
        limit("bapi.instance.production") - 1,
        "charged"
    );
}

#[test]
fn an_absolute_form_target_is_limited_like_its_path() {
    let l = clerk();
    let burst = limit("fapi.sign_ins.create");
    for i in 0..burst {
        let r = if i % 2 == 0 {
            fapi(b"http://host/v1/client/sign_ins")
        } else {
            fapi(b"/v1/client/sign_ins")
        };
        let d = check(&l, &r);
        assert!(d.allowed(), "{i}: {d:?}");
        assert_eq!(d.matched, set(&["fapi.sign_ins.create"]));
    }
    assert!(!check(&l, &fapi(b"https://host:8443/v1/client/sign_ins?x=1")).allowed());
    assert!(!check(&l, &fapi(b"/v1/client/sign_ins")).allowed());
}
