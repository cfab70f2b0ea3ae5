package ratecard

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultMaxRetries is the number of times a Transport resends a request
// the server answered with 429, unless Transport.MaxRetries says otherwise.
const DefaultMaxRetries = 3

// Transport is an http.RoundTripper for programs that call Clerk's Backend
// API (bulk user updates, invitation jobs): before sending a request it
// asks its Limiter and waits as long as that says, honouring the request's
// context, instead of drawing a 429.
//
// Requests are keyed by their Authorization header (a request without one
// is an error: ErrMissingSubject) and method and path, as Clerk keys them.
// Give the Transport a limiter in pace mode (NewTransport does), so that
// no window of a rule's period sees more than its limit, whatever the
// server's algorithm. One Transport may be shared by many goroutines; so
// may one Limiter by several Transports of one program.
//
// When the server still answers 429 (another program spends the same
// quota), the Transport waits for the response's Retry-After (1s when it
// has none) and resends, up to MaxRetries times. A 429 means the server did
// nothing, so any method may be resent, as long as its body can be: a
// request without a body, or one whose GetBody is set (as http.NewRequest
// sets it for bytes and strings readers). Other requests get the 429 back.
//
// Close a Transport when done with it. A Transport must not be copied
// after first use.
type Transport struct {
	// Base sends the requests; nil means http.DefaultTransport.
	Base http.RoundTripper

	// Limiter paces the requests; required unless Decider is set.
	Limiter *Limiter

	// Decider, if set, paces the requests in place of Limiter: a
	// *RedisLimiter (made with Options.Pace) shares one pace between the
	// programs of one Redis.
	Decider Decider

	// Tenant, if set, names the instance in place of the secret key, so
	// that several keys of one instance share its limits.
	Tenant string

	// MaxRetries is the number of resends after a 429: 0 means
	// DefaultMaxRetries, a negative number none.
	MaxRetries int

	own     *Limiter // made by NewTransport: Close closes it
	mu      sync.Mutex
	closing chan struct{} // closed by Close; made on first use
	once    sync.Once
}

// NewTransport returns a Transport over base (nil for
// http.DefaultTransport) with a limiter of its own, made from o in pace
// mode. Close the Transport when done: that closes its limiter.
func NewTransport(base http.RoundTripper, o Options) (*Transport, error) {
	o.Pace = true
	l, err := New(o)
	if err != nil {
		return nil, err
	}
	return &Transport{Base: base, Limiter: l, own: l}, nil
}

var errNoLimiter = errors.New("ratecard: Transport.Limiter and Transport.Decider are nil")

// Close stops t: round trips waiting for the limiter stop waiting, and
// they and every later one return ErrTransportClosed; requests already
// sent are left to finish. When NewTransport made t.Limiter, Close closes
// it; a limiter the caller gave stays open. Closing twice does nothing.
func (t *Transport) Close() error {
	done := t.done()
	t.once.Do(func() {
		close(done)
		if t.own != nil {
			t.own.Close()
		}
	})
	return nil
}

// done is closed when t is.
func (t *Transport) done() chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing == nil {
		t.closing = make(chan struct{})
	}
	return t.closing
}

// RoundTrip waits until the limiter allows req, then sends it through Base.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	done := t.done()
	if isClosed(done) {
		closeBody(req)
		return nil, ErrTransportClosed
	}
	pacer, sleep := t.pacer()
	if pacer == nil {
		closeBody(req)
		return nil, errNoLimiter
	}
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	retries := t.MaxRetries
	if retries == 0 {
		retries = DefaultMaxRetries
	}
	// The waits end when the request's context is done or t is closed;
	// the request itself is sent under its own context only.
	ctx, cancel := context.WithCancel(req.Context())
	defer cancel()
	go func() {
		select {
		case <-done:
			cancel()
		case <-ctx.Done():
		}
	}()
	// failed is err, or ErrTransportClosed if Close is why.
	failed := func(err error) error {
		if isClosed(done) && (err == nil || req.Context().Err() == nil) {
			return ErrTransportClosed
		}
		return err
	}
	r := Request{
		API:       APIBackend,
		Method:    req.Method,
		Path:      req.URL.EscapedPath(),
		SecretKey: req.Header.Get(fieldAuthorization),
		Tenant:    t.Tenant,
	}
	for attempt := 0; ; attempt++ {
		if _, err := pacer.Wait(ctx, &r); err != nil || isClosed(done) {
			closeBody(req)
			return nil, failed(err)
		}
		resp, err := base.RoundTrip(req)
		if err != nil || resp.StatusCode != http.StatusTooManyRequests || attempt >= retries || !replayable(req) {
			return resp, err
		}
		wait := retryAfter(resp.Header.Get("Retry-After"))
		// Drain a little so the connection can be reused.
		_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
		resp.Body.Close()
		if err := sleep(ctx, wait); err != nil {
			return nil, failed(err)
		}
		if req.GetBody != nil && req.Body != nil && req.Body != http.NoBody {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			req = req.WithContext(req.Context()) // a shallow copy: the caller's request is not modified
			req.Body = body
		}
	}
}

// pacer is the Decider that paces t, and how it sleeps; nil for none.
func (t *Transport) pacer() (Decider, func(context.Context, time.Duration) error) {
	switch {
	case t.Decider != nil:
		switch d := t.Decider.(type) {
		case *Limiter:
			return d, d.sleep
		case *RedisLimiter:
			return d, d.local.sleep
		}
		return t.Decider, sleepTimer
	case t.Limiter != nil:
		return t.Limiter, t.Limiter.sleep
	}
	return nil, nil
}

// CloseIdleConnections closes the idle connections of Base, if it can.
func (t *Transport) CloseIdleConnections() {
	type closeIdler interface{ CloseIdleConnections() }
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	if c, ok := base.(closeIdler); ok {
		c.CloseIdleConnections()
	}
}

func isClosed(done chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
		return false
	}
}

func replayable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// retryAfter reads a Retry-After value: seconds or an HTTP date; 1s when it
// is missing or malformed.
func retryAfter(v string) time.Duration {
	v = strings.TrimSpace(v)
	if secs, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(secs) * time.Second
	}
	if at, err := http.ParseTime(v); err == nil {
		if d := time.Until(at); d > 0 {
			return d
		}
		return 0
	}
	return time.Second
}
