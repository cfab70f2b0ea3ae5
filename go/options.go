package ratecard

import (
	"context"
	"time"
)

// Options configure a Limiter. The zero value is Clerk's table, enforcing,
// with 65536 slots, a random hash seed and the C library's monotonic clock.
type Options struct {
	// Capacity is the number of slots in the state table, one per live
	// (rule, subject) pair, rounded up; 0 means 65536, at most 1<<28.
	// Each slot takes 16 bytes.
	Capacity int

	// Seed is the 16-byte secret hash seed; nil for a random one.
	Seed []byte

	// IPv6PrefixLen keys IPv6 clients on this many leading bits, 1 to 128;
	// 0 means 64.
	IPv6PrefixLen int

	// DryRun makes the limiter never deny: would-be denials set
	// Decision.DryRunDenied and consume nothing.
	DryRun bool

	// Policy says what happens to a new key when the table is full of keys
	// still in debt.
	Policy Policy

	// UnknownKeyKind is the instance kind of a secret key with an unknown
	// prefix; KindAny (the default) and KindDevelopment give it the stricter
	// development limit.
	UnknownKeyKind Kind

	// Pace gives every GCRA rule a burst of 1, so at most Limit requests go
	// out in any window of Period: for clients pacing calls to an API
	// (see Transport), which then never draw a 429.
	Pace bool

	// Algorithm enforces every rule with one algorithm; AlgorithmDefault
	// keeps each rule's own.
	Algorithm Algorithm

	// Rules is a custom rule table of at most 64 rules; nil or empty for
	// Clerk's table. It is copied at New.
	Rules []Rule

	// Clock is the time now, as a monotonic duration since any fixed
	// point; nil for CLOCK_MONOTONIC, read by the C library. Tests inject
	// a fake clock here.
	Clock func() time.Duration

	// Sleep waits d or until ctx is done, returning ctx.Err() then; Wait
	// and Transport sleep through it. nil for a timer. A fake Clock comes
	// with a Sleep that advances it.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Policy is what a limiter does when both buckets of a new key hold only
// keys still in debt.
type Policy uint8

const (
	// PolicyEvict evicts the key using the smallest fraction of its burst
	// (counted in Stats.Evicted). The default.
	PolicyEvict Policy = 0
	// PolicyDeny denies the new key until a slot frees up (fail closed).
	PolicyDeny Policy = 1
	// PolicyAdmit admits the new key untracked (fail open).
	PolicyAdmit Policy = 2
)

// Kind is an instance kind, told by a secret key's prefix.
type Kind uint8

const (
	// KindAny: a rule for every instance; as Options.UnknownKeyKind, the
	// development limit.
	KindAny Kind = 0
	// KindProduction: sk_live_ and live_ keys.
	KindProduction Kind = 1
	// KindDevelopment: sk_test_ and test_ keys, and requests without a key.
	KindDevelopment Kind = 2
)

// Scope is what a rule counts against.
type Scope uint8

const (
	// ScopeClientIP counts per client IP (an IPv6 prefix), within the
	// request's tenant if any.
	ScopeClientIP Scope = 0
	// ScopeInstance counts per instance: the tenant if given, else the
	// secret key, else the client IP. The route's {param} captures do not
	// split it.
	ScopeInstance Scope = 1
	// ScopeInstanceParams counts per instance and the ids the route's
	// {param}s capture (per user, per organization).
	ScopeInstanceParams Scope = 2
)

// Algorithm is how a rule's quota is enforced.
type Algorithm uint8

const (
	// AlgorithmDefault: in Options, each rule's own; in a Rule, GCRA.
	AlgorithmDefault Algorithm = 0
	// AlgorithmGCRA: a smooth rate with a burst allowance.
	AlgorithmGCRA Algorithm = 1
	// AlgorithmFixedWindow: fixed windows aligned on multiples of the period.
	AlgorithmFixedWindow Algorithm = 2
)

// API is the Clerk API a request is made to.
type API uint32

const (
	// APIFrontend is the Frontend API, keyed by client IP.
	APIFrontend API = 1
	// APIBackend is the Backend API, keyed by secret key (or tenant).
	APIBackend API = 2
)

// Rule is one row of a custom rule table. A request is checked against
// every rule it matches and allowed only if all allow.
type Rule struct {
	// Name is a stable name of [A-Za-z0-9._-] characters, used in the
	// RateLimit fields, e.g. "fapi.sign_ins.create".
	Name string
	// API is APIFrontend or APIBackend.
	API API
	// Scope is what the rule counts against.
	Scope Scope
	// Kind limits the rule to instances of one kind, or KindAny.
	Kind Kind
	// Routes: a request matching any of them matches the rule.
	Routes []Route
	// Limit is requests per Period; 0 for unlimited (matching requests are
	// exempt from every rule).
	Limit int
	// Period is the window of Limit; at least 1ns for a limited rule.
	Period time.Duration
	// Burst is the number of requests that may be sent back to back
	// (GCRA); 0 means Limit.
	Burst int
	// Algorithm is AlgorithmDefault or AlgorithmGCRA for GCRA, or
	// AlgorithmFixedWindow.
	Algorithm Algorithm
}

// Route is an HTTP method and a path pattern.
type Route struct {
	// Method is GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS, any case;
	// empty for every method.
	Method string
	// Path starts with "/": a {param} segment captures one path segment
	// (at most two per pattern), a final * segment matches any rest, and
	// "*" alone matches every path.
	Path string
}
