package ratecard

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
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
	prodPol = `"bapi.instance.production";q=1000;w=10`
)

// Every row of Clerk's table through the middleware: a fresh subject gets
// its burst, then 429 with the exact fields and body.
func TestEveryClerkRowAllowsItsBurstThenAnswers429(t *testing.T) {
	rows := []struct {
		rule, method, path, key string
		limit, retryAfter       int
		policy                  string
	}{
		{"fapi.sign_ins.create", "POST", "/v1/client/sign_ins", "", 5, 2, `"fapi.sign_ins.create";q=5;w=10`},
		{"fapi.sign_ups.create", "POST", "/v1/client/sign_ups", "", 5, 2, `"fapi.sign_ups.create";q=5;w=10`},
		{"fapi.sign_ins.attempt", "POST", "/v1/client/sign_ins/sia_1/attempt_first_factor", "", 3, 4, `"fapi.sign_ins.attempt";q=3;w=10`},
		{"fapi.sign_ups.attempt", "POST", "/v1/client/sign_ups/sua_1/attempt_verification", "", 3, 4, `"fapi.sign_ups.attempt";q=3;w=10`},
		{"bapi.instance.production", "GET", "/v1/users", liveKey, 1000, 1, prodPol},
		{"bapi.instance.development", "GET", "/v1/users/me", testKey, 100, 1, `"bapi.instance.development";q=100;w=10`},
		{"bapi.invitations.create", "POST", "/v1/invitations", liveKey, 100, 36, prodPol + `, "bapi.invitations.create";q=100;w=3600`},
		{"bapi.invitations.bulk", "POST", "/v1/invitations/bulk", liveKey, 25, 144, prodPol + `, "bapi.invitations.bulk";q=25;w=3600`},
		{"bapi.org_invitations.create", "POST", "/v1/organizations/org_1/invitations", liveKey, 250, 15, prodPol + `, "bapi.org_invitations.create";q=250;w=3600`},
		{"bapi.org_invitations.bulk", "POST", "/v1/organizations/org_1/invitations/bulk", liveKey, 50, 72, prodPol + `, "bapi.org_invitations.bulk";q=50;w=3600`},
		{"bapi.users.update", "PATCH", "/v1/users/user_1", liveKey, 10, 1, prodPol + `, "bapi.users.update";q=10;w=10`},
		{"bapi.organizations.update", "PATCH", "/v1/organizations/org_1", liveKey, 10, 1, prodPol + `, "bapi.organizations.update";q=10;w=10`},
		{"bapi.memberships.update", "PATCH", "/v1/organizations/org_1/memberships/user_1", liveKey, 10, 1, prodPol + `, "bapi.memberships.update";q=10;w=10`},
	}
	for _, row := range rows {
		row := row
		t.Run(row.rule, func(t *testing.T) {
			l, _ := newTestLimiter(t, Options{})
			api := APIFrontend
			if strings.HasPrefix(row.rule, "bapi.") {
				api = APIBackend
			}
			s := newTestServer(t, l, api, MiddlewareOptions{})
			window := 10
			if strings.Contains(row.policy, row.rule+`";q=`+fmt.Sprint(row.limit)+";w=3600") {
				window = 3600
			}
			for i := 0; i < row.limit; i++ {
				r := s.do(t, row.method, row.path, "Authorization", row.key)
				if r.status != http.StatusOK || r.body != "ok" {
					t.Fatalf("request %d: %d %q", i, r.status, r.body)
				}
				if i == 0 {
					checkHeader(t, "first", r.header, "RateLimit", fmt.Sprintf(`"%s";r=%d;t=%d`, row.rule, row.limit-1, row.retryAfter))
					checkHeader(t, "first", r.header, "RateLimit-Policy", row.policy)
					checkHeader(t, "first", r.header, "Retry-After", "")
				}
			}
			r := s.do(t, row.method, row.path, "Authorization", row.key)
			if r.status != http.StatusTooManyRequests {
				t.Fatalf("request %d: status %d", row.limit, r.status)
			}
			checkHeader(t, "429", r.header, "Retry-After", fmt.Sprint(row.retryAfter))
			checkHeader(t, "429", r.header, "RateLimit-Policy", row.policy)
			checkHeader(t, "429", r.header, "RateLimit", fmt.Sprintf(`"%s";r=0;t=%d`, row.rule, window))
			checkHeader(t, "429", r.header, "Content-Type", "application/json")
			checkHeader(t, "429", r.header, "Content-Length", fmt.Sprint(len(clerk429Body)))
			if r.body != clerk429Body {
				t.Errorf("429 body = %q", r.body)
			}
			if got := s.reached.Load(); got != int64(row.limit) {
				t.Errorf("%d requests reached the handler, want %d", got, row.limit)
			}
		})
	}
}

func TestSharedLimitsAcrossRoutes(t *testing.T) {
	l, _ := newTestLimiter(t, Options{})
	s := newTestServer(t, l, APIFrontend, MiddlewareOptions{})
	s.do(t, "POST", "/v1/client/sign_ins/sia_1/attempt_first_factor")
	s.do(t, "POST", "/v1/client/sign_ins/sia_2/attempt_second_factor")
	s.do(t, "POST", "/v1/sign_ins/sia_3/attempt_first_factor")
	if r := s.do(t, "post", "/v1/client/sign_ins/sia_1/attempt_second_factor"); r.status != http.StatusTooManyRequests {
		t.Fatalf("4th sign-in attempt: %d", r.status)
	}

	b := newTestServer(t, l, APIBackend, MiddlewareOptions{})
	for i := 0; i < 5; i++ {
		b.do(t, "PATCH", "/v1/users/user_9", "Authorization", liveKey)
		b.do(t, "PUT", "/v1/users/user_9/metadata", "Authorization", liveKey)
	}
	if r := b.do(t, "PATCH", "/v1/users/user_9/metadata", "Authorization", liveKey); r.status != http.StatusTooManyRequests {
		t.Fatalf("11th update of one user: %d", r.status)
	}
	if r := b.do(t, "PATCH", "/v1/users/user_10", "Authorization", liveKey); r.status != http.StatusOK {
		t.Fatalf("another user: %d", r.status)
	}
}

func TestAllowedRequestsCarryRateLimitFieldsAndReachTheHandler(t *testing.T) {
	l, _ := newTestLimiter(t, Options{})
	s := newTestServer(t, l, APIFrontend, MiddlewareOptions{})
	r := s.do(t, "POST", "/v1/client/sign_ins")
	if r.status != http.StatusOK || s.reached.Load() != 1 {
		t.Fatalf("status %d, reached %d", r.status, s.reached.Load())
	}
	checkHeader(t, "allowed", r.header, "RateLimit", `"fapi.sign_ins.create";r=4;t=2`)
	checkHeader(t, "allowed", r.header, "RateLimit-Policy", `"fapi.sign_ins.create";q=5;w=10`)

	// Unmatched and exempt requests pass without fields.
	r = s.do(t, "GET", "/v1/environment")
	checkHeader(t, "unmatched", r.header, "RateLimit", "")
	checkHeader(t, "unmatched", r.header, "RateLimit-Policy", "")
	b := newTestServer(t, l, APIBackend, MiddlewareOptions{})
	for i := 0; i < 150; i++ {
		r = b.do(t, "GET", "/v1/jwks", "Authorization", testKey)
		if r.status != http.StatusOK {
			t.Fatalf("jwks %d: %d", i, r.status)
		}
	}
	checkHeader(t, "exempt", r.header, "RateLimit", "")
}

func TestDryRunDenialPassesWithFields(t *testing.T) {
	l, _ := newTestLimiter(t, Options{DryRun: true})
	s := newTestServer(t, l, APIFrontend, MiddlewareOptions{})
	var r response
	for i := 0; i < 6; i++ {
		r = s.do(t, "POST", "/v1/client/sign_ins")
	}
	if r.status != http.StatusOK || s.reached.Load() != 6 {
		t.Fatalf("status %d, reached %d", r.status, s.reached.Load())
	}
	checkHeader(t, "dry run", r.header, "RateLimit", `"fapi.sign_ins.create";r=0;t=10`)
	checkHeader(t, "dry run", r.header, "RateLimit-Policy", `"fapi.sign_ins.create";q=5;w=10`)
	checkHeader(t, "dry run", r.header, "Retry-After", "")
}

func TestSpoofedForwardedForIsIgnoredByDefault(t *testing.T) {
	l, _ := newTestLimiter(t, Options{})
	s := newTestServer(t, l, APIFrontend, MiddlewareOptions{})
	for i := 0; i < 6; i++ {
		r := s.do(t, "POST", "/v1/client/sign_ins", "X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i))
		if want := http.StatusOK; i == 5 {
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
	for i := 0; i < 5; i++ {
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
		s := newTestServer(t, l, APIBackend, MiddlewareOptions{})
		var r response
		for i := 0; i < 100; i++ {
			if r = s.do(t, "GET", "/v1/users", "Authorization", auth); r.status != http.StatusOK {
				t.Fatalf("Authorization %.20q: request %d: %d", auth, i, r.status)
			}
		}
		if auth == "sk_live_" {
			continue // a production key, if a short one
		}
		if r = s.do(t, "GET", "/v1/users", "Authorization", auth); r.status != http.StatusTooManyRequests {
			t.Fatalf("Authorization %.20q: 101st request: %d", auth, r.status)
		}
		checkHeader(t, "bad key", r.header, "RateLimit", `"bapi.instance.development";r=0;t=10`)
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
	s := newTestServer(t, l, APIFrontend, MiddlewareOptions{})
	for _, p := range []string{"/" + strings.Repeat("a/", 20000), "/v1/client/sign_ins?x=1", "/v1//client/./sign_ins", "/v1/client/%73ign_ins", "/v1/client/sign_ins/%2F"} {
		if r := s.do(t, "POST", p); r.status != http.StatusOK {
			t.Errorf("%.40s: %d", p, r.status)
		}
	}
	// Three spellings of the sign-in path and the one that cannot be made
	// canonical were charged to it: this is the 5th sign-in.
	r := s.do(t, "POST", "/v1/client/sign_ins")
	checkHeader(t, "after the spellings", r.header, "RateLimit", `"fapi.sign_ins.create";r=0;t=10`)
}

func TestTenantsHaveSeparateLimits(t *testing.T) {
	l, _ := newTestLimiter(t, Options{})
	s := newTestServer(t, l, APIFrontend, MiddlewareOptions{Tenant: func(r *http.Request) string { return r.Header.Get("X-Tenant") }})
	for i := 0; i < 5; i++ {
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
	// The clock stands still: one user's burst of 10 and no more.
	if s.reached.Load() != 10 || limited.Load() != 190 {
		t.Fatalf("reached %d, limited %d", s.reached.Load(), limited.Load())
	}
}
