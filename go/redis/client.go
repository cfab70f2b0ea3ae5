// Package ratecardredis connects ratecard's RedisLimiter to a real Redis
// client: redigo for one server (NewPool), redisc for Redis Cluster
// (NewCluster). It lives in a module of its own, so the ratecard module
// stays free of dependencies.
//
//	pool := &redis.Pool{DialContext: func(ctx context.Context) (redis.Conn, error) {
//		return redis.DialContext(ctx, "tcp", "127.0.0.1:6379", redis.DialWriteTimeout(time.Second))
//	}}
//	l, err := ratecard.NewRedis(ratecardredis.NewPool(pool), ratecard.Options{Seed: seed}, ratecard.RedisOptions{})
//
// Both clients bound every round trip by the context's deadline: redigo
// has no context on commands, so the time left is the reply's read
// timeout (DoWithTimeout). Writes and dials are bounded by the dial
// options: set redis.DialWriteTimeout, and a Pool's DialContext (which
// gets the context) or a Cluster's redis.DialConnectTimeout.
package ratecardredis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/mna/redisc"
	ratecard "github.com/ratecard/ratecard/go"
)

// Pool is a ratecard.RedisClient on a redigo pool of one Redis server.
type Pool struct {
	p *redis.Pool
}

// NewPool returns the RedisClient of p's server.
func NewPool(p *redis.Pool) *Pool { return &Pool{p: p} }

// EvalSha sends EVALSHA on a connection of the pool.
func (c *Pool) EvalSha(ctx context.Context, sha string, keys, args [][]byte) ([]int64, error) {
	return c.do(ctx, "EVALSHA", sha, keys, args)
}

// Eval sends EVAL on a connection of the pool.
func (c *Pool) Eval(ctx context.Context, script string, keys, args [][]byte) ([]int64, error) {
	return c.do(ctx, "EVAL", script, keys, args)
}

func (c *Pool) do(ctx context.Context, cmd, head string, keys, args [][]byte) ([]int64, error) {
	if _, err := timeLeft(ctx); err != nil {
		return nil, err
	}
	conn, err := c.p.GetContext(ctx)
	if err != nil {
		return nil, deadline(ctx, err)
	}
	defer conn.Close()
	left, err := timeLeft(ctx)
	if err != nil {
		return nil, err
	}
	v, err := redis.DoWithTimeout(conn, left, cmd, argv(head, keys, args)...)
	return ints(ctx, v, err)
}

// Cluster is a ratecard.RedisClient on a redisc cluster client.
//
// Each call goes to the node serving keys[0]'s slot (every key of one
// call shares it). A MOVED reply is followed to the node redisc then maps
// the slot to; an ASK reply (a slot being migrated) is asked of the node
// it names, once, with ASKING. A TRYAGAIN (a call whose keys are split by
// a migration) is returned as an error: the limiter's policy answers it.
type Cluster struct {
	c *redisc.Cluster
}

// NewCluster returns the RedisClient of c. Call c.Refresh first, so the
// first calls go to the right nodes.
func NewCluster(c *redisc.Cluster) *Cluster { return &Cluster{c: c} }

// EvalSha sends EVALSHA to the node serving keys.
func (c *Cluster) EvalSha(ctx context.Context, sha string, keys, args [][]byte) ([]int64, error) {
	return c.do(ctx, "EVALSHA", sha, keys, args)
}

// Eval sends EVAL to the node serving keys.
func (c *Cluster) Eval(ctx context.Context, script string, keys, args [][]byte) ([]int64, error) {
	return c.do(ctx, "EVAL", script, keys, args)
}

// maxRedirects bounds the MOVED replies one call follows: one per slot
// moved while the call was in flight.
const maxRedirects = 3

var errNoKeys = errors.New("ratecardredis: a call without keys cannot be routed in a cluster")

func (c *Cluster) do(ctx context.Context, cmd, head string, keys, args [][]byte) ([]int64, error) {
	if len(keys) == 0 {
		return nil, errNoKeys
	}
	key := string(keys[0])
	a := argv(head, keys, args)
	for attempt := 0; ; attempt++ {
		left, err := timeLeft(ctx)
		if err != nil {
			return nil, err
		}
		conn := c.c.Get()
		if err := redisc.BindConn(conn, key); err != nil {
			conn.Close()
			return nil, deadline(ctx, err)
		}
		v, err := redis.DoWithTimeout(conn, left, cmd, a...)
		conn.Close()
		re := redisc.ParseRedir(err)
		switch {
		case re == nil:
			return ints(ctx, v, err)
		case re.Type == "ASK":
			return c.ask(ctx, re.Addr, cmd, a)
		case attempt+1 >= maxRedirects:
			return nil, fmt.Errorf("ratecardredis: %d MOVED replies in a row: %w", maxRedirects, err)
		}
		// MOVED: redisc has mapped the slot to its new node; bind there.
	}
}

// ask sends the call once to the node an ASK reply named.
func (c *Cluster) ask(ctx context.Context, addr, cmd string, a []interface{}) ([]int64, error) {
	conn, err := redis.DialContext(ctx, "tcp", addr, c.c.DialOptions...)
	if err != nil {
		return nil, deadline(ctx, err)
	}
	defer conn.Close()
	left, err := timeLeft(ctx)
	if err != nil {
		return nil, err
	}
	if err := conn.Send("ASKING"); err != nil {
		return nil, deadline(ctx, err)
	}
	// The reply to ASKING (+OK) comes first; DoWithTimeout returns the
	// call's, or the first error of the two.
	v, err := redis.DoWithTimeout(conn, left, cmd, a...)
	return ints(ctx, v, err)
}

// argv is the command's arguments: head (the SHA-1 or the script), the
// number of keys, the keys, the arguments.
func argv(head string, keys, args [][]byte) []interface{} {
	a := make([]interface{}, 0, 2+len(keys)+len(args))
	a = append(a, head, len(keys))
	for _, k := range keys {
		a = append(a, k)
	}
	for _, x := range args {
		a = append(a, x)
	}
	return a
}

// ints reads the script's reply: an array of integers.
func ints(ctx context.Context, v interface{}, err error) ([]int64, error) {
	if err != nil {
		var re redis.Error
		if errors.As(err, &re) && strings.HasPrefix(string(re), "NOSCRIPT") {
			return nil, fmt.Errorf("%w (%s)", ratecard.ErrNoScript, re)
		}
		return nil, deadline(ctx, err)
	}
	n, err := redis.Int64s(v, nil)
	if err != nil {
		return nil, fmt.Errorf("ratecardredis: the reply is not the script's: %w", err)
	}
	return n, nil
}

// timeLeft is the time until ctx's deadline; an error once it is past or
// ctx is done. No deadline: no timeout (redigo's 0).
func timeLeft(ctx context.Context) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	d, ok := ctx.Deadline()
	if !ok {
		return 0, nil
	}
	left := time.Until(d)
	if left <= 0 {
		return 0, context.DeadlineExceeded
	}
	return left, nil
}

// deadline is err, marked as ctx's error when ctx ended meanwhile (a
// read that timed out at the deadline is the deadline's doing).
func deadline(ctx context.Context, err error) error {
	cerr := ctx.Err()
	var ne net.Error
	if cerr == nil && errors.As(err, &ne) && ne.Timeout() {
		// The read deadline was ctx's, a moment before its timer fired.
		cerr = context.DeadlineExceeded
	}
	if cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w: %v", cerr, err)
	}
	return err
}

var (
	_ ratecard.RedisClient = (*Pool)(nil)
	_ ratecard.RedisClient = (*Cluster)(nil)
)
