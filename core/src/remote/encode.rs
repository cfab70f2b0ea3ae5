//! The script's KEYS and ARGV, as byte strings or as a RESP command.

use super::key::{key_len, key_parts};
use super::{rule_args, Call, Clock, EncodeError, SCRIPT, SCRIPT_SHA1};

/// Where one byte string lies in the buffer [`write_args`] filled.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Span {
    /// Offset of its first byte.
    pub offset: usize,
    /// Its length (0 for an empty string).
    pub len: usize,
}

/// What [`write_args`] wrote.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Args {
    /// Spans `0..keys` are the KEYS (one per rule).
    pub keys: usize,
    /// Spans `keys..keys + args` are the ARGV.
    pub args: usize,
    /// Bytes used in the buffer.
    pub bytes: usize,
}

/// One byte string of the command.
#[derive(Copy, Clone)]
enum Piece<'a> {
    /// The key of the rule with this tag.
    Key(u64),
    /// An integer in decimal.
    Num(u64),
    /// Bytes as they are.
    Text(&'a [u8]),
}

/// Every KEY, then every ARGV of `call` (already validated), in order.
fn pieces<'a>(call: &Call<'a>, mut f: impl FnMut(Piece<'a>)) {
    for rule in call.rules {
        f(Piece::Key(rule.tag));
    }
    f(Piece::Num(u64::from(call.peek)));
    f(Piece::Num(u64::from(call.cost)));
    for rule in call.rules {
        if let Some((alg, a, b)) = rule_args(rule) {
            f(Piece::Text(alg));
            f(Piece::Num(a));
            f(Piece::Num(b));
        }
    }
    if let Clock::Gateway { secs, nanos } = call.clock {
        f(Piece::Num(secs));
        f(Piece::Num(u64::from(nanos)));
    }
}

/// `v` in decimal.
fn decimal(v: u64, tmp: &mut [u8; 20]) -> &[u8] {
    let mut at = tmp.len();
    let mut v = v;
    for slot in tmp.iter_mut().rev() {
        *slot = b'0' | (v % 10) as u8;
        at = at.saturating_sub(1);
        v /= 10;
        if v == 0 {
            break;
        }
    }
    tmp.get(at..).unwrap_or(&[])
}

fn piece_len(call: &Call<'_>, piece: Piece<'_>) -> usize {
    match piece {
        Piece::Key(tag) => key_len(call.prefix, call.hashtag, tag),
        Piece::Num(v) => decimal(v, &mut [0; 20]).len(),
        Piece::Text(t) => t.len(),
    }
}

fn piece_write(call: &Call<'_>, piece: Piece<'_>, put: &mut dyn FnMut(&[u8])) {
    match piece {
        Piece::Key(tag) => key_parts(call.prefix, call.hashtag, tag, put),
        Piece::Num(v) => put(decimal(v, &mut [0; 20])),
        Piece::Text(t) => put(t),
    }
}

/// Run `f` once to count its bytes, then, if they fit, once more to write
/// them: a short `out` is left untouched.
fn emit(out: &mut [u8], f: impl Fn(&mut dyn FnMut(&[u8]))) -> Result<usize, EncodeError> {
    let mut need = 0usize;
    f(&mut |b: &[u8]| need = need.saturating_add(b.len()));
    if need > out.len() {
        return Err(EncodeError::TooShort {
            bytes: need,
            spans: 0,
        });
    }
    let mut at = 0usize;
    f(&mut |b: &[u8]| {
        let end = at.saturating_add(b.len());
        if let Some(dst) = out.get_mut(at..end) {
            dst.copy_from_slice(b);
        }
        at = end;
    });
    Ok(at)
}

/// Write the script's KEYS then ARGV for `call` as byte strings, one after
/// the other in `buf`, and where each lies in `spans`: for client libraries
/// that take an argument vector (hiredis `redisCommandArgv`, a Go client's
/// `EvalSha(sha, keys, args)`). The command to send is `EVALSHA`
/// [`SCRIPT_SHA1`] `<keys>` followed by the keys and the arguments.
///
/// Errors: the call's own ([`EncodeError`]); [`EncodeError::TooShort`] with
/// what both outputs need if either is short (both are then untouched).
/// `buf` needs at most `rules·(prefix.len() + 51) + 30` bytes and `spans`
/// `4·rules + 2` entries (`4·rules + 4` with [`Clock::Gateway`]).
pub fn write_args(
    call: &Call<'_>,
    buf: &mut [u8],
    spans: &mut [Span],
) -> Result<Args, EncodeError> {
    call.validate()?;
    let mut bytes = 0usize;
    let mut count = 0usize;
    pieces(call, |p| {
        bytes = bytes.saturating_add(piece_len(call, p));
        count = count.saturating_add(1);
    });
    if bytes > buf.len() || count > spans.len() {
        return Err(EncodeError::TooShort {
            bytes,
            spans: count,
        });
    }
    let mut at = 0usize;
    let mut slots = spans.iter_mut();
    pieces(call, |p| {
        let start = at;
        piece_write(call, p, &mut |b: &[u8]| {
            let end = at.saturating_add(b.len());
            if let Some(dst) = buf.get_mut(at..end) {
                dst.copy_from_slice(b);
            }
            at = end;
        });
        if let Some(slot) = slots.next() {
            *slot = Span {
                offset: start,
                len: at.saturating_sub(start),
            };
        }
    });
    let keys = call.rules.len();
    Ok(Args {
        keys,
        args: count.saturating_sub(keys),
        bytes: at,
    })
}

/// `$<len>\r\n<bytes>\r\n` through `put`, the bytes coming from `body`.
fn bulk(put: &mut dyn FnMut(&[u8]), len: usize, body: impl FnOnce(&mut dyn FnMut(&[u8]))) {
    put(b"$");
    put(decimal(len as u64, &mut [0; 20]));
    put(b"\r\n");
    body(put);
    put(b"\r\n");
}

/// A RESP command: `head` (command words) then `numkeys`, KEYS and ARGV.
fn command(call: &Call<'_>, head: &[&[u8]], out: &mut [u8]) -> Result<usize, EncodeError> {
    call.validate()?;
    let mut count = 0usize;
    pieces(call, |_| count = count.saturating_add(1));
    let items = count.saturating_add(head.len()).saturating_add(1);
    let keys = call.rules.len() as u64;
    emit(out, |put| {
        put(b"*");
        put(decimal(items as u64, &mut [0; 20]));
        put(b"\r\n");
        for word in head {
            bulk(put, word.len(), |p| p(word));
        }
        let mut tmp = [0; 20];
        let n = decimal(keys, &mut tmp);
        bulk(put, n.len(), |p| p(n));
        pieces(call, |piece| {
            bulk(put, piece_len(call, piece), |p| piece_write(call, piece, p));
        });
    })
}

/// Write `EVALSHA <sha> <numkeys> <keys…> <args…>` for `call`, RESP-encoded,
/// into `out`; returns its length. For hosts that have only a socket.
///
/// Errors: the call's own ([`EncodeError`]); [`EncodeError::TooShort`] with
/// the length needed (`out` is then untouched).
pub fn write_evalsha(call: &Call<'_>, out: &mut [u8]) -> Result<usize, EncodeError> {
    command(call, &[b"EVALSHA", SCRIPT_SHA1.as_bytes()], out)
}

/// Write `EVAL <script> <numkeys> <keys…> <args…>`: [`write_evalsha`] with
/// the script's text, for the retry after `NOSCRIPT` (it also loads the
/// script). It needs [`SCRIPT`]`.len()` + 30 bytes more.
pub fn write_eval(call: &Call<'_>, out: &mut [u8]) -> Result<usize, EncodeError> {
    command(call, &[b"EVAL", SCRIPT.as_bytes()], out)
}

/// Write `SCRIPT LOAD <script>`, RESP-encoded; its reply is
/// [`SCRIPT_SHA1`] (see [`super::decode_script_load`]).
///
/// Errors: [`EncodeError::TooShort`] with the length needed.
pub fn write_script_load(out: &mut [u8]) -> Result<usize, EncodeError> {
    emit(out, |put| {
        put(b"*3\r\n");
        bulk(put, 6, |p| p(b"SCRIPT"));
        bulk(put, 4, |p| p(b"LOAD"));
        bulk(put, SCRIPT.len(), |p| p(SCRIPT.as_bytes()));
    })
}
