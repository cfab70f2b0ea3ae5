//! The layer, its builder, and what every service it makes shares.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use http::header::{HeaderName, AUTHORIZATION};
use http::{Extensions, HeaderMap, Method, Uri};
use ratecard::{Api, Decision, Limiter, Nanos, Request};
use tower_layer::Layer;

use crate::answer::{self, Denial, Next};
use crate::client_ip::{client_ip, Network};
use crate::decider::{Check, Decider, Fallback};
use crate::service::RateLimitService;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// What a tenant extractor sees of a request.
#[derive(Copy, Clone, Debug)]
pub struct RequestHead<'a> {
    /// The method.
    pub method: &'a Method,
    /// The request target.
    pub uri: &'a Uri,
    /// The header fields.
    pub headers: &'a HeaderMap,
    /// The extensions (the peer address, what earlier layers stored).
    pub extensions: &'a Extensions,
}

type TenantFn = dyn for<'a> Fn(&RequestHead<'a>) -> Option<&'a [u8]> + Send + Sync;
type ErrorFn<E> = dyn Fn(&E) + Send + Sync;

/// What every service of one layer shares.
pub(crate) struct Shared<D: Decider> {
    decider: Arc<D>,
    api: Api,
    trusted: Box<[Network]>,
    dry_run: bool,
    fail_open: bool,
    tenant: Option<Box<TenantFn>>,
    peer: fn(&Extensions) -> Option<IpAddr>,
    clock: fn() -> Nanos,
    on_error: Option<Box<ErrorFn<D::Error>>>,
}

impl<D: Decider> Shared<D> {
    /// Ask the decider about `req`.
    #[inline]
    pub(crate) fn check<Q>(&self, req: &http::Request<Q>) -> Check<D::Future, D::Error> {
        let peer = (self.peer)(req.extensions());
        let ip = client_ip(peer, req.headers().get_all(X_FORWARDED_FOR), &self.trusted);
        let uri = req.uri();
        let path = uri.path_and_query().map_or(uri.path(), |pq| pq.as_str());
        let mut request = Request::new(self.api, req.method().as_str().as_bytes(), path.as_bytes());
        request.client_ip = ip;
        if self.api == Api::Backend {
            if let Some(key) = req.headers().get(AUTHORIZATION) {
                request = request.key(key.as_bytes());
            }
        }
        if let Some(tenant) = &self.tenant {
            let head = RequestHead {
                method: req.method(),
                uri,
                headers: req.headers(),
                extensions: req.extensions(),
            };
            if let Some(t) = tenant(&head) {
                request = request.tenant(t);
            }
        }
        D::check(&self.decider, &request, (self.clock)())
    }

    /// What to do with a request, given its decision.
    pub(crate) fn next(&self, result: Result<Decision, D::Error>) -> Next {
        match result {
            Ok(d) => self.answer(d),
            Err(e) => {
                if let Some(f) = &self.on_error {
                    f(&e);
                }
                match self.decider.fallback(&e) {
                    Fallback::Decided(d) => self.answer(d),
                    Fallback::Open => Next::Pass(Default::default()),
                    Fallback::Closed if self.fail_open => Next::Pass(Default::default()),
                    Fallback::Closed => Next::Stop(Denial::fail_closed()),
                }
            }
        }
    }

    fn answer(&self, mut d: Decision) -> Next {
        if self.dry_run && d.is_limited() {
            d.dry_run = true;
        }
        answer::of(&d, self.decider.rules())
    }
}

/// The tower [`Layer`]: wraps a service in a [`RateLimitService`]. Cheap to
/// clone; every service it makes shares one decider.
pub struct RateLimitLayer<D: Decider = Limiter<'static>> {
    shared: Arc<Shared<D>>,
}

impl<D: Decider> Clone for RateLimitLayer<D> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            shared: self.shared.clone(),
        }
    }
}

impl<D: Decider> RateLimitLayer<D> {
    /// Frontend mode with the defaults: keyed by the peer address, no
    /// trusted proxy, enforcing, failing closed.
    pub fn frontend(decider: Arc<D>) -> RateLimitLayer<D> {
        Builder::new(decider, Api::Frontend).build()
    }

    /// Backend mode with the defaults: keyed by the secret key in
    /// `Authorization`, enforcing, failing closed.
    pub fn backend(decider: Arc<D>) -> RateLimitLayer<D> {
        Builder::new(decider, Api::Backend).build()
    }

    /// A builder for `api`'s mode.
    pub fn builder(decider: Arc<D>, api: Api) -> Builder<D> {
        Builder::new(decider, api)
    }
}

impl<S, D: Decider> Layer<S> for RateLimitLayer<D> {
    type Service = RateLimitService<S, D>;

    fn layer(&self, inner: S) -> RateLimitService<S, D> {
        RateLimitService::new(inner, self.shared.clone())
    }
}

/// Options of a [`RateLimitLayer`].
pub struct Builder<D: Decider> {
    shared: Shared<D>,
}

impl<D: Decider> Builder<D> {
    /// The defaults for `api`'s mode.
    pub fn new(decider: Arc<D>, api: Api) -> Builder<D> {
        Builder {
            shared: Shared {
                decider,
                api,
                trusted: Box::new([]),
                dry_run: false,
                fail_open: false,
                tenant: None,
                peer: default_peer_ip,
                clock: monotonic_now,
                on_error: None,
            },
        }
    }

    /// Proxies whose `X-Forwarded-For` is believed. None by default: the
    /// header is ignored and the client is the peer, so a client cannot
    /// choose its own key. See [`client_ip`] for the walk.
    pub fn trusted_proxies(mut self, networks: impl IntoIterator<Item = Network>) -> Builder<D> {
        self.shared.trusted = networks.into_iter().collect();
        self
    }

    /// Decide, but never deny: a would-be denial goes on to the inner
    /// service with its `RateLimit` fields (`r=0`) and no `Retry-After`.
    /// Nothing is charged for it. The limiter counts it as limited; a
    /// limiter made with `Config { dry_run: true, .. }` counts it as
    /// `dry_run_limited` instead.
    pub fn dry_run(mut self, dry_run: bool) -> Builder<D> {
        self.shared.dry_run = dry_run;
        self
    }

    /// Pass a request the decider cannot decide (an error) on to the inner
    /// service, with no field. By default it fails closed:
    /// [`ratecard::FAIL_CLOSED_STATUS`] and the inner service is not
    /// called.
    pub fn fail_open(mut self, fail_open: bool) -> Builder<D> {
        self.shared.fail_open = fail_open;
        self
    }

    /// Name each request's tenant (a namespace of keys for several
    /// applications behind one service; on Backend it names the instance,
    /// replacing the secret key in every subject). `None`: no tenant.
    pub fn tenant<F>(mut self, f: F) -> Builder<D>
    where
        F: for<'a> Fn(&RequestHead<'a>) -> Option<&'a [u8]> + Send + Sync + 'static,
    {
        self.shared.tenant = Some(Box::new(f));
        self
    }

    /// The tenant is the value of header `name` (none when absent).
    pub fn tenant_header(self, name: HeaderName) -> Builder<D> {
        self.tenant(move |head| head.headers.get(&name).map(|v| v.as_bytes()))
    }

    /// Where the peer address is read: [`default_peer_ip`] by default. For
    /// tonic, `|e| e.get::<TcpConnectInfo>()?.remote_addr().map(|a| a.ip())`.
    pub fn peer_ip(mut self, f: fn(&Extensions) -> Option<IpAddr>) -> Builder<D> {
        self.shared.peer = f;
        self
    }

    /// The clock decisions are made on: monotonic nanoseconds, one timeline
    /// for every user of the decider. [`monotonic_now`] by default. A
    /// `RedisBackend` does not read it: it keeps its own clocks.
    pub fn clock(mut self, now: fn() -> Nanos) -> Builder<D> {
        self.shared.clock = now;
        self
    }

    /// Be told of every decider error (for logging), before the request is
    /// answered as [`Decider::fallback`] says: failed open or closed, or
    /// (Redis) the policy's answer.
    pub fn on_error(mut self, f: impl Fn(&D::Error) + Send + Sync + 'static) -> Builder<D> {
        self.shared.on_error = Some(Box::new(f));
        self
    }

    /// The layer.
    pub fn build(self) -> RateLimitLayer<D> {
        RateLimitLayer {
            shared: Arc::new(self.shared),
        }
    }
}

/// The peer address as the server stored it in the request's extensions:
/// axum's `ConnectInfo<SocketAddr>` (with the `axum` feature; serve with
/// `into_make_service_with_connect_info::<SocketAddr>()`), else a plain
/// [`SocketAddr`] or [`IpAddr`] (what a hyper server can insert).
pub fn default_peer_ip(extensions: &Extensions) -> Option<IpAddr> {
    #[cfg(feature = "axum")]
    if let Some(info) = extensions.get::<axum::extract::ConnectInfo<SocketAddr>>() {
        return Some(info.0.ip());
    }
    if let Some(addr) = extensions.get::<SocketAddr>() {
        return Some(addr.ip());
    }
    extensions.get::<IpAddr>().copied()
}

/// Nanoseconds of [`Instant`] since a process-wide origin (the first call):
/// monotonic, and one timeline for every layer of the process.
pub fn monotonic_now() -> Nanos {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    Nanos(u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_default_clock_never_goes_back_and_follows_real_time() {
        let a = monotonic_now();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = monotonic_now();
        assert!(b.saturating_sub(a) >= Nanos::from_millis(20), "{a:?} {b:?}");
        for _ in 0..1000 {
            let c = monotonic_now();
            let d = monotonic_now();
            assert!(d >= c);
        }
    }

    #[test]
    fn the_peer_is_read_from_connect_info_then_plain_addresses() {
        let mut e = Extensions::new();
        assert_eq!(default_peer_ip(&e), None);
        e.insert("192.0.2.9".parse::<IpAddr>().ok());
        assert_eq!(default_peer_ip(&e), None, "an Option is not an address");
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        e.insert(ip);
        assert_eq!(default_peer_ip(&e), Some(ip));
        let sa: SocketAddr = "192.0.2.2:80".parse().unwrap();
        e.insert(sa);
        assert_eq!(default_peer_ip(&e), Some(sa.ip()));
        #[cfg(feature = "axum")]
        {
            let ci: SocketAddr = "192.0.2.3:80".parse().unwrap();
            e.insert(axum::extract::ConnectInfo(ci));
            assert_eq!(default_peer_ip(&e), Some(ci.ip()));
        }
    }
}
