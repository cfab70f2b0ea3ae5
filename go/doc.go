// Package ratecard is an embeddable rate limiter that answers the way
// Clerk's API does: a cgo binding of the ratecard C library, with net/http
// middleware for servers and an http.RoundTripper that paces clients.
//
// A Limiter decides requests against a rule table, Clerk's by default:
//
//	l, err := ratecard.New(ratecard.Options{})
//	...
//	defer l.Close()
//	d, err := l.Check(&ratecard.Request{
//		API: ratecard.APIFrontend, Method: "POST", Path: "/v1/client/sign_ins",
//		ClientIP: netip.MustParseAddr("203.0.113.9"),
//	})
//	if !d.Allowed { /* 429; d.SetHeaders(w.Header()) writes Retry-After */ }
//
// Servers wrap their handlers in Frontend (keyed by client IP) or Backend
// (keyed by the Authorization header's secret key), which answer 429 with
// Retry-After, the RateLimit-Policy and RateLimit fields and Clerk's JSON
// body; a request they cannot decide fails closed with FailClosedStatus
// (503). Programs that call Clerk's Backend API send through a Transport,
// which waits before sending instead of drawing 429s; Close it when done.
//
// A Limiter is safe for concurrent use. Its table lives in C memory: Close
// it when done. Strings cross into C without copying; a decision makes no
// Go allocation, and its response fields one string.
//
// Building needs cgo and the static library: run
// `cargo build -p ratecard-ffi --release` in the repository first, which
// leaves target/release/libratecard.a where this package links it from.
package ratecard
