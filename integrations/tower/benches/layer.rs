//! An axum handler called in-process (the Router as a tower service, no
//! network), without a layer, with ratecard's and with tower_governor's,
//! in one run. Both limiters key on the peer address (axum's
//! `ConnectInfo`) and read a real clock; one client address (a hot key).
//!
//! - `allowed`: a limit no request reaches (10^9 per second, burst 10^9),
//!   so every request is charged and passes;
//! - `denied`: Clerk's sign-in row (5 per 10 s: burst 5, one every 2 s),
//!   whose quota the first requests exhaust, so every timed request is
//!   refused with the limiter's 429.
//!
//! - `parts` (the `allowed` case): the layer on a bare tower service that
//!   returns an empty response, the bare service alone, and the two core
//!   calls the layer makes, `Limiter::check` (at `monotonic_now`) and
//!   `Decision::write_response`: where the layer's time goes.
//!
//! tower_governor runs twice: bare, and with `use_headers()`, which adds
//! its quota headers to every answer as ratecard adds `RateLimit` fields.
//!
//! `cargo bench -p ratecard-tower --bench layer -- --warm-up-time 1 --measurement-time 3`
//! (`RATECARD_BENCH_CLOCK=cpu` times the thread's CPU time, as the core's
//! benchmarks do: steadier on a shared machine).

// The core benchmarks' clock, shared rather than copied.
#[path = "../../../benches/benches/decision/clock.rs"]
mod clock;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::post;
use axum::Router;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{Request, StatusCode};
use ratecard::{
    Api, Config, Limiter, Method, Nanos, Quota, Route, Rule, RuleTable, Scope, Seed, CLERK,
};
use ratecard_tower::RateLimitLayer;
use tower::Service;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::GovernorLayer;

const PATH: &str = "/v1/client/sign_ins";
const ROUTES: &[Route<'static>] = &[Route::new(Method::Post, PATH)];
/// The `allowed` limit: one unit per nanosecond, a burst of 10^9.
const UNREACHED: &[Rule<'static>] = &[Rule::new(
    "bench.sign_ins",
    Api::Frontend,
    Scope::ClientIp,
    ROUTES,
    Quota::new(1_000_000_000, Nanos::from_secs(1)),
)];

fn app() -> Router {
    Router::new().route(PATH, post(|| async { "ok" }))
}

fn request() -> Request<Body> {
    let mut r = Request::post(PATH).body(Body::empty()).unwrap_or_default();
    r.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([203, 0, 113, 7], 4000))));
    r
}

/// Poll a future that is ready at once (every one here is).
fn now<F: Future>(f: F) -> F::Output {
    match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("an in-process axum handler is ready at once"),
    }
}

/// One request through `s`, readiness first, as a server drives it.
fn once<S: Service<Request<Body>>>(s: &mut S, r: Request<Body>) -> Result<S::Response, S::Error> {
    now(std::future::poll_fn(|cx| s.poll_ready(cx)))?;
    now(s.call(r))
}

fn status<S>(s: &mut S) -> StatusCode
where
    S: Service<Request<Body>, Response = axum::response::Response>,
{
    once(s, request()).map_or(StatusCode::INTERNAL_SERVER_ERROR, |r| r.status())
}

fn ratecard(rules: RuleTable<'static>) -> Router {
    let config = Config {
        capacity: 1 << 12,
        ..Config::DEFAULT
    };
    let seed = Seed::random().unwrap_or(Seed::from_bytes([7; 16]));
    let limiter = Limiter::new(&config, rules, seed).map(Arc::new);
    app().layer(RateLimitLayer::frontend(
        limiter.unwrap_or_else(|e| panic!("{e}")),
    ))
}

/// tower_governor at one unit per `period`, `burst` at once, with or
/// without its headers.
fn governor(period: Duration, burst: u32, headers: bool) -> Router {
    let mut b = GovernorConfigBuilder::default();
    b.period(period).burst_size(burst);
    if headers {
        let config = b.use_headers().finish().unwrap_or_else(|| panic!("config"));
        app().layer(GovernorLayer::new(config))
    } else {
        let config = b.finish().unwrap_or_else(|| panic!("config"));
        app().layer(GovernorLayer::new(config))
    }
}

fn group(
    c: &mut Criterion<clock::Clock>,
    name: &str,
    want: StatusCode,
    mut variants: Vec<(&str, Router)>,
) {
    let mut g = c.benchmark_group(name);
    for (label, router) in &mut variants {
        // Exhaust a denied quota first; check that each variant answers
        // as its group says before timing it.
        for _ in 0..16 {
            status(router);
        }
        let expected = if *label == "axum" {
            StatusCode::OK
        } else {
            want
        };
        assert_eq!(status(router), expected, "{name}/{label}");
        g.bench_function(*label, |b| {
            // Requests are built outside the timing, 64 at a time; the
            // response is dropped inside it, as a server drops it once sent.
            b.iter_batched(
                request,
                |r| drop(once(router, r)),
                BatchSize::NumIterations(64),
            )
        });
    }
    g.finish();
}

fn layers(c: &mut Criterion<clock::Clock>) {
    let clerk_sign_in = CLERK
        .rules()
        .iter()
        .find(|r| r.name == "fapi.sign_ins.create");
    let q = clerk_sign_in.map_or(Quota::per_secs(5, 10), |r| r.quota);
    let interval = Duration::from_nanos(q.emission_interval());
    let unreached = Quota::new(1_000_000_000, Nanos::from_secs(1));
    let unreached_interval = Duration::from_nanos(unreached.emission_interval());
    group(
        c,
        "allowed",
        StatusCode::OK,
        vec![
            ("axum", app()),
            ("ratecard", ratecard(RuleTable::new(UNREACHED))),
            (
                "tower_governor",
                governor(unreached_interval, unreached.burst(), false),
            ),
            (
                "tower_governor_headers",
                governor(unreached_interval, unreached.burst(), true),
            ),
        ],
    );
    group(
        c,
        "denied",
        StatusCode::TOO_MANY_REQUESTS,
        vec![
            ("axum", app()),
            ("ratecard", ratecard(CLERK)),
            ("tower_governor", governor(interval, q.burst(), false)),
            (
                "tower_governor_headers",
                governor(interval, q.burst(), true),
            ),
        ],
    );
}

/// An empty 200, as bare as a service gets.
#[derive(Clone)]
struct Bare;

impl Service<Request<Body>> for Bare {
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<http::Response<Body>, std::convert::Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<Body>) -> Self::Future {
        std::future::ready(Ok(http::Response::new(Body::empty())))
    }
}

fn parts(c: &mut Criterion<clock::Clock>) {
    let config = Config {
        capacity: 1 << 12,
        ..Config::DEFAULT
    };
    let rules = RuleTable::new(UNREACHED);
    let seed = Seed::random().unwrap_or(Seed::from_bytes([7; 16]));
    let limiter = Arc::new(Limiter::new(&config, rules, seed).unwrap_or_else(|e| panic!("{e}")));
    let mut g = c.benchmark_group("parts");
    let mut bare = Bare;
    g.bench_function("bare_service", |b| {
        b.iter_batched(
            request,
            |r| drop(once(&mut bare, r)),
            BatchSize::NumIterations(64),
        )
    });
    let mut layered = tower::Layer::layer(&RateLimitLayer::frontend(limiter.clone()), Bare);
    assert_eq!(
        once(&mut layered, request()).map(|r| r.status()).ok(),
        Some(StatusCode::OK)
    );
    g.bench_function("layer_on_bare_service", |b| {
        b.iter_batched(
            request,
            |r| drop(once(&mut layered, r)),
            BatchSize::NumIterations(64),
        )
    });
    let ip = std::net::IpAddr::from([203, 0, 113, 7]);
    let check = || {
        let r = ratecard::Request::new(Api::Frontend, b"POST", PATH.as_bytes()).ip(ip);
        limiter.check(&r, ratecard_tower::monotonic_now())
    };
    g.bench_function("limiter_check", |b| b.iter(&check));
    let decision = check().unwrap_or(ratecard::Decision::UNMATCHED);
    assert!(decision.allowed() && decision.rule.is_some());
    g.bench_function("write_response", |b| {
        b.iter(|| {
            let mut buf = [0u8; 512];
            let r = decision.write_response(&rules, &mut buf);
            (r, buf)
        })
    });
    g.finish();
}

criterion_group!(
    name = benches;
    config = Criterion::default().with_measurement(clock::Clock::from_env());
    targets = layers, parts
);
criterion_main!(benches);
