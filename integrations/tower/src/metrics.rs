//! A service that answers Prometheus' scrape with the limiters' counters,
//! in the text format every ratecard host writes
//! ([`ratecard::metrics::write`]).

use std::convert::Infallible;
use std::fmt;
use std::future::{ready, Ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use ratecard::metrics::{self, MetricsError, MAX_ZONES};
use ratecard::Limiter;
use tower_service::Service;

const TEXT_FORMAT: HeaderValue =
    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");

/// More zones than one scrape writes ([`ratecard::metrics::MAX_ZONES`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TooManyZones;

impl fmt::Display for TooManyZones {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "more than {MAX_ZONES} zones")
    }
}

impl std::error::Error for TooManyZones {}

/// Answers any request with the metrics of its zones (a name and a limiter
/// each), `200` and Prometheus' text format. With axum:
/// `Router::new().route_service("/metrics", MetricsService::new([("api", limiter)])?)`.
#[derive(Clone)]
pub struct MetricsService {
    zones: Arc<[(String, Arc<Limiter<'static>>)]>,
}

impl MetricsService {
    /// The service for `zones`; at most [`ratecard::metrics::MAX_ZONES`].
    pub fn new<N: Into<String>>(
        zones: impl IntoIterator<Item = (N, Arc<Limiter<'static>>)>,
    ) -> Result<MetricsService, TooManyZones> {
        let zones: Arc<[_]> = zones.into_iter().map(|(n, l)| (n.into(), l)).collect();
        if zones.len() > MAX_ZONES {
            return Err(TooManyZones);
        }
        Ok(MetricsService { zones })
    }

    /// The exposition text.
    pub fn render(&self) -> Vec<u8> {
        let zones: Vec<(&str, &Limiter<'static>)> =
            self.zones.iter().map(|(n, l)| (n.as_str(), &**l)).collect();
        let mut buf = vec![0u8; 16 * 1024];
        // Counters may grow a digit between the measuring pass and the
        // writing one; a few tries always settle.
        for _ in 0..4 {
            match metrics::write(&zones, &mut buf) {
                Ok(n) => {
                    buf.truncate(n);
                    return buf;
                }
                Err(MetricsError::BufferTooShort(need)) => buf.resize(need.saturating_add(256), 0),
                Err(MetricsError::TooManyZones) => break,
            }
        }
        Vec::new()
    }
}

impl<Q> Service<Request<Q>> for MetricsService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Full<Bytes>>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<Q>) -> Self::Future {
        let text = self.render();
        // Only an unwritable page is empty: the families' headers are always there.
        let failed = text.is_empty();
        let mut response = Response::new(Full::new(Bytes::from(text)));
        if failed {
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        }
        response.headers_mut().insert(CONTENT_TYPE, TEXT_FORMAT);
        ready(Ok(response))
    }
}
