package ratecard

import (
	"runtime"
	"sync/atomic"
	"time"
)

// gate lets Close wait for the calls in flight without making every call
// write one shared word: a sync.RWMutex's reader count is a cache line that
// all cores fight over (here ~25ns a call with two goroutines, worse with
// more cores). Calls count themselves on one of several stripes instead.
//
// enter increments a stripe, then reads closed; shut sets closed, then
// reads the stripes. Go's atomics are sequentially consistent, so either
// the call sees closed (and backs out) or shut sees the call (and waits).
type gate struct {
	closed  atomic.Bool
	_       [60]byte // read by every call: not on a line a stripe writes
	stripes [gateStripes]struct {
		n atomic.Int64
		_ [56]byte // a cache line each
	}
}

const gateStripes = 16

// enter admits a call, returning its stripe for exit; false once shut.
func (g *gate) enter() (ticket int, ok bool) {
	s := stripeOfCaller()
	g.stripes[s].n.Add(1)
	if g.closed.Load() {
		g.stripes[s].n.Add(-1)
		return 0, false
	}
	return s, true
}

func (g *gate) exit(s int) { g.stripes[s].n.Add(-1) }

// shut refuses new calls and waits for those in flight, which never block
// (the C library is lock-free). It returns false if already shut.
func (g *gate) shut() bool {
	if g.closed.Swap(true) {
		return false
	}
	for i := range g.stripes {
		for spins := 0; g.stripes[i].n.Load() != 0; spins++ {
			if spins < 100 {
				runtime.Gosched()
			} else {
				time.Sleep(10 * time.Microsecond)
			}
		}
	}
	return true
}

// stripeOfCaller picks a stripe from the address of the calling
// goroutine's stack: goroutines run on separate stacks, so concurrent
// callers mostly land on different stripes. Two that share one only
// share a cache line; correctness never depends on the choice.
func stripeOfCaller() int {
	a := stackAddress()
	return int((a>>11)^(a>>15)^(a>>19)) & (gateStripes - 1)
}
