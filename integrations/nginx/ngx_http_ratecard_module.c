/*
 * ngx_http_ratecard_module: Clerk's rate limits in nginx, on libratecard.
 * Its words follow ngx_http_limit_req_module's.
 *
 *   ratecard_zone zone=clerk:16m [ipv6_prefix=64] [policy=evict|deny|admit]
 *                 [pace] [unknown_kind=development|production]
 *                 [algorithm=gcra|fixed_window]
 *                 [seed_file=PATH | seed=HEX];                          http
 *   ratecard_redis zone=clerk server=HOST:PORT|unix:PATH ...;            http
 *   ratecard zone=clerk api=frontend|backend [dry_run]; | ratecard off;
 *                                                          http, server, location
 *   ratecard_dry_run on|off;                               http, server, location
 *   ratecard_status 429;                                   http, server, location
 *   ratecard_log_level info|notice|warn|error;             http, server, location
 *   ratecard_headers on|off;                               http, server, location
 *   ratecard_fail open | closed [status];                  http, server, location
 *   ratecard_client_ip / ratecard_key / ratecard_tenant / ratecard_path <value>;
 *   ratecard_metrics;                                      location
 *   $ratecard_status $ratecard_rule $ratecard_limit $ratecard_remaining
 *   $ratecard_reset $ratecard_retry_after
 *
 * As with limit_req, the directive ratecard_status is the rejection's
 * status code and the variable $ratecard_status the result.
 *
 * One shared zone holds one ratecard table; every worker attaches its own
 * handles to it (an enforcing one and a dry-run one), since a handle is
 * process memory pointing into the zone. A request is decided once, in the
 * preaccess phase of the first location that has ratecard: decide() turns
 * the request into a result, answer() turns the result into the phase's
 * return. With ratecard_redis the decision is a round trip to Redis
 * (ngx_http_ratecard_redis.c): decide() then suspends the request and its
 * phases run again once the result is in. The state is kept in a structure
 * hung on the request pool, which internal redirects do not clear (they
 * clear module contexts), so a redirect never counts twice.
 */

#include "ngx_http_ratecard_module.h"


#define NGX_HTTP_RATECARD_VAR_STATUS       0
#define NGX_HTTP_RATECARD_VAR_RULE         1
#define NGX_HTTP_RATECARD_VAR_LIMIT        2
#define NGX_HTTP_RATECARD_VAR_REMAINING    3
#define NGX_HTTP_RATECARD_VAR_RESET        4
#define NGX_HTTP_RATECARD_VAR_RETRY_AFTER  5


/* the fields the header filter still owes the main response */
#define NGX_HTTP_RATECARD_FIELDS_NONE        0
#define NGX_HTTP_RATECARD_FIELDS_RATELIMIT   1  /* RateLimit-Policy, RateLimit */
#define NGX_HTTP_RATECARD_FIELDS_REJECTION   2  /* and Retry-After */

#define NGX_HTTP_RATECARD_MAGIC      0x52434e58  /* "RCNX" */
#define NGX_HTTP_RATECARD_MAX_SLOTS  ((uint32_t) 1 << 28)
#define NGX_HTTP_RATECARD_MIN_SIZE   (32 * 1024)
#define NGX_HTTP_RATECARD_MAX_ZONES  32          /* ratecard_write_metrics' */


/*
 * The zone: nginx writes an ngx_slab_pool_t at the start of every shared
 * zone (ngx_init_zone_pool) and, when a worker dies, the master unlocks
 * that pool's mutex word for it; so the pool header is left alone. Our own
 * record of the zone (ngx_http_ratecard_shctx_t: fixed parameters and the
 * Redis circuit breaker) follows it, then the table, on a 64-byte boundary
 * (the zone itself is page aligned):
 *
 *   [ngx_slab_pool_t][ngx_http_ratecard_shctx_t]...[table, 64-aligned]
 */

#define NGX_HTTP_RATECARD_TABLE_OFFSET                                       \
    ngx_align(sizeof(ngx_slab_pool_t) + sizeof(ngx_http_ratecard_shctx_t), 64)


typedef struct {
    ngx_shm_zone_t             *shm_zone;
    ngx_str_t                   file;
    ngx_uint_t                  line;
} ngx_http_ratecard_use_t;


typedef struct {
    ngx_array_t                 zones;         /* ngx_http_ratecard_zone_t * */
    ngx_array_t                 uses;          /* ngx_http_ratecard_use_t */
    ngx_array_t                 redis;         /* ngx_http_ratecard_redis_t * */
    ngx_flag_t                  enabled;
} ngx_http_ratecard_main_conf_t;


typedef struct {
    ngx_shm_zone_t             *shm_zone;      /* NULL: off */
    ngx_uint_t                  api;
    ngx_flag_t                  zone_dry_run;  /* ratecard ... dry_run */
    ngx_flag_t                  dry_run;       /* ratecard_dry_run */
    ngx_flag_t                  headers;       /* RateLimit on passed ones */
    ngx_int_t                   status;
    ngx_int_t                   fail_closed;
    ngx_int_t                   fail_status;
    ngx_uint_t                  log_level;
    ngx_http_complex_value_t   *client_ip;     /* NULL: the connection's */
    ngx_http_complex_value_t   *key;           /* NULL: Authorization */
    ngx_http_complex_value_t   *tenant;        /* NULL: none */
    ngx_http_complex_value_t   *path;          /* NULL: $request_uri */
} ngx_http_ratecard_loc_conf_t;


static ngx_int_t ngx_http_ratecard_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_ratecard_decide(ngx_http_request_t *r,
    ngx_http_ratecard_loc_conf_t *lcf, ngx_http_ratecard_state_t *st);
static ngx_int_t ngx_http_ratecard_request(ngx_http_request_t *r,
    ngx_http_ratecard_loc_conf_t *lcf, ratecard_request *req, u_char *ip);
static ngx_int_t ngx_http_ratecard_answer(ngx_http_request_t *r,
    ngx_http_ratecard_loc_conf_t *lcf, ngx_http_ratecard_state_t *st);
static ngx_int_t ngx_http_ratecard_reject(ngx_http_request_t *r,
    ngx_http_ratecard_loc_conf_t *lcf, ngx_http_ratecard_state_t *st);
static ngx_uint_t ngx_http_ratecard_has_error_page(ngx_http_request_t *r,
    ngx_int_t status);
static ngx_int_t ngx_http_ratecard_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_ratecard_metrics_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_ratecard_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_http_ratecard_state_t *ngx_http_ratecard_state(
    ngx_http_request_t *r, ngx_uint_t create);
static void ngx_http_ratecard_state_cleanup(void *data);
static ngx_int_t ngx_http_ratecard_fields(ngx_http_request_t *r,
    ngx_http_ratecard_state_t *st);
static ngx_int_t ngx_http_ratecard_add_header(ngx_http_request_t *r,
    ngx_str_t *name, u_char *answer, ratecard_field field);
static ngx_int_t ngx_http_ratecard_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_ratecard_attach(ngx_log_t *log,
    ngx_http_ratecard_zone_t *z);

static char *ngx_http_ratecard_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_ratecard(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_ratecard_fail(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_ratecard_seed(ngx_conf_t *cf, ngx_str_t *value,
    u_char *seed);
static char *ngx_http_ratecard_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_ratecard_metrics(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_shm_zone_t *ngx_http_ratecard_use(ngx_conf_t *cf, ngx_str_t *name);

static ngx_int_t ngx_http_ratecard_add_variables(ngx_conf_t *cf);
static void *ngx_http_ratecard_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_ratecard_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_ratecard_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_ratecard_link_redis(ngx_conf_t *cf,
    ngx_http_ratecard_main_conf_t *mcf);
static ngx_int_t ngx_http_ratecard_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_ratecard_init_process(ngx_cycle_t *cycle);
static void ngx_http_ratecard_exit_process(ngx_cycle_t *cycle);


static ngx_conf_num_bounds_t  ngx_http_ratecard_status_bounds = {
    ngx_conf_check_num_bounds, 400, 599
};


static ngx_conf_enum_t  ngx_http_ratecard_log_levels[] = {
    { ngx_string("info"), NGX_LOG_INFO },
    { ngx_string("notice"), NGX_LOG_NOTICE },
    { ngx_string("warn"), NGX_LOG_WARN },
    { ngx_string("error"), NGX_LOG_ERR },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_ratecard_commands[] = {

    { ngx_string("ratecard_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_ratecard_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ratecard_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_ratecard_redis,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ratecard"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE123,
      ngx_http_ratecard,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ratecard_dry_run"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ratecard_loc_conf_t, dry_run),
      NULL },

    { ngx_string("ratecard_status"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ratecard_loc_conf_t, status),
      &ngx_http_ratecard_status_bounds },

    { ngx_string("ratecard_log_level"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ratecard_loc_conf_t, log_level),
      &ngx_http_ratecard_log_levels },

    { ngx_string("ratecard_headers"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ratecard_loc_conf_t, headers),
      NULL },

    { ngx_string("ratecard_fail"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_ratecard_fail,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ratecard_client_ip"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ratecard_loc_conf_t, client_ip),
      NULL },

    { ngx_string("ratecard_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ratecard_loc_conf_t, key),
      NULL },

    { ngx_string("ratecard_tenant"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ratecard_loc_conf_t, tenant),
      NULL },

    { ngx_string("ratecard_path"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ratecard_loc_conf_t, path),
      NULL },

    { ngx_string("ratecard_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_ratecard_metrics,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_ratecard_module_ctx = {
    ngx_http_ratecard_add_variables,       /* preconfiguration */
    ngx_http_ratecard_init,                /* postconfiguration */

    ngx_http_ratecard_create_main_conf,    /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_ratecard_create_loc_conf,     /* create location configuration */
    ngx_http_ratecard_merge_loc_conf       /* merge location configuration */
};


ngx_module_t  ngx_http_ratecard_module = {
    NGX_MODULE_V1,
    &ngx_http_ratecard_module_ctx,         /* module context */
    ngx_http_ratecard_commands,            /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_ratecard_init_process,        /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_ratecard_exit_process,        /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_variable_t  ngx_http_ratecard_vars[] = {

    { ngx_string("ratecard_status"), NULL, ngx_http_ratecard_variable,
      NGX_HTTP_RATECARD_VAR_STATUS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ratecard_rule"), NULL, ngx_http_ratecard_variable,
      NGX_HTTP_RATECARD_VAR_RULE, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ratecard_limit"), NULL, ngx_http_ratecard_variable,
      NGX_HTTP_RATECARD_VAR_LIMIT, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ratecard_remaining"), NULL, ngx_http_ratecard_variable,
      NGX_HTTP_RATECARD_VAR_REMAINING, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ratecard_reset"), NULL, ngx_http_ratecard_variable,
      NGX_HTTP_RATECARD_VAR_RESET, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ratecard_retry_after"), NULL, ngx_http_ratecard_variable,
      NGX_HTTP_RATECARD_VAR_RETRY_AFTER, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_null_string, NULL, NULL, 0, 0, 0 }
};


/* $ratecard_status, by NGX_HTTP_RATECARD_*: limit_req's words, then ours */
static ngx_str_t  ngx_http_ratecard_status_names[] = {
    ngx_null_string,
    ngx_string("PASSED"),
    ngx_string("REJECTED"),
    ngx_string("REJECTED_DRY_RUN"),
    ngx_string("EXEMPT"),
    ngx_string("UNMATCHED"),
    ngx_string("ERROR")
};


static ngx_str_t  ngx_http_ratecard_retry_after = ngx_string("Retry-After");
static ngx_str_t  ngx_http_ratecard_policy = ngx_string("RateLimit-Policy");
static ngx_str_t  ngx_http_ratecard_ratelimit = ngx_string("RateLimit");


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;


/*
 * The preaccess handler: decide() turns the request into a result in st,
 * answer() turns the result into the phase's return. Only decide() consults
 * a backend: through Redis it suspends the request (NGX_DONE) and the
 * phases run again once st is filled; answer() then runs on re-entry.
 */

static ngx_int_t
ngx_http_ratecard_handler(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    ngx_http_ratecard_state_t     *st;
    ngx_http_ratecard_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_ratecard_module);

    if (lcf->shm_zone == NULL) {
        return NGX_DECLINED;
    }

    st = ngx_http_ratecard_state(r, 1);
    if (st == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (st->answered) {
        /* decided already: before an internal redirect, or by the parent */
        return NGX_DECLINED;
    }

    if (st->rt != NULL) {
        /* a subrequest while the round trip for its main request is out */
        return ngx_http_ratecard_redis_wait(r, st->rt);
    }

    if (st->status == NGX_HTTP_RATECARD_NONE) {
        rc = ngx_http_ratecard_decide(r, lcf, st);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    st->answered = 1;

    return ngx_http_ratecard_answer(r, lcf, st);
}


/*
 * Decides r against the zone's table, or through Redis, into st. Returns
 * NGX_OK with a result (ERROR included: the library could not decide),
 * NGX_DONE with r suspended until Redis answers, or a status to finalize
 * with when nginx itself failed.
 */

static ngx_int_t
ngx_http_ratecard_decide(ngx_http_request_t *r,
    ngx_http_ratecard_loc_conf_t *lcf, ngx_http_ratecard_state_t *st)
{
    u_char                     ip[16];
    uint64_t                   now;
    ngx_int_t                  rc;
    ratecard_status            status;
    ratecard_request           req;
    ratecard_limiter          *limiter;
    ngx_http_ratecard_zone_t  *z;

    z = lcf->shm_zone->data;
    limiter = (lcf->dry_run || lcf->zone_dry_run) ? z->dry_run : z->enforce;

    if (limiter == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "ratecard: zone \"%V\" is not attached in this process",
                      &z->name);
        st->status = NGX_HTTP_RATECARD_ERROR;
        st->fail_status = lcf->fail_closed ? lcf->fail_status : 0;
        return NGX_OK;
    }

    rc = ngx_http_ratecard_request(r, lcf, &req, ip);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        st->status = NGX_HTTP_RATECARD_ERROR;
        st->fail_status = lcf->fail_closed ? lcf->fail_status : 0;
        return NGX_OK;
    }

    if (z->redis) {
        rc = ngx_http_ratecard_redis_decide(r, z, st, limiter, &req,
                                            lcf->fail_closed
                                                ? lcf->fail_status : 0,
                                            lcf->fail_status);
        return (rc == NGX_ERROR) ? NGX_HTTP_INTERNAL_SERVER_ERROR : rc;
    }

    status = ratecard_now_ns(&now);
    if (status == RATECARD_OK) {
        status = ratecard_check(limiter, &req, now, &st->decision);
    }

    if (status != RATECARD_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "ratecard: check in zone \"%V\" failed: %s",
                      &z->name, ratecard_status_str(status));
        st->status = NGX_HTTP_RATECARD_ERROR;
        st->fail_status = lcf->fail_closed ? lcf->fail_status : 0;
        return NGX_OK;
    }

    ngx_http_ratecard_result(st, limiter);

    return NGX_OK;
}


/* The result st->decision gives, from limiter. */

void
ngx_http_ratecard_result(ngx_http_ratecard_state_t *st,
    ratecard_limiter *limiter)
{
    st->limiter = limiter;

    if (st->decision.dry_run_denied) {
        st->status = NGX_HTTP_RATECARD_REJECTED_DRY_RUN;

    } else if (!st->decision.allowed) {
        st->status = NGX_HTTP_RATECARD_REJECTED;

    } else if (st->decision.exempt) {
        st->status = NGX_HTTP_RATECARD_EXEMPT;

    } else if (st->decision.rule == RATECARD_NO_RULE) {
        st->status = NGX_HTTP_RATECARD_UNMATCHED;

    } else {
        st->status = NGX_HTTP_RATECARD_PASSED;
    }
}


/*
 * The library's view of r; ip is room for a parsed client address. Returns
 * NGX_OK, NGX_DECLINED when the configured client address is no IP address
 * (logged), or NGX_ERROR.
 */

static ngx_int_t
ngx_http_ratecard_request(ngx_http_request_t *r,
    ngx_http_ratecard_loc_conf_t *lcf, ratecard_request *req, u_char *ip)
{
    size_t               ip_len;
    ngx_str_t            value;
    struct sockaddr     *sa;
    ngx_http_request_t  *m;

    m = r->main;

    ngx_memzero(req, sizeof(ratecard_request));
    req->api = (uint32_t) lcf->api;
    req->method = m->method_name.data;
    req->method_len = m->method_name.len;

    if (lcf->path) {
        if (ngx_http_complex_value(r, lcf->path, &value) != NGX_OK) {
            return NGX_ERROR;
        }

    } else {
        value = m->unparsed_uri;
    }

    req->path = value.data;
    req->path_len = value.len;

    if (lcf->client_ip) {
        if (ngx_http_complex_value(r, lcf->client_ip, &value) != NGX_OK) {
            return NGX_ERROR;
        }

        /* text first ("192.0.2.1", "[2001:db8::1]"), else raw 4 or 16 bytes
           ($binary_remote_addr): no 4-byte string is a textual address, and
           a 16-byte one only in unallocated IPv6 space */
        if (value.len == 0) {
            req->client_ip = NULL;

        } else if (ratecard_ip_parse(value.data, value.len, ip, sizeof(ip), &ip_len)
                   == RATECARD_OK)
        {
            req->client_ip = ip;
            req->client_ip_len = ip_len;

        } else if (value.len == 4 || value.len == 16) {
            req->client_ip = value.data;
            req->client_ip_len = value.len;

        } else {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "ratecard: client address \"%V\" is not an IP "
                          "address", &value);
            return NGX_DECLINED;
        }

    } else {
        /* the connection's address, as the realip module may have set it */
        sa = r->connection->sockaddr;

        switch (sa->sa_family) {

        case AF_INET:
            req->client_ip = (u_char *) &((struct sockaddr_in *) sa)->sin_addr;
            req->client_ip_len = 4;
            break;

#if (NGX_HAVE_INET6)
        case AF_INET6:
            req->client_ip = ((struct sockaddr_in6 *) sa)->sin6_addr.s6_addr;
            req->client_ip_len = 16;
            break;
#endif

        default:
            break;
        }
    }

    if (lcf->key) {
        if (ngx_http_complex_value(r, lcf->key, &value) != NGX_OK) {
            return NGX_ERROR;
        }

        req->secret_key = value.data;
        req->secret_key_len = value.len;

    } else if (m->headers_in.authorization) {
        req->secret_key = m->headers_in.authorization->value.data;
        req->secret_key_len = m->headers_in.authorization->value.len;
    }

    if (lcf->tenant) {
        if (ngx_http_complex_value(r, lcf->tenant, &value) != NGX_OK) {
            return NGX_ERROR;
        }

        req->tenant = value.data;
        req->tenant_len = value.len;
    }

    return NGX_OK;
}


/* Acts on the result: the phase's return, and the fields the response owes. */

static ngx_int_t
ngx_http_ratecard_answer(ngx_http_request_t *r,
    ngx_http_ratecard_loc_conf_t *lcf, ngx_http_ratecard_state_t *st)
{
    const char                *rule;
    ngx_http_ratecard_zone_t  *z;

    switch (st->status) {

    case NGX_HTTP_RATECARD_PASSED:
        st->fields = lcf->headers ? NGX_HTTP_RATECARD_FIELDS_RATELIMIT
                                  : NGX_HTTP_RATECARD_FIELDS_NONE;
        return NGX_DECLINED;

    case NGX_HTTP_RATECARD_REJECTED:
    case NGX_HTTP_RATECARD_REJECTED_DRY_RUN:
        break;

    case NGX_HTTP_RATECARD_ERROR:
        /* a status goes through nginx's special response (and error_page) */
        return st->fail_status ? st->fail_status : NGX_DECLINED;

    default: /* EXEMPT, UNMATCHED: no fields */
        return NGX_DECLINED;
    }

    z = lcf->shm_zone->data;
    rule = ratecard_rule_name(st->limiter, st->decision.rule);

    ngx_log_error(lcf->log_level, r->connection->log, 0,
                  "ratecard: limiting requests%s by rule \"%s\" in zone "
                  "\"%V\", retry after %uD s",
                  st->status == NGX_HTTP_RATECARD_REJECTED_DRY_RUN
                      ? ", dry run," : "",
                  rule ? rule : "?", &z->name,
                  st->decision.retry_after_secs);

    if (st->status == NGX_HTTP_RATECARD_REJECTED_DRY_RUN) {
        st->fields = lcf->headers ? NGX_HTTP_RATECARD_FIELDS_RATELIMIT
                                  : NGX_HTTP_RATECARD_FIELDS_NONE;
        return NGX_DECLINED;
    }

    return ngx_http_ratecard_reject(r, lcf, st);
}


/*
 * A rejection. With an error_page for its status it is answered as
 * limit_req answers: the status alone, and nginx's special response runs
 * the page; without one, with Clerk's JSON body. The header filter adds
 * Retry-After and the RateLimit fields to either.
 */

static ngx_int_t
ngx_http_ratecard_reject(ngx_http_request_t *r,
    ngx_http_ratecard_loc_conf_t *lcf, ngx_http_ratecard_state_t *st)
{
    size_t        len;
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    if (r != r->main) {
        /* a subrequest: its parent sees the status and answers for it */
        return lcf->status;
    }

    if (ngx_http_ratecard_has_error_page(r, lcf->status)) {
        st->fields = NGX_HTTP_RATECARD_FIELDS_REJECTION;
        return lcf->status;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_ratecard_fields(r, st) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    len = st->response.body.len;

    st->fields = NGX_HTTP_RATECARD_FIELDS_REJECTION;

    r->headers_out.status = lcf->status;
    r->headers_out.content_length_n = len;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        ngx_http_finalize_request(r, rc);
        return NGX_DONE;
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        ngx_http_finalize_request(r, NGX_ERROR);
        return NGX_DONE;
    }

    b->last = ngx_cpymem(b->last, st->answer + st->response.body.offset, len);
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    ngx_http_finalize_request(r, ngx_http_output_filter(r, &out));

    return NGX_DONE;
}


/* Whether nginx's special response would run an error_page for status: the
   test ngx_http_special_response_handler makes, in the current location. */

static ngx_uint_t
ngx_http_ratecard_has_error_page(ngx_http_request_t *r, ngx_int_t status)
{
    ngx_uint_t                 i;
    ngx_http_err_page_t       *err_page;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (r->error_page || clcf->error_pages == NULL || r->uri_changes == 0) {
        return 0;
    }

    err_page = clcf->error_pages->elts;

    for (i = 0; i < clcf->error_pages->nelts; i++) {
        if (err_page[i].status == status) {
            return 1;
        }
    }

    return 0;
}


/* The main response carries the fields its decision owes, once. */

static ngx_int_t
ngx_http_ratecard_header_filter(ngx_http_request_t *r)
{
    ngx_uint_t                      fields;
    ngx_http_ratecard_state_t      *st;
    ngx_http_ratecard_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_ratecard_module);

    if (!mcf->enabled || r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    st = ngx_http_ratecard_state(r, 0);

    if (st == NULL || st->fields == NGX_HTTP_RATECARD_FIELDS_NONE) {
        return ngx_http_next_header_filter(r);
    }

    fields = st->fields;
    st->fields = NGX_HTTP_RATECARD_FIELDS_NONE;

    if (ngx_http_ratecard_fields(r, st) != NGX_OK
        || (fields == NGX_HTTP_RATECARD_FIELDS_REJECTION
            && ngx_http_ratecard_add_header(r, &ngx_http_ratecard_retry_after,
                                            st->answer, st->response.retry_after)
               != NGX_OK)
        || ngx_http_ratecard_add_header(r, &ngx_http_ratecard_policy,
                                        st->answer,
                                        st->response.ratelimit_policy)
           != NGX_OK
        || ngx_http_ratecard_add_header(r, &ngx_http_ratecard_ratelimit,
                                        st->answer, st->response.ratelimit)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_next_header_filter(r);
}


/*
 * Everything the response owes its decision, written once by the library
 * into the request pool: status, Retry-After, RateLimit-Policy, RateLimit
 * and Clerk's body, the same as every other ratecard host writes.
 */

static ngx_int_t
ngx_http_ratecard_fields(ngx_http_request_t *r, ngx_http_ratecard_state_t *st)
{
    size_t           size, need;
    ngx_uint_t       attempt;
    ratecard_status  rc;

    if (st->answer != NULL) {
        return NGX_OK;
    }

    size = 512;
    need = 0;
    rc = RATECARD_BUFFER_TOO_SHORT;

    /* a second attempt gets the length the first one reported */
    for (attempt = 0; attempt < 2 && rc == RATECARD_BUFFER_TOO_SHORT;
         attempt++)
    {
        if (attempt > 0) {
            size = need;
        }

        st->answer = ngx_pnalloc(r->pool, size ? size : 1);
        if (st->answer == NULL) {
            return NGX_ERROR;
        }

        rc = ratecard_write_response(st->limiter, &st->decision, st->answer,
                                     size, &st->response, &need);
    }

    if (rc != RATECARD_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "ratecard: writing the response failed: %s",
                      ratecard_status_str(rc));
        st->answer = NULL;
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_ratecard_add_header(ngx_http_request_t *r, ngx_str_t *name,
    u_char *answer, ratecard_field field)
{
    ngx_table_elt_t  *h;

    if (field.len == 0) {
        return NGX_OK;
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key = *name;
    h->value.data = answer + field.offset;
    h->value.len = field.len;
    h->lowcase_key = NULL;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return NGX_OK;
}


/*
 * The decision of the main request. Module contexts are wiped by internal
 * redirects, so the decision lives in a cleanup entry of the request pool
 * (which subrequests share) and the context is only a shortcut to it.
 */

static ngx_http_ratecard_state_t *
ngx_http_ratecard_state(ngx_http_request_t *r, ngx_uint_t create)
{
    ngx_pool_cleanup_t         *cln;
    ngx_http_ratecard_state_t  *st;

    r = r->main;

    st = ngx_http_get_module_ctx(r, ngx_http_ratecard_module);
    if (st != NULL) {
        return st;
    }

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_ratecard_state_cleanup) {
            st = cln->data;
            ngx_http_set_ctx(r, st, ngx_http_ratecard_module);
            return st;
        }
    }

    if (!create) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_ratecard_state_t));
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_http_ratecard_state_cleanup;
    st = cln->data;
    ngx_memzero(st, sizeof(ngx_http_ratecard_state_t));

    ngx_http_set_ctx(r, st, ngx_http_ratecard_module);

    return st;
}


static void
ngx_http_ratecard_state_cleanup(void *data)
{
    /* nothing to free: the handler's address marks our entry */
}


/* Variables: the decision of the main request. */

static ngx_int_t
ngx_http_ratecard_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                     *p;
    uint64_t                    n;
    const char                 *name;
    ngx_http_ratecard_state_t  *st;

    st = ngx_http_ratecard_state(r, 0);

    if (st == NULL || st->status == NGX_HTTP_RATECARD_NONE) {
        v->not_found = 1;
        return NGX_OK;
    }

    if (data == NGX_HTTP_RATECARD_VAR_STATUS) {
        v->data = ngx_http_ratecard_status_names[st->status].data;
        v->len = ngx_http_ratecard_status_names[st->status].len;
        goto found;
    }

    if (st->limiter == NULL
        || st->decision.rule == RATECARD_NO_RULE
        || st->decision.exempt)
    {
        v->not_found = 1;
        return NGX_OK;
    }

    if (data == NGX_HTTP_RATECARD_VAR_RULE) {
        name = ratecard_rule_name(st->limiter, st->decision.rule);
        if (name == NULL) {
            v->not_found = 1;
            return NGX_OK;
        }

        v->data = (u_char *) name;
        v->len = ngx_strlen(name);
        goto found;
    }

    switch (data) {

    case NGX_HTTP_RATECARD_VAR_LIMIT:
        n = st->decision.limit;
        break;

    case NGX_HTTP_RATECARD_VAR_REMAINING:
        n = st->decision.remaining;
        break;

    case NGX_HTTP_RATECARD_VAR_RESET:
        /* as the RateLimit field's t: whole microseconds, rounded up to s */
        n = st->decision.reset_ns / 1000;
        n = n / 1000000 + (n % 1000000 != 0);
        break;

    default: /* NGX_HTTP_RATECARD_VAR_RETRY_AFTER */
        if (st->decision.retry_after_secs == 0) {
            v->not_found = 1;
            return NGX_OK;
        }

        n = st->decision.retry_after_secs;
        break;
    }

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->data = p;
    v->len = ngx_sprintf(p, "%uL", n) - p;

found:

    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


/*
 * ratecard_metrics: every zone's counters in Prometheus' text format, as
 * the library writes them for every host (stub_status's place, for a
 * scraper). Counters live in the zones, so any worker gives the host's.
 */

static ngx_int_t
ngx_http_ratecard_metrics_handler(ngx_http_request_t *r)
{
    size_t                          size, need;
    ngx_int_t                       rc;
    ngx_buf_t                      *b;
    ngx_uint_t                      i, n, attempt;
    ngx_chain_t                     out;
    ratecard_status                 status;
    ratecard_metrics_zone           mz[NGX_HTTP_RATECARD_MAX_ZONES];
    ngx_http_ratecard_zone_t      **zones;
    ngx_http_ratecard_main_conf_t  *mcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_ratecard_module);
    zones = mcf->zones.elts;
    n = 0;

    for (i = 0; i < mcf->zones.nelts; i++) {
        if (zones[i]->enforce == NULL) {
            /* attaching failed in this worker, and was logged then */
            continue;
        }

        mz[n].limiter = zones[i]->enforce;
        mz[n].name = zones[i]->name.data;
        mz[n].name_len = zones[i]->name.len;
        n++;
    }

    size = 8192;
    need = 0;
    b = NULL;
    status = RATECARD_BUFFER_TOO_SHORT;

    /* a second attempt gets the length the first one reported */
    for (attempt = 0; attempt < 2 && status == RATECARD_BUFFER_TOO_SHORT;
         attempt++)
    {
        if (attempt > 0) {
            size = need;
        }

        b = ngx_create_temp_buf(r->pool, size ? size : 1);
        if (b == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        status = ratecard_write_metrics(mz, n, b->pos, size, &need);
    }

    if (status != RATECARD_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "ratecard: writing the metrics failed: %s",
                      ratecard_status_str(status));
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = b->pos + need;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = need;
    ngx_str_set(&r->headers_out.content_type, "text/plain; version=0.0.4");
    r->headers_out.content_type_len = sizeof("text/plain") - 1;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    if (need == 0) {
        b->memory = 0;
        b->temporary = 0;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* The zone: laid out in the master, on start and on every reload. */

static ngx_int_t
ngx_http_ratecard_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    u_char                     *base;
    ratecard_status             rc;
    ratecard_config             cfg;
    ratecard_limiter           *h;
    uint32_t                    crc;
    ngx_http_ratecard_zone_t   *z;
    ngx_http_ratecard_shctx_t  *sh;

    z = shm_zone->data;
    base = shm_zone->shm.addr;
    crc = z->config.seed ? ngx_crc32_short(z->seed, sizeof(z->seed)) : 0;

    sh = (ngx_http_ratecard_shctx_t *) (base + sizeof(ngx_slab_pool_t));
    z->sh = sh;
    z->table = ngx_align_ptr(base + NGX_HTTP_RATECARD_TABLE_OFFSET, 64);
    z->table_len = base + shm_zone->shm.size - z->table;

    if (z->table_len < z->table_bytes) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "ratecard_zone \"%V\": %uz bytes left for a table of "
                      "%uz", &z->name, z->table_len, z->table_bytes);
        return NGX_ERROR;
    }

    if (data != NULL || shm_zone->shm.exists) {
        /*
         * A reload kept the zone (same name and size): join the table, so
         * every client keeps its state. Re-initialising would wipe it.
         */
        ratecard_config_default(&cfg);
        cfg.policy = z->config.policy;

        rc = ratecard_limiter_attach_with(z->table, z->table_len, &cfg, &h);
        if (rc != RATECARD_OK) {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "ratecard_zone \"%V\": cannot re-attach the kept "
                          "table: %s", &z->name, ratecard_status_str(rc));
            return NGX_ERROR;
        }

        ratecard_limiter_free(h);

        /* the table hashes subjects with the seed it was laid out with */
        if (sh->magic == NGX_HTTP_RATECARD_MAGIC
            && (sh->seeded != (z->config.seed != NULL) || sh->seed_crc != crc))
        {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "ratecard_zone \"%V\": the seed changed, and a "
                          "kept table keeps its own: give the zone a new "
                          "name (or size) to lay it out with the new seed",
                          &z->name);
            return NGX_ERROR;
        }

        /* a new configuration (perhaps another Redis) starts unbroken */
        sh->fails = 0;
        sh->open_until = 0;

        if (sh->magic == NGX_HTTP_RATECARD_MAGIC
            && (sh->ipv6_prefix_len != z->config.ipv6_prefix_len
                || sh->pace != z->config.pace
                || sh->algorithm != z->config.algorithm
                || sh->unknown_kind != z->config.unknown_kind))
        {
            ngx_log_error(NGX_LOG_WARN, shm_zone->shm.log, 0,
                          "ratecard_zone \"%V\": ipv6_prefix, pace, "
                          "algorithm and unknown_kind take effect only in a "
                          "new zone (a new name or size); the kept table "
                          "keeps its own", &z->name);

            z->config.ipv6_prefix_len = sh->ipv6_prefix_len;
            z->config.pace = sh->pace;
            z->config.algorithm = sh->algorithm;
            z->config.unknown_kind = sh->unknown_kind;
        }

        return NGX_OK;
    }

    /*
     * ngx_slab_init() has just written its page array over this region;
     * clear it, so no reserved word of the table starts with nginx's bytes.
     */
    ngx_memzero(z->table, z->table_len);

    rc = ratecard_limiter_init(z->table, z->table_len, &z->config, &h);
    if (rc != RATECARD_OK) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "ratecard_zone \"%V\": cannot lay out the table: %s",
                      &z->name, ratecard_status_str(rc));
        return NGX_ERROR;
    }

    /* the master decides nothing: workers attach their own handles */
    ratecard_limiter_free(h);

    ngx_memzero(sh, sizeof(ngx_http_ratecard_shctx_t));
    sh->seeded = (z->config.seed != NULL);
    sh->seed_crc = crc;
    sh->magic = NGX_HTTP_RATECARD_MAGIC;
    sh->capacity = z->config.capacity;
    sh->ipv6_prefix_len = z->config.ipv6_prefix_len;
    sh->pace = z->config.pace;
    sh->algorithm = z->config.algorithm;
    sh->unknown_kind = z->config.unknown_kind;

    return NGX_OK;
}


static ngx_int_t
ngx_http_ratecard_attach(ngx_log_t *log, ngx_http_ratecard_zone_t *z)
{
    ratecard_status  rc;
    ratecard_config  cfg;

    ratecard_config_default(&cfg);
    cfg.policy = z->config.policy;

    rc = ratecard_limiter_attach_with(z->table, z->table_len, &cfg,
                                      &z->enforce);
    if (rc == RATECARD_OK) {
        cfg.dry_run = 1;
        rc = ratecard_limiter_attach_with(z->table, z->table_len, &cfg,
                                          &z->dry_run);
    }

    if (rc != RATECARD_OK) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "ratecard_zone \"%V\": cannot attach: %s",
                      &z->name, ratecard_status_str(rc));
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_ratecard_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                      i;
    ngx_http_ratecard_zone_t      **zones;
    ngx_http_ratecard_main_conf_t  *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_ratecard_module);
    if (mcf == NULL) {
        return NGX_OK;
    }

    zones = mcf->zones.elts;

    for (i = 0; i < mcf->zones.nelts; i++) {
        /* on failure requests take the ratecard_fail path; the worker lives */
        (void) ngx_http_ratecard_attach(cycle->log, zones[i]);

        if (zones[i]->redis) {
            ngx_http_ratecard_redis_init_process(cycle, zones[i]->redis);
        }
    }

    return NGX_OK;
}


static void
ngx_http_ratecard_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                      i;
    ngx_http_ratecard_zone_t      **zones;
    ngx_http_ratecard_main_conf_t  *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_ratecard_module);
    if (mcf == NULL) {
        return;
    }

    zones = mcf->zones.elts;

    for (i = 0; i < mcf->zones.nelts; i++) {
        ratecard_limiter_free(zones[i]->enforce);
        ratecard_limiter_free(zones[i]->dry_run);
        zones[i]->enforce = NULL;
        zones[i]->dry_run = NULL;
    }
}


/* Directives. */

static char *
ngx_http_ratecard_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ratecard_main_conf_t  *mcf = conf;

    char                       *rv;
    u_char                     *p, seed[NGX_HTTP_RATECARD_SEED_LEN];
    size_t                      size, zone_size;
    ssize_t                     n;
    uint32_t                    capacity;
    ngx_uint_t                  seeded;
    ngx_str_t                  *value, name, s;
    ngx_int_t                   k;
    ngx_uint_t                  i;
    ratecard_config             config;
    ngx_shm_zone_t             *shm_zone;
    ngx_http_ratecard_zone_t   *z, **zp;

    value = cf->args->elts;

    ratecard_config_default(&config);
    ngx_str_null(&name);
    size = 0;
    seeded = 0;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {

            name.data = value[i].data + 5;

            p = (u_char *) ngx_strchr(name.data, ':');

            if (p == NULL) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid zone size \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            name.len = p - name.data;

            s.data = p + 1;
            s.len = value[i].data + value[i].len - s.data;

            n = ngx_parse_size(&s);

            if (n == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid zone size \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            if (n < NGX_HTTP_RATECARD_MIN_SIZE) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "zone \"%V\" is too small (at least 32k)",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            size = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "ipv6_prefix=", 12) == 0) {
            k = ngx_atoi(value[i].data + 12, value[i].len - 12);
            if (k == NGX_ERROR || k > 128) {
                goto invalid;
            }

            config.ipv6_prefix_len = (uint8_t) k;
            continue;
        }

        if (ngx_strcmp(value[i].data, "policy=evict") == 0) {
            config.policy = RATECARD_POLICY_EVICT;
            continue;
        }

        if (ngx_strcmp(value[i].data, "policy=deny") == 0) {
            config.policy = RATECARD_POLICY_DENY;
            continue;
        }

        if (ngx_strcmp(value[i].data, "policy=admit") == 0) {
            config.policy = RATECARD_POLICY_ADMIT;
            continue;
        }

        if (ngx_strcmp(value[i].data, "pace") == 0) {
            config.pace = 1;
            continue;
        }

        if (ngx_strcmp(value[i].data, "unknown_kind=development") == 0) {
            config.unknown_kind = RATECARD_KIND_DEVELOPMENT;
            continue;
        }

        if (ngx_strcmp(value[i].data, "unknown_kind=production") == 0) {
            config.unknown_kind = RATECARD_KIND_PRODUCTION;
            continue;
        }

        if (ngx_strcmp(value[i].data, "algorithm=gcra") == 0) {
            config.algorithm = RATECARD_ALGORITHM_GCRA;
            continue;
        }

        if (ngx_strcmp(value[i].data, "algorithm=fixed_window") == 0) {
            config.algorithm = RATECARD_ALGORITHM_FIXED_WINDOW;
            continue;
        }

        if (ngx_strncmp(value[i].data, "seed=", 5) == 0
            || ngx_strncmp(value[i].data, "seed_file=", 10) == 0)
        {
            if (seeded) {
                return "has a duplicate seed";
            }

            rv = ngx_http_ratecard_seed(cf, &value[i], seed);
            if (rv != NGX_CONF_OK) {
                return rv;
            }

            seeded = 1;
            continue;
        }

        goto invalid;
    }

    if (name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must have \"zone\" parameter",
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (mcf->zones.nelts == NGX_HTTP_RATECARD_MAX_ZONES) {
        /* the most one metrics page holds */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "at most %d ratecard zones",
                           NGX_HTTP_RATECARD_MAX_ZONES);
        return NGX_CONF_ERROR;
    }

    /* the size buys slots of 16 bytes; the table takes a power of two */
    capacity = 4;
    while (capacity < NGX_HTTP_RATECARD_MAX_SLOTS
           && (size_t) capacity * 2 * 16 <= size)
    {
        capacity *= 2;
    }

    config.capacity = capacity;

    z = ngx_pcalloc(cf->pool, sizeof(ngx_http_ratecard_zone_t));
    if (z == NULL) {
        return NGX_CONF_ERROR;
    }

    z->name = name;
    z->size = size;
    z->config = config;

    if (seeded) {
        /* every host on one Redis must hash subjects alike */
        ngx_memcpy(z->seed, seed, sizeof(seed));
        z->config.seed = z->seed;
        z->config.seed_len = sizeof(z->seed);
    }
    z->table_bytes = ratecard_limiter_bytes(capacity);

    if (z->table_bytes == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ratecard cannot hold %uD slots", capacity);
        return NGX_CONF_ERROR;
    }

    /* the slab pool header nginx writes, our record, the table, slack */
    zone_size = ngx_align(NGX_HTTP_RATECARD_TABLE_OFFSET + z->table_bytes + 64,
                          ngx_pagesize);

    shm_zone = ngx_shared_memory_add(cf, &name, zone_size,
                                     &ngx_http_ratecard_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate zone \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    z->shm_zone = shm_zone;
    shm_zone->init = ngx_http_ratecard_init_zone;
    shm_zone->data = z;

    zp = ngx_array_push(&mcf->zones);
    if (zp == NULL) {
        return NGX_CONF_ERROR;
    }

    *zp = z;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);
    return NGX_CONF_ERROR;
}


static char *
ngx_http_ratecard(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ratecard_loc_conf_t  *lcf = conf;

    ngx_str_t       *value, name;
    ngx_uint_t       i, api;
    ngx_flag_t       dry_run;
    ngx_shm_zone_t  *shm_zone;

    if (lcf->shm_zone != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        lcf->shm_zone = NULL;
        return NGX_CONF_OK;
    }

    ngx_str_null(&name);
    api = 0;
    dry_run = 0;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {
            name.data = value[i].data + 5;
            name.len = value[i].len - 5;
            continue;
        }

        if (ngx_strcmp(value[i].data, "api=frontend") == 0) {
            api = RATECARD_API_FRONTEND;
            continue;
        }

        if (ngx_strcmp(value[i].data, "api=backend") == 0) {
            api = RATECARD_API_BACKEND;
            continue;
        }

        if (ngx_strcmp(value[i].data, "dry_run") == 0) {
            dry_run = 1;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must have \"zone\" parameter",
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (api == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must have \"api=frontend\" or "
                           "\"api=backend\" parameter", &cmd->name);
        return NGX_CONF_ERROR;
    }

    shm_zone = ngx_http_ratecard_use(cf, &name);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    lcf->shm_zone = shm_zone;
    lcf->api = api;
    lcf->zone_dry_run = dry_run;

    return NGX_CONF_OK;
}


static char *
ngx_http_ratecard_fail(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ratecard_loc_conf_t  *lcf = conf;

    ngx_int_t   status;
    ngx_str_t  *value;

    if (lcf->fail_closed != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "open") == 0 && cf->args->nelts == 2) {
        lcf->fail_closed = 0;
        return NGX_CONF_OK;
    }

    if (ngx_strcmp(value[1].data, "closed") != 0) {
        return "takes \"open\" or \"closed [status]\"";
    }

    lcf->fail_closed = 1;
    lcf->fail_status = NGX_HTTP_SERVICE_UNAVAILABLE;

    if (cf->args->nelts == 3) {
        status = ngx_atoi(value[2].data, value[2].len);
        if (status < 400 || status > 599) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid status \"%V\" (400 to 599)",
                               &value[2]);
            return NGX_CONF_ERROR;
        }

        lcf->fail_status = status;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_ratecard_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_ratecard_metrics_handler;

    return NGX_CONF_OK;
}


/* ratecard_redis: linked to its zone once every zone is known. */

static char *
ngx_http_ratecard_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ratecard_main_conf_t  *mcf = conf;

    char                        *rv;
    ngx_http_ratecard_redis_t   *rd, **rdp;

    rd = ngx_pcalloc(cf->pool, sizeof(ngx_http_ratecard_redis_t));
    if (rd == NULL) {
        return NGX_CONF_ERROR;
    }

    rv = ngx_http_ratecard_redis_parse(cf, rd);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    rdp = ngx_array_push(&mcf->redis);
    if (rdp == NULL) {
        return NGX_CONF_ERROR;
    }

    *rdp = rd;

    return NGX_CONF_OK;
}


/*
 * seed=HEX (32 digits) or seed_file=PATH (a file holding them) into seed.
 * The file is read by the master at configuration time, so it can be
 * root's alone; one that others may read or write is refused.
 */

static char *
ngx_http_ratecard_seed(ngx_conf_t *cf, ngx_str_t *value, u_char *seed)
{
    u_char           *p, *last, text[256];
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_str_t         hex, path;
    ngx_int_t         hi, lo;
    ngx_uint_t        i;
    ngx_file_info_t   fi;

    if (ngx_strncmp(value->data, "seed=", 5) == 0) {
        hex.data = value->data + 5;
        hex.len = value->len - 5;

    } else {
        path.data = value->data + 10;
        path.len = value->len - 10;

        if (path.len == 0 || ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
            return "has an invalid seed_file";
        }

        fd = ngx_open_file(path.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
        if (fd == NGX_INVALID_FILE) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                               ngx_open_file_n " \"%s\" failed", path.data);
            return NGX_CONF_ERROR;
        }

        if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                               ngx_fd_info_n " \"%s\" failed", path.data);
            ngx_close_file(fd);
            return NGX_CONF_ERROR;
        }

        if (ngx_file_access(&fi) & 0007) {
            ngx_close_file(fd);
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "seed_file \"%s\" is accessible to others "
                               "(chmod o-rwx)", path.data);
            return NGX_CONF_ERROR;
        }

        n = ngx_read_fd(fd, text, sizeof(text));
        ngx_close_file(fd);

        if (n == -1) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                               ngx_read_fd_n " \"%s\" failed", path.data);
            return NGX_CONF_ERROR;
        }

        /* the digits, without surrounding white space */
        p = text;
        last = text + n;
        while (p < last && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) {
            p++;
        }
        while (last > p
               && (last[-1] == ' ' || last[-1] == '\t' || last[-1] == '\r'
                   || last[-1] == '\n'))
        {
            last--;
        }

        hex.data = p;
        hex.len = last - p;
    }

    if (hex.len != 2 * NGX_HTTP_RATECARD_SEED_LEN) {
        return "needs a seed of 32 hexadecimal digits (16 bytes)";
    }

    for (i = 0; i < NGX_HTTP_RATECARD_SEED_LEN; i++) {
        hi = ngx_hextoi(&hex.data[2 * i], 1);
        lo = ngx_hextoi(&hex.data[2 * i + 1], 1);

        if (hi == NGX_ERROR || lo == NGX_ERROR) {
            return "needs a seed of 32 hexadecimal digits (16 bytes)";
        }

        seed[i] = (u_char) (hi * 16 + lo);
    }

    return NGX_CONF_OK;
}


/* A reference to a zone, perhaps declared further down: checked at the end. */

static ngx_shm_zone_t *
ngx_http_ratecard_use(ngx_conf_t *cf, ngx_str_t *name)
{
    ngx_shm_zone_t                 *shm_zone;
    ngx_http_ratecard_use_t        *use;
    ngx_http_ratecard_main_conf_t  *mcf;

    shm_zone = ngx_shared_memory_add(cf, name, 0, &ngx_http_ratecard_module);
    if (shm_zone == NULL) {
        return NULL;
    }

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_ratecard_module);
    mcf->enabled = 1;

    use = ngx_array_push(&mcf->uses);
    if (use == NULL) {
        return NULL;
    }

    use->shm_zone = shm_zone;
    use->file = cf->conf_file->file.name;
    use->line = cf->conf_file->line;

    return shm_zone;
}


/* Configuration. */

static ngx_int_t
ngx_http_ratecard_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_ratecard_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static void *
ngx_http_ratecard_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_ratecard_main_conf_t  *mcf;

    mcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_ratecard_main_conf_t));
    if (mcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&mcf->zones, cf->pool, 2,
                       sizeof(ngx_http_ratecard_zone_t *))
        != NGX_OK
        || ngx_array_init(&mcf->uses, cf->pool, 4,
                          sizeof(ngx_http_ratecard_use_t))
           != NGX_OK
        || ngx_array_init(&mcf->redis, cf->pool, 1,
                          sizeof(ngx_http_ratecard_redis_t *))
           != NGX_OK)
    {
        return NULL;
    }

    return mcf;
}


static void *
ngx_http_ratecard_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_ratecard_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_ratecard_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->api = 0;
     *     conf->zone_dry_run = 0;
     */

    conf->shm_zone = NGX_CONF_UNSET_PTR;
    conf->dry_run = NGX_CONF_UNSET;
    conf->headers = NGX_CONF_UNSET;
    conf->status = NGX_CONF_UNSET;
    conf->fail_closed = NGX_CONF_UNSET;
    conf->fail_status = NGX_CONF_UNSET;
    conf->log_level = NGX_CONF_UNSET_UINT;
    conf->client_ip = NGX_CONF_UNSET_PTR;
    conf->key = NGX_CONF_UNSET_PTR;
    conf->tenant = NGX_CONF_UNSET_PTR;
    conf->path = NGX_CONF_UNSET_PTR;

    return conf;
}


static char *
ngx_http_ratecard_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_ratecard_loc_conf_t  *prev = parent;
    ngx_http_ratecard_loc_conf_t  *conf = child;

    if (conf->shm_zone == NGX_CONF_UNSET_PTR) {
        conf->shm_zone = prev->shm_zone;
        conf->api = prev->api;
        conf->zone_dry_run = prev->zone_dry_run;
    }

    if (conf->shm_zone == NGX_CONF_UNSET_PTR) {
        conf->shm_zone = NULL;
    }

    ngx_conf_merge_value(conf->dry_run, prev->dry_run, 0);
    ngx_conf_merge_value(conf->headers, prev->headers, 1);
    ngx_conf_merge_value(conf->status, prev->status,
                         NGX_HTTP_TOO_MANY_REQUESTS);

    if (conf->fail_closed == NGX_CONF_UNSET) {
        conf->fail_closed = prev->fail_closed;
        conf->fail_status = prev->fail_status;
    }

    ngx_conf_merge_value(conf->fail_closed, prev->fail_closed, 1);
    /* a limiter that cannot decide is a transient server condition */
    ngx_conf_merge_value(conf->fail_status, prev->fail_status,
                         NGX_HTTP_SERVICE_UNAVAILABLE);

    /* limit_req_log_level's default */
    ngx_conf_merge_uint_value(conf->log_level, prev->log_level, NGX_LOG_ERR);

    ngx_conf_merge_ptr_value(conf->client_ip, prev->client_ip, NULL);
    ngx_conf_merge_ptr_value(conf->key, prev->key, NULL);
    ngx_conf_merge_ptr_value(conf->tenant, prev->tenant, NULL);
    ngx_conf_merge_ptr_value(conf->path, prev->path, NULL);

    return NGX_CONF_OK;
}


/* Each ratecard_redis to its zone, which must have a seed of its own. */

static ngx_int_t
ngx_http_ratecard_link_redis(ngx_conf_t *cf,
    ngx_http_ratecard_main_conf_t *mcf)
{
    ngx_uint_t                  i, j;
    ngx_http_ratecard_zone_t  **zones, *z;
    ngx_http_ratecard_redis_t **rds, *rd;

    zones = mcf->zones.elts;
    rds = mcf->redis.elts;

    for (i = 0; i < mcf->redis.nelts; i++) {
        rd = rds[i];
        z = NULL;

        for (j = 0; j < mcf->zones.nelts; j++) {
            if (zones[j]->name.len == rd->zone_name.len
                && ngx_strncmp(zones[j]->name.data, rd->zone_name.data,
                               rd->zone_name.len) == 0)
            {
                z = zones[j];
                break;
            }
        }

        if (z == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "unknown ratecard_zone \"%V\" in ratecard_redis "
                          "in %V:%ui", &rd->zone_name, &rd->file, rd->line);
            return NGX_ERROR;
        }

        if (z->redis) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "duplicate ratecard_redis for zone \"%V\" in "
                          "%V:%ui", &z->name, &rd->file, rd->line);
            return NGX_ERROR;
        }

        if (z->config.seed == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "ratecard_zone \"%V\" needs seed_file= or seed= "
                          "for ratecard_redis in %V:%ui: every host on one "
                          "Redis hashes subjects with the same seed",
                          &z->name, &rd->file, rd->line);
            return NGX_ERROR;
        }

        z->redis = rd;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_ratecard_init(ngx_conf_t *cf)
{
    ngx_uint_t                      i;
    ngx_array_t                    *handlers;
    ngx_http_handler_pt            *h;
    ngx_http_ratecard_use_t        *use;
    ngx_http_core_main_conf_t      *cmcf;
    ngx_http_ratecard_main_conf_t  *mcf;

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_ratecard_module);

    use = mcf->uses.elts;
    for (i = 0; i < mcf->uses.nelts; i++) {
        if (use[i].shm_zone->data == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "unknown ratecard_zone \"%V\" in %V:%ui",
                          &use[i].shm_zone->shm.name, &use[i].file,
                          use[i].line);
            return NGX_ERROR;
        }
    }

    if (ngx_http_ratecard_link_redis(cf, mcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (!mcf->enabled) {
        return NGX_OK;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);
    handlers = &cmcf->phases[NGX_HTTP_PREACCESS_PHASE].handlers;

    h = ngx_array_push(handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    /*
     * A phase runs its handlers last-registered first, and a dynamic module
     * registers after every built-in one. Put ours first in the array, so
     * it runs last in preaccess: after realip's location-level handler (the
     * client address is the real one) and after limit_req / limit_conn.
     */
    h = handlers->elts;
    ngx_memmove(&h[1], &h[0], (handlers->nelts - 1) * sizeof(*h));
    h[0] = ngx_http_ratecard_handler;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_ratecard_header_filter;

    return NGX_OK;
}
