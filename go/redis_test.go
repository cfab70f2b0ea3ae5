package ratecard

// The RedisLimiter's own logic against a scripted fake client: what goes
// to Redis, what comes back, the policies and the circuit breaker. The
// same limiter against a real redis-server (and a cluster, and its
// faults) is tested in the module go/redis, on a real client.

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var testSeed = []byte("shared seed 0123")

// call is one request the fake saw.
type call struct {
	eval       bool // EVAL (with the script) rather than EVALSHA
	name       string
	keys, args []string
}

// fakeRedis answers each call with the next of replies (the last one
// repeats), and records the calls.
type fakeRedis struct {
	mu      sync.Mutex
	calls   []call
	replies []reply
	// gate, if set, holds each call until it is closed or ctx ends.
	gate chan struct{}
}

type reply struct {
	ints []int64
	err  error
	// noScript answers EVALSHA with NOSCRIPT (EVAL gets ints).
	noScript bool
}

func (f *fakeRedis) answer(ctx context.Context, eval bool, name string, keys, args [][]byte) ([]int64, error) {
	c := call{eval: eval, name: name}
	for _, k := range keys {
		c.keys = append(c.keys, string(k))
	}
	for _, a := range args {
		c.args = append(c.args, string(a))
	}
	f.mu.Lock()
	f.calls = append(f.calls, c)
	var r reply
	if len(f.replies) > 0 {
		r = f.replies[0]
		if len(f.replies) > 1 && !(r.noScript && !eval) {
			f.replies = f.replies[1:]
		}
	}
	gate := f.gate
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if r.noScript && !eval {
		return nil, ErrNoScript
	}
	return r.ints, r.err
}

func (f *fakeRedis) EvalSha(ctx context.Context, sha string, keys, args [][]byte) ([]int64, error) {
	return f.answer(ctx, false, sha, keys, args)
}

func (f *fakeRedis) Eval(ctx context.Context, script string, keys, args [][]byte) ([]int64, error) {
	return f.answer(ctx, true, script, keys, args)
}

func (f *fakeRedis) seen() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

func (f *fakeRedis) reply(r ...reply) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replies = r
}

// The script's reply (format 1) for one rule: allowed with remaining left
// and reset to go, or denied for retry.
func allowedReply(remaining int, reset time.Duration) reply {
	return reply{ints: []int64{1, 1, 1, int64(remaining), int64(reset), 0}}
}

func deniedReply(reset, retry time.Duration) reply {
	return reply{ints: []int64{1, 0, 0, 0, int64(reset), int64(retry)}}
}

var errRefused = errors.New("dial tcp 127.0.0.1:1: connect: connection refused")

func newTestRedis(t testing.TB, f *fakeRedis, o Options, ro RedisOptions) (*RedisLimiter, *fakeClock) {
	t.Helper()
	c := newFakeClock()
	o.Clock, o.Sleep = c.Now, c.Sleep
	if o.Seed == nil {
		o.Seed = testSeed
	}
	r, err := NewRedis(f, o, ro)
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r, c
}

func TestRedisScriptIsTheLibrarysAndNamedByItsSHA1(t *testing.T) {
	src, sha := RedisScript()
	sum := sha1.Sum([]byte(src))
	if !strings.Contains(src, "redis.call") || hex.EncodeToString(sum[:]) != sha {
		t.Fatalf("script of %d bytes, SHA-1 %s, named %s", len(src), hex.EncodeToString(sum[:]), sha)
	}
}

func TestRedisSendsOneEvalShaWithTheRulesKeysAndQuota(t *testing.T) {
	f := &fakeRedis{}
	r, _ := newTestRedis(t, f, Options{}, RedisOptions{Prefix: "gw:"})
	q := quotaOf(t, r.local, signInRule)
	f.reply(allowedReply(q.burst-1, q.interval))
	d, err := r.Check(signIn("192.0.2.1"))
	if err != nil || !d.Allowed || d.Rule != signInRule || d.Remaining != q.burst-1 || d.Limit != q.limit {
		t.Fatalf("Check: %+v, %v", d, err)
	}
	if h := mustHeaders(t, d); h.RateLimit != rateLimitField(signInRule, q.burst-1, q.interval) {
		t.Errorf("RateLimit %q", h.RateLimit)
	}
	seen := f.seen()
	_, sha := RedisScript()
	if len(seen) != 1 || seen[0].eval || seen[0].name != sha || len(seen[0].keys) != 1 {
		t.Fatalf("calls %+v", seen)
	}
	// The contract of the script (core/src/remote/mod.rs): flags, cost,
	// then g, T, burst for a GCRA rule; no clock, so the server's TIME.
	want := []string{"0", "1", "g", strconv.FormatInt(int64(q.interval), 10), strconv.Itoa(q.burst)}
	if strings.Join(seen[0].args, " ") != strings.Join(want, " ") {
		t.Errorf("ARGV %q, want %q", seen[0].args, want)
	}
	key := seen[0].keys[0]
	if !strings.HasPrefix(key, "gw:{") || strings.Count(key, "{") != 1 || !strings.Contains(key, "}") {
		t.Errorf("key %q: not prefix, one hash tag, tag", key)
	}

	// A peek says so in the flags; a second request of the same client has the same key.
	f.reply(allowedReply(q.burst-1, q.interval))
	if _, err := r.Peek(signIn("192.0.2.1")); err != nil {
		t.Fatal(err)
	}
	seen = f.seen()
	if len(seen) != 2 || seen[1].args[0] != "1" || seen[1].keys[0] != key {
		t.Errorf("peek sent %+v", seen[1])
	}
}

func TestRedisRequestOfTwoRulesIsOneCallWithKeysInOneHashTag(t *testing.T) {
	f := &fakeRedis{}
	r, _ := newTestRedis(t, f, Options{}, RedisOptions{})
	f.reply(reply{ints: []int64{1, 1, 1, 98, int64(time.Second), 0, 1, 8, int64(2 * time.Second), 0}})
	req := &Request{API: APIBackend, Method: "PATCH", Path: "/v1/users/user_1", SecretKey: "sk_test_x"}
	d, err := r.Check(req)
	if err != nil || !d.Allowed {
		t.Fatalf("Check: %+v, %v", d, err)
	}
	seen := f.seen()
	if len(seen) != 1 || len(seen[0].keys) != 2 || len(seen[0].args) != 2+3*2 {
		t.Fatalf("calls %+v", seen)
	}
	tag := func(k string) string { return k[strings.Index(k, "{") : strings.Index(k, "}")+1] }
	if k := seen[0].keys; k[0] == k[1] || tag(k[0]) != tag(k[1]) {
		t.Errorf("keys %q: not two keys of one hash tag", k)
	}
	// The binding rule is the one with the smaller fraction left: 8 of the
	// user rule's 10 against 98 of the instance's 100.
	if d.Rule != userEditRule || d.Remaining != 8 {
		t.Errorf("binding %s, remaining %d", d.Rule, d.Remaining)
	}
}

func TestRedisWallClockRidesInTheLastTwoArguments(t *testing.T) {
	f := &fakeRedis{}
	at := time.Unix(1790000000, 123456789)
	r, _ := newTestRedis(t, f, Options{}, RedisOptions{WallClock: func() time.Time { return at }})
	f.reply(allowedReply(4, time.Second))
	if _, err := r.Check(signIn("192.0.2.1")); err != nil {
		t.Fatal(err)
	}
	a := f.seen()[0].args
	if len(a) != 7 || a[5] != "1790000000" || a[6] != "123456789" {
		t.Errorf("ARGV %q", a)
	}
}

func TestRedisExemptAndUnmatchedRequestsMakeNoRoundTrip(t *testing.T) {
	f := &fakeRedis{}
	r, _ := newTestRedis(t, f, Options{}, RedisOptions{})
	jwks := &Request{API: APIBackend, Method: "GET", Path: "/v1/jwks", SecretKey: "sk_live_x"}
	if d, err := r.Check(jwks); err != nil || !d.Allowed || !d.Exempt || d.Rule != jwksRule {
		t.Errorf("jwks: %+v, %v", d, err)
	}
	other := &Request{API: APIFrontend, Method: "GET", Path: "/v1/environment"}
	if d, err := r.Check(other); err != nil || !d.Allowed || d.Rule != "" {
		t.Errorf("unmatched: %+v, %v", d, err)
	}
	if n := len(f.seen()); n != 0 {
		t.Errorf("%d round trips", n)
	}
	// A request the library cannot decide is its error, not Redis's.
	if _, err := r.Check(&Request{API: APIFrontend, Method: "POST", Path: "/v1/client/sign_ins"}); !errors.Is(err, ErrMissingSubject) {
		t.Errorf("sign-in without an IP: %v", err)
	}
}

func TestRedisDeniedClientIsAnsweredHereUntilItsRetryAfter(t *testing.T) {
	for _, exact := range []bool{false, true} {
		f := &fakeRedis{}
		r, clock := newTestRedis(t, f, Options{}, RedisOptions{Exact: exact})
		q := quotaOf(t, r.local, signInRule)
		retry := 1500 * time.Millisecond
		f.reply(deniedReply(q.full()+retry, retry))
		first, err := r.Check(signIn("192.0.2.1"))
		if err != nil || first.Allowed || first.RetryAfter != retry || first.Rule != signInRule {
			t.Fatalf("exact %v: first: %+v, %v", exact, first, err)
		}
		const flood = 1000
		for i := 1; i <= flood; i++ {
			clock.Advance(time.Microsecond)
			d, err := r.Check(signIn("192.0.2.1"))
			// From the cache, the wait shrinks with the clock; the fake
			// Redis (exact) repeats its answer.
			wantRetry := retry - time.Duration(i)*time.Microsecond
			if exact {
				wantRetry = retry
			}
			if err != nil || d.Allowed || d.RetryAfter != wantRetry {
				t.Fatalf("exact %v: denial %d: %+v, %v", exact, i, d, err)
			}
		}
		s, _ := r.Stats()
		trips := len(f.seen())
		if exact {
			if trips != 1+flood || s.RemoteCached != 0 {
				t.Errorf("exact: %d round trips, %d cached", trips, s.RemoteCached)
			}
			continue
		}
		if trips != 1 || s.RemoteCached != flood || s.RemoteCalls != 1 || s.Limited != 1+flood {
			t.Errorf("%d round trips, stats %+v", trips, s)
		}
		// Another client is not denied by this one's entry.
		f.reply(allowedReply(q.burst-1, q.interval))
		if d, _ := r.Check(signIn("192.0.2.2")); !d.Allowed || len(f.seen()) != 2 {
			t.Errorf("another client: %+v after %d trips", d, len(f.seen()))
		}
		// Past its Retry-After the client goes to Redis again.
		clock.Advance(retry)
		if d, _ := r.Check(signIn("192.0.2.1")); !d.Allowed || len(f.seen()) != 3 {
			t.Errorf("after Retry-After: %+v after %d trips", d, len(f.seen()))
		}
	}
}

func TestRedisForgetCachedSendsTheClientToRedisAgain(t *testing.T) {
	f := &fakeRedis{}
	r, _ := newTestRedis(t, f, Options{}, RedisOptions{})
	f.reply(deniedReply(12*time.Second, 2*time.Second))
	r.Check(signIn("192.0.2.1"))
	r.Check(signIn("192.0.2.1"))
	if n := len(f.seen()); n != 1 {
		t.Fatalf("%d round trips before the reset", n)
	}
	if n, err := r.ForgetCached(signIn("192.0.2.1")); n != 1 || err != nil {
		t.Fatalf("ForgetCached: %d, %v", n, err)
	}
	f.reply(allowedReply(4, time.Second))
	if d, _ := r.Check(signIn("192.0.2.1")); !d.Allowed || len(f.seen()) != 2 {
		t.Errorf("after the reset: %+v after %d trips", d, len(f.seen()))
	}
}

func TestRedisNoScriptIsAnsweredByEvalWithoutAnError(t *testing.T) {
	f := &fakeRedis{}
	var logged []error
	r, _ := newTestRedis(t, f, Options{}, RedisOptions{OnError: func(err error) { logged = append(logged, err) }})
	f.reply(reply{noScript: true, ints: allowedReply(4, time.Second).ints})
	d, err := r.Check(signIn("192.0.2.1"))
	if err != nil || !d.Allowed {
		t.Fatalf("Check: %+v, %v", d, err)
	}
	seen := f.seen()
	src, _ := RedisScript()
	if len(seen) != 2 || seen[0].eval || !seen[1].eval || seen[1].name != src ||
		strings.Join(seen[0].keys, ",") != strings.Join(seen[1].keys, ",") || strings.Join(seen[0].args, ",") != strings.Join(seen[1].args, ",") {
		t.Fatalf("calls %+v", seen)
	}
	if s, _ := r.Stats(); s.RemoteErrors != 0 || s.RemoteCalls != 1 || len(logged) != 0 {
		t.Errorf("stats %+v, logged %v", s, logged)
	}
}

func TestRedisFailuresAnswerUnderThePolicyCountedAndReported(t *testing.T) {
	badReply := reply{ints: []int64{1, 1}}
	for _, tc := range []struct {
		policy RedisPolicy
		fault  reply
		cause  error
	}{
		{RedisFailClosed, reply{err: errRefused}, errRefused},
		{RedisFailOpen, reply{err: errRefused}, errRefused},
		{RedisFallback, reply{err: errRefused}, errRefused},
		{RedisFailClosed, badReply, ErrRemoteBadReply},
		{RedisFailOpen, badReply, ErrRemoteBadReply},
		{RedisFallback, badReply, ErrRemoteBadReply},
	} {
		f := &fakeRedis{}
		var logged []error
		r, _ := newTestRedis(t, f, Options{}, RedisOptions{Policy: tc.policy, BreakerFailures: -1,
			OnError: func(err error) { logged = append(logged, err) }})
		q := quotaOf(t, r.local, signInRule)
		f.reply(tc.fault)
		n := q.burst + 2
		var allowed, failed int
		for i := 0; i < n; i++ {
			d, err := r.Check(signIn("192.0.2.1"))
			switch {
			case err != nil:
				failed++
				var re *RedisError
				if tc.policy != RedisFailClosed || !errors.As(err, &re) || !errors.Is(err, ErrRedisUnavailable) || !errors.Is(err, tc.cause) {
					t.Fatalf("policy %d, cause %v: error %v", tc.policy, tc.cause, err)
				}
			case d.Allowed:
				allowed++
			}
		}
		want := map[RedisPolicy][2]int{RedisFailClosed: {0, n}, RedisFailOpen: {n, 0}, RedisFallback: {q.burst, 0}}[tc.policy]
		if allowed != want[0] || failed != want[1] {
			t.Errorf("policy %d, cause %v: %d allowed, %d errors; want %v", tc.policy, tc.cause, allowed, failed, want)
		}
		s, _ := r.Stats()
		if s.RemoteErrors != uint64(n) || s.RemoteFallbacks != uint64(n) || s.RemoteCalls != 0 {
			t.Errorf("policy %d, cause %v: stats %+v", tc.policy, tc.cause, s)
		}
		if len(logged) != n || !errors.Is(logged[0], tc.cause) || !errors.Is(logged[0], ErrRedisUnavailable) {
			t.Errorf("policy %d, cause %v: logged %d: %v", tc.policy, tc.cause, len(logged), logged)
		}
	}
}

func TestRedisMiddlewareFailsClosedWith503OrOpenUnderThePolicy(t *testing.T) {
	for _, policy := range []RedisPolicy{RedisFailClosed, RedisFailOpen} {
		f := &fakeRedis{}
		r, _ := newTestRedis(t, f, Options{}, RedisOptions{Policy: policy})
		f.reply(reply{err: errRefused})
		var reached int
		var logged []error
		h := Frontend(r, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { reached++ }),
			MiddlewareOptions{OnError: func(_ *http.Request, err error) { logged = append(logged, err) }})
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("POST", "/v1/client/sign_ins", nil))
		switch policy {
		case RedisFailClosed:
			if w.Code != FailClosedStatus || reached != 0 || len(logged) != 1 || !errors.Is(logged[0], errRefused) {
				t.Errorf("fail closed: %d, reached %d, logged %v", w.Code, reached, logged)
			}
		case RedisFailOpen:
			if w.Code != http.StatusOK || reached != 1 || len(logged) != 0 || w.Header().Get("RateLimit") != "" {
				t.Errorf("fail open: %d, reached %d, logged %v, fields %v", w.Code, reached, logged, w.Header())
			}
		}
	}
}

func TestRedisMiddlewareAnswers429FromRedisDenial(t *testing.T) {
	f := &fakeRedis{}
	r, _ := newTestRedis(t, f, Options{}, RedisOptions{})
	f.reply(deniedReply(11*time.Second, 1200*time.Millisecond))
	w := httptest.NewRecorder()
	Frontend(r, okHandler, MiddlewareOptions{}).ServeHTTP(w, httptest.NewRequest("POST", "/v1/client/sign_ins", nil))
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "2" || w.Body.String() != clerk429Body {
		t.Errorf("%d, Retry-After %q, body %q", w.Code, w.Header().Get("Retry-After"), w.Body.String())
	}
}

func TestRedisBreakerOpensAfterConsecutiveFailuresThenProbesOnce(t *testing.T) {
	f := &fakeRedis{}
	cooldown := 3 * time.Second
	r, clock := newTestRedis(t, f, Options{}, RedisOptions{BreakerFailures: 3, BreakerCooldown: cooldown})
	f.reply(reply{err: errRefused})
	for i := 1; i <= 3; i++ {
		_, err := r.Check(signIn("192.0.2.1"))
		var re *RedisError
		if !errors.As(err, &re) || re.Opened != (i == 3) {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	if b := r.Breaker(); !b.Open || b.Opens != 1 {
		t.Fatalf("after 3 failures: %+v", b)
	}
	// Open: answered at once, no round trip, until the cooldown is over.
	for i := 0; i < 10; i++ {
		clock.Advance(cooldown / 20)
		if _, err := r.Check(signIn("192.0.2.1")); !errors.Is(err, ErrBreakerOpen) {
			t.Fatalf("while open: %v", err)
		}
	}
	if n, b := len(f.seen()), r.Breaker(); n != 3 || b.Rejected != 10 {
		t.Fatalf("%d round trips, breaker %+v", n, b)
	}
	if s, _ := r.Stats(); s.RemoteErrors != 3 || s.RemoteFallbacks != 13 {
		t.Errorf("stats %+v", s)
	}
	// Past the cooldown one probe goes out; it fails, so the breaker opens again.
	clock.Advance(cooldown / 2)
	if _, err := r.Check(signIn("192.0.2.1")); !errors.Is(err, errRefused) {
		t.Fatalf("failed probe: %v", err)
	}
	if _, err := r.Check(signIn("192.0.2.1")); !errors.Is(err, ErrBreakerOpen) {
		t.Fatalf("after a failed probe: %v", err)
	}
	if n, b := len(f.seen()), r.Breaker(); n != 4 || !b.Open || b.Opens != 2 {
		t.Fatalf("%d round trips, breaker %+v", n, b)
	}
	// Next time the probe succeeds: closed, and every request goes to Redis.
	clock.Advance(cooldown)
	f.reply(allowedReply(4, time.Second))
	for i := 0; i < 3; i++ {
		if d, err := r.Check(signIn("192.0.2.1")); err != nil || !d.Allowed {
			t.Fatalf("after recovery: %+v, %v", d, err)
		}
	}
	if n, b := len(f.seen()), r.Breaker(); n != 7 || b.Open {
		t.Fatalf("%d round trips, breaker %+v", n, b)
	}
}

func TestRedisBreakerLetsExactlyOneConcurrentProbeThrough(t *testing.T) {
	f := &fakeRedis{}
	r, clock := newTestRedis(t, f, Options{}, RedisOptions{BreakerFailures: 1, BreakerCooldown: time.Second, Timeout: time.Minute})
	f.reply(reply{err: errRefused})
	r.Check(signIn("192.0.2.1"))
	clock.Advance(time.Second)
	f.reply(allowedReply(4, time.Second))
	gate := make(chan struct{})
	f.mu.Lock()
	f.gate = gate
	f.mu.Unlock()
	const callers = 16
	var wg sync.WaitGroup
	var rejected atomic.Int32
	probeIn := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		close(probeIn)
		if _, err := r.Check(signIn("192.0.2.1")); err != nil {
			t.Errorf("probe: %v", err)
		}
	}()
	<-probeIn
	// Wait (bounded) until the probe is in the client.
	for i := 0; i < 1000 && len(f.seen()) < 2; i++ {
		time.Sleep(time.Millisecond)
	}
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := r.Check(signIn("192.0.2.1")); errors.Is(err, ErrBreakerOpen) {
				rejected.Add(1)
			}
		}()
	}
	for i := 0; i < 1000 && rejected.Load() < callers; i++ {
		time.Sleep(time.Millisecond)
	}
	close(gate)
	wg.Wait()
	if n := len(f.seen()); n != 2 || rejected.Load() != callers {
		t.Errorf("%d round trips (want the failure and one probe), %d of %d rejected", n, rejected.Load(), callers)
	}
	if b := r.Breaker(); b.Open {
		t.Errorf("breaker %+v after a successful probe", b)
	}
}

func TestRedisRoundTripEndsAtTheTimeoutAndCallerCancelIsNotRedisFailure(t *testing.T) {
	f := &fakeRedis{gate: make(chan struct{})} // never answers
	defer close(f.gate)
	timeout := 50 * time.Millisecond
	r, _ := newTestRedis(t, f, Options{}, RedisOptions{Timeout: timeout, BreakerFailures: 1})
	start := time.Now()
	_, err := r.Check(signIn("192.0.2.1"))
	if elapsed := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrRedisUnavailable) || elapsed > 5*time.Second {
		t.Fatalf("after %v: %v", elapsed, err)
	}
	if b := r.Breaker(); !b.Open {
		t.Fatalf("breaker %+v after a timeout", b)
	}

	f2 := &fakeRedis{gate: make(chan struct{})}
	defer close(f2.gate)
	r2, _ := newTestRedis(t, f2, Options{}, RedisOptions{Timeout: time.Minute, BreakerFailures: 1})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for i := 0; i < 1000 && len(f2.seen()) == 0; i++ {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	if _, err := r2.CheckContext(ctx, signIn("192.0.2.1")); err != context.Canceled {
		t.Fatalf("cancelled: %v", err)
	}
	if s, _ := r2.Stats(); r2.Breaker().Open || s.RemoteErrors != 0 || s.RemoteFallbacks != 0 {
		t.Errorf("a caller's cancel counted against Redis: %+v, %+v", r2.Breaker(), s)
	}
}

func TestRedisOptionsThatCannotWorkAreRefused(t *testing.T) {
	f := &fakeRedis{}
	if _, err := NewRedis(f, Options{}, RedisOptions{}); err != ErrSharedSeed {
		t.Errorf("no seed: %v", err)
	}
	if _, err := NewRedis(f, Options{Seed: testSeed}, RedisOptions{Prefix: "a{b"}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("brace in prefix: %v", err)
	}
	if _, err := NewRedis(nil, Options{Seed: testSeed}, RedisOptions{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("nil client: %v", err)
	}
	r, _ := newTestRedis(t, f, Options{}, RedisOptions{})
	r.Close()
	if _, err := r.Check(signIn("192.0.2.1")); err != ErrClosed {
		t.Errorf("after Close: %v", err)
	}
}

func TestRedisWaitSleepsOutTheDenialThenCharges(t *testing.T) {
	f := &fakeRedis{}
	r, clock := newTestRedis(t, f, Options{Pace: true}, RedisOptions{Exact: true})
	f.reply(deniedReply(2*time.Second, 700*time.Millisecond), allowedReply(0, time.Second), allowedReply(0, time.Second))
	start := clock.Now()
	tr := &Transport{Base: roundTripFunc(func(*http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}, nil
	}), Decider: r}
	req, _ := http.NewRequest("GET", "https://api.clerk.com/v1/users/me", nil)
	req.Header.Set("Authorization", "Bearer sk_test_x")
	resp, err := tr.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("RoundTrip: %v, %v", resp, err)
	}
	seen := f.seen()
	// A peek denied, a peek allowed, then the charge.
	if len(seen) != 3 || seen[0].args[0] != "1" || seen[1].args[0] != "1" || seen[2].args[0] != "0" || clock.Now()-start != 700*time.Millisecond {
		t.Errorf("calls %+v, slept %v", seen, clock.Now()-start)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestRedisLimiterIsSafeForConcurrentUse(t *testing.T) {
	f := &fakeRedis{}
	r, _ := newTestRedis(t, f, Options{}, RedisOptions{})
	f.reply(allowedReply(4, time.Second))
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				ip := "192.0.2." + strconv.Itoa(g)
				if d, err := r.Check(signIn(ip)); err != nil || !d.Allowed {
					t.Errorf("goroutine %d: %+v, %v", g, d, err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	if s, _ := r.Stats(); s.RemoteCalls != 1600 || s.Allowed != 1600 {
		t.Errorf("stats %+v", s)
	}
}
