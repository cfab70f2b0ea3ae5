//! Never looser than the limit under any interleaving: threads and processes
//! sharing one table.

mod common;
use common::*;
mod model;
use ratecard::{
    Api, Config, HandleOptions, Limiter, Nanos, Quota, Request, Route, Rule, RuleId, RuleTable,
    Scope, CLERK,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;

const ROUTES: &[Route<'static>] = &[];
const RULES: &[Rule<'static>] = &[
    Rule::new(
        "test.ten",
        Api::Backend,
        Scope::Instance,
        ROUTES,
        Quota::per_secs(10, 10),
    ),
    Rule::new(
        "test.one",
        Api::Backend,
        Scope::Instance,
        ROUTES,
        Quota::per_secs(1, 10),
    ),
];

fn threads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 8)
        * 2
}

#[test]
fn threads_on_one_key_with_a_frozen_clock_admit_exactly_the_burst() {
    let l = clerk();
    let allowed = AtomicU64::new(0);
    let n = threads();
    let barrier = Barrier::new(n);
    std::thread::scope(|s| {
        for _ in 0..n {
            s.spawn(|| {
                barrier.wait();
                let ip = [192, 0, 2, 1];
                let r = Request::new(Api::Frontend, b"POST", b"/v1/client/sign_ins").ip(ip);
                for _ in 0..2_000 {
                    if l.check(&r, Nanos(5 * SEC)).unwrap().allowed() {
                        allowed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let burst = model::row("fapi.sign_ins.create").limit as u64;
    assert_eq!(allowed.load(Ordering::Relaxed), burst);
}

#[test]
fn threads_on_one_key_with_a_moving_clock_stay_within_burst_plus_elapsed() {
    let l = limiter_with(
        Config {
            capacity: 1024,
            ..Config::DEFAULT
        },
        RuleTable::new(RULES),
    );
    let allowed = AtomicU64::new(0);
    let n = threads();
    let clock = AtomicU64::new(SEC);
    let barrier = Barrier::new(n);
    std::thread::scope(|s| {
        for _ in 0..n {
            s.spawn(|| {
                barrier.wait();
                for _ in 0..5_000 {
                    // Every thread advances one shared clock: time is monotonic.
                    let now = clock.fetch_add(100_000, Ordering::Relaxed);
                    if l.check_key(RuleId(0), b"key", 1, Nanos(now))
                        .unwrap()
                        .allowed()
                    {
                        allowed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let elapsed = clock.load(Ordering::Relaxed) - SEC;
    let t = SEC; // 10 per 10 s
    let bound = 10 + elapsed / t;
    let got = allowed.load(Ordering::Relaxed);
    assert!(got <= bound, "{got} admitted, bound {bound}");
    // Out-of-order timestamps between threads may deny some requests (a
    // step back hands nothing back), but the burst itself always passes.
    assert!(
        got >= 10,
        "{got} admitted, at least the burst of 10 expected"
    );
}

#[test]
fn racing_inserts_of_one_new_key_admit_one_request_in_pace_mode() {
    for round in 0..200u64 {
        let l = limiter_with(
            Config {
                capacity: 64,
                pace: true,
                ..Config::DEFAULT
            },
            RuleTable::new(RULES),
        );
        let allowed = AtomicU64::new(0);
        let n = threads();
        let barrier = Barrier::new(n);
        std::thread::scope(|s| {
            for _ in 0..n {
                s.spawn(|| {
                    barrier.wait();
                    if l.check_key(RuleId(0), &round.to_le_bytes(), 1, Nanos(SEC))
                        .unwrap()
                        .allowed()
                    {
                        allowed.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        assert_eq!(allowed.load(Ordering::Relaxed), 1, "round {round}");
        assert_eq!(
            l.stats().occupancy,
            1,
            "round {round}: one slot for one key"
        );
    }
}

#[test]
fn threads_on_many_keys_in_a_crowded_table_never_exceed_any_keys_burst() {
    // 3 000 keys in 2 048 slots: relocation and eviction run under contention.
    let l = limiter_with(
        Config {
            capacity: 2048,
            policy: ratecard::Policy::Deny,
            ..Config::DEFAULT
        },
        RuleTable::new(RULES),
    );
    let per_key: Vec<AtomicU64> = (0..3_000).map(|_| AtomicU64::new(0)).collect();
    let n = threads();
    let barrier = Barrier::new(n);
    std::thread::scope(|s| {
        for t in 0..n {
            let (l, per_key, barrier) = (&l, &per_key, &barrier);
            s.spawn(move || {
                barrier.wait();
                let mut x = t as u64 + 1;
                for _ in 0..20_000 {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let k = (x >> 33) as usize % per_key.len();
                    if l.check_key(RuleId(1), &(k as u64).to_le_bytes(), 1, Nanos(SEC))
                        .unwrap()
                        .allowed()
                    {
                        per_key[k].fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let stats = l.stats();
    assert_eq!(
        stats.evicted_in_debt, 0,
        "the Deny policy never evicts in debt"
    );
    // At a fixed clock every admitted key stays in debt: nothing is replaced.
    assert_eq!(stats.evicted, 0);
    for (k, c) in per_key.iter().enumerate() {
        assert!(
            c.load(Ordering::Relaxed) <= 1,
            "key {k} admitted {} with burst 1",
            c.load(Ordering::Relaxed)
        );
    }
}

#[test]
fn processes_sharing_one_mapping_admit_exactly_the_burst() {
    let capacity = 4096;
    let len = Limiter::bytes_for(capacity).unwrap();
    // SAFETY: an anonymous shared mapping of `len` bytes, unmapped below.
    let mem = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(mem, libc::MAP_FAILED);
    let mem = mem as *mut u8;
    // SAFETY: the mapping is valid for `len` bytes until munmap.
    unsafe {
        Limiter::init_raw(
            mem,
            len,
            &Config {
                capacity,
                ..Config::DEFAULT
            },
            CLERK,
            SEED,
        )
        .unwrap()
    };
    let children = 4;
    let mut pids = Vec::new();
    for _ in 0..children {
        // SAFETY: the child only runs code that does not allocate-and-lock
        // across the fork boundary, then exits with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: as above; the mapping is inherited.
            let l = unsafe { Limiter::attach_raw(mem, len, CLERK, HandleOptions::default()) };
            let mut ok = 0;
            if let Ok(l) = l {
                let key = b"sk_test_shared";
                let r = Request::new(Api::Backend, b"POST", b"/v1/invitations").key(key);
                for _ in 0..500 {
                    if let Ok(d) = l.check(&r, Nanos(7 * SEC)) {
                        ok += d.allowed() as i32;
                    }
                }
            } else {
                ok = 255;
            }
            // SAFETY: leave without running the parent's destructors.
            unsafe { libc::_exit(ok) };
        }
        pids.push(pid);
    }
    let mut total = 0;
    for pid in pids {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status));
        let code = libc::WEXITSTATUS(status);
        assert_ne!(code, 255, "a child could not attach");
        total += code;
    }
    // SAFETY: unmapping what we mapped; no handle outlives this.
    unsafe { libc::munmap(mem as *mut libc::c_void, len) };
    // At one instant both rules admit their burst: the development
    // instance (100 / 10 s) and the invitation row (100 / hour).
    let burst = model::row("bapi.instance.development")
        .limit
        .min(model::row("bapi.invitations.create").limit) as i32;
    assert_eq!(total, burst, "four processes on one key");
}
