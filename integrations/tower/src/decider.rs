//! What the layer asks: a decision for a request. [`Limiter`] answers at
//! once; a backend that counts elsewhere (Redis) answers later, through a
//! future of its own.

use std::future::Future;

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
    /// charging every matched rule if it is allowed.
    fn check(&self, request: &Request<'_>, now: Nanos) -> Check<Self::Future, Self::Error>;

    /// The rule table decisions refer to, for their response fields.
    fn rules(&self) -> &RuleTable<'_>;
}

/// The local table: every decision is made at once.
impl Decider for Limiter<'static> {
    type Error = CheckError;
    /// Never returned: the local table never answers [`Check::Later`].
    type Future = std::future::Pending<Result<Decision, CheckError>>;

    #[inline]
    fn check(&self, request: &Request<'_>, now: Nanos) -> Check<Self::Future, CheckError> {
        Check::Now(Limiter::check(self, request, now))
    }

    fn rules(&self) -> &RuleTable<'_> {
        Limiter::rules(self)
    }
}
