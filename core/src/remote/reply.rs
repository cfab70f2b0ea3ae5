//! The script's reply: RESP bytes (or integers a client parsed) into one
//! [`Outcome`] per rule.
//!
//! The RESP decoder keeps no state: call it again with every byte received
//! so far until it stops saying [`ReplyError::Incomplete`]. It reads RESP2
//! and the RESP3 types, never reads past `input`, never panics, and gives
//! either exactly one outcome per rule or an error.

use super::{REPLY_FORMAT, SCRIPT_SHA1};
use crate::quota::Outcome;

/// A reply decoded into outcomes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// Every rule conformed and the script stored the new states (false on
    /// any denial and on peek).
    pub committed: bool,
    /// Bytes of `input` the reply took; the next reply starts there.
    pub consumed: usize,
}

/// Why a reply gave no outcomes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ReplyError<'a> {
    /// `input` is a proper prefix of a reply: read more and call again.
    Incomplete,
    /// The server answered with an error. The connection is still in step:
    /// the next reply starts `consumed` bytes in.
    Server {
        /// Which error.
        error: ServerError<'a>,
        /// Bytes the error reply took.
        consumed: usize,
    },
    /// A well-formed RESP value that is not the script's reply (another
    /// script under this name, a proxy's answer). Still in step.
    Shape {
        /// What is wrong with it.
        error: ShapeError,
        /// Bytes the value took.
        consumed: usize,
    },
    /// Bytes that are not RESP: the connection is out of step, close it.
    Protocol,
}

/// An error reply from the server, by its code.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ServerError<'a> {
    /// `NOSCRIPT`: the script is not loaded; retry once with `EVAL`.
    NoScript,
    /// `MOVED slot addr`: the slot lives on `addr` (`host:port`) now.
    Moved {
        /// The keys' slot.
        slot: u16,
        /// Where to send it, as the server wrote it.
        addr: &'a [u8],
    },
    /// `ASK slot addr`: the slot is migrating; send `ASKING` then the call
    /// to `addr`, once.
    Ask {
        /// The keys' slot.
        slot: u16,
        /// Where to send it, as the server wrote it.
        addr: &'a [u8],
    },
    /// `TRYAGAIN`: a slot migration holds some of the keys; retry later.
    TryAgain,
    /// `CLUSTERDOWN`: the cluster cannot serve the slot.
    ClusterDown,
    /// `LOADING`: the server is loading its dataset.
    Loading,
    /// `BUSY`: another script is running past its time limit.
    Busy,
    /// `WRONGTYPE`: a key holds a value of another type (not a string).
    WrongType,
    /// `RATECARD BADSTATE`: the key of rule `rule` (0-based) holds a string
    /// the script never writes.
    BadState {
        /// The rule's index in the call.
        rule: usize,
    },
    /// `RATECARD BADARG`: `ARGV[arg]` was refused (0: the key or argument
    /// count); a call from the encoders never is.
    BadArgument {
        /// The 1-based argument index.
        arg: usize,
    },
    /// `RATECARD BADCLOCK`: the server's `TIME` is out of range.
    BadClock,
    /// Any other error; `message` is its text without the leading `-`.
    Other {
        /// The error line, e.g. `ERR unknown command`.
        message: &'a [u8],
    },
}

/// How a well-formed reply differs from the script's.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ShapeError {
    /// Not an array (of integers).
    Type,
    /// An array of `found` elements where `2 + 4·rules` were expected.
    Count {
        /// Its length.
        found: usize,
    },
    /// The first integer is not [`super::REPLY_FORMAT`].
    Format {
        /// The integer found.
        found: i64,
    },
    /// Element `index` (0-based) is not an integer, or is out of range or
    /// inconsistent with the others.
    Element {
        /// Its index in the array.
        index: usize,
    },
}

/// Why the scan of the input stopped.
enum Halt {
    Incomplete,
    Protocol,
}

impl<'a> From<Halt> for ReplyError<'a> {
    fn from(h: Halt) -> ReplyError<'a> {
        match h {
            Halt::Incomplete => ReplyError::Incomplete,
            Halt::Protocol => ReplyError::Protocol,
        }
    }
}

/// A read position in the input.
#[derive(Clone)]
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> Result<u8, Halt> {
        let b = *self.buf.get(self.pos).ok_or(Halt::Incomplete)?;
        self.pos = self.pos.saturating_add(1);
        Ok(b)
    }

    fn peek(&self) -> Result<u8, Halt> {
        self.buf.get(self.pos).copied().ok_or(Halt::Incomplete)
    }

    /// The bytes up to the next `\r\n`, which is skipped.
    fn line(&mut self) -> Result<&'a [u8], Halt> {
        let rest = self.buf.get(self.pos..).unwrap_or(&[]);
        let end = rest
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .ok_or(Halt::Incomplete)?;
        let line = rest.get(..end).unwrap_or(&[]);
        self.pos = self.pos.saturating_add(end);
        self.crlf()?;
        Ok(line)
    }

    /// `\r\n`.
    fn crlf(&mut self) -> Result<(), Halt> {
        let at = |i: usize| self.buf.get(self.pos.saturating_add(i)).copied();
        match (at(0), at(1)) {
            (Some(b'\r'), Some(b'\n')) => {
                self.pos = self.pos.saturating_add(2);
                Ok(())
            }
            (None, _) | (Some(b'\r'), None) => Err(Halt::Incomplete),
            _ => Err(Halt::Protocol),
        }
    }

    /// A line holding a decimal i64.
    fn int(&mut self) -> Result<i64, Halt> {
        parse_i64(self.line()?).ok_or(Halt::Protocol)
    }

    /// `len` bytes then `\r\n`.
    fn blob(&mut self, len: usize) -> Result<&'a [u8], Halt> {
        let end = self.pos.checked_add(len).ok_or(Halt::Protocol)?;
        let body = self.buf.get(self.pos..end).ok_or(Halt::Incomplete)?;
        self.pos = end;
        self.crlf()?;
        Ok(body)
    }

    /// A length or count line: `-1` (null) is `None`.
    fn size(&mut self) -> Result<Option<usize>, Halt> {
        match self.int()? {
            -1 => Ok(None),
            n => usize::try_from(n).map(Some).map_err(|_| Halt::Protocol),
        }
    }

    /// Skip one whole value of any type; aggregates are counted, not
    /// recursed into.
    fn skip(&mut self) -> Result<(), Halt> {
        let mut pending: usize = 1;
        while let Some(left) = pending.checked_sub(1) {
            pending = left;
            let children = match self.byte()? {
                b':' => {
                    self.int()?;
                    0
                }
                b'+' | b'-' | b'_' | b',' | b'#' | b'(' => {
                    self.line()?;
                    0
                }
                b'$' | b'!' | b'=' => {
                    if let Some(len) = self.size()? {
                        self.blob(len)?;
                    }
                    0
                }
                b'*' | b'~' | b'>' => self.size()?.unwrap_or(0),
                b'%' => self
                    .size()?
                    .unwrap_or(0)
                    .checked_mul(2)
                    .ok_or(Halt::Protocol)?,
                // An attribute map, then the value it annotates.
                b'|' => self
                    .size()?
                    .unwrap_or(0)
                    .checked_mul(2)
                    .and_then(|n| n.checked_add(1))
                    .ok_or(Halt::Protocol)?,
                _ => return Err(Halt::Protocol),
            };
            pending = pending.checked_add(children).ok_or(Halt::Protocol)?;
        }
        Ok(())
    }
}

fn parse_i64(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0i64, |acc, &d| {
        let d = i64::from(d.checked_sub(b'0').filter(|&d| d <= 9)?);
        let acc = acc.checked_mul(10)?;
        if neg {
            acc.checked_sub(d)
        } else {
            acc.checked_add(d)
        }
    })
}

fn parse_usize(s: &[u8]) -> Option<usize> {
    parse_i64(s).and_then(|v| usize::try_from(v).ok())
}

/// Classify an error message (the line without its `-`).
fn server_error(message: &[u8], rules: usize) -> ServerError<'_> {
    let mut words = message.split(|&b| b == b' ');
    let first = words.next().unwrap_or(&[]);
    let known = match first {
        b"NOSCRIPT" => Some(ServerError::NoScript),
        b"MOVED" => redirect(&mut words).map(|(slot, addr)| ServerError::Moved { slot, addr }),
        b"ASK" => redirect(&mut words).map(|(slot, addr)| ServerError::Ask { slot, addr }),
        b"TRYAGAIN" => Some(ServerError::TryAgain),
        b"CLUSTERDOWN" => Some(ServerError::ClusterDown),
        b"LOADING" => Some(ServerError::Loading),
        b"BUSY" => Some(ServerError::Busy),
        b"WRONGTYPE" => Some(ServerError::WrongType),
        b"RATECARD" => ours(&mut words, rules),
        // Older servers wrap a script's errors in ERR.
        b"ERR" => {
            let mut rest = words.clone();
            match rest.next() {
                Some(b"RATECARD") => ours(&mut rest, rules),
                _ => message
                    .windows(11)
                    .any(|w| w == b" WRONGTYPE ")
                    .then_some(ServerError::WrongType),
            }
        }
        _ => None,
    };
    known.unwrap_or(ServerError::Other { message })
}

/// `<slot> <addr>` of a `MOVED` or `ASK` error.
fn redirect<'a>(words: &mut impl Iterator<Item = &'a [u8]>) -> Option<(u16, &'a [u8])> {
    let slot = words
        .next()
        .and_then(parse_usize)
        .and_then(|s| u16::try_from(s).ok())
        .filter(|&s| s < 16384)?;
    let addr = words.next().filter(|a| !a.is_empty())?;
    Some((slot, addr))
}

/// The script's own errors: `RATECARD <what> <index>`.
fn ours<'b>(
    words: &mut impl Iterator<Item = &'b [u8]>,
    rules: usize,
) -> Option<ServerError<'static>> {
    let what = words.next()?;
    let index = words.next().and_then(parse_usize)?;
    match what {
        b"BADSTATE" => index
            .checked_sub(1)
            .filter(|&rule| rule < rules)
            .map(|rule| ServerError::BadState { rule }),
        b"BADARG" => Some(ServerError::BadArgument { arg: index }),
        b"BADCLOCK" => Some(ServerError::BadClock),
        _ => None,
    }
}

/// Check the reply's integers and, with `out`, store the outcomes.
fn outcomes(
    ints: &mut impl Iterator<Item = i64>,
    rules: usize,
    mut out: Option<&mut [Outcome]>,
) -> Result<bool, ShapeError> {
    let mut index = 0usize;
    let mut next = || {
        let v = ints.next();
        let at = index;
        index = index.saturating_add(1);
        v.map(|v| (at, v)).ok_or(ShapeError::Count { found: at })
    };
    let (_, format) = next()?;
    if format != REPLY_FORMAT {
        return Err(ShapeError::Format { found: format });
    }
    let committed = match next()? {
        (_, 0) => false,
        (_, 1) => true,
        (at, _) => return Err(ShapeError::Element { index: at }),
    };
    for rule in 0..rules {
        let (i_code, code) = next()?;
        let (i_left, left) = next()?;
        let (i_reset, reset) = next()?;
        let (i_retry, retry) = next()?;
        let (allowed, never_fits) = match code {
            1 => (true, false),
            0 if !committed => (false, false),
            2 if !committed => (false, true),
            _ => return Err(ShapeError::Element { index: i_code }),
        };
        let remaining = u32::try_from(left).map_err(|_| ShapeError::Element { index: i_left })?;
        let reset = u64::try_from(reset).map_err(|_| ShapeError::Element { index: i_reset })?;
        let retry_after = u64::try_from(retry)
            .ok()
            // A denial waits at least 1 ns; the others never wait.
            .filter(|&r| (r > 0) == (code == 0))
            .ok_or(ShapeError::Element { index: i_retry })?;
        if let Some(slot) = out.as_deref_mut().and_then(|o| o.get_mut(rule)) {
            *slot = Outcome {
                allowed,
                never_fits,
                state: 0,
                remaining,
                reset,
                retry_after,
            };
        }
    }
    Ok(committed)
}

/// The integers of an array whose elements are known to be integers.
struct Ints<'a>(Cursor<'a>);

impl Iterator for Ints<'_> {
    type Item = i64;
    fn next(&mut self) -> Option<i64> {
        match self.0.byte() {
            Ok(b':') => self.0.int().ok(),
            _ => None,
        }
    }
}

/// Decode the charge script's reply from the start of `input` into `out`,
/// which holds exactly one outcome per rule of the call (`state` is 0).
///
/// `Ok` means every outcome was written, in the call's rule order; on any
/// error `out` is untouched. [`ReplyError::Incomplete`] asks for more
/// bytes; [`ReplyError::Server`] and [`ReplyError::Shape`] say how many
/// bytes the reply took, [`ReplyError::Protocol`] that the bytes are not
/// RESP.
pub fn decode_reply<'a>(input: &'a [u8], out: &mut [Outcome]) -> Result<Decoded, ReplyError<'a>> {
    let rules = out.len();
    let mut cur = Cursor { buf: input, pos: 0 };
    let message = match cur.peek()? {
        b'-' => {
            cur.byte()?;
            Some(cur.line()?)
        }
        b'!' => {
            cur.byte()?;
            let len = cur.size()?.ok_or(Halt::Protocol)?;
            Some(cur.blob(len)?)
        }
        _ => None,
    };
    if let Some(message) = message {
        return Err(ReplyError::Server {
            error: server_error(message, rules),
            consumed: cur.pos,
        });
    }
    let shape = |error, cur: &Cursor<'_>| ReplyError::Shape {
        error,
        consumed: cur.pos,
    };
    if cur.peek()? != b'*' {
        cur.skip()?;
        return Err(shape(ShapeError::Type, &cur));
    }
    cur.byte()?;
    let Some(found) = cur.size()? else {
        return Err(shape(ShapeError::Type, &cur));
    };
    let start = cur.clone();
    let mut not_int = None;
    for index in 0..found {
        if cur.peek()? == b':' {
            cur.byte()?;
            cur.int()?;
        } else {
            not_int = not_int.or(Some(index));
            cur.skip()?;
        }
    }
    if Some(found) != rules.checked_mul(4).and_then(|n| n.checked_add(2)) {
        return Err(shape(ShapeError::Count { found }, &cur));
    }
    if let Some(index) = not_int {
        return Err(shape(ShapeError::Element { index }, &cur));
    }
    // Check every value first, so that `out` is written only on success.
    outcomes(&mut Ints(start.clone()), rules, None).map_err(|e| shape(e, &cur))?;
    let committed = outcomes(&mut Ints(start), rules, Some(out)).map_err(|e| shape(e, &cur))?;
    Ok(Decoded {
        committed,
        consumed: cur.pos,
    })
}

/// Decode the charge script's reply from the integers a client library
/// already parsed (`values`: the reply array) into `out`, one outcome per
/// rule; returns `committed` (see [`Decoded`]). On error `out` is
/// untouched.
pub fn decode_ints(values: &[i64], out: &mut [Outcome]) -> Result<bool, ShapeError> {
    let rules = out.len();
    if Some(values.len()) != rules.checked_mul(4).and_then(|n| n.checked_add(2)) {
        return Err(ShapeError::Count {
            found: values.len(),
        });
    }
    outcomes(&mut values.iter().copied(), rules, None)?;
    outcomes(&mut values.iter().copied(), rules, Some(out))
}

/// Decode the reply to `SCRIPT LOAD` (see [`super::write_script_load`]):
/// `Ok(consumed)` when the server named the script [`SCRIPT_SHA1`].
/// A different name is [`ShapeError::Element`] 0.
pub fn decode_script_load(input: &[u8]) -> Result<usize, ReplyError<'_>> {
    let mut cur = Cursor { buf: input, pos: 0 };
    match cur.peek()? {
        b'-' => {
            cur.byte()?;
            let message = cur.line()?;
            return Err(ReplyError::Server {
                error: server_error(message, 0),
                consumed: cur.pos,
            });
        }
        b'$' => {
            cur.byte()?;
            if let Some(len) = cur.size()? {
                let sha = cur.blob(len)?;
                if sha.eq_ignore_ascii_case(SCRIPT_SHA1.as_bytes()) {
                    return Ok(cur.pos);
                }
                return Err(ReplyError::Shape {
                    error: ShapeError::Element { index: 0 },
                    consumed: cur.pos,
                });
            }
        }
        _ => cur.skip()?,
    }
    Err(ReplyError::Shape {
        error: ShapeError::Type,
        consumed: cur.pos,
    })
}
