//! The `keyed`, `floor` and `peers` groups: one rule, opaque keys, working
//! sets of 1, 10 000 and 1 000 000 keys of three kinds, visited in a
//! pseudo-random precomputed order, back to back and in latency mode.
//! Every structure is filled with the working set before it is timed, so
//! each check finds its key.
//!
//! Heavy state (a million keys, a 32 MiB table, governor's maps) is built
//! the first time a benchmark that needs it runs, so a filtered run pays
//! only for what it times.

use std::cell::{OnceCell, RefCell};
use std::hint::black_box;

use criterion::BenchmarkId;
use ratecard::Limiter;
use ratecard::Nanos;
use ratecard_benches::floor::Floor;
use ratecard_benches::keys::{Key, KeySet};
use ratecard_benches::peers::{self, MapGcra};
use ratecard_benches::setup::{capacity_for, keyed_rules, limiter, slots_for, KEYED_RULE};

use crate::{drive, Bench, Mode};

/// The working sets.
pub const WORKING_SETS: [usize; 3] = [1, 10_000, 1_000_000];

/// The synthetic time of every keyed check (the rule's burst outlasts any
/// run at a fixed `now`).
const NOW: u64 = 1_000_000_000;

pub fn benches(c: &mut Bench) {
    direct(c);
    for ws in WORKING_SETS {
        run::<u64>(c, ws);
        run::<[u8; 16]>(c, ws);
        run::<String>(c, ws);
    }
}

fn id<K: Key>(who: &str, mode: Mode, ws: usize) -> BenchmarkId {
    BenchmarkId::new(format!("{who}/{}/{}", K::NAME, mode.name()), ws)
}

/// Every subject on `ws` keys of kind `K`.
fn run<K: Key>(c: &mut Bench, ws: usize) {
    let keys: OnceCell<KeySet<K>> = OnceCell::new();
    let keys = || keys.get_or_init(|| KeySet::new(ws));
    let capacity = capacity_for(ws);

    let mut g = c.benchmark_group("keyed");
    g.sample_size(20);
    {
        let filled: OnceCell<Limiter<'static>> = OnceCell::new();
        let filled = || {
            filled.get_or_init(|| {
                let l = limiter(keyed_rules(), capacity);
                for k in &keys().bytes {
                    let _ = l.check_key(KEYED_RULE, k.as_ref(), 1, Nanos(NOW));
                }
                l
            })
        };
        for mode in Mode::ALL {
            g.bench_function(id::<K>("ratecard", mode, ws), |b| {
                let l = filled();
                drive(b, &keys().bytes, mode, |k| {
                    let d = l.check_key(
                        black_box(KEYED_RULE),
                        k.as_ref(),
                        black_box(1),
                        black_box(Nanos(NOW)),
                    );
                    black_box(d).map_or(0, |d| d.allowed() as u64)
                })
            });
        }
    }
    g.finish();

    let mut g = c.benchmark_group("floor");
    g.sample_size(20);
    {
        let floor: OnceCell<Floor> = OnceCell::new();
        let floor = || floor.get_or_init(|| Floor::new(slots_for(capacity)));
        for mode in Mode::ALL {
            g.bench_function(id::<K>("floor", mode, ws), |b| {
                let f = floor();
                drive(b, &keys().bytes, mode, |k| black_box(f.touch(k.as_ref())))
            });
        }
    }
    g.finish();

    let mut g = c.benchmark_group("peers");
    g.sample_size(20);
    {
        let gov = OnceCell::new();
        let gov = || {
            gov.get_or_init(|| {
                let l = peers::governor_keyed::<K>();
                for k in &keys().owned {
                    let _ = l.check_key(k);
                }
                l
            })
        };
        for mode in Mode::ALL {
            g.bench_function(id::<K>("governor-keyed", mode, ws), |b| {
                let l = gov();
                drive(b, &keys().owned, mode, |k| {
                    black_box(l.check_key(k)).is_ok() as u64
                })
            });
        }
    }
    {
        let gov = OnceCell::new();
        let gov = || {
            gov.get_or_init(|| {
                let l = peers::governor_best::<K>();
                for k in &keys().owned {
                    let _ = l.check_key(k);
                }
                l
            })
        };
        for mode in Mode::ALL {
            g.bench_function(id::<K>("governor-best", mode, ws), |b| {
                let l = gov();
                drive(b, &keys().owned, mode, |k| {
                    black_box(l.check_key(k)).is_ok() as u64
                })
            });
        }
    }
    {
        let map: RefCell<Option<MapGcra<K>>> = RefCell::new(None);
        for mode in Mode::ALL {
            g.bench_function(id::<K>("hashmap-gcra", mode, ws), |b| {
                let mut slot = map.borrow_mut();
                let m = slot.get_or_insert_with(|| {
                    let mut m = MapGcra::new();
                    for k in &keys().owned {
                        m.check(k, NOW);
                    }
                    m
                });
                drive(b, &keys().owned, mode, |k| {
                    black_box(m.check(k, black_box(NOW))) as u64
                })
            });
        }
    }
    g.finish();
}

/// governor's direct (single-state) limiter: the hot-key reference with no
/// map at all.
fn direct(c: &mut Bench) {
    let mut g = c.benchmark_group("peers");
    let one = [()];
    let direct = peers::governor_direct();
    let fake = peers::governor_direct_fake();
    for mode in Mode::ALL {
        let name = format!("governor-direct/none/{}", mode.name());
        g.bench_function(BenchmarkId::new(name, 1), |b| {
            drive(b, &one, mode, |_| black_box(direct.check()).is_ok() as u64)
        });
        let name = format!("governor-direct-fake/none/{}", mode.name());
        g.bench_function(BenchmarkId::new(name, 1), |b| {
            drive(b, &one, mode, |_| black_box(fake.check()).is_ok() as u64)
        });
    }
    g.finish();
}
