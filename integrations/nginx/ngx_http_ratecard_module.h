/*
 * What ngx_http_ratecard_module.c (directives, phases, answers, metrics)
 * and ngx_http_ratecard_redis.c (the Redis round trip on the event loop)
 * share.
 */

#ifndef NGX_HTTP_RATECARD_MODULE_H
#define NGX_HTTP_RATECARD_MODULE_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <ratecard.h>


/* $ratecard_status; NONE: not decided (yet) */
#define NGX_HTTP_RATECARD_NONE              0
#define NGX_HTTP_RATECARD_PASSED            1
#define NGX_HTTP_RATECARD_REJECTED          2
#define NGX_HTTP_RATECARD_REJECTED_DRY_RUN  3
#define NGX_HTTP_RATECARD_EXEMPT            4
#define NGX_HTTP_RATECARD_UNMATCHED         5
#define NGX_HTTP_RATECARD_ERROR             6

/* ratecard_redis fail=: what answers when Redis cannot */
#define NGX_HTTP_RATECARD_REDIS_CLOSED      0
#define NGX_HTTP_RATECARD_REDIS_OPEN        1
#define NGX_HTTP_RATECARD_REDIS_LOCAL       2

#define NGX_HTTP_RATECARD_SEED_LEN          16


/*
 * The zone's own record, after nginx's slab pool header (see the module
 * file): fixed parameters, and the circuit breaker every worker of this
 * host shares (times are ngx_current_msec, CLOCK_MONOTONIC in every worker).
 */
typedef struct {
    ngx_atomic_t                fails;         /* consecutive failed round trips */
    ngx_atomic_t                open_until;    /* no call to Redis before this */
    ngx_atomic_t                log_next;      /* the policy's next log line */
    ngx_atomic_t                answered;      /* by the policy since the last line */
    uint32_t                    magic;
    uint32_t                    capacity;
    uint32_t                    seed_crc;      /* of the configured seed, or 0 */
    uint8_t                     ipv6_prefix_len;
    uint8_t                     pace;
    uint8_t                     algorithm;
    uint8_t                     unknown_kind;
    uint8_t                     seeded;        /* laid out with a configured seed */
} ngx_http_ratecard_shctx_t;


/* ratecard_redis: the configuration, and this worker's connections */
typedef struct {
    ngx_str_t                   zone_name;
    ngx_str_t                   server;        /* as configured, for logs */
    ngx_addr_t                 *addr;
    ngx_msec_t                  timeout;       /* connect, send and reply */
    ngx_uint_t                  keepalive;     /* idle connections per worker */
    ngx_str_t                   prefix;
    ngx_flag_t                  gateway_clock;
    ngx_uint_t                  fail;          /* NGX_HTTP_RATECARD_REDIS_* */
    ngx_uint_t                  max_fails;     /* 0: no circuit breaker */
    ngx_msec_t                  fail_timeout;
    ngx_flag_t                  exact;         /* no cache of Redis denials */
    ngx_str_t                   file;
    ngx_uint_t                  line;

    /* this worker's */
    ngx_queue_t                 idle;          /* ngx_http_ratecard_conn_t */
    ngx_uint_t                  nidle;
    ngx_log_t                   log;           /* the connections' own */
} ngx_http_ratecard_redis_t;


typedef struct {
    ngx_str_t                   name;
    ngx_shm_zone_t             *shm_zone;
    size_t                      size;          /* zone=NAME:SIZE as given */
    ratecard_config             config;
    u_char                      seed[NGX_HTTP_RATECARD_SEED_LEN];
    size_t                      table_bytes;   /* ratecard_limiter_bytes() */
    ngx_http_ratecard_shctx_t  *sh;
    u_char                     *table;
    size_t                      table_len;     /* table start to zone end */
    ratecard_limiter           *enforce;       /* this process's handles */
    ratecard_limiter           *dry_run;
    ngx_http_ratecard_redis_t  *redis;         /* NULL: the local table decides */
} ngx_http_ratecard_zone_t;


typedef struct ngx_http_ratecard_rt_s  ngx_http_ratecard_rt_t;


/* The decision for one main request; lives on the request pool. */
typedef struct {
    ngx_uint_t                  status;        /* NGX_HTTP_RATECARD_* */
    ngx_uint_t                  fields;        /* what the header filter owes */
    ngx_int_t                   fail_status;   /* on ERROR: 0 passes, else this */
    ratecard_limiter           *limiter;
    ratecard_decision           decision;
    u_char                     *answer;        /* what ratecard_write_response wrote */
    ratecard_response           response;
    ngx_http_ratecard_rt_t     *rt;            /* a Redis round trip in flight */
    unsigned                    answered:1;
} ngx_http_ratecard_state_t;


extern ngx_module_t  ngx_http_ratecard_module;


/* the status a decision gives (module file) */
void ngx_http_ratecard_result(ngx_http_ratecard_state_t *st,
    ratecard_limiter *limiter);

/* the Redis mode (redis file) */
char *ngx_http_ratecard_redis_parse(ngx_conf_t *cf,
    ngx_http_ratecard_redis_t *rd);
ngx_int_t ngx_http_ratecard_redis_decide(ngx_http_request_t *r,
    ngx_http_ratecard_zone_t *z, ngx_http_ratecard_state_t *st,
    ratecard_limiter *limiter, ratecard_request *req, ngx_int_t error_status,
    ngx_int_t closed_status);
ngx_int_t ngx_http_ratecard_redis_wait(ngx_http_request_t *r,
    ngx_http_ratecard_rt_t *rt);
void ngx_http_ratecard_redis_init_process(ngx_cycle_t *cycle,
    ngx_http_ratecard_redis_t *rd);

#endif /* NGX_HTTP_RATECARD_MODULE_H */
