#!/usr/bin/env python3
"""End-to-end test of ngx_http_ratecard_module in Debian's nginx.

Starts nginx (2 workers, reuseport, loopback only) in a temporary prefix in
front of a small upstream, drives it over new connections, and checks:
every rule's burst, the 429 answer (status, Retry-After, RateLimit-Policy,
RateLimit, Clerk's JSON body), a rejection through error_page, state shared
by both workers, a reload that keeps state, internal redirects (try_files,
error_page) counted once, dry run, the fail policy, tenants, the metrics
page (Prometheus' format, checked by promtool), configuration errors, and
hostile input (8 KB paths, garbage Authorization, path spellings, IPv6 on
[::1]). test_redis.py tests the Redis mode.

Expectations come from the library: `expect` (expect.c, built by test.sh on
the same libratecard.a) answers each request shape for a fresh subject, and
nginx must give the same rule, burst, policy and fields. Only two rows of
Clerk's published table are typed here, to check the library against.

Usage: test.py MODULE_SO TMPDIR EXPECT. Prints "N passed, M failed"; exits 1
on a failure.
"""

import json
import math
import os
import signal
import re
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nginx_harness import Nginx, free_port, has_ipv6, request  # noqa: E402
from checks import (CLERK_429, CLERK_PUBLISHED, FAILED, PASSED, Library,  # noqa: E402
                    check, check_429, check_burst, check_countdown, check_promtool,
                    concurrent,
                    denial_fields, first_denied, fresh_ip, fresh_key, sequential,
                    workers_seen)

ERROR_PAGE = b"<p>slow down</p>\n"
PORTS = {}
LIB = None


def sign_in():
    return LIB.expect("frontend", "POST", "/v1/client/sign_ins")


def sign_up():
    return LIB.expect("frontend", "POST", "/v1/client/sign_ups")


# --- configuration -----------------------------------------------------------

def config(module, tmp):
    v6 = has_ipv6()

    def listen(port, reuse=True):
        opt = " reuseport" if reuse else ""
        s = f"        listen 127.0.0.1:{port}{opt};\n"
        if v6:
            s += f"        listen [::1]:{port}{opt};\n"
        return s

    user = "user root;\n" if os.geteuid() == 0 else ""
    up = PORTS["up"]
    headers = """
        add_header X-Worker $pid always;
        add_header X-Ratecard $ratecard_status always;
        add_header X-Ratecard-Rule $ratecard_rule always;
        add_header X-Ratecard-Remaining $ratecard_remaining always;
"""
    realip = """
            set_real_ip_from 127.0.0.1;
            set_real_ip_from ::1;
            real_ip_header X-Real-IP;
"""
    return f"""
load_module {module};
{user}worker_processes 2;
error_log {tmp}/error.log info;

events {{
    worker_connections 1024;
}}

http {{
    access_log off;
    default_type text/plain;
    client_body_temp_path {tmp}/temp/body;
    proxy_temp_path {tmp}/temp/proxy;
    fastcgi_temp_path {tmp}/temp/fastcgi;
    uwsgi_temp_path {tmp}/temp/uwsgi;
    scgi_temp_path {tmp}/temp/scgi;
    large_client_header_buffers 4 32k;
    proxy_http_version 1.1;
    proxy_set_header Connection "";

    ratecard_zone zone=clerk:16m;

    # the upstream: 200 with a body, 404 under /missing/
    server {{
        listen 127.0.0.1:{up};
        location / {{
            return 200 "upstream $request_method $request_uri\\n";
        }}
        location /missing/ {{
            return 404;
        }}
    }}

    # Frontend API: keyed by client IP (X-Real-IP via realip, in the location)
    server {{
{listen(PORTS["fapi"])}{headers}
        location / {{
            ratecard zone=clerk api=frontend;
{realip}
            proxy_pass http://127.0.0.1:{up};
        }}
        location = /metrics {{
            ratecard_metrics;
        }}
        location /status503/ {{
            ratecard zone=clerk api=frontend;
            ratecard_status 503;
            ratecard_path /v1/client/sign_ins;
{realip}
            proxy_pass http://127.0.0.1:{up};
        }}
        location /dryparam/ {{
            ratecard zone=clerk api=frontend dry_run;
            ratecard_path /v1/client/sign_ins;
{realip}
            proxy_pass http://127.0.0.1:{up};
        }}
        # subrequests: auth_request's /authz decides when the main location
        # has no ratecard; when both have it, the main request decides once
        location /both/ {{
            ratecard zone=clerk api=frontend;
            ratecard_path /v1/client/sign_ups;
{realip}
            auth_request /authz;
            proxy_pass http://127.0.0.1:{up};
        }}
        location /onlysub/ {{
{realip}
            auth_request /authz;
            proxy_pass http://127.0.0.1:{up};
        }}
        location = /authz {{
            internal;
            ratecard zone=clerk api=frontend;
            ratecard_path /v1/client/sign_ups;
            proxy_pass http://127.0.0.1:{up}/;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }}
        location /noheaders/ {{
            ratecard zone=clerk api=frontend;
            ratecard_headers off;
            ratecard_path /v1/client/sign_ins;
{realip}
            proxy_pass http://127.0.0.1:{up};
        }}
        location /tenant/ {{
            ratecard zone=clerk api=frontend;
            ratecard_tenant $http_x_tenant;
            ratecard_path /v1/client/sign_ins;
            proxy_pass http://127.0.0.1:{up};
        }}
    }}

    # Backend API: keyed by secret key (Authorization)
    server {{
{listen(PORTS["bapi"])}{headers}
        location / {{
            ratecard zone=clerk api=backend;
            proxy_pass http://127.0.0.1:{up};
        }}
    }}

    # internal redirects: each request passes two ratecard locations
    server {{
{listen(PORTS["redir"])}{headers}
{realip}
        ratecard zone=clerk api=frontend;
        root {tmp}/html;

        location /v1/client/sign_ins {{
            try_files /nonexistent @up;
        }}
        location /v1/client/sign_ups {{
            proxy_pass http://127.0.0.1:{up}/missing/;
            proxy_intercept_errors on;
            error_page 404 = @up;
        }}
        location @up {{
            proxy_pass http://127.0.0.1:{up};
        }}
    }}

    # rejections through error_page; the page's location has ratecard too
    server {{
{listen(PORTS["errpage"])}{headers}
{realip}
        ratecard zone=clerk api=frontend;
        root {tmp}/html;
        error_page 429 /limited.html;

        location / {{
            proxy_pass http://127.0.0.1:{up};
        }}
        location = /limited.html {{
            internal;
        }}
        # error_page here covers another status only: Clerk's JSON body
        location /other/ {{
            ratecard_path /v1/client/sign_ins;
            error_page 404 /limited.html;
            proxy_pass http://127.0.0.1:{up};
        }}
    }}

    # dry run on the same zone
    server {{
{listen(PORTS["dry"])}{headers}
        ratecard_log_level warn;
        location / {{
            ratecard zone=clerk api=frontend;
            ratecard_dry_run on;
{realip}
            proxy_pass http://127.0.0.1:{up};
        }}
    }}

    # library errors: the client address comes from X-Client
    server {{
{listen(PORTS["fail"])}{headers}
        ratecard zone=clerk api=frontend;
        ratecard_client_ip $http_x_client;
        ratecard_path /v1/client/sign_ups;

        location /closed/ {{
            proxy_pass http://127.0.0.1:{up};
        }}
        location /closed500/ {{
            ratecard_fail closed 500;
            proxy_pass http://127.0.0.1:{up};
        }}
        location /open/ {{
            ratecard_fail open;
            proxy_pass http://127.0.0.1:{up};
        }}
    }}
}}
"""


# --- the tests -------------------------------------------------------------------

def test_library(ctx):
    rules = LIB.rules()
    ctx["rules"] = rules
    for api, method, path, key, rule, q, w in CLERK_PUBLISHED:
        exp = LIB.expect(api, method, path, key)
        check(f"the library's table has Clerk's published row: {method} {path} is "
              f"{rule}, {q} per {w} s, all at once",
              exp.rule == rule and exp.limit == q and exp.burst == q and exp.window == w
              and rules.get(rule) is not None and rules[rule].limit == q,
              f"{exp!r} window {exp.window}")


FRONTEND_SHAPES = [
    # method, paths (cycled: they must share one rule)
    ("POST", ["/v1/client/sign_ins"]),
    ("POST", ["/v1/sign_ins"]),
    ("POST", ["/v1/client/sign_ups"]),
    ("POST", ["/v1/client/sign_ins/sia_1/attempt_first_factor",
              "/v1/client/sign_ins/sia_1/attempt_second_factor"]),
    ("POST", ["/v1/client/sign_ups/sua_1/attempt_verification"]),
]


def test_frontend_rows(ctx):
    seen = set()
    for method, paths in FRONTEND_SHAPES:
        exps = [LIB.expect("frontend", method, p) for p in paths]
        exp = exps[0]
        label = f"{exp.rule} {' + '.join(paths)}"
        ctx["driven"].add(exp.rule)
        if not check(f"{label}: the library binds one limited rule to every path",
                     exp.rule and exp.burst > 0 and {e.rule for e in exps} == {exp.rule},
                     f"{exps}"):
            continue
        ip = fresh_ip()
        n = 4 * exp.burst
        t0 = time.monotonic()
        responses = []
        for i in range(n):
            r = request(PORTS["fapi"], method, paths[i % len(paths)], {"X-Real-IP": ip})
            r.at = time.monotonic() - t0
            responses.append(r)
        seconds = time.monotonic() - t0
        seen |= workers_seen(responses)
        check_burst(f"{label}: {n} on new connections", responses, seconds, exp)
        allowed = [r for r in responses if r.status == 200]
        if allowed:
            first = allowed[0]
            check(f"{exp.rule}: the first response reaches the upstream with the "
                  f"library's RateLimit {exp.ratelimit} and RateLimit-Policy",
                  first.body.startswith(b"upstream " + method.encode())
                  and first.header("RateLimit") == exp.ratelimit
                  and first.header("RateLimit-Policy") == exp.policy,
                  f"body {first.body[:60]!r} RateLimit {first.header('RateLimit')!r} "
                  f"policy {first.header('RateLimit-Policy')!r}")
        check_countdown(f"{exp.rule} across workers", responses, exp)
        denied = first_denied(responses)
        if denied:
            check_429(exp.rule, denied, exp)
    check("requests were served by both workers (state shared in the zone)",
          len(seen) >= 2, f"workers {seen}")


BACKEND_SHAPES = [
    # method, path, key prefix
    ("GET", "/v1/users/me", "sk_live_"),
    ("GET", "/v1/users/me", "sk_test_"),
    ("POST", "/v1/invitations", "sk_live_"),
    ("POST", "/v1/invitations/bulk", "sk_live_"),
    ("POST", "/v1/organizations/org_1/invitations", "sk_live_"),
    ("POST", "/v1/organizations/org_1/invitations/bulk", "sk_live_"),
    ("PATCH", "/v1/users/user_1", "sk_live_"),
    ("PATCH", "/v1/organizations/org_1", "sk_live_"),
    ("PATCH", "/v1/organizations/org_1/memberships/user_1", "sk_live_"),
]


def test_backend_rows(ctx):
    for method, path, prefix in BACKEND_SHAPES:
        key = fresh_key(prefix)
        exp = LIB.expect("backend", method, path, key)
        ctx["driven"].add(exp.rule)
        hdrs = {"Authorization": key}
        n = exp.burst + 15 + exp.burst // 7
        if n > 100:
            responses, seconds = concurrent(PORTS["bapi"], method, path, n, hdrs)
        else:
            responses, seconds = sequential(PORTS["bapi"], method, path, n, hdrs)
        check_burst(f"{exp.rule} {method} {path}: {n} requests", responses, seconds, exp)
        denied = first_denied(responses)
        if denied:
            check_429(exp.rule, denied, exp)
            check(f"{exp.rule}: binding rule named in $ratecard_rule",
                  denied.header("X-Ratecard-Rule") == exp.rule,
                  f"got {denied.header('X-Ratecard-Rule')!r}")
        allowed = [r for r in responses if r.status == 200]
        pol = allowed[0].header("RateLimit-Policy") if allowed else None
        check(f"{exp.rule}: RateLimit-Policy is the library's ({exp.policy})",
              pol == exp.policy, f"policy {pol!r}")

    # users.update: one limit for PATCH user and PUT/PATCH metadata, per user
    key = fresh_key()
    hdrs = {"Authorization": key}
    user = LIB.expect("backend", "PATCH", "/v1/users/user_9", key)
    meta = LIB.expect("backend", "PUT", "/v1/users/user_9/metadata", key)
    half = user.burst // 2
    rs = [request(PORTS["bapi"], "PATCH", "/v1/users/user_9", hdrs) for _ in range(half)]
    rs += [request(PORTS["bapi"], "PUT", "/v1/users/user_9/metadata", hdrs)
           for _ in range(user.burst - half)]
    rs += [request(PORTS["bapi"], "PATCH", "/v1/users/user_9/metadata", hdrs)]
    other = request(PORTS["bapi"], "PATCH", "/v1/users/user_10", hdrs)
    check(f"{user.rule}: PATCH user and PUT/PATCH metadata share {user.burst}; "
          "another user is apart",
          meta.rule == user.rule
          and [r.status for r in rs] == [200] * user.burst + [429] and other.status == 200,
          f"{[r.status for r in rs]} other {other.status} ({meta!r})")

    # jwks: exempt, even for a key that has spent its instance limit
    key = fresh_key("sk_test_")
    hdrs = {"Authorization": key}
    jwks_exp = LIB.expect("backend", "GET", "/v1/jwks", key)
    ctx["driven"].add(jwks_exp.rule)
    instance = LIB.expect("backend", "GET", "/v1/users/me", key)
    spent, _ = concurrent(PORTS["bapi"], "GET", "/v1/users/me", instance.burst + 30, hdrs)
    jwks = [request(PORTS["bapi"], "GET", "/v1/jwks", hdrs) for _ in range(20)]
    check(f"{jwks_exp.rule}: exempt (200, no RateLimit fields, $ratecard_status EXEMPT) "
          "for a key past its instance limit",
          jwks_exp.exempt and 429 in [r.status for r in spent]
          and all(r.status == 200 and r.header("RateLimit") is None
                  and r.header("RateLimit-Policy") is None
                  and r.header("X-Ratecard") == "EXEMPT" for r in jwks),
          f"{[(r.status, r.header('RateLimit'), r.header('X-Ratecard')) for r in jwks[:3]]}")

    # a key with an unknown prefix
    key = "Bearer xx_unknown_1"
    exp = LIB.expect("backend", "GET", "/v1/users/me", key)
    r = request(PORTS["bapi"], "GET", "/v1/users/me", {"Authorization": key})
    check(f"a key with an unknown prefix gets the library's row ({exp.rule})",
          r.status == 200 and r.header("X-Ratecard-Rule") == exp.rule,
          f"{r.status} {r.header('X-Ratecard-Rule')!r}")

    # a path matching no rule on the Frontend: passed, no fields
    exp = LIB.expect("frontend", "GET", "/v1/environment")
    r = request(PORTS["fapi"], "GET", "/v1/environment", {"X-Real-IP": fresh_ip()})
    check("an unmatched request passes with no RateLimit fields ($ratecard_status UNMATCHED)",
          exp.rule is None and r.status == 200 and r.header("RateLimit") is None
          and r.header("X-Ratecard") == "UNMATCHED",
          f"{r.status} {r.header('RateLimit')!r} {r.header('X-Ratecard')!r}")

    check("every rule of the library's table was driven through nginx",
          set(ctx["rules"]) <= ctx["driven"],
          f"not driven: {sorted(set(ctx['rules']) - ctx['driven'])}")


def test_redirects(ctx):
    for label, path, exp in (("try_files -> @up", "/v1/client/sign_ins", sign_in()),
                             ("upstream 404 -> error_page -> @up", "/v1/client/sign_ups",
                              sign_up())):
        ip = fresh_ip()
        n = 4 * exp.burst
        responses, seconds = sequential(PORTS["redir"], "POST", path, n, {"X-Real-IP": ip})
        check_burst(f"internal redirect ({label}) counts once: {n} requests",
                    responses, seconds, exp)
        allowed = [r for r in responses if r.status == 200]
        check(f"internal redirect ({label}): passed ones reached the upstream "
              f"through the redirect",
              allowed and all(r.body.startswith(b"upstream POST " + path.encode())
                              for r in allowed),
              f"{[r.body[:40] for r in allowed[:2]]}")
        check_countdown(f"internal redirect ({label}), one charge each", responses, exp)
        denied = first_denied(responses)
        if denied:
            check_429(f"internal redirect ({label}), error_page for 404 only", denied, exp)


def test_error_page(ctx):
    exp = sign_in()
    port = PORTS["errpage"]
    ip = fresh_ip()
    rs = [request(port, "POST", "/v1/client/sign_ins", {"X-Real-IP": ip})
          for _ in range(exp.burst + 1)]
    last = rs[-1]
    problems = denial_fields(last, exp)
    # a second decision in the page's location (it inherits ratecard) would
    # find r->error_page set and answer with the JSON body instead
    check("error_page 429: the rejection is the user's page, with Retry-After and "
          "the RateLimit fields, decided once",
          [r.status for r in rs] == [200] * exp.burst + [429]
          and last.body == ERROR_PAGE
          and last.header("Content-Type", "").startswith("text/html")
          and last.header("X-Ratecard") == "REJECTED" and not problems,
          f"{[r.status for r in rs]} {last.body[:60]!r} {last.headers} {problems}")

    ip = fresh_ip()
    rs = [request(port, "POST", "/other/x", {"X-Real-IP": ip}) for _ in range(exp.burst + 1)]
    if check("a location whose error_page covers another status rejects as usual",
             [r.status for r in rs] == [200] * exp.burst + [429], f"{[r.status for r in rs]}"):
        check_429("error_page for 404 only", rs[-1], exp)


def test_subrequests(ctx):
    exp = sign_up()
    ip = fresh_ip()
    n = 4 * exp.burst
    responses, seconds = sequential(PORTS["fapi"], "POST", "/both/x", n, {"X-Real-IP": ip})
    check_burst("main request and its auth_request subrequest both under ratecard: "
                "counted once", responses, seconds, exp)
    denied = first_denied(responses)
    if denied:
        check_429("main request with a subrequest", denied, exp)
    ip = fresh_ip()
    rs = [request(PORTS["fapi"], "POST", "/onlysub/x", {"X-Real-IP": ip})
          for _ in range(exp.burst + 1)]
    check("ratecard only in the auth_request subrequest: it decides; passed responses "
          "carry RateLimit; its rejection fails the auth (auth_request answers 500)",
          [r.status for r in rs] == [200] * exp.burst + [500]
          and rs[0].header("RateLimit") == exp.ratelimit,
          f"{[r.status for r in rs]} {rs[0].header('RateLimit')!r}")


def test_dry_run(ctx):
    exp = sign_in()
    for label, port, path in (("ratecard_dry_run on", PORTS["dry"], "/v1/client/sign_ins"),
                              ("ratecard ... dry_run", PORTS["fapi"], "/dryparam/x")):
        ip = fresh_ip()
        hdrs = {"X-Real-IP": ip}
        n = 4 * exp.burst
        responses, seconds = sequential(port, "POST", path, n, hdrs)
        statuses = [r.header("X-Ratecard") for r in responses]
        check(f"{label}: every request is sent on (200), the first {exp.burst} PASSED",
              all(r.status == 200 for r in responses)
              and statuses[:exp.burst] == ["PASSED"] * exp.burst,
              f"{[r.status for r in responses]} {statuses}")
        check_burst(f"{label}: PASSED, then REJECTED_DRY_RUN", responses, seconds, exp,
                    passed=lambda r: r.header("X-Ratecard") == "PASSED",
                    rejected=lambda r: r.header("X-Ratecard") == "REJECTED_DRY_RUN")
        would = [r for r in responses if r.header("X-Ratecard") == "REJECTED_DRY_RUN"]
        check(f"{label}: would-be rejections carry RateLimit r=0",
              would and all(r.header("RateLimit", "").startswith(f'"{exp.rule}";r=0')
                            for r in would),
              f"{[r.header('RateLimit') for r in would[:3]]}")
        # Passed dry-run requests are charged (decided as if enforced); the
        # would-be rejections must not be: charged, they would push the
        # client's next slot many intervals out instead of at most one.
        enforced = request(PORTS["fapi"], "POST", "/v1/client/sign_ins", hdrs)
        ra = enforced.header("Retry-After", "")
        check(f"{label}: would-be rejections consume nothing (the enforcing location "
              f"then rejects with Retry-After {ra}, at most one interval)",
              enforced.status == 429 and ra.isdigit()
              and int(ra) <= math.ceil(exp.interval),
              f"{enforced.status} Retry-After {ra!r} RateLimit "
              f"{enforced.header('RateLimit')!r}")
    ip = fresh_ip()
    enforced, seconds = sequential(PORTS["fapi"], "POST", "/v1/client/sign_ins",
                                   exp.burst + 3, {"X-Real-IP": ip})
    check_burst("a client the dry run never saw gets its burst on the enforcing location",
                enforced, seconds, exp)
    check("dry run: would-be rejections are logged at ratecard_log_level (warn)",
          re.search(rf'\[warn\].*ratecard: limiting requests, dry run, by rule '
                    rf'"{re.escape(exp.rule)}"', ctx["nginx"].log_text()),
          "no log line")


def test_fail_policy(ctx):
    port = PORTS["fail"]
    exp = sign_up()
    r = request(port, "POST", "/closed/x")
    check("fail closed (default): a library error (no client address) answers 503",
          r.status == 503 and r.header("X-Ratecard") == "ERROR",
          f"{r.status} {r.header('X-Ratecard')!r}")
    r = request(port, "POST", "/closed500/x")
    check("ratecard_fail closed 500: answers 500", r.status == 500, f"{r.status}")
    r = request(port, "POST", "/open/x")
    check("ratecard_fail open: the request passes, $ratecard_status ERROR",
          r.status == 200 and r.header("X-Ratecard") == "ERROR",
          f"{r.status} {r.header('X-Ratecard')!r}")
    r = request(port, "POST", "/closed/x", {"X-Client": "not-an-address"})
    check("a client address that is not an IP is an error (fail closed: 503)",
          r.status == 503, f"{r.status}")
    rs = [request(port, "POST", "/closed/x", {"X-Client": "203.0.113.77"})
          for _ in range(exp.burst + 1)]
    check(f"ratecard_client_ip with a textual address and ratecard_path: "
          f"{exp.burst} then 429",
          [x.status for x in rs] == [200] * exp.burst + [429]
          and rs[0].header("X-Ratecard-Rule") == exp.rule,
          f"{[x.status for x in rs]} {rs[0].header('X-Ratecard-Rule')!r}")
    r = request(port, "POST", "/closed/x", {"X-Client": "::ffff:203.0.113.77"})
    check("IPv4-mapped IPv6 is the same client as its IPv4 address",
          r.status == 429, f"{r.status}")


def test_tenant_status_metrics(ctx):
    exp = sign_in()
    port = PORTS["fapi"]
    want = [200] * exp.burst + [429]
    a = [request(port, "POST", "/tenant/x", {"X-Tenant": "acme"})
         for _ in range(exp.burst + 1)]
    b = [request(port, "POST", "/tenant/x", {"X-Tenant": "globex"})
         for _ in range(exp.burst + 1)]
    check(f"ratecard_tenant: one client IP, two tenants, each its own {exp.burst}",
          [r.status for r in a] == want and [r.status for r in b] == want,
          f"{[r.status for r in a]} {[r.status for r in b]}")

    ip = fresh_ip()
    rs = [request(port, "POST", "/status503/x", {"X-Real-IP": ip})
          for _ in range(exp.burst + 1)]
    last = rs[-1]
    check("ratecard_status 503: the rejection uses it, with Retry-After and the JSON body",
          [r.status for r in rs] == [200] * exp.burst + [503]
          and last.header("Retry-After") is not None
          and last.header("Content-Type", "").startswith("application/json")
          and json.loads(last.body or b"null") == CLERK_429,
          f"{[r.status for r in rs]} {last.headers}")

    ip = fresh_ip()
    for _ in range(exp.burst):
        request(port, "POST", "/v1/client/sign_ins", {"X-Real-IP": ip})
    post = request(port, "POST", "/v1/client/sign_ins", {"X-Real-IP": ip}, body=b"x" * 5000)
    check("a rejected request with a body is answered (body discarded)",
          post.status == 429 and json.loads(post.body) == CLERK_429,
          f"post {post.status} {post.body[:40]!r}")

    key = fresh_key("sk_test_")
    head_exp = LIB.expect("backend", "HEAD", "/v1/users/me", key)
    spent, _ = concurrent(PORTS["bapi"], "GET", "/v1/users/me", head_exp.burst + 30,
                          {"Authorization": key})
    head = request(PORTS["bapi"], "HEAD", "/v1/users/me", {"Authorization": key})
    check(f"a rejected HEAD ({head_exp.rule}) gets the fields and no body",
          429 in [r.status for r in spent] and head.status == 429 and head.body == b""
          and not denial_fields(head, head_exp),
          f"head {head.status} {head.body[:20]!r} {denial_fields(head, head_exp)}")

    ip = fresh_ip()
    rs = [request(port, "POST", "/noheaders/x", {"X-Real-IP": ip})
          for _ in range(exp.burst + 1)]
    check("ratecard_headers off: passed responses carry no RateLimit fields, "
          "the rejection still does",
          [r.status for r in rs] == want
          and all(r.header("RateLimit") is None and r.header("RateLimit-Policy") is None
                  for r in rs[:exp.burst])
          and rs[-1].header("RateLimit", "").startswith(f'"{exp.rule}";r=0'),
          f"{[(r.status, r.header('RateLimit')) for r in rs]}")

    r = request(port, "GET", "/metrics")
    text = r.body.decode(errors="replace")
    limited = re.search(rf'^ratecard_decisions_total{{zone="clerk",rule="{re.escape(exp.rule)}",'
                        r'outcome="limited"} (\d+)$', text, re.M)
    check("ratecard_metrics: Prometheus' text format, the zone's size (16m: 2^20 slots) "
          "and this suite's rejections",
          r.status == 200 and r.header("Content-Type") == "text/plain; version=0.0.4"
          and 'ratecard_table_slots{zone="clerk"} 1048576' in text
          and limited and int(limited.group(1)) > 0,
          f"{r.status} {r.header('Content-Type')!r} {text[:400]}")
    check_promtool("ratecard_metrics", text)
    head = request(port, "HEAD", "/metrics")
    post = request(port, "POST", "/metrics")
    check("ratecard_metrics: HEAD has no body, POST is refused (405)",
          head.status == 200 and head.body == b"" and post.status == 405,
          f"HEAD {head.status} {head.body[:20]!r} POST {post.status}")


def test_bad_input(ctx):
    port = PORTS["fapi"]
    cases = [
        ("8 KB path", "/v1/client/sign_ins/" + "a" * 8192),
        ("8 KB of dot segments", "/v1/client/sign_ins" + "/." * 4096),
        ("8 KB of encoded slashes", "/v1/client/sign_ins" + "%2F" * 2730),
        ("8 KB of escapes", "/v1" + "%2f%2e%2E%73" * 680),
        ("8 KB query", "/v1/client/sign_ins?" + "q=1&" * 2048),
        ("encoded slashes", "/v1/client%2Fsign_ins%2f..%2F"),
    ]
    for label, path in cases:
        exp = LIB.expect("frontend", "POST", path)
        r = request(port, "POST", path, {"X-Real-IP": fresh_ip()})
        check(f"hostile path ({label}, {len(path)} bytes): decided as the library "
              f"decides it ({r.status} {r.header('X-Ratecard')} "
              f"{r.header('X-Ratecard-Rule') or ''})",
              r.status in (200, 429) and r.header("X-Ratecard") in
              ("PASSED", "REJECTED", "UNMATCHED")
              and r.header("X-Ratecard-Rule") == exp.rule,
              f"{r.status} {r.header('X-Ratecard')!r} {r.header('X-Ratecard-Rule')!r} "
              f"library {exp.rule!r}")

    r = request(port, "POST", "/v1/client/sign_ins/%zz%", {"X-Real-IP": fresh_ip()})
    check("an invalid escape (%zz) is refused by nginx itself (400) before any phase",
          r.status == 400 and r.header("X-Ratecard") is None,
          f"{r.status} {r.header('X-Ratecard')!r}")

    # every spelling of the sign-in path is the same rule and the same bucket
    exp = sign_in()
    ip = fresh_ip()
    spellings = ["//v1/client/sign_ins", "/v1/client/./sign_ins",
                 "/v1/client/sign_ins?redirect=1", "/v1/client/%73ign_ins",
                 "/v1/client/x/../sign_ins"]
    rs = [request(port, "POST", spellings[i % len(spellings)], {"X-Real-IP": ip})
          for i in range(exp.burst)]
    last = request(port, "POST", "/v1/client/sign_ins", {"X-Real-IP": ip})
    check("path spellings (//, ., ?query, %73, ..) share one sign-in bucket",
          [r.status for r in rs] == [200] * exp.burst and last.status == 429
          and {r.header("X-Ratecard-Rule") for r in rs} == {exp.rule},
          f"{[(r.status, r.header('X-Ratecard-Rule')) for r in rs]} then {last.status}")

    port = PORTS["bapi"]
    garbage = [
        ("empty Bearer", "Bearer "),
        ("Basic credentials", "Basic dXNlcjpwYXNzd29yZA=="),
        ("4 KB of junk", "Bearer " + "\x7f#%&*" * 800),
        ("non-UTF-8 bytes", b"Bearer sk_live_\xff\xfe\xc3\x28"),
        ("many spaces", "Bearer" + " " * 2000 + "sk_live_x"),
    ]
    for label, value in garbage:
        exp = LIB.expect("backend", "GET", "/v1/users/me", value)
        r = request(port, "GET", "/v1/users/me", {"Authorization": value})
        check(f"garbage Authorization ({label}): passed by the library's row "
              f"({r.header('X-Ratecard-Rule')})",
              r.status == 200 and r.header("X-Ratecard") == "PASSED"
              and r.header("X-Ratecard-Rule") == exp.rule,
              f"{r.status} {r.header('X-Ratecard')!r} {r.header('X-Ratecard-Rule')!r} "
              f"library {exp.rule!r}")
    exp = LIB.expect("backend", "GET", "/v1/users/me")
    r = request(port, "GET", "/v1/users/me")
    check(f"Backend request without a key: charged by client IP ({exp.rule})",
          exp.rule is not None and r.status == 200
          and r.header("X-Ratecard-Rule") == exp.rule,
          f"{r.status} {r.header('X-Ratecard-Rule')!r}")


def test_ipv6(ctx):
    if not has_ipv6():
        check("IPv6 on [::1] skipped: no ::1 here", True)
        return
    exp = sign_in()
    port = PORTS["fapi"]
    n = 4 * exp.burst
    responses, seconds = sequential(port, "POST", "/v1/client/sign_ins", n, {}, host="::1")
    check_burst(f"IPv6 client [::1]: {n} sign-ins on new connections", responses, seconds,
                exp)
    denied = first_denied(responses)
    if denied:
        check_429("IPv6 client [::1]", denied, exp)
    v4 = request(port, "POST", "/v1/client/sign_ins", {})
    check("127.0.0.1 is a different client from ::1", v4.status == 200, f"{v4.status}")

    # /64 keying through realip: two addresses of one /64 share a limit
    half = exp.burst // 2 + 1
    a = [request(port, "POST", "/v1/client/sign_ins", {"X-Real-IP": "2001:db8:7:1::1"})
         for _ in range(half)]
    b = [request(port, "POST", "/v1/client/sign_ins", {"X-Real-IP": "2001:db8:7:1::2"})
         for _ in range(exp.burst + 1 - half)]
    c = request(port, "POST", "/v1/client/sign_ins", {"X-Real-IP": "2001:db8:7:2::1"})
    check(f"IPv6 clients are keyed by /64: ::1 and ::2 of one /64 share {exp.burst}, "
          "the next /64 is apart",
          [r.status for r in a + b] == [200] * exp.burst + [429] and c.status == 200,
          f"{[r.status for r in a + b]} next /64 {c.status}")


BULK = "/v1/invitations/bulk"   # 25 per hour (Clerk): one slot per 144 s, no timing slack


def bulk(key, n):
    return [request(PORTS["bapi"], "POST", BULK, {"Authorization": key}) for _ in range(n)]


def bulk_burst():
    return LIB.expect("backend", "POST", BULK, "Bearer sk_live_x").burst


def test_reload(ctx):
    nginx = ctx["nginx"]
    burst = bulk_burst()
    key, limited_key = fresh_key(), fresh_key()
    before = bulk(key, burst - 5)
    limited = bulk(limited_key, burst + 1)
    old = nginx.workers_now()
    t0 = time.monotonic()
    new = nginx.reload()
    reload_s = time.monotonic() - t0
    check(f"reload: new workers replaced the old ones ({reload_s:.2f}s)",
          len(new) == 2 and not (new & old), f"old {old} new {new}")
    after = bulk(key, 6)
    still = bulk(limited_key, 1)[0]
    fresh = bulk(fresh_key(), 1)[0]
    check(f"reload keeps state: {burst - 5} before + 5 after passed of {burst}, "
          "the next rejected",
          [r.status for r in before + after] == [200] * burst + [429]
          and after[0].header("X-Ratecard-Remaining") == "4",
          f"{[r.status for r in before + after]} "
          f"remaining after {[r.header('X-Ratecard-Remaining') for r in after]}")
    check("reload keeps state: a limited client stays limited, a new one passes",
          limited[-1].status == 429 and still.status == 429 and fresh.status == 200,
          f"limited {limited[-1].status} after {still.status} fresh {fresh.status}")
    check("reload: responses come from the new workers",
          {int(r.header("X-Worker")) for r in after + [still, fresh]} <= new,
          f"{[r.header('X-Worker') for r in after]} vs {new}")


def test_reload_changed_zone(ctx):
    """A reload that keeps the zone's size keeps its table, and says that
    recorded parameters (pace, ipv6_prefix, ...) wait for a new zone."""
    nginx = ctx["nginx"]
    key = fresh_key()
    before = bulk(key, bulk_burst() + 1)
    nginx.write_conf(ctx["conf"].replace("ratecard_zone zone=clerk:16m;",
                                         "ratecard_zone zone=clerk:16m pace;"))
    nginx.reload()
    after = bulk(key, 1)[0]
    check("reload adding pace keeps the table (a limited client stays limited)",
          before[-1].status == 429 and after.status == 429,
          f"{before[-1].status} then {after.status}")
    check("reload adding pace warns that it needs a new zone",
          'ratecard_zone "clerk": ipv6_prefix, pace, algorithm and unknown_kind '
          "take effect only in a new zone" in nginx.log_text(), "no warning")
    nginx.write_conf(ctx["conf"])
    nginx.reload()


def test_worker_killed(ctx):
    """A worker killed mid-life: the master respawns it (and clears the dead
    worker's lock in the zone's slab header, which the table must not
    overlap); the new worker attaches and the state is intact."""
    nginx = ctx["nginx"]
    burst = bulk_burst()
    key = fresh_key()
    before = bulk(key, burst + 1)
    old = nginx.workers_now()
    victim = min(old)
    os.kill(victim, signal.SIGKILL)
    ctx["killed"] = victim
    new = nginx.wait_workers({victim})
    responses = bulk(key, 10)
    fresh = bulk(fresh_key(), burst + 5)
    check("a killed worker is replaced; the limited client stays limited on both "
          f"workers, a new client gets exactly {burst}",
          before[-1].status == 429 and len(new) == 2 and victim not in new
          and all(r.status == 429 for r in responses)
          and [r.status for r in fresh].count(200) == burst
          and len(workers_seen(responses + fresh)) == 2,
          f"new {new} {[r.status for r in responses]} {[r.status for r in fresh]}")


def test_log_clean(ctx):
    text = ctx["nginx"].log_text()
    killed = ctx.get("killed")
    bad = [line for line in text.splitlines()
           if (re.search(r"\[(alert|crit|emerg)\]", line) or "exited on signal" in line)
           and not (killed and f"worker process {killed} exited on signal 9" in line)]
    check("error log: no alert, crit, emerg or crashed worker", not bad, "\n".join(bad[:5]))
    check("error log: rejections are logged with their rule, at limit_req's default "
          "level (error)",
          re.search(rf'\[error\].*ratecard: limiting requests by rule '
                    rf'"{re.escape(sign_in().rule)}" in zone "clerk"', text),
          "no rejection line")


def test_config_errors(ctx):
    """nginx -t on small configurations: the errors name what is wrong."""
    from nginx_harness import NGINX
    tmp = os.path.join(ctx["tmp"], "conftest")
    os.makedirs(tmp, exist_ok=True)
    seed = os.path.join(tmp, "seed")
    with open(seed, "w") as f:
        f.write("00112233445566778899aabbccddeeff\n")
    os.chmod(seed, 0o600)
    shared = os.path.join(tmp, "seed.shared")
    with open(shared, "w") as f:
        f.write("00112233445566778899aabbccddeeff\n")
    os.chmod(shared, 0o604)
    hexseed = "seed=" + "ab" * 16
    redis_ok = f"ratecard_zone zone=z:1m seed_file={seed};\n"
    cases = [
        ("every ratecard_redis parameter, a seed file, ratecard_metrics",
         f"{redis_ok}ratecard_redis zone=z server=127.0.0.1:6379 timeout=150ms keepalive=4 "
         "prefix=app:rc: clock=gateway fail=local max_fails=5 fail_timeout=3s exact;\n"
         f"ratecard_zone zone=u:1m {hexseed};\n"
         "ratecard_redis zone=u server=unix:/run/redis/redis.sock fail=open max_fails=0;\n"
         "server { listen 127.0.0.1:1; location /m { ratecard_metrics; } "
         "location / { ratecard zone=z api=frontend; } }", None),
        ("ratecard_redis on a zone without a seed",
         "ratecard_zone zone=z:1m;\nratecard_redis zone=z server=127.0.0.1:6379;",
         'ratecard_zone "z" needs seed_file= or seed= for ratecard_redis'),
        ("ratecard_redis on an unknown zone",
         "ratecard_redis zone=nope server=127.0.0.1:6379;",
         'unknown ratecard_zone "nope" in ratecard_redis'),
        ("two ratecard_redis for one zone",
         f"{redis_ok}ratecard_redis zone=z server=127.0.0.1:6379;\n"
         "ratecard_redis zone=z server=127.0.0.1:6380;",
         'duplicate ratecard_redis for zone "z"'),
        ("ratecard_redis without server=", f"{redis_ok}ratecard_redis zone=z timeout=1s;",
         '"ratecard_redis" must have "server" parameter'),
        ("ratecard_redis without zone=", "ratecard_redis server=127.0.0.1:6379 fail=open;",
         '"ratecard_redis" must have "zone" parameter'),
        ("a bad Redis server", f"{redis_ok}ratecard_redis zone=z server=127.0.0.1:99999;",
         'invalid Redis server "127.0.0.1:99999"'),
        ("a prefix with a brace (it would move the Cluster hash tag)",
         f'{redis_ok}ratecard_redis zone=z server=127.0.0.1:6379 "prefix=a{{b";',
         'invalid parameter "prefix=a{b"'),
        ("a bad timeout", f"{redis_ok}ratecard_redis zone=z server=127.0.0.1:6379 timeout=soon;",
         'invalid parameter "timeout=soon"'),
        ("a bad fail policy",
         f"{redis_ok}ratecard_redis zone=z server=127.0.0.1:6379 fail=maybe;",
         'invalid parameter "fail=maybe"'),
        ("a short seed", "ratecard_zone zone=z:1m seed=abcd;",
         "needs a seed of 32 hexadecimal digits"),
        ("a seed that is not hexadecimal", "ratecard_zone zone=z:1m seed=" + "g" * 32 + ";",
         "needs a seed of 32 hexadecimal digits"),
        ("two seeds", f"ratecard_zone zone=z:1m {hexseed} seed_file={seed};",
         '"ratecard_zone" directive has a duplicate seed'),
        ("a missing seed file", f"ratecard_zone zone=z:1m seed_file={tmp}/missing.seed;",
         f'open() "{tmp}/missing.seed" failed'),
        ("a seed file others may read", f"ratecard_zone zone=z:1m seed_file={shared};",
         f'seed_file "{shared}" is accessible to others (chmod o-rwx)'),
        ("a 33rd zone", "".join(f"ratecard_zone zone=z{i}:32k;\n" for i in range(33)),
         "at most 32 ratecard zones"),
        ("the old ratecard_status_page", "server { location / { ratecard_status_page z; } }",
         'unknown directive "ratecard_status_page"'),
        ("a zone used before its declaration", "ratecard zone=z api=frontend;\n"
         "ratecard_zone zone=z:1m;", None),
        ("ratecard off in a location", "ratecard_zone zone=z:1m;\n"
         "server { listen 127.0.0.1:1; ratecard zone=z api=backend; "
         "location / { ratecard off; } }", None),
        ("every zone parameter, and ratecard with dry_run",
         "ratecard_zone zone=z:1m ipv6_prefix=56 policy=deny pace "
         "unknown_kind=production algorithm=fixed_window;\n"
         "ratecard api=backend dry_run zone=z;", None),
        ("unknown zone", "ratecard zone=nozone api=frontend;",
         'unknown ratecard_zone "nozone"'),
        ("zone too small", "ratecard_zone zone=z:1k;", 'zone "zone=z:1k" is too small'),
        ("zone without a size", "ratecard_zone zone=z pace;", 'invalid zone size "zone=z"'),
        ("zone with a bad size", "ratecard_zone zone=z:lots;",
         'invalid zone size "zone=z:lots"'),
        ("ratecard_zone without zone=", "ratecard_zone pace;",
         '"ratecard_zone" must have "zone" parameter'),
        ("the old ratecard_zone spelling", "ratecard_zone clerk size=16m;",
         'invalid parameter "clerk"'),
        ("the old pace=on spelling", "ratecard_zone zone=z:1m pace=on;",
         'invalid parameter "pace=on"'),
        ("ratecard without zone=", "ratecard api=frontend;",
         '"ratecard" must have "zone" parameter'),
        ("ratecard without api=", "ratecard_zone zone=z:1m; ratecard zone=z;",
         '"ratecard" must have "api=frontend" or "api=backend" parameter'),
        ("the old ratecard spelling", "ratecard_zone zone=z:1m; ratecard z api=frontend;",
         'invalid parameter "z"'),
        ("bad api", "ratecard_zone zone=z:1m; ratecard zone=z api=middle;",
         'invalid parameter "api=middle"'),
        ("bad policy", "ratecard_zone zone=z:1m policy=maybe;",
         'invalid parameter "policy=maybe"'),
        ("bad ipv6_prefix", "ratecard_zone zone=z:1m ipv6_prefix=129;",
         'invalid parameter "ipv6_prefix=129"'),
        ("duplicate zone", "ratecard_zone zone=z:1m; ratecard_zone zone=z:1m;",
         'duplicate zone "z"'),
        ("status out of range", "ratecard_status 200;", "must be between 400 and 599"),
        ("bad fail status", "ratecard_fail closed 302;", 'invalid status "302"'),
    ]
    for label, http_body, want in cases:
        conf = os.path.join(tmp, "t.conf")
        with open(conf, "w") as f:
            f.write(f"load_module {ctx['module']};\nevents {{}}\n"
                    f"http {{\n{http_body}\n}}\n")
        r = subprocess.run([NGINX, "-t", "-p", tmp + "/", "-c", conf,
                            "-g", f"pid {tmp}/t.pid; error_log stderr;"],
                           capture_output=True, text=True, timeout=30)
        if want is None:
            check(f"nginx -t accepts {label}", r.returncode == 0, r.stderr[-300:])
        else:
            check(f"nginx -t refuses {label}: {want}",
                  r.returncode != 0 and want in r.stderr, r.stderr[-300:])


TESTS = [test_library, test_frontend_rows, test_backend_rows, test_redirects,
         test_error_page, test_subrequests, test_dry_run,
         test_fail_policy, test_tenant_status_metrics, test_bad_input, test_ipv6,
         test_reload, test_reload_changed_zone, test_config_errors,
         test_worker_killed, test_log_clean]


def main():
    global LIB
    module, tmp, helper = sys.argv[1], sys.argv[2], sys.argv[3]
    LIB = Library(helper)
    nginx = None
    os.makedirs(os.path.join(tmp, "html"), exist_ok=True)
    with open(os.path.join(tmp, "html", "limited.html"), "wb") as f:
        f.write(ERROR_PAGE)
    try:
        for attempt in range(3):  # a port picked free may be taken before nginx binds it
            for name in ("up", "fapi", "bapi", "redir", "errpage", "dry", "fail"):
                PORTS[name] = free_port()
            conf = config(module, tmp)
            nginx = Nginx(tmp, conf)
            try:
                workers = nginx.start()
                break
            except subprocess.CalledProcessError as e:
                print(f"nginx did not start: {e.stderr.decode(errors='replace')[-300:]}")
                if attempt == 2:
                    raise
        ctx = {"nginx": nginx, "conf": conf, "module": module, "tmp": tmp,
               "rules": {}, "driven": set()}
        print(f"nginx {nginx.pid} with workers {sorted(workers)}, ports {PORTS}, "
              f"IPv6 {'on' if has_ipv6() else 'off'}")
        for test in TESTS:
            if not nginx.workers_now():
                check(f"{test.__name__}: nginx is running", False, "no workers")
                break
            try:
                test(ctx)
            except Exception as e:  # a crashed test is a failure, the rest still run
                check(f"{test.__name__} ran", False,
                      f"{e!r}\n{traceback.format_exc()}")
    except subprocess.CalledProcessError:
        check("nginx starts", False, "three attempts failed")
    finally:
        if nginx is not None:
            nginx.stop()
        if FAILED and nginx is not None:
            print("--- error log (tail) ---")
            print("\n".join(nginx.log_text().splitlines()[-30:]))
    print(f"{len(PASSED)} passed, {len(FAILED)} failed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
