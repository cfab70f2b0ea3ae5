//! ratecard's limits shared by several gateways through Redis, for async
//! Rust hosts on tokio.
//!
//! [`RedisBackend::check`] decides a [`Request`] exactly as
//! [`Limiter::check`] does, with the state in Redis: one round trip per
//! decision, every matched rule charged all or nothing by ratecard's charge
//! script. There is no Redis client underneath: ratecard's core classifies
//! the request, encodes the whole `EVALSHA` command and decodes the reply
//! ([`ratecard::remote`]); this crate only moves bytes.
//!
//! # Design
//!
//! - **The limiter stays in charge.** The backend holds an
//!   `Arc<Limiter>`: its table caches denials Redis gave (a flood from one
//!   limited client costs no round trip), is the fallback table, and counts
//!   every call, error and policy answer ([`ratecard::Stats`]'s `remote_*`),
//!   so the metrics see Redis mode as they see local decisions. Every
//!   gateway must use the same seed ([`ratecard::Seed::from_bytes`]):
//!   keys are the table's keyed hashes.
//! - **Connections.** A pool of at most [`Options::connections`] TCP
//!   connections per node, opened on demand and kept while in step. A
//!   reply that is not RESP or not the script's, or bytes beyond a reply,
//!   drop the connection. A pooled connection found dead before any reply
//!   byte (Redis restarted) is replaced once within the call; nothing is
//!   sent twice once a reply has begun.
//! - **One deadline.** [`Options::timeout`] bounds the whole decision:
//!   waiting for a connection, connecting, every redirection and retry.
//!   Past it the connection is dropped and the policy answers; a stalled
//!   Redis may still run the call when it wakes (stricter, never looser).
//! - **The policy** ([`Policy`]) answers whenever Redis does not: fail
//!   closed (the default), fail open, or the local table. The caller gets
//!   [`Error::Remote`] with the cause and the answer, so it can log.
//! - **A circuit breaker.** After [`Options::breaker_failures`]
//!   consecutive failures of Redis itself (timeouts, connections, protocol
//!   errors, server errors other than about one key), no call for
//!   [`Options::breaker_open_for`]: the policy answers at once
//!   ([`Cause::BreakerOpen`]). Then one call probes; its outcome closes or
//!   reopens the breaker.
//! - **Scripts.** `EVALSHA` first; on `NOSCRIPT` (a restart, a failover,
//!   `SCRIPT FLUSH`) the same call once as `EVAL`, which loads the script.
//! - **Cluster.** Every key of a call shares one hash tag, so one slot and
//!   never `CROSSSLOT`. The configured node takes the call unless a
//!   `MOVED` said which node holds its slot (a slot→node map, learnt as
//!   redirections come); `MOVED` is followed once and remembered, `ASK`
//!   once with `ASKING`; a second redirection in one call is an error
//!   under the policy, and so is `TRYAGAIN` (a slot mid-migration holding
//!   some of a call's keys). A seed node that is down is not routed
//!   around: the map only knows what redirections told it.
//! - **Time.** [`ClockSource::Server`] (the default) lets the script read
//!   Redis's `TIME`; [`ClockSource::Gateway`] passes this host's wall clock
//!   (skew between gateways then loosens the limit; see
//!   [`ratecard::remote`]). The local table runs on a monotonic clock.
//!   [`RedisBackend::check_at`] takes the time from the caller (tests,
//!   replays).

mod breaker;
mod error;
mod node;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ratecard::remote::{
    decode_reply, hash_slot, write_eval, write_evalsha, write_key, Call, Clock, EncodeError,
    ReplyError, ServerError, ShapeError, SCRIPT,
};
use ratecard::{Decision, Limiter, Nanos, Outcome, Pending, Prepared, Request, MAX_RULES};

use breaker::{Breaker, Gate};
use node::{Addr, Node, Nodes};

pub use error::{Answer, Cause, Error, OptionsError};

/// What answers when Redis cannot.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Policy {
    /// Refuse the request ([`Answer::Closed`]): a limit is never exceeded.
    #[default]
    FailClosed,
    /// Let it through ([`Answer::Open`]): availability over the limit.
    FailOpen,
    /// The local table decides ([`Answer::Local`]): per-host limits, each
    /// gateway its own (N gateways admit up to N times the limit).
    Local,
}

/// Where the script's `now` comes from.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum ClockSource {
    /// The Redis server's `TIME`: one clock for every gateway.
    #[default]
    Server,
    /// This gateway's wall clock, for services that refuse `TIME` in
    /// scripts.
    Gateway,
}

/// The longest key prefix taken.
pub const MAX_PREFIX: usize = 64;

/// How a [`RedisBackend`] reaches Redis and what it does when it cannot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// `host:port` (`[v6]:port` for an IPv6 address) of Redis, or of any
    /// node of a Cluster.
    pub addr: String,
    /// Bytes before every key (no `{` or `}`, at most [`MAX_PREFIX`]).
    /// Default `rc:`.
    pub prefix: Vec<u8>,
    /// The whole decision's deadline. Default 100 ms, as the Go host's;
    /// a host that is itself called under a deadline wants less
    /// (`ratecard-rls` takes 25 ms, under Envoy's 50 ms filter timeout).
    pub timeout: Duration,
    /// Connections per node, at most. Default 4.
    pub connections: usize,
    /// Default [`ClockSource::Server`].
    pub clock: ClockSource,
    /// Default [`Policy::FailClosed`].
    pub policy: Policy,
    /// Consecutive failures that open the breaker; 0 never opens it.
    /// Default 5.
    pub breaker_failures: u32,
    /// How long an open breaker stays open before it probes. Default 1 s.
    pub breaker_open_for: Duration,
    /// Answer subjects Redis just limited from the local table until their
    /// `Retry-After` (default). Off, every limited request makes its round
    /// trip and every decision is exactly the one a single table holding
    /// Redis's state would give ([`Limiter::prepare_exact`]).
    pub cache_denials: bool,
}

impl Options {
    /// The defaults, for Redis at `addr`.
    pub fn new(addr: impl Into<String>) -> Options {
        Options {
            addr: addr.into(),
            prefix: b"rc:".to_vec(),
            timeout: Duration::from_millis(100),
            connections: 4,
            clock: ClockSource::Server,
            policy: Policy::FailClosed,
            breaker_failures: 5,
            breaker_open_for: Duration::from_secs(1),
            cache_denials: true,
        }
    }
}

/// What the client itself has counted (the limiter counts decisions).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// TCP connections opened.
    pub connections: u64,
    /// `MOVED` and `ASK` redirections followed.
    pub redirects: u64,
    /// Calls resent as `EVAL` after `NOSCRIPT`.
    pub script_loads: u64,
    /// Times the breaker opened.
    pub breaker_opens: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    redirects: AtomicU64,
    script_loads: AtomicU64,
    breaker_opens: AtomicU64,
}

/// What [`RedisBackend::begin`] found.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "moved once, into the future that finishes it; a box would be one more allocation per call"
)]
pub enum Begun {
    /// Decided with no round trip.
    Decided(Decision),
    /// Redis decides: pass it to [`RedisBackend::finish`].
    Remote(RoundTrip),
}

/// A classified request still to send to Redis: everything
/// [`RedisBackend::finish`] needs, by value (the request is not borrowed).
#[derive(Debug)]
pub struct RoundTrip {
    pending: Pending,
    now: Nanos,
    clock: Clock,
}

/// Decisions through Redis, with a local table beside them. `Send` and
/// `Sync`: share it (in an `Arc`) between tasks.
pub struct RedisBackend {
    limiter: Arc<Limiter<'static>>,
    nodes: Nodes,
    prefix: Vec<u8>,
    timeout: Duration,
    clock: ClockSource,
    policy: Policy,
    exact: bool,
    breaker: Breaker,
    /// The local clock: monotonic, in nanoseconds since the Unix epoch as
    /// it read at `epoch`, so that it and [`RedisBackend::check_at`]'s
    /// times run on one scale.
    epoch: Instant,
    epoch_ns: u64,
    counters: Counters,
}

/// What one exchange with a node came to.
enum Step {
    /// The outcomes are filled in.
    Outcomes,
    NoScript,
    Moved {
        slot: u16,
        addr: Vec<u8>,
    },
    Ask {
        addr: Vec<u8>,
    },
    /// An error reply; the connection is in step.
    Failed(Cause),
}

/// `ASKING`, RESP-encoded.
const ASKING: &[u8] = b"*1\r\n$6\r\nASKING\r\n";
const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

impl RedisBackend {
    /// A backend for `limiter` (its seed shared by every gateway) on the
    /// Redis of `options`. Connects lazily: Redis need not be up yet.
    pub fn new(limiter: Arc<Limiter<'static>>, options: Options) -> Result<Self, OptionsError> {
        let bad = |m: String| Err(OptionsError(m));
        let Some(addr) = Addr::parse(&options.addr, "") else {
            return bad(format!("{:?} is not host:port", options.addr));
        };
        if options.prefix.len() > MAX_PREFIX
            || options.prefix.iter().any(|&b| b == b'{' || b == b'}')
        {
            return bad(format!(
                "the key prefix must be at most {MAX_PREFIX} bytes, without {{ or }}"
            ));
        }
        if options.timeout.is_zero() || options.timeout > Duration::from_secs(60) {
            return bad("the timeout must be above 0 and at most 60 s".into());
        }
        if !(1..=1024).contains(&options.connections) {
            return bad("connections per node must be 1 to 1024".into());
        }
        let epoch_ns = since_epoch_ns(wall_clock());
        Ok(RedisBackend {
            limiter,
            nodes: Nodes::new(addr, options.connections),
            prefix: options.prefix,
            timeout: options.timeout,
            clock: options.clock,
            policy: options.policy,
            exact: !options.cache_denials,
            breaker: Breaker::new(options.breaker_failures, options.breaker_open_for),
            epoch: Instant::now(),
            epoch_ns,
            counters: Counters::default(),
        })
    }

    /// The local table: its counters, rules, and the fallback.
    pub fn limiter(&self) -> &Arc<Limiter<'static>> {
        &self.limiter
    }

    /// Decide `request`, charging every matched rule in Redis if all
    /// allow. `Err` when the request cannot be decided
    /// ([`Error::Request`]) or Redis did not answer ([`Error::Remote`],
    /// with the policy's answer).
    pub async fn check(&self, request: &Request<'_>) -> Result<Decision, Error> {
        self.decide(request, None, false).await
    }

    /// The decision [`RedisBackend::check`] would give, writing nothing.
    pub async fn peek(&self, request: &Request<'_>) -> Result<Decision, Error> {
        self.decide(request, None, true).await
    }

    /// [`RedisBackend::check`] at `now` since the Unix epoch, taken as this
    /// gateway's clock and, under [`ClockSource::Gateway`], the script's:
    /// for tests and replays. Keep to one scale: do not mix it with
    /// [`RedisBackend::check`] on one backend unless `now` is the wall clock.
    pub async fn check_at(&self, request: &Request<'_>, now: Duration) -> Result<Decision, Error> {
        self.decide(request, Some(now), false).await
    }

    /// [`RedisBackend::peek`] at `now`, as [`RedisBackend::check_at`].
    pub async fn peek_at(&self, request: &Request<'_>, now: Duration) -> Result<Decision, Error> {
        self.decide(request, Some(now), true).await
    }

    /// `PING` the configured node within the timeout (not through the
    /// breaker): for readiness checks.
    pub async fn ping(&self) -> Result<(), Cause> {
        let node = self.nodes.seed();
        let exchange = async {
            let mut lease = node.lease(false, &self.counters.connections).await?;
            lease.out.clear();
            lease.out.extend_from_slice(PING);
            lease.send().await?;
            lease.read(|b| simple(b, b"+PONG\r\n")).await??;
            lease.release();
            Ok(())
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or(Err(Cause::Timeout))
    }

    /// Whether the breaker is open (or probing).
    pub fn breaker_open(&self) -> bool {
        self.breaker.is_open()
    }

    /// The client's own counters.
    pub fn client_stats(&self) -> ClientStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ClientStats {
            connections: get(&c.connections),
            redirects: get(&c.redirects),
            script_loads: get(&c.script_loads),
            breaker_opens: get(&c.breaker_opens),
        }
    }

    async fn decide(
        &self,
        request: &Request<'_>,
        at: Option<Duration>,
        peek: bool,
    ) -> Result<Decision, Error> {
        match self.start(request, at, peek)? {
            Begun::Decided(d) => Ok(d),
            Begun::Remote(trip) => self.finish(trip).await,
        }
    }

    /// [`RedisBackend::check`] in two halves, for a host that must not
    /// keep the request across an await (a tower layer's `'static`
    /// future): this half classifies the request at once; a
    /// [`Begun::Remote`] is finished by [`RedisBackend::finish`].
    /// Exempt, unmatched and cached-denied requests are
    /// [`Begun::Decided`], and an open breaker answers here, all with no
    /// await.
    pub fn begin(&self, request: &Request<'_>) -> Result<Begun, Error> {
        self.start(request, None, false)
    }

    /// The round trip of a [`Begun::Remote`]: what [`RedisBackend::check`]
    /// gives once the request is classified.
    pub async fn finish(&self, trip: RoundTrip) -> Result<Decision, Error> {
        let RoundTrip {
            pending,
            now,
            clock,
        } = trip;
        let gate = self.breaker.admit(Instant::now());
        if gate == Gate::Open {
            return Err(self.policy_answer(&pending, now, Cause::BreakerOpen));
        }
        // Held to the end: however this call ends, the probe is over.
        let _probe = (gate == Gate::Probe).then_some(ProbeGuard(&self.breaker));
        let result = tokio::time::timeout(self.timeout, self.call(&pending, clock))
            .await
            .unwrap_or(Err(Cause::Timeout));
        match result {
            Ok(d) => {
                self.breaker.success();
                Ok(d)
            }
            Err(cause) => {
                self.limiter.count_remote_error(now);
                if cause.trips_breaker() {
                    if self.breaker.failure(Instant::now()) {
                        self.counters.breaker_opens.fetch_add(1, Ordering::Relaxed);
                    }
                } else if matches!(cause, Cause::Server(_)) {
                    // Redis answered, about one key: it is up.
                    self.breaker.success();
                }
                Err(self.policy_answer(&pending, now, cause))
            }
        }
    }

    fn start(
        &self,
        request: &Request<'_>,
        at: Option<Duration>,
        peek: bool,
    ) -> Result<Begun, Error> {
        let wall = at.unwrap_or_else(wall_clock);
        let now = match at {
            Some(at) => Nanos(since_epoch_ns(at)),
            None => Nanos(
                self.epoch_ns
                    .saturating_add(since_epoch_ns(self.epoch.elapsed())),
            ),
        };
        let clock = match self.clock {
            ClockSource::Server => Clock::Server,
            ClockSource::Gateway => Clock::Gateway {
                secs: wall.as_secs(),
                nanos: wall.subsec_nanos(),
            },
        };
        let mut pending = Pending::new();
        let prepared = if self.exact {
            self.limiter.prepare_exact(request, now, peek, &mut pending)
        } else {
            self.limiter.prepare(request, now, peek, &mut pending)
        };
        if let Prepared::Decided(d) = prepared.map_err(Error::Request)? {
            return Ok(Begun::Decided(d));
        }
        // Only a look: `finish` admits (and probes), so a trip dropped
        // unfinished leaves the breaker as it was.
        if self.breaker.refuses(Instant::now()) {
            return Err(self.policy_answer(&pending, now, Cause::BreakerOpen));
        }
        Ok(Begun::Remote(RoundTrip {
            pending,
            now,
            clock,
        }))
    }

    fn policy_answer(&self, pending: &Pending, now: Nanos, cause: Cause) -> Error {
        let answer = match self.policy {
            Policy::FailClosed => {
                self.limiter.count_remote_fallback(now);
                Answer::Closed
            }
            Policy::FailOpen => {
                self.limiter.count_remote_fallback(now);
                Answer::Open
            }
            Policy::Local => Answer::Local(self.limiter.fallback(pending)),
        };
        Error::Remote { cause, answer }
    }

    /// The round trip: `EVALSHA` to the slot's node, then at most one
    /// `EVAL` per node (after `NOSCRIPT`) and one redirection.
    async fn call(&self, pending: &Pending, clock: Clock) -> Result<Decision, Cause> {
        let call = self.limiter.remote_call(pending, &self.prefix, clock);
        let mut node = self.nodes.for_slot(self.slot(pending.hashtag()));
        let mut outcomes = [Outcome::default(); MAX_RULES];
        let outcomes = outcomes
            .get_mut(..pending.rules().min(MAX_RULES))
            .unwrap_or_default();
        let (mut eval, mut asking, mut redirected) = (false, false, false);
        loop {
            let step = self.exchange(&node, &call, eval, asking, outcomes).await?;
            let (slot, addr) = match step {
                Step::Outcomes => return Ok(self.limiter.finish(pending, outcomes)),
                Step::Failed(cause) => return Err(cause),
                Step::NoScript if eval => return Err(Cause::Server("NOSCRIPT after EVAL".into())),
                Step::NoScript => {
                    self.counters.script_loads.fetch_add(1, Ordering::Relaxed);
                    eval = true;
                    continue;
                }
                Step::Moved { addr, .. } | Step::Ask { addr } if redirected => {
                    let to = String::from_utf8_lossy(&addr).into_owned();
                    return Err(Cause::Redirect(format!("redirected again, to {to}")));
                }
                Step::Moved { slot, addr } => (Some(slot), addr),
                Step::Ask { addr } => (None, addr),
            };
            let text = String::from_utf8_lossy(&addr);
            let Some(to) = Addr::parse(&text, &self.nodes.seed().addr.host) else {
                return Err(Cause::Redirect(format!("to {text:?}, not host:port")));
            };
            self.counters.redirects.fetch_add(1, Ordering::Relaxed);
            node = self.nodes.node(to);
            if let Some(slot) = slot {
                self.nodes.learn(slot, &node);
            }
            (eval, asking, redirected) = (false, slot.is_none(), true);
        }
    }

    /// Send the call to `node` and read its reply. A pooled connection
    /// that fails before any reply byte arrives is replaced once.
    async fn exchange(
        &self,
        node: &Arc<Node>,
        call: &Call<'_>,
        eval: bool,
        asking: bool,
        outcomes: &mut [Outcome],
    ) -> Result<Step, Cause> {
        let mut fresh = false;
        loop {
            let mut lease = node.lease(fresh, &self.counters.connections).await?;
            lease.out.clear();
            if asking {
                lease.out.extend_from_slice(ASKING);
            }
            encode(call, eval, &mut lease.out)?;
            let sent = async {
                lease.send().await?;
                if asking {
                    lease.read(|b| simple(b, b"+OK\r\n")).await??;
                }
                lease.read(|b| step(b, outcomes)).await?
            };
            match sent.await {
                Ok(step) => {
                    lease.release();
                    return Ok(step);
                }
                Err(Cause::Io(kind)) => {
                    node.drop_idle();
                    if lease.reused && lease.in_step() && !fresh {
                        fresh = true;
                        continue;
                    }
                    return Err(Cause::Io(kind));
                }
                Err(cause) => return Err(cause),
            }
        }
    }

    /// The Cluster slot of every key with `hashtag`.
    fn slot(&self, hashtag: u64) -> u16 {
        let mut key = [0u8; MAX_PREFIX + 32];
        match write_key(&self.prefix, hashtag, 0, &mut key) {
            Ok(n) => hash_slot(key.get(..n).unwrap_or_default()),
            Err(_) => 0,
        }
    }
}

/// A breaker probe in flight. Dropped once its outcome is recorded, or
/// with its call (the caller cancelled it, or it decided nothing about
/// Redis): either way the next call may probe if the breaker is open.
struct ProbeGuard<'b>(&'b Breaker);

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        self.0.end_probe();
    }
}

/// Append the RESP command for `call` to `out`.
fn encode(call: &Call<'_>, eval: bool, out: &mut Vec<u8>) -> Result<(), Cause> {
    let write = if eval { write_eval } else { write_evalsha };
    let start = out.len();
    let guess = if eval { SCRIPT.len() + 512 } else { 512 };
    out.resize(start + guess, 0);
    let n = match write(call, &mut out[start..]) {
        Ok(n) => n,
        Err(EncodeError::TooShort { bytes, .. }) => {
            out.resize(start + bytes, 0);
            write(call, &mut out[start..]).map_err(Cause::Encode)?
        }
        Err(e) => return Err(Cause::Encode(e)),
    };
    out.truncate(start + n);
    Ok(())
}

/// The script's reply, or what came instead, and the bytes it took.
fn step(b: &[u8], outcomes: &mut [Outcome]) -> Option<(Result<Step, Cause>, usize)> {
    let (step, used) = match decode_reply(b, outcomes) {
        Ok(d) => (Step::Outcomes, d.consumed),
        Err(ReplyError::Incomplete) => return None,
        Err(ReplyError::Protocol) => return Some((Err(Cause::Protocol), b.len())),
        // In step, strictly, but something other than the script answers:
        // start again on a new connection.
        Err(ReplyError::Shape { error, .. }) => return Some((Err(Cause::Shape(error)), b.len())),
        Err(ReplyError::Server { error, consumed }) => (
            match error {
                ServerError::NoScript => Step::NoScript,
                ServerError::Moved { slot, addr } => Step::Moved {
                    slot,
                    addr: addr.to_vec(),
                },
                ServerError::Ask { addr, .. } => Step::Ask {
                    addr: addr.to_vec(),
                },
                other => Step::Failed(Cause::server(&other)),
            },
            consumed,
        ),
    };
    Some((Ok(step), used))
}

/// A reply that must be exactly `want` (`+OK`, `+PONG`); an error reply is
/// its cause, anything else not the answer expected.
fn simple(b: &[u8], want: &[u8]) -> Option<(Result<(), Cause>, usize)> {
    if b.starts_with(want) {
        return Some((Ok(()), want.len()));
    }
    if want.starts_with(b) {
        return None;
    }
    match decode_reply(b, &mut []) {
        Err(ReplyError::Incomplete) => None,
        Err(ReplyError::Server { error, consumed }) => Some((Err(Cause::server(&error)), consumed)),
        Err(ReplyError::Protocol) => Some((Err(Cause::Protocol), b.len())),
        Err(ReplyError::Shape { error, consumed }) => Some((Err(Cause::Shape(error)), consumed)),
        Ok(d) => Some((Err(Cause::Shape(ShapeError::Type)), d.consumed)),
    }
}

fn wall_clock() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn since_epoch_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
