/*
 * What libratecard itself decides, for test.py to hold nginx against: the
 * suite's expectations come from the library, not from a copy of Clerk's
 * table. Built by test.sh against the same libratecard.a as the module.
 *
 *   expect rules      one line per rule of the built-in table:
 *                     name exempt limit burst interval_ns policy
 *   expect requests   reads "api<TAB>method<TAB>path<TAB>key" lines (api
 *                     frontend|backend, key may be empty; the client IP is
 *                     192.0.2.1) and answers each, for a fresh subject:
 *                     rule exempt limit burst interval_ns policy ratelimit
 *                     retry_after denied_ratelimit
 *   expect script     the SHA-1 of the Redis charge script (EVALSHA's name)
 *
 * Fields are tab-separated; "-" stands for none. "burst" is how many
 * requests a fresh subject is allowed back to back, counted by checking at
 * one instant; interval_ns is the emission interval (the reset after one).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ratecard.h>

#define NOW_NS     ((uint64_t) 1000 * 1000000000)  /* any fixed instant */
#define MAX_BURST  100000                           /* bounds the count */


static ratecard_limiter *
limiter_new(void)
{
    ratecard_config    cfg;
    ratecard_limiter  *l;

    ratecard_config_default(&cfg);
    cfg.capacity = 1024;

    if (ratecard_limiter_new(&cfg, &l) != RATECARD_OK) {
        fprintf(stderr, "expect: ratecard_limiter_new failed\n");
        exit(1);
    }

    return l;
}


/* A header value as text, or "-" when the library writes none. */
static const char *
field(ratecard_status rc, char *buf, size_t len)
{
    if (rc != RATECARD_OK) {
        fprintf(stderr, "expect: a writer failed: %s\n", ratecard_status_str(rc));
        exit(1);
    }

    if (len == 0) {
        return "-";
    }

    buf[len] = '\0';
    return buf;
}


static const char *
policy_of(ratecard_limiter *l, const ratecard_decision *d, char *buf,
    size_t size)
{
    size_t           len = 0;
    ratecard_status  rc;

    rc = ratecard_write_ratelimit_policy(l, d, (uint8_t *) buf, size - 1, &len);
    return field(rc, buf, len);
}


static const char *
ratelimit_of(ratecard_limiter *l, const ratecard_decision *d, char *buf,
    size_t size)
{
    size_t           len = 0;
    ratecard_status  rc;

    rc = ratecard_write_ratelimit(l, d, (uint8_t *) buf, size - 1, &len);
    return field(rc, buf, len);
}


static const char *
retry_after_of(const ratecard_decision *d, char *buf, size_t size)
{
    size_t           len = 0;
    ratecard_status  rc;

    rc = ratecard_write_retry_after(d, (uint8_t *) buf, size - 1, &len);
    return field(rc, buf, len);
}


static void
rules(void)
{
    char                policy[512];
    uint32_t            i, n, burst;
    ratecard_limiter   *l;
    ratecard_decision   d, first;

    l = limiter_new();

    if (ratecard_rule_count(l, &n) != RATECARD_OK) {
        exit(1);
    }

    for (i = 0; i < n; i++) {
        burst = 0;

        do {
            if (ratecard_check_key(l, i, (const uint8_t *) "k", 1, 1, NOW_NS, &d)
                != RATECARD_OK)
            {
                exit(1);
            }

            if (burst == 0) {
                first = d;
            }
        } while (d.allowed && !d.exempt && ++burst < MAX_BURST);

        printf("%s\t%d\t%u\t%u\t%llu\t%s\n", ratecard_rule_name(l, i),
               first.exempt, first.limit, burst,
               (unsigned long long) first.reset_ns,
               policy_of(l, &first, policy, sizeof(policy)));
    }

    ratecard_limiter_free(l);
}


static void
request(char *line)
{
    char                policy[512], rl[256], denied_rl[256], ra[32];
    char               *api, *method, *path, *key;
    uint32_t            burst;
    const char         *rule;
    ratecard_request    req;
    ratecard_limiter   *l;
    ratecard_decision   d, first;
    static uint8_t      ip[4] = { 192, 0, 2, 1 };

    api = strtok(line, "\t\n");
    method = strtok(NULL, "\t\n");
    path = strtok(NULL, "\t\n");
    key = strtok(NULL, "\t\n");

    if (api == NULL || method == NULL || path == NULL) {
        fprintf(stderr, "expect: want api, method, path[, key]\n");
        exit(1);
    }

    memset(&req, 0, sizeof(req));
    req.api = strcmp(api, "backend") == 0 ? RATECARD_API_BACKEND
                                           : RATECARD_API_FRONTEND;
    req.method = (const uint8_t *) method;
    req.method_len = strlen(method);
    req.path = (const uint8_t *) path;
    req.path_len = strlen(path);
    req.client_ip = ip;
    req.client_ip_len = sizeof(ip);

    if (key != NULL) {
        req.secret_key = (const uint8_t *) key;
        req.secret_key_len = strlen(key);
    }

    /* a fresh limiter per request: its subject starts with a full burst */
    l = limiter_new();
    burst = 0;

    do {
        if (ratecard_check(l, &req, NOW_NS, &d) != RATECARD_OK) {
            fprintf(stderr, "expect: ratecard_check failed\n");
            exit(1);
        }

        if (burst == 0) {
            first = d;
        }
    } while (d.allowed && !d.exempt && d.rule != RATECARD_NO_RULE
             && ++burst < MAX_BURST);

    rule = ratecard_rule_name(l, first.rule);

    printf("%s\t%d\t%u\t%u\t%llu\t", rule ? rule : "-", first.exempt,
           first.limit, burst, (unsigned long long) first.reset_ns);
    printf("%s\t", policy_of(l, &first, policy, sizeof(policy)));
    printf("%s\t", ratelimit_of(l, &first, rl, sizeof(rl)));
    printf("%s\t", retry_after_of(&d, ra, sizeof(ra)));
    printf("%s\n", d.allowed ? "-" : ratelimit_of(l, &d, denied_rl,
                                                   sizeof(denied_rl)));

    ratecard_limiter_free(l);
}


int
main(int argc, char **argv)
{
    char    line[65536];
    size_t  len;

    if (argc == 2 && strcmp(argv[1], "rules") == 0) {
        rules();
        return 0;
    }

    if (argc == 2 && strcmp(argv[1], "requests") == 0) {
        while (fgets(line, sizeof(line), stdin) != NULL) {
            len = strlen(line);
            if (len == 0 || line[len - 1] != '\n') {
                fprintf(stderr, "expect: a line longer than %zu bytes or "
                        "without a newline\n", sizeof(line) - 1);
                return 1;
            }
            request(line);
            fflush(stdout);
        }
        return 0;
    }

    if (argc == 2 && strcmp(argv[1], "script") == 0) {
        printf("%s\n", ratecard_remote_script_sha1());
        return 0;
    }

    fprintf(stderr, "usage: expect rules | expect requests < lines | expect script\n");
    return 2;
}
