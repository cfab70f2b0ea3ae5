//! Clerk's documented rate-limit table, as data.
//!
//! [`CLERK`] holds one [`Rule`] per row of Clerk's rate-limit documentation,
//! in this order (the index is the rule's number in decisions and slot tags,
//! and the name appears in `RateLimit` fields):
//!
//! | index | name | scope | routes | quota |
//! | --- | --- | --- | --- | --- |
//! | 0 | `fapi.sign_ins.create` | client IP | POST `/v1/sign_ins`, `/v1/client/sign_ins` | 5 / 10 s |
//! | 1 | `fapi.sign_ups.create` | client IP | POST `/v1/sign_ups`, `/v1/client/sign_ups` | 5 / 10 s |
//! | 2 | `fapi.sign_ins.attempt` | client IP | POST `…/sign_ins[/{id}]/attempt_first_factor`, `…/attempt_second_factor` | 3 / 10 s |
//! | 3 | `fapi.sign_ups.attempt` | client IP | POST `…/sign_ups[/{id}]/attempt_verification` | 3 / 10 s |
//! | 4 | `bapi.instance.production` | instance | every Backend request, production keys | 1000 / 10 s |
//! | 5 | `bapi.instance.development` | instance | every Backend request, development keys | 100 / 10 s |
//! | 6 | `bapi.jwks` | instance | GET `/v1/jwks` | unlimited (exempt) |
//! | 7 | `bapi.invitations.create` | instance | POST `/v1/invitations` | 100 / hour |
//! | 8 | `bapi.invitations.bulk` | instance | POST `/v1/invitations/bulk` | 25 / hour |
//! | 9 | `bapi.org_invitations.create` | instance | POST `/v1/organizations/{organization_id}/invitations` | 250 / hour |
//! | 10 | `bapi.org_invitations.bulk` | instance | POST `/v1/organizations/{organization_id}/invitations/bulk` | 50 / hour |
//! | 11 | `bapi.users.update` | instance + user | PATCH `/v1/users/{user_id}`, PATCH/PUT `…/metadata` | 10 / 10 s |
//! | 12 | `bapi.organizations.update` | instance + organization | PATCH `/v1/organizations/{organization_id}`, PATCH/PUT `…/metadata` | 10 / 10 s |
//! | 13 | `bapi.memberships.update` | instance + organization + user | PATCH `/v1/organizations/{organization_id}/memberships/{user_id}`, PATCH/PUT `…/metadata` | 10 / 10 s |
//!
//! - Frontend rules match both the shorthand of Clerk's rate-limit page
//!   (`/v1/sign_ins/attempt_first_factor`) and the live Frontend API shapes
//!   (`/v1/client/sign_ins/{sign_in_id}/attempt_first_factor`).
//! - Endpoint rules apply *in addition to* the instance rule of the
//!   request's kind: an invitation counts against both. `GET /v1/users/me`
//!   matches the instance rule only.
//! - `bapi.jwks` is unlimited: a request matching it is exempt from every
//!   rule, the instance rule included.
//! - Captures extend the subject of [`Scope::InstanceParams`] rules only
//!   (per user, per organization, per membership): organization
//!   invitations count per instance, whatever the organization, as Clerk
//!   documents them. [`Scope::ClientIp`] rules are
//!   limited per client IP, whatever the path: the limiter ignores their
//!   captures, so the `{sign_in_id}` of an attempt route is recorded by
//!   classification but never splits an IP's attempt limit (a client could
//!   otherwise open a fresh sign-in per guess).
//! - Every rule uses GCRA with the burst equal to the limit.
//!
//! ```
//! # #[cfg(feature = "alloc")] {
//! use ratecard::{Api, Config, Limiter, Nanos, Request, Seed, Verdict, CLERK};
//!
//! assert_eq!(CLERK.validate(), Ok(()));
//! let l = Limiter::new(&Config::DEFAULT, CLERK, Seed::from_bytes([1; 16])).unwrap();
//! let patch = Request::new(Api::Backend, b"PATCH", b"/v1/users/user_123").key(b"sk_live_x");
//! let d = l.check(&patch, Nanos(1)).unwrap();
//! let names: Vec<&str> = d.matched.iter().map(|r| CLERK.rules()[r.index()].name).collect();
//! assert_eq!(names, ["bapi.instance.production", "bapi.users.update"]);
//!
//! let jwks = Request::new(Api::Backend, b"GET", b"/v1/jwks").key(b"sk_test_x");
//! assert_eq!(l.check(&jwks, Nanos(1)).unwrap().verdict, Verdict::Exempt);
//! # }
//! ```

use crate::quota::Quota;
use crate::rule::{Api, InstanceKind, Method, Route, Rule, RuleTable, Scope};

const SIGN_INS_CREATE: &[Route<'static>] = &[
    Route::new(Method::Post, "/v1/sign_ins"),
    Route::new(Method::Post, "/v1/client/sign_ins"),
];

const SIGN_UPS_CREATE: &[Route<'static>] = &[
    Route::new(Method::Post, "/v1/sign_ups"),
    Route::new(Method::Post, "/v1/client/sign_ups"),
];

const SIGN_INS_ATTEMPT: &[Route<'static>] = &[
    Route::new(Method::Post, "/v1/sign_ins/attempt_first_factor"),
    Route::new(Method::Post, "/v1/sign_ins/attempt_second_factor"),
    Route::new(
        Method::Post,
        "/v1/sign_ins/{sign_in_id}/attempt_first_factor",
    ),
    Route::new(
        Method::Post,
        "/v1/sign_ins/{sign_in_id}/attempt_second_factor",
    ),
    Route::new(
        Method::Post,
        "/v1/client/sign_ins/{sign_in_id}/attempt_first_factor",
    ),
    Route::new(
        Method::Post,
        "/v1/client/sign_ins/{sign_in_id}/attempt_second_factor",
    ),
];

const SIGN_UPS_ATTEMPT: &[Route<'static>] = &[
    Route::new(Method::Post, "/v1/sign_ups/attempt_verification"),
    Route::new(
        Method::Post,
        "/v1/sign_ups/{sign_up_id}/attempt_verification",
    ),
    Route::new(
        Method::Post,
        "/v1/client/sign_ups/{sign_up_id}/attempt_verification",
    ),
];

const EVERY_REQUEST: &[Route<'static>] = &[Route::new(Method::Any, "*")];

const JWKS: &[Route<'static>] = &[Route::new(Method::Get, "/v1/jwks")];

const INVITATIONS_CREATE: &[Route<'static>] = &[Route::new(Method::Post, "/v1/invitations")];

const INVITATIONS_BULK: &[Route<'static>] = &[Route::new(Method::Post, "/v1/invitations/bulk")];

const ORG_INVITATIONS_CREATE: &[Route<'static>] = &[Route::new(
    Method::Post,
    "/v1/organizations/{organization_id}/invitations",
)];

const ORG_INVITATIONS_BULK: &[Route<'static>] = &[Route::new(
    Method::Post,
    "/v1/organizations/{organization_id}/invitations/bulk",
)];

const USERS_UPDATE: &[Route<'static>] = &[
    Route::new(Method::Patch, "/v1/users/{user_id}"),
    Route::new(Method::Patch, "/v1/users/{user_id}/metadata"),
    Route::new(Method::Put, "/v1/users/{user_id}/metadata"),
];

const ORGANIZATIONS_UPDATE: &[Route<'static>] = &[
    Route::new(Method::Patch, "/v1/organizations/{organization_id}"),
    Route::new(
        Method::Patch,
        "/v1/organizations/{organization_id}/metadata",
    ),
    Route::new(Method::Put, "/v1/organizations/{organization_id}/metadata"),
];

const MEMBERSHIPS_UPDATE: &[Route<'static>] = &[
    Route::new(
        Method::Patch,
        "/v1/organizations/{organization_id}/memberships/{user_id}",
    ),
    Route::new(
        Method::Patch,
        "/v1/organizations/{organization_id}/memberships/{user_id}/metadata",
    ),
    Route::new(
        Method::Put,
        "/v1/organizations/{organization_id}/memberships/{user_id}/metadata",
    ),
];

const RULES: &[Rule<'static>] = &[
    Rule::new(
        "fapi.sign_ins.create",
        Api::Frontend,
        Scope::ClientIp,
        SIGN_INS_CREATE,
        Quota::per_secs(5, 10),
    ),
    Rule::new(
        "fapi.sign_ups.create",
        Api::Frontend,
        Scope::ClientIp,
        SIGN_UPS_CREATE,
        Quota::per_secs(5, 10),
    ),
    Rule::new(
        "fapi.sign_ins.attempt",
        Api::Frontend,
        Scope::ClientIp,
        SIGN_INS_ATTEMPT,
        Quota::per_secs(3, 10),
    ),
    Rule::new(
        "fapi.sign_ups.attempt",
        Api::Frontend,
        Scope::ClientIp,
        SIGN_UPS_ATTEMPT,
        Quota::per_secs(3, 10),
    ),
    Rule::new(
        "bapi.instance.production",
        Api::Backend,
        Scope::Instance,
        EVERY_REQUEST,
        Quota::per_secs(1000, 10),
    )
    .for_kind(InstanceKind::Production),
    Rule::new(
        "bapi.instance.development",
        Api::Backend,
        Scope::Instance,
        EVERY_REQUEST,
        Quota::per_secs(100, 10),
    )
    .for_kind(InstanceKind::Development),
    Rule::new(
        "bapi.jwks",
        Api::Backend,
        Scope::Instance,
        JWKS,
        Quota::unlimited(),
    ),
    Rule::new(
        "bapi.invitations.create",
        Api::Backend,
        Scope::Instance,
        INVITATIONS_CREATE,
        Quota::per_hour(100),
    ),
    Rule::new(
        "bapi.invitations.bulk",
        Api::Backend,
        Scope::Instance,
        INVITATIONS_BULK,
        Quota::per_hour(25),
    ),
    Rule::new(
        "bapi.org_invitations.create",
        Api::Backend,
        Scope::Instance,
        ORG_INVITATIONS_CREATE,
        Quota::per_hour(250),
    ),
    Rule::new(
        "bapi.org_invitations.bulk",
        Api::Backend,
        Scope::Instance,
        ORG_INVITATIONS_BULK,
        Quota::per_hour(50),
    ),
    Rule::new(
        "bapi.users.update",
        Api::Backend,
        Scope::InstanceParams,
        USERS_UPDATE,
        Quota::per_secs(10, 10),
    ),
    Rule::new(
        "bapi.organizations.update",
        Api::Backend,
        Scope::InstanceParams,
        ORGANIZATIONS_UPDATE,
        Quota::per_secs(10, 10),
    ),
    Rule::new(
        "bapi.memberships.update",
        Api::Backend,
        Scope::InstanceParams,
        MEMBERSHIPS_UPDATE,
        Quota::per_secs(10, 10),
    ),
];

/// Clerk's documented rate-limit table: the default rule table.
pub const CLERK: RuleTable<'static> = RuleTable::new(RULES);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::Algorithm;
    use crate::time::Nanos;

    const NAMES: [&str; 14] = [
        "fapi.sign_ins.create",
        "fapi.sign_ups.create",
        "fapi.sign_ins.attempt",
        "fapi.sign_ups.attempt",
        "bapi.instance.production",
        "bapi.instance.development",
        "bapi.jwks",
        "bapi.invitations.create",
        "bapi.invitations.bulk",
        "bapi.org_invitations.create",
        "bapi.org_invitations.bulk",
        "bapi.users.update",
        "bapi.organizations.update",
        "bapi.memberships.update",
    ];

    #[test]
    fn the_clerk_table_is_valid() {
        assert_eq!(CLERK.validate(), Ok(()));
    }

    #[test]
    fn the_clerk_table_has_the_fourteen_documented_rows_in_order_with_unique_names() {
        assert_eq!(CLERK.len(), 14);
        for (rule, name) in CLERK.rules().iter().zip(NAMES) {
            assert_eq!(rule.name, name);
        }
        for (i, a) in CLERK.rules().iter().enumerate() {
            for b in &CLERK.rules()[i + 1..] {
                assert_ne!(a.name, b.name);
            }
        }
    }

    #[test]
    fn the_clerk_quotas_scopes_and_kinds_are_the_documented_ones() {
        let expect: [(u32, u64, Api, Scope, Option<InstanceKind>); 14] = [
            (5, 10, Api::Frontend, Scope::ClientIp, None),
            (5, 10, Api::Frontend, Scope::ClientIp, None),
            (3, 10, Api::Frontend, Scope::ClientIp, None),
            (3, 10, Api::Frontend, Scope::ClientIp, None),
            (
                1000,
                10,
                Api::Backend,
                Scope::Instance,
                Some(InstanceKind::Production),
            ),
            (
                100,
                10,
                Api::Backend,
                Scope::Instance,
                Some(InstanceKind::Development),
            ),
            (0, 0, Api::Backend, Scope::Instance, None),
            (100, 3600, Api::Backend, Scope::Instance, None),
            (25, 3600, Api::Backend, Scope::Instance, None),
            (250, 3600, Api::Backend, Scope::Instance, None),
            (50, 3600, Api::Backend, Scope::Instance, None),
            (10, 10, Api::Backend, Scope::InstanceParams, None),
            (10, 10, Api::Backend, Scope::InstanceParams, None),
            (10, 10, Api::Backend, Scope::InstanceParams, None),
        ];
        for (rule, (limit, secs, api, scope, kind)) in CLERK.rules().iter().zip(expect) {
            assert_eq!(rule.quota.limit, limit, "{}", rule.name);
            assert_eq!(rule.quota.period, Nanos::from_secs(secs), "{}", rule.name);
            assert_eq!(rule.quota.burst(), limit, "{}", rule.name);
            assert_eq!(rule.api, api, "{}", rule.name);
            assert_eq!(rule.scope, scope, "{}", rule.name);
            assert_eq!(rule.kind, kind, "{}", rule.name);
            assert_eq!(rule.algorithm, Algorithm::Gcra, "{}", rule.name);
        }
        assert!(CLERK.rules()[6].quota.is_unlimited());
    }
}
