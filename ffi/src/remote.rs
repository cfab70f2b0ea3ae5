//! The Redis mode: one limit across hosts, the state in Redis. The library
//! does no I/O: it prepares each call, writes it for the host to send, and
//! reads the reply the host received.

use std::ffi::c_char;

use ratecard_core::remote::{
    self, Clock, EncodeError, ReplyError, ServerError, ShapeError, Span, SCRIPT, SCRIPT_SHA1,
};
use ratecard_core::{Nanos, Outcome, Pending, Prepared, MAX_RULES, PENDING_BYTES};

use crate::boundary::{
    boundary, bytes_mut, check_status, ratecard_status, read_in, write, RATECARD_BUFFER_TOO_SHORT,
    RATECARD_INVALID_ARGUMENT, RATECARD_INVALID_CALL, RATECARD_OK, RATECARD_REMOTE_BAD_REPLY,
    RATECARD_REMOTE_INCOMPLETE, RATECARD_REMOTE_SERVER_ERROR,
};
use crate::limiter::ratecard_limiter;
use crate::request::{ratecard_decision, ratecard_request, request_of};

/// Bytes of a ratecard_remote_call.
pub const RATECARD_REMOTE_CALL_BYTES: usize = 1152;
const _: () = assert!(RATECARD_REMOTE_CALL_BYTES == PENDING_BYTES);

/// ratecard_remote_prepare() flags: decide without charging anything.
pub const RATECARD_REMOTE_PEEK: u32 = 1;
/// ratecard_remote_prepare() flags: never answer from the cache of Redis
/// denials (every limited request makes a round trip).
pub const RATECARD_REMOTE_EXACT: u32 = 2;

/// ratecard_remote_write_command() forms: `EVALSHA` of the loaded script.
pub const RATECARD_REMOTE_EVALSHA: u32 = 0;
/// ratecard_remote_write_command() forms: `EVAL` with the script's text (after a
/// NOSCRIPT error: it loads the script too).
pub const RATECARD_REMOTE_EVAL: u32 = 1;

/// ratecard_remote_count() events: a round trip failed (timeout, refused
/// connection, a bad reply the library did not see).
pub const RATECARD_REMOTE_EVENT_ERROR: u32 = 1;
/// ratecard_remote_count() events: the host's fail-open or fail-closed
/// policy answered because Redis could not.
pub const RATECARD_REMOTE_EVENT_FALLBACK: u32 = 2;

/// ratecard_remote_reply.error: none.
pub const RATECARD_REDIS_OK: u32 = 0;
/// The script is not loaded (a restart, a failover, SCRIPT FLUSH): send
/// the same call once as RATECARD_REMOTE_EVAL.
pub const RATECARD_REDIS_NOSCRIPT: u32 = 1;
/// MOVED: the slot (`slot`) lives at `addr` now.
pub const RATECARD_REDIS_MOVED: u32 = 2;
/// ASK: send ASKING, then the call, to `addr`, once.
pub const RATECARD_REDIS_ASK: u32 = 3;
/// TRYAGAIN, CLUSTERDOWN, LOADING or BUSY: transient; retry later.
pub const RATECARD_REDIS_TRY_LATER: u32 = 4;
/// WRONGTYPE: a key holds another type (not the script's).
pub const RATECARD_REDIS_WRONGTYPE: u32 = 5;
/// The script refused a key's stored value, its arguments or the clock.
pub const RATECARD_REDIS_SCRIPT_ERROR: u32 = 6;
/// Any other error (the text is at `addr`).
pub const RATECARD_REDIS_OTHER: u32 = 7;

/// One call through Redis, prepared by ratecard_remote_prepare() and
/// passed back to the other ratecard_remote_* calls. Plain bytes: keep it
/// anywhere (the stack, a pool, Go memory), at any alignment.
#[repr(C)]
pub struct ratecard_remote_call {
    /// Opaque.
    pub bytes: [u8; RATECARD_REMOTE_CALL_BYTES],
}

/// The clock a call uses: NULL (no struct) for the Redis server's TIME,
/// the one clock of every gateway; else the gateway's wall clock since the
/// Unix epoch, for services that refuse TIME in scripts (gateways whose
/// clocks differ by d then admit up to about d/T more per rule).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ratecard_remote_clock {
    /// Whole seconds since the epoch (at most 4e9).
    pub secs: u64,
    /// Nanoseconds within the second (below 1e9).
    pub nanos: u32,
}

/// Where ratecard_remote_write_args() put one byte string.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct ratecard_span {
    /// Offset of its first byte in the buffer.
    pub offset: usize,
    /// Its length (0 for an empty string).
    pub len: usize,
}

/// What ratecard_remote_write_args() wrote (or, on RATECARD_BUFFER_TOO_SHORT,
/// needs).
#[repr(C)]
pub struct ratecard_remote_args {
    /// Spans 0..keys are the script's KEYS.
    pub keys: usize,
    /// Spans keys..keys+args are its ARGV.
    pub args: usize,
    /// Bytes used (or needed) in the buffer.
    pub bytes: usize,
    /// Spans used (or needed).
    pub spans: usize,
}

/// What ratecard_remote_finish() read.
#[repr(C)]
pub struct ratecard_remote_reply {
    /// Bytes of the input the reply took (0 for bytes that are not RESP:
    /// close the connection).
    pub consumed: usize,
    /// RATECARD_REDIS_*: the server's error, on RATECARD_REMOTE_SERVER_ERROR.
    pub error: u32,
    /// The Cluster slot of MOVED and ASK.
    pub slot: u32,
    /// Offset in the reply of MOVED's and ASK's `host:port`, or of an other
    /// error's text.
    pub addr_offset: usize,
    /// Its length.
    pub addr_len: usize,
}

/// The prepared call in `call`, checked.
///
/// # Safety
/// `call` must point to a readable ratecard_remote_call.
unsafe fn pending_of(
    l: &ratecard_limiter,
    call: *const ratecard_remote_call,
) -> Result<Pending, ratecard_status> {
    // SAFETY: readable (the caller's contract); plain bytes, any alignment.
    let c = unsafe { read_in(call as *const [u8; RATECARD_REMOTE_CALL_BYTES]) };
    l.get().pending_from_bytes(&c).ok_or(RATECARD_INVALID_CALL)
}

/// Deliver a decision through `out`.
///
/// # Safety
/// `out` must be valid for a write of a ratecard_decision.
unsafe fn decided(d: &ratecard_core::Decision, out: *mut ratecard_decision) -> ratecard_status {
    // SAFETY: forwarded.
    unsafe { write(out, ratecard_decision::from_core(d)) };
    RATECARD_OK
}

/// The script call's clock.
///
/// # Safety
/// A non-NULL `clock` must point to a readable ratecard_remote_clock.
unsafe fn clock_of(clock: *const ratecard_remote_clock) -> Clock {
    if clock.is_null() {
        return Clock::Server;
    }
    // SAFETY: non-NULL and readable (the caller's contract).
    let c = unsafe { read_in(clock) };
    Clock::Gateway {
        secs: c.secs,
        nanos: c.nanos,
    }
}

fn encode_status(e: EncodeError) -> ratecard_status {
    match e {
        EncodeError::TooShort { .. } => RATECARD_BUFFER_TOO_SHORT,
        _ => RATECARD_INVALID_ARGUMENT,
    }
}

/// Classify `request` at `now_ns` (this host's CLOCK_MONOTONIC) for a
/// decision through Redis. Exempt and unmatched requests, and subjects this
/// host saw denied that are still limited (unless RATECARD_REMOTE_EXACT),
/// are decided at once: `*round_trip` is false and `*out` holds the
/// decision. Otherwise `*round_trip` is true and `*call` holds the call:
/// send it (ratecard_remote_write_args() or ratecard_remote_write_command()), then
/// ratecard_remote_finish(), or ratecard_remote_fallback() when Redis
/// cannot answer. `flags`: RATECARD_REMOTE_PEEK, RATECARD_REMOTE_EXACT.
///
/// Every host of one Redis must share the table's seed and rules.
///
/// Returns RATECARD_OK; or RATECARD_NULL_ARGUMENT, RATECARD_INVALID_ARGUMENT
/// (an unknown flag), the request errors of ratecard_check(), and
/// RATECARD_MIXED_SUBJECTS.
#[no_mangle]
pub unsafe extern "C" fn ratecard_remote_prepare(
    limiter: *const ratecard_limiter,
    request: *const ratecard_request,
    now_ns: u64,
    flags: u32,
    call: *mut ratecard_remote_call,
    out: *mut ratecard_decision,
    round_trip: *mut bool,
) -> ratecard_status {
    boundary! {
        handle: limiter;
        nonnull: request, call, out, round_trip;
        {
            if flags & !(RATECARD_REMOTE_PEEK | RATECARD_REMOTE_EXACT) != 0 {
                return RATECARD_INVALID_ARGUMENT;
            }
            let peek = flags & RATECARD_REMOTE_PEEK != 0;
            // SAFETY: readable (the caller's contract), any alignment.
            let r = unsafe { read_in(request) };
            // SAFETY: the request's byte strings (the caller's contract).
            let req = match unsafe { request_of(&r) } {
                Ok(req) => req,
                Err(status) => {
                    if !peek {
                        limiter.get().count_error(Nanos(now_ns));
                    }
                    return status;
                }
            };
            let mut pending = Pending::new();
            let l = limiter.get();
            let prepared = if flags & RATECARD_REMOTE_EXACT != 0 {
                l.prepare_exact(&req, Nanos(now_ns), peek, &mut pending)
            } else {
                l.prepare(&req, Nanos(now_ns), peek, &mut pending)
            };
            match prepared {
                Ok(Prepared::Decided(d)) => {
                    // SAFETY: neither is NULL.
                    unsafe {
                        write(round_trip, false);
                        decided(&d, out)
                    }
                }
                Ok(Prepared::Remote) => {
                    let mut b = [0u8; RATECARD_REMOTE_CALL_BYTES];
                    pending.to_bytes(&mut b);
                    // SAFETY: neither is NULL; plain bytes, any alignment.
                    unsafe {
                        write(call as *mut [u8; RATECARD_REMOTE_CALL_BYTES], b);
                        write(round_trip, true);
                    }
                    RATECARD_OK
                }
                Err(e) => check_status(e),
            }
        }
    }
}

/// Write the call's KEYS and ARGV into `buf` as byte strings, each at a
/// span of `spans`, for a client library (hiredis' redisCommandArgv, a Go
/// client's EvalSha): send `EVALSHA sha numkeys KEYS... ARGV...` with
/// ratecard_remote_script_sha1() and `numkeys` = `out->keys`. Keys begin
/// with `prefix` (no `{` or `}`; e.g. "rc:"). `clock` NULL: the server's
/// TIME.
///
/// Returns RATECARD_OK and fills `*out`; RATECARD_BUFFER_TOO_SHORT with
/// `*out` holding the bytes and spans needed, nothing written; or
/// RATECARD_NULL_ARGUMENT, RATECARD_INVALID_ARGUMENT (a bad prefix or
/// clock), RATECARD_INVALID_CALL.
#[no_mangle]
pub unsafe extern "C" fn ratecard_remote_write_args(
    limiter: *const ratecard_limiter,
    call: *const ratecard_remote_call,
    prefix: *const u8,
    prefix_len: usize,
    clock: *const ratecard_remote_clock,
    buf: *mut u8,
    buf_len: usize,
    spans: *mut ratecard_span,
    spans_len: usize,
    out: *mut ratecard_remote_args,
) -> ratecard_status {
    boundary! {
        handle: limiter;
        nonnull: call, out;
        bytes: prefix / prefix_len;
        {
            // SAFETY: a readable call (the caller's contract).
            let pending = match unsafe { pending_of(limiter, call) } {
                Ok(p) => p,
                Err(s) => return s,
            };
            // SAFETY: the caller's contract for `clock`.
            let c = limiter.get().remote_call(&pending, prefix, unsafe { clock_of(clock) });
            // SAFETY: the caller's contract for `buf`.
            let Some(dst) = (unsafe { bytes_mut(buf, buf_len) }) else {
                return RATECARD_INVALID_ARGUMENT;
            };
            if spans.is_null() && spans_len > 0 {
                return RATECARD_INVALID_ARGUMENT;
            }
            // Spans are written by the library at any alignment: built here,
            // then copied out one by one.
            let mut local = [Span::default(); 2 * MAX_RULES + 8];
            let room = spans_len.min(local.len());
            match remote::write_args(&c, dst, local.get_mut(..room).unwrap_or(&mut [])) {
                Ok(a) => {
                    for (i, s) in local.iter().take(a.keys.saturating_add(a.args)).enumerate() {
                        // SAFETY: `spans_len` > i writable spans (the caller's
                        // contract); `i` is below the count that fit.
                        unsafe {
                            spans.wrapping_add(i).write_unaligned(ratecard_span {
                                offset: s.offset,
                                len: s.len,
                            })
                        };
                    }
                    let args = ratecard_remote_args {
                        keys: a.keys,
                        args: a.args,
                        bytes: a.bytes,
                        spans: a.keys.saturating_add(a.args),
                    };
                    // SAFETY: `out` is not NULL.
                    unsafe { write(out, args) };
                    RATECARD_OK
                }
                Err(EncodeError::TooShort { bytes, spans }) => {
                    let need = ratecard_remote_args {
                        keys: pending.rules(),
                        args: spans.saturating_sub(pending.rules()),
                        bytes,
                        spans,
                    };
                    // SAFETY: `out` is not NULL.
                    unsafe { write(out, need) };
                    RATECARD_BUFFER_TOO_SHORT
                }
                Err(e) => encode_status(e),
            }
        }
    }
}

/// Write the whole call as a RESP command into `buf`, for a host that has
/// only a socket (nginx): `form` RATECARD_REMOTE_EVALSHA, or
/// RATECARD_REMOTE_EVAL after a NOSCRIPT error. Same `prefix` and `clock`
/// as ratecard_remote_write_args().
///
/// Returns RATECARD_OK with `*out_len` = bytes written;
/// RATECARD_BUFFER_TOO_SHORT with `*out_len` = bytes needed, nothing
/// written; or RATECARD_NULL_ARGUMENT, RATECARD_INVALID_ARGUMENT,
/// RATECARD_INVALID_CALL.
#[no_mangle]
pub unsafe extern "C" fn ratecard_remote_write_command(
    limiter: *const ratecard_limiter,
    call: *const ratecard_remote_call,
    prefix: *const u8,
    prefix_len: usize,
    clock: *const ratecard_remote_clock,
    form: u32,
    buf: *mut u8,
    buf_len: usize,
    out_len: *mut usize,
) -> ratecard_status {
    boundary! {
        handle: limiter;
        nonnull: call, out_len;
        bytes: prefix / prefix_len;
        {
            // SAFETY: a readable call (the caller's contract).
            let pending = match unsafe { pending_of(limiter, call) } {
                Ok(p) => p,
                Err(s) => return s,
            };
            // SAFETY: the caller's contract for `clock`.
            let c = limiter.get().remote_call(&pending, prefix, unsafe { clock_of(clock) });
            // SAFETY: the caller's contract for `buf`.
            let Some(dst) = (unsafe { bytes_mut(buf, buf_len) }) else {
                return RATECARD_INVALID_ARGUMENT;
            };
            let written = match form {
                RATECARD_REMOTE_EVALSHA => remote::write_evalsha(&c, dst),
                RATECARD_REMOTE_EVAL => remote::write_eval(&c, dst),
                _ => return RATECARD_INVALID_ARGUMENT,
            };
            let (status, n) = match written {
                Ok(n) => (RATECARD_OK, n),
                Err(EncodeError::TooShort { bytes, .. }) => (RATECARD_BUFFER_TOO_SHORT, bytes),
                Err(e) => return encode_status(e),
            };
            // SAFETY: `out_len` is not NULL.
            unsafe { write(out_len, n) };
            status
        }
    }
}

/// Read Redis's reply to the call (`reply`, `reply_len` bytes received so
/// far) and write the decision to `*out`: the binding rule, fields and
/// counters exactly as ratecard_check() gives them. A denial is cached for
/// the subject (see ratecard_remote_prepare()).
///
/// Returns RATECARD_OK with `*out` and `info->consumed`;
/// RATECARD_REMOTE_INCOMPLETE (read more, call again with all bytes);
/// RATECARD_REMOTE_SERVER_ERROR with `info->error` (and for MOVED and ASK
/// the slot and address, as offsets into `reply`) and `info->consumed`;
/// RATECARD_REMOTE_BAD_REPLY with `info->consumed` (0: the bytes are not
/// RESP, close the connection); or RATECARD_NULL_ARGUMENT,
/// RATECARD_INVALID_ARGUMENT, RATECARD_INVALID_CALL. Errors are counted as
/// failed round trips.
#[no_mangle]
pub unsafe extern "C" fn ratecard_remote_finish(
    limiter: *const ratecard_limiter,
    call: *const ratecard_remote_call,
    reply: *const u8,
    reply_len: usize,
    out: *mut ratecard_decision,
    info: *mut ratecard_remote_reply,
) -> ratecard_status {
    boundary! {
        handle: limiter;
        nonnull: call, out, info;
        bytes: reply / reply_len;
        {
            let reply: &[u8] = reply;
            // SAFETY: a readable call (the caller's contract).
            let pending = match unsafe { pending_of(limiter, call) } {
                Ok(p) => p,
                Err(s) => return s,
            };
            let mut r = ratecard_remote_reply {
                consumed: 0,
                error: RATECARD_REDIS_OK,
                slot: 0,
                addr_offset: 0,
                addr_len: 0,
            };
            let status = match limiter.get().finish_reply(&pending, reply) {
                Ok((d, consumed)) => {
                    r.consumed = consumed;
                    // SAFETY: `out` is not NULL.
                    unsafe { decided(&d, out) }
                }
                Err(ReplyError::Incomplete) => RATECARD_REMOTE_INCOMPLETE,
                Err(ReplyError::Server { error, consumed }) => {
                    r.consumed = consumed;
                    let (kind, slot, text) = server_error(&error);
                    r.error = kind;
                    r.slot = slot;
                    if let Some(t) = text {
                        r.addr_offset = (t.as_ptr() as usize).wrapping_sub(reply.as_ptr() as usize);
                        r.addr_len = t.len();
                    }
                    RATECARD_REMOTE_SERVER_ERROR
                }
                Err(ReplyError::Shape { consumed, .. }) => {
                    r.consumed = consumed;
                    RATECARD_REMOTE_BAD_REPLY
                }
                Err(ReplyError::Protocol) => RATECARD_REMOTE_BAD_REPLY,
            };
            // SAFETY: `info` is not NULL.
            unsafe { write(info, r) };
            status
        }
    }
}

/// The RATECARD_REDIS_* kind, slot and text of a server error.
fn server_error<'r>(e: &ServerError<'r>) -> (u32, u32, Option<&'r [u8]>) {
    match *e {
        ServerError::NoScript => (RATECARD_REDIS_NOSCRIPT, 0, None),
        ServerError::Moved { slot, addr } => (RATECARD_REDIS_MOVED, u32::from(slot), Some(addr)),
        ServerError::Ask { slot, addr } => (RATECARD_REDIS_ASK, u32::from(slot), Some(addr)),
        ServerError::TryAgain
        | ServerError::ClusterDown
        | ServerError::Loading
        | ServerError::Busy => (RATECARD_REDIS_TRY_LATER, 0, None),
        ServerError::WrongType => (RATECARD_REDIS_WRONGTYPE, 0, None),
        ServerError::BadState { .. } | ServerError::BadArgument { .. } | ServerError::BadClock => {
            (RATECARD_REDIS_SCRIPT_ERROR, 0, None)
        }
        ServerError::Other { message } => (RATECARD_REDIS_OTHER, 0, Some(message)),
    }
}

/// ratecard_remote_finish() for a client library that already parsed the
/// reply into its integers (`values`, `values_len` of them: the script
/// replies 2 + 4 per rule).
///
/// Returns RATECARD_OK and fills `*out`; RATECARD_REMOTE_BAD_REPLY (counted
/// as a failed round trip); or RATECARD_NULL_ARGUMENT,
/// RATECARD_INVALID_ARGUMENT, RATECARD_INVALID_CALL.
#[no_mangle]
pub unsafe extern "C" fn ratecard_remote_finish_ints(
    limiter: *const ratecard_limiter,
    call: *const ratecard_remote_call,
    values: *const i64,
    values_len: usize,
    out: *mut ratecard_decision,
) -> ratecard_status {
    boundary! {
        handle: limiter;
        nonnull: call, out;
        {
            // SAFETY: a readable call (the caller's contract).
            let pending = match unsafe { pending_of(limiter, call) } {
                Ok(p) => p,
                Err(s) => return s,
            };
            if values.is_null() && values_len > 0 {
                return RATECARD_INVALID_ARGUMENT;
            }
            let mut ints = [0i64; 2 + 4 * MAX_RULES];
            if values_len > ints.len() {
                limiter.get().count_remote_error(Nanos(0));
                return RATECARD_REMOTE_BAD_REPLY;
            }
            for (i, v) in ints.iter_mut().enumerate().take(values_len) {
                // SAFETY: `values_len` readable integers (the caller's
                // contract), read at any alignment.
                *v = unsafe { values.wrapping_add(i).read_unaligned() };
            }
            let mut outcomes = [Outcome::default(); MAX_RULES];
            let n = pending.rules();
            let slots = outcomes.get_mut(..n).unwrap_or(&mut []);
            match remote::decode_ints(ints.get(..values_len).unwrap_or(&[]), slots) {
                Ok(_) => {
                    let d = limiter.get().finish(&pending, slots);
                    // SAFETY: `out` is not NULL.
                    unsafe { decided(&d, out) }
                }
                Err(ShapeError::Type | ShapeError::Count { .. } | ShapeError::Format { .. } | ShapeError::Element { .. }) => {
                    limiter.get().count_remote_error(Nanos(0));
                    RATECARD_REMOTE_BAD_REPLY
                }
            }
        }
    }
}

/// When Redis cannot answer and the host's policy is to fall back to this
/// host's table: the call's rules charged locally (per-host limits), the
/// decision written to `*out`. Counted as a fallback.
///
/// Returns RATECARD_OK; or RATECARD_NULL_ARGUMENT, RATECARD_INVALID_ARGUMENT,
/// RATECARD_INVALID_CALL.
#[no_mangle]
pub unsafe extern "C" fn ratecard_remote_fallback(
    limiter: *const ratecard_limiter,
    call: *const ratecard_remote_call,
    out: *mut ratecard_decision,
) -> ratecard_status {
    boundary! {
        handle: limiter;
        nonnull: call, out;
        {
            // SAFETY: a readable call (the caller's contract).
            let pending = match unsafe { pending_of(limiter, call) } {
                Ok(p) => p,
                Err(s) => return s,
            };
            let d = limiter.get().fallback(&pending);
            // SAFETY: `out` is not NULL.
            unsafe { decided(&d, out) }
        }
    }
}

/// Count an event of the Redis mode the library did not see:
/// RATECARD_REMOTE_EVENT_ERROR (a timeout, a refused connection) or
/// RATECARD_REMOTE_EVENT_FALLBACK (the fail-open or fail-closed policy
/// answered). Counters appear in ratecard_stats and the metrics.
///
/// Returns RATECARD_OK, RATECARD_NULL_ARGUMENT, RATECARD_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn ratecard_remote_count(
    limiter: *const ratecard_limiter,
    event: u32,
    now_ns: u64,
) -> ratecard_status {
    boundary! {
        handle: limiter;
        {
            match event {
                RATECARD_REMOTE_EVENT_ERROR => limiter.get().count_remote_error(Nanos(now_ns)),
                RATECARD_REMOTE_EVENT_FALLBACK => {
                    limiter.get().count_remote_fallback(Nanos(now_ns))
                }
                _ => return RATECARD_INVALID_ARGUMENT,
            }
            RATECARD_OK
        }
    }
}

/// Clear this host's cached denials of the call's keys (after deleting
/// them in Redis, an administrative reset: other hosts keep their cached
/// denials until they lapse, at most the rule's period). `*cleared`: the
/// entries cleared.
///
/// Returns RATECARD_OK; or RATECARD_NULL_ARGUMENT, RATECARD_INVALID_ARGUMENT,
/// RATECARD_INVALID_CALL.
#[no_mangle]
pub unsafe extern "C" fn ratecard_remote_forget_cached(
    limiter: *const ratecard_limiter,
    call: *const ratecard_remote_call,
    cleared: *mut u32,
) -> ratecard_status {
    boundary! {
        handle: limiter;
        nonnull: call, cleared;
        {
            // SAFETY: a readable call (the caller's contract).
            let pending = match unsafe { pending_of(limiter, call) } {
                Ok(p) => p,
                Err(s) => return s,
            };
            let n = limiter.get().forget_cached(&pending);
            // SAFETY: `cleared` is not NULL.
            unsafe { write(cleared, n) };
            RATECARD_OK
        }
    }
}

/// The charge script's source (Lua, not NUL-terminated), `*len` bytes:
/// what SCRIPT LOAD and EVAL take. Static.
///
/// Returns NULL only when `len` is NULL.
#[no_mangle]
pub unsafe extern "C" fn ratecard_remote_script(len: *mut usize) -> *const u8 {
    boundary! {
        {
            if len.is_null() {
                return std::ptr::null();
            }
            // SAFETY: `len` is not NULL.
            unsafe { write(len, SCRIPT.len()) };
            SCRIPT.as_ptr()
        }
    }
}

/// The SHA-1 of the charge script, 40 lowercase hex digits, NUL-terminated:
/// the name EVALSHA takes. Static; never NULL.
#[no_mangle]
pub extern "C" fn ratecard_remote_script_sha1() -> *const c_char {
    boundary! {
        {
            SHA1_C.as_ptr().cast()
        }
    }
}

#[allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "const evaluation: out of bounds fails the build"
)]
const SHA1_C: [u8; 41] = {
    let mut b = [0u8; 41];
    let s = SCRIPT_SHA1.as_bytes();
    let mut i = 0;
    while i < 40 && i < s.len() {
        b[i] = s[i];
        i += 1;
    }
    b
};
const _: () = assert!(SCRIPT_SHA1.len() == 40);
