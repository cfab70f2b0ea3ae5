package ratecardredis

// Real redis-servers for the tests: started on 127.0.0.1, on a free port,
// without persistence, in a scratch directory, and stopped by pid when the
// test ends (failed or not). Every wait is bounded.

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	ratecard "github.com/ratecard/ratecard/go"
)

// seed is the hash seed every gateway of these tests shares.
var seed = []byte("gateways' seed!!")

type server struct {
	t      testing.TB
	port   int
	dir    string
	extra  []string
	cmd    *exec.Cmd
	exited chan struct{}
}

// startRedis runs a redis-server with extra arguments, stopped when the
// test ends.
func startRedis(t testing.TB, extra ...string) *server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server not found (apt-get install redis-server): %v", err)
	}
	s := &server{t: t, dir: t.TempDir(), extra: extra}
	t.Cleanup(s.stop)
	var last error
	// A port found free may be taken before the server binds it: retry.
	for attempt := 0; attempt < 5; attempt++ {
		if s.port, last = freePort(strings.Contains(strings.Join(extra, " "), "cluster-enabled")); last != nil {
			continue
		}
		if last = s.start(); last == nil {
			return s
		}
	}
	t.Fatalf("redis-server did not start: %v", last)
	return nil
}

// freePort is a port free on 127.0.0.1 now; for a cluster node also its
// bus port (port + 10000).
func freePort(bus bool) (int, error) {
	for attempt := 0; attempt < 20; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !bus {
			return port, nil
		}
		if port+10000 > 65535 {
			continue
		}
		b, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
		if err != nil {
			continue
		}
		b.Close()
		return port, nil
	}
	return 0, fmt.Errorf("no free port")
}

// start runs the server on s.port and waits for its PONG (10 s at most).
func (s *server) start() error {
	args := []string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir,
		"--logfile", "redis.log", "--daemonize", "no"}
	s.cmd = exec.Command("redis-server", append(args, s.extra...)...)
	if err := s.cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	s.exited = exited
	go func(cmd *exec.Cmd) { cmd.Wait(); close(exited) }(s.cmd)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			log, _ := os.ReadFile(s.dir + "/redis.log")
			return fmt.Errorf("redis-server exited: %s", log)
		default:
		}
		if v, err := s.do("PING"); err == nil && v == "PONG" {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.stop()
	return fmt.Errorf("no PONG from port %d within 10 s", s.port)
}

// stop kills the server by its pid and waits for it to exit.
func (s *server) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Kill()
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.t.Errorf("redis-server pid %d did not exit", s.cmd.Process.Pid)
	}
	s.cmd = nil
}

func (s *server) addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// do runs one command on a connection of its own.
func (s *server) do(cmd string, args ...interface{}) (interface{}, error) {
	c, err := redis.Dial("tcp", s.addr(), redis.DialConnectTimeout(time.Second),
		redis.DialReadTimeout(10*time.Second), redis.DialWriteTimeout(time.Second))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	v, err := c.Do(cmd, args...)
	if s, ok := v.(string); ok || err != nil {
		return s, err
	}
	return v, err
}

// must is do, failing the test on an error.
func (s *server) must(cmd string, args ...interface{}) interface{} {
	s.t.Helper()
	v, err := s.do(cmd, args...)
	if err != nil {
		s.t.Fatalf("%s %v on %s: %v", cmd, args, s.addr(), err)
	}
	return v
}

// keys lists the keys under prefix (SCAN, bounded).
func (s *server) keys(prefix string) []string {
	s.t.Helper()
	var out []string
	cursor := "0"
	for i := 0; i < 10000; i++ {
		v, err := redis.Values(s.do("SCAN", cursor, "MATCH", prefix+"*", "COUNT", 1000))
		if err != nil {
			s.t.Fatalf("SCAN: %v", err)
		}
		cursor, _ = redis.String(v[0], nil)
		ks, _ := redis.Strings(v[1], nil)
		out = append(out, ks...)
		if cursor == "0" {
			return out
		}
	}
	s.t.Fatalf("SCAN did not finish")
	return nil
}

// newPool is a redigo pool of addr whose every wait is bounded.
func newPool(t testing.TB, addr string) *redis.Pool {
	p := &redis.Pool{
		MaxIdle:     32,
		IdleTimeout: time.Minute,
		DialContext: func(ctx context.Context) (redis.Conn, error) {
			return redis.DialContext(ctx, "tcp", addr, redis.DialConnectTimeout(time.Second),
				redis.DialWriteTimeout(time.Second))
		},
	}
	if t != nil {
		t.Cleanup(func() { p.Close() })
	}
	return p
}

// counted counts the calls that reach a client.
type counted struct {
	ratecard.RedisClient
	evalSha, eval atomic.Int64
}

func (c *counted) EvalSha(ctx context.Context, sha string, keys, args [][]byte) ([]int64, error) {
	c.evalSha.Add(1)
	return c.RedisClient.EvalSha(ctx, sha, keys, args)
}

func (c *counted) Eval(ctx context.Context, script string, keys, args [][]byte) ([]int64, error) {
	c.eval.Add(1)
	return c.RedisClient.Eval(ctx, script, keys, args)
}

func (c *counted) calls() int64 { return c.evalSha.Load() + c.eval.Load() }

// newLimiter is a RedisLimiter on client, closed when the test ends.
func newLimiter(t testing.TB, client ratecard.RedisClient, o ratecard.Options, ro ratecard.RedisOptions) *ratecard.RedisLimiter {
	t.Helper()
	if o.Seed == nil {
		o.Seed = seed
	}
	l, err := ratecard.NewRedis(client, o, ro)
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// quota is a rule's numbers, read from the library.
type quota struct {
	name     string
	limit    int
	burst    int
	interval time.Duration // T = ⌈period / limit⌉
}

func quotaOf(t testing.TB, rules []ratecard.RuleInfo, name string) quota {
	t.Helper()
	for _, r := range rules {
		if r.Name == name {
			limit := time.Duration(r.Limit)
			return quota{name: name, limit: r.Limit, burst: r.Burst, interval: (r.Period + limit - 1) / limit}
		}
	}
	t.Fatalf("no rule %q", name)
	return quota{}
}

func signIn(ip string) *ratecard.Request {
	return &ratecard.Request{API: ratecard.APIFrontend, Method: "POST", Path: "/v1/client/sign_ins", ClientIP: mustAddr(ip)}
}

func mustAddr(ip string) netip.Addr { return netip.MustParseAddr(ip) }
