//! Hostile input: arbitrary bytes in every field, the ends of u64 and u32,
//! unusable memory, corrupt headers and garbage state. Valid input is
//! decided and never panics; invalid arguments get a documented error.

mod common;
use common::*;
mod model;

use proptest::prelude::*;
use ratecard::{
    strip_bearer, write_429_body, Algorithm, Api, CheckError, Config, Decision, HandleOptions,
    InstanceKind, Limiter, Method, Nanos, Policy, Quota, Request, Route, Rule, RuleId, RuleTable,
    Scope, SetupError, StaticLimiter, Verdict, CLERK,
};
use std::net::IpAddr;

// --- arbitrary requests ---------------------------------------------------

/// Path bytes: either anything, or pieces that stress normalisation.
fn path() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"/".to_vec()),
        Just(b"v1".to_vec()),
        Just(b"client".to_vec()),
        Just(b"sign_ins".to_vec()),
        Just(b"users".to_vec()),
        Just(b"organizations".to_vec()),
        Just(b"memberships".to_vec()),
        Just(b"invitations".to_vec()),
        Just(b"jwks".to_vec()),
        Just(b"metadata".to_vec()),
        Just(b".".to_vec()),
        Just(b"..".to_vec()),
        Just(b"%".to_vec()),
        Just(b"%2F".to_vec()),
        Just(b"%2e%2E".to_vec()),
        Just(b"%00".to_vec()),
        Just(b"%4".to_vec()),
        Just(b"%zz".to_vec()),
        Just(b"\\".to_vec()),
        Just(b"\0".to_vec()),
        Just(b"?".to_vec()),
        Just(b"#".to_vec()),
        Just(b"{user_id}".to_vec()),
        Just(b"*".to_vec()),
        Just(b";".to_vec()),
        Just(b"%3B".to_vec()),
        Just(b".json".to_vec()),
        Just(b"http://h".to_vec()),
        Just(b"V1".to_vec()),
        Just(b"SIGN_INS".to_vec()),
        prop::collection::vec(any::<u8>(), 0..8),
    ];
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        prop::collection::vec(piece, 0..40).prop_map(|p| p.concat()),
    ]
}

fn method() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec![
            &b"GET"[..],
            b"POST",
            b"PATCH",
            b"PUT",
            b"patch",
            b"DELETE",
            b"BREW",
            b""
        ])
        .prop_map(|m| m.to_vec()),
        prop::collection::vec(any::<u8>(), 0..12),
    ]
}

fn bytes_or(choices: Vec<&'static [u8]>, max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(choices).prop_map(|b| b.to_vec()),
        prop::collection::vec(any::<u8>(), 0..max),
    ]
}

/// No address, any IPv4 or IPv6 address, or a few that take special paths
/// (IPv4-mapped IPv6, the unspecified addresses).
fn ip() -> impl Strategy<Value = Option<IpAddr>> {
    let mapped: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1];
    prop_oneof![
        Just(None),
        Just(Some(IpAddr::from([10, 0, 0, 1]))),
        Just(Some(IpAddr::from([0u8; 16]))),
        Just(Some(IpAddr::from(mapped))),
        any::<[u8; 4]>().prop_map(|b| Some(IpAddr::from(b))),
        any::<[u8; 16]>().prop_map(|b| Some(IpAddr::from(b))),
    ]
}

fn now() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        Just(0),
        Just(u64::MAX),
        (u64::MAX - 100 * SEC)..=u64::MAX,
        0u64..(1 << 40),
    ]
}

fn cost() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..=12, Just(u32::MAX), any::<u32>()]
}

#[derive(Clone, Debug)]
struct Input {
    api: Api,
    method: Vec<u8>,
    path: Vec<u8>,
    ip: Option<IpAddr>,
    key: Vec<u8>,
    tenant: Vec<u8>,
    cost: u32,
    now: u64,
    peek: bool,
    buffer: usize,
}

fn input() -> impl Strategy<Value = Input> {
    (
        prop_oneof![Just(Api::Frontend), Just(Api::Backend)],
        method(),
        path(),
        ip(),
        bytes_or(
            vec![b"", b"sk_live_x", b"Bearer sk_test_y", b"Bearer ", b"live_"],
            80,
        ),
        bytes_or(vec![b"", b"t"], 40),
        cost(),
        now(),
        any::<bool>(),
        0usize..160,
    )
        .prop_map(
            |(api, method, path, ip, key, tenant, cost, now, peek, buffer)| Input {
                api,
                method,
                path,
                ip,
                key,
                tenant,
                cost,
                now,
                peek,
                buffer,
            },
        )
}

fn config() -> impl Strategy<Value = Config> {
    (
        1u32..=256,
        0u8..=128,
        any::<bool>(),
        any::<bool>(),
        prop::option::of(prop_oneof![
            Just(Algorithm::Gcra),
            Just(Algorithm::FixedWindow)
        ]),
        prop_oneof![Just(Policy::Evict), Just(Policy::Deny), Just(Policy::Admit)],
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(capacity, ipv6_prefix, production, pace, algorithm, policy, fold_case, dry_run)| {
                Config {
                    capacity,
                    ipv6_prefix,
                    unknown_kind: if production {
                        InstanceKind::Production
                    } else {
                        InstanceKind::Development
                    },
                    pace,
                    algorithm,
                    policy,
                    fold_case,
                    dry_run,
                }
            },
        )
}

/// What DESIGN.md promises of any decision, whatever the input.
fn assert_well_formed(d: &Decision, dry_run: bool) -> Result<(), TestCaseError> {
    let Some(id) = d.rule else {
        prop_assert_eq!(d, &Decision::UNMATCHED);
        return Ok(());
    };
    let rule = CLERK.rules().get(id.index());
    prop_assert!(rule.is_some(), "rule index {} out of range", id.0);
    let rule = rule.unwrap();
    prop_assert!(d.matched.contains(id), "the binding rule matched");
    prop_assert!(d.allowed() || !dry_run, "a dry-run handle never denies");
    match d.verdict {
        Verdict::Unmatched => prop_assert!(false, "unmatched with a rule: {:?}", d),
        Verdict::Exempt => {
            prop_assert!(rule.quota.is_unlimited() && d.allowed() && !d.dry_run);
            prop_assert_eq!((d.limit, d.remaining, d.reset), (0, 0, Nanos(0)));
            prop_assert_eq!(d.retry_after_secs(), None);
            return Ok(());
        }
        Verdict::Allowed => {
            prop_assert!(d.allowed() && !d.dry_run);
            prop_assert_eq!((d.retry_after(), d.retry_after_secs()), (None, None));
        }
        Verdict::NeverFits => {
            prop_assert_eq!(d.allowed(), dry_run);
            prop_assert_eq!(d.dry_run, dry_run);
            prop_assert_eq!((d.retry_after(), d.retry_after_secs()), (None, None));
        }
        Verdict::Limited { retry_after } => {
            prop_assert_eq!(d.allowed(), dry_run);
            prop_assert_eq!(d.dry_run, dry_run);
            prop_assert!(retry_after.0 >= 1);
            let secs = retry_after.0.div_ceil(SEC).clamp(1, u32::MAX as u64) as u32;
            prop_assert_eq!(d.retry_after_secs(), Some(secs));
        }
    }
    prop_assert!(!rule.quota.is_unlimited());
    prop_assert_eq!(d.limit, rule.quota.limit);
    prop_assert!(
        d.remaining <= d.limit,
        "remaining {} above limit",
        d.remaining
    );
    Ok(())
}

/// The response helpers on any decision and any buffer: `Ok(n ≤ len)` with
/// exactly `n` bytes written, or `Err(needed > len)` and nothing written.
fn assert_helpers(d: &Decision, len: usize) -> Result<(), TestCaseError> {
    type Writer<'w> = Box<dyn Fn(&mut [u8]) -> Result<usize, usize> + 'w>;
    let whole = |b: &mut [u8]| match d.write_response(&CLERK, b) {
        Ok(r) => {
            for range in [&r.retry_after, &r.ratelimit_policy, &r.ratelimit, &r.body] {
                if range.end > b.len() {
                    return Ok(usize::MAX);
                }
            }
            let denied = !d.allowed();
            if r.status != if denied { 429 } else { 0 } || r.body.is_empty() == denied {
                return Ok(usize::MAX);
            }
            Ok(r.body.end.max(r.ratelimit.end))
        }
        Err(n) => Err(n),
    };
    let writers: [Writer<'_>; 5] = [
        Box::new(whole),
        Box::new(|b| d.write_retry_after(b)),
        Box::new(|b| d.write_ratelimit_policy(&CLERK, b)),
        Box::new(|b| d.write_ratelimit(&CLERK, b)),
        Box::new(write_429_body),
    ];
    for w in &writers {
        let mut buf = vec![0xEEu8; len];
        match w(&mut buf) {
            Ok(n) => {
                prop_assert!(n <= len);
                prop_assert!(buf[n..].iter().all(|&b| b == 0xEE));
                prop_assert!(std::str::from_utf8(&buf[..n]).is_ok());
            }
            Err(needed) => {
                prop_assert!(needed > len);
                prop_assert!(buf.iter().all(|&b| b == 0xEE), "short buffer written");
            }
        }
    }
    Ok(())
}

fn decide_one(l: &Limiter<'_>, i: &Input) -> Result<(), TestCaseError> {
    let r = Request {
        api: i.api,
        method: &i.method,
        path: &i.path,
        client_ip: i.ip,
        secret_key: &i.key,
        tenant: &i.tenant,
        cost: i.cost,
    };
    let result = if i.peek {
        l.peek(&r, Nanos(i.now))
    } else {
        l.check(&r, Nanos(i.now))
    };
    match result {
        Ok(d) => {
            assert_well_formed(&d, l.config().dry_run)?;
            assert_helpers(&d, i.buffer)?;
        }
        Err(CheckError::MissingSubject) => {
            // Only a request with no subject at all for its rule.
            prop_assert!(i.ip.is_none(), "a subject was there: {:?}", i.ip);
            prop_assert!(
                i.api == Api::Frontend || (i.tenant.is_empty() && strip_bearer(&i.key).is_empty())
            );
        }
        Err(e) => prop_assert!(false, "undocumented error {e:?}"),
    }
    let reset = l.reset(&r);
    prop_assert!(reset.is_ok() || reset == Err(CheckError::MissingSubject));
    prop_assert_eq!(reset.is_err(), result.is_err());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_requests_are_decided_or_refused_with_a_documented_error(
        config in config(),
        inputs in prop::collection::vec(input(), 1..60),
    ) {
        let l = Limiter::new(&config, CLERK, SEED).unwrap();
        for i in &inputs {
            decide_one(&l, i)?;
        }
        let s = l.stats();
        prop_assert!(s.occupancy <= s.capacity);
    }

    #[test]
    fn arbitrary_keyed_checks_never_panic(
        rule in prop_oneof![0u8..16, any::<u8>()].prop_map(RuleId),
        key in prop::collection::vec(any::<u8>(), 0..64),
        cost in cost(),
        now in now(),
    ) {
        let config = Config { capacity: 16, ..Config::DEFAULT };
        let l = Limiter::new(&config, CLERK, SEED).unwrap();
        for peek in [true, false, false] {
            let r = if peek {
                l.peek_key(rule, &key, cost, Nanos(now))
            } else {
                l.check_key(rule, &key, cost, Nanos(now))
            };
            match r {
                Ok(d) => {
                    prop_assert!(rule.index() < CLERK.len());
                    assert_well_formed(&d, false)?;
                }
                Err(e) => {
                    prop_assert_eq!(e, CheckError::UnknownRule);
                    prop_assert!(rule.index() >= CLERK.len());
                }
            }
        }
        prop_assert_eq!(l.reset_key(rule, &key).is_err(), rule.index() >= CLERK.len());
    }

    #[test]
    fn garbage_over_the_slots_never_makes_a_decision_panic(
        garbage in prop::collection::vec(any::<u8>(), 64..=1024),
        inputs in prop::collection::vec(input(), 1..40),
        policy in prop_oneof![Just(Policy::Evict), Just(Policy::Deny), Just(Policy::Admit)],
    ) {
        let capacity = 64;
        let config = Config { capacity, policy, ..Config::DEFAULT };
        let mut memory = Memory::for_capacity(capacity);
        Limiter::init(memory.bytes(), &config, CLERK, SEED).unwrap();
        // 64 slots are 16 buckets of 64 bytes at the end of the memory.
        let bytes = memory.bytes();
        let slots_at = bytes.len() - 16 * 64;
        for (b, g) in bytes[slots_at..].iter_mut().zip(garbage.iter().cycle()) {
            *b = *g;
        }
        let l = Limiter::attach(memory.bytes(), CLERK, HandleOptions::default()).unwrap();
        for i in &inputs {
            decide_one(&l, i)?;
        }
        let s = l.stats();
        prop_assert!(s.occupancy <= s.capacity);
    }

    #[test]
    fn attach_refuses_a_header_with_any_one_word_changed(
        word in 0usize..=8,
        mask in any::<u64>().prop_filter("a change", |m| *m != 0),
    ) {
        let mut memory = Memory::for_capacity(64);
        let config = Config { capacity: 64, ..Config::DEFAULT };
        Limiter::init(memory.bytes(), &config, CLERK, SEED).unwrap();
        flip(&mut memory, word, mask);
        let r = Limiter::attach(memory.bytes(), CLERK, HandleOptions::default()).err();
        prop_assert!(
            matches!(r, Some(SetupError::Corrupt | SetupError::NotATable)),
            "word {} ^ {:#x}: {:?}", word, mask, r
        );
    }
}

fn flip(memory: &mut Memory, word: usize, mask: u64) {
    let w = &mut memory.bytes()[8 * word..8 * word + 8];
    let v = u64::from_ne_bytes(w.try_into().unwrap()) ^ mask;
    w.copy_from_slice(&v.to_ne_bytes());
}

// --- the ends of u64 and u32 ------------------------------------------------

#[test]
fn u64_max_times_and_u32_max_costs_are_decided_without_panicking() {
    let l = clerk();
    let ip = [10, 0, 0, 1];
    let requests = [
        Request::new(Api::Frontend, b"POST", b"/v1/client/sign_ins").ip(ip),
        Request::new(Api::Backend, b"PATCH", b"/v1/users/u").key(b"sk_live_k"),
        Request::new(Api::Backend, b"POST", b"/v1/invitations").ip(ip),
        Request::new(Api::Backend, b"GET", b"/v1/jwks").key(b"sk_live_k"),
    ];
    for r in &requests {
        for now in [u64::MAX, u64::MAX - 1, 0, u64::MAX / 2, 1, u64::MAX] {
            for cost in [0, 1, 3, u32::MAX] {
                for peek in [true, false] {
                    let r = r.cost(cost);
                    let d = if peek {
                        l.peek(&r, Nanos(now))
                    } else {
                        l.check(&r, Nanos(now))
                    }
                    .unwrap();
                    assert_well_formed(&d, false).unwrap();
                    if cost == u32::MAX && d.verdict != Verdict::Exempt {
                        assert!(d.verdict == Verdict::NeverFits && !d.allowed(), "{d:?}");
                        assert_eq!(d.retry_after_secs(), None);
                    }
                }
            }
        }
    }
}

#[test]
fn a_wild_timestamp_parks_a_key_for_at_most_one_period() {
    let l = clerk();
    let ip = [10, 0, 0, 1];
    let r = Request::new(Api::Frontend, b"POST", b"/v1/client/sign_ins").ip(ip);
    let row = model::row("fapi.sign_ins.create");
    let t = row.period / row.limit as u64;
    for _ in 0..row.limit {
        assert!(l.check(&r, Nanos(u64::MAX / 2)).unwrap().allowed());
    }
    let now = 1_000 * SEC;
    let d = l.check(&r, Nanos(now)).unwrap();
    assert!(!d.allowed());
    assert_eq!(
        d.retry_after(),
        Some(Nanos(t)),
        "clamped to one burst ahead"
    );
    assert_eq!(d.reset, Nanos(row.period));
    let back = (0..row.limit + 1)
        .filter(|_| l.check(&r, Nanos(now + row.period)).unwrap().allowed())
        .count();
    assert_eq!(
        back as u32, row.limit,
        "one period later the whole burst is back"
    );
}

// --- memory and headers -------------------------------------------------

#[test]
fn capacity_zero_or_above_two_to_the_28_is_refused() {
    assert_eq!(Limiter::bytes_for(0), None);
    assert_eq!(Limiter::bytes_for((1 << 28) + 1), None);
    assert_eq!(Limiter::bytes_for(u32::MAX), None);
    let max = Limiter::bytes_for(1 << 28).expect("2^28 slots is allowed");
    assert!(max >= (1usize << 28) * 16, "16 bytes a slot");
    let mut memory = Memory::for_capacity(64);
    for capacity in [0, (1 << 28) + 1, u32::MAX] {
        let config = Config {
            capacity,
            ..Config::DEFAULT
        };
        let r = Limiter::init(memory.bytes(), &config, CLERK, SEED).err();
        assert_eq!(r, Some(SetupError::Capacity), "capacity {capacity}");
    }
}

#[test]
fn bytes_for_rounds_up_to_whole_power_of_two_buckets_of_four_slots() {
    let b = |c| Limiter::bytes_for(c).unwrap();
    assert_eq!(b(1), b(4), "one bucket");
    assert_eq!(b(5), b(8));
    assert_eq!(b(9), b(16));
    assert_eq!(b(16) - b(8), 2 * 64, "two more 64-byte buckets");
    assert_eq!(b(1 << 20) - b(1 << 19), (1 << 19) * 16);
}

#[test]
fn memory_shorter_than_the_table_is_too_small() {
    let config = Config {
        capacity: 64,
        ..Config::DEFAULT
    };
    let need = Limiter::bytes_for(64).unwrap();
    let mut memory = Memory::new(need);
    let r = Limiter::init(&mut memory.bytes()[..need - 1], &config, CLERK, SEED).err();
    assert_eq!(r, Some(SetupError::TooSmall));
    let r = Limiter::init(&mut memory.bytes()[..0], &config, CLERK, SEED).err();
    assert_eq!(r, Some(SetupError::TooSmall));
    Limiter::init(memory.bytes(), &config, CLERK, SEED).unwrap();
    let r = Limiter::attach(
        &mut memory.bytes()[..need - 64],
        CLERK,
        HandleOptions::default(),
    )
    .err();
    assert_eq!(r, Some(SetupError::TooSmall));
    let r = Limiter::attach(&mut memory.bytes()[..8], CLERK, HandleOptions::default()).err();
    assert_eq!(r, Some(SetupError::TooSmall));
}

#[test]
fn memory_not_aligned_to_64_bytes_is_misaligned() {
    let config = Config {
        capacity: 64,
        ..Config::DEFAULT
    };
    let need = Limiter::bytes_for(64).unwrap();
    let mut memory = Memory::new(need + 64);
    for offset in [1, 8, 16, 32, 63] {
        let r = Limiter::init(&mut memory.bytes()[offset..], &config, CLERK, SEED).err();
        assert_eq!(r, Some(SetupError::Misaligned), "offset {offset}");
        let r = Limiter::attach(
            &mut memory.bytes()[offset..],
            CLERK,
            HandleOptions::default(),
        )
        .err();
        assert_eq!(r, Some(SetupError::Misaligned), "offset {offset}");
    }
    assert!(Limiter::init(&mut memory.bytes()[64..], &config, CLERK, SEED).is_ok());
}

#[test]
fn attaching_to_zeroed_memory_finds_no_table() {
    let mut memory = Memory::for_capacity(64);
    let r = Limiter::attach(memory.bytes(), CLERK, HandleOptions::default()).err();
    assert_eq!(r, Some(SetupError::NotATable));
}

#[test]
fn attach_refuses_each_header_word_flipped_and_accepts_it_restored() {
    let mut memory = Memory::for_capacity(64);
    let config = Config {
        capacity: 64,
        ..Config::DEFAULT
    };
    Limiter::init(memory.bytes(), &config, CLERK, SEED).unwrap();
    for word in 0..=8 {
        for mask in [1u64, 1 << 17, 1 << 63, !0] {
            flip(&mut memory, word, mask);
            let r = Limiter::attach(memory.bytes(), CLERK, HandleOptions::default()).err();
            let want = if word <= 1 {
                SetupError::NotATable // magic and layout version
            } else {
                SetupError::Corrupt
            };
            assert_eq!(r, Some(want), "word {word} ^ {mask:#x}");
            flip(&mut memory, word, mask);
            assert!(
                Limiter::attach(memory.bytes(), CLERK, HandleOptions::default()).is_ok(),
                "word {word} restored"
            );
        }
    }
}

#[test]
fn attaching_with_another_rule_table_is_a_rules_mismatch() {
    let mut memory = Memory::for_capacity(64);
    let config = Config {
        capacity: 64,
        ..Config::DEFAULT
    };
    Limiter::init(memory.bytes(), &config, CLERK, SEED).unwrap();
    const OTHER: &[Rule<'static>] = &[Rule::new(
        "custom.things",
        Api::Backend,
        Scope::Instance,
        &[Route::new(Method::Post, "/v1/things")],
        Quota::per_secs(3, 1),
    )];
    let r = Limiter::attach(
        memory.bytes(),
        RuleTable::new(OTHER),
        HandleOptions::default(),
    )
    .err();
    assert_eq!(r, Some(SetupError::RulesMismatch));
    // The Clerk table with one quota changed is another table too.
    let mut rules = CLERK.rules().to_vec();
    rules[0].quota = Quota::per_secs(6, 10);
    let changed: &'static [Rule<'static>] = Box::leak(rules.into_boxed_slice());
    let r = Limiter::attach(
        memory.bytes(),
        RuleTable::new(changed),
        HandleOptions::default(),
    )
    .err();
    assert_eq!(r, Some(SetupError::RulesMismatch));
    assert!(Limiter::attach(memory.bytes(), CLERK, HandleOptions::default()).is_ok());
}

#[test]
fn an_ipv6_prefix_above_128_is_an_invalid_config() {
    let mut memory = Memory::for_capacity(64);
    let config = Config {
        capacity: 64,
        ipv6_prefix: 129,
        ..Config::DEFAULT
    };
    let r = Limiter::init(memory.bytes(), &config, CLERK, SEED).err();
    assert_eq!(r, Some(SetupError::InvalidConfig));
}

static UNSEEDED: StaticLimiter<4> = StaticLimiter::new(CLERK, Config::DEFAULT);
static SEEDED_TWICE: StaticLimiter<4> = StaticLimiter::new(CLERK, Config::DEFAULT);

#[test]
fn a_static_limiter_refuses_until_seeded() {
    assert_eq!(UNSEEDED.limiter().err(), Some(SetupError::NotSeeded));
    let l = UNSEEDED.seed(SEED).unwrap();
    let ip = [10, 0, 0, 1];
    let r = Request::new(Api::Frontend, b"POST", b"/v1/sign_ins").ip(ip);
    let first = l.check(&r, Nanos(SEC)).unwrap();
    assert!(first.allowed());
    let again = UNSEEDED.limiter().unwrap();
    assert_eq!(
        again.check(&r, Nanos(SEC)).unwrap().remaining,
        first.remaining - 1,
        "same table"
    );
    assert_eq!(again.stats().capacity, 16, "4 buckets of 4 slots");
}

#[test]
fn a_static_limiter_keeps_its_first_seed() {
    let ip = [10, 0, 0, 1];
    let r = Request::new(Api::Frontend, b"POST", b"/v1/sign_ins").ip(ip);
    let first = SEEDED_TWICE.seed(SEED).unwrap();
    let admitted = (0..100)
        .take_while(|_| first.check(&r, Nanos(SEC)).unwrap().allowed())
        .count();
    assert!(admitted > 0 && admitted < 100, "the burst ran out");
    // A later seed is ignored: the same keys find the same slots.
    let second = SEEDED_TWICE.seed(ratecard::Seed { k0: 1, k1: 2 }).unwrap();
    assert!(!second.check(&r, Nanos(SEC)).unwrap().allowed());
}

#[test]
fn init_erases_every_byte_of_the_region_it_takes() {
    let config = Config {
        capacity: 256,
        ..Config::DEFAULT
    };
    let need = Limiter::bytes_for(config.capacity).unwrap();
    let mut memory = Memory::new(need + 64);
    memory.bytes().fill(0xa5);
    let l = Limiter::init(memory.bytes(), &config, CLERK, SEED).unwrap();
    assert_eq!(l.stats().occupancy, 0);
    assert_eq!(l.stats().allowed, 0);
    let bytes = memory.bytes();
    // Header words past the fixed fields (reserved for later layouts) and
    // all counters and slots are zero; only the fixed header words are set.
    assert!(
        bytes[80..need].iter().all(|&b| b == 0),
        "garbage left in the table"
    );
    assert!(
        bytes[need..].iter().all(|&b| b == 0xa5),
        "wrote past the table"
    );
}
