// A module of its own, so the package's module needs nothing but the
// standard library: golang.org/x/time comes from Debian's
// golang-golang-x-time-dev, not from a module proxy.
module github.com/ratecard/ratecard/go/compare

go 1.19

require (
	github.com/ratecard/ratecard/go v0.0.0
	golang.org/x/time v0.3.0
)

replace github.com/ratecard/ratecard/go => ../

replace golang.org/x/time => /usr/share/gocode/src/golang.org/x/time
