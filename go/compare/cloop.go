package compare

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: ${SRCDIR}/../../target/release/libratecard.a -lpthread -ldl -lm
#include "ratecard.h"

// The benchmark's hot rule and request, checked n times in a C loop: what
// ratecard_check costs with no cgo crossing per call.
static int rc_check_loop(long n) {
	ratecard_route route = { .path = (const uint8_t *)"*", .path_len = 1 };
	ratecard_rule rule = {
		.name = (const uint8_t *)"hot", .name_len = 3, .api = RATECARD_API_FRONTEND,
		.routes = &route, .routes_len = 1, .limit = (1ull << 40) / 1000, .period_ns = 1000000,
	};
	ratecard_config config;
	ratecard_config_default(&config);
	config.rules = &rule;
	config.rules_len = 1;
	ratecard_limiter *l;
	if (ratecard_limiter_new(&config, &l) != RATECARD_OK) return -1;
	uint8_t ip[4] = {203, 0, 113, 9};
	ratecard_request r = {
		.api = RATECARD_API_FRONTEND, .method = (const uint8_t *)"GET", .method_len = 3,
		.path = (const uint8_t *)"/x", .path_len = 2, .client_ip = ip, .client_ip_len = 4,
	};
	int denied = 0;
	for (long i = 0; i < n; i++) {
		uint64_t now;
		ratecard_decision d;
		if (ratecard_now_ns(&now) != RATECARD_OK || ratecard_check(l, &r, now, &d) != RATECARD_OK) {
			denied = -1;
			break;
		}
		denied += !d.allowed;
	}
	ratecard_limiter_free(l);
	return denied;
}
*/
import "C"

// checkLoop runs n checks of the hot request inside C; it returns the
// number denied, or -1 on an error.
func checkLoop(n int) int { return int(C.rc_check_loop(C.long(n))) }
