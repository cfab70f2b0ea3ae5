//! The README's Envoy configuration produces exactly the descriptors the
//! protocol tests send, and points the ratelimit filter at the service as
//! it runs by default.
//!
//! No Envoy binary can be had here, so this reads the YAML and applies
//! Envoy's documented rules for the parts it uses: the virtual host is
//! chosen by `:authority` among `domains`, the route by `prefix`; a route
//! without `rate_limits` takes its virtual host's; each `rate_limits` entry
//! makes one descriptor, one entry per action in order, and an action that
//! cannot produce its entry drops the descriptor unless it is
//! `skip_if_absent`. An action, match or field this file does not know
//! fails the test, so the README cannot drift into configuration nothing
//! checks.

mod common;

use common::*;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{
    rate_limit_descriptor::Entry, RateLimitDescriptor,
};
use ratecard_rls::config::Settings;
use serde_yaml::Value;

fn readme_yaml() -> Value {
    let readme = include_str!("../README.md");
    let start = readme
        .find("```yaml\n")
        .expect("a yaml block in the README")
        + 8;
    let len = readme[start..].find("```").expect("the block ends");
    serde_yaml::from_str(&readme[start..start + len]).expect("the README's YAML parses")
}

fn get<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.get(key).unwrap_or_else(|| panic!("no {key:?} in {v:?}"))
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    get(v, key)
        .as_str()
        .unwrap_or_else(|| panic!("{key:?} is not text"))
}

fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    match v.get(key) {
        None => &[],
        Some(l) => l
            .as_sequence()
            .unwrap_or_else(|| panic!("{key:?} is not a list"))
            .as_slice(),
    }
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_mapping()
        .expect("a mapping")
        .keys()
        .map(|k| k.as_str().expect("text keys"))
        .collect()
}

fn assert_only(v: &Value, known: &[&str]) {
    for k in keys(v) {
        assert!(known.contains(&k), "{k:?} is not interpreted by this test");
    }
}

fn connection_manager(config: &Value) -> &Value {
    let listeners = list(get(config, "static_resources"), "listeners");
    assert_eq!(listeners.len(), 1);
    let chains = list(&listeners[0], "filter_chains");
    assert_eq!(chains.len(), 1);
    let filters = list(&chains[0], "filters");
    assert_eq!(filters.len(), 1);
    assert_eq!(
        text(&filters[0], "name"),
        "envoy.filters.network.http_connection_manager"
    );
    get(&filters[0], "typed_config")
}

/// The header values Envoy's actions read, pseudo-headers included.
fn header_value<'a>(r: &'a HttpRequest, name: &str) -> Option<&'a str> {
    match name {
        ":method" => Some(&r.method),
        ":path" => Some(&r.path),
        ":authority" => Some(r.host),
        "authorization" => r.authorization.as_deref(),
        other => panic!("the samples have no header {other:?}"),
    }
}

/// The descriptors Envoy would send for `r`.
fn derive(config: &Value, r: &HttpRequest) -> Vec<RateLimitDescriptor> {
    let hcm = connection_manager(config);
    let vhosts = list(get(hcm, "route_config"), "virtual_hosts");
    let vhost = vhosts
        .iter()
        .find(|v| {
            list(v, "domains")
                .iter()
                .any(|d| matches!(d.as_str(), Some(d) if d == r.host || d == "*"))
        })
        .unwrap_or_else(|| panic!("no virtual host for {}", r.host));
    assert_only(vhost, &["name", "domains", "rate_limits", "routes"]);
    let route = list(vhost, "routes")
        .iter()
        .find(|route| {
            let m = get(route, "match");
            assert_only(m, &["prefix"]);
            r.path.starts_with(text(m, "prefix"))
        })
        .unwrap_or_else(|| panic!("no route for {}", r.path));
    assert_only(route, &["match", "route", "rate_limits"]);
    let policy = if list(route, "rate_limits").is_empty() {
        list(vhost, "rate_limits")
    } else {
        list(route, "rate_limits")
    };
    let mut descriptors = Vec::new();
    'entries: for limit in policy {
        assert_only(limit, &["actions"]);
        let mut entries = Vec::new();
        for action in list(limit, "actions") {
            let kinds = keys(action);
            assert_eq!(kinds.len(), 1, "one action per item");
            let body = get(action, kinds[0]);
            match kinds[0] {
                "generic_key" => {
                    assert_only(body, &["descriptor_key", "descriptor_value"]);
                    let key = body
                        .get("descriptor_key")
                        .and_then(Value::as_str)
                        .unwrap_or("generic_key");
                    entries.push(Entry {
                        key: key.into(),
                        value: text(body, "descriptor_value").into(),
                    });
                }
                "request_headers" => {
                    assert_only(body, &["header_name", "descriptor_key", "skip_if_absent"]);
                    let skip = body
                        .get("skip_if_absent")
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    match header_value(r, text(body, "header_name")) {
                        Some(v) => entries.push(Entry {
                            key: text(body, "descriptor_key").into(),
                            value: v.into(),
                        }),
                        None if skip => {}
                        None => continue 'entries,
                    }
                }
                "remote_address" => {
                    assert!(keys(body).is_empty());
                    entries.push(Entry {
                        key: "remote_address".into(),
                        value: r.remote.to_string(),
                    });
                }
                other => panic!("action {other:?} is not interpreted by this test"),
            }
        }
        descriptors.push(RateLimitDescriptor {
            entries,
            ..Default::default()
        });
    }
    descriptors
}

/// Requests of every shape the protocol tests send.
fn samples() -> Vec<HttpRequest> {
    vec![
        HttpRequest::frontend("POST", "/v1/client/sign_ins", "198.51.100.10"),
        HttpRequest::frontend(
            "POST",
            "/v1/client/sign_ins?_clerk_js_version=5",
            "2001:db8:1:2:ffff::9",
        ),
        HttpRequest::frontend("GET", "/v1/environment", "::ffff:192.0.2.77"),
        // A Frontend request's Authorization header is not sent.
        HttpRequest {
            authorization: Some("Bearer sess_token".into()),
            ..HttpRequest::frontend(
                "POST",
                "/v1/client/sign_ins/sia_1/attempt_first_factor",
                "198.51.100.11",
            )
        },
        HttpRequest::backend("PATCH", "/v1/users/user_1", "sk_live_users_update_1"),
        HttpRequest::backend("GET", "/v1/jwks", "sk_test_exempt"),
        HttpRequest::backend("GET", "/v1/users/me", "sk_test_kind_1").without_key(),
        HttpRequest::backend("POST", "/v1/invitations", "sk_live_concurrent").from("2001:db8:1::5"),
    ]
}

#[test]
fn the_readme_configuration_sends_the_descriptors_the_protocol_tests_send() {
    let config = readme_yaml();
    for r in samples() {
        assert_eq!(derive(&config, &r), vec![descriptor(&r)], "{r:?}");
    }
}

#[test]
fn the_filter_and_cluster_match_the_service_defaults() {
    let config = readme_yaml();
    let hcm = connection_manager(&config);
    assert_eq!(get(hcm, "use_remote_address").as_bool(), Some(true));
    let filters = list(hcm, "http_filters");
    assert_eq!(text(&filters[0], "name"), "envoy.filters.http.ratelimit");
    assert_eq!(
        text(filters.last().unwrap(), "name"),
        "envoy.filters.http.router",
        "the router comes last"
    );
    let rl = get(&filters[0], "typed_config");
    assert_eq!(
        text(rl, "@type"),
        "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit"
    );
    let defaults = Settings::default();
    assert_eq!(text(rl, "domain"), defaults.domain);
    assert_eq!(text(rl, "domain"), DOMAIN);
    assert_eq!(get(rl, "failure_mode_deny").as_bool(), Some(true));
    assert!(rl.get("stage").is_none() && rl.get("enable_x_ratelimit_headers").is_none());
    let service = get(rl, "rate_limit_service");
    assert_eq!(text(service, "transport_api_version"), "V3");
    let cluster_name = text(
        get(get(service, "grpc_service"), "envoy_grpc"),
        "cluster_name",
    );

    let clusters = list(get(&config, "static_resources"), "clusters");
    let cluster = clusters
        .iter()
        .find(|c| text(c, "name") == cluster_name)
        .expect("the service's cluster");
    let options = get(
        get(cluster, "typed_extension_protocol_options"),
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
    );
    assert!(get(
        get(options, "explicit_http_config"),
        "http2_protocol_options"
    )
    .is_mapping());
    assert!(list(cluster, "health_checks")
        .iter()
        .any(|h| h.get("grpc_health_check").is_some()));
    let endpoint = get(
        get(
            &list(
                &list(get(cluster, "load_assignment"), "endpoints")[0],
                "lb_endpoints",
            )[0],
            "endpoint",
        ),
        "address",
    );
    let socket = get(endpoint, "socket_address");
    assert_eq!(text(socket, "address"), defaults.listen.ip().to_string());
    assert_eq!(
        get(socket, "port_value").as_u64(),
        Some(u64::from(defaults.listen.port()))
    );
}
