//! ratecard's criterion benchmarks, every figure next to its baselines in
//! the same run:
//!
//! - `decision`: full Clerk decisions on a hot key (check and peek, allowed
//!   and denied), classification alone, hashing alone, and SipHash-1-3
//!   against ahash and foldhash;
//! - `keyed`, `floor`, `peers`: the generic keyed check on 1, 10 000 and
//!   1 000 000 keys of three kinds, back to back and in latency mode, with
//!   the memory floor and governor / a plain hash map on the same keys;
//! - `ffi`: the C ABI against the Rust call, both through function pointers;
//! - `contended`: two threads on one key and on distinct keys.
//!
//! Times are wall time, or the benchmark thread's CPU time with
//! `RATECARD_BENCH_CLOCK=cpu` (see [`clock`]).
//!
//! `now` is synthetic everywhere (ratecard never reads a clock); governor's
//! default configuration reads its own, as its users' programs do.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Bencher, Criterion};
use ratecard_benches::serial::fence;

use crate::clock::Clock;

mod clerk;
mod clock;
mod contended;
mod ffi;
mod keyed;

/// How consecutive operations relate.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Operations follow each other freely: the CPU may overlap one's cache
    /// misses with the next one's (throughput).
    BackToBack,
    /// Each operation is followed by a fence, and the next key's index
    /// depends on its result: one cache miss at a time (latency).
    Latency,
}

impl Mode {
    /// Both modes.
    pub const ALL: [Mode; 2] = [Mode::BackToBack, Mode::Latency];

    /// The name used in benchmark ids.
    pub fn name(self) -> &'static str {
        match self {
            Mode::BackToBack => "back-to-back",
            Mode::Latency => "latency",
        }
    }
}

/// Time `op` over `keys` in order, cycling. `op` black-boxes its full
/// output and returns a word of it, which latency mode feeds into the next
/// key's index.
#[inline(always)]
pub fn drive<T>(b: &mut Bencher<'_, Clock>, keys: &[T], mode: Mode, mut op: impl FnMut(&T) -> u64) {
    let n = keys.len();
    let mut i = 0usize;
    match mode {
        Mode::BackToBack => b.iter(|| {
            let r = op(black_box(&keys[i]));
            i += 1;
            if i == n {
                i = 0;
            }
            r
        }),
        Mode::Latency => {
            // Zero, but opaque: `r & zero` makes the next index wait for `r`.
            let zero = black_box(0u64);
            b.iter(|| {
                let r = op(black_box(&keys[i]));
                fence();
                i += 1 + (r & zero) as usize;
                if i >= n {
                    i = 0;
                }
                r
            })
        }
    }
}

/// Criterion on the clock `RATECARD_BENCH_CLOCK` selects.
pub type Bench = Criterion<Clock>;

fn config() -> Bench {
    pages_from_env();
    Criterion::default().with_measurement(Clock::from_env())
}

/// The environment variable that turns transparent huge pages off.
const THP_ENV: &str = "RATECARD_BENCH_THP";

/// With `RATECARD_BENCH_THP=off`, no transparent huge pages for this
/// process (`PR_SET_THP_DISABLE`, which overrides `MADV_HUGEPAGE`): the
/// tables, the floor and the peers' maps all sit on 4 KiB pages. The
/// baseline of the huge-page comparison in `benches/README.md`.
fn pages_from_env() {
    match std::env::var(THP_ENV) {
        Ok(v) if v == "off" => {
            // SAFETY: prctl with integer arguments only.
            let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
            assert_eq!(rc, 0, "prctl(PR_SET_THP_DISABLE)");
            eprintln!("transparent huge pages: off for this process");
        }
        Ok(v) if v == "on" || v.is_empty() => {}
        Ok(v) => panic!("{THP_ENV}={v}: expected `off` or `on`"),
        Err(_) => {}
    }
}

criterion_group!(
    name = benches;
    config = config();
    targets = clerk::benches, keyed::benches, ffi::benches, contended::benches
);
criterion_main!(benches);
