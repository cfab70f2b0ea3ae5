// The C side of the Go binding; see shim.h. cgo compiles this file with the
// package's #cgo flags (capi.go).
#include <stdlib.h>
#include <string.h>

#include "shim.h"

#define RC_L(l) ((const ratecard_limiter *)(l))

static rc_decided rc_compact(ratecard_status status, const ratecard_decision *d) {
	rc_decided r = {0};
	r.status = status;
	if (status != RATECARD_OK) return r;
	r.reset_ns = d->reset_ns;
	r.retry_after_ns = d->retry_after_ns;
	r.matched = d->matched;
	r.rule = d->rule;
	r.limit = d->limit;
	r.remaining = d->remaining;
	r.retry_after_secs = d->retry_after_secs;
	r.allowed = d->allowed;
	r.exempt = d->exempt;
	r.dry_run_denied = d->dry_run_denied;
	r.never_fits = d->never_fits;
	return r;
}

static void rc_put_be64(uint8_t *p, uint64_t v) {
	for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (56 - 8 * i));
}

// Built here, on the C stack: a ratecard_request in Go memory could not
// hold the Go pointers of the strings (cgo's pointer rules). ip must have
// room for 16 bytes.
static ratecard_request rc_request(uint32_t api, const uint8_t *method, size_t method_len,
		const uint8_t *path, size_t path_len, uint8_t *ip, uint64_t ip_hi, uint64_t ip_lo,
		size_t ip_len, const uint8_t *key, size_t key_len, const uint8_t *tenant,
		size_t tenant_len, uint32_t cost) {
	rc_put_be64(ip, ip_hi);
	rc_put_be64(ip + 8, ip_lo);
	ratecard_request r = {
		.api = api, .method = method, .method_len = method_len,
		.path = path, .path_len = path_len,
		.client_ip = ip_len ? ip : NULL, .client_ip_len = ip_len,
		.secret_key = key, .secret_key_len = key_len,
		.tenant = tenant, .tenant_len = tenant_len, .cost = cost,
	};
	return r;
}

uintptr_t rc_new(const ratecard_config *config, ratecard_status *status) {
	ratecard_limiter *l = NULL;
	*status = ratecard_limiter_new(config, &l);
	return *status == RATECARD_OK ? (uintptr_t)l : 0;
}

void rc_free(uintptr_t l) { ratecard_limiter_free((ratecard_limiter *)l); }

rc_decided rc_decide(uintptr_t l, int peek, int use_clock, uint64_t now,
		uint32_t api, const uint8_t *method, size_t method_len,
		const uint8_t *path, size_t path_len, uint64_t ip_hi, uint64_t ip_lo, size_t ip_len,
		const uint8_t *key, size_t key_len, const uint8_t *tenant, size_t tenant_len,
		uint32_t cost) {
	uint8_t ip[16];
	ratecard_request req = rc_request(api, method, method_len, path, path_len, ip, ip_hi, ip_lo,
		ip_len, key, key_len, tenant, tenant_len, cost);
	ratecard_decision d;
	ratecard_status s;
	if (use_clock && (s = ratecard_now_ns(&now)) != RATECARD_OK) return rc_compact(s, NULL);
	s = peek ? ratecard_peek(RC_L(l), &req, now, &d) : ratecard_check(RC_L(l), &req, now, &d);
	return rc_compact(s, &d);
}

rc_decided rc_decide_key(uintptr_t l, int peek, int use_clock, uint64_t now,
		uint32_t rule, const uint8_t *key, size_t key_len, uint32_t cost) {
	ratecard_decision d;
	ratecard_status s;
	if (use_clock && (s = ratecard_now_ns(&now)) != RATECARD_OK) return rc_compact(s, NULL);
	s = peek ? ratecard_peek_key(RC_L(l), rule, key, key_len, cost, now, &d)
	         : ratecard_check_key(RC_L(l), rule, key, key_len, cost, now, &d);
	return rc_compact(s, &d);
}

rc_cleared rc_reset(uintptr_t l,
		uint32_t api, const uint8_t *method, size_t method_len,
		const uint8_t *path, size_t path_len, uint64_t ip_hi, uint64_t ip_lo, size_t ip_len,
		const uint8_t *key, size_t key_len, const uint8_t *tenant, size_t tenant_len) {
	rc_cleared r = {0};
	uint8_t ip[16];
	ratecard_request req = rc_request(api, method, method_len, path, path_len, ip, ip_hi, ip_lo,
		ip_len, key, key_len, tenant, tenant_len, 0);
	r.status = ratecard_reset(RC_L(l), &req, &r.cleared);
	return r;
}

rc_cleared rc_reset_key(uintptr_t l, uint32_t rule, const uint8_t *key, size_t key_len) {
	rc_cleared r = {0};
	r.status = ratecard_reset_key(RC_L(l), rule, key, key_len, &r.cleared);
	return r;
}

rc_stats rc_limiter_stats(uintptr_t l) {
	rc_stats r = {0};
	r.status = ratecard_limiter_stats(RC_L(l), &r.s);
	return r;
}

rc_rule_stats rc_rule_stats_of(uintptr_t l, uint32_t rule) {
	rc_rule_stats r = {0};
	r.status = ratecard_limiter_rule_stats(RC_L(l), rule, &r.s);
	return r;
}

rc_rule_info rc_rule_info_of(uintptr_t l, uint32_t rule) {
	rc_rule_info r = {0};
	r.status = ratecard_limiter_rule_info(RC_L(l), rule, &r.info);
	return r;
}

uint32_t rc_rule_count(uintptr_t l) {
	uint32_t n = 0;
	return ratecard_rule_count(RC_L(l), &n) == RATECARD_OK ? n : 0;
}

const char *rc_rule_name(uintptr_t l, uint32_t rule) { return ratecard_rule_name(RC_L(l), rule); }

// The fields come from ratecard_write_response, the call every ratecard
// host answers with; they are copied here back to back in the order Go
// reads them.
rc_lens rc_fields_into(uintptr_t l, ratecard_decision d, uint8_t *buf, size_t cap) {
	rc_lens r = {0};
	uint8_t stack[1024], *all = stack;
	size_t need = 0;
	ratecard_response resp;
	ratecard_status s = ratecard_write_response(RC_L(l), &d, stack, sizeof stack, &resp, &need);
	if (s == RATECARD_BUFFER_TOO_SHORT) {
		all = malloc(need);
		if (all == NULL) {
			r.status = RATECARD_OUT_OF_MEMORY;
			return r;
		}
		s = ratecard_write_response(RC_L(l), &d, all, need, &resp, &need);
	}
	if (s != RATECARD_OK) {
		r.status = s;
	} else {
		ratecard_field f[3] = {resp.ratelimit_policy, resp.ratelimit, resp.retry_after};
		size_t total = f[0].len + f[1].len + f[2].len, off = 0;
		r.policy = (uint32_t)f[0].len;
		r.ratelimit = (uint32_t)f[1].len;
		r.retry_after = (uint32_t)f[2].len;
		r.status = buf != NULL && total <= cap ? RATECARD_OK : RATECARD_BUFFER_TOO_SHORT;
		for (int i = 0; i < 3 && r.status == RATECARD_OK; i++) {
			memcpy(buf + off, all + f[i].offset, f[i].len);
			off += f[i].len;
		}
	}
	if (all != stack) free(all);
	return r;
}

rc_fields rc_fields_of(uintptr_t l, ratecard_decision d) {
	rc_fields r;
	rc_lens n = rc_fields_into(l, d, r.text, sizeof r.text);
	r.status = n.status;
	r.policy = n.policy;
	r.ratelimit = n.ratelimit;
	r.retry_after = n.retry_after;
	return r;
}

rc_time rc_now(void) {
	rc_time r = {0};
	r.status = ratecard_now_ns(&r.now);
	return r;
}

size_t rc_429_body(uint8_t *buf, size_t cap) {
	size_t n = 0;
	return ratecard_write_429_body(buf, cap, &n) == RATECARD_OK ? n : 0;
}

#define RC_CALL(c) ((ratecard_remote_call *)(c))
#define RC_CCALL(c) ((const ratecard_remote_call *)(c))

rc_prepared rc_remote_prepare(uintptr_t l, uint32_t flags, int use_clock, uint64_t now,
		uint32_t api, const uint8_t *method, size_t method_len,
		const uint8_t *path, size_t path_len, uint64_t ip_hi, uint64_t ip_lo, size_t ip_len,
		const uint8_t *key, size_t key_len, const uint8_t *tenant, size_t tenant_len,
		uint32_t cost, uint8_t *call) {
	rc_prepared r = {0};
	uint8_t ip[16];
	ratecard_request req = rc_request(api, method, method_len, path, path_len, ip, ip_hi, ip_lo,
		ip_len, key, key_len, tenant, tenant_len, cost);
	ratecard_decision d;
	bool trip = false;
	ratecard_status s;
	if (use_clock && (s = ratecard_now_ns(&now)) != RATECARD_OK) {
		r.d = rc_compact(s, NULL);
		return r;
	}
	s = ratecard_remote_prepare(RC_L(l), &req, now, flags, RC_CALL(call), &d, &trip);
	if (s == RATECARD_OK && trip) {
		r.d.status = RATECARD_OK;
		r.round_trip = 1;
		return r;
	}
	r.d = rc_compact(s, &d);
	return r;
}

rc_args rc_remote_write_args(uintptr_t l, const uint8_t *call,
		const uint8_t *prefix, size_t prefix_len, int with_clock, uint64_t secs, uint32_t nanos,
		uint8_t *buf, size_t cap, ratecard_span *spans, size_t spans_cap) {
	rc_args r = {0};
	ratecard_remote_clock clock = {.secs = secs, .nanos = nanos};
	ratecard_remote_args out = {0};
	r.status = ratecard_remote_write_args(RC_L(l), RC_CCALL(call), prefix, prefix_len,
		with_clock ? &clock : NULL, buf, cap, spans, spans_cap, &out);
	if (r.status == RATECARD_OK || r.status == RATECARD_BUFFER_TOO_SHORT) {
		r.keys = (uint32_t)out.keys;
		r.args = (uint32_t)out.args;
		r.spans = (uint32_t)out.spans;
		r.bytes = out.bytes;
	}
	return r;
}

rc_decided rc_remote_finish_ints(uintptr_t l, const uint8_t *call, const int64_t *values, size_t n) {
	ratecard_decision d;
	ratecard_status s = ratecard_remote_finish_ints(RC_L(l), RC_CCALL(call), values, n, &d);
	return rc_compact(s, &d);
}

rc_decided rc_remote_fallback(uintptr_t l, const uint8_t *call) {
	ratecard_decision d;
	ratecard_status s = ratecard_remote_fallback(RC_L(l), RC_CCALL(call), &d);
	return rc_compact(s, &d);
}

ratecard_status rc_remote_count(uintptr_t l, uint32_t event, uint64_t now) {
	return ratecard_remote_count(RC_L(l), event, now);
}

rc_cleared rc_remote_forget(uintptr_t l, const uint8_t *call) {
	rc_cleared r = {0};
	r.status = ratecard_remote_forget_cached(RC_L(l), RC_CCALL(call), &r.cleared);
	return r;
}

ratecard_status rc_write_metrics(const uintptr_t *handles, const uint8_t *names,
		const size_t *offsets, size_t n, uint8_t *buf, size_t cap, size_t *out) {
	ratecard_metrics_zone zones[RC_METRICS_ZONES];
	if (n > RC_METRICS_ZONES) return RATECARD_INVALID_ARGUMENT;
	for (size_t i = 0; i < n; i++) {
		zones[i].limiter = RC_L(handles[i]);
		zones[i].name = names == NULL ? NULL : names + offsets[i];
		zones[i].name_len = offsets[i + 1] - offsets[i];
	}
	return ratecard_write_metrics(zones, n, buf, cap, out);
}
