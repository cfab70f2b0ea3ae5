//! The slot protocol: every change to a slot is one 128-bit compare-and-swap.
//!
//! A slot holds a 64-bit tag (0 = empty) and a 64-bit word. Bits 6..8 of the
//! tag say what the slot is:
//! - live: the word is the key's algorithm state; only live slots are charged;
//! - claim: an inserter reserved the slot for a new key; the word is the
//!   claim's expiry on the caller's clock;
//! - incoming: a mover reserved the slot as the destination of a relocation;
//!   the word is the reservation's expiry;
//! - frozen: a live slot being moved; the word is still the key's state, but
//!   nobody charges it until the move completes (anyone may finish it).
//!
//! What this buys, under any interleaving of threads and processes:
//! - a key has at most one chargeable slot: an inserter claims first, then
//!   rescans both candidate buckets and yields to any other slot of the key;
//!   a move freezes its source before the destination goes live;
//! - a charge is undone only by a CAS from exactly the value it wrote;
//! - a process that dies mid-operation leaves markers that expire after
//!   [`MARKER_TTL`] ns of the callers' clock, or a frozen slot that the next
//!   visitor of its bucket (a lookup of that key, or an insert of any key
//!   choosing room there) finishes moving or thaws;
//! - an inserter that loses a race with another inserter of the same key
//!   puts back what it claimed.
//!
//! `now` in this module is the table's judged time (see [`super::clock`]),
//! never a clock a single caller can push arbitrarily far ahead.

use super::tag::{self, FLAG_MASK, FLAG_SHIFT, IDENTITY_MASK};

/// How long a claim or incoming marker holds before anyone may clear it.
pub const MARKER_TTL: u64 = 1_000_000;
/// Slots per bucket (one 64-byte cache line).
pub const BUCKET_SLOTS: usize = 4;
/// Bound on retries of any loop racing other writers.
pub const MAX_RETRIES: usize = 64;

/// Kind of a slot, from bits 6..8 of its tag.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Tag 0.
    Empty,
    /// A key's state.
    Live,
    /// Reserved by an inserter.
    Claim,
    /// Reserved as a relocation's destination.
    Incoming,
    /// A live slot being relocated.
    Frozen,
}

/// The index of position `j` of bucket `b`. Tables have at most 2^26
/// buckets, so this never overflows; it wraps rather than panic on an
/// impossible bucket, and the cells then read such an index as empty.
#[inline(always)]
pub const fn index(b: u64, j: usize) -> usize {
    (b as usize).wrapping_mul(BUCKET_SLOTS).wrapping_add(j)
}

/// Pack a tag and word into a slot value.
pub const fn pack(tag: u64, word: u64) -> u128 {
    (word as u128) << 64 | tag as u128
}

/// The tag of a slot value.
pub const fn tag_of(v: u128) -> u64 {
    v as u64
}

/// The word (state or expiry) of a slot value.
pub const fn word_of(v: u128) -> u64 {
    (v >> 64) as u64
}

/// A key's identity: its tag without the marker kind.
pub const fn identity(v: u128) -> u64 {
    tag_of(v) & IDENTITY_MASK
}

/// The kind of a slot value.
pub const fn kind_of(v: u128) -> Kind {
    let t = tag_of(v);
    if t == 0 {
        return Kind::Empty;
    }
    match (t & FLAG_MASK) >> FLAG_SHIFT {
        0 => Kind::Live,
        1 => Kind::Claim,
        2 => Kind::Incoming,
        _ => Kind::Frozen,
    }
}

/// The tag `identity` with marker kind `kind` (Live/Claim/Incoming/Frozen).
pub const fn marked(identity: u64, kind: Kind) -> u64 {
    let k = match kind {
        Kind::Claim => 1,
        Kind::Incoming => 2,
        Kind::Frozen => 3,
        _ => 0,
    };
    (identity & IDENTITY_MASK) | k << FLAG_SHIFT
}

/// Whether a claim or incoming marker with expiry `word` may be cleared at
/// `now`. An expiry implausibly far ahead can only come from a wild clock
/// and counts as expired, so a wild caller cannot wedge a slot.
pub const fn expired(word: u64, now: u64) -> bool {
    word <= now || word > now.saturating_add(2 * MARKER_TTL)
}

/// The cells of a table: 128-bit atomics in a real table, a model in tests.
pub trait Cells {
    /// Number of buckets minus one (a power of two minus one).
    fn mask(&self) -> u64;
    /// Load slot `i` (bucket `i / 4`, position `i % 4`).
    fn load(&self, i: usize) -> u128;
    /// Replace slot `i` with `new` iff it holds `current`; else return what
    /// it holds.
    fn cas(&self, i: usize, current: u128, new: u128) -> Result<(), u128>;
    /// Hint that bucket `b` will be read soon.
    fn prefetch(&self, _b: u64) {}
    /// Load the slots of bucket `b`, one after the other.
    #[inline]
    fn load_bucket(&self, b: u64) -> [u128; BUCKET_SLOTS] {
        core::array::from_fn(|j| self.load(index(b, j)))
    }
    /// Load the slots of bucket `b`, one after the other, and report those
    /// whose identity is `tag`: how many, and one of them (slot index and
    /// value; unspecified if none). [`find`] uses it only when there is
    /// exactly one.
    #[inline]
    fn match_bucket(&self, b: u64, tag: u64) -> (u32, usize, u128) {
        let mut hit = (0u32, 0, 0);
        for j in 0..BUCKET_SLOTS {
            let v = self.load(index(b, j));
            if identity(v) == tag {
                hit = (hit.0.saturating_add(1), index(b, j), v);
            }
        }
        hit
    }
}

/// What a table needs to know about the keys' rules.
pub trait Rules {
    /// Fraction of the burst a live slot of `tag` uses at `now` (0 = fully
    /// replenished: the slot may be reused without losing anything).
    fn debt(&self, tag: u64, state: u64, now: u64) -> u32;
    /// One state at least as strict as both `a` and `b` of one key.
    fn merge(&self, tag: u64, a: u64, b: u64, now: u64) -> u64;
    /// Nanoseconds until a live slot of `tag` is fully replenished.
    fn replenish(&self, tag: u64, state: u64, now: u64) -> u64;
}

/// The eight slot indices of a tag's two candidate buckets.
pub fn candidates(tag: u64, mask: u64) -> [usize; 2 * BUCKET_SLOTS] {
    let (b1, b2) = tag::buckets(tag, mask);
    core::array::from_fn(|k| {
        if k < BUCKET_SLOTS {
            index(b1, k)
        } else {
            index(b2, k.wrapping_sub(BUCKET_SLOTS))
        }
    })
}

/// Result of looking a key up.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// The key's live slot and the value read from it.
    Live {
        /// Slot index.
        pos: usize,
        /// The value read.
        value: u128,
    },
    /// The key has no slot: its state is fresh.
    Absent,
    /// Another inserter holds an unexpired claim for the key (or racing
    /// writers never settled): try again.
    Busy,
}

/// Look up `tag` in its two buckets, helping any relocation of it along,
/// clearing expired markers and merging duplicates as it goes.
#[inline]
pub fn find<C: Cells, R: Rules>(cells: &C, rules: &R, tag: u64, now: u64) -> Found {
    // The common cases: exactly one slot of the key, live, in its first
    // bucket (where inserts put keys first), after four loads; or none in
    // the first and at most one in the second. A key has one live slot
    // (inserters rescan both buckets before they commit, and a move
    // freezes its source before its destination goes live), so a live
    // match in the first bucket is the key's: a relocation in flight shows
    // there as a marker or a frozen slot, which takes the full lookup. The
    // one way to a second live copy is an inserter that yields and puts a
    // claimed victim back after the victim's owner re-inserted it; that
    // displacement is counted as an in-debt eviction, and the copy this
    // lookup does not see is charged no more.
    let (b1, b2) = tag::buckets(tag, cells.mask());
    let (n1, p1, v1) = cells.match_bucket(b1, tag);
    if n1 == 1 && kind_of(v1) == Kind::Live {
        return Found::Live { pos: p1, value: v1 };
    }
    if n1 == 0 {
        // One bucket only (a table of one bucket): nothing more to read.
        if b2 == b1 {
            return Found::Absent;
        }
        let (n2, p2, v2) = cells.match_bucket(b2, tag);
        match n2 {
            0 => return Found::Absent,
            1 if kind_of(v2) == Kind::Live => return Found::Live { pos: p2, value: v2 },
            _ => {}
        }
    }
    find_slow(cells, rules, tag, now)
}

/// [`find`] when the key has a marker or more than one slot.
#[cold]
#[inline(never)]
fn find_slow<C: Cells, R: Rules>(cells: &C, rules: &R, tag: u64, now: u64) -> Found {
    let slots = candidates(tag, cells.mask());
    'retry: for _ in 0..MAX_RETRIES {
        let mut live: Option<(usize, u128)> = None;
        let mut busy = false;
        for &i in &slots {
            let v = cells.load(i);
            if identity(v) != tag {
                continue;
            }
            match kind_of(v) {
                Kind::Live => match live {
                    None => live = Some((i, v)),
                    // One bucket only: both candidate lists name the same slot.
                    Some((p, _)) if p == i => {}
                    Some((p, pv)) => {
                        merge_duplicate(cells, rules, (p, pv), (i, v), now);
                        continue 'retry;
                    }
                },
                Kind::Frozen => {
                    help_move(cells, tag, i, v);
                    continue 'retry;
                }
                Kind::Claim => {
                    if expired(word_of(v), now) {
                        let _ = cells.cas(i, v, 0);
                        continue 'retry;
                    }
                    busy = true;
                }
                Kind::Incoming => {
                    // The key is live in the other bucket; a stale
                    // reservation is cleared once expired.
                    if expired(word_of(v), now) {
                        let _ = cells.cas(i, v, 0);
                    }
                }
                Kind::Empty => {}
            }
        }
        return match (live, busy) {
            (Some((pos, value)), _) => Found::Live { pos, value },
            (None, true) => Found::Busy,
            (None, false) => Found::Absent,
        };
    }
    Found::Busy
}

/// Two live slots of one key (only a lookup racing a relocation can make
/// them): fold the second into the first, keeping both debts.
fn merge_duplicate<C: Cells, R: Rules>(
    cells: &C,
    rules: &R,
    first: (usize, u128),
    second: (usize, u128),
    now: u64,
) {
    let (p, pv) = first;
    let (q, qv) = second;
    let tag = tag_of(pv);
    let merged = rules.merge(tag, word_of(pv), word_of(qv), now);
    if cells.cas(p, pv, pack(tag, merged)).is_ok() {
        // If the second slot moved on meanwhile it stays, and the next
        // lookup merges again: stricter, never looser.
        let _ = cells.cas(q, qv, 0);
    }
}

/// Finish or undo the relocation of the frozen slot `i` (value `v`).
pub fn help_move<C: Cells>(cells: &C, tag: u64, i: usize, v: u128) {
    let mask = cells.mask();
    let b = (i / BUCKET_SLOTS) as u64;
    let other = tag::alt(b, tag, mask);
    let state = word_of(v);
    for j in 0..BUCKET_SLOTS {
        let q = index(other, j);
        if q == i {
            continue;
        }
        let w = cells.load(q);
        if identity(w) != tag {
            continue;
        }
        match kind_of(w) {
            Kind::Incoming => {
                // Step 3 on the mover's behalf, then step 4.
                if cells.cas(q, w, pack(tag, state)).is_ok() {
                    let _ = cells.cas(i, v, 0);
                }
                return;
            }
            Kind::Live => {
                // The destination is live: only step 4 is left.
                let _ = cells.cas(i, v, 0);
                return;
            }
            _ => {}
        }
    }
    // No destination: the reservation was cleared, so the move failed.
    let _ = cells.cas(i, v, pack(tag, state));
}

/// Move the live slot `from` (holding `value`) to the free slot `to` (holding
/// `free`, an empty slot or an expired marker). Returns whether it moved.
pub fn relocate<C: Cells>(
    cells: &C,
    from: usize,
    value: u128,
    to: usize,
    free: u128,
    now: u64,
) -> bool {
    let tag = tag_of(value);
    let reservation = pack(marked(tag, Kind::Incoming), now.saturating_add(MARKER_TTL));
    if cells.cas(to, free, reservation).is_err() {
        return false;
    }
    let frozen = pack(marked(tag, Kind::Frozen), word_of(value));
    if cells.cas(from, value, frozen).is_err() {
        let _ = cells.cas(to, reservation, 0);
        return false;
    }
    if let Err(now_at_to) = cells.cas(to, reservation, value) {
        if identity(now_at_to) == tag && kind_of(now_at_to) == Kind::Live {
            // A helper finished step 3 for us: only step 4 is left.
            let _ = cells.cas(from, frozen, 0);
            return true;
        }
        // Our reservation expired and was cleared: thaw the source.
        let _ = cells.cas(from, frozen, value);
        return false;
    }
    let _ = cells.cas(from, frozen, 0);
    true
}

/// Outcome of trying to store a new key in a chosen slot.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// The key is live at `pos` with the requested state.
    At(usize),
    /// The slot changed before it could be claimed: nothing was touched.
    Missed,
    /// The slot was claimed, then another slot of the key appeared (or the
    /// claim expired under us): the slot's old content was put back if it
    /// could be (`restored`), and the key must be looked up again.
    Yielded {
        /// Whether the slot holds its old content again.
        restored: bool,
    },
}

impl Inserted {
    /// Whether this insert held the slot for a while: its old content was
    /// out of the table meanwhile, so a key in debt there was evicted, if
    /// only for a moment (its owner may have been admitted from a fresh
    /// state meanwhile). Such evictions are counted like the others.
    pub const fn displaced(self) -> bool {
        !matches!(self, Inserted::Missed)
    }
}

/// Claim `pos` (currently `old`) for `tag`, check that no other slot of the
/// key exists, and store `state`. A claim that has to yield puts `old` back
/// (by a CAS from exactly the claim), so a race between two inserters of one
/// key destroys nobody's state.
pub fn claim_and_store<C: Cells>(
    cells: &C,
    tag: u64,
    pos: usize,
    old: u128,
    state: u64,
    now: u64,
) -> Inserted {
    let claim = pack(marked(tag, Kind::Claim), now.saturating_add(MARKER_TTL));
    if cells.cas(pos, old, claim).is_err() {
        return Inserted::Missed;
    }
    if other_slot_exists(cells, tag, pos) {
        let restored = cells.cas(pos, claim, old).is_ok();
        return Inserted::Yielded { restored };
    }
    match cells.cas(pos, claim, pack(tag, state)) {
        Ok(()) => Inserted::At(pos),
        // Our claim expired and was cleared (or reused) under us: whatever
        // the slot holds now is someone else's.
        Err(_) => Inserted::Yielded { restored: false },
    }
}

/// Whether any slot but `mine` holds `tag` in any form. Both buckets are
/// read until two passes agree, so a relocation cannot slip between the
/// reads of its source and destination.
fn other_slot_exists<C: Cells>(cells: &C, tag: u64, mine: usize) -> bool {
    let slots = candidates(tag, cells.mask());
    let mut last = [0u128; 2 * BUCKET_SLOTS];
    for pass in 0..MAX_RETRIES {
        let mut seen = [0u128; 2 * BUCKET_SLOTS];
        let mut found = false;
        for (v, &i) in seen.iter_mut().zip(&slots) {
            *v = cells.load(i);
            if i != mine && identity(*v) == tag {
                found = true;
            }
        }
        if found {
            return true;
        }
        if pass > 0 && seen == last {
            return false;
        }
        last = seen;
    }
    // The buckets never settled: yield, the caller retries.
    true
}
