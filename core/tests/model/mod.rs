//! An independent reference model of DESIGN.md's "Semantics", shared by
//! `reference_model.rs` (driven by proptest), the other suites that need
//! Clerk's quotas, and the fuzz target `engine` (included with `#[path]`).
//!
//! The model is written from the formulas alone: virtual scheduling on a
//! u128 TAT (or a window index and count) per (rule, subject) in an
//! unbounded `HashMap`. It shares no code with the engine: which rules a
//! request matches comes from a hand-written list of (method, path, rules)
//! below, not from the engine's router, and quotas are copied from
//! DESIGN.md's table: [`ROWS`] is the tests' one copy of Clerk's table. The
//! engine's rule indices are mapped to names through `CLERK`.
//!
//! Wherever DESIGN.md leaves a choice open (ties between binding rules), the
//! model accepts every rule the contract allows, and then checks the
//! engine's chosen rule's numbers exactly.
#![allow(dead_code)]

pub mod route;

use ratecard::{
    Algorithm, Api, CheckError, Config, Decision, InstanceKind, Nanos, Request, RuleId, RuleSet,
    Verdict as Outcome, CLERK,
};
use std::collections::HashMap;
use std::net::IpAddr;

const SEC: u64 = 1_000_000_000;

// --- the rule table, copied from DESIGN.md --------------------------------

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Ip,
    Instance,
}

pub struct Row {
    pub name: &'static str,
    pub scope: Scope,
    pub limit: u32,
    pub period: u64,
}

const H: u64 = 3_600 * SEC;
pub const ROWS: &[Row] = &[
    row_("fapi.sign_ins.create", Scope::Ip, 5, 10 * SEC),
    row_("fapi.sign_ups.create", Scope::Ip, 5, 10 * SEC),
    row_("fapi.sign_ins.attempt", Scope::Ip, 3, 10 * SEC),
    row_("fapi.sign_ups.attempt", Scope::Ip, 3, 10 * SEC),
    row_("bapi.instance.production", Scope::Instance, 1000, 10 * SEC),
    row_("bapi.instance.development", Scope::Instance, 100, 10 * SEC),
    row_("bapi.jwks", Scope::Instance, 0, 0),
    row_("bapi.invitations.create", Scope::Instance, 100, H),
    row_("bapi.invitations.bulk", Scope::Instance, 25, H),
    row_("bapi.org_invitations.create", Scope::Instance, 250, H),
    row_("bapi.org_invitations.bulk", Scope::Instance, 50, H),
    row_("bapi.users.update", Scope::Instance, 10, 10 * SEC),
    row_("bapi.organizations.update", Scope::Instance, 10, 10 * SEC),
    row_("bapi.memberships.update", Scope::Instance, 10, 10 * SEC),
];

const fn row_(name: &'static str, scope: Scope, limit: u32, period: u64) -> Row {
    Row {
        name,
        scope,
        limit,
        period,
    }
}

pub fn row_of(name: &str) -> usize {
    ROWS.iter()
        .position(|r| r.name == name)
        .unwrap_or_else(|| panic!("no row {name}"))
}

/// The row named `name`.
pub fn row(name: &str) -> &'static Row {
    &ROWS[row_of(name)]
}

/// The engine's index of a rule, by name.
pub fn engine_index(name: &str) -> RuleId {
    let i = CLERK.rules().iter().position(|r| r.name == name).unwrap();
    RuleId(i as u8)
}

// --- requests, written by hand --------------------------------------------

/// `"I"` stands for the instance row of the request's kind.
pub const INSTANCE: &str = "I";

/// Matched rows and their subject captures (decoded).
pub type Rows = &'static [(&'static str, &'static [&'static [u8]])];

pub struct Endpoint {
    pub api: Api,
    pub method: &'static [u8],
    pub path: &'static [u8],
    /// Matched rows and their subject captures (decoded).
    pub rules: Rows,
    pub exempt: bool,
    /// The rows matched instead under `Config::fold_case`, where that
    /// differs.
    pub folded: Option<Rows>,
}

pub const fn fe(path: &'static [u8], rules: Rows) -> Endpoint {
    Endpoint {
        api: Api::Frontend,
        method: b"POST",
        path,
        rules,
        exempt: false,
        folded: None,
    }
}

pub const fn be(method: &'static [u8], path: &'static [u8], rules: Rows) -> Endpoint {
    Endpoint {
        api: Api::Backend,
        method,
        path,
        rules,
        exempt: false,
        folded: None,
    }
}

pub const SIGN_IN: &[(&str, &[&[u8]])] = &[("fapi.sign_ins.create", &[])];
pub const SIGN_UP: &[(&str, &[&[u8]])] = &[("fapi.sign_ups.create", &[])];
pub const SIGN_IN_ATTEMPT: &[(&str, &[&[u8]])] = &[("fapi.sign_ins.attempt", &[])];
pub const SIGN_UP_ATTEMPT: &[(&str, &[&[u8]])] = &[("fapi.sign_ups.attempt", &[])];
pub const ALL_FRONTEND_POST: &[(&str, &[&[u8]])] = &[
    ("fapi.sign_ins.create", &[]),
    ("fapi.sign_ups.create", &[]),
    ("fapi.sign_ins.attempt", &[]),
    ("fapi.sign_ups.attempt", &[]),
];
pub const ONLY_INSTANCE: &[(&str, &[&[u8]])] = &[(INSTANCE, &[])];

/// Single-rule (or no-rule, or exempt) endpoints.
pub const SINGLE: &[Endpoint] = &[
    fe(b"/v1/client/sign_ins", SIGN_IN),
    fe(b"/v1/sign_ins", SIGN_IN),
    fe(b"//v1/./client/sign_ins/", SIGN_IN),
    fe(b"/v1/client/sign_ins?redirect_url=/v1/jwks", SIGN_IN),
    fe(b"/v1/%63lient/sign_ins", SIGN_IN),
    fe(b"/v1/client/x/../sign_ins#top", SIGN_IN),
    fe(
        b"/v1/client/sign_ins/sia_1/attempt_first_factor",
        SIGN_IN_ATTEMPT,
    ),
    fe(
        b"/v1/client/sign_ins/sia_2/attempt_second_factor",
        SIGN_IN_ATTEMPT,
    ),
    fe(b"/v1/sign_ins/attempt_first_factor", SIGN_IN_ATTEMPT),
    fe(b"/v1/client/sign_ups", SIGN_UP),
    fe(b"/v1/client/sign_ins/%2e%2e/sign_ups", SIGN_UP),
    fe(
        b"/v1/client/sign_ups/sua_1/attempt_verification",
        SIGN_UP_ATTEMPT,
    ),
    Endpoint {
        method: b"GET",
        ..fe(b"/v1/client", &[])
    },
    Endpoint {
        method: b"GET",
        ..fe(b"/v1/client/sign_ins", &[])
    },
    be(b"GET", b"/v1/users/me", ONLY_INSTANCE),
    be(b"DELETE", b"/v1/users/user_1", ONLY_INSTANCE),
    Endpoint {
        exempt: true,
        ..be(b"GET", b"/v1/jwks", &[("bapi.jwks", &[])])
    },
    Endpoint {
        exempt: true,
        ..be(b"GET", b"/v1//jwks/", &[("bapi.jwks", &[])])
    },
];

/// Requests matching several rules (or, unparseable, every rule they might).
pub const MULTI: &[Endpoint] = &[
    fe(
        b"/v1/client/sign_ins%2Fattempt_first_factor",
        ALL_FRONTEND_POST,
    ),
    fe(b"/v1/client/sign_ins%00", ALL_FRONTEND_POST),
    be(
        b"POST",
        b"/v1/invitations",
        &[(INSTANCE, &[]), ("bapi.invitations.create", &[])],
    ),
    be(
        b"POST",
        b"/v1//invitations/",
        &[(INSTANCE, &[]), ("bapi.invitations.create", &[])],
    ),
    be(
        b"POST",
        b"/v1/invitations/bulk",
        &[(INSTANCE, &[]), ("bapi.invitations.bulk", &[])],
    ),
    // DESIGN.md scopes organization invitations per secret key only.
    be(
        b"POST",
        b"/v1/organizations/org_1/invitations",
        &[(INSTANCE, &[]), ("bapi.org_invitations.create", &[])],
    ),
    be(
        b"POST",
        b"/v1/organizations/org_1/invitations/bulk",
        &[(INSTANCE, &[]), ("bapi.org_invitations.bulk", &[])],
    ),
    be(
        b"PATCH",
        b"/v1/users/user_1",
        &[(INSTANCE, &[]), ("bapi.users.update", &[b"user_1"])],
    ),
    be(
        b"PATCH",
        b"/v1/users/user_%31",
        &[(INSTANCE, &[]), ("bapi.users.update", &[b"user_1"])],
    ),
    be(
        b"PUT",
        b"/v1/users/user_1/metadata",
        &[(INSTANCE, &[]), ("bapi.users.update", &[b"user_1"])],
    ),
    be(
        b"PATCH",
        b"/v1/users/user_2/metadata",
        &[(INSTANCE, &[]), ("bapi.users.update", &[b"user_2"])],
    ),
    be(
        b"PATCH",
        b"/v1/organizations/org_1",
        &[(INSTANCE, &[]), ("bapi.organizations.update", &[b"org_1"])],
    ),
    be(
        b"PUT",
        b"/v1/organizations/org_1/metadata",
        &[(INSTANCE, &[]), ("bapi.organizations.update", &[b"org_1"])],
    ),
    be(
        b"PATCH",
        b"/v1/organizations/org_1/memberships/user_1",
        &[
            (INSTANCE, &[]),
            ("bapi.memberships.update", &[b"org_1", b"user_1"]),
        ],
    ),
    be(
        b"PATCH",
        b"/v1/organizations/org_2/memberships/user_1/metadata",
        &[
            (INSTANCE, &[]),
            ("bapi.memberships.update", &[b"org_2", b"user_1"]),
        ],
    ),
    be(
        b"PATCH",
        b"/v1/users/user_1%2F",
        &[
            (INSTANCE, &[]),
            ("bapi.users.update", &[]),
            ("bapi.organizations.update", &[]),
            ("bapi.memberships.update", &[]),
        ],
    ),
];

/// Organization invitations of a second organization, and an unparseable
/// POST that might be any invitation: per DESIGN.md these share the
/// instance's organization-invitation limits with `org_1`'s.
pub const ORGS: &[Endpoint] = &[
    be(
        b"POST",
        b"/v1/organizations/org_2/invitations",
        &[(INSTANCE, &[]), ("bapi.org_invitations.create", &[])],
    ),
    be(
        b"POST",
        b"/v1/organizations/org_2/invitations/bulk",
        &[(INSTANCE, &[]), ("bapi.org_invitations.bulk", &[])],
    ),
    be(
        b"POST",
        b"/v1/invitations%2Fbulk",
        &[
            (INSTANCE, &[]),
            ("bapi.invitations.create", &[]),
            ("bapi.invitations.bulk", &[]),
            ("bapi.org_invitations.create", &[]),
            ("bapi.org_invitations.bulk", &[]),
        ],
    ),
];

/// Path spellings upstream servers route like the plain path (issue 11):
/// `;` path parameters (raw or encoded) cannot be made canonical and are
/// charged to every limited rule of the method; a format suffix is charged
/// like its stem (never exempt that way); an absolute-form target is read
/// from its path; upper-case literals match only under `fold_case`, and a
/// captured id keeps its case.
pub const SPELLINGS: &[Endpoint] = &[
    fe(b"/v1/client/sign_ins;jsessionid=1", ALL_FRONTEND_POST),
    fe(b"/v1;x/client/sign_ins", ALL_FRONTEND_POST),
    fe(
        b"/v1/client/sign_ins/sia_1/attempt_first_factor;x",
        ALL_FRONTEND_POST,
    ),
    fe(b"/v1/client/sign_ins%3bx", ALL_FRONTEND_POST),
    fe(b"/v1/client/sign_ins.json", SIGN_IN),
    fe(
        b"/v1/client/sign_ins/sia_1/attempt_first_factor.json",
        SIGN_IN_ATTEMPT,
    ),
    fe(b"http://host/v1/client/sign_ins", SIGN_IN),
    fe(b"HTTPS://user@host:8443/v1//client/sign_ins/?x=1", SIGN_IN),
    Endpoint {
        folded: Some(SIGN_IN),
        ..fe(b"/V1/client/SIGN_INS", &[])
    },
    be(
        b"PATCH",
        b"/v1/users/user_1;x",
        &[
            (INSTANCE, &[]),
            ("bapi.users.update", &[]),
            ("bapi.organizations.update", &[]),
            ("bapi.memberships.update", &[]),
        ],
    ),
    be(
        b"PATCH",
        b"/v1/users/user_1;y",
        &[
            (INSTANCE, &[]),
            ("bapi.users.update", &[]),
            ("bapi.organizations.update", &[]),
            ("bapi.memberships.update", &[]),
        ],
    ),
    be(
        b"PATCH",
        b"/v1/users/user_1.json",
        &[(INSTANCE, &[]), ("bapi.users.update", &[b"user_1"])],
    ),
    be(
        b"PUT",
        b"/v1/users/user_2/metadata.xml",
        &[(INSTANCE, &[]), ("bapi.users.update", &[b"user_2"])],
    ),
    be(
        b"PATCH",
        b"http://api.example/v1/users/user_1?x",
        &[(INSTANCE, &[]), ("bapi.users.update", &[b"user_1"])],
    ),
    be(b"GET", b"/v1/jwks.json", ONLY_INSTANCE),
    Endpoint {
        folded: Some(&[(INSTANCE, &[]), ("bapi.users.update", &[b"User_1"])]),
        ..be(b"PATCH", b"/V1/Users/User_1", ONLY_INSTANCE)
    },
    Endpoint {
        folded: Some(&[(INSTANCE, &[]), ("bapi.users.update", &[b"user_1"])]),
        ..be(b"PATCH", b"/v1/USERS/user_1", ONLY_INSTANCE)
    },
];

pub const KEYS: &[Option<&[u8]>] = &[
    None,
    Some(b"sk_live_AAAAAAAAAAAAAAAAAAAAAAAA"),
    Some(b"Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAA"),
    Some(b"sk_test_BBBBBBBBBBBBBBBBBBBBBBBB"),
    Some(b"rk_other_CCCCCCCCCCCCCCCC"),
    Some(b"live_DDDD"),
];

pub const IPS: &[&[u8]] = &[
    &[],
    &[192, 0, 2, 1],
    &[192, 0, 2, 2],
    &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1],
    &[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5],
    &[
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0xff, 0xff, 0, 0, 0, 0, 0, 9,
    ],
    &[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 5],
];

pub const TENANTS: &[&[u8]] = &[b"", b"tenant-1", b"tenant-2"];

// --- configurations -------------------------------------------------------

#[derive(Copy, Clone, Debug)]
pub enum Variant {
    Default,
    UnknownIsProduction,
    Pace,
    FixedWindow,
    Ipv6Slash128,
    FoldCase,
}

pub fn config(v: Variant) -> Config {
    let mut c = Config {
        // Room for every key a walk makes (a few hundred) at low load, and
        // small enough that a scan of its slots (`stats().occupancy`) is cheap.
        capacity: 1 << 12,
        ..Config::DEFAULT
    };
    match v {
        Variant::Default => {}
        Variant::UnknownIsProduction => c.unknown_kind = InstanceKind::Production,
        Variant::Pace => c.pace = true,
        Variant::FixedWindow => c.algorithm = Some(Algorithm::FixedWindow),
        Variant::Ipv6Slash128 => c.ipv6_prefix = 128,
        Variant::FoldCase => c.fold_case = true,
    }
    c
}

// --- the model ------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    /// Frontend: tenant + client IP.
    Client(Vec<u8>, Vec<u8>),
    /// Backend: the tenant names the instance.
    Tenant(Vec<u8>),
    /// Backend: the secret key (Bearer stripped).
    Key(Vec<u8>),
    /// Backend without a key: the client IP.
    Ip(Vec<u8>),
}

pub type Key = (usize, Subject, Vec<Vec<u8>>);

#[derive(Copy, Clone, Debug)]
pub enum State {
    Tat(u128),
    Window(u128, u32),
}

/// One rule's verdict.
#[derive(Copy, Clone, Debug)]
pub struct Verdict {
    pub allowed: bool,
    pub never_fits: bool,
    pub remaining: u64,
    pub reset: u128,
    pub retry_after: u128,
    /// The state to store if the request is allowed.
    pub charged: State,
    /// The clamped state to store whatever happens, if the old one was wild.
    pub clamp: Option<State>,
}

pub struct Model {
    pub variant: Variant,
    pub states: HashMap<Key, State>,
}

/// What the model expects of one decision.
#[derive(Debug)]
pub enum Expect {
    NoRule,
    Exempt(usize),
    Decided {
        allowed: bool,
        never_fits: bool,
        /// Every row the contract allows to bind, with its verdict.
        binding: Vec<(usize, Verdict)>,
        matched: Vec<usize>,
    },
}

/// One request as the model sees it: what the engine is asked, and which
/// rows it matches (written by hand, never computed by the engine's router).
pub struct Req<'a> {
    pub api: Api,
    pub method: &'a [u8],
    pub path: &'a [u8],
    /// Matched rows ([`INSTANCE`] for the instance row of the key's kind)
    /// and their subject captures (decoded).
    pub rules: &'a [(&'a str, &'a [&'a [u8]])],
    /// An unlimited row matched: the request is exempt.
    pub exempt: bool,
    pub ip: &'a [u8],
    pub key: Option<&'a [u8]>,
    pub tenant: &'a [u8],
    pub cost: u32,
}

impl<'a> Req<'a> {
    /// A request to `endpoint` on a limiter configured as `variant`.
    pub fn new(
        endpoint: &'a Endpoint,
        variant: Variant,
        ip: &'a [u8],
        key: Option<&'a [u8]>,
        tenant: &'a [u8],
        cost: u32,
    ) -> Req<'a> {
        let rules = match (variant, endpoint.folded) {
            (Variant::FoldCase, Some(folded)) => folded,
            _ => endpoint.rules,
        };
        Req {
            api: endpoint.api,
            method: endpoint.method,
            path: endpoint.path,
            rules,
            exempt: endpoint.exempt,
            ip,
            key,
            tenant,
            cost,
        }
    }

    pub fn request(&self) -> Request<'a> {
        Request {
            api: self.api,
            method: self.method,
            path: self.path,
            client_ip: ip_addr(self.ip),
            secret_key: self.key.unwrap_or(b""),
            tenant: self.tenant,
            cost: self.cost,
        }
    }
}

/// The address of 4 or 16 network-order bytes; none for no bytes.
pub fn ip_addr(ip: &[u8]) -> Option<IpAddr> {
    match ip.len() {
        0 => None,
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(ip).unwrap())),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(ip).unwrap())),
        n => unreachable!("an IP of {n} bytes"),
    }
}

impl Model {
    pub fn new(variant: Variant) -> Model {
        Model {
            variant,
            states: HashMap::new(),
        }
    }

    pub fn fixed_window(&self) -> bool {
        matches!(self.variant, Variant::FixedWindow)
    }

    /// `(T, burst)` of a row under this configuration.
    pub fn params(&self, row: usize) -> (u128, u128) {
        let r = &ROWS[row];
        let t = (r.period as u128).div_ceil(r.limit as u128).max(1);
        let burst = if matches!(self.variant, Variant::Pace) && !self.fixed_window() {
            1
        } else {
            r.limit as u128
        };
        (t, burst)
    }

    pub fn ip_bytes(&self, ip: &[u8]) -> Vec<u8> {
        match ip.len() {
            4 => ip.to_vec(),
            16 if ip[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff] => ip[12..].to_vec(),
            16 if matches!(self.variant, Variant::Ipv6Slash128) => ip.to_vec(),
            16 => {
                let mut v = ip.to_vec();
                v[8..].fill(0);
                v
            }
            _ => unreachable!("the generator only makes valid IPs"),
        }
    }

    pub fn kind(&self, key: &[u8]) -> usize {
        let production = row_of("bapi.instance.production");
        let development = row_of("bapi.instance.development");
        if key.starts_with(b"sk_live_") || key.starts_with(b"live_") {
            production
        } else if key.starts_with(b"sk_test_") || key.starts_with(b"test_") || key.is_empty() {
            development
        } else if matches!(self.variant, Variant::UnknownIsProduction) {
            production
        } else {
            development
        }
    }

    /// The keys of every rule `req` matches, or the error it must give.
    pub fn keys(&self, req: &Req) -> Result<Vec<Key>, CheckError> {
        let key = req
            .key
            .map(|k| k.strip_prefix(b"Bearer ").unwrap_or(k))
            .unwrap_or(b"");
        let mut out = Vec::new();
        for &(name, captures) in req.rules {
            let row = if name == INSTANCE {
                self.kind(key)
            } else {
                row_of(name)
            };
            let subject = match ROWS[row].scope {
                Scope::Ip => {
                    if req.ip.is_empty() {
                        return Err(CheckError::MissingSubject);
                    }
                    Subject::Client(req.tenant.to_vec(), self.ip_bytes(req.ip))
                }
                Scope::Instance if !req.tenant.is_empty() => Subject::Tenant(req.tenant.to_vec()),
                Scope::Instance if !key.is_empty() => Subject::Key(key.to_vec()),
                Scope::Instance if !req.ip.is_empty() => Subject::Ip(self.ip_bytes(req.ip)),
                Scope::Instance => return Err(CheckError::MissingSubject),
            };
            out.push((row, subject, captures.iter().map(|c| c.to_vec()).collect()));
        }
        Ok(out)
    }

    /// DESIGN.md's GCRA and fixed-window formulas for one rule.
    pub fn verdict(&self, row: usize, state: Option<State>, now: u128, cost: u128) -> Verdict {
        let (t, burst) = self.params(row);
        if self.fixed_window() {
            let limit = ROWS[row].limit as u128;
            let period = ROWS[row].period as u128;
            let cur = now / period;
            let (mut index, mut count) = match state {
                Some(State::Window(i, c)) => (i, c as u128),
                None => (cur, 0),
                Some(State::Tat(_)) => unreachable!(),
            };
            let mut clamp = None;
            if index > cur + 2 {
                // A window index more than two windows ahead comes only from
                // a wild clock: the current window, full.
                (index, count) = (cur, limit);
                clamp = Some(State::Window(cur, limit as u32));
            }
            if index < cur {
                (index, count) = (cur, 0);
            }
            // A clock that stepped back up to two windows still counts in
            // the later window: a step back hands nothing back.
            let end = (index + 1) * period - now;
            let left = limit - count;
            let fits = cost <= limit;
            let allowed = fits && cost <= left;
            return Verdict {
                allowed,
                never_fits: !fits,
                remaining: (if allowed { left - cost } else { left }) as u64,
                reset: end,
                retry_after: if allowed || !fits { 0 } else { end },
                charged: State::Window(index, (count + cost) as u32),
                clamp,
            };
        }
        let span = burst * t; // τ + T
        let mut tat = match state {
            Some(State::Tat(x)) => x,
            None => 0,
            Some(State::Window(..)) => unreachable!(),
        };
        let mut clamp = None;
        // Wild: more than two bursts ahead, and more than one burst plus a
        // second (a merely stale timestamp is not wild).
        if tat > now + (2 * span).max(span + SEC as u128) {
            tat = now + span;
            clamp = Some(State::Tat(tat));
        }
        let base = tat.max(now);
        let new_tat = base + cost * t;
        let fits = cost <= burst;
        // Conforms iff max(TAT, now) + c·T − τ − T ≤ now.
        let allowed = fits && new_tat <= now + span;
        let after = if allowed { new_tat } else { base };
        Verdict {
            allowed,
            never_fits: !fits,
            // ⌊(now + τ + T − TAT') / T⌋, none left when TAT' is further ahead.
            remaining: ((now + span).saturating_sub(after) / t) as u64,
            reset: after - now,
            retry_after: if allowed || !fits {
                0
            } else {
                new_tat - span - now
            },
            charged: State::Tat(new_tat),
            clamp,
        }
    }

    /// Decide `req` at `now`; apply it unless `peek`.
    pub fn decide(&mut self, req: &Req, now: u64, peek: bool) -> Result<Expect, CheckError> {
        if req.exempt {
            return Ok(Expect::Exempt(row_of(req.rules[0].0)));
        }
        if req.rules.is_empty() {
            return Ok(Expect::NoRule);
        }
        let keys = self.keys(req)?;
        let now = now as u128;
        let cost = req.cost.max(1) as u128;
        let verdicts: Vec<Verdict> = keys
            .iter()
            .map(|k| self.verdict(k.0, self.states.get(k).copied(), now, cost))
            .collect();
        let allowed = verdicts.iter().all(|v| v.allowed);
        if !peek {
            for (k, v) in keys.iter().zip(&verdicts) {
                if allowed {
                    self.states.insert(k.clone(), v.charged);
                } else if let Some(c) = v.clamp {
                    // Stored also on a denial.
                    self.states.insert(k.clone(), c);
                }
            }
        }
        let rows: Vec<(usize, Verdict)> = keys.iter().map(|k| k.0).zip(verdicts).collect();
        let binding: Vec<(usize, Verdict)> = if allowed {
            // The smallest fraction of its burst left: remaining / burst.
            let frac = |&(row, v): &(usize, Verdict)| (v.remaining as u128, self.params(row).1);
            let best = rows
                .iter()
                .map(frac)
                .min_by(|a, b| (a.0 * b.1).cmp(&(b.0 * a.1)))
                .unwrap();
            rows.iter()
                .filter(|r| frac(r).0 * best.1 == best.0 * frac(r).1)
                .copied()
                .collect()
        } else {
            let denying: Vec<_> = rows.iter().filter(|r| !r.1.allowed).copied().collect();
            if denying.iter().any(|r| r.1.never_fits) {
                denying.into_iter().filter(|r| r.1.never_fits).collect()
            } else {
                let longest = denying.iter().map(|r| r.1.retry_after).max().unwrap();
                denying
                    .into_iter()
                    .filter(|r| r.1.retry_after == longest)
                    .collect()
            }
        };
        Ok(Expect::Decided {
            allowed,
            never_fits: !allowed && binding[0].1.never_fits,
            binding,
            matched: rows.iter().map(|r| r.0).collect(),
        })
    }

    /// Forget every matched rule's state for this subject; how many existed.
    pub fn reset(&mut self, req: &Req) -> Result<u32, CheckError> {
        if req.exempt || req.rules.is_empty() {
            return Ok(0);
        }
        let keys = self.keys(req)?;
        Ok(keys
            .iter()
            .filter(|k| self.states.remove(k).is_some())
            .count() as u32)
    }
}

pub fn agree(expect: &Expect, d: &Decision) -> Result<(), String> {
    let name = |i: Option<RuleId>| {
        i.and_then(|i| CLERK.rules().get(i.index()))
            .map_or("-", |r| r.name)
    };
    let zero_fields = d.limit == 0 && d.remaining == 0 && d.reset == Nanos(0) && !d.dry_run;
    match expect {
        Expect::NoRule => {
            if *d != Decision::UNMATCHED {
                return Err("expected no rule (Decision::UNMATCHED)".into());
            }
        }
        Expect::Exempt(row) => {
            let id = engine_index(ROWS[*row].name);
            if d.verdict != Outcome::Exempt
                || d.rule != Some(id)
                || !d.allowed()
                || !zero_fields
                || !d.matched.contains(id)
                || d.retry_after_secs().is_some()
            {
                return Err(format!("expected exempt under {}", ROWS[*row].name));
            }
        }
        Expect::Decided {
            allowed,
            never_fits,
            binding,
            matched,
        } => {
            if d.allowed() != *allowed || d.dry_run {
                return Err(format!("expected allowed={allowed}"));
            }
            let mask = matched
                .iter()
                .fold(RuleSet::EMPTY, |m, &r| m.with(engine_index(ROWS[r].name)));
            if d.matched != mask {
                return Err(format!("expected matched set {mask:?}"));
            }
            let Some(&(row, v)) = binding.iter().find(|(r, _)| ROWS[*r].name == name(d.rule))
            else {
                let names: Vec<_> = binding.iter().map(|(r, _)| ROWS[*r].name).collect();
                return Err(format!("binding rule must be one of {names:?}"));
            };
            let kind = if *allowed {
                "allowed"
            } else if *never_fits {
                "never fits"
            } else {
                "limited"
            };
            let got_kind = match d.verdict {
                Outcome::Allowed => "allowed",
                Outcome::NeverFits => "never fits",
                Outcome::Limited { .. } => "limited",
                Outcome::Exempt => "exempt",
                Outcome::Unmatched => "unmatched",
            };
            let (retry, retry_secs) = if *allowed || *never_fits {
                (None, None)
            } else {
                let secs = v.retry_after.div_ceil(SEC as u128).max(1) as u32;
                (Some(v.retry_after), Some(secs))
            };
            let want = (
                kind,
                ROWS[row].limit,
                v.remaining,
                v.reset,
                retry,
                retry_secs,
            );
            let got = (
                got_kind,
                d.limit,
                d.remaining as u64,
                d.reset.0 as u128,
                d.retry_after().map(|r| r.0 as u128),
                d.retry_after_secs(),
            );
            if want != got {
                return Err(format!(
                    "{}: (verdict, limit, remaining, reset, retry_after, retry_after_secs) expected {want:?}, got {got:?}",
                    ROWS[row].name
                ));
            }
        }
    }
    Ok(())
}
