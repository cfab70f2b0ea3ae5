//! `ShouldRateLimit` against the `ratecard-rls` process over loopback, with
//! tonic's client and Envoy's own message types, sending the descriptors
//! the README's Envoy configuration produces. Limits come from
//! `ratecard::CLERK`, not from copies of the table.

mod common;

use std::time::{Duration, Instant};

use common::*;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code as RlsCode;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitResponse;
use prost::Message;
use ratecard::{Api, Rule, CLERK, CLERK_429_BODY};
use ratecard_rls::descriptor::{WireDescriptor, WireEntry, WireRequest};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Code, Status};

fn rule(name: &str) -> &'static Rule<'static> {
    CLERK
        .rules()
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no rule {name} in CLERK"))
}

fn period_secs(rule: &Rule<'_>) -> u64 {
    let ns = rule.quota.period.0;
    assert_eq!(
        ns % 1_000_000_000,
        0,
        "{} has a whole-second period",
        rule.name
    );
    ns / 1_000_000_000
}

/// GCRA's emission interval: one unit comes back every `period / limit`.
fn interval(rule: &Rule<'_>) -> Duration {
    Duration::from_nanos(rule.quota.period.0 / rule.quota.limit as u64)
}

/// Units handed back to a subject during `elapsed`.
fn replenished(rule: &Rule<'_>, elapsed: Duration) -> u32 {
    (elapsed.as_nanos() / interval(rule).as_nanos()) as u32
}

/// `current_limit` as Envoy's units can say it: Clerk's periods are 10 s
/// (no such unit: the rate per minute) and one hour.
fn envoy_rate(rule: &Rule<'_>) -> (u32, i32) {
    match period_secs(rule) {
        10 => (rule.quota.limit * 6, Unit::Minute as i32),
        3600 => (rule.quota.limit, Unit::Hour as i32),
        other => panic!("{}: unexpected period {other} s", rule.name),
    }
}

fn assert_binding(r: &RateLimitResponse, rule: &Rule<'_>) {
    let limit = r.statuses[0]
        .current_limit
        .as_ref()
        .unwrap_or_else(|| panic!("no current_limit in {r:?}"));
    assert_eq!(limit.name, rule.name);
    assert_eq!((limit.requests_per_unit, limit.unit), envoy_rate(rule));
    let policy = header(r, "RateLimit-Policy").expect("RateLimit-Policy");
    let q = format!(
        "\"{}\";q={};w={}",
        rule.name,
        rule.quota.limit,
        period_secs(rule)
    );
    assert!(policy.contains(&q), "{policy:?} lacks {q:?}");
    let ratelimit = header(r, "RateLimit").expect("RateLimit");
    let expected = format!("\"{}\";r={};t=", rule.name, remaining_of(r));
    assert!(ratelimit.starts_with(&expected), "{ratelimit:?}");
}

fn assert_denied_like_clerk(r: &RateLimitResponse, rule: &Rule<'_>) {
    assert!(is_over_limit(r), "{r:?}");
    assert_binding(r, rule);
    assert_eq!(remaining_of(r), 0);
    let retry: u64 = header(r, "Retry-After")
        .expect("Retry-After")
        .parse()
        .expect("whole seconds");
    let most = interval(rule).as_secs_f64().ceil() as u64;
    assert!(
        (1..=most).contains(&retry),
        "Retry-After {retry}, interval {most} s"
    );
    assert_eq!(header(r, "Content-Type"), Some("application/json"));
    assert_eq!(r.raw_body, CLERK_429_BODY.as_bytes());
    assert_eq!(metadata(r, "ratecard_result"), Some("DENIED"));
    assert_eq!(metadata(r, "ratecard_rule"), Some(rule.name));
    let reset = r.statuses[0]
        .duration_until_reset
        .expect("duration_until_reset");
    assert!(reset.seconds as u64 <= period_secs(rule), "{reset:?}");
}

/// Send `requests[i % len]` until the first denial (at most `cap` calls):
/// the number allowed, the denial, and how long it took.
async fn until_denied(
    client: &mut tonic_client::Client,
    requests: &[HttpRequest],
    cap: usize,
) -> (u32, RateLimitResponse, Duration) {
    let start = Instant::now();
    for i in 0..cap {
        let r = should(client, request(&requests[i % requests.len()])).await;
        if is_over_limit(&r) {
            return (i as u32, r, start.elapsed());
        }
        assert!(is_ok(&r), "{r:?}");
    }
    panic!("no denial in {cap} calls");
}

mod tonic_client {
    pub type Client = envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient<tonic::transport::Channel>;
}

/// Allowed `n` out of a burst of `limit` that took `elapsed`: exactly the
/// limit, plus what GCRA hands back in that time.
fn assert_allowed_burst(rule: &Rule<'_>, n: u32, elapsed: Duration) {
    let limit = rule.quota.limit;
    let most = limit + replenished(rule, elapsed);
    assert!(
        (limit..=most).contains(&n),
        "{}: {n} allowed in {elapsed:?}, expected {limit} to {most}",
        rule.name
    );
}

#[tokio::test]
async fn frontend_rows_allow_their_limit_per_client_ip_then_deny_with_clerks_answer() {
    let service = Service::start(&[]);
    let mut client = service.client().await;
    let frontend: Vec<&Rule<'_>> = CLERK
        .rules()
        .iter()
        .filter(|r| r.api == Api::Frontend)
        .collect();
    assert!(frontend.len() >= 4, "Clerk's Frontend rows");
    for (i, rule) in frontend.iter().enumerate() {
        // Every route of the row, in turn: they share one limit per IP.
        let ip = format!("198.51.100.{}", 10 + i);
        let requests: Vec<HttpRequest> = rule
            .routes
            .iter()
            .map(|route| {
                HttpRequest::frontend(method_name(route.method), &concrete(route, "sia_2x"), &ip)
            })
            .collect();
        let first = should(&mut client, request(&requests[0])).await;
        assert!(is_ok(&first), "{}: {first:?}", rule.name);
        assert_binding(&first, rule);
        assert_eq!(remaining_of(&first), rule.quota.limit - 1);
        assert_eq!(metadata(&first, "ratecard_result"), Some("ALLOWED"));
        assert_eq!(header(&first, "Retry-After"), None);
        assert!(first.raw_body.is_empty());

        let (n, denied, elapsed) = until_denied(&mut client, &requests[1..], 100).await;
        assert_allowed_burst(rule, n + 1, elapsed);
        assert_denied_like_clerk(&denied, rule);

        // Another client address has its own limit.
        let other = requests[0].clone().from(&format!("203.0.113.{}", 10 + i));
        let r = should(&mut client, request(&other)).await;
        assert!(is_ok(&r));
        assert_eq!(remaining_of(&r), rule.quota.limit - 1);
    }
}

#[tokio::test]
async fn ipv6_clients_share_a_limit_per_64_prefix_and_mapped_ipv4_is_the_ipv4_client_whatever_the_query(
) {
    let service = Service::start(&[]);
    let mut client = service.client().await;
    let rule = rule("fapi.sign_ins.create");
    let from = |ip: &str| HttpRequest::frontend("POST", "/v1/client/sign_ins", ip);
    let start = Instant::now();
    // Second in a row: one unit left less, give or take what came back.
    let second = |r: &RateLimitResponse| {
        let least = rule.quota.limit - 2;
        let n = remaining_of(r);
        (least..=least + replenished(rule, start.elapsed())).contains(&n)
    };
    let r = should(&mut client, request(&from("2001:db8:1:2::1"))).await;
    assert_eq!(remaining_of(&r), rule.quota.limit - 1);
    // The query string does not change the route.
    let query = HttpRequest::frontend(
        "POST",
        "/v1/client/sign_ins?_clerk_js_version=5",
        "2001:db8:1:2:ffff::9",
    );
    let r = should(&mut client, request(&query)).await;
    assert!(second(&r), "same /64: {r:?}");
    let r = should(&mut client, request(&from("2001:db8:1:3::1"))).await;
    assert_eq!(remaining_of(&r), rule.quota.limit - 1, "another /64");

    let r = should(&mut client, request(&from("192.0.2.77"))).await;
    assert_eq!(remaining_of(&r), rule.quota.limit - 1);
    let r = should(&mut client, request(&from("::ffff:192.0.2.77"))).await;
    assert_eq!(
        remaining_of(&r),
        rule.quota.limit - 2,
        "mapped is the same client"
    );
}

#[tokio::test]
async fn user_updates_are_limited_per_user_within_an_instance() {
    let service = Service::start(&[]);
    let mut client = service.client().await;
    let users = rule("bapi.users.update");
    let key = "sk_live_users_update_1";
    let update = |user: &str| HttpRequest::backend("PATCH", &format!("/v1/users/{user}"), key);
    let metadata_update =
        |user: &str| HttpRequest::backend("PUT", &format!("/v1/users/{user}/metadata"), key);

    let first = should(&mut client, request(&update("user_1"))).await;
    assert!(is_ok(&first));
    // The tightest rule binds: 9 of 10 left beats 999 of 1000.
    assert_binding(&first, users);
    assert_eq!(remaining_of(&first), users.quota.limit - 1);
    let policy = header(&first, "RateLimit-Policy").unwrap();
    assert!(
        policy.contains("\"bapi.instance.production\";q=1000;w=10"),
        "{policy}"
    );

    // PATCH and PUT .../metadata share the user's limit.
    let (n, denied, elapsed) = until_denied(
        &mut client,
        &[metadata_update("user_1"), update("user_1")],
        100,
    )
    .await;
    assert_allowed_burst(users, n + 1, elapsed);
    assert_denied_like_clerk(&denied, users);

    // Another user of the same instance, and the same user id in another
    // instance, are not limited.
    let r = should(&mut client, request(&update("user_2"))).await;
    assert!(is_ok(&r));
    assert_eq!(remaining_of(&r), users.quota.limit - 1);
    let elsewhere = HttpRequest::backend("PATCH", "/v1/users/user_1", "sk_live_users_update_2");
    let r = should(&mut client, request(&elsewhere)).await;
    assert!(is_ok(&r));
    assert_eq!(remaining_of(&r), users.quota.limit - 1);
}

#[tokio::test]
async fn backend_limits_are_per_instance_and_by_key_kind() {
    let service = Service::start(&[]);
    let mut client = service.client().await;
    let dev = rule("bapi.instance.development");
    let prod = rule("bapi.instance.production");
    let me = |key: &str| HttpRequest::backend("GET", "/v1/users/me", key);

    let r = should(&mut client, request(&me("sk_live_kind_1"))).await;
    assert_binding(&r, prod);
    assert_eq!(remaining_of(&r), prod.quota.limit - 1);

    let r = should(&mut client, request(&me("sk_test_kind_1"))).await;
    assert_binding(&r, dev);
    assert_eq!(remaining_of(&r), dev.quota.limit - 1);

    // The raw key and its `Bearer` form are one instance: together they get
    // one development limit.
    let mut raw = me("sk_test_kind_1");
    raw.authorization = Some("sk_test_kind_1".into());
    let (n, denied, elapsed) = until_denied(&mut client, &[me("sk_test_kind_1"), raw], 1000).await;
    assert_allowed_burst(dev, n + 1, elapsed);
    assert_denied_like_clerk(&denied, dev);

    // Other instances are untouched.
    let r = should(&mut client, request(&me("sk_test_kind_2"))).await;
    assert_eq!(remaining_of(&r), dev.quota.limit - 1);
    let r = should(&mut client, request(&me("sk_live_kind_2"))).await;
    assert_eq!(remaining_of(&r), prod.quota.limit - 1);

    // No key: limited by client IP, at the development limit.
    let anonymous = me("unused").without_key().from("192.0.2.150");
    let r = should(&mut client, request(&anonymous)).await;
    assert_binding(&r, dev);
    assert_eq!(remaining_of(&r), dev.quota.limit - 1);
    let r = should(&mut client, request(&anonymous.clone().from("192.0.2.151"))).await;
    assert_eq!(remaining_of(&r), dev.quota.limit - 1);
}

#[tokio::test]
async fn a_tenant_entry_names_the_instance_in_place_of_the_key() {
    let service = Service::start(&[]);
    let mut client = service.client().await;
    // An hourly rule, so nothing comes back between the calls.
    let invitations = rule("bapi.invitations.create");
    let with_tenant = |key: &str, tenant: &str| {
        let mut req = request(&HttpRequest::backend("POST", "/v1/invitations", key));
        req.descriptors[0].entries.push(
            envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry {
                key: "tenant".into(),
                value: tenant.into(),
            },
        );
        req
    };
    let r = should(&mut client, with_tenant("sk_test_tenant_a", "ins_1")).await;
    assert_binding(&r, invitations);
    assert_eq!(remaining_of(&r), invitations.quota.limit - 1);
    // Another key of the same instance shares its limit; another instance
    // with the same key does not.
    let r = should(&mut client, with_tenant("sk_test_tenant_b", "ins_1")).await;
    assert_eq!(remaining_of(&r), invitations.quota.limit - 2);
    let r = should(&mut client, with_tenant("sk_test_tenant_a", "ins_2")).await;
    assert_eq!(remaining_of(&r), invitations.quota.limit - 1);
}

#[tokio::test]
async fn a_denied_request_charges_none_of_its_rules() {
    let service = Service::start(&[]);
    let mut client = service.client().await;
    let bulk = rule("bapi.invitations.bulk");
    let dev = rule("bapi.instance.development");
    let key = "sk_test_all_or_nothing";
    let invite = HttpRequest::backend("POST", "/v1/invitations/bulk", key);
    let peek_instance = || request_with_hits(&HttpRequest::backend("GET", "/v1/users/me", key), 0);
    let big = bulk.quota.limit - 5;
    assert!(big > 5 && big < dev.quota.limit);

    let r = should(&mut client, request_with_hits(&invite, big as u64)).await;
    assert!(is_ok(&r), "{r:?}");
    assert_eq!(remaining_of(&r), 5);

    let before = remaining_of(&should(&mut client, peek_instance()).await);
    // Fits the instance, not the 5 invitations left: denied, and neither
    // rule is charged.
    let r = should(&mut client, request_with_hits(&invite, big as u64)).await;
    assert!(is_over_limit(&r));
    assert_binding(&r, bulk);
    let after = remaining_of(&should(&mut client, peek_instance()).await);
    assert!(
        after >= before,
        "instance charged by a denial: {before} -> {after}"
    );

    // The 5 left are still there (an hourly rule gives nothing back in a
    // test's time), then none.
    let r = should(&mut client, request_with_hits(&invite, 5)).await;
    assert!(is_ok(&r), "{r:?}");
    let r = should(&mut client, request_with_hits(&invite, 1)).await;
    assert!(is_over_limit(&r));

    // A cost above the burst can never fit: denied without Retry-After.
    let other = HttpRequest::backend("POST", "/v1/invitations/bulk", "sk_test_never_fits");
    let r = should(
        &mut client,
        request_with_hits(&other, bulk.quota.limit as u64 + 1),
    )
    .await;
    assert!(is_over_limit(&r));
    assert_eq!(header(&r, "Retry-After"), None);
    assert_eq!(r.raw_body, CLERK_429_BODY.as_bytes());
    let r = should(&mut client, request(&other)).await;
    assert_eq!(
        remaining_of(&r),
        bulk.quota.limit - 1,
        "never-fits charged nothing"
    );
}

#[tokio::test]
async fn request_level_hits_addend_is_the_cost() {
    let service = Service::start(&[]);
    let mut client = service.client().await;
    let bulk = rule("bapi.invitations.bulk");
    let invite = HttpRequest::backend("POST", "/v1/invitations/bulk", "sk_live_hits_1");
    let mut req = request(&invite);
    req.hits_addend = 4;
    let r = should(&mut client, req).await;
    assert_eq!(remaining_of(&r), bulk.quota.limit - 4);
}

#[tokio::test]
async fn exempt_and_unmatched_requests_are_allowed_and_charge_nothing() {
    let service = Service::start(&[]);
    let mut client = service.client().await;
    let dev = rule("bapi.instance.development");
    let key = "sk_test_exempt";
    let jwks = HttpRequest::backend("GET", "/v1/jwks", key);
    for _ in 0..dev.quota.limit + 20 {
        let r = should(&mut client, request(&jwks)).await;
        assert!(is_ok(&r));
        assert_eq!(r.statuses[0].current_limit, None);
        assert!(r.response_headers_to_add.is_empty(), "{r:?}");
        assert_eq!(metadata(&r, "ratecard_result"), Some("EXEMPT"));
    }
    // Not even the instance was charged.
    let me = HttpRequest::backend("GET", "/v1/users/me", key);
    let r = should(&mut client, request_with_hits(&me, 0)).await;
    assert_eq!(remaining_of(&r), dev.quota.limit - 1);

    let sign_in = rule("fapi.sign_ins.create");
    let ip = "198.51.100.99";
    let environment = HttpRequest::frontend("GET", "/v1/environment", ip);
    for _ in 0..50 {
        let r = should(&mut client, request(&environment)).await;
        assert!(is_ok(&r));
        assert_eq!(r.statuses[0].current_limit, None);
        assert!(r.response_headers_to_add.is_empty());
        assert_eq!(metadata(&r, "ratecard_result"), Some("UNMATCHED"));
    }
    let r = should(
        &mut client,
        request(&HttpRequest::frontend("POST", "/v1/client/sign_ins", ip)),
    )
    .await;
    assert_eq!(remaining_of(&r), sign_in.quota.limit - 1);
}

#[tokio::test]
async fn a_peek_decides_without_charging() {
    let service = Service::start(&[]);
    let mut client = service.client().await;
    let users = rule("bapi.users.update");
    let update = HttpRequest::backend("PATCH", "/v1/users/user_peek", "sk_live_peek");
    for _ in 0..3 * users.quota.limit {
        let r = should(&mut client, request_with_hits(&update, 0)).await;
        assert!(is_ok(&r));
        assert_eq!(remaining_of(&r), users.quota.limit - 1);
    }
}

#[tokio::test]
async fn a_dry_run_reports_denials_without_enforcing() {
    let service = Service::start(&["--dry-run"]);
    let mut client = service.client().await;
    let rule = rule("fapi.sign_ups.create");
    let sign_up = HttpRequest::frontend("POST", "/v1/client/sign_ups", "198.51.100.200");
    let mut reported = None;
    for _ in 0..3 * rule.quota.limit {
        let r = should(&mut client, request(&sign_up)).await;
        assert!(is_ok(&r), "a dry run never denies: {r:?}");
        if metadata(&r, "ratecard_result") == Some("DRY_RUN_DENIED") {
            reported = Some(r);
        }
    }
    let r = reported.expect("a would-be denial");
    assert_eq!(
        r.statuses[0].code,
        RlsCode::OverLimit as i32,
        "the descriptor's status is OVER_LIMIT"
    );
    assert_eq!(header(&r, "Retry-After"), None);
    assert!(r.raw_body.is_empty());
    assert!(header(&r, "RateLimit").is_some());
}

#[tokio::test]
async fn concurrent_clients_are_allowed_exactly_the_limit() {
    let service = Service::start(&[]);
    let invitations = rule("bapi.invitations.create");
    let attempts = rule("fapi.sign_ins.attempt");
    let (clients, per_client) = (32usize, 10usize);
    let sent = clients * per_client;
    assert!(sent as u32 > 2 * invitations.quota.limit);

    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let uri = service.uri();
        tasks.push(tokio::spawn(async move {
            // A connection per client.
            let mut client = tonic_client::Client::connect(uri).await.expect("connect");
            let (mut invited, mut attempted) = (0u32, vec![0u32; 40]);
            for i in 0..per_client {
                let invite = HttpRequest::backend("POST", "/v1/invitations", "sk_live_concurrent");
                if is_ok(&should(&mut client, request(&invite)).await) {
                    invited += 1;
                }
                let ip = (c * per_client + i) % 40;
                let attempt = HttpRequest::frontend(
                    "POST",
                    "/v1/client/sign_ins/sia_1/attempt_first_factor",
                    &format!("203.0.113.{}", 100 + ip),
                );
                if is_ok(&should(&mut client, request(&attempt)).await) {
                    attempted[ip] += 1;
                }
            }
            (invited, attempted)
        }));
    }
    let mut invited = 0;
    let mut attempted = vec![0u32; 40];
    for t in tasks {
        let (i, a) = tokio::time::timeout(Duration::from_secs(120), t)
            .await
            .expect("clients finished")
            .expect("client task");
        invited += i;
        for (total, n) in attempted.iter_mut().zip(a) {
            *total += n;
        }
    }
    let elapsed = start.elapsed();
    // 100 per hour gives one back every 36 s: exact within the test's time.
    assert!(elapsed < interval(invitations));
    assert_eq!(invited, invitations.quota.limit);
    for n in attempted {
        assert_allowed_burst(attempts, n, elapsed);
    }
}

#[tokio::test]
async fn malformed_requests_are_refused_or_decided_and_the_service_keeps_answering() {
    let mut service = Service::start(&[]);
    let mut client = service.client().await;
    let sign_in = HttpRequest::frontend("POST", "/v1/client/sign_ins", "198.51.100.50");

    async fn code_of(client: &mut tonic_client::Client, req: RateLimitRequest) -> Code {
        match client.should_rate_limit(req).await {
            Ok(r) => panic!("answered {:?}", r.into_inner()),
            Err(s) => s.code(),
        }
    }

    let mut empty = request(&sign_in);
    empty.descriptors.clear();
    assert_eq!(code_of(&mut client, empty).await, Code::InvalidArgument);

    let mut many = request(&sign_in);
    many.descriptors = vec![descriptor(&sign_in); 10_000];
    assert_eq!(code_of(&mut client, many).await, Code::InvalidArgument);

    let mut wide = request(&sign_in);
    for i in 0..10_000 {
        wide.descriptors[0].entries.push(
            envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry {
                key: format!("k{i}"),
                value: "v".into(),
            },
        );
    }
    assert_eq!(code_of(&mut client, wide).await, Code::InvalidArgument);

    let mut other_domain = request(&sign_in);
    other_domain.domain = "edge".into();
    assert_eq!(
        code_of(&mut client, other_domain).await,
        Code::InvalidArgument
    );

    let mut no_address = request(&sign_in);
    no_address.descriptors[0]
        .entries
        .retain(|e| e.key != "remote_address");
    assert_eq!(
        code_of(&mut client, no_address).await,
        Code::InvalidArgument
    );

    // A 64 KiB path is decided like any other: here it is a sign-in attempt.
    let long = format!(
        "/v1/client/sign_ins/{}/attempt_first_factor",
        "a".repeat(64 << 10)
    );
    let r = should(
        &mut client,
        request(&HttpRequest::frontend("POST", &long, "198.51.100.51")),
    )
    .await;
    assert!(is_ok(&r));
    assert_eq!(rule_of(&r), Some("fapi.sign_ins.attempt"));
    let r = should(
        &mut client,
        request(&HttpRequest::backend("GET", &long, "sk_live_long_path")),
    )
    .await;
    assert_eq!(rule_of(&r), Some("bapi.instance.production"));

    // Beyond the request size limit the decoder refuses.
    let huge = format!("/{}", "a".repeat(2 << 20));
    let req = request(&HttpRequest::frontend("GET", &huge, "198.51.100.52"));
    assert_eq!(code_of(&mut client, req).await, Code::OutOfRange);

    // Not UTF-8 where Envoy's .proto says string: decided on the bytes.
    let channel = Channel::from_shared(service.uri())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let wire = |entries: Vec<WireEntry>| WireRequest {
        domain: DOMAIN.into(),
        descriptors: vec![WireDescriptor {
            entries,
            ..WireDescriptor::default()
        }],
        hits_addend: 0,
    };
    let backend = |method: &str, path: &[u8], key: &[u8]| {
        wire(vec![
            WireEntry::new("api", "backend"),
            WireEntry::new("method", method),
            WireEntry::new("path", path),
            WireEntry::new("remote_address", "192.0.2.9"),
            WireEntry::new("authorization", key),
        ])
    };
    let r = raw_call(
        &channel,
        backend(
            "PATCH",
            b"/v1/users/user_\xff\xfe",
            b"Bearer sk_live_\xc3\x28",
        ),
    )
    .await
    .expect("decided");
    assert!(is_ok(&r));
    assert_eq!(rule_of(&r), Some("bapi.users.update"));
    let r = raw_call(
        &channel,
        backend("GET", b"/v1/users/me", b"Bearer sk_test_\xff"),
    )
    .await
    .expect("decided");
    assert_eq!(rule_of(&r), Some("bapi.instance.development"));
    let mut bad_address = backend("GET", b"/v1/users/me", b"sk_live_x");
    bad_address.descriptors[0].entries[3].value = b"192.0.2.\xff".to_vec();
    assert_eq!(
        raw_call(&channel, bad_address).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let mut bad_key = backend("GET", b"/v1/users/me", b"sk_live_x");
    bad_key.descriptors[0].entries[4].key = b"authoriz\xc3\xa9".to_vec();
    assert_eq!(
        raw_call(&channel, bad_key).await.unwrap_err().code(),
        Code::InvalidArgument
    );

    // Bytes that are not a protobuf message at all.
    for garbage in [
        &b"\xff\xff\xff\xff\xff"[..],
        b"\x12\x80\x80\x80\x80\x80",
        b"\x0a\x05ab",
    ] {
        let status = raw_bytes_call(&channel, garbage.to_vec())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Internal, "{status:?}");
    }

    // Still up, still deciding.
    assert!(service.running());
    let r = should(&mut client, request(&sign_in)).await;
    assert!(is_ok(&r));
    assert_eq!(rule_of(&r), Some("fapi.sign_ins.create"));
}

const PATH: &str = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";

async fn raw_call(channel: &Channel, req: WireRequest) -> Result<RateLimitResponse, Status> {
    raw_bytes_call(channel, req.encode_to_vec()).await
}

async fn raw_bytes_call(channel: &Channel, body: Vec<u8>) -> Result<RateLimitResponse, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    grpc.unary(
        tonic::Request::new(body),
        PathAndQuery::from_static(PATH),
        RawCodec,
    )
    .await
    .map(|r| r.into_inner())
}

/// Sends bytes as they are; reads a `RateLimitResponse`.
#[derive(Default)]
struct RawCodec;

struct RawEncoder;
struct ResponseDecoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        use prost::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for ResponseDecoder {
    type Item = RateLimitResponse;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<RateLimitResponse>, Status> {
        RateLimitResponse::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = RateLimitResponse;
    type Encoder = RawEncoder;
    type Decoder = ResponseDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder
    }
}

#[tokio::test]
async fn the_health_service_reports_serving() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let service = Service::start(&[]);
    let channel = Channel::from_shared(service.uri())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    for name in ["", "envoy.service.ratelimit.v3.RateLimitService"] {
        let r = health
            .check(HealthCheckRequest {
                service: name.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32, "{name:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}

#[tokio::test]
async fn sigterm_and_sigint_stop_the_service_gracefully_with_a_connection_open() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let mut service = Service::start(&[]);
        let mut client = service.client().await;
        let r = should(
            &mut client,
            request(&HttpRequest::frontend(
                "POST",
                "/v1/sign_ins",
                "198.51.100.70",
            )),
        )
        .await;
        assert!(is_ok(&r));
        let pid = libc::pid_t::try_from(service.pid()).unwrap();
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
        let status = service
            .wait_exit(Duration::from_secs(4))
            .await
            .expect("exited before the grace period ran out");
        assert!(status.success(), "{status:?}");
        // The listener is gone.
        assert!(tonic_client::Client::connect(service.uri()).await.is_err());
    }
}
