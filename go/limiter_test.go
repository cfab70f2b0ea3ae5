package ratecard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRuleNamesAreTheLibrarysAndIndexTheRules(t *testing.T) {
	l, _ := newTestLimiter(t, Options{})
	names := l.RuleNames()
	seen := map[string]bool{}
	for i, n := range names {
		if n == "" || seen[n] {
			t.Fatalf("rule %d: name %q empty or repeated in %q", i, n, names)
		}
		seen[n] = true
		if j, err := l.RuleIndex(n); j != i || err != nil {
			t.Fatalf("RuleIndex(%q) = %d, %v; want %d", n, j, err, i)
		}
	}
	// The default table is Clerk's: it holds the rules these tests name.
	for _, n := range []string{signInRule, attemptRule, devRule, prodRule, inviteRule, userEditRule, jwksRule} {
		if !seen[n] {
			t.Errorf("no rule %q in %q", n, names)
		}
	}
	if _, err := l.RuleIndex("no.such.rule"); !errors.Is(err, ErrUnknownRule) {
		t.Fatalf("RuleIndex(unknown) error = %v", err)
	}
	if _, err := l.CheckKey(len(names), nil, 1); !errors.Is(err, ErrUnknownRule) {
		t.Fatalf("CheckKey(rule %d of %d) error = %v", len(names), len(names), err)
	}
	names[0] = "changed"
	if l.RuleNames()[0] == "changed" {
		t.Fatal("RuleNames shares its slice with the caller")
	}
}

// ownRule's numbers are this test's: every field of a decision differs
// from the others, so a field crossing from C into the wrong Go field
// shows. T = 12s / 6 = 2s; a fresh key may send 4 back to back.
var ownRule = Rule{Name: "own.rule", API: APIFrontend, Routes: []Route{{Path: "*"}}, Limit: 6, Period: 12 * time.Second, Burst: 4}

func TestQuotaOfReadsARulesOwnNumbers(t *testing.T) {
	l, _ := newTestLimiter(t, Options{Rules: []Rule{customRules()[0], ownRule}})
	want := quota{name: "own.rule", rule: 1, limit: 6, burst: 4, interval: 2 * time.Second}
	if q := quotaOf(t, l, "own.rule"); q != want || q.period() != 12*time.Second {
		t.Fatalf("quotaOf = %+v, want %+v", q, want)
	}
	paced, _ := newTestLimiter(t, Options{Rules: []Rule{ownRule}, Pace: true})
	if q := quotaOf(t, paced, "own.rule"); q.burst != 1 || q.limit != 6 || q.interval != 2*time.Second {
		t.Fatalf("quotaOf in pace mode = %+v", q)
	}
}

func TestDecisionFieldsCrossFromCIntact(t *testing.T) {
	l, clock := newTestLimiter(t, Options{Rules: []Rule{ownRule}})
	r := signIn("203.0.113.9")
	for i := 0; i < 4; i++ {
		d := mustCheck(t, l, r)
		want := Decision{Allowed: true, Limit: 6, Remaining: 3 - i, Reset: time.Duration(i+1) * 2 * time.Second, Rule: "own.rule"}
		if d.l, d.rule, d.matched = nil, 0, 0; d != want {
			t.Fatalf("request %d: %+v, want %+v", i, d, want)
		}
	}
	other := mustCheck(t, l, &Request{API: APIFrontend, Method: "GET", Path: "/", ClientIP: netip.MustParseAddr("203.0.113.10")})
	if h, want := mustHeaders(t, other), (Headers{RateLimitPolicy: `"own.rule";q=6;w=12`, RateLimit: `"own.rule";r=3;t=2`}); h != want {
		t.Fatalf("headers of an allowed request = %+v, want %+v", h, want)
	}
	d := mustCheck(t, l, r)
	if d.Allowed || d.RetryAfter != 2*time.Second || d.Remaining != 0 || d.Reset != 8*time.Second || d.Limit != 6 || d.NeverFits {
		t.Fatalf("5th request: %+v", d)
	}
	if h, want := mustHeaders(t, d), (Headers{RateLimitPolicy: `"own.rule";q=6;w=12`, RateLimit: `"own.rule";r=0;t=8`, RetryAfter: "2"}); h != want {
		t.Fatalf("headers of a denial = %+v, want %+v", h, want)
	}
	clock.Advance(2*time.Second - 1)
	if d := mustCheck(t, l, r); d.Allowed || d.RetryAfter != 1 || mustHeaders(t, d).RetryAfter != "1" {
		t.Fatalf("1ns early: %+v", d)
	}
	clock.Advance(1)
	if d := mustCheck(t, l, r); !d.Allowed {
		t.Fatalf("denied after RetryAfter: %+v", d)
	}
}

// Fields too long for the C side's inline buffer take a heap buffer.
func TestLongResponseFieldsAreWrittenWhole(t *testing.T) {
	var rules []Rule
	var items []string
	for i := 0; i < 8; i++ {
		name := fmt.Sprintf("rule.%d.%s", i, strings.Repeat("n", 40))
		rules = append(rules, Rule{Name: name, API: APIFrontend, Routes: []Route{{Path: "*"}}, Limit: 10 + i, Period: time.Duration(i+1) * time.Second})
		items = append(items, fmt.Sprintf(`"%s";q=%d;w=%d`, name, 10+i, i+1))
	}
	l, _ := newTestLimiter(t, Options{Rules: rules})
	d := mustCheck(t, l, signIn("192.0.2.1"))
	h := mustHeaders(t, d)
	if want := strings.Join(items, ", "); h.RateLimitPolicy != want || len(want) < 300 {
		t.Fatalf("RateLimit-Policy = %q\nwant %q", h.RateLimitPolicy, want)
	}
	if !strings.HasPrefix(h.RateLimit, `"`+d.Rule+`";r=`) {
		t.Fatalf("RateLimit = %q for rule %q", h.RateLimit, d.Rule)
	}
}

// One of Clerk's rows, with its numbers read from the library.
func TestClerkSignInAllowsItsBurstThenDeniesForOneInterval(t *testing.T) {
	l, clock := newTestLimiter(t, Options{})
	q := quotaOf(t, l, signInRule)
	r := signIn("203.0.113.9")
	for i := 0; i < q.burst; i++ {
		d := mustCheck(t, l, r)
		if !d.Allowed || d.Rule != signInRule || d.Limit != q.limit || d.Remaining != q.burst-1-i {
			t.Fatalf("request %d: %+v", i, d)
		}
	}
	d := mustCheck(t, l, r)
	if d.Allowed || d.RetryAfter != q.interval || d.Remaining != 0 || d.Reset != q.full() || d.NeverFits {
		t.Fatalf("request %d: %+v (quota %+v)", q.burst, d, q)
	}
	want := Headers{
		RateLimitPolicy: policyItem(q),
		RateLimit:       rateLimitField(signInRule, 0, q.full()),
		RetryAfter:      fmt.Sprint(secondsUp(q.interval)),
	}
	if h := mustHeaders(t, d); h != want {
		t.Fatalf("headers = %+v, want %+v", h, want)
	}
	clock.Advance(q.interval)
	if d := mustCheck(t, l, r); !d.Allowed {
		t.Fatalf("denied after RetryAfter: %+v", d)
	}
	// Another client is not affected.
	if d := mustCheck(t, l, signIn("203.0.113.10")); !d.Allowed || d.Remaining != q.burst-1 {
		t.Fatalf("other client: %+v", d)
	}
}

func TestPeekConsumesNothing(t *testing.T) {
	l, _ := newTestLimiter(t, Options{})
	r := signIn("198.51.100.1")
	first, err := l.Peek(r)
	if err != nil || !first.Allowed {
		t.Fatalf("peek: %+v, %v", first, err)
	}
	for i := 0; i < 20; i++ {
		if d, err := l.Peek(r); err != nil || d != first {
			t.Fatalf("peek %d: %+v, %v; first %+v", i, d, err, first)
		}
	}
	if d := mustCheck(t, l, r); d.Remaining != first.Remaining {
		t.Fatalf("check after peeks: %+v", d)
	}
	s, err := l.Stats()
	if err != nil || s.Allowed != 1 || s.Limited != 0 {
		t.Fatalf("stats = %+v, %v", s, err)
	}
}

func TestUnmatchedRequestIsAllowedWithoutRuleOrHeaders(t *testing.T) {
	l, _ := newTestLimiter(t, Options{})
	d := mustCheck(t, l, &Request{API: APIFrontend, Method: "GET", Path: "/v1/environment", ClientIP: netip.MustParseAddr("192.0.2.1")})
	if !d.Allowed || d.Rule != "" || d.Exempt || d.Limit != 0 {
		t.Fatalf("decision = %+v", d)
	}
	if h, err := d.Headers(); h != (Headers{}) || err != nil {
		t.Fatalf("headers = %+v, %v", h, err)
	}
	if h, err := (Decision{}).Headers(); h != (Headers{}) || err != nil {
		t.Fatalf("zero decision headers = %+v, %v", h, err)
	}
}

func TestJWKSIsExemptAndCountsNothing(t *testing.T) {
	l, _ := newTestLimiter(t, Options{})
	dev := quotaOf(t, l, devRule)
	jwks := &Request{API: APIBackend, Method: "GET", Path: "/v1/jwks", SecretKey: "Bearer sk_test_abc"}
	for i := 0; i <= dev.burst; i++ {
		if d := mustCheck(t, l, jwks); !d.Allowed || !d.Exempt || d.Rule != jwksRule || mustHeaders(t, d) != (Headers{}) {
			t.Fatalf("jwks %d: %+v", i, d)
		}
	}
	users := &Request{API: APIBackend, Method: "GET", Path: "/v1/users", SecretKey: "Bearer sk_test_abc"}
	if d := mustCheck(t, l, users); d.Remaining != dev.burst-1 {
		t.Fatalf("instance limit was charged by jwks: %+v", d)
	}
}

func TestMalformedRequestsAreErrors(t *testing.T) {
	l, _ := newTestLimiter(t, Options{})
	cases := []struct {
		name string
		r    Request
		want error
	}{
		{"frontend rule without client IP", Request{API: APIFrontend, Method: "POST", Path: "/v1/client/sign_ins"}, ErrMissingSubject},
		{"backend without key, tenant or IP", Request{API: APIBackend, Method: "GET", Path: "/v1/users"}, ErrMissingSubject},
		{"unknown API", Request{API: 7, Method: "GET", Path: "/"}, ErrUnknownAPI},
		{"zero API", Request{Method: "GET", Path: "/"}, ErrUnknownAPI},
	}
	for _, c := range cases {
		d, err := l.Check(&c.r)
		if !errors.Is(err, c.want) || d != (Decision{}) {
			t.Errorf("%s: %+v, %v; want %v", c.name, d, err, c.want)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "ratecard: ") {
			t.Errorf("%s: error text %q", c.name, err)
		}
	}
}

func TestHostileButValidInputIsDecided(t *testing.T) {
	l, _ := newTestLimiter(t, Options{})
	huge := strings.Repeat("x", 1<<20)
	ip := netip.MustParseAddr("192.0.2.7")
	cases := []Request{
		{API: APIFrontend, ClientIP: ip},
		{API: APIFrontend, Method: huge, Path: huge, ClientIP: ip, Tenant: huge},
		{API: APIFrontend, Method: "POST", Path: "/v1/client/sign_ins/../sign_ins?x=%zz", ClientIP: ip},
		{API: APIFrontend, Method: "\x00\xff", Path: "\xff\xfe/\x00", ClientIP: ip},
		{API: APIBackend, Method: "PATCH", Path: "/v1/users/" + huge, SecretKey: "Bearer sk_live_" + huge},
		{API: APIBackend, Method: "GET", Path: "/v1/users", SecretKey: "Bearer ", ClientIP: ip},
		{API: APIBackend, Method: "GET", Path: "/v1/users", SecretKey: "\xff\x00garbage"},
		{API: APIBackend, Method: "GET", Path: "", ClientIP: ip},
	}
	for i := range cases {
		if _, err := l.Check(&cases[i]); err != nil {
			t.Errorf("case %d: %v", i, err)
		}
	}
}

func TestIPv4MappedIPv6IsTheIPv4Client(t *testing.T) {
	l, _ := newTestLimiter(t, Options{})
	first := mustCheck(t, l, signIn("192.0.2.33"))
	if d := mustCheck(t, l, signIn("::ffff:192.0.2.33")); d.Remaining != first.Remaining-1 {
		t.Fatalf("mapped address is a new client: %+v", d)
	}
}

func TestIPv6ClientsAreKeyedOnPrefix(t *testing.T) {
	l, _ := newTestLimiter(t, Options{})
	first := mustCheck(t, l, signIn("2001:db8:1:2::1"))
	if d := mustCheck(t, l, signIn("2001:db8:1:2:ffff::9")); d.Remaining != first.Remaining-1 {
		t.Fatalf("same /64 not shared: %+v", d)
	}
	l128, _ := newTestLimiter(t, Options{IPv6PrefixLen: 128})
	mustCheck(t, l128, signIn("2001:db8:1:2::1"))
	if d := mustCheck(t, l128, signIn("2001:db8:1:2::2")); d.Remaining != first.Remaining {
		t.Fatalf("/128 shared: %+v", d)
	}
}

func TestDryRunNeverDeniesButSaysWhen(t *testing.T) {
	l, _ := newTestLimiter(t, Options{DryRun: true})
	q := quotaOf(t, l, signInRule)
	r := signIn("192.0.2.1")
	for i := 0; i < q.burst; i++ {
		mustCheck(t, l, r)
	}
	d := mustCheck(t, l, r)
	if !d.Allowed || !d.DryRunDenied || d.RetryAfter != q.interval {
		t.Fatalf("dry-run denial: %+v", d)
	}
	// The request goes on: no Retry-After, as on every host.
	if h := mustHeaders(t, d); h.RateLimit != rateLimitField(signInRule, 0, q.full()) || h.RetryAfter != "" {
		t.Fatalf("headers = %+v", h)
	}
	if s, _ := l.Stats(); s.DryRunLimited != 1 || s.Limited != 0 || s.Allowed != uint64(q.burst) {
		t.Fatalf("stats = %+v", s)
	}
}

func TestCostAboveBurstNeverFits(t *testing.T) {
	l, _ := newTestLimiter(t, Options{})
	r := signIn("192.0.2.1")
	r.Cost = uint32(quotaOf(t, l, signInRule).burst + 1)
	d := mustCheck(t, l, r)
	if d.Allowed || !d.NeverFits || d.RetryAfter != 0 || mustHeaders(t, d).RetryAfter != "" {
		t.Fatalf("decision = %+v", d)
	}
	if _, err := l.Wait(context.Background(), r); !errors.Is(err, ErrNeverFits) {
		t.Fatalf("Wait error = %v", err)
	}
}

func customRules() []Rule {
	return []Rule{
		{Name: "custom.things", API: APIBackend, Scope: ScopeInstance, Routes: []Route{{Method: "POST", Path: "/things"}}, Limit: 3, Period: time.Second},
		{Name: "custom.login", API: APIFrontend, Scope: ScopeClientIP, Routes: []Route{{Method: "post", Path: "/login"}, {Path: "/auth/*"}}, Limit: 2, Period: time.Minute, Burst: 1},
		{Name: "custom.health", API: APIFrontend, Routes: []Route{{Method: "GET", Path: "/health"}}},
		{Name: "custom.items", API: APIBackend, Scope: ScopeInstanceParams, Routes: []Route{{Method: "PATCH", Path: "/items/{id}"}}, Limit: 1, Period: time.Second},
		{Name: "custom.carts", API: APIBackend, Scope: ScopeInstance, Routes: []Route{{Method: "PATCH", Path: "/carts/{id}"}}, Limit: 1, Period: time.Second},
	}
}

func TestCustomRuleTable(t *testing.T) {
	l, clock := newTestLimiter(t, Options{Rules: customRules()})
	if got := strings.Join(l.RuleNames(), ","); got != "custom.things,custom.login,custom.health,custom.items,custom.carts" {
		t.Fatalf("rules = %s", got)
	}
	things := &Request{API: APIBackend, Method: "POST", Path: "/things", SecretKey: "sk_live_1"}
	for i := 0; i < 3; i++ {
		mustCheck(t, l, things)
	}
	d := mustCheck(t, l, things)
	if d.Allowed || d.Rule != "custom.things" || mustHeaders(t, d).RateLimitPolicy != `"custom.things";q=3;w=1` {
		t.Fatalf("4th thing: %+v %+v", d, mustHeaders(t, d))
	}
	ip := netip.MustParseAddr("192.0.2.1")
	login := &Request{API: APIFrontend, Method: "POST", Path: "/auth/x/y", ClientIP: ip}
	if d := mustCheck(t, l, login); !d.Allowed || d.Rule != "custom.login" {
		t.Fatalf("login: %+v", d)
	}
	if d := mustCheck(t, l, login); d.Allowed || d.RetryAfter != 30*time.Second {
		t.Fatalf("login with burst 1: %+v", d)
	}
	clock.Advance(30 * time.Second)
	if d := mustCheck(t, l, login); !d.Allowed {
		t.Fatalf("login after 30s: %+v", d)
	}
	if d := mustCheck(t, l, &Request{API: APIFrontend, Method: "GET", Path: "/health"}); !d.Exempt {
		t.Fatalf("health: %+v", d)
	}
	// {param} captures split ScopeInstanceParams, not ScopeInstance.
	for _, c := range []struct {
		first, second string
		secondAllowed bool
	}{{"/items/1", "/items/2", true}, {"/carts/1", "/carts/2", false}} {
		mustCheck(t, l, &Request{API: APIBackend, Method: "PATCH", Path: c.first, SecretKey: "sk_live_1"})
		if d := mustCheck(t, l, &Request{API: APIBackend, Method: "PATCH", Path: c.second, SecretKey: "sk_live_1"}); d.Allowed != c.secondAllowed {
			t.Errorf("%s after %s: %+v", c.second, c.first, d)
		}
	}
}

func TestInvalidOptionsAreRejected(t *testing.T) {
	tooMany := make([]Rule, 65)
	for i := range tooMany {
		tooMany[i] = Rule{Name: "r" + strings.Repeat("x", i), API: APIFrontend, Routes: []Route{{Path: "/"}}, Limit: 1, Period: time.Second}
	}
	cases := []struct {
		name string
		o    Options
		want error
	}{
		{"capacity above 1<<28", Options{Capacity: 1<<28 + 1}, ErrInvalidCapacity},
		{"negative capacity", Options{Capacity: -1}, ErrInvalidCapacity},
		{"capacity above uint32", Options{Capacity: 1 << 40}, ErrInvalidCapacity},
		{"short seed", Options{Seed: []byte("short")}, ErrInvalidConfig},
		{"prefix above 128", Options{IPv6PrefixLen: 129}, ErrInvalidConfig},
		{"unknown policy", Options{Policy: 9}, ErrInvalidConfig},
		{"unknown algorithm", Options{Algorithm: 9}, ErrInvalidConfig},
		{"65 rules", Options{Rules: tooMany}, ErrInvalidRules},
		{"bad rule name", Options{Rules: []Rule{{Name: "bad name", API: APIFrontend, Routes: []Route{{Path: "/"}}, Limit: 1, Period: time.Second}}}, ErrInvalidRules},
		{"bad route", Options{Rules: []Rule{{Name: "r", API: APIFrontend, Routes: []Route{{Path: "no-slash"}}, Limit: 1, Period: time.Second}}}, ErrInvalidRules},
		{"bad method", Options{Rules: []Rule{{Name: "r", API: APIFrontend, Routes: []Route{{Method: "BREW", Path: "/"}}, Limit: 1, Period: time.Second}}}, ErrInvalidRules},
		{"zero period", Options{Rules: []Rule{{Name: "r", API: APIFrontend, Routes: []Route{{Path: "/"}}, Limit: 1}}}, ErrInvalidRules},
		{"negative limit", Options{Rules: []Rule{{Name: "r", API: APIFrontend, Routes: []Route{{Path: "/"}}, Limit: -1, Period: time.Second}}}, ErrInvalidRules},
		{"non-UTF-8 pattern", Options{Rules: []Rule{{Name: "r", API: APIFrontend, Routes: []Route{{Path: "/\xff"}}, Limit: 1, Period: time.Second}}}, ErrInvalidRules},
	}
	for _, c := range cases {
		l, err := New(c.o)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: error %v, want %v", c.name, err, c.want)
		}
		if l != nil {
			l.Close()
		}
	}
	l, err := New(Options{Seed: bytes.Repeat([]byte{7}, 16), Capacity: 8, Policy: PolicyDeny, UnknownKeyKind: KindProduction, Algorithm: AlgorithmFixedWindow})
	if err != nil {
		t.Fatalf("valid options: %v", err)
	}
	l.Close()
}

func TestCheckKeyAndResetKey(t *testing.T) {
	l, _ := newTestLimiter(t, Options{Rules: customRules()})
	for i := 0; i < 3; i++ {
		if d, err := l.CheckKey(0, []byte("job-42"), 1); err != nil || !d.Allowed {
			t.Fatalf("CheckKey %d: %+v, %v", i, d, err)
		}
	}
	if d, _ := l.PeekKey(0, []byte("job-42"), 1); d.Allowed {
		t.Fatalf("PeekKey after burst: %+v", d)
	}
	if d, _ := l.CheckKey(0, nil, 3); !d.Allowed {
		t.Fatalf("empty key is its own key: %+v", d)
	}
	if n, err := l.ResetKey(0, []byte("job-42")); n != 1 || err != nil {
		t.Fatalf("ResetKey = %d, %v", n, err)
	}
	if d, _ := l.CheckKey(0, []byte("job-42"), 1); !d.Allowed {
		t.Fatalf("after ResetKey: %+v", d)
	}
	for _, rule := range []int{-1, 5, 1 << 40} {
		if _, err := l.CheckKey(rule, nil, 1); !errors.Is(err, ErrUnknownRule) {
			t.Errorf("CheckKey(rule %d) error = %v", rule, err)
		}
	}
}

func TestResetForgetsTheSubject(t *testing.T) {
	l, _ := newTestLimiter(t, Options{})
	q := quotaOf(t, l, signInRule)
	r := signIn("192.0.2.50")
	for i := 0; i <= q.burst; i++ {
		mustCheck(t, l, r)
	}
	if n, err := l.Reset(r); n != 1 || err != nil {
		t.Fatalf("Reset = %d, %v", n, err)
	}
	if d := mustCheck(t, l, r); !d.Allowed || d.Remaining != q.burst-1 {
		t.Fatalf("after Reset: %+v", d)
	}
	if _, err := l.Reset(&Request{API: APIFrontend, Method: "POST", Path: "/v1/client/sign_ins"}); !errors.Is(err, ErrMissingSubject) {
		t.Fatalf("Reset without subject: %v", err)
	}
}

func TestStatsAndRuleStats(t *testing.T) {
	l, _ := newTestLimiter(t, Options{Capacity: 1000})
	q := quotaOf(t, l, signInRule)
	r := signIn("192.0.2.60")
	for i := 0; i < q.burst+2; i++ {
		mustCheck(t, l, r)
	}
	s, err := l.Stats()
	if err != nil || s.Allowed != uint64(q.burst) || s.Limited != 2 || s.Inserts != 1 || s.Occupancy != 1 || s.Capacity < 1000 {
		t.Fatalf("stats = %+v, %v", s, err)
	}
	rs, err := l.RuleStats(q.rule)
	if rs.Allowed != uint64(q.burst) || rs.Limited != 2 || rs.DryRunLimited != 0 || err != nil {
		t.Fatalf("rule stats = %+v, %v", rs, err)
	}
	if _, err := l.RuleStats(99); !errors.Is(err, ErrUnknownRule) {
		t.Fatalf("RuleStats(99): %v", err)
	}
}

func TestWaitSleepsRetryAfterOnTheInjectedClock(t *testing.T) {
	l, clock := newTestLimiter(t, Options{})
	q := quotaOf(t, l, signInRule)
	r := signIn("192.0.2.70")
	start := clock.Now()
	for i := 0; i < q.burst; i++ {
		if _, err := l.Wait(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	if clock.Now() != start {
		t.Fatalf("burst waited %v", clock.Now()-start)
	}
	for i := 1; i <= 3; i++ {
		d, err := l.Wait(context.Background(), r)
		if err != nil || !d.Allowed {
			t.Fatalf("Wait: %+v, %v", d, err)
		}
		if got := clock.Now() - start; got != time.Duration(i)*q.interval {
			t.Fatalf("after wait %d the clock moved %v", i, got)
		}
	}
	// Waiting counted no denials: it peeks before it checks.
	if s, _ := l.Stats(); s.Limited != 0 || s.Allowed != uint64(q.burst+3) {
		t.Fatalf("stats = %+v", s)
	}
}

func TestWaitHonoursTheContext(t *testing.T) {
	l, _ := newTestLimiter(t, Options{})
	r := signIn("192.0.2.80")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Wait(ctx, r); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}

	// On the real clock, a deadline before the wait ends returns at once.
	real, err := New(Options{Rules: []Rule{{Name: "hourly", API: APIFrontend, Routes: []Route{{Path: "*"}}, Limit: 1, Period: time.Hour}}})
	if err != nil {
		t.Fatal(err)
	}
	defer real.Close()
	mustCheck(t, real, r)
	ctx, cancel = context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	began := time.Now()
	if _, err := real.Wait(ctx, r); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline: %v", err)
	}
	if took := time.Since(began); took > 500*time.Millisecond {
		t.Fatalf("Wait took %v before giving up", took)
	}
}

func TestWaitSleepsOnARealTimerByDefault(t *testing.T) {
	l, err := New(Options{Rules: []Rule{{Name: "fast", API: APIFrontend, Routes: []Route{{Path: "*"}}, Limit: 1, Period: 30 * time.Millisecond}}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r := &Request{API: APIFrontend, Method: "GET", Path: "/", ClientIP: netip.MustParseAddr("192.0.2.1")}
	began := time.Now()
	for i := 0; i < 3; i++ {
		if _, err := l.Wait(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(began); took < 55*time.Millisecond {
		t.Fatalf("3 requests at 1 per 30ms took %v", took)
	}
}

func TestCallsAfterCloseReturnErrClosed(t *testing.T) {
	l, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := signIn("192.0.2.1")
	d := mustCheck(t, l, r)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := l.Check(r); err != ErrClosed {
		t.Errorf("Check: %v", err)
	}
	if _, err := l.Peek(r); err != ErrClosed {
		t.Errorf("Peek: %v", err)
	}
	if _, err := l.CheckKey(0, nil, 1); err != ErrClosed {
		t.Errorf("CheckKey: %v", err)
	}
	if _, err := l.Reset(r); err != ErrClosed {
		t.Errorf("Reset: %v", err)
	}
	if _, err := l.ResetKey(0, nil); err != ErrClosed {
		t.Errorf("ResetKey: %v", err)
	}
	if _, err := l.Stats(); err != ErrClosed {
		t.Errorf("Stats: %v", err)
	}
	if _, err := l.RuleStats(0); err != ErrClosed {
		t.Errorf("RuleStats: %v", err)
	}
	if _, err := l.Wait(context.Background(), r); err != ErrClosed {
		t.Errorf("Wait: %v", err)
	}
	if h, err := d.Headers(); h != (Headers{}) || err != ErrClosed {
		t.Errorf("Headers after Close: %+v, %v", h, err)
	}
	h := http.Header{"Ratelimit": {"kept"}}
	if err := d.SetHeaders(h); err != ErrClosed || len(h) != 1 || h.Get("RateLimit") != "kept" {
		t.Errorf("SetHeaders after Close: %v, %v", err, h)
	}
}

func TestCloseWhileCheckingIsSafe(t *testing.T) {
	l, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var closed atomic.Int64
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			r := signIn("192.0.2.1")
			for i := 0; i < 5000; i++ {
				if _, err := l.Check(r); err == ErrClosed {
					closed.Add(1)
					return
				} else if err != nil {
					t.Error(err)
					return
				}
			}
		}(g)
	}
	time.Sleep(time.Millisecond)
	l.Close()
	wg.Wait()
	if _, err := l.Check(signIn("192.0.2.1")); err != ErrClosed {
		t.Fatalf("after Close: %v", err)
	}
}

// Many goroutines on one key, at one instant and over time: never more than
// burst + ⌊L/T⌋ admitted over any span L of the timestamps used.
func TestManyGoroutinesOnOneKeyNeverExceedTheBound(t *testing.T) {
	const goroutines, each = 16, 2000
	rules := []Rule{{Name: "hot", API: APIFrontend, Routes: []Route{{Path: "*"}}, Limit: 100, Period: time.Second}}

	t.Run("one instant", func(t *testing.T) {
		l, _ := newTestLimiter(t, Options{Rules: rules})
		var allowed atomic.Int64
		run(goroutines, func() {
			r := &Request{API: APIFrontend, Method: "GET", Path: "/x", ClientIP: netip.MustParseAddr("192.0.2.1")}
			for i := 0; i < each; i++ {
				if d, err := l.Check(r); err != nil {
					t.Error(err)
					return
				} else if d.Allowed {
					allowed.Add(1)
				}
			}
		})
		if allowed.Load() != 100 {
			t.Fatalf("admitted %d at one instant, burst is 100", allowed.Load())
		}
	})

	t.Run("over time", func(t *testing.T) {
		// Every reading of the clock moves it 20µs (T is 10ms), so the
		// whole run spans under one burst (1s): a timestamp staler than
		// that, from a goroutine descheduled between reading the clock and
		// checking, would read as a wild clock and be clamped by design.
		const tick = 20 * time.Microsecond
		var ticks atomic.Int64
		clock := func() time.Duration { return time.Hour + time.Duration(ticks.Add(1))*tick }
		l, err := New(Options{Rules: rules, Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		var allowed atomic.Int64
		run(goroutines, func() {
			key := []byte("one key")
			for i := 0; i < each; i++ {
				if d, err := l.CheckKey(0, key, 1); err != nil {
					t.Error(err)
					return
				} else if d.Allowed {
					allowed.Add(1)
				}
			}
		})
		span := time.Duration(ticks.Load()-1) * tick
		bound := 100 + int64(span/(10*time.Millisecond))
		if allowed.Load() > bound || allowed.Load() < bound/2 {
			t.Fatalf("admitted %d over %v, bound %d", allowed.Load(), span, bound)
		}
	})
}

func run(goroutines int, f func()) {
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f()
		}()
	}
	wg.Wait()
}

func TestTooManyRequestsBodyIsClerks(t *testing.T) {
	b := TooManyRequestsBody()
	if string(b) != clerk429Body {
		t.Fatalf("body = %q (%d bytes)", b, len(b))
	}
	b[0] = 'X'
	if string(TooManyRequestsBody()) != clerk429Body {
		t.Fatal("body shared with the caller")
	}
}

func TestVersionAndMonotonic(t *testing.T) {
	if v := Version(); v == "" || strings.Count(v, ".") != 2 {
		t.Fatalf("version %q", v)
	}
	a, err := Monotonic()
	if err != nil || a <= 0 {
		t.Fatalf("Monotonic = %v, %v", a, err)
	}
	time.Sleep(time.Millisecond)
	if b, _ := Monotonic(); b-a < time.Millisecond {
		t.Fatalf("Monotonic moved %v in 1ms", b-a)
	}
}
