package ratecardredis

// Decisions through Redis against their floors, on one connection of one
// redigo pool and a redis-server on loopback: PING, and EVALSHA of a
// script that returns at once. Run with go/bench.sh redis or
//   go test -run '^$' -bench . -count 5
// in go/redis; the figures are for ratios within one run.

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	ratecard "github.com/ratecard/ratecard/go"
)

func BenchmarkThroughRedis(b *testing.B) {
	srv := startRedis(b)
	pool := newPool(b, srv.addr())
	pool.MaxActive = 1
	client := NewPool(pool)
	l := newLimiter(b, client, ratecard.Options{}, ratecard.RedisOptions{Timeout: time.Second})
	// The smallest reply of the script's shape: an array of integers.
	empty, err := redis.String(srv.do("SCRIPT", "LOAD", "return {1}"))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()

	b.Run("floor-PING", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			c := pool.Get()
			if _, err := c.Do("PING"); err != nil {
				b.Fatal(err)
			}
			c.Close()
		}
	})
	b.Run("floor-EVALSHA-return-1", func(b *testing.B) {
		key := [][]byte{[]byte("rc:{abcd}x")}
		for i := 0; i < b.N; i++ {
			if _, err := client.EvalSha(ctx, empty, key, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	// A fresh client per decision: every one a round trip, allowed.
	b.Run("sign-in-one-rule", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			ip := [4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}
			r := &ratecard.Request{API: ratecard.APIFrontend, Method: "POST", Path: "/v1/client/sign_ins", ClientIP: addr4(ip)}
			if _, err := l.CheckContext(ctx, r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("user-update-two-rules", func(b *testing.B) {
		users := []string{"/v1/users/user_a", "/v1/users/user_b", "/v1/users/user_c"}
		for i := 0; i < b.N; i++ {
			r := &ratecard.Request{API: ratecard.APIBackend, Method: "PATCH", Path: users[i%len(users)],
				SecretKey: "sk_live_" + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676%26))}
			if _, err := l.CheckContext(ctx, r); err != nil {
				b.Fatal(err)
			}
		}
	})
	// One client flooding after its denial: answered here, but for one
	// round trip per Retry-After (2 s) when a unit comes back.
	b.Run("denied-flood-cached", func(b *testing.B) {
		r := signIn("192.0.2.200")
		for i := 0; i < 6; i++ {
			l.Check(r)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := l.CheckContext(ctx, r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func addr4(b [4]byte) netip.Addr { return netip.AddrFrom4(b) }
