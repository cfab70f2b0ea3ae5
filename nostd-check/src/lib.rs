//! Links ratecard into a `#![no_std]` static library with no global
//! allocator: the build fails if ratecard (or anything it depends on) needs
//! `std` or `alloc`.
#![no_std]

use ratecard::{Api, Config, Nanos, Request, Seed, StaticLimiter, CLERK};

#[cfg(feature = "canary-alloc")]
extern crate alloc;

#[cfg(feature = "canary-std")]
extern crate std;

static LIMITER: StaticLimiter<16> = StaticLimiter::new(CLERK, Config::DEFAULT);

/// Seed the static limiter, decide one Frontend and one Backend request,
/// and return how many were allowed (or `u32::MAX` on an error), so the
/// whole decision path is linked.
#[no_mangle]
pub extern "C" fn ratecard_nostd_check(seed: u64, now_ns: u64) -> u32 {
    #[cfg(feature = "canary-alloc")]
    {
        let v: alloc::vec::Vec<u8> = alloc::vec::Vec::with_capacity(seed as usize);
        core::hint::black_box(&v);
    }
    let Ok(limiter) = LIMITER.seed(Seed {
        k0: seed,
        k1: !seed,
    }) else {
        return u32::MAX;
    };
    let ip = [192, 0, 2, 1];
    let requests = [
        Request::new(Api::Frontend, b"POST", b"/v1/client/sign_ins").ip(ip),
        Request::new(Api::Backend, b"PATCH", b"/v1/users/user_1").key(b"sk_test_x"),
    ];
    let mut allowed = 0;
    let mut buf = [0u8; 128];
    for r in &requests {
        match limiter.check(r, Nanos(now_ns)) {
            Ok(d) => {
                allowed += u32::from(d.allowed());
                let _ = d.write_response(limiter.rules(), &mut buf);
            }
            Err(_) => return u32::MAX,
        }
    }
    allowed
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
