package ratecard

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestGateShutWaitsForCallsInFlight(t *testing.T) {
	var g gate
	ticket, ok := g.enter()
	if !ok {
		t.Fatal("a new gate refused a call")
	}
	done := make(chan bool)
	go func() { done <- g.shut() }()
	select {
	case <-done:
		t.Fatal("shut returned with a call in flight")
	case <-time.After(20 * time.Millisecond):
	}
	if _, ok := g.enter(); ok {
		t.Fatal("a shutting gate admitted a call")
	}
	g.exit(ticket)
	if first := <-done; !first {
		t.Fatal("the first shut reported the gate already shut")
	}
	if g.shut() {
		t.Fatal("a second shut reported shutting")
	}
}

func TestGateAdmitsNothingOnceShut(t *testing.T) {
	var g gate
	var inFlight atomic.Int64
	var shutDone, admittedAfter atomic.Bool
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if ticket, ok := g.enter(); ok {
					inFlight.Add(1)
					if shutDone.Load() {
						admittedAfter.Store(true)
					}
					inFlight.Add(-1)
					g.exit(ticket)
				}
			}
		}()
	}
	time.Sleep(5 * time.Millisecond)
	g.shut()
	shutDone.Store(true)
	if n := inFlight.Load(); n != 0 {
		t.Fatalf("%d calls in flight after shut", n)
	}
	time.Sleep(5 * time.Millisecond)
	close(stop)
	wg.Wait()
	if admittedAfter.Load() {
		t.Fatal("a call was admitted after shut")
	}
}
