//! The limiters under test (in memory they own) and their requests.

use ratecard::table::buckets_for;
use ratecard::{Api, Config, Limiter, Quota, Request, Rule, RuleId, RuleTable, Scope, Seed, CLERK};

/// The hash seed of every benchmark limiter (and of the floor), as bytes.
pub const SEED_BYTES: [u8; 16] = *b"ratecard-bench-0";

/// The hash seed of every benchmark limiter (and of the floor).
pub const SEED: Seed = Seed::from_bytes(SEED_BYTES);

/// The rule of the generic keyed check: one that stays allowed. Its
/// emission interval is 1 ns and its burst 2^32 − 1, so a key charged at a
/// fixed `now` is allowed four billion times.
pub static KEYED_RULES: [Rule<'static>; 1] = [Rule::new(
    "bench.keyed",
    Api::Backend,
    Scope::Instance,
    &[],
    Quota::per_secs(u32::MAX, 1),
)];

/// The index of the keyed rule.
pub const KEYED_RULE: RuleId = RuleId(0);

/// The highest table occupancy the benchmarks run at.
pub const MAX_OCCUPANCY: f64 = 0.85;

/// Slots for `working_set` live keys at no more than [`MAX_OCCUPANCY`]
/// (the table then rounds up to a power-of-two number of buckets).
pub fn capacity_for(working_set: usize) -> u32 {
    ((working_set as f64 / MAX_OCCUPANCY).ceil() as u32).max(4)
}

/// Slots a table of `capacity` really has, after rounding.
pub fn slots_for(capacity: u32) -> usize {
    buckets_for(capacity as u64).map_or(0, |b| b as usize * 4)
}

/// A limiter with `rules` and `capacity` slots, otherwise the default
/// configuration, in zeroed 64-byte aligned memory it owns.
pub fn limiter(rules: RuleTable<'static>, capacity: u32) -> Limiter<'static> {
    let config = Config {
        capacity,
        ..Config::DEFAULT
    };
    match Limiter::new(&config, rules, SEED) {
        Ok(l) => l,
        Err(e) => panic!("benchmark limiter of {capacity} slots: {e}"),
    }
}

/// The keyed rule table.
pub fn keyed_rules() -> RuleTable<'static> {
    RuleTable::new(&KEYED_RULES)
}

/// Clerk's table.
pub fn clerk_rules() -> RuleTable<'static> {
    CLERK
}

/// A client IPv4 address.
pub const CLIENT_IP: [u8; 4] = [203, 0, 113, 7];

/// A 48-byte production secret key.
pub const SECRET_KEY: &[u8; 48] = b"sk_live_Zq8mT3vR1xK7pL0aB4nW9cY2eH6jD5fG3sU8iO1t";

/// A Clerk user id.
pub const USER_PATH: &[u8] = b"/v1/users/user_2NNEqL2nrIRdJ194ndJqAHwEfxC";

/// `POST /v1/client/sign_ins` from one IPv4 client: one rule
/// (`fapi.sign_ins.create`, 5 per 10 s).
pub fn frontend_request() -> Request<'static> {
    Request::new(Api::Frontend, b"POST", b"/v1/client/sign_ins").ip(CLIENT_IP)
}

/// `PATCH /v1/users/{id}` with a 48-byte live key: two rules (the
/// production instance, 1000 per 10 s, and `bapi.users.update`, 10 per 10 s
/// per user).
pub fn patch_user_request() -> Request<'static> {
    Request::new(Api::Backend, b"PATCH", USER_PATH).key(SECRET_KEY)
}

/// Advancing `now` by this much between checks keeps both requests allowed:
/// it is the longest emission interval among their rules (10 s / 5).
pub const ALLOWED_STEP_NS: u64 = 2_000_000_000;

#[cfg(test)]
mod tests {
    use super::*;
    use ratecard::{Nanos, Verdict};

    #[test]
    fn secret_key_is_48_bytes() {
        assert_eq!(SECRET_KEY.len(), 48);
    }

    #[test]
    fn requests_match_their_rules_and_stay_allowed_when_now_steps() {
        let l = limiter(clerk_rules(), 1024);
        let mut now = 1_000_000_000;
        for _ in 0..100 {
            let f = l.check(&frontend_request(), Nanos(now)).unwrap();
            let p = l.check(&patch_user_request(), Nanos(now)).unwrap();
            assert!(f.verdict == Verdict::Allowed && p.verdict == Verdict::Allowed);
            assert_eq!(f.matched.iter().count(), 1);
            assert_eq!(p.matched.iter().count(), 2);
            now += ALLOWED_STEP_NS;
        }
    }

    #[test]
    fn keyed_rule_stays_allowed_at_a_fixed_now() {
        let l = limiter(keyed_rules(), 64);
        for _ in 0..100_000 {
            let d = l.check_key(KEYED_RULE, b"k", 1, Nanos(1)).unwrap();
            assert_eq!(d.verdict, Verdict::Allowed);
        }
    }

    #[test]
    fn capacity_keeps_occupancy_at_most_85_percent() {
        for ws in [1, 10_000, 1_000_000] {
            let slots = slots_for(capacity_for(ws));
            assert!(ws as f64 <= MAX_OCCUPANCY * slots as f64, "{ws} in {slots}");
        }
    }
}
