//! A [`Verdict`] as Envoy's `RateLimitResponse`.
//!
//! - `overall_code`: `OVER_LIMIT` on an enforced denial, else `OK`.
//! - One `statuses` entry (the request has one descriptor): `OVER_LIMIT`
//!   when the request is limited, also on a dry run, where only the overall
//!   code stays `OK`; `current_limit`, `limit_remaining` and
//!   `duration_until_reset` of the binding rule; none for exempt and
//!   unmatched requests.
//! - `response_headers_to_add`: `RateLimit-Policy` and `RateLimit` whenever
//!   a limited rule matched (Envoy adds them to the upstream's response, or
//!   to its 429); on an enforced denial also `Retry-After` (none when the
//!   cost never fits) and `Content-Type: application/json`, which Envoy lets
//!   replace its local reply's `text/plain`.
//! - `raw_body`: Clerk's 429 JSON on an enforced denial.
//! - `dynamic_metadata`: `ratecard_result` (`ALLOWED`, `DENIED`,
//!   `DRY_RUN_DENIED`, `EXEMPT`, `UNMATCHED`) and `ratecard_rule`, which
//!   Envoy files under `envoy.filters.http.ratelimit` for access logs.

use std::collections::HashMap;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitResponse;
use envoy_types::pb::google::protobuf::{self, value::Kind, Struct, Value};

use crate::backend::{Binding, Outcome, Verdict};
use crate::engine::TOO_MANY_REQUESTS_BODY;

/// Units Envoy's `RateLimit` can name, with their length in seconds.
const UNITS: [(Unit, u64); 5] = [
    (Unit::Second, 1),
    (Unit::Minute, 60),
    (Unit::Hour, 3_600),
    (Unit::Day, 86_400),
    (Unit::Week, 604_800),
];

/// The response for `v`.
pub fn response(v: &Verdict) -> RateLimitResponse {
    let enforced = v.is_enforced_denial();
    let mut headers = Vec::with_capacity(4);
    let mut header = |key: &str, value: String| {
        if !value.is_empty() {
            headers.push(HeaderValue {
                key: key.into(),
                value,
                raw_value: Vec::new(),
            });
        }
    };
    header("RateLimit-Policy", v.ratelimit_policy.clone());
    header("RateLimit", v.ratelimit.clone());
    if enforced {
        if let Outcome::Limited { retry_after_secs } = v.outcome {
            header("Retry-After", retry_after_secs.to_string());
        }
        header("Content-Type", "application/json".into());
    }
    let status = DescriptorStatus {
        code: if v.is_limited() {
            Code::OverLimit
        } else {
            Code::Ok
        } as i32,
        current_limit: v.binding.as_ref().map(current_limit),
        limit_remaining: v.binding.as_ref().map_or(0, |b| b.remaining),
        duration_until_reset: v.binding.as_ref().map(|b| duration(b.reset)),
        quota: None,
    };
    RateLimitResponse {
        overall_code: if enforced { Code::OverLimit } else { Code::Ok } as i32,
        statuses: vec![status],
        response_headers_to_add: headers,
        request_headers_to_add: Vec::new(),
        raw_body: if enforced {
            TOO_MANY_REQUESTS_BODY.as_bytes().to_vec()
        } else {
            Vec::new()
        },
        dynamic_metadata: Some(metadata(v)),
        quota: None,
    }
}

/// `ratecard_result` as the nginx module's `$ratecard_result` names it.
pub fn result_name(v: &Verdict) -> &'static str {
    match v.outcome {
        Outcome::Allowed => "ALLOWED",
        Outcome::Limited { .. } | Outcome::NeverFits if v.dry_run => "DRY_RUN_DENIED",
        Outcome::Limited { .. } | Outcome::NeverFits => "DENIED",
        Outcome::Exempt => "EXEMPT",
        Outcome::Unmatched => "UNMATCHED",
    }
}

fn metadata(v: &Verdict) -> Struct {
    let text = |s: &str| Value {
        kind: Some(Kind::StringValue(s.into())),
    };
    let mut fields = HashMap::with_capacity(2);
    fields.insert("ratecard_result".into(), text(result_name(v)));
    if let Some(b) = &v.binding {
        fields.insert("ratecard_rule".into(), text(b.rule));
    }
    Struct { fields }
}

fn current_limit(b: &Binding) -> RateLimit {
    let (requests_per_unit, unit) = per_unit(b.limit, b.period);
    RateLimit {
        name: b.rule.into(),
        requests_per_unit,
        unit: unit as i32,
    }
}

/// `limit` per `period` in Envoy's terms, which have no 10-second unit: the
/// long-run rate in the smallest unit at least as long as the period in
/// which it is a whole number (5 per 10 s is 30 per minute, 100 per hour is
/// 100 per hour); failing that, the rate per week rounded down, so it never
/// reads looser than the rule. The exact quota and window travel in
/// `RateLimit-Policy` (`q=5;w=10`).
pub fn per_unit(limit: u32, period: Duration) -> (u32, Unit) {
    let period_ns = period.as_nanos().max(1);
    let rate = |secs: u64| u128::from(limit) * u128::from(secs) * 1_000_000_000;
    for (unit, secs) in UNITS {
        let fits = u128::from(secs) * 1_000_000_000 >= period_ns;
        if fits && rate(secs) % period_ns == 0 {
            if let Ok(n) = u32::try_from(rate(secs) / period_ns) {
                return (n, unit);
            }
        }
    }
    let week = UNITS[UNITS.len() - 1].1;
    let n = u32::try_from(rate(week) / period_ns).unwrap_or(u32::MAX);
    (n, Unit::Week)
}

fn duration(d: Duration) -> protobuf::Duration {
    protobuf::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: d.subsec_nanos() as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(outcome: Outcome, dry_run: bool) -> Verdict {
        Verdict {
            outcome,
            dry_run,
            binding: Some(Binding {
                rule: "fapi.sign_ins.create",
                limit: 5,
                period: Duration::from_secs(10),
                remaining: 0,
                reset: Duration::from_millis(9_500),
            }),
            ratelimit_policy: "\"fapi.sign_ins.create\";q=5;w=10".into(),
            ratelimit: "\"fapi.sign_ins.create\";r=0;t=10".into(),
        }
    }

    fn header<'a>(r: &'a RateLimitResponse, key: &str) -> Option<&'a str> {
        r.response_headers_to_add
            .iter()
            .find(|h| h.key == key)
            .map(|h| h.value.as_str())
    }

    #[test]
    fn an_enforced_denial_carries_retry_after_the_fields_and_clerks_body() {
        let r = response(&verdict(
            Outcome::Limited {
                retry_after_secs: 2,
            },
            false,
        ));
        assert_eq!(r.overall_code, Code::OverLimit as i32);
        assert_eq!(header(&r, "Retry-After"), Some("2"));
        assert_eq!(header(&r, "Content-Type"), Some("application/json"));
        assert_eq!(
            header(&r, "RateLimit"),
            Some("\"fapi.sign_ins.create\";r=0;t=10")
        );
        assert_eq!(r.raw_body, TOO_MANY_REQUESTS_BODY.as_bytes());
        let s = &r.statuses[0];
        assert_eq!(s.code, Code::OverLimit as i32);
        let limit = s.current_limit.as_ref().unwrap();
        assert_eq!(
            (limit.requests_per_unit, limit.unit),
            (30, Unit::Minute as i32)
        );
        assert_eq!(
            s.duration_until_reset,
            Some(protobuf::Duration {
                seconds: 9,
                nanos: 500_000_000
            })
        );
    }

    #[test]
    fn never_fits_is_over_limit_without_retry_after() {
        let r = response(&verdict(Outcome::NeverFits, false));
        assert_eq!(r.overall_code, Code::OverLimit as i32);
        assert_eq!(header(&r, "Retry-After"), None);
        assert!(!r.raw_body.is_empty());
    }

    #[test]
    fn a_dry_run_denial_is_ok_overall_and_over_limit_in_its_status() {
        let v = verdict(
            Outcome::Limited {
                retry_after_secs: 2,
            },
            true,
        );
        let r = response(&v);
        assert_eq!(r.overall_code, Code::Ok as i32);
        assert_eq!(r.statuses[0].code, Code::OverLimit as i32);
        assert_eq!(header(&r, "Retry-After"), None);
        assert_eq!(header(&r, "Content-Type"), None);
        assert!(r.raw_body.is_empty());
        assert_eq!(result_name(&v), "DRY_RUN_DENIED");
    }

    #[test]
    fn exempt_and_unmatched_answers_carry_no_limit_and_no_headers() {
        for outcome in [Outcome::Exempt, Outcome::Unmatched] {
            let v = Verdict {
                outcome,
                dry_run: false,
                binding: None,
                ratelimit_policy: String::new(),
                ratelimit: String::new(),
            };
            let r = response(&v);
            assert_eq!(r.overall_code, Code::Ok as i32);
            assert_eq!(r.statuses[0].current_limit, None);
            assert!(r.response_headers_to_add.is_empty());
        }
    }

    #[test]
    fn a_quota_reads_as_its_long_run_rate_in_the_smallest_whole_unit() {
        let s = Duration::from_secs;
        assert_eq!(per_unit(5, s(10)), (30, Unit::Minute));
        assert_eq!(per_unit(3, s(10)), (18, Unit::Minute));
        assert_eq!(per_unit(1000, s(10)), (6000, Unit::Minute));
        assert_eq!(per_unit(100, s(3600)), (100, Unit::Hour));
        assert_eq!(per_unit(10, s(1)), (10, Unit::Second));
        assert_eq!(
            per_unit(10, Duration::from_millis(100)),
            (100, Unit::Second)
        );
        assert_eq!(per_unit(7, s(3)), (140, Unit::Minute));
        // No whole rate in any unit: a week's worth, rounded down.
        assert_eq!(per_unit(1, s(7)), (86_400, Unit::Week));
        assert_eq!(per_unit(1, s(1_209_600)), (0, Unit::Week));
    }
}
