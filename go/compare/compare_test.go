package compare

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	ratecard "github.com/ratecard/ratecard/go"
	"github.com/ratecard/ratecard/go/internal/cgonop"
	"golang.org/x/time/rate"
)

// Every peer allows every call on its hot key, so each measures its
// charging path: a rule of 2^30 per millisecond; rate.Inf is avoided as
// x/time/rate short-cuts it.
const perSecond = 1 << 40

var hotIP = netip.MustParseAddr("203.0.113.9")

// keyed is how Go programs keep per-client x/time/rate limiters.
type keyed struct {
	mu       sync.Mutex
	limiters map[netip.Addr]*rate.Limiter
}

func (k *keyed) allow(ip netip.Addr) bool {
	k.mu.Lock()
	l, ok := k.limiters[ip]
	if !ok {
		l = rate.NewLimiter(perSecond, perSecond)
		k.limiters[ip] = l
	}
	k.mu.Unlock()
	return l.Allow()
}

func newKeyed() *keyed { return &keyed{limiters: map[netip.Addr]*rate.Limiter{}} }

func newRatecard(b *testing.B) *ratecard.Limiter {
	l, err := ratecard.New(ratecard.Options{Rules: []ratecard.Rule{{
		Name: "hot", API: ratecard.APIFrontend, Routes: []ratecard.Route{{Path: "*"}},
		Limit: perSecond / 1000, Period: time.Millisecond,
	}}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	return l
}

var request = ratecard.Request{API: ratecard.APIFrontend, Method: "GET", Path: "/x", ClientIP: hotIP}

func BenchmarkHotKey(b *testing.B) {
	b.Run("bare-cgo-call", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			cgonop.Call()
		}
	})
	b.Run("ratecard_check-in-C", func(b *testing.B) {
		if denied := checkLoop(b.N); denied != 0 {
			b.Fatal("denied", denied)
		}
	})
	b.Run("ratecard-Check", func(b *testing.B) {
		l := newRatecard(b)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if d, err := l.Check(&request); err != nil || !d.Allowed {
				b.Fatal(d, err)
			}
		}
	})
	b.Run("x-time-rate-keyed", func(b *testing.B) {
		k := newKeyed()
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if !k.allow(hotIP) {
				b.Fatal("denied")
			}
		}
	})
}

func BenchmarkHotKeyParallel(b *testing.B) {
	b.Run("bare-cgo-call", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				cgonop.Call()
			}
		})
	})
	b.Run("ratecard-Check", func(b *testing.B) {
		l := newRatecard(b)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if d, err := l.Check(&request); err != nil || !d.Allowed {
					b.Error(d, err)
					return
				}
			}
		})
	})
	b.Run("x-time-rate-keyed", func(b *testing.B) {
		k := newKeyed()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if !k.allow(hotIP) {
					b.Error("denied")
					return
				}
			}
		})
	})
}
