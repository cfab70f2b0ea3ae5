//! Latency mode: after each operation, a fence that lets no later
//! instruction start before every earlier one (its loads included) has
//! completed, so one operation's cache misses never overlap the next one's.

/// Wait for every earlier instruction to complete.
#[inline(always)]
pub fn fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: LFENCE is part of SSE2, in the x86_64 baseline.
    unsafe {
        core::arch::x86_64::_mm_lfence()
    }
    #[cfg(not(target_arch = "x86_64"))]
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
}
