#!/usr/bin/env python3
"""End-to-end test of ngx_http_ratecard_module in Debian's nginx.

Starts nginx (2 workers, reuseport, loopback only) in a temporary prefix in
front of a small upstream, drives it over new connections, and checks:
every Clerk row's burst, the 429 answer (status, Retry-After, RateLimit-Policy,
RateLimit, Clerk's JSON body), state shared by both workers, a reload that
keeps state, internal redirects (try_files, error_page) counted once, dry
run, the fail policy, tenants, the status page, and hostile input (8 KB
paths, garbage Authorization, path spellings, IPv6 on [::1]).

Usage: test.py MODULE_SO TMPDIR. Prints "N passed, M failed"; exits 1 on a
failure.
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
from concurrent.futures import ThreadPoolExecutor
import http.client

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nginx_harness import Nginx, free_port, has_ipv6, request  # noqa: E402

CLERK_429 = {
    "errors": [{
        "message": "Too many requests",
        "long_message": "Too many requests, retry later",
        "code": "too_many_requests",
        "meta": {},
    }]
}

PORTS = {}
PASSED = []
FAILED = []


def check(name, cond, detail=""):
    if cond:
        PASSED.append(name)
        print(f"ok   {name}")
    else:
        FAILED.append(name)
        print(f"FAIL {name}: {detail}")
    return cond


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
        add_header X-Ratecard $ratecard_result always;
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

    ratecard_zone clerk size=16m;

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
            ratecard clerk api=frontend;
{realip}
            proxy_pass http://127.0.0.1:{up};
        }}
        location = /ratecard {{
            ratecard_status_page clerk;
        }}
        location /status503/ {{
            ratecard clerk api=frontend;
            ratecard_status 503;
            ratecard_path /v1/client/sign_ins;
{realip}
            proxy_pass http://127.0.0.1:{up};
        }}
        # subrequests: auth_request's /authz decides when the main location
        # has no ratecard; when both have it, the main request decides once
        location /both/ {{
            ratecard clerk api=frontend;
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
            ratecard clerk api=frontend;
            ratecard_path /v1/client/sign_ups;
            proxy_pass http://127.0.0.1:{up}/;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }}
        location /noheaders/ {{
            ratecard clerk api=frontend;
            ratecard_headers off;
            ratecard_path /v1/client/sign_ins;
{realip}
            proxy_pass http://127.0.0.1:{up};
        }}
        location /tenant/ {{
            ratecard clerk api=frontend;
            ratecard_tenant $http_x_tenant;
            ratecard_path /v1/client/sign_ins;
            proxy_pass http://127.0.0.1:{up};
        }}
    }}

    # Backend API: keyed by secret key (Authorization)
    server {{
{listen(PORTS["bapi"])}{headers}
        location / {{
            ratecard clerk api=backend;
            proxy_pass http://127.0.0.1:{up};
        }}
    }}

    # internal redirects: each request passes two ratecard locations
    server {{
{listen(PORTS["redir"])}{headers}
{realip}
        ratecard clerk api=frontend;
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

    # dry run on the same zone
    server {{
{listen(PORTS["dry"])}{headers}
        location / {{
            ratecard clerk api=frontend;
            ratecard_dry_run on;
{realip}
            proxy_pass http://127.0.0.1:{up};
        }}
    }}

    # library errors: the client address comes from X-Client
    server {{
{listen(PORTS["fail"])}{headers}
        ratecard clerk api=frontend;
        ratecard_client_ip $http_x_client;
        ratecard_path /v1/client/sign_ups;

        location /closed/ {{
            proxy_pass http://127.0.0.1:{up};
        }}
        location /closed503/ {{
            ratecard_fail closed 503;
            proxy_pass http://127.0.0.1:{up};
        }}
        location /open/ {{
            ratecard_fail open;
            proxy_pass http://127.0.0.1:{up};
        }}
    }}
}}
"""


# --- helpers -------------------------------------------------------------------

_ip_counter = [0]


def fresh_ip():
    """A new client address per use (set through X-Real-IP)."""
    _ip_counter[0] += 1
    n = _ip_counter[0]
    return f"198.51.{100 + n // 250}.{n % 250 + 1}"


_key_counter = [0]


def fresh_key(prefix="sk_live_"):
    _key_counter[0] += 1
    return f"Bearer {prefix}test{os.getpid()}x{_key_counter[0]:06d}"


def sequential(port, method, path, n, headers, host="127.0.0.1"):
    """n requests, each on a new connection; returns (responses, seconds)."""
    t0 = time.monotonic()
    out = [request(port, method, path, headers, host=host) for _ in range(n)]
    return out, time.monotonic() - t0


def concurrent(port, method, path, n, headers, threads=8):
    """n requests over `threads` keep-alive connections (new connections, so
    both workers take part); returns (responses, seconds)."""
    per = [n // threads + (1 if i < n % threads else 0) for i in range(threads)]

    def run(count):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            return [request(port, method, path, headers, conn=conn)
                    for _ in range(count)]
        finally:
            conn.close()

    t0 = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(run, per))
    return [r for rs in results for r in rs], time.monotonic() - t0


def allowed_bound(burst, limit, period, seconds):
    """GCRA: in any interval of length L at most burst + floor(L / T)."""
    t = period / limit
    return burst + math.floor(seconds / t)


def check_burst(name, responses, seconds, burst, limit, period):
    statuses = [r.status for r in responses]
    allowed = statuses.count(200)
    bad = [s for s in statuses if s not in (200, 429)]
    hi = allowed_bound(burst, limit, period, seconds)
    exact = "exactly" if hi == burst else f"within [{burst}, {hi}]"
    ok = not bad and burst <= allowed <= hi and (len(responses) <= hi or 429 in statuses)
    return check(f"{name}: {allowed}/{len(responses)} allowed, {exact} "
                 f"({seconds:.2f}s)", ok,
                 f"statuses {statuses[:40]}... other {bad[:5]}")


def check_429(name, resp, rule, q, w):
    """The denial as Clerk answers it."""
    problems = []
    if resp.status != 429:
        problems.append(f"status {resp.status}")
    ctype = resp.header("Content-Type", "")
    if not ctype.startswith("application/json"):
        problems.append(f"content-type {ctype!r}")
    try:
        if json.loads(resp.body) != CLERK_429:
            problems.append(f"body {resp.body!r}")
    except ValueError:
        problems.append(f"body not JSON {resp.body!r}")
    ra = resp.header("Retry-After")
    t = w / q
    if ra is None or not ra.isdigit() or not 1 <= int(ra) <= math.ceil(t) + 1:
        problems.append(f"Retry-After {ra!r} (emission interval {t:.2f}s)")
    pol = resp.header("RateLimit-Policy", "")
    if f'"{rule}";q={q};w={w}' not in pol:
        problems.append(f"RateLimit-Policy {pol!r}")
    rl = resp.header("RateLimit", "")
    if not re.fullmatch(rf'"{re.escape(rule)}";r=0;t=\d+', rl):
        problems.append(f"RateLimit {rl!r}")
    return check(f"{name}: 429 with Retry-After {ra}, RateLimit-Policy, RateLimit, "
                 f"Clerk's JSON body", not problems, "; ".join(problems))


def first_denied(responses):
    for r in responses:
        if r.status == 429:
            return r
    return None


def workers_seen(responses):
    return {r.header("X-Worker") for r in responses} - {None}


# --- the tests -------------------------------------------------------------------

FRONTEND_ROWS = [
    # rule, method, paths (cycled), burst (= limit), period
    ("fapi.sign_ins.create", "POST", ["/v1/client/sign_ins"], 5, 10),
    ("fapi.sign_ins.create", "POST", ["/v1/sign_ins"], 5, 10),
    ("fapi.sign_ups.create", "POST", ["/v1/client/sign_ups"], 5, 10),
    ("fapi.sign_ins.attempt", "POST",
     ["/v1/client/sign_ins/sia_1/attempt_first_factor",
      "/v1/client/sign_ins/sia_1/attempt_second_factor"], 3, 10),
    ("fapi.sign_ups.attempt", "POST",
     ["/v1/client/sign_ups/sua_1/attempt_verification"], 3, 10),
]


def test_frontend_rows(ctx):
    seen = set()
    for rule, method, paths, burst, period in FRONTEND_ROWS:
        ip = fresh_ip()
        t0 = time.monotonic()
        responses = [request(PORTS["fapi"], method, paths[i % len(paths)],
                             {"X-Real-IP": ip}) for i in range(20)]
        seconds = time.monotonic() - t0
        seen |= workers_seen(responses)
        label = f"{rule} {' + '.join(paths)}"
        check_burst(f"{label}: 20 on new connections", responses, seconds,
                    burst, burst, period)
        allowed = [r for r in responses if r.status == 200]
        if allowed:
            first = allowed[0]
            check(f"{rule}: allowed response reaches the upstream with RateLimit",
                  first.body.startswith(b"upstream " + method.encode())
                  and first.header("RateLimit") == f'"{rule}";r={burst - 1};t={10 // burst if 10 % burst == 0 else math.ceil(10 / burst)}'
                  and f'"{rule}";q={burst};w={period}' in first.header("RateLimit-Policy", ""),
                  f"body {first.body[:60]!r} RateLimit {first.header('RateLimit')!r} "
                  f"policy {first.header('RateLimit-Policy')!r}")
            remaining = [r.header("X-Ratecard-Remaining") for r in allowed[:burst]]
            want = [str(burst - 1 - i) for i in range(burst)]
            if seconds < period / burst:
                check(f"{rule}: remaining counts down {','.join(want)} across workers",
                      remaining == want, f"got {remaining}")
        denied = first_denied(responses)
        if denied:
            check_429(rule, denied, rule, burst, period)
    check("requests were served by both workers (state shared in the zone)",
          len(seen) >= 2, f"workers {seen}")


BACKEND_ROWS = [
    # rule, method, path, key prefix, burst, limit, period, requests
    ("bapi.instance.production", "GET", "/v1/users/me", "sk_live_", 1000, 1000, 10, 1150),
    ("bapi.instance.development", "GET", "/v1/users/me", "sk_test_", 100, 100, 10, 150),
    ("bapi.invitations.create", "POST", "/v1/invitations", "sk_live_", 100, 100, 3600, 130),
    ("bapi.invitations.bulk", "POST", "/v1/invitations/bulk", "sk_live_", 25, 25, 3600, 40),
    ("bapi.org_invitations.create", "POST", "/v1/organizations/org_1/invitations",
     "sk_live_", 250, 250, 3600, 280),
    ("bapi.org_invitations.bulk", "POST", "/v1/organizations/org_1/invitations/bulk",
     "sk_live_", 50, 50, 3600, 70),
    ("bapi.users.update", "PATCH", "/v1/users/user_1", "sk_live_", 10, 10, 10, 20),
    ("bapi.organizations.update", "PATCH", "/v1/organizations/org_1",
     "sk_live_", 10, 10, 10, 20),
    ("bapi.memberships.update", "PATCH", "/v1/organizations/org_1/memberships/user_1",
     "sk_live_", 10, 10, 10, 20),
]


def test_backend_rows(ctx):
    for rule, method, path, prefix, burst, limit, period, n in BACKEND_ROWS:
        key = fresh_key(prefix)
        hdrs = {"Authorization": key}
        if n > 100:
            responses, seconds = concurrent(PORTS["bapi"], method, path, n, hdrs)
        else:
            responses, seconds = sequential(PORTS["bapi"], method, path, n, hdrs)
        check_burst(f"{rule} {method} {path}: {n} requests", responses, seconds,
                    burst, limit, period)
        denied = first_denied(responses)
        if denied:
            check_429(rule, denied, rule, limit, period)
            check(f"{rule}: binding rule named in $ratecard_rule",
                  denied.header("X-Ratecard-Rule") == rule,
                  f"got {denied.header('X-Ratecard-Rule')!r}")
        if not rule.startswith("bapi.instance"):
            allowed = [r for r in responses if r.status == 200]
            pol = allowed[0].header("RateLimit-Policy", "") if allowed else ""
            check(f"{rule}: RateLimit-Policy lists the endpoint and the instance row",
                  f'"{rule}";' in pol and '"bapi.instance.production";q=1000;w=10' in pol,
                  f"policy {pol!r}")

    # users.update: one shared limit for PATCH user and PUT metadata, per user
    key = fresh_key()
    hdrs = {"Authorization": key}
    rs = [request(PORTS["bapi"], "PATCH", "/v1/users/user_9", hdrs) for _ in range(5)]
    rs += [request(PORTS["bapi"], "PUT", "/v1/users/user_9/metadata", hdrs) for _ in range(5)]
    rs += [request(PORTS["bapi"], "PATCH", "/v1/users/user_9/metadata", hdrs)]
    other = request(PORTS["bapi"], "PATCH", "/v1/users/user_10", hdrs)
    check("bapi.users.update: PATCH user and PUT/PATCH metadata share 10; "
          "another user is apart",
          [r.status for r in rs] == [200] * 10 + [429] and other.status == 200,
          f"{[r.status for r in rs]} other {other.status}")

    # jwks: exempt, even for a key that has spent its instance limit
    key = fresh_key("sk_test_")
    hdrs = {"Authorization": key}
    spent, _ = concurrent(PORTS["bapi"], "GET", "/v1/users/me", 130, hdrs)
    jwks = [request(PORTS["bapi"], "GET", "/v1/jwks", hdrs) for _ in range(20)]
    check("bapi.jwks: exempt (200, no RateLimit fields, $ratecard_result EXEMPT) "
          "for a key past its instance limit",
          429 in [r.status for r in spent]
          and all(r.status == 200 and r.header("RateLimit") is None
                  and r.header("RateLimit-Policy") is None
                  and r.header("X-Ratecard") == "EXEMPT" for r in jwks),
          f"{[(r.status, r.header('RateLimit'), r.header('X-Ratecard')) for r in jwks[:3]]}")

    # unknown key prefix: the development limit
    r = request(PORTS["bapi"], "GET", "/v1/users/me", {"Authorization": "Bearer xx_unknown_1"})
    check("a key with an unknown prefix gets the development row",
          r.status == 200 and r.header("X-Ratecard-Rule") == "bapi.instance.development",
          f"{r.status} {r.header('X-Ratecard-Rule')!r}")

    # a path matching no rule on the Frontend: allowed, no fields
    r = request(PORTS["fapi"], "GET", "/v1/environment", {"X-Real-IP": fresh_ip()})
    check("an unmatched request passes with no RateLimit fields ($ratecard_result UNMATCHED)",
          r.status == 200 and r.header("RateLimit") is None
          and r.header("X-Ratecard") == "UNMATCHED",
          f"{r.status} {r.header('RateLimit')!r} {r.header('X-Ratecard')!r}")


def test_redirects(ctx):
    for label, path in (("try_files -> @up", "/v1/client/sign_ins"),
                        ("upstream 404 -> error_page -> @up", "/v1/client/sign_ups")):
        rule = "fapi.sign_ins.create" if "sign_ins" in path else "fapi.sign_ups.create"
        ip = fresh_ip()
        responses, seconds = sequential(PORTS["redir"], "POST", path, 20, {"X-Real-IP": ip})
        check_burst(f"internal redirect ({label}) counts once: 20 requests",
                    responses, seconds, 5, 5, 10)
        allowed = [r for r in responses if r.status == 200]
        check(f"internal redirect ({label}): allowed ones reached the upstream "
              f"through the redirect",
              allowed and all(r.body.startswith(b"upstream POST " + path.encode())
                              for r in allowed),
              f"{[r.body[:40] for r in allowed[:2]]}")
        if seconds < 2:
            remaining = [r.header("X-Ratecard-Remaining") for r in allowed]
            check(f"internal redirect ({label}): RateLimit remaining 4..0 (one charge each)",
                  remaining == ["4", "3", "2", "1", "0"], f"{remaining}")
        denied = first_denied(responses)
        if denied:
            check_429(f"internal redirect ({label})", denied, rule, 5, 10)


def test_subrequests(ctx):
    ip = fresh_ip()
    responses, seconds = sequential(PORTS["fapi"], "POST", "/both/x", 20, {"X-Real-IP": ip})
    check_burst("main request and its auth_request subrequest both under ratecard: "
                "counted once", responses, seconds, 5, 5, 10)
    denied = first_denied(responses)
    if denied:
        check_429("main request with a subrequest", denied, "fapi.sign_ups.create", 5, 10)
    ip = fresh_ip()
    rs = [request(PORTS["fapi"], "POST", "/onlysub/x", {"X-Real-IP": ip}) for _ in range(6)]
    check("ratecard only in the auth_request subrequest: it decides; allowed responses "
          "carry RateLimit; its denial fails the auth (auth_request answers 500)",
          [r.status for r in rs] == [200] * 5 + [500]
          and rs[0].header("RateLimit", "").startswith('"fapi.sign_ups.create";r=4'),
          f"{[r.status for r in rs]} {rs[0].header('RateLimit')!r}")


def test_dry_run(ctx):
    ip = fresh_ip()
    hdrs = {"X-Real-IP": ip}
    responses, seconds = sequential(PORTS["dry"], "POST", "/v1/client/sign_ins", 20, hdrs)
    results = [r.header("X-Ratecard") for r in responses]
    check("dry run: 20 requests all pass, 5 ALLOWED then DRY_RUN_DENIED",
          all(r.status == 200 for r in responses)
          and results[:5] == ["ALLOWED"] * 5
          and (seconds >= 2 or results[5:] == ["DRY_RUN_DENIED"] * 15),
          f"{[r.status for r in responses]} {results}")
    check("dry run: would-be denials carry RateLimit r=0",
          all(r.header("RateLimit", "").startswith('"fapi.sign_ins.create";r=0')
              for r in responses[5:] if r.header("X-Ratecard") == "DRY_RUN_DENIED"),
          f"{[r.header('RateLimit') for r in responses[5:8]]}")
    # Allowed dry-run requests are charged (decided as if enforced); the 15
    # would-be denials must not be: charged, they would push the client's
    # next slot some 30 s out instead of at most one interval (2 s).
    enforced = request(PORTS["fapi"], "POST", "/v1/client/sign_ins", hdrs)
    ra = enforced.header("Retry-After", "")
    check("dry run: would-be denials consume nothing (the enforcing location then "
          f"denies with Retry-After {ra}, at most 2 s)",
          enforced.status == 429 and ra.isdigit() and int(ra) <= 2,
          f"{enforced.status} Retry-After {ra!r} RateLimit {enforced.header('RateLimit')!r}")
    ip = fresh_ip()
    enforced, seconds = sequential(PORTS["fapi"], "POST", "/v1/client/sign_ins", 8,
                                   {"X-Real-IP": ip})
    check_burst("a client the dry run never saw gets its burst on the enforcing location",
                enforced, seconds, 5, 5, 10)
    check("dry run: would-be denials are logged",
          "dry run, not limiting requests by rule \"fapi.sign_ins.create\""
          in ctx["nginx"].log_text(), "no log line")


def test_fail_policy(ctx):
    port = PORTS["fail"]
    r = request(port, "POST", "/closed/x")
    check("fail closed (default): a library error (no client address) answers 500",
          r.status == 500 and r.header("X-Ratecard") == "ERROR",
          f"{r.status} {r.header('X-Ratecard')!r}")
    r = request(port, "POST", "/closed503/x")
    check("ratecard_fail closed 503: answers 503", r.status == 503, f"{r.status}")
    r = request(port, "POST", "/open/x")
    check("ratecard_fail open: the request passes, $ratecard_result ERROR",
          r.status == 200 and r.header("X-Ratecard") == "ERROR",
          f"{r.status} {r.header('X-Ratecard')!r}")
    r = request(port, "POST", "/closed/x", {"X-Client": "not-an-address"})
    check("a client address that is not an IP is an error (fail closed: 500)",
          r.status == 500, f"{r.status}")
    rs = [request(port, "POST", "/closed/x", {"X-Client": "203.0.113.77"}) for _ in range(6)]
    check("ratecard_client_ip with a textual address and ratecard_path: 5 then 429",
          [x.status for x in rs] == [200] * 5 + [429]
          and rs[0].header("X-Ratecard-Rule") == "fapi.sign_ups.create",
          f"{[x.status for x in rs]} {rs[0].header('X-Ratecard-Rule')!r}")
    r = request(port, "POST", "/closed/x", {"X-Client": "::ffff:203.0.113.77"})
    check("IPv4-mapped IPv6 is the same client as its IPv4 address",
          r.status == 429, f"{r.status}")


def test_tenant_and_status(ctx):
    port = PORTS["fapi"]
    a = [request(port, "POST", "/tenant/x", {"X-Tenant": "acme"}) for _ in range(6)]
    b = [request(port, "POST", "/tenant/x", {"X-Tenant": "globex"}) for _ in range(6)]
    check("ratecard_tenant: one client IP, two tenants, each its own 5",
          [r.status for r in a] == [200] * 5 + [429]
          and [r.status for r in b] == [200] * 5 + [429],
          f"{[r.status for r in a]} {[r.status for r in b]}")

    ip = fresh_ip()
    rs = [request(port, "POST", "/status503/x", {"X-Real-IP": ip}) for _ in range(6)]
    last = rs[-1]
    check("ratecard_status 503: the denial uses it, with Retry-After and the JSON body",
          [r.status for r in rs] == [200] * 5 + [503]
          and last.header("Retry-After") is not None
          and last.header("Content-Type", "").startswith("application/json")
          and json.loads(last.body or b"null") == CLERK_429,
          f"{[r.status for r in rs]} {last.headers}")

    ip = fresh_ip()
    rs = [request(port, "POST", "/v1/client/sign_ins", {"X-Real-IP": ip}) for _ in range(5)]
    head = request(port, "HEAD", "/v1/client/sign_ins", {"X-Real-IP": ip})
    post = request(port, "POST", "/v1/client/sign_ins", {"X-Real-IP": ip}, body=b"x" * 5000)
    check("a denied request with a body is answered (body discarded), HEAD gets no body",
          post.status == 429 and json.loads(post.body) == CLERK_429
          and head.body == b"",
          f"post {post.status} head {head.status} {head.body[:20]!r}")

    ip = fresh_ip()
    rs = [request(port, "POST", "/noheaders/x", {"X-Real-IP": ip}) for _ in range(6)]
    check("ratecard_headers off: allowed responses carry no RateLimit fields, "
          "the denial still does",
          [r.status for r in rs] == [200] * 5 + [429]
          and all(r.header("RateLimit") is None and r.header("RateLimit-Policy") is None
                  for r in rs[:5])
          and rs[5].header("RateLimit", "").startswith('"fapi.sign_ins.create";r=0'),
          f"{[(r.status, r.header('RateLimit')) for r in rs]}")

    r = request(port, "GET", "/ratecard")
    text = r.body.decode(errors="replace")
    m = re.search(r"^denied (\d+)$", text, re.M)
    check("ratecard_status_page: counters as text",
          r.status == 200 and "capacity 1048576" in text
          and re.search(r"^rule fapi\.sign_ins\.create allowed \d+ denied [1-9]\d*$",
                        text, re.M)
          and m and int(m.group(1)) > 0,
          text[:400])


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
        r = request(port, "POST", path, {"X-Real-IP": fresh_ip()})
        check(f"hostile path ({label}, {len(path)} bytes): decided "
              f"({r.status} {r.header('X-Ratecard')} {r.header('X-Ratecard-Rule') or ''})",
              r.status in (200, 429) and r.header("X-Ratecard") in
              ("ALLOWED", "DENIED", "UNMATCHED"),
              f"{r.status} {r.header('X-Ratecard')!r}")

    r = request(port, "POST", "/v1/client/sign_ins/%zz%", {"X-Real-IP": fresh_ip()})
    check("an invalid escape (%zz) is refused by nginx itself (400) before any phase",
          r.status == 400 and r.header("X-Ratecard") is None,
          f"{r.status} {r.header('X-Ratecard')!r}")

    # every spelling of the sign-in path is the same rule and the same bucket
    ip = fresh_ip()
    spellings = ["//v1/client/sign_ins", "/v1/client/./sign_ins",
                 "/v1/client/sign_ins?redirect=1", "/v1/client/%73ign_ins",
                 "/v1/client/x/../sign_ins"]
    rs = [request(port, "POST", p, {"X-Real-IP": ip}) for p in spellings]
    last = request(port, "POST", "/v1/client/sign_ins", {"X-Real-IP": ip})
    check("path spellings (//, ., ?query, %73, ..) share one sign-in bucket",
          [r.status for r in rs] == [200] * 5 and last.status == 429,
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
        r = request(port, "GET", "/v1/users/me", {"Authorization": value})
        check(f"garbage Authorization ({label}): decided, allowed "
              f"({r.header('X-Ratecard-Rule')})",
              r.status == 200 and r.header("X-Ratecard") == "ALLOWED",
              f"{r.status} {r.header('X-Ratecard')!r}")
    r = request(port, "GET", "/v1/users/me")
    check("Backend request without a key: charged by client IP (development row)",
          r.status == 200 and r.header("X-Ratecard-Rule") == "bapi.instance.development",
          f"{r.status} {r.header('X-Ratecard-Rule')!r}")


def test_ipv6(ctx):
    if not has_ipv6():
        check("IPv6 on [::1] skipped: no ::1 here", True)
        return
    port = PORTS["fapi"]
    responses, seconds = sequential(port, "POST", "/v1/client/sign_ins", 20, {}, host="::1")
    check_burst("IPv6 client [::1]: 20 sign-ins on new connections", responses, seconds,
                5, 5, 10)
    denied = first_denied(responses)
    if denied:
        check_429("IPv6 client [::1]", denied, "fapi.sign_ins.create", 5, 10)
    v4 = request(port, "POST", "/v1/client/sign_ins", {})
    check("127.0.0.1 is a different client from ::1", v4.status == 200, f"{v4.status}")

    # /64 keying through realip: two addresses of one /64 share a limit
    a = [request(port, "POST", "/v1/client/sign_ins", {"X-Real-IP": "2001:db8:7:1::1"})
         for _ in range(3)]
    b = [request(port, "POST", "/v1/client/sign_ins", {"X-Real-IP": "2001:db8:7:1::2"})
         for _ in range(3)]
    c = request(port, "POST", "/v1/client/sign_ins", {"X-Real-IP": "2001:db8:7:2::1"})
    check("IPv6 clients are keyed by /64: ::1 and ::2 of one /64 share 5, "
          "the next /64 is apart",
          [r.status for r in a + b] == [200] * 5 + [429] and c.status == 200,
          f"{[r.status for r in a + b]} next /64 {c.status}")


BULK = "/v1/invitations/bulk"   # 25 per hour: one slot per 144 s, so no timing slack


def bulk(key, n):
    return [request(PORTS["bapi"], "POST", BULK, {"Authorization": key}) for _ in range(n)]


def test_reload(ctx):
    nginx = ctx["nginx"]
    key, limited_key = fresh_key(), fresh_key()
    before = bulk(key, 20)
    limited = bulk(limited_key, 26)
    old = nginx.workers_now()
    t0 = time.monotonic()
    new = nginx.reload()
    reload_s = time.monotonic() - t0
    check(f"reload: new workers replaced the old ones ({reload_s:.2f}s)",
          len(new) == 2 and not (new & old), f"old {old} new {new}")
    after = bulk(key, 6)
    still = bulk(limited_key, 1)[0]
    fresh = bulk(fresh_key(), 1)[0]
    check("reload keeps state: 20 before + 5 after allowed of 25, the 26th denied",
          [r.status for r in before + after] == [200] * 25 + [429]
          and after[0].header("X-Ratecard-Remaining") == "4",
          f"{[r.status for r in before + after]} "
          f"remaining after {[r.header('X-Ratecard-Remaining') for r in after]}")
    check("reload keeps state: a limited client stays limited, a new one is allowed",
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
    before = bulk(key, 26)
    nginx.write_conf(ctx["conf"].replace("ratecard_zone clerk size=16m;",
                                         "ratecard_zone clerk size=16m pace=on;"))
    nginx.reload()
    after = bulk(key, 1)[0]
    check("reload changing pace= keeps the table (a limited client stays limited)",
          before[-1].status == 429 and after.status == 429,
          f"{before[-1].status} then {after.status}")
    check("reload changing pace= warns that it needs a new zone",
          'ratecard_zone "clerk": ipv6_prefix, pace, algorithm and unknown_kind '
          "take effect only in a new zone" in nginx.log_text(), "no warning")
    nginx.write_conf(ctx["conf"])
    nginx.reload()


def test_worker_killed(ctx):
    """A worker killed mid-life: the master respawns it (and clears the dead
    worker's lock in the zone's slab header, which the table must not
    overlap); the new worker attaches and the state is intact."""
    nginx = ctx["nginx"]
    key = fresh_key()
    before = bulk(key, 26)
    old = nginx.workers_now()
    victim = min(old)
    os.kill(victim, signal.SIGKILL)
    ctx["killed"] = victim
    new = nginx.wait_workers({victim})
    responses = bulk(key, 10)
    fresh = bulk(fresh_key(), 30)
    check("a killed worker is replaced; the limited client stays limited on both "
          "workers, a new client gets exactly 25",
          before[-1].status == 429 and len(new) == 2 and victim not in new
          and all(r.status == 429 for r in responses)
          and [r.status for r in fresh].count(200) == 25
          and len(workers_seen(responses + fresh)) == 2,
          f"new {new} {[r.status for r in responses]} {[r.status for r in fresh]}")


def test_log_clean(ctx):
    text = ctx["nginx"].log_text()
    killed = ctx.get("killed")
    bad = [line for line in text.splitlines()
           if (re.search(r"\[(alert|crit|emerg)\]", line) or "exited on signal" in line)
           and not (killed and f"worker process {killed} exited on signal 9" in line)]
    check("error log: no alert, crit, emerg or crashed worker", not bad, "\n".join(bad[:5]))
    check("error log: denials are logged with their rule",
          'limiting requests by rule "fapi.sign_ins.create" in zone "clerk"' in text,
          "no denial line")


def test_config_errors(ctx):
    """nginx -t on small configurations: the errors name what is wrong."""
    from nginx_harness import NGINX
    tmp = os.path.join(ctx["tmp"], "conftest")
    os.makedirs(tmp, exist_ok=True)
    cases = [
        ("a zone used before its declaration", "ratecard z api=frontend;\n"
         "ratecard_zone z size=1m;", None),
        ("ratecard off in a location", "ratecard_zone z size=1m;\n"
         "server { listen 127.0.0.1:1; ratecard z api=backend; "
         "location / { ratecard off; } }", None),
        ("unknown zone", "ratecard nozone api=frontend;",
         'unknown ratecard_zone "nozone"'),
        ("size too small", "ratecard_zone z size=1k;", 'invalid size "size=1k"'),
        ("no size", "ratecard_zone z pace=on;", 'must have "size" parameter'),
        ("no api", "ratecard_zone z size=1m; ratecard z;", "needs a zone and"),
        ("bad api", "ratecard_zone z size=1m; ratecard z api=middle;",
         'invalid parameter "api=middle"'),
        ("bad policy", "ratecard_zone z size=1m policy=maybe;",
         'invalid parameter "policy=maybe"'),
        ("bad ipv6_prefix", "ratecard_zone z size=1m ipv6_prefix=129;",
         'invalid parameter "ipv6_prefix=129"'),
        ("duplicate zone", "ratecard_zone z size=1m; ratecard_zone z size=1m;",
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


TESTS = [test_frontend_rows, test_backend_rows, test_redirects, test_subrequests,
         test_dry_run,
         test_fail_policy, test_tenant_and_status, test_bad_input, test_ipv6,
         test_reload, test_reload_changed_zone, test_config_errors,
         test_worker_killed, test_log_clean]


def main():
    module, tmp = sys.argv[1], sys.argv[2]
    nginx = None
    try:
        for attempt in range(3):  # a port picked free may be taken before nginx binds it
            for name in ("up", "fapi", "bapi", "redir", "dry", "fail"):
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
        ctx = {"nginx": nginx, "conf": conf, "module": module, "tmp": tmp}
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
