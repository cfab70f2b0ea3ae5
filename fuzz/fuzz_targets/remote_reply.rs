//! The Redis reply decoder on any bytes a hostile or broken server could
//! send: the first input byte picks the call's rule count (0..=7), the rest
//! is the reply.
//!
//! - No panic, no read past the input (AddressSanitizer).
//! - `Ok` fills exactly one outcome per rule with consistent values and
//!   consumes at most the input; any error leaves the outcomes untouched.
//! - Incremental equals whole: every prefix decodes to `Incomplete` or to
//!   the whole input's result, and once a prefix stops being `Incomplete`
//!   every longer one agrees with it.
//! - When an independent parser reads an array of integers at the start,
//!   the RESP decoder and `decode_ints` give the same outcomes or the same
//!   shape error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ratecard::remote::{decode_ints, decode_reply, Decoded, ReplyError};
use ratecard::Outcome;

const SENTINEL: Outcome = Outcome {
    allowed: true,
    never_fits: true,
    state: 0xDEAD,
    remaining: 0xDEAD,
    reset: 0xDEAD,
    retry_after: 0xDEAD,
};

type Result<'a> = core::result::Result<(Decoded, Vec<Outcome>), ReplyError<'a>>;

fn decode(bytes: &[u8], rules: usize) -> Result<'_> {
    let mut out = vec![SENTINEL; rules];
    match decode_reply(bytes, &mut out) {
        Ok(d) => {
            assert!(d.consumed >= 1 && d.consumed <= bytes.len());
            for o in &out {
                assert_ne!(*o, SENTINEL, "every outcome written");
                assert_eq!(o.state, 0);
                assert!(!(o.allowed && o.never_fits));
                assert_eq!(o.retry_after > 0, !o.allowed && !o.never_fits);
                assert!(!d.committed || o.allowed);
            }
            Ok((d, out))
        }
        Err(e) => {
            assert!(out.iter().all(|o| *o == SENTINEL), "untouched on {e:?}");
            match e {
                ReplyError::Server { consumed, .. } | ReplyError::Shape { consumed, .. } => {
                    assert!(consumed >= 1 && consumed <= bytes.len());
                }
                ReplyError::Incomplete | ReplyError::Protocol => {}
            }
            Err(e)
        }
    }
}

/// `*<n>\r\n` then n `:<i64>\r\n`, strictly; `None` for anything else.
fn int_array(b: &[u8]) -> Option<Vec<i64>> {
    fn line(b: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let rest = b.get(at..)?;
        let end = rest.iter().position(|&c| c == b'\r' || c == b'\n')?;
        (rest.get(end..end + 2)? == b"\r\n").then(|| (&rest[..end], at + end + 2))
    }
    fn int(s: &[u8]) -> Option<i64> {
        let digits = s.strip_prefix(b"-").unwrap_or(s);
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(s).ok()?.parse().ok()
    }
    if *b.first()? != b'*' {
        return None;
    }
    let (head, mut at) = line(b, 1)?;
    let n = usize::try_from(int(head)?).ok()?;
    let mut out = Vec::new();
    for _ in 0..n {
        if *b.get(at)? != b':' {
            return None;
        }
        let (l, next) = line(b, at + 1)?;
        out.push(int(l)?);
        at = next;
    }
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, bytes)) = data.split_first() else {
        return;
    };
    if bytes.len() > 4096 {
        return;
    }
    let rules = usize::from(first % 8);
    let whole = decode(bytes, rules);

    // Every cut point when short, a sample of them when long.
    let step = (bytes.len() / 256).max(1);
    let mut settled: Option<Result<'_>> = None;
    for cut in (0..bytes.len()).step_by(step).chain([bytes.len()]) {
        let part = decode(&bytes[..cut], rules);
        if let Some(s) = &settled {
            assert_eq!(&part, s, "prefix {cut} after the reply settled");
        } else if part != Err(ReplyError::Incomplete) {
            assert_eq!(part, whole, "prefix {cut}");
            settled = Some(part);
        }
    }
    if let Ok((d, _)) = &whole {
        // The shortest prefix that decodes is the reply itself.
        assert_eq!(
            decode(&bytes[..d.consumed - 1], rules),
            Err(ReplyError::Incomplete)
        );
    }

    if let Some(values) = int_array(bytes) {
        let mut out = vec![SENTINEL; rules];
        let ints = decode_ints(&values, &mut out);
        match (&whole, ints) {
            (Ok((d, got)), Ok(committed)) => {
                assert_eq!(d.committed, committed);
                assert_eq!(*got, out);
            }
            (Err(ReplyError::Shape { error, .. }), Err(e)) => assert_eq!(*error, e),
            (w, i) => panic!("RESP {w:?} against integers {i:?}"),
        }
    }
});
