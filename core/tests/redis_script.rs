//! The charge script on a real `redis-server` (Debian's 7.0), through the
//! module's own encoders and decoders.
//!
//! Every test here starts its own server (see `redis/mod.rs`) and is
//! ignored by default; CI runs them with
//! `cargo test -p ratecard --test redis_script -- --include-ignored`.

mod redis;

use std::collections::HashMap;
use std::time::Duration;

use ratecard::remote::{
    decode_reply, hash_slot, write_args, write_eval, write_evalsha, write_key, Call, Clock,
    Decoded, RemoteRule, ReplyError, ServerError, Span, MAX_SPAN_NS, SCRIPT, SCRIPT_SHA1,
};
use ratecard::{gcra, window, Algorithm, Nanos, Outcome, Quota};

/// The local table's math, as the engine applies it.
fn decide(algorithm: Algorithm, q: &Quota, state: u64, now: u64, cost: u32) -> Outcome {
    match algorithm {
        Algorithm::Gcra => gcra::decide(state, now, cost, q.emission_interval(), q.burst()),
        Algorithm::FixedWindow => window::decide(state, now, cost, q.limit, q.period_ns()),
    }
}
use redis::{encode, parse, Conn, Server, Value};

const SEC: u64 = 1_000_000_000;
const PREFIX: &[u8] = b"rc:";

const BLANK: Outcome = Outcome {
    allowed: false,
    never_fits: false,
    state: 7,
    remaining: 7,
    reset: 7,
    retry_after: 7,
};

fn gateway(now: u64) -> Clock {
    Clock::Gateway {
        secs: now / SEC,
        nanos: (now % SEC) as u32,
    }
}

fn rule(tag: u64, algorithm: Algorithm, quota: Quota) -> RemoteRule {
    RemoteRule {
        tag,
        algorithm,
        quota,
    }
}

fn call<'a>(
    hashtag: u64,
    rules: &'a [RemoteRule],
    cost: u32,
    peek: bool,
    clock: Clock,
) -> Call<'a> {
    Call {
        prefix: PREFIX,
        hashtag,
        rules,
        cost,
        peek,
        clock,
    }
}

fn key(hashtag: u64, tag: u64) -> Vec<u8> {
    let mut out = [0u8; 64];
    let n = write_key(PREFIX, hashtag, tag, &mut out).unwrap();
    out[..n].to_vec()
}

fn evalsha(c: &Call<'_>) -> Vec<u8> {
    let mut out = vec![0u8; 4096];
    let n = write_evalsha(c, &mut out).unwrap();
    out.truncate(n);
    out
}

/// The raw reply and its decoding.
fn charge(conn: &mut Conn, c: &Call<'_>) -> (Vec<u8>, Vec<Outcome>, Decoded) {
    let raw = conn.raw(&evalsha(c));
    let mut out = vec![BLANK; c.rules.len()];
    let d = decode_reply(&raw, &mut out)
        .unwrap_or_else(|e| panic!("{e:?}: {:?}", String::from_utf8_lossy(&raw)));
    assert_eq!(d.consumed, raw.len());
    (raw, out, d)
}

fn load(conn: &mut Conn) {
    let sha = conn
        .cmd(&[b"SCRIPT", b"LOAD", SCRIPT.as_bytes()])
        .bulk()
        .unwrap();
    assert_eq!(
        sha,
        SCRIPT_SHA1.as_bytes(),
        "the server names the script as we do"
    );
}

/// xorshift64*: the same sequence on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pct(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

const DAY: u64 = 24 * 3600 * SEC;

const GCRA_QUOTAS: [Quota; 8] = [
    Quota::per_secs(5, 10),
    Quota::per_secs(3, 10), // T = 10 s / 3, not a whole microsecond
    Quota::per_hour(1),
    Quota::per_hour(100),
    Quota::per_secs(1000, 10),
    Quota::new(7, Nanos(1_000_003)),
    Quota::new(2, Nanos(3_000_000)),
    Quota::new(1, Nanos(20 * DAY)), // wild only beyond 40 days
];

const WINDOW_QUOTAS: [Quota; 5] = [
    Quota::per_hour(1),
    Quota::per_secs(3, 10),
    Quota::per_secs(100, 1),
    Quota::new(2, Nanos(1_000_000)),
    Quota::new(4, Nanos(7_777_000)),
];

fn unpack(state: u64) -> (u64, u64) {
    (state >> 32, state & 0xFFFF_FFFF)
}

/// The stored value Redis must hold for a model state.
fn check_stored(alg: Algorithm, model: Option<u64>, got: Option<Vec<u8>>, what: &str) {
    match (model, got) {
        (None, None) => {}
        (Some(tat), Some(v)) if alg == Algorithm::Gcra => {
            assert_eq!(String::from_utf8(v).unwrap(), tat.to_string(), "{what}");
        }
        (Some(state), Some(v)) => {
            let s = String::from_utf8(v).unwrap();
            let (i, c) = s.split_once(':').unwrap();
            let i: u64 = i.parse().unwrap();
            let c: u64 = c.parse().unwrap();
            // The local table keeps the index modulo 2^32; Redis keeps it whole.
            assert_eq!((i & 0xFFFF_FFFF, c), unpack(state), "{what}: {s}");
        }
        (m, g) => panic!("{what}: model {m:?}, redis {g:?}"),
    }
}

#[test]
#[ignore = "needs redis-server"]
fn script_outcomes_equal_the_local_math_for_random_sequences() {
    let server = Server::start();
    let mut conn = server.conn();
    load(&mut conn);
    let mut rng = Rng(0x5EED_0F2A_7ECA_4D11);
    let base = 1_700_000_000 * SEC;
    let (mut calls, mut denied, mut never, mut clamps, mut peeks) = (0, 0, 0, 0, 0);
    for seq in 0..30u64 {
        let n = 1 + rng.below(4) as usize;
        let rules: Vec<RemoteRule> = (0..n as u64)
            .map(|i| {
                let (alg, q) = if rng.pct(35) {
                    (Algorithm::FixedWindow, rng.pick(&WINDOW_QUOTAS))
                } else {
                    let q = rng.pick(&GCRA_QUOTAS);
                    let burst = [0, 1, 1 + rng.below(u64::from(q.limit) + 3) as u32];
                    let q = q.with_burst(rng.pick(&burst));
                    let fits = q.emission_interval() * u64::from(q.burst()) <= MAX_SPAN_NS;
                    (Algorithm::Gcra, if fits { q } else { q.with_burst(1) })
                };
                rule(seq * 16 + i, alg, q)
            })
            .collect();
        let keys: Vec<Vec<u8>> = rules.iter().map(|r| key(seq, r.tag)).collect();
        let mut model: Vec<Option<u64>> = vec![None; n];
        // Time wanders within ±5 days of `base`.
        let mut now = base + rng.below(100 * SEC);
        for step in 0..60 {
            if rng.pct(5) {
                // A state from a wild clock: far ahead (or behind) any `now`.
                let i = rng.below(n as u64) as usize;
                let (value, state) = match rules[i].algorithm {
                    Algorithm::Gcra => {
                        let tat = match rng.pick(&[2 * 3600 * SEC, 30 * DAY, 45 * DAY, 100 * DAY]) {
                            far if rng.pct(80) => now + far + rng.below(SEC),
                            far => now - far,
                        };
                        (tat.to_string(), tat)
                    }
                    Algorithm::FixedWindow => {
                        // Wild from 3 windows ahead; a count of 0 is a fresh key.
                        let far = 3 + rng.below(1000);
                        let ahead = rng.pick(&[1, 2, far]);
                        let idx = now / rules[i].quota.period_ns() + ahead;
                        let count = rng.below(2);
                        (format!("{idx}:{count}"), (idx & 0xFFFF_FFFF) << 32 | count)
                    }
                };
                assert_eq!(
                    conn.cmd(&[b"SET", &keys[i], value.as_bytes()]),
                    Value::Simple(b"OK".to_vec())
                );
                model[i] = Some(state);
            }
            let step_ns = match rng.below(20) {
                0..=7 => rng.below(3 * SEC),
                8..=10 => 0,
                11..=13 => (rng.below(2 * SEC)).wrapping_neg(),
                14..=15 => 3600 * SEC + rng.below(DAY),
                16 => DAY.wrapping_neg(),
                _ => rng.below(20 * 1_000_000),
            };
            now = now.wrapping_add(step_ns);
            if now < base - 5 * DAY || now > base + 5 * DAY {
                now = base + rng.below(SEC);
            }
            let min_burst = rules.iter().map(|r| r.quota.burst()).min().unwrap();
            let cost = match rng.below(10) {
                0..=6 => 1,
                7..=8 => 2 + rng.below(2) as u32,
                _ => min_burst + 1,
            };
            let peek = rng.pct(20);
            let c = call(seq, &rules, cost, peek, gateway(now));

            // One transaction: the script, then each key's value and TTL,
            // then PERSIST, so that real time cannot expire what the
            // explicit clock still counts (expiry has its own test).
            let mut bytes = encode(&[b"MULTI"]);
            bytes.extend(evalsha(&c));
            for k in &keys {
                bytes.extend(encode(&[b"GET", k]));
                bytes.extend(encode(&[b"PTTL", k]));
                bytes.extend(encode(&[b"PERSIST", k]));
            }
            bytes.extend(encode(&[b"EXEC"]));
            let sent = std::time::Instant::now();
            conn.send(&bytes);
            for _ in 0..2 + 3 * n {
                conn.read_raw(); // +OK, +QUEUED…
            }
            let exec = conn.read_raw();
            let took = sent.elapsed().as_millis() as u64 + 1;
            let (value, spans, _) = parse(&exec).unwrap();
            let items = value.array();
            let (a, b) = spans[0];
            let mut got = vec![BLANK; n];
            let decoded = decode_reply(&exec[a..b], &mut got).unwrap_or_else(|e| {
                panic!(
                    "seq {seq} step {step}: {e:?} {:?}",
                    String::from_utf8_lossy(&exec[a..b])
                )
            });
            assert_eq!(decoded.consumed, b - a);

            let want: Vec<Outcome> = rules
                .iter()
                .zip(&model)
                .map(|(r, s)| decide(r.algorithm, &r.quota, s.unwrap_or(0), now, cost))
                .collect();
            let all = want.iter().all(|o| o.allowed);
            let what =
                format!("seq {seq} step {step} now {now} cost {cost} peek {peek} rules {rules:?}");
            for (w, g) in want.iter().zip(&got) {
                assert_eq!(Outcome { state: 0, ..*w }, *g, "{what}");
            }
            assert_eq!(decoded.committed, all && !peek, "{what}");
            calls += 1;
            denied += usize::from(!all);
            never += usize::from(want.iter().any(|o| o.never_fits));
            peeks += usize::from(peek);
            for i in 0..n {
                let old = model[i];
                let o = want[i];
                let clamp = !o.allowed && Some(o.state) != old && !(old.is_none() && o.state == 0);
                let written = !peek && (all || clamp);
                if written {
                    model[i] = Some(o.state);
                    clamps += usize::from(clamp);
                }
                let what = format!("{what} rule {i}");
                check_stored(rules[i].algorithm, model[i], items[1 + 3 * i].bulk(), &what);
                let pttl = items[2 + 3 * i].int();
                if written {
                    // The script's PX, less what passed since it ran.
                    let px = o.reset.div_ceil(1_000_000);
                    assert!(
                        pttl as u64 <= px && pttl as u64 + took >= px,
                        "{what}: PX {px}, PTTL {pttl}"
                    );
                } else {
                    assert_eq!(pttl, if model[i].is_some() { -1 } else { -2 }, "{what}");
                }
            }
        }
    }
    // The sequences reached every branch.
    println!("{calls} calls: {denied} denied, {never} with a cost that never fits, {clamps} clamps stored, {peeks} peeks");
    assert_eq!(calls, 30 * 60);
    assert!(
        denied > 100 && never > 50 && clamps > 10 && peeks > 100,
        "{denied} {never} {clamps} {peeks}"
    );
}

#[test]
#[ignore = "needs redis-server"]
fn a_denying_rule_charges_no_other_rule() {
    let server = Server::start();
    let mut conn = server.conn();
    load(&mut conn);
    let rules = [
        rule(1, Algorithm::Gcra, Quota::per_secs(1000, 10)),
        rule(2, Algorithm::Gcra, Quota::per_secs(1, 10)),
        rule(3, Algorithm::FixedWindow, Quota::per_secs(5, 10)),
    ];
    let now = 1_800_000_000 * SEC;
    let (_, out, d) = charge(&mut conn, &call(9, &rules, 1, false, gateway(now)));
    assert!(d.committed && out.iter().all(|o| o.allowed));
    let before: Vec<_> = rules
        .iter()
        .map(|r| conn.cmd(&[b"GET", &key(9, r.tag)]))
        .collect();
    let (_, out, d) = charge(&mut conn, &call(9, &rules, 1, false, gateway(now + 1)));
    assert!(!d.committed);
    assert_eq!(
        out.iter().map(|o| o.allowed).collect::<Vec<_>>(),
        [true, false, true]
    );
    assert_eq!(out[1].retry_after, 10 * SEC - 1);
    let after: Vec<_> = rules
        .iter()
        .map(|r| conn.cmd(&[b"GET", &key(9, r.tag)]))
        .collect();
    assert_eq!(before, after, "the denial stored nothing");
}

#[test]
#[ignore = "needs redis-server"]
fn server_time_mode_charges_at_the_servers_clock() {
    let server = Server::start();
    let mut conn = server.conn();
    load(&mut conn);
    let time = |conn: &mut Conn| {
        let t = conn.cmd(&[b"TIME"]).array();
        let s: u64 = String::from_utf8(t[0].bulk().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        let us: u64 = String::from_utf8(t[1].bulk().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        s * SEC + us * 1000
    };
    let t = 2 * SEC; // 1 per 2 s, burst 3
    let rules = [rule(
        5,
        Algorithm::Gcra,
        Quota::new(1, Nanos(t)).with_burst(3),
    )];
    let c = call(1, &rules, 1, false, Clock::Server);
    // Through the argument-vector encoder and the test's own RESP encoder.
    let mut buf = [0u8; 256];
    let mut spans = [Span::default(); 8];
    let args = write_args(&c, &mut buf, &mut spans).unwrap();
    let numkeys = args.keys.to_string();
    let mut words: Vec<&[u8]> = vec![b"EVALSHA", SCRIPT_SHA1.as_bytes(), numkeys.as_bytes()];
    words.extend(
        spans[..args.keys + args.args]
            .iter()
            .map(|s| &buf[s.offset..s.offset + s.len]),
    );
    let k = key(1, 5);
    let mut tats = Vec::new();
    for _ in 0..2 {
        let before = time(&mut conn);
        let raw = conn.raw(&encode(&words));
        let after = time(&mut conn);
        let mut out = [BLANK];
        decode_reply(&raw, &mut out).unwrap();
        let tat: u64 = String::from_utf8(conn.cmd(&[b"GET", &k]).bulk().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        // The script's now = TAT − reset, read from TIME: µs, between our reads.
        let script_now = tat - out[0].reset;
        assert!(
            before <= script_now && script_now <= after,
            "{before} {script_now} {after}"
        );
        assert_eq!(script_now % 1000, 0, "TIME has microseconds");
        tats.push(tat);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        tats[1] - tats[0],
        t,
        "the second charge queues one interval behind the first"
    );
}

#[test]
#[ignore = "needs redis-server"]
fn a_key_is_gone_once_fully_replenished_and_present_before() {
    let server = Server::start();
    let mut conn = server.conn();
    load(&mut conn);
    let rules = [
        rule(1, Algorithm::Gcra, Quota::new(2, Nanos(600_000_000))),
        rule(2, Algorithm::FixedWindow, Quota::new(5, Nanos(700_000_000))),
    ];
    let (_, out, d) = charge(&mut conn, &call(3, &rules, 1, false, Clock::Server));
    assert!(d.committed);
    assert_eq!(out[0].reset, 300_000_000);
    for (r, o) in rules.iter().zip(&out) {
        let k = key(3, r.tag);
        let pttl = conn.cmd(&[b"PTTL", &k]).int();
        assert!(
            pttl > 0 && pttl as u64 <= o.reset.div_ceil(1_000_000),
            "{pttl} {o:?}"
        );
    }
    std::thread::sleep(Duration::from_millis(800));
    for r in &rules {
        assert_eq!(conn.cmd(&[b"EXISTS", &key(3, r.tag)]).int(), 0, "{r:?}");
    }
    // Gone means fresh: the whole burst again.
    let (_, out, _) = charge(&mut conn, &call(3, &rules, 1, true, Clock::Server));
    assert_eq!((out[0].remaining, out[1].remaining), (1, 4));
}

#[test]
#[ignore = "needs redis-server"]
fn a_flushed_script_cache_gives_noscript_and_eval_recovers() {
    let server = Server::start();
    let mut conn = server.conn();
    load(&mut conn);
    let rules = [rule(1, Algorithm::Gcra, Quota::per_secs(5, 10))];
    let c = call(1, &rules, 1, false, gateway(1_750_000_000 * SEC));
    charge(&mut conn, &c);
    assert_eq!(
        conn.cmd(&[b"SCRIPT", b"FLUSH"]),
        Value::Simple(b"OK".to_vec())
    );
    let raw = conn.raw(&evalsha(&c));
    let mut out = [BLANK];
    match decode_reply(&raw, &mut out) {
        Err(ReplyError::Server {
            error: ServerError::NoScript,
            consumed,
        }) => assert_eq!(consumed, raw.len()),
        other => panic!("{other:?}"),
    }
    assert_eq!(out, [BLANK]);
    let mut cmd = vec![0u8; 16384];
    let n = write_eval(&c, &mut cmd).unwrap();
    let raw = conn.raw(&cmd[..n]);
    decode_reply(&raw, &mut out).unwrap();
    assert_eq!(out[0].remaining, 3, "the second charge");
    let (_, out, _) = charge(&mut conn, &c);
    assert_eq!(out[0].remaining, 2, "EVAL loaded the script again");
}

#[test]
#[ignore = "needs redis-server"]
fn a_key_of_another_type_gives_wrongtype_and_writes_nothing() {
    let server = Server::start();
    let mut conn = server.conn();
    load(&mut conn);
    let rules = [
        rule(1, Algorithm::Gcra, Quota::per_secs(5, 10)),
        rule(2, Algorithm::Gcra, Quota::per_secs(5, 10)),
    ];
    conn.cmd(&[b"HSET", &key(4, 2), b"f", b"v"]);
    let c = call(4, &rules, 1, false, gateway(1_750_000_000 * SEC));
    let raw = conn.raw(&evalsha(&c));
    let mut out = [BLANK; 2];
    assert!(
        matches!(
            decode_reply(&raw, &mut out),
            Err(ReplyError::Server {
                error: ServerError::WrongType,
                ..
            })
        ),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    assert_eq!(conn.cmd(&[b"EXISTS", &key(4, 1)]).int(), 0);
}

#[test]
#[ignore = "needs redis-server"]
fn a_corrupt_state_is_an_error_naming_its_rule() {
    let server = Server::start();
    let mut conn = server.conn();
    load(&mut conn);
    let rules = [
        rule(1, Algorithm::Gcra, Quota::per_secs(5, 10)),
        rule(2, Algorithm::FixedWindow, Quota::per_secs(5, 10)),
    ];
    let c = call(5, &rules, 1, false, gateway(1_750_000_000 * SEC));
    let cases: [(usize, &[u8]); 6] = [
        (0, b"abc"),
        (0, b"12:3"),
        (0, b"12345678"),
        (0, b"-123456789"),
        (1, b"1234567890"),
        (1, b"5:-1"),
    ];
    for (i, value) in cases {
        conn.cmd(&[b"DEL", &key(5, 1), &key(5, 2)]);
        conn.cmd(&[b"SET", &key(5, rules[i].tag), value]);
        let raw = conn.raw(&evalsha(&c));
        let mut out = [BLANK; 2];
        assert_eq!(
            decode_reply(&raw, &mut out),
            Err(ReplyError::Server {
                error: ServerError::BadState { rule: i },
                consumed: raw.len()
            }),
            "{:?}",
            String::from_utf8_lossy(value)
        );
        assert_eq!(
            conn.cmd(&[b"GET", &key(5, rules[i].tag)]).bulk().unwrap(),
            value
        );
        assert_eq!(
            conn.cmd(&[b"EXISTS", &key(5, rules[1 - i].tag)]).int(),
            0,
            "nothing written"
        );
    }
}

#[test]
#[ignore = "needs redis-server"]
fn the_script_refuses_arguments_outside_its_contract() {
    let server = Server::start();
    let mut conn = server.conn();
    load(&mut conn);
    let sha = SCRIPT_SHA1.as_bytes();
    let cases: [(&[&[u8]], usize); 12] = [
        (&[b"1", b"k", b"0", b"1"], 0),
        (&[b"0", b"0", b"1", b"g", b"5", b"5"], 0),
        (&[b"1", b"k", b"2", b"1", b"g", b"5", b"5"], 1),
        (&[b"1", b"k", b"0", b"0", b"g", b"5", b"5"], 2),
        (&[b"1", b"k", b"0", b"1.5", b"g", b"5", b"5"], 2),
        (&[b"1", b"k", b"0", b"1", b"x", b"5", b"5"], 3),
        (&[b"1", b"k", b"0", b"1", b"g", b"nan", b"5"], 4),
        (
            &[b"1", b"k", b"0", b"1", b"g", b"2251799813685248", b"2"],
            5,
        ),
        (&[b"1", b"k", b"0", b"1", b"w", b"5", b"1500"], 5),
        (
            &[
                b"1",
                b"k",
                b"0",
                b"1",
                b"g",
                b"5",
                b"5",
                b"4000000001",
                b"0",
            ],
            6,
        ),
        (&[b"1", b"k", b"0", b"1", b"g", b"5", b"5", b"", b"0"], 6),
        (
            &[
                b"1",
                b"k",
                b"0",
                b"1",
                b"g",
                b"5",
                b"5",
                b"1",
                b"1000000000",
            ],
            7,
        ),
    ];
    for (args, arg) in cases {
        let mut words: Vec<&[u8]> = vec![b"EVALSHA", sha];
        words.extend_from_slice(args);
        let raw = conn.raw(&encode(&words));
        let mut out = vec![BLANK; 1];
        assert_eq!(
            decode_reply(&raw, &mut out),
            Err(ReplyError::Server {
                error: ServerError::BadArgument { arg },
                consumed: raw.len()
            }),
            "{args:?}: {:?}",
            String::from_utf8_lossy(&raw)
        );
    }
    assert_eq!(conn.cmd(&[b"DBSIZE"]).int(), 0, "nothing written");
}

#[test]
#[ignore = "needs redis-server"]
fn real_replies_are_incomplete_at_every_cut_and_decode_whole_byte_by_byte() {
    let server = Server::start();
    let mut conn = server.conn();
    load(&mut conn);
    let rules = [
        rule(1, Algorithm::Gcra, Quota::per_secs(5, 10)),
        rule(2, Algorithm::FixedWindow, Quota::per_hour(100)),
        rule(3, Algorithm::Gcra, Quota::per_hour(1)),
    ];
    let c = call(6, &rules, 1, false, gateway(1_750_000_000 * SEC));
    let mut replies = vec![charge(&mut conn, &c).0, charge(&mut conn, &c).0];
    conn.cmd(&[b"SET", &key(6, 3), b"junk"]);
    replies.push(conn.raw(&evalsha(&c)));
    conn.cmd(&[b"SCRIPT", b"FLUSH"]);
    replies.push(conn.raw(&evalsha(&c)));
    for raw in &replies {
        let mut whole = [BLANK; 3];
        let want = decode_reply(raw, &mut whole).map(|d| (d, whole));
        let mut fed = Vec::new();
        for (i, &b) in raw.iter().enumerate() {
            let mut out = [BLANK; 3];
            let got = decode_reply(&fed, &mut out);
            assert_eq!(got, Err(ReplyError::Incomplete), "after {i} bytes");
            assert_eq!(out, [BLANK; 3]);
            fed.push(b);
        }
        let mut out = [BLANK; 3];
        assert_eq!(decode_reply(&fed, &mut out).map(|d| (d, out)), want);
    }
    assert!(matches!(
        decode_reply(&replies[2], &mut [BLANK; 3]),
        Err(ReplyError::Server {
            error: ServerError::BadState { rule: 2 },
            ..
        })
    ));
}

#[test]
#[ignore = "needs redis-server"]
fn hash_slot_agrees_with_cluster_keyslot() {
    let server = Server::start_with(&[
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
    ]);
    let mut conn = server.conn();
    let mut rng = Rng(0xC105_7E55);
    let mut keys: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"{}".to_vec(),
        b"{{a}}".to_vec(),
        b"a{}b{c}".to_vec(),
        b"}{x}".to_vec(),
        b"{".to_vec(),
    ];
    for _ in 0..300 {
        keys.push(key(rng.next() >> rng.below(64), rng.next()));
        let len = rng.below(12) as usize;
        keys.push((0..len).map(|_| rng.pick(b"ab{}\x00\xff:")).collect());
    }
    for k in keys {
        let slot = conn.cmd(&[b"CLUSTER", b"KEYSLOT", &k]).int();
        assert_eq!(
            i64::from(hash_slot(&k)),
            slot,
            "{:?}",
            String::from_utf8_lossy(&k)
        );
    }
}

#[test]
#[ignore = "needs redis-server"]
fn a_gcra_state_is_one_machine_integer_in_redis() {
    let server = Server::start();
    let mut conn = server.conn();
    load(&mut conn);
    let rules = [
        rule(u64::MAX, Algorithm::Gcra, Quota::per_secs(5, 10)),
        rule(u64::MAX - 1, Algorithm::FixedWindow, Quota::per_secs(5, 10)),
    ];
    charge(&mut conn, &call(u64::MAX, &rules, 1, false, Clock::Server));
    let mut sizes = HashMap::new();
    for r in &rules {
        let k = key(u64::MAX, r.tag);
        let enc = conn.cmd(&[b"OBJECT", b"ENCODING", &k]).bulk().unwrap();
        let bytes = conn.cmd(&[b"MEMORY", b"USAGE", &k]).int();
        println!(
            "{:?}: {} key bytes, encoding {}, MEMORY USAGE {bytes} B",
            r.algorithm,
            k.len(),
            String::from_utf8_lossy(&enc)
        );
        sizes.insert(r.algorithm as u8, (enc, bytes));
    }
    assert_eq!(sizes[&0].0, b"int", "GCRA TAT");
    assert!(
        sizes[&0].1 < sizes[&1].1,
        "the integer is smaller than a window's string"
    );
}
