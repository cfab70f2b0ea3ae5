package ratecard

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
)

// FailClosedStatus is the status Frontend and Backend answer when the
// limiter cannot decide a request (an error: say a sign-in without a usable
// client IP) and MiddlewareOptions.FailOpen is not set. It is 503 Service
// Unavailable, the one fail-closed status of every ratecard host: a limiter
// that cannot decide is a transient condition of the server; 429 would
// blame the client for a fault that is not its own, and 500 would say
// nothing about retrying later.
const FailClosedStatus = http.StatusServiceUnavailable

// MiddlewareOptions configure Frontend and Backend.
type MiddlewareOptions struct {
	// TrustedProxies are the proxies whose X-Forwarded-For is believed.
	// Empty (the default): the header is ignored and the client is the
	// connection's peer, so a client cannot pick its own key. Otherwise,
	// when the peer is in one of these prefixes, the client is the
	// right-most X-Forwarded-For address not in them (the left-most if all
	// are); a malformed entry ends the walk and the hop that added it is
	// the client.
	TrustedProxies []netip.Prefix

	// Tenant, if set, names the request's tenant: a namespace of keys for
	// several applications behind one gateway (see Request.Tenant).
	Tenant func(*http.Request) string

	// FailOpen passes requests to the next handler when the limiter
	// returns an error. By default they fail closed: FailClosedStatus, and
	// the next handler is not called.
	FailOpen bool

	// OnError, if set, is told of every limiter error (for logging): a
	// request it could not decide, then handled as FailOpen says, and a
	// decision whose response fields could not be written, which stands
	// (the request is passed on or denied) without them.
	OnError func(*http.Request, error)
}

// Frontend limits requests to a Frontend API by client IP (see
// MiddlewareOptions.TrustedProxies), as Clerk does. l is a *Limiter (this
// host's table) or a *RedisLimiter (one limit across hosts).
//
// A denied request gets 429 Too Many Requests with Retry-After (unless no
// wait can help), RateLimit-Policy, RateLimit and Clerk's JSON body. An
// allowed one gets the RateLimit-Policy and RateLimit fields and goes on to
// next; so does a dry-run denial. A request the limiter cannot decide
// fails closed with FailClosedStatus (see there why 503), unless
// MiddlewareOptions.FailOpen passes it on.
func Frontend(l Decider, next http.Handler, o MiddlewareOptions) http.Handler {
	return middleware(l, next, o, APIFrontend)
}

// Backend limits requests to a Backend API by the secret key in their
// Authorization header ("Bearer sk_live_..."), as Clerk does; a request
// without one is limited by client IP at the development limit. Responses
// are as Frontend's.
func Backend(l Decider, next http.Handler, o MiddlewareOptions) http.Handler {
	return middleware(l, next, o, APIBackend)
}

// Decider is a limiter as the middleware and the Transport use it:
// *Limiter decides in this host's table, *RedisLimiter through Redis. The
// middleware calls CheckContext with the request's context; the Transport
// calls Wait.
type Decider interface {
	CheckContext(context.Context, *Request) (Decision, error)
	PeekContext(context.Context, *Request) (Decision, error)
	Wait(context.Context, *Request) (Decision, error)
	RuleNames() []string
}

var _ Decider = (*Limiter)(nil)

func middleware(l Decider, next http.Handler, o MiddlewareOptions, api API) http.Handler {
	deny := newDenial()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := Request{
			API:      api,
			Method:   r.Method,
			Path:     r.URL.EscapedPath(),
			ClientIP: clientIP(r, o.TrustedProxies),
		}
		if api == APIBackend {
			req.SecretKey = r.Header.Get(fieldAuthorization)
		}
		if o.Tenant != nil {
			req.Tenant = o.Tenant(r)
		}
		d, err := check(r.Context(), l, &req)
		if err != nil {
			if o.OnError != nil {
				o.OnError(r, err)
			}
			if o.FailOpen {
				next.ServeHTTP(w, r)
			} else {
				http.Error(w, http.StatusText(FailClosedStatus), FailClosedStatus)
			}
			return
		}
		pass, err := respond(w, &d, &deny)
		if err != nil && o.OnError != nil {
			o.OnError(r, err)
		}
		if pass {
			next.ServeHTTP(w, r)
		}
	})
}

// check is l.CheckContext(ctx, req). The two limiters are called
// directly: through the interface req would escape to the heap, an
// allocation per request.
func check(ctx context.Context, l Decider, req *Request) (Decision, error) {
	switch lim := l.(type) {
	case *Limiter:
		return lim.Check(req)
	case *RedisLimiter:
		return lim.CheckContext(ctx, req)
	}
	r := *req
	return l.CheckContext(ctx, &r)
}

// The fields' names as http.Header.Set would canonicalise them, so that
// setting them allocates no key ("RateLimit" becomes "Ratelimit").
const (
	fieldAuthorization   = "Authorization"
	fieldRateLimitPolicy = "Ratelimit-Policy"
	fieldRateLimit       = "Ratelimit"
	fieldRetryAfter      = "Retry-After"
	fieldContentType     = "Content-Type"
	fieldContentLength   = "Content-Length"
)

// denial is what every 429 carries besides its fields: Clerk's body.
type denial struct {
	body          []byte
	contentLength string
}

func newDenial() denial {
	body := TooManyRequestsBody()
	return denial{body: body, contentLength: strconv.Itoa(len(body))}
}

// respond writes d's answer into w, and is the only code that writes a
// decision's answer: the RateLimit fields; on a denial also the 429
// status, Retry-After and Clerk's body. It reports whether the request goes on to the next
// handler. An error writing the fields leaves them out; the decision
// stands. (The C library's coming call that writes every field and the
// status at once replaces the inside of this function.)
func respond(w http.ResponseWriter, d *Decision, deny *denial) (pass bool, err error) {
	f, err := d.Headers()
	h := w.Header()
	if d.Allowed {
		setFields(h, &f, false, "")
		return true, err
	}
	setFields(h, &f, true, deny.contentLength)
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.Write(deny.body)
	return false, err
}

// setFields sets the non-empty fields of f in h, Retry-After only when
// denied, and Content-Type and Content-Length of Clerk's JSON body when
// contentLength is given. Header.Set would allocate a slice per field; here
// all values share one backing array, each slice capped at its one value.
func setFields(h http.Header, f *Headers, denied bool, contentLength string) {
	var vals []string
	vals = setField(h, vals, fieldRateLimitPolicy, f.RateLimitPolicy)
	vals = setField(h, vals, fieldRateLimit, f.RateLimit)
	if denied {
		vals = setField(h, vals, fieldRetryAfter, f.RetryAfter)
	}
	if contentLength != "" {
		vals = setField(h, vals, fieldContentType, "application/json")
		setField(h, vals, fieldContentLength, contentLength)
	}
}

func setField(h http.Header, vals []string, name, v string) []string {
	if v == "" {
		return vals
	}
	if vals == nil {
		vals = make([]string, 0, 5)
	}
	vals = append(vals, v)
	n := len(vals)
	h[name] = vals[n-1 : n : n]
	return vals
}

// clientIP is the address of the connection's peer or, when that is a
// trusted proxy, the right-most untrusted X-Forwarded-For address. The zero
// Addr when RemoteAddr is malformed.
func clientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	peer := parseHost(r.RemoteAddr)
	if !peer.IsValid() || !isTrusted(peer, trusted) {
		return peer
	}
	client := peer
	values := r.Header.Values("X-Forwarded-For")
	for i := len(values) - 1; i >= 0; i-- {
		rest := values[i]
		for rest != "" {
			entry := rest
			if c := strings.LastIndexByte(rest, ','); c >= 0 {
				entry, rest = rest[c+1:], rest[:c]
			} else {
				rest = ""
			}
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue
			}
			a := parseHost(entry)
			if !a.IsValid() {
				return client
			}
			client = a
			if !isTrusted(a, trusted) {
				return client
			}
		}
	}
	return client
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseHost reads an address with or without a port ("192.0.2.1",
// "192.0.2.1:80", "[2001:db8::1]:80", "2001:db8::1"), IPv4-mapped IPv6 as
// IPv4, dropping any zone. The zero Addr when it is none of these.
func parseHost(s string) netip.Addr {
	// "ip:port", the form of every RemoteAddr, first: a failed parse
	// allocates its error. Whatever this rejects takes the general path.
	if s != "" && (s[0] == '[' || strings.Count(s, ":") == 1) {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			return ap.Addr().Unmap().WithZone("")
		}
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		host, _, err := net.SplitHostPort(s)
		if err != nil {
			return netip.Addr{}
		}
		if a, err = netip.ParseAddr(host); err != nil {
			return netip.Addr{}
		}
	}
	return a.Unmap().WithZone("")
}
