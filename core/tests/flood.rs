//! Eviction by smallest fraction of burst in use: a flood of fresh keys
//! (an attacker rotating IPs) evicts other fresh keys, never a key that is
//! currently limited.

mod common;
use common::*;
mod model;
use ratecard::{Api, Nanos, Request};

fn sign_in(ip: &[u8; 4]) -> Request<'static> {
    Request::new(Api::Frontend, b"POST", b"/v1/client/sign_ins").ip(*ip)
}

#[test]
fn a_limited_key_stays_limited_through_a_flood_of_ten_times_capacity() {
    let capacity = 1024;
    let l = clerk_with(|c| c.capacity = capacity);
    let now = Nanos(100 * SEC);
    let attacker = [203, 0, 113, 7];
    for _ in 0..model::row("fapi.sign_ins.create").limit {
        assert!(l.check(&sign_in(&attacker), now).unwrap().allowed());
    }
    assert!(!l.check(&sign_in(&attacker), now).unwrap().allowed());
    let slots = l.stats().capacity as u32;
    for i in 0..10 * slots {
        let ip = (0x0a00_0000 + i).to_be_bytes();
        // Every rotated IP is fresh, so it is allowed.
        assert!(
            l.check(&sign_in(&ip), now).unwrap().allowed(),
            "fresh IP {i}"
        );
        if i % 97 == 0 {
            assert!(
                !l.check(&sign_in(&attacker), now).unwrap().allowed(),
                "attacker freed after {i} fresh IPs"
            );
        }
    }
    assert!(!l.check(&sign_in(&attacker), now).unwrap().allowed());
    let s = l.stats();
    assert!(s.evicted_in_debt > 0, "the flood did evict fresh keys");
    assert!(s.evicted >= s.evicted_in_debt);
    let newcomer = [198, 51, 100, 1];
    assert!(
        l.check(&sign_in(&newcomer), now).unwrap().allowed(),
        "a fresh client is still served"
    );
}

#[test]
fn with_the_deny_policy_a_full_table_refuses_new_keys_instead_of_evicting() {
    let l = clerk_with(|c| {
        c.capacity = 64;
        c.policy = ratecard::Policy::Deny;
    });
    let now = Nanos(100 * SEC);
    let mut refused = 0;
    for i in 0..1_000u32 {
        let ip = i.to_be_bytes();
        let d = l.check(&sign_in(&ip), now).unwrap();
        if !d.allowed() {
            refused += 1;
            assert!(d.retry_after_secs().is_some_and(|s| s >= 1), "{d:?}");
        }
    }
    let s = l.stats();
    // At a fixed clock every key stays in debt: nothing may be replaced.
    assert_eq!((s.evicted, s.evicted_in_debt), (0, 0));
    assert!(refused > 0 && s.full == refused, "{s:?}");
}

#[test]
fn with_the_admit_policy_a_full_table_admits_new_keys_untracked() {
    let l = clerk_with(|c| {
        c.capacity = 64;
        c.policy = ratecard::Policy::Admit;
    });
    let now = Nanos(100 * SEC);
    for i in 0..1_000u32 {
        let ip = i.to_be_bytes();
        assert!(l.check(&sign_in(&ip), now).unwrap().allowed());
    }
    let s = l.stats();
    assert_eq!((s.evicted, s.evicted_in_debt), (0, 0));
    assert!(s.full > 0);
    assert!(s.occupancy <= s.capacity);
}
