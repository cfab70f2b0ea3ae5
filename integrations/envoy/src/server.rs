//! The gRPC side: `envoy.service.ratelimit.v3.RateLimitService` over any
//! [`Backend`], next to `grpc.health.v1.Health`, with graceful shutdown.
//!
//! The service is wired by hand rather than through envoy-types' generated
//! server only to decode requests into [`WireRequest`] (byte strings): the
//! route, codec and framing are tonic's own.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitResponse;
use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Status};

use crate::backend::{ApiKind, Backend, BackendError};
use crate::descriptor::{self, WireRequest};
use crate::response;

/// The full name of Envoy's rate limit service.
pub const SERVICE_NAME: &str = "envoy.service.ratelimit.v3.RateLimitService";
const SHOULD_RATE_LIMIT: &str = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";

/// Requests larger than this are refused by the decoder (`OUT_OF_RANGE`);
/// Envoy's are a few hundred bytes.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

/// `ShouldRateLimit` over a backend.
pub struct Rls<B> {
    backend: B,
    domain: Vec<u8>,
    default_api: Option<ApiKind>,
}

impl<B: Backend> Rls<B> {
    /// Answer requests for `domain`; descriptors without an `api` entry are
    /// `default_api` requests, or refused when it is `None`.
    pub fn new(backend: B, domain: &str, default_api: Option<ApiKind>) -> Rls<B> {
        Rls {
            backend,
            domain: domain.as_bytes().to_vec(),
            default_api,
        }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The answer to one `ShouldRateLimit` call.
    pub async fn answer(&self, request: &WireRequest) -> Result<RateLimitResponse, Status> {
        let parsed = descriptor::parse(request, &self.domain, self.default_api)
            .map_err(|r| Status::invalid_argument(r.to_string()))?;
        let verdict = if parsed.peek {
            self.backend.peek(&parsed.request).await
        } else {
            self.backend.check(&parsed.request).await
        }
        .map_err(status)?;
        Ok(response::response(&verdict))
    }
}

fn status(e: BackendError) -> Status {
    match e {
        BackendError::Invalid(why) => Status::invalid_argument(why),
        BackendError::Unavailable(why) => Status::new(Code::Unavailable, why),
        BackendError::Internal(why) => Status::internal(why),
    }
}

/// The tower service tonic routes `ShouldRateLimit` calls to.
pub struct RlsServer<B> {
    rls: Arc<Rls<B>>,
}

impl<B> RlsServer<B> {
    /// Serve `rls`.
    pub fn new(rls: Arc<Rls<B>>) -> RlsServer<B> {
        RlsServer { rls }
    }
}

impl<B> Clone for RlsServer<B> {
    fn clone(&self) -> Self {
        RlsServer {
            rls: Arc::clone(&self.rls),
        }
    }
}

impl<B> NamedService for RlsServer<B> {
    const NAME: &'static str = SERVICE_NAME;
}

struct ShouldRateLimit<B>(Arc<Rls<B>>);

impl<B: Backend> UnaryService<WireRequest> for ShouldRateLimit<B> {
    type Response = RateLimitResponse;
    type Future = BoxFuture<tonic::Response<RateLimitResponse>, Status>;

    fn call(&mut self, request: tonic::Request<WireRequest>) -> Self::Future {
        let rls = Arc::clone(&self.0);
        Box::pin(async move {
            rls.answer(request.get_ref())
                .await
                .map(tonic::Response::new)
        })
    }
}

impl<B, Body> Service<http::Request<Body>> for RlsServer<B>
where
    B: Backend,
    Body: tonic::codegen::Body + Send + 'static,
    Body::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() != SHOULD_RATE_LIMIT {
            return Box::pin(async { Ok(Status::unimplemented("").into_http()) });
        }
        let method = ShouldRateLimit(Arc::clone(&self.rls));
        Box::pin(async move {
            let codec = tonic_prost::ProstCodec::<RateLimitResponse, WireRequest>::default();
            let mut grpc =
                Grpc::new(codec).apply_max_message_size_config(Some(MAX_REQUEST_BYTES), None);
            Ok(grpc.unary(method, request).await)
        })
    }
}

/// Serve `rls` and the health service on `listener` until `shutdown`
/// completes; then stop accepting, report `NOT_SERVING`, and return once
/// the calls in flight are answered and the connections closed.
pub async fn serve<B: Backend>(
    rls: Arc<Rls<B>>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<RlsServer<B>>().await;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let signal = async move {
        shutdown.await;
        reporter.set_not_serving::<RlsServer<B>>().await;
        reporter
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
    };
    tonic::transport::Server::builder()
        .add_service(health)
        .add_service(RlsServer::new(rls))
        .serve_with_incoming_shutdown(incoming, signal)
        .await
}
