//! Every row of Clerk's table, decided through `Limiter::check` with the
//! requests a gateway really sees: bursts, retry times, the schedule on
//! which quota comes back, how rules combine, and what is sent back.
//!
//! Expected numbers are worked out here from DESIGN.md's formulas
//! (`T = ⌈period / limit⌉`, `Retry-After = ⌈retry_after / 1 s⌉`, ...), never
//! taken from the engine; each row's limit and period come from the
//! reference model's copy of the table (`model/mod.rs`), the tests' only one.

mod common;
use common::*;
mod model;

use ratecard::{
    write_429_body, Api, CheckError, Config, Decision, HandleOptions, InstanceKind, Limiter,
    Method, Nanos, Quota, Request, Route, Rule, RuleId, RuleStats, RuleTable, Scope, Verdict,
    CLERK, CLERK_429_BODY,
};
use std::net::IpAddr;

/// A start time well away from zero and from any round number.
const T0: u64 = 1_000 * SEC + 12_345;
const HOUR: u64 = 3_600 * SEC;

const IP_A: [u8; 4] = [203, 0, 113, 7];
const IP_B: [u8; 4] = [203, 0, 113, 8];
const LIVE: &[u8] = b"sk_live_2bYqQm7cJxHk0gT4aVb9";
const LIVE_2: &[u8] = b"sk_live_9ZzPp1rLwQe3uN6dYc2M";
const TEST: &[u8] = b"sk_test_Hn4Rk8sWq2Lm5Vb7Xc1Z";

/// The engine's id of the rule named `name` in the Clerk table.
fn rule(name: &str) -> Option<RuleId> {
    Some(model::engine_index(name))
}

/// The documented limit of row `name`.
fn limit(name: &str) -> u32 {
    model::row(name).limit
}

/// The documented period of row `name`, ns.
fn period(name: &str) -> u64 {
    model::row(name).period
}

/// `T = ⌈period / limit⌉` of row `name`, from DESIGN.md.
fn t_of(name: &str) -> u64 {
    emission(limit(name), period(name))
}

/// `T = ⌈period / limit⌉`, from DESIGN.md.
fn emission(limit: u32, period: u64) -> u64 {
    period.div_ceil(limit as u64)
}

/// `Retry-After = ⌈retry_after / 1 s⌉`, at least 1.
fn retry_secs(retry_after: u64) -> u32 {
    retry_after.div_ceil(SEC).max(1) as u32
}

/// The `RateLimit-Policy` item of row `name`: `"name";q=limit;w=period`.
fn policy(name: &str) -> String {
    format!("\"{name}\";q={};w={}", limit(name), period(name) / SEC)
}

/// A `RateLimit` field's `t`: `⌈reset⌉` seconds after dropping a
/// sub-microsecond remainder.
fn t_field(reset: u64) -> u64 {
    (reset / 1_000).div_ceil(1_000_000)
}

fn fapi(path: &[u8], ip: impl Into<IpAddr>) -> Request<'_> {
    Request::new(Api::Frontend, b"POST", path).ip(ip)
}

fn bapi<'r>(method: &'r [u8], path: &'r [u8], key: &'r [u8]) -> Request<'r> {
    Request::new(Api::Backend, method, path).key(key)
}

fn check(l: &Limiter<'_>, r: &Request<'_>, now: u64) -> Decision {
    l.check(r, Nanos(now))
        .unwrap_or_else(|e| panic!("{r:?}: {e:?}"))
}

fn text(f: impl FnOnce(&mut [u8]) -> Result<usize, usize>) -> String {
    let mut buf = [0u8; 512];
    let n = f(&mut buf).expect("fits in 512 bytes");
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

/// Drive `req` through row `name` from a fresh subject at `now`: exactly
/// its limit allowed back to back with the row binding, the next denied
/// with `retry_after = T`, one more allowed exactly `T` later and not 1 ns
/// earlier.
fn assert_row(l: &Limiter<'_>, req: &Request<'_>, name: &str, now: u64) {
    let (limit, t) = (limit(name), t_of(name));
    let id = rule(name);
    for i in 0..limit {
        let d = check(l, req, now);
        assert_eq!(
            d.verdict,
            Verdict::Allowed,
            "{name}: request {i} of the burst: {d:?}"
        );
        assert_eq!(d.rule, id, "{name}: binding rule of request {i}");
        assert_eq!(d.limit, limit, "{name}");
        assert_eq!(d.remaining, limit - 1 - i, "{name}: remaining after {i}");
        assert_eq!(
            d.reset,
            Nanos((i as u64 + 1) * t),
            "{name}: reset after {i}"
        );
        assert_eq!(d.retry_after(), None);
        assert_eq!(d.retry_after_secs(), None);
    }
    let d = check(l, req, now);
    assert!(
        !d.allowed(),
        "{name}: request {limit} must be denied: {d:?}"
    );
    assert_eq!(
        d.verdict,
        Verdict::Limited {
            retry_after: Nanos(t)
        },
        "{name}: retry_after = T"
    );
    assert!(!d.dry_run);
    assert_eq!(d.rule, id, "{name}: the denying rule binds");
    assert_eq!(d.limit, limit);
    assert_eq!(d.remaining, 0);
    assert_eq!(d.reset, Nanos(limit as u64 * t), "{name}: reset on deny");
    assert_eq!(
        d.retry_after_secs(),
        Some(retry_secs(t)),
        "{name}: Retry-After"
    );

    let d = check(l, req, now + t - 1);
    assert!(!d.allowed(), "{name}: 1 ns before T: {d:?}");
    assert_eq!(d.retry_after(), Some(Nanos(1)), "{name}: 1 ns left");
    assert_eq!(d.retry_after_secs(), Some(1));

    let d = check(l, req, now + t);
    assert!(d.allowed(), "{name}: exactly T later: {d:?}");
    assert_eq!(d.rule, id);
    assert_eq!(d.remaining, 0);
    let d = check(l, req, now + t);
    assert!(!d.allowed(), "{name}: only one came back after T: {d:?}");
    assert_eq!(d.retry_after(), Some(Nanos(t)));
}

// --- the rows, one by one -------------------------------------------------

#[test]
fn emission_intervals_and_retry_after_values_match_the_documented_examples() {
    // Checked by hand so that the helpers and the model's rows are not
    // trusted blindly: 5 / 10 s, 3 / 10 s, 100 / hour, 1000 / 10 s.
    assert_eq!(emission(5, 10 * SEC), 2 * SEC);
    assert_eq!(t_of("fapi.sign_ins.create"), 2 * SEC);
    assert_eq!(retry_secs(t_of("fapi.sign_ins.create")), 2);
    assert_eq!(t_of("fapi.sign_ins.attempt"), 3_333_333_334);
    assert_eq!(retry_secs(t_of("fapi.sign_ins.attempt")), 4);
    assert_eq!(t_of("bapi.invitations.create"), 36 * SEC);
    assert_eq!(period("bapi.invitations.create"), HOUR);
    assert_eq!(retry_secs(t_of("bapi.invitations.create")), 36);
    assert_eq!(t_of("bapi.instance.production"), 10_000_000);
    assert_eq!(retry_secs(t_of("bapi.instance.production")), 1);
}

#[test]
fn sign_in_creation_allows_five_per_ten_seconds_per_ip_then_retry_after_two() {
    let l = clerk();
    let r = fapi(b"/v1/client/sign_ins", IP_A);
    assert_row(&l, &r, "fapi.sign_ins.create", T0);
    // The documented shorthand path is the same limit, on a fresh IP.
    assert_row(&l, &fapi(b"/v1/sign_ins", IP_B), "fapi.sign_ins.create", T0);
}

#[test]
fn the_sign_in_shorthand_and_live_paths_share_one_limit() {
    let l = clerk();
    for _ in 0..limit("fapi.sign_ins.create") - 2 {
        assert!(check(&l, &fapi(b"/v1/client/sign_ins", IP_A), T0).allowed());
    }
    for _ in 0..2 {
        assert!(check(&l, &fapi(b"/v1/sign_ins", IP_A), T0).allowed());
    }
    assert!(!check(&l, &fapi(b"/v1/client/sign_ins", IP_A), T0).allowed());
    assert!(!check(&l, &fapi(b"/v1/sign_ins", IP_A), T0).allowed());
}

#[test]
fn sign_up_creation_allows_five_per_ten_seconds_per_ip() {
    let l = clerk();
    let r = fapi(b"/v1/client/sign_ups", IP_A);
    assert_row(&l, &r, "fapi.sign_ups.create", T0);
}

#[test]
fn sign_in_attempts_allow_three_per_ten_seconds_then_retry_after_four() {
    let l = clerk();
    let r = fapi(b"/v1/client/sign_ins/sia_2bYq/attempt_first_factor", IP_A);
    assert_row(&l, &r, "fapi.sign_ins.attempt", T0);
    // assert_row ended with one admission at T0 + T: the next waits T.
    let d = check(&l, &r, T0 + t_of("fapi.sign_ins.attempt"));
    assert_eq!(d.retry_after_secs(), Some(4), "⌈3.333 s⌉ = 4: {d:?}");
}

#[test]
fn first_and_second_factor_attempts_share_one_limit_across_sign_ins() {
    let l = clerk();
    let paths: [&[u8]; 3] = [
        b"/v1/client/sign_ins/sia_1/attempt_first_factor",
        b"/v1/client/sign_ins/sia_2/attempt_second_factor",
        b"/v1/sign_ins/attempt_second_factor",
    ];
    for p in paths {
        assert!(check(&l, &fapi(p, IP_A), T0).allowed(), "{p:?}");
    }
    // A fresh sign-in id does not buy a fresh limit.
    let d = check(
        &l,
        &fapi(b"/v1/client/sign_ins/sia_3/attempt_first_factor", IP_A),
        T0,
    );
    assert!(!d.allowed(), "{d:?}");
    assert_eq!(d.rule, rule("fapi.sign_ins.attempt"));
    // Attempts do not touch sign-in creation.
    assert!(check(&l, &fapi(b"/v1/client/sign_ins", IP_A), T0).allowed());
}

#[test]
fn sign_up_verification_attempts_allow_three_per_ten_seconds() {
    let l = clerk();
    let r = fapi(b"/v1/client/sign_ups/sua_9/attempt_verification", IP_A);
    assert_row(&l, &r, "fapi.sign_ups.attempt", T0);
}

#[test]
fn production_keys_get_a_thousand_backend_requests_per_ten_seconds() {
    let l = clerk();
    let r = bapi(b"GET", b"/v1/users/me", LIVE);
    assert_row(&l, &r, "bapi.instance.production", T0);
    let t = t_of("bapi.instance.production");
    let d = check(&l, &r, T0 + t);
    assert_eq!(d.retry_after(), Some(Nanos(t)), "T = 10 ms");
    assert_eq!(d.retry_after_secs(), Some(1), "Retry-After is at least 1");
}

#[test]
fn development_keys_get_a_hundred_backend_requests_per_ten_seconds() {
    let l = clerk();
    let r = bapi(b"GET", b"/v1/users/me", TEST);
    assert_row(&l, &r, "bapi.instance.development", T0);
}

#[test]
fn short_live_and_test_prefixes_name_the_instance_kind_too() {
    let l = clerk();
    let r = bapi(b"GET", b"/v1/users", b"live_abc");
    assert_row(&l, &r, "bapi.instance.production", T0);
    let r = bapi(b"GET", b"/v1/users", b"test_abc");
    assert_row(&l, &r, "bapi.instance.development", T0);
}

#[test]
fn an_unknown_key_prefix_gets_the_development_limit_by_default() {
    let l = clerk();
    let r = bapi(b"GET", b"/v1/users", b"rk_prod_7Hq2");
    assert_row(&l, &r, "bapi.instance.development", T0);
}

#[test]
fn an_unknown_key_prefix_gets_the_production_limit_when_configured() {
    let l = clerk_with(|c| c.unknown_kind = InstanceKind::Production);
    let r = bapi(b"GET", b"/v1/users", b"rk_prod_7Hq2");
    assert_row(&l, &r, "bapi.instance.production", T0);
    // Known prefixes keep their kind.
    let r = bapi(b"GET", b"/v1/users", TEST);
    assert_row(&l, &r, "bapi.instance.development", T0);
}

#[test]
fn invitations_allow_a_hundred_per_hour_then_retry_after_thirty_six() {
    let l = clerk();
    let r = bapi(b"POST", b"/v1/invitations", LIVE);
    assert_row(&l, &r, "bapi.invitations.create", T0);
}

#[test]
fn bulk_invitations_allow_twenty_five_per_hour() {
    let l = clerk();
    let r = bapi(b"POST", b"/v1/invitations/bulk", LIVE);
    assert_row(&l, &r, "bapi.invitations.bulk", T0);
}

#[test]
fn organization_invitations_allow_two_hundred_fifty_per_hour() {
    let l = clerk();
    let r = bapi(b"POST", b"/v1/organizations/org_1/invitations", LIVE);
    assert_row(&l, &r, "bapi.org_invitations.create", T0);
}

#[test]
fn organization_bulk_invitations_allow_fifty_per_hour() {
    let l = clerk();
    let r = bapi(b"POST", b"/v1/organizations/org_1/invitations/bulk", LIVE);
    assert_row(&l, &r, "bapi.org_invitations.bulk", T0);
}

#[test]
fn organization_invitations_are_limited_per_instance_not_per_organization() {
    // DESIGN.md: bapi.org_invitations.create | secret key | 250 / hour (the
    // scope column names no organization id, unlike the update rows).
    let l = clerk();
    for i in 0..limit("bapi.org_invitations.create") {
        let path = format!("/v1/organizations/org_{}/invitations", i % 5);
        let d = check(&l, &bapi(b"POST", path.as_bytes(), LIVE), T0);
        assert!(d.allowed(), "{i}: {d:?}");
    }
    let d = check(
        &l,
        &bapi(b"POST", b"/v1/organizations/org_new/invitations", LIVE),
        T0,
    );
    assert!(!d.allowed(), "the instance's 250 are used up: {d:?}");
    assert_eq!(d.rule, rule("bapi.org_invitations.create"));
    let d = check(
        &l,
        &bapi(b"POST", b"/v1/organizations/org_a/invitations/bulk", LIVE),
        T0,
    );
    assert!(d.allowed());
    for i in 1..limit("bapi.org_invitations.bulk") {
        let path = format!("/v1/organizations/org_{i}/invitations/bulk");
        assert!(check(&l, &bapi(b"POST", path.as_bytes(), LIVE), T0).allowed());
    }
    let d = check(
        &l,
        &bapi(b"POST", b"/v1/organizations/org_z/invitations/bulk", LIVE),
        T0,
    );
    assert!(
        !d.allowed(),
        "the instance's 50 bulk invitations are used up: {d:?}"
    );
}

#[test]
fn user_updates_allow_ten_per_ten_seconds_per_user() {
    let l = clerk();
    let a = bapi(b"PATCH", b"/v1/users/user_2bYqA", LIVE);
    assert_row(&l, &a, "bapi.users.update", T0);
    let b = bapi(b"PATCH", b"/v1/users/user_2bYqB", LIVE);
    let d = check(&l, &b, T0 + SEC);
    assert!(d.allowed(), "user B is untouched by user A: {d:?}");
    assert_eq!(d.rule, rule("bapi.users.update"));
    assert_eq!(d.remaining, limit("bapi.users.update") - 1);
}

#[test]
fn user_patch_and_put_metadata_share_the_user_limit() {
    let l = clerk();
    let user = bapi(b"PATCH", b"/v1/users/user_1", LIVE);
    let patch_meta = bapi(b"PATCH", b"/v1/users/user_1/metadata", LIVE);
    let put_meta = bapi(b"PUT", b"/v1/users/user_1/metadata", LIVE);
    let users = limit("bapi.users.update");
    for (i, r) in [user, patch_meta, put_meta]
        .iter()
        .cycle()
        .take(users as usize)
        .enumerate()
    {
        let d = check(&l, r, T0);
        assert!(d.allowed(), "{i}: {d:?}");
        assert_eq!(d.remaining, users - 1 - i as u32);
    }
    for r in [user, patch_meta, put_meta] {
        let d = check(&l, &r, T0);
        assert!(!d.allowed(), "{r:?}: {d:?}");
        assert_eq!(d.rule, rule("bapi.users.update"));
        assert_eq!(d.retry_after(), Some(Nanos(t_of("bapi.users.update"))));
    }
    // Reading a user is an instance-only request.
    assert!(check(&l, &bapi(b"GET", b"/v1/users/user_1", LIVE), T0).allowed());
}

#[test]
fn organization_updates_allow_ten_per_ten_seconds_per_organization() {
    let l = clerk();
    let a = bapi(b"PATCH", b"/v1/organizations/org_A", LIVE);
    assert_row(&l, &a, "bapi.organizations.update", T0);
    let meta = bapi(b"PUT", b"/v1/organizations/org_A/metadata", LIVE);
    assert!(
        !check(&l, &meta, T0 + SEC).allowed(),
        "metadata shares org A's limit"
    );
    let b = bapi(b"PATCH", b"/v1/organizations/org_B/metadata", LIVE);
    assert!(check(&l, &b, T0 + SEC).allowed(), "org B is separate");
}

#[test]
fn membership_updates_allow_ten_per_ten_seconds_per_membership() {
    let l = clerk();
    let m = bapi(
        b"PATCH",
        b"/v1/organizations/org_1/memberships/user_1",
        LIVE,
    );
    assert_row(&l, &m, "bapi.memberships.update", T0);
    let now = T0 + SEC;
    let meta = bapi(
        b"PATCH",
        b"/v1/organizations/org_1/memberships/user_1/metadata",
        LIVE,
    );
    assert!(
        !check(&l, &meta, now).allowed(),
        "metadata shares the membership"
    );
    for other in [
        &b"/v1/organizations/org_1/memberships/user_2"[..],
        b"/v1/organizations/org_2/memberships/user_1",
    ] {
        let d = check(&l, &bapi(b"PATCH", other, LIVE), now);
        assert!(d.allowed(), "{other:?} is another membership: {d:?}");
    }
    // Neither the user nor the organization limit was touched.
    assert_eq!(
        check(&l, &bapi(b"PATCH", b"/v1/users/user_1", LIVE), now).remaining,
        limit("bapi.users.update") - 1
    );
    assert_eq!(
        check(&l, &bapi(b"PATCH", b"/v1/organizations/org_1", LIVE), now).remaining,
        limit("bapi.organizations.update") - 1
    );
}

// --- rules combined -------------------------------------------------------

#[test]
fn an_invitation_counts_against_both_its_row_and_the_instance() {
    let l = clerk();
    let inv = bapi(b"POST", b"/v1/invitations", LIVE);
    let (invitations, instance) = (
        limit("bapi.invitations.create"),
        limit("bapi.instance.production"),
    );
    for _ in 0..invitations {
        assert!(check(&l, &inv, T0).allowed());
    }
    // The instance has 100 fewer: 900 left, of which this GET takes one.
    let d = check(&l, &bapi(b"GET", b"/v1/users/me", LIVE), T0);
    assert_eq!(d.rule, rule("bapi.instance.production"));
    assert_eq!(d.remaining, instance - invitations - 1);
    let mut more = 1;
    while check(&l, &bapi(b"GET", b"/v1/users/me", LIVE), T0).allowed() {
        more += 1;
    }
    assert_eq!(
        more,
        instance - invitations,
        "exactly 900 instance requests were left"
    );
}

#[test]
fn bulk_invitations_are_limited_separately_from_single_invitations() {
    let l = clerk();
    let bulk = bapi(b"POST", b"/v1/invitations/bulk", LIVE);
    let single = bapi(b"POST", b"/v1/invitations", LIVE);
    for _ in 0..limit("bapi.invitations.bulk") {
        assert!(check(&l, &bulk, T0).allowed());
    }
    assert!(!check(&l, &bulk, T0).allowed());
    // Single invitations are untouched by bulk: all 100 are there.
    let allowed = (0..150)
        .filter(|_| check(&l, &single, T0).allowed())
        .count();
    assert_eq!(allowed, limit("bapi.invitations.create") as usize);
    assert!(
        !check(&l, &bulk, T0).allowed(),
        "and bulk is still limited on its own"
    );
}

#[test]
fn a_request_denied_by_its_endpoint_row_charges_the_instance_nothing() {
    let l = clerk();
    let user = bapi(b"PATCH", b"/v1/users/user_1", TEST);
    let users = limit("bapi.users.update");
    for _ in 0..users {
        assert!(check(&l, &user, T0).allowed());
    }
    for _ in 0..25 {
        let d = check(&l, &user, T0);
        assert!(!d.allowed());
        assert_eq!(d.rule, rule("bapi.users.update"));
    }
    // The development instance (100) paid for the 10 allowed updates only.
    let me = bapi(b"GET", b"/v1/users/me", TEST);
    let allowed = (0..200).filter(|_| check(&l, &me, T0).allowed()).count();
    assert_eq!(allowed as u32, limit("bapi.instance.development") - users);
}

#[test]
fn a_request_denied_by_the_instance_charges_its_endpoint_row_nothing() {
    let l = clerk();
    let me = bapi(b"GET", b"/v1/users/me", LIVE);
    for _ in 0..limit("bapi.instance.production") {
        assert!(check(&l, &me, T0).allowed());
    }
    let inv = bapi(b"POST", b"/v1/invitations", LIVE);
    for _ in 0..30 {
        let d = check(&l, &inv, T0);
        assert!(!d.allowed());
        assert_eq!(d.rule, rule("bapi.instance.production"));
        assert_eq!(
            d.retry_after(),
            Some(Nanos(t_of("bapi.instance.production")))
        );
    }
    // Ten seconds on the instance is whole again; the invitation row was
    // never charged, so all 100 invitations are there.
    let now = T0 + period("bapi.instance.production");
    let invitations = limit("bapi.invitations.create");
    let d = check(&l, &inv, now);
    assert!(d.allowed());
    assert_eq!(d.rule, rule("bapi.invitations.create"));
    assert_eq!(d.remaining, invitations - 1);
    let allowed = 1 + (0..150).filter(|_| check(&l, &inv, now).allowed()).count();
    assert_eq!(allowed as u32, invitations);
}

#[test]
fn on_deny_the_denying_rule_with_the_longest_wait_binds() {
    let l = clerk();
    let inv = bapi(b"POST", b"/v1/invitations", TEST);
    // 100 invitations exhaust both the development instance (100 / 10 s)
    // and the invitation row (100 / hour).
    let invitations = limit("bapi.invitations.create");
    assert_eq!(invitations, limit("bapi.instance.development"));
    for _ in 0..invitations {
        assert!(check(&l, &inv, T0).allowed());
    }
    let d = check(&l, &inv, T0);
    assert!(!d.allowed());
    assert_eq!(d.rule, rule("bapi.invitations.create"), "36 s beats 100 ms");
    assert_eq!(d.limit, invitations);
    let t = t_of("bapi.invitations.create");
    assert_eq!(d.retry_after(), Some(Nanos(t)));
    assert_eq!(d.retry_after_secs(), Some(retry_secs(t)));
    assert_eq!(d.reset, Nanos(period("bapi.invitations.create")));
    // Only the instance denies a plain read, with its own wait.
    let d = check(&l, &bapi(b"GET", b"/v1/users/me", TEST), T0);
    assert_eq!(d.rule, rule("bapi.instance.development"));
    assert_eq!(
        d.retry_after(),
        Some(Nanos(t_of("bapi.instance.development")))
    );
}

#[test]
fn on_allow_the_rule_with_the_smallest_fraction_of_its_burst_left_binds() {
    let l = clerk();
    let user = bapi(b"PATCH", b"/v1/users/user_1", TEST);
    // users.update 9/10 left versus the instance's 99/100.
    let (users, instance) = (
        limit("bapi.users.update"),
        limit("bapi.instance.development"),
    );
    let d = check(&l, &user, T0);
    assert_eq!(d.rule, rule("bapi.users.update"));
    assert_eq!((d.limit, d.remaining), (users, users - 1));
    assert_eq!(d.reset, Nanos(t_of("bapi.users.update")));
    let me = bapi(b"GET", b"/v1/users/me", TEST);
    // Leave the instance 4 of 100 after the next update, users 8 of 10.
    let reads = instance - 1 - 4 - 1;
    for _ in 0..reads {
        assert!(check(&l, &me, T0).allowed());
    }
    let d = check(&l, &user, T0);
    assert!(d.allowed());
    assert_eq!(
        d.rule,
        rule("bapi.instance.development"),
        "4/100 is tighter than 8/10"
    );
    assert_eq!((d.limit, d.remaining), (instance, 4));
    assert_eq!(
        d.reset,
        Nanos((instance - 4) as u64 * t_of("bapi.instance.development"))
    );
}

// --- exempt and unmatched requests ----------------------------------------

#[test]
fn jwks_is_exempt_stores_nothing_and_never_touches_the_instance_limit() {
    let l = clerk();
    let jwks = bapi(b"GET", b"/v1/jwks", TEST);
    let before = l.stats();
    for _ in 0..1000 {
        let d = check(&l, &jwks, T0);
        assert_eq!(
            d,
            Decision {
                verdict: Verdict::Exempt,
                rule: rule("bapi.jwks"),
                matched: d.matched,
                ..Decision::UNMATCHED
            }
        );
        assert!(d.allowed() && d.matched.contains(rule("bapi.jwks").unwrap()));
        assert_eq!(d.limit, 0);
        assert_eq!(d.remaining, 0);
    }
    let after = l.stats();
    assert_eq!(after.occupancy, before.occupancy, "nothing stored");
    assert_eq!(after.inserts, before.inserts, "nothing stored");
    // The development instance still has all of its 100.
    let me = bapi(b"GET", b"/v1/users/me", TEST);
    let allowed = (0..150).filter(|_| check(&l, &me, T0).allowed()).count();
    assert_eq!(allowed as u32, limit("bapi.instance.development"));
    // And with the instance exhausted, jwks is still served.
    assert_eq!(check(&l, &jwks, T0).verdict, Verdict::Exempt);
    // Only GET is exempt.
    let d = check(&l, &bapi(b"POST", b"/v1/jwks", TEST), T0);
    assert!(d.verdict != Verdict::Exempt && !d.allowed(), "{d:?}");
}

#[test]
fn a_request_matching_no_rule_is_allowed_with_no_rule_and_stores_nothing() {
    let l = clerk();
    let r = Request::new(Api::Frontend, b"GET", b"/v1/client").ip(IP_A);
    let before = l.stats();
    for _ in 0..50 {
        let d = check(&l, &r, T0);
        assert_eq!(d, Decision::UNMATCHED);
        assert_eq!(d.rule, None);
        assert!(d.allowed() && !d.is_limited() && !d.dry_run && d.matched.is_empty());
        assert_eq!((d.limit, d.remaining, d.retry_after_secs()), (0, 0, None));
        assert_eq!((d.reset, d.retry_after()), (Nanos(0), None));
        let mut buf = [7u8; 64];
        assert_eq!(d.write_retry_after(&mut buf), Ok(0));
        assert_eq!(d.write_ratelimit_policy(&CLERK, &mut buf), Ok(0));
        assert_eq!(d.write_ratelimit(&CLERK, &mut buf), Ok(0));
    }
    let after = l.stats();
    assert_eq!(after.occupancy, before.occupancy);
    assert_eq!(after.inserts, before.inserts);
    // Even without an IP: no rule, no subject needed.
    let r = Request::new(Api::Frontend, b"GET", b"/v1/environment");
    assert_eq!(check(&l, &r, T0), Decision::UNMATCHED);
}

// --- subjects -------------------------------------------------------------

#[test]
fn frontend_limits_are_per_client_ip() {
    let l = clerk();
    for _ in 0..limit("fapi.sign_ins.create") {
        assert!(check(&l, &fapi(b"/v1/client/sign_ins", IP_A), T0).allowed());
    }
    assert!(!check(&l, &fapi(b"/v1/client/sign_ins", IP_A), T0).allowed());
    assert!(check(&l, &fapi(b"/v1/client/sign_ins", IP_B), T0).allowed());
}

#[test]
fn an_ipv4_mapped_ipv6_address_is_the_same_client_as_the_ipv4_address() {
    let l = clerk();
    let mut mapped = [0u8; 16];
    mapped[10] = 0xff;
    mapped[11] = 0xff;
    mapped[12..].copy_from_slice(&IP_A);
    for i in 0..limit("fapi.sign_ins.create") {
        let ip: IpAddr = if i % 2 == 0 {
            IP_A.into()
        } else {
            mapped.into()
        };
        assert!(check(&l, &fapi(b"/v1/client/sign_ins", ip), T0).allowed());
    }
    assert!(!check(&l, &fapi(b"/v1/client/sign_ins", mapped), T0).allowed());
    assert!(!check(&l, &fapi(b"/v1/client/sign_ins", IP_A), T0).allowed());
}

#[test]
fn ipv6_clients_are_keyed_on_their_slash_64_by_default() {
    let a: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1];
    let mut same_64 = a;
    same_64[15] = 0x99;
    same_64[8] = 0x42;
    let mut other_64 = a;
    other_64[7] = 3;
    let l = clerk();
    let burst = limit("fapi.sign_ins.create");
    for i in 0..burst {
        let ip = if i % 2 == 0 { a } else { same_64 };
        assert!(check(&l, &fapi(b"/v1/client/sign_ins", ip), T0).allowed());
    }
    assert!(!check(&l, &fapi(b"/v1/client/sign_ins", same_64), T0).allowed());
    assert!(check(&l, &fapi(b"/v1/client/sign_ins", other_64), T0).allowed());

    let l = clerk_with(|c| c.ipv6_prefix = 128);
    for _ in 0..burst {
        assert!(check(&l, &fapi(b"/v1/client/sign_ins", a), T0).allowed());
    }
    assert!(
        check(&l, &fapi(b"/v1/client/sign_ins", same_64), T0).allowed(),
        "/128: another client"
    );
}

#[test]
fn tenants_separate_frontend_clients_with_the_same_ip() {
    let l = clerk();
    let r = fapi(b"/v1/client/sign_ins", IP_A);
    for _ in 0..limit("fapi.sign_ins.create") {
        assert!(check(&l, &r.tenant(b"acme"), T0).allowed());
    }
    assert!(!check(&l, &r.tenant(b"acme"), T0).allowed());
    assert!(
        check(&l, &r.tenant(b"globex"), T0).allowed(),
        "another tenant"
    );
    assert!(
        check(&l, &r, T0).allowed(),
        "no tenant is its own namespace"
    );
}

#[test]
fn on_backend_a_tenant_replaces_the_key_so_its_keys_share_limits() {
    let l = clerk();
    let k1 = bapi(b"PATCH", b"/v1/users/user_1", LIVE).tenant(b"ins_acme");
    let k2 = bapi(b"PATCH", b"/v1/users/user_1", LIVE_2).tenant(b"ins_acme");
    let users = limit("bapi.users.update");
    for i in 0..users {
        let r = if i % 2 == 0 { k1 } else { k2 };
        assert!(check(&l, &r, T0).allowed(), "{i}");
    }
    assert!(!check(&l, &k1, T0).allowed());
    assert!(!check(&l, &k2, T0).allowed());
    // Another tenant with the same key is another instance.
    assert!(check(&l, &k1.tenant(b"ins_globex"), T0).allowed());
    // Without tenants, two keys are two instances.
    let l = clerk();
    for _ in 0..users {
        assert!(check(&l, &bapi(b"PATCH", b"/v1/users/user_1", LIVE), T0).allowed());
    }
    assert!(check(&l, &bapi(b"PATCH", b"/v1/users/user_1", LIVE_2), T0).allowed());
}

#[test]
fn with_a_tenant_the_key_prefix_still_gives_the_instance_kind() {
    let l = clerk();
    let dev = bapi(b"GET", b"/v1/users/me", TEST).tenant(b"ins_acme");
    assert_row(&l, &dev, "bapi.instance.development", T0);
    let prod = bapi(b"GET", b"/v1/users/me", LIVE).tenant(b"ins_acme");
    assert_row(&l, &prod, "bapi.instance.production", T0);
}

#[test]
fn a_bearer_authorization_value_is_the_same_key_as_the_raw_key() {
    let l = clerk();
    let bearer = [&b"Bearer "[..], LIVE].concat();
    let raw = bapi(b"PATCH", b"/v1/users/user_1", LIVE);
    let auth = bapi(b"PATCH", b"/v1/users/user_1", &bearer);
    let users = limit("bapi.users.update");
    for i in 0..users {
        let r = if i % 2 == 0 { raw } else { auth };
        assert!(check(&l, &r, T0).allowed(), "{i}");
    }
    assert!(!check(&l, &auth, T0).allowed());
    assert!(!check(&l, &raw, T0).allowed());
    // And the prefix under `Bearer` still names a production instance.
    let d = check(&l, &bapi(b"GET", b"/v1/users/me", &bearer), T0);
    assert_eq!(d.rule, rule("bapi.instance.production"));
    assert_eq!(d.remaining, limit("bapi.instance.production") - users - 1);
}

#[test]
fn a_backend_request_without_a_key_is_charged_by_client_ip_at_the_development_limit() {
    let l = clerk();
    let r = Request::new(Api::Backend, b"GET", b"/v1/users/me").ip(IP_A);
    assert_row(&l, &r, "bapi.instance.development", T0);
    let other = Request::new(Api::Backend, b"GET", b"/v1/users/me").ip(IP_B);
    assert!(check(&l, &other, T0).allowed(), "another IP");
}

#[test]
fn requests_lacking_the_subject_of_a_matched_rule_are_invalid_arguments() {
    let l = clerk();
    let no_ip = Request::new(Api::Frontend, b"POST", b"/v1/client/sign_ins");
    assert_eq!(l.check(&no_ip, Nanos(T0)), Err(CheckError::MissingSubject));
    assert_eq!(l.peek(&no_ip, Nanos(T0)), Err(CheckError::MissingSubject));
    let nothing = Request::new(Api::Backend, b"GET", b"/v1/users/me");
    assert_eq!(
        l.check(&nothing, Nanos(T0)),
        Err(CheckError::MissingSubject)
    );
    assert_eq!(l.stats().occupancy, 0);
}

#[test]
fn an_authorization_value_with_an_empty_bearer_token_carries_no_key() {
    // `Bearer ` with the prefix stripped is the empty key: no key at all.
    let l = clerk();
    let blank = Request::new(Api::Backend, b"GET", b"/v1/users/me").key(b"Bearer ");
    assert_eq!(l.check(&blank, Nanos(T0)), Err(CheckError::MissingSubject));
    // With an IP it is charged by that IP, like a request without a key,
    // not under one key named `Bearer` shared by every such client.
    let by_ip = Request::new(Api::Backend, b"GET", b"/v1/users/me").ip(IP_A);
    for _ in 0..limit("bapi.instance.development") / 2 {
        assert!(check(&l, &blank.ip(IP_A), T0).allowed());
        assert!(check(&l, &by_ip, T0).allowed());
    }
    assert!(!check(&l, &blank.ip(IP_A), T0).allowed());
    assert!(check(&l, &blank.ip(IP_B), T0).allowed(), "another client");
}

// --- dry run, peek, cost --------------------------------------------------

#[test]
fn dry_run_allows_reports_the_would_be_denial_and_consumes_nothing() {
    let mut memory = Memory::for_capacity(4096);
    let config = Config {
        capacity: 4096,
        dry_run: true,
        ..Config::DEFAULT
    };
    let r = fapi(b"/v1/client/sign_ins", IP_A);
    let (burst, t) = (limit("fapi.sign_ins.create"), t_of("fapi.sign_ins.create"));
    {
        let dry = Limiter::init(memory.bytes(), &config, CLERK, SEED).unwrap();
        for i in 0..burst {
            let d = check(&dry, &r, T0);
            assert!(d.allowed() && !d.dry_run, "{i}: {d:?}");
            assert_eq!(d.verdict, Verdict::Allowed);
        }
        for _ in 0..7 {
            let d = check(&dry, &r, T0);
            assert!(d.allowed(), "dry run never denies");
            assert!(d.dry_run && d.is_limited());
            assert_eq!(d.rule, rule("fapi.sign_ins.create"));
            assert_eq!(
                d.verdict,
                Verdict::Limited {
                    retry_after: Nanos(t)
                },
                "as if enforced: T, not more"
            );
            assert_eq!(d.retry_after_secs(), Some(retry_secs(t)));
            assert_eq!((d.limit, d.remaining), (burst, 0));
            let mut buf = [0u8; 8];
            assert_eq!(d.write_retry_after(&mut buf), Ok(1));
            assert_eq!(&buf[..1], b"2");
            let mut buf = [0u8; 512];
            let response = d.write_response(&CLERK, &mut buf).unwrap();
            assert_eq!(response.status, 0, "the request goes on");
            assert!(response.body.is_empty());
        }
        let s = dry.stats();
        assert_eq!(
            (s.allowed, s.limited, s.dry_run_limited),
            (burst as u64, 0, 7),
            "would-be denials count apart from enforced ones"
        );
    }
    // An enforcing handle on the same memory sees exactly the burst used.
    let enforcing = Limiter::attach(memory.bytes(), CLERK, HandleOptions::default()).unwrap();
    assert!(!enforcing.config().dry_run);
    let d = check(&enforcing, &r, T0);
    assert!(!d.allowed() && !d.dry_run);
    assert_eq!(
        d.retry_after(),
        Some(Nanos(t)),
        "dry-run denials charged nothing"
    );
    assert!(!check(&enforcing, &r, T0 + t - 1).allowed());
    assert!(check(&enforcing, &r, T0 + t).allowed());
}

#[test]
fn dry_run_is_a_per_handle_option_on_attach() {
    let mut memory = Memory::for_capacity(4096);
    let config = Config {
        capacity: 4096,
        ..Config::DEFAULT
    };
    Limiter::init(memory.bytes(), &config, CLERK, SEED).unwrap();
    let dry = Limiter::attach(
        memory.bytes(),
        CLERK,
        HandleOptions {
            dry_run: true,
            policy: None,
        },
    )
    .unwrap();
    let r = fapi(b"/v1/client/sign_ins", IP_A);
    for _ in 0..limit("fapi.sign_ins.create") {
        assert!(!check(&dry, &r, T0).dry_run);
    }
    let d = check(&dry, &r, T0);
    assert!(d.allowed() && d.dry_run, "{d:?}");
}

#[test]
fn dry_run_denials_on_multi_rule_requests_charge_no_rule() {
    let l = clerk_with(|c| c.dry_run = true);
    let user = bapi(b"PATCH", b"/v1/users/user_1", TEST);
    let users = limit("bapi.users.update");
    for _ in 0..users {
        assert!(!check(&l, &user, T0).dry_run);
    }
    for _ in 0..20 {
        let d = check(&l, &user, T0);
        assert!(d.allowed() && d.dry_run);
        assert_eq!(d.rule, rule("bapi.users.update"));
    }
    // The instance paid for 10 only: 90 left, the first of which this takes.
    let d = check(&l, &bapi(b"GET", b"/v1/users/me", TEST), T0);
    assert_eq!(d.remaining, limit("bapi.instance.development") - users - 1);
}

#[test]
fn peek_consumes_nothing_and_agrees_with_the_check_that_follows() {
    let l = clerk();
    let requests = [
        fapi(b"/v1/client/sign_ins", IP_A),
        fapi(b"/v1/client/sign_ins/x/attempt_first_factor", IP_A).cost(2),
        bapi(b"PATCH", b"/v1/users/user_1", TEST),
        bapi(b"POST", b"/v1/invitations", LIVE).cost(7),
        bapi(b"GET", b"/v1/jwks", LIVE),
        bapi(b"PATCH", b"/v1/users/user_1", TEST).cost(11),
        Request::new(Api::Frontend, b"GET", b"/v1/client").ip(IP_A),
    ];
    let mut now = T0;
    for step in 0..60 {
        let r = &requests[step % requests.len()];
        let stats = l.stats();
        let first = l.peek(r, Nanos(now)).unwrap();
        let again = l.peek(r, Nanos(now)).unwrap();
        assert_eq!(first, again, "peeking twice changes nothing");
        assert_eq!(l.stats(), stats, "peek counts and stores nothing");
        let checked = check(&l, r, now);
        assert_eq!(first, checked, "step {step}: {r:?}");
        now += 150_000_000;
    }
    // A peek at a fresh subject inserts nothing.
    let occupancy = l.stats().occupancy;
    let _ = l
        .peek(&fapi(b"/v1/client/sign_ups", IP_B), Nanos(now))
        .unwrap();
    assert_eq!(l.stats().occupancy, occupancy);
}

#[test]
fn a_request_of_cost_three_charges_three_units() {
    let l = clerk();
    let r = fapi(b"/v1/client/sign_ins", IP_A);
    let (burst, t) = (limit("fapi.sign_ins.create"), t_of("fapi.sign_ins.create"));
    let d = check(&l, &r.cost(3), T0);
    assert!(d.allowed());
    assert_eq!(d.remaining, burst - 3);
    assert_eq!(d.reset, Nanos(3 * t));
    // 2 left: a cost of 3 waits one T, then fits.
    let d = check(&l, &r.cost(3), T0);
    assert!(!d.allowed() && d.verdict != Verdict::NeverFits);
    assert_eq!(d.retry_after(), Some(Nanos((3 - (burst - 3)) as u64 * t)));
    assert_eq!(d.remaining, burst - 3, "a denial charges nothing");
    assert!(check(&l, &r.cost(burst - 3), T0).allowed());
    assert!(!check(&l, &r, T0).allowed());
    // Cost 0 means 1.
    let d = check(&l, &r.cost(0), T0 + t);
    assert!(d.allowed());
    assert!(!check(&l, &r.cost(0), T0 + t).allowed());
}

#[test]
fn a_cost_above_the_burst_never_fits_and_gets_no_retry_after() {
    let l = clerk();
    let r = fapi(b"/v1/client/sign_ins", IP_A);
    let burst = limit("fapi.sign_ins.create");
    let d = check(&l, &r.cost(burst + 1), T0);
    assert!(!d.allowed() && d.verdict == Verdict::NeverFits);
    assert_eq!(d.rule, rule("fapi.sign_ins.create"));
    assert_eq!(d.retry_after(), None);
    assert_eq!(d.retry_after_secs(), None);
    let mut buf = [b'x'; 8];
    assert_eq!(d.write_retry_after(&mut buf), Ok(0), "no Retry-After");
    assert_eq!(buf, [b'x'; 8]);
    // Nothing was charged: the whole burst is still there.
    for _ in 0..burst {
        assert!(check(&l, &r, T0).allowed());
    }
    // The attempt rows' burst is 3.
    let d = check(
        &l,
        &fapi(b"/v1/sign_ins/attempt_first_factor", IP_A).cost(limit("fapi.sign_ins.attempt") + 1),
        T0,
    );
    assert_eq!(d.verdict, Verdict::NeverFits);
    // Backend: the user row's burst (10) binds even though the instance fits.
    let too_many = limit("bapi.users.update") + 1;
    let d = check(
        &l,
        &bapi(b"PATCH", b"/v1/users/user_1", LIVE).cost(too_many),
        T0,
    );
    assert!(!d.allowed() && d.verdict == Verdict::NeverFits, "{d:?}");
    assert_eq!(d.rule, rule("bapi.users.update"));
    assert_eq!((d.retry_after(), d.retry_after_secs()), (None, None));
    let mut buf = [0u8; 512];
    let response = d.write_response(&CLERK, &mut buf).unwrap();
    assert_eq!(response.status, 429);
    assert!(response.retry_after.is_empty(), "no wait helps");
    let d = check(&l, &bapi(b"GET", b"/v1/users/me", LIVE), T0);
    assert_eq!(
        d.remaining,
        limit("bapi.instance.production") - 1,
        "the never-fitting request charged the instance nothing"
    );
}

#[test]
fn a_never_fitting_cost_binds_over_a_rule_that_merely_has_to_wait() {
    let l = clerk();
    let me = bapi(b"GET", b"/v1/users/me", TEST);
    for _ in 0..limit("bapi.instance.development") {
        assert!(check(&l, &me, T0).allowed());
    }
    // The instance would need a wait; users.update can never fit 11.
    let too_many = limit("bapi.users.update") + 1;
    let d = check(
        &l,
        &bapi(b"PATCH", b"/v1/users/user_1", TEST).cost(too_many),
        T0,
    );
    assert!(d.verdict == Verdict::NeverFits, "{d:?}");
    assert_eq!(d.rule, rule("bapi.users.update"));
    assert_eq!(d.retry_after_secs(), None);
}

// --- what is sent back ----------------------------------------------------

#[test]
fn ratelimit_fields_for_a_sign_in_use_the_draft_syntax() {
    let l = clerk();
    let r = fapi(b"/v1/client/sign_ins", IP_A);
    let name = "fapi.sign_ins.create";
    let (burst, t) = (limit(name), t_of(name));
    let d = check(&l, &r, T0);
    assert_eq!(policy(name), r#""fapi.sign_ins.create";q=5;w=10"#);
    assert_eq!(text(|b| d.write_ratelimit_policy(&CLERK, b)), policy(name));
    // r = 5 - 1, t = ⌈T⌉ = 2 s.
    assert_eq!(
        text(|b| d.write_ratelimit(&CLERK, b)),
        format!("\"{name}\";r={};t={}", burst - 1, t_field(t))
    );
    for _ in 0..burst - 2 {
        check(&l, &r, T0);
    }
    let d = check(&l, &r, T0 + SEC / 2);
    // Five charged at T0 (TAT = T0 + 10 s), minus the half second passed:
    // reset 9.5 s → t = 10; remaining ⌊(0.5 + 10 − 10) / 2⌋ = 0.
    assert_eq!(
        text(|b| d.write_ratelimit(&CLERK, b)),
        format!("\"{name}\";r=0;t={}", t_field(burst as u64 * t - SEC / 2))
    );
    let d = check(&l, &r, T0 + SEC / 2);
    assert!(!d.allowed());
    // retry_after = 10 + 2 − 8 − 2 − 0.5 = 1.5 s → Retry-After 2.
    assert_eq!(d.retry_after(), Some(Nanos(t - SEC / 2)));
    assert_eq!(
        text(|b| d.write_retry_after(b)),
        retry_secs(t - SEC / 2).to_string()
    );
}

#[test]
fn ratelimit_t_rounds_up_whole_microseconds_only() {
    // T = 3 333 333 334 ns → 3 333 333 µs (dropping 334 ns) → t = 4.
    let l = clerk();
    let d = check(
        &l,
        &fapi(b"/v1/client/sign_ups/x/attempt_verification", IP_A),
        T0,
    );
    let name = "fapi.sign_ups.attempt";
    assert_eq!(t_field(t_of(name)), 4);
    assert_eq!(
        text(|b| d.write_ratelimit(&CLERK, b)),
        format!("\"{name}\";r={};t=4", limit(name) - 1)
    );
    // A reset of 2 s + 999 ns reads t=2; 2 s + 1 µs reads t=3.
    const RULES: &[Rule<'static>] = &[
        Rule::new(
            "t.sub_micro",
            Api::Backend,
            Scope::Instance,
            &[Route::new(Method::Get, "/a")],
            Quota::new(1, Nanos(2 * SEC + 999)),
        ),
        Rule::new(
            "t.one_micro",
            Api::Backend,
            Scope::Instance,
            &[Route::new(Method::Get, "/b")],
            Quota::new(1, Nanos(2 * SEC + 1_000)),
        ),
    ];
    const TABLE: RuleTable<'static> = RuleTable::new(RULES);
    let l = limiter_with(
        Config {
            capacity: 64,
            ..Config::DEFAULT
        },
        TABLE,
    );
    let a = l.check(&bapi(b"GET", b"/a", LIVE), Nanos(T0)).unwrap();
    assert_eq!(a.reset, Nanos(2 * SEC + 999));
    assert_eq!(
        text(|b| a.write_ratelimit(&TABLE, b)),
        r#""t.sub_micro";r=0;t=2"#
    );
    let b = l.check(&bapi(b"GET", b"/b", LIVE), Nanos(T0)).unwrap();
    assert_eq!(
        text(|buf| b.write_ratelimit(&TABLE, buf)),
        r#""t.one_micro";r=0;t=3"#
    );
}

#[test]
fn ratelimit_policy_lists_every_matched_rule_of_a_user_update() {
    let l = clerk();
    let d = check(&l, &bapi(b"PATCH", b"/v1/users/user_1", LIVE), T0);
    assert_eq!(
        text(|b| d.write_ratelimit_policy(&CLERK, b)),
        format!(
            "{}, {}",
            policy("bapi.instance.production"),
            policy("bapi.users.update")
        )
    );
    // The binding rule is users.update: 9 left, T = 1 s.
    let users = "bapi.users.update";
    assert_eq!(
        text(|b| d.write_ratelimit(&CLERK, b)),
        format!(
            "\"{users}\";r={};t={}",
            limit(users) - 1,
            t_field(t_of(users))
        )
    );
    let d = check(&l, &bapi(b"POST", b"/v1/invitations", TEST), T0);
    assert_eq!(
        text(|b| d.write_ratelimit_policy(&CLERK, b)),
        format!(
            "{}, {}",
            policy("bapi.instance.development"),
            policy("bapi.invitations.create")
        )
    );
    assert!(policy("bapi.invitations.create").ends_with(";w=3600"));
}

#[test]
fn exempt_requests_write_no_ratelimit_fields() {
    let l = clerk();
    let d = check(&l, &bapi(b"GET", b"/v1/jwks", LIVE), T0);
    assert!(d.verdict == Verdict::Exempt);
    let mut buf = [0u8; 64];
    assert_eq!(d.write_ratelimit_policy(&CLERK, &mut buf), Ok(0));
    assert_eq!(d.write_ratelimit(&CLERK, &mut buf), Ok(0));
    assert_eq!(d.write_retry_after(&mut buf), Ok(0));
}

#[test]
fn retry_after_is_written_only_on_a_denial() {
    let l = clerk();
    let r = fapi(b"/v1/sign_ins/attempt_first_factor", IP_A);
    for _ in 0..limit("fapi.sign_ins.attempt") {
        let d = check(&l, &r, T0);
        assert_eq!(text(|b| d.write_retry_after(b)), "");
    }
    let d = check(&l, &r, T0);
    assert_eq!(text(|b| d.write_retry_after(b)), "4");
    let inv = bapi(b"POST", b"/v1/invitations", LIVE);
    for _ in 0..limit("bapi.invitations.create") {
        check(&l, &inv, T0);
    }
    assert_eq!(text(|b| check(&l, &inv, T0).write_retry_after(b)), "36");
}

#[test]
fn the_429_body_is_clerks_documented_text() {
    const DOCUMENTED: &str = concat!(
        r#"{"errors":[{"message":"Too many requests","#,
        r#""long_message":"Too many requests, retry later","code":"too_many_requests","#,
        r#""meta":{}}]}"#
    );
    assert_eq!(CLERK_429_BODY, DOCUMENTED);
    assert_eq!(text(write_429_body), DOCUMENTED);
}

#[test]
fn a_short_buffer_reports_the_length_needed_and_is_left_untouched() {
    let l = clerk();
    let r = fapi(b"/v1/client/sign_ins", IP_A);
    for _ in 0..limit("fapi.sign_ins.create") {
        check(&l, &r, T0);
    }
    let d = check(&l, &r, T0 + SEC / 3);
    assert!(!d.allowed());
    type Writer<'w> = Box<dyn Fn(&mut [u8]) -> Result<usize, usize> + 'w>;
    // The whole response too: its length needed, or its fields.
    let whole = |b: &mut [u8]| match d.write_response(&CLERK, b) {
        Ok(r) => Ok(r.body.end.max(r.ratelimit.end)),
        Err(n) => Err(n),
    };
    let writers: [(&str, Writer<'_>); 5] = [
        ("response", Box::new(whole)),
        ("retry-after", Box::new(|b| d.write_retry_after(b))),
        ("policy", Box::new(|b| d.write_ratelimit_policy(&CLERK, b))),
        ("ratelimit", Box::new(|b| d.write_ratelimit(&CLERK, b))),
        ("body", Box::new(write_429_body)),
    ];
    for (name, write) in &writers {
        let full = text(write);
        let needed = full.len();
        assert!(needed > 0, "{name}");
        for len in [0, needed - 1] {
            let mut buf = vec![0xA5u8; len];
            assert_eq!(write(&mut buf), Err(needed), "{name} into {len} bytes");
            assert!(buf.iter().all(|&b| b == 0xA5), "{name}: buffer written");
        }
        let mut buf = vec![0xA5u8; needed];
        assert_eq!(write(&mut buf), Ok(needed), "{name}: exact fit");
        assert_eq!(buf, full.as_bytes());
    }
}

// --- reset and counters ---------------------------------------------------

#[test]
fn reset_forgets_one_subject_and_no_other() {
    let l = clerk();
    let a = fapi(b"/v1/client/sign_ins", IP_A);
    let b = fapi(b"/v1/client/sign_ins", IP_B);
    let burst = limit("fapi.sign_ins.create");
    for _ in 0..burst {
        check(&l, &a, T0);
        check(&l, &b, T0);
    }
    assert_eq!(l.reset(&a), Ok(1));
    for i in 0..burst {
        assert!(check(&l, &a, T0).allowed(), "{i}: A starts over");
    }
    assert!(!check(&l, &a, T0).allowed());
    assert!(!check(&l, &b, T0).allowed(), "B is untouched");
    // A user update: both its rules are forgotten for this subject only.
    let u1 = bapi(b"PATCH", b"/v1/users/user_1", LIVE);
    let u2 = bapi(b"PATCH", b"/v1/users/user_2", LIVE);
    let users = limit("bapi.users.update");
    for _ in 0..users {
        check(&l, &u1, T0);
        check(&l, &u2, T0);
    }
    assert_eq!(l.reset(&u1), Ok(2));
    assert_eq!(check(&l, &u1, T0).remaining, users - 1);
    assert!(!check(&l, &u2, T0).allowed());
    // Resetting a subject with no state clears nothing.
    assert_eq!(l.reset(&fapi(b"/v1/client/sign_ups", IP_A)), Ok(0));
}

#[test]
fn stats_count_allowed_and_denied_decisions_per_binding_rule() {
    let l = clerk();
    let r = fapi(b"/v1/client/sign_ins", IP_A);
    let (sign_ins, users) = (limit("fapi.sign_ins.create"), limit("bapi.users.update"));
    for _ in 0..sign_ins + 2 {
        check(&l, &r, T0);
    }
    let user = bapi(b"PATCH", b"/v1/users/user_1", LIVE);
    for _ in 0..users + 2 {
        check(&l, &user, T0);
    }
    for _ in 0..3 {
        check(&l, &bapi(b"GET", b"/v1/jwks", LIVE), T0);
        check(
            &l,
            &Request::new(Api::Frontend, b"GET", b"/v1/client").ip(IP_A),
            T0,
        );
        let _ = l.peek(&r, Nanos(T0));
    }
    let counted = |allowed: u32, limited, exempt| {
        Some(RuleStats {
            allowed: allowed as u64,
            limited,
            dry_run_limited: 0,
            exempt,
        })
    };
    let stats = |name| l.rule_stats(rule(name).unwrap());
    assert_eq!(stats("fapi.sign_ins.create"), counted(sign_ins, 2, 0));
    assert_eq!(stats("bapi.users.update"), counted(users, 2, 0));
    assert_eq!(stats("bapi.instance.production"), counted(0, 0, 0));
    assert_eq!(stats("bapi.jwks"), counted(0, 0, 3), "exempt counts apart");
    assert_eq!(l.rule_stats(RuleId(CLERK.len() as u8)), None);
    let s = l.stats();
    assert_eq!(
        s.allowed,
        (sign_ins + users) as u64,
        "exempt and unmatched requests and peeks are not counted as allowed"
    );
    assert_eq!((s.exempt, s.unmatched, s.errors), (3, 3, 0));
    assert_eq!(s.limited, 2 + 2);
    assert_eq!(s.dry_run_limited, 0);
    assert_eq!((s.evicted, s.evicted_in_debt, s.full), (0, 0, 0));
    assert_eq!(s.inserts, 3);
    // Three live slots: the IP's sign-ins, the instance, the user.
    assert_eq!(s.occupancy, 3);
}
