package ratecardredis

// A Redis Cluster of three masters, started and joined by the test: the
// RedisLimiter decides exactly as one local table does, never meets
// CROSSSLOT, and follows a slot migrated mid-run (MIGRATING/IMPORTING,
// MIGRATE, SETSLOT NODE) or reports the call as an error under its
// policy, never a wrong decision.

import (
	"context"
	"errors"
	"math/rand"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/mna/redisc"
	ratecard "github.com/ratecard/ratecard/go"
)

// startCluster runs three cluster-enabled servers and joins them as
// masters with redis-cli, waiting (30 s at most) until every node sees
// every slot served.
func startCluster(t *testing.T) []*server {
	t.Helper()
	var nodes []*server
	var addrs []string
	for i := 0; i < 3; i++ {
		s := startRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "5000")
		nodes = append(nodes, s)
		addrs = append(addrs, s.addr())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range nodes {
		for {
			info, _ := redis.String(n.do("CLUSTER", "INFO"))
			if strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_slots_ok:16384") &&
				strings.Contains(info, "cluster_known_nodes:3") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster not ready on %s within 30 s:\n%s", n.addr(), info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nodes
}

func newCluster(t *testing.T, nodes []*server) *redisc.Cluster {
	t.Helper()
	c := &redisc.Cluster{
		DialOptions: []redis.DialOption{redis.DialConnectTimeout(time.Second), redis.DialWriteTimeout(time.Second)},
		CreatePool: func(addr string, opts ...redis.DialOption) (*redis.Pool, error) {
			return &redis.Pool{MaxIdle: 8, IdleTimeout: time.Minute, Dial: func() (redis.Conn, error) {
				return redis.Dial("tcp", addr, opts...)
			}}, nil
		},
	}
	for _, n := range nodes {
		c.StartupNodes = append(c.StartupNodes, n.addr())
	}
	if err := c.Refresh(); err != nil {
		t.Fatalf("cluster refresh: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// stepClock is the time of both limiters of a differential test: frozen
// during a request, moved on between them, and never behind real time,
// so a key Redis expired (by its own clock) is replenished here too.
type stepClock struct {
	mu    sync.Mutex
	start time.Time
	now   time.Duration
}

func (c *stepClock) Now() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *stepClock) step(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now += d
	if real := time.Since(c.start); c.now < real {
		c.now = real
	}
}

// differential decides each request on Redis and, when Redis decided, on
// a local table at the same time: the two must agree field by field.
type differential struct {
	t      *testing.T
	clock  *stepClock
	remote *ratecard.RedisLimiter
	local  *ratecard.Limiter
	epoch  time.Time
}

func newDifferential(t *testing.T, client ratecard.RedisClient) *differential {
	c := &stepClock{start: time.Now(), now: time.Millisecond}
	d := &differential{t: t, clock: c, epoch: time.Now()}
	o := ratecard.Options{Seed: seed, Capacity: 1 << 14, Clock: c.Now}
	d.remote = newLimiter(t, client, o, ratecard.RedisOptions{
		Exact: true, Timeout: 5 * time.Second, BreakerFailures: -1,
		// The script decides at the same time as the local table.
		WallClock: func() time.Time { return d.epoch.Add(c.Now()) },
	})
	var err error
	if d.local, err = ratecard.New(o); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.local.Close() })
	return d
}

// decide returns Redis's error, if any; otherwise the decisions agreed.
func (d *differential) decide(r *ratecard.Request, step time.Duration) error {
	d.t.Helper()
	d.clock.step(step)
	got, err := d.remote.Check(r)
	if err != nil {
		if strings.Contains(err.Error(), "CROSSSLOT") {
			d.t.Fatalf("%s %s: CROSSSLOT: %v", r.Method, r.Path, err)
		}
		return err
	}
	want, lerr := d.local.Check(r)
	if lerr != nil {
		d.t.Fatalf("local %s %s: %v", r.Method, r.Path, lerr)
	}
	if got.Allowed != want.Allowed || got.Rule != want.Rule || got.Limit != want.Limit || got.Remaining != want.Remaining ||
		got.Reset != want.Reset || got.RetryAfter != want.RetryAfter || got.NeverFits != want.NeverFits || got.Exempt != want.Exempt {
		d.t.Fatalf("%s %s key %q ip %v cost %d:\nredis %+v\nlocal %+v", r.Method, r.Path, r.SecretKey, r.ClientIP, r.Cost, got, want)
	}
	return nil
}

var clusterPaths = []struct {
	api          ratecard.API
	method, path string
}{
	{ratecard.APIFrontend, "POST", "/v1/client/sign_ins"},
	{ratecard.APIFrontend, "POST", "/v1/client/sign_ins/sia_1/attempt_first_factor"},
	{ratecard.APIFrontend, "POST", "/v1/client/sign_ups"},
	{ratecard.APIFrontend, "GET", "/v1/environment"},
	{ratecard.APIBackend, "PATCH", "/v1/users/user_1"},
	{ratecard.APIBackend, "PATCH", "/v1/users/user_2/metadata"},
	{ratecard.APIBackend, "POST", "/v1/invitations/bulk"},
	{ratecard.APIBackend, "POST", "/v1/organizations/org_1/invitations"},
	{ratecard.APIBackend, "PATCH", "/v1/organizations/org_1/memberships/user_1"},
	{ratecard.APIBackend, "GET", "/v1/jwks"},
	{ratecard.APIBackend, "GET", "/v1/users/me"},
}

// random runs n random requests of many subjects through d; none may fail.
func (d *differential) random(rng *rand.Rand, n int) (allowed, denied int) {
	keys := []string{"sk_live_a", "Bearer sk_test_b", "sk_live_c", "sk_test_d", "sk_live_e", "sk_test_f"}
	for i := 0; i < n; i++ {
		p := clusterPaths[rng.Intn(len(clusterPaths))]
		r := &ratecard.Request{API: p.api, Method: p.method, Path: p.path,
			ClientIP: mustAddr("10.0.0." + string(rune('1'+rng.Intn(9)))), SecretKey: keys[rng.Intn(len(keys))]}
		if rng.Intn(8) == 0 {
			r.Cost = uint32(1 + rng.Intn(30))
		}
		// Mostly bursts, sometimes a pause long enough to replenish.
		var step time.Duration
		switch rng.Intn(10) {
		case 0:
			step = time.Duration(rng.Int63n(int64(20 * time.Second)))
		case 1, 2, 3:
			step = time.Duration(rng.Int63n(int64(time.Second)))
		default:
			step = time.Duration(rng.Int63n(int64(20 * time.Millisecond)))
		}
		if err := d.decide(r, step); err != nil {
			d.t.Fatalf("request %d %s %s: %v", i, r.Method, r.Path, err)
		}
	}
	s, _ := d.local.Stats()
	return int(s.Allowed), int(s.Limited)
}

func TestClusterOfThreeMastersDecidesAsOneTableWithoutCrossSlot(t *testing.T) {
	nodes := startCluster(t)
	d := newDifferential(t, NewCluster(newCluster(t, nodes)))
	allowed, denied := d.random(rand.New(rand.NewSource(7)), 1500)
	if allowed < 300 || denied < 100 {
		t.Errorf("%d allowed, %d denied: the sequence does not exercise both", allowed, denied)
	}
	if s, _ := d.local.Stats(); s.EvictedInDebt != 0 {
		t.Fatalf("the local table evicted: the comparison is void")
	}
	// The subjects' keys are spread over the masters.
	spread := 0
	for _, n := range nodes {
		if k, _ := redis.Int(n.do("DBSIZE")); k > 0 {
			spread++
		}
	}
	if spread < 2 {
		t.Errorf("keys on %d of 3 masters", spread)
	}
}

func TestClusterFollowsASlotMigratedMidRunOrReportsTheCall(t *testing.T) {
	nodes := startCluster(t)
	d := newDifferential(t, NewCluster(newCluster(t, nodes)))
	const prefix = ratecard.DefaultRedisPrefix
	const key = "sk_test_migrating"
	me := &ratecard.Request{API: ratecard.APIBackend, Method: "GET", Path: "/v1/users/me", SecretKey: key}
	patch := func(user string) *ratecard.Request {
		return &ratecard.Request{API: ratecard.APIBackend, Method: "PATCH", Path: "/v1/users/" + user, SecretKey: key}
	}
	ms := 5 * time.Millisecond

	// The instance's key, and the slot and master it lives in.
	if err := d.decide(me, ms); err != nil {
		t.Fatal(err)
	}
	var instanceKey string
	var src *server
	for _, n := range nodes {
		if ks := n.keys(prefix); len(ks) == 1 {
			instanceKey, src = ks[0], n
		}
	}
	if src == nil {
		t.Fatal("the instance's key is not on exactly one master")
	}
	slot, _ := redis.Int(src.do("CLUSTER", "KEYSLOT", instanceKey))
	if slot != redisc.Slot(instanceKey) {
		t.Fatalf("slot %d, redisc says %d", slot, redisc.Slot(instanceKey))
	}
	dst := nodes[0]
	if dst == src {
		dst = nodes[1]
	}
	srcID, _ := redis.String(src.do("CLUSTER", "MYID"))
	dstID, _ := redis.String(dst.do("CLUSTER", "MYID"))

	var reported []error
	// run decides the request; an error must be one a migration explains.
	run := func(stage string, r *ratecard.Request) bool {
		err := d.decide(r, ms)
		if err == nil {
			return true
		}
		if !errors.Is(err, ratecard.ErrRedisUnavailable) || !strings.Contains(err.Error(), "TRYAGAIN") {
			t.Fatalf("%s: %s %s: %v", stage, r.Method, r.Path, err)
		}
		reported = append(reported, err)
		return false
	}

	// 1. The slot is migrating; its key still lives on the source.
	dst.must("CLUSTER", "SETSLOT", slot, "IMPORTING", srcID)
	src.must("CLUSTER", "SETSLOT", slot, "MIGRATING", dstID)
	for i := 0; i < 3; i++ {
		if !run("migrating", me) {
			t.Errorf("migrating: the source holds every key of the call, yet it failed")
		}
	}
	// A call with a key the source lacks: the keys are split between the
	// nodes, so Redis answers TRYAGAIN and the policy does.
	if run("migrating", patch("user_m")) {
		t.Errorf("migrating: a call whose keys are split was decided")
	}

	// 2. The key has moved; the slot is still the source's: ASK.
	src.must("MIGRATE", dst.hostPort()[0], dst.hostPort()[1], "", 0, 5000, "KEYS", instanceKey)
	if ks := src.keys(prefix); len(ks) != 0 {
		t.Fatalf("keys left on the source: %q", ks)
	}
	for i := 0; i < 3; i++ {
		if !run("migrated", me) {
			t.Errorf("migrated: the ASK to the destination failed")
		}
	}
	run("migrated", patch("user_m"))

	// 3. The slot belongs to the destination: MOVED, then the new node.
	for _, n := range []*server{dst, src, nodes[3-indexOf(nodes, src)-indexOf(nodes, dst)]} {
		n.must("CLUSTER", "SETSLOT", slot, "NODE", dstID)
	}
	for i := 0; i < 3; i++ {
		if !run("moved", me) || !run("moved", patch("user_m")) {
			t.Errorf("moved: a call to the slot's new master failed")
		}
	}
	if ks := dst.keys(prefix); len(ks) < 2 {
		t.Errorf("keys on the destination: %q", ks)
	}
	t.Logf("%d calls reported under the policy during the migration", len(reported))

	// And every other subject is decided as before.
	d.random(rand.New(rand.NewSource(11)), 300)
}

func indexOf(nodes []*server, n *server) int {
	for i, m := range nodes {
		if m == n {
			return i
		}
	}
	return -1
}

// hostPort is the server's host and port, as MIGRATE takes them.
func (s *server) hostPort() [2]interface{} { return [2]interface{}{"127.0.0.1", s.port} }
