//! The hot paths, one at a time, for counting their instructions under
//! callgrind: `benches/instructions.sh` runs `instructions CASE` (an example, so it may link the C ABI, a dev-dependency) under
//! `valgrind --tool=callgrind --toggle-collect=measured`, so only the
//! `measured` function's loop counts, and compares the count per call with
//! the budget in `benches/instructions.txt`. Instruction counts do not
//! depend on the machine's load: a regression fails CI without timing
//! noise.
//!
//! `instructions list` prints the cases.

use std::hint::black_box;

use core::mem::MaybeUninit;
use core::ptr;

use ratecard::{Api, Limiter, Nanos, Request, RuleId};
use ratecard_benches::setup::{
    clerk_rules, frontend_request, keyed_rules, limiter, patch_user_request, ALLOWED_STEP_NS,
    CLIENT_IP, KEYED_RULE, SEED_BYTES,
};
use ratecard_ffi::{
    ratecard_check, ratecard_check_key, ratecard_config_default, ratecard_decision,
    ratecard_limiter, ratecard_limiter_new, ratecard_request, RATECARD_API_FRONTEND,
};

/// Calls per measured loop: enough to swamp the loop's own overhead.
const CALLS: u64 = 10_000;

/// What a case calls: a Rust limiter, and a C handle on a table of the
/// same rules, size and seed (for the C ABI cases).
struct Ctx {
    l: Limiter<'static>,
    c: *mut ratecard_limiter,
}

/// One hot path: its limiter, what one call does with it, and how far time
/// moves between calls.
struct Case {
    name: &'static str,
    setup: fn() -> Ctx,
    call: fn(&Ctx, u64),
    step: u64,
}

/// Allowed cases step by the longest emission interval (as the criterion
/// benches do), so every call is admitted; the others by 1 µs.
const SLOW: u64 = ALLOWED_STEP_NS;
const FAST: u64 = 1_000;

fn frontend_allowed(ctx: &Ctx, now: u64) {
    let l = &ctx.l;
    let r = frontend_request();
    black_box(l.check(black_box(&r), Nanos(now)).ok());
}

fn patch_user_allowed(ctx: &Ctx, now: u64) {
    let l = &ctx.l;
    let r = patch_user_request();
    black_box(l.check(black_box(&r), Nanos(now)).ok());
}

fn frontend_denied(ctx: &Ctx, _now: u64) {
    let l = &ctx.l;
    let r = frontend_request();
    black_box(l.check(black_box(&r), Nanos(1)).ok());
}

fn exempt(ctx: &Ctx, now: u64) {
    let l = &ctx.l;
    let r = Request::new(Api::Backend, b"GET", b"/v1/jwks").key(b"sk_live_abc");
    black_box(l.check(black_box(&r), Nanos(now)).ok());
}

fn check_key(ctx: &Ctx, now: u64) {
    let l = &ctx.l;
    black_box(
        l.check_key(KEYED_RULE, black_box(&42u64.to_le_bytes()), 1, Nanos(now))
            .ok(),
    );
}

/// A decision and the answer a host sends for it (`write_response`).
fn answer(ctx: &Ctx, now: u64) {
    let l = &ctx.l;
    let r = frontend_request();
    let mut buf = [0u8; 512];
    if let Ok(d) = l.check(black_box(&r), Nanos(now)) {
        black_box(d.write_response(l.rules(), &mut buf).ok());
    }
    black_box(&buf);
}

fn answer_denied(ctx: &Ctx, _now: u64) {
    answer(ctx, 1);
}

/// A C handle on the C ABI's built-in table (Clerk's), 2^12 slots.
fn c_handle() -> *mut ratecard_limiter {
    let mut config = MaybeUninit::uninit();
    // SAFETY: `config` is writable; ratecard_config_default fills it.
    let mut config = unsafe {
        ratecard_config_default(config.as_mut_ptr());
        config.assume_init()
    };
    config.capacity = 1 << 12;
    config.seed = SEED_BYTES.as_ptr();
    config.seed_len = SEED_BYTES.len();
    let mut handle = ptr::null_mut();
    // SAFETY: a valid config (its seed is static) and out-pointer.
    let status = unsafe { ratecard_limiter_new(&config, &mut handle) };
    assert_eq!(status, 0, "ratecard_limiter_new");
    handle
}

fn clerk() -> Ctx {
    Ctx {
        l: limiter(clerk_rules(), 1 << 12),
        c: c_handle(),
    }
}

/// The C view of [`frontend_request`].
fn c_frontend() -> ratecard_request {
    let r = frontend_request();
    ratecard_request {
        api: RATECARD_API_FRONTEND,
        method: r.method.as_ptr(),
        method_len: r.method.len(),
        path: r.path.as_ptr(),
        path_len: r.path.len(),
        client_ip: CLIENT_IP.as_ptr(),
        client_ip_len: CLIENT_IP.len(),
        secret_key: ptr::null(),
        secret_key_len: 0,
        tenant: ptr::null(),
        tenant_len: 0,
        cost: 1,
    }
}

fn c_frontend_allowed(ctx: &Ctx, now: u64) {
    let r = c_frontend();
    let mut out = MaybeUninit::<ratecard_decision>::uninit();
    // SAFETY: a live handle, a request whose strings are static, a writable
    // decision.
    black_box(unsafe { ratecard_check(ctx.c, black_box(&r), now, out.as_mut_ptr()) });
    black_box(&mut out);
}

/// `check_key` on Clerk's first rule: the Rust twin of [`c_check_key`].
fn check_key_clerk(ctx: &Ctx, now: u64) {
    black_box(
        ctx.l
            .check_key(RuleId(0), black_box(&42u64.to_le_bytes()), 1, Nanos(now))
            .ok(),
    );
}

fn c_check_key(ctx: &Ctx, now: u64) {
    let key = black_box(42u64.to_le_bytes());
    let mut out = MaybeUninit::<ratecard_decision>::uninit();
    // SAFETY: a live handle, a key valid for its length, a writable decision.
    black_box(unsafe {
        ratecard_check_key(ctx.c, 0, key.as_ptr(), key.len(), 1, now, out.as_mut_ptr())
    });
    black_box(&mut out);
}

fn clerk_exhausted() -> Ctx {
    let ctx = clerk();
    let r = frontend_request();
    for _ in 0..16 {
        let _ = ctx.l.check(&r, Nanos(1));
    }
    ctx
}

fn keyed() -> Ctx {
    Ctx {
        l: limiter(keyed_rules(), 1 << 12),
        c: ptr::null_mut(),
    }
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
    Case {
        name: "c_check_frontend_allowed",
        step: SLOW,
        setup: clerk,
        call: c_frontend_allowed,
    },
    Case {
        name: "check_key_u64_clerk",
        step: FAST,
        setup: clerk,
        call: check_key_clerk,
    },
    Case {
        name: "c_check_key_u64_clerk",
        step: FAST,
        setup: clerk,
        call: c_check_key,
    },
];

/// The loop callgrind counts (by this name: keep it out of line).
#[inline(never)]
#[no_mangle]
fn measured(ctx: &Ctx, call: fn(&Ctx, u64), step: u64) {
    let mut now = 1u64 << 40;
    for _ in 0..CALLS {
        now += step;
        call(ctx, now);
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
    let ctx = (case.setup)();
    // One warm call outside the count (first inserts, lazy statics).
    (case.call)(&ctx, 1 << 40);
    measured(&ctx, case.call, case.step);
    println!("{} {}", case.name, CALLS);
}
