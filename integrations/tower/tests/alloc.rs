//! Allocations per request, counted by a global allocator on the calling
//! thread only. The layer's own share is the count with it minus the count
//! without it, on the same inner service and requests. The bound: one
//! allocation for the answer's bytes (every field and the body are slices
//! of it), plus what `http`'s `HeaderMap` takes to hold the fields,
//! measured on the very response they go into.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use axum::extract::ConnectInfo;
use bytes::Bytes;
use http::header::{HeaderName, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::Empty;
use ratecard::{Api, Config, Limiter, Nanos, Seed, CLERK};
use ratecard_tower::RateLimitLayer;
use tower::{Layer, Service};

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

/// Allocations `f` makes on this thread (what it returns is dropped after
/// counting stops).
fn allocations<T>(f: impl FnOnce() -> T) -> (usize, T) {
    COUNT.with(|c| c.set(Some(0)));
    let out = f();
    let n = COUNT.with(|c| c.replace(None)).unwrap_or(0);
    (n, out)
}

/// Poll a future that must be ready at once (no runtime: its allocations
/// would be counted).
fn now<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("not ready at once"),
    }
}

/// One request through `s`, readiness first, as a server drives it.
fn once<S: Service<R>, R>(s: &mut S, r: R) -> Result<S::Response, S::Error> {
    now(std::future::poll_fn(|cx| s.poll_ready(cx)))?;
    now(s.call(r))
}

fn frozen() -> Nanos {
    Nanos::from_secs(1_000)
}

fn limiter() -> Arc<Limiter<'static>> {
    let config = Config {
        capacity: 1 << 16,
        ..Config::DEFAULT
    };
    Arc::new(Limiter::new(&config, CLERK, Seed::random().unwrap()).unwrap())
}

type Body = Empty<Bytes>;

/// The inner service: an empty 200, as bare as a response gets.
#[derive(Clone)]
struct Bare;

impl Service<Request<Body>> for Bare {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<Body>) -> Self::Future {
        std::future::ready(Ok(Response::new(Empty::new())))
    }
}

fn request(
    method: &str,
    path: &'static str,
    peer: u32,
    key: Option<&'static str>,
) -> Request<Body> {
    let mut r = Request::builder().method(method).uri(path);
    if let Some(k) = key {
        r = r.header("authorization", k);
    }
    let mut r = r.body(Empty::new()).unwrap();
    let ip = std::net::Ipv4Addr::from(0x0a00_0000 | peer);
    r.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((ip, 4000))));
    r
}

const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// What the header map of `response` takes to hold the two fields of an
/// allowed request (values made outside the count).
fn fields_cost<B>(response: &mut Response<B>) -> usize {
    let (policy, ratelimit) = (HeaderValue::from_static("p"), HeaderValue::from_static("r"));
    allocations(|| {
        let h = response.headers_mut();
        h.insert(RATELIMIT_POLICY, policy);
        h.insert(RATELIMIT, ratelimit);
    })
    .0
}

/// What a denial's own header map takes for its four fields.
fn denial_map_cost() -> usize {
    let v = || HeaderValue::from_static("x");
    let values = [v(), v(), v(), v()];
    let (n, _map) = allocations(|| {
        let mut h = HeaderMap::with_capacity(5);
        let names = [RETRY_AFTER, RATELIMIT_POLICY, RATELIMIT, CONTENT_TYPE];
        for (name, value) in names.into_iter().zip(values) {
            h.insert(name, value);
        }
        h
    });
    n
}

/// For each of `requests` (made outside the count): allocations with the
/// layer, minus those without it, minus what the header map takes for
/// the fields; the largest.
fn layer_share<S>(
    inner: S,
    layer: &RateLimitLayer,
    requests: impl Fn(u32) -> Request<Body>,
) -> usize
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone,
{
    let mut plain = inner.clone();
    let mut layered = layer.layer(inner);
    let mut worst = 0;
    for i in 0..200 {
        let (a, b) = (requests(i), requests(i));
        let (without, r1) = allocations(|| once(&mut plain, a));
        let (with, r2) = allocations(|| once(&mut layered, b));
        let map = if r2.as_ref().unwrap().headers().contains_key(RATELIMIT) {
            fields_cost(&mut r1.unwrap())
        } else {
            0
        };
        worst = worst.max(with.saturating_sub(without).saturating_sub(map));
    }
    worst
}

#[test]
fn an_allowed_request_costs_one_allocation_besides_the_header_map() {
    let layer = RateLimitLayer::builder(limiter(), Api::Frontend)
        .clock(frozen)
        .build();
    // A new client address each time: allowed (and a new slot, which the
    // core takes from its table without allocating).
    let share = layer_share(Bare, &layer, |i| {
        request("POST", "/v1/client/sign_ins", i, None)
    });
    assert_eq!(share, 1, "the answer's bytes");

    let layer = RateLimitLayer::builder(limiter(), Api::Backend)
        .clock(frozen)
        .build();
    let share = layer_share(Bare, &layer, |i| {
        let path = if i % 2 == 0 {
            "/v1/users/user_1"
        } else {
            "/v1/users/user_2"
        };
        request("PATCH", path, 1, Some("Bearer sk_live_alloc"))
    });
    assert_eq!(share, 1, "the answer's bytes");
}

#[test]
fn a_denial_costs_one_allocation_besides_its_header_map() {
    let layer = RateLimitLayer::builder(limiter(), Api::Frontend)
        .clock(frozen)
        .build();
    let mut svc = layer.layer(Bare);
    let mut denied = 0;
    for _ in 0..50 {
        let req = request("POST", "/v1/client/sign_ins", 7, None);
        let (n, r) = allocations(|| once(&mut svc, req));
        if r.unwrap().status() == 429 {
            denied += 1;
            assert!(
                n <= 1 + denial_map_cost(),
                "{n} allocations, map {}",
                denial_map_cost()
            );
        }
    }
    assert!(denied > 40);
}

#[test]
fn exempt_unmatched_and_refused_requests_allocate_nothing() {
    let layer = RateLimitLayer::builder(limiter(), Api::Backend)
        .clock(frozen)
        .build();
    let jwks = layer_share(Bare, &layer, |i| {
        request("GET", "/v1/jwks", i, Some("Bearer sk_test_a"))
    });
    assert_eq!(jwks, 0, "exempt");
    let layer = RateLimitLayer::builder(limiter(), Api::Frontend)
        .clock(frozen)
        .build();
    let unmatched = layer_share(Bare, &layer, |i| request("GET", "/healthz", i, None));
    assert_eq!(unmatched, 0, "unmatched");
    // No peer address: the sign-in cannot be decided and fails closed.
    let mut refused = layer.layer(Bare);
    for _ in 0..10 {
        let r = Request::builder()
            .method("POST")
            .uri("/v1/client/sign_ins")
            .body(Empty::new())
            .unwrap();
        let (n, response) = allocations(|| once(&mut refused, r));
        assert_eq!(response.unwrap().status(), 503);
        assert_eq!(n, 0, "fail closed");
    }
}

/// What the map of the handler's response takes for the two fields, given
/// that axum's route adds `Content-Length` to it after the layer ran.
fn axum_fields_cost() -> usize {
    use axum::response::IntoResponse;
    let (mut bare, mut fielded) = ("ok".into_response(), "ok".into_response());
    let v = || HeaderValue::from_static("2");
    let (cl1, cl2, p, r) = (v(), v(), v(), v());
    let (alone, ()) = allocations(|| {
        bare.headers_mut().insert(http::header::CONTENT_LENGTH, cl1);
    });
    let (with_fields, ()) = allocations(|| {
        let h = fielded.headers_mut();
        h.insert(RATELIMIT_POLICY, p);
        h.insert(RATELIMIT, r);
        h.insert(http::header::CONTENT_LENGTH, cl2);
    });
    with_fields - alone
}

/// Behind axum, against a layer that holds state (an `Arc`, as ours does)
/// and only changes the body's type: axum boxes such a layer, the body and
/// the future per request for any layer; ours adds one allocation.
#[test]
fn behind_axum_an_allowed_request_costs_one_allocation_besides_the_header_map() {
    use ratecard_tower::ResponseBody;
    let app = || axum::Router::new().fallback(|| async { "ok" });
    let state = Arc::new(());
    let retyped = tower::util::MapResponseLayer::new(move |r: Response<axum::body::Body>| {
        let _held = &state;
        r.map(ResponseBody::inner)
    });
    let layer = RateLimitLayer::builder(limiter(), Api::Frontend)
        .clock(frozen)
        .build();
    let mut plain = app().layer(retyped);
    let mut layered = app().layer(layer);
    let mut worst = 0;
    for i in 0..200u32 {
        let req = || {
            let mut r = Request::post("/v1/client/sign_ins")
                .body(axum::body::Body::empty())
                .unwrap();
            let peer = SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 4000));
            r.extensions_mut().insert(ConnectInfo(peer));
            r
        };
        let (a, b) = (req(), req());
        let (without, r1) = allocations(|| once(&mut plain, a));
        let (with, r2) = allocations(|| once(&mut layered, b));
        assert_eq!(r2.unwrap().status(), 200);
        drop(r1);
        worst = worst.max(with.saturating_sub(without));
    }
    assert_eq!(worst, 1 + axum_fields_cost(), "the answer's bytes");
}
