//! Byte-level helpers of the normaliser's fast branch: finding the slashes
//! of a path that needs no walk, and segment heads as words.

/// The most bytes (before any query) the fast branch takes: slash positions
/// fit in a `u128`. Longer paths are walked.
pub const FAST_MAX: usize = 128;

/// What [`scan`] found.
pub struct Scan {
    /// Bit `i` set: byte `i` is `/` (only bits below `end`).
    pub slashes: u128,
    /// Where the path part ends: the first `?` or `#`, or the length.
    pub end: usize,
}

/// 0 go on, 1 `/`, 2 end of the path part (`?`, `#`), 3 needs the walk
/// (`%`, NUL, `\`, `;`, `.`).
#[allow(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    reason = "constant evaluation: indices are bytes, below 256"
)]
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b'/' as usize] = 1;
    t[b'?' as usize] = 2;
    t[b'#' as usize] = 2;
    t[b'%' as usize] = 3;
    t[0] = 3;
    t[b'\\' as usize] = 3;
    t[b';' as usize] = 3;
    t[b'.' as usize] = 3;
    t
};

/// The slashes and end of `path` if nothing before its end needs the walk
/// and it is at most [`FAST_MAX`] bytes long.
#[inline(always)]
#[allow(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    reason = "CLASS has 256 entries, indexed by a byte; i < FAST_MAX before the shift"
)]
pub fn scan(path: &[u8]) -> Option<Scan> {
    let mut slashes = 0u128;
    for (i, &b) in path.iter().enumerate() {
        match CLASS[b as usize] {
            0 => {}
            1 => {
                if i >= FAST_MAX {
                    return None;
                }
                slashes |= 1u128 << i;
            }
            2 => return Some(Scan { slashes, end: i }),
            _ => return None,
        }
    }
    (path.len() <= FAST_MAX).then_some(Scan {
        slashes,
        end: path.len(),
    })
}

/// The first eight bytes of `seg`, little-endian, zero-padded.
#[inline(always)]
pub fn head(seg: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    let n = seg.len().min(8);
    if let (Some(dst), Some(src)) = (w.get_mut(..n), seg.get(..n)) {
        dst.copy_from_slice(src);
    }
    u64::from_le_bytes(w)
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
    fn scan_stops_at_the_query_and_refuses_what_needs_the_walk() {
        let s = scan(b"/a/b?c/%").unwrap();
        assert_eq!((s.slashes, s.end), (0b101, 4));
        for p in [&b"/a%20"[..], b"/a.b", b"/a;b", b"/a\\b", b"/a\0"] {
            assert!(scan(p).is_none(), "{p:?}");
        }
        let long = [b'a'; FAST_MAX + 1];
        assert!(scan(&long).is_none());
    }
}
