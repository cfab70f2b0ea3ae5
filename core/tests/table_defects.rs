//! Regressions for the table defects of the hostile review: each test
//! drives the slot protocol (or the limiter) into the state the review
//! reproduced, deterministically, and checks "never looser than the
//! limit, unless an in-debt eviction is counted".

mod common;
use common::*;
mod model;
use ratecard::table::evict::{self, Room};
use ratecard::table::slot::{self, Cells, Kind, Rules};
use ratecard::{window, Api, Nanos, Request};
use std::cell::RefCell;

/// Slots in a RefCell: a single-threaded table whose steps a test orders.
/// `after_claim` runs once, right after the first CAS that writes a claim:
/// the moment another thread would act in a race.
struct Model {
    slots: RefCell<Vec<u128>>,
    mask: u64,
    after_claim: RefCell<Option<Hook>>,
}

/// What another thread does at a chosen moment.
type Hook = Box<dyn FnOnce(&Model)>;

impl Model {
    fn new(buckets: usize) -> Model {
        Model {
            slots: RefCell::new(vec![0; buckets * 4]),
            mask: buckets as u64 - 1,
            after_claim: RefCell::new(None),
        }
    }
    fn set(&self, i: usize, v: u128) {
        self.slots.borrow_mut()[i] = v;
    }
    fn live_of(&self, tag: u64) -> Vec<(usize, u64)> {
        self.slots
            .borrow()
            .iter()
            .enumerate()
            .filter(|(_, &v)| slot::identity(v) == tag && slot::kind_of(v) == Kind::Live)
            .map(|(i, &v)| (i, slot::word_of(v)))
            .collect()
    }
}

impl Cells for Model {
    fn mask(&self) -> u64 {
        self.mask
    }
    fn load(&self, i: usize) -> u128 {
        self.slots.borrow()[i]
    }
    fn cas(&self, i: usize, current: u128, new: u128) -> Result<(), u128> {
        {
            let mut s = self.slots.borrow_mut();
            if s[i] != current {
                return Err(s[i]);
            }
            s[i] = new;
        }
        if slot::kind_of(new) == Kind::Claim {
            let hook = self.after_claim.borrow_mut().take();
            if let Some(hook) = hook {
                hook(self);
            }
        }
        Ok(())
    }
}

/// A counter state: in debt while non-zero.
struct Counting;

impl Rules for Counting {
    fn debt(&self, _tag: u64, state: u64, _now: u64) -> u32 {
        state.min(u32::MAX as u64) as u32
    }
    fn merge(&self, _tag: u64, a: u64, b: u64, _now: u64) -> u64 {
        a + b
    }
    fn replenish(&self, _tag: u64, state: u64, _now: u64) -> u64 {
        state
    }
}

const NOW: u64 = 1_000;

/// A tag whose identity places it in bucket 0 with alternate bucket 1.
fn tag(n: u64) -> u64 {
    (n << 40) | (1 << 36) | 1
}

#[test]
fn an_inserter_that_loses_a_race_puts_its_victim_back_and_counts_the_displacement() {
    use ratecard::table::{insert, Insert};
    use ratecard::Policy;
    // Both buckets full of keys in debt; thread B inserts the new key k
    // and claims the least-debt victim. Before B rescans, thread A stores k
    // elsewhere (over its own victim, which A counts).
    let cells = Model::new(2);
    let k = tag(1);
    for i in 0..8 {
        cells.set(i, slot::pack(tag(10 + i as u64), 5 + i as u64));
    }
    let victims: Vec<u128> = (0..8).map(|i| cells.load(i)).collect();
    *cells.after_claim.borrow_mut() = Some(Box::new(move |c: &Model| {
        c.set(7, slot::pack(k, 1));
    }));
    let (done, events) = insert(&cells, &Counting, k, 1, NOW, Policy::Evict);
    assert_eq!(done, Insert::Raced, "B yields to A's slot of the key");
    assert!(events.evicted_in_debt, "B's displacement is counted");
    // B's victim (the least debt: slot 0) is back, whole.
    assert_eq!(cells.load(0), victims[0]);
    // One slot of k: A's.
    assert_eq!(cells.live_of(k), vec![(7, 1)]);
    // Lost in-debt keys (slot 7, A's victim, which A counts): one.
    let lost = (0..8).filter(|&i| cells.load(i) != victims[i]).count();
    assert_eq!(lost, 1);
}

#[test]
fn a_reset_racing_a_relocation_finishes_the_move_then_clears_the_key() {
    use ratecard::table::forget;
    // A mover froze the key at slot 0 and reserved slot 4 (its other
    // bucket); a reset comes in before the move completes.
    let cells = Model::new(2);
    let k = tag(6);
    let reservation = slot::pack(slot::marked(k, Kind::Incoming), NOW + slot::MARKER_TTL);
    cells.set(4, reservation);
    cells.set(0, slot::pack(slot::marked(k, Kind::Frozen), 9));
    assert_eq!(forget(&cells, k), 1, "the key's one state cleared");
    assert!(cells.live_of(k).is_empty());
    // Nothing left for a late mover or helper to bring back.
    assert!((0..8).all(|i| slot::identity(cells.load(i)) != k || cells.load(i) == 0));
}

#[test]
fn a_second_thread_seeding_a_static_limiter_waits_for_the_first() {
    use ratecard::{Config, StaticLimiter, CLERK};
    // The race window is the first seeder's few header stores, so one
    // round rarely hits it: with the wait removed this test failed in 8 of
    // 10 runs of 4000 rounds here (and in 18 of 300 runs of 50 rounds).
    for _ in 0..4000 {
        let l: &'static StaticLimiter<16> =
            Box::leak(Box::new(StaticLimiter::new(CLERK, Config::DEFAULT)));
        let results: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|i| s.spawn(move || l.seed(ratecard::Seed::from_bytes([i; 16])).map(|_| ())))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    }
}

#[test]
fn an_inserter_never_picks_its_own_keys_fresh_slot_as_victim() {
    // Both buckets full of keys in debt; the key k was just stored (by
    // another thread) with the least debt of all.
    let cells = Model::new(2);
    let k = tag(1);
    for i in 0..8 {
        cells.set(i, slot::pack(tag(10 + i as u64), 5));
    }
    cells.set(6, slot::pack(k, 1));
    match evict::room(&cells, &Counting, k, NOW) {
        Room::Free { pos, .. } | Room::Victim { pos, .. } => {
            assert_ne!(pos, 6, "would overwrite the key's own fresh charge")
        }
        _ => {}
    }
}

#[test]
fn a_frozen_slot_left_by_a_dead_mover_is_recovered_by_other_keys_inserts() {
    // A mover died after freezing slot 0 (its reservation already gone);
    // the rest of both buckets is full of keys in debt.
    let cells = Model::new(2);
    let dead = tag(2);
    cells.set(0, slot::pack(slot::marked(dead, Kind::Frozen), 4));
    for i in 1..8 {
        cells.set(i, slot::pack(tag(20 + i as u64), 9));
    }
    // Another key's insert needs room: the frozen slot must not stay
    // unusable for ever.
    let _ = evict::room(&cells, &Counting, tag(3), NOW);
    assert_ne!(
        slot::kind_of(cells.load(0)),
        Kind::Frozen,
        "the frozen slot is thawed or moved by a visitor of its bucket"
    );
    assert_eq!(cells.live_of(dead), vec![(0, 4)], "with its state");
}

#[test]
fn merging_fixed_window_states_keeps_the_count_of_a_later_window() {
    const P: u64 = 10_000_000_000;
    let now = 5 * P + 1;
    // Window index in the high half, count in the low half.
    let current = 5u64 << 32 | 2;
    let ahead = 6u64 << 32 | 3;
    let merged = window::merge(current, ahead, now, 4, P);
    let (index, count) = (merged >> 32, merged & 0xffff_ffff);
    assert_eq!(index, 6, "the later window");
    assert!(count >= 3, "the later window's count is kept: {count}");
    // And for a limit of 4, the later window is full.
    assert!(!window::decide(merged, 6 * P, 1, 4, P).allowed);
}

/// A sign-in that takes its client's whole burst.
fn sign_in(ip: &[u8; 4]) -> Request<'static> {
    Request::new(Api::Frontend, b"POST", b"/v1/client/sign_ins")
        .ip(*ip)
        .cost(model::row("fapi.sign_ins.create").limit)
}

#[test]
fn a_caller_with_a_wild_clock_cannot_free_other_keys_that_are_limited() {
    let l = clerk_with(|c| c.capacity = 256);
    let now = Nanos(1_000 * SEC);
    // 200 clients use their whole burst.
    let limited: Vec<[u8; 4]> = (0..200u32)
        .map(|i| (0x0a00_0000 + i).to_be_bytes())
        .collect();
    for ip in &limited {
        assert!(l.check(&sign_in(ip), now).unwrap().allowed());
    }
    let before = l.stats().evicted_in_debt;
    // One caller far ahead (a clock from another boot) inserts 300 keys.
    let wild = Nanos(u64::MAX / 2);
    for i in 0..300u32 {
        let ip = (0x0b00_0000 + i).to_be_bytes();
        let _ = l.check(&sign_in(&ip), wild);
    }
    let evicted = l.stats().evicted_in_debt - before;
    let freed = limited
        .iter()
        .filter(|ip| l.peek(&sign_in(ip).cost(1), now).unwrap().allowed())
        .count() as u64;
    assert!(
        freed <= evicted,
        "{freed} limited keys freed, {evicted} in-debt evictions counted"
    );
}
