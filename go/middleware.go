package ratecard

import (
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
)

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
	// returns an error. By default they fail closed: 503 Service
	// Unavailable, and the next handler is not called.
	FailOpen bool

	// OnError, if set, is told of every limiter error (for logging); the
	// request is then handled as FailOpen says.
	OnError func(*http.Request, error)
}

// Frontend limits requests to a Frontend API by client IP (see
// MiddlewareOptions.TrustedProxies), as Clerk does.
//
// A denied request gets 429 Too Many Requests with Retry-After (unless no
// wait can help), RateLimit-Policy, RateLimit and Clerk's JSON body. An
// allowed one gets the RateLimit-Policy and RateLimit fields and goes on to
// next; so does a dry-run denial. A request the limiter cannot decide (an
// error: say a sign-in without a usable client IP) fails closed with 503,
// not 429, because retrying will not help and the fault is the server's;
// MiddlewareOptions.FailOpen passes it on instead.
func Frontend(l *Limiter, next http.Handler, o MiddlewareOptions) http.Handler {
	return middleware(l, next, o, APIFrontend)
}

// Backend limits requests to a Backend API by the secret key in their
// Authorization header ("Bearer sk_live_..."), as Clerk does; a request
// without one is limited by client IP at the development limit. Responses
// are as Frontend's.
func Backend(l *Limiter, next http.Handler, o MiddlewareOptions) http.Handler {
	return middleware(l, next, o, APIBackend)
}

func middleware(l *Limiter, next http.Handler, o MiddlewareOptions, api API) http.Handler {
	body := TooManyRequestsBody()
	bodyLen := strconv.Itoa(len(body))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := Request{
			API:      api,
			Method:   r.Method,
			Path:     r.URL.EscapedPath(),
			ClientIP: clientIP(r, o.TrustedProxies),
		}
		if api == APIBackend {
			req.SecretKey = r.Header.Get("Authorization")
		}
		if o.Tenant != nil {
			req.Tenant = o.Tenant(r)
		}
		d, err := l.Check(&req)
		if err != nil {
			if o.OnError != nil {
				o.OnError(r, err)
			}
			if o.FailOpen {
				next.ServeHTTP(w, r)
			} else {
				http.Error(w, http.StatusText(http.StatusServiceUnavailable), http.StatusServiceUnavailable)
			}
			return
		}
		h := w.Header()
		d.SetHeaders(h)
		if d.Allowed {
			next.ServeHTTP(w, r)
			return
		}
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", bodyLen)
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write(body)
	})
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
