// The C side of the Go binding: thin wrappers over ratecard.h, shaped for
// cgo. Two rules shape every function here:
//   - the limiter handle crosses as an integer (uintptr_t): a pointer to an
//     incomplete C type would make cgo box it and check it on every call
//     (an allocation and ~10ns);
//   - results come back by value, and requests are built on the C stack,
//     so the only Go memory C sees is bytes (a string's, or a buffer to
//     write into, never holding Go pointers) for the length of one call.
#ifndef RATECARD_GO_SHIM_H
#define RATECARD_GO_SHIM_H

#include <stddef.h>
#include <stdint.h>

#include "ratecard.h"

// A ratecard_decision with its status, compact: it is copied twice on the
// way to Go. The other fields are meaningful only when status is OK.
typedef struct {
	uint64_t reset_ns, retry_after_ns, matched;
	uint32_t status, rule, limit, remaining, retry_after_secs;
	uint8_t allowed, exempt, dry_run_denied, never_fits;
} rc_decided;

typedef struct {
	ratecard_status status;
	uint32_t cleared;
} rc_cleared;

typedef struct {
	ratecard_status status;
	ratecard_stats s;
} rc_stats;

typedef struct {
	ratecard_status status;
	ratecard_rule_stats s;
} rc_rule_stats;

typedef struct {
	ratecard_status status;
	ratecard_rule_info info;
} rc_rule_info;

typedef struct {
	ratecard_status status;
	uint64_t now;
} rc_time;

// Room for the response fields of a decision in rc_fields: enough for
// Clerk's table (an organization invitation's three take about 130
// bytes); a custom table's longer fields take rc_fields_into.
#define RC_FIELDS_INLINE 240

// The response fields of a decision, back to back in text: RateLimit-Policy
// (policy bytes), then RateLimit, then Retry-After. On
// RATECARD_BUFFER_TOO_SHORT the lengths say how much room is needed and
// text holds nothing usable.
typedef struct {
	ratecard_status status;
	uint32_t policy, ratelimit, retry_after;
	uint8_t text[RC_FIELDS_INLINE];
} rc_fields;

// The lengths of rc_fields, for rc_fields_into.
typedef struct {
	ratecard_status status;
	uint32_t policy, ratelimit, retry_after;
} rc_lens;

// Creates a limiter; 0 on failure, with the status in *status.
uintptr_t rc_new(const ratecard_config *config, ratecard_status *status);
void rc_free(uintptr_t l);

// Decides a request (peek: without charging), at now, or at the library's
// clock when use_clock: one cgo crossing per decision. The client IP comes
// as two big-endian words and a length (0, 4 or 16), so that no Go array
// has to escape for it.
rc_decided rc_decide(uintptr_t l, int peek, int use_clock, uint64_t now,
		uint32_t api, const uint8_t *method, size_t method_len,
		const uint8_t *path, size_t path_len, uint64_t ip_hi, uint64_t ip_lo, size_t ip_len,
		const uint8_t *key, size_t key_len, const uint8_t *tenant, size_t tenant_len,
		uint32_t cost);
rc_decided rc_decide_key(uintptr_t l, int peek, int use_clock, uint64_t now,
		uint32_t rule, const uint8_t *key, size_t key_len, uint32_t cost);

rc_cleared rc_reset(uintptr_t l,
		uint32_t api, const uint8_t *method, size_t method_len,
		const uint8_t *path, size_t path_len, uint64_t ip_hi, uint64_t ip_lo, size_t ip_len,
		const uint8_t *key, size_t key_len, const uint8_t *tenant, size_t tenant_len);
rc_cleared rc_reset_key(uintptr_t l, uint32_t rule, const uint8_t *key, size_t key_len);

rc_stats rc_limiter_stats(uintptr_t l);
rc_rule_stats rc_rule_stats_of(uintptr_t l, uint32_t rule);
rc_rule_info rc_rule_info_of(uintptr_t l, uint32_t rule);
uint32_t rc_rule_count(uintptr_t l);
const char *rc_rule_name(uintptr_t l, uint32_t rule);

// Writes the response fields of d (see rc_fields), from
// ratecard_write_response: Retry-After only for an enforced denial.
rc_fields rc_fields_of(uintptr_t l, ratecard_decision d);
// rc_fields_of into a caller's buffer of cap bytes, for fields longer than
// RC_FIELDS_INLINE; RATECARD_BUFFER_TOO_SHORT with the lengths needed (and
// the buffer's contents unusable) when they do not fit.
rc_lens rc_fields_into(uintptr_t l, ratecard_decision d, uint8_t *buf, size_t cap);

// CLOCK_MONOTONIC, as ratecard_now_ns reads it.
rc_time rc_now(void);

// Clerk's 429 body into buf; its length, 0 when it does not fit.
size_t rc_429_body(uint8_t *buf, size_t cap);

// The Redis mode (ratecard_remote_*). A prepared call crosses as the bytes
// of a ratecard_remote_call (RATECARD_REMOTE_CALL_BYTES, any alignment), so
// Go keeps it in its own memory.

// ratecard_remote_prepare's answer: a decision made at once (round_trip 0),
// or a call written into the caller's bytes (round_trip 1).
typedef struct {
	rc_decided d;
	uint8_t round_trip;
} rc_prepared;

// ratecard_remote_write_args's counts (needed, on RATECARD_BUFFER_TOO_SHORT).
typedef struct {
	ratecard_status status;
	uint32_t keys, args, spans;
	uint64_t bytes;
} rc_args;

rc_prepared rc_remote_prepare(uintptr_t l, uint32_t flags, int use_clock, uint64_t now,
		uint32_t api, const uint8_t *method, size_t method_len,
		const uint8_t *path, size_t path_len, uint64_t ip_hi, uint64_t ip_lo, size_t ip_len,
		const uint8_t *key, size_t key_len, const uint8_t *tenant, size_t tenant_len,
		uint32_t cost, uint8_t *call);
// Writes KEYS and ARGV into buf at spans; with_clock 0 lets the script
// read the server's TIME, else secs and nanos are the gateway's wall clock.
rc_args rc_remote_write_args(uintptr_t l, const uint8_t *call,
		const uint8_t *prefix, size_t prefix_len, int with_clock, uint64_t secs, uint32_t nanos,
		uint8_t *buf, size_t cap, ratecard_span *spans, size_t spans_cap);
rc_decided rc_remote_finish_ints(uintptr_t l, const uint8_t *call, const int64_t *values, size_t n);
rc_decided rc_remote_fallback(uintptr_t l, const uint8_t *call);
ratecard_status rc_remote_count(uintptr_t l, uint32_t event, uint64_t now);
rc_cleared rc_remote_forget(uintptr_t l, const uint8_t *call);

// ratecard_write_metrics for n tables (at most RC_METRICS_ZONES): handle i
// is named by names[offsets[i] .. offsets[i+1]), so that no Go pointer sits
// in Go memory handed to C. *out is the bytes written, or needed.
#define RC_METRICS_ZONES 32
ratecard_status rc_write_metrics(const uintptr_t *handles, const uint8_t *names,
		const size_t *offsets, size_t n, uint8_t *buf, size_t cap, size_t *out);

#endif
