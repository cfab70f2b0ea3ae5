//! One request to decide, as a builder.

use core::net::IpAddr;

use crate::rule::Api;

/// One request to decide.
///
/// ```
/// use ratecard::{Api, Request};
/// let r = Request::new(Api::Backend, b"PATCH", b"/v1/users/user_1")
///     .key(b"Bearer sk_live_abc")
///     .ip([203, 0, 113, 9]);
/// assert_eq!(r.cost, 1);
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Request<'r> {
    /// The API addressed.
    pub api: Api,
    /// The HTTP method (any case).
    pub method: &'r [u8],
    /// The request target: a path (origin form), or an absolute URL; may
    /// carry a query string.
    pub path: &'r [u8],
    /// The client's address: keys Frontend rules (and Backend requests
    /// without a key).
    pub client_ip: Option<IpAddr>,
    /// Secret key, raw or as an `Authorization` value (`Bearer sk_…`).
    pub secret_key: &'r [u8],
    /// Optional tenant: namespaces clients; names the instance on Backend.
    pub tenant: &'r [u8],
    /// Units this request costs; 0 means 1.
    pub cost: u32,
}

impl<'r> Request<'r> {
    /// A request of cost 1 with no IP, key or tenant.
    pub const fn new(api: Api, method: &'r [u8], path: &'r [u8]) -> Request<'r> {
        Request {
            api,
            method,
            path,
            client_ip: None,
            secret_key: &[],
            tenant: &[],
            cost: 1,
        }
    }

    /// The same request from `ip` (an `IpAddr`, or `[u8; 4]` / `[u8; 16]`
    /// in network order).
    pub fn ip(self, ip: impl Into<IpAddr>) -> Request<'r> {
        Request {
            client_ip: Some(ip.into()),
            ..self
        }
    }

    /// The same request with a secret key or `Authorization` value.
    pub const fn key(self, secret_key: &'r [u8]) -> Request<'r> {
        Request { secret_key, ..self }
    }

    /// The same request in a tenant.
    pub const fn tenant(self, tenant: &'r [u8]) -> Request<'r> {
        Request { tenant, ..self }
    }

    /// The same request with a cost.
    pub const fn cost(self, cost: u32) -> Request<'r> {
        Request { cost, ..self }
    }
}
