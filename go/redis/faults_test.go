package ratecardredis

// A Redis that fails: killed and restarted, its scripts flushed, stalled
// past the timeout, answering in the wrong shape, holding a key of the
// wrong type. Each gives the policy's answer and an error the host can
// log, never a panic or a wait past the timeout, and the state is
// consistent once Redis is back. Then expiry, the denial cache against a
// real server, and the metrics page.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	ratecard "github.com/ratecard/ratecard/go"
)

// logged collects what OnError was told.
type logged struct {
	mu   sync.Mutex
	errs []error
}

func (l *logged) add(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, err)
}

func (l *logged) all() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]error(nil), l.errs...)
}

func TestKilledRedisAnswersUnderThePolicyThenRecovers(t *testing.T) {
	for _, policy := range []ratecard.RedisPolicy{ratecard.RedisFailClosed, ratecard.RedisFailOpen, ratecard.RedisFallback} {
		t.Run(fmt.Sprint("policy ", policy), func(t *testing.T) {
			srv := startRedis(t)
			client := &counted{RedisClient: NewPool(newPool(t, srv.addr()))}
			var log logged
			timeout, cooldown := 500*time.Millisecond, 200*time.Millisecond
			l := newLimiter(t, client, ratecard.Options{}, ratecard.RedisOptions{Policy: policy, Timeout: timeout,
				BreakerFailures: 2, BreakerCooldown: cooldown, OnError: log.add})
			q := quotaOf(t, l.Rules(), "fapi.sign_ins.create")
			for i := 0; i < 2; i++ {
				if d, err := l.Check(signIn("192.0.2.1")); err != nil || !d.Allowed {
					t.Fatalf("before the kill: %+v, %v", d, err)
				}
			}
			srv.stop()

			// Two failed round trips open the breaker; then no round trip at
			// all. Every answer is the policy's, at once or by the timeout.
			calls := client.calls()
			allowed := 0
			for i := 0; i < q.burst+3; i++ {
				start := time.Now()
				d, err := l.Check(signIn("192.0.2.1"))
				if elapsed := time.Since(start); elapsed > timeout+time.Second {
					t.Fatalf("answer %d after %v", i, elapsed)
				}
				switch policy {
				case ratecard.RedisFailClosed:
					if !errors.Is(err, ratecard.ErrRedisUnavailable) {
						t.Fatalf("fail closed, answer %d: %+v, %v", i, d, err)
					}
					if i >= 2 && !errors.Is(err, ratecard.ErrBreakerOpen) {
						t.Fatalf("fail closed, answer %d with the breaker open: %v", i, err)
					}
				case ratecard.RedisFailOpen:
					if err != nil || !d.Allowed || d.Rule != "" {
						t.Fatalf("fail open, answer %d: %+v, %v", i, d, err)
					}
				case ratecard.RedisFallback:
					if err != nil || d.Rule != q.name {
						t.Fatalf("fallback, answer %d: %+v, %v", i, d, err)
					}
				}
				if d.Allowed {
					allowed++
				}
			}
			if n := client.calls() - calls; n != 2 {
				t.Errorf("%d round trips to a dead Redis; the breaker should have stopped them after 2", n)
			}
			if errs := log.all(); len(errs) != 2 || !strings.Contains(errs[0].Error(), "connect") && !strings.Contains(errs[0].Error(), "EOF") &&
				!strings.Contains(errs[0].Error(), "reset") && !strings.Contains(errs[0].Error(), "broken pipe") {
				t.Errorf("logged %v", errs)
			}
			// This host's own table: a fresh burst (per-host limits).
			if policy == ratecard.RedisFallback && allowed != q.burst {
				t.Errorf("fallback allowed %d, want the local burst %d", allowed, q.burst)
			}
			s, _ := l.Stats()
			if s.RemoteErrors != 2 || s.RemoteFallbacks != uint64(q.burst+3) || s.RemoteCalls != 2 {
				t.Errorf("stats %+v", s)
			}

			// Back on the same port: after the cooldown a probe finds it,
			// the script is loaded again, and Redis's (empty) state rules.
			if err := srv.start(); err != nil {
				t.Fatal(err)
			}
			var d ratecard.Decision
			var err error
			deadline := time.Now().Add(10 * time.Second)
			for {
				time.Sleep(cooldown / 4)
				if d, err = l.Check(signIn("192.0.2.2")); err == nil && d.Rule != "" && !l.Breaker().Open {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no recovery within 10 s: %+v, %v, %+v", d, err, l.Breaker())
				}
			}
			if !d.Allowed || d.Remaining != q.burst-1 {
				t.Fatalf("first decision after the restart: %+v", d)
			}
			for i := 1; i <= q.burst; i++ {
				d, err := l.Check(signIn("192.0.2.2"))
				if err != nil || d.Allowed != (i < q.burst) {
					t.Fatalf("after recovery, request %d: %+v, %v", i+1, d, err)
				}
			}
		})
	}
}

func TestScriptFlushIsReloadedWithoutAnErrorTheCallerSees(t *testing.T) {
	srv := startRedis(t)
	client := &counted{RedisClient: NewPool(newPool(t, srv.addr()))}
	var log logged
	l := newLimiter(t, client, ratecard.Options{}, ratecard.RedisOptions{OnError: log.add})
	q := quotaOf(t, l.Rules(), "fapi.sign_ins.create")
	for i := 0; i < 3; i++ {
		if i == 1 {
			srv.must("SCRIPT", "FLUSH")
		}
		d, err := l.Check(signIn("192.0.2.1"))
		if err != nil || !d.Allowed || d.Remaining != q.burst-1-i {
			t.Fatalf("request %d: %+v, %v", i, d, err)
		}
	}
	// The first call loaded the script (a fresh server), and the one after
	// the flush again: EVALSHA, NOSCRIPT, EVAL.
	if e, s := client.eval.Load(), client.evalSha.Load(); e != 2 || s != 3 {
		t.Errorf("%d EVALSHA and %d EVAL", s, e)
	}
	if st, _ := l.Stats(); st.RemoteErrors != 0 || st.RemoteCalls != 3 || len(log.all()) != 0 {
		t.Errorf("stats %+v, logged %v", st, log.all())
	}
}

func TestStalledRedisReturnsAtTheTimeoutAndOpensTheBreaker(t *testing.T) {
	srv := startRedis(t, "--enable-debug-command", "local")
	client := &counted{RedisClient: NewPool(newPool(t, srv.addr()))}
	var log logged
	timeout, failures := 200*time.Millisecond, 3
	l := newLimiter(t, client, ratecard.Options{}, ratecard.RedisOptions{Timeout: timeout,
		BreakerFailures: failures, BreakerCooldown: 300 * time.Millisecond, OnError: log.add})
	q := quotaOf(t, l.Rules(), "fapi.sign_ins.create")
	if d, err := l.Check(signIn("192.0.2.1")); err != nil || !d.Allowed {
		t.Fatalf("before the stall: %+v, %v", d, err)
	}
	calls := client.calls()

	// DEBUG SLEEP blocks the whole server; its own reply comes after it.
	stall := 2 * time.Second
	c, err := net.Dial("tcp", srv.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "*3\r\n$5\r\nDEBUG\r\n$5\r\nSLEEP\r\n$1\r\n%d\r\n", stall/time.Second)
	stalled := time.Now()
	time.Sleep(100 * time.Millisecond)

	for i := 0; i < failures; i++ {
		start := time.Now()
		_, err := l.Check(signIn("192.0.2.1"))
		elapsed := time.Since(start)
		var re *ratecard.RedisError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), "deadline exceeded") || re.Opened != (i == failures-1) {
			t.Fatalf("call %d during the stall: %v", i, err)
		}
		if elapsed > timeout+time.Second {
			t.Fatalf("call %d returned after %v, the timeout is %v", i, elapsed, timeout)
		}
	}
	for i := 0; i < 10; i++ {
		start := time.Now()
		if _, err := l.Check(signIn("192.0.2.1")); !errors.Is(err, ratecard.ErrBreakerOpen) {
			t.Fatalf("with the breaker open: %v", err)
		}
		if elapsed := time.Since(start); elapsed > timeout {
			t.Fatalf("an open breaker answered after %v", elapsed)
		}
	}
	if n := client.calls() - calls; n != int64(failures) {
		t.Errorf("%d round trips during the stall; want %d", n, failures)
	}
	if b := l.Breaker(); !b.Open || b.Opens != 1 || b.Rejected < 10 {
		t.Errorf("breaker %+v", b)
	}
	if n := len(log.all()); n != failures {
		t.Errorf("%d errors logged", n)
	}

	// Once the server wakes, a probe (another client's) closes the
	// breaker.
	deadline := stalled.Add(stall + 10*time.Second)
	for {
		time.Sleep(100 * time.Millisecond)
		d, err := l.Check(signIn("192.0.2.2"))
		if err == nil && d.Allowed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery: %+v, %v", d, err)
		}
	}
	if l.Breaker().Open {
		t.Errorf("breaker still open")
	}
	// The calls that timed out may still have run once the server woke (a
	// timeout says nothing of that): the state holds the one charge
	// acknowledged and at most those: stricter, never looser.
	d, err := l.Peek(signIn("192.0.2.1"))
	if used := q.burst - 1 - d.Remaining; err != nil || used < 1 || used > 1+failures {
		t.Errorf("after the stall: %+v, %v (%d units in use)", d, err, used)
	}
}

// stub is a server on loopback that answers every command with reply.
func stub(t *testing.T, reply string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				r := bufio.NewReader(c)
				for readCommand(r) == nil {
					if _, err := io.WriteString(c, reply); err != nil {
						return
					}
				}
			}(c)
		}
	}()
	return ln.Addr().String()
}

// readCommand reads one RESP command (an array of bulk strings).
func readCommand(r *bufio.Reader) error {
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "*") {
		return fmt.Errorf("not a command: %q", line)
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil || n < 0 || n > 1024 {
		return fmt.Errorf("bad count %q", line)
	}
	for i := 0; i < n; i++ {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		size, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "$")))
		if err != nil || size < 0 || size > 1<<20 {
			return fmt.Errorf("bad bulk %q", line)
		}
		if _, err := io.CopyN(io.Discard, r, int64(size)+2); err != nil {
			return err
		}
	}
	return nil
}

func TestRepliesOfTheWrongShapeAnswerUnderThePolicyWithAnError(t *testing.T) {
	for _, tc := range []struct {
		name, reply string
		// The library saw the integers and refused them (ErrRemoteBadReply),
		// or the client found no array of integers at all.
		library bool
	}{
		{"too few integers", "*2\r\n:1\r\n:1\r\n", true},
		{"an unknown reply format", "*6\r\n:9\r\n:1\r\n:1\r\n:4\r\n:2000000000\r\n:0\r\n", true},
		{"an outcome code out of range", "*6\r\n:1\r\n:1\r\n:7\r\n:4\r\n:2000000000\r\n:0\r\n", true},
		{"negative nanoseconds", "*6\r\n:1\r\n:1\r\n:1\r\n:4\r\n:-5\r\n:0\r\n", true},
		{"a status", "+OK\r\n", false},
		{"an integer", ":5\r\n", false},
		{"a nil", "$-1\r\n", false},
		{"a string in the array", "*6\r\n:1\r\n:1\r\n$2\r\nhi\r\n:4\r\n:2000000000\r\n:0\r\n", false},
		{"an error", "-ERR unknown command\r\n", false},
	} {
		for _, policy := range []ratecard.RedisPolicy{ratecard.RedisFailClosed, ratecard.RedisFallback} {
			var log logged
			l := newLimiter(t, NewPool(newPool(t, stub(t, tc.reply))), ratecard.Options{},
				ratecard.RedisOptions{Policy: policy, Timeout: time.Second, BreakerFailures: -1, OnError: log.add})
			d, err := l.Check(signIn("192.0.2.1"))
			errs := log.all()
			if len(errs) != 1 || !errors.Is(errs[0], ratecard.ErrRedisUnavailable) || errors.Is(errs[0], ratecard.ErrRemoteBadReply) != tc.library {
				t.Errorf("%s, policy %d: logged %v", tc.name, policy, errs)
			}
			switch policy {
			case ratecard.RedisFailClosed:
				if err == nil || err != errs[0] {
					t.Errorf("%s: fail closed answered %+v, %v", tc.name, d, err)
				}
			case ratecard.RedisFallback:
				if err != nil || !d.Allowed || d.Rule != "fapi.sign_ins.create" {
					t.Errorf("%s: fallback answered %+v, %v", tc.name, d, err)
				}
			}
			if s, _ := l.Stats(); s.RemoteErrors != 1 || s.RemoteCalls != 0 || s.RemoteFallbacks != 1 {
				t.Errorf("%s, policy %d: stats %+v", tc.name, policy, s)
			}
		}
	}
}

func TestKeyOfTheWrongTypeIsAnErrorUntilItIsFixed(t *testing.T) {
	srv := startRedis(t)
	var log logged
	const prefix = "wt:"
	l := newLimiter(t, NewPool(newPool(t, srv.addr())), ratecard.Options{},
		ratecard.RedisOptions{Prefix: prefix, BreakerFailures: -1, OnError: log.add})
	q := quotaOf(t, l.Rules(), "fapi.sign_ins.create")
	if d, err := l.Check(signIn("192.0.2.1")); err != nil || !d.Allowed {
		t.Fatalf("%+v, %v", d, err)
	}
	keys := srv.keys(prefix)
	if len(keys) != 1 {
		t.Fatalf("keys %q", keys)
	}
	srv.must("DEL", keys[0])
	srv.must("HSET", keys[0], "f", "v")
	for i := 0; i < 3; i++ {
		_, err := l.Check(signIn("192.0.2.1"))
		if !errors.Is(err, ratecard.ErrRedisUnavailable) || !strings.Contains(err.Error(), "WRONGTYPE") {
			t.Fatalf("on a hash: %v", err)
		}
	}
	if n := len(log.all()); n != 3 {
		t.Errorf("%d errors logged", n)
	}
	if typ, _ := redis.String(srv.do("TYPE", keys[0])); typ != "hash" {
		t.Errorf("the script wrote over the hash: %s", typ)
	}
	srv.must("DEL", keys[0])
	if d, err := l.Check(signIn("192.0.2.1")); err != nil || !d.Allowed || d.Remaining != q.burst-1 {
		t.Fatalf("once fixed: %+v, %v", d, err)
	}
}

func TestKeyIsGoneOnceItsQuotaIsWholeAgain(t *testing.T) {
	srv := startRedis(t)
	const prefix = "exp:"
	rules := []ratecard.Rule{{
		Name: "t.fast", API: ratecard.APIFrontend, Scope: ratecard.ScopeClientIP,
		Routes: []ratecard.Route{{Method: "POST", Path: "/v1/client/sign_ins"}},
		Limit:  4, Period: 400 * time.Millisecond,
	}}
	l := newLimiter(t, NewPool(newPool(t, srv.addr())), ratecard.Options{Rules: rules}, ratecard.RedisOptions{Prefix: prefix})
	var d ratecard.Decision
	for i := 0; i < 2; i++ {
		var err error
		if d, err = l.Check(signIn("192.0.2.1")); err != nil || !d.Allowed {
			t.Fatalf("%+v, %v", d, err)
		}
	}
	keys := srv.keys(prefix)
	if len(keys) != 1 {
		t.Fatalf("keys %q", keys)
	}
	// Two units of T = 100 ms in use: the key lives until they are back.
	pttl, _ := redis.Int64(srv.do("PTTL", keys[0]))
	if pttl <= 0 || time.Duration(pttl)*time.Millisecond > d.Reset+time.Millisecond {
		t.Fatalf("PTTL %d ms, reset %v", pttl, d.Reset)
	}
	start := time.Now()
	for len(srv.keys(prefix)) != 0 {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("key still there after 5 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d, err := l.Check(signIn("192.0.2.1")); err != nil || d.Remaining != 3 {
		t.Errorf("after expiry: %+v, %v", d, err)
	}
}

func TestFloodFromADeniedClientMakesNoRoundTrip(t *testing.T) {
	srv := startRedis(t)
	client := &counted{RedisClient: NewPool(newPool(t, srv.addr()))}
	l := newLimiter(t, client, ratecard.Options{}, ratecard.RedisOptions{})
	q := quotaOf(t, l.Rules(), "fapi.sign_ins.create")
	for i := 0; i <= q.burst; i++ {
		if d, err := l.Check(signIn("192.0.2.1")); err != nil || d.Allowed != (i < q.burst) {
			t.Fatalf("request %d: %+v, %v", i, d, err)
		}
	}
	calls := client.calls()
	const flood = 10000
	for i := 0; i < flood; i++ {
		if d, err := l.Check(signIn("192.0.2.1")); err != nil || d.Allowed || d.RetryAfter <= 0 {
			t.Fatalf("flood %d: %+v, %v", i, d, err)
		}
	}
	if n := client.calls() - calls; n != 0 {
		t.Errorf("the flood made %d round trips", n)
	}
	if s, _ := l.Stats(); s.RemoteCached != flood || s.RemoteCalls != uint64(q.burst+1) {
		t.Errorf("stats %+v", s)
	}
}

func TestMetricsPageOfARedisLimiterPassesPromtoolWithItsCounts(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (apt-get install prometheus): %v", err)
	}
	srv := startRedis(t)
	l := newLimiter(t, NewPool(newPool(t, srv.addr())), ratecard.Options{}, ratecard.RedisOptions{BreakerFailures: -1})
	q := quotaOf(t, l.Rules(), "fapi.sign_ins.create")
	for i := 0; i < q.burst+4; i++ {
		l.Check(signIn("192.0.2.1"))
	}
	srv.stop()
	l.Check(signIn("192.0.2.2"))
	page, err := l.Metrics("gateway")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(string(page))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s\n%s", err, out, page)
	}
	s, _ := l.Stats()
	for name, want := range map[string]uint64{
		`ratecard_remote_calls_total{zone="gateway"}`:                                            uint64(q.burst + 1),
		`ratecard_remote_cached_denials_total{zone="gateway"}`:                                   3,
		`ratecard_remote_errors_total{zone="gateway"}`:                                           1,
		`ratecard_remote_fallbacks_total{zone="gateway"}`:                                        1,
		`ratecard_decisions_total{zone="gateway",rule="fapi.sign_ins.create",outcome="allowed"}`: uint64(q.burst),
		`ratecard_decisions_total{zone="gateway",rule="fapi.sign_ins.create",outcome="limited"}`: 4,
	} {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\d+)$`).FindSubmatch(page)
		if m == nil || string(m[1]) != strconv.FormatUint(want, 10) {
			t.Errorf("%s: %q, want %d (stats %+v)", name, m, want, s)
		}
	}
}
