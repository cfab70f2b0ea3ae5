package ratecard

import (
	"sync/atomic"
	"time"
)

// breaker is a RedisLimiter's circuit breaker: after limit consecutive
// failures it stays open for cooldown, answering at once, then lets one
// probe through. Lock-free: every decision through Redis reads it.
type breaker struct {
	limit    int64 // negative: never opens
	cooldown int64 // ns

	failures  atomic.Int64
	openUntil atomic.Int64 // ns on the limiter's clock; 0 while closed
	probing   atomic.Bool  // a probe is in flight
	opens     atomic.Uint64
	rejected  atomic.Uint64
}

// allow says whether a round trip may go out at t, and whether it is the
// probe (which must end in success, failure or release).
func (b *breaker) allow(t time.Duration) (pass, probe bool) {
	until := b.openUntil.Load()
	if until == 0 {
		return true, false
	}
	if int64(t) >= until && b.probing.CompareAndSwap(false, true) {
		return true, true
	}
	b.rejected.Add(1)
	return false, false
}

// success closes the breaker after a probe; a call that started before the
// breaker opened does not close it.
func (b *breaker) success(probe bool) {
	if probe {
		b.failures.Store(0)
		b.openUntil.Store(0)
		b.probing.Store(false)
		return
	}
	if b.openUntil.Load() == 0 {
		b.failures.Store(0)
	}
}

// failure counts a failed round trip at t; it reports whether the breaker
// opened.
func (b *breaker) failure(t time.Duration, probe bool) bool {
	if b.limit < 0 {
		return false
	}
	until := int64(t) + b.cooldown
	if until <= 0 {
		until = 1
	}
	if probe {
		b.openUntil.Store(until)
		b.probing.Store(false)
		b.opens.Add(1)
		return true
	}
	if b.failures.Add(1) >= b.limit && b.openUntil.CompareAndSwap(0, until) {
		b.opens.Add(1)
		return true
	}
	return false
}

// release ends a probe that proved nothing (the caller gave up, the
// limiter closed): the next caller probes instead.
func (b *breaker) release(probe bool) {
	if probe {
		b.probing.Store(false)
	}
}

func (b *breaker) stats() BreakerStats {
	return BreakerStats{
		Open:     b.openUntil.Load() != 0,
		Opens:    b.opens.Load(),
		Rejected: b.rejected.Load(),
	}
}
