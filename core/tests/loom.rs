//! Model checking of the slot protocol with loom: every interleaving of two
//! threads (up to a preemption bound) over a small table.
//!
//! loom has no 128-bit atomic, so each slot is modelled as a loom mutex
//! around a u128: a linearizable 128-bit load and compare-and-swap, which is
//! exactly what the protocol assumes of the hardware.
//!
//! The charges run the library's own lookup and insert
//! (`ratecard::table::slot::find`, `ratecard::table::insert`) over these
//! cells, so what is checked is the code the limiter runs.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test --release -p ratecard --test loom`
#![cfg(loom)]

use loom::sync::{Arc, Mutex};
use loom::thread;
use ratecard::table::slot::{self, Cells, Found, Kind, Rules};
use ratecard::table::{self, Insert};
use ratecard::Policy;

struct Model {
    slots: Vec<Mutex<u128>>,
    mask: u64,
}

impl Model {
    fn new(buckets: usize) -> Model {
        Model {
            slots: (0..buckets * 4).map(|_| Mutex::new(0)).collect(),
            mask: buckets as u64 - 1,
        }
    }

    fn live_slots_of(&self, tag: u64) -> Vec<u128> {
        (0..self.slots.len())
            .map(|i| self.load(i))
            .filter(|&v| slot::identity(v) == tag && slot::kind_of(v) == Kind::Live)
            .collect()
    }
}

impl Cells for Model {
    fn mask(&self) -> u64 {
        self.mask
    }
    fn load(&self, i: usize) -> u128 {
        *self.slots[i].lock().unwrap()
    }
    fn cas(&self, i: usize, current: u128, new: u128) -> Result<(), u128> {
        let mut s = self.slots[i].lock().unwrap();
        if *s == current {
            *s = new;
            Ok(())
        } else {
            Err(*s)
        }
    }
}

/// A counter state: each charge adds one; "in debt" while non-zero.
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

/// What one charge did.
#[derive(Copy, Clone, Debug, Default)]
struct Charged {
    /// The unit was charged to the key's slot.
    done: bool,
    /// In-debt evictions its inserts reported.
    evicted_in_debt: u64,
}

/// Charge `tag` by one unit, the way the limiter does: find, then either
/// CAS the live slot or insert the key with the library's own insert.
fn charge(cells: &Model, tag: u64) -> Charged {
    let mut out = Charged::default();
    for _ in 0..slot::MAX_RETRIES {
        match slot::find(cells, &Counting, tag, NOW) {
            Found::Live { pos, value } => {
                let next = slot::pack(tag, slot::word_of(value) + 1);
                if cells.cas(pos, value, next).is_ok() {
                    out.done = true;
                    return out;
                }
            }
            Found::Absent => {
                let (insert, events) = table::insert(cells, &Counting, tag, 1, NOW, Policy::Evict);
                out.evicted_in_debt += events.evicted_in_debt as u64;
                match insert {
                    Insert::At(_) => {
                        out.done = true;
                        return out;
                    }
                    Insert::Raced => {}
                    Insert::Untracked | Insert::Refused(_) => return out,
                }
            }
            Found::Busy => thread::yield_now(),
        }
    }
    out
}

/// A tag whose identity bits place it in bucket 0 with alternate bucket 1.
fn tag(n: u64) -> u64 {
    // Hash bits start at bit 8; the alternate offset comes from bit 36 on.
    (n << 40) | (1 << 36) | 1
}

#[test]
fn racing_inserts_of_one_key_leave_one_slot_with_both_charges() {
    loom::model(|| {
        let cells = Arc::new(Model::new(2));
        let k = tag(1);
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let cells = cells.clone();
                thread::spawn(move || charge(&cells, k))
            })
            .collect();
        let done: u64 = hs.into_iter().map(|h| h.join().unwrap().done as u64).sum();
        let live = cells.live_slots_of(k);
        assert_eq!(live.len(), 1, "one key, one slot");
        assert_eq!(slot::word_of(live[0]), done, "no charge lost");
    });
}

#[test]
fn a_relocation_racing_a_charge_loses_neither_the_key_nor_the_charge() {
    loom::model(|| {
        let cells = Arc::new(Model::new(2));
        let k = tag(2);
        // The key lives in bucket 0, slot 0, with 5 units charged.
        cells.cas(0, 0, slot::pack(k, 5)).unwrap();
        let mover = {
            let cells = cells.clone();
            thread::spawn(move || {
                let v = cells.load(0);
                if slot::kind_of(v) == Kind::Live {
                    slot::relocate(&*cells, 0, v, 4, 0, NOW);
                }
            })
        };
        let charger = {
            let cells = cells.clone();
            thread::spawn(move || charge(&cells, k))
        };
        mover.join().unwrap();
        let charged = charger.join().unwrap().done;
        // Anyone who looks afterwards finishes a half-done move.
        let _ = slot::find(&*cells, &Counting, k, NOW);
        let live = cells.live_slots_of(k);
        assert_eq!(live.len(), 1, "one key, one slot");
        assert_eq!(slot::word_of(live[0]), 5 + charged as u64);
    });
}

#[test]
fn an_insert_racing_a_relocation_of_the_same_key_makes_no_duplicate() {
    loom::model(|| {
        let cells = Arc::new(Model::new(2));
        let k = tag(3);
        // Bucket 1 full of other keys in debt except slot 4; the key in bucket 0.
        cells.cas(0, 0, slot::pack(k, 2)).unwrap();
        for i in 5..8 {
            cells.cas(i, 0, slot::pack(tag(10 + i as u64), 1)).unwrap();
        }
        let mover = {
            let cells = cells.clone();
            thread::spawn(move || {
                let v = cells.load(0);
                slot::relocate(&*cells, 0, v, 4, 0, NOW);
            })
        };
        let charger = {
            let cells = cells.clone();
            thread::spawn(move || charge(&cells, k))
        };
        mover.join().unwrap();
        let charged = charger.join().unwrap().done;
        let _ = slot::find(&*cells, &Counting, k, NOW);
        let live = cells.live_slots_of(k);
        let total: u64 = live.iter().map(|&v| slot::word_of(v)).sum();
        assert_eq!(live.len(), 1, "one key, one slot: {live:x?}");
        assert_eq!(total, 2 + charged as u64);
    });
}

#[test]
fn a_crashed_claim_expires_and_the_slot_is_reused() {
    loom::model(|| {
        let cells = Arc::new(Model::new(1));
        let k = tag(4);
        // A process died holding a claim on slot 0 for this key.
        let claim = slot::pack(slot::marked(k, Kind::Claim), NOW + slot::MARKER_TTL);
        cells.cas(0, 0, claim).unwrap();
        let later = NOW + slot::MARKER_TTL + 1;
        assert!(matches!(
            slot::find(&*cells, &Counting, k, later),
            Found::Absent
        ));
        assert_eq!(cells.load(0), 0, "the expired claim was cleared");
    });
}

#[test]
fn a_mover_that_died_after_freezing_is_finished_by_the_next_visitors() {
    loom::model(|| {
        let cells = Arc::new(Model::new(2));
        let k = tag(5);
        // A process died between steps 2 and 3 of a move from slot 0 to 4.
        let reservation = slot::pack(slot::marked(k, Kind::Incoming), NOW + slot::MARKER_TTL);
        cells.cas(4, 0, reservation).unwrap();
        cells
            .cas(0, 0, slot::pack(slot::marked(k, Kind::Frozen), 3))
            .unwrap();
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let cells = cells.clone();
                thread::spawn(move || charge(&cells, k))
            })
            .collect();
        let done: u64 = hs.into_iter().map(|h| h.join().unwrap().done as u64).sum();
        let live = cells.live_slots_of(k);
        assert_eq!(live.len(), 1);
        assert_eq!(
            slot::word_of(live[0]),
            3 + done,
            "the frozen state was kept and charged"
        );
    });
}

/// Two inserters of one new key `k` on a full table of `buckets` buckets
/// whose other slots hold keys in debt. (Two buckets take loom more than
/// twenty minutes at three preemptions; one bucket, both of every key's
/// candidates, takes seconds.)
fn two_inserters_on_a_full_table(buckets: usize) {
    loom::model(move || {
        let cells = Arc::new(Model::new(buckets));
        let n = 4 * buckets as u64;
        // Each victim has its own debt, so every one is told apart.
        let victims: Vec<u128> = (0..n).map(|i| slot::pack(tag(20 + i), 2 + i)).collect();
        for (i, &v) in victims.iter().enumerate() {
            cells.cas(i, 0, v).unwrap();
        }
        let k = tag(6);
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let cells = cells.clone();
                thread::spawn(move || charge(&cells, k))
            })
            .collect();
        let charged: Vec<Charged> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        let done: u64 = charged.iter().map(|c| c.done as u64).sum();
        let counted: u64 = charged.iter().map(|c| c.evicted_in_debt).sum();
        let live = cells.live_slots_of(k);
        assert_eq!(live.len(), 1, "one key, one slot: {live:x?}");
        assert_eq!(
            slot::word_of(live[0]),
            done,
            "every successful charge is kept"
        );
        let now: Vec<u128> = (0..n as usize).map(|i| cells.load(i)).collect();
        let gone = victims.iter().filter(|v| !now.contains(v)).count() as u64;
        assert!(
            gone <= counted,
            "{gone} in-debt victims gone, {counted} in-debt evictions counted"
        );
    });
}

#[test]
fn two_inserters_of_one_key_on_a_full_bucket_lose_no_more_victims_than_they_count() {
    two_inserters_on_a_full_table(1);
}
