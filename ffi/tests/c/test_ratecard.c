/*
 * The C test suite of libratecard, built by run.sh beside it:
 *   gcc -std=c99 -Wall -Wextra -Werror -pedantic test_ratecard.c \
 *       target/release/libratecard.a -lpthread -ldl -lm
 * and run under valgrind. Prints "N passed, M failed" last; exits non-zero
 * on any failure.
 */
#define _DEFAULT_SOURCE
#include "ratecard.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static int passed, failed;

#define CHECK(cond)                                                                  \
  do {                                                                               \
    if (cond) {                                                                      \
      passed++;                                                                      \
    } else {                                                                         \
      failed++;                                                                      \
      fprintf(stderr, "%s:%d: %s: CHECK(%s) failed\n", __FILE__, __LINE__, __func__, \
              #cond);                                                                \
    }                                                                                \
  } while (0)

#define CHECK_STATUS(expr, want)                                                        \
  do {                                                                                  \
    ratecard_status got_ = (expr);                                                      \
    if (got_ == (want)) {                                                               \
      passed++;                                                                         \
    } else {                                                                            \
      failed++;                                                                         \
      fprintf(stderr, "%s:%d: %s: %s = %u (%s), want %s\n", __FILE__, __LINE__, __func__, \
              #expr, (unsigned)got_, ratecard_status_str(got_), #want);                 \
    }                                                                                   \
  } while (0)

#define OK(expr) CHECK_STATUS(expr, RATECARD_OK)

#define SEC 1000000000ULL
/* A fixed, large "now": the clock is an argument, frozen in most tests. */
#define T0 (1000 * SEC)

static const uint8_t SEED[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static const uint8_t IP1[4] = {192, 0, 2, 1};
static const uint8_t IP2[4] = {192, 0, 2, 2};

static const uint8_t *u8(const char *s) { return (const uint8_t *)s; }

static ratecard_limiter *make(uint32_t capacity, bool dry_run) {
  ratecard_config c;
  ratecard_limiter *l = NULL;
  ratecard_config_default(&c);
  c.capacity = capacity;
  c.seed = SEED;
  c.seed_len = sizeof SEED;
  c.dry_run = dry_run;
  OK(ratecard_limiter_new(&c, &l));
  return l;
}

static ratecard_request frontend(const char *path, const uint8_t *ip, size_t ip_len) {
  ratecard_request r;
  memset(&r, 0, sizeof r);
  r.api = RATECARD_API_FRONTEND;
  r.method = u8("POST");
  r.method_len = 4;
  r.path = u8(path);
  r.path_len = strlen(path);
  r.client_ip = ip;
  r.client_ip_len = ip_len;
  return r;
}

static ratecard_request backend(const char *method, const char *path, const char *key) {
  ratecard_request r;
  memset(&r, 0, sizeof r);
  r.api = RATECARD_API_BACKEND;
  r.method = u8(method);
  r.method_len = strlen(method);
  r.path = u8(path);
  r.path_len = strlen(path);
  r.secret_key = u8(key);
  r.secret_key_len = strlen(key);
  return r;
}

static uint32_t rule_index(const ratecard_limiter *l, const char *name) {
  uint32_t i = RATECARD_NO_RULE;
  OK(ratecard_rule_find(l, u8(name), strlen(name), &i));
  return i;
}

/* The value a response writer produces, NUL-terminated for comparison. */
typedef ratecard_status (*writer)(const ratecard_limiter *, const ratecard_decision *, uint8_t *,
                                  size_t, size_t *);

static const char *written(const ratecard_limiter *l, const ratecard_decision *d, writer w) {
  static char buf[512];
  size_t n = 0;
  OK(w(l, d, (uint8_t *)buf, sizeof buf - 1, &n));
  buf[n < sizeof buf ? n : 0] = '\0';
  return buf;
}

static const char *retry_after(const ratecard_decision *d) {
  static char buf[32];
  size_t n = 0;
  OK(ratecard_write_retry_after(d, (uint8_t *)buf, sizeof buf - 1, &n));
  buf[n < sizeof buf ? n : 0] = '\0';
  return buf;
}

/* ---------------------------------------------------------------- basics */

static void test_version_and_status_text(void) {
  ratecard_status s;
  CHECK(ratecard_version() != NULL && strlen(ratecard_version()) >= 5);
  CHECK(strcmp(ratecard_status_str(RATECARD_OK), "ok") == 0);
  CHECK(strcmp(ratecard_status_str(9999), "unknown status") == 0);
  CHECK(strcmp(ratecard_status_str(UINT32_MAX), "unknown status") == 0);
  for (s = RATECARD_OK; s <= RATECARD_CLOCK_UNAVAILABLE; s++) {
    ratecard_status t;
    CHECK(ratecard_status_str(s) != NULL);
    CHECK(strcmp(ratecard_status_str(s), "unknown status") != 0);
    for (t = RATECARD_OK; t < s; t++) CHECK(strcmp(ratecard_status_str(s), ratecard_status_str(t)) != 0);
  }
}

static void test_config_default_and_bytes(void) {
  ratecard_config c;
  int i;
  memset(&c, 0xAB, sizeof c);
  ratecard_config_default(&c);
  ratecard_config_default(NULL);
  CHECK(c.capacity == 65536);
  CHECK(c.seed == NULL && c.seed_len == 0);
  CHECK(c.ipv6_prefix_len == 64);
  CHECK(!c.dry_run && !c.pace);
  CHECK(c.policy == RATECARD_POLICY_EVICT);
  CHECK(c.unknown_kind == RATECARD_KIND_ANY);
  CHECK(c.algorithm == RATECARD_ALGORITHM_DEFAULT);
  CHECK(c.rules == NULL && c.rules_len == 0);
  CHECK(c.flags == 0 && c.reserved32 == 0);
  for (i = 0; i < 3; i++) CHECK(c.reserved[i] == 0);

  CHECK(ratecard_limiter_bytes(0) == 0);
  CHECK(ratecard_limiter_bytes((1u << 28) + 1) == 0);
  CHECK(ratecard_limiter_bytes(UINT32_MAX) == 0);
  CHECK(ratecard_limiter_bytes(1) > 0);
  CHECK(ratecard_limiter_bytes(1u << 28) > (size_t)16 << 28);
  CHECK(ratecard_limiter_bytes(5) == ratecard_limiter_bytes(8));
  CHECK(ratecard_limiter_bytes(1000) == ratecard_limiter_bytes(1024));
  CHECK(ratecard_limiter_bytes(1) % 64 == 0);
}

static void test_now_ns_is_monotonic(void) {
  uint64_t a = 0, b = 0;
  OK(ratecard_now_ns(&a));
  OK(ratecard_now_ns(&b));
  CHECK(a > 0 && b >= a);
  CHECK_STATUS(ratecard_now_ns(NULL), RATECARD_NULL_ARGUMENT);
}

/* ------------------------------------------------------- the Clerk table */

/* Which request exercises which rule; the limits come from the library
 * (ratecard_limiter_rule_info), checked against Clerk's published numbers
 * for two rows only, below. */
struct row {
  const char *rule;
  uint32_t api;
  const char *method, *path, *key;
};

static const struct row ROWS[] = {
    {"fapi.sign_ins.create", RATECARD_API_FRONTEND, "POST", "/v1/client/sign_ins", NULL},
    {"fapi.sign_ins.create", RATECARD_API_FRONTEND, "POST", "/v1/sign_ins", NULL},
    {"fapi.sign_ups.create", RATECARD_API_FRONTEND, "POST", "/v1/client/sign_ups", NULL},
    {"fapi.sign_ins.attempt", RATECARD_API_FRONTEND, "POST",
     "/v1/client/sign_ins/sia_123/attempt_first_factor", NULL},
    {"fapi.sign_ins.attempt", RATECARD_API_FRONTEND, "POST", "/v1/sign_ins/attempt_second_factor",
     NULL},
    {"fapi.sign_ups.attempt", RATECARD_API_FRONTEND, "POST",
     "/v1/client/sign_ups/sua_123/attempt_verification", NULL},
    {"bapi.instance.production", RATECARD_API_BACKEND, "GET", "/v1/users/me", "sk_live_row"},
    {"bapi.instance.development", RATECARD_API_BACKEND, "GET", "/v1/users/me", "sk_test_row"},
    {"bapi.invitations.create", RATECARD_API_BACKEND, "POST", "/v1/invitations", "sk_live_row"},
    {"bapi.invitations.bulk", RATECARD_API_BACKEND, "POST", "/v1/invitations/bulk", "sk_live_row"},
    {"bapi.org_invitations.create", RATECARD_API_BACKEND, "POST",
     "/v1/organizations/org_1/invitations", "sk_live_row"},
    {"bapi.org_invitations.bulk", RATECARD_API_BACKEND, "POST",
     "/v1/organizations/org_1/invitations/bulk", "sk_live_row"},
    {"bapi.users.update", RATECARD_API_BACKEND, "PATCH", "/v1/users/user_1", "sk_live_row"},
    {"bapi.users.update", RATECARD_API_BACKEND, "PUT", "/v1/users/user_1/metadata", "sk_live_row"},
    {"bapi.organizations.update", RATECARD_API_BACKEND, "PATCH", "/v1/organizations/org_1",
     "sk_live_row"},
    {"bapi.memberships.update", RATECARD_API_BACKEND, "PATCH",
     "/v1/organizations/org_1/memberships/user_1", "sk_live_row"},
};

static ratecard_request row_request(const struct row *row) {
  ratecard_request r;
  if (row->api == RATECARD_API_FRONTEND) {
    r = frontend(row->path, IP1, sizeof IP1);
  } else {
    r = backend(row->method, row->path, row->key);
  }
  return r;
}

static void test_every_clerk_row_allows_its_burst_then_429s(void) {
  size_t i;
  uint32_t count = 0;
  for (i = 0; i < sizeof ROWS / sizeof ROWS[0]; i++) {
    const struct row *row = &ROWS[i];
    ratecard_limiter *l = make(1 << 12, false);
    ratecard_request r = row_request(row);
    ratecard_decision d;
    uint32_t want = rule_index(l, row->rule), n, allowed = 0;
    ratecard_rule_info info;
    uint64_t interval;
    OK(ratecard_limiter_rule_info(l, want, &info));
    interval = (info.period_ns + info.limit - 1) / info.limit;
    char expect[32];
    for (n = 0; n < info.limit; n++) {
      OK(ratecard_check(l, &r, T0, &d));
      allowed += d.allowed;
      if (n == 0) {
        CHECK(d.rule == want);
        CHECK(d.limit == info.limit && d.remaining == info.limit - 1);
        CHECK(!d.exempt && !d.never_fits && !d.dry_run_denied);
        CHECK(d.retry_after_secs == 0 && d.retry_after_ns == 0);
        CHECK(strcmp(retry_after(&d), "") == 0);
      }
    }
    CHECK(allowed == info.limit);
    OK(ratecard_check(l, &r, T0, &d));
    if (!(!d.allowed && d.rule == want)) fprintf(stderr, "row %s %s\n", row->rule, row->path);
    CHECK(!d.allowed);
    CHECK(d.rule == want);
    CHECK(d.limit == info.limit && d.remaining == 0);
    CHECK(!d.never_fits);
    /* A fresh key may send `limit` back to back, then one every interval. */
    CHECK(d.retry_after_ns == interval);
    CHECK(d.retry_after_secs == (uint32_t)((interval + SEC - 1) / SEC));
    CHECK(d.reset_ns == (uint64_t)info.limit * interval);
    sprintf(expect, "%u", (unsigned)d.retry_after_secs);
    CHECK(strcmp(retry_after(&d), expect) == 0);
    OK(ratecard_check(l, &r, T0 + interval - 1, &d));
    CHECK(!d.allowed);
    OK(ratecard_check(l, &r, T0 + interval, &d));
    CHECK(d.allowed);
    OK(ratecard_check(l, &r, T0 + interval, &d));
    CHECK(!d.allowed);
    ratecard_limiter_free(l);
    count++;
  }
  CHECK(count == sizeof ROWS / sizeof ROWS[0]);
}

/* Two rows of Clerk's published table, typed here on purpose: the library's
 * numbers are Clerk's. */
static void test_the_librarys_table_has_clerks_published_numbers(void) {
  ratecard_limiter *l = make(64, false);
  ratecard_rule_info info;
  uint32_t n = 0, i;
  OK(ratecard_limiter_rule_info(l, rule_index(l, "fapi.sign_ins.create"), &info));
  CHECK(info.limit == 5 && info.period_ns == 10 * SEC && info.api == RATECARD_API_FRONTEND);
  CHECK(info.scope == RATECARD_SCOPE_CLIENT_IP && info.burst == 5);
  OK(ratecard_limiter_rule_info(l, rule_index(l, "bapi.invitations.bulk"), &info));
  CHECK(info.limit == 25 && info.period_ns == 3600 * SEC && info.api == RATECARD_API_BACKEND);
  CHECK(info.algorithm == RATECARD_ALGORITHM_GCRA);
  /* Every rule of the library is exercised by a row above (or is exempt). */
  OK(ratecard_rule_count(l, &n));
  for (i = 0; i < n; i++) {
    size_t k, found = 0;
    OK(ratecard_limiter_rule_info(l, i, &info));
    for (k = 0; k < sizeof ROWS / sizeof ROWS[0]; k++) found += strcmp(ROWS[k].rule, ratecard_rule_name(l, i)) == 0;
    CHECK(found > 0 || info.limit == 0);
  }
  CHECK_STATUS(ratecard_limiter_rule_info(l, n, &info), RATECARD_UNKNOWN_RULE);
  CHECK_STATUS(ratecard_limiter_rule_info(l, 0, NULL), RATECARD_NULL_ARGUMENT);
  ratecard_limiter_free(l);
}

static void test_jwks_is_exempt_from_every_rule(void) {
  ratecard_limiter *l = make(1 << 12, false);
  ratecard_request r = backend("GET", "/v1/jwks", "sk_test_jwks");
  ratecard_decision d;
  uint32_t jwks = rule_index(l, "bapi.jwks"), n, allowed = 0;
  for (n = 0; n < 1000; n++) {
    OK(ratecard_check(l, &r, T0, &d));
    allowed += d.allowed && d.exempt && d.rule == jwks;
  }
  CHECK(allowed == 1000);
  CHECK(d.limit == 0 && d.remaining == 0 && d.reset_ns == 0);
  CHECK(strcmp(written(l, &d, ratecard_write_ratelimit), "") == 0);
  CHECK(strcmp(written(l, &d, ratecard_write_ratelimit_policy), "") == 0);
  /* ... and the instance limit was not charged. */
  r = backend("GET", "/v1/users/me", "sk_test_jwks");
  OK(ratecard_check(l, &r, T0, &d));
  CHECK(d.allowed && d.remaining == 99);
  ratecard_limiter_free(l);
}

static void test_users_update_counts_per_user_and_against_the_instance(void) {
  ratecard_limiter *l = make(1 << 12, false);
  ratecard_request a = backend("PATCH", "/v1/users/user_a", "sk_test_users");
  ratecard_request b = backend("PATCH", "/v1/users/user_b", "sk_test_users");
  ratecard_request me = backend("GET", "/v1/users/me", "sk_test_users");
  ratecard_decision d;
  int n;
  for (n = 0; n < 10; n++) OK(ratecard_check(l, &a, T0, &d));
  CHECK(d.allowed);
  OK(ratecard_check(l, &a, T0, &d));
  CHECK(!d.allowed && d.rule == rule_index(l, "bapi.users.update"));
  OK(ratecard_check(l, &b, T0, &d));
  CHECK(d.allowed);
  /* 11 allowed so far against the development instance (the denial was undone). */
  OK(ratecard_check(l, &me, T0, &d));
  CHECK(d.allowed && d.rule == rule_index(l, "bapi.instance.development"));
  CHECK(d.remaining == 100 - 12);
  ratecard_limiter_free(l);
}

static void test_peek_consumes_nothing(void) {
  ratecard_limiter *l = make(1 << 12, false);
  ratecard_request r = frontend("/v1/client/sign_ins", IP1, 4);
  ratecard_decision d;
  int n, allowed = 0;
  for (n = 0; n < 20; n++) OK(ratecard_peek(l, &r, T0, &d));
  CHECK(d.allowed && d.remaining == 4);
  for (n = 0; n < 5; n++) {
    OK(ratecard_check(l, &r, T0, &d));
    allowed += d.allowed;
  }
  CHECK(allowed == 5);
  OK(ratecard_peek(l, &r, T0, &d));
  CHECK(!d.allowed && d.retry_after_secs == 2);
  ratecard_limiter_free(l);
}

static void test_dry_run_never_denies_and_consumes_nothing_when_it_would(void) {
  ratecard_limiter *l = make(1 << 12, true);
  ratecard_request r = frontend("/v1/client/sign_ins", IP1, 4);
  ratecard_decision d;
  ratecard_stats s;
  int n;
  for (n = 0; n < 5; n++) OK(ratecard_check(l, &r, T0, &d));
  CHECK(d.allowed && !d.dry_run_denied);
  for (n = 0; n < 3; n++) {
    OK(ratecard_check(l, &r, T0, &d));
    CHECK(d.allowed && d.dry_run_denied);
    CHECK(d.retry_after_secs == 2 && d.remaining == 0);
    CHECK(strcmp(retry_after(&d), "2") == 0);
  }
  /* Nothing consumed by the would-be denials: one interval frees one unit. */
  OK(ratecard_check(l, &r, T0 + 2 * SEC, &d));
  CHECK(d.allowed && !d.dry_run_denied);
  OK(ratecard_limiter_stats(l, &s));
  CHECK(s.allowed == 6 && s.limited == 0 && s.dry_run_limited == 3);
  ratecard_limiter_free(l);
}

static void test_cost_and_never_fits(void) {
  ratecard_limiter *l = make(1 << 12, false);
  ratecard_request r = frontend("/v1/client/sign_ins", IP1, 4);
  ratecard_decision d;
  size_t n = 99;
  r.cost = 3;
  OK(ratecard_check(l, &r, T0, &d));
  CHECK(d.allowed && d.remaining == 2);
  OK(ratecard_check(l, &r, T0, &d));
  CHECK(!d.allowed && !d.never_fits && d.retry_after_secs == 2);
  r.cost = 6;
  OK(ratecard_check(l, &r, T0 + 100 * SEC, &d));
  CHECK(!d.allowed && d.never_fits);
  CHECK(d.retry_after_secs == 0 && d.retry_after_ns == 0);
  OK(ratecard_write_retry_after(&d, NULL, 0, &n));
  CHECK(n == 0);
  r.cost = 0; /* means 1 */
  OK(ratecard_check(l, &r, T0 + 100 * SEC, &d));
  CHECK(d.allowed && d.remaining == 4);
  ratecard_limiter_free(l);
}

static void test_tenants_separate_clients_and_name_instances(void) {
  ratecard_limiter *l = make(1 << 12, false);
  ratecard_request a = frontend("/v1/client/sign_ins", IP1, 4);
  ratecard_request b = frontend("/v1/client/sign_ins", IP1, 4);
  ratecard_request k1 = backend("GET", "/v1/users/me", "sk_test_one");
  ratecard_request k2 = backend("GET", "/v1/users/me", "sk_test_two");
  ratecard_decision d;
  int n;
  a.tenant = u8("tenant-a");
  a.tenant_len = 8;
  b.tenant = u8("tenant-b");
  b.tenant_len = 8;
  for (n = 0; n < 5; n++) OK(ratecard_check(l, &a, T0, &d));
  OK(ratecard_check(l, &a, T0, &d));
  CHECK(!d.allowed);
  OK(ratecard_check(l, &b, T0, &d));
  CHECK(d.allowed && d.remaining == 4);
  /* Backend: the tenant replaces the key, so two keys of one instance share. */
  k1.tenant = k2.tenant = u8("ins_1");
  k1.tenant_len = k2.tenant_len = 5;
  OK(ratecard_check(l, &k1, T0, &d));
  CHECK(d.remaining == 99);
  OK(ratecard_check(l, &k2, T0, &d));
  CHECK(d.remaining == 98);
  ratecard_limiter_free(l);
}

static void test_bearer_keys_are_the_raw_key(void) {
  ratecard_limiter *l = make(1 << 12, false);
  ratecard_request raw = backend("GET", "/v1/users/me", "sk_live_abc");
  ratecard_request bearer = backend("GET", "/v1/users/me", "Bearer sk_live_abc");
  ratecard_request lower = backend("GET", "/v1/users/me", "bearer  sk_live_abc ");
  ratecard_request unknown = backend("GET", "/v1/users/me", "Bearer zz_abc");
  ratecard_decision d;
  OK(ratecard_check(l, &raw, T0, &d));
  CHECK(d.rule == rule_index(l, "bapi.instance.production") && d.remaining == 999);
  OK(ratecard_check(l, &bearer, T0, &d));
  CHECK(d.rule == rule_index(l, "bapi.instance.production") && d.remaining == 998);
  OK(ratecard_check(l, &lower, T0, &d));
  CHECK(d.remaining == 997);
  /* An unknown prefix gets the stricter development limit by default. */
  OK(ratecard_check(l, &unknown, T0, &d));
  CHECK(d.rule == rule_index(l, "bapi.instance.development") && d.remaining == 99);
  ratecard_limiter_free(l);
}

static void test_unknown_kind_production_by_config(void) {
  ratecard_config c;
  ratecard_limiter *l = NULL;
  ratecard_request r = backend("GET", "/v1/users/me", "zz_abc");
  ratecard_decision d;
  ratecard_config_default(&c);
  c.capacity = 1024;
  c.unknown_kind = RATECARD_KIND_PRODUCTION;
  OK(ratecard_limiter_new(&c, &l));
  OK(ratecard_check(l, &r, T0, &d));
  CHECK(d.rule == rule_index(l, "bapi.instance.production"));
  ratecard_limiter_free(l);
  c.unknown_kind = 3;
  CHECK_STATUS(ratecard_limiter_new(&c, &l), RATECARD_INVALID_CONFIG);
}

static void test_limiter_config_reports_the_recorded_values(void) {
  ratecard_config c, got;
  ratecard_limiter *l = NULL;
  uint8_t seed[16] = {7};
  ratecard_config_default(&c);
  c.capacity = 1000;
  c.seed = seed;
  c.seed_len = sizeof seed;
  c.ipv6_prefix_len = 48;
  c.policy = RATECARD_POLICY_DENY;
  c.unknown_kind = RATECARD_KIND_PRODUCTION;
  c.pace = true;
  c.algorithm = RATECARD_ALGORITHM_FIXED_WINDOW;
  c.dry_run = true;
  OK(ratecard_limiter_new(&c, &l));
  memset(&got, 0xa5, sizeof got);
  OK(ratecard_limiter_config(l, &got));
  CHECK(got.capacity == 1024); /* rounded up to whole buckets */
  CHECK(got.ipv6_prefix_len == 48);
  CHECK(got.policy == RATECARD_POLICY_DENY);
  CHECK(got.unknown_kind == RATECARD_KIND_PRODUCTION);
  CHECK(got.pace && got.dry_run);
  CHECK(got.algorithm == RATECARD_ALGORITHM_FIXED_WINDOW);
  CHECK(got.seed == NULL && got.seed_len == 0); /* the seed stays secret */
  CHECK(got.rules == NULL && got.rules_len == 14);
  CHECK(got.flags == 0 && got.reserved32 == 0 && got.reserved[0] == 0 && got.reserved[2] == 0);
  CHECK_STATUS(ratecard_limiter_config(NULL, &got), RATECARD_NULL_ARGUMENT);
  CHECK_STATUS(ratecard_limiter_config(l, NULL), RATECARD_NULL_ARGUMENT);
  ratecard_limiter_free(l);
}

static void test_pace_mode_spaces_requests(void) {
  ratecard_config c;
  ratecard_limiter *l = NULL;
  ratecard_request r = backend("POST", "/v1/invitations", "sk_live_pace");
  ratecard_decision d;
  ratecard_config_default(&c);
  c.capacity = 1024;
  c.pace = true;
  OK(ratecard_limiter_new(&c, &l));
  OK(ratecard_check(l, &r, T0, &d));
  CHECK(d.allowed);
  OK(ratecard_check(l, &r, T0, &d));
  CHECK(!d.allowed && d.retry_after_ns == 36 * SEC);
  OK(ratecard_check(l, &r, T0 + 36 * SEC, &d));
  CHECK(d.allowed);
  ratecard_limiter_free(l);
}

static void test_ipv6_keys_on_the_64_prefix_and_mapped_ipv4_is_ipv4(void) {
  ratecard_limiter *l = make(1 << 12, false);
  uint8_t v6a[16], v6b[16], mapped[16], v4[16];
  size_t na = 0, nb = 0, nm = 0, n4 = 0;
  ratecard_request a, b;
  ratecard_decision d;
  int n;
  OK(ratecard_ip_parse(u8("2001:db8:1:2::1"), 15, v6a, 16, &na));
  OK(ratecard_ip_parse(u8("[2001:db8:1:2:ffff::9]"), 22, v6b, 16, &nb));
  CHECK(na == 16 && nb == 16);
  a = frontend("/v1/client/sign_ins", v6a, na);
  b = frontend("/v1/client/sign_ins", v6b, nb);
  for (n = 0; n < 5; n++) OK(ratecard_check(l, &a, T0, &d));
  OK(ratecard_check(l, &b, T0, &d));
  CHECK(!d.allowed); /* same /64 */
  OK(ratecard_ip_parse(u8(" ::ffff:192.0.2.7 "), 18, mapped, 16, &nm));
  OK(ratecard_ip_parse(u8("192.0.2.7"), 9, v4, 16, &n4));
  CHECK(nm == 4 && n4 == 4 && memcmp(mapped, v4, 4) == 0);
  CHECK(v4[0] == 192 && v4[1] == 0 && v4[2] == 2 && v4[3] == 7);
  /* A 16-byte IPv4-mapped address is the same client as its 4 bytes. */
  {
    uint8_t raw16[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 7};
    ratecard_request m = frontend("/v1/client/sign_ins", raw16, 16);
    ratecard_request p = frontend("/v1/client/sign_ins", v4, 4);
    for (n = 0; n < 5; n++) OK(ratecard_check(l, &m, T0, &d));
    OK(ratecard_check(l, &p, T0, &d));
    CHECK(!d.allowed);
  }
  ratecard_limiter_free(l);
}

static void test_ip_parse_rejects_what_is_not_an_address(void) {
  uint8_t out[16];
  size_t n = 77;
  memset(out, 0x5A, sizeof out);
  OK(ratecard_ip_parse(u8("::1"), 3, out, 16, &n));
  CHECK(n == 16 && out[15] == 1 && out[0] == 0);
  n = 77;
  CHECK_STATUS(ratecard_ip_parse(u8("1.2.3"), 5, out, 16, &n), RATECARD_INVALID_IP_TEXT);
  CHECK_STATUS(ratecard_ip_parse(u8("1.2.3.256"), 9, out, 16, &n), RATECARD_INVALID_IP_TEXT);
  CHECK_STATUS(ratecard_ip_parse(u8("1.2.3.4:80"), 10, out, 16, &n), RATECARD_INVALID_IP_TEXT);
  CHECK_STATUS(ratecard_ip_parse(u8("fe80::1%eth0"), 12, out, 16, &n), RATECARD_INVALID_IP_TEXT);
  CHECK_STATUS(ratecard_ip_parse(u8("\xff\xfe"), 2, out, 16, &n), RATECARD_INVALID_IP_TEXT);
  CHECK_STATUS(ratecard_ip_parse(NULL, 0, out, 16, &n), RATECARD_INVALID_IP_TEXT);
  CHECK_STATUS(ratecard_ip_parse(NULL, 3, out, 16, &n), RATECARD_INVALID_ARGUMENT);
  CHECK_STATUS(ratecard_ip_parse(u8("::1"), 3, NULL, 16, &n), RATECARD_NULL_ARGUMENT);
  CHECK_STATUS(ratecard_ip_parse(u8("::1"), 3, out, 16, NULL), RATECARD_NULL_ARGUMENT);
  CHECK(n == 77);
}

static void test_no_rule_is_allowed_and_writes_nothing(void) {
  ratecard_limiter *l = make(1 << 12, false);
  ratecard_request r = frontend("/v1/environment", IP1, 4);
  ratecard_decision d;
  ratecard_stats s;
  int n;
  r.method = u8("GET");
  r.method_len = 3;
  for (n = 0; n < 100; n++) OK(ratecard_check(l, &r, T0, &d));
  CHECK(d.allowed && d.rule == RATECARD_NO_RULE && d.matched == 0);
  CHECK(d.limit == 0 && d.remaining == 0 && d.reset_ns == 0);
  CHECK(strcmp(written(l, &d, ratecard_write_ratelimit), "") == 0);
  CHECK(strcmp(written(l, &d, ratecard_write_ratelimit_policy), "") == 0);
  CHECK(strcmp(retry_after(&d), "") == 0);
  CHECK(ratecard_rule_name(l, RATECARD_NO_RULE) == NULL);
  /* A request without IP that matches nothing is no error either. */
  r.client_ip = NULL;
  r.client_ip_len = 0;
  OK(ratecard_check(l, &r, T0, &d));
  CHECK(d.rule == RATECARD_NO_RULE);
  OK(ratecard_limiter_stats(l, &s));
  CHECK(s.allowed == 0 && s.limited == 0 && s.occupancy == 0);
  ratecard_limiter_free(l);
}

/* ------------------------------------------------------ response helpers */

static void test_response_helpers_write_values(void) {
  ratecard_limiter *l = make(1 << 12, false);
  ratecard_request r = backend("PATCH", "/v1/users/user_1", "sk_live_resp");
  ratecard_request s = frontend("/v1/client/sign_ins", IP2, 4);
  ratecard_decision d;
  int n;
  OK(ratecard_check(l, &r, T0, &d));
  CHECK(strcmp(written(l, &d, ratecard_write_ratelimit_policy),
               "\"bapi.instance.production\";q=1000;w=10, \"bapi.users.update\";q=10;w=10") == 0);
  CHECK(strcmp(written(l, &d, ratecard_write_ratelimit), "\"bapi.users.update\";r=9;t=1") == 0);
  for (n = 0; n < 5; n++) OK(ratecard_check(l, &s, T0, &d));
  OK(ratecard_check(l, &s, T0, &d));
  CHECK(!d.allowed);
  CHECK(strcmp(written(l, &d, ratecard_write_ratelimit_policy),
               "\"fapi.sign_ins.create\";q=5;w=10") == 0);
  CHECK(strcmp(written(l, &d, ratecard_write_ratelimit), "\"fapi.sign_ins.create\";r=0;t=10") == 0);
  CHECK(strcmp(retry_after(&d), "2") == 0);
  ratecard_limiter_free(l);
}

static void test_response_helpers_report_needed_length_and_leave_short_buffers(void) {
  static const char body[] =
      "{\"errors\":[{\"message\":\"Too many requests\",\"long_message\":\"Too many requests, "
      "retry later\",\"code\":\"too_many_requests\",\"meta\":{}}]}";
  ratecard_limiter *l = make(1 << 12, false);
  ratecard_request s = frontend("/v1/client/sign_ins", IP2, 4);
  ratecard_decision d;
  uint8_t buf[256], before[256];
  size_t n = 0, i;
  int k;
  for (k = 0; k < 6; k++) OK(ratecard_check(l, &s, T0, &d));
  CHECK(!d.allowed);

  /* Retry-After "2" needs 1 byte. */
  memset(buf, 'X', sizeof buf);
  memcpy(before, buf, sizeof buf);
  CHECK_STATUS(ratecard_write_retry_after(&d, buf, 0, &n), RATECARD_BUFFER_TOO_SHORT);
  CHECK(n == 1 && memcmp(buf, before, sizeof buf) == 0);
  CHECK_STATUS(ratecard_write_retry_after(&d, NULL, 0, &n), RATECARD_BUFFER_TOO_SHORT);
  CHECK(n == 1);
  OK(ratecard_write_retry_after(&d, buf, 1, &n));
  CHECK(n == 1 && buf[0] == '2' && buf[1] == 'X');

  /* RateLimit-Policy and RateLimit: every short length leaves the buffer. */
  for (i = 0; i < 31; i++) {
    memset(buf, 'X', sizeof buf);
    n = 0;
    CHECK_STATUS(ratecard_write_ratelimit_policy(l, &d, buf, i, &n), RATECARD_BUFFER_TOO_SHORT);
    CHECK(n == 31 && memcmp(buf, before, sizeof buf) == 0);
  }
  OK(ratecard_write_ratelimit_policy(l, &d, buf, 31, &n));
  CHECK(n == 31 && memcmp(buf, "\"fapi.sign_ins.create\";q=5;w=10", 31) == 0 && buf[31] == 'X');
  memset(buf, 'X', sizeof buf);
  CHECK_STATUS(ratecard_write_ratelimit(l, &d, buf, 5, &n), RATECARD_BUFFER_TOO_SHORT);
  CHECK(n == strlen("\"fapi.sign_ins.create\";r=0;t=10") && memcmp(buf, before, sizeof buf) == 0);
  CHECK_STATUS(ratecard_write_ratelimit(l, &d, NULL, 0, &n), RATECARD_BUFFER_TOO_SHORT);
  CHECK(n == 31);

  /* Clerk's 429 body. */
  CHECK_STATUS(ratecard_write_429_body(buf, 10, &n), RATECARD_BUFFER_TOO_SHORT);
  CHECK(n == strlen(body) && memcmp(buf, before, sizeof buf) == 0);
  OK(ratecard_write_429_body(buf, sizeof buf, &n));
  CHECK(n == strlen(body) && memcmp(buf, body, n) == 0 && buf[n] == 'X');

  /* A length without a buffer, and missing pointers. */
  n = 1234;
  CHECK_STATUS(ratecard_write_429_body(NULL, 10, &n), RATECARD_INVALID_ARGUMENT);
  CHECK_STATUS(ratecard_write_retry_after(&d, NULL, 10, &n), RATECARD_INVALID_ARGUMENT);
  CHECK(n == 1234);
  CHECK_STATUS(ratecard_write_429_body(buf, 10, NULL), RATECARD_NULL_ARGUMENT);
  CHECK_STATUS(ratecard_write_retry_after(NULL, buf, 10, &n), RATECARD_NULL_ARGUMENT);
  CHECK_STATUS(ratecard_write_ratelimit(NULL, &d, buf, 10, &n), RATECARD_NULL_ARGUMENT);
  CHECK_STATUS(ratecard_write_ratelimit(l, NULL, buf, 10, &n), RATECARD_NULL_ARGUMENT);
  CHECK_STATUS(ratecard_write_ratelimit_policy(NULL, &d, buf, 10, &n), RATECARD_NULL_ARGUMENT);
  CHECK_STATUS(ratecard_write_ratelimit_policy(l, &d, buf, 10, NULL), RATECARD_NULL_ARGUMENT);
  CHECK(n == 1234);
  ratecard_limiter_free(l);
}

/* ---------------------------------------------------- reset, stats, keys */

static void test_reset_forgets_a_subject(void) {
  ratecard_limiter *l = make(1 << 12, false);
  ratecard_request r = frontend("/v1/client/sign_ins", IP1, 4);
  ratecard_decision d;
  uint32_t cleared = 99;
  int n;
  for (n = 0; n < 6; n++) OK(ratecard_check(l, &r, T0, &d));
  CHECK(!d.allowed);
  OK(ratecard_reset(l, &r, &cleared));
  CHECK(cleared == 1);
  OK(ratecard_check(l, &r, T0, &d));
  CHECK(d.allowed && d.remaining == 4);
  r.client_ip = IP2;
  OK(ratecard_reset(l, &r, &cleared));
  CHECK(cleared == 0);
  ratecard_limiter_free(l);
}

static void test_check_key_is_a_generic_keyed_limit(void) {
  ratecard_limiter *l = make(1 << 12, false);
  uint32_t rule = rule_index(l, "fapi.sign_ins.create"), cleared = 0;
  ratecard_decision d;
  int n, allowed = 0;
  for (n = 0; n < 8; n++) {
    OK(ratecard_check_key(l, rule, u8("descriptor-1"), 12, 1, T0, &d));
    allowed += d.allowed;
  }
  CHECK(allowed == 5);
  CHECK(!d.allowed && d.rule == rule && d.retry_after_secs == 2);
  OK(ratecard_peek_key(l, rule, u8("descriptor-2"), 12, 1, T0, &d));
  CHECK(d.allowed && d.remaining == 4);
  /* The empty key is a key. */
  OK(ratecard_check_key(l, rule, NULL, 0, 5, T0, &d));
  CHECK(d.allowed && d.remaining == 0);
  OK(ratecard_check_key(l, rule, u8(""), 0, 1, T0, &d));
  CHECK(!d.allowed);
  OK(ratecard_check_key(l, rule, u8("big"), 3, 6, T0, &d));
  CHECK(!d.allowed && d.never_fits);
  OK(ratecard_reset_key(l, rule, u8("descriptor-1"), 12, &cleared));
  CHECK(cleared == 1);
  OK(ratecard_check_key(l, rule, u8("descriptor-1"), 12, 1, T0, &d));
  CHECK(d.allowed);
  /* The unlimited rule is exempt. */
  OK(ratecard_check_key(l, rule_index(l, "bapi.jwks"), u8("k"), 1, 1, T0, &d));
  CHECK(d.allowed && d.exempt);
  CHECK_STATUS(ratecard_check_key(l, 14, u8("k"), 1, 1, T0, &d), RATECARD_UNKNOWN_RULE);
  CHECK_STATUS(ratecard_check_key(l, RATECARD_NO_RULE, u8("k"), 1, 1, T0, &d),
               RATECARD_UNKNOWN_RULE);
  CHECK_STATUS(ratecard_peek_key(l, 64, u8("k"), 1, 1, T0, &d), RATECARD_UNKNOWN_RULE);
  CHECK_STATUS(ratecard_reset_key(l, 99, u8("k"), 1, &cleared), RATECARD_UNKNOWN_RULE);
  CHECK_STATUS(ratecard_check_key(l, rule, NULL, 1, 1, T0, &d), RATECARD_INVALID_ARGUMENT);
  ratecard_limiter_free(l);
}

static void test_stats_and_rule_lookups(void) {
  ratecard_limiter *l = make(1000, false);
  ratecard_request r = frontend("/v1/client/sign_ins", IP1, 4);
  ratecard_decision d;
  ratecard_stats s;
  uint32_t count = 0, i, rule = rule_index(l, "fapi.sign_ins.create");
  ratecard_rule_stats rs;
  int n;
  OK(ratecard_rule_count(l, &count));
  CHECK(count == 14);
  for (i = 0; i < count; i++) {
    const char *name = ratecard_rule_name(l, i);
    uint32_t back = 99;
    CHECK(name != NULL && strlen(name) > 5);
    OK(ratecard_rule_find(l, u8(name), strlen(name), &back));
    CHECK(back == i);
  }
  CHECK(strcmp(ratecard_rule_name(l, 0), "fapi.sign_ins.create") == 0);
  CHECK(strcmp(ratecard_rule_name(l, 13), "bapi.memberships.update") == 0);
  CHECK(ratecard_rule_name(l, 14) == NULL);
  CHECK(ratecard_rule_name(NULL, 0) == NULL);
  i = 77;
  CHECK_STATUS(ratecard_rule_find(l, u8("fapi.nope"), 9, &i), RATECARD_UNKNOWN_RULE);
  CHECK_STATUS(ratecard_rule_find(l, NULL, 0, &i), RATECARD_UNKNOWN_RULE);
  CHECK_STATUS(ratecard_rule_find(l, u8("fapi.sign_ins.create"), 4, &i), RATECARD_UNKNOWN_RULE);
  CHECK(i == 77);
  for (n = 0; n < 8; n++) OK(ratecard_check(l, &r, T0, &d));
  OK(ratecard_limiter_rule_stats(l, rule, &rs));
  CHECK(rs.allowed == 5 && rs.limited == 3 && rs.dry_run_limited == 0 && rs.exempt == 0);
  CHECK(rs.reserved[0] == 0 && rs.reserved[1] == 0);
  CHECK_STATUS(ratecard_limiter_rule_stats(l, 14, &rs), RATECARD_UNKNOWN_RULE);
  memset(&s, 0xAB, sizeof s);
  OK(ratecard_limiter_stats(l, &s));
  CHECK(s.allowed == 5 && s.limited == 3 && s.inserts == 1 && s.evicted == 0 && s.full == 0);
  CHECK(s.evicted_in_debt == 0 && s.dry_run_limited == 0 && s.exempt == 0 && s.errors == 0);
  CHECK(s.occupancy == 1 && s.capacity == 1024);
  for (n = 0; n < 4; n++) CHECK(s.reserved[n] == 0);
  ratecard_limiter_free(l);
}

/* ------------------------------------------------------------ error paths */

static void test_null_arguments_are_refused_and_outputs_untouched(void) {
  ratecard_limiter *l = make(1 << 12, false);
  ratecard_limiter *sentinel = (ratecard_limiter *)&passed, *out = sentinel;
  ratecard_request r = frontend("/v1/client/sign_ins", IP1, 4);
  ratecard_decision d;
  ratecard_stats s;
  ratecard_rule_stats rs;
  uint32_t u = 7;
  uint64_t a = 7, b = 7;
  memset(&d, 0x5A, sizeof d);
  memset(&rs, 0x5A, sizeof rs);
  CHECK_STATUS(ratecard_limiter_new(NULL, NULL), RATECARD_NULL_ARGUMENT);
  CHECK_STATUS(ratecard_limiter_init(NULL, 4096, NULL, &out), RATECARD_NULL_ARGUMENT);
  CHECK_STATUS(ratecard_limiter_attach(NULL, 4096, &out), RATECARD_NULL_ARGUMENT);
  CHECK_STATUS(ratecard_limiter_attach_with(NULL, 4096, NULL, &out), RATECARD_NULL_ARGUMENT);
  CHECK(out == sentinel);
  CHECK_STATUS(ratecard_check(NULL, &r, T0, &d), RATECARD_NULL_ARGUMENT);
  CHECK_STATUS(ratecard_check(l, NULL, T0, &d), RATECARD_NULL_ARGUMENT);
  CHECK_STATUS(ratecard_check(l, &r, T0, NULL), RATECARD_NULL_ARGUMENT);
  CHECK_STATUS(ratecard_peek(NULL, &r, T0, &d), RATECARD_NULL_ARGUMENT);
  CHECK_STATUS(ratecard_peek(l, &r, T0, NULL), RATECARD_NULL_ARGUMENT);
  CHECK_STATUS(ratecard_check_key(NULL, 0, NULL, 0, 1, T0, &d), RATECARD_NULL_ARGUMENT);
  CHECK_STATUS(ratecard_check_key(l, 0, NULL, 0, 1, T0, NULL), RATECARD_NULL_ARGUMENT);
  CHECK_STATUS(ratecard_peek_key(NULL, 0, NULL, 0, 1, T0, &d), RATECARD_NULL_ARGUMENT);
  CHECK_STATUS(ratecard_reset(NULL, &r, &u), RATECARD_NULL_ARGUMENT);
  CHECK_STATUS(ratecard_reset(l, NULL, &u), RATECARD_NULL_ARGUMENT);
  CHECK_STATUS(ratecard_reset(l, &r, NULL), RATECARD_NULL_ARGUMENT);
  CHECK_STATUS(ratecard_reset_key(NULL, 0, NULL, 0, &u), RATECARD_NULL_ARGUMENT);
  CHECK_STATUS(ratecard_reset_key(l, 0, NULL, 0, NULL), RATECARD_NULL_ARGUMENT);
  CHECK_STATUS(ratecard_limiter_stats(NULL, &s), RATECARD_NULL_ARGUMENT);
  CHECK_STATUS(ratecard_limiter_stats(l, NULL), RATECARD_NULL_ARGUMENT);
  CHECK_STATUS(ratecard_limiter_rule_stats(NULL, 0, &rs), RATECARD_NULL_ARGUMENT);
  CHECK_STATUS(ratecard_limiter_rule_stats(l, 0, NULL), RATECARD_NULL_ARGUMENT);
  CHECK_STATUS(ratecard_rule_count(NULL, &u), RATECARD_NULL_ARGUMENT);
  CHECK_STATUS(ratecard_rule_count(l, NULL), RATECARD_NULL_ARGUMENT);
  CHECK_STATUS(ratecard_rule_find(NULL, u8("x"), 1, &u), RATECARD_NULL_ARGUMENT);
  CHECK_STATUS(ratecard_rule_find(l, u8("x"), 1, NULL), RATECARD_NULL_ARGUMENT);
  CHECK(u == 7 && a == 7 && b == 7);
  CHECK(d.rule == 0x5A5A5A5A && rs.allowed == 0x5A5A5A5A5A5A5A5Au);
  ratecard_limiter_free(NULL);
  ratecard_limiter_free(l);
}

static void test_request_errors(void) {
  ratecard_limiter *l = make(1 << 12, false);
  static const uint8_t five[5] = {1, 2, 3, 4, 5};
  ratecard_request r;
  ratecard_decision d;
  uint32_t cleared = 7;
  memset(&d, 0x5A, sizeof d);
  /* A length without a pointer, in each byte string. */
  r = frontend("/v1/client/sign_ins", IP1, 4);
  r.path = NULL;
  CHECK_STATUS(ratecard_check(l, &r, T0, &d), RATECARD_INVALID_ARGUMENT);
  r = frontend("/v1/client/sign_ins", IP1, 4);
  r.method = NULL;
  CHECK_STATUS(ratecard_check(l, &r, T0, &d), RATECARD_INVALID_ARGUMENT);
  r = frontend("/v1/client/sign_ins", NULL, 4);
  CHECK_STATUS(ratecard_check(l, &r, T0, &d), RATECARD_INVALID_ARGUMENT);
  r = backend("GET", "/v1/users/me", "sk_test_x");
  r.secret_key = NULL;
  CHECK_STATUS(ratecard_check(l, &r, T0, &d), RATECARD_INVALID_ARGUMENT);
  r = backend("GET", "/v1/users/me", "sk_test_x");
  r.tenant_len = 3;
  CHECK_STATUS(ratecard_peek(l, &r, T0, &d), RATECARD_INVALID_ARGUMENT);
  CHECK_STATUS(ratecard_reset(l, &r, &cleared), RATECARD_INVALID_ARGUMENT);
  /* A 5-byte IP, an unknown api, a missing subject. */
  r = frontend("/v1/client/sign_ins", five, 5);
  CHECK_STATUS(ratecard_check(l, &r, T0, &d), RATECARD_INVALID_IP);
  r = frontend("/v1/client/sign_ins", five, 3);
  CHECK_STATUS(ratecard_check(l, &r, T0, &d), RATECARD_INVALID_IP);
  r = frontend("/v1/client/sign_ins", IP1, 4);
  r.api = 0;
  CHECK_STATUS(ratecard_check(l, &r, T0, &d), RATECARD_UNKNOWN_API);
  r.api = 3;
  CHECK_STATUS(ratecard_check(l, &r, T0, &d), RATECARD_UNKNOWN_API);
  CHECK_STATUS(ratecard_reset(l, &r, &cleared), RATECARD_UNKNOWN_API);
  r = frontend("/v1/client/sign_ins", NULL, 0);
  CHECK_STATUS(ratecard_check(l, &r, T0, &d), RATECARD_MISSING_SUBJECT);
  r = backend("GET", "/v1/users/me", "");
  CHECK_STATUS(ratecard_check(l, &r, T0, &d), RATECARD_MISSING_SUBJECT);
  CHECK(d.rule == 0x5A5A5A5A && cleared == 7);
  /* A Backend request without a key but with an IP is charged by IP. */
  r.client_ip = IP1;
  r.client_ip_len = 4;
  OK(ratecard_check(l, &r, T0, &d));
  CHECK(d.allowed && d.rule == rule_index(l, "bapi.instance.development"));
  /* An empty (NULL, 0) path and method are valid: they match nothing here. */
  r = frontend("", IP1, 4);
  r.path = NULL;
  r.method = NULL;
  r.method_len = 0;
  OK(ratecard_check(l, &r, T0, &d));
  CHECK(d.allowed && d.rule == RATECARD_NO_RULE);
  ratecard_limiter_free(l);
}

static void test_config_errors(void) {
  ratecard_config c;
  ratecard_limiter *sentinel = (ratecard_limiter *)&failed, *l = sentinel;
  ratecard_config_default(&c);
  c.capacity = 0;
  CHECK_STATUS(ratecard_limiter_new(&c, &l), RATECARD_INVALID_CAPACITY);
  c.capacity = (1u << 28) + 1;
  CHECK_STATUS(ratecard_limiter_new(&c, &l), RATECARD_INVALID_CAPACITY);
  c.capacity = UINT32_MAX;
  CHECK_STATUS(ratecard_limiter_new(&c, &l), RATECARD_INVALID_CAPACITY);
  ratecard_config_default(&c);
  c.reserved[2] = 1;
  CHECK_STATUS(ratecard_limiter_new(&c, &l), RATECARD_INVALID_ARGUMENT);
  ratecard_config_default(&c);
  c.reserved32 = 1;
  CHECK_STATUS(ratecard_limiter_new(&c, &l), RATECARD_INVALID_ARGUMENT);
  ratecard_config_default(&c);
  c.flags = 0x80000000u; /* a flag this version does not know */
  CHECK_STATUS(ratecard_limiter_new(&c, &l), RATECARD_INVALID_ARGUMENT);
  ratecard_config_default(&c);
  c.ipv6_prefix_len = 129;
  CHECK_STATUS(ratecard_limiter_new(&c, &l), RATECARD_INVALID_CONFIG);
  ratecard_config_default(&c);
  c.policy = 3;
  CHECK_STATUS(ratecard_limiter_new(&c, &l), RATECARD_INVALID_CONFIG);
  ratecard_config_default(&c);
  c.algorithm = 3;
  CHECK_STATUS(ratecard_limiter_new(&c, &l), RATECARD_INVALID_CONFIG);
  ratecard_config_default(&c);
  c.seed = SEED;
  c.seed_len = 15;
  CHECK_STATUS(ratecard_limiter_new(&c, &l), RATECARD_INVALID_CONFIG);
  c.seed = NULL;
  c.seed_len = 16;
  CHECK_STATUS(ratecard_limiter_new(&c, &l), RATECARD_INVALID_ARGUMENT);
  ratecard_config_default(&c);
  c.rules_len = 2;
  CHECK_STATUS(ratecard_limiter_new(&c, &l), RATECARD_INVALID_ARGUMENT);
  CHECK(l == sentinel);
  /* NULL config: the defaults, a seed from the OS. */
  OK(ratecard_limiter_new(NULL, &l));
  CHECK(l != sentinel && l != NULL);
  ratecard_limiter_free(l);
}

static void *aligned(size_t len) {
  void *p = NULL;
  if (posix_memalign(&p, 64, len) != 0) return NULL;
  memset(p, 0, len);
  return p;
}

static void test_memory_errors_at_init_and_attach(void) {
  ratecard_config c;
  ratecard_limiter *l = NULL, *a = NULL;
  size_t len = ratecard_limiter_bytes(1024), i;
  uint8_t *mem = aligned(len + 128);
  uint64_t *words = (uint64_t *)mem;
  ratecard_config_default(&c);
  c.capacity = 1024;
  CHECK(mem != NULL);
  CHECK_STATUS(ratecard_limiter_init(mem, len - 1, &c, &l), RATECARD_MEMORY_TOO_SMALL);
  CHECK_STATUS(ratecard_limiter_init(mem + 8, len, &c, &l), RATECARD_MISALIGNED);
  CHECK_STATUS(ratecard_limiter_init(mem, len, NULL, &l), RATECARD_MEMORY_TOO_SMALL);
  c.capacity = 0;
  CHECK_STATUS(ratecard_limiter_init(mem, len, &c, &l), RATECARD_INVALID_CAPACITY);
  c.capacity = (1u << 28) + 1;
  CHECK_STATUS(ratecard_limiter_init(mem, len, &c, &l), RATECARD_INVALID_CAPACITY);
  c.capacity = 1024;
  CHECK(l == NULL);
  /* Zeroed and garbage memory is not a table. */
  CHECK_STATUS(ratecard_limiter_attach(mem, len, &a), RATECARD_NOT_A_TABLE);
  srand(7);
  for (i = 0; i < len; i++) mem[i] = (uint8_t)rand();
  CHECK_STATUS(ratecard_limiter_attach(mem, len, &a), RATECARD_NOT_A_TABLE);
  CHECK_STATUS(ratecard_limiter_attach(mem, 16, &a), RATECARD_MEMORY_TOO_SMALL);
  CHECK_STATUS(ratecard_limiter_attach(mem + 8, len, &a), RATECARD_MISALIGNED);
  CHECK(a == NULL);
  /* A real table attaches; a corrupted header does not. */
  OK(ratecard_limiter_init(mem, len, &c, &l));
  OK(ratecard_limiter_attach(mem, len, &a));
  ratecard_limiter_free(a);
  a = NULL;
  CHECK_STATUS(ratecard_limiter_attach(mem, len - 64, &a), RATECARD_MEMORY_TOO_SMALL);
  for (i = 2; i < 8; i++) {
    uint64_t saved = words[i];
    words[i] ^= 0x10;
    CHECK_STATUS(ratecard_limiter_attach(mem, len, &a), RATECARD_CORRUPT);
    words[i] = saved;
  }
  words[0] ^= 1; /* the magic */
  CHECK_STATUS(ratecard_limiter_attach(mem, len, &a), RATECARD_NOT_A_TABLE);
  words[0] ^= 1;
  CHECK(a == NULL);
  OK(ratecard_limiter_attach(mem, len, &a));
  ratecard_limiter_free(a);
  ratecard_limiter_free(l);
  free(mem);
}

static void test_free_of_an_attached_handle_never_writes_the_region(void) {
  ratecard_config c;
  ratecard_limiter *l = NULL, *a = NULL;
  size_t len = ratecard_limiter_bytes(1024);
  uint8_t *mem = aligned(len), *snapshot = malloc(len);
  ratecard_request r = frontend("/v1/client/sign_ins", IP1, 4);
  ratecard_decision d;
  ratecard_config_default(&c);
  c.capacity = 1024;
  OK(ratecard_limiter_init(mem, len, &c, &l));
  OK(ratecard_limiter_attach(mem, len, &a));
  OK(ratecard_check(a, &r, T0, &d));
  memcpy(snapshot, mem, len);
  ratecard_limiter_free(a);
  CHECK(memcmp(snapshot, mem, len) == 0);
  ratecard_limiter_free(l);
  CHECK(memcmp(snapshot, mem, len) == 0);
  free(snapshot);
  free(mem);
}

/* ------------------------------------------------------ custom rule table */

static const ratecard_route THING_ROUTES[] = {
    {(const uint8_t *)"POST", 4, (const uint8_t *)"/v1/things/{id}", 15},
    {(const uint8_t *)"put", 3, (const uint8_t *)"/v1/things/{id}/*", 17},
};
static const ratecard_route ANY_ROUTE[] = {{NULL, 0, (const uint8_t *)"*", 1}};

static void custom_rules(ratecard_rule rules[2]) {
  memset(rules, 0, 2 * sizeof rules[0]);
  rules[0].name = u8("custom.things");
  rules[0].name_len = 13;
  rules[0].api = RATECARD_API_BACKEND;
  rules[0].scope = RATECARD_SCOPE_INSTANCE_PARAMS;
  rules[0].routes = THING_ROUTES;
  rules[0].routes_len = 2;
  rules[0].limit = 3;
  rules[0].period_ns = SEC;
  rules[1].name = u8("custom.window");
  rules[1].name_len = 13;
  rules[1].api = RATECARD_API_FRONTEND;
  rules[1].scope = RATECARD_SCOPE_CLIENT_IP;
  rules[1].routes = ANY_ROUTE;
  rules[1].routes_len = 1;
  rules[1].limit = 2;
  rules[1].period_ns = SEC;
  rules[1].algorithm = RATECARD_ALGORITHM_FIXED_WINDOW;
}

static void test_custom_rule_table(void) {
  ratecard_rule rules[2];
  ratecard_config c;
  ratecard_limiter *l = NULL;
  ratecard_decision d;
  ratecard_request t1 = backend("POST", "/v1/things/a", "sk_test_custom");
  ratecard_request t2 = backend("PUT", "/v1/things/a/deep/er", "sk_test_custom");
  ratecard_request t3 = backend("POST", "/v1/things/b", "sk_test_custom");
  ratecard_request w = frontend("/anything/at/all", IP1, 4);
  uint32_t count = 0;
  char *name = malloc(14);
  int n, allowed = 0;
  memcpy(name, "custom.things", 14);
  custom_rules(rules);
  rules[0].name = (const uint8_t *)name;
  ratecard_config_default(&c);
  c.capacity = 1024;
  c.rules = rules;
  c.rules_len = 2;
  OK(ratecard_limiter_new(&c, &l));
  /* The table was copied: the caller's strings may go. */
  memset(name, 'Z', 13);
  free(name);
  OK(ratecard_rule_count(l, &count));
  CHECK(count == 2);
  CHECK(strcmp(ratecard_rule_name(l, 0), "custom.things") == 0);
  CHECK(strcmp(ratecard_rule_name(l, 1), "custom.window") == 0);
  CHECK(ratecard_rule_name(l, 2) == NULL);
  CHECK(rule_index(l, "custom.window") == 1);
  /* Routes share one limit per captured id. */
  OK(ratecard_check(l, &t1, T0, &d));
  OK(ratecard_check(l, &t2, T0, &d));
  OK(ratecard_check(l, &t1, T0, &d));
  CHECK(d.allowed && d.rule == 0 && d.remaining == 0);
  OK(ratecard_check(l, &t2, T0, &d));
  CHECK(!d.allowed && d.rule == 0);
  OK(ratecard_check(l, &t3, T0, &d));
  CHECK(d.allowed);
  CHECK(strcmp(written(l, &d, ratecard_write_ratelimit_policy), "\"custom.things\";q=3;w=1") == 0);
  /* A fixed window: 2 per aligned second. */
  for (n = 0; n < 5; n++) {
    OK(ratecard_check(l, &w, T0 + SEC / 2, &d));
    allowed += d.allowed;
  }
  CHECK(allowed == 2);
  CHECK(!d.allowed && d.retry_after_ns == SEC / 2 && d.retry_after_secs == 1);
  OK(ratecard_check(l, &w, T0 + SEC, &d));
  CHECK(d.allowed);
  ratecard_limiter_free(l);
}

static void test_invalid_custom_rules(void) {
  ratecard_rule rules[65];
  ratecard_route bad_route[1];
  ratecard_config c;
  ratecard_limiter *l = NULL;
  int i;
  ratecard_config_default(&c);
  c.capacity = 1024;
  c.rules = rules;
  c.rules_len = 2;
#define EXPECT_RULES(mutate, want)                      \
  do {                                                  \
    custom_rules(rules);                                \
    mutate;                                             \
    CHECK_STATUS(ratecard_limiter_new(&c, &l), want);   \
  } while (0)
  EXPECT_RULES((void)0, RATECARD_OK);
  ratecard_limiter_free(l);
  l = NULL;
  EXPECT_RULES(rules[1].name = u8("bad name"); rules[1].name_len = 8, RATECARD_INVALID_RULES);
  EXPECT_RULES(rules[1].name_len = 0, RATECARD_INVALID_RULES);
  EXPECT_RULES(rules[1].name = NULL, RATECARD_INVALID_ARGUMENT);
  EXPECT_RULES(rules[1].reserved[1] = 1, RATECARD_INVALID_ARGUMENT);
  EXPECT_RULES(rules[1].api = 7, RATECARD_INVALID_RULES);
  EXPECT_RULES(rules[1].scope = 3, RATECARD_INVALID_RULES);
  EXPECT_RULES(rules[1].kind = 3, RATECARD_INVALID_RULES);
  EXPECT_RULES(rules[1].algorithm = 3, RATECARD_INVALID_RULES);
  EXPECT_RULES(rules[1].period_ns = 0, RATECARD_INVALID_RULES);
  EXPECT_RULES(rules[1].routes = NULL, RATECARD_INVALID_ARGUMENT);
  bad_route[0] = ANY_ROUTE[0];
  bad_route[0].method = u8("BREW");
  bad_route[0].method_len = 4;
  EXPECT_RULES(rules[1].routes = bad_route, RATECARD_INVALID_RULES);
  bad_route[0] = ANY_ROUTE[0];
  bad_route[0].path = u8("no-slash");
  bad_route[0].path_len = 8;
  EXPECT_RULES(rules[1].routes = bad_route, RATECARD_INVALID_RULES);
  bad_route[0].path = u8("/{a}/{b}/{c}");
  bad_route[0].path_len = 12;
  EXPECT_RULES(rules[1].routes = bad_route, RATECARD_INVALID_RULES);
  bad_route[0].path = u8("/\xff");
  bad_route[0].path_len = 2;
  EXPECT_RULES(rules[1].routes = bad_route, RATECARD_INVALID_RULES);
  bad_route[0].path = NULL;
  EXPECT_RULES(rules[1].routes = bad_route, RATECARD_INVALID_ARGUMENT);
  /* An unlimited rule needs no period. */
  EXPECT_RULES(rules[1].limit = 0; rules[1].period_ns = 0, RATECARD_OK);
  ratecard_limiter_free(l);
  l = NULL;
  custom_rules(rules);
  for (i = 0; i < 65; i++) if (i != 1) rules[i] = rules[1]; /* one route each */
  c.rules_len = 65;
  CHECK_STATUS(ratecard_limiter_new(&c, &l), RATECARD_INVALID_RULES);
  c.rules_len = 64;
  OK(ratecard_limiter_new(&c, &l));
  ratecard_limiter_free(l);
  l = NULL;
  /* At most 64 routes over all rules: one more is refused. */
  rules[63].routes = THING_ROUTES; /* two routes: 65 in all */
  rules[63].routes_len = 2;
  CHECK_STATUS(ratecard_limiter_new(&c, &l), RATECARD_INVALID_RULES);
#undef EXPECT_RULES
}

static void test_attach_with_checks_the_rule_fingerprint(void) {
  ratecard_rule rules[2];
  ratecard_config c;
  ratecard_limiter *l = NULL, *a = NULL, *dry = NULL;
  size_t len = ratecard_limiter_bytes(1024);
  uint8_t *mem = aligned(len);
  ratecard_request t = backend("POST", "/v1/things/a", "sk_test_attach");
  ratecard_decision d;
  int n;
  custom_rules(rules);
  ratecard_config_default(&c);
  c.capacity = 1024;
  c.rules = rules;
  c.rules_len = 2;
  OK(ratecard_limiter_init(mem, len, &c, &l));
  /* The Clerk table is not this table. */
  CHECK_STATUS(ratecard_limiter_attach(mem, len, &a), RATECARD_RULES_MISMATCH);
  CHECK_STATUS(ratecard_limiter_attach_with(mem, len, NULL, &a), RATECARD_RULES_MISMATCH);
  rules[0].limit = 4;
  CHECK_STATUS(ratecard_limiter_attach_with(mem, len, &c, &a), RATECARD_RULES_MISMATCH);
  rules[0].limit = 3;
  c.rules_len = 1;
  CHECK_STATUS(ratecard_limiter_attach_with(mem, len, &c, &a), RATECARD_RULES_MISMATCH);
  c.rules_len = 2;
  c.policy = 9;
  CHECK_STATUS(ratecard_limiter_attach_with(mem, len, &c, &a), RATECARD_INVALID_CONFIG);
  c.policy = RATECARD_POLICY_EVICT;
  CHECK(a == NULL);
  /* Capacity and seed of the config are ignored: the header's win. */
  c.capacity = 7;
  OK(ratecard_limiter_attach_with(mem, len, &c, &a));
  c.dry_run = true;
  OK(ratecard_limiter_attach_with(mem, len, &c, &dry));
  for (n = 0; n < 3; n++) OK(ratecard_check(l, &t, T0, &d));
  OK(ratecard_check(a, &t, T0, &d));
  CHECK(!d.allowed && d.rule == 0);
  OK(ratecard_check(dry, &t, T0, &d));
  CHECK(d.allowed && d.dry_run_denied);
  CHECK(strcmp(ratecard_rule_name(a, 0), "custom.things") == 0);
  ratecard_limiter_free(dry);
  ratecard_limiter_free(a);
  ratecard_limiter_free(l);
  free(mem);
}

/* ----------------------------------------------- threads and processes */

struct worker {
  const ratecard_limiter *l;
  int requests;
  int allowed;
  int errors;
};

static void *hammer(void *arg) {
  struct worker *w = arg;
  ratecard_request r = backend("GET", "/v1/users/me", "sk_test_shared_key");
  ratecard_decision d;
  int n;
  memset(&d, 0, sizeof d);
  for (n = 0; n < w->requests; n++) {
    if (ratecard_check(w->l, &r, T0, &d) != RATECARD_OK) w->errors++;
    w->allowed += d.allowed;
  }
  return NULL;
}

static void test_threads_on_one_limiter_never_exceed_the_burst(void) {
  enum { THREADS = 4 };
  ratecard_limiter *l = make(1 << 12, false);
  pthread_t th[THREADS];
  struct worker w[THREADS];
  int i, total = 0, errors = 0;
  for (i = 0; i < THREADS; i++) {
    w[i].l = l;
    w[i].requests = 400;
    w[i].allowed = w[i].errors = 0;
    CHECK(pthread_create(&th[i], NULL, hammer, &w[i]) == 0);
  }
  for (i = 0; i < THREADS; i++) {
    pthread_join(th[i], NULL);
    total += w[i].allowed;
    errors += w[i].errors;
  }
  CHECK(errors == 0);
  CHECK(total == 100); /* bapi.instance.development: burst 100, frozen clock */
  ratecard_limiter_free(l);
}

static void test_processes_on_one_shared_mapping_never_exceed_the_burst(void) {
  enum { PROCS = 4, REQUESTS = 300 };
  ratecard_config c;
  ratecard_limiter *l = NULL;
  ratecard_stats s;
  size_t len = ratecard_limiter_bytes(1 << 12);
  void *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  int *counts = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  pid_t pids[PROCS];
  int i, total = 0;
  CHECK(mem != MAP_FAILED && counts != MAP_FAILED);
  ratecard_config_default(&c);
  c.capacity = 1 << 12;
  OK(ratecard_limiter_init(mem, len, &c, &l));
  fflush(NULL);
  for (i = 0; i < PROCS; i++) {
    pids[i] = fork();
    if (pids[i] == 0) {
      ratecard_limiter *a = NULL;
      ratecard_request r = backend("GET", "/v1/users/me", "sk_test_shared_key");
      ratecard_request f = frontend("/v1/client/sign_ins", IP1, 4);
      ratecard_decision d;
      int n, bad = 0;
      memset(&d, 0, sizeof d);
      ratecard_limiter_free(l); /* the parent's handle: process memory only */
      if (ratecard_limiter_attach(mem, len, &a) != RATECARD_OK) _exit(2);
      for (n = 0; n < REQUESTS; n++) {
        if (ratecard_check(a, &r, T0, &d) != RATECARD_OK) bad = 1;
        counts[i] += d.allowed;
        if (ratecard_check(a, &f, T0, &d) != RATECARD_OK) bad = 1;
        counts[PROCS + i] += d.allowed;
      }
      ratecard_limiter_free(a);
      _exit(bad ? 3 : 0);
    }
    CHECK(pids[i] > 0);
  }
  for (i = 0; i < PROCS; i++) {
    int status = -1;
    CHECK(waitpid(pids[i], &status, 0) == pids[i]);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  for (i = 0; i < PROCS; i++) total += counts[i];
  CHECK(total == 100); /* bapi.instance.development */
  total = 0;
  for (i = 0; i < PROCS; i++) total += counts[PROCS + i];
  CHECK(total == 5); /* fapi.sign_ins.create */
  OK(ratecard_limiter_stats(l, &s));
  CHECK(s.allowed == 105 && s.limited == 2 * PROCS * REQUESTS - 105);
  CHECK(s.occupancy == 2);
  ratecard_limiter_free(l);
  munmap(counts, 4096);
  munmap(mem, len);
}

/* One call answers for every HTTP host: 429 with its fields and body. */
static void test_write_response_answers_for_every_host(void) {
  ratecard_limiter *l = make(64, false);
  ratecard_request r = frontend("/v1/client/sign_ins", IP1, 4);
  ratecard_decision d;
  ratecard_response resp;
  char buf[1024], small[8];
  size_t n = 0, need = 0;
  int k;
  OK(ratecard_check(l, &r, T0, &d));
  OK(ratecard_write_response(l, &d, (uint8_t *)buf, sizeof buf, &resp, &n));
  CHECK(resp.status == 0 && resp.body.len == 0 && resp.retry_after.len == 0);
  CHECK(resp.ratelimit.len > 0); /* informational on an allowed response */
  for (k = 0; k < 5; k++) OK(ratecard_check(l, &r, T0, &d));
  CHECK(!d.allowed);
  OK(ratecard_write_response(l, &d, (uint8_t *)buf, sizeof buf, &resp, &n));
  CHECK(resp.status == RATECARD_LIMITED_STATUS);
  CHECK(resp.retry_after.len == 1 && buf[resp.retry_after.offset] == '2');
  CHECK(resp.ratelimit_policy.len == strlen("\"fapi.sign_ins.create\";q=5;w=10"));
  CHECK(memcmp(buf + resp.ratelimit_policy.offset, "\"fapi.sign_ins.create\";q=5;w=10",
               resp.ratelimit_policy.len) == 0);
  CHECK(resp.body.len > 0 && memcmp(buf + resp.body.offset, "{\"errors\":[", 11) == 0);
  CHECK(resp.reserved[0] == 0 && resp.reserved[1] == 0);
  memset(small, 0x33, sizeof small);
  CHECK_STATUS(ratecard_write_response(l, &d, (uint8_t *)small, sizeof small, &resp, &need),
               RATECARD_BUFFER_TOO_SHORT);
  CHECK(need == n && small[0] == 0x33 && small[7] == 0x33);
  CHECK_STATUS(ratecard_write_response(l, NULL, (uint8_t *)buf, sizeof buf, &resp, &n),
               RATECARD_NULL_ARGUMENT);
  CHECK_STATUS(ratecard_write_response(l, &d, NULL, 5, &resp, &n), RATECARD_INVALID_ARGUMENT);
  CHECK(RATECARD_FAIL_CLOSED_STATUS == 503);
  ratecard_limiter_free(l);
}

/* A request and a configuration one byte off their natural alignment. */
static void test_structs_at_any_alignment_are_read(void) {
  ratecard_limiter *l = NULL;
  ratecard_config c;
  ratecard_request r = frontend("/v1/client/sign_ins", IP1, 4);
  ratecard_decision d;
  unsigned char raw_c[sizeof(ratecard_config) + 1], raw_r[sizeof(ratecard_request) + 1];
  ratecard_config_default(&c);
  c.capacity = 64;
  memcpy(raw_c + 1, &c, sizeof c);
  memcpy(raw_r + 1, &r, sizeof r);
  OK(ratecard_limiter_new((const ratecard_config *)(void *)(raw_c + 1), &l));
  OK(ratecard_check(l, (const ratecard_request *)(void *)(raw_r + 1), T0, &d));
  CHECK(d.allowed && d.rule == 0 && d.remaining == 4);
  CHECK_STATUS(ratecard_check((const ratecard_limiter *)(void *)((char *)l + 1), &r, T0, &d),
               RATECARD_INVALID_ARGUMENT);
  ratecard_limiter_free(l);
}

int main(void) {
  test_version_and_status_text();
  test_config_default_and_bytes();
  test_now_ns_is_monotonic();
  test_every_clerk_row_allows_its_burst_then_429s();
  test_jwks_is_exempt_from_every_rule();
  test_users_update_counts_per_user_and_against_the_instance();
  test_peek_consumes_nothing();
  test_dry_run_never_denies_and_consumes_nothing_when_it_would();
  test_cost_and_never_fits();
  test_tenants_separate_clients_and_name_instances();
  test_bearer_keys_are_the_raw_key();
  test_unknown_kind_production_by_config();
  test_limiter_config_reports_the_recorded_values();
  test_pace_mode_spaces_requests();
  test_ipv6_keys_on_the_64_prefix_and_mapped_ipv4_is_ipv4();
  test_ip_parse_rejects_what_is_not_an_address();
  test_no_rule_is_allowed_and_writes_nothing();
  test_the_librarys_table_has_clerks_published_numbers();
  test_write_response_answers_for_every_host();
  test_structs_at_any_alignment_are_read();
  test_response_helpers_write_values();
  test_response_helpers_report_needed_length_and_leave_short_buffers();
  test_reset_forgets_a_subject();
  test_check_key_is_a_generic_keyed_limit();
  test_stats_and_rule_lookups();
  test_null_arguments_are_refused_and_outputs_untouched();
  test_request_errors();
  test_config_errors();
  test_memory_errors_at_init_and_attach();
  test_free_of_an_attached_handle_never_writes_the_region();
  test_custom_rule_table();
  test_invalid_custom_rules();
  test_attach_with_checks_the_rule_fingerprint();
  test_threads_on_one_limiter_never_exceed_the_burst();
  test_processes_on_one_shared_mapping_never_exceed_the_burst();
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
