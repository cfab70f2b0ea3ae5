//! Byte-level helpers of the normaliser's fast branch: finding the slashes
//! of a path that needs no walk, and segment heads as words.

/// The longest request target the fast branch takes; longer ones are
/// walked.
pub const FAST_MAX: usize = 128;

/// Per byte of the sixteen bytes of `path` at `at` (which it has), the
/// masks of [`classes16`].
#[inline(always)]
pub fn classes_at(path: &[u8], at: usize) -> (u16, u16, u16) {
    match path
        .get(at..at.saturating_add(16))
        .map(<&[u8; 16]>::try_from)
    {
        Some(Ok(block)) => classes16(block),
        _ => (0, 0, u16::MAX),
    }
}

/// [`classes_at`] for a path shorter than sixteen bytes (the rest reads
/// as NUL, which the caller's length masks away).
#[inline(always)]
pub fn classes_short(path: &[u8]) -> (u16, u16, u16) {
    let n = path.len().min(16);
    let (lo, hi) = match path.split_at_checked(n.min(8)) {
        Some((a, b)) => (short(a), short(b)),
        None => (0, 0),
    };
    let (s, q, b) = classes_words(lo, hi);
    let keep = (1u32 << n).wrapping_sub(1) as u16;
    (s & keep, q & keep, b & keep)
}

/// [`classes_words`] of a block.
#[inline(always)]
pub fn classes16(w: &[u8; 16]) -> (u16, u16, u16) {
    let [a0, a1, a2, a3, a4, a5, a6, a7, b0, b1, b2, b3, b4, b5, b6, b7] = *w;
    let lo = u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]);
    let hi = u64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7]);
    classes_words(lo, hi)
}

/// Per byte of the block `lo` (bytes 0..8, little-endian) and `hi` (8..16),
/// as bit masks: `/`; `?` or `#` (the end of the path part); `%`, NUL,
/// `\\`, `;` or `.` (needs the walk).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn classes_words(lo: u64, hi: u64) -> (u16, u16, u16) {
    use core::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8, _mm_set_epi64x,
        _mm_setzero_si128,
    };
    // SAFETY: these intrinsics need only SSE2, part of the x86_64 baseline
    // (every x86_64 CPU has it), and none of them touches memory. The
    // classifier's benchmark shows the vector scan pays: see
    // benches/README.md, `decision/classify`.
    unsafe {
        let v = _mm_set_epi64x(hi as i64, lo as i64);
        let eq = |c: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8));
        let slash = _mm_movemask_epi8(eq(b'/'));
        let stop = _mm_movemask_epi8(_mm_or_si128(eq(b'?'), eq(b'#')));
        let bad = _mm_or_si128(
            _mm_or_si128(
                _mm_or_si128(eq(b'%'), eq(b'\\')),
                _mm_or_si128(eq(b';'), eq(b'.')),
            ),
            _mm_cmpeq_epi8(v, _mm_setzero_si128()),
        );
        (slash as u16, stop as u16, _mm_movemask_epi8(bad) as u16)
    }
}

/// Per byte of a block, as bit masks (see the x86_64 version).
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub fn classes_words(lo: u64, hi: u64) -> (u16, u16, u16) {
    let (mut slash, mut stop, mut bad) = (0u16, 0u16, 0u16);
    let mut w = [0u8; 16];
    w[..8].copy_from_slice(&lo.to_le_bytes());
    w[8..].copy_from_slice(&hi.to_le_bytes());
    for (k, &b) in w.iter().enumerate() {
        slash |= u16::from(b == b'/') << k;
        stop |= u16::from(matches!(b, b'?' | b'#')) << k;
        bad |= u16::from(matches!(b, b'%' | 0 | b'\\' | b';' | b'.')) << k;
    }
    (slash, stop, bad)
}

/// The first eight bytes of `seg`, little-endian, zero-padded.
#[inline(always)]
pub fn head(seg: &[u8]) -> u64 {
    match load8(seg, 0) {
        Some(w) => w,
        None => short(seg),
    }
}

/// The bytes of `s` (fewer than nine), little-endian, zero-padded, by
/// loads of whole words that overlap rather than a copy into a zeroed
/// buffer: a copy of a few bytes followed by a load of the whole buffer
/// stalls the load until every byte store has retired (no store
/// forwarding), about a tenth of a short path's classification.
#[inline(always)]
#[allow(
    clippy::arithmetic_side_effects,
    reason = "shifts by 8·(n − 4) < 32 and 8·(n − 1) < 24 where taken"
)]
pub fn short(s: &[u8]) -> u64 {
    let n = s.len();
    if n >= 8 {
        return load8(s, 0).unwrap_or(0);
    }
    if n >= 4 {
        // Bytes 0..4 and n−4..n: the overlap carries the same bytes in both.
        let (Some(a), Some(b)) = (load4(s, 0), load4(s, n - 4)) else {
            return 0;
        };
        return a as u64 | (b as u64) << (8 * (n - 4));
    }
    match (s.first(), s.get(n / 2), s.last()) {
        (Some(&a), Some(&m), Some(&z)) => {
            a as u64 | (m as u64) << (8 * (n / 2)) | (z as u64) << (8 * (n - 1))
        }
        _ => 0,
    }
}

/// [`head`] of `path[start..start + len]`, with one eight-byte load where
/// the path has the bytes.
#[inline(always)]
#[allow(
    clippy::arithmetic_side_effects,
    reason = "len < 8 where shifted; start + 8 > total when the path has fewer bytes from start"
)]
pub fn head_at(path: &[u8], start: usize, len: usize) -> u64 {
    let mask = if len >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * len)) - 1
    };
    if let Some(w) = load8(path, start) {
        return w & mask;
    }
    // Fewer than eight bytes from `start` to the path's end: the path's
    // last eight bytes, shifted down to the segment (it ends within them).
    let total = path.len();
    match total.checked_sub(8).and_then(|at| load8(path, at)) {
        Some(w) => (w >> (8 * (start + 8 - total))) & mask,
        None => head(path.get(start..start + len).unwrap_or(&[])),
    }
}

#[inline(always)]
fn load4(s: &[u8], at: usize) -> Option<u32> {
    let w: [u8; 4] = s.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(w))
}

#[inline(always)]
fn load8(s: &[u8], at: usize) -> Option<u64> {
    let w: [u8; 8] = s.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(w))
}

/// ASCII uppercase letters of `x`'s bytes lowercased, other bytes as they
/// are.
#[inline(always)]
#[allow(
    clippy::arithmetic_side_effects,
    reason = "constant products of small numbers"
)]
pub const fn lowercase(x: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let low7 = x & !HIGH;
    // High bit set per byte: low7 >= 'A', low7 > 'Z'.
    let ge_a = low7.wrapping_add(ONES * (0x80 - b'A' as u64));
    let gt_z = low7.wrapping_add(ONES * (0x7f - b'Z' as u64));
    let upper = (ge_a ^ gt_z) & !x & HIGH;
    x | (upper >> 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercase_folds_exactly_the_ascii_capitals() {
        for b in 0..=255u8 {
            let x = u64::from_le_bytes([b, b'A', b, b'z', b, b'@', b'[', b]);
            let want = u64::from_le_bytes(
                [b, b'A', b, b'z', b, b'@', b'[', b].map(|c| c.to_ascii_lowercase()),
            );
            assert_eq!(lowercase(x), want, "{b}");
        }
    }

    /// The copy into a zeroed buffer that `short` replaces.
    fn padded(s: &[u8]) -> u64 {
        let mut w = [0u8; 8];
        let n = s.len().min(8);
        w[..n].copy_from_slice(&s[..n]);
        u64::from_le_bytes(w)
    }

    #[test]
    fn short_words_are_the_zero_padded_bytes_for_every_length() {
        let bytes: std::vec::Vec<u8> = (1..=20u8).map(|b| b.wrapping_mul(37)).collect();
        for n in 0..=bytes.len() {
            let s = &bytes[..n];
            assert_eq!(short(s), padded(s), "{n}");
            assert_eq!(head(s), padded(s), "{n}");
        }
        // Every byte value in every position of a short word.
        for b in 0..=255u8 {
            for n in 1..8 {
                for at in 0..n {
                    let mut s = [0x5au8; 7];
                    s[at] = b;
                    assert_eq!(short(&s[..n]), padded(&s[..n]), "{b} {n} {at}");
                }
            }
        }
    }

    #[test]
    fn short_blocks_classify_like_the_padded_block() {
        let path = b"/a?b#c%d.e;f\\g/hij";
        for n in 0..16 {
            let mut block = [0u8; 16];
            block[..n].copy_from_slice(&path[..n]);
            let (s, q, b) = classes16(&block);
            let keep = ((1u32 << n) - 1) as u16;
            assert_eq!(
                classes_short(&path[..n]),
                (s & keep, q & keep, b & keep),
                "{n}"
            );
        }
    }

    #[test]
    fn heads_agree_wherever_the_segment_sits() {
        let path = b"/v1/client/sign_ins/abcdefghij/x";
        let mut start = 0;
        for seg in path.split(|&b| b == b'/') {
            assert_eq!(head_at(path, start, seg.len()), head(seg), "{seg:?}");
            start += seg.len() + 1;
        }
        assert_eq!(head_at(b"/ab", 1, 2), head(b"ab"));
    }

    #[test]
    fn block_classes_mark_slashes_the_end_and_what_needs_the_walk() {
        let (s, q, b) = classes_short(b"/a/b?c/%");
        assert_eq!((s, q, b), (0b0100_0101, 0b1_0000, 0b1000_0000));
        for p in [&b"/a%20"[..], b"/a.b", b"/a;b", b"/a\\b", b"/a\0"] {
            assert_ne!(classes_short(p).2, 0, "{p:?}");
        }
        let path = b"/v1/client/sign_ins/attempt_first_factor";
        assert_eq!(classes_at(path, 16).0, 1 << 3, "the slash at 19");
        assert_eq!(classes_at(path, 40), (0, 0, u16::MAX), "past the end");
    }
}
