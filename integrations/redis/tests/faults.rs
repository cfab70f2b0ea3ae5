//! When Redis cannot answer: nothing listening, killed and restarted,
//! stalled past the timeout, keys of the wrong type, a server answering
//! garbage. Each gives the policy's answer and a cause, within the timeout,
//! never a panic, and decisions go on once Redis is back. Tests with a real
//! `redis-server` are ignored by default (`-- --include-ignored`); the stub
//! servers need nothing.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_port, Redis};
use ratecard::{Api, Config, Limiter, Request, Seed, CLERK};
use ratecard_redis::{Answer, Cause, Error, Options, Policy, RedisBackend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn limiter() -> Arc<Limiter<'static>> {
    let config = Config {
        capacity: 4096,
        ..Config::DEFAULT
    };
    Arc::new(Limiter::new(&config, CLERK, Seed::from_bytes(*b"faults seed 0123")).unwrap())
}

fn backend(addr: String, policy: Policy, timeout: Duration, breaker: u32) -> RedisBackend {
    RedisBackend::new(
        limiter(),
        Options {
            policy,
            timeout,
            breaker_failures: breaker,
            breaker_open_for: Duration::from_millis(300),
            ..Options::new(addr)
        },
    )
    .unwrap()
}

fn sign_in(ip: u8) -> Request<'static> {
    Request::new(Api::Frontend, b"POST", b"/v1/client/sign_ins").ip([10, 4, 4, ip])
}

/// The cause and answer of a decision Redis did not give.
fn failed(r: Result<ratecard::Decision, Error>) -> (Cause, Answer) {
    match r {
        Err(Error::Remote { cause, answer }) => (cause, answer),
        other => panic!("expected a policy answer, got {other:?}"),
    }
}

#[tokio::test]
async fn each_policy_answers_when_nothing_listens() {
    let addr = format!("127.0.0.1:{}", free_port());
    let limit = CLERK.rules()[0].quota.limit;
    for policy in [Policy::FailClosed, Policy::FailOpen, Policy::Local] {
        let b = backend(addr.clone(), policy, Duration::from_secs(2), 0);
        let mut local_allowed = 0;
        for _ in 0..limit + 3 {
            let (cause, answer) = failed(b.check(&sign_in(1)).await);
            assert_eq!(cause, Cause::Io(std::io::ErrorKind::ConnectionRefused));
            match (policy, answer) {
                (Policy::FailClosed, Answer::Closed) | (Policy::FailOpen, Answer::Open) => {}
                (Policy::Local, Answer::Local(d)) => local_allowed += d.allowed() as u32,
                other => panic!("{other:?}"),
            }
        }
        if policy == Policy::Local {
            assert_eq!(local_allowed, limit, "the local table's own burst");
        }
        let s = b.limiter().stats();
        assert_eq!((s.remote_errors, s.remote_fallbacks), (8, 8), "{policy:?}");
        assert_eq!(s.remote_calls, 0);
    }
}

#[tokio::test]
async fn requests_that_need_no_round_trip_are_decided_without_redis() {
    let b = backend(
        format!("127.0.0.1:{}", free_port()),
        Policy::FailClosed,
        Duration::from_secs(1),
        1,
    );
    let jwks = Request::new(Api::Backend, b"GET", b"/v1/jwks").key(b"sk_live_x");
    let env = Request::new(Api::Frontend, b"GET", b"/v1/environment").ip([10, 0, 0, 1]);
    assert!(b.check(&jwks).await.unwrap().allowed());
    assert!(b.check(&env).await.unwrap().allowed());
    let no_ip = Request::new(Api::Frontend, b"POST", b"/v1/client/sign_ins");
    assert!(matches!(b.check(&no_ip).await, Err(Error::Request(_))));
    assert_eq!(b.limiter().stats().remote_errors, 0);
}

#[test]
fn options_that_cannot_work_are_refused() {
    for o in [
        Options::new("localhost"),
        Options::new("127.0.0.1:0"),
        Options {
            prefix: b"rc:{x}".to_vec(),
            ..Options::new("127.0.0.1:6379")
        },
        Options {
            timeout: Duration::ZERO,
            ..Options::new("127.0.0.1:6379")
        },
        Options {
            connections: 0,
            ..Options::new("127.0.0.1:6379")
        },
    ] {
        assert!(RedisBackend::new(limiter(), o.clone()).is_err(), "{o:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn redis_killed_gets_the_policy_then_the_breaker_then_recovery_after_restart() {
    let mut redis = Redis::start();
    let timeout = Duration::from_millis(500);
    let b = backend(redis.addr(), Policy::Local, timeout, 3);
    assert!(b.check(&sign_in(2)).await.unwrap().allowed());
    assert!(b.check(&sign_in(2)).await.unwrap().allowed());
    redis.kill();

    // Three failures (the pooled connection is found dead, then refused),
    // each within the timeout; then the breaker answers without trying.
    for i in 0..3 {
        let start = Instant::now();
        let (cause, answer) = failed(b.check(&sign_in(2)).await);
        assert!(matches!(cause, Cause::Io(_)), "{i}: {cause:?}");
        assert!(matches!(answer, Answer::Local(d) if d.allowed()));
        assert!(
            start.elapsed() < timeout + Duration::from_millis(500),
            "{i}"
        );
    }
    assert!(b.breaker_open());
    assert_eq!(b.client_stats().breaker_opens, 1);
    let (cause, answer) = failed(b.check(&sign_in(2)).await);
    assert_eq!(cause, Cause::BreakerOpen);
    // The local table had seen none of Redis's charges: its own burst.
    assert!(matches!(answer, Answer::Local(d) if d.allowed()));
    let s = b.limiter().stats();
    assert_eq!(
        (s.remote_errors, s.remote_fallbacks),
        (3, 4),
        "the breaker is no error"
    );

    // A probe after the interval fails while Redis is down, and reopens it.
    tokio::time::sleep(Duration::from_millis(350)).await;
    let (cause, _) = failed(b.check(&sign_in(2)).await);
    assert!(matches!(cause, Cause::Io(_)), "the probe: {cause:?}");
    assert_eq!(failed(b.check(&sign_in(2)).await).0, Cause::BreakerOpen);
    assert_eq!(b.client_stats().breaker_opens, 2);

    // Back up (empty): the next probe closes the breaker and Redis decides.
    redis.restart();
    tokio::time::sleep(Duration::from_millis(350)).await;
    let limit = CLERK.rules()[0].quota.limit;
    for left in (0..limit).rev() {
        let d = b.check(&sign_in(3)).await.unwrap();
        assert!(d.allowed() && d.remaining == left, "{d:?}");
    }
    assert!(!b.breaker_open());
    assert!(!b.check(&sign_in(3)).await.unwrap().allowed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn a_stalled_redis_times_out_into_the_policy_then_answers_again() {
    let redis = Redis::start();
    let timeout = Duration::from_millis(200);
    let b = backend(redis.addr(), Policy::FailOpen, timeout, 0);
    assert!(b.check(&sign_in(5)).await.unwrap().allowed());
    let mut sleeper = redis.cli_spawn(&["DEBUG", "SLEEP", "3"]);
    let asleep = Instant::now();
    while redis.answers_within(Duration::from_millis(100)) {
        assert!(
            asleep.elapsed() < Duration::from_secs(2),
            "DEBUG SLEEP did not start"
        );
    }
    let start = Instant::now();
    let (cause, answer) = failed(b.check(&sign_in(5)).await);
    let took = start.elapsed();
    assert_eq!((cause, answer), (Cause::Timeout, Answer::Open));
    assert!(
        took >= timeout && took < Duration::from_millis(1500),
        "{took:?}"
    );
    let _ = sleeper.wait();
    // The connection that timed out was dropped; a fresh one works. Redis
    // may have run the timed-out call as it woke: never looser.
    let d = b.check(&sign_in(5)).await.unwrap();
    let limit = CLERK.rules()[0].quota.limit;
    assert!(d.allowed() && d.remaining <= limit - 2, "{d:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn keys_of_the_wrong_type_get_the_policy_and_leave_the_breaker_closed() {
    let redis = Redis::start();
    let b = backend(redis.addr(), Policy::FailClosed, Duration::from_secs(2), 2);
    assert!(b.check(&sign_in(6)).await.unwrap().allowed());
    let keys = redis.keys("rc:*");
    assert_eq!(keys.len(), 1, "{keys:?}");
    let key = keys[0].as_str();
    redis.cli(&["DEL", key]);
    redis.cli(&["RPUSH", key, "x"]);
    for _ in 0..3 {
        let (cause, answer) = failed(b.check(&sign_in(6)).await);
        assert_eq!(answer, Answer::Closed);
        assert!(
            matches!(&cause, Cause::Server(m) if m.starts_with("WRONGTYPE")),
            "{cause:?}"
        );
    }
    redis.cli(&["DEL", key]);
    redis.cli(&["SET", key, "not a state"]);
    let (cause, _) = failed(b.check(&sign_in(6)).await);
    assert_eq!(cause, Cause::Server("RATECARD BADSTATE 0".into()));
    assert!(!b.breaker_open(), "one key's trouble is not Redis's");
    redis.cli(&["DEL", key]);
    let d = b.check(&sign_in(6)).await.unwrap();
    assert_eq!(
        d.remaining,
        CLERK.rules()[0].quota.limit - 1,
        "a fresh state"
    );
}

/// A server that reads one command and answers `reply` on each connection,
/// then holds it open; counts connections.
async fn stub(reply: &'static [u8]) -> (String, Arc<AtomicU32>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicU32::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {
                            if s.write_all(reply).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// A stub's reply, the cause it must give, and whether the connection is
/// kept (one for every call: an error reply leaves it in step) or dropped
/// (one per call: not RESP, not the script's reply, or never finished).
struct Case {
    reply: &'static [u8],
    expected: fn(&Cause) -> bool,
    kept: bool,
}

impl Case {
    fn kept(reply: &'static [u8], expected: fn(&Cause) -> bool) -> Case {
        Case {
            reply,
            expected,
            kept: true,
        }
    }

    fn dropped(reply: &'static [u8], expected: fn(&Cause) -> bool) -> Case {
        Case {
            reply,
            expected,
            kept: false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_answering_garbage_gets_the_policy_and_no_panic() {
    let timeout = Duration::from_millis(300);
    let cases = [
        Case::dropped(b"HTTP/1.1 400 Bad Request\r\n\r\n", |c| {
            *c == Cause::Protocol
        }),
        Case::dropped(b"+OK\r\n", |c| matches!(c, Cause::Shape(_))),
        Case::dropped(b":1\r\n", |c| matches!(c, Cause::Shape(_))),
        Case::dropped(b"*2\r\n:1\r\n:1\r\n", |c| matches!(c, Cause::Shape(_))),
        // The script's shape, but reply format 9.
        Case::dropped(b"*6\r\n:9\r\n:1\r\n:1\r\n:4\r\n:0\r\n:0\r\n", |c| {
            matches!(c, Cause::Shape(_))
        }),
        Case::kept(
            b"-ERR unknown command 'EVALSHA'\r\n",
            |c| matches!(c, Cause::Server(m) if m.starts_with("ERR")),
        ),
        Case::kept(b"-CLUSTERDOWN The cluster is down\r\n", |c| {
            *c == Cause::Server("CLUSTERDOWN".into())
        }),
        Case::kept(b"-MOVED 1 nowhere\r\n", |c| matches!(c, Cause::Redirect(_))),
        // A reply that never ends: the timeout, and the connection dropped.
        Case::dropped(b"$5\r\nhel", |c| *c == Cause::Timeout),
        Case::dropped(b"*99999999999\r\n", |c| *c == Cause::Timeout),
        Case::dropped(b"\x00\xff\xfe garbage", |c| *c == Cause::Protocol),
    ];
    for Case {
        reply,
        expected,
        kept,
    } in cases
    {
        let (addr, accepted) = stub(reply).await;
        let b = backend(addr, Policy::FailClosed, timeout, 0);
        for _ in 0..3 {
            let start = Instant::now();
            let r = b.check(&sign_in(7)).await;
            assert!(start.elapsed() < timeout + Duration::from_millis(500));
            let (cause, answer) = failed(r);
            assert!(
                expected(&cause),
                "{:?}: {cause:?}",
                String::from_utf8_lossy(reply)
            );
            assert_eq!(answer, Answer::Closed);
        }
        let conns = accepted.load(Ordering::Relaxed);
        if kept {
            assert_eq!(
                conns,
                1,
                "{:?}: one connection, still in step",
                String::from_utf8_lossy(reply)
            );
        } else {
            assert_eq!(
                conns,
                3,
                "{:?}: dropped after each call",
                String::from_utf8_lossy(reply)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_after_a_reply_are_decided_and_the_connection_dropped() {
    // A well-formed reply (allowed, 4 left), then bytes nobody asked for.
    let (addr, accepted) = stub(b"*6\r\n:1\r\n:1\r\n:1\r\n:4\r\n:0\r\n:0\r\n+extra\r\n").await;
    let b = backend(addr, Policy::FailClosed, Duration::from_secs(1), 0);
    for _ in 0..3 {
        let d = b.check(&sign_in(9)).await.unwrap();
        assert!(d.allowed() && d.remaining == 4, "{d:?}");
    }
    assert_eq!(
        accepted.load(Ordering::Relaxed),
        3,
        "out of step: a new connection each time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_redirects_forever_is_followed_once() {
    // Every node says the slot lives on itself: one redirection, then an error.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let moved: &'static [u8] = Box::leak(
        format!("-MOVED 42 {addr}\r\n")
            .into_bytes()
            .into_boxed_slice(),
    );
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(moved).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let b = backend(
        addr.to_string(),
        Policy::FailOpen,
        Duration::from_secs(1),
        0,
    );
    let (cause, answer) = failed(b.check(&sign_in(8)).await);
    assert!(matches!(cause, Cause::Redirect(_)), "{cause:?}");
    assert_eq!(answer, Answer::Open);
    assert_eq!(b.client_stats().redirects, 1);
}
