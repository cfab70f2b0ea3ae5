//! The service the layer makes, and its response future.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::answer::{Denial, Fields, Next};
use crate::body::ResponseBody;
use crate::decider::{Check, Decider};
use crate::layer::Shared;

/// An inner service behind the rate limiter (made by
/// [`crate::RateLimitLayer`]).
pub struct RateLimitService<S, D: Decider> {
    inner: S,
    shared: Arc<Shared<D>>,
}

impl<S, D: Decider> RateLimitService<S, D> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<D>>) -> RateLimitService<S, D> {
        RateLimitService { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: Clone, D: Decider> Clone for RateLimitService<S, D> {
    fn clone(&self) -> Self {
        RateLimitService {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

/// `S` must be `Clone` for deciders that answer later: the readied inner
/// service waits with the request while a clone takes its place.
impl<S, D, Q, B> Service<Request<Q>> for RateLimitService<S, D>
where
    S: Service<Request<Q>, Response = Response<B>> + Clone,
    D: Decider,
{
    type Response = Response<ResponseBody<B>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, D, Q>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Q>) -> ResponseFuture<S, D, Q> {
        let state = match self.shared.check(&req) {
            Check::Now(result) => match self.shared.next(result) {
                Next::Pass(fields) => State::Inner {
                    fut: self.inner.call(req),
                    fields,
                },
                Next::Stop(denial) => State::Answer {
                    denial: Some(denial),
                },
            },
            Check::Later(check) => {
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                State::Checking {
                    check,
                    waiting: Some(Waiting {
                        inner,
                        req,
                        shared: self.shared.clone(),
                    }),
                }
            }
        };
        ResponseFuture { state }
    }
}

/// What a [`State::Checking`] holds until the decision comes.
struct Waiting<S, D: Decider, Q> {
    inner: S,
    req: Request<Q>,
    shared: Arc<Shared<D>>,
}

pin_project! {
    /// The response of a [`RateLimitService`].
    pub struct ResponseFuture<S, D, Q>
    where
        S: Service<Request<Q>>,
        D: Decider,
    {
        #[pin]
        state: State<S, D, Q>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, D, Q>
    where
        S: Service<Request<Q>>,
        D: Decider,
    {
        // Allowed: the inner service answers; the fields go on its response.
        Inner { #[pin] fut: S::Future, fields: Fields },
        // The decider answers later.
        Checking { #[pin] check: D::Future, waiting: Option<Waiting<S, D, Q>> },
        // The layer answers itself; `None` once answered.
        Answer { denial: Option<Denial> },
    }
}

impl<S, D, Q, B> Future for ResponseFuture<S, D, Q>
where
    S: Service<Request<Q>, Response = Response<B>>,
    D: Decider,
{
    type Output = Result<Response<ResponseBody<B>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            let next = match state.as_mut().project() {
                StateProj::Inner { fut, fields } => {
                    let mut response = ready!(fut.poll(cx))?;
                    fields.apply(response.headers_mut());
                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                }
                StateProj::Answer { denial } => {
                    // Polled again after answering (a caller's bug): refuse
                    // again rather than panic.
                    let d = denial.take().unwrap_or_else(Denial::fail_closed);
                    return Poll::Ready(Ok(respond(d)));
                }
                StateProj::Checking { check, waiting } => {
                    let result = ready!(check.poll(cx));
                    let Some(w) = waiting.take() else {
                        return Poll::Ready(Ok(respond(Denial::fail_closed())));
                    };
                    match w.shared.next(result) {
                        Next::Pass(fields) => {
                            let mut inner = w.inner;
                            State::Inner {
                                fut: inner.call(w.req),
                                fields,
                            }
                        }
                        Next::Stop(denial) => State::Answer {
                            denial: Some(denial),
                        },
                    }
                }
            };
            state.set(next);
        }
    }
}

fn respond<B>(d: Denial) -> Response<ResponseBody<B>> {
    let mut response = Response::new(ResponseBody::full(d.body));
    *response.status_mut() = d.status;
    *response.headers_mut() = d.headers;
    response
}
