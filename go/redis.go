package ratecard

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"
)

// RedisClient is the Redis a RedisLimiter keeps its state in: the user's
// own client, behind the two calls every Go client offers for scripts.
// The adapter in the module github.com/ratecard/ratecard/go/redis wraps
// redigo (one server) and redisc (Redis Cluster).
//
// Both calls run the library's charge script (RedisScript) on the node
// that serves keys: all keys of one call share one Cluster hash tag, so a
// cluster client routes by keys[0]. Both must return by ctx's deadline;
// keys and args are valid only until they return.
type RedisClient interface {
	// EvalSha sends EVALSHA sha len(keys) keys... args... and returns the
	// reply's integers. A NOSCRIPT error reply must come back as an error
	// wrapping ErrNoScript; any other failure (a Redis error reply, a
	// reply that is not an array of integers, a timeout) as any error.
	EvalSha(ctx context.Context, sha string, keys, args [][]byte) ([]int64, error)
	// Eval sends EVAL script len(keys) keys... args...: the RedisLimiter
	// sends it once after NOSCRIPT, which also loads the script on the
	// node that answered NOSCRIPT (SCRIPT LOAD, having no key, could land
	// on another node of a cluster).
	Eval(ctx context.Context, script string, keys, args [][]byte) ([]int64, error)
}

// RedisPolicy is what a RedisLimiter answers when Redis cannot: a failed
// round trip (a timeout, a refused connection, an error reply, a reply of
// the wrong shape) or an open circuit breaker.
type RedisPolicy uint8

const (
	// RedisFailClosed returns the error (a *RedisError): the middleware
	// answers FailClosedStatus, as for any error of the limiter. The
	// default.
	RedisFailClosed RedisPolicy = 0
	// RedisFailOpen allows the request, with no rule and no fields.
	RedisFailOpen RedisPolicy = 1
	// RedisFallback decides the request in this host's own table: the same
	// rules, limits per host instead of across hosts.
	RedisFallback RedisPolicy = 2
)

// Defaults of RedisOptions.
const (
	DefaultRedisPrefix     = "rc:"
	DefaultRedisTimeout    = 100 * time.Millisecond
	DefaultBreakerFailures = 5
	DefaultBreakerCooldown = time.Second
)

// RedisOptions configure a RedisLimiter beyond its Options.
type RedisOptions struct {
	// Prefix starts every key; no '{' or '}'. "" means DefaultRedisPrefix.
	Prefix string

	// Timeout bounds each decision's round trip (EvalSha, and Eval after
	// NOSCRIPT), within the caller's context; 0 means DefaultRedisTimeout.
	Timeout time.Duration

	// Policy is the answer when Redis cannot give one.
	Policy RedisPolicy

	// BreakerFailures consecutive failed round trips open the circuit
	// breaker: for BreakerCooldown every decision is answered under Policy
	// at once, then one probe goes to Redis; its success closes the
	// breaker, its failure opens it again. 0 means DefaultBreakerFailures;
	// negative disables the breaker.
	BreakerFailures int
	// BreakerCooldown is how long the breaker stays open; 0 means
	// DefaultBreakerCooldown.
	BreakerCooldown time.Duration

	// OnError, if set, is told of every failed round trip (for logging),
	// with a *RedisError, before Policy answers. Decisions answered while
	// the breaker is open are not reported one by one: they are counted
	// (Stats.RemoteFallbacks, Breaker).
	OnError func(error)

	// Exact sends every limited request to Redis: no denial is answered
	// from this host's cache of Redis denials. Decisions are then exactly
	// those of one table holding Redis's state; by default a client Redis
	// has just denied is denied here until its Retry-After, with no round
	// trip (never looser: other hosts' charges only push it later).
	Exact bool

	// WallClock, if set, is the time the script decides at (e.g.
	// time.Now), for services that refuse TIME in scripts; nil lets the
	// script read the Redis server's TIME, the one clock of every gateway.
	// Gateways whose wall clocks differ by δ admit up to about δ/T more
	// per rule of emission interval T.
	WallClock func() time.Time
}

var (
	// ErrNoScript is what a RedisClient's EvalSha wraps for a NOSCRIPT
	// reply: the server has no copy of the script (a restart, a failover,
	// SCRIPT FLUSH).
	ErrNoScript = errors.New("ratecard: NOSCRIPT: the charge script is not loaded")
	// ErrRedisUnavailable is matched (errors.Is) by every *RedisError.
	ErrRedisUnavailable = errors.New("ratecard: redis unavailable")
	// ErrBreakerOpen is the cause of a *RedisError returned while the
	// circuit breaker is open.
	ErrBreakerOpen = errors.New("circuit breaker open")
	// ErrSharedSeed is returned by NewRedis without a 16-byte Options.Seed.
	ErrSharedSeed = errors.New("ratecard: a RedisLimiter needs Options.Seed (16 bytes), the same on every gateway")
)

// RedisError is a decision Redis could not make. errors.Is(err,
// ErrRedisUnavailable) holds for every one; Unwrap gives the cause: the
// client's error (a timeout, a refused connection, an error reply such as
// WRONGTYPE), ErrRemoteBadReply, or ErrBreakerOpen.
type RedisError struct {
	// Err is the cause.
	Err error
	// Opened: this failure opened the circuit breaker.
	Opened bool
}

func (e *RedisError) Error() string {
	s := "ratecard: redis: " + e.Err.Error()
	if e.Opened {
		s += " (circuit breaker opened)"
	}
	return s
}

// Unwrap returns the cause.
func (e *RedisError) Unwrap() error { return e.Err }

// Is reports target == ErrRedisUnavailable.
func (e *RedisError) Is(target error) bool { return target == ErrRedisUnavailable }

// RedisLimiter decides requests against one limit shared by every gateway
// of one Redis (or Redis Cluster): the same rule table, subjects, math,
// fields and headers as a Limiter, with the state in Redis. A request is
// classified here, then one round trip runs the library's script, which
// charges every rule it matched all or nothing. Exempt and unmatched
// requests make no round trip, nor (unless RedisOptions.Exact) a client
// Redis has just denied, until its Retry-After.
//
// Every gateway of one Redis must use the same Options.Seed and rules.
// Its own table (Options.Capacity) holds the cached denials and, under
// RedisFallback, the per-host state.
//
// A RedisLimiter is safe for concurrent use. Close it when done; the
// client stays the caller's.
type RedisLimiter struct {
	local   *Limiter
	client  RedisClient
	prefix  string
	timeout time.Duration
	policy  RedisPolicy
	flags   uint32
	onError func(error)
	wall    func() time.Time
	breaker breaker
	calls   sync.Pool // *redisCall
}

// redisCall is one decision's scratch: the prepared call and its KEYS and
// ARGV.
type redisCall struct {
	call remoteCall
	args remoteArgs
}

var script = struct {
	once       sync.Once
	text, sha1 string
}{}

func loadScript() {
	script.once.Do(func() { script.text, script.sha1 = cRemoteScript() })
}

// RedisScript returns the charge script's source (Lua) and its SHA-1, the
// name EVALSHA takes, as the C library embeds them.
func RedisScript() (source, sha1 string) {
	loadScript()
	return script.text, script.sha1
}

// NewRedis makes a RedisLimiter that keeps its state through client. o is
// as for New, but Seed is required: gateways of one Redis find each
// other's keys only with the same seed.
func NewRedis(client RedisClient, o Options, ro RedisOptions) (*RedisLimiter, error) {
	if client == nil {
		return nil, fmt.Errorf("%w: nil RedisClient", ErrInvalidConfig)
	}
	if len(o.Seed) != 16 {
		return nil, ErrSharedSeed
	}
	if ro.Prefix == "" {
		ro.Prefix = DefaultRedisPrefix
	}
	for i := 0; i < len(ro.Prefix); i++ {
		if c := ro.Prefix[i]; c == '{' || c == '}' {
			return nil, fmt.Errorf("%w: RedisOptions.Prefix %q holds a brace, which would move the Cluster hash tag", ErrInvalidConfig, ro.Prefix)
		}
	}
	if ro.Timeout < 0 || ro.BreakerCooldown < 0 || ro.Policy > RedisFallback {
		return nil, fmt.Errorf("%w: RedisOptions out of range", ErrInvalidConfig)
	}
	if ro.Timeout == 0 {
		ro.Timeout = DefaultRedisTimeout
	}
	if ro.BreakerFailures == 0 {
		ro.BreakerFailures = DefaultBreakerFailures
	}
	if ro.BreakerCooldown == 0 {
		ro.BreakerCooldown = DefaultBreakerCooldown
	}
	l, err := New(o)
	if err != nil {
		return nil, err
	}
	loadScript()
	r := &RedisLimiter{
		local:   l,
		client:  client,
		prefix:  ro.Prefix,
		timeout: ro.Timeout,
		policy:  ro.Policy,
		onError: ro.OnError,
		wall:    ro.WallClock,
		breaker: breaker{limit: int64(ro.BreakerFailures), cooldown: int64(ro.BreakerCooldown)},
	}
	if ro.Exact {
		r.flags = remoteExact
	}
	r.calls.New = func() interface{} { return new(redisCall) }
	return r, nil
}

// Close frees the limiter's own table; later calls return ErrClosed.
// The RedisClient is left open.
func (r *RedisLimiter) Close() error { return r.local.Close() }

// Check is CheckContext with context.Background(): the round trip is
// still bounded by RedisOptions.Timeout.
func (r *RedisLimiter) Check(req *Request) (Decision, error) {
	return r.decide(context.Background(), false, req)
}

// CheckContext decides req through Redis, charging every rule it matches
// if it is allowed. An error is either the request's own (see the Err
// constants: a server should fail closed on it), ctx's error when ctx ends
// first, or, under RedisFailClosed, a *RedisError.
func (r *RedisLimiter) CheckContext(ctx context.Context, req *Request) (Decision, error) {
	return r.decide(ctx, false, req)
}

// Peek is PeekContext with context.Background().
func (r *RedisLimiter) Peek(req *Request) (Decision, error) {
	return r.decide(context.Background(), true, req)
}

// PeekContext is the decision CheckContext would give, consuming and
// counting nothing in Redis (a policy's answer is still counted).
func (r *RedisLimiter) PeekContext(ctx context.Context, req *Request) (Decision, error) {
	return r.decide(ctx, true, req)
}

// Wait blocks until req conforms, then charges it, as Limiter.Wait does,
// each decision a round trip.
func (r *RedisLimiter) Wait(ctx context.Context, req *Request) (Decision, error) {
	return wait(ctx, r, req, r.local.sleep, r.local.clock == nil)
}

// RuleNames returns the names of the rules, in rule-number order.
func (r *RedisLimiter) RuleNames() []string { return r.local.RuleNames() }

// Rules returns the rules, by index, as the table enforces them.
func (r *RedisLimiter) Rules() []RuleInfo { return r.local.Rules() }

// Stats returns the counters of this gateway's decisions: Allowed,
// Limited and their kin count decisions made through Redis as well as
// local ones; RemoteCalls, RemoteErrors, RemoteFallbacks and RemoteCached
// count the round trips, the failed ones, the policy's answers, and
// denials answered from the cache. Occupancy and the table's counters are
// of this host's table (cached denials, fallback state).
func (r *RedisLimiter) Stats() (Stats, error) { return r.local.Stats() }

// BreakerStats describe a RedisLimiter's circuit breaker.
type BreakerStats struct {
	// Open: decisions are answered under the policy without a round trip
	// (but for one probe once the cooldown is over).
	Open bool
	// Opens counts the times it opened.
	Opens uint64
	// Rejected counts the decisions it answered without a round trip.
	Rejected uint64
}

// Breaker returns the state of the circuit breaker.
func (r *RedisLimiter) Breaker() BreakerStats { return r.breaker.stats() }

// ForgetCached clears this gateway's cached denials of req's subject: call
// it after deleting req's keys in Redis (an administrative reset). Other
// gateways keep theirs until they lapse, at most the rule's period. It
// returns the entries cleared.
func (r *RedisLimiter) ForgetCached(req *Request) (int, error) {
	c := r.calls.Get().(*redisCall)
	defer r.calls.Put(c)
	l := r.local
	now, useClock := l.now()
	ticket, ok := l.gate.enter()
	if !ok {
		return 0, ErrClosed
	}
	defer l.gate.exit(ticket)
	res, trip := cRemotePrepare(l.h, remotePeek|remoteExact, useClock, now, req, &c.call)
	runtime.KeepAlive(l)
	if st := Status(res.status); st != statusOK {
		return 0, st
	}
	if !trip {
		return 0, nil
	}
	n, st := cRemoteForget(l.h, &c.call)
	if st != statusOK {
		return 0, st
	}
	return n, nil
}

func (r *RedisLimiter) metricsTable() *Limiter { return r.local }

func (r *RedisLimiter) decide(ctx context.Context, peek bool, req *Request) (Decision, error) {
	if err := ctx.Err(); err != nil {
		return Decision{}, err
	}
	c := r.calls.Get().(*redisCall)
	d, err := r.decideWith(ctx, peek, req, c)
	r.calls.Put(c)
	return d, err
}

func (r *RedisLimiter) decideWith(ctx context.Context, peek bool, req *Request, c *redisCall) (d Decision, err error) {
	l := r.local
	flags := r.flags
	if peek {
		flags |= remotePeek
	}
	now, useClock := l.now()
	ticket, ok := l.gate.enter()
	if !ok {
		return d, ErrClosed
	}
	res, trip := cRemotePrepare(l.h, flags, useClock, now, req, &c.call)
	l.gate.exit(ticket)
	runtime.KeepAlive(l)
	if !trip {
		if st := res.fill(&d); st != statusOK {
			return Decision{}, st
		}
		l.own(&d)
		return d, nil
	}

	t := monotonic(l)
	pass, probe := r.breaker.allow(t)
	if !pass {
		return r.answer(c, &RedisError{Err: ErrBreakerOpen}, t, false)
	}
	var wall *time.Time
	if r.wall != nil {
		w := r.wall()
		wall = &w
	}
	if ticket, ok = l.gate.enter(); !ok {
		r.breaker.release(probe)
		return d, ErrClosed
	}
	st := cRemoteWriteArgs(l.h, &c.call, r.prefix, wall, &c.args)
	l.gate.exit(ticket)
	runtime.KeepAlive(l)
	if st != statusOK {
		r.breaker.release(probe)
		return d, st
	}

	rctx, cancel := context.WithTimeout(ctx, r.timeout)
	ints, err := r.client.EvalSha(rctx, script.sha1, c.args.keys, c.args.args)
	if err != nil && errors.Is(err, ErrNoScript) {
		ints, err = r.client.Eval(rctx, script.text, c.args.keys, c.args.args)
	}
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			// The caller gave up first: not Redis's failure.
			r.breaker.release(probe)
			return d, ctx.Err()
		}
		r.count(remoteEventError, t)
		opened := r.breaker.failure(t, probe)
		return r.answer(c, &RedisError{Err: err, Opened: opened}, t, true)
	}

	if ticket, ok = l.gate.enter(); !ok {
		r.breaker.release(probe)
		return d, ErrClosed
	}
	res = cRemoteFinishInts(l.h, &c.call, ints)
	l.gate.exit(ticket)
	runtime.KeepAlive(l)
	if st := res.fill(&d); st != statusOK {
		if st != ErrRemoteBadReply {
			r.breaker.release(probe)
			return Decision{}, st
		}
		// Counted as a failed round trip by the library.
		opened := r.breaker.failure(t, probe)
		return r.answer(c, &RedisError{Err: fmt.Errorf("%w: %d integers %v", st, len(ints), clip(ints)), Opened: opened}, t, true)
	}
	r.breaker.success(probe)
	l.own(&d)
	return d, nil
}

// answer is the policy's decision for c, which Redis could not make.
func (r *RedisLimiter) answer(c *redisCall, why *RedisError, t time.Duration, report bool) (d Decision, err error) {
	if report && r.onError != nil {
		r.onError(why)
	}
	l := r.local
	switch r.policy {
	case RedisFallback:
		ticket, ok := l.gate.enter()
		if !ok {
			return d, ErrClosed
		}
		res := cRemoteFallback(l.h, &c.call)
		l.gate.exit(ticket)
		runtime.KeepAlive(l)
		if st := res.fill(&d); st != statusOK {
			return Decision{}, st
		}
		l.own(&d)
		return d, nil
	case RedisFailOpen:
		r.count(remoteEventFallback, t)
		return Decision{Allowed: true, rule: noRule}, nil
	default:
		r.count(remoteEventFallback, t)
		return d, why
	}
}

// count records a Redis-mode event the library did not see.
func (r *RedisLimiter) count(event uint32, t time.Duration) {
	l := r.local
	if ticket, ok := l.gate.enter(); ok {
		cRemoteCount(l.h, event, uint64(t))
		l.gate.exit(ticket)
		runtime.KeepAlive(l)
	}
}

// clip shortens a reply for an error message.
func clip(v []int64) []int64 {
	if len(v) > 8 {
		return v[:8]
	}
	return v
}

// processStart anchors monotonic when no Options.Clock is set.
var processStart = time.Now()

// monotonic is l's clock if it has one, else Go's monotonic clock: for the
// breaker, which only measures intervals.
func monotonic(l *Limiter) time.Duration {
	if l.clock != nil {
		return l.clock()
	}
	return time.Since(processStart)
}

var _ Decider = (*RedisLimiter)(nil)
