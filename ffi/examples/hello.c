/*
 * The smallest complete ratecard program: a brute-force burst against
 * Frontend sign-in (Clerk: 5 per 10 s per client IP). Five attempts pass,
 * the sixth gets a 429 with Retry-After. Exits 0 only if that is what the
 * library decided, and if header and library are the same version.
 *
 * Against an installed library (scripts/install.sh --prefix P):
 *   export PKG_CONFIG_PATH=P/lib/pkgconfig
 *   cc -Wall -Wextra -Werror hello.c $(pkg-config --cflags --libs ratecard)
 *   cc -static hello.c $(pkg-config --static --cflags --libs ratecard)
 */
#include <ratecard.h>

#include <stdio.h>
#include <string.h>

static const uint8_t *u8(const char *s) { return (const uint8_t *)s; }

static int fail(const char *what, ratecard_status s) {
  fprintf(stderr, "hello: %s: %s\n", what, ratecard_status_str(s));
  return 1;
}

int main(void) {
  if (strcmp(ratecard_version(), RATECARD_VERSION) != 0) {
    fprintf(stderr, "hello: header %s, library %s\n", RATECARD_VERSION, ratecard_version());
    return 1;
  }

  ratecard_config config;
  ratecard_config_default(&config); /* Clerk's table, a seed from the OS */
  ratecard_limiter *limiter = NULL;
  ratecard_status s = ratecard_limiter_new(&config, &limiter);
  if (s != RATECARD_OK) return fail("ratecard_limiter_new", s);

  const char *ip_text = "203.0.113.9";
  uint8_t ip[16];
  size_t ip_len = 0;
  s = ratecard_ip_parse(u8(ip_text), strlen(ip_text), ip, sizeof ip, &ip_len);
  if (s != RATECARD_OK) return fail("ratecard_ip_parse", s);

  const char *path = "/v1/client/sign_ins";
  ratecard_request request = {
      .api = RATECARD_API_FRONTEND,
      .method = u8("POST"),
      .method_len = 4,
      .path = u8(path),
      .path_len = strlen(path),
      .client_ip = ip,
      .client_ip_len = ip_len,
  };
  uint64_t now = 0;
  s = ratecard_now_ns(&now);
  if (s != RATECARD_OK) return fail("ratecard_now_ns", s);

  int allowed = 0, denied = 0;
  ratecard_decision d;
  for (int i = 0; i < 6; i++) {
    s = ratecard_check(limiter, &request, now, &d); /* one instant: no refill between */
    if (s != RATECARD_OK) return fail("ratecard_check", s);
    if (d.allowed) {
      allowed++;
    } else {
      denied++;
    }
  }
  /* d is the sixth decision. */
  uint8_t retry[16];
  size_t retry_len = 0;
  s = ratecard_write_retry_after(&d, retry, sizeof retry, &retry_len);
  if (s != RATECARD_OK) return fail("ratecard_write_retry_after", s);

  printf("ratecard %s: POST %s from %s: %d allowed, %d denied, then 429 Retry-After: %.*s (%s)\n",
         ratecard_version(), path, ip_text, allowed, denied, (int)retry_len, (const char *)retry,
         ratecard_rule_name(limiter, d.rule));
  ratecard_limiter_free(limiter);
  return (allowed == 5 && denied == 1 && !d.allowed && d.retry_after_secs == 2) ? 0 : 1;
}
