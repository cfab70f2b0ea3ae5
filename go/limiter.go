package ratecard

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync"
	"time"
)

// Limiter decides requests against a rule table. Its state lives in memory
// the C library owns; Close frees it.
//
// A Limiter is safe for concurrent use by any number of goroutines. Close
// may be called concurrently with other calls: it waits for the calls in
// flight, and calls after it return ErrClosed.
type Limiter struct {
	// gate admits calls until Close, which waits for those in flight
	// before freeing h.
	gate  gate
	h     handle
	names []string
	rules []RuleInfo
	clock func() time.Duration
	sleep func(context.Context, time.Duration) error
}

// Stats are counters of a limiter's table. Every counter only grows while
// the table lives, each decision is counted once (peeks are not), and with
// no decision in flight the sums are exact; while decisions run a read may
// miss those still in flight, never more.
type Stats struct {
	// Allowed counts decisions allowed (charged).
	Allowed uint64
	// Limited counts decisions denied and enforced.
	Limited uint64
	// DryRunLimited counts would-be denials of a DryRun limiter.
	DryRunLimited uint64
	// Exempt counts requests exempt from every rule (GET /v1/jwks).
	Exempt uint64
	// Unmatched counts requests that matched no rule.
	Unmatched uint64
	// Errors counts requests refused with an error.
	Errors uint64
	// Inserts counts keys inserted.
	Inserts uint64
	// Evicted counts inserts that replaced a live key (replenished or not).
	Evicted uint64
	// EvictedInDebt counts inserts that replaced a key still in debt.
	EvictedInDebt uint64
	// Full counts requests refused or admitted untracked because the table
	// was full of keys in debt (PolicyDeny and PolicyAdmit).
	Full uint64
	// RemoteCalls, RemoteErrors, RemoteFallbacks and RemoteCached count
	// round trips to Redis, the failed ones, the decisions a policy answered
	// instead, and denials answered from the local cache of Redis denials.
	RemoteCalls, RemoteErrors, RemoteFallbacks, RemoteCached uint64
	// Occupancy is the slots holding a key now (a scan of the table: for
	// monitoring, not for every request).
	Occupancy uint64
	// Capacity is the slots in the table.
	Capacity uint64
}

// New makes a Limiter. Close it when done; an unreachable Limiter is also
// freed by a finalizer.
func New(o Options) (*Limiter, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	h, err := cNew(&o)
	if err != nil {
		return nil, err
	}
	names := cRuleNames(h)
	l := &Limiter{h: h, names: names, rules: cRules(h, names), clock: o.Clock, sleep: o.Sleep}
	if l.sleep == nil {
		l.sleep = sleepTimer
	}
	runtime.SetFinalizer(l, (*Limiter).Close)
	return l, nil
}

// validate rejects what would not survive the conversion to C integers.
func (o *Options) validate() error {
	if o.Capacity < 0 || o.Capacity > math.MaxUint32 {
		return ErrInvalidCapacity
	}
	if o.IPv6PrefixLen < 0 || o.IPv6PrefixLen > 128 {
		return ErrInvalidConfig
	}
	for _, r := range o.Rules {
		if r.Limit < 0 || r.Limit > math.MaxUint32 || r.Burst < 0 || r.Burst > math.MaxUint32 || r.Period < 0 {
			return fmt.Errorf("%w: rule %q: limit, burst or period out of range", ErrInvalidRules, r.Name)
		}
	}
	return nil
}

// Close frees the limiter. It waits for calls in flight; later calls return
// ErrClosed. Closing twice does nothing.
func (l *Limiter) Close() error {
	if l.gate.shut() {
		cFree(l.h)
		runtime.SetFinalizer(l, nil)
	}
	return nil
}

// now is the caller's clock, if any: (time, false); else (0, true) and the
// C library reads CLOCK_MONOTONIC itself.
func (l *Limiter) now() (uint64, bool) {
	if l.clock == nil {
		return 0, true
	}
	if t := l.clock(); t > 0 {
		return uint64(t), false
	}
	return 0, false
}

// Check decides r, charging every rule it matches if it is allowed. An
// error means r is malformed (see the Err constants): a server should fail
// closed on it unless configured otherwise.
func (l *Limiter) Check(r *Request) (Decision, error) { return l.decide(false, r) }

// Peek is the decision Check would give, consuming and counting nothing.
func (l *Limiter) Peek(r *Request) (Decision, error) { return l.decide(true, r) }

func (l *Limiter) decide(peek bool, r *Request) (d Decision, err error) {
	now, useClock := l.now()
	ticket, ok := l.gate.enter()
	if !ok {
		return d, ErrClosed
	}
	res := cDecide(l.h, peek, useClock, now, r)
	l.gate.exit(ticket)
	runtime.KeepAlive(l)
	if st := res.fill(&d); st != statusOK {
		return Decision{}, st
	}
	l.own(&d)
	return d, nil
}

// CheckKey charges cost units (0 means 1) of rule number rule to the opaque
// key, for callers that classify requests themselves (a job queue, a
// gateway's own descriptors). The rule's quota and algorithm apply; its
// routes, API and scope are not consulted. Keys of CheckKey never meet the
// subjects of Check.
func (l *Limiter) CheckKey(rule int, key []byte, cost uint32) (Decision, error) {
	return l.decideKey(false, rule, key, cost)
}

// PeekKey is the decision CheckKey would give, consuming nothing.
func (l *Limiter) PeekKey(rule int, key []byte, cost uint32) (Decision, error) {
	return l.decideKey(true, rule, key, cost)
}

func (l *Limiter) decideKey(peek bool, rule int, key []byte, cost uint32) (d Decision, err error) {
	if rule < 0 || rule >= len(l.names) {
		return d, ErrUnknownRule
	}
	now, useClock := l.now()
	ticket, ok := l.gate.enter()
	if !ok {
		return d, ErrClosed
	}
	res := cDecideKey(l.h, peek, useClock, now, uint32(rule), key, cost)
	l.gate.exit(ticket)
	runtime.KeepAlive(l)
	if st := res.fill(&d); st != statusOK {
		return Decision{}, st
	}
	l.own(&d)
	return d, nil
}

// CheckContext is Check, for the Decider interface: this host's table
// never waits, so ctx only ends it before it starts.
func (l *Limiter) CheckContext(ctx context.Context, r *Request) (Decision, error) {
	if err := ctx.Err(); err != nil {
		return Decision{}, err
	}
	return l.decide(false, r)
}

// PeekContext is Peek, for the Decider interface.
func (l *Limiter) PeekContext(ctx context.Context, r *Request) (Decision, error) {
	if err := ctx.Err(); err != nil {
		return Decision{}, err
	}
	return l.decide(true, r)
}

// Wait blocks until r conforms, then charges it, and returns the decision.
// It sleeps each decision's RetryAfter (through Options.Sleep), and returns
// ctx's error if ctx is done first, or at once when ctx's deadline comes
// before the wait would end. A cost that never fits returns ErrNeverFits.
// An exempt or unmatched request returns at once.
func (l *Limiter) Wait(ctx context.Context, r *Request) (Decision, error) {
	return wait(ctx, l, r, l.sleep, l.clock == nil)
}

// wait is Wait on either limiter; realClock says that ctx's deadline and
// the decisions' RetryAfter are on one clock.
func wait(ctx context.Context, l Decider, r *Request, sleep func(context.Context, time.Duration) error, realClock bool) (Decision, error) {
	for {
		if err := ctx.Err(); err != nil {
			return Decision{}, err
		}
		// Peek first, so that waiting counts no denials.
		d, err := l.PeekContext(ctx, r)
		if err == nil && d.Allowed {
			if d, err = l.CheckContext(ctx, r); err == nil && d.Allowed {
				return d, nil
			}
		}
		if err != nil {
			return d, err
		}
		if d.NeverFits {
			return d, ErrNeverFits
		}
		if deadline, ok := ctx.Deadline(); ok && realClock && time.Until(deadline) < d.RetryAfter {
			return d, context.DeadlineExceeded
		}
		if err := sleep(ctx, d.RetryAfter); err != nil {
			return d, err
		}
	}
}

// sleep is Wait's default: a timer, stopped if ctx is done first.
func sleepTimer(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Reset forgets the state of every rule r matches, for r's subject (after
// a successful sign-in, say), and returns the number of slots cleared.
func (l *Limiter) Reset(r *Request) (int, error) {
	ticket, ok := l.gate.enter()
	if !ok {
		return 0, ErrClosed
	}
	defer l.gate.exit(ticket)
	n, st := cReset(l.h, r)
	runtime.KeepAlive(l)
	if st != statusOK {
		return 0, st
	}
	return n, nil
}

// ResetKey forgets the state of rule number rule for key (see CheckKey).
func (l *Limiter) ResetKey(rule int, key []byte) (int, error) {
	if rule < 0 || rule >= len(l.names) {
		return 0, ErrUnknownRule
	}
	ticket, ok := l.gate.enter()
	if !ok {
		return 0, ErrClosed
	}
	defer l.gate.exit(ticket)
	n, st := cResetKey(l.h, uint32(rule), key)
	runtime.KeepAlive(l)
	if st != statusOK {
		return 0, st
	}
	return n, nil
}

// Stats returns the table's counters.
func (l *Limiter) Stats() (Stats, error) {
	ticket, ok := l.gate.enter()
	if !ok {
		return Stats{}, ErrClosed
	}
	defer l.gate.exit(ticket)
	s, st := cStats(l.h)
	runtime.KeepAlive(l)
	if st != statusOK {
		return Stats{}, st
	}
	return s, nil
}

// RuleStats are the decisions one rule bound.
type RuleStats struct {
	// Allowed, Limited and DryRunLimited count decisions with the rule
	// binding; Exempt counts requests the (unlimited) rule made exempt.
	Allowed, Limited, DryRunLimited, Exempt uint64
}

// RuleStats returns the decisions with rule number rule binding.
func (l *Limiter) RuleStats(rule int) (RuleStats, error) {
	if rule < 0 || rule >= len(l.names) {
		return RuleStats{}, ErrUnknownRule
	}
	ticket, ok := l.gate.enter()
	if !ok {
		return RuleStats{}, ErrClosed
	}
	defer l.gate.exit(ticket)
	s, st := cRuleStats(l.h, uint32(rule))
	runtime.KeepAlive(l)
	if st != statusOK {
		return RuleStats{}, st
	}
	return s, nil
}

// RuleInfo is one rule of a limiter's table, as the table enforces it.
type RuleInfo struct {
	// Name is the rule's stable name, e.g. "fapi.sign_ins.create".
	Name string
	// API is the API the rule belongs to.
	API API
	// Limit is the requests per Period; 0 means unlimited (exempt).
	Limit int
	// Period is the rule's period.
	Period time.Duration
	// Burst is the requests that may be sent back to back (1 in pace mode).
	Burst int
}

// Rules returns the limiter's rules, by index: read from the library, so
// a program never retypes Clerk's table.
func (l *Limiter) Rules() []RuleInfo {
	return append([]RuleInfo(nil), l.rules...)
}

// RuleIndex returns the number of the rule called name, for CheckKey.
func (l *Limiter) RuleIndex(name string) (int, error) {
	for i, n := range l.names {
		if n == name {
			return i, nil
		}
	}
	return -1, ErrUnknownRule
}

// RuleNames returns the names of the limiter's rules, in rule-number order.
func (l *Limiter) RuleNames() []string {
	return append([]string(nil), l.names...)
}

// fields writes the response fields of d, a decision of l.
func (l *Limiter) fields(d *Decision) (Headers, error) {
	ticket, ok := l.gate.enter()
	if !ok {
		return Headers{}, ErrClosed
	}
	h, st := cFields(l.h, d)
	l.gate.exit(ticket)
	runtime.KeepAlive(l)
	if st != statusOK {
		return Headers{}, st
	}
	return h, nil
}

// Version is the C library's version, e.g. "0.1.0".
func Version() string { return cVersion() }

var body429 = struct {
	once sync.Once
	b    []byte
}{}

// TooManyRequestsBody returns Clerk's 429 response body (JSON), as the C
// library writes it.
func TooManyRequestsBody() []byte {
	body429.once.Do(func() { body429.b = c429Body() })
	return append([]byte(nil), body429.b...)
}

// Monotonic returns CLOCK_MONOTONIC, the clock a Limiter reads when
// Options.Clock is nil.
func Monotonic() (time.Duration, error) {
	t, st := cMonotonic()
	if st != statusOK {
		return 0, st
	}
	return t, nil
}
