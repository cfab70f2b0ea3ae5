package ratecard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clerkServer enforces Clerk's instance limit and per-user update limit
// with sliding logs of its own (not this library's algorithm, though the
// numbers are read from it), on a fake clock it shares with the client,
// and takes a random time to answer.
type clerkServer struct {
	*httptest.Server
	clock    *fakeClock
	maxDelay time.Duration
	limits   clerkLimits

	mu      sync.Mutex
	rng     *rand.Rand
	logs    map[string][]time.Duration
	served  int
	limited int
	delays  []time.Duration
}

// clerkLimits are the rules clerkServer enforces, as the library has them.
type clerkLimits struct{ dev, prod, user quota }

func readClerkLimits(t *testing.T) clerkLimits {
	l, _ := newTestLimiter(t, Options{})
	return clerkLimits{quotaOf(t, l, devRule), quotaOf(t, l, prodRule), quotaOf(t, l, userEditRule)}
}

func newClerkServer(t *testing.T, clock *fakeClock, maxDelay time.Duration) *clerkServer {
	s := &clerkServer{clock: clock, maxDelay: maxDelay, limits: readClerkLimits(t), rng: rand.New(rand.NewSource(1)), logs: map[string][]time.Duration{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// window is a sliding log: the times of the requests admitted in the
// last period, pruned as they age out; an entry exactly one period old is
// out.
func (s *clerkServer) window(key string, period time.Duration, now time.Duration) []time.Duration {
	log := s.logs[key]
	for len(log) > 0 && log[0] <= now-period {
		log = log[1:]
	}
	s.logs[key] = log
	return log
}

func (s *clerkServer) serve(w http.ResponseWriter, r *http.Request) {
	key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if key == "" {
		http.Error(w, "no key", http.StatusUnauthorized)
		return
	}
	type limit struct {
		key string
		q   quota
	}
	limits := []limit{{"instance " + key, s.limits.dev}}
	if strings.HasPrefix(key, "sk_live_") {
		limits[0].q = s.limits.prod
	}
	parts := strings.Split(r.URL.Path, "/")
	if (r.Method == "PATCH" || r.Method == "PUT") && len(parts) >= 4 && parts[1] == "v1" && parts[2] == "users" {
		limits = append(limits, limit{"user " + key + " " + parts[3], s.limits.user})
	}

	s.mu.Lock()
	now := s.clock.Now()
	var wait time.Duration
	for _, l := range limits {
		period := l.q.period()
		if log := s.window(l.key, period, now); len(log) >= l.q.limit {
			if d := log[len(log)-l.q.limit] + period - now; d > wait {
				wait = d
			}
		}
	}
	if wait > 0 {
		s.limited++
		s.mu.Unlock()
		w.Header().Set("Retry-After", fmt.Sprint(int((wait+time.Second-1)/time.Second)))
		w.WriteHeader(http.StatusTooManyRequests)
		return
	}
	for _, l := range limits {
		s.logs[l.key] = append(s.logs[l.key], now)
	}
	s.served++
	delay := time.Duration(s.rng.Int63n(int64(s.maxDelay) + 1))
	s.delays = append(s.delays, delay)
	s.mu.Unlock()

	body, _ := io.ReadAll(r.Body)
	s.clock.Advance(delay) // the time it takes to answer
	w.Write(body)
}

func (s *clerkServer) counts() (served, limited int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.served, s.limited
}

func (s *clerkServer) answerDelays() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.delays...)
}

// bulkUpdate sends n metadata updates spread over users through c and
// counts the answers by status.
func bulkUpdate(t *testing.T, c *http.Client, url string, n, users int) map[int]int {
	t.Helper()
	statuses := map[int]int{}
	for i := 0; i < n; i++ {
		body := fmt.Sprintf(`{"public_metadata":{"n":%d}}`, i)
		req, err := http.NewRequest("PATCH", fmt.Sprintf("%s/v1/users/user_%d/metadata", url, i%users), strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", testKey)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && string(got) != body {
			t.Fatalf("update %d: body %q", i, got)
		}
		statuses[resp.StatusCode]++
	}
	return statuses
}

func TestPacedBulkJobDrawsNo429s(t *testing.T) {
	clock := newFakeClock()
	srv := newClerkServer(t, clock, 150*time.Millisecond)
	tr, err := NewTransport(srv.Client().Transport, Options{Clock: clock.Now, Sleep: clock.Sleep})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	tr.MaxRetries = -1 // a 429 would show, not be retried away

	// Each user is updated every users-th time: no more often than the
	// per-user limit paces, so the instance limit binds.
	const n = 500
	step := srv.limits.dev.interval
	users := int(srv.limits.user.interval / step)
	if users < 1 || users > n/10 {
		t.Fatalf("limits %+v leave no room for this test", srv.limits)
	}
	start := clock.Now()
	statuses := bulkUpdate(t, &http.Client{Transport: tr}, srv.URL, n, users)
	elapsed := clock.Now() - start

	if served, limited := srv.counts(); statuses[http.StatusOK] != n || limited != 0 || served != n {
		t.Fatalf("statuses %v; server served %d, limited %d", statuses, served, limited)
	}
	// The job took no longer than it had to: each update went out one
	// step (the instance's interval, paced) after the one before, or as
	// soon as that one was answered.
	var ideal time.Duration
	delays := srv.answerDelays()
	for i, d := range delays {
		if i == len(delays)-1 || d > step {
			ideal += d
		} else {
			ideal += step
		}
	}
	if elapsed != ideal || elapsed < (n-1)*step {
		t.Fatalf("the job took %v of the fake clock, ideal %v", elapsed, ideal)
	}
}

func TestUnpacedBulkJobDoesDraw429s(t *testing.T) {
	// The control: the same job without the Transport is limited, so the
	// server above does enforce.
	clock := newFakeClock()
	srv := newClerkServer(t, clock, 150*time.Millisecond)
	statuses := bulkUpdate(t, srv.Client(), srv.URL, 500, int(srv.limits.user.interval/srv.limits.dev.interval))
	if statuses[http.StatusTooManyRequests] == 0 {
		t.Fatalf("statuses %v", statuses)
	}
}

// scripted is a server whose answers the test picks, one per request.
type scripted struct {
	*httptest.Server
	mu      sync.Mutex
	answers []int
	bodies  []string
	at      []time.Duration
}

func newScripted(t *testing.T, clock *fakeClock, answers ...int) *scripted {
	s := &scripted{answers: answers}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.bodies = append(s.bodies, string(b))
		s.at = append(s.at, clock.Now())
		status := http.StatusOK
		if len(s.answers) > 0 {
			status, s.answers = s.answers[0], s.answers[1:]
		}
		s.mu.Unlock()
		if status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "7")
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *scripted) requests() ([]string, []time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.bodies...), append([]time.Duration(nil), s.at...)
}

func newTestTransport(t *testing.T, base http.RoundTripper) (*Transport, *fakeClock) {
	l, clock := newTestLimiter(t, Options{Pace: true})
	return &Transport{Base: base, Limiter: l}, clock
}

func TestTransportHonoursAServers429(t *testing.T) {
	tr, clock := newTestTransport(t, nil)
	srv := newScripted(t, clock, 429, 429, 200)
	tr.Base = srv.Client().Transport
	req, _ := http.NewRequest("POST", srv.URL+"/v1/invitations", bytes.NewReader([]byte("the body")))
	req.Header.Set("Authorization", liveKey)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	bodies, at := srv.requests()
	if resp.StatusCode != http.StatusOK || len(bodies) != 3 || bodies[2] != "the body" {
		t.Fatalf("status %d, server saw %q", resp.StatusCode, bodies)
	}
	// Each 429 said 7s; invitations pace at one per 36s anyway.
	if at[1]-at[0] < 7*time.Second || at[2]-at[1] < 7*time.Second {
		t.Fatalf("sent at %v", at)
	}
}

func TestTransportGivesUpAfterMaxRetries(t *testing.T) {
	tr, clock := newTestTransport(t, nil)
	srv := newScripted(t, clock, 429, 429, 429, 429, 429, 429)
	tr.Base = srv.Client().Transport
	req, _ := http.NewRequest("GET", srv.URL+"/v1/users", nil)
	req.Header.Set("Authorization", liveKey)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if bodies, _ := srv.requests(); resp.StatusCode != http.StatusTooManyRequests || len(bodies) != 1+DefaultMaxRetries {
		t.Fatalf("status %d after %d requests", resp.StatusCode, len(bodies))
	}

	tr.MaxRetries = -1
	resp, err = tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if bodies, _ := srv.requests(); resp.StatusCode != http.StatusTooManyRequests || len(bodies) != 2+DefaultMaxRetries {
		t.Fatalf("MaxRetries -1: status %d, %d requests", resp.StatusCode, len(bodies))
	}
}

func TestTransportDoesNotResendABodyItCannotReplay(t *testing.T) {
	tr, clock := newTestTransport(t, nil)
	srv := newScripted(t, clock, 429, 200)
	tr.Base = srv.Client().Transport
	req, _ := http.NewRequest("POST", srv.URL+"/v1/invitations", io.NopCloser(strings.NewReader("once")))
	req.Header.Set("Authorization", liveKey)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if bodies, _ := srv.requests(); resp.StatusCode != http.StatusTooManyRequests || len(bodies) != 1 {
		t.Fatalf("status %d, server saw %q", resp.StatusCode, bodies)
	}
}

type closeRecorder struct {
	io.Reader
	closed atomic.Bool
}

func (c *closeRecorder) Close() error { c.closed.Store(true); return nil }

func TestTransportHonoursTheRequestContext(t *testing.T) {
	// A real clock and a rule of one request an hour: the second request
	// would wait an hour.
	l, err := New(Options{Pace: true, Rules: []Rule{{Name: "slow", API: APIBackend, Scope: ScopeInstance, Routes: []Route{{Path: "*"}}, Limit: 1, Period: time.Hour}}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var sent atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { sent.Add(1) }))
	defer srv.Close()
	tr := &Transport{Base: srv.Client().Transport, Limiter: l}
	newReq := func(ctx context.Context) (*http.Request, *closeRecorder) {
		body := &closeRecorder{Reader: strings.NewReader("x")}
		req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/v1/anything", body)
		req.Header.Set("Authorization", testKey)
		return req, body
	}
	req, _ := newReq(context.Background())
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	began := time.Now()
	req, body := newReq(ctx)
	if _, err := tr.RoundTrip(req); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	if took := time.Since(began); took > 5*time.Second || !body.closed.Load() {
		t.Fatalf("took %v; body closed %v", took, body.closed.Load())
	}

	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, body = newReq(ctx)
	if _, err := tr.RoundTrip(req); !errors.Is(err, context.DeadlineExceeded) || !body.closed.Load() {
		t.Fatalf("deadline before the wait ends: %v; body closed %v", err, body.closed.Load())
	}
	if sent.Load() != 1 {
		t.Fatalf("%d requests sent", sent.Load())
	}
}

func TestTransportErrors(t *testing.T) {
	tr, clock := newTestTransport(t, nil)
	srv := newScripted(t, clock)
	tr.Base = srv.Client().Transport

	body := &closeRecorder{Reader: strings.NewReader("x")}
	req, _ := http.NewRequest("POST", srv.URL+"/v1/users", body)
	if _, err := (&http.Client{Transport: tr}).Do(req); !errors.Is(err, ErrMissingSubject) || !body.closed.Load() {
		t.Fatalf("no Authorization: %v; body closed %v", err, body.closed.Load())
	}
	if _, err := (&Transport{}).RoundTrip(req); err == nil {
		t.Fatal("a Transport without a Limiter sent")
	}
	if bodies, _ := srv.requests(); len(bodies) != 0 {
		t.Fatalf("sent %d", len(bodies))
	}
	tr.CloseIdleConnections()
}

func TestRetryAfterValues(t *testing.T) {
	for v, want := range map[string]time.Duration{
		"3": 3 * time.Second, " 0 ": 0, "": time.Second, "soon": time.Second, "-1": time.Second,
		"Mon, 02 Jan 2006 15:04:05 GMT": 0,
	} {
		if got := retryAfter(v); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", v, got, want)
		}
	}
	if got := retryAfter(time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)); got < 59*time.Minute || got > time.Hour {
		t.Errorf("a date an hour ahead: %v", got)
	}
}

func TestTransportCloseClosesTheLimiterItMade(t *testing.T) {
	clock := newFakeClock()
	srv := newScripted(t, clock)
	tr, err := NewTransport(srv.Client().Transport, Options{Clock: clock.Now, Sleep: clock.Sleep})
	if err != nil {
		t.Fatal(err)
	}
	send := func() (*closeRecorder, error) {
		body := &closeRecorder{Reader: strings.NewReader("x")}
		req, _ := http.NewRequest("POST", srv.URL+"/v1/invitations", body)
		req.Header.Set("Authorization", liveKey)
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return body, err
	}
	if _, err := send(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := tr.Limiter.Check(signIn("192.0.2.1")); err != ErrClosed {
		t.Fatalf("the Transport's own limiter after Close: %v", err)
	}
	body, err := send()
	if !errors.Is(err, ErrTransportClosed) || !body.closed.Load() || !strings.Contains(err.Error(), "ratecard: transport closed") {
		t.Fatalf("after Close: %v; body closed %v", err, body.closed.Load())
	}
	if bodies, _ := srv.requests(); len(bodies) != 1 {
		t.Fatalf("%d requests sent", len(bodies))
	}
}

func TestTransportCloseLeavesACallersLimiterOpen(t *testing.T) {
	tr, clock := newTestTransport(t, nil)
	srv := newScripted(t, clock)
	tr.Base = srv.Client().Transport
	tr.Close()
	if _, err := tr.Limiter.Check(signIn("192.0.2.1")); err != nil {
		t.Fatalf("the caller's limiter after Close: %v", err)
	}
	req, _ := http.NewRequest("GET", srv.URL+"/v1/users", nil)
	req.Header.Set("Authorization", liveKey)
	if _, err := tr.RoundTrip(req); err != ErrTransportClosed {
		t.Fatalf("RoundTrip after Close: %v", err)
	}
}

func TestTransportCloseEndsTheWaits(t *testing.T) {
	// A real clock and one request an hour: the second waits until Close.
	rules := []Rule{{Name: "hourly", API: APIBackend, Scope: ScopeInstance, Routes: []Route{{Path: "*"}}, Limit: 1, Period: time.Hour}}
	var sent atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { sent.Add(1) }))
	defer srv.Close()
	tr, err := NewTransport(srv.Client().Transport, Options{Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	newReq := func() (*http.Request, *closeRecorder) {
		body := &closeRecorder{Reader: strings.NewReader("x")}
		req, _ := http.NewRequest("POST", srv.URL+"/v1/anything", body)
		req.Header.Set("Authorization", testKey)
		return req, body
	}
	req, _ := newReq()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	const waiters = 4
	errs := make(chan error, waiters)
	bodies := make([]*closeRecorder, waiters)
	for i := range bodies {
		req, body := newReq()
		bodies[i] = body
		go func() {
			_, err := tr.RoundTrip(req)
			errs <- err
		}()
	}
	time.Sleep(20 * time.Millisecond)
	began := time.Now()
	tr.Close()
	for i := 0; i < waiters; i++ {
		select {
		case err := <-errs:
			if err != ErrTransportClosed {
				t.Errorf("a waiting round trip ended with %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a waiting round trip outlived Close by 10s")
		}
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("the waits ended %v after Close", took)
	}
	for i, b := range bodies {
		if !b.closed.Load() {
			t.Errorf("body %d not closed", i)
		}
	}
	if sent.Load() != 1 {
		t.Fatalf("%d requests sent", sent.Load())
	}
}

// Round trips and Closes from many goroutines: each round trip is sent or
// fails with ErrTransportClosed, none is sent once Close has returned, and
// the race detector (go test -race) sees no race.
func TestTransportCloseRacesWithRoundTrips(t *testing.T) {
	clock := newFakeClock()
	srv := newScripted(t, clock)
	tr, err := NewTransport(srv.Client().Transport, Options{Clock: clock.Now, Sleep: clock.Sleep})
	if err != nil {
		t.Fatal(err)
	}
	const goroutines = 8
	var closed atomic.Bool
	var sent, sentAfterClose, failed atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			// Until the first failure; the bound is only a backstop.
			for i := 0; i < 100000; i++ {
				wasClosed := closed.Load()
				req, _ := http.NewRequest("GET", fmt.Sprintf("%s/v1/users/user_%d", srv.URL, g), nil)
				req.Header.Set("Authorization", liveKey)
				resp, err := tr.RoundTrip(req)
				if err == ErrTransportClosed {
					failed.Add(1)
					return
				}
				if err != nil {
					t.Errorf("round trip: %v", err)
					return
				}
				resp.Body.Close()
				sent.Add(1)
				if wasClosed {
					sentAfterClose.Add(1)
				}
			}
		}(g)
	}
	for c := 0; c < 2; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for deadline := time.Now().Add(5 * time.Second); sent.Load() < 4*goroutines && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			tr.Close()
			closed.Store(true)
		}()
	}
	wg.Wait()
	if sentAfterClose.Load() != 0 || failed.Load() != goroutines || sent.Load() == 0 {
		t.Fatalf("%d sent, %d of them after Close; %d of %d goroutines failed", sent.Load(), sentAfterClose.Load(), failed.Load(), goroutines)
	}
}
