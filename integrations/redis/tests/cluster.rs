//! A three-master Redis Cluster started by the test: every request's keys
//! in one slot (no `CROSSSLOT`, ever), `MOVED` followed and remembered, a
//! slot migrated mid-run followed through `ASK` then `MOVED`, and every
//! decision the one a local table gives. Ignored by default
//! (`-- --include-ignored`): it needs redis-server and redis-cli.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{owner, Cluster};
use ratecard::remote::{hash_slot, write_key};
use ratecard::{Api, Config, Limiter, Nanos, Pending, Prepared, Request, Seed, CLERK};
use ratecard_redis::{ClockSource, Options, RedisBackend};

const SEC: u64 = 1_000_000_000;
const T0: u64 = 1_790_000_000 * SEC;
const PREFIX: &[u8] = b"rc:";

fn limiter() -> Arc<Limiter<'static>> {
    let config = Config {
        capacity: 1 << 14,
        ..Config::DEFAULT
    };
    Arc::new(Limiter::new(&config, CLERK, Seed::from_bytes(*b"cluster seed 012")).unwrap())
}

fn backend(addr: String) -> RedisBackend {
    RedisBackend::new(
        limiter(),
        Options {
            clock: ClockSource::Gateway,
            cache_denials: false,
            timeout: Duration::from_secs(5),
            ..Options::new(addr)
        },
    )
    .unwrap()
}

/// The test's clock: explicit times, in small steps but never behind the
/// real time elapsed, since Redis expires keys by its own clock.
struct Clock {
    start: Instant,
    now: u64,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            start: Instant::now(),
            now: T0,
        }
    }

    fn tick(&mut self, step: u64) -> u64 {
        let real = T0 + self.start.elapsed().as_nanos() as u64;
        self.now = (self.now + step).max(real);
        self.now
    }
}

/// The Cluster slot of `r`'s keys, from its hash tag.
fn slot_of(r: &Request<'_>) -> u16 {
    let mut p = Pending::new();
    let prepared = limiter().prepare(r, Nanos(T0), true, &mut p).unwrap();
    assert_eq!(prepared, Prepared::Remote);
    let mut key = [0u8; 64];
    let n = write_key(PREFIX, p.hashtag(), 0, &mut key).unwrap();
    hash_slot(&key[..n])
}

/// The same request through Redis and through a local table at `now`.
async fn both(b: &RedisBackend, local: &Limiter<'_>, r: &Request<'_>, now: u64) {
    let want = local.check(r, Nanos(now)).unwrap();
    let got = b.check_at(r, Duration::from_nanos(now)).await.unwrap();
    assert_eq!(got, want, "{:?}", r.path);
}

fn requests(i: u32, key: &[u8]) -> [Request<'_>; 3] {
    [
        Request::new(Api::Frontend, b"POST", b"/v1/client/sign_ins").ip([
            10,
            (i >> 8) as u8,
            i as u8,
            1,
        ]),
        // Two rules (the instance, the user): two keys, one slot.
        Request::new(Api::Backend, b"PATCH", b"/v1/users/user_1").key(key),
        // The instance, the organization and the user: two keys, one slot.
        Request::new(
            Api::Backend,
            b"PATCH",
            b"/v1/organizations/org_1/memberships/user_2",
        )
        .key(key),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn every_request_lands_in_one_slot_and_moved_is_followed_and_remembered() {
    let cluster = Cluster::start();
    let seed = &cluster.nodes[0];
    let ranges = cluster.slots(seed);
    let keys: Vec<Vec<u8>> = (0..60)
        .map(|i| format!("sk_live_{i}").into_bytes())
        .collect();
    let elsewhere = (0..60u32)
        .flat_map(|i| requests(i, &keys[i as usize]))
        .filter(|r| owner(&ranges, slot_of(r)) != seed.port)
        .count() as u64;
    assert!(
        elsewhere > 60,
        "most slots are on the other two nodes: {elsewhere} of 180"
    );

    let b = backend(seed.addr());
    let local = limiter();
    let mut clock = Clock::new();
    for _pass in 0..2 {
        for i in 0..60u32 {
            for r in requests(i, &keys[i as usize]) {
                for _ in 0..3 {
                    both(&b, &local, &r, clock.tick(1000)).await;
                }
            }
        }
    }
    let c = b.client_stats();
    // One redirection per slot first met on another node; none after.
    assert!(c.redirects > 0 && c.redirects <= elsewhere, "{c:?}");
    let s = b.limiter().stats();
    assert_eq!(
        (s.remote_errors, s.remote_fallbacks),
        (0, 0),
        "no CROSSSLOT, no error"
    );
    assert!(s.limited > 0 && s.allowed > 0, "{s:?}");
    for n in &cluster.nodes {
        assert!(!n.keys("rc:*").is_empty(), "node {} holds keys", n.port);
    }
    let now = clock.tick(1000);
    for i in 0..60u32 {
        for r in requests(i, &keys[i as usize]) {
            b.peek_at(&r, Duration::from_nanos(now)).await.unwrap();
        }
    }
    assert_eq!(
        b.client_stats().redirects,
        c.redirects,
        "the slot map routes straight"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn a_slot_migrated_mid_run_is_followed_through_ask_then_moved() {
    let cluster = Cluster::start();
    let (seed, target) = (&cluster.nodes[0], &cluster.nodes[1]);
    let ranges = cluster.slots(seed);
    // A client whose slot the seed node holds, so its first calls go
    // straight. One key: mid-migration, the target answers a multi-key
    // call with TRYAGAIN unless every key moved, and an instance key
    // (1000 per 10 s) may well have expired on the way.
    let (r, slot) = (0..=255u8)
        .map(|i| {
            let r = Request::new(Api::Frontend, b"POST", b"/v1/client/sign_ins").ip([10, 8, 8, i]);
            (r, slot_of(&r))
        })
        .find(|(_, slot)| owner(&ranges, *slot) == seed.port)
        .expect("a client on the seed node");
    let b = backend(seed.addr());
    let local = limiter();
    let mut clock = Clock::new();
    let tick = SEC / 4;
    for _ in 0..4 {
        both(&b, &local, &r, clock.tick(tick)).await;
    }
    assert_eq!(b.client_stats().redirects, 0);

    // Migrating: the keys move to the target; the slot is still the seed's.
    let slot_s = slot.to_string();
    let (src_id, dst_id) = (cluster.id(seed.port), cluster.id(target.port));
    assert_eq!(
        target.cli(&["CLUSTER", "SETSLOT", &slot_s, "IMPORTING", &src_id]),
        "OK"
    );
    assert_eq!(
        seed.cli(&["CLUSTER", "SETSLOT", &slot_s, "MIGRATING", &dst_id]),
        "OK"
    );
    let moving = seed.cli(&["CLUSTER", "GETKEYSINSLOT", &slot_s, "100"]);
    let moving: Vec<&str> = moving.lines().collect();
    assert_eq!(moving.len(), 1, "{moving:?}");
    let port = target.port.to_string();
    let mut migrate = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
    migrate.extend(&moving);
    assert_eq!(seed.cli(&migrate), "OK");
    for _ in 0..4 {
        both(&b, &local, &r, clock.tick(tick)).await;
    }
    assert_eq!(
        b.client_stats().redirects,
        4,
        "through ASK each time: it is not remembered"
    );

    // Migrated: the slot is the target's; one MOVED, then straight there.
    for n in [target, seed, &cluster.nodes[2]] {
        assert_eq!(
            n.cli(&["CLUSTER", "SETSLOT", &slot_s, "NODE", &dst_id]),
            "OK"
        );
    }
    for _ in 0..6 {
        both(&b, &local, &r, clock.tick(tick)).await;
    }
    assert_eq!(b.client_stats().redirects, 5);
    let s = b.limiter().stats();
    assert_eq!((s.remote_errors, s.remote_fallbacks), (0, 0));
    assert!(
        s.limited > 0 && s.allowed > 5,
        "the run crossed the limit: {s:?}"
    );
}
