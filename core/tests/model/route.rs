//! A reference classifier, written from the semantics in `ratecard::route`'s
//! documentation alone, for the property tests and the fuzz target `route`
//! to hold the engine's compiled router against. It shares no code with the
//! engine: it normalises a target into a `Vec` of decoded segments and
//! matches each pattern segment by segment, allocating freely and caring
//! nothing for speed, depth limits or bit masks.
#![allow(dead_code)]

use ratecard::{Api, InstanceKind, Method, RuleTable};

/// What a request classifies as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classified {
    /// The path could be made canonical.
    pub canonical: bool,
    /// The first unlimited rule (in table order) the request matched.
    pub exempt: Option<u8>,
    /// Every matched rule in table order, with its decoded captures.
    pub matches: Vec<(u8, Vec<Vec<u8>>)>,
}

/// The path of a request target: an absolute-form target
/// (`scheme://authority/path`, scheme = ALPHA *( ALPHA / DIGIT / "+" / "-"
/// / "." )) loses its scheme and authority; then the query or fragment goes.
pub fn path_of(target: &[u8]) -> &[u8] {
    let mut path = target;
    if let Some(colon) = target.iter().position(|&b| b == b':') {
        let scheme = &target[..colon];
        let is_scheme = scheme.first().is_some_and(u8::is_ascii_alphabetic)
            && scheme
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
        if is_scheme && !target.starts_with(b"/") && target[colon..].starts_with(b"://") {
            let rest = &target[colon + 3..];
            let end = rest
                .iter()
                .position(|&b| b"/?#".contains(&b))
                .unwrap_or(rest.len());
            path = &rest[end..];
        }
    }
    let end = path
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(path.len());
    &path[..end]
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// One slash-separated piece, decoded; `None` if it makes the path
/// non-canonical: a `%` without two hex digits, an escape of NUL, `/`, `\`
/// or `;`, or a raw NUL, `\` or `;`.
fn decode(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let b = match raw[i] {
            b'%' => {
                let hi = hex(*raw.get(i + 1)?)?;
                let lo = hex(*raw.get(i + 2)?)?;
                i += 3;
                hi << 4 | lo
            }
            b => {
                i += 1;
                if matches!(b, 0 | b'\\' | b';') {
                    return None;
                }
                b
            }
        };
        if matches!(b, 0 | b'/' | b'\\' | b';') {
            return None;
        }
        out.push(b);
    }
    Some(out)
}

/// The decoded segments of `target` after `.` and `..` are resolved (`..`
/// at the root stays there) and empty segments dropped; `None` if the path
/// cannot be made canonical.
pub fn segments(target: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut segs: Vec<Vec<u8>> = Vec::new();
    for raw in path_of(target).split(|&b| b == b'/') {
        let seg = decode(raw)?;
        match &seg[..] {
            b"" | b"." => {}
            b".." => {
                segs.pop();
            }
            _ => segs.push(seg),
        }
    }
    Some(segs)
}

/// The method a request names, ignoring ASCII case.
fn method_of(name: &[u8]) -> Method {
    const NAMES: [(&[u8], Method); 7] = [
        (b"GET", Method::Get),
        (b"HEAD", Method::Head),
        (b"POST", Method::Post),
        (b"PUT", Method::Put),
        (b"PATCH", Method::Patch),
        (b"DELETE", Method::Delete),
        (b"OPTIONS", Method::Options),
    ];
    NAMES
        .iter()
        .find(|(n, _)| name.eq_ignore_ascii_case(n))
        .map_or(Method::Other, |&(_, m)| m)
}

fn method_matches(route: Method, request: Method) -> bool {
    route == Method::Any || route == request
}

/// The captures of `pattern` on `segs`, if it matches: `{name}` captures
/// one segment, a final `*` any remaining segments (or none), `*` alone
/// every path, anything else is a literal equal to the decoded segment
/// (ignoring ASCII case when `fold`); empty pattern segments are ignored.
fn match_pattern(pattern: &str, segs: &[Vec<u8>], fold: bool) -> Option<Vec<Vec<u8>>> {
    if pattern == "*" {
        return Some(Vec::new());
    }
    let mut parts: Vec<&[u8]> = pattern
        .as_bytes()
        .split(|&b| b == b'/')
        .filter(|p| !p.is_empty())
        .collect();
    let rest = parts.last() == Some(&&b"*"[..]);
    if rest {
        parts.pop();
    }
    if segs.len() < parts.len() || (!rest && segs.len() != parts.len()) {
        return None;
    }
    let mut captures = Vec::new();
    for (part, seg) in parts.iter().zip(segs) {
        if part.len() >= 2 && part.starts_with(b"{") && part.ends_with(b"}") {
            captures.push(seg.clone());
        } else if !(*part == &seg[..] || (fold && part.eq_ignore_ascii_case(seg))) {
            return None;
        }
    }
    Some(captures)
}

/// Classify a request as the documentation says `Router::classify` does.
pub fn classify(
    table: &RuleTable<'_>,
    fold: bool,
    api: Api,
    kind: InstanceKind,
    method: &[u8],
    target: &[u8],
) -> Classified {
    let method = method_of(method);
    let applies =
        |rule: &ratecard::Rule<'_>| rule.api == api && rule.kind.is_none_or(|k| k == kind);
    let Some(segs) = segments(target) else {
        // Every limited rule with a route for the method, no captures.
        let matches = table
            .rules()
            .iter()
            .enumerate()
            .filter(|(_, r)| applies(r) && !r.quota.is_unlimited())
            .filter(|(_, r)| r.routes.iter().any(|rt| method_matches(rt.method, method)))
            .map(|(i, _)| (i as u8, Vec::new()))
            .collect();
        return Classified {
            canonical: false,
            exempt: None,
            matches,
        };
    };
    let first_match = |rule: &ratecard::Rule<'_>, segs: &[Vec<u8>]| {
        rule.routes
            .iter()
            .filter(|rt| method_matches(rt.method, method))
            .find_map(|rt| match_pattern(rt.path, segs, fold))
    };
    // A last segment with a `.` past its first byte offers its stem.
    let stem = segs.last().and_then(|last| {
        let dot = last.iter().skip(1).position(|&b| b == b'.')? + 1;
        let mut s = segs.clone();
        *s.last_mut()? = last[..dot].to_vec();
        Some(s)
    });
    let mut out = Classified {
        canonical: true,
        exempt: None,
        matches: Vec::new(),
    };
    for (i, rule) in table.rules().iter().enumerate() {
        if !applies(rule) {
            continue;
        }
        let unlimited = rule.quota.is_unlimited();
        let exact = first_match(rule, &segs);
        // The stem's match wins for limited rules: its captures are what a
        // suffix-stripping upstream routes on.
        let stemmed = match (&stem, unlimited) {
            (Some(s), false) => first_match(rule, s),
            _ => None,
        };
        if unlimited && exact.is_some() && out.exempt.is_none() {
            out.exempt = Some(i as u8);
        }
        if let Some(captures) = stemmed.or(exact) {
            out.matches.push((i as u8, captures));
        }
    }
    out
}
