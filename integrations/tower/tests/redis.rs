//! The layer on `ratecard_redis::RedisBackend` (feature `redis`): real
//! axum servers on 127.0.0.1 in front of a real `redis-server`, started
//! and stopped by each test (127.0.0.1, a free port, no persistence).
//! Ignored by default; CI runs them with
//! `cargo test -p ratecard-tower --features redis --test redis -- --include-ignored`.

#[path = "../../redis/tests/common/mod.rs"]
mod redis_server;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::extract::ConnectInfo;
use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use ratecard::{
    Api, Config, Decision, Limiter, Nanos, Request, Rule, Seed, CLERK, CLERK_429_BODY,
    FAIL_CLOSED_STATUS,
};
use ratecard_redis::{Answer, Cause, Error, Options, Policy, RedisBackend};
use ratecard_tower::{Builder, Check, Decider, RateLimitLayer};
use redis_server::Redis;
use tower::{Layer, Service};

const SIGN_IN: &str = "/v1/client/sign_ins";
/// Every test must finish in this time, whatever Redis or a server does.
const BOUND: Duration = Duration::from_secs(60);
/// Every gateway of one limit shares the seed: keys are its keyed hashes.
const SEED: [u8; 16] = *b"tower-redis-test";

fn rule(name: &str) -> &'static Rule<'static> {
    CLERK
        .rules()
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no rule {name} in CLERK"))
}

fn limiter() -> Limiter<'static> {
    let config = Config {
        capacity: 1 << 12,
        ..Config::DEFAULT
    };
    Limiter::new(&config, CLERK, Seed::from_bytes(SEED)).unwrap()
}

fn backend(redis: &Redis, policy: Policy) -> Arc<RedisBackend> {
    let options = Options {
        policy,
        // Generous: a loaded machine must not turn a slow answer into a
        // policy answer (a stopped Redis refuses connections at once).
        timeout: Duration::from_secs(2),
        ..Options::new(redis.addr())
    };
    Arc::new(RedisBackend::new(Arc::new(limiter()), options).unwrap())
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

async fn bounded<F: std::future::Future<Output = ()>>(test: F) {
    tokio::time::timeout(BOUND, test)
        .await
        .expect("the test ran past its bound");
}

/// An axum server on a free loopback port whose every route counts its
/// calls and answers "ok"; aborted when dropped (also when a test fails).
struct Server {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start(layer: RateLimitLayer<RedisBackend>) -> Server {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let router = Router::new()
            .fallback(move || {
                let c = c.clone();
                async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    "ok"
                }
            })
            .layer(layer);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let make = router.into_make_service_with_connect_info::<SocketAddr>();
        let task = tokio::spawn(async move { axum::serve(listener, make).await.unwrap() });
        Server { addr, calls, task }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// What came back.
struct Got {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Got {
    fn field(&self, name: &str) -> Option<&str> {
        let mut values = self.headers.get_all(name).iter();
        let first = values.next().map(|v| v.to_str().unwrap());
        assert!(values.next().is_none(), "{name} sent twice");
        first
    }

    /// `r` of the `RateLimit` field.
    fn remaining(&self) -> Option<u32> {
        let field = self.field("ratelimit")?;
        let (_, r) = field.split_once(";r=")?;
        r.split(';').next()?.parse().ok()
    }
}

/// A real HTTP/1.1 client whose connections leave from one loopback
/// address (the client IP the layers key on).
struct Client {
    http: hyper_util::client::legacy::Client<HttpConnector, Empty<Bytes>>,
}

impl Client {
    fn new(from: IpAddr) -> Client {
        let mut connector = HttpConnector::new();
        connector.set_local_address(Some(from));
        let http =
            hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
        Client { http }
    }

    async fn send(&self, server: &Server, method: Method, path: &str) -> Got {
        let req = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{}", server.addr, path))
            .body(Empty::new())
            .unwrap();
        let (parts, body) = self.http.request(req).await.unwrap().into_parts();
        Got {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    async fn sign_in(&self, server: &Server) -> Got {
        self.send(server, Method::POST, SIGN_IN).await
    }
}

/// Assert that `got` is the answer to `d`: the fields and body that
/// `write_response` writes, the inner service's "ok" when it passes.
fn assert_answer(d: &Decision, got: &Got) {
    let mut buf = vec![0u8; 4096];
    let r = d.write_response(&CLERK, &mut buf).unwrap();
    let want = |range: std::ops::Range<usize>| {
        (!range.is_empty()).then(|| String::from_utf8_lossy(&buf[range]).into_owned())
    };
    for (name, range) in [
        ("ratelimit-policy", r.ratelimit_policy.clone()),
        ("ratelimit", r.ratelimit.clone()),
        ("retry-after", r.retry_after.clone()),
    ] {
        assert_eq!(got.field(name).map(str::to_string), want(range), "{name}");
    }
    if r.status == 0 {
        assert_eq!((got.status, &got.body[..]), (StatusCode::OK, &b"ok"[..]));
    } else {
        assert_eq!(got.status.as_u16(), r.status);
        assert_eq!(got.body, &buf[r.body.clone()]);
    }
}

/// What `on_error` heard: the policy's answer of each error.
#[derive(Clone, Default)]
struct Heard(Arc<Mutex<Vec<Error>>>);

impl Heard {
    fn on<D>(&self, builder: Builder<D>) -> Builder<D>
    where
        D: Decider<Error = Error>,
    {
        let heard = self.clone();
        builder.on_error(move |e: &Error| heard.0.lock().unwrap().push(e.clone()))
    }

    fn take(&self) -> Vec<Error> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn two_services_on_one_redis_give_one_sign_in_burst_then_429() {
    bounded(async {
        let redis = Redis::start();
        let servers = [
            Server::start(RateLimitLayer::frontend(backend(
                &redis,
                Policy::FailClosed,
            )))
            .await,
            Server::start(RateLimitLayer::frontend(backend(
                &redis,
                Policy::FailClosed,
            )))
            .await,
        ];
        let sign_ins = rule("fapi.sign_ins.create");
        let interval =
            Duration::from_nanos(sign_ins.quota.period.0 / u64::from(sign_ins.quota.limit));
        let client = Client::new(loopback(21));
        let start = Instant::now();
        let mut allowed = 0u32;
        let denied = loop {
            let got = client.sign_in(&servers[allowed as usize % 2]).await;
            if got.status != StatusCode::OK {
                break got;
            }
            // The count goes down across the two services: one state.
            assert_eq!(got.remaining(), Some(sign_ins.quota.limit - allowed - 1));
            allowed += 1;
            assert!(allowed <= 100, "no denial");
        };
        // GCRA hands a unit back one interval after the first request.
        assert!(
            start.elapsed() < interval,
            "too slow to count exactly: {:?}",
            start.elapsed()
        );
        assert_eq!(allowed, sign_ins.quota.limit, "Clerk's sign-in burst");
        assert_eq!(denied.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(denied.body, CLERK_429_BODY.as_bytes());
        assert_eq!(denied.field("content-type"), Some("application/json"));
        let retry: u64 = denied.field("retry-after").unwrap().parse().unwrap();
        assert!((1..=interval.as_secs().max(1)).contains(&retry), "{retry}");
        assert!(denied
            .field("ratelimit")
            .unwrap()
            .starts_with(&format!("\"{}\";r=0;", sign_ins.name)));
        // The other service, asked next, says the same (Redis, not a cache).
        let again = client.sign_in(&servers[(allowed as usize + 1) % 2]).await;
        assert_eq!(again.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(servers[0].calls() + servers[1].calls(), allowed as usize);
        // Another client has its own burst, on either service.
        let other = Client::new(loopback(22)).sign_in(&servers[1]).await;
        assert_eq!(other.status, StatusCode::OK);
        assert_eq!(other.remaining(), Some(sign_ins.quota.limit - 1));
        assert!(!redis.keys("rc:*").is_empty(), "the state is in Redis");
    })
    .await;
}

fn frontend(backend: Arc<RedisBackend>) -> Builder<RedisBackend> {
    RateLimitLayer::builder(backend, Api::Frontend)
}

/// Every error `heard` holds is Redis's, answered as `answer` says.
fn all_remote(heard: &[Error], answer: fn(&Answer) -> bool) -> bool {
    heard
        .iter()
        .all(|e| matches!(e, Error::Remote { answer: a, .. } if answer(a)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn a_stopped_redis_fails_closed_by_default_and_passes_when_told_to() {
    bounded(async {
        let mut redis = Redis::start();
        let (heard_closed, heard_open) = (Heard::default(), Heard::default());
        let closed = Server::start(
            heard_closed
                .on(frontend(backend(&redis, Policy::FailClosed)))
                .build(),
        )
        .await;
        // The layer's fail_open: Redis's fail-closed answer takes the path
        // of any undecided request, which this layer passes.
        let layer_open = Server::start(
            frontend(backend(&redis, Policy::FailClosed))
                .fail_open(true)
                .build(),
        )
        .await;
        // The backend's own policy.
        let policy_open = Server::start(
            heard_open
                .on(frontend(backend(&redis, Policy::FailOpen)))
                .build(),
        )
        .await;
        let servers = [&closed, &layer_open, &policy_open];
        let client = Client::new(loopback(31));
        for s in servers {
            let got = client.sign_in(s).await;
            assert_eq!(got.status, StatusCode::OK);
            assert!(got.field("ratelimit").is_some(), "decided by Redis");
        }

        redis.kill();
        let limit = rule("fapi.sign_ins.create").quota.limit;
        // Past the limit (nothing counts any more) and past the breaker's
        // threshold (then the policy answers with no call).
        let tries = limit as usize + 10;
        for _ in 0..tries {
            let got = client.sign_in(&closed).await;
            assert_eq!(got.status.as_u16(), FAIL_CLOSED_STATUS);
            assert!(got.body.is_empty());
            assert!(got.field("ratelimit").is_none() && got.field("retry-after").is_none());
            for open in [&layer_open, &policy_open] {
                let got = client.sign_in(open).await;
                assert_eq!(got.status, StatusCode::OK);
                assert!(got.field("ratelimit").is_none(), "no decision, no fields");
                assert!(got.field("ratelimit-policy").is_none());
            }
        }
        assert_eq!(closed.calls(), 1, "a refusal never reaches the service");
        assert_eq!(layer_open.calls(), 1 + tries);
        assert_eq!(policy_open.calls(), 1 + tries);
        let heard = heard_closed.take();
        assert_eq!(heard.len(), tries, "on_error hears every refusal");
        assert!(all_remote(&heard, |a| *a == Answer::Closed), "{heard:?}");
        assert!(heard.iter().any(|e| matches!(
            e,
            Error::Remote {
                cause: Cause::Io(_),
                ..
            }
        )));
        assert!(
            heard.iter().any(|e| matches!(
                e,
                Error::Remote {
                    cause: Cause::BreakerOpen,
                    ..
                }
            )),
            "the breaker opened"
        );
        let heard = heard_open.take();
        assert_eq!(heard.len(), tries);
        assert!(all_remote(&heard, |a| *a == Answer::Open), "{heard:?}");
        // A request no rule matches needs no Redis.
        let got = client.send(&closed, Method::GET, "/healthz").await;
        assert_eq!(got.status, StatusCode::OK);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn a_stopped_redis_under_the_local_policy_gets_the_local_tables_answers() {
    bounded(async {
        let mut redis = Redis::start();
        let heard = Heard::default();
        let server =
            Server::start(heard.on(frontend(backend(&redis, Policy::Local))).build()).await;
        let other = Server::start(frontend(backend(&redis, Policy::Local)).build()).await;
        redis.kill();

        let sign_ins = rule("fapi.sign_ins.create");
        let from = loopback(41);
        let client = Client::new(from);
        let start = Instant::now();
        let mut answers = Vec::new();
        for _ in 0..=sign_ins.quota.limit {
            answers.push(client.sign_in(&server).await);
        }
        // The backend's table runs on a real clock, the mirror on a frozen
        // one: their fields agree to the second while less than one passes.
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "too slow to compare"
        );
        let mirror = limiter();
        let request = Request::new(Api::Frontend, b"POST", SIGN_IN.as_bytes()).ip(from);
        for got in &answers {
            assert_answer(
                &mirror.check(&request, Nanos::from_secs(1_000)).unwrap(),
                got,
            );
        }
        let denied = answers.last().unwrap();
        assert_eq!(denied.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(denied.body, CLERK_429_BODY.as_bytes());
        assert_eq!(server.calls(), sign_ins.quota.limit as usize);
        let heard = heard.take();
        assert_eq!(heard.len(), answers.len(), "on_error hears every fallback");
        assert!(
            all_remote(&heard, |a| matches!(a, Answer::Local(_))),
            "{heard:?}"
        );
        // Per-host limits: another service's table has its own burst.
        let got = client.sign_in(&other).await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.remaining(), Some(sign_ins.quota.limit - 1));
    })
    .await;
}

struct Counting;

thread_local! {
    static COUNT: Cell<Option<usize>> = const { Cell::new(None) };
}

// SAFETY: every call is forwarded to `System` unchanged; the thread-local
// counter is const-initialised, so reading it never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
}

fn count() {
    let _ = COUNT.try_with(|c| {
        if let Some(n) = c.get() {
            c.set(Some(n + 1));
        }
    });
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations on this thread while `f` runs to completion (on a
/// current-thread runtime, everything it drives runs here too).
async fn allocations<T>(f: impl std::future::Future<Output = T>) -> (usize, T) {
    COUNT.with(|c| c.set(Some(0)));
    let out = f.await;
    let n = COUNT.with(|c| c.replace(None)).unwrap_or(0);
    (n, out)
}

/// The inner service: an empty 200, as bare as a response gets.
#[derive(Clone)]
struct Bare;

impl Service<http::Request<Empty<Bytes>>> for Bare {
    type Response = http::Response<Empty<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<Empty<Bytes>>) -> Self::Future {
        std::future::ready(Ok(http::Response::new(Empty::new())))
    }
}

/// A sign-in from 10.3.0.`i`, as axum hands it over.
fn bare_sign_in(i: u8) -> http::Request<Empty<Bytes>> {
    let mut r = http::Request::post(SIGN_IN).body(Empty::new()).unwrap();
    let peer = SocketAddr::from(([10, 3, 0, i], 4000));
    r.extensions_mut().insert(ConnectInfo(peer));
    r
}

/// One request through `s`, readiness first, as a server drives it.
async fn once<S: Service<R>, R>(s: &mut S, r: R) -> Result<S::Response, S::Error> {
    std::future::poll_fn(|cx| s.poll_ready(cx)).await?;
    s.call(r).await
}

/// The layer's share of a request to Redis: what asking through
/// `Decider::check` costs beyond awaiting `RedisBackend::check` itself,
/// on the same warm connection and the same kind of request.
#[test]
#[ignore = "needs redis-server"]
fn a_round_trip_costs_one_boxed_future_and_an_answer_made_at_once_none() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut redis = Redis::start();
    let b = Arc::new(
        RedisBackend::new(
            Arc::new(limiter()),
            Options {
                breaker_failures: 1,
                breaker_open_for: Duration::from_secs(60),
                timeout: Duration::from_secs(2),
                ..Options::new(redis.addr())
            },
        )
        .unwrap(),
    );
    let sign_in =
        |i: u8| Request::new(Api::Frontend, b"POST", SIGN_IN.as_bytes()).ip([10, 1, 0, i]);
    let through_decider = |r: Request<'_>| match Decider::check(&b, &r, Nanos(0)) {
        Check::Later(f) => f,
        Check::Now(d) => panic!("a fresh client goes to Redis: {d:?}"),
    };
    runtime.block_on(async {
        // Warm: the connection is open and the script loaded.
        for i in 0..3 {
            assert!(b.check(&sign_in(i)).await.unwrap().allowed());
        }
        let mut shares = Vec::new();
        for i in 0..100u8 {
            let (direct, d) = allocations(b.check(&sign_in(2 * i + 10))).await;
            let r = sign_in(2 * i + 11);
            let (layered, l) = allocations(async { through_decider(r).await }).await;
            assert!(d.unwrap().allowed() && l.unwrap().allowed());
            shares.push(layered as isize - direct as isize);
        }
        assert!(shares.iter().all(|&s| s == 1), "{shares:?}");

        // The whole layer, on Redis and on the local table, around the same
        // bare service: the round trip's box is the only difference.
        let on_redis = frontend(b.clone()).build();
        let local = RateLimitLayer::frontend(Arc::new(limiter()));
        let (mut on_redis, mut local) = (on_redis.layer(Bare), local.layer(Bare));
        let mut shares = Vec::new();
        for i in 0..100u8 {
            let (remote, r) = allocations(once(&mut on_redis, bare_sign_in(i))).await;
            let (here, l) = allocations(once(&mut local, bare_sign_in(i))).await;
            let (r, l) = (r.unwrap(), l.unwrap());
            assert_eq!((r.status(), l.status()), (StatusCode::OK, StatusCode::OK));
            assert!(r.headers().contains_key("ratelimit") && l.headers().contains_key("ratelimit"));
            shares.push(remote as isize - here as isize);
        }
        assert!(shares.iter().all(|&s| s == 1), "{shares:?}");

        // Decided with no round trip: at once, with no allocation.
        let unmatched = Request::new(Api::Frontend, b"GET", b"/healthz").ip([10, 2, 0, 1]);
        let (n, check) = allocations(async { Decider::check(&b, &unmatched, Nanos(0)) }).await;
        assert!(matches!(check, Check::Now(Ok(_))) && n == 0, "{n}");

        // An open breaker answers at once too.
        redis.kill();
        let failed = through_decider(sign_in(250)).await;
        assert!(
            matches!(
                failed,
                Err(Error::Remote {
                    cause: Cause::Io(_),
                    ..
                })
            ),
            "{failed:?}"
        );
        assert!(b.breaker_open());
        let r = sign_in(251);
        let (n, check) = allocations(async { Decider::check(&b, &r, Nanos(0)) }).await;
        let Check::Now(Err(e)) = check else {
            panic!("the policy answers at once");
        };
        assert_eq!(
            e,
            Error::Remote {
                cause: Cause::BreakerOpen,
                answer: Answer::Closed
            }
        );
        assert_eq!(n, 0);
    });
}
