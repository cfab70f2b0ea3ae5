//! The normaliser: a request target's path as the segments a route is
//! matched against, without allocating and without a buffer.
//!
//! - An absolute-form target (`http://host/v1/...`) is read from its path;
//!   a path not starting with `/` is read as if it did.
//! - The query string (`?…`) and fragment (`#…`) are stripped; empty
//!   segments (repeated slashes, a trailing slash) and `.` are dropped; `..`
//!   removes the segment before it (at the root it stays at the root);
//!   percent escapes are decoded for comparison (`%76%31` is `v1`, `%2e%2e`
//!   is `..`).
//! - A path that cannot be made canonical is reported as such: a bad or
//!   truncated escape (`%G1`, `%4`), an encoded slash or backslash
//!   (`%2F`, `%5C`), a raw backslash, NUL raw or encoded, or a `;` raw or
//!   encoded (path parameters, which servers such as Tomcat strip from each
//!   segment, so `/v1/client/sign_ins;x=1` is the sign-in route to them).
//! - The first [`MAX_SEGMENTS`] live segments are kept; deeper ones are
//!   counted (so `..` can still remove them), and a path left deeper than
//!   that only matches `*` and patterns ending in `/*`.
//! - A last segment with a `.suffix` (`sign_ins.json`) also offers its stem
//!   (`sign_ins`): frameworks with format suffixes (Rails' `(.:format)`,
//!   Spring's suffix patterns where enabled) route both alike.
//!
//! A path with no escape, dot, `;`, backslash or NUL takes a fast branch
//! that finds its segments sixteen bytes at a time; every other path is
//! walked segment by segment. Both give the same segments (a test pins
//! this down).

use super::scan;

/// The most segments a route pattern may have, and the most path segments
/// kept for matching.
pub const MAX_SEGMENTS: usize = 8;

/// One path, split for matching.
#[derive(Copy, Clone, Debug)]
pub struct Segments<'p> {
    /// The bytes the segments index into: the path after any scheme and
    /// authority, up to its query or fragment.
    path: &'p [u8],
    /// Live segments (may exceed [`MAX_SEGMENTS`]: deeper ones are counted).
    pub(crate) n: usize,
    /// Each kept segment's first eight decoded bytes, little-endian,
    /// zero-padded (ASCII-lowercased when the router folds case).
    pub(crate) heads: [u64; MAX_SEGMENTS],
    /// Each kept segment's decoded length.
    pub(crate) lens: [u32; MAX_SEGMENTS],
    starts: [u32; MAX_SEGMENTS],
    raw_lens: [u32; MAX_SEGMENTS],
    /// Bit `i` set: kept segment `i` holds percent escapes.
    encoded: u8,
    /// The last segment's stem before its first `.` (not at its start):
    /// decoded length and raw length.
    stem: Option<(u32, u32)>,
}

/// Why a path has no canonical form.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum NotCanonical {
    /// The path cannot be made canonical (see the module docs).
    Path,
    /// The output buffer of [`normalize`] is too short. It must hold the
    /// longest intermediate form (before a `..` removes a segment);
    /// `path.len() + 1` bytes always suffice.
    BufferTooShort,
}

impl<'p> Segments<'p> {
    const fn empty(path: &'p [u8]) -> Segments<'p> {
        Segments {
            path,
            n: 0,
            heads: [0; MAX_SEGMENTS],
            lens: [0; MAX_SEGMENTS],
            starts: [0; MAX_SEGMENTS],
            raw_lens: [0; MAX_SEGMENTS],
            encoded: 0,
            stem: None,
        }
    }

    /// Split `path` into segments; `Err` if it cannot be made canonical.
    /// `fold` lowercases the heads (ASCII) for a case-insensitive router.
    #[inline]
    pub fn parse(path: &'p [u8], fold: bool) -> Result<Segments<'p>, NotCanonical> {
        let mut s = Segments::empty(path);
        s.parse_into(path, fold)?;
        Ok(s)
    }

    /// [`Segments::parse`] into `self` (an empty value), so the hot path
    /// moves no copy of the segments around.
    #[inline(always)]
    pub fn parse_into(&mut self, path: &'p [u8], fold: bool) -> Result<(), NotCanonical> {
        if !fast(path, self) {
            *self = slow(path)?;
        }
        if fold {
            for h in &mut self.heads {
                *h = scan::lowercase(*h);
            }
        }
        Ok(())
    }

    /// No segment yet, over `path`.
    pub const fn new(path: &'p [u8]) -> Segments<'p> {
        Segments::empty(path)
    }

    /// The raw bytes of kept segment `i` (escapes not decoded), and whether
    /// it holds escapes.
    #[inline(always)]
    pub fn raw(&self, i: usize) -> (&'p [u8], bool) {
        let (Some(&start), Some(&len)) = (self.starts.get(i), self.raw_lens.get(i)) else {
            return (&[], false);
        };
        let (start, len) = (start as usize, len as usize);
        let bytes = self
            .path
            .get(start..start.saturating_add(len))
            .unwrap_or(&[]);
        (bytes, self.encoded & (1 << (i % 8)) != 0)
    }

    /// Whether decoded bytes `from..` of kept segment `i` equal `lit[from..]`
    /// (`fold`: ignoring ASCII case). The lengths are known to be equal.
    pub fn tail_eq(&self, i: usize, lit: &[u8], from: usize, fold: bool) -> bool {
        let (raw, encoded) = self.raw(i);
        let eq = |a: u8, b: u8| {
            if fold {
                a.eq_ignore_ascii_case(&b)
            } else {
                a == b
            }
        };
        let want = lit.get(from..).unwrap_or(&[]);
        if !encoded {
            let got = raw.get(from..).unwrap_or(&[]);
            return got.len() == want.len() && got.iter().zip(want).all(|(&a, &b)| eq(a, b));
        }
        let mut got = decoded(raw).skip(from);
        want.iter().all(|&b| got.next().is_some_and(|a| eq(a, b))) && got.next().is_none()
    }

    /// Whether the last segment has a format suffix (see [`Segments::stemmed`]).
    #[inline(always)]
    pub fn has_suffix(&self) -> bool {
        self.stem.is_some()
    }

    /// The same segments with the last one cut to its stem, if it has one.
    pub fn stemmed(&self, fold: bool) -> Option<Segments<'p>> {
        let (dlen, rlen) = self.stem?;
        let last = self.n.checked_sub(1)?;
        let mut s = *self;
        s.stem = None;
        let (raw, encoded) = self.raw(last);
        let raw = raw.get(..rlen as usize)?;
        let mut head = if encoded {
            head_decoded(raw)
        } else {
            scan::head(raw)
        };
        if fold {
            head = scan::lowercase(head);
        }
        *s.heads.get_mut(last)? = head;
        *s.lens.get_mut(last)? = dlen;
        *s.raw_lens.get_mut(last)? = rlen;
        Some(s)
    }

    /// Keep one more segment (or count it, past [`MAX_SEGMENTS`]).
    #[inline(always)]
    fn push(&mut self, start: usize, raw_len: usize, len: usize, head: u64, encoded: bool) {
        if let (Some(h), Some(l), Some(st), Some(rl)) = (
            self.heads.get_mut(self.n),
            self.lens.get_mut(self.n),
            self.starts.get_mut(self.n),
            self.raw_lens.get_mut(self.n),
        ) {
            // Lengths fit: paths over 4 GiB are refused before.
            *h = head;
            *l = len as u32;
            *st = start as u32;
            *rl = raw_len as u32;
            let bit = 1u8 << (self.n % 8);
            if encoded {
                self.encoded |= bit;
            } else {
                self.encoded &= !bit;
            }
        }
        self.n = self.n.saturating_add(1);
    }
}

/// The path of a request target: after the scheme and authority of an
/// absolute-form target, up to the query or fragment.
#[inline(always)]
fn path_part(target: &[u8]) -> &[u8] {
    let path = match target.first() {
        Some(b'/') | None => target,
        Some(_) => strip_absolute(target),
    };
    match path.iter().position(|&b| b == b'?' || b == b'#') {
        Some(end) => path.get(..end).unwrap_or(path),
        None => path,
    }
}

/// `scheme://authority/path` → `/path`; anything else as it is.
#[cold]
fn strip_absolute(target: &[u8]) -> &[u8] {
    let scheme = target
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')));
    let Some(colon) = scheme else {
        return target;
    };
    let starts_with_letter = target.first().is_some_and(u8::is_ascii_alphabetic);
    match target.get(colon..) {
        Some([b':', b'/', b'/', rest @ ..]) if colon > 0 && starts_with_letter => {
            let end = rest
                .iter()
                .position(|&b| matches!(b, b'/' | b'?' | b'#'))
                .unwrap_or(rest.len());
            rest.get(end..).unwrap_or(&[])
        }
        _ => target,
    }
}

/// The fast branch: a path with no byte that needs the walk, split into
/// `s` sixteen bytes at a time. False (`s` untouched but its path) when the
/// path needs the walk.
#[inline(always)]
#[allow(
    clippy::arithmetic_side_effects,
    reason = "offsets within a path of at most FAST_MAX bytes; bit positions below 16"
)]
fn fast<'p>(target: &'p [u8], s: &mut Segments<'p>) -> bool {
    let len = target.len();
    if target.first() != Some(&b'/') || len > scan::FAST_MAX {
        return false;
    }
    let mut start = 0usize;
    let mut end = len;
    let mut at = 0usize;
    loop {
        // Bits of the block that are bytes not seen yet.
        let (block, skip) = if at + 16 <= len {
            (scan::classes_at(target, at), 0u32)
        } else if len >= 16 {
            // The last bytes: the final sixteen, minus those seen.
            let skip = (at + 16 - len) as u32;
            (scan::classes_at(target, len - 16), skip)
        } else {
            (scan::classes_short(target), 0)
        };
        let base = if skip > 0 { len - 16 } else { at };
        let fresh = (0xffffu32 << skip) as u16;
        let (mut slash, stop, mut bad) = (block.0 & fresh, block.1 & fresh, block.2 & fresh);
        let last = stop != 0 || at + 16 >= len;
        if stop != 0 {
            // The path part ends at the first `?` or `#`.
            let below = (1u32 << stop.trailing_zeros()) - 1;
            end = base + stop.trailing_zeros() as usize;
            slash &= below as u16;
            bad &= below as u16;
        }
        if bad != 0 {
            return false;
        }
        while slash != 0 {
            let i = base + slash.trailing_zeros() as usize;
            slash &= slash - 1;
            if i > start {
                s.push(
                    start,
                    i - start,
                    i - start,
                    scan::head_at(target, start, i - start),
                    false,
                );
            }
            start = i + 1;
        }
        if last {
            break;
        }
        at += 16;
    }
    if end > start {
        s.push(
            start,
            end - start,
            end - start,
            scan::head_at(target, start, end - start),
            false,
        );
    }
    s.path = target.get(..end).unwrap_or(target);
    true
}

/// One non-empty segment of a path, as the walk hands it over.
#[derive(Copy, Clone)]
enum Seg<'p> {
    /// `.`, raw or encoded.
    Dot,
    /// `..`, raw or encoded.
    DotDot,
    /// Any other segment, at `start` in the path; `encoded` when it holds
    /// a `%` (always a valid escape).
    Name {
        raw: &'p [u8],
        start: usize,
        encoded: bool,
    },
}

/// Walk the segments of `path` (a path part: no query or fragment),
/// handing each non-empty one to `f`; `Err` if it cannot be made canonical.
#[allow(
    clippy::arithmetic_side_effects,
    reason = "offsets within a path shorter than u32::MAX bytes"
)]
fn walk<'p>(path: &'p [u8], mut f: impl FnMut(Seg<'p>)) -> Result<(), NotCanonical> {
    if path.len() > u32::MAX as usize {
        return Err(NotCanonical::Path);
    }
    for (start, raw) in split_slashes(path) {
        let mut encoded = false;
        let mut i = 0;
        while let Some(&b) = raw.get(i) {
            match b {
                b'%' => match escape(raw, i) {
                    None | Some(0 | b'/' | b'\\' | b';') => return Err(NotCanonical::Path),
                    Some(_) => {
                        encoded = true;
                        i += 3;
                        continue;
                    }
                },
                0 | b'\\' | b';' => return Err(NotCanonical::Path),
                _ => {}
            }
            i += 1;
        }
        if !raw.is_empty() {
            f(segment(raw, start, encoded));
        }
    }
    Ok(())
}

/// The slash-separated pieces of `path`, each with its offset.
fn split_slashes(path: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut start = 0usize;
    path.split(|&b| b == b'/').map(move |raw| {
        let at = start;
        start = start.saturating_add(raw.len()).saturating_add(1);
        (at, raw)
    })
}

/// Tell dot segments (raw or encoded) from names.
fn segment(raw: &[u8], start: usize, encoded: bool) -> Seg<'_> {
    let dots = if encoded && raw.len() <= 6 {
        let mut d = decoded(raw);
        match (d.next(), d.next(), d.next()) {
            (Some(b'.'), None, _) => 1,
            (Some(b'.'), Some(b'.'), None) => 2,
            _ => 0,
        }
    } else {
        match raw {
            b"." => 1,
            b".." => 2,
            _ => 0,
        }
    };
    match dots {
        1 => Seg::Dot,
        2 => Seg::DotDot,
        _ => Seg::Name {
            raw,
            start,
            encoded,
        },
    }
}

/// The slow branch: walk every segment.
#[cold]
#[inline(never)]
fn slow(target: &[u8]) -> Result<Segments<'_>, NotCanonical> {
    let path = path_part(target);
    let mut s = Segments::empty(path);
    walk(path, |seg| match seg {
        Seg::Dot => {}
        Seg::DotDot => s.n = s.n.saturating_sub(1),
        Seg::Name {
            raw,
            start,
            encoded,
        } => {
            let (head, len) = if encoded {
                (head_decoded(raw), decoded(raw).count())
            } else {
                (scan::head(raw), raw.len())
            };
            s.push(start, raw.len(), len, head, encoded);
        }
    })?;
    if let Some(last) = s.n.checked_sub(1).filter(|&l| l < MAX_SEGMENTS) {
        s.stem = stem_of(s.raw(last));
    }
    Ok(s)
}

/// The stem of a last segment: before its first `.` that is not its first
/// byte, as (decoded length, raw length).
#[allow(clippy::arithmetic_side_effects, reason = "offsets within one segment")]
fn stem_of((raw, encoded): (&[u8], bool)) -> Option<(u32, u32)> {
    if !encoded {
        let dot = raw.iter().skip(1).position(|&b| b == b'.')? + 1;
        return Some((dot as u32, dot as u32));
    }
    let (mut i, mut d) = (0usize, 0usize);
    while let Some(&b) = raw.get(i) {
        let (byte, width) = match escape(raw, i) {
            Some(v) if b == b'%' => (v, 3),
            _ => (b, 1),
        };
        if byte == b'.' && d > 0 {
            return Some((d as u32, i as u32));
        }
        i += width;
        d += 1;
    }
    None
}

/// The first eight decoded bytes of a segment with escapes.
#[allow(
    clippy::arithmetic_side_effects,
    reason = "k < 8, so shifts stay below 64"
)]
fn head_decoded(raw: &[u8]) -> u64 {
    decoded(raw)
        .take(8)
        .enumerate()
        .fold(0u64, |h, (k, b)| h | (b as u64) << (8 * k))
}

/// The bytes of `raw` with its percent escapes decoded.
///
/// A valid `%XX` escape yields its byte; anything else (including a `%` not
/// followed by two hex digits) passes through byte for byte.
#[allow(
    clippy::arithmetic_side_effects,
    reason = "i stays within raw (at most its length + 2)"
)]
pub fn decoded(raw: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let mut i = 0usize;
    core::iter::from_fn(move || {
        let &b = raw.get(i)?;
        if b == b'%' {
            if let Some(v) = escape(raw, i) {
                i += 3;
                return Some(v);
            }
        }
        i += 1;
        Some(b)
    })
}

/// The value of one hex digit, or 0xFF.
#[allow(
    clippy::arithmetic_side_effects,
    reason = "each arm subtracts the bottom of its own range"
)]
const fn hex_digit(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0xFF,
    }
}

/// The byte of the escape `%XX` at `raw[i]`, if it is a valid escape.
fn escape(raw: &[u8], i: usize) -> Option<u8> {
    match raw.get(i..i.checked_add(3)?) {
        Some(&[b'%', hi, lo]) => {
            let (hi, lo) = (hex_digit(hi), hex_digit(lo));
            (hi <= 15 && lo <= 15).then_some(hi << 4 | lo)
        }
        _ => None,
    }
}

/// Write the canonical form of `path` into `out` and return its length.
///
/// The canonical form is `/` followed by the live segments joined by `/`
/// (`/` alone for the root), without scheme, authority, query or fragment,
/// with escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) decoded and
/// every other escape kept with uppercase hex digits. Other bytes are copied
/// as they are. `normalize` is idempotent, and classifying the canonical
/// form gives the same rules and the same decoded captures as classifying
/// the original.
pub fn normalize(path: &[u8], out: &mut [u8]) -> Result<usize, NotCanonical> {
    let mut w = 0usize;
    let mut short = false;
    walk(path_part(path), |seg| {
        if short {
            // Keep validating the rest; the output is abandoned.
            return;
        }
        match seg {
            Seg::Dot => {}
            Seg::DotDot => {
                while let Some(prev) = w.checked_sub(1) {
                    w = prev;
                    if out.get(w) == Some(&b'/') {
                        break;
                    }
                }
            }
            Seg::Name { raw, .. } => {
                if !write_segment(out, &mut w, raw) {
                    short = true;
                }
            }
        }
    })?;
    if short {
        return Err(NotCanonical::BufferTooShort);
    }
    if w == 0 {
        *out.first_mut().ok_or(NotCanonical::BufferTooShort)? = b'/';
        w = 1;
    }
    Ok(w)
}

/// Append `/` and the canonical form of one segment; false if `out` is full.
#[allow(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    reason = "offsets within out and raw; HEX has 16 entries and the index is a nibble"
)]
fn write_segment(out: &mut [u8], w: &mut usize, raw: &[u8]) -> bool {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut put = |b: u8| match out.get_mut(*w) {
        Some(slot) => {
            *slot = b;
            *w += 1;
            true
        }
        None => false,
    };
    if !put(b'/') {
        return false;
    }
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        // `walk` only hands over segments whose escapes are all valid.
        if let Some(v) = escape(raw, i).filter(|_| b == b'%') {
            let ok = if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') {
                put(v)
            } else {
                put(b'%') && put(HEX[(v >> 4) as usize]) && put(HEX[(v & 15) as usize])
            };
            if !ok {
                return false;
            }
            i += 3;
            continue;
        }
        if !put(b) {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(path: &[u8]) -> Result<std::vec::Vec<u8>, NotCanonical> {
        let mut buf = [0u8; 256];
        let n = normalize(path, &mut buf)?;
        Ok(buf[..n].to_vec())
    }

    /// The decoded segments as the matcher sees them.
    fn segs(path: &[u8]) -> Option<std::vec::Vec<std::vec::Vec<u8>>> {
        let s = Segments::parse(path, false).ok()?;
        Some(
            (0..s.n.min(MAX_SEGMENTS))
                .map(|i| {
                    let (raw, enc) = s.raw(i);
                    if enc {
                        decoded(raw).collect()
                    } else {
                        raw.to_vec()
                    }
                })
                .collect(),
        )
    }

    #[test]
    fn normalize_resolves_dots_slashes_query_and_unreserved_escapes() {
        assert_eq!(norm(b"").unwrap(), b"/");
        assert_eq!(norm(b"/").unwrap(), b"/");
        assert_eq!(norm(b"//v1//users/u1/").unwrap(), b"/v1/users/u1");
        assert_eq!(norm(b"v1/users").unwrap(), b"/v1/users");
        assert_eq!(norm(b"/v1/./x/../users?a=/..#f").unwrap(), b"/v1/users");
        assert_eq!(norm(b"/../../a/%2e%2E/b").unwrap(), b"/b");
        assert_eq!(norm(b"/%76%31/a%3fb%7e%25").unwrap(), b"/v1/a%3Fb~%25");
        assert_eq!(norm(b"/.../%2e.x").unwrap(), b"/.../..x");
        assert_eq!(norm(b"http://h:80/v1/x?q").unwrap(), b"/v1/x");
        assert_eq!(norm(b"HTTPS://h").unwrap(), b"/");
    }

    #[test]
    fn unsafe_paths_and_path_parameters_have_no_canonical_form() {
        for bad in [
            &b"/a%2Fb"[..],
            b"/a%2fb",
            b"/a%5Cb",
            b"/a%00",
            b"/a\0b",
            b"/a\\b",
            b"/%zz",
            b"/%4",
            b"/%",
            b"/%4?x",
            b"/x/../%2F",
            b"/v1/client/sign_ins;jsessionid=1",
            b"/v1;x/client",
            b"/a%3Bb",
            b"http://h/a;b",
        ] {
            assert_eq!(norm(bad), Err(NotCanonical::Path), "{:?}", bad);
            assert!(Segments::parse(bad, false).is_err(), "{:?}", bad);
        }
        // After the query, anything goes.
        assert!(norm(b"/a?%zz\0\\;").is_ok());
        let mut small = [0u8; 3];
        assert_eq!(
            normalize(b"/abcd", &mut small),
            Err(NotCanonical::BufferTooShort)
        );
        assert_eq!(normalize(b"", &mut []), Err(NotCanonical::BufferTooShort));
        assert_eq!(normalize(b"/abcd/%2F", &mut small), Err(NotCanonical::Path));
    }

    #[test]
    fn absolute_form_targets_are_read_from_their_path() {
        let want = segs(b"/v1/client/sign_ins").unwrap();
        for t in [
            &b"http://example.com/v1/client/sign_ins"[..],
            b"https://u@h:8443/v1/client/sign_ins?x",
            b"h2c+x-y.z://h/v1//client/sign_ins/",
        ] {
            assert_eq!(segs(t).unwrap(), want, "{:?}", core::str::from_utf8(t));
        }
        // Not a scheme: a relative path.
        assert_eq!(segs(b"1http://h/x").unwrap(), [&b"1http:"[..], b"h", b"x"]);
        assert_eq!(segs(b"http:/x").unwrap(), [&b"http:"[..], b"x"]);
    }

    #[test]
    fn the_fast_and_slow_branches_split_alike() {
        let paths: &[&[u8]] = &[
            b"/",
            b"/v1",
            b"/v1/client/sign_ins",
            b"//v1///users/user_123/metadata/",
            b"/v1/organizations/org_1/memberships/user_2/metadata?x=1#y",
            b"/a/b/c/d/e/f/g/h/i/j/k",
            b"/abcdefghijklmnopqrstuvwxyz0123456789/x",
            b"/v1/users/u?",
        ];
        for &p in paths {
            let mut f = Segments::empty(p);
            assert!(fast(p, &mut f));
            let s = slow(p).unwrap();
            assert_eq!(f.n, s.n, "{p:?}");
            for i in 0..f.n.min(MAX_SEGMENTS) {
                assert_eq!(f.heads[i], s.heads[i], "{p:?} {i}");
                assert_eq!(f.lens[i], s.lens[i]);
                assert_eq!(f.raw(i), s.raw(i));
            }
        }
    }

    #[test]
    fn a_last_segment_with_a_format_suffix_offers_its_stem() {
        let s = Segments::parse(b"/v1/client/sign_ins.json", false).unwrap();
        let t = s.stemmed(false).unwrap();
        assert_eq!(t.raw(2).0, b"sign_ins");
        assert_eq!(t.lens[2], 8);
        assert!(t.stemmed(false).is_none());
        let s = Segments::parse(b"/v1/users/user%5F1%2Ejson", false).unwrap();
        let t = s.stemmed(false).unwrap();
        assert_eq!(decoded(t.raw(2).0).collect::<std::vec::Vec<_>>(), b"user_1");
        // A leading dot is not a suffix; nor is a dot in an earlier segment.
        assert!(Segments::parse(b"/.well-known", false)
            .unwrap()
            .stemmed(false)
            .is_none());
        assert!(Segments::parse(b"/a.b/c", false)
            .unwrap()
            .stemmed(false)
            .is_none());
    }

    #[test]
    fn segments_past_the_kept_depth_are_counted_and_can_be_popped() {
        let s = Segments::parse(b"/0/1/2/3/4/5/6/7/8/9", false).unwrap();
        assert_eq!(s.n, 10);
        let s = Segments::parse(b"/0/1/2/3/4/5/6/7/8/9/../../../x", false).unwrap();
        assert_eq!(s.n, 8);
        assert_eq!(s.raw(7).0, b"x");
        assert_eq!(s.raw(6).0, b"6");
    }

    #[test]
    fn decoded_decodes_valid_escapes_and_passes_the_rest_through() {
        let d: std::vec::Vec<u8> = decoded(b"u%31%zz%4%").collect();
        assert_eq!(d, b"u1%zz%4%");
        let d: std::vec::Vec<u8> = decoded(b"%C3%A9\xff").collect();
        assert_eq!(d, b"\xc3\xa9\xff");
    }
}
