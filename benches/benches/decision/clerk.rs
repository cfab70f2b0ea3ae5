//! The `decision` group: full Clerk decisions on a hot key, and their parts.

use core::hash::{BuildHasher, Hasher};
use std::hint::black_box;

use ratecard::hash::{self, Domain};
use ratecard::route::Router;
use ratecard::{Api, InstanceKind, Limiter, Nanos, Request};
use ratecard_benches::setup::{
    clerk_rules, frontend_request, limiter, patch_user_request, ALLOWED_STEP_NS, SEED, USER_PATH,
};
use siphasher::sip::SipHasher13 as Sip64;
use siphasher::sip128::{Hasher128, SipHasher13 as Sip128};

use crate::Bench;

const START: u64 = 1_000_000_000;

/// A fresh Clerk limiter: one per scenario, so their states never meet.
fn fresh() -> Limiter<'static> {
    limiter(clerk_rules(), 1 << 12)
}

/// Check `request` at `now` until it is denied.
fn exhaust(l: &Limiter<'_>, request: &Request<'_>, now: Nanos) {
    for _ in 0..10_000 {
        match l.check(request, now) {
            Ok(d) if d.allowed() => {}
            _ => return,
        }
    }
    panic!("request never denied");
}

/// One classification input: what the limiter hands its router.
struct Classify {
    name: &'static str,
    api: Api,
    kind: InstanceKind,
    method: &'static [u8],
    path: &'static [u8],
}

pub fn benches(c: &mut Bench) {
    let mut g = c.benchmark_group("decision");
    let requests = [
        ("frontend", frontend_request()),
        ("patch_user", patch_user_request()),
    ];
    for (name, request) in requests {
        // Allowed: `now` steps by the longest emission interval, so every
        // check is admitted and charges every matched rule. The clock lives
        // outside the closure: criterion calls it more than once.
        let l = &fresh();
        let mut now = START;
        g.bench_function(format!("check/{name}/allowed"), |b| {
            b.iter(|| {
                now += ALLOWED_STEP_NS;
                black_box(l.check(black_box(&request), black_box(Nanos(now))))
            })
        });

        let l = &fresh();
        exhaust(l, &request, Nanos(START));
        g.bench_function(format!("check/{name}/denied"), |b| {
            b.iter(|| black_box(l.check(black_box(&request), black_box(Nanos(START)))))
        });

        let l = &fresh();
        let _ = l.check(&request, Nanos(START));
        g.bench_function(format!("peek/{name}/allowed"), |b| {
            b.iter(|| black_box(l.peek(black_box(&request), black_box(Nanos(START)))))
        });

        let l = &fresh();
        exhaust(l, &request, Nanos(START));
        g.bench_function(format!("peek/{name}/denied"), |b| {
            b.iter(|| black_box(l.peek(black_box(&request), black_box(Nanos(START)))))
        });
    }

    let router = match Router::new(clerk_rules(), false) {
        Ok(r) => r,
        Err(e) => panic!("Clerk's routes compile: {e:?}"),
    };
    // The plain requests take the normaliser's fast branch; the spellings
    // (dots and an escape, a format suffix, a path parameter) its walk.
    let classifications = [
        Classify {
            name: "frontend",
            api: Api::Frontend,
            kind: InstanceKind::Development,
            method: b"POST",
            path: b"/v1/client/sign_ins",
        },
        Classify {
            name: "patch_user",
            api: Api::Backend,
            kind: InstanceKind::Production,
            method: b"PATCH",
            path: USER_PATH,
        },
        Classify {
            name: "frontend_dotted",
            api: Api::Frontend,
            kind: InstanceKind::Development,
            method: b"post",
            path: b"//v1/./client/%73ign_ins/?x=1",
        },
        Classify {
            name: "patch_user_suffix",
            api: Api::Backend,
            kind: InstanceKind::Production,
            method: b"PATCH",
            path: b"/v1/users/user_2NNEqL2nrIRdJ194ndJqAHwEfxC.json",
        },
        Classify {
            name: "frontend_path_parameter",
            api: Api::Frontend,
            kind: InstanceKind::Development,
            method: b"POST",
            path: b"/v1/client/sign_ins;jsessionid=1",
        },
    ];
    for Classify {
        name,
        api,
        kind,
        method,
        path,
    } in classifications
    {
        // What the limiter's hot path runs: the router compiled from the
        // table, handing each match to a closure.
        g.bench_function(format!("classify/{name}"), |b| {
            b.iter(|| {
                let mut rules_matched = 0u64;
                let summary = black_box(&router).classify_with(
                    black_box(api),
                    black_box(kind),
                    black_box(method),
                    black_box(path),
                    |m, _| rules_matched |= 1 << m.rule,
                );
                black_box((summary, rules_matched))
            })
        });
    }

    let ip4 = [203u8, 0, 113, 7];
    let ip6 = [0x20u8, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let secret = *ratecard_benches::setup::SECRET_KEY;
    let inputs: [(&[u8], Domain); 3] = [
        (&ip4, Domain::Ip),
        (&ip6, Domain::Ip),
        (&secret, Domain::SecretKey),
    ];
    for (bytes, domain) in inputs {
        g.bench_function(format!("hash_subject/{}B", bytes.len()), |b| {
            b.iter(|| hash::subject(&SEED, black_box(domain), &[], black_box(bytes)))
        });
    }

    // The hasher comparison: each hashes the same bytes with one `write`.
    let ahash_state = ahash::RandomState::with_seeds(1, 2, 3, 4);
    let fold_fast = foldhash::fast::FixedState::with_seed(SEED.k0);
    let fold_quality = foldhash::quality::FixedState::with_seed(SEED.k0);
    for (bytes, _) in inputs {
        let n = bytes.len();
        g.bench_function(format!("hasher/sip13-128/{n}B"), |b| {
            b.iter(|| {
                let mut h = Sip128::new_with_keys(black_box(SEED.k0), black_box(SEED.k1));
                h.write(black_box(bytes));
                h.finish128()
            })
        });
        g.bench_function(format!("hasher/sip13-64/{n}B"), |b| {
            b.iter(|| {
                let mut h = Sip64::new_with_keys(black_box(SEED.k0), black_box(SEED.k1));
                h.write(black_box(bytes));
                h.finish()
            })
        });
        g.bench_function(format!("hasher/ahash/{n}B"), |b| {
            b.iter(|| {
                let mut h = black_box(&ahash_state).build_hasher();
                h.write(black_box(bytes));
                h.finish()
            })
        });
        g.bench_function(format!("hasher/foldhash-fast/{n}B"), |b| {
            b.iter(|| {
                let mut h = black_box(&fold_fast).build_hasher();
                h.write(black_box(bytes));
                h.finish()
            })
        });
        g.bench_function(format!("hasher/foldhash-quality/{n}B"), |b| {
            b.iter(|| {
                let mut h = black_box(&fold_quality).build_hasher();
                h.write(black_box(bytes));
                h.finish()
            })
        });
    }
    g.finish();
}
