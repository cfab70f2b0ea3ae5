//! What a decision through Redis can fail with, and what answered instead.

use std::fmt;
use std::io;

use ratecard::remote::{EncodeError, ServerError, ShapeError};
use ratecard::{CheckError, Decision};

/// Why [`crate::RedisBackend::check`] gave no decision from Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The request itself cannot be decided (a Frontend request without a
    /// client IP, say): Redis was not involved and no policy answered.
    Request(CheckError),
    /// Redis did not answer; the policy did. Log `cause`, act on `answer`.
    Remote {
        /// Why Redis did not answer.
        cause: Cause,
        /// What the configured [`crate::Policy`] answered.
        answer: Answer,
    },
}

/// The policy's answer when Redis could not decide.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Fail closed: refuse the request with
    /// [`ratecard::FAIL_CLOSED_STATUS`] (503), as for a library error.
    Closed,
    /// Fail open: let the request through, unlimited and uncounted.
    Open,
    /// The local table decided (per-host limits), charged as usual.
    Local(Decision),
}

/// Why Redis gave no decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    /// Not tried: the circuit breaker is open after consecutive failures.
    BreakerOpen,
    /// No reply within the call's timeout.
    Timeout,
    /// Connecting, writing or reading failed (the closed connection
    /// included, as `UnexpectedEof`).
    Io(io::ErrorKind),
    /// The server answered an error, named as it spelt it (`WRONGTYPE`,
    /// `CLUSTERDOWN`, `RATECARD BADSTATE 0`, `ERR …`).
    Server(String),
    /// A RESP value that is not the script's reply.
    Shape(ShapeError),
    /// Bytes that are not RESP (or a reply past any sane size): the
    /// connection was dropped.
    Protocol,
    /// A second redirection in one call, or one to an address that is not
    /// `host:port`.
    Redirect(String),
    /// The call could not be encoded (a rule the script cannot take).
    Encode(EncodeError),
}

impl Cause {
    /// A failure of Redis itself, which counts towards the breaker; the
    /// others are about one key (`WRONGTYPE`, a state the script never
    /// wrote, `TRYAGAIN` mid-migration) or this call.
    pub(crate) fn trips_breaker(&self) -> bool {
        match self {
            Cause::Timeout | Cause::Io(_) | Cause::Protocol | Cause::Shape(_) => true,
            Cause::Redirect(_) => true,
            Cause::Server(m) => !is_key_error(m),
            Cause::BreakerOpen | Cause::Encode(_) => false,
        }
    }

    /// The cause of a server's error reply (`NOSCRIPT`, `MOVED` and `ASK`
    /// are handled before they get here).
    pub(crate) fn server(e: &ServerError<'_>) -> Cause {
        Cause::Server(match e {
            ServerError::NoScript => "NOSCRIPT".into(),
            ServerError::Moved { slot, addr } => {
                format!("MOVED {slot} {}", String::from_utf8_lossy(addr))
            }
            ServerError::Ask { slot, addr } => {
                format!("ASK {slot} {}", String::from_utf8_lossy(addr))
            }
            ServerError::TryAgain => "TRYAGAIN".into(),
            ServerError::ClusterDown => "CLUSTERDOWN".into(),
            ServerError::Loading => "LOADING".into(),
            ServerError::Busy => "BUSY".into(),
            ServerError::WrongType => "WRONGTYPE".into(),
            ServerError::BadState { rule } => format!("RATECARD BADSTATE {rule}"),
            ServerError::BadArgument { arg } => format!("RATECARD BADARG {arg}"),
            ServerError::BadClock => "RATECARD BADCLOCK".into(),
            ServerError::Other { message } => String::from_utf8_lossy(message).into_owned(),
        })
    }
}

fn is_key_error(message: &str) -> bool {
    ["WRONGTYPE", "RATECARD BADSTATE", "TRYAGAIN"]
        .iter()
        .any(|p| message.starts_with(p))
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::BreakerOpen => f.write_str("circuit breaker open"),
            Cause::Timeout => f.write_str("no reply within the timeout"),
            Cause::Io(kind) => write!(f, "connection: {kind}"),
            Cause::Server(m) => write!(f, "server error: {m}"),
            Cause::Shape(e) => write!(f, "not the script's reply: {e:?}"),
            Cause::Protocol => f.write_str("not RESP: connection dropped"),
            Cause::Redirect(why) => write!(f, "redirect: {why}"),
            Cause::Encode(e) => write!(f, "cannot encode the call: {e:?}"),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Request(e) => write!(f, "{e}"),
            Error::Remote { cause, answer } => {
                let answered = match answer {
                    Answer::Closed => "failed closed",
                    Answer::Open => "failed open",
                    Answer::Local(_) => "the local table answered",
                };
                write!(f, "Redis: {cause}; {answered}")
            }
        }
    }
}

impl std::error::Error for Error {}

/// Options that cannot be used, with the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionsError(pub String);

impl fmt::Display for OptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OptionsError {}
