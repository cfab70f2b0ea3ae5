package ratecard

import (
	"net/http"
	"net/netip"
	"time"
)

// Request is one request to decide. Strings are bytes: neither UTF-8 nor
// any other form is required.
type Request struct {
	// API is APIFrontend or APIBackend.
	API API
	// Method is the HTTP method, any case.
	Method string
	// Path is the request target's path, as sent (escaped); it may carry a
	// query string.
	Path string
	// ClientIP keys Frontend requests (and Backend requests without a
	// key); the zero Addr for none. IPv4-mapped IPv6 is the IPv4 client.
	ClientIP netip.Addr
	// SecretKey is the secret key, raw or as the Authorization value
	// ("Bearer sk_live_...").
	SecretKey string
	// Tenant is an optional namespace: a Frontend subject is tenant + IP;
	// on the Backend the tenant names the instance in place of the key.
	Tenant string
	// Cost is the units the request costs; 0 means 1.
	Cost uint32
}

// Decision is the answer for one request. Limit, Remaining and Reset are
// the binding rule's: on denial the rule with the longest wait, when
// allowed the one with the smallest fraction of its burst left.
type Decision struct {
	// Allowed: send the request on (always true on a DryRun limiter).
	Allowed bool
	// RetryAfter is, on denial, the time until the request would be allowed.
	RetryAfter time.Duration
	// Limit is the binding rule's limit.
	Limit int
	// Remaining is the units left in the binding rule (after this request,
	// if allowed).
	Remaining int
	// Reset is the time until the binding rule is fully replenished.
	Reset time.Duration
	// Rule is the binding rule's name; empty when the request matched no rule.
	Rule string
	// Exempt: an unlimited rule matched (GET /v1/jwks); nothing was counted.
	Exempt bool
	// DryRunDenied: a DryRun limiter would have denied the request.
	DryRunDenied bool
	// NeverFits: the cost exceeds the binding rule's burst; no retry helps.
	NeverFits bool

	// What the response writers need beyond the fields above.
	rule           uint32
	retryAfterSecs uint32
	matched        uint64
	l              *Limiter
}

// noRule is the rule number of a request that matched no rule.
const noRule = 1<<32 - 1

// own ties d to l: its rule's name, and the table its headers come from.
func (l *Limiter) own(d *Decision) {
	d.l = l
	if d.rule != noRule && int(d.rule) < len(l.names) {
		d.Rule = l.names[d.rule]
	}
}

func duration(ns uint64) time.Duration {
	if ns > uint64(1<<63-1) {
		return 1<<63 - 1
	}
	return time.Duration(ns)
}

// Headers are the response fields of a decision, as the C library writes
// them (draft-ietf-httpapi-ratelimit-headers syntax). Each is empty when
// the decision carries none.
type Headers struct {
	// RateLimitPolicy lists every limited rule the request matched, e.g.
	// `"fapi.sign_ins.create";q=5;w=10`.
	RateLimitPolicy string
	// RateLimit is the binding rule's state, e.g.
	// `"fapi.sign_ins.create";r=4;t=2`.
	RateLimit string
	// RetryAfter is the Retry-After value in seconds, e.g. "2": set on
	// enforced denials whose cost can ever fit (a dry-run denial goes on,
	// so it has none, as on every ratecard host).
	RetryAfter string
}

// Headers returns the response fields of d. They are empty for an exempt
// or unmatched request and for the zero Decision. The error is ErrClosed
// once the Limiter that made d is closed, or the C library's status should
// it fail to write them.
func (d Decision) Headers() (Headers, error) {
	if d.l == nil {
		return Headers{}, nil
	}
	return d.l.fields(&d)
}

// SetHeaders sets the RateLimit-Policy and RateLimit fields of d in h, and
// Retry-After when d denies the request. Empty fields are not set. On an
// error (see Headers) h is left as it was.
func (d Decision) SetHeaders(h http.Header) error {
	f, err := d.Headers()
	if err != nil {
		return err
	}
	setFields(h, &f, !d.Allowed, "")
	return nil
}
