//! Envoy's `RateLimitRequest` as it arrives, and the one HTTP request it
//! describes.
//!
//! The request is decoded with byte strings where Envoy's `.proto` says
//! `string`: the same wire format, but a header value that is not UTF-8
//! (Envoy serialises whatever bytes the client sent) is decided like any
//! other instead of failing the whole call in the decoder.
//!
//! # The protocol
//!
//! A request carries exactly one descriptor, built by one `rate_limits`
//! entry of Envoy's route configuration, with these entries:
//!
//! | key | Envoy action | |
//! | --- | --- | --- |
//! | `api` | `generic_key` (`descriptor_key: api`) | `frontend` or `backend`; may be left out when the service has an `--api` default |
//! | `method` | `request_headers` of `:method` | required |
//! | `path` | `request_headers` of `:path` | required; may carry a query string |
//! | `remote_address` | `remote_address` | the trusted client IP, IPv4 or IPv6 text; required on the Frontend |
//! | `authorization` | `request_headers` of `authorization`, `skip_if_absent` | `Bearer sk_…` or a raw key; a Backend request without it is limited by client IP at the development limit |
//! | `tenant` | any (`generic_key`, `request_headers`) | optional namespace; on the Backend it names the instance |
//!
//! Everything else is refused with a reason ([`Refusal`], sent as gRPC
//! `INVALID_ARGUMENT`): no descriptor (Envoy never calls with none), more
//! than one (one HTTP request is one decision, charged all or nothing across
//! its rules; two descriptors would charge it twice), another domain, an
//! unknown or repeated key, a missing `method` or `path`, an `api` or
//! `remote_address` that does not parse, a descriptor `limit` override
//! (the table sets the limits), and negative hits (a charge is never
//! refunded: undoing one is only safe from exactly the state it wrote).
//!
//! `hits_addend` is the request's cost: the descriptor's value if set, else
//! the request's (0 there means 1, as proto3 cannot tell 0 from unset). A
//! descriptor `hits_addend` of exactly 0 is a peek: the answer a request of
//! cost 1 would get, charging nothing. A cost above `u32::MAX` is refused.

use std::fmt;
use std::net::IpAddr;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::RateLimitOverride;
use envoy_types::pb::google::protobuf::UInt64Value;

use crate::backend::{ApiKind, Classified};

/// `envoy.service.ratelimit.v3.RateLimitRequest`, byte strings for strings.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct WireRequest {
    /// The filter's `domain`.
    #[prost(bytes = "vec", tag = "1")]
    pub domain: Vec<u8>,
    /// One per `rate_limits` entry that produced one.
    #[prost(message, repeated, tag = "2")]
    pub descriptors: Vec<WireDescriptor>,
    /// Units the request costs; 0 means 1.
    #[prost(uint32, tag = "3")]
    pub hits_addend: u32,
}

/// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct WireDescriptor {
    /// Key/value pairs, one per action.
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<WireEntry>,
    /// A limit override (refused).
    #[prost(message, optional, tag = "2")]
    pub limit: Option<RateLimitOverride>,
    /// Overrides the request's `hits_addend`.
    #[prost(message, optional, tag = "3")]
    pub hits_addend: Option<UInt64Value>,
    /// A refund of hits (refused).
    #[prost(bool, tag = "4")]
    pub is_negative_hits: bool,
}

/// `RateLimitDescriptor.Entry`.
#[derive(Clone, PartialEq, Eq, ::prost::Message)]
pub struct WireEntry {
    /// The descriptor key.
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    /// Its value.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

impl WireEntry {
    /// An entry from text.
    pub fn new(key: &str, value: impl Into<Vec<u8>>) -> WireEntry {
        WireEntry {
            key: key.as_bytes().to_vec(),
            value: value.into(),
        }
    }
}

/// The descriptor keys this service reads.
pub mod keys {
    /// `frontend` or `backend`.
    pub const API: &str = "api";
    /// The HTTP method.
    pub const METHOD: &str = "method";
    /// The request target.
    pub const PATH: &str = "path";
    /// The client IP (Envoy's `remote_address` action fixes this key).
    pub const REMOTE_ADDRESS: &str = "remote_address";
    /// The `Authorization` value.
    pub const AUTHORIZATION: &str = "authorization";
    /// An optional namespace.
    pub const TENANT: &str = "tenant";
}

/// A request read from its descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// What to decide.
    pub request: Classified<'a>,
    /// Decide without charging (a descriptor `hits_addend` of 0).
    pub peek: bool,
}

/// Why a `RateLimitRequest` is not decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No descriptor at all.
    NoDescriptors,
    /// More than one descriptor.
    SeveralDescriptors(usize),
    /// A domain other than the service's.
    UnknownDomain,
    /// A descriptor with no entries.
    EmptyDescriptor,
    /// An entry key this service does not read (lossy text, shortened).
    UnknownKey(String),
    /// A key given twice.
    RepeatedKey(&'static str),
    /// A required key is missing.
    Missing(&'static str),
    /// `api` is neither `frontend` nor `backend`.
    BadApi,
    /// `remote_address` is not an IP address.
    BadAddress,
    /// A `hits_addend` above `u32::MAX`.
    CostTooLarge(u64),
    /// `is_negative_hits`: a refund.
    NegativeHits,
    /// A descriptor `limit` override.
    LimitOverride,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoDescriptors => f.write_str("no descriptor: one is required"),
            Refusal::SeveralDescriptors(n) => write!(
                f,
                "{n} descriptors: exactly one per request (one rate_limits entry)"
            ),
            Refusal::UnknownDomain => f.write_str("unknown domain"),
            Refusal::EmptyDescriptor => f.write_str("a descriptor with no entries"),
            Refusal::UnknownKey(k) => write!(f, "unknown descriptor key {k:?}"),
            Refusal::RepeatedKey(k) => write!(f, "descriptor key {k:?} given twice"),
            Refusal::Missing(k) => write!(f, "descriptor lacks {k:?}"),
            Refusal::BadApi => f.write_str("api must be \"frontend\" or \"backend\""),
            Refusal::BadAddress => f.write_str("remote_address is not an IP address"),
            Refusal::CostTooLarge(n) => write!(f, "hits_addend {n} is above 4294967295"),
            Refusal::NegativeHits => f.write_str("negative hits: charges are never refunded"),
            Refusal::LimitOverride => {
                f.write_str("limit overrides are refused: the rule table sets the limits")
            }
        }
    }
}

/// Read `request`'s descriptor for `domain`; `default_api` applies when the
/// descriptor names none (without one, `api` is required).
pub fn parse<'a>(
    request: &'a WireRequest,
    domain: &[u8],
    default_api: Option<ApiKind>,
) -> Result<Parsed<'a>, Refusal> {
    if request.domain != domain {
        return Err(Refusal::UnknownDomain);
    }
    let d = match request.descriptors.as_slice() {
        [] => return Err(Refusal::NoDescriptors),
        [d] => d,
        several => return Err(Refusal::SeveralDescriptors(several.len())),
    };
    if d.entries.is_empty() {
        return Err(Refusal::EmptyDescriptor);
    }
    if d.is_negative_hits {
        return Err(Refusal::NegativeHits);
    }
    if d.limit.is_some() {
        return Err(Refusal::LimitOverride);
    }
    let (cost, peek) = match d.hits_addend {
        Some(UInt64Value { value: 0 }) => (1, true),
        Some(UInt64Value { value }) => (
            u32::try_from(value).map_err(|_| Refusal::CostTooLarge(value))?,
            false,
        ),
        None => (request.hits_addend.max(1), false),
    };

    let mut fields = Fields::default();
    for e in &d.entries {
        fields.take(e)?;
    }
    let api = match fields.api {
        None => default_api.ok_or(Refusal::Missing(keys::API))?,
        Some(name) => ApiKind::parse(name).ok_or(Refusal::BadApi)?,
    };
    let client_ip = match fields.remote_address {
        None => None,
        Some(text) => Some(
            std::str::from_utf8(text)
                .ok()
                .and_then(|t| t.parse::<IpAddr>().ok())
                .ok_or(Refusal::BadAddress)?,
        ),
    };
    Ok(Parsed {
        request: Classified {
            api,
            method: fields.method.ok_or(Refusal::Missing(keys::METHOD))?,
            path: fields.path.ok_or(Refusal::Missing(keys::PATH))?,
            client_ip,
            authorization: fields.authorization.unwrap_or_default(),
            tenant: fields.tenant.unwrap_or_default(),
            cost,
        },
        peek,
    })
}

/// The entries of one descriptor, each at most once.
#[derive(Default)]
struct Fields<'a> {
    api: Option<&'a [u8]>,
    method: Option<&'a [u8]>,
    path: Option<&'a [u8]>,
    remote_address: Option<&'a [u8]>,
    authorization: Option<&'a [u8]>,
    tenant: Option<&'a [u8]>,
}

impl<'a> Fields<'a> {
    fn take(&mut self, e: &'a WireEntry) -> Result<(), Refusal> {
        let (slot, name) = match e.key.as_slice() {
            b"api" => (&mut self.api, keys::API),
            b"method" => (&mut self.method, keys::METHOD),
            b"path" => (&mut self.path, keys::PATH),
            b"remote_address" => (&mut self.remote_address, keys::REMOTE_ADDRESS),
            b"authorization" => (&mut self.authorization, keys::AUTHORIZATION),
            b"tenant" => (&mut self.tenant, keys::TENANT),
            other => return Err(Refusal::UnknownKey(shown(other))),
        };
        if slot.replace(&e.value).is_some() {
            return Err(Refusal::RepeatedKey(name));
        }
        Ok(())
    }
}

/// A key as text for an error message: lossy, at most 64 characters.
fn shown(key: &[u8]) -> String {
    String::from_utf8_lossy(key).chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOMAIN: &[u8] = b"clerk";

    fn request(entries: &[(&str, &[u8])]) -> WireRequest {
        WireRequest {
            domain: DOMAIN.to_vec(),
            descriptors: vec![WireDescriptor {
                entries: entries.iter().map(|(k, v)| WireEntry::new(k, *v)).collect(),
                ..WireDescriptor::default()
            }],
            hits_addend: 0,
        }
    }

    fn frontend() -> WireRequest {
        request(&[
            ("api", b"frontend"),
            ("method", b"POST"),
            ("path", b"/v1/client/sign_ins?_clerk_js_version=5"),
            ("remote_address", b"203.0.113.7"),
        ])
    }

    #[test]
    fn a_frontend_descriptor_reads_into_one_request_of_cost_one() {
        let r = frontend();
        let p = parse(&r, DOMAIN, Some(ApiKind::Backend)).unwrap();
        assert!(!p.peek);
        assert_eq!(
            p.request,
            Classified {
                api: ApiKind::Frontend,
                method: b"POST",
                path: b"/v1/client/sign_ins?_clerk_js_version=5",
                client_ip: Some("203.0.113.7".parse().unwrap()),
                authorization: b"",
                tenant: b"",
                cost: 1,
            }
        );
    }

    #[test]
    fn without_an_api_entry_the_default_api_applies_or_it_is_required() {
        let r = request(&[("method", b"GET"), ("path", b"/v1/users/me")]);
        let p = parse(&r, DOMAIN, Some(ApiKind::Backend)).unwrap();
        assert_eq!(p.request.api, ApiKind::Backend);
        assert_eq!(p.request.client_ip, None);
    }

    #[test]
    fn values_need_not_be_utf8_but_an_address_must_parse() {
        let r = request(&[
            ("method", b"GET"),
            ("path", b"/v1/\xff\xfe"),
            ("authorization", b"Bearer sk_live_\xc3\x28"),
        ]);
        let p = parse(&r, DOMAIN, Some(ApiKind::Backend)).unwrap();
        assert_eq!(p.request.path, b"/v1/\xff\xfe");
        for bad in [&b"\xff\xfe"[..], b"203.0.113.7:443", b"", b"fe80::1%eth0"] {
            let r = request(&[("method", b"GET"), ("path", b"/"), ("remote_address", bad)]);
            assert_eq!(
                parse(&r, DOMAIN, Some(ApiKind::Frontend)),
                Err(Refusal::BadAddress)
            );
        }
        let r = request(&[
            ("method", b"GET"),
            ("path", b"/"),
            ("remote_address", b"::ffff:192.0.2.1"),
        ]);
        assert!(parse(&r, DOMAIN, Some(ApiKind::Frontend)).is_ok());
    }

    #[test]
    fn malformed_descriptors_are_refused_with_their_reason() {
        let mut none = frontend();
        none.descriptors.clear();
        assert_eq!(
            parse(&none, DOMAIN, Some(ApiKind::Frontend)),
            Err(Refusal::NoDescriptors)
        );

        let mut two = frontend();
        two.descriptors.push(two.descriptors[0].clone());
        assert_eq!(
            parse(&two, DOMAIN, Some(ApiKind::Frontend)),
            Err(Refusal::SeveralDescriptors(2))
        );

        let r = frontend();
        assert_eq!(
            parse(&r, b"other", Some(ApiKind::Frontend)),
            Err(Refusal::UnknownDomain)
        );

        let r = request(&[]);
        assert_eq!(
            parse(&r, DOMAIN, Some(ApiKind::Frontend)),
            Err(Refusal::EmptyDescriptor)
        );

        let r = request(&[("method", b"GET"), ("path", b"/"), ("x-user", b"1")]);
        assert_eq!(
            parse(&r, DOMAIN, Some(ApiKind::Frontend)),
            Err(Refusal::UnknownKey("x-user".into()))
        );

        let r = request(&[("method", b"GET"), ("path", b"/"), ("path", b"/v1/jwks")]);
        assert_eq!(
            parse(&r, DOMAIN, Some(ApiKind::Frontend)),
            Err(Refusal::RepeatedKey("path"))
        );

        let r = request(&[("path", b"/")]);
        assert_eq!(
            parse(&r, DOMAIN, Some(ApiKind::Frontend)),
            Err(Refusal::Missing("method"))
        );
        let r = request(&[("method", b"GET")]);
        assert_eq!(
            parse(&r, DOMAIN, Some(ApiKind::Frontend)),
            Err(Refusal::Missing("path"))
        );

        let r = request(&[("api", b"Frontend"), ("method", b"GET"), ("path", b"/")]);
        assert_eq!(
            parse(&r, DOMAIN, Some(ApiKind::Frontend)),
            Err(Refusal::BadApi)
        );

        let mut refund = frontend();
        refund.descriptors[0].is_negative_hits = true;
        assert_eq!(
            parse(&refund, DOMAIN, Some(ApiKind::Frontend)),
            Err(Refusal::NegativeHits)
        );

        let mut over = frontend();
        over.descriptors[0].limit = Some(RateLimitOverride {
            requests_per_unit: 1000,
            unit: 1,
        });
        assert_eq!(
            parse(&over, DOMAIN, Some(ApiKind::Frontend)),
            Err(Refusal::LimitOverride)
        );
    }

    #[test]
    fn hits_addend_is_the_cost_and_an_explicit_zero_is_a_peek() {
        let mut r = frontend();
        r.hits_addend = 7;
        assert_eq!(
            parse(&r, DOMAIN, Some(ApiKind::Frontend))
                .unwrap()
                .request
                .cost,
            7
        );

        r.descriptors[0].hits_addend = Some(UInt64Value { value: 3 });
        let p = parse(&r, DOMAIN, Some(ApiKind::Frontend)).unwrap();
        assert_eq!((p.request.cost, p.peek), (3, false));

        r.descriptors[0].hits_addend = Some(UInt64Value { value: 0 });
        let p = parse(&r, DOMAIN, Some(ApiKind::Frontend)).unwrap();
        assert_eq!((p.request.cost, p.peek), (1, true));

        r.descriptors[0].hits_addend = Some(UInt64Value {
            value: u32::MAX as u64,
        });
        assert_eq!(
            parse(&r, DOMAIN, Some(ApiKind::Frontend))
                .unwrap()
                .request
                .cost,
            u32::MAX
        );
        r.descriptors[0].hits_addend = Some(UInt64Value { value: 1 << 32 });
        assert_eq!(
            parse(&r, DOMAIN, Some(ApiKind::Frontend)),
            Err(Refusal::CostTooLarge(1 << 32))
        );
    }

    #[test]
    fn the_wire_types_read_what_envoys_own_types_write() {
        use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{
            rate_limit_descriptor::Entry, RateLimitDescriptor,
        };
        use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
        use prost::Message;
        let theirs = RateLimitRequest {
            domain: "clerk".into(),
            descriptors: vec![RateLimitDescriptor {
                entries: vec![Entry {
                    key: "path".into(),
                    value: "/v1/jwks".into(),
                }],
                hits_addend: Some(UInt64Value { value: 2 }),
                ..Default::default()
            }],
            hits_addend: 5,
        };
        let ours = WireRequest::decode(theirs.encode_to_vec().as_slice()).unwrap();
        assert_eq!(ours.domain, b"clerk");
        assert_eq!(ours.hits_addend, 5);
        assert_eq!(
            ours.descriptors[0].entries,
            vec![WireEntry::new("path", "/v1/jwks")]
        );
        assert_eq!(
            ours.descriptors[0].hits_addend,
            Some(UInt64Value { value: 2 })
        );
    }
}
