//! `--redis`: two `ratecard-rls` processes on one `redis-server` enforce
//! one limit, and a Redis that is gone gets the configured policy's gRPC
//! answer. Redis is started and stopped by the tests (127.0.0.1, a free
//! port, no persistence); they are ignored by default, and CI runs them
//! with `cargo test -p ratecard-rls --test redis -- --include-ignored`.

mod common;
#[path = "../../redis/tests/common/mod.rs"]
mod redis_server;

use std::time::{Duration, Instant};

use common::*;
use ratecard::{Rule, CLERK, CLERK_429_BODY};
use redis_server::Redis;
use tonic::Code;

fn rule(name: &str) -> &'static Rule<'static> {
    CLERK
        .rules()
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no rule {name} in CLERK"))
}

/// Units GCRA hands back to a subject during `elapsed`.
fn replenished(rule: &Rule<'_>, elapsed: Duration) -> u32 {
    let interval = rule.quota.period.0 / u64::from(rule.quota.limit);
    (elapsed.as_nanos() / u128::from(interval)) as u32
}

fn replica(redis: &Redis, extra: &[&str]) -> Service {
    let addr = redis.addr();
    let mut flags = vec!["--redis", &addr, "--redis-timeout", "2000"];
    flags.extend(extra);
    Service::start(&flags)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn two_replicas_on_one_redis_enforce_one_limit() {
    let redis = Redis::start();
    let replicas = [replica(&redis, &[]), replica(&redis, &[])];
    let mut clients = [replicas[0].client().await, replicas[1].client().await];

    // A client alternating between the replicas gets one sign-in burst.
    let sign_ins = rule("fapi.sign_ins.create");
    let from = HttpRequest::frontend("POST", "/v1/client/sign_ins", "198.51.100.77");
    let start = Instant::now();
    let mut allowed = 0;
    let denied = loop {
        let r = should(&mut clients[allowed % 2], request(&from)).await;
        if is_over_limit(&r) {
            break r;
        }
        assert!(is_ok(&r), "{r:?}");
        allowed += 1;
        assert!(allowed <= 100, "no denial");
    };
    let most = sign_ins.quota.limit + replenished(sign_ins, start.elapsed());
    assert!(
        (sign_ins.quota.limit..=most).contains(&(allowed as u32)),
        "{allowed} allowed, the limit is {}",
        sign_ins.quota.limit
    );
    assert_eq!(rule_of(&denied), Some(sign_ins.name));
    assert_eq!(denied.raw_body, CLERK_429_BODY.as_bytes());
    // The other replica, asked next, says the same.
    let r = should(&mut clients[(allowed + 1) % 2], request(&from)).await;
    assert!(is_over_limit(&r), "{r:?}");

    // An hourly limit, alternating: exactly its burst between the two.
    let bulk = rule("bapi.invitations.bulk");
    let invite = HttpRequest::backend("POST", "/v1/invitations/bulk", "sk_live_two_replicas");
    let mut admitted = 0;
    for i in 0..bulk.quota.limit as usize + 10 {
        let r = should(&mut clients[i % 2], request(&invite)).await;
        admitted += is_ok(&r) as u32;
    }
    assert_eq!(admitted, bulk.quota.limit, "GCRA hands back one per 144 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn with_redis_gone_each_policy_gives_its_grpc_answer() {
    let mut redis = Redis::start();
    let timeout = ["--redis-timeout", "300"];
    let closed = replica(
        &redis,
        &[&["--redis-policy", "closed"][..], &timeout].concat(),
    );
    let open = replica(
        &redis,
        &[&["--redis-policy", "open"][..], &timeout].concat(),
    );
    let local = replica(
        &redis,
        &[&["--redis-policy", "local"][..], &timeout].concat(),
    );
    let from = HttpRequest::frontend("POST", "/v1/client/sign_ins", "198.51.100.88");
    let mut clients = [
        closed.client().await,
        open.client().await,
        local.client().await,
    ];
    for c in &mut clients {
        let r = should(c, request(&from)).await;
        assert!(
            is_ok(&r) && rule_of(&r).is_some(),
            "Redis decides first: {r:?}"
        );
    }
    redis.kill();
    let [closed_client, open_client, local_client] = &mut clients;

    let start = Instant::now();
    let refused = closed_client
        .should_rate_limit(request(&from))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("Redis"), "{refused:?}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "within the timeout"
    );

    for _ in 0..10 {
        let r = should(open_client, request(&from)).await;
        assert!(is_ok(&r), "{r:?}");
        assert_eq!(rule_of(&r), None, "unlimited: no limit to report");
        assert_eq!(header(&r, "RateLimit"), None);
    }

    // The local table had none of Redis's charges: its own full burst.
    let limit = rule("fapi.sign_ins.create").quota.limit;
    for _ in 0..limit {
        let r = should(local_client, request(&from)).await;
        assert!(is_ok(&r), "{r:?}");
    }
    let r = should(local_client, request(&from)).await;
    assert!(is_over_limit(&r), "{r:?}");
    assert_eq!(r.raw_body, CLERK_429_BODY.as_bytes());
}
