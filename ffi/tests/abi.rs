//! The C ABI, called from Rust: it decides exactly as the Rust limiter does.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ffi::CStr;
use std::ptr;

use ratecard::*;
use ratecard_core::{Api, Config, Limiter, Nanos, Request, Seed, CLERK};

const SEED: [u8; 16] = *b"0123456789abcdef";
const SEC: u64 = 1_000_000_000;

fn c_limiter(capacity: u32) -> *mut ratecard_limiter {
    let mut c = std::mem::MaybeUninit::<ratecard_config>::uninit();
    // SAFETY: a valid out-pointer; config_default fills every field.
    let mut c = unsafe {
        ratecard_config_default(c.as_mut_ptr());
        c.assume_init()
    };
    c.capacity = capacity;
    c.seed = SEED.as_ptr();
    c.seed_len = SEED.len();
    let mut l = ptr::null_mut();
    // SAFETY: valid config and out-pointer.
    assert_eq!(unsafe { ratecard_limiter_new(&c, &mut l) }, RATECARD_OK);
    l
}

fn c_request(r: &Request<'_>) -> ratecard_request {
    ratecard_request {
        api: r.api as u32,
        method: r.method.as_ptr(),
        method_len: r.method.len(),
        path: r.path.as_ptr(),
        path_len: r.path.len(),
        client_ip: r.client_ip.as_ptr(),
        client_ip_len: r.client_ip.len(),
        secret_key: r.secret_key.as_ptr(),
        secret_key_len: r.secret_key.len(),
        tenant: r.tenant.as_ptr(),
        tenant_len: r.tenant.len(),
        cost: r.cost,
    }
}

#[test]
fn c_abi_decisions_equal_the_rust_limiters() {
    let capacity = 4096;
    let len = Limiter::bytes_for(capacity).unwrap();
    let layout = Layout::from_size_align(len, 64).unwrap();
    // SAFETY: non-zero size; freed below.
    let mem = unsafe { alloc_zeroed(layout) };
    let config = Config {
        capacity,
        ..Config::DEFAULT
    };
    check_alike(mem, len, &config, capacity);
    // SAFETY: allocated above with this layout; the limiter on it is gone.
    unsafe { dealloc(mem, layout) };
}

fn check_alike(mem: *mut u8, len: usize, config: &Config, capacity: u32) {
    // SAFETY: `len` bytes the caller owns, used only through the limiter.
    let rust =
        unsafe { Limiter::init_raw(mem, len, config, CLERK, Seed::from_bytes(SEED)) }.unwrap();
    let c = c_limiter(capacity);

    let ip = [10, 0, 0, 1];
    let requests = [
        Request::new(Api::Frontend, b"POST", b"/v1/client/sign_ins").ip(&ip),
        Request::new(Api::Frontend, b"POST", b"/v1/sign_ins/attempt_first_factor").ip(&ip),
        Request::new(Api::Backend, b"PATCH", b"/v1/users/user_1").key(b"Bearer sk_live_x"),
        Request::new(Api::Backend, b"POST", b"/v1/invitations/bulk")
            .key(b"sk_test_y")
            .cost(3),
        Request::new(Api::Backend, b"GET", b"/v1/jwks").key(b"sk_test_y"),
        Request::new(Api::Backend, b"GET", b"/nowhere").key(b"sk_test_y"),
    ];
    for step in 0..400u64 {
        let now = 1_000 * SEC + step * (SEC / 7);
        for r in &requests {
            let want = rust.check(r, Nanos(now)).unwrap();
            let mut got = std::mem::MaybeUninit::<ratecard_decision>::uninit();
            let cr = c_request(r);
            // SAFETY: live handle, valid request and out-pointer.
            assert_eq!(
                unsafe { ratecard_check(c, &cr, now, got.as_mut_ptr()) },
                RATECARD_OK
            );
            // SAFETY: written on RATECARD_OK.
            let got = unsafe { got.assume_init() };
            assert_eq!(
                (got.allowed, got.exempt, got.dry_run_denied, got.never_fits),
                (
                    want.allowed,
                    want.exempt,
                    want.dry_run_denied,
                    want.never_fits
                )
            );
            assert_eq!(
                (got.rule, got.limit, got.remaining, got.matched),
                (want.rule, want.limit, want.remaining, want.matched)
            );
            assert_eq!(
                (got.reset_ns, got.retry_after_ns, got.retry_after_secs),
                (want.reset.0, want.retry_after.0, want.retry_after_secs)
            );
            assert_eq!(got.reserved, [0; 4]);
        }
    }
    // SAFETY: our handle, freed once.
    unsafe { ratecard_limiter_free(c) };
}

#[test]
fn version_is_the_crate_version() {
    // SAFETY: static NUL-terminated text.
    let v = unsafe { CStr::from_ptr(ratecard_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn ip_parse_writes_4_or_16_bytes() {
    let cases: &[(&str, Option<&[u8]>)] = &[
        ("203.0.113.9", Some(&[203, 0, 113, 9])),
        ("::ffff:203.0.113.9", Some(&[203, 0, 113, 9])),
        ("[::ffff:203.0.113.9]", Some(&[203, 0, 113, 9])),
        (
            "2001:db8::1",
            Some(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
        ),
        (
            "[::1]",
            Some(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
        ),
        ("\t10.1.2.3 \n", Some(&[10, 1, 2, 3])),
        ("[10.1.2.3", None),
        ("010.1.2.3", None),
        ("::1]", None),
        ("localhost", None),
    ];
    for (text, want) in cases {
        let mut out = [0xEEu8; 16];
        let mut n = 99usize;
        // SAFETY: valid text, 16-byte buffer, out-pointer.
        let s = unsafe { ratecard_ip_parse(text.as_ptr(), text.len(), out.as_mut_ptr(), &mut n) };
        match want {
            Some(bytes) => {
                assert_eq!(s, RATECARD_OK, "{text}");
                assert_eq!(&out[..n], *bytes, "{text}");
            }
            None => {
                assert_eq!(s, RATECARD_INVALID_IP_TEXT, "{text}");
                assert_eq!((n, out), (99, [0xEE; 16]), "{text}");
            }
        }
    }
}
