//! The table's judged time: the time at which other keys' slots are judged
//! free, replenished or expired, which no single caller can push far ahead.
//!
//! Every caller passes its own `now`, and its own key is decided at that
//! time: a wild clock parks its own key (see [`crate::gcra`]). But when a
//! caller needs room and looks at *other* keys' slots, a clock far ahead (a
//! clock of another boot, `CLOCK_REALTIME` beside `CLOCK_MONOTONIC`,
//! `u64::MAX`) would see every slot replenished and overwrite limited keys
//! as if they were free. So those slots are judged against a high-water
//! mark: the latest time of callers that agree with one another.
//!
//! - A caller at most [`LEAP`] ahead of the mark moves it to its `now`
//!   (stores happen at most once per [`GRAIN`] of traffic, so the shared
//!   word stays read-mostly) and is judged at its `now`; a caller behind
//!   the mark changes nothing and is judged at its `now` too.
//! - A caller more than [`LEAP`] ahead is judged at the mark: it may take
//!   only slots that are free at the time the others agree on. It proposes
//!   a leap, which is accepted once callers have stayed in that same epoch
//!   for [`CONFIRM`] of its time with no agreeing caller in between: the
//!   way a table that sat idle for longer than [`LEAP`] catches up. A
//!   caller that keeps the mark moving (ordinary traffic at least once per
//!   [`CONFIRM`]) cancels a pending leap, so a lone wild caller among live
//!   ones never gets one, and two wild epochs keep replacing each other's
//!   proposal.
//!
//! What this costs: one load of a read-mostly word per decision. What it
//! leaves open: a caller less than [`LEAP`] ahead is not told from a live
//! one (it may free keys in debt by less than its offset); if live traffic
//! pauses for [`CONFIRM`] while a wild caller runs, the wild epoch wins;
//! and the very first caller of a table sets the mark. After an idle
//! pause, callers are judged at the old mark until the leap is confirmed:
//! a few slots replenished meanwhile look in debt (stricter, never looser).

use core::sync::atomic::{AtomicU64, Ordering};

/// How far ahead of the high-water mark a caller may be and still count as
/// agreeing with the others: callers of one table share CLOCK_MONOTONIC,
/// so a live caller is ahead only by the time since the last decision.
pub const LEAP: u64 = 1_000_000_000;
/// How long (in the proposing callers' time) a leap must stand unopposed.
pub const CONFIRM: u64 = 10 * 1_000_000_000;
/// The mark moves only when a caller is this far past it.
pub const GRAIN: u64 = 1_000_000;

/// The two shared words: the high-water mark (0 = never set) and a pending
/// leap's start (0 = none).
pub struct Clock<'m> {
    pub(crate) mark: &'m AtomicU64,
    pub(crate) leap: &'m AtomicU64,
}

impl Clock<'_> {
    /// The time at which a caller at `now` judges other keys' slots.
    #[inline(always)]
    pub fn judge(&self, now: u64) -> u64 {
        let mark = self.mark.load(Ordering::Relaxed);
        let bound = mark.saturating_add(LEAP);
        // `now <= mark + GRAIN`: behind or level with the mark, nothing to do.
        if now <= mark.saturating_add(GRAIN) && mark != 0 {
            return now;
        }
        self.advance(mark, bound, now)
    }

    #[cold]
    #[inline(never)]
    fn advance(&self, mark: u64, bound: u64, now: u64) -> u64 {
        // `bound`: the furthest an agreeing caller may be ahead.
        if mark == 0 {
            // The table's first caller sets the mark.
            let _ = self
                .mark
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
            return now;
        }
        if now <= bound {
            // A plain store, not a locked max: two racing callers may leave
            // the earlier of their times, a mark lower by at most the race,
            // which only makes wild callers' judging stricter.
            self.mark.store(now, Ordering::Relaxed);
            if self.leap.load(Ordering::Relaxed) != 0 {
                self.leap.store(0, Ordering::Relaxed);
            }
            return now;
        }
        // Far ahead: a wild clock, or the first callers after an idle pause.
        let start = self.leap.load(Ordering::Relaxed);
        let same_epoch =
            start != 0 && now >= start && now <= start.saturating_add(CONFIRM).saturating_add(LEAP);
        if !same_epoch {
            let _ = self
                .leap
                .compare_exchange(start, now, Ordering::Relaxed, Ordering::Relaxed);
        } else if now >= start.saturating_add(CONFIRM) {
            self.mark.store(now, Ordering::Relaxed);
            let _ = self
                .leap
                .compare_exchange(start, 0, Ordering::Relaxed, Ordering::Relaxed);
            return now;
        }
        mark
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn clock() -> (AtomicU64, AtomicU64) {
        (AtomicU64::new(0), AtomicU64::new(0))
    }

    #[test]
    fn agreeing_callers_are_judged_at_their_own_time_and_move_the_mark() {
        let (m, l) = clock();
        let c = Clock { mark: &m, leap: &l };
        assert_eq!(c.judge(100 * SEC), 100 * SEC);
        assert_eq!(c.judge(100 * SEC + SEC / 2), 100 * SEC + SEC / 2);
        assert_eq!(m.load(Ordering::Relaxed), 100 * SEC + SEC / 2);
        // Behind the mark: own time, mark unchanged.
        assert_eq!(c.judge(99 * SEC), 99 * SEC);
        assert_eq!(m.load(Ordering::Relaxed), 100 * SEC + SEC / 2);
    }

    #[test]
    fn a_wild_caller_is_judged_at_the_mark_and_never_moves_it() {
        let (m, l) = clock();
        let c = Clock { mark: &m, leap: &l };
        c.judge(100 * SEC);
        for i in 0..10_000u64 {
            let mark = m.load(Ordering::Relaxed);
            assert_eq!(c.judge(u64::MAX / 2 + i * SEC), mark);
            // Live traffic keeps going and cancels the proposed leap.
            let live = 100 * SEC + i * (SEC / 100) + 1;
            assert_eq!(c.judge(live), live);
        }
        assert!(m.load(Ordering::Relaxed) < 200 * SEC);
    }

    #[test]
    fn after_a_long_idle_the_callers_epoch_is_accepted_once_confirmed() {
        let (m, l) = clock();
        let c = Clock { mark: &m, leap: &l };
        c.judge(100 * SEC);
        let back = 100 * SEC + 3_600 * SEC;
        assert_eq!(c.judge(back), 100 * SEC, "a leap is proposed");
        assert_eq!(c.judge(back + CONFIRM / 2), 100 * SEC);
        assert_eq!(c.judge(back + CONFIRM), back + CONFIRM, "and accepted");
        assert_eq!(c.judge(back + CONFIRM + SEC), back + CONFIRM + SEC);
    }

    #[test]
    fn two_wild_epochs_keep_replacing_each_others_leap() {
        let (m, l) = clock();
        let c = Clock { mark: &m, leap: &l };
        c.judge(100 * SEC);
        let (a, b) = (1u64 << 60, 1u64 << 61);
        for i in 0..1_000u64 {
            assert_eq!(c.judge(a + i * SEC), 100 * SEC);
            assert_eq!(c.judge(b + i * SEC), 100 * SEC);
        }
    }
}
