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
// with sliding logs of its own (not this library), on a fake clock it
// shares with the client, and takes a random time to answer.
type clerkServer struct {
	*httptest.Server
	clock    *fakeClock
	maxDelay time.Duration

	mu      sync.Mutex
	rng     *rand.Rand
	logs    map[string][]time.Duration
	served  int
	limited int
	delays  []time.Duration
}

func newClerkServer(t *testing.T, clock *fakeClock, maxDelay time.Duration) *clerkServer {
	s := &clerkServer{clock: clock, maxDelay: maxDelay, rng: rand.New(rand.NewSource(1)), logs: map[string][]time.Duration{}}
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
		key   string
		limit int
	}
	limits := []limit{{"instance " + key, 100}}
	if strings.HasPrefix(key, "sk_live_") {
		limits[0].limit = 1000
	}
	parts := strings.Split(r.URL.Path, "/")
	if (r.Method == "PATCH" || r.Method == "PUT") && len(parts) >= 4 && parts[1] == "v1" && parts[2] == "users" {
		limits = append(limits, limit{"user " + key + " " + parts[3], 10})
	}

	s.mu.Lock()
	now := s.clock.Now()
	var wait time.Duration
	for _, l := range limits {
		if log := s.window(l.key, 10*time.Second, now); len(log) >= l.limit {
			if d := log[len(log)-l.limit] + 10*time.Second - now; d > wait {
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
	defer tr.Limiter.Close()
	tr.MaxRetries = -1 // a 429 would show, not be retried away

	start := clock.Now()
	statuses := bulkUpdate(t, &http.Client{Transport: tr}, srv.URL, 500, 10)
	elapsed := clock.Now() - start

	if served, limited := srv.counts(); statuses[http.StatusOK] != 500 || limited != 0 || served != 500 {
		t.Fatalf("statuses %v; server served %d, limited %d", statuses, served, limited)
	}
	// The job took no longer than it had to: each update went out 100ms
	// (the instance's 100 per 10s, paced) after the one before, or as soon
	// as that one was answered. Users, each updated every 10th time, are
	// never the binding limit.
	var ideal time.Duration
	delays := srv.answerDelays()
	for i, d := range delays {
		if i == len(delays)-1 || d > 100*time.Millisecond {
			ideal += d
		} else {
			ideal += 100 * time.Millisecond
		}
	}
	if elapsed != ideal || elapsed < 49900*time.Millisecond {
		t.Fatalf("the job took %v of the fake clock, ideal %v", elapsed, ideal)
	}
}

func TestUnpacedBulkJobDoesDraw429s(t *testing.T) {
	// The control: the same job without the Transport is limited, so the
	// server above does enforce.
	clock := newFakeClock()
	srv := newClerkServer(t, clock, 150*time.Millisecond)
	statuses := bulkUpdate(t, srv.Client(), srv.URL, 500, 10)
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
