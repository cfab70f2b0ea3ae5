//! The hot paths, one at a time, for counting their instructions under
//! callgrind: `benches/instructions.sh` runs `instructions CASE` under
//! `valgrind --tool=callgrind --toggle-collect=measured`, so only the
//! `measured` function's loop counts, and compares the count per call with
//! the budget in `benches/instructions.txt`. Instruction counts do not
//! depend on the machine's load: a regression fails CI without timing
//! noise.
//!
//! `instructions list` prints the cases.

use std::hint::black_box;

use ratecard::{Api, Limiter, Nanos, Request};
use ratecard_benches::setup::{
    clerk_rules, frontend_request, keyed_rules, limiter, patch_user_request, ALLOWED_STEP_NS,
    KEYED_RULE,
};

/// Calls per measured loop: enough to swamp the loop's own overhead.
const CALLS: u64 = 10_000;

/// One hot path: a limiter, what one call does with it, and how far time
/// moves between calls.
struct Case {
    name: &'static str,
    setup: fn() -> Limiter<'static>,
    call: fn(&Limiter<'static>, u64),
    step: u64,
}

/// Allowed cases step by the longest emission interval (as the criterion
/// benches do), so every call is admitted; the others by 1 µs.
const SLOW: u64 = ALLOWED_STEP_NS;
const FAST: u64 = 1_000;

fn frontend_allowed(l: &Limiter<'static>, now: u64) {
    let r = frontend_request();
    black_box(l.check(black_box(&r), Nanos(now)).ok());
}

fn patch_user_allowed(l: &Limiter<'static>, now: u64) {
    let r = patch_user_request();
    black_box(l.check(black_box(&r), Nanos(now)).ok());
}

fn frontend_denied(l: &Limiter<'static>, _now: u64) {
    let r = frontend_request();
    black_box(l.check(black_box(&r), Nanos(1)).ok());
}

fn exempt(l: &Limiter<'static>, now: u64) {
    let r = Request::new(Api::Backend, b"GET", b"/v1/jwks").key(b"sk_live_abc");
    black_box(l.check(black_box(&r), Nanos(now)).ok());
}

fn check_key(l: &Limiter<'static>, now: u64) {
    black_box(
        l.check_key(KEYED_RULE, black_box(&42u64.to_le_bytes()), 1, Nanos(now))
            .ok(),
    );
}

/// A decision and the answer a host sends for it (`write_response`).
fn answer(l: &Limiter<'static>, now: u64) {
    let r = frontend_request();
    let mut buf = [0u8; 512];
    if let Ok(d) = l.check(black_box(&r), Nanos(now)) {
        black_box(d.write_response(l.rules(), &mut buf).ok());
    }
    black_box(&buf);
}

fn answer_denied(l: &Limiter<'static>, _now: u64) {
    answer(l, 1);
}

fn clerk() -> Limiter<'static> {
    limiter(clerk_rules(), 1 << 12)
}

fn clerk_exhausted() -> Limiter<'static> {
    let l = clerk();
    let r = frontend_request();
    for _ in 0..16 {
        let _ = l.check(&r, Nanos(1));
    }
    l
}

fn keyed() -> Limiter<'static> {
    limiter(keyed_rules(), 1 << 12)
}

const CASES: &[Case] = &[
    Case {
        name: "check_frontend_allowed",
        step: SLOW,
        setup: clerk,
        call: frontend_allowed,
    },
    Case {
        name: "check_patch_user_allowed",
        step: SLOW,
        setup: clerk,
        call: patch_user_allowed,
    },
    Case {
        name: "check_frontend_denied",
        step: FAST,
        setup: clerk_exhausted,
        call: frontend_denied,
    },
    Case {
        name: "answer_frontend_allowed",
        step: SLOW,
        setup: clerk,
        call: answer,
    },
    Case {
        name: "answer_frontend_denied",
        step: FAST,
        setup: clerk_exhausted,
        call: answer_denied,
    },
    Case {
        name: "check_exempt",
        step: FAST,
        setup: clerk,
        call: exempt,
    },
    Case {
        name: "check_key_u64",
        step: FAST,
        setup: keyed,
        call: check_key,
    },
];

/// The loop callgrind counts (by this name: keep it out of line).
#[inline(never)]
#[no_mangle]
pub fn measured(l: &Limiter<'static>, call: fn(&Limiter<'static>, u64), step: u64) {
    let mut now = 1u64 << 40;
    for _ in 0..CALLS {
        now += step;
        call(l, now);
    }
}

fn main() {
    let arg = std::env::args().nth(1).unwrap_or_default();
    if arg == "list" {
        for c in CASES {
            println!("{}", c.name);
        }
        return;
    }
    let Some(case) = CASES.iter().find(|c| c.name == arg) else {
        eprintln!("usage: instructions list | CASE");
        std::process::exit(2);
    };
    let l = (case.setup)();
    // One warm call outside the count (first inserts, lazy statics).
    (case.call)(&l, 1 << 40);
    measured(&l, case.call, case.step);
    println!("{} {}", case.name, CALLS);
}
