//! Limiter state in Redis: the charge script, its wire protocol, and keys.
//!
//! Several gateways enforce one limit only if they share its state. In this
//! mode the state lives in any Redis-compatible server (Redis 5 to 7,
//! Valkey, KeyDB, Dragonfly; Cluster included) and one Lua script,
//! [`SCRIPT`], charges every matched rule of a request atomically, all or
//! nothing, in one round trip, with the math of [`crate::gcra`] and
//! [`crate::window`]. Scripts run where modules cannot be loaded (managed
//! services). This module does no I/O: it writes the call into caller
//! buffers and reads the reply from bytes the caller received.
//!
//! # A call, step by step
//!
//! 1. Describe the request's matched rules in a [`Call`].
//! 2. Either write the script's KEYS and ARGV with [`write_args`] (for a
//!    client library: hiredis `redisCommandArgv`, a Go client's `EvalSha`)
//!    and send `EVALSHA` [`SCRIPT_SHA1`] with them; or write the whole
//!    command with [`write_evalsha`] for a host with only a socket.
//! 3. Decode the reply with [`decode_reply`] (raw bytes) or [`decode_ints`]
//!    (integers a client already parsed) into one [`Outcome`] per rule.
//! 4. On [`ServerError::NoScript`] (the server's script cache is empty: a
//!    restart, a failover, `SCRIPT FLUSH`), send the same call once with
//!    [`write_eval`], which also loads the script (or [`write_script_load`]
//!    first).
//!
//! # The script's contract (reply format 1)
//!
//! - `KEYS[1..n]`: one key per rule (`n ≥ 1`), from [`write_key`]: all
//!   share one Cluster hash tag, so one slot.
//! - `ARGV[1]`: flags, `0` or `1` (peek: decide, write nothing at all).
//! - `ARGV[2]`: the cost, `1 ..= u32::MAX`.
//! - Per rule `i` (1-based), `ARGV[3i ..= 3i+2]`: `g`, `T`, `burst` for
//!   GCRA (emission interval `T` ns, `T·burst ≤` [`MAX_SPAN_NS`]); or `w`,
//!   `limit`, `period` for a fixed window (period in ns, a whole number of
//!   microseconds, `1000 ..=` [`MAX_SPAN_NS`]).
//! - Then, with [`Clock::Gateway`] only, `ARGV[3n+3]`, `ARGV[3n+4]`: whole
//!   seconds (`0 ..=` [`MAX_CLOCK_SECS`]) and nanoseconds (`0 ..=
//!   999_999_999`) of the gateway's wall clock since the Unix epoch. Without
//!   them (`2 + 3n` arguments) the clock is the server's `TIME`
//!   ([`Clock::Server`]). An argument costs the server about 1 200
//!   instructions (parsed, copied, interned as a Lua string): an absent
//!   clock is cheaper than an empty one.
//! - Reply: `2 + 4n` integers: [`REPLY_FORMAT`], `committed` (1 when every
//!   rule conformed and the new states were stored), then per rule `code`
//!   (1 conforms, 0 denied, 2 never fits), `remaining`, `reset_ns`,
//!   `retry_after_ns`, as in [`Outcome`].
//! - Errors: `RATECARD BADARG i` (`ARGV[i]` invalid, 0 = the counts),
//!   `RATECARD BADSTATE i` (`KEYS[i]` holds a string this script never
//!   writes), `RATECARD BADCLOCK 0` (`TIME` out of range); a key of another
//!   type gives the server's `WRONGTYPE`. See [`ServerError`].
//!
//! Outcomes are exactly [`crate::gcra::decide`] and [`crate::window::decide`]
//! on the stored state at the script's `now`: conformance, `remaining`,
//! `reset`, `retry_after`, `never_fits`, and the wild-clock clamp (stored
//! even on a denial, except on peek). A denied request stores nothing else.
//! Every write is `SET key value PX ms` with `ms = ⌈reset / 1 ms⌉`: a key
//! disappears exactly when its quota is whole again, so Redis memory
//! follows the active subjects only. The one difference: a window state
//! keeps its full index where the local table keeps it modulo 2³², so a
//! state 2³² windows old is never taken for the current one.
//!
//! # Exact arithmetic in Lua
//!
//! Lua numbers are doubles, exact for integers below 2⁵³, and nanoseconds
//! since the epoch (about 2⁶⁰) are not. The script never forms one: the
//! clock stays split in seconds and nanoseconds, a GCRA state is the TAT's
//! decimal string (read back split at its last nine digits), and the GCRA
//! math runs on `TAT − now`, which stays below `3·2⁵¹` ns (a TAT further
//! ahead is wild and clamped, one further behind is replenished). Windows
//! count in microseconds (below 2⁵², hence whole-microsecond periods).
//!
//! # Time
//!
//! [`Clock::Server`] uses the Redis server's `TIME`: one clock for every
//! gateway. A step of that clock is a step of `now`: forward, quota
//! replenishes early (at most by the step); backward, nothing is handed
//! back, and a state more than two bursts (or two windows) ahead is clamped
//! to one burst (the current window full). A failover moves to the
//! replica's clock; with NTP the difference is milliseconds.
//! [`Clock::Gateway`] is for services that refuse `TIME` in scripts. Then
//! each gateway decides at its own `now`, and the server expires keys by
//! its own clock: when these clocks are at most `δ` apart, a rule can admit
//! up to about `⌈δ/T⌉` units (one more window, for a fixed window that `δ`
//! straddles) beyond its bound in any interval. NTP usually keeps `δ` to a
//! few milliseconds; the smallest `T` in Clerk's table is 10 ms (1000 per
//! 10 s).
//!
//! # Keys
//!
//! A key is `prefix{hashtag}tag`: [`write_key`] encodes both numbers in an
//! alphabet without braces, so the hash tag is always `hashtag`, and every
//! key of one call (one `hashtag`) lands in one Cluster slot
//! ([`hash_slot`]). The tag should be the local table's keyed hash of
//! (tenant, rule, subject), with a seed shared by every gateway: no secret
//! reaches Redis in clear. A GCRA state is a decimal integer, which Redis
//! keeps as one machine word: 72 bytes per key of 27 bytes (`MEMORY USAGE`,
//! Redis 7.0), against 104 for redis-cell's string state under the same key.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod encode;
mod key;
mod reply;

pub use encode::{write_args, write_eval, write_evalsha, write_script_load, Args, Span};
pub use key::{hash_slot, write_key};
pub use reply::{
    decode_ints, decode_reply, decode_script_load, Decoded, ReplyError, ServerError, ShapeError,
};

#[cfg(doc)]
use crate::quota::Outcome;
use crate::quota::{Algorithm, Quota};

/// The charge script's source, as sent by [`write_eval`] and
/// [`write_script_load`].
pub const SCRIPT: &str = include_str!("charge.lua");

/// The SHA-1 of [`SCRIPT`] in lowercase hex: the name `EVALSHA` takes.
pub const SCRIPT_SHA1: &str = "6d502196574c968ede6e28ec9b49a52e48de0d19";

/// The first integer of the script's reply: the reply format.
pub const REPLY_FORMAT: i64 = 1;

/// The largest GCRA span `T·burst` and fixed-window period, in ns (2⁵¹ ns,
/// about 26 days): what keeps the script's arithmetic exact.
pub const MAX_SPAN_NS: u64 = 1 << 51;

/// The latest clock the script accepts, in seconds since the Unix epoch
/// (the year 2096).
pub const MAX_CLOCK_SECS: u64 = 4_000_000_000;

/// Where the script's `now` comes from.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Clock {
    /// The Redis server's `TIME`: one clock for every gateway.
    Server,
    /// The gateway's wall clock since the Unix epoch, for services that
    /// refuse `TIME` in scripts (and for tests).
    Gateway {
        /// Whole seconds, at most [`MAX_CLOCK_SECS`].
        secs: u64,
        /// Nanoseconds within the second, below 10⁹.
        nanos: u32,
    },
}

/// One matched rule of a call.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RemoteRule {
    /// The key's identity: the local table's tag for (tenant, rule,
    /// subject).
    pub tag: u64,
    /// How the quota is enforced.
    pub algorithm: Algorithm,
    /// The rule's quota: not unlimited, its span (`T·burst`, or a window's
    /// period) at most [`MAX_SPAN_NS`], a window's period a whole number of
    /// microseconds.
    pub quota: Quota,
}

/// One request's charge: every rule it matched, in one script call.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Call<'a> {
    /// Bytes before each key, e.g. `rc:`; no `{` or `}`.
    pub prefix: &'a [u8],
    /// The request's Cluster hash tag (e.g. derived from its instance or
    /// client IP): every key of the call shares it.
    pub hashtag: u64,
    /// The matched rules, at least one (exempt and unmatched requests need
    /// no call).
    pub rules: &'a [RemoteRule],
    /// Units to charge, at least 1.
    pub cost: u32,
    /// Decide without writing anything.
    pub peek: bool,
    /// The clock.
    pub clock: Clock,
}

/// Why a call cannot be encoded.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The output is too short: `bytes` bytes and `spans` spans are needed
    /// (`spans` is 0 for the RESP encoders). Nothing was written.
    TooShort {
        /// Bytes needed in the byte buffer.
        bytes: usize,
        /// Entries needed in the span array.
        spans: usize,
    },
    /// The prefix contains `{` or `}`, which would move the hash tag.
    Prefix,
    /// The call has no rule.
    NoRules,
    /// The cost is 0.
    Cost,
    /// A gateway clock past [`MAX_CLOCK_SECS`] or with nanoseconds ≥ 10⁹.
    Clock,
    /// Rule `index` of the call is unlimited, spans more than
    /// [`MAX_SPAN_NS`], or is a window whose period is not whole
    /// microseconds.
    Rule {
        /// Its index in [`Call::rules`].
        index: usize,
    },
}

/// A rule's three script arguments: algorithm letter and two integers.
fn rule_args(rule: &RemoteRule) -> Option<(&'static [u8], u64, u64)> {
    let q = &rule.quota;
    if q.is_unlimited() {
        return None;
    }
    match rule.algorithm {
        Algorithm::Gcra => {
            let t = q.emission_interval();
            let burst = q.burst();
            let span = t.checked_mul(u64::from(burst))?;
            (burst >= 1 && span <= MAX_SPAN_NS).then_some((b"g", t, u64::from(burst)))
        }
        Algorithm::FixedWindow => {
            let p = q.period_ns();
            (p >= 1000 && p.is_multiple_of(1000) && p <= MAX_SPAN_NS).then_some((
                b"w",
                u64::from(q.limit),
                p,
            ))
        }
    }
}

impl Call<'_> {
    /// Check everything the script would refuse.
    fn validate(&self) -> Result<(), EncodeError> {
        if self.prefix.iter().any(|&b| b == b'{' || b == b'}') {
            return Err(EncodeError::Prefix);
        }
        if self.rules.is_empty() {
            return Err(EncodeError::NoRules);
        }
        if self.cost == 0 {
            return Err(EncodeError::Cost);
        }
        if let Clock::Gateway { secs, nanos } = self.clock {
            if secs > MAX_CLOCK_SECS || nanos >= 1_000_000_000 {
                return Err(EncodeError::Clock);
            }
        }
        for (index, rule) in self.rules.iter().enumerate() {
            if rule_args(rule).is_none() {
                return Err(EncodeError::Rule { index });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
