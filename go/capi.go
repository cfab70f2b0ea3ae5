package ratecard

// Every call into the C library goes through this file and its C side,
// shim.c (declared in shim.h); every use of unsafe and cgo lives here.

/*
#cgo CFLAGS: -I${SRCDIR}/../include
#cgo LDFLAGS: -L${SRCDIR}/../target/release -l:libratecard.a -lpthread -ldl -lm
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"encoding/binary"
	"net/netip"
	"time"
	"unsafe"
)

// handle is a limiter of the C library (a ratecard_limiter *); 0 for none.
type handle = C.uintptr_t

// The Go constants must equal the header's: each line fails to compile
// (constant index out of range) when they differ.
var (
	_ = [1]int{}[uint32(APIFrontend)^C.RATECARD_API_FRONTEND]
	_ = [1]int{}[uint32(APIBackend)^C.RATECARD_API_BACKEND]
	_ = [1]int{}[uint8(PolicyEvict)^C.RATECARD_POLICY_EVICT]
	_ = [1]int{}[uint8(PolicyDeny)^C.RATECARD_POLICY_DENY]
	_ = [1]int{}[uint8(PolicyAdmit)^C.RATECARD_POLICY_ADMIT]
	_ = [1]int{}[uint8(KindAny)^C.RATECARD_KIND_ANY]
	_ = [1]int{}[uint8(KindProduction)^C.RATECARD_KIND_PRODUCTION]
	_ = [1]int{}[uint8(KindDevelopment)^C.RATECARD_KIND_DEVELOPMENT]
	_ = [1]int{}[uint8(ScopeClientIP)^C.RATECARD_SCOPE_CLIENT_IP]
	_ = [1]int{}[uint8(ScopeInstance)^C.RATECARD_SCOPE_INSTANCE]
	_ = [1]int{}[uint8(ScopeInstanceParams)^C.RATECARD_SCOPE_INSTANCE_PARAMS]
	_ = [1]int{}[uint8(AlgorithmDefault)^C.RATECARD_ALGORITHM_DEFAULT]
	_ = [1]int{}[uint8(AlgorithmGCRA)^C.RATECARD_ALGORITHM_GCRA]
	_ = [1]int{}[uint8(AlgorithmFixedWindow)^C.RATECARD_ALGORITHM_FIXED_WINDOW]
	_ = [1]int{}[uint32(noRule)^C.RATECARD_NO_RULE]
	_ = [1]int{}[uint32(statusOK)^C.RATECARD_OK]
	_ = [1]int{}[uint32(statusBufferTooShort)^C.RATECARD_BUFFER_TOO_SHORT]
	_ = [1]int{}[uint32(ErrInvalidArgument)^C.RATECARD_INVALID_ARGUMENT]
	_ = [1]int{}[uint32(ErrInvalidIP)^C.RATECARD_INVALID_IP]
	_ = [1]int{}[uint32(ErrUnknownAPI)^C.RATECARD_UNKNOWN_API]
	_ = [1]int{}[uint32(ErrMissingSubject)^C.RATECARD_MISSING_SUBJECT]
	_ = [1]int{}[uint32(ErrUnknownRule)^C.RATECARD_UNKNOWN_RULE]
	_ = [1]int{}[uint32(ErrInvalidConfig)^C.RATECARD_INVALID_CONFIG]
	_ = [1]int{}[uint32(ErrInvalidRules)^C.RATECARD_INVALID_RULES]
	_ = [1]int{}[uint32(ErrInvalidCapacity)^C.RATECARD_INVALID_CAPACITY]
	_ = [1]int{}[uint32(ErrNoLockFreeCAS)^C.RATECARD_NO_LOCK_FREE_CAS]
	_ = [1]int{}[uint32(ErrOutOfMemory)^C.RATECARD_OUT_OF_MEMORY]
	_ = [1]int{}[uint32(ErrSeedUnavailable)^C.RATECARD_SEED_UNAVAILABLE]
	_ = [1]int{}[uint32(ErrPanic)^C.RATECARD_PANIC]
	_ = [1]int{}[uint32(ErrClockUnavailable)^C.RATECARD_CLOCK_UNAVAILABLE]
	_ = [1]int{}[uint32(ErrRemoteBadReply)^C.RATECARD_REMOTE_BAD_REPLY]
	_ = [1]int{}[uint32(ErrMixedSubjects)^C.RATECARD_MIXED_SUBJECTS]
	_ = [1]int{}[uint32(ErrInvalidCall)^C.RATECARD_INVALID_CALL]
	_ = [1]int{}[remoteCallBytes^C.RATECARD_REMOTE_CALL_BYTES]
	_ = [1]int{}[remotePeek^C.RATECARD_REMOTE_PEEK]
	_ = [1]int{}[remoteExact^C.RATECARD_REMOTE_EXACT]
	_ = [1]int{}[remoteEventError^C.RATECARD_REMOTE_EVENT_ERROR]
	_ = [1]int{}[remoteEventFallback^C.RATECARD_REMOTE_EVENT_FALLBACK]
	_ = [1]int{}[maxMetricsZones^C.RC_METRICS_ZONES]
)

// decided is a decision as the C side hands it back, with its status.
type decided = C.rc_decided

// fill sets every field of d that the C library decides (all but Rule and
// the limiter), and returns the call's status.
func (r *decided) fill(d *Decision) Status {
	if r.status != C.RATECARD_OK {
		return Status(r.status)
	}
	d.Allowed = r.allowed != 0
	d.Exempt = r.exempt != 0
	d.DryRunDenied = r.dry_run_denied != 0
	d.NeverFits = r.never_fits != 0
	d.RetryAfter = duration(uint64(r.retry_after_ns))
	d.Reset = duration(uint64(r.reset_ns))
	d.Limit = int(r.limit)
	d.Remaining = int(r.remaining)
	d.rule = uint32(r.rule)
	d.retryAfterSecs = uint32(r.retry_after_secs)
	d.matched = uint64(r.matched)
	return statusOK
}

// cDecision is fill backwards: the ratecard_decision d was made from.
func cDecision(d *Decision) C.ratecard_decision {
	return C.ratecard_decision{
		allowed:          C.bool(d.Allowed),
		exempt:           C.bool(d.Exempt),
		dry_run_denied:   C.bool(d.DryRunDenied),
		never_fits:       C.bool(d.NeverFits),
		rule:             C.uint32_t(d.rule),
		limit:            C.uint32_t(d.Limit),
		remaining:        C.uint32_t(d.Remaining),
		retry_after_secs: C.uint32_t(d.retryAfterSecs),
		reset_ns:         C.uint64_t(d.Reset),
		retry_after_ns:   C.uint64_t(d.RetryAfter),
		matched:          C.uint64_t(d.matched),
	}
}

// str hands the bytes of s to C without copying: string data holds no Go
// pointers, and cgo keeps call arguments alive for the call. Empty is nil.
func str(s string) (*C.uint8_t, C.size_t) {
	if len(s) == 0 {
		return nil, 0
	}
	// The first word of a string header is its data pointer (unsafe.StringData is Go 1.20+).
	return (*C.uint8_t)(*(*unsafe.Pointer)(unsafe.Pointer(&s))), C.size_t(len(s))
}

// bytesArg is str for a byte slice.
func bytesArg(b []byte) (*C.uint8_t, C.size_t) {
	if len(b) == 0 {
		return nil, 0
	}
	return (*C.uint8_t)(unsafe.Pointer(&b[0])), C.size_t(len(b))
}

// ipWords is the client IP as big-endian words and a length (4, 16, or 0
// for the zero Addr); the C side lays them out as bytes.
func ipWords(a netip.Addr) (hi, lo C.uint64_t, n C.size_t) {
	switch {
	case a.Is4():
		b := a.As4()
		return C.uint64_t(binary.BigEndian.Uint32(b[:])) << 32, 0, 4
	case a.Is6():
		b := a.As16()
		return C.uint64_t(binary.BigEndian.Uint64(b[:8])), C.uint64_t(binary.BigEndian.Uint64(b[8:])), 16
	}
	return 0, 0, 0
}

func flag(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// cDecide is ratecard_check (or _peek) of r at now, or at the C library's
// clock when useClock.
func cDecide(h handle, peek, useClock bool, now uint64, r *Request) decided {
	method, methodLen := str(r.Method)
	path, pathLen := str(r.Path)
	key, keyLen := str(r.SecretKey)
	tenant, tenantLen := str(r.Tenant)
	hi, lo, ipLen := ipWords(r.ClientIP)
	return C.rc_decide(h, flag(peek), flag(useClock), C.uint64_t(now),
		C.uint32_t(r.API), method, methodLen, path, pathLen, hi, lo, ipLen,
		key, keyLen, tenant, tenantLen, C.uint32_t(r.Cost))
}

func cDecideKey(h handle, peek, useClock bool, now uint64, rule uint32, key []byte, cost uint32) decided {
	k, kLen := bytesArg(key)
	return C.rc_decide_key(h, flag(peek), flag(useClock), C.uint64_t(now), C.uint32_t(rule), k, kLen, C.uint32_t(cost))
}

func cReset(h handle, r *Request) (int, Status) {
	method, methodLen := str(r.Method)
	path, pathLen := str(r.Path)
	key, keyLen := str(r.SecretKey)
	tenant, tenantLen := str(r.Tenant)
	hi, lo, ipLen := ipWords(r.ClientIP)
	res := C.rc_reset(h, C.uint32_t(r.API), method, methodLen, path, pathLen, hi, lo, ipLen,
		key, keyLen, tenant, tenantLen)
	return int(res.cleared), Status(res.status)
}

func cResetKey(h handle, rule uint32, key []byte) (int, Status) {
	k, kLen := bytesArg(key)
	res := C.rc_reset_key(h, C.uint32_t(rule), k, kLen)
	return int(res.cleared), Status(res.status)
}

func cStats(h handle) (Stats, Status) {
	res := C.rc_limiter_stats(h)
	s := res.s
	return Stats{
		Allowed:         uint64(s.allowed),
		Limited:         uint64(s.limited),
		DryRunLimited:   uint64(s.dry_run_limited),
		Exempt:          uint64(s.exempt),
		Unmatched:       uint64(s.unmatched),
		Errors:          uint64(s.errors),
		Inserts:         uint64(s.inserts),
		Evicted:         uint64(s.evicted),
		EvictedInDebt:   uint64(s.evicted_in_debt),
		Full:            uint64(s.full),
		RemoteCalls:     uint64(s.remote_calls),
		RemoteErrors:    uint64(s.remote_errors),
		RemoteFallbacks: uint64(s.remote_fallbacks),
		RemoteCached:    uint64(s.remote_cached),
		Occupancy:       uint64(s.occupancy),
		Capacity:        uint64(s.capacity),
	}, Status(res.status)
}

func cRuleStats(h handle, rule uint32) (RuleStats, Status) {
	res := C.rc_rule_stats_of(h, C.uint32_t(rule))
	s := res.s
	return RuleStats{
		Allowed:       uint64(s.allowed),
		Limited:       uint64(s.limited),
		DryRunLimited: uint64(s.dry_run_limited),
		Exempt:        uint64(s.exempt),
	}, Status(res.status)
}

// cRules reads the rule table's quotas, as enforced, once, at New.
func cRules(h handle, names []string) []RuleInfo {
	rules := make([]RuleInfo, len(names))
	for i := range rules {
		res := C.rc_rule_info_of(h, C.uint32_t(i))
		if res.status != C.RATECARD_OK {
			continue
		}
		info := res.info
		rules[i] = RuleInfo{
			Name:   names[i],
			API:    API(info.api),
			Limit:  int(info.limit),
			Period: time.Duration(info.period_ns),
			Burst:  int(info.burst),
		}
	}
	return rules
}

// cRuleNames reads the rule table's names, once, at New.
func cRuleNames(h handle) []string {
	n := uint32(C.rc_rule_count(h))
	names := make([]string, n)
	for i := range names {
		if p := C.rc_rule_name(h, C.uint32_t(i)); p != nil {
			names[i] = C.GoString(p)
		}
	}
	return names
}

// cFields writes the response fields of d: one string, sliced three ways,
// the only allocation unless the fields outgrow the C side's inline buffer.
func cFields(h handle, d *Decision) (Headers, Status) {
	cd := cDecision(d)
	res := C.rc_fields_of(h, cd)
	p, rl, ra := int(res.policy), int(res.ratelimit), int(res.retry_after)
	var s string
	switch res.status {
	case C.RATECARD_OK:
		s = string(unsafe.Slice((*byte)(unsafe.Pointer(&res.text[0])), p+rl+ra))
	case C.RATECARD_BUFFER_TOO_SHORT:
		buf := make([]byte, p+rl+ra)
		lens := C.rc_fields_into(h, cd, (*C.uint8_t)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)))
		if lens.status != C.RATECARD_OK {
			return Headers{}, Status(lens.status)
		}
		s = string(buf)
	default:
		return Headers{}, Status(res.status)
	}
	return Headers{RateLimitPolicy: s[:p], RateLimit: s[p : p+rl], RetryAfter: s[p+rl:]}, statusOK
}

func c429Body() []byte {
	buf := make([]byte, 512)
	n := C.rc_429_body((*C.uint8_t)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)))
	return buf[:n:n]
}

func cStatusText(s Status) string {
	return C.GoString(C.ratecard_status_str(C.ratecard_status(s)))
}

func cVersion() string { return C.GoString(C.ratecard_version()) }

// cMonotonic is the C library's clock (CLOCK_MONOTONIC).
func cMonotonic() (time.Duration, Status) {
	res := C.rc_now()
	if res.status != C.RATECARD_OK {
		return 0, Status(res.status)
	}
	return time.Duration(res.now), statusOK
}

// stackAddress is the address of a local on the calling goroutine's stack
// (gate picks its stripe by it).
func stackAddress() uintptr {
	var local byte
	return uintptr(unsafe.Pointer(&local))
}

func cFree(h handle) { C.rc_free(h) }

// cNew makes a limiter from o. The configuration, the rule table and every
// string in it are laid out in one C allocation, freed before returning:
// ratecard_limiter_new copies the rule table, and a C struct may not point
// into Go memory.
func cNew(o *Options) (handle, error) {
	routes, text := 0, len(o.Seed)
	for i := range o.Rules {
		text += len(o.Rules[i].Name)
		routes += len(o.Rules[i].Routes)
		for _, rt := range o.Rules[i].Routes {
			text += len(rt.Method) + len(rt.Path)
		}
	}
	rulesAt := uintptr(C.sizeof_ratecard_config)
	routesAt := rulesAt + uintptr(len(o.Rules))*C.sizeof_ratecard_rule
	textAt := routesAt + uintptr(routes)*C.sizeof_ratecard_route
	outAt := textAt + (uintptr(text)+7)&^7
	arena := C.calloc(1, C.size_t(outAt+C.sizeof_ratecard_status))
	if arena == nil {
		return 0, ErrOutOfMemory
	}
	defer C.free(arena)

	textBuf := unsafe.Slice((*byte)(unsafe.Add(arena, textAt)), text)
	put := func(s string) (*C.uint8_t, C.size_t) {
		if len(s) == 0 {
			return nil, 0
		}
		n := copy(textBuf, s)
		p := (*C.uint8_t)(unsafe.Pointer(&textBuf[0]))
		textBuf = textBuf[n:]
		return p, C.size_t(n)
	}

	cfg := (*C.ratecard_config)(arena)
	C.ratecard_config_default(cfg)
	if o.Capacity != 0 {
		cfg.capacity = C.uint32_t(o.Capacity)
	}
	cfg.seed, cfg.seed_len = put(string(o.Seed))
	if o.IPv6PrefixLen != 0 {
		cfg.ipv6_prefix_len = C.uint8_t(o.IPv6PrefixLen)
	}
	cfg.dry_run = C.bool(o.DryRun)
	cfg.policy = C.uint8_t(o.Policy)
	cfg.unknown_kind = C.uint8_t(o.UnknownKeyKind)
	cfg.pace = C.bool(o.Pace)
	cfg.algorithm = C.uint8_t(o.Algorithm)

	if len(o.Rules) > 0 {
		crules := unsafe.Slice((*C.ratecard_rule)(unsafe.Add(arena, rulesAt)), len(o.Rules))
		croutes := unsafe.Slice((*C.ratecard_route)(unsafe.Add(arena, routesAt)), routes)
		for i := range o.Rules {
			r, cr := &o.Rules[i], &crules[i]
			cr.name, cr.name_len = put(r.Name)
			cr.api = C.uint32_t(r.API)
			cr.scope = C.uint8_t(r.Scope)
			cr.kind = C.uint8_t(r.Kind)
			cr.limit = C.uint32_t(r.Limit)
			cr.period_ns = C.uint64_t(r.Period)
			cr.burst = C.uint32_t(r.Burst)
			cr.algorithm = C.uint8_t(r.Algorithm)
			if len(r.Routes) > 0 {
				cr.routes, cr.routes_len = &croutes[0], C.size_t(len(r.Routes))
			}
			for j, rt := range r.Routes {
				croutes[j].method, croutes[j].method_len = put(rt.Method)
				croutes[j].path, croutes[j].path_len = put(rt.Path)
			}
			croutes = croutes[len(r.Routes):]
		}
		cfg.rules, cfg.rules_len = &crules[0], C.size_t(len(crules))
	}

	status := (*C.ratecard_status)(unsafe.Add(arena, outAt))
	h := C.rc_new(cfg, status)
	if h == 0 {
		return 0, Status(*status)
	}
	return h, nil
}

// The Redis mode's constants, checked against the header above.
const (
	remoteCallBytes     = 1152
	remotePeek          = 1
	remoteExact         = 2
	remoteEventError    = 1
	remoteEventFallback = 2
	maxMetricsZones     = 32
)

// remoteCall is a prepared ratecard_remote_call: plain bytes, any
// alignment, so it lives in Go memory.
type remoteCall [remoteCallBytes]byte

func (c *remoteCall) ptr() *C.uint8_t { return (*C.uint8_t)(unsafe.Pointer(&c[0])) }

// cRemotePrepare is ratecard_remote_prepare: a decision made at once, or
// (round trip true) a call written into call.
func cRemotePrepare(h handle, flags uint32, useClock bool, now uint64, r *Request, call *remoteCall) (decided, bool) {
	method, methodLen := str(r.Method)
	path, pathLen := str(r.Path)
	key, keyLen := str(r.SecretKey)
	tenant, tenantLen := str(r.Tenant)
	hi, lo, ipLen := ipWords(r.ClientIP)
	res := C.rc_remote_prepare(h, C.uint32_t(flags), flag(useClock), C.uint64_t(now),
		C.uint32_t(r.API), method, methodLen, path, pathLen, hi, lo, ipLen,
		key, keyLen, tenant, tenantLen, C.uint32_t(r.Cost), call.ptr())
	return res.d, res.round_trip != 0
}

// remoteArgs is one call's KEYS and ARGV, sliced out of buf; its buffers
// grow as needed and are reused from call to call.
type remoteArgs struct {
	buf        []byte
	spans      []C.ratecard_span
	keys, args [][]byte
}

// cRemoteWriteArgs is ratecard_remote_write_args into a, growing a's
// buffers once if they are short. A nil wall clock lets the script read
// the server's TIME.
func cRemoteWriteArgs(h handle, call *remoteCall, prefix string, wall *time.Time, a *remoteArgs) Status {
	p, pLen := str(prefix)
	var secs C.uint64_t
	var nanos C.uint32_t
	if wall != nil && wall.Unix() >= 0 {
		secs, nanos = C.uint64_t(wall.Unix()), C.uint32_t(wall.Nanosecond())
	}
	for attempt := 0; attempt < 2; attempt++ {
		buf, bufLen := bytesArg(a.buf)
		var spans *C.ratecard_span
		if len(a.spans) > 0 {
			spans = &a.spans[0]
		}
		res := C.rc_remote_write_args(h, call.ptr(), p, pLen, flag(wall != nil), secs, nanos,
			buf, bufLen, spans, C.size_t(len(a.spans)))
		switch res.status {
		case C.RATECARD_OK:
			a.keys, a.args = a.keys[:0], a.args[:0]
			for i := 0; i < int(res.spans); i++ {
				s := a.spans[i]
				at, n := int(s.offset), int(s.len)
				b := a.buf[at : at+n : at+n]
				if i < int(res.keys) {
					a.keys = append(a.keys, b)
				} else {
					a.args = append(a.args, b)
				}
			}
			return statusOK
		case C.RATECARD_BUFFER_TOO_SHORT:
			a.buf = make([]byte, int(res.bytes)+64)
			a.spans = make([]C.ratecard_span, int(res.spans)+4)
		default:
			return Status(res.status)
		}
	}
	return statusBufferTooShort
}

func cRemoteFinishInts(h handle, call *remoteCall, values []int64) decided {
	var v *C.int64_t
	if len(values) > 0 {
		v = (*C.int64_t)(unsafe.Pointer(&values[0]))
	}
	return C.rc_remote_finish_ints(h, call.ptr(), v, C.size_t(len(values)))
}

func cRemoteFallback(h handle, call *remoteCall) decided {
	return C.rc_remote_fallback(h, call.ptr())
}

func cRemoteCount(h handle, event uint32, now uint64) Status {
	return Status(C.rc_remote_count(h, C.uint32_t(event), C.uint64_t(now)))
}

func cRemoteForget(h handle, call *remoteCall) (int, Status) {
	res := C.rc_remote_forget(h, call.ptr())
	return int(res.cleared), Status(res.status)
}

// cRemoteScript is the charge script's source and its SHA-1.
func cRemoteScript() (script, sha1 string) {
	var n C.size_t
	p := C.ratecard_remote_script(&n)
	return C.GoStringN((*C.char)(unsafe.Pointer(p)), C.int(n)), C.GoString(C.ratecard_remote_script_sha1())
}

// cWriteMetrics is ratecard_write_metrics of the tables hs, named by
// names, into a new buffer.
func cWriteMetrics(hs []handle, names []string) ([]byte, Status) {
	if len(hs) > maxMetricsZones || len(hs) != len(names) {
		return nil, ErrInvalidArgument
	}
	var text []byte
	offsets := make([]C.size_t, len(names)+1)
	for i, n := range names {
		text = append(text, n...)
		offsets[i+1] = C.size_t(len(text))
	}
	var hp *C.uintptr_t
	if len(hs) > 0 {
		hp = &hs[0]
	}
	t, _ := bytesArg(text)
	buf := make([]byte, 16<<10)
	// The page grows between calls only as counters gain digits: two
	// retries with room to spare are plenty.
	for attempt := 0; attempt < 3; attempt++ {
		var n C.size_t
		b, bLen := bytesArg(buf)
		st := C.rc_write_metrics(hp, t, &offsets[0], C.size_t(len(hs)), b, bLen, &n)
		switch st {
		case C.RATECARD_OK:
			return buf[:n], statusOK
		case C.RATECARD_BUFFER_TOO_SHORT:
			buf = make([]byte, int(n)+int(n)/4+256)
		default:
			return nil, Status(st)
		}
	}
	return nil, statusBufferTooShort
}
