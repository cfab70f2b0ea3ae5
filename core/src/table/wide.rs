//! 16-byte atomic accesses to slots, with the instructions the running CPU
//! makes atomic, inline.
//!
//! A library built for the x86_64 baseline cannot assume `cmpxchg16b` at
//! compile time, so every 16-byte load and CAS through `AtomicU128` goes
//! through a function pointer picked at run time: four indirect calls to
//! scan one bucket, a fifth to charge, and the values spilled around each.
//! A table detects once, when it is built, what the CPU guarantees, and
//! then issues the instructions inline:
//!
//! - loads: `movdqa` of an aligned slot, atomic on every CPU that enumerates
//!   AVX (Intel's and AMD's manuals guarantee it for 16-byte aligned
//!   `movdqa` there; the SSE encoding is used, so the OS need not enable AVX
//!   state and no CPU faults on it);
//! - compare-and-swap: `lock cmpxchg16b`, where CPUID reports it (a table
//!   refuses to run where it does not, see [`super::cas_is_lock_free`]).
//!
//! Where either is missing, and on every other architecture (or under
//! Miri), the accesses go through `portable_atomic` as before. Both paths
//! are sequentially consistent on x86_64: a plain aligned load is a SeqCst
//! load there, since every write to a slot is a locked CAS.

use core::sync::atomic::Ordering;
use portable_atomic::AtomicU128;

/// What the running CPU makes atomic, detected once per table.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub struct Wide {
    /// Aligned 16-byte `movdqa` loads are atomic.
    movdqa: bool,
    /// `lock cmpxchg16b` exists.
    cx16: bool,
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2", not(miri)))]
mod x86 {
    use core::arch::asm;
    use core::arch::x86_64::{__m128i, CpuidResult};

    /// CPUID leaf 1's feature bits in ECX.
    pub fn features() -> u32 {
        #[allow(unused_unsafe, reason = "__cpuid is safe on newer compilers")]
        // SAFETY: CPUID exists on every x86_64 CPU (SGX enclaves aside,
        // which this crate does not target).
        let CpuidResult { ecx, .. } = unsafe { core::arch::x86_64::__cpuid(1) };
        ecx
    }

    /// A 16-byte load by `movdqa`.
    ///
    /// # Safety
    /// `p` is 16-byte aligned and valid for reads, and the CPU enumerates
    /// AVX (so that the load is atomic).
    #[inline(always)]
    pub unsafe fn load(p: *const u128) -> u128 {
        let out: __m128i;
        // SAFETY: the caller's contract; `movdqa` is SSE2, in the baseline.
        unsafe {
            asm!(
                "movdqa {out}, xmmword ptr [{p}]",
                p = in(reg) p,
                out = out(xmm_reg) out,
                options(nostack, preserves_flags),
            );
            core::mem::transmute::<__m128i, u128>(out)
        }
    }

    /// `lock cmpxchg16b`: the value found, and whether it was `current`
    /// (and `new` was written).
    ///
    /// # Safety
    /// `p` is 16-byte aligned and valid for reads and writes, and the CPU
    /// has `cmpxchg16b`.
    #[inline(always)]
    pub unsafe fn cas(p: *mut u128, current: u128, new: u128) -> (u128, bool) {
        let (lo, hi): (u64, u64);
        let ok: u8;
        // SAFETY: the caller's contract. rbx cannot be named as an operand
        // (LLVM may use it), so the new low word is swapped into it for the
        // instruction and rbx restored after. The register allocator may
        // still pick rbx for a `reg` operand, so the two that live across
        // the swap are pinned to registers of their own; `mov` leaves the
        // flags, so `sete` reads the CAS's result after rbx is back.
        unsafe {
            asm!(
                "xchg rsi, rbx",
                "lock cmpxchg16b xmmword ptr [rdi]",
                "mov rbx, rsi",
                "sete {ok}",
                in("rdi") p,
                inout("rsi") new as u64 => _,
                ok = out(reg_byte) ok,
                in("rcx") (new >> 64) as u64,
                inout("rax") current as u64 => lo,
                inout("rdx") (current >> 64) as u64 => hi,
                options(nostack),
            );
        }
        ((hi as u128) << 64 | lo as u128, ok != 0)
    }
}

impl Wide {
    /// What this CPU makes atomic.
    pub fn detect() -> Wide {
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2", not(miri)))]
        {
            let ecx = x86::features();
            Wide {
                movdqa: ecx & (1 << 28) != 0,
                cx16: ecx & (1 << 13) != 0,
            }
        }
        #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2", not(miri))))]
        {
            Wide::default()
        }
    }

    /// Whether loads and CAS both run inline.
    pub fn inline(self) -> bool {
        self.movdqa && self.cx16
    }

    /// Load a slot (SeqCst).
    #[inline(always)]
    pub fn load(self, s: &AtomicU128) -> u128 {
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2", not(miri)))]
        if self.movdqa {
            // SAFETY: an AtomicU128 is 16-byte aligned and valid for reads;
            // `movdqa` is atomic on this CPU (detected).
            return unsafe { x86::load(s.as_ptr()) };
        }
        s.load(Ordering::SeqCst)
    }

    /// Compare-and-swap a slot (SeqCst): Ok, or the value found.
    #[inline(always)]
    pub fn cas(self, s: &AtomicU128, current: u128, new: u128) -> Result<(), u128> {
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2", not(miri)))]
        if self.cx16 {
            // SAFETY: an AtomicU128 is 16-byte aligned and valid for reads
            // and writes; the CPU has cmpxchg16b (detected).
            let (found, ok) = unsafe { x86::cas(s.as_ptr(), current, new) };
            return if ok { Ok(()) } else { Err(found) };
        }
        s.compare_exchange(current, new, Ordering::SeqCst, Ordering::SeqCst)
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both() -> [Wide; 2] {
        [Wide::detect(), Wide::default()]
    }

    #[test]
    fn loads_and_swaps_agree_with_portable_atomic() {
        let words = [
            0u128,
            1,
            u64::MAX as u128,
            1 << 64,
            u128::MAX,
            0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
        ];
        for w in both() {
            for &a in &words {
                for &b in &words {
                    let s = AtomicU128::new(a);
                    assert_eq!(w.load(&s), a, "{w:?}");
                    // A CAS from a wrong value fails and reports the value.
                    if a != b {
                        assert_eq!(w.cas(&s, b, a ^ 1), Err(a), "{w:?}");
                        assert_eq!(s.load(Ordering::SeqCst), a);
                    }
                    assert_eq!(w.cas(&s, a, b), Ok(()), "{w:?}");
                    assert_eq!(s.load(Ordering::SeqCst), b);
                    assert_eq!(w.load(&s), b);
                }
            }
        }
    }

    #[cfg(all(target_arch = "x86_64", not(miri)))]
    #[test]
    fn detection_matches_the_standard_library() {
        let w = Wide::detect();
        assert_eq!(w.cx16, std::is_x86_feature_detected!("cmpxchg16b"));
        // std reports AVX only where the OS enables its state; the CPUID
        // bit alone is what makes movdqa atomic, so it may say more.
        if std::is_x86_feature_detected!("avx") {
            assert!(w.movdqa);
        }
    }

    #[test]
    fn racing_cas_increments_are_never_lost_or_torn() {
        use std::sync::Arc;
        let s = Arc::new(AtomicU128::new(0));
        let w = Wide::detect();
        const PER: u64 = 20_000;
        let threads: std::vec::Vec<_> = (0..2)
            .map(|_| {
                let s = Arc::clone(&s);
                std::thread::spawn(move || {
                    for _ in 0..PER {
                        let mut cur = w.load(&s);
                        loop {
                            // Both halves move together: a torn read would
                            // break the invariant hi == lo.
                            assert_eq!((cur >> 64) as u64, cur as u64);
                            let next = cur + (1 << 64) + 1;
                            match w.cas(&s, cur, next) {
                                Ok(()) => break,
                                Err(found) => cur = found,
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("no panic");
        }
        let end = w.load(&s);
        assert_eq!(end as u64, 2 * PER);
        assert_eq!((end >> 64) as u64, 2 * PER);
    }
}
