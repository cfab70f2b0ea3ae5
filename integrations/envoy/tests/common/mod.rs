//! What the tests share: the service as a process, a gRPC client, and the
//! descriptors Envoy sends for an HTTP request under the README's
//! configuration (`envoy_config.rs` checks them against that YAML).
#![allow(dead_code, reason = "each test file uses part of this module")]

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{
    rate_limit_descriptor::Entry, RateLimitDescriptor,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::value::Kind;
use envoy_types::pb::google::protobuf::UInt64Value;
use ratecard::{Method, Route};
use tonic::transport::Channel;

/// The virtual hosts of the README's Envoy configuration.
pub const FRONTEND_HOST: &str = "accounts.example.com";
pub const BACKEND_HOST: &str = "api.example.com";
/// The filter's domain there, and the service's default.
pub const DOMAIN: &str = "clerk";

/// A seed for every test service (replicas would share one).
pub const SEED: &str = "8f3e2a1b0c9d8e7f6a5b4c3d2e1f0a9b";

/// `ratecard-rls` running as a child process on 127.0.0.1; killed (by its
/// pid) and reaped when dropped, also when a test fails.
pub struct Service {
    child: Child,
    pub addr: SocketAddr,
}

impl Service {
    /// Start the service on a port the OS picks, with `extra` flags.
    pub fn start(extra: &[&str]) -> Service {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ratecard-rls"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--seed",
                SEED,
                "--capacity",
                "65536",
            ])
            .args(["--shutdown-grace", "5"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start ratecard-rls");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut service = Service {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("ratecard-rls printed its address");
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        service.addr = addr;
        service
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn client(&self) -> RateLimitServiceClient<Channel> {
        RateLimitServiceClient::connect(self.uri())
            .await
            .expect("connect to ratecard-rls")
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Wait at most `limit` for the process to exit by itself, letting the
    /// test's own connections answer the server's goodbye meanwhile.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let until = std::time::Instant::now() + limit;
        while std::time::Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP request as Envoy sees it.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    /// `:authority`: which virtual host.
    pub host: &'static str,
    pub method: String,
    pub path: String,
    /// The trusted client address.
    pub remote: IpAddr,
    pub authorization: Option<String>,
}

impl HttpRequest {
    pub fn frontend(method: &str, path: &str, remote: &str) -> HttpRequest {
        HttpRequest {
            host: FRONTEND_HOST,
            method: method.into(),
            path: path.into(),
            remote: remote.parse().expect("an IP"),
            authorization: None,
        }
    }

    pub fn backend(method: &str, path: &str, key: &str) -> HttpRequest {
        HttpRequest {
            host: BACKEND_HOST,
            method: method.into(),
            path: path.into(),
            remote: "192.0.2.200".parse().expect("an IP"),
            authorization: Some(format!("Bearer {key}")),
        }
    }

    pub fn from(mut self, remote: &str) -> HttpRequest {
        self.remote = remote.parse().expect("an IP");
        self
    }

    pub fn without_key(mut self) -> HttpRequest {
        self.authorization = None;
        self
    }
}

fn entry(key: &str, value: &str) -> Entry {
    Entry {
        key: key.into(),
        value: value.into(),
    }
}

/// The descriptor Envoy sends for `r` under the README's configuration.
pub fn descriptor(r: &HttpRequest) -> RateLimitDescriptor {
    let api = if r.host == FRONTEND_HOST {
        "frontend"
    } else {
        "backend"
    };
    let mut entries = vec![
        entry("api", api),
        entry("method", &r.method),
        entry("path", &r.path),
        entry("remote_address", &r.remote.to_string()),
    ];
    if api == "backend" {
        if let Some(a) = &r.authorization {
            entries.push(entry("authorization", a));
        }
    }
    RateLimitDescriptor {
        entries,
        ..Default::default()
    }
}

/// The `ShouldRateLimit` request for `r`.
pub fn request(r: &HttpRequest) -> RateLimitRequest {
    RateLimitRequest {
        domain: DOMAIN.into(),
        descriptors: vec![descriptor(r)],
        hits_addend: 0,
    }
}

/// The same request with a descriptor `hits_addend` (0 is a peek).
pub fn request_with_hits(r: &HttpRequest, hits: u64) -> RateLimitRequest {
    let mut req = request(r);
    req.descriptors[0].hits_addend = Some(UInt64Value { value: hits });
    req
}

/// Send one request; panics on a gRPC error.
pub async fn should(
    client: &mut RateLimitServiceClient<Channel>,
    req: RateLimitRequest,
) -> RateLimitResponse {
    client
        .should_rate_limit(req)
        .await
        .unwrap_or_else(|s| panic!("ShouldRateLimit failed: {s:?}"))
        .into_inner()
}

pub fn is_ok(r: &RateLimitResponse) -> bool {
    r.overall_code == Code::Ok as i32
}

pub fn is_over_limit(r: &RateLimitResponse) -> bool {
    r.overall_code == Code::OverLimit as i32
}

pub fn header<'a>(r: &'a RateLimitResponse, name: &str) -> Option<&'a str> {
    let mut found = r
        .response_headers_to_add
        .iter()
        .filter(|h| h.key.eq_ignore_ascii_case(name));
    let first = found.next().map(|h| h.value.as_str());
    assert!(found.next().is_none(), "{name} given twice");
    first
}

pub fn metadata<'a>(r: &'a RateLimitResponse, field: &str) -> Option<&'a str> {
    match &r.dynamic_metadata.as_ref()?.fields.get(field)?.kind {
        Some(Kind::StringValue(s)) => Some(s),
        _ => None,
    }
}

/// The binding rule's name in a response.
pub fn rule_of(r: &RateLimitResponse) -> Option<&str> {
    Some(r.statuses.first()?.current_limit.as_ref()?.name.as_str())
}

pub fn remaining_of(r: &RateLimitResponse) -> u32 {
    r.statuses[0].limit_remaining
}

/// `GET`, `POST`, … for a route method.
pub fn method_name(m: Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
        Method::Options => "OPTIONS",
        Method::Any | Method::Other => "GET",
    }
}

/// A concrete path for a route pattern: each `{param}` becomes `id`.
pub fn concrete(route: &Route<'_>, id: &str) -> String {
    let mut out = String::new();
    let mut rest = route.path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').expect("closed capture") + open;
        out.push_str(id);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}
