//! The limiter through Redis: the same decisions as the local table, one
//! round trip per decision, denials cached near the gateway, the local
//! table as a fallback. Every test starts its own `redis-server` on
//! loopback (see `redis/mod.rs`) and is ignored by default; CI runs them
//! with `cargo test -p ratecard --test redis_limiter -- --include-ignored`.

mod redis;

use ratecard::remote::{write_evalsha, Clock};
use ratecard::{
    Api, Config, Decision, Limiter, Nanos, Pending, Prepared, Request, Seed, Verdict, CLERK,
};
use redis::{Conn, Server};

const SEC: u64 = 1_000_000_000;
const PREFIX: &[u8] = b"rc:";
/// An epoch time, so Redis's key expiries (PX, the server's clock) are sane.
const T0: u64 = 1_790_000_000 * SEC;

fn limiter() -> Limiter<'static> {
    let config = Config {
        capacity: 4096,
        ..Config::DEFAULT
    };
    Limiter::new(&config, CLERK, Seed::from_bytes(*b"shared seed 0123")).unwrap()
}

fn gateway(now: u64) -> Clock {
    Clock::Gateway {
        secs: now / SEC,
        nanos: (now % SEC) as u32,
    }
}

/// One decision through Redis, the way a host makes it.
fn through_redis(
    l: &Limiter<'_>,
    conn: &mut Conn,
    r: &Request<'_>,
    now: u64,
    exact: bool,
) -> (Decision, bool) {
    let mut pending = Pending::new();
    let prepared = if exact {
        l.prepare_exact(r, Nanos(now), false, &mut pending)
    } else {
        l.prepare(r, Nanos(now), false, &mut pending)
    }
    .unwrap();
    if let Prepared::Decided(d) = prepared {
        return (d, false);
    }
    let call = l.remote_call(&pending, PREFIX, gateway(now));
    let mut cmd = vec![0u8; 4096];
    let n = write_evalsha(&call, &mut cmd).unwrap();
    let reply = conn.raw(&cmd[..n]);
    let (d, used) = l.finish_reply(&pending, &reply).unwrap();
    assert_eq!(used, reply.len());
    (d, true)
}

fn load_script(conn: &mut Conn) {
    let v = conn.cmd(&[b"SCRIPT", b"LOAD", ratecard::remote::SCRIPT.as_bytes()]);
    assert_eq!(v.bulk().unwrap(), ratecard::remote::SCRIPT_SHA1.as_bytes());
}

/// A small deterministic generator (no dependency on test order).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const PATHS: &[(Api, &[u8], &[u8])] = &[
    (Api::Frontend, b"POST", b"/v1/client/sign_ins"),
    (
        Api::Frontend,
        b"POST",
        b"/v1/client/sign_ins/sia_1/attempt_first_factor",
    ),
    (Api::Frontend, b"POST", b"/v1/client/sign_ups"),
    (Api::Frontend, b"GET", b"/v1/environment"),
    (Api::Backend, b"PATCH", b"/v1/users/user_1"),
    (Api::Backend, b"PATCH", b"/v1/users/user_2/metadata"),
    (Api::Backend, b"POST", b"/v1/invitations/bulk"),
    (
        Api::Backend,
        b"POST",
        b"/v1/organizations/org_1/invitations",
    ),
    (
        Api::Backend,
        b"PATCH",
        b"/v1/organizations/org_1/memberships/user_1",
    ),
    (Api::Backend, b"GET", b"/v1/jwks"),
    (Api::Backend, b"GET", b"/v1/users/me"),
];
const KEYS: &[&[u8]] = &[b"sk_live_a", b"Bearer sk_test_b", b"sk_live_c"];

#[test]
#[ignore = "needs redis-server"]
fn redis_decides_exactly_as_the_local_table_decision_for_decision() {
    let server = Server::start();
    let mut conn = server.conn();
    load_script(&mut conn);
    let local = limiter();
    let remote = limiter();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut now = T0;
    let (mut denied, mut allowed, mut trips) = (0, 0, 0);
    for i in 0..3000 {
        // Mostly bursts, sometimes a pause long enough to replenish.
        now += match rng.below(10) {
            0 => rng.below(20 * SEC),
            1..=3 => rng.below(SEC),
            _ => rng.below(SEC / 50),
        };
        let (api, method, path) = PATHS[rng.below(PATHS.len() as u64) as usize];
        let ip = [10, 0, 0, rng.below(3) as u8];
        let key = KEYS[rng.below(KEYS.len() as u64) as usize];
        let cost = 1 + (rng.below(8) == 0) as u32 * rng.below(30) as u32;
        let r = Request::new(api, method, path).ip(ip).key(key).cost(cost);
        let want = local.check(&r, Nanos(now)).unwrap();
        let (got, trip) = through_redis(&remote, &mut conn, &r, now, true);
        assert_eq!(
            got,
            want,
            "request {i}: {:?} {:?} cost {cost}",
            core::str::from_utf8(path),
            ip
        );
        trips += trip as u32;
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
        allowed > 500 && denied > 200,
        "{allowed} allowed, {denied} denied"
    );
    let s = remote.stats();
    assert_eq!(s.remote_calls, trips as u64);
    assert_eq!(
        (s.allowed, s.limited),
        (local.stats().allowed, local.stats().limited)
    );
}

#[test]
#[ignore = "needs redis-server"]
fn a_denied_subject_is_answered_near_the_gateway_until_its_retry_after() {
    let server = Server::start();
    let mut conn = server.conn();
    load_script(&mut conn);
    let l = limiter();
    let r = Request::new(Api::Frontend, b"POST", b"/v1/client/sign_ins").ip([10, 1, 1, 1]);
    for _ in 0..5 {
        assert!(through_redis(&l, &mut conn, &r, T0, false).0.allowed());
    }
    let (first, trip) = through_redis(&l, &mut conn, &r, T0, false);
    assert!(trip && !first.allowed());
    let calls = l.stats().remote_calls;
    // A flood: answered here, the same denial each time, no round trip.
    for k in 1..=1000u64 {
        let (d, trip) = through_redis(&l, &mut conn, &r, T0 + k * 1000, false);
        assert!(!trip && !d.allowed());
        assert_eq!(d.rule, first.rule);
        assert_eq!(
            d.retry_after().unwrap().0,
            first.retry_after().unwrap().0 - k * 1000
        );
    }
    let s = l.stats();
    assert_eq!((s.remote_calls, s.remote_cached), (calls, 1000));
    // Once its Retry-After has passed, the subject goes to Redis again.
    let later = T0 + first.retry_after().unwrap().0;
    let (d, trip) = through_redis(&l, &mut conn, &r, later, false);
    assert!(trip && d.allowed());
}

#[test]
#[ignore = "needs redis-server"]
fn two_gateways_on_one_redis_admit_one_limit_between_them() {
    let server = Server::start();
    let mut conns = [server.conn(), server.conn()];
    load_script(&mut conns[0]);
    let gateways = [limiter(), limiter()];
    let one_host = limiter();
    let r = Request::new(Api::Backend, b"POST", b"/v1/invitations/bulk").key(b"sk_live_two");
    let (mut admitted, mut alone) = (0u64, 0u64);
    // 25 per hour; a request every 10 s, alternating between the gateways.
    for i in 0..200u64 {
        let g = (i % 2) as usize;
        let now = T0 + i * 10 * SEC;
        let (d, _) = through_redis(&gateways[g], &mut conns[g], &r, now, false);
        admitted += d.allowed() as u64;
        alone += one_host.check(&r, Nanos(now)).unwrap().allowed() as u64;
    }
    // Exactly what one host admits, and within GCRA's bound over the 1990 s
    // run: burst + ⌊L/T⌋ = 25 + ⌊1990/144⌋ (T = 3600 s / 25).
    assert_eq!(admitted, alone);
    assert!(admitted <= 25 + 1990 / 144, "{admitted}");
    assert!(admitted >= 25, "{admitted}");
}

#[test]
#[ignore = "needs redis-server"]
fn without_redis_the_fallback_charges_the_local_table_and_counts_it() {
    let server = Server::start();
    let mut conn = server.conn();
    load_script(&mut conn);
    let l = limiter();
    let r = Request::new(Api::Frontend, b"POST", b"/v1/client/sign_ins").ip([10, 2, 2, 2]);
    // Redis answers two; then it is gone and the local table takes over.
    for _ in 0..2 {
        assert!(through_redis(&l, &mut conn, &r, T0, false).0.allowed());
    }
    drop(conn);
    drop(server);
    let mut admitted = 0;
    for _ in 0..10 {
        let mut pending = Pending::new();
        match l.prepare(&r, Nanos(T0), false, &mut pending).unwrap() {
            Prepared::Decided(d) => admitted += d.allowed() as u32,
            Prepared::Remote => {
                l.count_remote_error(Nanos(T0));
                admitted += l.fallback(&pending).allowed() as u32;
            }
        }
    }
    assert_eq!(admitted, 5, "per-host limits: the local table's own burst");
    let s = l.stats();
    assert_eq!((s.remote_errors, s.remote_fallbacks), (10, 10));
}

#[test]
#[ignore = "needs redis-server"]
fn exempt_and_unmatched_requests_make_no_round_trip() {
    let server = Server::start();
    let mut conn = server.conn();
    load_script(&mut conn);
    let l = limiter();
    for r in [
        Request::new(Api::Backend, b"GET", b"/v1/jwks").key(b"sk_live_x"),
        Request::new(Api::Frontend, b"GET", b"/v1/environment").ip([10, 3, 3, 3]),
    ] {
        let (d, trip) = through_redis(&l, &mut conn, &r, T0, false);
        assert!(!trip && d.allowed());
    }
    assert_eq!(l.stats().remote_calls, 0);
    let keys = conn.cmd(&[b"DBSIZE"]).int();
    assert_eq!(keys, 0, "nothing was written to Redis");
}
