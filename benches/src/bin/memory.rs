//! Memory per live key: governor's keyed limiter measured by a counting
//! allocator after inserting 1 000 000 keys, against ratecard's table
//! (`Limiter::bytes_for(capacity) / live keys`) filled to 85% occupancy,
//! for u64, IPv6 and 48-byte secret-key keys. IPv6 is measured as
//! `[u8; 16]` (governor's leanest entry: the bar applies to it) and as
//! `u128` (16-byte aligned entries, for information). Prints markdown tables.
//!
//! `cargo run --release -p ratecard-benches --bin memory`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};

use ratecard::{Limiter, Nanos, Quota, Rule, RuleId, RuleTable, Scope};
use ratecard_benches::keys::{Key, KeySet};
use ratecard_benches::peers;
use ratecard_benches::setup::{limiter, MAX_OCCUPANCY};

/// Bytes allocated and not yet freed, process-wide.
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counter is bookkeeping only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// governor is measured at this many keys.
const GOVERNOR_KEYS: usize = 1_000_000;
/// ratecard's table: 2^20 slots.
const CAPACITY: u32 = 1 << 20;

/// A rule that keeps every key in debt at a fixed `now` (10 per 10 s: one
/// check leaves a key owing 1 s), so none is evicted as replenished.
static RULES: [Rule<'static>; 1] = [Rule::new(
    "bench.memory",
    ratecard::Api::Backend,
    Scope::Instance,
    &[],
    Quota::per_secs(10, 10),
)];

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Bytes per key of a governor limiter built by `make` after checking
/// every key of `keys` once.
fn governor_bytes<K: Key, L>(
    keys: &KeySet<K>,
    make: impl Fn() -> L,
    check: impl Fn(&L, &K),
) -> f64 {
    let before = live();
    let limiter = make();
    for k in &keys.owned {
        check(&limiter, k);
    }
    let bytes = live() - before;
    drop(black_box(limiter));
    bytes as f64 / keys.len() as f64
}

/// ratecard at 85% occupancy.
struct Filled {
    bytes: usize,
    live: u64,
    capacity: u64,
    inserted: usize,
    evicted: u64,
}

impl Filled {
    fn per_key(&self) -> f64 {
        self.bytes as f64 / self.live as f64
    }
}

/// Fill a 2^20-slot table with distinct keys of kind `K` until 85% of its
/// slots are live (or keys run out).
fn ratecard_filled<K: Key>() -> Filled {
    let l = limiter(RuleTable::new(&RULES), CAPACITY);
    let bytes = Limiter::bytes_for(CAPACITY).unwrap_or(0);
    let target = (MAX_OCCUPANCY * l.stats().capacity as f64).ceil() as u64;
    let mut inserted = 0;
    let mut stats = l.stats();
    while stats.occupancy < target && inserted < 2 * CAPACITY as usize {
        // Each insert adds at most one live slot: this never overshoots.
        let batch = (target - stats.occupancy) as usize;
        for i in inserted..inserted + batch {
            let key = K::nth(i as u64).bytes();
            let _ = l.check_key(RuleId(0), key.as_ref(), 1, Nanos(1_000_000_000));
        }
        inserted += batch;
        stats = l.stats();
    }
    Filled {
        bytes,
        live: stats.occupancy,
        capacity: stats.capacity,
        inserted,
        evicted: stats.evicted_in_debt,
    }
}

struct Row {
    key: &'static str,
    governor: f64,
    governor_best: f64,
    ratecard: Filled,
    bar: Option<f64>,
}

fn measure<K: Key>(bar: Option<f64>) -> Row {
    let keys = KeySet::<K>::new(GOVERNOR_KEYS);
    let governor = governor_bytes(&keys, peers::governor_keyed::<K>, |l, k| {
        let _ = l.check_key(k);
    });
    let governor_best = governor_bytes(&keys, peers::governor_best::<K>, |l, k| {
        let _ = l.check_key(k);
    });
    drop(keys);
    Row {
        key: K::NAME,
        governor,
        governor_best,
        ratecard: ratecard_filled::<K>(),
        bar,
    }
}

fn main() {
    let rows = [
        measure::<u64>(Some(1.8)),
        measure::<[u8; 16]>(Some(2.5)),
        measure::<u128>(None),
        measure::<String>(Some(4.0)),
    ];
    println!(
        "| key | governor keyed, B/key (1M keys) | ratecard, B/live key | ratecard occupancy | \
         governor ÷ ratecard | bar | met |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | --- |");
    for r in &rows {
        let ratio = r.governor / r.ratecard.per_key();
        let (bar, met) = match r.bar {
            Some(b) => (
                format!("≥ {b:.1}×"),
                if ratio >= b { "yes" } else { "**no**" },
            ),
            None => ("—".to_owned(), "—"),
        };
        println!(
            "| {} | {:.1} | {:.1} | {:.1}% | {:.2}× | {bar} | {met} |",
            r.key,
            r.governor,
            r.ratecard.per_key(),
            100.0 * r.ratecard.live as f64 / r.ratecard.capacity as f64,
            ratio,
        );
    }
    println!();
    println!("| key | governor best (ahash), B/key | ratecard table bytes | live keys | keys inserted | in-debt evictions |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for r in &rows {
        println!(
            "| {} | {:.1} | {} | {} | {} | {} ({:.2}% of inserts) |",
            r.key,
            r.governor_best,
            r.ratecard.bytes,
            r.ratecard.live,
            r.ratecard.inserted,
            r.ratecard.evicted,
            100.0 * r.ratecard.evicted as f64 / r.ratecard.inserted as f64,
        );
    }
}
