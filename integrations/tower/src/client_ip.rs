//! Who the client is: the peer, or what trusted proxies say in
//! `X-Forwarded-For`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use http::header::GetAll;
use http::HeaderValue;

/// An IP network (`10.0.0.0/8`, `2001:db8::/32`; a bare address is a
/// network of one). IPv4-mapped IPv6 (`::ffff:10.0.0.0/104`) is taken as
/// the IPv4 network it maps.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

/// Why a network was refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum NetworkError {
    /// Not an address, or not `address/prefix`.
    Malformed,
    /// A prefix longer than the address (above 32 for IPv4, 128 for IPv6).
    PrefixTooLong,
}

impl fmt::Display for NetworkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetworkError::Malformed => "not an IP network (address or address/prefix)",
            NetworkError::PrefixTooLong => "prefix longer than the address",
        })
    }
}

impl std::error::Error for NetworkError {}

impl Network {
    /// The network of `addr`'s first `prefix` bits.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Network, NetworkError> {
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if prefix >= 96 => (IpAddr::V4(v4), prefix.saturating_sub(96)),
                _ => (addr, prefix),
            },
            IpAddr::V4(_) => (addr, prefix),
        };
        if prefix > bits(addr) {
            return Err(NetworkError::PrefixTooLong);
        }
        Ok(Network { addr, prefix })
    }

    /// Whether `ip` (IPv4-mapped IPv6 as IPv4) is in the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                same_prefix(u32::from(n).into(), u32::from(a).into(), 32, self.prefix)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => same_prefix(n.into(), a.into(), 128, self.prefix),
            _ => false,
        }
    }
}

fn bits(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// Whether the first `prefix` of the `width` low bits of `a` and `b` agree.
fn same_prefix(a: u128, b: u128, width: u32, prefix: u8) -> bool {
    let drop = width.saturating_sub(u32::from(prefix));
    a.checked_shr(drop).unwrap_or(0) == b.checked_shr(drop).unwrap_or(0)
}

impl FromStr for Network {
    type Err = NetworkError;

    fn from_str(s: &str) -> Result<Network, NetworkError> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => {
                let a: IpAddr = a.parse().map_err(|_| NetworkError::Malformed)?;
                let digits = !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit());
                if !digits {
                    return Err(NetworkError::Malformed);
                }
                let p: u8 = p.parse().map_err(|_| NetworkError::PrefixTooLong)?;
                (a, p)
            }
            None => {
                let a: IpAddr = s.parse().map_err(|_| NetworkError::Malformed)?;
                (a, bits(a))
            }
        };
        Network::new(addr, prefix)
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The client of a request whose connection came from `peer`: the peer
/// itself unless it is a trusted proxy; then the right-most
/// `X-Forwarded-For` address (later fields first, each field read right to
/// left) that is not trusted, or the left-most if every one is. A
/// malformed entry ends the walk: the hop that added it (the last address
/// believed) is the client, since nothing it passed on can be believed.
/// Addresses may carry a port (`203.0.113.1:80`, `[2001:db8::1]:80`);
/// IPv4-mapped IPv6 is taken as IPv4.
///
/// The right-most untrusted hop is the first one a client cannot forge:
/// anything to its left was written by the client itself.
pub fn client_ip(
    peer: Option<IpAddr>,
    forwarded_for: GetAll<'_, HeaderValue>,
    trusted: &[Network],
) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    let is_trusted = |a: IpAddr| trusted.iter().any(|n| n.contains(a));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let mut client = peer;
    for field in forwarded_for.iter().rev() {
        for entry in field.as_bytes().rsplit(|&b| b == b',') {
            let entry = entry.trim_ascii();
            if entry.is_empty() {
                continue;
            }
            let Some(a) = parse_host(entry) else {
                return Some(client);
            };
            client = a;
            if !is_trusted(a) {
                return Some(client);
            }
        }
    }
    Some(client)
}

/// An address with or without a port (`192.0.2.1`, `192.0.2.1:80`,
/// `[2001:db8::1]:80`, `2001:db8::1`, `[2001:db8::1]`), IPv4-mapped IPv6 as
/// IPv4, a zone (`%eth0`) dropped.
fn parse_host(entry: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(entry).ok()?;
    if let Ok(a) = s.parse::<IpAddr>() {
        return Some(a.to_canonical());
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(a.ip().to_canonical());
    }
    let host = match s.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((host, "")) => host,
            Some((host, port)) if is_port(port) => host,
            _ => return None,
        },
        None => s,
    };
    let host = host.split_once('%').map_or(host, |(h, _)| h);
    let a = host.parse::<std::net::Ipv6Addr>().ok()?;
    Some(IpAddr::V6(a).to_canonical())
}

fn is_port(s: &str) -> bool {
    s.strip_prefix(':')
        .is_some_and(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use http::HeaderMap;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<Network> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn client(peer: &str, fields: &[&str], trusted: &[Network]) -> Option<IpAddr> {
        let mut h = HeaderMap::new();
        for f in fields {
            h.append("x-forwarded-for", HeaderValue::from_str(f).unwrap());
        }
        client_ip(Some(ip(peer)), h.get_all("x-forwarded-for"), trusted)
    }

    #[test]
    fn networks_contain_their_prefix_and_nothing_else() {
        let n: Network = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains(ip("10.255.1.2")));
        assert!(n.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped is IPv4");
        assert!(!n.contains(ip("11.0.0.0")));
        assert!(
            !n.contains(ip("::a00:1")),
            "an IPv6 address is never in an IPv4 network"
        );
        let one: Network = "192.0.2.7".parse().unwrap();
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.6")));
        let v6: Network = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
        let all: Network = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("255.255.255.255")));
        let mapped: Network = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(mapped, "10.0.0.0/8".parse().unwrap());
        assert_eq!(mapped.to_string(), "10.0.0.0/8");
    }

    #[test]
    fn malformed_networks_are_refused() {
        for (s, e) in [
            ("10.0.0.0/33", NetworkError::PrefixTooLong),
            ("::/129", NetworkError::PrefixTooLong),
            ("10.0.0.0/999", NetworkError::PrefixTooLong),
            ("10.0.0.0/", NetworkError::Malformed),
            ("10.0.0.0/+8", NetworkError::Malformed),
            ("10.0.0.0/8/8", NetworkError::Malformed),
            ("example.com", NetworkError::Malformed),
            ("", NetworkError::Malformed),
        ] {
            assert_eq!(s.parse::<Network>(), Err(e), "{s}");
        }
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = nets(&["127.0.0.0/8", "10.0.0.0/8", "2001:db8::/32"]);
        let cases: &[(&str, &[&str], &str)] = &[
            ("192.0.2.1", &["203.0.113.1"], "192.0.2.1"),
            ("127.0.0.1", &[], "127.0.0.1"),
            ("127.0.0.1", &["203.0.113.1"], "203.0.113.1"),
            (
                "127.0.0.1",
                &["1.1.1.1, 203.0.113.1, 10.0.0.2"],
                "203.0.113.1",
            ),
            (
                "127.0.0.1",
                &["1.1.1.1, 203.0.113.1", "10.0.0.2,10.0.0.3"],
                "203.0.113.1",
            ),
            ("127.0.0.1", &["10.0.0.1, 10.0.0.2"], "10.0.0.1"),
            ("127.0.0.1", &["203.0.113.1:5555"], "203.0.113.1"),
            (
                "127.0.0.1",
                &["[2001:db9::5]:80, 2001:db8::7"],
                "2001:db9::5",
            ),
            ("127.0.0.1", &["[2001:db9::6]"], "2001:db9::6"),
            ("127.0.0.1", &["fe80::1%eth0"], "fe80::1"),
            ("127.0.0.1", &["::ffff:203.0.113.9"], "203.0.113.9"),
            ("::ffff:127.0.0.1", &["203.0.113.4"], "203.0.113.4"),
            ("127.0.0.1", &["203.0.113.1, garbage"], "127.0.0.1"),
            ("127.0.0.1", &["garbage, 10.0.0.4"], "10.0.0.4"),
            ("127.0.0.1", &["[2001:db9::5]:80x"], "127.0.0.1"),
            ("127.0.0.1", &[" , ,"], "127.0.0.1"),
        ];
        for (peer, fields, want) in cases {
            assert_eq!(
                client(peer, fields, &trusted),
                Some(ip(want)),
                "{peer} {fields:?}"
            );
        }
        let long = "10.0.0.1,".repeat(10_000) + "203.0.113.1";
        assert_eq!(
            client("127.0.0.1", &[&long], &trusted),
            Some(ip("203.0.113.1"))
        );
        assert_eq!(
            client("127.0.0.1", &["203.0.113.1"], &[]),
            Some(ip("127.0.0.1"))
        );
    }

    #[test]
    fn non_ascii_forwarded_for_ends_the_walk() {
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"203.0.113.1, \xff10.0.0.1").unwrap(),
        );
        let trusted = nets(&["127.0.0.0/8", "10.0.0.0/8"]);
        let got = client_ip(
            Some(ip("127.0.0.1")),
            h.get_all("x-forwarded-for"),
            &trusted,
        );
        assert_eq!(got, Some(ip("127.0.0.1")));
    }

    #[test]
    fn no_peer_means_no_client() {
        let h = HeaderMap::new();
        assert_eq!(client_ip(None, h.get_all("x-forwarded-for"), &[]), None);
    }
}
