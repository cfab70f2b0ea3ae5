//! An independent reference model of DESIGN.md's "Semantics", driven side by
//! side with the engine over random request sequences.
//!
//! The model is written from the formulas alone: virtual scheduling on a
//! u128 TAT (or a window index and count) per (rule, subject) in an
//! unbounded `HashMap`. It shares no code with the engine: which rules a
//! request matches comes from a hand-written list of (method, path, rules)
//! below, not from `route::classify`, and quotas are copied from DESIGN.md's
//! table. The engine's rule indices are mapped to names through `CLERK`.
//!
//! Wherever DESIGN.md leaves a choice open (ties between binding rules), the
//! model accepts every rule the contract allows, and then checks the
//! engine's chosen rule's numbers exactly.

mod common;
use common::*;

use proptest::prelude::*;
use ratecard::{
    Algorithm, Api, Config, Decision, Error, InstanceKind, Limiter, Nanos, Request, CLERK, NO_RULE,
};
use std::collections::HashMap;

// --- the rule table, copied from DESIGN.md --------------------------------

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Scope {
    Ip,
    Instance,
}

struct Row {
    name: &'static str,
    scope: Scope,
    limit: u32,
    period: u64,
}

const H: u64 = 3_600 * SEC;
const ROWS: &[Row] = &[
    row("fapi.sign_ins.create", Scope::Ip, 5, 10 * SEC),
    row("fapi.sign_ups.create", Scope::Ip, 5, 10 * SEC),
    row("fapi.sign_ins.attempt", Scope::Ip, 3, 10 * SEC),
    row("fapi.sign_ups.attempt", Scope::Ip, 3, 10 * SEC),
    row("bapi.instance.production", Scope::Instance, 1000, 10 * SEC),
    row("bapi.instance.development", Scope::Instance, 100, 10 * SEC),
    row("bapi.jwks", Scope::Instance, 0, 0),
    row("bapi.invitations.create", Scope::Instance, 100, H),
    row("bapi.invitations.bulk", Scope::Instance, 25, H),
    row("bapi.org_invitations.create", Scope::Instance, 250, H),
    row("bapi.org_invitations.bulk", Scope::Instance, 50, H),
    row("bapi.users.update", Scope::Instance, 10, 10 * SEC),
    row("bapi.organizations.update", Scope::Instance, 10, 10 * SEC),
    row("bapi.memberships.update", Scope::Instance, 10, 10 * SEC),
];

const fn row(name: &'static str, scope: Scope, limit: u32, period: u64) -> Row {
    Row {
        name,
        scope,
        limit,
        period,
    }
}

fn row_of(name: &str) -> usize {
    ROWS.iter().position(|r| r.name == name).unwrap()
}

/// The engine's index of a rule, by name.
fn engine_index(name: &str) -> u32 {
    CLERK.rules().iter().position(|r| r.name == name).unwrap() as u32
}

// --- requests, written by hand --------------------------------------------

/// `"I"` stands for the instance row of the request's kind.
const INSTANCE: &str = "I";

struct Endpoint {
    api: Api,
    method: &'static [u8],
    path: &'static [u8],
    /// Matched rows and their subject captures (decoded).
    rules: &'static [(&'static str, &'static [&'static [u8]])],
    exempt: bool,
}

const fn fe(
    path: &'static [u8],
    rules: &'static [(&'static str, &'static [&'static [u8]])],
) -> Endpoint {
    Endpoint {
        api: Api::Frontend,
        method: b"POST",
        path,
        rules,
        exempt: false,
    }
}

const fn be(
    method: &'static [u8],
    path: &'static [u8],
    rules: &'static [(&'static str, &'static [&'static [u8]])],
) -> Endpoint {
    Endpoint {
        api: Api::Backend,
        method,
        path,
        rules,
        exempt: false,
    }
}

const SIGN_IN: &[(&str, &[&[u8]])] = &[("fapi.sign_ins.create", &[])];
const SIGN_UP: &[(&str, &[&[u8]])] = &[("fapi.sign_ups.create", &[])];
const SIGN_IN_ATTEMPT: &[(&str, &[&[u8]])] = &[("fapi.sign_ins.attempt", &[])];
const SIGN_UP_ATTEMPT: &[(&str, &[&[u8]])] = &[("fapi.sign_ups.attempt", &[])];
const ALL_FRONTEND_POST: &[(&str, &[&[u8]])] = &[
    ("fapi.sign_ins.create", &[]),
    ("fapi.sign_ups.create", &[]),
    ("fapi.sign_ins.attempt", &[]),
    ("fapi.sign_ups.attempt", &[]),
];
const ONLY_INSTANCE: &[(&str, &[&[u8]])] = &[(INSTANCE, &[])];

/// Single-rule (or no-rule, or exempt) endpoints.
const SINGLE: &[Endpoint] = &[
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
const MULTI: &[Endpoint] = &[
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
const ORGS: &[Endpoint] = &[
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

const KEYS: &[Option<&[u8]>] = &[
    None,
    Some(b"sk_live_AAAAAAAAAAAAAAAAAAAAAAAA"),
    Some(b"Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAA"),
    Some(b"sk_test_BBBBBBBBBBBBBBBBBBBBBBBB"),
    Some(b"rk_other_CCCCCCCCCCCCCCCC"),
    Some(b"live_DDDD"),
];

const IPS: &[&[u8]] = &[
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

const TENANTS: &[&[u8]] = &[b"", b"tenant-1", b"tenant-2"];

// --- configurations -------------------------------------------------------

#[derive(Copy, Clone, Debug)]
enum Variant {
    Default,
    UnknownIsProduction,
    Pace,
    FixedWindow,
    Ipv6Slash128,
}

fn config(v: Variant) -> Config {
    let mut c = Config {
        capacity: 1 << 16,
        ..Config::DEFAULT
    };
    match v {
        Variant::Default => {}
        Variant::UnknownIsProduction => c.unknown_kind = InstanceKind::Production,
        Variant::Pace => c.pace = true,
        Variant::FixedWindow => c.algorithm = Some(Algorithm::FixedWindow),
        Variant::Ipv6Slash128 => c.ipv6_prefix = 128,
    }
    c
}

// --- the model ------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Subject {
    /// Frontend: tenant + client IP.
    Client(Vec<u8>, Vec<u8>),
    /// Backend: the tenant names the instance.
    Tenant(Vec<u8>),
    /// Backend: the secret key (Bearer stripped).
    Key(Vec<u8>),
    /// Backend without a key: the client IP.
    Ip(Vec<u8>),
}

type Key = (usize, Subject, Vec<Vec<u8>>);

#[derive(Copy, Clone, Debug)]
enum State {
    Tat(u128),
    Window(u128, u32),
}

/// One rule's verdict.
#[derive(Copy, Clone, Debug)]
struct Verdict {
    allowed: bool,
    never_fits: bool,
    remaining: u64,
    reset: u128,
    retry_after: u128,
    /// The state to store if the request is allowed.
    charged: State,
    /// The clamped state to store whatever happens, if the old one was wild.
    clamp: Option<State>,
}

struct Model {
    variant: Variant,
    states: HashMap<Key, State>,
}

/// What the model expects of one decision.
#[derive(Debug)]
enum Expect {
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

struct Req {
    endpoint: &'static Endpoint,
    ip: &'static [u8],
    key: Option<&'static [u8]>,
    tenant: &'static [u8],
    cost: u32,
}

impl Req {
    fn request(&self) -> Request<'static> {
        Request {
            api: self.endpoint.api,
            method: self.endpoint.method,
            path: self.endpoint.path,
            client_ip: self.ip,
            secret_key: self.key.unwrap_or(b""),
            tenant: self.tenant,
            cost: self.cost,
        }
    }
}

impl Model {
    fn new(variant: Variant) -> Model {
        Model {
            variant,
            states: HashMap::new(),
        }
    }

    fn fixed_window(&self) -> bool {
        matches!(self.variant, Variant::FixedWindow)
    }

    /// `(T, burst)` of a row under this configuration.
    fn params(&self, row: usize) -> (u128, u128) {
        let r = &ROWS[row];
        let t = (r.period as u128).div_ceil(r.limit as u128).max(1);
        let burst = if matches!(self.variant, Variant::Pace) && !self.fixed_window() {
            1
        } else {
            r.limit as u128
        };
        (t, burst)
    }

    fn ip_bytes(&self, ip: &[u8]) -> Vec<u8> {
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

    fn kind(&self, key: &[u8]) -> usize {
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
    fn keys(&self, req: &Req) -> Result<Vec<Key>, Error> {
        let key = req
            .key
            .map(|k| k.strip_prefix(b"Bearer ").unwrap_or(k))
            .unwrap_or(b"");
        let mut out = Vec::new();
        for &(name, captures) in req.endpoint.rules {
            let row = if name == INSTANCE {
                self.kind(key)
            } else {
                row_of(name)
            };
            let subject = match ROWS[row].scope {
                Scope::Ip => {
                    if req.ip.is_empty() {
                        return Err(Error::MissingSubject);
                    }
                    Subject::Client(req.tenant.to_vec(), self.ip_bytes(req.ip))
                }
                Scope::Instance if !req.tenant.is_empty() => Subject::Tenant(req.tenant.to_vec()),
                Scope::Instance if !key.is_empty() => Subject::Key(key.to_vec()),
                Scope::Instance if !req.ip.is_empty() => Subject::Ip(self.ip_bytes(req.ip)),
                Scope::Instance => return Err(Error::MissingSubject),
            };
            out.push((row, subject, captures.iter().map(|c| c.to_vec()).collect()));
        }
        Ok(out)
    }

    /// DESIGN.md's GCRA and fixed-window formulas for one rule.
    fn verdict(&self, row: usize, state: Option<State>, now: u128, cost: u128) -> Verdict {
        let (t, burst) = self.params(row);
        if self.fixed_window() {
            let limit = ROWS[row].limit as u128;
            let period = ROWS[row].period as u128;
            let cur = now / period;
            let end = period - now % period;
            let (mut index, mut count) = match state {
                Some(State::Window(i, c)) => (i, c as u128),
                None => (cur, 0),
                Some(State::Tat(_)) => unreachable!(),
            };
            let mut clamp = None;
            if index > cur {
                // A window index beyond the current one: the current, full.
                (index, count) = (cur, limit);
                clamp = Some(State::Window(cur, limit as u32));
            }
            if index < cur {
                count = 0;
            }
            let left = limit - count;
            let fits = cost <= limit;
            let allowed = fits && cost <= left;
            return Verdict {
                allowed,
                never_fits: !fits,
                remaining: (if allowed { left - cost } else { left }) as u64,
                reset: end,
                retry_after: if allowed || !fits { 0 } else { end },
                charged: State::Window(cur, (count + cost) as u32),
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
        if tat > now + 2 * span {
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
    fn decide(&mut self, req: &Req, now: u64, peek: bool) -> Result<Expect, Error> {
        if req.endpoint.exempt {
            return Ok(Expect::Exempt(row_of(req.endpoint.rules[0].0)));
        }
        if req.endpoint.rules.is_empty() {
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
    fn reset(&mut self, req: &Req) -> Result<u32, Error> {
        if req.endpoint.exempt || req.endpoint.rules.is_empty() {
            return Ok(0);
        }
        let keys = self.keys(req)?;
        Ok(keys
            .iter()
            .filter(|k| self.states.remove(k).is_some())
            .count() as u32)
    }
}

fn agree(expect: &Expect, d: &Decision) -> Result<(), String> {
    let name = |i: u32| CLERK.rules().get(i as usize).map_or("-", |r| r.name);
    let zero_fields = d.limit == 0
        && d.remaining == 0
        && d.reset == Nanos(0)
        && d.retry_after == Nanos(0)
        && d.retry_after_secs == 0
        && !d.never_fits
        && !d.dry_run_denied;
    match expect {
        Expect::NoRule => {
            if d.rule != NO_RULE || !d.allowed || d.exempt || !zero_fields || d.matched != 0 {
                return Err("expected no rule".into());
            }
        }
        Expect::Exempt(row) => {
            if d.rule != engine_index(ROWS[*row].name) || !d.allowed || !d.exempt || !zero_fields {
                return Err(format!("expected exempt under {}", ROWS[*row].name));
            }
        }
        Expect::Decided {
            allowed,
            never_fits,
            binding,
            matched,
        } => {
            if d.allowed != *allowed || d.never_fits != *never_fits || d.exempt || d.dry_run_denied
            {
                return Err(format!(
                    "expected allowed={allowed} never_fits={never_fits}"
                ));
            }
            let mask = matched
                .iter()
                .fold(0u64, |m, &r| m | 1 << engine_index(ROWS[r].name));
            if d.matched != mask {
                return Err(format!("expected matched mask {mask:#x}"));
            }
            let Some(&(row, v)) = binding.iter().find(|(r, _)| ROWS[*r].name == name(d.rule))
            else {
                let names: Vec<_> = binding.iter().map(|(r, _)| ROWS[*r].name).collect();
                return Err(format!("binding rule must be one of {names:?}"));
            };
            let retry_secs = if *allowed || *never_fits {
                0
            } else {
                v.retry_after.div_ceil(SEC as u128).max(1) as u32
            };
            let want = (
                ROWS[row].limit,
                v.remaining,
                v.reset,
                v.retry_after,
                retry_secs,
            );
            let got = (
                d.limit,
                d.remaining as u64,
                d.reset.0 as u128,
                d.retry_after.0 as u128,
                d.retry_after_secs,
            );
            if want != got {
                return Err(format!(
                    "{}: (limit, remaining, reset, retry_after, retry_after_secs) expected {want:?}, got {got:?}",
                    ROWS[row].name
                ));
            }
        }
    }
    Ok(())
}

// --- the walk -------------------------------------------------------------

#[derive(Copy, Clone, Debug)]
enum Step {
    /// Forward by a fraction (‰) of 3 s.
    Forward(u64),
    /// Forward by whole multiples of common emission intervals.
    Exact(u64, u64),
    Zero,
    /// Back by a fraction (‰) of the walk's ordinary step back.
    Back(u64),
    /// Forward by up to 2^45 ns (about ten hours).
    Huge(u64),
    /// A clock from another boot: back to somewhere in the first minute.
    Reboot(u64),
}

#[derive(Copy, Clone, Debug)]
enum Op {
    Check,
    Peek,
    Reset,
}

#[derive(Clone, Debug)]
struct Action {
    step: Step,
    op: Op,
    endpoint: usize,
    ip: usize,
    key: usize,
    tenant: usize,
    cost: u32,
}

fn steps(wild: bool) -> BoxedStrategy<Step> {
    const INTERVALS: [u64; 6] = [
        10_000_000,
        100_000_000,
        SEC,
        2 * SEC,
        3_333_333_334,
        36 * SEC,
    ];
    let ordinary = prop_oneof![
        6 => (0u64..=1_000).prop_map(Step::Forward),
        3 => (0..INTERVALS.len(), 1u64..=4).prop_map(|(i, n)| Step::Exact(INTERVALS[i], n)),
        4 => Just(Step::Zero),
        3 => (0u64..=1_000).prop_map(Step::Back),
        1 => (0u64..(1 << 45)).prop_map(Step::Huge),
    ];
    if wild {
        prop_oneof![9 => ordinary, 1 => (0u64..60 * SEC).prop_map(Step::Reboot)].boxed()
    } else {
        ordinary.boxed()
    }
}

fn actions(endpoints: usize, wild: bool) -> impl Strategy<Value = Vec<Action>> {
    let op = prop_oneof![8 => Just(Op::Check), 2 => Just(Op::Peek), 1 => Just(Op::Reset)];
    let action = (
        steps(wild),
        op,
        0..endpoints,
        0..IPS.len(),
        0..KEYS.len(),
        0..TENANTS.len(),
        0u32..=4,
    )
        .prop_map(|(step, op, endpoint, ip, key, tenant, cost)| Action {
            step,
            op,
            endpoint,
            ip,
            key,
            tenant,
            cost,
        });
    prop::collection::vec(action, 1..160)
}

fn variants() -> impl Strategy<Value = Variant> {
    prop_oneof![
        Just(Variant::Default),
        Just(Variant::UnknownIsProduction),
        Just(Variant::Pace),
        Just(Variant::FixedWindow),
        Just(Variant::Ipv6Slash128),
    ]
}

/// How far an ordinary step may take the clock back below the latest time
/// seen: less than two bursts of the shortest rule, so no state turns wild.
fn ordinary_back(variant: Variant) -> u64 {
    match variant {
        // Burst 1: two bursts of the production instance are 20 ms.
        Variant::Pace => 15_000_000,
        // Any step back across a window boundary is a wild state for a
        // fixed window (see DESIGN.md): only wild walks go back there.
        Variant::FixedWindow => 0,
        _ => 15 * SEC,
    }
}

/// How a walk treats the clock and the engine's slot reuse.
#[derive(Copy, Clone)]
struct Walk {
    /// Reboots and long steps back (up to a minute) that make wild states.
    wild: bool,
    /// Fail when a key loses its slot although nothing was full. Otherwise:
    /// an ordinary walk never takes the clock back below a time at which a
    /// new key was stored (so a replenished slot reused then cannot show),
    /// and a wild walk stops comparing once a key lost its slot (see
    /// `a_replenished_key_keeps_its_slot_while_its_buckets_have_empty_slots`).
    strict: bool,
}

/// Drive the engine and the model through `actions`.
fn run(
    variant: Variant,
    start: u64,
    endpoints: &[&'static Endpoint],
    actions: &[Action],
    walk: Walk,
) -> Result<(), TestCaseError> {
    let Walk { wild, strict } = walk;
    let config = config(variant);
    let mut arena = Arena::for_capacity(config.capacity);
    let l = Limiter::init(arena.bytes(), &config, CLERK, SEED).unwrap();
    let mut model = Model::new(variant);
    let mut now = start;
    let mut high = start;
    let mut floor = 0u64;
    for (i, a) in actions.iter().enumerate() {
        let back = if wild {
            60 * SEC
        } else {
            ordinary_back(variant)
        };
        now = match a.step {
            Step::Forward(f) => now + 3 * SEC * f / 1_000,
            Step::Exact(t, n) => now + t * n,
            Step::Zero => now,
            Step::Back(f) => {
                let low = if wild || strict {
                    0
                } else {
                    high.saturating_sub(back).max(floor)
                };
                now.saturating_sub(back * f / 1_000).max(low.min(now))
            }
            Step::Huge(d) => now + d,
            Step::Reboot(t) => t,
        };
        high = high.max(now);
        let endpoint = endpoints[a.endpoint];
        let key = KEYS[a.key];
        let req = Req {
            endpoint,
            ip: IPS[a.ip],
            key,
            // A Backend request without a key is charged by IP: no tenant.
            tenant: if endpoint.api == Api::Backend && key.is_none() {
                b""
            } else {
                TENANTS[a.tenant]
            },
            cost: a.cost,
        };
        let request = req.request();
        let inserting = matches!(a.op, Op::Check)
            && !endpoint.exempt
            && model
                .keys(&req)
                .is_ok_and(|keys| keys.iter().any(|k| !model.states.contains_key(k)));
        if inserting {
            floor = floor.max(now);
        }
        let context = || {
            format!(
                "action {i} at {now}: {:?} {} {} ip={:?} key={:?} tenant={:?} cost={}",
                a.op,
                String::from_utf8_lossy(endpoint.method),
                String::from_utf8_lossy(endpoint.path),
                req.ip,
                key.map(String::from_utf8_lossy),
                String::from_utf8_lossy(req.tenant),
                req.cost
            )
        };
        let inconclusive = |l: &Limiter<'_>| l.stats().evicted > 0;
        match a.op {
            Op::Check | Op::Peek => {
                let peek = matches!(a.op, Op::Peek);
                let want = model.decide(&req, now, peek);
                let got = if peek {
                    l.peek(&request, Nanos(now))
                } else {
                    l.check(&request, Nanos(now))
                };
                let verdict = match (&want, &got) {
                    (Err(w), Err(g)) if w == g => Ok(()),
                    (Ok(w), Ok(g)) => agree(w, g),
                    _ => Err("result kinds differ".to_string()),
                };
                if let Err(why) = verdict {
                    if inconclusive(&l) {
                        return Ok(());
                    }
                    return Err(TestCaseError::fail(format!(
                        "{}\n  {why}\n  model: {want:?}\n  engine: {got:?}",
                        context()
                    )));
                }
            }
            Op::Reset => {
                let want = model.reset(&req);
                let got = l.reset(&request);
                if want != got && !inconclusive(&l) {
                    return Err(TestCaseError::fail(format!(
                        "{}\n  reset: model {want:?}, engine {got:?}",
                        context()
                    )));
                }
            }
        }
        if inserting && wild {
            let occupancy = l.stats().occupancy;
            let keys = model.states.len() as u64;
            prop_assert!(
                occupancy <= keys,
                "{}: {occupancy} slots for {keys} keys",
                context()
            );
            if occupancy < keys {
                prop_assert!(
                    !strict,
                    "{}: a key lost its slot (nothing was full)",
                    context()
                );
                return Ok(()); // inconclusive from here on
            }
        }
    }
    let s = l.stats();
    prop_assert_eq!(s.evicted, 0, "the table was big enough");
    let keys = model.states.len() as u64;
    if strict {
        prop_assert_eq!(s.occupancy, keys, "one slot per stored key");
    } else {
        prop_assert!(
            s.occupancy <= keys,
            "{} slots for {} keys",
            s.occupancy,
            keys
        );
    }
    Ok(())
}

fn endpoints(sets: &[&'static [Endpoint]]) -> Vec<&'static Endpoint> {
    sets.iter().flat_map(|s| s.iter()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Every endpoint, every configuration, an ordinary clock: forward,
    /// zero and small backward steps and huge leaps forward.
    #[test]
    fn the_engine_decides_exactly_as_the_reference_model(
        variant in variants(),
        start in 0u64..(1 << 50),
        actions in actions(SINGLE.len() + MULTI.len(), false),
    ) {
        let walk = Walk { wild: false, strict: false };
        run(variant, start, &endpoints(&[SINGLE, MULTI]), &actions, walk)?;
    }

    /// Requests of one rule under a wild clock (reboots, long steps back):
    /// states more than two bursts ahead are clamped, and the clamp stored.
    #[test]
    fn single_rule_requests_agree_with_the_model_under_a_wild_clock(
        variant in variants(),
        start in 0u64..(1 << 50),
        actions in actions(SINGLE.len(), true),
    ) {
        let walk = Walk { wild: true, strict: false };
        run(variant, start, &endpoints(&[SINGLE]), &actions, walk)?;
    }

    /// Everything at once: every endpoint, wild clocks, several organizations.
    #[test]
    fn every_request_agrees_with_the_model_under_a_wild_clock(
        variant in variants(),
        start in 0u64..(1 << 50),
        actions in actions(SINGLE.len() + MULTI.len() + ORGS.len(), true),
    ) {
        let walk = Walk { wild: true, strict: true };
        run(variant, start, &endpoints(&[SINGLE, MULTI, ORGS]), &actions, walk)?;
    }

    #[test]
    fn organization_invitations_of_several_organizations_agree_with_the_model(
        variant in variants(),
        start in 0u64..(1 << 50),
        actions in actions(SINGLE.len() + MULTI.len() + ORGS.len(), false),
    ) {
        let walk = Walk { wild: false, strict: false };
        run(variant, start, &endpoints(&[SINGLE, MULTI, ORGS]), &actions, walk)?;
    }
}

// --- the wild-clock rules, spelled out ------------------------------------

const T0: u64 = 1_000_000 * SEC;

fn sign_in(ip: &[u8]) -> Request<'_> {
    Request::new(Api::Frontend, b"POST", b"/v1/client/sign_ins").ip(ip)
}

#[test]
fn time_going_backwards_hands_back_nothing() {
    let l = clerk();
    let ip = [192, 0, 2, 1];
    for _ in 0..5 {
        assert!(l.check(&sign_in(&ip), Nanos(T0)).unwrap().allowed);
    }
    // TAT = T0 + 10 s; 5 s back: max(TAT, now) + T − τ − T − now = 7 s.
    let d = l.check(&sign_in(&ip), Nanos(T0 - 5 * SEC)).unwrap();
    assert!(!d.allowed);
    assert_eq!(d.retry_after, Nanos(7 * SEC));
    assert_eq!(d.reset, Nanos(15 * SEC));
    // Back where we were, exactly one comes back after T = 2 s.
    assert!(
        !l.check(&sign_in(&ip), Nanos(T0 + 2 * SEC - 1))
            .unwrap()
            .allowed
    );
    assert!(l.check(&sign_in(&ip), Nanos(T0 + 2 * SEC)).unwrap().allowed);
    assert!(!l.check(&sign_in(&ip), Nanos(T0 + 2 * SEC)).unwrap().allowed);
}

#[test]
fn a_wild_state_is_clamped_to_one_burst_ahead_and_the_clamp_is_stored_on_denial() {
    let l = clerk();
    let ip = [192, 0, 2, 1];
    for _ in 0..5 {
        assert!(l.check(&sign_in(&ip), Nanos(T0)).unwrap().allowed);
    }
    // Another boot's clock: TAT = T0 + 10 s is far beyond now + 2·burst·T.
    let now = 30 * SEC;
    let d = l.check(&sign_in(&ip), Nanos(now)).unwrap();
    assert!(!d.allowed, "clamped to one full burst ahead: {d:?}");
    assert_eq!(d.reset, Nanos(10 * SEC), "now + burst·T");
    assert_eq!(d.retry_after, Nanos(2 * SEC));
    // The clamp was stored: one period later the key is whole again.
    for i in 0..5 {
        let d = l.check(&sign_in(&ip), Nanos(now + 10 * SEC)).unwrap();
        assert!(d.allowed, "{i}: {d:?}");
    }
    assert!(
        !l.check(&sign_in(&ip), Nanos(now + 10 * SEC))
            .unwrap()
            .allowed
    );
}

#[test]
fn a_peek_at_a_wild_state_stores_no_clamp() {
    let l = clerk();
    let ip = [192, 0, 2, 1];
    for _ in 0..5 {
        l.check(&sign_in(&ip), Nanos(T0)).unwrap();
    }
    let now = 30 * SEC;
    assert!(!l.peek(&sign_in(&ip), Nanos(now)).unwrap().allowed);
    // Unclamped, the state is still wild later and clamps against that time.
    let later = now + 10 * SEC;
    let d = l.check(&sign_in(&ip), Nanos(later)).unwrap();
    assert!(!d.allowed);
    assert_eq!(d.reset, Nanos(10 * SEC));
}

#[test]
fn a_state_two_bursts_ahead_is_plausible_and_kept() {
    let l = clerk();
    let ip = [192, 0, 2, 1];
    for _ in 0..5 {
        l.check(&sign_in(&ip), Nanos(T0)).unwrap();
    }
    // TAT = T0 + 10 s = now + 2·burst·T exactly: not beyond, not clamped.
    let now = T0 - 10 * SEC;
    let d = l.check(&sign_in(&ip), Nanos(now)).unwrap();
    assert_eq!(d.reset, Nanos(20 * SEC));
    assert_eq!(d.retry_after, Nanos(12 * SEC));
}

#[test]
fn every_matched_rule_stores_its_clamp_even_when_an_earlier_rule_denies() {
    let l = clerk();
    let key: &[u8] = b"sk_test_BBBBBBBBBBBBBBBBBBBBBBBB";
    let user = Request::new(Api::Backend, b"PATCH", b"/v1/users/user_1").key(key);
    for _ in 0..10 {
        assert!(l.check(&user, Nanos(T0)).unwrap().allowed);
    }
    // Another boot: both the development instance (TAT T0 + 1 s) and the
    // user row (TAT T0 + 10 s) are wild; both clamp to now + 10 s, and both
    // clamps are stored although the request is denied.
    let now = 30 * SEC;
    let d = l.check(&user, Nanos(now)).unwrap();
    assert!(!d.allowed, "{d:?}");
    // One period later both rules are whole again.
    let d = l.check(&user, Nanos(now + 10 * SEC)).unwrap();
    assert!(d.allowed, "the user row's clamp was stored at {now}: {d:?}");
}

#[test]
fn a_replenished_key_keeps_its_slot_while_its_buckets_have_empty_slots() {
    // Four slots: one bucket, so every key's two candidate buckets are it.
    let l = limiter_with(
        Config {
            capacity: 4,
            ..Config::DEFAULT
        },
        CLERK,
    );
    let a = [192, 0, 2, 1];
    let b = [192, 0, 2, 2];
    for _ in 0..5 {
        assert!(l.check(&sign_in(&a), Nanos(T0)).unwrap().allowed);
    }
    // Ten seconds on, A is replenished; B arrives while three slots are empty.
    assert!(l.check(&sign_in(&b), Nanos(T0 + 10 * SEC)).unwrap().allowed);
    let s = l.stats();
    assert_eq!(s.occupancy, 2, "A and B each hold a slot; nothing was full");
    assert_eq!(s.evicted, 0);
    // An ordinary 5 s step back: A's TAT (T0 + 10 s) still holds, so only
    // ⌊(5 s + 10 s − 10 s) / 2 s⌋ = 2 are left, not a fresh 5.
    let now = T0 + 5 * SEC;
    let allowed = (0..5)
        .filter(|_| l.check(&sign_in(&a), Nanos(now)).unwrap().allowed)
        .count();
    assert_eq!(allowed, 2);
}
