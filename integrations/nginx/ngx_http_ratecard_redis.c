/*
 * The Redis mode of ngx_http_ratecard_module: every host on one Redis
 * enforces one set of limits, with one round trip per request on nginx's
 * event loop, never blocking a worker.
 *
 *   ratecard_redis zone=clerk server=10.0.0.5:6379|unix:/path [timeout=200ms]
 *                  [keepalive=8] [prefix=rc:] [clock=server|gateway]
 *                  [fail=closed|open|local] [max_fails=3]
 *                  [fail_timeout=10s] [exact];                      http
 *
 * ratecard_remote_prepare() classifies the request: exempt, unmatched, and
 * subjects whose Redis denial this host cached are decided at once.
 * Otherwise the library writes the whole RESP command (EVALSHA of its
 * charge script, every matched rule in one call) and this file speaks it
 * as upstream modules speak their own protocols: ngx_event_connect_peer(),
 * non-blocking send and read handlers, one timer for the deadline, idle
 * connections kept per worker. The request is suspended meanwhile
 * (r->main->count++, NGX_DONE from the phase handler, as the upstream
 * module holds a request) and its phases run again once the decision is
 * in. NOSCRIPT (a restart, a failover, SCRIPT FLUSH) sends the same call
 * once more as EVAL, which loads the script.
 *
 * When Redis cannot answer (a timeout, a refused connection, a reply that
 * is not the script's) fail= answers: closed (the location's ratecard_fail
 * status, 503), open, or local (this host's table: per-host limits). A
 * circuit breaker shared by the host's workers stops calling after
 * max_fails consecutive failures for fail_timeout, answering under the
 * policy at once, then lets one request probe. The policy's use is logged
 * once per fail_timeout, with a count, never once per request.
 */

#include "ngx_http_ratecard_module.h"


#define NGX_HTTP_RATECARD_REDIS_PORT       6379
#define NGX_HTTP_RATECARD_PREFIX_MAX       64
#define NGX_HTTP_RATECARD_REPLY_FIRST      512
#define NGX_HTTP_RATECARD_REPLY_MAX        (64 * 1024)  /* the script's: < 7 KB */
#define NGX_HTTP_RATECARD_COMMAND_FIRST    1024


/* One connection to Redis, idle in rd->idle or carrying one round trip. */
typedef struct {
    ngx_queue_t                  queue;
    ngx_connection_t            *connection;
    ngx_http_ratecard_redis_t   *redis;
    ngx_http_ratecard_rt_t      *rt;           /* NULL when idle */
    unsigned                     connected:1;
    unsigned                     reused:1;
} ngx_http_ratecard_conn_t;


/* A request suspended until the decision is in: the main request, and any
   subrequest that reaches ratecard while the round trip is in flight. */
typedef struct ngx_http_ratecard_waiter_s  ngx_http_ratecard_waiter_t;

struct ngx_http_ratecard_waiter_s {
    ngx_http_request_t          *request;
    ngx_http_event_handler_pt    read_event_handler;
    ngx_http_event_handler_pt    write_event_handler;
    ngx_http_posted_request_t    posted;
    ngx_http_ratecard_waiter_t  *next;
};


/* One round trip, on the request pool. */
struct ngx_http_ratecard_rt_s {
    ngx_http_request_t          *request;
    ngx_http_ratecard_zone_t    *zone;
    ngx_http_ratecard_state_t   *st;
    ratecard_limiter            *limiter;
    ratecard_remote_call        *call;
    ngx_int_t                    closed_status;
    ngx_http_ratecard_conn_t    *conn;
    ngx_http_cleanup_t          *cleanup;
    ngx_event_t                  timer;
    ngx_uint_t                   form;         /* RATECARD_REMOTE_EVALSHA, _EVAL */
    u_char                      *out;
    u_char                      *out_pos;
    u_char                      *out_last;
    size_t                       out_size;
    u_char                      *in;
    size_t                       in_len;
    size_t                       in_size;
    ratecard_decision            decision;
    ngx_http_ratecard_waiter_t  *waiters;
    const char                  *reason;       /* why Redis could not answer */
    ngx_err_t                    err;
    unsigned                     retried:1;    /* a stale kept connection replaced */
    unsigned                     counted:1;    /* the library counted the failure */
    unsigned                     keep:1;       /* the connection is still in step */
};


static ngx_int_t ngx_http_ratecard_redis_command(ngx_http_ratecard_rt_t *rt);
static ngx_int_t ngx_http_ratecard_redis_start(ngx_http_ratecard_rt_t *rt,
    ngx_uint_t fresh);
static ngx_int_t ngx_http_ratecard_redis_send(ngx_http_ratecard_rt_t *rt);
static ngx_int_t ngx_http_ratecard_redis_recv(ngx_http_ratecard_rt_t *rt);
static ngx_int_t ngx_http_ratecard_redis_reply(ngx_http_ratecard_rt_t *rt);
static ngx_int_t ngx_http_ratecard_redis_run(ngx_http_ratecard_rt_t *rt,
    ngx_int_t rc);
static void ngx_http_ratecard_redis_done(ngx_http_ratecard_rt_t *rt,
    ngx_int_t rc);
static void ngx_http_ratecard_redis_resume(ngx_http_ratecard_rt_t *rt);
static void ngx_http_ratecard_redis_write_handler(ngx_event_t *wev);
static void ngx_http_ratecard_redis_read_handler(ngx_event_t *rev);
static void ngx_http_ratecard_redis_timeout(ngx_event_t *ev);
static ngx_int_t ngx_http_ratecard_redis_connected(ngx_http_ratecard_rt_t *rt);
static void ngx_http_ratecard_redis_cleanup(void *data);
static void ngx_http_ratecard_redis_release(ngx_http_ratecard_rt_t *rt,
    ngx_uint_t keep);
static void ngx_http_ratecard_redis_idle_handler(ngx_event_t *rev);
static void ngx_http_ratecard_redis_dummy_handler(ngx_event_t *ev);
static void ngx_http_ratecard_redis_close(ngx_http_ratecard_conn_t *conn);
static ngx_uint_t ngx_http_ratecard_breaker_allows(ngx_http_ratecard_zone_t *z);
static void ngx_http_ratecard_breaker_success(ngx_http_ratecard_zone_t *z,
    ngx_log_t *log);
static void ngx_http_ratecard_breaker_failure(ngx_http_ratecard_zone_t *z);
static void ngx_http_ratecard_redis_unavailable(ngx_http_request_t *r,
    ngx_http_ratecard_zone_t *z, ngx_http_ratecard_state_t *st,
    ratecard_limiter *limiter, ratecard_remote_call *call,
    ngx_int_t closed_status, const char *reason, ngx_err_t err);


static ngx_str_t  ngx_http_ratecard_fail_names[] = {
    ngx_string("closed"),
    ngx_string("open"),
    ngx_string("local")
};


/*
 * Decides r through Redis into st. Returns NGX_OK with st filled (decided
 * at once, or under the policy), NGX_DONE with r suspended until the
 * reply, or NGX_ERROR. error_status answers a library error (0: pass),
 * closed_status a Redis that cannot answer under fail=closed.
 */

ngx_int_t
ngx_http_ratecard_redis_decide(ngx_http_request_t *r,
    ngx_http_ratecard_zone_t *z, ngx_http_ratecard_state_t *st,
    ratecard_limiter *limiter, ratecard_request *req, ngx_int_t error_status,
    ngx_int_t closed_status)
{
    bool                        round_trip;
    uint64_t                    now;
    ngx_int_t                   rc;
    ratecard_status             status;
    ratecard_remote_call       *call;
    ngx_http_ratecard_rt_t     *rt;
    ngx_http_ratecard_redis_t  *rd;

    rd = z->redis;

    call = ngx_palloc(r->pool, sizeof(ratecard_remote_call));
    if (call == NULL) {
        return NGX_ERROR;
    }

    round_trip = 0;
    status = ratecard_now_ns(&now);

    if (status == RATECARD_OK) {
        status = ratecard_remote_prepare(limiter, req, now,
                                         rd->exact ? RATECARD_REMOTE_EXACT : 0,
                                         call, &st->decision, &round_trip);
    }

    if (status != RATECARD_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "ratecard: check in zone \"%V\" failed: %s",
                      &z->name, ratecard_status_str(status));
        st->status = NGX_HTTP_RATECARD_ERROR;
        st->fail_status = error_status;
        return NGX_OK;
    }

    if (!round_trip) {
        ngx_http_ratecard_result(st, limiter);
        return NGX_OK;
    }

    if (!ngx_http_ratecard_breaker_allows(z)) {
        ngx_http_ratecard_redis_unavailable(r, z, st, limiter, call,
                                            closed_status, "circuit open", 0);
        return NGX_OK;
    }

    rt = ngx_pcalloc(r->pool, sizeof(ngx_http_ratecard_rt_t));
    if (rt == NULL) {
        return NGX_ERROR;
    }

    rt->request = r;
    rt->zone = z;
    rt->st = st;
    rt->limiter = limiter;
    rt->call = call;
    rt->closed_status = closed_status;
    rt->form = RATECARD_REMOTE_EVALSHA;

    rc = ngx_http_ratecard_redis_command(rt);
    if (rc != NGX_OK) {
        return rc;
    }

    rt->in_size = NGX_HTTP_RATECARD_REPLY_FIRST;
    rt->in = ngx_pnalloc(r->pool, rt->in_size);
    if (rt->in == NULL) {
        return NGX_ERROR;
    }

    rt->cleanup = ngx_http_cleanup_add(r, 0);
    if (rt->cleanup == NULL) {
        return NGX_ERROR;
    }

    rt->cleanup->handler = ngx_http_ratecard_redis_cleanup;
    rt->cleanup->data = rt;

    rt->timer.handler = ngx_http_ratecard_redis_timeout;
    rt->timer.data = rt;
    rt->timer.log = r->connection->log;
    ngx_add_timer(&rt->timer, rd->timeout);

    st->rt = rt;

    rc = ngx_http_ratecard_redis_run(rt, ngx_http_ratecard_redis_start(rt, 0));

    if (rc == NGX_AGAIN) {
        return ngx_http_ratecard_redis_wait(r, rt);
    }

    /* answered before any event: a refused connection, mostly */
    ngx_http_ratecard_redis_done(rt, rc);

    return NGX_OK;
}


/*
 * Suspends r until rt's decision is in. Returns NGX_DONE (hand it to the
 * phase engine), or NGX_AGAIN when r waits already.
 */

ngx_int_t
ngx_http_ratecard_redis_wait(ngx_http_request_t *r, ngx_http_ratecard_rt_t *rt)
{
    ngx_http_ratecard_waiter_t  *w;

    for (w = rt->waiters; w; w = w->next) {
        if (w->request == r) {
            return NGX_AGAIN;
        }
    }

    w = ngx_palloc(r->pool, sizeof(ngx_http_ratecard_waiter_t));
    if (w == NULL) {
        return NGX_ERROR;
    }

    w->request = r;
    w->read_event_handler = r->read_event_handler;
    w->write_event_handler = r->write_event_handler;
    w->next = rt->waiters;
    rt->waiters = w;

    /* our reference: the request lives until the reply, unless terminated
       (a client that went away), which runs our cleanup */
    r->main->count++;

    if (r == r->main) {
        r->read_event_handler = ngx_http_test_reading;
    }

    r->write_event_handler = ngx_http_request_empty_handler;

    return NGX_DONE;
}


/* The call as a RESP command in the request pool, in rt->form. */

static ngx_int_t
ngx_http_ratecard_redis_command(ngx_http_ratecard_rt_t *rt)
{
    size_t                      need;
    ngx_uint_t                  attempt;
    struct timespec             ts;
    ratecard_status             status;
    ratecard_remote_clock       clock, *cp;
    ngx_http_ratecard_redis_t  *rd;

    rd = rt->zone->redis;
    cp = NULL;

    if (rd->gateway_clock) {
        /* the gateway's wall clock: hosts whose clocks differ by d admit up
           to about d/T more per rule */
        if (clock_gettime(CLOCK_REALTIME, &ts) == -1 || ts.tv_sec < 0) {
            rt->reason = "clock_gettime(CLOCK_REALTIME) failed";
            return NGX_ERROR;
        }

        clock.secs = (uint64_t) ts.tv_sec;
        clock.nanos = (uint32_t) ts.tv_nsec;
        cp = &clock;
    }

    if (rt->out_size == 0) {
        rt->out_size = NGX_HTTP_RATECARD_COMMAND_FIRST;
    }

    status = RATECARD_BUFFER_TOO_SHORT;
    need = 0;

    /* a second attempt gets the length the first one reported */
    for (attempt = 0; attempt < 2 && status == RATECARD_BUFFER_TOO_SHORT;
         attempt++)
    {
        if (rt->out == NULL || need > rt->out_size) {
            rt->out_size = ngx_max(rt->out_size, need);
            rt->out = ngx_pnalloc(rt->request->pool, rt->out_size);
            if (rt->out == NULL) {
                return NGX_ERROR;
            }
        }

        status = ratecard_remote_write_command(rt->limiter, rt->call,
                                               rd->prefix.data, rd->prefix.len,
                                               cp, rt->form, rt->out,
                                               rt->out_size, &need);
    }

    if (status != RATECARD_OK) {
        ngx_log_error(NGX_LOG_ALERT, rt->request->connection->log, 0,
                      "ratecard: writing the Redis command failed: %s",
                      ratecard_status_str(status));
        return NGX_ERROR;
    }

    rt->out_pos = rt->out;
    rt->out_last = rt->out + need;

    return NGX_OK;
}


/*
 * Puts rt on a connection (an idle one unless fresh) and sends. Returns
 * what send does, or NGX_AGAIN while connecting, or NGX_ERROR.
 */

static ngx_int_t
ngx_http_ratecard_redis_start(ngx_http_ratecard_rt_t *rt, ngx_uint_t fresh)
{
    ngx_int_t                   rc;
    ngx_queue_t                *q;
    ngx_connection_t           *c;
    ngx_peer_connection_t       pc;
    ngx_http_ratecard_conn_t   *conn;
    ngx_http_ratecard_redis_t  *rd;

    rd = rt->zone->redis;
    conn = NULL;

    if (!fresh && !ngx_queue_empty(&rd->idle)) {
        /* the most recently used: the least likely to have gone stale */
        q = ngx_queue_head(&rd->idle);
        ngx_queue_remove(q);
        rd->nidle--;

        conn = ngx_queue_data(q, ngx_http_ratecard_conn_t, queue);
        conn->reused = 1;
        conn->connection->idle = 0;
    }

    if (conn == NULL) {
        ngx_memzero(&pc, sizeof(ngx_peer_connection_t));
        pc.sockaddr = rd->addr->sockaddr;
        pc.socklen = rd->addr->socklen;
        pc.name = &rd->server;
        pc.get = ngx_event_get_peer;
        pc.log = &rd->log;
        pc.log_error = NGX_ERROR_INFO;
        pc.tries = 1;

        rc = ngx_event_connect_peer(&pc);

        if (rc != NGX_OK && rc != NGX_AGAIN) {
            rt->reason = "connect() failed";
            rt->err = ngx_socket_errno;
            if (pc.connection) {
                ngx_close_connection(pc.connection);
            }
            return NGX_ERROR;
        }

        conn = ngx_alloc(sizeof(ngx_http_ratecard_conn_t), &rd->log);
        if (conn == NULL) {
            ngx_close_connection(pc.connection);
            rt->reason = "out of memory";
            return NGX_ERROR;
        }

        ngx_memzero(conn, sizeof(ngx_http_ratecard_conn_t));
        conn->connection = pc.connection;
        conn->redis = rd;
        conn->connected = (rc == NGX_OK);
    }

    c = conn->connection;
    c->data = conn;
    c->read->handler = ngx_http_ratecard_redis_read_handler;
    c->write->handler = ngx_http_ratecard_redis_write_handler;

    conn->rt = rt;
    rt->conn = conn;

    if (!conn->connected) {
        return NGX_AGAIN;
    }

    return ngx_http_ratecard_redis_send(rt);
}


/*
 * Sends the rest of the command, then reads what is there. Returns
 * NGX_AGAIN (wait for an event), NGX_OK (decided), NGX_ERROR, or NGX_BUSY
 * (a kept connection went stale: try a new one).
 */

static ngx_int_t
ngx_http_ratecard_redis_send(ngx_http_ratecard_rt_t *rt)
{
    ssize_t            n;
    ngx_connection_t  *c;

    c = rt->conn->connection;

    while (rt->out_pos < rt->out_last) {
        n = c->send(c, rt->out_pos, rt->out_last - rt->out_pos);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                rt->reason = "cannot wait for the connection";
                return NGX_ERROR;
            }

            return NGX_AGAIN;
        }

        if (n == NGX_ERROR) {
            if (rt->conn->reused && !rt->retried) {
                return NGX_BUSY;
            }

            rt->reason = "send() failed";
            rt->err = ngx_socket_errno;
            return NGX_ERROR;
        }

        rt->out_pos += n;
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        rt->reason = "cannot wait for the reply";
        return NGX_ERROR;
    }

    if (!c->read->ready) {
        return NGX_AGAIN;
    }

    return ngx_http_ratecard_redis_recv(rt);
}


/* Reads until the reply is complete; returns as send does. */

static ngx_int_t
ngx_http_ratecard_redis_recv(ngx_http_ratecard_rt_t *rt)
{
    u_char            *p;
    ssize_t            n;
    ngx_int_t          rc;
    ngx_connection_t  *c;

    c = rt->conn->connection;

    for ( ;; ) {

        if (rt->in_len == rt->in_size) {
            if (rt->in_size >= NGX_HTTP_RATECARD_REPLY_MAX) {
                rt->reason = "a reply longer than the script's";
                return NGX_ERROR;
            }

            p = ngx_pnalloc(rt->request->pool, rt->in_size * 2);
            if (p == NULL) {
                rt->reason = "out of memory";
                return NGX_ERROR;
            }

            ngx_memcpy(p, rt->in, rt->in_len);
            rt->in = p;
            rt->in_size *= 2;
        }

        n = c->recv(c, rt->in + rt->in_len, rt->in_size - rt->in_len);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
                rt->reason = "cannot wait for the reply";
                return NGX_ERROR;
            }

            return NGX_AGAIN;
        }

        if (n == 0 || n == NGX_ERROR) {
            if (rt->in_len == 0 && rt->conn->reused && !rt->retried) {
                return NGX_BUSY;
            }

            rt->reason = (n == 0) ? "Redis closed the connection"
                                  : "recv() failed";
            rt->err = (n == 0) ? 0 : ngx_socket_errno;
            return NGX_ERROR;
        }

        rt->in_len += n;

        rc = ngx_http_ratecard_redis_reply(rt);
        if (rc != NGX_AGAIN) {
            return rc;
        }
    }
}


/* What the bytes read so far say; NGX_AGAIN: read more. */

static ngx_int_t
ngx_http_ratecard_redis_reply(ngx_http_ratecard_rt_t *rt)
{
    ngx_int_t              rc;
    ratecard_status        status;
    ratecard_remote_reply  info;

    ngx_memzero(&info, sizeof(ratecard_remote_reply));

    status = ratecard_remote_finish(rt->limiter, rt->call, rt->in, rt->in_len,
                                    &rt->decision, &info);

    switch (status) {

    case RATECARD_OK:
        rt->keep = (info.consumed == rt->in_len);
        return NGX_OK;

    case RATECARD_REMOTE_INCOMPLETE:
        return NGX_AGAIN;

    case RATECARD_REMOTE_SERVER_ERROR:
        rt->counted = 1;

        if (info.error == RATECARD_REDIS_NOSCRIPT
            && rt->form == RATECARD_REMOTE_EVALSHA
            && info.consumed == rt->in_len)
        {
            /* the script cache is empty: the same call once more as EVAL,
               which loads the script, on the same connection */
            rt->form = RATECARD_REMOTE_EVAL;
            rt->in_len = 0;

            rc = ngx_http_ratecard_redis_command(rt);
            if (rc != NGX_OK) {
                return NGX_ERROR;
            }

            return ngx_http_ratecard_redis_send(rt);
        }

        rt->keep = (info.consumed == rt->in_len);

        switch (info.error) {
        case RATECARD_REDIS_NOSCRIPT:
            rt->reason = "NOSCRIPT after EVAL";
            break;
        case RATECARD_REDIS_MOVED:
        case RATECARD_REDIS_ASK:
            rt->reason = "a Cluster redirection (point server= at the "
                         "primary of the slot, or a proxy)";
            break;
        case RATECARD_REDIS_TRY_LATER:
            rt->reason = "busy or loading (TRYAGAIN, LOADING, BUSY)";
            break;
        case RATECARD_REDIS_WRONGTYPE:
            rt->reason = "WRONGTYPE: a key under the prefix holds another type";
            break;
        case RATECARD_REDIS_SCRIPT_ERROR:
            rt->reason = "the script refused a stored state, its arguments "
                         "or the clock";
            break;
        default:
            rt->reason = "an error reply";
            break;
        }

        return NGX_ERROR;

    case RATECARD_REMOTE_BAD_REPLY:
        rt->counted = 1;
        rt->reason = "a reply that is not the script's";
        return NGX_ERROR;

    default:
        rt->reason = ratecard_status_str(status);
        return NGX_ERROR;
    }
}


/* A stale kept connection is replaced once; then rc stands. */

static ngx_int_t
ngx_http_ratecard_redis_run(ngx_http_ratecard_rt_t *rt, ngx_int_t rc)
{
    if (rc != NGX_BUSY) {
        return rc;
    }

    /* Redis closed a kept connection (a restart, its timeout): nothing was
       read, so the call goes again on a new one, within the same deadline */
    rt->retried = 1;
    rt->conn->rt = NULL;
    ngx_http_ratecard_redis_close(rt->conn);
    rt->conn = NULL;
    rt->out_pos = rt->out;
    rt->in_len = 0;

    rc = ngx_http_ratecard_redis_start(rt, 1);

    return (rc == NGX_BUSY) ? NGX_ERROR : rc;
}


/*
 * The end of a round trip: the decision or the policy into st, the
 * connection kept or closed, the waiting requests resumed. rt may be gone
 * after this call.
 */

static void
ngx_http_ratecard_redis_done(ngx_http_ratecard_rt_t *rt, ngx_int_t rc)
{
    uint64_t                    now;
    ngx_http_ratecard_zone_t   *z;
    ngx_http_ratecard_state_t  *st;

    z = rt->zone;
    st = rt->st;

    if (rt->timer.timer_set) {
        ngx_del_timer(&rt->timer);
    }

    rt->cleanup->handler = NULL;
    st->rt = NULL;

    if (rc == NGX_OK) {
        ngx_http_ratecard_redis_release(rt, rt->keep);
        ngx_http_ratecard_breaker_success(z, rt->request->connection->log);

        st->decision = rt->decision;
        ngx_http_ratecard_result(st, rt->limiter);

    } else {
        if (rt->conn) {
            ngx_http_ratecard_redis_release(rt, rt->keep);
        }

        if (!rt->counted && ratecard_now_ns(&now) == RATECARD_OK) {
            (void) ratecard_remote_count(rt->limiter,
                                         RATECARD_REMOTE_EVENT_ERROR, now);
        }

        ngx_http_ratecard_breaker_failure(z);

        ngx_http_ratecard_redis_unavailable(rt->request, z, st, rt->limiter,
                                            rt->call, rt->closed_status,
                                            rt->reason ? rt->reason
                                                       : "failed",
                                            rt->err);
    }

    if (rt->waiters) {
        ngx_http_ratecard_redis_resume(rt);
    }
}


/* Every waiting request runs its phases again; ratecard's handler then
   finds the decision. rt may be gone after this call. */

static void
ngx_http_ratecard_redis_resume(ngx_http_ratecard_rt_t *rt)
{
    ngx_connection_t            *c;
    ngx_http_request_t          *r;
    ngx_http_ratecard_waiter_t  *w;

    c = rt->request->connection;

    for (w = rt->waiters; w; w = w->next) {
        r = w->request;
        r->read_event_handler = w->read_event_handler;
        r->write_event_handler = w->write_event_handler;
        r->main->count--;
        (void) ngx_http_post_request(r, &w->posted);
    }

    rt->waiters = NULL;

    ngx_http_run_posted_requests(c);
}


/* Events of a connection carrying a round trip. */

static void
ngx_http_ratecard_redis_write_handler(ngx_event_t *wev)
{
    ngx_int_t                  rc;
    ngx_connection_t          *c;
    ngx_http_ratecard_rt_t    *rt;
    ngx_http_ratecard_conn_t  *conn;

    c = wev->data;
    conn = c->data;
    rt = conn->rt;

    if (rt == NULL) {
        return;
    }

    if (!conn->connected) {
        rc = ngx_http_ratecard_redis_connected(rt);

    } else if (rt->out_pos < rt->out_last) {
        rc = ngx_http_ratecard_redis_send(rt);

    } else {
        return;  /* sent; the read handler takes the reply */
    }

    rc = ngx_http_ratecard_redis_run(rt, rc);

    if (rc != NGX_AGAIN) {
        ngx_http_ratecard_redis_done(rt, rc);
    }
}


static void
ngx_http_ratecard_redis_read_handler(ngx_event_t *rev)
{
    ngx_int_t                  rc;
    ngx_connection_t          *c;
    ngx_http_ratecard_rt_t    *rt;
    ngx_http_ratecard_conn_t  *conn;

    c = rev->data;
    conn = c->data;
    rt = conn->rt;

    if (rt == NULL) {
        return;
    }

    if (!conn->connected) {
        rc = ngx_http_ratecard_redis_connected(rt);

    } else {
        rc = ngx_http_ratecard_redis_recv(rt);
    }

    rc = ngx_http_ratecard_redis_run(rt, rc);

    if (rc != NGX_AGAIN) {
        ngx_http_ratecard_redis_done(rt, rc);
    }
}


/* A non-blocking connect finished: did it succeed? Then send. */

static ngx_int_t
ngx_http_ratecard_redis_connected(ngx_http_ratecard_rt_t *rt)
{
    int        err;
    socklen_t  len;

    err = 0;
    len = sizeof(int);

    if (getsockopt(rt->conn->connection->fd, SOL_SOCKET, SO_ERROR,
                   (void *) &err, &len)
        == -1)
    {
        err = ngx_socket_errno;
    }

    if (err) {
        rt->reason = "connect() failed";
        rt->err = err;
        return NGX_ERROR;
    }

    rt->conn->connected = 1;

    return ngx_http_ratecard_redis_send(rt);
}


static void
ngx_http_ratecard_redis_timeout(ngx_event_t *ev)
{
    ngx_http_ratecard_rt_t  *rt = ev->data;

    rt->reason = "timed out";
    rt->err = 0;
    rt->keep = 0;  /* a reply may still come: the connection is out of step */

    ngx_http_ratecard_redis_done(rt, NGX_ERROR);
}


/* The request went away (terminated, a client that closed) mid-call. */

static void
ngx_http_ratecard_redis_cleanup(void *data)
{
    ngx_http_ratecard_rt_t  *rt = data;

    if (rt->timer.timer_set) {
        ngx_del_timer(&rt->timer);
    }

    if (rt->conn) {
        rt->conn->rt = NULL;
        ngx_http_ratecard_redis_close(rt->conn);
        rt->conn = NULL;
    }

    rt->st->rt = NULL;
    rt->waiters = NULL;
}


/* The round trip's connection: kept for the next one, or closed. */

static void
ngx_http_ratecard_redis_release(ngx_http_ratecard_rt_t *rt, ngx_uint_t keep)
{
    ngx_connection_t           *c;
    ngx_http_ratecard_conn_t   *conn;
    ngx_http_ratecard_redis_t  *rd;

    conn = rt->conn;
    rt->conn = NULL;
    conn->rt = NULL;

    c = conn->connection;
    rd = conn->redis;

    if (!keep
        || rd->nidle >= rd->keepalive
        || ngx_terminate
        || ngx_exiting
        || c->read->eof
        || c->read->error
        || c->write->error
        || ngx_handle_read_event(c->read, 0) != NGX_OK)
    {
        ngx_http_ratecard_redis_close(conn);
        return;
    }

    ngx_queue_insert_head(&rd->idle, &conn->queue);
    rd->nidle++;

    /* idle: nginx closes it on a graceful shutdown (ngx_close_idle_connections) */
    c->idle = 1;
    c->read->handler = ngx_http_ratecard_redis_idle_handler;
    c->write->handler = ngx_http_ratecard_redis_dummy_handler;

    if (c->read->ready) {
        ngx_http_ratecard_redis_idle_handler(c->read);
    }
}


/* An idle connection that becomes readable was closed by Redis, or speaks
   out of turn: either way it is done. */

static void
ngx_http_ratecard_redis_idle_handler(ngx_event_t *rev)
{
    int                        n;
    char                       buf[1];
    ngx_connection_t          *c;
    ngx_http_ratecard_conn_t  *conn;

    c = rev->data;
    conn = c->data;

    if (!c->close) {
        n = recv(c->fd, buf, 1, MSG_PEEK);

        if (n == -1 && ngx_socket_errno == NGX_EAGAIN) {
            rev->ready = 0;

            if (ngx_handle_read_event(rev, 0) == NGX_OK) {
                return;
            }
        }
    }

    ngx_queue_remove(&conn->queue);
    conn->redis->nidle--;

    ngx_http_ratecard_redis_close(conn);
}


static void
ngx_http_ratecard_redis_dummy_handler(ngx_event_t *ev)
{
}


static void
ngx_http_ratecard_redis_close(ngx_http_ratecard_conn_t *conn)
{
    ngx_close_connection(conn->connection);
    ngx_free(conn);
}


/*
 * The circuit breaker, in the zone: after max_fails consecutive failures
 * no call is made for fail_timeout; then the first request to come probes,
 * and the next ones wait another interval unless it succeeds.
 */

static ngx_uint_t
ngx_http_ratecard_breaker_allows(ngx_http_ratecard_zone_t *z)
{
    ngx_msec_t                  now;
    ngx_atomic_uint_t           until;
    ngx_http_ratecard_redis_t  *rd;

    rd = z->redis;

    if (rd->max_fails == 0 || (ngx_uint_t) z->sh->fails < rd->max_fails) {
        return 1;
    }

    now = ngx_current_msec;
    until = z->sh->open_until;

    if ((ngx_msec_int_t) (now - (ngx_msec_t) until) < 0) {
        return 0;
    }

    return ngx_atomic_cmp_set(&z->sh->open_until, until,
                              (ngx_atomic_uint_t) (now + rd->fail_timeout));
}


static void
ngx_http_ratecard_breaker_success(ngx_http_ratecard_zone_t *z, ngx_log_t *log)
{
    ngx_atomic_uint_t           fails;
    ngx_http_ratecard_redis_t  *rd;

    rd = z->redis;
    fails = z->sh->fails;

    if (fails == 0 || !ngx_atomic_cmp_set(&z->sh->fails, fails, 0)) {
        return;
    }

    if (rd->max_fails && fails >= rd->max_fails) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "ratecard: Redis %V answers again for zone \"%V\"",
                      &rd->server, &z->name);
    }
}


static void
ngx_http_ratecard_breaker_failure(ngx_http_ratecard_zone_t *z)
{
    ngx_atomic_uint_t           fails;
    ngx_http_ratecard_redis_t  *rd;

    rd = z->redis;
    fails = ngx_atomic_fetch_add(&z->sh->fails, 1) + 1;

    if (rd->max_fails && fails == rd->max_fails) {
        z->sh->open_until = (ngx_atomic_uint_t)
                            (ngx_current_msec + rd->fail_timeout);
    }
}


/*
 * Redis could not answer r: fail= decides into st. The policy's use is
 * logged at most once per fail_timeout for the host, with the number of
 * requests it answered since the last line.
 */

static void
ngx_http_ratecard_redis_unavailable(ngx_http_request_t *r,
    ngx_http_ratecard_zone_t *z, ngx_http_ratecard_state_t *st,
    ratecard_limiter *limiter, ratecard_remote_call *call,
    ngx_int_t closed_status, const char *reason, ngx_err_t err)
{
    uint64_t                    now;
    ngx_msec_t                  msec;
    ratecard_status             status;
    ngx_atomic_uint_t           next, n;
    ratecard_decision           d;
    ngx_http_ratecard_redis_t  *rd;

    rd = z->redis;

    if (rd->fail == NGX_HTTP_RATECARD_REDIS_LOCAL) {
        status = ratecard_remote_fallback(limiter, call, &d);

        if (status == RATECARD_OK) {
            st->decision = d;
            ngx_http_ratecard_result(st, limiter);

        } else {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "ratecard: the local table of zone \"%V\" failed: "
                          "%s", &z->name, ratecard_status_str(status));
            st->status = NGX_HTTP_RATECARD_ERROR;
            st->fail_status = closed_status;
        }

    } else {
        if (ratecard_now_ns(&now) == RATECARD_OK) {
            (void) ratecard_remote_count(limiter,
                                         RATECARD_REMOTE_EVENT_FALLBACK, now);
        }

        st->status = NGX_HTTP_RATECARD_ERROR;
        st->fail_status = (rd->fail == NGX_HTTP_RATECARD_REDIS_OPEN)
                          ? 0 : closed_status;
    }

    (void) ngx_atomic_fetch_add(&z->sh->answered, 1);

    msec = ngx_current_msec;
    next = z->sh->log_next;

    if ((ngx_msec_int_t) (msec - (ngx_msec_t) next) < 0
        || !ngx_atomic_cmp_set(&z->sh->log_next, next,
                               (ngx_atomic_uint_t) (msec + rd->fail_timeout)))
    {
        return;
    }

    do {
        n = z->sh->answered;
    } while (!ngx_atomic_cmp_set(&z->sh->answered, n, 0));

    ngx_log_error(NGX_LOG_ERR, r->connection->log, err,
                  "ratecard: Redis %V unavailable for zone \"%V\", fail=%V "
                  "answered %uA request%s since the last report: %s",
                  &rd->server, &z->name, &ngx_http_ratecard_fail_names[rd->fail],
                  n, n == 1 ? "" : "s", reason);
}


/* This worker's side: no idle connection yet; a log of its own. */

void
ngx_http_ratecard_redis_init_process(ngx_cycle_t *cycle,
    ngx_http_ratecard_redis_t *rd)
{
    ngx_queue_init(&rd->idle);
    rd->nidle = 0;

    /* nginx logs a refused connect() per attempt; this module reports the
       policy's use once per fail_timeout instead (with the cause) */
    rd->log = *cycle->log;
    if (rd->log.log_level > NGX_LOG_CRIT) {
        rd->log.log_level = NGX_LOG_CRIT;
    }
}


/* ratecard_redis's parameters into rd (the zone is linked at the end). */

char *
ngx_http_ratecard_redis_parse(ngx_conf_t *cf, ngx_http_ratecard_redis_t *rd)
{
    ngx_int_t    n;
    ngx_str_t   *value, s;
    ngx_url_t    u;
    ngx_uint_t   i;
    ngx_msec_t   t;

    value = cf->args->elts;

    rd->timeout = 200;
    rd->keepalive = 8;
    ngx_str_set(&rd->prefix, "rc:");
    rd->fail = NGX_HTTP_RATECARD_REDIS_CLOSED;
    rd->max_fails = 3;
    rd->fail_timeout = 10000;
    rd->file = cf->conf_file->file.name;
    rd->line = cf->conf_file->line;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {
            rd->zone_name.data = value[i].data + 5;
            rd->zone_name.len = value[i].len - 5;
            continue;
        }

        if (ngx_strncmp(value[i].data, "server=", 7) == 0) {
            ngx_memzero(&u, sizeof(ngx_url_t));
            u.url.data = value[i].data + 7;
            u.url.len = value[i].len - 7;
            u.default_port = NGX_HTTP_RATECARD_REDIS_PORT;

            if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid Redis server \"%V\": %s",
                                   &u.url, u.err ? u.err : "no address");
                return NGX_CONF_ERROR;
            }

            rd->addr = &u.addrs[0];
            rd->server = u.url;
            continue;
        }

        if (ngx_strncmp(value[i].data, "timeout=", 8) == 0
            || ngx_strncmp(value[i].data, "fail_timeout=", 13) == 0)
        {
            s.data = (u_char *) ngx_strchr(value[i].data, '=') + 1;
            s.len = value[i].data + value[i].len - s.data;

            t = ngx_parse_time(&s, 0);
            if (t == (ngx_msec_t) NGX_ERROR || t == 0) {
                goto invalid;
            }

            if (value[i].data[0] == 't') {
                rd->timeout = t;
            } else {
                rd->fail_timeout = t;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "keepalive=", 10) == 0
            || ngx_strncmp(value[i].data, "max_fails=", 10) == 0)
        {
            n = ngx_atoi(value[i].data + 10, value[i].len - 10);
            if (n == NGX_ERROR || n > 65535) {
                goto invalid;
            }

            if (value[i].data[0] == 'k') {
                rd->keepalive = n;
            } else {
                rd->max_fails = n;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "prefix=", 7) == 0) {
            rd->prefix.data = value[i].data + 7;
            rd->prefix.len = value[i].len - 7;

            /* braces would move the Cluster hash tag the library writes */
            if (rd->prefix.len > NGX_HTTP_RATECARD_PREFIX_MAX
                || ngx_strlchr(rd->prefix.data,
                               rd->prefix.data + rd->prefix.len, '{')
                || ngx_strlchr(rd->prefix.data,
                               rd->prefix.data + rd->prefix.len, '}'))
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid parameter \"%V\": at most %d "
                                   "bytes, no \"{\" or \"}\"", &value[i],
                                   NGX_HTTP_RATECARD_PREFIX_MAX);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strcmp(value[i].data, "clock=server") == 0) {
            rd->gateway_clock = 0;
            continue;
        }

        if (ngx_strcmp(value[i].data, "clock=gateway") == 0) {
            rd->gateway_clock = 1;
            continue;
        }

        if (ngx_strcmp(value[i].data, "fail=closed") == 0) {
            rd->fail = NGX_HTTP_RATECARD_REDIS_CLOSED;
            continue;
        }

        if (ngx_strcmp(value[i].data, "fail=open") == 0) {
            rd->fail = NGX_HTTP_RATECARD_REDIS_OPEN;
            continue;
        }

        if (ngx_strcmp(value[i].data, "fail=local") == 0) {
            rd->fail = NGX_HTTP_RATECARD_REDIS_LOCAL;
            continue;
        }

        if (ngx_strcmp(value[i].data, "exact") == 0) {
            rd->exact = 1;
            continue;
        }

        goto invalid;
    }

    if (rd->zone_name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ratecard_redis\" must have \"zone\" parameter");
        return NGX_CONF_ERROR;
    }

    if (rd->addr == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ratecard_redis\" must have \"server\" parameter");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);
    return NGX_CONF_ERROR;
}
