//! Hostile input: arbitrary bytes in every field, the ends of u64 and u32,
//! unusable memory, corrupt headers and garbage state. Valid input is
//! decided and never panics; invalid arguments get a documented error.

mod common;
use common::*;

use proptest::prelude::*;
use ratecard::decision::write_429_body;
use ratecard::quota::Quota;
use ratecard::{
    Algorithm, Api, Config, Decision, Error, HandleOptions, InstanceKind, Limiter, Method, Nanos,
    Policy, Request, Route, Rule, RuleTable, Scope, StaticLimiter, CLERK, NO_RULE,
};

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
    ip: Vec<u8>,
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
        bytes_or(vec![&[], &[10, 0, 0, 1], &[0u8; 16]], 20),
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
    )
        .prop_map(
            |(capacity, ipv6_prefix, production, pace, algorithm, policy, dry_run)| Config {
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
                dry_run,
            },
        )
}

/// What DESIGN.md promises of any decision, whatever the input.
fn assert_well_formed(d: &Decision, dry_run: bool) -> Result<(), TestCaseError> {
    if d.rule == NO_RULE {
        prop_assert!(d.allowed && !d.exempt && !d.never_fits && !d.dry_run_denied);
        prop_assert_eq!((d.limit, d.remaining, d.retry_after_secs), (0, 0, 0));
        prop_assert_eq!((d.reset, d.retry_after, d.matched), (Nanos(0), Nanos(0), 0));
        return Ok(());
    }
    let rule = CLERK.rules().get(d.rule as usize);
    prop_assert!(rule.is_some(), "rule index {} out of range", d.rule);
    let rule = rule.unwrap();
    prop_assert!(d.matched & (1 << d.rule) != 0, "the binding rule matched");
    if d.exempt {
        prop_assert!(rule.quota.is_unlimited() && d.allowed);
        prop_assert_eq!((d.limit, d.remaining, d.retry_after_secs), (0, 0, 0));
        return Ok(());
    }
    prop_assert_eq!(d.limit, rule.quota.limit);
    prop_assert!(
        d.remaining <= d.limit,
        "remaining {} above limit",
        d.remaining
    );
    let limited = !d.allowed || d.dry_run_denied;
    prop_assert_eq!(d.dry_run_denied, dry_run && limited);
    if dry_run {
        prop_assert!(d.allowed, "a dry-run handle never denies");
    }
    if !limited {
        prop_assert!(!d.never_fits);
        prop_assert_eq!((d.retry_after, d.retry_after_secs), (Nanos(0), 0));
    } else if d.never_fits {
        prop_assert_eq!((d.retry_after, d.retry_after_secs), (Nanos(0), 0));
    } else {
        prop_assert!(d.retry_after.0 >= 1);
        let secs = d.retry_after.0.div_ceil(SEC).clamp(1, u32::MAX as u64) as u32;
        prop_assert_eq!(d.retry_after_secs, secs);
    }
    Ok(())
}

/// The response helpers on any decision and any buffer: `Ok(n ≤ len)` with
/// exactly `n` bytes written, or `Err(needed > len)` and nothing written.
fn assert_helpers(d: &Decision, len: usize) -> Result<(), TestCaseError> {
    type Writer<'w> = Box<dyn Fn(&mut [u8]) -> Result<usize, usize> + 'w>;
    let writers: [Writer<'_>; 4] = [
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
        client_ip: &i.ip,
        secret_key: &i.key,
        tenant: &i.tenant,
        cost: i.cost,
    };
    let result = if i.peek {
        l.peek(&r, Nanos(i.now))
    } else {
        l.check(&r, Nanos(i.now))
    };
    let ip_ok = matches!(i.ip.len(), 0 | 4 | 16);
    match result {
        Ok(d) => {
            prop_assert!(ip_ok, "an IP of {} bytes must be refused", i.ip.len());
            assert_well_formed(&d, l.config().dry_run)?;
            assert_helpers(&d, i.buffer)?;
        }
        Err(Error::InvalidIp) => prop_assert!(!ip_ok),
        Err(Error::MissingSubject) => {
            prop_assert!(ip_ok && i.ip.is_empty(), "a subject was there: {:?}", i.ip);
            prop_assert!(i.api == Api::Frontend || i.tenant.is_empty());
        }
        Err(e) => prop_assert!(false, "undocumented error {e:?}"),
    }
    let reset = l.reset(&r);
    prop_assert!(reset.is_ok() == ip_ok || reset == Err(Error::MissingSubject));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_requests_are_decided_or_refused_with_a_documented_error(
        config in config(),
        inputs in prop::collection::vec(input(), 1..60),
    ) {
        let mut arena = Arena::for_capacity(config.capacity);
        let l = Limiter::init(arena.bytes(), &config, CLERK, SEED).unwrap();
        for i in &inputs {
            decide_one(&l, i)?;
        }
        let s = l.stats();
        prop_assert!(s.occupancy <= s.capacity);
    }

    #[test]
    fn arbitrary_keyed_checks_never_panic(
        rule in prop_oneof![0u32..16, any::<u32>()],
        key in prop::collection::vec(any::<u8>(), 0..64),
        cost in cost(),
        now in now(),
    ) {
        let mut arena = Arena::for_capacity(16);
        let config = Config { capacity: 16, ..Config::DEFAULT };
        let l = Limiter::init(arena.bytes(), &config, CLERK, SEED).unwrap();
        for peek in [true, false, false] {
            let r = if peek {
                l.peek_key(rule, &key, cost, Nanos(now))
            } else {
                l.check_key(rule, &key, cost, Nanos(now))
            };
            match r {
                Ok(d) => {
                    prop_assert!((rule as usize) < CLERK.len());
                    assert_well_formed(&d, false)?;
                }
                Err(e) => {
                    prop_assert_eq!(e, Error::UnknownRule);
                    prop_assert!(rule as usize >= CLERK.len());
                }
            }
        }
        prop_assert_eq!(l.reset_key(rule, &key).is_err(), rule as usize >= CLERK.len());
    }

    #[test]
    fn garbage_over_the_slots_never_makes_a_decision_panic(
        garbage in prop::collection::vec(any::<u8>(), 64..=1024),
        inputs in prop::collection::vec(input(), 1..40),
        policy in prop_oneof![Just(Policy::Evict), Just(Policy::Deny), Just(Policy::Admit)],
    ) {
        let capacity = 64;
        let config = Config { capacity, policy, ..Config::DEFAULT };
        let mut arena = Arena::for_capacity(capacity);
        Limiter::init(arena.bytes(), &config, CLERK, SEED).unwrap();
        // 64 slots are 16 buckets of 64 bytes at the end of the memory.
        let bytes = arena.bytes();
        let slots_at = bytes.len() - 16 * 64;
        for (b, g) in bytes[slots_at..].iter_mut().zip(garbage.iter().cycle()) {
            *b = *g;
        }
        let l = Limiter::attach(arena.bytes(), CLERK, HandleOptions::default()).unwrap();
        for i in &inputs {
            decide_one(&l, i)?;
        }
        let _ = l.stats();
    }

    #[test]
    fn attach_refuses_a_header_with_any_one_word_changed(
        word in 0usize..=8,
        mask in any::<u64>().prop_filter("a change", |m| *m != 0),
    ) {
        let mut arena = Arena::for_capacity(64);
        let config = Config { capacity: 64, ..Config::DEFAULT };
        Limiter::init(arena.bytes(), &config, CLERK, SEED).unwrap();
        flip(&mut arena, word, mask);
        let r = Limiter::attach(arena.bytes(), CLERK, HandleOptions::default()).err();
        prop_assert!(
            matches!(r, Some(Error::Corrupt | Error::NotATable)),
            "word {} ^ {:#x}: {:?}", word, mask, r
        );
    }
}

fn flip(arena: &mut Arena, word: usize, mask: u64) {
    let w = &mut arena.bytes()[8 * word..8 * word + 8];
    let v = u64::from_ne_bytes(w.try_into().unwrap()) ^ mask;
    w.copy_from_slice(&v.to_ne_bytes());
}

// --- the ends of u64 and u32 ------------------------------------------------

#[test]
fn u64_max_times_and_u32_max_costs_are_decided_without_panicking() {
    let l = clerk();
    let ip = [10, 0, 0, 1];
    let requests = [
        Request::new(Api::Frontend, b"POST", b"/v1/client/sign_ins").ip(&ip),
        Request::new(Api::Backend, b"PATCH", b"/v1/users/u").key(b"sk_live_k"),
        Request::new(Api::Backend, b"POST", b"/v1/invitations").ip(&ip),
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
                    if cost == u32::MAX && !d.exempt {
                        assert!(d.never_fits && !d.allowed, "{d:?}");
                        assert_eq!(d.retry_after_secs, 0);
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
    let r = Request::new(Api::Frontend, b"POST", b"/v1/client/sign_ins").ip(&ip);
    for _ in 0..5 {
        assert!(l.check(&r, Nanos(u64::MAX / 2)).unwrap().allowed);
    }
    let now = 1_000 * SEC;
    let d = l.check(&r, Nanos(now)).unwrap();
    assert!(!d.allowed);
    assert_eq!(d.retry_after, Nanos(2 * SEC), "clamped to one burst ahead");
    let back = (0..6)
        .filter(|_| l.check(&r, Nanos(now + 10 * SEC)).unwrap().allowed)
        .count();
    assert_eq!(back, 5, "one period later the whole burst is back");
}

// --- memory and headers -------------------------------------------------

#[test]
fn capacity_zero_or_above_two_to_the_28_is_refused() {
    assert_eq!(Limiter::bytes_for(0), None);
    assert_eq!(Limiter::bytes_for((1 << 28) + 1), None);
    assert_eq!(Limiter::bytes_for(u32::MAX), None);
    let max = Limiter::bytes_for(1 << 28).expect("2^28 slots is allowed");
    assert!(max >= (1usize << 28) * 16, "16 bytes a slot");
    let mut arena = Arena::for_capacity(64);
    for capacity in [0, (1 << 28) + 1, u32::MAX] {
        let config = Config {
            capacity,
            ..Config::DEFAULT
        };
        let r = Limiter::init(arena.bytes(), &config, CLERK, SEED).err();
        assert_eq!(r, Some(Error::Capacity), "capacity {capacity}");
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
    let mut arena = Arena::new(need);
    let r = Limiter::init(&mut arena.bytes()[..need - 1], &config, CLERK, SEED).err();
    assert_eq!(r, Some(Error::TooSmall));
    let r = Limiter::init(&mut arena.bytes()[..0], &config, CLERK, SEED).err();
    assert_eq!(r, Some(Error::TooSmall));
    Limiter::init(arena.bytes(), &config, CLERK, SEED).unwrap();
    let r = Limiter::attach(
        &mut arena.bytes()[..need - 64],
        CLERK,
        HandleOptions::default(),
    )
    .err();
    assert_eq!(r, Some(Error::TooSmall));
    let r = Limiter::attach(&mut arena.bytes()[..8], CLERK, HandleOptions::default()).err();
    assert_eq!(r, Some(Error::TooSmall));
}

#[test]
fn memory_not_aligned_to_64_bytes_is_misaligned() {
    let config = Config {
        capacity: 64,
        ..Config::DEFAULT
    };
    let need = Limiter::bytes_for(64).unwrap();
    let mut arena = Arena::new(need + 64);
    for offset in [1, 8, 16, 32, 63] {
        let r = Limiter::init(&mut arena.bytes()[offset..], &config, CLERK, SEED).err();
        assert_eq!(r, Some(Error::Misaligned), "offset {offset}");
        let r = Limiter::attach(
            &mut arena.bytes()[offset..],
            CLERK,
            HandleOptions::default(),
        )
        .err();
        assert_eq!(r, Some(Error::Misaligned), "offset {offset}");
    }
    assert!(Limiter::init(&mut arena.bytes()[64..], &config, CLERK, SEED).is_ok());
}

#[test]
fn attaching_to_zeroed_memory_finds_no_table() {
    let mut arena = Arena::for_capacity(64);
    let r = Limiter::attach(arena.bytes(), CLERK, HandleOptions::default()).err();
    assert_eq!(r, Some(Error::NotATable));
}

#[test]
fn attach_refuses_each_header_word_flipped_and_accepts_it_restored() {
    let mut arena = Arena::for_capacity(64);
    let config = Config {
        capacity: 64,
        ..Config::DEFAULT
    };
    Limiter::init(arena.bytes(), &config, CLERK, SEED).unwrap();
    for word in 0..=8 {
        for mask in [1u64, 1 << 17, 1 << 63, !0] {
            flip(&mut arena, word, mask);
            let r = Limiter::attach(arena.bytes(), CLERK, HandleOptions::default()).err();
            let want = if word <= 1 {
                Error::NotATable // magic and layout version
            } else {
                Error::Corrupt
            };
            assert_eq!(r, Some(want), "word {word} ^ {mask:#x}");
            flip(&mut arena, word, mask);
            assert!(
                Limiter::attach(arena.bytes(), CLERK, HandleOptions::default()).is_ok(),
                "word {word} restored"
            );
        }
    }
}

#[test]
fn attaching_with_another_rule_table_is_a_rules_mismatch() {
    let mut arena = Arena::for_capacity(64);
    let config = Config {
        capacity: 64,
        ..Config::DEFAULT
    };
    Limiter::init(arena.bytes(), &config, CLERK, SEED).unwrap();
    const OTHER: &[Rule<'static>] = &[Rule::new(
        "custom.things",
        Api::Backend,
        Scope::Instance,
        &[Route::new(Method::Post, "/v1/things")],
        Quota::per_secs(3, 1),
    )];
    let r = Limiter::attach(
        arena.bytes(),
        RuleTable::new(OTHER),
        HandleOptions::default(),
    )
    .err();
    assert_eq!(r, Some(Error::RulesMismatch));
    // The Clerk table with one quota changed is another table too.
    let mut rules = CLERK.rules().to_vec();
    rules[0].quota = Quota::per_secs(6, 10);
    let changed: &'static [Rule<'static>] = Box::leak(rules.into_boxed_slice());
    let r = Limiter::attach(
        arena.bytes(),
        RuleTable::new(changed),
        HandleOptions::default(),
    )
    .err();
    assert_eq!(r, Some(Error::RulesMismatch));
    assert!(Limiter::attach(arena.bytes(), CLERK, HandleOptions::default()).is_ok());
}

#[test]
fn an_ipv6_prefix_above_128_is_an_invalid_config() {
    let mut arena = Arena::for_capacity(64);
    let config = Config {
        capacity: 64,
        ipv6_prefix: 129,
        ..Config::DEFAULT
    };
    let r = Limiter::init(arena.bytes(), &config, CLERK, SEED).err();
    assert_eq!(r, Some(Error::InvalidConfig));
}

#[test]
fn client_ips_of_other_lengths_are_invalid_arguments() {
    let l = clerk();
    for len in [1, 3, 5, 8, 15, 17, 32] {
        let ip = vec![1u8; len];
        let r = Request::new(Api::Frontend, b"POST", b"/v1/sign_ins").ip(&ip);
        assert_eq!(
            l.check(&r, Nanos(SEC)),
            Err(Error::InvalidIp),
            "{len} bytes"
        );
    }
}

static UNSEEDED: StaticLimiter<4> = StaticLimiter::new(CLERK, Config::DEFAULT);
static SEEDED_TWICE: StaticLimiter<4> = StaticLimiter::new(CLERK, Config::DEFAULT);

#[test]
fn a_static_limiter_refuses_until_seeded() {
    assert_eq!(UNSEEDED.limiter().err(), Some(Error::NotSeeded));
    let l = UNSEEDED.seed(SEED).unwrap();
    let ip = [10, 0, 0, 1];
    let r = Request::new(Api::Frontend, b"POST", b"/v1/sign_ins").ip(&ip);
    assert!(l.check(&r, Nanos(SEC)).unwrap().allowed);
    let again = UNSEEDED.limiter().unwrap();
    assert_eq!(
        again.check(&r, Nanos(SEC)).unwrap().remaining,
        3,
        "same table"
    );
    assert_eq!(again.stats().capacity, 16, "4 buckets of 4 slots");
}

#[test]
fn a_static_limiter_keeps_its_first_seed() {
    let ip = [10, 0, 0, 1];
    let r = Request::new(Api::Frontend, b"POST", b"/v1/sign_ins").ip(&ip);
    let first = SEEDED_TWICE.seed(SEED).unwrap();
    for _ in 0..5 {
        assert!(first.check(&r, Nanos(SEC)).unwrap().allowed);
    }
    // A later seed is ignored: the same keys find the same slots.
    let second = SEEDED_TWICE.seed(ratecard::Seed { k0: 1, k1: 2 }).unwrap();
    assert!(!second.check(&r, Nanos(SEC)).unwrap().allowed);
}

#[test]
fn init_erases_every_byte_of_the_region_it_takes() {
    let config = Config {
        capacity: 256,
        ..Config::DEFAULT
    };
    let need = Limiter::bytes_for(config.capacity).unwrap();
    let mut arena = Arena::new(need + 64);
    arena.bytes().fill(0xa5);
    let l = Limiter::init(arena.bytes(), &config, CLERK, SEED).unwrap();
    assert_eq!(l.stats().occupancy, 0);
    assert_eq!(l.stats().allowed, 0);
    let bytes = arena.bytes();
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
