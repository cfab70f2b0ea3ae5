//! The Redis call encoders on random calls.
//!
//! A call is either refused with exactly the error the contract predicts
//! (computed here from the rules, not by the encoder), or written as
//! `EVALSHA`/`EVAL` commands that an independent minimal RESP parser reads
//! back into the expected words: the script's name or text, the key count,
//! each key `prefix{hashtag}tag` (decoded here from its base-64 digits, all
//! in the hashtag's slot), and the ARGV of the contract. The argument-vector
//! encoder gives the same keys and arguments; shorter buffers are refused
//! with the length needed and left untouched.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ratecard::remote::{
    hash_slot, write_args, write_eval, write_evalsha, Call, Clock, EncodeError, RemoteRule, Span,
    MAX_CLOCK_SECS, MAX_SPAN_NS, SCRIPT, SCRIPT_SHA1,
};
use ratecard::{Algorithm, Nanos, Quota};

#[derive(Arbitrary, Debug)]
struct RuleIn {
    tag: u64,
    window: bool,
    limit: u32,
    /// Small values are whole seconds (most are valid); the rest raw ns.
    period: u64,
    burst: u32,
}

#[derive(Arbitrary, Debug)]
struct Input {
    prefix: Vec<u8>,
    hashtag: u64,
    rules: Vec<RuleIn>,
    cost: u32,
    peek: bool,
    clock: Option<(u64, u32)>,
    /// Where to cut the output buffer short.
    cut: u16,
}

const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_";

fn base64(mut v: u64) -> Vec<u8> {
    let mut out = vec![DIGITS[(v % 64) as usize]];
    v /= 64;
    while v > 0 {
        out.push(DIGITS[(v % 64) as usize]);
        v /= 64;
    }
    out.reverse();
    out
}

/// The words of a RESP array of bulk strings; panics on anything else.
fn parse_command(b: &[u8]) -> Vec<Vec<u8>> {
    fn line(b: &[u8], at: &mut usize) -> Vec<u8> {
        let end = *at
            + b[*at..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("CRLF");
        let l = b[*at..end].to_vec();
        *at = end + 2;
        l
    }
    let mut at = 0;
    let head = line(b, &mut at);
    assert_eq!(head[0], b'*');
    let n: usize = std::str::from_utf8(&head[1..]).unwrap().parse().unwrap();
    let mut words = Vec::new();
    for _ in 0..n {
        let h = line(b, &mut at);
        assert_eq!(h[0], b'$');
        let len: usize = std::str::from_utf8(&h[1..]).unwrap().parse().unwrap();
        words.push(b[at..at + len].to_vec());
        assert_eq!(&b[at + len..at + len + 2], b"\r\n");
        at += len + 2;
    }
    assert_eq!(at, b.len(), "nothing after the command");
    words
}

/// The contract's three arguments of a rule, or `None` when it must be refused.
fn rule_words(r: &RemoteRule) -> Option<[Vec<u8>; 3]> {
    let q = r.quota;
    if q.limit == 0 {
        return None;
    }
    let s = |v: u64| v.to_string().into_bytes();
    match r.algorithm {
        Algorithm::Gcra => {
            let (t, burst) = (q.emission_interval(), u64::from(q.burst()));
            let span = t.checked_mul(burst)?;
            (span <= MAX_SPAN_NS).then(|| [b"g".to_vec(), s(t), s(burst)])
        }
        Algorithm::FixedWindow => {
            let p = q.period_ns();
            (p >= 1000 && p % 1000 == 0 && p <= MAX_SPAN_NS)
                .then(|| [b"w".to_vec(), s(u64::from(q.limit)), s(p)])
        }
    }
}

fuzz_target!(|input: Input| {
    if input.rules.len() > 8 || input.prefix.len() > 64 {
        return;
    }
    let rules: Vec<RemoteRule> = input
        .rules
        .iter()
        .map(|r| RemoteRule {
            tag: r.tag,
            algorithm: if r.window {
                Algorithm::FixedWindow
            } else {
                Algorithm::Gcra
            },
            quota: Quota::new(
                r.limit,
                Nanos(if r.period < 1 << 20 {
                    r.period * 1_000_000_000
                } else {
                    r.period
                }),
            )
            .with_burst(r.burst),
        })
        .collect();
    let clock = match input.clock {
        None => Clock::Server,
        Some((secs, nanos)) => Clock::Gateway { secs, nanos },
    };
    let call = Call {
        prefix: &input.prefix,
        hashtag: input.hashtag,
        rules: &rules,
        cost: input.cost,
        peek: input.peek,
        clock,
    };

    // What the contract says, computed apart from the encoder.
    let expected = if input.prefix.iter().any(|&b| b == b'{' || b == b'}') {
        Err(EncodeError::Prefix)
    } else if rules.is_empty() {
        Err(EncodeError::NoRules)
    } else if input.cost == 0 {
        Err(EncodeError::Cost)
    } else if matches!(clock, Clock::Gateway { secs, nanos } if secs > MAX_CLOCK_SECS || nanos >= 1_000_000_000)
    {
        Err(EncodeError::Clock)
    } else if let Some(index) = rules.iter().position(|r| rule_words(r).is_none()) {
        Err(EncodeError::Rule { index })
    } else {
        Ok(())
    };
    match expected {
        Ok(()) => check_written(&call, &input),
        Err(want) => {
            let mut big = vec![0u8; 64 * 1024];
            assert_eq!(write_evalsha(&call, &mut big), Err(want));
            assert_eq!(write_eval(&call, &mut big), Err(want));
            let mut spans = vec![Span::default(); 64];
            assert_eq!(write_args(&call, &mut big, &mut spans), Err(want));
        }
    }
});

/// A valid call: both commands and the argument vector say what the
/// contract says, and short outputs are refused untouched.
fn check_written(call: &Call<'_>, input: &Input) {
    let rules = call.rules;
    let clock = call.clock;
    let mut big = vec![0u8; 64 * 1024];
    {
        let hashtag = base64(input.hashtag);
        let mut keys = Vec::new();
        for r in rules {
            let mut k = input.prefix.clone();
            k.push(b'{');
            k.extend_from_slice(&hashtag);
            k.push(b'}');
            k.extend_from_slice(&base64(r.tag));
            assert_eq!(hash_slot(&k), hash_slot(&hashtag), "one slot per call");
            keys.push(k);
        }
        let mut args: Vec<Vec<u8>> = vec![
            if input.peek {
                b"1".to_vec()
            } else {
                b"0".to_vec()
            },
            input.cost.to_string().into_bytes(),
        ];
        for r in rules {
            args.extend(rule_words(r).unwrap());
        }
        if let Clock::Gateway { secs, nanos } = clock {
            args.extend([
                secs.to_string().into_bytes(),
                nanos.to_string().into_bytes(),
            ]);
        }

        for (write, head) in [
            (
                write_evalsha as fn(&Call<'_>, &mut [u8]) -> _,
                SCRIPT_SHA1.as_bytes(),
            ),
            (write_eval, SCRIPT.as_bytes()),
        ] {
            let n = write(call, &mut big).expect("a valid call encodes");
            let words = parse_command(&big[..n]);
            assert_eq!(words[1], head);
            assert_eq!(words[2], rules.len().to_string().into_bytes());
            assert_eq!(words[3..3 + keys.len()], keys[..]);
            assert_eq!(words[3 + keys.len()..], args[..]);
            // Short: refused with the length needed, untouched.
            let cut = usize::from(input.cut) % n;
            let mut short = vec![0xA5u8; cut];
            assert_eq!(
                write(call, &mut short),
                Err(EncodeError::TooShort { bytes: n, spans: 0 })
            );
            assert!(short.iter().all(|&b| b == 0xA5));
        }

        let mut spans =
            vec![Span::default(); 4 * rules.len() + if input.clock.is_some() { 4 } else { 2 }];
        let got = write_args(call, &mut big, &mut spans).expect("a valid call encodes");
        assert_eq!((got.keys, got.args), (keys.len(), args.len()));
        let words: Vec<&[u8]> = spans
            .iter()
            .map(|s| &big[s.offset..s.offset + s.len])
            .collect();
        assert_eq!(
            words[..keys.len()],
            keys.iter().map(|k| &k[..]).collect::<Vec<_>>()[..]
        );
        assert_eq!(
            words[keys.len()..],
            args.iter().map(|a| &a[..]).collect::<Vec<_>>()[..]
        );
        let cut = usize::from(input.cut) % got.bytes.max(1);
        let mut short = vec![0xA5u8; cut];
        let mut few = vec![Span { offset: 1, len: 1 }; spans.len()];
        assert_eq!(
            write_args(call, &mut short, &mut few),
            Err(EncodeError::TooShort {
                bytes: got.bytes,
                spans: spans.len()
            })
        );
        assert!(
            short.iter().all(|&b| b == 0xA5)
                && few.iter().all(|s| *s == Span { offset: 1, len: 1 })
        );
    }
}
