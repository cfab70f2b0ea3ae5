//! A table's memory as an attacker (or a crashed process, or a stray write)
//! may leave it.
//!
//! - `Raw`: arbitrary bytes, at an arbitrary offset from a 64-byte boundary,
//!   in an allocation that ends exactly where they do: `attach` refuses or
//!   accepts without panicking and without reading out of bounds
//!   (AddressSanitizer watches the allocation's end).
//! - `Header`: a table laid out by `init`, then one header word overwritten:
//!   any change to a fixed field or the checksum is `Corrupt` or
//!   `NotATable`; the sequence word is accepted only even and non-zero
//!   (odd: a writer at work, `NotSeeded`); the judged-time and spare words
//!   are not verified.
//! - `Truncated` / `Moved`: a valid table copied into a shorter allocation,
//!   or to a misaligned address: `TooSmall` / `Misaligned`, never a read
//!   past the end.
//! - `Garbage` / `Counters`: a valid header over slots (or counters)
//!   overwritten with arbitrary bytes: attaching works, and checks, peeks,
//!   keyed checks, resets and stats on it never panic (a request may be
//!   decided anything, but returns a well-formed decision or a documented
//!   error). Found here: `stats` overflowing on huge counters
//!   (core/tests/fuzz_regressions.rs).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ratecard::table::counters::{Stripe, OUTCOMES, STRIPES};
use ratecard::{
    Algorithm, Api, CheckError, Config, HandleOptions, InstanceKind, Limiter, Nanos, Policy,
    Request, RuleId, Seed, SetupError, Verdict, CLERK, MAX_RULES,
};
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::net::IpAddr;

const HEADER_BYTES: usize = std::mem::size_of::<ratecard::table::header::Header>();
const HEADER_WORDS: usize = 32;
const FIXED_AND_CHECKSUM: usize = 9;
/// The sequence word: even and non-zero when the header is ready.
const SEQ_WORD: usize = 9;

#[derive(Arbitrary, Debug)]
enum Case {
    Raw {
        offset: u8,
        bytes: Vec<u8>,
    },
    Header {
        setup: Setup,
        word: u8,
        xor: u64,
    },
    Truncated {
        setup: Setup,
        cut: u32,
    },
    Moved {
        setup: Setup,
        offset: u8,
    },
    Garbage {
        setup: Setup,
        /// (offset into the slot region, bytes) written in order.
        patches: Vec<(u32, Vec<u8>)>,
        /// Slot words written whole, so tags and markers are plausible.
        words: Vec<(u16, u64, u64)>,
        dry_run: bool,
        policy: u8,
        requests: Vec<Req>,
    },
    Counters {
        setup: Setup,
        /// (stripe, counter, value): counters 0..256 are the per-rule
        /// outcomes (allowed, limited, dry-run limited, exempt), then
        /// unmatched, errors, inserts, evicted, evicted in debt, full.
        counters: Vec<(u8, u8, u64)>,
        requests: Vec<Req>,
    },
}

const STRIPE_BYTES: usize = std::mem::size_of::<Stripe>();
/// Counters in a stripe: the per-rule outcomes and six global ones.
const COUNTERS: usize = OUTCOMES * MAX_RULES + 6;

#[derive(Arbitrary, Debug)]
struct Setup {
    capacity: u8,
    ipv6_prefix: u8,
    unknown_production: bool,
    pace: bool,
    algorithm: u8,
    policy: u8,
    seed: (u64, u64),
    fold_case: bool,
}

#[derive(Arbitrary, Debug)]
enum Req {
    Check(Http, u64),
    Peek(Http, u64),
    Reset(Http),
    CheckKey(u32, Vec<u8>, u32, u64),
    PeekKey(u32, Vec<u8>, u32, u64),
    ResetKey(u32, Vec<u8>),
    Stats,
}

#[derive(Arbitrary, Debug)]
struct Http {
    backend: bool,
    method: Vec<u8>,
    path: Vec<u8>,
    ip: Vec<u8>,
    key: Vec<u8>,
    tenant: Vec<u8>,
    cost: u32,
}

/// Memory whose allocation ends exactly at the end of the view, so a read
/// past `len` is a heap overflow AddressSanitizer reports (a `Vec` cannot
/// both start 64-byte aligned and end there).
struct Region {
    base: *mut u8,
    layout: Layout,
    offset: usize,
    len: usize,
}

impl Region {
    fn new(offset: usize, len: usize) -> Region {
        let layout = Layout::from_size_align((offset + len).max(1), 64).unwrap();
        // SAFETY: non-zero size.
        let base = unsafe { alloc_zeroed(layout) };
        assert!(!base.is_null());
        Region {
            base,
            layout,
            offset,
            len,
        }
    }

    fn ptr(&self) -> *mut u8 {
        // SAFETY: within the allocation.
        unsafe { self.base.add(self.offset) }
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `len` bytes from `offset` are ours.
        unsafe { std::slice::from_raw_parts_mut(self.ptr(), self.len) }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout.
        unsafe { dealloc(self.base, self.layout) }
    }
}

const CAPACITIES: &[u32] = &[1, 3, 4, 5, 8, 16, 63, 64, 100, 256];

fn config(s: &Setup) -> Config {
    Config {
        capacity: CAPACITIES[s.capacity as usize % CAPACITIES.len()],
        ipv6_prefix: s.ipv6_prefix % 129,
        unknown_kind: if s.unknown_production {
            InstanceKind::Production
        } else {
            InstanceKind::Development
        },
        pace: s.pace,
        algorithm: match s.algorithm % 3 {
            0 => None,
            1 => Some(Algorithm::Gcra),
            _ => Some(Algorithm::FixedWindow),
        },
        policy: Policy::from_u8(s.policy % 3).unwrap(),
        fold_case: s.fold_case,
        dry_run: false,
    }
}

/// A fresh table laid out by `init` in an aligned region of exactly its size.
fn fresh(s: &Setup) -> (Region, Config) {
    let config = config(s);
    let len = Limiter::bytes_for(config.capacity).unwrap();
    let mut r = Region::new(0, len);
    let seed = Seed {
        k0: s.seed.0,
        k1: s.seed.1,
    };
    Limiter::init(r.bytes(), &config, CLERK, seed).expect("init on valid memory");
    (r, config)
}

fn attach(r: &Region) -> Result<Limiter<'_>, SetupError> {
    // SAFETY: the region is ours for its lifetime and used by nothing else.
    unsafe { Limiter::attach_raw(r.ptr(), r.len, CLERK, HandleOptions::default()) }
}

fn read_word(r: &Region, w: usize) -> u64 {
    // SAFETY: `w` < 32 and the header is within the region.
    unsafe { (r.ptr() as *const u64).add(w).read() }
}

fn write_word(r: &Region, w: usize, v: u64) {
    // SAFETY: as for `read_word`; no handle is alive.
    unsafe { (r.ptr() as *mut u64).add(w).write(v) }
}

/// Well-formed: a decision's rule is one of the table's or none.
fn sane(d: &ratecard::Decision) {
    assert!(d.rule.is_none_or(|r| r.index() < CLERK.len()), "{d:?}");
    assert!(d.allowed() || d.is_limited(), "{d:?}");
    match d.verdict {
        Verdict::Unmatched => assert_eq!(*d, ratecard::Decision::UNMATCHED),
        Verdict::Exempt => assert!(d.allowed() && d.rule.is_some(), "{d:?}"),
        _ => assert!(d.rule.is_some_and(|r| d.matched.contains(r)), "{d:?}"),
    }
}

fn expect_request_error(e: CheckError) {
    assert_eq!(e, CheckError::MissingSubject, "unexpected error");
}

/// The client address of fuzzed bytes: their first 16, or first 4, or none.
fn client_ip(b: &[u8]) -> Option<IpAddr> {
    if let Some(v6) = b.get(..16) {
        return <[u8; 16]>::try_from(v6).ok().map(IpAddr::from);
    }
    b.get(..4)
        .and_then(|v4| <[u8; 4]>::try_from(v4).ok())
        .map(IpAddr::from)
}

fn drive(l: &Limiter<'_>, requests: &[Req]) {
    for r in requests.iter().take(64) {
        match r {
            Req::Check(h, now) | Req::Peek(h, now) => {
                let req = Request {
                    api: if h.backend {
                        Api::Backend
                    } else {
                        Api::Frontend
                    },
                    method: &h.method,
                    path: &h.path,
                    client_ip: client_ip(&h.ip),
                    secret_key: &h.key,
                    tenant: &h.tenant,
                    cost: h.cost,
                };
                let d = if matches!(r, Req::Check(..)) {
                    l.check(&req, Nanos(*now))
                } else {
                    l.peek(&req, Nanos(*now))
                };
                match d {
                    Ok(d) => sane(&d),
                    Err(e) => expect_request_error(e),
                }
            }
            Req::Reset(h) => {
                let req = Request {
                    api: if h.backend {
                        Api::Backend
                    } else {
                        Api::Frontend
                    },
                    method: &h.method,
                    path: &h.path,
                    client_ip: client_ip(&h.ip),
                    secret_key: &h.key,
                    tenant: &h.tenant,
                    cost: h.cost,
                };
                match l.reset(&req) {
                    // A duplicate of a key in its other bucket is cleared too.
                    Ok(n) => assert!(n as usize <= 2 * CLERK.len()),
                    Err(e) => expect_request_error(e),
                }
            }
            Req::CheckKey(rule, key, cost, now) | Req::PeekKey(rule, key, cost, now) => {
                let rule = RuleId((rule % (CLERK.len() as u32 + 2)) as u8);
                let d = if matches!(r, Req::CheckKey(..)) {
                    l.check_key(rule, key, *cost, Nanos(*now))
                } else {
                    l.peek_key(rule, key, *cost, Nanos(*now))
                };
                match d {
                    Ok(d) => sane(&d),
                    Err(e) => {
                        assert_eq!(e, CheckError::UnknownRule);
                        assert!(rule.index() >= CLERK.len());
                    }
                }
            }
            Req::ResetKey(rule, key) => {
                let rule = RuleId((rule % (CLERK.len() as u32 + 2)) as u8);
                match l.reset_key(rule, key) {
                    Ok(n) => assert!(n <= 2),
                    Err(e) => assert_eq!(e, CheckError::UnknownRule),
                }
            }
            Req::Stats => {
                let s = l.stats();
                assert!(s.occupancy <= s.capacity);
            }
        }
    }
}

fuzz_target!(|case: Case| match case {
    Case::Raw { offset, bytes } => {
        let mut r = Region::new(offset as usize % 128, bytes.len());
        r.bytes().copy_from_slice(&bytes);
        // Nearly always refused (the checksum is a keyed hash); if not, the
        // table must be usable.
        if let Ok(l) = Limiter::attach(r.bytes(), CLERK, HandleOptions::default()) {
            let _ = l.stats();
        }
    }
    Case::Header { setup, word, xor } => {
        let (r, _) = fresh(&setup);
        assert!(attach(&r).is_ok());
        let w = word as usize % HEADER_WORDS;
        let old = read_word(&r, w);
        let new = old ^ if xor == 0 { 1 } else { xor };
        write_word(&r, w, new);
        let got = attach(&r).map(|_| ());
        if w < FIXED_AND_CHECKSUM {
            assert!(
                matches!(got, Err(SetupError::Corrupt | SetupError::NotATable)),
                "header word {w} {old:#x} -> {new:#x}: {got:?}"
            );
        } else if w == SEQ_WORD {
            if new != 0 && new % 2 == 0 {
                assert_eq!(got, Ok(()), "sequence word {old:#x} -> {new:#x}");
            } else {
                assert_eq!(
                    got,
                    Err(SetupError::NotSeeded),
                    "sequence word {old:#x} -> {new:#x}"
                );
            }
        } else {
            assert_eq!(got, Ok(()), "unverified header word {w} changed");
        }
    }
    Case::Truncated { setup, cut } => {
        let (mut full, _) = fresh(&setup);
        let len = full.len;
        let short = cut as usize % len;
        let mut r = Region::new(0, short);
        let src = full.bytes()[..short].to_vec();
        r.bytes().copy_from_slice(&src);
        let got = attach(&r).map(|_| ());
        assert_eq!(got, Err(SetupError::TooSmall), "{short} of {len} bytes");
    }
    Case::Moved { setup, offset } => {
        let (mut full, _) = fresh(&setup);
        let offset = 1 + offset as usize % 63;
        let mut r = Region::new(offset, full.len);
        let src = full.bytes().to_vec();
        r.bytes().copy_from_slice(&src);
        let got = attach(&r).map(|_| ());
        assert_eq!(got, Err(SetupError::Misaligned), "at offset {offset}");
    }
    Case::Garbage {
        setup,
        patches,
        words,
        dry_run,
        policy,
        requests,
    } => {
        let (mut r, config) = fresh(&setup);
        {
            let mem = r.bytes();
            // The buckets end the region; a slot is the tag (low 64 bits of
            // the little-endian u128) and the state.
            let nslots = slots(config.capacity);
            let slots_at = mem.len() - nslots * 16;
            for (at, bytes) in patches.iter().take(16) {
                let at = slots_at + *at as usize % (nslots * 16);
                let n = bytes.len().min(mem.len() - at);
                mem[at..at + n].copy_from_slice(&bytes[..n]);
            }
            for &(slot, tag, state) in words.iter().take(32) {
                let at = slots_at + (slot as usize % nslots) * 16;
                mem[at..at + 8].copy_from_slice(&tag.to_le_bytes());
                mem[at + 8..at + 16].copy_from_slice(&state.to_le_bytes());
            }
        }
        let options = HandleOptions {
            dry_run,
            policy: Policy::from_u8(policy % 4),
        };
        // SAFETY: the region is ours and used by nothing else meanwhile.
        let l = unsafe { Limiter::attach_raw(r.ptr(), r.len, CLERK, options) }
            .expect("the header is intact");
        drive(&l, &requests);
    }
    Case::Counters {
        setup,
        counters,
        requests,
    } => {
        let (mut r, _) = fresh(&setup);
        {
            let mem = r.bytes();
            for &(stripe, counter, value) in counters.iter().take(32) {
                let at = HEADER_BYTES
                    + (stripe as usize % STRIPES) * STRIPE_BYTES
                    + (counter as usize % COUNTERS) * 8;
                mem[at..at + 8].copy_from_slice(&value.to_le_bytes());
            }
        }
        let l = attach(&r).expect("the header is intact");
        let _ = l.stats();
        drive(&l, &requests);
        let _ = l.stats();
    }
});

/// Slots of a table of `capacity` (rounded as the table does).
fn slots(capacity: u32) -> usize {
    (capacity as usize).div_ceil(4).next_power_of_two() * 4
}
