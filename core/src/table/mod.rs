//! The shared state table: a power-of-two number of 64-byte buckets of four
//! 16-byte slots, after a header and striped counters, in memory that never
//! changes size. Slots change only by 128-bit compare-and-swap, so one table
//! may be shared by threads and by processes mapping the same memory.
//!
//! - [`slot`]: the CAS protocol (claim, charge, undo, move) and lookup;
//! - [`evict`]: finding room (relocation, least-debt eviction);
//! - [`tag`]: a key's 64-bit identity and its two buckets;
//! - [`header`]: layout, recorded configuration, checksum;
//! - [`clock`]: the judged time no wild caller can push far ahead;
//! - [`counters`]: striped statistics;
//! - [`memory`]: placing a table into caller memory, or into memory it
//!   owns;
//! - [`wide`]: the 16-byte loads and CAS, inline where the CPU allows.
//!
//! `unsafe` is confined to [`memory`], [`wide`] and a prefetch hint.
//!
//! [`insert`] and [`forget`] are written over the [`slot::Cells`] trait, so
//! the model checker and the deterministic protocol tests run exactly the
//! code the limiter runs.

pub mod clock;
pub mod counters;
pub mod evict;
pub mod header;
pub mod memory;
pub mod slot;
pub mod tag;
pub mod wide;

use core::sync::atomic::Ordering;
use portable_atomic::AtomicU128;

use crate::config::Policy;
use counters::{Counters, Stripe};
use evict::Room;
use header::Header;
use slot::{Cells, Inserted, Kind, Rules, BUCKET_SLOTS, MAX_RETRIES};

pub use memory::{buckets_for, bytes_for, PlaceError, StaticMemory, ALIGN, MAX_CAPACITY};

/// Four slots in one cache line.
#[repr(C, align(64))]
pub struct Bucket(pub(crate) [AtomicU128; BUCKET_SLOTS]);

impl Bucket {
    /// A bucket of empty slots.
    pub const fn new() -> Bucket {
        Bucket([const { AtomicU128::new(0) }; BUCKET_SLOTS])
    }
}

impl Default for Bucket {
    fn default() -> Bucket {
        Bucket::new()
    }
}

/// A view of a table's memory.
#[derive(Copy, Clone)]
pub struct Table<'m> {
    pub(crate) header: &'m Header,
    pub(crate) counters: Counters<'m>,
    buckets: &'m [Bucket],
    mask: u64,
    wide: wide::Wide,
}

impl<'m> Table<'m> {
    pub(crate) fn new(header: &'m Header, stripes: &'m [Stripe], buckets: &'m [Bucket]) -> Self {
        Table {
            header,
            counters: Counters::new(stripes),
            buckets,
            mask: (buckets.len() as u64).saturating_sub(1),
            wide: wide::Wide::detect(),
        }
    }

    /// Slots in the table.
    pub fn capacity(&self) -> u64 {
        (self.buckets.len() as u64).saturating_mul(BUCKET_SLOTS as u64)
    }

    /// Slots currently holding a key (a full scan: for statistics only).
    pub fn occupancy(&self) -> u64 {
        let mut n = 0u64;
        for b in self.buckets {
            for s in &b.0 {
                if slot::kind_of(s.load(Ordering::Relaxed)) == Kind::Live {
                    n = n.saturating_add(1);
                }
            }
        }
        n
    }

    /// The time at which a caller at `now` judges other keys' slots.
    #[inline(always)]
    pub fn judge(&self, now: u64) -> u64 {
        self.header.clock().judge(now)
    }

    #[inline(always)]
    fn slot(&self, i: usize) -> Option<&AtomicU128> {
        self.buckets.get(i / BUCKET_SLOTS)?.0.get(i % BUCKET_SLOTS)
    }
}

impl Cells for Table<'_> {
    #[inline(always)]
    fn mask(&self) -> u64 {
        self.mask
    }

    #[inline]
    fn load(&self, i: usize) -> u128 {
        // Indices come from `candidates` under this table's mask; an
        // impossible one reads as empty.
        self.slot(i).map_or(0, |s| self.wide.load(s))
    }

    #[inline]
    fn match_bucket(&self, b: u64, tag: u64) -> (u32, usize, u128) {
        let Some(bucket) = self.buckets.get(b as usize) else {
            return (0, 0, 0);
        };
        let v = bucket.0.each_ref().map(|s| self.wide.load(s));
        let mut hits = 0u32;
        for (j, &v) in v.iter().enumerate() {
            hits |= ((slot::identity(v) == tag) as u32) << j;
        }
        let j = hits.trailing_zeros() as usize % BUCKET_SLOTS;
        let value = v.get(j).copied().unwrap_or(0);
        (hits.count_ones(), slot::index(b, j), value)
    }

    #[inline]
    fn cas(&self, i: usize, current: u128, new: u128) -> Result<(), u128> {
        match self.slot(i) {
            Some(s) => self.wide.cas(s, current, new),
            None => Err(0),
        }
    }

    #[inline(always)]
    fn prefetch(&self, b: u64) {
        if let Some(bucket) = self.buckets.get(b as usize) {
            memory::prefetch(bucket);
        }
    }
}

/// What [`insert`] did.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Insert {
    /// The key is live at this slot with the requested state.
    At(usize),
    /// Every candidate is in debt and the policy admits untracked.
    Untracked,
    /// Every candidate is in debt and the policy refuses: the least-debt
    /// candidate is fully replenished in this many ns.
    Refused(u64),
    /// Another writer got there first: look the key up again.
    Raced,
}

/// What [`insert`] did that the counters record.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Events {
    /// A key was stored.
    pub inserted: bool,
    /// A live key was replaced (fully replenished, or in debt).
    pub evicted: bool,
    /// The key replaced (even for a moment) was still in debt.
    pub evicted_in_debt: bool,
    /// Every candidate was in debt and the policy refused or admitted
    /// untracked.
    pub full: bool,
}

/// Store a new key `tag` with `state`, judged at `now` (the table's judged
/// time): room found by [`evict::room`], then claimed, checked and stored
/// by [`slot::claim_and_store`]. Displacing a key in debt is reported even
/// when the insert then yields to a racing inserter of the same key: the
/// displaced key was out of the table meanwhile.
pub fn insert<C: Cells, R: Rules>(
    cells: &C,
    rules: &R,
    tag: u64,
    state: u64,
    now: u64,
    policy: Policy,
) -> (Insert, Events) {
    let mut events = Events::default();
    let (pos, old, in_debt) = match evict::room(cells, rules, tag, now) {
        Room::Free { pos, old } => (pos, old, false),
        Room::Victim { pos, old, free_in } => match policy {
            Policy::Evict => (pos, old, true),
            Policy::Deny => {
                events.full = true;
                return (Insert::Refused(free_in), events);
            }
            Policy::Admit => {
                events.full = true;
                return (Insert::Untracked, events);
            }
        },
        Room::None | Room::Raced => return (Insert::Raced, events),
    };
    let done = slot::claim_and_store(cells, tag, pos, old, state, now);
    if done.displaced() && slot::kind_of(old) == Kind::Live {
        events.evicted = true;
        events.evicted_in_debt = in_debt;
    }
    match done {
        Inserted::At(pos) => {
            events.inserted = true;
            (Insert::At(pos), events)
        }
        Inserted::Missed | Inserted::Yielded { .. } => (Insert::Raced, events),
    }
}

/// Remove every slot of `tag`, finishing any relocation of it first so that
/// a move racing the reset cannot bring the state back. Claims and
/// reservations are left to expire: without a clock a reset cannot tell an
/// expired marker from a fresh one. Returns the number of live slots cleared.
pub fn forget<C: Cells>(cells: &C, tag: u64) -> u32 {
    let slots = slot::candidates(tag, cells.mask());
    let mut cleared = 0u32;
    for _ in 0..MAX_RETRIES {
        let mut settled = true;
        for &i in &slots {
            let v = cells.load(i);
            if slot::identity(v) != tag {
                continue;
            }
            match slot::kind_of(v) {
                Kind::Live => {
                    if cells.cas(i, v, 0).is_ok() {
                        cleared = cleared.saturating_add(1);
                    }
                    settled = false;
                }
                Kind::Frozen => {
                    slot::help_move(cells, tag, i, v);
                    settled = false;
                }
                _ => {}
            }
        }
        if settled {
            break;
        }
    }
    cleared
}

/// Whether 128-bit compare-and-swap is lock-free on the running CPU. Where
/// it is not, a library fallback would take a lock private to one process,
/// which would not protect memory shared with another: tables refuse to run.
pub fn cas_is_lock_free() -> bool {
    AtomicU128::is_lock_free()
}
