//! The `contended` group: the keyed check from two threads at once, on one
//! shared key and on distinct keys, against the same work on one thread.
//! Each figure is the time one thread takes per check while the others run
//! (wall time of `iters` checks per thread, the slowest thread's).

use std::hint::black_box;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use criterion::BenchmarkId;
use ratecard::Nanos;
use ratecard_benches::keys::KeySet;
use ratecard_benches::peers;
use ratecard_benches::setup::{capacity_for, keyed_rules, limiter, KEYED_RULE};

use crate::Bench;

/// Keys each thread cycles through in the distinct-keys case.
const PER_THREAD: usize = 1024;
const NOW: u64 = 1_000_000_000;

/// Run `work(thread, iters)` on `threads` threads started together; the
/// slowest thread's time.
fn parallel(threads: usize, iters: u64, work: &(dyn Fn(usize, u64) + Sync)) -> Duration {
    let barrier = Barrier::new(threads);
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    work(t, iters);
                    start.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .max()
            .unwrap_or_default()
    })
}

/// The keys of thread `t`: the shared key, or its own `PER_THREAD`.
fn slice<T>(keys: &[T], t: usize, distinct: bool) -> &[T] {
    if distinct {
        &keys[t * PER_THREAD..(t + 1) * PER_THREAD]
    } else {
        &keys[..1]
    }
}

fn cycle<T>(keys: &[T], iters: u64, mut op: impl FnMut(&T)) {
    let mut i = 0;
    for _ in 0..iters {
        op(black_box(&keys[i]));
        i += 1;
        if i == keys.len() {
            i = 0;
        }
    }
}

pub fn benches(c: &mut Bench) {
    let mut g = c.benchmark_group("contended");
    g.sample_size(20);
    let keys = KeySet::<u64>::new(2 * PER_THREAD);
    let cases = [("one-key", false), ("distinct-keys", true)];
    for (case, distinct) in cases {
        let ws = if distinct { PER_THREAD } else { 1 };
        for threads in [1, 2] {
            let mode = format!("{case}/{threads}-threads");

            let l = &limiter(keyed_rules(), capacity_for(2 * PER_THREAD));
            g.bench_function(BenchmarkId::new(format!("ratecard/{mode}"), ws), |b| {
                b.iter_custom(|iters| {
                    parallel(threads, iters, &|t, iters| {
                        cycle(slice(&keys.bytes, t, distinct), iters, |k| {
                            let _ = black_box(l.check_key(KEYED_RULE, k, 1, black_box(Nanos(NOW))));
                        })
                    })
                })
            });

            let gov = peers::governor_keyed::<u64>();
            g.bench_function(
                BenchmarkId::new(format!("governor-keyed/{mode}"), ws),
                |b| {
                    b.iter_custom(|iters| {
                        parallel(threads, iters, &|t, iters| {
                            cycle(slice(&keys.owned, t, distinct), iters, |k| {
                                black_box(gov.check_key(k)).ok();
                            })
                        })
                    })
                },
            );

            let best = peers::governor_best::<u64>();
            g.bench_function(BenchmarkId::new(format!("governor-best/{mode}"), ws), |b| {
                b.iter_custom(|iters| {
                    parallel(threads, iters, &|t, iters| {
                        cycle(slice(&keys.owned, t, distinct), iters, |k| {
                            black_box(best.check_key(k)).ok();
                        })
                    })
                })
            });
        }
    }
    g.finish();
}
