package ratecard

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock that moves only when told to: by Advance, or by a
// Sleep, which returns at once having moved it on.
type fakeClock struct {
	mu  sync.Mutex
	now time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Hour} }

func (c *fakeClock) Now() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now += d
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.Advance(d)
	return nil
}

// newTestLimiter makes a limiter on a fake clock, closed when the test ends.
func newTestLimiter(t testing.TB, o Options) (*Limiter, *fakeClock) {
	t.Helper()
	c := newFakeClock()
	o.Clock, o.Sleep = c.Now, c.Sleep
	l, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l, c
}

func mustCheck(t testing.TB, l *Limiter, r *Request) Decision {
	t.Helper()
	d, err := l.Check(r)
	if err != nil {
		t.Fatalf("Check(%+v): %v", *r, err)
	}
	return d
}

func signIn(ip string) *Request {
	return &Request{API: APIFrontend, Method: "POST", Path: "/v1/client/sign_ins", ClientIP: netip.MustParseAddr(ip)}
}

const clerk429Body = `{"errors":[{"message":"Too many requests","long_message":"Too many requests, retry later","code":"too_many_requests","meta":{}}]}`
