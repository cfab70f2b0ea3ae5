//! Zero allocations per decision, counted rather than assumed: a counting
//! global allocator watches this thread through a million decisions.

mod common;
use common::*;

use ratecard::{write_429_body, Api, Nanos, Request, RuleId, CLERK};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Counts allocations made on the current thread (the test harness's
/// other threads do not disturb the count).
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: the thread-local may already be gone during thread exit.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every call is forwarded to `System` unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded from the caller.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded from the caller.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded from the caller.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded from the caller.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(|c| c.get())
}

const PATHS: [(Api, &[u8], &[u8]); 10] = [
    (Api::Frontend, b"POST", b"/v1/client/sign_ins"),
    (
        Api::Frontend,
        b"POST",
        b"/v1/client/sign_ins/sia_1/attempt_first_factor",
    ),
    (Api::Frontend, b"POST", b"//v1/./client/%73ign_ups/?x=1"),
    (Api::Frontend, b"GET", b"/v1/client"),
    (
        Api::Backend,
        b"PATCH",
        b"/v1/users/user_2bYqQm7cJxHk0gT4aVb9",
    ),
    (
        Api::Backend,
        b"PUT",
        b"/v1/organizations/org_1/memberships/user_1/metadata",
    ),
    (Api::Backend, b"POST", b"/v1/invitations"),
    (Api::Backend, b"GET", b"/v1/users/me"),
    (Api::Backend, b"GET", b"/v1/jwks"),
    (Api::Backend, b"POST", b"/v1/users%2Fx"),
];

/// Spellings that take the normaliser's slow branches.
const SPELLINGS: [(Api, &[u8], &[u8]); 5] = [
    (Api::Frontend, b"POST", b"/v1/client/sign_ins;jsessionid=1"),
    (
        Api::Frontend,
        b"POST",
        b"http://host/v1/client/sign_ins?x=1",
    ),
    (Api::Backend, b"PATCH", b"/v1/users/user_1.json"),
    (Api::Backend, b"PATCH", b"/V1/USERS/User_1"),
    (Api::Backend, b"GET", b"/v1/jwks.json"),
];

const KEYS: [&[u8]; 3] = [
    b"sk_live_2bYqQm7cJxHk0gT4aVb9Hn4Rk8sWq2Lm5Vb7Xc1Z",
    b"Bearer sk_test_Hn4Rk8sWq2Lm5Vb7Xc1Z2bYqQm7cJxHk",
    b"rk_unknown",
];

/// One round of mixed work: every kind of request, allowed and denied,
/// checks, peeks, keyed checks and the response helpers.
fn round(l: &ratecard::Limiter<'_>, i: u64, now: u64, buf: &mut [u8; 256]) -> (u64, u64) {
    let mut allowed = 0;
    let mut denied = 0;
    let (api, method, path) = if i.is_multiple_of(9) {
        SPELLINGS[(i / 9 % SPELLINGS.len() as u64) as usize]
    } else {
        PATHS[(i % PATHS.len() as u64) as usize]
    };
    // A few hundred clients, so both fresh and exhausted keys are seen.
    let ip = [10, (i >> 16) as u8, (i >> 8) as u8 & 1, i as u8];
    let ip6 = [
        0x20,
        0x01,
        0x0d,
        0xb8,
        0,
        0,
        0,
        i as u8 & 7,
        1,
        2,
        3,
        4,
        5,
        6,
        7,
        8,
    ];
    let r = Request {
        api,
        method,
        path,
        client_ip: Some(if i.is_multiple_of(3) {
            ip6.into()
        } else {
            ip.into()
        }),
        secret_key: KEYS[(i % 3) as usize],
        tenant: if i.is_multiple_of(5) { b"tenant" } else { b"" },
        cost: (i % 4) as u32,
    };
    let d = if i.is_multiple_of(7) {
        l.peek(&r, Nanos(now))
    } else {
        l.check(&r, Nanos(now))
    }
    .unwrap();
    if d.allowed() {
        allowed += 1;
    } else {
        denied += 1;
    }
    let _ = d.write_retry_after(buf);
    let _ = d.write_ratelimit_policy(&CLERK, buf);
    let _ = d.write_ratelimit(&CLERK, &mut buf[..8]);
    if i.is_multiple_of(11) {
        let _ = write_429_body(buf);
    }
    if i.is_multiple_of(13) {
        let _ = d.write_response(&CLERK, buf);
    }
    let key = (i % 64).to_le_bytes();
    let k = l
        .check_key(RuleId((i % 14) as u8), &key, 1, Nanos(now))
        .unwrap();
    if k.allowed() {
        allowed += 1;
    } else {
        denied += 1;
    }
    if i.is_multiple_of(1_000) {
        let _ = l.reset(&r);
        let _ = l.stats();
    }
    (allowed, denied)
}

#[test]
fn a_million_decisions_allocate_nothing() {
    let l = clerk_with(|c| c.fold_case = true);
    let mut buf = [0u8; 256];
    let mut now = 5_000 * SEC;
    // Warm-up: thread-locals, lazy statics, anything the first call touches.
    for i in 0..1_000 {
        round(&l, i, now, &mut buf);
    }
    let before = allocations();
    let (mut allowed, mut denied) = (0u64, 0u64);
    // 500 000 rounds of two decisions each.
    for i in 0..500_000u64 {
        now += 1_000; // 1 µs per round: hot keys run out, then come back
        let (a, d) = round(&l, i, now, &mut buf);
        allowed += a;
        denied += d;
    }
    let after = allocations();
    assert_eq!(after - before, 0, "allocations during 1 000 000 decisions");
    assert_eq!(allowed + denied, 1_000_000);
    assert!(
        allowed > 10_000 && denied > 10_000,
        "allowed {allowed}, denied {denied}"
    );
}

#[test]
fn the_counter_sees_an_allocation_on_this_thread() {
    // The instrument works: a Vec's buffer is counted.
    let before = allocations();
    let v: Vec<u8> = std::hint::black_box(Vec::with_capacity(16));
    assert_eq!(allocations() - before, 1);
    drop(v);
}
