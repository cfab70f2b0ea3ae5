//! The `ffi` group: `ratecard_check` and `ratecard_check_key` through the C
//! ABI against `Limiter::check` and `Limiter::check_key`, each called
//! through a black-boxed function pointer so that nothing is inlined into
//! the loop. Same request, same hot key, same table size and seed.

use core::mem::MaybeUninit;
use core::ptr;
use std::hint::black_box;

use ratecard::{CheckError, Decision, Limiter, Nanos, Request, RuleId};
use ratecard_benches::setup::{
    clerk_rules, frontend_request, limiter, ALLOWED_STEP_NS, CLIENT_IP, SEED_BYTES,
};
use ratecard_ffi::{
    ratecard_check, ratecard_check_key, ratecard_config, ratecard_config_default,
    ratecard_decision, ratecard_limiter, ratecard_limiter_free, ratecard_limiter_new,
    ratecard_request, ratecard_status, RATECARD_API_FRONTEND, RATECARD_OK,
};

use crate::Bench;

const CAPACITY: u32 = 1 << 12;
const START: u64 = 1_000_000_000;
/// The Frontend rule the keyed variants charge (5 per 10 s).
const RULE: RuleId = RuleId(0);
const KEY: &[u8] = b"203.0.113.7";

type CCheck = unsafe extern "C" fn(
    *const ratecard_limiter,
    *const ratecard_request,
    u64,
    *mut ratecard_decision,
) -> ratecard_status;
type CCheckKey = unsafe extern "C" fn(
    *const ratecard_limiter,
    u32,
    *const u8,
    usize,
    u32,
    u64,
    *mut ratecard_decision,
) -> ratecard_status;
type RustCheck<'l> = fn(&Limiter<'l>, &Request<'_>, Nanos) -> Result<Decision, CheckError>;
type RustCheckKey<'l> = fn(&Limiter<'l>, RuleId, &[u8], u32, Nanos) -> Result<Decision, CheckError>;

/// A C handle on a library-allocated table; freed on drop.
struct Handle(*mut ratecard_limiter);

impl Handle {
    fn new() -> Handle {
        let mut config = MaybeUninit::<ratecard_config>::uninit();
        // SAFETY: `config` is writable; ratecard_config_default fills it.
        let mut config = unsafe {
            ratecard_config_default(config.as_mut_ptr());
            config.assume_init()
        };
        config.capacity = CAPACITY;
        config.seed = SEED_BYTES.as_ptr();
        config.seed_len = SEED_BYTES.len();
        let mut handle = ptr::null_mut();
        // SAFETY: a valid config (its seed outlives the call) and out-pointer.
        let status = unsafe { ratecard_limiter_new(&config, &mut handle) };
        assert_eq!(status, RATECARD_OK, "ratecard_limiter_new");
        Handle(handle)
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: a live handle, freed once.
        unsafe { ratecard_limiter_free(self.0) }
    }
}

/// The C view of a Rust request from [`CLIENT_IP`].
fn c_request(r: &Request<'static>) -> ratecard_request {
    assert_eq!(r.client_ip, Some(CLIENT_IP.into()));
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
        cost: r.cost,
    }
}

pub fn benches(c: &mut Bench) {
    let mut g = c.benchmark_group("ffi");
    let request = frontend_request();

    // `now` steps by the rule's emission interval, so every call is allowed
    // and charges the slot. Each benchmark has its own table.
    let l = &limiter(clerk_rules(), CAPACITY);
    let f: RustCheck<'_> = Limiter::check;
    let f = black_box(f);
    let mut now = START;
    g.bench_function("check/rust", |b| {
        b.iter(|| {
            now += ALLOWED_STEP_NS;
            black_box(f(black_box(l), black_box(&request), black_box(Nanos(now))))
        })
    });

    let handle = Handle::new();
    let creq = c_request(&request);
    let f: CCheck = ratecard_check;
    let f = black_box(f);
    let mut now = START;
    let mut out = MaybeUninit::<ratecard_decision>::uninit();
    g.bench_function("check/c", |b| {
        b.iter(|| {
            now += ALLOWED_STEP_NS;
            // SAFETY: a live handle, a request whose strings outlive the
            // call, a writable decision.
            let status = unsafe {
                f(
                    black_box(handle.0),
                    black_box(&creq),
                    black_box(now),
                    out.as_mut_ptr(),
                )
            };
            black_box(&mut out);
            status
        })
    });

    let l = &limiter(clerk_rules(), CAPACITY);
    let f: RustCheckKey<'_> = Limiter::check_key;
    let f = black_box(f);
    let mut now = START;
    g.bench_function("check_key/rust", |b| {
        b.iter(|| {
            now += ALLOWED_STEP_NS;
            black_box(f(
                black_box(l),
                black_box(RULE),
                black_box(KEY),
                black_box(1),
                black_box(Nanos(now)),
            ))
        })
    });

    let handle = Handle::new();
    let f: CCheckKey = ratecard_check_key;
    let f = black_box(f);
    let mut now = START;
    g.bench_function("check_key/c", |b| {
        b.iter(|| {
            now += ALLOWED_STEP_NS;
            let key = black_box(KEY);
            // SAFETY: a live handle, a key valid for its length, a writable
            // decision.
            let status = unsafe {
                f(
                    black_box(handle.0),
                    black_box(RULE.0 as u32),
                    key.as_ptr(),
                    key.len(),
                    black_box(1),
                    black_box(now),
                    out.as_mut_ptr(),
                )
            };
            black_box(&mut out);
            status
        })
    });
    g.finish();
}
