/*
 * A Frontend sign-in burst decided through Redis, on hiredis: every
 * process of one Redis shares one limit (Clerk: 5 sign-ins per 10 s per
 * client IP), however many run.
 *
 *   redis_hiredis HOST PORT CLIENT_IP ATTEMPTS
 *
 * Each attempt: ratecard_remote_prepare() classifies the request (and
 * answers at once a client this process saw denied); the call's KEYS and
 * ARGV come from ratecard_remote_write_args(); hiredis sends EVALSHA (and
 * SCRIPT LOAD, then EVALSHA again, on NOSCRIPT); the reply's integers go
 * to ratecard_remote_finish_ints(). Redis failing is answered fail
 * closed, counted with ratecard_remote_count().
 *
 * Prints one line per attempt, then "allowed=A limited=L unavailable=U";
 * exits 0 unless the library refused a call. Every process of one Redis
 * must share the hash seed: this example's is fixed (RATECARD_SEED, 16
 * bytes, overrides it); a deployment configures a secret one.
 *
 *   cc -Wall -Wextra -Werror redis_hiredis.c -Iinclude target/release/libratecard.a \
 *      $(pkg-config --cflags --libs hiredis) -lpthread -ldl -lm
 */
#include <ratecard.h>

#include <hiredis.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREFIX "rc:"
/* KEYS and ARGV of a call: a Frontend request matches one rule. */
#define MAX_ARGS 16

static const uint8_t *u8(const char *s) { return (const uint8_t *)s; }

static int fail(const char *what, ratecard_status s) {
  fprintf(stderr, "redis_hiredis: %s: %s\n", what, ratecard_status_str(s));
  return 1;
}

/* EVALSHA of the call's KEYS and ARGV; NULL when the connection failed. */
static redisReply *evalsha(redisContext *redis, const uint8_t *buf, const ratecard_span *spans,
                           const ratecard_remote_args *args) {
  const char *argv[3 + MAX_ARGS];
  size_t argvlen[3 + MAX_ARGS];
  char numkeys[24];
  size_t n = args->keys + args->args;
  snprintf(numkeys, sizeof numkeys, "%zu", args->keys);
  argv[0] = "EVALSHA";
  argvlen[0] = 7;
  argv[1] = ratecard_remote_script_sha1();
  argvlen[1] = strlen(argv[1]);
  argv[2] = numkeys;
  argvlen[2] = strlen(numkeys);
  for (size_t i = 0; i < n; i++) {
    argv[3 + i] = (const char *)buf + spans[i].offset;
    argvlen[3 + i] = spans[i].len;
  }
  return redisCommandArgv(redis, (int)(3 + n), argv, argvlen);
}

/* Loads the script (after NOSCRIPT: a fresh server, a restart, SCRIPT FLUSH). */
static int load_script(redisContext *redis) {
  size_t len = 0;
  const uint8_t *script = ratecard_remote_script(&len);
  const char *argv[3] = {"SCRIPT", "LOAD", (const char *)script};
  size_t argvlen[3] = {6, 4, len};
  redisReply *r = redisCommandArgv(redis, 3, argv, argvlen);
  int ok = r != NULL && r->type == REDIS_REPLY_STRING &&
           strcmp(r->str, ratecard_remote_script_sha1()) == 0;
  if (r != NULL) freeReplyObject(r);
  fprintf(stderr, "redis_hiredis: %s the script\n", ok ? "loaded" : "could not load");
  return ok;
}

/* The script's reply as integers; 0 when it is not an array of them. */
static size_t reply_ints(const redisReply *r, int64_t *out, size_t cap) {
  if (r->type != REDIS_REPLY_ARRAY || r->elements > cap) return 0;
  for (size_t i = 0; i < r->elements; i++) {
    if (r->element[i]->type != REDIS_REPLY_INTEGER) return 0;
    out[i] = r->element[i]->integer;
  }
  return r->elements;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s HOST PORT CLIENT_IP ATTEMPTS\n", argv[0]);
    return 2;
  }
  const char *seed = getenv("RATECARD_SEED");
  if (seed == NULL) seed = "example seed 16B";
  if (strlen(seed) != 16) {
    fprintf(stderr, "redis_hiredis: RATECARD_SEED must be 16 bytes\n");
    return 2;
  }
  int attempts = atoi(argv[4]);

  ratecard_config config;
  ratecard_config_default(&config); /* Clerk's table */
  config.seed = u8(seed);
  config.seed_len = 16;
  ratecard_limiter *limiter = NULL;
  ratecard_status s = ratecard_limiter_new(&config, &limiter);
  if (s != RATECARD_OK) return fail("ratecard_limiter_new", s);

  uint8_t ip[16];
  size_t ip_len = 0;
  s = ratecard_ip_parse(u8(argv[3]), strlen(argv[3]), ip, sizeof ip, &ip_len);
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

  struct timeval timeout = {0, 500 * 1000}; /* every wait on Redis is bounded */
  redisContext *redis = redisConnectWithTimeout(argv[1], atoi(argv[2]), timeout);
  if (redis == NULL || redis->err) {
    fprintf(stderr, "redis_hiredis: connect: %s\n", redis ? redis->errstr : "out of memory");
    /* Carry on: every attempt is then answered fail closed. */
  } else {
    redisSetTimeout(redis, timeout);
  }

  int allowed = 0, limited = 0, unavailable = 0, rc = 0;
  for (int i = 0; i < attempts && rc == 0; i++) {
    uint64_t now = 0;
    if ((s = ratecard_now_ns(&now)) != RATECARD_OK) {
      rc = fail("ratecard_now_ns", s);
      break;
    }
    ratecard_remote_call call; /* plain bytes: the stack will do */
    ratecard_decision d;
    bool round_trip = false;
    s = ratecard_remote_prepare(limiter, &request, now, 0, &call, &d, &round_trip);
    if (s != RATECARD_OK) {
      rc = fail("ratecard_remote_prepare", s);
      break;
    }
    const char *via = "this process";
    if (round_trip) {
      uint8_t buf[512];
      ratecard_span spans[MAX_ARGS];
      ratecard_remote_args args;
      s = ratecard_remote_write_args(limiter, &call, u8(PREFIX), strlen(PREFIX), NULL, buf,
                                     sizeof buf, spans, MAX_ARGS, &args);
      if (s != RATECARD_OK) {
        rc = fail("ratecard_remote_write_args", s);
        break;
      }
      redisReply *r = NULL;
      if (redis != NULL && !redis->err) {
        r = evalsha(redis, buf, spans, &args);
        if (r != NULL && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
          freeReplyObject(r);
          r = load_script(redis) ? evalsha(redis, buf, spans, &args) : NULL;
        }
      }
      int64_t ints[2 + 4 * 64];
      size_t n = r != NULL ? reply_ints(r, ints, sizeof ints / sizeof ints[0]) : 0;
      if (n == 0) {
        fprintf(stderr, "redis_hiredis: attempt %d: %s\n", i + 1,
                r == NULL ? (redis != NULL && redis->err ? redis->errstr : "no connection")
                : r->type == REDIS_REPLY_ERROR ? r->str
                                               : "a reply that is not the script's");
        /* Fail closed: the round trip failed, the policy answered. */
        ratecard_remote_count(limiter, RATECARD_REMOTE_EVENT_ERROR, now);
        ratecard_remote_count(limiter, RATECARD_REMOTE_EVENT_FALLBACK, now);
        if (r != NULL) freeReplyObject(r);
        printf("attempt %d: unavailable (fail closed)\n", i + 1);
        unavailable++;
        continue;
      }
      freeReplyObject(r);
      s = ratecard_remote_finish_ints(limiter, &call, ints, n, &d);
      if (s == RATECARD_REMOTE_BAD_REPLY) { /* counted by the library */
        printf("attempt %d: unavailable (a bad reply, fail closed)\n", i + 1);
        ratecard_remote_count(limiter, RATECARD_REMOTE_EVENT_FALLBACK, now);
        unavailable++;
        continue;
      }
      if (s != RATECARD_OK) {
        rc = fail("ratecard_remote_finish_ints", s);
        break;
      }
      via = "redis";
    }
    if (d.allowed) {
      allowed++;
      printf("attempt %d: allowed by %s, %u of %u left\n", i + 1, via, d.remaining, d.limit);
    } else {
      limited++;
      printf("attempt %d: limited by %s (%s), Retry-After: %u\n", i + 1, via,
             ratecard_rule_name(limiter, d.rule), d.retry_after_secs);
    }
  }
  printf("allowed=%d limited=%d unavailable=%d\n", allowed, limited, unavailable);
  if (redis != NULL) redisFree(redis);
  ratecard_limiter_free(limiter);
  return rc;
}
