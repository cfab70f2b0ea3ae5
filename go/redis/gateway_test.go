package ratecardredis

// Two gateway processes on one Redis: the test binary runs itself again
// as a gateway (an HTTP server behind ratecard's middleware on a
// RedisLimiter) when gatewayEnv names a Redis address.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	ratecard "github.com/ratecard/ratecard/go"
)

const gatewayEnv = "RATECARD_TEST_GATEWAY_REDIS"

func TestMain(m *testing.M) {
	if addr := os.Getenv(gatewayEnv); addr != "" {
		os.Exit(runGateway(addr))
	}
	os.Exit(m.Run())
}

// runGateway serves the Frontend and Backend middleware on one Redis,
// prints its two addresses, and runs until its stdin closes (the test
// ended, or died), two minutes at most.
func runGateway(addr string) int {
	l, err := ratecard.NewRedis(NewPool(newPool(nil, addr)), ratecard.Options{Seed: seed, Capacity: 4096},
		ratecard.RedisOptions{Timeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		return 1
	}
	o := ratecard.MiddlewareOptions{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	var addrs []string
	for _, h := range []http.Handler{ratecard.Frontend(l, ok, o), ratecard.Backend(l, ok, o)} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, "gateway:", err)
			return 1
		}
		addrs = append(addrs, ln.Addr().String())
		go http.Serve(ln, h)
	}
	fmt.Printf("frontend=%s backend=%s\n", addrs[0], addrs[1])
	done := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
	}
	return 0
}

type gateway struct {
	frontend, backend string
}

// startGateway runs a gateway process on the Redis at addr, killed by pid
// when the test ends.
func startGateway(t *testing.T, addr string) gateway {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), gatewayEnv+"="+addr)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- s
	}()
	var g gateway
	select {
	case s := <-line:
		if _, err := fmt.Sscanf(strings.TrimSpace(s), "frontend=%s backend=%s", &g.frontend, &g.backend); err != nil {
			t.Fatalf("gateway said %q: %v", s, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("gateway did not start within 30 s")
	}
	return g
}

// outcome is what one client got from a burst spread over the gateways.
type outcome struct {
	mu              sync.Mutex
	allowed, denied int
	first, last     time.Time
	rateLimit       string // a 429's RateLimit field
}

// burst sends n requests per client, client c's i-th to gateway (c+i) mod
// len(urls), from workers goroutines, and tallies the answers.
func burst(t *testing.T, urls []string, clients, n, workers int, prepare func(r *http.Request, client int)) []*outcome {
	t.Helper()
	out := make([]*outcome, clients)
	for c := range out {
		out[c] = &outcome{}
	}
	type job struct{ client, i int }
	jobs := make(chan job)
	hc := &http.Client{Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				method := "POST"
				req, _ := http.NewRequest(method, urls[(j.client+j.i)%len(urls)], nil)
				prepare(req, j.client)
				o := out[j.client]
				sent := time.Now()
				resp, err := hc.Do(req)
				got := time.Now()
				if err != nil {
					t.Errorf("client %d: %v", j.client, err)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				o.mu.Lock()
				if o.first.IsZero() || sent.Before(o.first) {
					o.first = sent
				}
				if got.After(o.last) {
					o.last = got
				}
				switch resp.StatusCode {
				case http.StatusOK:
					o.allowed++
				case http.StatusTooManyRequests:
					o.denied++
					if resp.Header.Get("Retry-After") == "" {
						t.Errorf("client %d: a 429 without Retry-After", j.client)
					}
					o.rateLimit = resp.Header.Get("RateLimit")
				default:
					t.Errorf("client %d: status %d", j.client, resp.StatusCode)
				}
				o.mu.Unlock()
			}
		}()
	}
	for i := 0; i < n; i++ {
		for c := 0; c < clients; c++ {
			jobs <- job{c, i}
		}
	}
	close(jobs)
	wg.Wait()
	return out
}

// bound is GCRA's most a rule admits in any interval of length L:
// burst + ⌊L/T⌋. The requests of one client were decided within
// [first, last] of this clock, so L = last − first bounds the interval of
// the server's clock they were decided in.
func (q quota) bound(o *outcome) int {
	return q.burst + int(o.last.Sub(o.first)/q.interval)
}

func TestTwoGatewayProcessesOnOneRedisAdmitOneLimitBetweenThem(t *testing.T) {
	srv := startRedis(t)
	gws := []gateway{startGateway(t, srv.addr()), startGateway(t, srv.addr())}
	local, err := ratecard.New(ratecard.Options{Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	q := quotaOf(t, local.Rules(), "fapi.sign_ins.create")

	var urls []string
	for _, g := range gws {
		urls = append(urls, "http://"+g.frontend+"/v1/client/sign_ins")
	}
	const clients, each = 6, 16
	out := burst(t, urls, clients, each, 12, func(r *http.Request, c int) {
		r.Header.Set("X-Forwarded-For", fmt.Sprintf("198.51.100.%d", c+1))
	})
	for c, o := range out {
		if o.allowed+o.denied != each || o.allowed > q.bound(o) || o.allowed < q.burst {
			t.Errorf("client %d: %d allowed, %d denied in %v; at most %d (burst %d + one per %v), at least the burst",
				c, o.allowed, o.denied, o.last.Sub(o.first), q.bound(o), q.burst, q.interval)
		}
		if !strings.Contains(o.rateLimit, `"`+q.name+`"`) {
			t.Errorf("client %d: RateLimit %q", c, o.rateLimit)
		}
	}
}

func TestDeniedRequestsChargeNoRuleAcrossConcurrentGateways(t *testing.T) {
	srv := startRedis(t)
	gws := []gateway{startGateway(t, srv.addr()), startGateway(t, srv.addr())}
	l := newLimiter(t, NewPool(newPool(t, srv.addr())), ratecard.Options{}, ratecard.RedisOptions{Timeout: 5 * time.Second})
	user := quotaOf(t, l.Rules(), "bapi.users.update")
	instance := quotaOf(t, l.Rules(), "bapi.instance.development")

	// PATCH /v1/users/{id} counts against the user's limit and the
	// instance's: a flood on one user is denied by the first, and every
	// denial must leave the second alone.
	var urls []string
	for _, g := range gws {
		urls = append(urls, "http://"+g.backend+"/v1/users/user_1")
	}
	const key = "sk_test_flood"
	const flood = 60
	o := burst(t, urls, 1, flood, 12, func(r *http.Request, _ int) {
		r.Method = "PATCH"
		r.Header.Set("Authorization", "Bearer "+key)
	})[0]
	if o.allowed > user.bound(o) || o.allowed < user.burst || o.denied != flood-o.allowed {
		t.Fatalf("%d allowed, %d denied in %v; at most %d", o.allowed, o.denied, o.last.Sub(o.first), user.bound(o))
	}
	if !strings.Contains(o.rateLimit, `"`+user.name+`"`) {
		t.Errorf("a denial's RateLimit %q does not name %s", o.rateLimit, user.name)
	}
	// GET /v1/users/me counts against the instance only: a peek shows its
	// units in use (replenishment can only hide some, never add).
	d, err := l.Peek(&ratecard.Request{API: ratecard.APIBackend, Method: "GET", Path: "/v1/users/me", SecretKey: key})
	if err != nil || d.Rule != instance.name {
		t.Fatalf("peek: %+v, %v", d, err)
	}
	if used := instance.burst - 1 - d.Remaining; used > o.allowed {
		t.Errorf("the instance has %d units in use after %d allowed and %d denied requests", used, o.allowed, o.denied)
	}
}
