package ratecard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/textproto"
	"strings"
	"sync/atomic"
	"testing"
)

// testServer is an httptest server behind the middleware; reached counts
// the requests that got through to the handler.
type testServer struct {
	*httptest.Server
	reached atomic.Int64
}

func newTestServer(t *testing.T, l *Limiter, api API, o MiddlewareOptions) *testServer {
	t.Helper()
	s := &testServer{}
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.reached.Add(1)
		io.WriteString(w, "ok")
	})
	if api == APIFrontend {
		s.Server = httptest.NewServer(Frontend(l, next, o))
	} else {
		s.Server = httptest.NewServer(Backend(l, next, o))
	}
	t.Cleanup(s.Close)
	return s
}

type response struct {
	status int
	header http.Header
	body   string
}

// do sends one request; header holds alternating names and values.
func (s *testServer) do(t *testing.T, method, path string, header ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, string(b)}
}

func checkHeader(t *testing.T, what string, h http.Header, name, want string) {
	t.Helper()
	if got := h.Values(name); (want == "" && len(got) != 0) || (want != "" && (len(got) != 1 || got[0] != want)) {
		t.Errorf("%s: %s = %q, want %q", what, name, got, want)
	}
}

const (
	liveKey = "Bearer sk_live_0123456789abcdefghijklmnopqrstuvwxyzABCDEF"
	testKey = "Bearer sk_test_0123456789abcdefghijklmnopqrstuvwxyzABCDEF"
)

// Two of Clerk's rows through the middleware, against the library itself:
// a twin limiter decides the same requests directly, and the middleware
// must answer as it decides, field for field, letting through exactly the
// binding rule's burst as the library reports it.
func TestClerkRowsThroughTheMiddlewareAnswerAsTheLibraryDecides(t *testing.T) {
	rows := []struct {
		binding, method, path, key string
		api                        API
		alsoMatched                string
	}{
		{signInRule, "POST", "/v1/client/sign_ins", "", APIFrontend, ""},
		// An invitation counts against the instance too; the endpoint binds.
		{inviteRule, "POST", "/v1/invitations", liveKey, APIBackend, prodRule},
	}
	for _, row := range rows {
		row := row
		t.Run(row.binding, func(t *testing.T) {
			l, _ := newTestLimiter(t, Options{})
			twin, _ := newTestLimiter(t, Options{})
			q := quotaOf(t, twin, row.binding)
			s := newTestServer(t, l, row.api, MiddlewareOptions{})
			direct := &Request{API: row.api, Method: row.method, Path: row.path, ClientIP: netip.MustParseAddr("127.0.0.1"), SecretKey: row.key}
			for i := 0; i <= q.burst; i++ {
				r := s.do(t, row.method, row.path, "Authorization", row.key)
				d := mustCheck(t, twin, direct)
				want := mustHeaders(t, d)
				if d.Allowed != (i < q.burst) || d.Rule != row.binding {
					t.Fatalf("request %d of a burst of %d: the library decided %+v", i, q.burst, d)
				}
				what := fmt.Sprintf("request %d", i)
				checkHeader(t, what, r.header, "RateLimit-Policy", want.RateLimitPolicy)
				checkHeader(t, what, r.header, "RateLimit", want.RateLimit)
				if d.Allowed {
					if r.status != http.StatusOK || r.body != "ok" {
						t.Fatalf("%s: %d %q", what, r.status, r.body)
					}
					checkHeader(t, what, r.header, "Retry-After", "")
					continue
				}
				if r.status != http.StatusTooManyRequests || r.body != string(TooManyRequestsBody()) {
					t.Fatalf("%s: %d %q", what, r.status, r.body)
				}
				checkHeader(t, what, r.header, "Retry-After", fmt.Sprint(secondsUp(q.interval)))
				checkHeader(t, what, r.header, "Content-Type", "application/json")
				checkHeader(t, what, r.header, "Content-Length", fmt.Sprint(len(r.body)))
				items := []string{policyItem(q)}
				if row.alsoMatched != "" {
					items = append(items, policyItem(quotaOf(t, twin, row.alsoMatched)))
				}
				for _, item := range items {
					if !strings.Contains(want.RateLimitPolicy, item) {
						t.Errorf("RateLimit-Policy %q lacks %q", want.RateLimitPolicy, item)
					}
				}
			}
			if got := s.reached.Load(); got != int64(q.burst) {
				t.Errorf("%d requests reached the handler, want %d", got, q.burst)
			}
		})
	}
}

func TestFieldNamesAreCanonical(t *testing.T) {
	for name, canonical := range map[string]string{
		"Authorization": fieldAuthorization, "RateLimit-Policy": fieldRateLimitPolicy, "RateLimit": fieldRateLimit,
		"Retry-After": fieldRetryAfter, "Content-Type": fieldContentType, "Content-Length": fieldContentLength,
	} {
		if got := textproto.CanonicalMIMEHeaderKey(name); got != canonical {
			t.Errorf("%s: canonical %q, the middleware sets %q", name, got, canonical)
		}
	}
}

// A response field set alone: appending to it leaves the others as they were.
func TestResponseFieldsDoNotShareValues(t *testing.T) {
	h := http.Header{}
	setFields(h, &Headers{RateLimitPolicy: "p", RateLimit: "r", RetryAfter: "a"}, true, "9")
	h.Add("RateLimit-Policy", "p2")
	h["Ratelimit"][0] = "r2"
	want := http.Header{"Ratelimit-Policy": {"p", "p2"}, "Ratelimit": {"r2"}, "Retry-After": {"a"}, "Content-Type": {"application/json"}, "Content-Length": {"9"}}
	if fmt.Sprint(h) != fmt.Sprint(want) {
		t.Fatalf("header %v, want %v", h, want)
	}
	h = http.Header{}
	setFields(h, &Headers{RetryAfter: "a"}, false, "")
	if len(h) != 0 {
		t.Fatalf("an allowed request without fields got %v", h)
	}
}

func TestSharedLimitsAcrossRoutes(t *testing.T) {
	l, _ := newTestLimiter(t, Options{})
	s := newTestServer(t, l, APIFrontend, MiddlewareOptions{})
	attempts := []string{"/v1/client/sign_ins/sia_1/attempt_first_factor", "/v1/client/sign_ins/sia_2/attempt_second_factor", "/v1/sign_ins/sia_3/attempt_first_factor"}
	burst := quotaOf(t, l, attemptRule).burst
	for i := 0; i < burst; i++ {
		if r := s.do(t, "POST", attempts[i%len(attempts)]); r.status != http.StatusOK {
			t.Fatalf("sign-in attempt %d: %d", i, r.status)
		}
	}
	if r := s.do(t, "post", "/v1/client/sign_ins/sia_1/attempt_second_factor"); r.status != http.StatusTooManyRequests {
		t.Fatalf("sign-in attempt %d: %d", burst, r.status)
	}

	b := newTestServer(t, l, APIBackend, MiddlewareOptions{})
	burst = quotaOf(t, l, userEditRule).burst
	for i := 0; i < burst; i++ {
		method, path := "PATCH", "/v1/users/user_9"
		if i%2 == 1 {
			method, path = "PUT", "/v1/users/user_9/metadata"
		}
		if r := b.do(t, method, path, "Authorization", liveKey); r.status != http.StatusOK {
			t.Fatalf("update %d of one user: %d", i, r.status)
		}
	}
	if r := b.do(t, "PATCH", "/v1/users/user_9/metadata", "Authorization", liveKey); r.status != http.StatusTooManyRequests {
		t.Fatalf("update %d of one user: %d", burst, r.status)
	}
	if r := b.do(t, "PATCH", "/v1/users/user_10", "Authorization", liveKey); r.status != http.StatusOK {
		t.Fatalf("another user: %d", r.status)
	}
}

func TestAllowedRequestsCarryRateLimitFieldsAndReachTheHandler(t *testing.T) {
	l, _ := newTestLimiter(t, Options{})
	q := quotaOf(t, l, signInRule)
	s := newTestServer(t, l, APIFrontend, MiddlewareOptions{})
	r := s.do(t, "POST", "/v1/client/sign_ins")
	if r.status != http.StatusOK || s.reached.Load() != 1 {
		t.Fatalf("status %d, reached %d", r.status, s.reached.Load())
	}
	checkHeader(t, "allowed", r.header, "RateLimit", rateLimitField(signInRule, q.burst-1, q.interval))
	checkHeader(t, "allowed", r.header, "RateLimit-Policy", policyItem(q))

	// Unmatched and exempt requests pass without fields.
	r = s.do(t, "GET", "/v1/environment")
	checkHeader(t, "unmatched", r.header, "RateLimit", "")
	checkHeader(t, "unmatched", r.header, "RateLimit-Policy", "")
	b := newTestServer(t, l, APIBackend, MiddlewareOptions{})
	for i := 0; i <= quotaOf(t, l, devRule).burst; i++ {
		r = b.do(t, "GET", "/v1/jwks", "Authorization", testKey)
		if r.status != http.StatusOK {
			t.Fatalf("jwks %d: %d", i, r.status)
		}
	}
	checkHeader(t, "exempt", r.header, "RateLimit", "")
}

func TestDryRunDenialPassesWithFields(t *testing.T) {
	l, _ := newTestLimiter(t, Options{DryRun: true})
	q := quotaOf(t, l, signInRule)
	s := newTestServer(t, l, APIFrontend, MiddlewareOptions{})
	var r response
	for i := 0; i <= q.burst; i++ {
		r = s.do(t, "POST", "/v1/client/sign_ins")
	}
	if r.status != http.StatusOK || s.reached.Load() != int64(q.burst+1) {
		t.Fatalf("status %d, reached %d", r.status, s.reached.Load())
	}
	checkHeader(t, "dry run", r.header, "RateLimit", rateLimitField(signInRule, 0, q.full()))
	checkHeader(t, "dry run", r.header, "RateLimit-Policy", policyItem(q))
	checkHeader(t, "dry run", r.header, "Retry-After", "")
}

func TestSpoofedForwardedForIsIgnoredByDefault(t *testing.T) {
	l, _ := newTestLimiter(t, Options{})
	burst := quotaOf(t, l, signInRule).burst
	s := newTestServer(t, l, APIFrontend, MiddlewareOptions{})
	for i := 0; i <= burst; i++ {
		r := s.do(t, "POST", "/v1/client/sign_ins", "X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i))
		if want := http.StatusOK; i == burst {
			if r.status != http.StatusTooManyRequests {
				t.Fatalf("rotating X-Forwarded-For got past the limit: %d", r.status)
			}
		} else if r.status != want {
			t.Fatalf("request %d: %d", i, r.status)
		}
	}
}

func TestTrustedProxyForwardedFor(t *testing.T) {
	l, _ := newTestLimiter(t, Options{})
	s := newTestServer(t, l, APIFrontend, MiddlewareOptions{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	// The right-most untrusted address is the client; what it claims to
	// its left is its own business.
	for i := 0; i < quotaOf(t, l, signInRule).burst; i++ {
		s.do(t, "POST", "/v1/client/sign_ins", "X-Forwarded-For", fmt.Sprintf("10.9.9.%d, 203.0.113.5", i))
	}
	if r := s.do(t, "POST", "/v1/client/sign_ins", "X-Forwarded-For", "203.0.113.5"); r.status != http.StatusTooManyRequests {
		t.Fatalf("client behind the proxy: %d", r.status)
	}
	if r := s.do(t, "POST", "/v1/client/sign_ins", "X-Forwarded-For", "203.0.113.6"); r.status != http.StatusOK {
		t.Fatalf("another client behind the proxy: %d", r.status)
	}
}

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}
	cases := []struct {
		remote  string
		xff     []string
		trusted []netip.Prefix
		want    string
	}{
		{"192.0.2.1:1234", nil, nil, "192.0.2.1"},
		{"[2001:db8::1]:443", nil, nil, "2001:db8::1"},
		{"[::ffff:192.0.2.1]:80", nil, nil, "192.0.2.1"},
		{"[fe80::1%eth0]:80", nil, nil, "fe80::1"},
		{"192.0.2.1", nil, nil, "192.0.2.1"},
		{"garbage", nil, nil, ""},
		{"", nil, nil, ""},
		{"[::1", nil, nil, ""},
		{"192.0.2.1:1234", []string{"203.0.113.1"}, nil, "192.0.2.1"},
		{"192.0.2.1:1234", []string{"203.0.113.1"}, trusted, "192.0.2.1"},
		{"127.0.0.1:1", []string{"203.0.113.1"}, trusted, "203.0.113.1"},
		{"127.0.0.1:1", []string{"1.1.1.1, 203.0.113.1, 10.0.0.2"}, trusted, "203.0.113.1"},
		{"127.0.0.1:1", []string{"1.1.1.1, 203.0.113.1", "10.0.0.2,10.0.0.3"}, trusted, "203.0.113.1"},
		{"127.0.0.1:1", []string{"10.0.0.1, 10.0.0.2"}, trusted, "10.0.0.1"},
		{"127.0.0.1:1", []string{"203.0.113.1:5555"}, trusted, "203.0.113.1"},
		{"127.0.0.1:1", []string{"[2001:db9::5]:80, 2001:db8::7"}, trusted, "2001:db9::5"},
		{"127.0.0.1:1", []string{"::ffff:203.0.113.9"}, trusted, "203.0.113.9"},
		{"127.0.0.1:1", []string{"203.0.113.1, garbage"}, trusted, "127.0.0.1"},
		{"127.0.0.1:1", []string{"garbage, 10.0.0.4"}, trusted, "10.0.0.4"},
		{"127.0.0.1:1", []string{" , ,"}, trusted, "127.0.0.1"},
		{"127.0.0.1:1", []string{strings.Repeat("10.0.0.1,", 10000) + "203.0.113.1"}, trusted, "203.0.113.1"},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.remote
		for _, v := range c.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		got := clientIP(r, c.trusted)
		if (c.want == "" && got.IsValid()) || (c.want != "" && got != netip.MustParseAddr(c.want)) {
			t.Errorf("clientIP(%q, %q) = %v, want %q", c.remote, c.xff, got, c.want)
		}
	}
}

func TestMalformedRemoteAddrFailsClosed(t *testing.T) {
	l, _ := newTestLimiter(t, Options{})
	var reached int
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached++ })
	var logged []error
	h := Frontend(l, next, MiddlewareOptions{OnError: func(r *http.Request, err error) { logged = append(logged, err) }})
	for _, remote := range []string{"garbage", "", "[::1", "@", "1.2.3.4.5:80"} {
		r := httptest.NewRequest("POST", "/v1/client/sign_ins", nil)
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("RateLimit") != "" {
			t.Errorf("RemoteAddr %q: %d %v", remote, w.Code, w.Header())
		}
	}
	if reached != 0 || len(logged) != 5 || !errors.Is(logged[0], ErrMissingSubject) {
		t.Fatalf("reached %d, logged %v", reached, logged)
	}
	// A request no rule matches needs no subject.
	r := httptest.NewRequest("GET", "/v1/environment", nil)
	r.RemoteAddr = "garbage"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusOK || reached != 1 {
		t.Fatalf("unmatched request: %d, reached %d", w.Code, reached)
	}

	open := Frontend(l, next, MiddlewareOptions{FailOpen: true})
	r = httptest.NewRequest("POST", "/v1/client/sign_ins", nil)
	r.RemoteAddr = "garbage"
	w = httptest.NewRecorder()
	open.ServeHTTP(w, r)
	if w.Code != http.StatusOK || reached != 2 {
		t.Fatalf("FailOpen: %d, reached %d", w.Code, reached)
	}

	closed, _ := New(Options{})
	closed.Close()
	w = httptest.NewRecorder()
	Frontend(closed, next, MiddlewareOptions{}).ServeHTTP(w, httptest.NewRequest("POST", "/v1/client/sign_ins", nil))
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("closed limiter: %d", w.Code)
	}
}

func TestMalformedAuthorizationIsDecidedAtTheDevelopmentLimit(t *testing.T) {
	for _, auth := range []string{"", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "sk_live_", "\xff\xfe", strings.Repeat("k", 64<<10)} {
		l, _ := newTestLimiter(t, Options{})
		dev := quotaOf(t, l, devRule)
		s := newTestServer(t, l, APIBackend, MiddlewareOptions{})
		var r response
		for i := 0; i < dev.burst; i++ {
			if r = s.do(t, "GET", "/v1/users", "Authorization", auth); r.status != http.StatusOK {
				t.Fatalf("Authorization %.20q: request %d: %d", auth, i, r.status)
			}
		}
		if auth == "sk_live_" {
			continue // a production key, if a short one
		}
		if r = s.do(t, "GET", "/v1/users", "Authorization", auth); r.status != http.StatusTooManyRequests {
			t.Fatalf("Authorization %.20q: request %d: %d", auth, dev.burst, r.status)
		}
		checkHeader(t, "bad key", r.header, "RateLimit", rateLimitField(devRule, 0, dev.full()))
	}
}

func TestBackendWithoutKeyOrClientIPFailsClosed(t *testing.T) {
	l, _ := newTestLimiter(t, Options{})
	h := Backend(l, http.NotFoundHandler(), MiddlewareOptions{})
	r := httptest.NewRequest("GET", "/v1/users", nil)
	r.RemoteAddr = "not an address"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d", w.Code)
	}
}

func TestHugeAndOddPathsAreDecided(t *testing.T) {
	l, _ := newTestLimiter(t, Options{})
	q := quotaOf(t, l, signInRule)
	s := newTestServer(t, l, APIFrontend, MiddlewareOptions{})
	for _, p := range []string{"/" + strings.Repeat("a/", 20000), "/v1/client/sign_ins?x=1", "/v1//client/./sign_ins", "/v1/client/%73ign_ins", "/v1/client/sign_ins/%2F"} {
		if r := s.do(t, "POST", p); r.status != http.StatusOK {
			t.Errorf("%.40s: %d", p, r.status)
		}
	}
	// Three spellings of the sign-in path and the one that cannot be made
	// canonical were charged to it: this is the 5th sign-in.
	r := s.do(t, "POST", "/v1/client/sign_ins")
	checkHeader(t, "after the spellings", r.header, "RateLimit", rateLimitField(signInRule, q.burst-5, 5*q.interval))
}

func TestTenantsHaveSeparateLimits(t *testing.T) {
	l, _ := newTestLimiter(t, Options{})
	s := newTestServer(t, l, APIFrontend, MiddlewareOptions{Tenant: func(r *http.Request) string { return r.Header.Get("X-Tenant") }})
	for i := 0; i < quotaOf(t, l, signInRule).burst; i++ {
		s.do(t, "POST", "/v1/client/sign_ins", "X-Tenant", "a")
	}
	if r := s.do(t, "POST", "/v1/client/sign_ins", "X-Tenant", "a"); r.status != http.StatusTooManyRequests {
		t.Fatalf("tenant a: %d", r.status)
	}
	if r := s.do(t, "POST", "/v1/client/sign_ins", "X-Tenant", "b"); r.status != http.StatusOK {
		t.Fatalf("tenant b: %d", r.status)
	}
}

func TestConcurrentRequestsOnOneKeyGetExactlyTheBurst(t *testing.T) {
	l, _ := newTestLimiter(t, Options{})
	burst := int64(quotaOf(t, l, userEditRule).burst)
	s := newTestServer(t, l, APIBackend, MiddlewareOptions{})
	var limited atomic.Int64
	run(20, func() {
		for i := 0; i < 10; i++ {
			req, _ := http.NewRequest("PATCH", s.URL+"/v1/users/user_1/metadata", nil)
			req.Header.Set("Authorization", liveKey)
			resp, err := s.Client().Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusTooManyRequests {
				limited.Add(1)
			}
		}
	})
	// The clock stands still: one user's burst and no more.
	if s.reached.Load() != burst || limited.Load() != 200-burst {
		t.Fatalf("reached %d, limited %d", s.reached.Load(), limited.Load())
	}
}

// closingDecider decides, then closes its limiter: the decision stands but
// its response fields can no longer be written.
type closingDecider struct{ *Limiter }

func (c closingDecider) CheckContext(_ context.Context, r *Request) (Decision, error) {
	d, err := c.Limiter.Check(r)
	c.Limiter.Close()
	return d, err
}

func TestDecisionStandsWhenItsFieldsCannotBeWritten(t *testing.T) {
	for _, spent := range []bool{false, true} {
		l, _ := newTestLimiter(t, Options{})
		r := httptest.NewRequest("POST", "/v1/client/sign_ins", nil)
		if spent {
			for i := 0; i < quotaOf(t, l, signInRule).burst; i++ {
				Frontend(l, http.NotFoundHandler(), MiddlewareOptions{}).ServeHTTP(httptest.NewRecorder(), r)
			}
		}
		var reached int
		var logged []error
		next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached++ })
		h := middleware(closingDecider{l}, next, MiddlewareOptions{OnError: func(r *http.Request, err error) { logged = append(logged, err) }}, APIFrontend)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		wantStatus, wantReached := http.StatusOK, 1
		if spent {
			wantStatus, wantReached = http.StatusTooManyRequests, 0
		}
		if w.Code != wantStatus || reached != wantReached || len(logged) != 1 || logged[0] != ErrClosed {
			t.Errorf("burst spent %v: status %d, reached %d, logged %v", spent, w.Code, reached, logged)
		}
		if w.Header().Get("RateLimit") != "" || w.Header().Get("RateLimit-Policy") != "" {
			t.Errorf("burst spent %v: fields %v", spent, w.Header())
		}
	}
}

// The middleware's allocations per request, which BenchmarkFrontendMiddleware*
// report: the fields' text and the one array their values share.
func TestMiddlewareAllocatesTwicePerLimitedRequest(t *testing.T) {
	for _, o := range []Options{{Rules: hotRules}, {}} {
		l, _ := newTestLimiter(t, o)
		h := Frontend(l, okHandler, MiddlewareOptions{})
		r := httptest.NewRequest("POST", "/v1/client/sign_ins", nil)
		w := &discardWriter{h: http.Header{}}
		allocs := testing.AllocsPerRun(100, func() {
			w.reset()
			h.ServeHTTP(w, r)
		})
		if allocs > 2 {
			t.Errorf("rules %v: %.1f allocations per request", o.Rules, allocs)
		}
	}
}
