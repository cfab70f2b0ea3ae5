//! Whose requests count together: the only Clerk and HTTP knowledge of the
//! engine besides the rule table. A secret key may come as an
//! `Authorization` value (`Bearer sk_…`); its prefix (`sk_live_`, `live_`,
//! `sk_test_`, `test_`) gives the instance kind; client IPs are keyed as
//! IPv4, IPv4-mapped IPv6 as the IPv4 client, IPv6 on a prefix (a client
//! holds a whole /64).
//!
//! Subjects are hashed once per request, lazily, into the tags of the
//! matched rules.

use core::net::IpAddr;

use crate::hash::{self, Domain, Seed, Subject};
use crate::route::Match;
use crate::rule::{InstanceKind, Scope};
use crate::table::tag;

/// A client address as its key bytes: IPv4 (also IPv4-mapped IPv6) as 4
/// bytes, IPv6 masked to its prefix as 16.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ClientKey {
    bytes: [u8; 16],
    len: u8,
}

impl ClientKey {
    /// The key of `ip`, IPv6 addresses masked to `ipv6_prefix` bits.
    #[inline]
    pub fn of(ip: IpAddr, ipv6_prefix: u8) -> ClientKey {
        let v6 = match ip {
            IpAddr::V4(v4) => return ClientKey::v4(v4.octets()),
            IpAddr::V6(v6) => v6,
        };
        if let Some(v4) = v6.to_ipv4_mapped() {
            return ClientKey::v4(v4.octets());
        }
        let prefix = u32::from(ipv6_prefix.min(128));
        let mask = u128::MAX
            .checked_shl(128u32.saturating_sub(prefix))
            .unwrap_or(0);
        ClientKey {
            bytes: (u128::from(v6) & mask).to_be_bytes(),
            len: 16,
        }
    }

    #[inline]
    fn v4(octets: [u8; 4]) -> ClientKey {
        let mut bytes = [0u8; 16];
        bytes[..4].copy_from_slice(&octets);
        ClientKey { bytes, len: 4 }
    }

    /// The key bytes.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        self.bytes.get(..self.len as usize).unwrap_or(&[])
    }
}

/// The secret key of a raw key or an `Authorization` value: surrounding
/// whitespace trimmed and a `Bearer ` scheme (any case) stripped.
#[inline]
pub fn strip_bearer(value: &[u8]) -> &[u8] {
    let v = value.trim_ascii();
    match v.get(..6) {
        Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer") => match v.get(6) {
            // "Bearer" alone (its blank was trimmed) carries no key.
            None => &[],
            Some(b' ' | b'\t') => v.get(7..).unwrap_or(&[]).trim_ascii(),
            Some(_) => v,
        },
        _ => v,
    }
}

/// The instance kind a key's prefix names, if it names one.
#[inline]
pub fn key_kind(key: &[u8]) -> Option<InstanceKind> {
    if key.starts_with(b"sk_live_") || key.starts_with(b"live_") {
        Some(InstanceKind::Production)
    } else if key.starts_with(b"sk_test_") || key.starts_with(b"test_") {
        Some(InstanceKind::Development)
    } else {
        None
    }
}

/// One request's subjects, hashed on first use.
pub(crate) struct Subjects<'r> {
    seed: Seed,
    tenant: &'r [u8],
    key: &'r [u8],
    ip: Option<ClientKey>,
    by_ip: Option<Subject>,
    by_instance: Option<Subject>,
}

impl<'r> Subjects<'r> {
    /// The subjects of a request with this tenant, key (raw or
    /// `Authorization`) and client address.
    #[inline(always)]
    pub fn new(
        seed: Seed,
        tenant: &'r [u8],
        secret_key: &'r [u8],
        ip: &Option<IpAddr>,
        ipv6_prefix: u8,
    ) -> Subjects<'r> {
        // By reference, field by field: a copy of the whole 17-byte address
        // reads bytes a caller who just built an IPv4 address never wrote
        // together, and stalls on the store (no forwarding).
        let ip = match ip {
            Some(IpAddr::V4(v4)) => Some(ClientKey::v4(v4.octets())),
            Some(IpAddr::V6(v6)) => Some(ClientKey::of(IpAddr::V6(*v6), ipv6_prefix)),
            None => None,
        };
        Subjects {
            seed,
            tenant,
            key: strip_bearer(secret_key),
            ip,
            by_ip: None,
            by_instance: None,
        }
    }

    /// The instance kind: from the key's prefix, `unknown` for another
    /// prefix, development without a key.
    #[inline(always)]
    pub fn kind(&self, unknown: InstanceKind) -> InstanceKind {
        if self.key.is_empty() {
            InstanceKind::Development
        } else {
            key_kind(self.key).unwrap_or(unknown)
        }
    }

    /// The hashed subject a rule of `scope` counts: for a client-IP rule the
    /// tenant and IP; for an instance rule the tenant if given, else the
    /// key, else the IP. `None` when the request lacks it.
    #[inline(always)]
    pub fn subject(&mut self, scope: Scope) -> Option<Subject> {
        match scope {
            Scope::ClientIp => {
                if self.by_ip.is_none() {
                    let ip = self.ip?;
                    self.by_ip = Some(hash::subject_lazy(
                        &self.seed,
                        Domain::Ip,
                        self.tenant,
                        ip.bytes(),
                    ));
                }
                self.by_ip
            }
            Scope::Instance | Scope::InstanceParams => {
                if self.by_instance.is_none() {
                    self.by_instance = Some(if !self.tenant.is_empty() {
                        hash::subject_lazy(&self.seed, Domain::Tenant, self.tenant, &[])
                    } else if !self.key.is_empty() {
                        hash::subject_lazy(&self.seed, Domain::SecretKey, &[], self.key)
                    } else {
                        hash::subject_lazy(&self.seed, Domain::Ip, &[], self.ip?.bytes())
                    });
                }
                self.by_instance
            }
        }
    }

    /// The tag of matched rule `m` of `scope`, and the first word of its
    /// subject's hash (what the Redis mode co-locates keys by), or `None`
    /// when the request lacks its subject. Only per-id rules are split by
    /// their captures.
    #[inline(always)]
    pub fn tag(&mut self, scope: Scope, m: &Match<'_>) -> Option<(u64, u64)> {
        let subject = self.subject(scope)?;
        let n = (m.ncaptures as usize).min(m.captures.len());
        if scope != Scope::InstanceParams || n == 0 {
            return Some((tag::of_subject(subject.h1(), m.rule), subject.h1()));
        }
        let captures = m.captures.get(..n).unwrap_or(&[]);
        let h = hash::captures(subject.full(), m.rule, captures, m.encoded);
        Some((tag::of_hash(h, m.rule), subject.h1()))
    }
}

/// The tag of rule `rule` for opaque key bytes (a generic keyed check).
#[inline(always)]
pub(crate) fn raw_tag(seed: &Seed, rule: u8, key: &[u8]) -> u64 {
    // A tag without captures needs only the first half of the hash.
    tag::of_subject(hash::subject_lazy(seed, Domain::Raw, &[], key).h1(), rule)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn bearer_is_stripped_in_any_case_and_alone_carries_no_key() {
        assert_eq!(strip_bearer(b"  Bearer sk_live_x "), b"sk_live_x");
        assert_eq!(strip_bearer(b"bEaReR\tsk_test_y"), b"sk_test_y");
        assert_eq!(strip_bearer(b"Bearer"), b"");
        assert_eq!(strip_bearer(b"Bearerx"), b"Bearerx");
        assert_eq!(strip_bearer(b"sk_live_z"), b"sk_live_z");
    }

    #[test]
    fn key_prefixes_name_the_instance_kind() {
        assert_eq!(key_kind(b"sk_live_1"), Some(InstanceKind::Production));
        assert_eq!(key_kind(b"live_1"), Some(InstanceKind::Production));
        assert_eq!(key_kind(b"sk_test_1"), Some(InstanceKind::Development));
        assert_eq!(key_kind(b"test_1"), Some(InstanceKind::Development));
        assert_eq!(key_kind(b"pk_live_1"), None);
    }

    #[test]
    fn mapped_ipv4_is_the_ipv4_client_and_ipv6_keys_on_its_prefix() {
        let v4 = ClientKey::of(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)), 64);
        let mapped = ClientKey::of(
            IpAddr::V6(Ipv4Addr::new(203, 0, 113, 9).to_ipv6_mapped()),
            64,
        );
        assert_eq!(v4, mapped);
        assert_eq!(v4.bytes(), [203, 0, 113, 9]);
        let a: Ipv6Addr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        let key = |ip: Ipv6Addr, p| ClientKey::of(IpAddr::V6(ip), p);
        assert_eq!(key(a, 64), key(b, 64));
        assert_ne!(key(a, 64), key(c, 64));
        assert_ne!(key(a, 128), key(b, 128));
        assert_eq!(key(a, 0), key(c, 0));
        assert_eq!(key(a, 200), key(a, 128), "a prefix above 128 is 128");
    }
}
