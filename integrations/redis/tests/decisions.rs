//! Decisions through a real `redis-server`: the same as a local table's,
//! one limit for two gateways, a flushed script cache unnoticed. Each test
//! starts its own server (see `common/`) and is ignored by default; CI runs
//! them with `cargo test -p ratecard-redis -- --include-ignored`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Redis;
use ratecard::{Api, Config, Limiter, Nanos, Request, Seed, Verdict, CLERK};
use ratecard_redis::{ClockSource, Options, RedisBackend};

const SEC: u64 = 1_000_000_000;
/// An epoch time, so Redis's key expiries (PX, by the server's clock) are sane.
const T0: u64 = 1_790_000_000 * SEC;
const SEED: [u8; 16] = *b"two gateways 012";

fn limiter() -> Arc<Limiter<'static>> {
    let config = Config {
        capacity: 4096,
        ..Config::DEFAULT
    };
    Arc::new(Limiter::new(&config, CLERK, Seed::from_bytes(SEED)).unwrap())
}

/// A backend on `redis` with the gateway clock and no denial cache: every
/// decision is Redis's, at the times the test gives.
fn exact(redis: &Redis) -> RedisBackend {
    RedisBackend::new(
        limiter(),
        Options {
            clock: ClockSource::Gateway,
            cache_denials: false,
            timeout: Duration::from_secs(5),
            ..Options::new(redis.addr())
        },
    )
    .unwrap()
}

fn at(ns: u64) -> Duration {
    Duration::from_nanos(ns)
}

/// A small deterministic generator.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const ROUTES: &[(Api, &[u8], &[u8])] = &[
    (Api::Frontend, b"POST", b"/v1/client/sign_ins"),
    (
        Api::Frontend,
        b"POST",
        b"/v1/client/sign_ins/sia_1/attempt_first_factor",
    ),
    (Api::Frontend, b"POST", b"/v1/client/sign_ups"),
    (Api::Frontend, b"GET", b"/v1/environment"),
    (Api::Backend, b"PATCH", b"/v1/users/user_1"),
    (Api::Backend, b"PUT", b"/v1/users/user_2/metadata"),
    (Api::Backend, b"POST", b"/v1/invitations/bulk"),
    (
        Api::Backend,
        b"PATCH",
        b"/v1/organizations/org_1/memberships/user_1",
    ),
    (Api::Backend, b"GET", b"/v1/jwks"),
    (Api::Backend, b"GET", b"/v1/users/me"),
];
const KEYS: &[&[u8]] = &[b"sk_live_a", b"Bearer sk_test_b", b"sk_live_c"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn redis_decides_as_the_local_table_for_a_random_sequence() {
    let redis = Redis::start();
    let backend = exact(&redis);
    let local = limiter();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut now = T0;
    let (mut allowed, mut denied, mut peeks) = (0, 0, 0);
    for i in 0..2000 {
        now += match rng.below(10) {
            0 => rng.below(20 * SEC),
            1..=3 => rng.below(SEC),
            _ => rng.below(SEC / 50),
        };
        let (api, method, path) = ROUTES[rng.below(ROUTES.len() as u64) as usize];
        let ip = [10, 0, 0, rng.below(3) as u8];
        let key = KEYS[rng.below(KEYS.len() as u64) as usize];
        let cost = 1 + (rng.below(8) == 0) as u32 * rng.below(30) as u32;
        let r = Request::new(api, method, path).ip(ip).key(key).cost(cost);
        let (want, got) = if rng.below(10) == 0 {
            peeks += 1;
            let want = local.peek(&r, Nanos(now)).unwrap();
            (want, backend.peek_at(&r, at(now)).await.unwrap())
        } else {
            let want = local.check(&r, Nanos(now)).unwrap();
            (want, backend.check_at(&r, at(now)).await.unwrap())
        };
        assert_eq!(got, want, "request {i}: {:?} cost {cost}", path);
        match want.verdict {
            Verdict::Allowed => allowed += 1,
            Verdict::Limited { .. } | Verdict::NeverFits => denied += 1,
            _ => {}
        }
    }
    assert_eq!(
        local.stats().evicted,
        0,
        "the comparison holds until the first eviction"
    );
    assert!(
        allowed > 500 && denied > 100 && peeks > 100,
        "{allowed} {denied} {peeks}"
    );
    let (s, l) = (backend.limiter().stats(), local.stats());
    assert_eq!((s.allowed, s.limited), (l.allowed, l.limited));
    assert_eq!((s.remote_errors, s.remote_fallbacks), (0, 0));
    assert_eq!(
        backend.client_stats().script_loads,
        1,
        "one NOSCRIPT: the first call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn two_gateways_on_one_redis_admit_one_limit_also_at_once() {
    let redis = Redis::start();
    let gateways = [Arc::new(exact(&redis)), Arc::new(exact(&redis))];
    let bulk = Request::new(Api::Backend, b"POST", b"/v1/invitations/bulk").key(b"sk_live_two");
    let limit = CLERK.rules()[8].quota.limit;
    assert_eq!(CLERK.rules()[8].name, "bapi.invitations.bulk");

    // 80 requests at one instant, 40 through each gateway, all in flight together.
    let mut tasks = Vec::new();
    for i in 0..80 {
        let g = Arc::clone(&gateways[i % 2]);
        tasks.push(tokio::spawn(async move {
            let r =
                Request::new(Api::Backend, b"POST", b"/v1/invitations/bulk").key(b"sk_live_two");
            g.check_at(&r, at(T0)).await.unwrap().allowed()
        }));
    }
    let mut admitted = 0;
    for t in tasks {
        admitted += t.await.unwrap() as u32;
    }
    assert_eq!(admitted, limit, "exactly the burst, between the two");

    // The denials charged nothing: the instance rule holds exactly the
    // admitted requests, as on one host that admitted them alone.
    let one_host = limiter();
    for _ in 0..limit {
        assert!(one_host.check(&bulk, Nanos(T0)).unwrap().allowed());
    }
    let me = Request::new(Api::Backend, b"GET", b"/v1/users/me").key(b"sk_live_two");
    let want = one_host.peek(&me, Nanos(T0)).unwrap();
    for g in &gateways {
        assert_eq!(g.peek_at(&me, at(T0)).await.unwrap(), want);
    }

    // Alternating over an hour and a half: what one host admits, within
    // GCRA's bound burst + ⌊L/T⌋ (T = 3600 s / 25 = 144 s).
    let r = Request::new(Api::Backend, b"POST", b"/v1/invitations/bulk").key(b"sk_live_three");
    let (mut two, mut one) = (0u32, 0u32);
    for i in 0..540u64 {
        let now = T0 + i * 10 * SEC;
        two += gateways[(i % 2) as usize]
            .check_at(&r, at(now))
            .await
            .unwrap()
            .allowed() as u32;
        one += one_host.check(&r, Nanos(now)).unwrap().allowed() as u32;
    }
    assert_eq!(two, one);
    assert!(two <= limit + 5390 / 144, "{two}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn script_flush_is_transparent() {
    let redis = Redis::start();
    let backend = exact(&redis);
    let r = Request::new(Api::Frontend, b"POST", b"/v1/client/sign_ins").ip([10, 9, 9, 9]);
    let limit = CLERK.rules()[0].quota.limit;
    for left in (0..limit).rev() {
        if left == 2 {
            assert_eq!(redis.cli(&["SCRIPT", "FLUSH"]), "OK");
        }
        let d = backend.check_at(&r, at(T0)).await.unwrap();
        assert!(d.allowed());
        assert_eq!(d.remaining, left);
    }
    assert!(!backend.check_at(&r, at(T0)).await.unwrap().allowed());
    let s = backend.limiter().stats();
    assert_eq!((s.remote_calls, s.remote_errors), (limit as u64 + 1, 0));
    assert_eq!(
        backend.client_stats().script_loads,
        2,
        "the first call and the one after the flush"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn a_flood_from_a_limited_client_is_answered_here_and_keys_expire_when_replenished() {
    let redis = Redis::start();
    let backend = RedisBackend::new(
        limiter(),
        Options {
            timeout: Duration::from_secs(5),
            ..Options::new(redis.addr())
        },
    )
    .unwrap();
    let r = Request::new(Api::Frontend, b"POST", b"/v1/client/sign_ups").ip([10, 7, 7, 7]);
    let limit = CLERK.rules()[1].quota.limit;
    for _ in 0..limit {
        assert!(backend.check(&r).await.unwrap().allowed());
    }
    assert!(!backend.check(&r).await.unwrap().allowed());
    let calls = backend.limiter().stats().remote_calls;
    for _ in 0..500 {
        assert!(!backend.check(&r).await.unwrap().allowed());
    }
    let s = backend.limiter().stats();
    assert_eq!(s.remote_calls, calls, "no round trip for a cached denial");
    assert_eq!(s.remote_cached, 500);
    // One key, set to vanish when the quota is whole again (10 s at most).
    let keys = redis.keys("rc:*");
    assert_eq!(keys.len(), 1, "{keys:?}");
    let ttl: i64 = redis.cli(&["PTTL", &keys[0]]).parse().unwrap();
    assert!(ttl > 0 && ttl <= 10_000, "{ttl}");
}
