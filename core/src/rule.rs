//! Rules and rule tables: which requests a quota applies to, and whose
//! requests it counts together. Everything here is `const`-constructible, so
//! a table is plain data.

use crate::quota::{Algorithm, Quota};

/// The most rules one table may hold (the rule index lives in a slot's tag).
pub const MAX_RULES: usize = 64;
/// The most `{param}` captures one route pattern may hold.
pub const MAX_CAPTURES: usize = 2;

/// Which Clerk API a request is addressed to.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Api {
    /// The Frontend API, keyed by client IP.
    Frontend = 1,
    /// The Backend API, keyed by secret key (or tenant).
    Backend = 2,
}

impl Api {
    /// The API for a C-side `RATECARD_API_*` value.
    pub const fn from_u32(v: u32) -> Option<Api> {
        match v {
            1 => Some(Api::Frontend),
            2 => Some(Api::Backend),
            _ => None,
        }
    }
}

/// Whose requests a rule counts together.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Scope {
    /// One client IP (IPv4, or an IPv6 prefix), within the tenant if any.
    ClientIp = 0,
    /// One instance: the tenant if given, else the secret key, else (no
    /// key) the client IP. Captured `{param}`s do not split it.
    Instance = 1,
    /// One instance and the ids the route captures, so
    /// `/v1/users/{user_id}` counts per instance and user.
    InstanceParams = 2,
}

/// Production or development instance, from the secret key's prefix.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum InstanceKind {
    /// `sk_live_…` / `live_…`.
    Production = 0,
    /// `sk_test_…` / `test_…`, a missing key, and by default an unknown prefix.
    Development = 1,
}

/// An HTTP method a route matches.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Method {
    /// Every method, including unknown ones.
    Any = 0,
    /// GET.
    Get = 1,
    /// HEAD.
    Head = 2,
    /// POST.
    Post = 3,
    /// PUT.
    Put = 4,
    /// PATCH.
    Patch = 5,
    /// DELETE.
    Delete = 6,
    /// OPTIONS.
    Options = 7,
    /// A method this crate does not name; matched only by [`Method::Any`].
    Other = 8,
}

impl Method {
    /// Parse a method name, ignoring ASCII case.
    #[inline]
    #[allow(
        clippy::arithmetic_side_effects,
        clippy::indexing_slicing,
        reason = "name is 3..=7 bytes on the indexed arm; shifts are below 64"
    )]
    pub fn parse(name: &[u8]) -> Method {
        // Every name is 3 to 7 ASCII letters, and letters differ from
        // their other case only in bit 5: setting it in every byte of the
        // request's name and comparing with the lowercase name as one word
        // ignores ASCII case exactly (a non-letter byte cannot turn into a
        // letter's lowercase form).
        #[allow(
            clippy::arithmetic_side_effects,
            clippy::indexing_slicing,
            reason = "const evaluation over literals: any overflow fails the build"
        )]
        const fn word(s: &[u8]) -> u64 {
            let mut w = 0u64;
            let mut i = 0;
            while i < s.len() {
                w |= (s[i] as u64) << (8 * i);
                i += 1;
            }
            w
        }
        const GET: u64 = word(b"get");
        const PUT: u64 = word(b"put");
        const POST: u64 = word(b"post");
        const HEAD: u64 = word(b"head");
        const PATCH: u64 = word(b"patch");
        const DELETE: u64 = word(b"delete");
        const OPTIONS: u64 = word(b"options");
        let n = name.len();
        let w = match name {
            [a, b, c] => u16::from_le_bytes([*a, *b]) as u64 | (*c as u64) << 16,
            [a, b, c, d, ..] if n <= 7 => {
                let lo = u32::from_le_bytes([*a, *b, *c, *d]) as u64;
                let t = &name[n - 4..];
                let hi = u32::from_le_bytes([t[0], t[1], t[2], t[3]]) as u64;
                lo | hi << (8 * (n - 4))
            }
            _ => return Method::Other,
        };
        match w | (0x2020_2020_2020_2020 >> (8 * (8 - n))) {
            GET => Method::Get,
            PUT => Method::Put,
            POST => Method::Post,
            HEAD => Method::Head,
            PATCH => Method::Patch,
            DELETE => Method::Delete,
            OPTIONS => Method::Options,
            _ => Method::Other,
        }
    }

    /// Whether a route of method `self` matches a request of `method`.
    pub const fn matches(self, method: Method) -> bool {
        matches!(self, Method::Any) || self as u8 == method as u8
    }
}

/// One method + path pattern.
///
/// In `path`, `{name}` captures one segment, a final `/*` matches any
/// remaining segments (or none), and `*` alone matches every path.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Route<'a> {
    /// The method.
    pub method: Method,
    /// The path pattern.
    pub path: &'a str,
}

impl<'a> Route<'a> {
    /// A route for `method` on `path`.
    pub const fn new(method: Method, path: &'a str) -> Route<'a> {
        Route { method, path }
    }
}

/// One row of a rate-limit table.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule<'a> {
    /// Stable name, e.g. `fapi.sign_ins.create`; used in `RateLimit` fields.
    pub name: &'a str,
    /// The API the rule belongs to.
    pub api: Api,
    /// Whose requests count together.
    pub scope: Scope,
    /// Only for instances of this kind; `None` for every instance.
    pub kind: Option<InstanceKind>,
    /// The requests it applies to; a request matching any route matches.
    pub routes: &'a [Route<'a>],
    /// The quota; [`Quota::unlimited`] makes matching requests exempt.
    pub quota: Quota,
    /// How the quota is enforced.
    pub algorithm: Algorithm,
}

impl<'a> Rule<'a> {
    /// A GCRA rule for every instance kind.
    pub const fn new(
        name: &'a str,
        api: Api,
        scope: Scope,
        routes: &'a [Route<'a>],
        quota: Quota,
    ) -> Rule<'a> {
        Rule {
            name,
            api,
            scope,
            kind: None,
            routes,
            quota,
            algorithm: Algorithm::Gcra,
        }
    }

    /// The same rule, only for instances of `kind`.
    pub const fn for_kind(self, kind: InstanceKind) -> Rule<'a> {
        Rule {
            kind: Some(kind),
            ..self
        }
    }

    /// The same rule enforced with `algorithm`.
    pub const fn with_algorithm(self, algorithm: Algorithm) -> Rule<'a> {
        Rule { algorithm, ..self }
    }
}

/// A table of rules: the Clerk table ([`crate::CLERK`]) or one of the caller's.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct RuleTable<'a> {
    rules: &'a [Rule<'a>],
}

/// Why a rule table cannot be used.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum TableError {
    /// More than [`MAX_RULES`] rules.
    TooManyRules,
    /// A rule name is empty or holds a character outside `[A-Za-z0-9._-]`.
    BadName,
    /// A route pattern does not start with `/` (or is not `*`), holds an
    /// unclosed `{`, captures more than two segments, or has
    /// more than [`crate::route::MAX_SEGMENTS`] segments.
    BadPattern,
    /// A limited rule has a period of zero.
    ZeroPeriod,
    /// More than [`crate::route::MAX_ROUTES`] routes, or more than
    /// [`crate::route::MAX_LITERALS`] literal segments, over all rules.
    TooManyRoutes,
}

impl TableError {
    /// A short description.
    pub const fn as_str(&self) -> &'static str {
        match self {
            TableError::TooManyRules => "more than 64 rules",
            TableError::BadName => "a rule name is empty or not [A-Za-z0-9._-]",
            TableError::BadPattern => "a route pattern is malformed or too deep",
            TableError::ZeroPeriod => "a limited rule has a period of zero",
            TableError::TooManyRoutes => "too many routes or literal segments",
        }
    }
}

impl core::fmt::Display for TableError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::error::Error for TableError {}

impl<'a> RuleTable<'a> {
    /// A table over `rules`; see [`RuleTable::validate`].
    pub const fn new(rules: &'a [Rule<'a>]) -> RuleTable<'a> {
        RuleTable { rules }
    }

    /// The rules, in index order.
    pub const fn rules(&self) -> &'a [Rule<'a>] {
        self.rules
    }

    /// The number of rules.
    pub const fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether the table has no rules.
    pub const fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rule at `index`.
    pub fn get(&self, index: usize) -> Option<&'a Rule<'a>> {
        self.rules.get(index)
    }

    /// Check that the table can be used by a limiter.
    pub fn validate(&self) -> Result<(), TableError> {
        if self.rules.len() > MAX_RULES {
            return Err(TableError::TooManyRules);
        }
        for rule in self.rules {
            let name_ok = !rule.name.is_empty()
                && rule
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !name_ok {
                return Err(TableError::BadName);
            }
            if !rule.quota.is_unlimited() && rule.quota.period.0 == 0 {
                return Err(TableError::ZeroPeriod);
            }
            for route in rule.routes {
                if !pattern_ok(route.path.as_bytes()) {
                    return Err(TableError::BadPattern);
                }
            }
        }
        match crate::route::Router::new(*self, false) {
            Ok(_) => Ok(()),
            Err(crate::route::CompileError::Pattern) => Err(TableError::BadPattern),
            Err(crate::route::CompileError::TooLarge) => Err(TableError::TooManyRoutes),
        }
    }

    /// A 64-bit fingerprint of everything that affects decisions and slot
    /// identity: names, APIs, scopes, kinds, routes, quotas, algorithms.
    pub fn fingerprint(&self) -> u64 {
        let mut h = Fnv::new();
        h.u64(self.rules.len() as u64);
        for rule in self.rules {
            h.bytes(rule.name.as_bytes());
            h.u64(rule.api as u64);
            h.u64(rule.scope as u64);
            h.u64(match rule.kind {
                None => 0,
                Some(k) => (k as u64).wrapping_add(1),
            });
            h.u64(rule.routes.len() as u64);
            for route in rule.routes {
                h.u64(route.method as u64);
                h.bytes(route.path.as_bytes());
            }
            h.u64(rule.quota.limit as u64);
            h.u64(rule.quota.period.0);
            h.u64(rule.quota.burst as u64);
            h.u64(rule.algorithm as u64);
        }
        h.finish()
    }
}

#[allow(
    clippy::arithmetic_side_effects,
    reason = "a count of at most the pattern's length"
)]
fn pattern_ok(p: &[u8]) -> bool {
    if p == b"*" {
        return true;
    }
    if p.first() != Some(&b'/') {
        return false;
    }
    let mut captures = 0;
    let mut open = false;
    for &b in p {
        match b {
            b'{' if !open => open = true,
            b'}' if open => {
                open = false;
                captures += 1;
            }
            b'{' | b'}' => return false,
            _ => {}
        }
    }
    !open && captures <= MAX_CAPTURES
}

/// FNV-1a over length-prefixed fields: a fingerprint, not a keyed hash.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn byte(&mut self, b: u8) {
        self.0 ^= b as u64;
        self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
    }
    fn u64(&mut self, v: u64) {
        for b in v.to_le_bytes() {
            self.byte(b);
        }
    }
    fn bytes(&mut self, s: &[u8]) {
        self.u64(s.len() as u64);
        for &b in s {
            self.byte(b);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Nanos;

    const ROUTES: &[Route<'static>] = &[Route::new(Method::Post, "/v1/things/{id}")];
    const RULES: &[Rule<'static>] = &[Rule::new(
        "custom.things",
        Api::Backend,
        Scope::Instance,
        ROUTES,
        Quota::per_secs(3, 1),
    )];
    const TABLE: RuleTable<'static> = RuleTable::new(RULES);

    #[test]
    fn a_user_table_is_const_and_valid() {
        assert_eq!(TABLE.len(), 1);
        assert_eq!(TABLE.validate(), Ok(()));
    }

    #[test]
    fn method_parsing_ignores_case_and_any_matches_unknown_methods() {
        assert_eq!(Method::parse(b"pAtCh"), Method::Patch);
        assert_eq!(Method::parse(b"BREW"), Method::Other);
        // Only letters fold: bit 5 of a non-letter is not a case.
        assert_eq!(Method::parse(b"GE\x14"), Method::Other);
        assert_eq!(Method::parse(b"\x07et"), Method::Other);
        assert_eq!(Method::parse(b"get\0"), Method::Other);
        assert_eq!(Method::parse(b"OPTIONS"), Method::Options);
        assert_eq!(Method::parse(b"OPTIONSX"), Method::Other);
        assert_eq!(Method::parse(b"De"), Method::Other);
        assert!(Method::Any.matches(Method::Other));
        assert!(!Method::Post.matches(Method::Get));
    }

    /// `Method::parse` as it was first written, byte by byte.
    fn parse_bytewise(name: &[u8]) -> Method {
        const NAMES: &[(&[u8], Method)] = &[
            (b"GET", Method::Get),
            (b"PUT", Method::Put),
            (b"POST", Method::Post),
            (b"HEAD", Method::Head),
            (b"PATCH", Method::Patch),
            (b"DELETE", Method::Delete),
            (b"OPTIONS", Method::Options),
        ];
        NAMES
            .iter()
            .find(|(text, _)| name.eq_ignore_ascii_case(text))
            .map_or(Method::Other, |&(_, m)| m)
    }

    #[test]
    fn method_parsing_agrees_with_a_bytewise_comparison_on_every_one_byte_change() {
        for name in [
            "GET", "PUT", "POST", "HEAD", "PATCH", "DELETE", "OPTIONS", "get",
        ] {
            for i in 0..name.len() {
                for b in 0..=255u8 {
                    let mut n = name.as_bytes().to_vec();
                    n[i] = b;
                    assert_eq!(Method::parse(&n), parse_bytewise(&n), "{n:?}");
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn method_parsing_agrees_with_a_bytewise_comparison(
            name in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(b"GETPUOSHADLCIgetpuoshadlci".to_vec()),
                    proptest::num::u8::ANY,
                ],
                0..9,
            ),
            flips in proptest::collection::vec(proptest::bool::ANY, 9),
        ) {
            let mut name = name;
            for (b, flip) in name.iter_mut().zip(flips) {
                if flip {
                    *b ^= 0x20;
                }
            }
            proptest::prop_assert_eq!(Method::parse(&name), parse_bytewise(&name));
        }
    }

    #[test]
    fn fingerprint_changes_with_any_decision_relevant_field() {
        let base = TABLE.fingerprint();
        let mut r = RULES[0];
        r.quota = Quota::per_secs(4, 1);
        assert_ne!(RuleTable::new(&[r]).fingerprint(), base);
        let mut r = RULES[0];
        r.name = "custom.other";
        assert_ne!(RuleTable::new(&[r]).fingerprint(), base);
        let mut r = RULES[0];
        r.quota.period = Nanos(1);
        assert_ne!(RuleTable::new(&[r]).fingerprint(), base);
    }

    #[test]
    fn invalid_tables_are_refused() {
        let mut r = RULES[0];
        r.name = "bad name";
        assert_eq!(RuleTable::new(&[r]).validate(), Err(TableError::BadName));
        let routes = [Route::new(Method::Get, "v1/no-slash")];
        let mut r = RULES[0];
        r.routes = &routes;
        assert_eq!(RuleTable::new(&[r]).validate(), Err(TableError::BadPattern));
        let routes = [Route::new(Method::Get, "/{a}/{b}/{c}")];
        r.routes = &routes;
        assert_eq!(RuleTable::new(&[r]).validate(), Err(TableError::BadPattern));
        let mut r = RULES[0];
        r.quota.period = Nanos(0);
        assert_eq!(RuleTable::new(&[r]).validate(), Err(TableError::ZeroPeriod));
        let many = [RULES[0]; MAX_RULES + 1];
        assert_eq!(
            RuleTable::new(&many).validate(),
            Err(TableError::TooManyRules)
        );
    }
}
