//! Request classification: method + path → every matching rule, with the
//! `{param}` captures that extend a rule's subject.
//!
//! - [`classify`] normalises the path without allocating and without a
//!   buffer: the query string (`?…`) and fragment (`#…`) are stripped,
//!   empty segments (repeated slashes, a trailing slash) and `.` are
//!   dropped, `..` removes the segment before it (`..` at the root stays at
//!   the root), and percent escapes are decoded for comparison (so `%76%31`
//!   is `v1` and `%2e%2e` is `..`). A path not starting with `/` is read as
//!   if it did. Comparison is case-sensitive; the method compares ignoring
//!   ASCII case.
//! - A path that cannot be made canonical (a bad escape such as `%G1` or a
//!   truncated `%4`, an encoded slash or backslash `%2F`/`%5C`, a raw
//!   backslash, NUL raw or encoded) is `canonical = false` and matches
//!   every non-exempt rule of the API and kind that has a route with a
//!   matching method, with no captures. It is never exempt.
//! - If a matching rule is unlimited, `exempt` is its index (the first one).
//!
//! How it runs, without preprocessing the patterns (they are read from the
//! table's `&str`s at match time):
//! - Rules whose API or kind does not apply, and routes whose method does
//!   not match, are skipped before the path is looked at.
//! - A path already in canonical form (it starts with `/`, has no escape,
//!   NUL or backslash, no empty segment and no segment starting with `.`,
//!   is at most [`MAX_DEPTH`] segments deep; a query and one trailing slash
//!   are allowed) is checked sixteen bytes at a time, and each pattern is
//!   compared with its bytes directly, eight at a time. A pattern whose last
//!   segment is a literal is usually rejected at the path's last byte.
//! - Any other path is walked once: the first [`MAX_DEPTH`] live segments
//!   are kept as slices of the path on a fixed stack, deeper ones are only
//!   counted (so `..` can still remove them), and patterns are compared
//!   segment by segment with the decoded stack entries. When the final
//!   depth exceeds the stack, only `*` and patterns ending in `/*` (with at
//!   most [`MAX_DEPTH`] segments before it) can match.
//!
//! Both ways give the same answers; a property test pins this down.
//!
//! Pattern syntax (see [`crate::Route`]): a segment `{name}` captures one
//! path segment, a final `*` segment (`/v1/things/*`) matches any remaining
//! segments or none, the pattern `*` matches every path, and any other
//! segment is literal and compared with the *decoded* path segment (so a
//! literal `%` in a pattern only matches `%25`). Empty pattern segments are
//! ignored, like empty path segments.
//!
//! [`normalize`] writes the canonical form that classification works on, for
//! tests, fuzzing and logging: classifying the normalised path gives the same
//! rules and the same decoded captures as classifying the original.
//!
//! ```
//! use ratecard::route::{classify, decoded};
//! use ratecard::{InstanceKind, Api, CLERK};
//!
//! let c = classify(&CLERK, Api::Backend, InstanceKind::Production, b"patch", b"//v1/./users/u%31/?x=1");
//! assert!(c.canonical);
//! let names: Vec<_> = c.matches.iter().map(|m| CLERK.rules()[m.rule as usize].name).collect();
//! assert_eq!(names, ["bapi.instance.production", "bapi.users.update"]);
//! let user: Vec<u8> = decoded(c.matches[1].captures[0]).collect();
//! assert_eq!(user, b"u1");
//! ```

use crate::rule::{Api, InstanceKind, Method, RuleTable, MAX_CAPTURES, MAX_RULES};

/// The most path segments classification keeps; deeper ones are counted,
/// and a path left deeper than this only matches `*` and `…/*` patterns.
pub const MAX_DEPTH: usize = 16;

// The stack records which entries hold escapes in a u32 bit mask.
const _: () = assert!(MAX_DEPTH <= 32);

/// One matched rule and the raw bytes of its captured segments.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Match<'p> {
    /// Index of the rule in its table.
    pub rule: u8,
    /// Number of captures used.
    pub ncaptures: u8,
    /// The captured segments as they appear in the path (percent escapes
    /// not yet decoded: see [`decoded`]).
    pub captures: [&'p [u8]; MAX_CAPTURES],
}

/// Every rule a request matches.
#[derive(Clone, Debug, Default)]
pub struct Classification<'p> {
    /// The matched rules, in table order.
    pub matches: heapless::Vec<Match<'p>, MAX_RULES>,
    /// An unlimited rule that matched: the request is exempt.
    pub exempt: Option<u8>,
    /// Whether the path could be made canonical.
    pub canonical: bool,
}

/// Why [`normalize`] wrote no canonical path.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum NotCanonical {
    /// The path cannot be made canonical: a bad or truncated escape, an
    /// encoded slash or backslash, a raw backslash, or NUL (raw or `%00`).
    Path,
    /// The output buffer is too short. It must hold the longest
    /// intermediate form (before a `..` removes a segment);
    /// `path.len() + 1` bytes always suffice.
    BufferTooShort,
}

/// What [`classify_with`] found, besides the matches it handed over.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// How many rules matched.
    pub matched: u8,
    /// An unlimited rule that matched: the request is exempt.
    pub exempt: Option<u8>,
    /// Whether the path could be made canonical.
    pub canonical: bool,
}

/// Classify a request.
///
/// Rules are visited in table order (at most [`MAX_RULES`] of them); a rule
/// matches when its API is `api`, its kind is `None` or `kind`, and one of
/// its routes matches the method and the path. The captures recorded are
/// those of the first matching route of the rule.
///
/// The [`Classification`] is a few kilobytes: on a hot path prefer
/// [`classify_with`], which hands each match to a closure instead.
pub fn classify<'p>(
    table: &RuleTable<'_>,
    api: Api,
    kind: InstanceKind,
    method: &[u8],
    path: &'p [u8],
) -> Classification<'p> {
    let mut out = Classification::default();
    let summary = classify_with(table, api, kind, method, path, |m| {
        // Cannot fail: at most MAX_RULES rules are visited.
        let _ = out.matches.push(m);
    });
    out.exempt = summary.exempt;
    out.canonical = summary.canonical;
    out
}

/// Classify a request, handing each matched rule to `f` in table order.
///
/// The same matches as [`classify`], without building a
/// [`Classification`]. When the returned [`Summary`] says the request is
/// exempt, the matches already handed over are to be ignored.
#[inline]
pub fn classify_with<'p>(
    table: &RuleTable<'_>,
    api: Api,
    kind: InstanceKind,
    method: &[u8],
    path: &'p [u8],
    f: impl FnMut(Match<'p>),
) -> Summary {
    let method = Method::parse(method);
    if let Some(clean) = clean_prefix(path) {
        // Already canonical and shallow: match patterns against the bytes.
        return visit(table, api, kind, method, f, |pat, captures| {
            match_clean(pat, clean, captures)
        });
    }
    let mut stack = Stack::new();
    if walk(path, |seg| stack.apply(seg)) {
        visit(table, api, kind, method, f, |pat, captures| {
            stack.matches(pat, captures)
        })
    } else {
        visit_non_canonical(table, api, kind, method, f)
    }
}

/// Whether rule `rule` applies to requests of `api` and `kind`.
#[inline(always)]
fn applies(rule: &crate::rule::Rule<'_>, api: Api, kind: InstanceKind) -> bool {
    rule.api == api
        && match rule.kind {
            None => true,
            Some(k) => k == kind,
        }
}

#[inline(always)]
fn visit<'p>(
    table: &RuleTable<'_>,
    api: Api,
    kind: InstanceKind,
    method: Method,
    mut f: impl FnMut(Match<'p>),
    mut matches: impl FnMut(&[u8], &mut [&'p [u8]; MAX_CAPTURES]) -> Option<u8>,
) -> Summary {
    let mut summary = Summary {
        matched: 0,
        exempt: None,
        canonical: true,
    };
    let rules = table.rules();
    for (index, rule) in rules[..rules.len().min(MAX_RULES)].iter().enumerate() {
        if !applies(rule, api, kind) {
            continue;
        }
        for route in rule.routes {
            if !route.method.matches(method) {
                continue;
            }
            let mut captures: [&'p [u8]; MAX_CAPTURES] = [&[]; MAX_CAPTURES];
            if let Some(ncaptures) = matches(route.path.as_bytes(), &mut captures) {
                f(Match {
                    rule: index as u8,
                    ncaptures,
                    captures,
                });
                summary.matched += 1;
                if summary.exempt.is_none() && rule.quota.is_unlimited() {
                    summary.exempt = Some(index as u8);
                }
                break;
            }
        }
    }
    summary
}

/// A path that cannot be made canonical matches every limited rule with a
/// route for its method, without captures.
#[cold]
fn visit_non_canonical<'p>(
    table: &RuleTable<'_>,
    api: Api,
    kind: InstanceKind,
    method: Method,
    mut f: impl FnMut(Match<'p>),
) -> Summary {
    let mut summary = Summary {
        matched: 0,
        exempt: None,
        canonical: false,
    };
    for (index, rule) in table.rules().iter().enumerate().take(MAX_RULES) {
        if applies(rule, api, kind)
            && !rule.quota.is_unlimited()
            && rule.routes.iter().any(|r| r.method.matches(method))
        {
            f(Match {
                rule: index as u8,
                ncaptures: 0,
                captures: [&[]; MAX_CAPTURES],
            });
            summary.matched += 1;
        }
    }
    summary
}

/// The bytes of a captured segment with its percent escapes decoded.
///
/// A valid `%XX` escape yields its byte; anything else (including a `%` not
/// followed by two hex digits) passes through byte for byte.
pub fn decoded(raw: &[u8]) -> impl Iterator<Item = u8> + '_ {
    Decoded { raw }
}

/// Write the canonical form of `path` into `out` and return its length.
///
/// The canonical form is `/` followed by the live segments joined by `/`
/// (`/` alone for the root), without query or fragment, with escapes of
/// unreserved characters (`A-Z a-z 0-9 - . _ ~`) decoded and every other
/// escape kept with uppercase hex digits. Other bytes are copied as they
/// are. `normalize` is idempotent, and [`classify`] gives the same rules and
/// decoded captures for the canonical form as for the original.
pub fn normalize(path: &[u8], out: &mut [u8]) -> Result<usize, NotCanonical> {
    let mut w = 0usize;
    let mut short = false;
    let ok = walk(path, |seg| {
        if short {
            // Keep validating the rest; the output is abandoned.
            return;
        }
        match seg {
            Seg::Dot => {}
            Seg::DotDot => {
                while w > 0 {
                    w -= 1;
                    if out[w] == b'/' {
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
    });
    if !ok {
        return Err(NotCanonical::Path);
    }
    if short {
        return Err(NotCanonical::BufferTooShort);
    }
    if w == 0 {
        match out.first_mut() {
            Some(b) => *b = b'/',
            None => return Err(NotCanonical::BufferTooShort),
        }
        w = 1;
    }
    Ok(w)
}

/// Append `/` and the canonical form of one segment; false if `out` is full.
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
    while i < raw.len() {
        let b = raw[i];
        // `walk` only hands over segments whose escapes are all valid.
        if b == b'%' {
            if let Some(v) = escape(raw, i) {
                let ok = if is_unreserved(v) {
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
        }
        if !put(b) {
            return false;
        }
        i += 1;
    }
    true
}

const fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The value of one hex digit, or 0xFF.
#[inline(always)]
const fn hex_digit(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0xFF,
    }
}

/// The byte of the escape `%XX` at `raw[i]`, if it is a valid escape.
#[inline(always)]
fn escape(raw: &[u8], i: usize) -> Option<u8> {
    match raw.get(i..i + 3) {
        Some(&[b'%', hi, lo]) => {
            let (hi, lo) = (hex_digit(hi), hex_digit(lo));
            if hi > 15 || lo > 15 {
                None
            } else {
                Some(hi << 4 | lo)
            }
        }
        _ => None,
    }
}

struct Decoded<'a> {
    raw: &'a [u8],
}

impl Iterator for Decoded<'_> {
    type Item = u8;

    #[inline]
    fn next(&mut self) -> Option<u8> {
        let (&b, rest) = self.raw.split_first()?;
        if b == b'%' {
            if let Some(v) = escape(self.raw, 0) {
                self.raw = &self.raw[3..];
                return Some(v);
            }
        }
        self.raw = rest;
        Some(b)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.raw.len().div_ceil(3), Some(self.raw.len()))
    }
}

/// One non-empty segment of a path, as the walker hands it over.
#[derive(Copy, Clone)]
enum Seg<'p> {
    /// `.`, raw or encoded.
    Dot,
    /// `..`, raw or encoded.
    DotDot,
    /// Any other segment; `encoded` when it holds a `%` (always a valid
    /// escape).
    Name { raw: &'p [u8], encoded: bool },
}

/// Walk the segments of `path` up to its query or fragment, handing each
/// non-empty one to `f`. Returns false, stopping early, if the path cannot
/// be made canonical.
#[inline(always)]
fn walk<'p>(path: &'p [u8], mut f: impl FnMut(Seg<'p>)) -> bool {
    let len = path.len();
    let mut i = 0;
    loop {
        let start = i;
        let mut encoded = false;
        let mut last = true;
        while i < len {
            match path[i] {
                b'/' => {
                    last = false;
                    break;
                }
                b'?' | b'#' => break,
                b'%' => {
                    match escape(path, i) {
                        None | Some(0 | b'/' | b'\\') => return false,
                        Some(_) => {}
                    }
                    encoded = true;
                    i += 3;
                    continue;
                }
                0 | b'\\' => return false,
                _ => {}
            }
            i += 1;
        }
        let raw = &path[start..i];
        if !raw.is_empty() {
            f(segment(raw, encoded));
        }
        if last {
            return true;
        }
        i += 1;
    }
}

/// Tell dot segments (raw or encoded) from names.
#[inline(always)]
fn segment(raw: &[u8], encoded: bool) -> Seg<'_> {
    if !encoded {
        return match raw {
            b"." => Seg::Dot,
            b".." => Seg::DotDot,
            _ => Seg::Name { raw, encoded },
        };
    }
    if raw.len() <= 6 {
        let mut dots = 0;
        let mut only_dots = true;
        for b in decoded(raw) {
            if b != b'.' {
                only_dots = false;
                break;
            }
            dots += 1;
        }
        if only_dots {
            match dots {
                1 => return Seg::Dot,
                2 => return Seg::DotDot,
                _ => {}
            }
        }
    }
    Seg::Name { raw, encoded }
}

/// The live segments of a normalised path: the first [`MAX_DEPTH`] kept,
/// the rest counted.
struct Stack<'p> {
    segs: [&'p [u8]; MAX_DEPTH],
    /// Bit `i` set when `segs[i]` holds an escape.
    encoded: u32,
    depth: usize,
}

impl<'p> Stack<'p> {
    #[inline(always)]
    fn new() -> Stack<'p> {
        Stack {
            segs: [&[]; MAX_DEPTH],
            encoded: 0,
            depth: 0,
        }
    }

    #[inline(always)]
    fn apply(&mut self, seg: Seg<'p>) {
        match seg {
            Seg::Dot => {}
            Seg::DotDot => self.depth = self.depth.saturating_sub(1),
            Seg::Name { raw, encoded } => {
                if self.depth < MAX_DEPTH {
                    self.segs[self.depth] = raw;
                    let bit = 1u32 << self.depth;
                    if encoded {
                        self.encoded |= bit;
                    } else {
                        self.encoded &= !bit;
                    }
                }
                self.depth += 1;
            }
        }
    }

    /// Match `pat` against the path; on success the number of captures
    /// written into `captures` (at most [`MAX_CAPTURES`]; further captures
    /// in an invalid pattern are matched but not recorded).
    #[inline]
    fn matches(&self, pat: &[u8], captures: &mut [&'p [u8]; MAX_CAPTURES]) -> Option<u8> {
        if pat == b"*" {
            return Some(0);
        }
        let plen = pat.len();
        let mut j = 0;
        let mut idx = 0;
        let mut n = 0usize;
        loop {
            while j < plen && pat[j] == b'/' {
                j += 1;
            }
            if j == plen {
                return (idx == self.depth).then_some(n as u8);
            }
            if pat[j] == b'*' && j + 1 == plen {
                // A final `*` segment: any remaining segments, or none.
                return Some(n as u8);
            }
            if idx >= self.depth || idx >= MAX_DEPTH {
                return None;
            }
            let seg = self.segs[idx];
            let encoded = self.encoded & (1 << idx) != 0;
            if pat[j] == b'{' {
                let e = next_slash(pat, j);
                if is_capture(pat, j, e) {
                    if n < MAX_CAPTURES {
                        captures[n] = seg;
                        n += 1;
                    }
                    j = e;
                    idx += 1;
                    continue;
                }
                // Not a capture after all: a literal segment.
            }
            j = literal(pat, j, seg, encoded)?;
            idx += 1;
        }
    }
}

/// Compare the pattern segment at `pat[j..]` with the path segment `seg`
/// (decoded if `encoded`); on a match, the pattern index just past it.
#[inline(always)]
fn literal(pat: &[u8], j: usize, seg: &[u8], encoded: bool) -> Option<usize> {
    let mut k = j;
    if !encoded {
        for &b in seg {
            if pat.get(k) != Some(&b) {
                return None;
            }
            k += 1;
        }
    } else {
        for b in decoded(seg) {
            if pat.get(k) != Some(&b) {
                return None;
            }
            k += 1;
        }
    }
    match pat.get(k) {
        None | Some(b'/') => Some(k),
        Some(_) => None,
    }
}

/// Whether `pat[j..e]` is a `{name}` capture.
#[inline(always)]
fn is_capture(pat: &[u8], j: usize, e: usize) -> bool {
    e - j >= 2 && pat[j] == b'{' && pat[e - 1] == b'}'
}

/// What the clean-path scan does at each byte: 0 go on, 1 `/`, 2 end of
/// path (`?`, `#`), 3 not clean (`%`, NUL, `\`), 4 `.`.
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b'/' as usize] = 1;
    t[b'?' as usize] = 2;
    t[b'#' as usize] = 2;
    t[b'%' as usize] = 3;
    t[0] = 3;
    t[b'\\' as usize] = 3;
    t[b'.' as usize] = 4;
    t
};

/// If `path` is already in canonical form up to its query, and at most
/// [`MAX_DEPTH`] segments deep, that canonical prefix: `/a/b`, or empty for
/// the root. Clean means: it starts with `/`, holds no `%`, NUL or
/// backslash, and no segment is empty or starts with `.` (so no `.` or `..`
/// either), except that one trailing slash is dropped. Other paths (with a
/// `.well-known` segment, say) take the general walk, which handles them all.
#[inline(always)]
fn clean_prefix(path: &[u8]) -> Option<&[u8]> {
    if path.first() != Some(&b'/') {
        return None;
    }
    let len = path.len();
    let mut slashes = 0usize;
    let mut i = 0;
    // Sixteen bytes at a time (and the byte after them, for the pairs).
    while i + 17 <= len {
        let w: &[u8; 17] = match path[i..i + 17].try_into() {
            Ok(w) => w,
            Err(_) => break,
        };
        let (stop, bad, n) = block(w);
        if stop {
            // The query starts in this block: finish one byte at a time.
            break;
        }
        if bad {
            return None;
        }
        slashes += n as usize;
        i += 16;
    }
    let mut prev = if i == 0 { 0 } else { path[i - 1] };
    let mut end = len;
    while i < len {
        let b = path[i];
        let class = CLASS[b as usize];
        if class != 0 {
            if class == 2 {
                end = i;
                break;
            }
            if class == 3 || prev == b'/' {
                // Not clean, or an empty or dot-led segment.
                return None;
            }
            slashes += (class == 1) as usize;
        }
        prev = b;
        i += 1;
    }
    // `end` ≥ 1: the path starts with `/`, which is not a query.
    if path[end - 1] == b'/' {
        // The root, or a trailing slash: drop it.
        end -= 1;
        slashes -= 1;
    }
    (slashes <= MAX_DEPTH).then(|| &path[..end])
}

/// For the sixteen bytes `w[..16]`: whether one ends the path (`?`, `#`),
/// whether one is not clean (`%`, NUL, `\`, or a `/` before `/` or `.`),
/// and how many are `/`. Written so that the compiler can turn it into a
/// few vector compares; it does so reliably only for the function alone,
/// hence no inlining (a call costs less than the scalar loop).
#[inline(never)]
fn block(w: &[u8; 17]) -> (bool, bool, u8) {
    let (mut stop, mut bad, mut n) = (false, false, 0u8);
    for k in 0..16 {
        let (b, next) = (w[k], w[k + 1]);
        stop |= (b == b'?') | (b == b'#');
        bad |= (b == b'%')
            | (b == 0)
            | (b == b'\\')
            | ((b == b'/') & ((next == b'/') | (next == b'.')));
        n += (b == b'/') as u8;
    }
    (stop, bad, n)
}

/// Match `pat` against a clean path (as [`clean_prefix`] returns it), the
/// same way [`Stack::matches`] does against a stack, in one pass over both.
#[inline(always)]
fn match_clean<'p>(
    pat: &[u8],
    path: &'p [u8],
    captures: &mut [&'p [u8]; MAX_CAPTURES],
) -> Option<u8> {
    let Some(&last) = pat.last() else {
        // The empty pattern: the root only, as `Stack::matches` has it.
        return path.is_empty().then_some(0);
    };
    if !matches!(last, b'}' | b'*' | b'/') {
        // The last pattern segment is a literal: it and the `/` before it
        // end the path too. Most patterns of a table are rejected here,
        // at the first byte compared.
        if path.last() != Some(&last) || !tail_may_match(pat, path) {
            return None;
        }
    } else if last == b'*' && pat.len() == 1 {
        return Some(0);
    }
    match match_runs(pat, path, captures) {
        Some(answer) => answer,
        None => match_segments(pat, path, captures),
    }
}

/// The fast way of [`match_clean`], for well-formed patterns: compare the
/// literal runs between captures eight bytes at a time. `None` when it
/// cannot tell (an empty pattern segment, a trailing `/`, a `{` that does
/// not open a whole-segment capture, no leading `/`): then
/// [`match_segments`] decides.
#[inline(always)]
fn match_runs<'p>(
    pat: &[u8],
    path: &'p [u8],
    captures: &mut [&'p [u8]; MAX_CAPTURES],
) -> Option<Option<u8>> {
    let (plen, end) = (pat.len(), path.len());
    if plen < 2 || pat[0] != b'/' || pat[plen - 1] == b'/' {
        return None;
    }
    // A final `/*` matches the rest: compare what comes before it.
    let (body, rest) = if pat[plen - 1] == b'*' && pat[plen - 2] == b'/' {
        (&pat[..plen - 2], true)
    } else {
        (pat, false)
    };
    if body.last() == Some(&b'/') {
        return None;
    }
    let blen = body.len();
    let (mut i, mut j, mut n) = (0, 0, 0usize);
    while j < blen {
        if j + 8 <= blen && i + 8 <= end {
            let (a, b) = (load(body, j), load(path, i));
            let braces = bytes_equal_to(a, b'{');
            let diff = a ^ b;
            if braces | diff == 0 {
                i += 8;
                j += 8;
                continue;
            }
            // The first byte that differs or opens a capture.
            let k = ((braces | diff).trailing_zeros() / 8) as usize;
            i += k;
            j += k;
        }
        let p = body[j];
        if p == b'{' {
            // Equal so far, so the path is at a segment start too.
            if body[j - 1] != b'/' {
                return None;
            }
            let e = next_slash(body, j);
            if !is_capture(body, j, e) {
                return None;
            }
            let s = i;
            i = next_slash(path, i);
            if i == s {
                // No segment left in the path.
                return Some(None);
            }
            if n < MAX_CAPTURES {
                captures[n] = &path[s..i];
                n += 1;
            }
            j = e;
            continue;
        }
        if i < end && path[i] == p {
            i += 1;
            j += 1;
            continue;
        }
        // A difference in a literal run: no match, unless the pattern has
        // an empty segment here.
        return if p == b'/' { None } else { Some(None) };
    }
    let done = i == end || (rest && path[i] == b'/');
    Some(done.then_some(n as u8))
}

/// The general way of [`match_clean`]: segment by segment, for any pattern.
/// Rare (malformed patterns only), so kept out of line.
#[inline(never)]
fn match_segments<'p>(
    pat: &[u8],
    path: &'p [u8],
    captures: &mut [&'p [u8]; MAX_CAPTURES],
) -> Option<u8> {
    let (plen, end) = (pat.len(), path.len());
    let (mut i, mut j, mut n) = (0, 0, 0usize);
    loop {
        // `i` is at a `/` of the path or its end; `j` likewise in `pat`.
        while j < plen && pat[j] == b'/' {
            j += 1;
        }
        if j == plen {
            return (i == end).then_some(n as u8);
        }
        if pat[j] == b'*' && j + 1 == plen {
            return Some(n as u8);
        }
        if i == end {
            return None;
        }
        i += 1;
        if pat[j] == b'{' {
            let e = next_slash(pat, j);
            if is_capture(pat, j, e) {
                let s = i;
                i = next_slash(path, i);
                if n < MAX_CAPTURES {
                    captures[n] = &path[s..i];
                    n += 1;
                }
                j = e;
                continue;
            }
        }
        // A literal segment: compare in lockstep up to the next `/` (or
        // end) of both, which must come together.
        loop {
            let p = if j < plen { pat[j] } else { b'/' };
            let c = if i < end { path[i] } else { b'/' };
            if p != c {
                return None;
            }
            if p == b'/' {
                break;
            }
            i += 1;
            j += 1;
        }
    }
}

/// For a pattern whose last segment is a literal, and a clean path: whether
/// that segment and the `/` before it may also end the path (false only
/// when they cannot: then the pattern does not match).
#[inline(always)]
fn tail_may_match(pat: &[u8], path: &[u8]) -> bool {
    let (plen, end) = (pat.len(), path.len());
    if plen >= 8 && end >= 8 {
        // The last eight bytes, from the last `/` among them on, must agree.
        let (a, b) = (load(pat, plen - 8), load(path, end - 8));
        let slashes = bytes_equal_to(a, b'/');
        let from = if slashes == 0 {
            0
        } else {
            63 - slashes.leading_zeros() as usize - 7
        };
        return (a ^ b) >> from == 0;
    }
    let mut t = 1;
    loop {
        let p = pat[plen - t];
        if t > end || path[end - t] != p {
            return false;
        }
        if p == b'/' || t == plen {
            return true;
        }
        t += 1;
    }
}

/// The index of the first `/` in `path` (a path or a pattern) at or after
/// `i`, or its length.
#[inline(always)]
fn next_slash(path: &[u8], mut i: usize) -> usize {
    while i + 8 <= path.len() {
        let m = bytes_equal_to(load(path, i), b'/');
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < path.len() && path[i] != b'/' {
        i += 1;
    }
    i
}

/// Eight bytes of `s` from `at`, the first in the low bits.
#[inline(always)]
fn load(s: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&s[at..at + 8]);
    u64::from_le_bytes(w)
}

/// The high bit of every byte of `x` equal to `b`, and no other bit.
#[inline(always)]
const fn bytes_equal_to(x: u64, b: u8) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let v = x ^ (0x0101_0101_0101_0101 * b as u64);
    !(((v & LOW7) + LOW7) | v | LOW7)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::Quota;
    use crate::rule::{Route, Rule, Scope};

    fn norm(path: &[u8]) -> Result<heapless::Vec<u8, 256>, NotCanonical> {
        let mut buf = [0u8; 256];
        let n = normalize(path, &mut buf)?;
        Ok(heapless::Vec::from_slice(&buf[..n]).unwrap())
    }

    #[test]
    fn normalize_resolves_dots_slashes_query_and_unreserved_escapes() {
        assert_eq!(&norm(b"").unwrap()[..], b"/");
        assert_eq!(&norm(b"/").unwrap()[..], b"/");
        assert_eq!(&norm(b"//v1//users/u1/").unwrap()[..], b"/v1/users/u1");
        assert_eq!(&norm(b"v1/users").unwrap()[..], b"/v1/users");
        assert_eq!(
            &norm(b"/v1/./x/../users?a=/..#f").unwrap()[..],
            b"/v1/users"
        );
        assert_eq!(&norm(b"/../../a/%2e%2E/b").unwrap()[..], b"/b");
        assert_eq!(&norm(b"/%76%31/a%3fb%7e%25").unwrap()[..], b"/v1/a%3Fb~%25");
        assert_eq!(&norm(b"/.../%2e.x").unwrap()[..], b"/.../..x");
    }

    #[test]
    fn normalize_refuses_unsafe_paths_and_short_buffers() {
        for bad in [
            &b"/a%2Fb"[..],
            b"/a%2fb",
            b"/a%5Cb",
            b"/a%5c",
            b"/a%00",
            b"/a\0b",
            b"/a\\b",
            b"/%zz",
            b"/%4",
            b"/%",
            b"/%4?x",
            b"/x/../%2F",
        ] {
            assert_eq!(norm(bad), Err(NotCanonical::Path), "{:?}", bad);
        }
        // After the query, anything goes.
        assert!(norm(b"/a?%zz\0\\").is_ok());
        let mut small = [0u8; 3];
        assert_eq!(
            normalize(b"/abcd", &mut small),
            Err(NotCanonical::BufferTooShort)
        );
        assert_eq!(normalize(b"", &mut []), Err(NotCanonical::BufferTooShort));
        // An unsafe path is reported as such even when the buffer is short.
        assert_eq!(normalize(b"/abcd/%2F", &mut small), Err(NotCanonical::Path));
    }

    #[test]
    fn decoded_decodes_valid_escapes_and_passes_the_rest_through() {
        let d: heapless::Vec<u8, 32> = decoded(b"u%31%zz%4%").collect();
        assert_eq!(&d[..], b"u1%zz%4%");
        let d: heapless::Vec<u8, 32> = decoded(b"%C3%A9\xff").collect();
        assert_eq!(&d[..], b"\xc3\xa9\xff");
    }

    const ROUTES: &[Route<'static>] = &[
        Route::new(Method::Get, "/a/{x}/b/{y}"),
        Route::new(Method::Post, "/pre/*"),
        Route::new(Method::Put, "//lit%/"),
    ];
    const RULES: &[Rule<'static>] = &[
        Rule::new(
            "t.r",
            Api::Backend,
            Scope::Instance,
            ROUTES,
            Quota::per_secs(1, 1),
        ),
        Rule::new(
            "t.free",
            Api::Backend,
            Scope::Instance,
            &[Route::new(Method::Get, "/free")],
            Quota::unlimited(),
        ),
    ];
    const TABLE: RuleTable<'static> = RuleTable::new(RULES);

    fn rules(method: &[u8], path: &[u8]) -> heapless::Vec<u8, 8> {
        classify(
            &TABLE,
            Api::Backend,
            InstanceKind::Development,
            method,
            path,
        )
        .matches
        .iter()
        .map(|m| m.rule)
        .collect()
    }

    #[test]
    fn patterns_capture_prefix_match_and_compare_decoded_literals() {
        let c = classify(
            &TABLE,
            Api::Backend,
            InstanceKind::Development,
            b"GET",
            b"/a/1/b/%32",
        );
        assert_eq!(c.matches.len(), 1);
        assert_eq!(c.matches[0].ncaptures, 2);
        assert_eq!(c.matches[0].captures, [&b"1"[..], &b"%32"[..]]);
        assert_eq!(&rules(b"GET", b"/a/1/b")[..], &[] as &[u8]);
        assert_eq!(&rules(b"GET", b"/a/1/b/2/3")[..], &[] as &[u8]);
        assert_eq!(&rules(b"POST", b"/pre")[..], &[0]);
        assert_eq!(&rules(b"POST", b"/pre/x/y")[..], &[0]);
        assert_eq!(&rules(b"POST", b"/prefix")[..], &[] as &[u8]);
        assert_eq!(&rules(b"PUT", b"/lit%25")[..], &[0]);
        assert_eq!(&rules(b"PUT", b"/lit")[..], &[] as &[u8]);
        let c = classify(
            &TABLE,
            Api::Backend,
            InstanceKind::Development,
            b"get",
            b"/free/",
        );
        assert_eq!(c.exempt, Some(1));
        // Wrong API: nothing.
        let c = classify(
            &TABLE,
            Api::Frontend,
            InstanceKind::Development,
            b"GET",
            b"/free",
        );
        assert!(c.matches.is_empty() && c.exempt.is_none());
    }

    #[test]
    fn paths_deeper_than_the_stack_only_match_trailing_wildcards() {
        let deep = b"/pre/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16/17";
        assert_eq!(&rules(b"POST", deep)[..], &[0]);
        let deep = b"/a/1/b/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16/17/18";
        assert_eq!(&rules(b"GET", deep)[..], &[] as &[u8]);
        // Popped back under the stack: the kept segments are intact.
        let back = b"/a/1/b/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16/17/18/../../../../../../../../../../../../../../../../..";
        assert_eq!(&rules(b"GET", &back[..])[..], &[] as &[u8]);
        let back = b"/a/1/b/2/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/../../../../../../../../../../../../../../../..";
        assert_eq!(&rules(b"GET", &back[..])[..], &[0]);
    }

    #[test]
    fn clean_path_matchers_handle_the_cases_property_tests_once_found() {
        let cases: [(&[u8], &[u8], Option<u8>); 5] = [
            // An empty pattern segment before a final `*`.
            (b"//*", b"/a", Some(0)),
            // A final `/*` after a literal run that ends inside a segment.
            (b"/a/*", b"/ab", None),
            // A capture right after an eight-byte run that ends at a `/`.
            (b"/a/a/abcdefgh/ab/{}", b"/a/a/abcdefgh/ab/a", Some(1)),
            (b"/{x}/abc", b"/abcdefgh/abc", Some(1)),
            (b"/a//b/", b"/a/b", Some(0)),
        ];
        for (pat, path, want) in cases {
            let clean = clean_prefix(path).unwrap();
            let mut caps = [&[][..]; MAX_CAPTURES];
            assert_eq!(match_clean(pat, clean, &mut caps), want, "{pat:?} {path:?}");
            assert_eq!(match_segments(pat, clean, &mut caps), want);
            let mut stack = Stack::new();
            assert!(walk(path, |seg| stack.apply(seg)));
            assert_eq!(stack.matches(pat, &mut caps), want);
        }
    }

    /// `/`-joined segments drawn from `segments`, with one of `ends` after.
    fn joined(
        segments: &'static [&'static str],
        ends: &'static [&'static str],
    ) -> impl proptest::strategy::Strategy<Value = heapless::Vec<u8, 256>> {
        use proptest::prelude::*;
        (
            prop::collection::vec(prop::sample::select(segments), 0..6),
            prop::sample::select(ends),
        )
            .prop_map(|(segs, end)| {
                let mut v = heapless::Vec::new();
                for seg in segs {
                    let _ = v.push(b'/');
                    let _ = v.extend_from_slice(seg.as_bytes());
                }
                let _ = v.extend_from_slice(end.as_bytes());
                v
            })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]

        /// The byte-level matchers for clean paths agree with the
        /// segment-stack matcher on any pattern, well-formed or not.
        #[test]
        fn clean_path_matchers_agree_with_the_stack_matcher(
            pat in joined(
                &["a", "ab", "abc", "abcdefgh", "abcdefghi", "{x}", "{y}", "{", "}", "{}", "a{x}", "*", "", "%25"],
                &["", "", "/*", "/", "*"],
            ),
            path in joined(
                &["a", "ab", "abc", "abcdefgh", "abcdefghi", "abcdefghij", "{x}", "{", "*", "", ".", "..", "%61", "%25"],
                &["", "", "/", "?q", "/?q=/"],
            ),
            fill in proptest::collection::vec(
                proptest::sample::select(&["a", "b", "bc", "x}", "abcdefghij", "{x}", "%61"][..]),
                4,
            ),
        ) {
            // Also a path built from the pattern, which it often matches:
            // each `{…}` segment and a final `*` filled from `fill`.
            let mut built: heapless::Vec<u8, 256> = heapless::Vec::new();
            for (k, seg) in pat.split(|&b| b == b'/').enumerate().skip(1) {
                let _ = built.push(b'/');
                let filled = if seg.first() == Some(&b'{') || seg == b"*" {
                    fill[k % fill.len()].as_bytes()
                } else {
                    seg
                };
                let _ = built.extend_from_slice(filled);
            }
            for path in [&path[..], &built[..]] {
                let mut stack = Stack::new();
                if !walk(path, |seg| stack.apply(seg)) {
                    continue;
                }
                let mut want = [&[][..]; MAX_CAPTURES];
                let expected = stack.matches(&pat, &mut want);
                if let Some(clean) = clean_prefix(path) {
                    let mut got = [&[][..]; MAX_CAPTURES];
                    let found = match_clean(&pat, clean, &mut got);
                    proptest::prop_assert_eq!(found, expected);
                    let mut slow = [&[][..]; MAX_CAPTURES];
                    proptest::prop_assert_eq!(match_segments(&pat, clean, &mut slow), expected);
                    if let Some(n) = expected {
                        for k in 0..n as usize {
                            proptest::prop_assert!(decoded(got[k]).eq(decoded(want[k])));
                            proptest::prop_assert!(decoded(slow[k]).eq(decoded(want[k])));
                        }
                    }
                }
            }
        }
    }
}
