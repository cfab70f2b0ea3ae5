//! What the gRPC layer asks of a decision store, and what it gets back: a
//! classified request in, a [`Verdict`] out. The in-process table
//! ([`crate::engine::Local`]) is one [`Backend`]; a Redis one can be another
//! without the gRPC layer changing.

use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

/// Which Clerk API a request is addressed to.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ApiKind {
    /// The Frontend API, limited per client IP.
    Frontend,
    /// The Backend API, limited per instance (secret key).
    Backend,
}

impl ApiKind {
    /// `frontend` or `backend`, as descriptors and flags spell it.
    pub fn parse(name: &[u8]) -> Option<ApiKind> {
        match name {
            b"frontend" => Some(ApiKind::Frontend),
            b"backend" => Some(ApiKind::Backend),
            _ => None,
        }
    }
}

/// One HTTP request, as Envoy's descriptor entries describe it. Byte
/// strings are raw: nothing here is required to be UTF-8.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classified<'a> {
    /// The API addressed.
    pub api: ApiKind,
    /// `:method`.
    pub method: &'a [u8],
    /// `:path`, query string included.
    pub path: &'a [u8],
    /// The trusted client address (Envoy's `remote_address`).
    pub client_ip: Option<IpAddr>,
    /// The `Authorization` value (`Bearer sk_…`) or a raw secret key.
    pub authorization: &'a [u8],
    /// Optional namespace: on the Backend it names the instance.
    pub tenant: &'a [u8],
    /// Units the request costs, at least 1.
    pub cost: u32,
}

/// How a decision came out, enforced or not.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every matched rule allowed; each was charged (unless a peek).
    Allowed,
    /// A rule denied; nothing was charged. Retry after this many seconds.
    Limited {
        /// The `Retry-After` value, at least 1.
        retry_after_secs: u32,
    },
    /// The cost exceeds a rule's burst: no wait helps, no `Retry-After`.
    NeverFits,
    /// An unlimited rule matched (`GET /v1/jwks`): nothing counted.
    Exempt,
    /// No rule matched: nothing counted.
    Unmatched,
}

/// The rule that decided, with its state after the decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The rule's stable name, e.g. `fapi.sign_ins.create`.
    pub rule: &'static str,
    /// Its limit per period.
    pub limit: u32,
    /// Its period.
    pub period: Duration,
    /// Units left (after this request, if allowed).
    pub remaining: u32,
    /// Time until the rule is fully replenished for this subject.
    pub reset: Duration,
}

/// A decision and the response fields that go with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// How it came out, as if enforced.
    pub outcome: Outcome,
    /// A dry run: a `Limited` or `NeverFits` outcome is reported, not
    /// enforced.
    pub dry_run: bool,
    /// The binding rule; `None` for exempt and unmatched requests.
    pub binding: Option<Binding>,
    /// The `RateLimit-Policy` value (every matched rule); empty for none.
    pub ratelimit_policy: String,
    /// The `RateLimit` value (the binding rule); empty for none.
    pub ratelimit: String,
}

impl Verdict {
    /// Denied, or would have been on a dry run.
    pub fn is_limited(&self) -> bool {
        matches!(self.outcome, Outcome::Limited { .. } | Outcome::NeverFits)
    }

    /// Denied and enforced: Envoy answers 429.
    pub fn is_enforced_denial(&self) -> bool {
        self.is_limited() && !self.dry_run
    }
}

/// Why a backend could not decide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendError {
    /// The request cannot be decided as sent (a Frontend request without a
    /// client address): the caller's fault, gRPC `INVALID_ARGUMENT`.
    Invalid(&'static str),
    /// The store cannot be reached now (a remote store): `UNAVAILABLE`.
    Unavailable(String),
    /// Anything else: `INTERNAL`.
    Internal(String),
}

/// A place decisions are made: the in-process table, or later a store
/// shared by several replicas. Futures are `Send` so the gRPC layer can
/// await them on any worker thread.
pub trait Backend: Send + Sync + 'static {
    /// Decide `request`, charging every matched rule if all allow.
    fn check(
        &self,
        request: &Classified<'_>,
    ) -> impl Future<Output = Result<Verdict, BackendError>> + Send;

    /// The decision [`Backend::check`] would give, charging nothing.
    fn peek(
        &self,
        request: &Classified<'_>,
    ) -> impl Future<Output = Result<Verdict, BackendError>> + Send;
}
