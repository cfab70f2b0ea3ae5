package ratecard

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/ratecard/ratecard/go/internal/cgonop"
)

// Hot-key benchmarks on the real clock, against a bare cgo call (the floor
// of any call into the C library): Check should cost at most 1.5× that.

func BenchmarkCgoNop(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		cgonop.Call()
	}
}

func BenchmarkCgoNopParallel(b *testing.B) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			cgonop.Call()
		}
	})
}

// hotRules allow every call: the benchmarks measure the charging path.
var hotRules = []Rule{{Name: "hot", API: APIFrontend, Routes: []Route{{Path: "*"}}, Limit: 1 << 30, Period: time.Millisecond}}

func benchLimiter(b *testing.B, o Options) *Limiter {
	l, err := New(o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	return l
}

func benchCheck(b *testing.B, l *Limiter, r *Request, parallel bool) {
	b.ReportAllocs()
	b.ResetTimer()
	if !parallel {
		for i := 0; i < b.N; i++ {
			if _, err := l.Check(r); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Check(r); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

var (
	hotIP      = netip.MustParseAddr("203.0.113.9")
	hotRequest = Request{API: APIFrontend, Method: "GET", Path: "/x", ClientIP: hotIP}
	signInReq  = Request{API: APIFrontend, Method: "POST", Path: "/v1/client/sign_ins", ClientIP: hotIP}
	updateReq  = Request{API: APIBackend, Method: "PATCH", Path: "/v1/users/user_2abcdefghijklmnopqrstuvwxyz/metadata", SecretKey: "sk_live_0123456789abcdefghijklmnopqrstuvwxyzABCDEF"}
)

func BenchmarkCheck(b *testing.B) {
	benchCheck(b, benchLimiter(b, Options{Rules: hotRules}), &hotRequest, false)
}

func BenchmarkCheckParallel(b *testing.B) {
	benchCheck(b, benchLimiter(b, Options{Rules: hotRules}), &hotRequest, true)
}

// Clerk's table: a sign-in flood from one IP (denied after the burst), and
// user updates with a 48-byte key (two rules).
func BenchmarkCheckClerkSignIn(b *testing.B) {
	benchCheck(b, benchLimiter(b, Options{}), &signInReq, false)
}

func BenchmarkCheckClerkUserUpdate(b *testing.B) {
	benchCheck(b, benchLimiter(b, Options{}), &updateReq, false)
}

func BenchmarkCheckKey(b *testing.B) {
	l := benchLimiter(b, Options{Rules: hotRules})
	key := []byte("job-queue-7")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := l.CheckKey(0, key, 1); err != nil {
			b.Fatal(err)
		}
	}
}

// discardWriter is a ResponseWriter that keeps nothing but its header map,
// emptied between requests, so the benchmarks count the middleware's own
// allocations and not a recorder's.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }
func (w *discardWriter) reset() {
	for k := range w.h {
		delete(w.h, k)
	}
	w.status = 0
}

func benchHandler(b *testing.B, h http.Handler, r *http.Request) {
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w.reset()
		h.ServeHTTP(w, r)
	}
}

var okHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })

// The middleware's cost per request is the difference between these and
// the same handler alone: a sign-in from one client, allowed (a rule that
// allows everything) and denied (Clerk's table, the burst long spent).
func BenchmarkHandlerWithoutMiddleware(b *testing.B) {
	benchHandler(b, okHandler, httptest.NewRequest("POST", "/v1/client/sign_ins", nil))
}

func BenchmarkFrontendMiddlewareAllowed(b *testing.B) {
	l := benchLimiter(b, Options{Rules: hotRules})
	benchHandler(b, Frontend(l, okHandler, MiddlewareOptions{}), httptest.NewRequest("POST", "/v1/client/sign_ins", nil))
}

func BenchmarkFrontendMiddlewareDenied(b *testing.B) {
	l := benchLimiter(b, Options{})
	benchHandler(b, Frontend(l, okHandler, MiddlewareOptions{}), httptest.NewRequest("POST", "/v1/client/sign_ins", nil))
}
