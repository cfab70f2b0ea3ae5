//! The layer in a real axum server on 127.0.0.1, driven by a real HTTP
//! client over loopback. Limits come from `ratecard::CLERK`; every expected
//! answer is what `Decision::write_response` gives for the decision a
//! second limiter (the mirror) makes on the same requests at the same time.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use ratecard::{
    Api, CheckError, Config, Decision, Limiter, Nanos, Quota, Request, Seed, CLERK, CLERK_429_BODY,
    FAIL_CLOSED_STATUS,
};
use ratecard_tower::{MetricsService, Network, RateLimitLayer};

const SIGN_IN: &str = "/v1/client/sign_ins";
const DEV_KEY: &str = "Bearer sk_test_loopback";
const LIVE_KEY: &str = "Bearer sk_live_loopback";
/// Every test must finish in this time, whatever the server does.
const BOUND: Duration = Duration::from_secs(60);

/// The clock of most tests: time stands still, so no quota replenishes
/// while a test runs and every count is exact.
fn frozen() -> Nanos {
    Nanos::from_secs(1_000)
}

fn quota(rule: &str) -> Quota {
    let found = CLERK.rules().iter().find(|r| r.name == rule);
    found
        .unwrap_or_else(|| panic!("{rule} is not in CLERK"))
        .quota
}

fn limiter(config: Config) -> Limiter<'static> {
    Limiter::new(&config, CLERK, Seed::random().unwrap()).unwrap()
}

fn config() -> Config {
    Config {
        capacity: 1 << 12,
        ..Config::DEFAULT
    }
}

fn shared() -> Arc<Limiter<'static>> {
    Arc::new(limiter(config()))
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
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
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn app(layer: RateLimitLayer, calls: &Arc<AtomicUsize>) -> Router {
    let c = calls.clone();
    Router::new()
        .fallback(move || {
            let c = c.clone();
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                "ok"
            }
        })
        .layer(layer)
}

async fn start(router: Router, calls: Arc<AtomicUsize>, connect_info: bool) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = if connect_info {
        let make = router.into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, make).await.unwrap() })
    } else {
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() })
    };
    Server { addr, calls, task }
}

async fn serve(layer: RateLimitLayer) -> Server {
    let calls = Arc::new(AtomicUsize::new(0));
    start(app(layer, &calls), calls, true).await
}

/// What came back.
struct Got {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Got {
    /// The field's one value (a repeated field fails the test).
    fn field(&self, name: &str) -> Option<&[u8]> {
        let mut values = self.headers.get_all(name).iter();
        let first = values.next().map(|v| v.as_bytes());
        assert!(values.next().is_none(), "{name} sent twice");
        first
    }
}

/// A real HTTP/1.1 client whose connections leave from one loopback address.
#[derive(Clone)]
struct Client {
    http: hyper_util::client::legacy::Client<HttpConnector, Empty<Bytes>>,
    server: SocketAddr,
}

impl Client {
    fn new(server: &Server, from: IpAddr) -> Client {
        let mut connector = HttpConnector::new();
        connector.set_local_address(Some(from));
        let http =
            hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
        Client {
            http,
            server: server.addr,
        }
    }

    async fn send(&self, method: &Method, path: &str, headers: &[(&str, &str)]) -> Got {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{}", self.server, path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let response = self
            .http
            .request(req.body(Empty::new()).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        Got {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }
}

/// Assert that `got` is the answer to `d`: the fields and body that
/// `write_response` writes, the inner service's "ok" when it passes.
fn assert_answer(d: &Decision, got: &Got) {
    let mut buf = vec![0u8; 4096];
    let r = d.write_response(&CLERK, &mut buf).unwrap();
    let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
    let want = |range: std::ops::Range<usize>| text((!range.is_empty()).then(|| &buf[range]));
    let fields = [
        ("ratelimit-policy", r.ratelimit_policy.clone()),
        ("ratelimit", r.ratelimit.clone()),
        ("retry-after", r.retry_after.clone()),
    ];
    for (name, range) in fields {
        assert_eq!(text(got.field(name)), want(range), "{name}");
    }
    if r.status == 0 {
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.body, "ok");
    } else {
        assert_eq!(got.status.as_u16(), r.status);
        assert_eq!(got.body, &buf[r.body.clone()]);
        assert_eq!(got.field("content-type"), Some(&b"application/json"[..]));
    }
}

/// Decides the same requests as the server, at the same time.
struct Mirror(Limiter<'static>);

impl Mirror {
    fn new() -> Mirror {
        Mirror(limiter(config()))
    }

    fn dry_run() -> Mirror {
        Mirror(limiter(Config {
            dry_run: true,
            ..config()
        }))
    }

    /// Decide `req` and check `got` against it; the decision.
    fn expect(&self, req: Request<'_>, got: &Got) -> Decision {
        let d = self.0.check(&req, frozen()).unwrap();
        assert_answer(&d, got);
        d
    }
}

fn frontend(path: &str, ip: IpAddr) -> Request<'_> {
    Request::new(Api::Frontend, b"POST", path.as_bytes()).ip(ip)
}

async fn bounded<F: std::future::Future<Output = ()>>(test: F) {
    tokio::time::timeout(BOUND, test)
        .await
        .expect("the test ran past its bound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ins_are_limited_per_client_ip_with_clerks_answer() {
    bounded(async {
        let layer = RateLimitLayer::builder(shared(), Api::Frontend)
            .clock(frozen)
            .build();
        let server = serve(layer).await;
        let mirror = Mirror::new();
        let limit = quota("fapi.sign_ins.create").limit;
        let (a, b) = (loopback(2), loopback(3));
        let from_a = Client::new(&server, a);
        for _ in 0..limit {
            let got = from_a.send(&Method::POST, SIGN_IN, &[]).await;
            assert_eq!(got.status, StatusCode::OK);
            mirror.expect(frontend(SIGN_IN, a), &got);
        }
        let denied = from_a.send(&Method::POST, SIGN_IN, &[]).await;
        let d = mirror.expect(frontend(SIGN_IN, a), &denied);
        assert_eq!(denied.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(denied.body, CLERK_429_BODY.as_bytes());
        assert_eq!(d.limit, limit, "the binding rule is the sign-in row");
        assert!(denied.field("retry-after").is_some());
        assert_eq!(
            server.calls(),
            limit as usize,
            "a denial never reaches the service"
        );
        // Another address has its own quota.
        let got = Client::new(&server, b)
            .send(&Method::POST, SIGN_IN, &[])
            .await;
        assert_eq!(got.status, StatusCode::OK);
        mirror.expect(frontend(SIGN_IN, b), &got);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_believed_from_trusted_proxies_only() {
    bounded(async {
        let proxy: Network = "127.0.0.1/32".parse().unwrap();
        let layer = RateLimitLayer::builder(shared(), Api::Frontend)
            .trusted_proxies([proxy])
            .clock(frozen)
            .build();
        let server = serve(layer).await;
        let mirror = Mirror::new();
        let limit = quota("fapi.sign_ins.create").limit;
        let via_proxy = Client::new(&server, loopback(1));
        // Behind the trusted proxy each forwarded client has its own quota.
        for i in 0..3 * limit {
            let xff = format!("198.51.100.{i}");
            let got = via_proxy
                .send(&Method::POST, SIGN_IN, &[("x-forwarded-for", &xff)])
                .await;
            assert_eq!(got.status, StatusCode::OK, "{xff}");
            mirror.expect(frontend(SIGN_IN, xff.parse().unwrap()), &got);
        }
        // The right-most untrusted hop is the client: what it claims to
        // its left does not buy it a new quota.
        let client: IpAddr = "203.0.113.5".parse().unwrap();
        for i in 0..=limit {
            let xff = format!("10.9.9.{i}, {client}");
            let got = via_proxy
                .send(&Method::POST, SIGN_IN, &[("x-forwarded-for", &xff)])
                .await;
            mirror.expect(frontend(SIGN_IN, client), &got);
            let want = if i < limit {
                StatusCode::OK
            } else {
                StatusCode::TOO_MANY_REQUESTS
            };
            assert_eq!(got.status, want, "request {i}");
        }
        // An untrusted peer's X-Forwarded-For is ignored: rotating it does
        // not get past the limit of the peer's own address.
        let direct = Client::new(&server, loopback(4));
        for i in 0..=limit {
            let xff = format!("198.51.100.{i}");
            let got = direct
                .send(&Method::POST, SIGN_IN, &[("x-forwarded-for", &xff)])
                .await;
            mirror.expect(frontend(SIGN_IN, loopback(4)), &got);
            let want = if i < limit {
                StatusCode::OK
            } else {
                StatusCode::TOO_MANY_REQUESTS
            };
            assert_eq!(got.status, want, "request {i}");
        }
    })
    .await;
}

fn backend<'a>(method: &'a str, path: &'a str, key: &'a str, ip: IpAddr) -> Request<'a> {
    Request::new(Api::Backend, method.as_bytes(), path.as_bytes())
        .key(key.as_bytes())
        .ip(ip)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_updates_are_limited_per_user_inside_the_instance_limit() {
    bounded(async {
        let layer = RateLimitLayer::builder(shared(), Api::Backend)
            .clock(frozen)
            .build();
        let server = serve(layer).await;
        let mirror = Mirror::new();
        let per_user = quota("bapi.users.update").limit;
        let instance = quota("bapi.instance.development").limit;
        let from = loopback(5);
        let client = Client::new(&server, from);
        let auth = [("authorization", DEV_KEY)];
        let mut allowed = 0;
        for _ in 0..per_user {
            let got = client.send(&Method::PATCH, "/v1/users/user_1", &auth).await;
            assert_eq!(got.status, StatusCode::OK);
            mirror.expect(backend("PATCH", "/v1/users/user_1", DEV_KEY, from), &got);
            allowed += 1;
        }
        let denied = client.send(&Method::PATCH, "/v1/users/user_1", &auth).await;
        let d = mirror.expect(backend("PATCH", "/v1/users/user_1", DEV_KEY, from), &denied);
        assert_eq!(denied.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(d.limit, per_user, "the per-user row binds");
        // Another user of the same instance is not limited by user_1's
        // updates, until the instance limit binds.
        let mut i = 2;
        loop {
            let path = format!("/v1/users/user_{i}");
            let got = client.send(&Method::PATCH, &path, &auth).await;
            let d = mirror.expect(backend("PATCH", &path, DEV_KEY, from), &got);
            if got.status != StatusCode::OK {
                assert_eq!(got.status, StatusCode::TOO_MANY_REQUESTS);
                assert_eq!(d.limit, instance, "the instance row binds");
                break;
            }
            allowed += 1;
            i += 1;
            assert!(i < 2 * instance, "the instance limit never bound");
        }
        assert_eq!(
            allowed, instance,
            "every allowed request counts against the instance"
        );
        assert_eq!(server.calls(), instance as usize);
        // A production key is another instance, with the production row.
        let got = client
            .send(
                &Method::PATCH,
                "/v1/users/user_1",
                &[("authorization", LIVE_KEY)],
            )
            .await;
        assert_eq!(got.status, StatusCode::OK);
        let d = mirror.expect(backend("PATCH", "/v1/users/user_1", LIVE_KEY, from), &got);
        assert!(d
            .matched
            .contains(mirror.0.rule_id("bapi.instance.production").unwrap()));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_is_exempt_from_every_limit_and_gets_no_fields() {
    bounded(async {
        let layer = RateLimitLayer::builder(shared(), Api::Backend)
            .clock(frozen)
            .build();
        let server = serve(layer).await;
        let mirror = Mirror::new();
        let instance = quota("bapi.instance.development").limit;
        let from = loopback(6);
        let client = Client::new(&server, from);
        let auth = [("authorization", DEV_KEY)];
        for _ in 0..instance + 10 {
            let got = client.send(&Method::GET, "/v1/jwks", &auth).await;
            assert_eq!(got.status, StatusCode::OK);
            assert!(got.field("ratelimit").is_none() && got.field("ratelimit-policy").is_none());
            let d = mirror.expect(backend("GET", "/v1/jwks", DEV_KEY, from), &got);
            assert_eq!(d.verdict, ratecard::Verdict::Exempt);
        }
        // Nothing was charged: the instance still has its whole quota.
        let got = client.send(&Method::GET, "/v1/users/me", &auth).await;
        let d = mirror.expect(backend("GET", "/v1/users/me", DEV_KEY, from), &got);
        assert_eq!(d.remaining, instance - 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_paths_pass_untouched() {
    bounded(async {
        let layer = RateLimitLayer::builder(shared(), Api::Frontend)
            .clock(frozen)
            .build();
        let server = serve(layer).await;
        let mirror = Mirror::new();
        let from = loopback(7);
        let client = Client::new(&server, from);
        let n = 3 * quota("fapi.sign_ins.create").limit as usize;
        for _ in 0..n {
            let got = client.send(&Method::GET, "/healthz", &[]).await;
            assert_eq!(got.status, StatusCode::OK);
            assert!(!got
                .headers
                .keys()
                .any(|k| k.as_str().starts_with("ratelimit")));
            let d = mirror.expect(
                Request::new(Api::Frontend, b"GET", b"/healthz").ip(from),
                &got,
            );
            assert_eq!(d.verdict, ratecard::Verdict::Unmatched);
        }
        assert_eq!(server.calls(), n);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_lets_denials_through_with_their_fields() {
    bounded(async {
        // The layer's option on an enforcing limiter, and a limiter made
        // for dry run: the same answers.
        let by_layer = RateLimitLayer::builder(shared(), Api::Frontend)
            .dry_run(true)
            .clock(frozen)
            .build();
        let dry = Arc::new(limiter(Config {
            dry_run: true,
            ..config()
        }));
        let by_limiter = RateLimitLayer::builder(dry.clone(), Api::Frontend)
            .clock(frozen)
            .build();
        let limit = quota("fapi.sign_ins.create").limit;
        for layer in [by_layer, by_limiter] {
            let server = serve(layer).await;
            let mirror = Mirror::dry_run();
            let from = loopback(8);
            let client = Client::new(&server, from);
            for i in 0..limit + 3 {
                let got = client.send(&Method::POST, SIGN_IN, &[]).await;
                assert_eq!(got.status, StatusCode::OK);
                let d = mirror.expect(frontend(SIGN_IN, from), &got);
                assert_eq!(d.is_limited(), i >= limit);
                assert!(
                    got.field("retry-after").is_none(),
                    "a pass has no Retry-After"
                );
                assert!(got.field("ratelimit").is_some());
            }
            assert_eq!(server.calls(), limit as usize + 3);
        }
        let rule = dry.rule_id("fapi.sign_ins.create").unwrap();
        assert_eq!(dry.rule_stats(rule).unwrap().dry_run_limited, 3);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_its_subject_fails_closed_or_open_as_configured() {
    bounded(async {
        let errors = Arc::new(AtomicUsize::new(0));
        let e = errors.clone();
        let closed = RateLimitLayer::builder(shared(), Api::Frontend)
            .clock(frozen)
            .on_error(move |err: &CheckError| {
                assert_eq!(*err, CheckError::MissingSubject);
                e.fetch_add(1, Ordering::SeqCst);
            })
            .build();
        // Served without connect info: the layer never learns the peer.
        let calls = Arc::new(AtomicUsize::new(0));
        let server = start(app(closed, &calls), calls, false).await;
        let client = Client::new(&server, loopback(9));
        let got = client.send(&Method::POST, SIGN_IN, &[]).await;
        assert_eq!(got.status.as_u16(), FAIL_CLOSED_STATUS);
        assert!(got.body.is_empty());
        assert!(got.field("ratelimit").is_none() && got.field("retry-after").is_none());
        assert_eq!((server.calls(), errors.load(Ordering::SeqCst)), (0, 1));
        // Unmatched requests need no subject.
        let got = client.send(&Method::GET, "/healthz", &[]).await;
        assert_eq!(got.status, StatusCode::OK);
        drop(server);

        // Backend with neither key nor address fails closed too.
        let calls = Arc::new(AtomicUsize::new(0));
        let layer = RateLimitLayer::builder(shared(), Api::Backend)
            .clock(frozen)
            .build();
        let server = start(app(layer, &calls), calls, false).await;
        let client = Client::new(&server, loopback(9));
        let got = client.send(&Method::GET, "/v1/users/me", &[]).await;
        assert_eq!(got.status.as_u16(), FAIL_CLOSED_STATUS);
        let got = client
            .send(&Method::GET, "/v1/users/me", &[("authorization", DEV_KEY)])
            .await;
        assert_eq!(got.status, StatusCode::OK, "a key is a subject");
        drop(server);

        let open = RateLimitLayer::builder(shared(), Api::Frontend)
            .clock(frozen)
            .fail_open(true)
            .build();
        let calls = Arc::new(AtomicUsize::new(0));
        let server = start(app(open, &calls), calls, false).await;
        let client = Client::new(&server, loopback(9));
        for _ in 0..=quota("fapi.sign_ins.create").limit {
            let got = client.send(&Method::POST, SIGN_IN, &[]).await;
            assert_eq!(got.status, StatusCode::OK);
            assert!(got.field("ratelimit").is_none(), "no decision, no fields");
        }
    })
    .await;
}

/// `n` requests at once from `client`; the number answered 200 (every
/// other answer must be a 429).
async fn at_once(
    client: &Client,
    n: usize,
    req: impl Fn(usize) -> (Method, String, Vec<(&'static str, &'static str)>),
) -> usize {
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (method, path, headers) = req(i);
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            c.send(&method, &path, &headers).await.status
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected {other}"),
        }
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_get_exactly_the_limit() {
    bounded(async {
        let frontend = serve(
            RateLimitLayer::builder(shared(), Api::Frontend)
                .clock(frozen)
                .build(),
        )
        .await;
        let client = Client::new(&frontend, loopback(10));
        let ok = at_once(&client, 64, |_| (Method::POST, SIGN_IN.to_string(), vec![])).await;
        assert_eq!(ok, quota("fapi.sign_ins.create").limit as usize);
        assert_eq!(frontend.calls(), ok);

        let auth = vec![("authorization", DEV_KEY)];
        let per_user = serve(
            RateLimitLayer::builder(shared(), Api::Backend)
                .clock(frozen)
                .build(),
        )
        .await;
        let client = Client::new(&per_user, loopback(10));
        let ok = at_once(&client, 64, |_| {
            (Method::PATCH, "/v1/users/user_1".into(), auth.clone())
        })
        .await;
        assert_eq!(ok, quota("bapi.users.update").limit as usize);
        // A fresh instance: a request denied by its per-user row may, under
        // contention, leave its instance charge in place (the core undoes a
        // charge only if the slot has not moved on: stricter, never looser),
        // so the instance's exact count is taken on distinct users alone.
        let instance = serve(
            RateLimitLayer::builder(shared(), Api::Backend)
                .clock(frozen)
                .build(),
        )
        .await;
        let client = Client::new(&instance, loopback(10));
        let limit = quota("bapi.instance.development").limit as usize;
        let ok = at_once(&client, limit + 50, |i| {
            (Method::PATCH, format!("/v1/users/u{i}"), auth.clone())
        })
        .await;
        assert_eq!(ok, limit, "the instance limit holds under concurrency");
        assert_eq!(instance.calls(), limit);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_behind_one_service_are_limited_apart() {
    bounded(async {
        let layer = RateLimitLayer::builder(shared(), Api::Frontend)
            .tenant_header(http::HeaderName::from_static("x-tenant"))
            .clock(frozen)
            .build();
        let server = serve(layer).await;
        let mirror = Mirror::new();
        let from = loopback(11);
        let client = Client::new(&server, from);
        let limit = quota("fapi.sign_ins.create").limit;
        for tenant in ["a", "b"] {
            for i in 0..=limit {
                let got = client
                    .send(&Method::POST, SIGN_IN, &[("x-tenant", tenant)])
                    .await;
                mirror.expect(frontend(SIGN_IN, from).tenant(tenant.as_bytes()), &got);
                assert_eq!(got.status == StatusCode::OK, i < limit, "{tenant} {i}");
            }
        }
    })
    .await;
}

static STEPPED: AtomicU64 = AtomicU64::new(1_000_000_000_000);

fn stepped() -> Nanos {
    Nanos(STEPPED.load(Ordering::SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_client_is_let_in_again_after_retry_after() {
    bounded(async {
        let layer = RateLimitLayer::builder(shared(), Api::Frontend)
            .clock(stepped)
            .build();
        let server = serve(layer).await;
        let client = Client::new(&server, loopback(12));
        for _ in 0..quota("fapi.sign_ins.create").limit {
            assert_eq!(
                client.send(&Method::POST, SIGN_IN, &[]).await.status,
                StatusCode::OK
            );
        }
        let denied = client.send(&Method::POST, SIGN_IN, &[]).await;
        assert_eq!(denied.status, StatusCode::TOO_MANY_REQUESTS);
        let secs: u64 = std::str::from_utf8(denied.field("retry-after").unwrap())
            .unwrap()
            .parse()
            .unwrap();
        STEPPED.fetch_add(secs * 1_000_000_000 - 1_000_000, Ordering::SeqCst);
        let early = client.send(&Method::POST, SIGN_IN, &[]).await;
        assert_eq!(
            early.status,
            StatusCode::TOO_MANY_REQUESTS,
            "a millisecond early"
        );
        STEPPED.fetch_add(1_000_000, Ordering::SeqCst);
        assert_eq!(
            client.send(&Method::POST, SIGN_IN, &[]).await.status,
            StatusCode::OK
        );
    })
    .await;
}

/// The value of the sample of `family` whose labels include every one of
/// `labels` (`name="value"` each).
fn sample(text: &str, family: &str, labels: &[&str]) -> Option<u64> {
    text.lines()
        .filter(|l| l.starts_with(family) && l[family.len()..].starts_with('{'))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

async fn metrics_server() -> (Server, Client, Client) {
    let l = shared();
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = RateLimitLayer::builder(l.clone(), Api::Frontend)
        .clock(frozen)
        .build();
    let router = app(layer, &calls)
        .route_service("/metrics", MetricsService::new([("frontend", l)]).unwrap());
    let server = start(router, calls, true).await;
    let client = Client::new(&server, loopback(13));
    let scraper = Client::new(&server, loopback(14));
    (server, client, scraper)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_page_counts_the_decisions_made() {
    bounded(async {
        let (_server, client, scraper) = metrics_server().await;
        let limit = quota("fapi.sign_ins.create").limit as u64;
        for _ in 0..limit + 2 {
            client.send(&Method::POST, SIGN_IN, &[]).await;
        }
        for _ in 0..3 {
            client.send(&Method::GET, "/healthz", &[]).await;
        }
        let got = scraper.send(&Method::GET, "/metrics", &[]).await;
        assert_eq!(got.status, StatusCode::OK);
        assert!(got
            .field("content-type")
            .unwrap()
            .starts_with(b"text/plain; version=0.0.4"));
        let text = std::str::from_utf8(&got.body).unwrap();
        let rule = r#"rule="fapi.sign_ins.create""#;
        let zone = r#"zone="frontend""#;
        let decisions = "ratecard_decisions_total";
        assert_eq!(
            sample(text, decisions, &[zone, rule, r#"outcome="allowed""#]),
            Some(limit)
        );
        assert_eq!(
            sample(text, decisions, &[zone, rule, r#"outcome="limited""#]),
            Some(2)
        );
        assert_eq!(
            sample(text, decisions, &[zone, r#"outcome="unmatched""#]),
            Some(3)
        );
        assert_eq!(sample(text, "ratecard_table_slots", &[zone]), Some(1 << 12));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs promtool (Debian's prometheus package): run with --ignored"]
async fn the_metrics_page_passes_promtool() {
    bounded(async {
        let (_server, client, scraper) = metrics_server().await;
        for _ in 0..7 {
            client.send(&Method::POST, SIGN_IN, &[]).await;
        }
        let got = scraper.send(&Method::GET, "/metrics", &[]).await;
        let mut child = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool is installed");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&got.body).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    })
    .await;
}
