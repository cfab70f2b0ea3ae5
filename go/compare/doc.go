// Package compare holds benchmarks of ratecard's Check against its peers in
// one run: a bare cgo call (the floor of any call into the C library) and
// golang.org/x/time/rate as Go programs use it for keyed limits (a map of
// limiters under a mutex). Run it with go/bench.sh.
package compare
