//! Finding room for a new key: a free slot, a fully replenished one, a
//! bounded relocation (cuckoo moves between a key's two buckets, up to two
//! deep), and only then the candidate with the smallest fraction of its
//! burst in use.
//!
//! On the way, a frozen slot (a relocation some mover left half done,
//! perhaps because its process died) is finished or undone, so no crash
//! leaves a slot unusable; and a slot of the very key being inserted means
//! another inserter got there first: the caller looks the key up again
//! instead of overwriting that fresh state.

use super::slot::{
    self, expired, help_move, identity, kind_of, relocate, tag_of, word_of, Cells, Kind, Rules,
    BUCKET_SLOTS, MAX_RETRIES,
};
use super::tag;

/// Where a new key may go.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Room {
    /// A slot whose content can be replaced without losing debt: empty, an
    /// expired marker, or a fully replenished key.
    Free {
        /// Slot index.
        pos: usize,
        /// Its current value.
        old: u128,
    },
    /// Every candidate holds a key still in debt; this one uses the
    /// smallest fraction of its burst.
    Victim {
        /// Slot index.
        pos: usize,
        /// Its current value.
        old: u128,
        /// Nanoseconds until it is fully replenished.
        free_in: u64,
    },
    /// Every candidate is an unexpired marker.
    None,
    /// A slot of the key itself appeared since it was looked up: look again.
    Raced,
}

fn is_free<R: Rules>(rules: &R, v: u128, now: u64) -> bool {
    match kind_of(v) {
        Kind::Empty => true,
        Kind::Claim | Kind::Incoming => expired(word_of(v), now),
        Kind::Live => rules.debt(tag_of(v), word_of(v), now) == 0,
        Kind::Frozen => false,
    }
}

fn free_in_bucket<C: Cells, R: Rules>(
    cells: &C,
    rules: &R,
    b: u64,
    skip: usize,
    now: u64,
) -> Option<(usize, u128)> {
    (0..BUCKET_SLOTS)
        .map(|j| slot::index(b, j))
        .filter(|&i| i != skip)
        .map(|i| (i, cells.load(i)))
        .find(|&(_, v)| is_free(rules, v, now))
}

/// Find room for `tag`, relocating other keys when both buckets are full.
pub fn room<C: Cells, R: Rules>(cells: &C, rules: &R, tag: u64, now: u64) -> Room {
    let slots = slot::candidates(tag, cells.mask());
    let mut values = [0u128; 2 * BUCKET_SLOTS];
    'read: for _ in 0..MAX_RETRIES {
        for (v, &i) in values.iter_mut().zip(&slots) {
            *v = cells.load(i);
            if *v != 0 && identity(*v) == tag {
                return Room::Raced;
            }
            if kind_of(*v) == Kind::Frozen {
                // Finish or undo the move, then read the buckets again.
                help_move(cells, identity(*v), i, *v);
                continue 'read;
            }
        }
        return choose(cells, rules, &slots, &values, now);
    }
    Room::None
}

/// [`room`] once the candidates are read and none is frozen or the key's own.
fn choose<C: Cells, R: Rules>(
    cells: &C,
    rules: &R,
    slots: &[usize; 2 * BUCKET_SLOTS],
    values: &[u128; 2 * BUCKET_SLOTS],
    now: u64,
) -> Room {
    if let Some(k) = values.iter().position(|&v| v == 0) {
        if let Some(&pos) = slots.get(k) {
            return Room::Free { pos, old: 0 };
        }
    }
    let mut victim: Option<(usize, u128, u32)> = None;
    for (&v, &i) in values.iter().zip(slots) {
        // An empty slot first (above), then an expired marker or a key
        // that is fully replenished.
        if is_free(rules, v, now) {
            return Room::Free { pos: i, old: v };
        }
        if kind_of(v) == Kind::Live {
            let d = rules.debt(tag_of(v), word_of(v), now);
            if victim.is_none_or(|(_, _, best)| d < best) {
                victim = Some((i, v, d));
            }
        }
    }
    if let Some(room) = relocate_for(cells, rules, slots, now) {
        return room;
    }
    match victim {
        Some((pos, old, _)) => Room::Victim {
            pos,
            old,
            free_in: rules.replenish(tag_of(old), word_of(old), now),
        },
        None => Room::None,
    }
}

/// Free one of `slots` by moving its key to that key's other bucket, or
/// by first moving a key out of that bucket (two moves at most).
fn relocate_for<C: Cells, R: Rules>(
    cells: &C,
    rules: &R,
    slots: &[usize],
    now: u64,
) -> Option<Room> {
    let mask = cells.mask();
    for depth in 0..2 {
        for &s in slots {
            let sv = cells.load(s);
            if kind_of(sv) != Kind::Live {
                continue;
            }
            let stag = tag_of(sv);
            let a = tag::alt((s / BUCKET_SLOTS) as u64, stag, mask);
            if a as usize == s / BUCKET_SLOTS {
                continue;
            }
            if depth == 0 {
                if let Some((f, fv)) = free_in_bucket(cells, rules, a, usize::MAX, now) {
                    if relocate(cells, s, sv, f, fv, now) {
                        return Some(Room::Free { pos: s, old: 0 });
                    }
                }
                continue;
            }
            for j in 0..BUCKET_SLOTS {
                let u = slot::index(a, j);
                let uv = cells.load(u);
                if kind_of(uv) != Kind::Live {
                    continue;
                }
                let a2 = tag::alt(a, tag_of(uv), mask);
                if a2 == a {
                    continue;
                }
                if let Some((f, fv)) = free_in_bucket(cells, rules, a2, s, now) {
                    if relocate(cells, u, uv, f, fv, now) && relocate(cells, s, sv, u, 0, now) {
                        return Some(Room::Free { pos: s, old: 0 });
                    }
                    return None;
                }
            }
        }
    }
    None
}
