//! Unit tests of the wire protocol without a server; `core/tests/redis_script.rs`
//! runs the script itself.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic,
    reason = "tests"
)]

use std::vec::Vec;

use super::*;
use crate::quota::{Algorithm, Outcome, Quota};
use crate::time::Nanos;

fn gcra(tag: u64, quota: Quota) -> RemoteRule {
    RemoteRule {
        tag,
        algorithm: Algorithm::Gcra,
        quota,
    }
}

fn window(tag: u64, quota: Quota) -> RemoteRule {
    RemoteRule {
        tag,
        algorithm: Algorithm::FixedWindow,
        quota,
    }
}

fn call<'a>(rules: &'a [RemoteRule], clock: Clock) -> Call<'a> {
    Call {
        prefix: b"rc:",
        hashtag: 7,
        rules,
        cost: 1,
        peek: false,
        clock,
    }
}

const BLANK: Outcome = Outcome {
    allowed: false,
    never_fits: false,
    state: 99,
    remaining: 99,
    reset: 99,
    retry_after: 99,
};

#[test]
fn script_sha1_is_the_sha1_of_the_script() {
    let sha = std::format!("{}", sha1_smol::Sha1::from(SCRIPT.as_bytes()).digest());
    assert_eq!(SCRIPT_SHA1, sha);
}

#[test]
fn hash_slot_is_crc16_xmodem_of_the_hash_tag() {
    // The Redis Cluster specification's check value: CRC16("123456789") = 0x31C3.
    assert_eq!(hash_slot(b"123456789"), 0x31C3 & 0x3FFF);
    // Its hash tag rules: the first `{`, the first `}` after it, not empty.
    assert_eq!(hash_slot(b"{user1000}.following"), hash_slot(b"user1000"));
    assert_eq!(hash_slot(b"foo{bar}{zap}"), hash_slot(b"bar"));
    assert_eq!(hash_slot(b"foo{{bar}}zap"), hash_slot(b"{bar"));
    assert_ne!(hash_slot(b"foo{}{bar}"), hash_slot(b"bar"));
    assert_eq!(hash_slot(b"foo{}{bar}"), hash_slot(b"foo{}{bar}"));
    assert!(hash_slot(&[0xFF; 300]) < 16384);
    assert_eq!(hash_slot(b""), 0);
}

/// Read a key back: the prefix, then the two numbers.
fn parse_key(key: &[u8], prefix: &[u8]) -> (u64, u64) {
    let rest = key.strip_prefix(prefix).unwrap();
    let rest = rest.strip_prefix(b"{").unwrap();
    let close = rest.iter().position(|&b| b == b'}').unwrap();
    let num = |s: &[u8]| {
        assert!(!s.is_empty() && s.len() <= 11);
        assert!(s.len() == 1 || s[0] != b'0', "no leading zero");
        s.iter().fold(0u128, |acc, &c| {
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'A'..=b'Z' => c - b'A' + 10,
                b'a'..=b'z' => c - b'a' + 36,
                b'-' => 62,
                b'_' => 63,
                _ => panic!("digit {c}"),
            };
            acc * 64 + d as u128
        })
    };
    let h = num(&rest[..close]);
    let t = num(&rest[close + 1..]);
    (u64::try_from(h).unwrap(), u64::try_from(t).unwrap())
}

#[test]
fn keys_are_prefix_hashtag_in_braces_then_tag_and_read_back() {
    let mut out = [0u8; 64];
    let n = write_key(b"rc:", 0, 0, &mut out).unwrap();
    assert_eq!(&out[..n], b"rc:{0}0");
    let n = write_key(b"", 64, 63, &mut out).unwrap();
    assert_eq!(&out[..n], b"{10}_");
    let n = write_key(b"p", u64::MAX, u64::MAX, &mut out).unwrap();
    assert_eq!(&out[..n], b"p{F__________}F__________");
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..2000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let (h, t) = (x, x.rotate_left(29) >> (x % 64));
        let n = write_key(b"rc:", h, t, &mut out).unwrap();
        let key = &out[..n];
        assert_eq!(parse_key(key, b"rc:"), (h, t));
        assert_eq!(key.iter().filter(|&&b| b == b'{' || b == b'}').count(), 2);
        let mut tag = [0u8; 11];
        let tag = super::key::base64(h, &mut tag);
        assert_eq!(hash_slot(key), hash_slot(tag), "the slot is the hashtag's");
    }
}

#[test]
fn write_key_reports_the_length_needed_and_refuses_braces_in_the_prefix() {
    let mut out = [b'x'; 8];
    assert_eq!(
        write_key(b"rc:", 1, 1, &mut out[..6]),
        Err(EncodeError::TooShort { bytes: 7, spans: 0 })
    );
    assert_eq!(out, [b'x'; 8], "untouched");
    assert_eq!(write_key(b"rc:", 1, 1, &mut out), Ok(7));
    assert_eq!(write_key(b"a{", 1, 1, &mut out), Err(EncodeError::Prefix));
    assert_eq!(write_key(b"}", 1, 1, &mut out), Err(EncodeError::Prefix));
}

fn strings(buf: &[u8], spans: &[Span]) -> Vec<Vec<u8>> {
    spans
        .iter()
        .map(|s| buf[s.offset..s.offset + s.len].to_vec())
        .collect()
}

#[test]
fn args_follow_the_contract_for_gcra_and_window_rules() {
    let rules = [
        gcra(5, Quota::per_secs(5, 10)),
        window(6, Quota::per_hour(3)),
        gcra(7, Quota::per_secs(3, 10).with_burst(1)),
    ];
    let mut c = call(
        &rules,
        Clock::Gateway {
            secs: 1_700_000_000,
            nanos: 5,
        },
    );
    c.cost = 2;
    c.peek = true;
    let mut buf = [0u8; 512];
    let mut spans = [Span::default(); 16];
    let args = write_args(&c, &mut buf, &mut spans).unwrap();
    assert_eq!((args.keys, args.args), (3, 13));
    let got = strings(&buf, &spans[..16]);
    let want: Vec<&[u8]> = [
        &b"rc:{7}5"[..],
        b"rc:{7}6",
        b"rc:{7}7",
        b"1",
        b"2",
        b"g",
        b"2000000000",
        b"5",
        b"w",
        b"3",
        b"3600000000000",
        b"g",
        b"3333333334",
        b"1",
        b"1700000000",
        b"5",
    ]
    .to_vec();
    assert_eq!(got, want);
    assert_eq!(args.bytes, want.iter().map(|w| w.len()).sum::<usize>());

    // The server's clock: no clock arguments at all.
    let c = call(&rules[..1], Clock::Server);
    let args = write_args(&c, &mut buf, &mut spans).unwrap();
    let got = strings(&buf, &spans[..args.keys + args.args]);
    assert_eq!(got[1..], [&b"0"[..], b"1", b"g", b"2000000000", b"5"]);
}

#[test]
fn short_outputs_report_what_is_needed_and_stay_untouched() {
    let rules = [
        gcra(1, Quota::per_secs(5, 10)),
        gcra(2, Quota::per_hour(100)),
    ];
    let c = call(&rules, Clock::Server);
    let mut buf = [0u8; 512];
    let mut spans = [Span::default(); 12];
    let full = write_args(&c, &mut buf, &mut spans).unwrap();
    let mut small = [0xAAu8; 16384];
    let mut few = [Span { offset: 9, len: 9 }; 12];
    let need = Err(EncodeError::TooShort {
        bytes: full.bytes,
        spans: 10,
    });
    assert_eq!(write_args(&c, &mut small[..full.bytes - 1], &mut few), need);
    assert_eq!(write_args(&c, &mut small, &mut few[..9]), need);
    assert!(small.iter().all(|&b| b == 0xAA));
    assert!(few.iter().all(|s| *s == Span { offset: 9, len: 9 }));

    let mut cmd = [0u8; 16384];
    for write in [write_evalsha, write_eval] {
        let n = write(&c, &mut cmd).unwrap();
        assert_eq!(
            write(&c, &mut small[..n - 1]),
            Err(EncodeError::TooShort { bytes: n, spans: 0 })
        );
        assert!(small.iter().all(|&b| b == 0xAA));
    }
    let n = write_script_load(&mut cmd).unwrap();
    assert_eq!(
        write_script_load(&mut small[..n - 1]),
        Err(EncodeError::TooShort { bytes: n, spans: 0 })
    );
}

#[test]
fn the_largest_call_fits_the_documented_bound() {
    let rules = [
        gcra(u64::MAX, Quota::new(1, Nanos(MAX_SPAN_NS))),
        window(
            u64::MAX,
            Quota::new(u32::MAX, Nanos(MAX_SPAN_NS / 1000 * 1000)),
        ),
        gcra(u64::MAX, Quota::new(u32::MAX, Nanos(u64::from(u32::MAX)))),
    ];
    let mut c = call(
        &rules,
        Clock::Gateway {
            secs: MAX_CLOCK_SECS,
            nanos: 999_999_999,
        },
    );
    c.cost = u32::MAX;
    c.hashtag = u64::MAX;
    let mut buf = [0u8; 1024];
    let mut spans = [Span::default(); 16];
    let args = write_args(&c, &mut buf, &mut spans).unwrap();
    assert!(
        args.bytes <= 3 * (c.prefix.len() + 51) + 30,
        "{}",
        args.bytes
    );
    assert_eq!(args.keys + args.args, 4 * 3 + 4);
}

#[test]
fn calls_the_script_would_refuse_are_refused_before_encoding() {
    let ok = [gcra(1, Quota::per_secs(5, 10))];
    let mut buf = [0u8; 512];
    let mut spans = [Span::default(); 16];
    let mut check = |c: Call<'_>, want: EncodeError| {
        assert_eq!(write_args(&c, &mut buf, &mut spans), Err(want));
        assert_eq!(write_evalsha(&c, &mut buf), Err(want));
    };
    check(call(&[], Clock::Server), EncodeError::NoRules);
    let mut c = call(&ok, Clock::Server);
    c.cost = 0;
    check(c, EncodeError::Cost);
    let mut c = call(&ok, Clock::Server);
    c.prefix = b"x{";
    check(c, EncodeError::Prefix);
    for clock in [
        Clock::Gateway {
            secs: MAX_CLOCK_SECS + 1,
            nanos: 0,
        },
        Clock::Gateway {
            secs: 0,
            nanos: 1_000_000_000,
        },
    ] {
        check(call(&ok, clock), EncodeError::Clock);
    }
    let bad = [
        gcra(1, Quota::unlimited()),
        gcra(1, Quota::new(2, Nanos(MAX_SPAN_NS + 2))),
        window(1, Quota::new(2, Nanos(1_500))),
        window(1, Quota::new(2, Nanos(999))),
        window(1, Quota::new(2, Nanos((MAX_SPAN_NS / 1000 + 1) * 1000))),
        window(1, Quota::unlimited()),
    ];
    for rule in bad {
        let rules = [ok[0], rule];
        check(call(&rules, Clock::Server), EncodeError::Rule { index: 1 });
    }
    // The edges that are still fine.
    for rule in [
        gcra(1, Quota::new(1, Nanos(MAX_SPAN_NS))),
        window(1, Quota::new(1, Nanos(1_000))),
    ] {
        let rules = [rule];
        assert!(write_evalsha(&call(&rules, Clock::Server), &mut buf).is_ok());
    }
}

/// A RESP array of bulk strings, parsed without the module's decoder.
fn parse_command(mut b: &[u8]) -> Vec<Vec<u8>> {
    fn line<'a>(b: &mut &'a [u8]) -> &'a [u8] {
        let end = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let l = &b[..end];
        *b = &b[end + 2..];
        l
    }
    let head = line(&mut b);
    assert_eq!(head[0], b'*');
    let n: usize = std::str::from_utf8(&head[1..]).unwrap().parse().unwrap();
    let mut out = Vec::new();
    for _ in 0..n {
        let h = line(&mut b);
        assert_eq!(h[0], b'$');
        let len: usize = std::str::from_utf8(&h[1..]).unwrap().parse().unwrap();
        out.push(b[..len].to_vec());
        assert_eq!(&b[len..len + 2], b"\r\n");
        b = &b[len + 2..];
    }
    assert!(b.is_empty());
    out
}

#[test]
fn resp_commands_carry_the_same_keys_and_args() {
    let rules = [
        gcra(9, Quota::per_secs(5, 10)),
        window(10, Quota::per_hour(25)),
    ];
    let c = call(&rules, Clock::Gateway { secs: 3, nanos: 4 });
    let mut buf = [0u8; 512];
    let mut spans = [Span::default(); 12];
    let args = write_args(&c, &mut buf, &mut spans).unwrap();
    let pieces = strings(&buf, &spans[..args.keys + args.args]);

    let mut cmd = [0u8; 16384];
    let n = write_evalsha(&c, &mut cmd).unwrap();
    let words = parse_command(&cmd[..n]);
    assert_eq!(words[0], b"EVALSHA");
    assert_eq!(words[1], SCRIPT_SHA1.as_bytes());
    assert_eq!(words[2], b"2");
    assert_eq!(words[3..], pieces[..]);

    let n = write_eval(&c, &mut cmd).unwrap();
    let words = parse_command(&cmd[..n]);
    assert_eq!(words[0], b"EVAL");
    assert_eq!(words[1], SCRIPT.as_bytes());
    assert_eq!(words[3..], pieces[..]);

    let n = write_script_load(&mut cmd).unwrap();
    let words = parse_command(&cmd[..n]);
    assert_eq!(words, [&b"SCRIPT"[..], b"LOAD", SCRIPT.as_bytes()]);
}

fn ints_reply(values: &[i64]) -> Vec<u8> {
    let mut out = std::format!("*{}\r\n", values.len()).into_bytes();
    for v in values {
        out.extend_from_slice(std::format!(":{v}\r\n").as_bytes());
    }
    out
}

const TWO_RULES: [i64; 10] = [1, 0, 1, 4, 2_000_000_000, 0, 0, 0, 7_000, 3_000];

#[test]
fn a_reply_decodes_into_one_outcome_per_rule() {
    let bytes = ints_reply(&TWO_RULES);
    let mut out = [BLANK; 2];
    let d = decode_reply(&bytes, &mut out).unwrap();
    assert_eq!(
        d,
        Decoded {
            committed: false,
            consumed: bytes.len()
        }
    );
    let want = [
        Outcome {
            allowed: true,
            never_fits: false,
            state: 0,
            remaining: 4,
            reset: 2_000_000_000,
            retry_after: 0,
        },
        Outcome {
            allowed: false,
            never_fits: false,
            state: 0,
            remaining: 0,
            reset: 7_000,
            retry_after: 3_000,
        },
    ];
    assert_eq!(out, want);
    let mut again = [BLANK; 2];
    assert_eq!(decode_ints(&TWO_RULES, &mut again), Ok(false));
    assert_eq!(again, want);

    // A never-fits rule, and a committed reply.
    let mut one = [BLANK; 1];
    decode_ints(&[1, 0, 2, 5, 0, 0], &mut one).unwrap();
    assert!(one[0].never_fits && !one[0].allowed);
    assert_eq!(decode_ints(&[1, 1, 1, 0, 5, 0], &mut one), Ok(true));
}

#[test]
fn every_proper_prefix_is_incomplete_and_trailing_bytes_are_left() {
    let bytes = ints_reply(&TWO_RULES);
    for cut in 0..bytes.len() {
        let mut out = [BLANK; 2];
        assert_eq!(
            decode_reply(&bytes[..cut], &mut out),
            Err(ReplyError::Incomplete),
            "cut at {cut}"
        );
        assert_eq!(out, [BLANK; 2]);
    }
    let mut more = bytes.clone();
    more.extend_from_slice(b"+PONG\r\n");
    let mut out = [BLANK; 2];
    assert_eq!(decode_reply(&more, &mut out).unwrap().consumed, bytes.len());
}

fn server_error_of(line: &[u8], rules: usize) -> ServerError<'_> {
    let mut out = [BLANK; 4];
    match decode_reply(line, &mut out[..rules]) {
        Err(ReplyError::Server { error, consumed }) => {
            assert_eq!(consumed, line.len());
            error
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn error_replies_are_classified_by_their_code() {
    use ServerError::*;
    let cases: [(&[u8], ServerError<'_>); 14] = [
        (
            b"-NOSCRIPT No matching script. Please use EVAL.\r\n",
            NoScript,
        ),
        (
            b"-MOVED 3999 127.0.0.1:6381\r\n",
            Moved {
                slot: 3999,
                addr: b"127.0.0.1:6381",
            },
        ),
        (
            b"-ASK 16383 [::1]:7000\r\n",
            Ask {
                slot: 16383,
                addr: b"[::1]:7000",
            },
        ),
        (
            b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n",
            TryAgain,
        ),
        (b"-CLUSTERDOWN The cluster is down\r\n", ClusterDown),
        (
            b"-LOADING Redis is loading the dataset in memory\r\n",
            Loading,
        ),
        (b"-BUSY Redis is busy running a script.\r\n", Busy),
        (
            b"-WRONGTYPE Operation against a key holding the wrong kind of value script: x\r\n",
            WrongType,
        ),
        (
            b"-ERR Error running script (call to f_x): @user_script:9: WRONGTYPE Operation\r\n",
            WrongType,
        ),
        (b"-RATECARD BADSTATE 2\r\n", BadState { rule: 1 }),
        (b"-ERR RATECARD BADSTATE 1\r\n", BadState { rule: 0 }),
        (b"-RATECARD BADARG 7\r\n", BadArgument { arg: 7 }),
        (b"-RATECARD BADCLOCK 0\r\n", BadClock),
        (b"!22\r\nNOSCRIPT no such thing\r\n", NoScript),
    ];
    for (line, want) in cases {
        assert_eq!(
            server_error_of(line, 2),
            want,
            "{:?}",
            std::str::from_utf8(line)
        );
    }
    // Malformed or out of range: kept as text.
    for line in [
        &b"-MOVED 16384 h:1\r\n"[..],
        b"-MOVED x h:1\r\n",
        b"-MOVED 12\r\n",
        b"-RATECARD BADSTATE 3\r\n",
        b"-RATECARD BADSTATE 0\r\n",
        b"-RATECARD NEWTHING 1\r\n",
        b"-BUSYKEY Target key name already exists.\r\n",
        b"-\r\n",
    ] {
        let message = &line[1..line.len() - 2];
        assert_eq!(server_error_of(line, 2), Other { message });
    }
}

fn shape_of(bytes: &[u8], rules: usize) -> ShapeError {
    let mut out = [BLANK; 4];
    match decode_reply(bytes, &mut out[..rules]) {
        Err(ReplyError::Shape { error, consumed }) => {
            assert_eq!(consumed, bytes.len(), "{:?}", std::str::from_utf8(bytes));
            assert_eq!(out, [BLANK; 4]);
            error
        }
        other => panic!("{other:?} for {:?}", std::str::from_utf8(bytes)),
    }
}

#[test]
fn replies_of_the_wrong_shape_are_refused_whole() {
    assert_eq!(shape_of(b"+OK\r\n", 1), ShapeError::Type);
    assert_eq!(shape_of(b":1\r\n", 1), ShapeError::Type);
    assert_eq!(shape_of(b"$-1\r\n", 1), ShapeError::Type);
    assert_eq!(shape_of(b"*-1\r\n", 1), ShapeError::Type);
    assert_eq!(shape_of(b"%1\r\n+a\r\n*1\r\n:1\r\n", 1), ShapeError::Type);
    assert_eq!(
        shape_of(&ints_reply(&TWO_RULES), 1),
        ShapeError::Count { found: 10 }
    );
    assert_eq!(
        shape_of(&ints_reply(&TWO_RULES), 3),
        ShapeError::Count { found: 10 }
    );
    assert_eq!(
        shape_of(&ints_reply(&TWO_RULES), 0),
        ShapeError::Count { found: 10 }
    );
    assert_eq!(
        shape_of(b"*6\r\n:1\r\n:0\r\n$1\r\n1\r\n:0\r\n:0\r\n:0\r\n", 1),
        ShapeError::Element { index: 2 }
    );
    assert_eq!(
        shape_of(b"*6\r\n:1\r\n:0\r\n*2\r\n:1\r\n:2\r\n:0\r\n:0\r\n:0\r\n", 1),
        ShapeError::Element { index: 2 }
    );
    let bad = |v: [i64; 6]| shape_of(&ints_reply(&v), 1);
    assert_eq!(bad([2, 0, 1, 0, 0, 0]), ShapeError::Format { found: 2 });
    assert_eq!(bad([1, 2, 1, 0, 0, 0]), ShapeError::Element { index: 1 });
    assert_eq!(bad([1, 0, 3, 0, 0, 0]), ShapeError::Element { index: 2 });
    assert_eq!(
        bad([1, 1, 0, 0, 0, 5]),
        ShapeError::Element { index: 2 },
        "committed, denied"
    );
    assert_eq!(bad([1, 0, 1, -1, 0, 0]), ShapeError::Element { index: 3 });
    assert_eq!(
        bad([1, 0, 1, 1 << 32, 0, 0]),
        ShapeError::Element { index: 3 }
    );
    assert_eq!(bad([1, 0, 1, 0, -5, 0]), ShapeError::Element { index: 4 });
    assert_eq!(
        bad([1, 0, 1, 0, 0, 3]),
        ShapeError::Element { index: 5 },
        "allowed, waits"
    );
    assert_eq!(
        bad([1, 0, 0, 0, 0, 0]),
        ShapeError::Element { index: 5 },
        "denied, no wait"
    );
    assert_eq!(
        bad([1, 0, 2, 0, 0, 1]),
        ShapeError::Element { index: 5 },
        "never fits, waits"
    );

    let mut one = [BLANK; 1];
    assert_eq!(
        decode_ints(&TWO_RULES, &mut one),
        Err(ShapeError::Count { found: 10 })
    );
    assert_eq!(
        decode_ints(&[1, 0, 0, 0, 0, 0], &mut one),
        Err(ShapeError::Element { index: 5 })
    );
    assert_eq!(one, [BLANK; 1]);
}

#[test]
fn bytes_that_are_not_resp_are_a_protocol_error() {
    let mut out = [BLANK; 1];
    for bytes in [
        &b"hello\r\n"[..],
        b":12x\r\n",
        b"*1\r\n:1\n",
        b"*1\r\n:1\rx",
        b"$3\r\nabcde",
        b"*-2\r\n",
        b":99999999999999999999\r\n",
        b"*1\r\n?\r\n",
        b"-ERR a\nb\r\n",
    ] {
        assert_eq!(
            decode_reply(bytes, &mut out),
            Err(ReplyError::Protocol),
            "{:?}",
            std::str::from_utf8(bytes)
        );
    }
    assert_eq!(out, [BLANK; 1]);
}

#[test]
fn script_load_reply_must_name_this_script() {
    let ok = std::format!("${}\r\n{}\r\n", SCRIPT_SHA1.len(), SCRIPT_SHA1);
    assert_eq!(decode_script_load(ok.as_bytes()), Ok(ok.len()));
    for cut in 0..ok.len() {
        assert_eq!(
            decode_script_load(&ok.as_bytes()[..cut]),
            Err(ReplyError::Incomplete)
        );
    }
    let other = b"$3\r\nabc\r\n";
    assert_eq!(
        decode_script_load(other),
        Err(ReplyError::Shape {
            error: ShapeError::Element { index: 0 },
            consumed: other.len()
        })
    );
    assert!(matches!(
        decode_script_load(b"-ERR no\r\n"),
        Err(ReplyError::Server { consumed: 9, .. })
    ));
}
