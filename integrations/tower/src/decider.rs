//! What the layer asks: a decision for a request. [`Limiter`] answers at
//! once; a backend that counts elsewhere (Redis) answers later, through a
//! future of its own.

use std::future::Future;
use std::sync::Arc;

use ratecard::{CheckError, Decision, Limiter, Nanos, Request, RuleTable};

/// A decision now, or a future one.
#[derive(Debug)]
pub enum Check<F, E> {
    /// Decided without waiting (the local table; exempt and unmatched
    /// requests, or a cached denial, on a remote one).
    Now(Result<Decision, E>),
    /// To be decided by `F` (a round trip). The layer keeps the request
    /// and a clone of the inner service until it resolves.
    Later(F),
}

/// What answers a request its decider gave an error for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// The path of any undecided request: [`ratecard::FAIL_CLOSED_STATUS`],
    /// or on to the inner service with no field under
    /// [`crate::Builder::fail_open`].
    Closed,
    /// On to the inner service with no field, whatever the layer's
    /// `fail_open` (the decider's own policy chose it).
    Open,
    /// Answered as this decision (a local table's, made in place of the
    /// remote one), as any decision is.
    Decided(Decision),
}

/// A source of decisions the layer can stand on: the local [`Limiter`], or
/// a backend that keeps the counts elsewhere.
///
/// Generic, not a trait object: the layer is generic over it, so the local
/// limiter is called directly (inlined, no vtable, no boxed future) and a
/// remote backend brings its own concrete future type.
pub trait Decider: Send + Sync + 'static {
    /// Why a request could not be decided.
    type Error: std::error::Error + Send + Sync + 'static;
    /// The future of a [`Check::Later`]. It owns what it needs: whatever it
    /// reads from the request it copies out before `check` returns.
    type Future: Future<Output = Result<Decision, Self::Error>> + Send + 'static;

    /// Decide `request` at `now` (nanoseconds of the layer's clock),
    /// charging every matched rule if it is allowed. It gets the layer's
    /// [`Arc`] so that a future can keep the decider; not a method, so that
    /// it never hides the decider's own `check` on an `Arc` (as
    /// [`Arc::strong_count`]).
    fn check(
        this: &Arc<Self>,
        request: &Request<'_>,
        now: Nanos,
    ) -> Check<Self::Future, Self::Error>;

    /// The rule table decisions refer to, for their response fields.
    fn rules(&self) -> &RuleTable<'_>;

    /// What answers the request `check` failed with `error` for; by
    /// default [`Fallback::Closed`].
    fn fallback(&self, error: &Self::Error) -> Fallback {
        let _ = error;
        Fallback::Closed
    }
}

/// The local table: every decision is made at once.
impl Decider for Limiter<'static> {
    type Error = CheckError;
    /// Never returned: the local table never answers [`Check::Later`].
    type Future = std::future::Pending<Result<Decision, CheckError>>;

    #[inline]
    fn check(
        this: &Arc<Self>,
        request: &Request<'_>,
        now: Nanos,
    ) -> Check<Self::Future, CheckError> {
        Check::Now(Limiter::check(this, request, now))
    }

    fn rules(&self) -> &RuleTable<'_> {
        Limiter::rules(self)
    }
}
