//! A decision's answer as http types, from [`Decision::write_response`]
//! only: every field and the body are slices of one buffer it wrote.

use std::ops::Range;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, StatusCode};
use ratecard::{Decision, RuleTable, FAIL_CLOSED_STATUS};

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers).
pub(crate) const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
pub(crate) const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// Bytes an answer is written into before it is moved into its one
/// allocation. Every answer of Clerk's table to a canonical path fits (a
/// test checks it); a longer one (a custom table's long rule names, a
/// non-canonical path charged to many rules) takes a heap buffer.
pub(crate) const INLINE: usize = 512;

/// What the layer does with a request.
pub(crate) enum Next {
    /// Call the inner service and add these fields to its response.
    Pass(Fields),
    /// Answer without calling it.
    Stop(Denial),
}

/// `RateLimit-Policy` and `RateLimit` for an allowed request's response.
#[derive(Default)]
pub(crate) struct Fields {
    policy: Option<HeaderValue>,
    ratelimit: Option<HeaderValue>,
}

impl Fields {
    /// Add the fields to `headers`, replacing any the inner service set.
    pub(crate) fn apply(&mut self, headers: &mut HeaderMap) {
        if let Some(v) = self.policy.take() {
            headers.insert(RATELIMIT_POLICY, v);
        }
        if let Some(v) = self.ratelimit.take() {
            headers.insert(RATELIMIT, v);
        }
    }
}

/// A response the layer gives itself: a denial or a refusal.
pub(crate) struct Denial {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Denial {
    /// [`FAIL_CLOSED_STATUS`], no field, no body: the limiter could not decide.
    pub(crate) fn fail_closed() -> Denial {
        Denial {
            status: StatusCode::from_u16(FAIL_CLOSED_STATUS)
                .unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }
}

/// The answer's bytes as written, owned by the `Bytes` every field slices.
struct Inline {
    buf: [u8; INLINE],
    len: usize,
}

impl AsRef<[u8]> for Inline {
    fn as_ref(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

/// What `decision` answers: its fields and, when it is an enforced
/// denial, the 429 with Clerk's body.
pub(crate) fn of(decision: &Decision, rules: &RuleTable<'_>) -> Next {
    let mut buf = [0u8; INLINE];
    let (r, bytes) = match decision.write_response(rules, &mut buf) {
        Ok(r) => {
            let len = [&r.retry_after, &r.ratelimit_policy, &r.ratelimit, &r.body]
                .iter()
                .map(|range| range.end)
                .fold(0, usize::max);
            if r.status == 0 && len == 0 {
                // Exempt or unmatched: nothing to add, nothing to allocate.
                return Next::Pass(Fields::default());
            }
            (r, Bytes::from_owner(Inline { buf, len }))
        }
        Err(need) => {
            let mut heap = vec![0u8; need];
            match decision.write_response(rules, &mut heap) {
                Ok(r) => (r, Bytes::from(heap)),
                // Not reached (the buffer has the length asked for); the
                // decision stands without its fields.
                Err(_) => (bare(decision), Bytes::new()),
            }
        }
    };
    let field = |range: &Range<usize>| -> Option<HeaderValue> {
        if range.is_empty() {
            return None;
        }
        bytes.get(range.clone())?;
        // Validated rule names are [A-Za-z0-9._-]: this refuses nothing,
        // and checks without copying.
        HeaderValue::from_maybe_shared(bytes.slice(range.clone())).ok()
    };
    let mut fields = Fields {
        policy: field(&r.ratelimit_policy),
        ratelimit: field(&r.ratelimit),
    };
    if r.status == 0 {
        return Next::Pass(fields);
    }
    let mut headers = HeaderMap::with_capacity(5);
    if let Some(v) = field(&r.retry_after) {
        headers.insert(RETRY_AFTER, v);
    }
    fields.apply(&mut headers);
    let body = if r.body.is_empty() || bytes.get(r.body.clone()).is_none() {
        Bytes::new()
    } else {
        headers.insert(CONTENT_TYPE, APPLICATION_JSON);
        bytes.slice(r.body.clone())
    };
    Next::Stop(Denial {
        status: StatusCode::from_u16(r.status).unwrap_or(StatusCode::TOO_MANY_REQUESTS),
        headers,
        body,
    })
}

/// The status of `decision` with no field.
fn bare(decision: &Decision) -> ratecard::Response {
    ratecard::Response {
        status: if decision.allowed() {
            0
        } else {
            ratecard::LIMITED_STATUS
        },
        ..Default::default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use ratecard::{Api, Config, Limiter, Nanos, Request, Seed, CLERK};

    /// A request of Clerk's table with a canonical path matches at most two
    /// rules (the instance rule and one endpoint rule); every such pair, denied with the
    /// largest numbers its fields can hold, fits the inline buffer: Clerk's
    /// answers cost one allocation.
    #[test]
    fn every_clerk_answer_fits_the_inline_buffer() {
        let id = |i: usize| ratecard::RuleId(i as u8);
        let worst = Decision {
            verdict: ratecard::Verdict::Limited {
                retry_after: Nanos::MAX,
            },
            rule: None,
            limit: u32::MAX,
            remaining: u32::MAX,
            reset: Nanos::MAX,
            matched: ratecard::RuleSet::EMPTY,
            dry_run: false,
        };
        let mut longest = 0;
        for a in 0..CLERK.len() {
            for b in 0..CLERK.len() {
                let d = Decision {
                    rule: Some(id(b)),
                    matched: ratecard::RuleSet::EMPTY.with(id(a)).with(id(b)),
                    ..worst
                };
                let need = d.write_response(&CLERK, &mut []).unwrap_err();
                longest = longest.max(need);
            }
        }
        assert!(longest <= INLINE, "{longest} bytes");
        // Checked against the body alone so that the bound means something.
        assert!(longest > ratecard::CLERK_429_BODY.len());
    }

    #[test]
    fn a_long_answer_takes_the_heap_and_stays_whole() {
        const NAME: &str = "a.rule.whose.name.is.long.enough.that.its.policy.and.ratelimit.fields.together.with.clerks.body.exceed.the.inline.buffer.of.the.layer.by.a.wide.margin.0123456789.0123456789.0123456789.0123456789";
        const ROUTES: &[ratecard::Route<'static>] = &[ratecard::Route::new(
            ratecard::Method::Post,
            "/v1/client/sign_ins",
        )];
        const RULES: &[ratecard::Rule<'static>] = &[ratecard::Rule::new(
            NAME,
            Api::Frontend,
            ratecard::Scope::ClientIp,
            ROUTES,
            ratecard::Quota::per_secs(1, 10),
        )];
        let table = ratecard::RuleTable::new(RULES);
        let l = Limiter::new(
            &Config {
                capacity: 64,
                ..Config::DEFAULT
            },
            table,
            Seed::from_bytes([1; 16]),
        )
        .unwrap();
        let r = Request::new(Api::Frontend, b"POST", b"/v1/client/sign_ins").ip([192, 0, 2, 1]);
        let now = Nanos::from_secs(100);
        let _ = l.check(&r, now).unwrap();
        let d = l.check(&r, now).unwrap();
        let mut want = vec![0u8; 4096];
        let w = d.write_response(&table, &mut want).unwrap();
        assert!(
            w.body.end > INLINE,
            "the test needs an answer past the inline buffer"
        );
        let Next::Stop(denial) = of(&d, &table) else {
            panic!("a denial");
        };
        assert_eq!(denial.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(denial.body.as_ref(), &want[w.body]);
        assert_eq!(
            denial.headers[RATELIMIT_POLICY].as_bytes(),
            &want[w.ratelimit_policy]
        );
        assert_eq!(denial.headers[RATELIMIT].as_bytes(), &want[w.ratelimit]);
        assert_eq!(denial.headers[RETRY_AFTER].as_bytes(), &want[w.retry_after]);
    }
}
