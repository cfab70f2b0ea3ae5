package ratecard

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock that moves only when told to: by Advance, or by a
// Sleep, which returns at once having moved it on.
type fakeClock struct {
	mu  sync.Mutex
	now time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Hour} }

func (c *fakeClock) Now() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now += d
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.Advance(d)
	return nil
}

// newTestLimiter makes a limiter on a fake clock, closed when the test ends.
func newTestLimiter(t testing.TB, o Options) (*Limiter, *fakeClock) {
	t.Helper()
	c := newFakeClock()
	o.Clock, o.Sleep = c.Now, c.Sleep
	l, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l, c
}

func mustCheck(t testing.TB, l *Limiter, r *Request) Decision {
	t.Helper()
	d, err := l.Check(r)
	if err != nil {
		t.Fatalf("Check(%+v): %v", *r, err)
	}
	return d
}

func signIn(ip string) *Request {
	return &Request{API: APIFrontend, Method: "POST", Path: "/v1/client/sign_ins", ClientIP: netip.MustParseAddr(ip)}
}

// clerk429Body is the body Clerk documents for a 429 (see DESIGN.md).
const clerk429Body = `{"errors":[{"message":"Too many requests","long_message":"Too many requests, retry later","code":"too_many_requests","meta":{}}]}`

// The Clerk rules the tests use, by name: their numbers are read from the
// library (quotaOf), never re-typed here.
const (
	signInRule   = "fapi.sign_ins.create"
	attemptRule  = "fapi.sign_ins.attempt"
	devRule      = "bapi.instance.development"
	prodRule     = "bapi.instance.production"
	inviteRule   = "bapi.invitations.create"
	userEditRule = "bapi.users.update"
	jwksRule     = "bapi.jwks"
)

// quota is a rule's numbers as the library reports them: read by PeekKey
// on a fresh key, which consumes nothing. TestQuotaOfReadsARulesOwnNumbers
// checks the reading against a table of the test's own.
type quota struct {
	name         string
	rule         int
	limit, burst int
	// interval is T, the period over the limit rounded up to a nanosecond:
	// one unit's share of the period.
	interval time.Duration
}

func quotaOf(t testing.TB, l *Limiter, name string) quota {
	t.Helper()
	i, err := l.RuleIndex(name)
	if err != nil {
		t.Fatalf("RuleIndex(%q): %v", name, err)
	}
	d, err := l.PeekKey(i, []byte("a key no test charges"), 1)
	if err != nil || !d.Allowed || d.Exempt || d.Limit == 0 {
		t.Fatalf("PeekKey(%q): %+v, %v", name, d, err)
	}
	// A fresh key: after one unit, burst−1 remain and the key is T from
	// replenished.
	return quota{name: name, rule: i, limit: d.Limit, burst: d.Remaining + 1, interval: d.Reset}
}

// period is limit × T: the rule's period, or up to limit−1 ns more where T
// was rounded up.
func (q quota) period() time.Duration { return time.Duration(q.limit) * q.interval }

// full is how far a key that spent its whole burst is from replenished.
func (q quota) full() time.Duration { return time.Duration(q.burst) * q.interval }

// secondsUp is d in whole seconds, rounded up, as the response fields
// give times.
func secondsUp(d time.Duration) int { return int((d + time.Second - 1) / time.Second) }

// policyItem is q's entry in RateLimit-Policy (draft-ietf-httpapi-ratelimit-headers).
func policyItem(q quota) string {
	return fmt.Sprintf(`"%s";q=%d;w=%d`, q.name, q.limit, q.period()/time.Second)
}

// rateLimitField is the RateLimit value of rule name with remaining units,
// reset away from replenished.
func rateLimitField(name string, remaining int, reset time.Duration) string {
	return fmt.Sprintf(`"%s";r=%d;t=%d`, name, remaining, secondsUp(reset))
}

func mustHeaders(t testing.TB, d Decision) Headers {
	t.Helper()
	h, err := d.Headers()
	if err != nil {
		t.Fatalf("Headers(%+v): %v", d, err)
	}
	return h
}
