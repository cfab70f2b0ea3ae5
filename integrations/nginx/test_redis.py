#!/usr/bin/env python3
"""The Redis mode of ngx_http_ratecard_module, in Debian's nginx and a real
redis-server, every server on loopback, started and stopped here by pid.

Two nginx instances (hosts A and B: separate prefixes and ports, 2 workers
each) share one Redis; a client alternating between them gets exactly
Clerk's limits, with the single host's fields and 429. Then: the metrics
page (promtool, and a real Prometheus scraping both hosts, read back
through its HTTP API), SCRIPT FLUSH, a reload, a unix socket, the gateway
clock; on host C (1 worker) a Redis that sleeps beyond the timeout while a
request to an unlimited location of the same worker is answered, a client
that leaves mid-call, a circuit breaker and bad replies from a stub server;
then Redis stopped (each fail= policy, logged once per interval) and back
(recovery without a reload), and a reload that changes the seed.

Expectations come from the library (expect.c), as in test.py.

Usage: test_redis.py MODULE_SO TMPDIR EXPECT. Prints "N passed, M failed";
exits 1 on a failure.
"""

import json
import os
import re
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nginx_harness import Nginx, Redis, free_port, request  # noqa: E402
import checks  # noqa: E402
from checks import (FAILED, PASSED, Library, check, check_429, check_burst,  # noqa: E402
                    check_countdown, check_promtool, fresh_ip, fresh_key)

LIB = None
SEED = "5eed5eed00112233445566778899aabb"
INTERVAL = 1.0           # fail_timeout of every zone here: breaker and log
TIMEOUT = 0.2            # the Redis timeout of every zone here

FRONTEND_SHAPES = [
    ("POST", ["/v1/client/sign_ins"]),
    ("POST", ["/v1/sign_ins"]),
    ("POST", ["/v1/client/sign_ups"]),
    ("POST", ["/v1/client/sign_ins/sia_1/attempt_first_factor",
              "/v1/client/sign_ins/sia_1/attempt_second_factor"]),
    ("POST", ["/v1/client/sign_ups/sua_1/attempt_verification"]),
]

INVITATIONS = [
    "/v1/invitations",
    "/v1/invitations/bulk",
    "/v1/organizations/org_1/invitations",
    "/v1/organizations/org_1/invitations/bulk",
]


def sign_in():
    return LIB.expect("frontend", "POST", "/v1/client/sign_ins")


# --- configuration -----------------------------------------------------------

def common(tmp, workers):
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}worker_processes {workers};
error_log {tmp}/error.log info;

events {{
    worker_connections 1024;
}}
"""


def http_common(tmp):
    return f"""    access_log off;
    default_type text/plain;
    client_body_temp_path {tmp}/temp/body;
    proxy_temp_path {tmp}/temp/proxy;
    fastcgi_temp_path {tmp}/temp/fastcgi;
    uwsgi_temp_path {tmp}/temp/uwsgi;
    scgi_temp_path {tmp}/temp/scgi;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
"""


HEADERS = """        add_header X-Worker $pid always;
        add_header X-Ratecard $ratecard_status always;
        add_header X-Ratecard-Rule $ratecard_rule always;
"""

REALIP = """        set_real_ip_from 127.0.0.1;
        real_ip_header X-Real-IP;
"""


def host_config(module, tmp, ports, redis, seed_file):
    """Hosts A and B: the same zones on one Redis, each zone its own prefix."""
    server = f"server=127.0.0.1:{redis.port} timeout={int(TIMEOUT * 1000)}ms " \
             f"max_fails=3 fail_timeout={int(INTERVAL * 1000)}ms"
    zones = [
        ("clerk", f"{server} fail=local"),
        ("open", f"{server} prefix=rco: fail=open"),
        ("closed", f"{server} prefix=rcc: fail=closed"),
        ("exact", f"{server} prefix=rcx: exact"),
        ("gw", f"{server} prefix=rcg: clock=gateway"),
        ("unix", f"server=unix:{redis.socket} prefix=rcu: timeout=200ms"),
    ]
    decl = "".join(f"    ratecard_zone zone={name}:1m seed_file={seed_file};\n"
                   f"    ratecard_redis zone={name} {args};\n" for name, args in zones)
    up = ports["up"]
    sign_ins = "            ratecard_path /v1/client/sign_ins;\n"
    locs = "".join(f"""        location /{name}/ {{
            ratecard zone={name} api=frontend;
{sign_ins}            proxy_pass http://127.0.0.1:{up};
        }}
""" for name in ("open", "closed", "exact", "gw", "unix"))
    return f"""
load_module {module};
{common(tmp, 2)}
http {{
{http_common(tmp)}
{decl}
    server {{
        listen 127.0.0.1:{up};
        location / {{
            return 200 "upstream $request_method $request_uri\\n";
        }}
    }}

    # Frontend API through Redis (zone clerk, fail=local)
    server {{
        listen 127.0.0.1:{ports["fapi"]} reuseport;
{HEADERS}
        location / {{
            ratecard zone=clerk api=frontend;
{REALIP}
            proxy_pass http://127.0.0.1:{up};
        }}
    }}

    # Backend API through Redis (zone clerk)
    server {{
        listen 127.0.0.1:{ports["bapi"]} reuseport;
{HEADERS}
        location / {{
            ratecard zone=clerk api=backend;
            proxy_pass http://127.0.0.1:{up};
        }}
    }}

    # one location per zone (sign-ins), and the metrics
    server {{
        listen 127.0.0.1:{ports["zones"]} reuseport;
{HEADERS}{REALIP}
        location /local/ {{
            ratecard zone=clerk api=frontend;
{sign_ins}            proxy_pass http://127.0.0.1:{up};
        }}
{locs}
        location = /metrics {{
            ratecard_metrics;
        }}
        location /dry/ {{
            ratecard zone=clerk api=frontend dry_run;
{sign_ins}            proxy_pass http://127.0.0.1:{up};
        }}
        # the decision in a subrequest: suspended on Redis, resumed by it
        location /onlysub/ {{
            auth_request /authz;
            proxy_pass http://127.0.0.1:{up};
        }}
        location /both/ {{
            ratecard zone=clerk api=frontend;
            ratecard_path /v1/client/sign_ups;
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
    }}
}}
"""


def c_config(module, tmp, ports, redis, seed_file):
    """Host C, one worker: a zone on the real Redis, two on stub servers."""
    up = ports["up"]
    return f"""
load_module {module};
{common(tmp, 1)}
http {{
{http_common(tmp)}
    ratecard_zone zone=slow:1m seed_file={seed_file};
    ratecard_redis zone=slow server=127.0.0.1:{redis.port} prefix=rcs: fail=local
                   timeout={int(TIMEOUT * 1000)}ms max_fails=3
                   fail_timeout={int(INTERVAL * 1000)}ms;
    ratecard_zone zone=stub:1m seed_file={seed_file};
    ratecard_redis zone=stub server=127.0.0.1:{ports["stub"]} prefix=rcb: fail=closed
                   timeout=300ms max_fails=0;
    ratecard_zone zone=breaker:1m seed_file={seed_file};
    ratecard_redis zone=breaker server=127.0.0.1:{ports["breaker"]} prefix=rck: fail=open
                   timeout={int(TIMEOUT * 1000)}ms max_fails=3
                   fail_timeout={int(INTERVAL * 1000)}ms;

    server {{
        listen 127.0.0.1:{up};
        location / {{
            return 200 "upstream $request_method $request_uri\\n";
        }}
    }}

    server {{
        listen 127.0.0.1:{ports["c"]};
{HEADERS}{REALIP}
        ratecard_path /v1/client/sign_ins;

        location /limited/ {{
            ratecard zone=slow api=frontend;
            proxy_pass http://127.0.0.1:{up};
        }}
        location /unlimited/ {{
            proxy_pass http://127.0.0.1:{up};
        }}
        location /jwks/ {{
            ratecard zone=slow api=backend;
            ratecard_path /v1/jwks;
            proxy_pass http://127.0.0.1:{up};
        }}
        location /stub/ {{
            ratecard zone=stub api=frontend;
            proxy_pass http://127.0.0.1:{up};
        }}
        location /breaker/ {{
            ratecard zone=breaker api=frontend;
            proxy_pass http://127.0.0.1:{up};
        }}
        location = /metrics {{
            ratecard_metrics;
        }}
    }}
}}
"""


# --- a stub "Redis" that answers what it is told ----------------------------------

# One matched rule: format 1, committed, conforms, remaining 4, reset 2 s, no wait.
VALID = b"*6\r\n:1\r\n:1\r\n:1\r\n:4\r\n:2000000000\r\n:0\r\n"

STUB_REPLIES = {
    "valid": VALID,
    "garbage": b"HELLO WORLD\r\n",
    "shape": b"*2\r\n:1\r\n:1\r\n",
    "format": b"*6\r\n:9\r\n:1\r\n:1\r\n:4\r\n:2000000000\r\n:0\r\n",
    "error": b"-ERR boom\r\n",
    "wrongtype": b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    "moved": b"-MOVED 3999 127.0.0.1:6381\r\n",
    "noscript": b"-NOSCRIPT No matching script. Please use EVAL.\r\n",
    "busy": b"-BUSY Redis is busy running a script.\r\n",
    "huge": b"$999999999\r\n" + b"x" * 70000,
    "partial": b"*6\r\n:1\r\n",
    "extra": VALID + b"+OK\r\n",
}


class Stub:
    """A TCP server on loopback that reads RESP commands and answers each
    with the current mode's bytes ("close": hangs up; "stall": never
    answers). Counts connections and commands."""

    def __init__(self):
        self.mode = "valid"
        self.commands = []        # (command name, arguments)
        self.connections = 0
        self.lock = threading.Lock()
        stub = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                with stub.lock:
                    stub.connections += 1
                f = self.request.makefile("rb")
                try:
                    while True:
                        cmd = read_command(f)
                        if cmd is None:
                            return
                        with stub.lock:
                            stub.commands.append(cmd)
                            mode = stub.mode
                        if mode == "close":
                            return
                        if mode == "stall":
                            time.sleep(3)
                            return
                        self.request.sendall(STUB_REPLIES[mode])
                        if mode in ("huge", "partial"):
                            time.sleep(1)
                            return
                except OSError:
                    return

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def seen(self):
        with self.lock:
            return len(self.commands), self.connections


def read_command(f):
    """One RESP array of bulk strings from `f`; None at the end."""
    line = f.readline()
    if not line.startswith(b"*"):
        return None
    args = []
    for _ in range(int(line[1:])):
        n = int(f.readline()[1:])
        args.append(f.read(n + 2)[:-2])
    return args[0].upper().decode(), args[1:]


# --- helpers -------------------------------------------------------------------

def alternate(ports, method, paths, n, headers):
    """n requests alternating between the hosts' ports, each on a new
    connection; r.host is the host's index, r.at the arrival (s)."""
    t0 = time.monotonic()
    out = []
    for i in range(n):
        r = request(ports[i % len(ports)], method, paths[i % len(paths)], headers)
        r.at = time.monotonic() - t0
        r.host = i % len(ports)
        out.append(r)
    return out, time.monotonic() - t0


def metrics(port):
    """The metrics page as {(name, frozenset(labels)): value}."""
    text = request(port, "GET", "/metrics").body.decode()
    out = {}
    for line in text.splitlines():
        m = re.fullmatch(r"(\w+)\{([^}]*)\} (\d+)", line)
        if m:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            out[(m.group(1), labels)] = int(m.group(3))
    return out, text


def metric(page, name, **labels):
    return page.get((name, frozenset(labels.items())), 0)


def log_lines(nginx, pattern):
    return [line for line in nginx.log_text().splitlines() if re.search(pattern, line)]


def redis_stat(redis, section, key):
    info = redis.cmd("INFO", section).decode()
    m = re.search(rf"^{re.escape(key)}:(.*)$", info, re.M)
    return m.group(1).strip() if m else None


def evalsha_calls(redis):
    stat = redis_stat(redis, "commandstats", "cmdstat_evalsha") or "calls=0"
    return int(re.search(r"calls=(\d+)", stat).group(1))


def check_two_hosts(name, responses, seconds, exp):
    """Exactly the single host's limit across both hosts, its countdown,
    and its 429 from each host."""
    check_burst(f"two hosts, {name}: {len(responses)} alternating", responses, seconds, exp)
    check_countdown(f"two hosts, {name}", responses, exp)
    allowed = [r for r in responses if r.status == 200]
    if allowed:
        check(f"two hosts, {name}: the first response carries the library's RateLimit "
              f"{exp.ratelimit} and RateLimit-Policy",
              allowed[0].header("RateLimit") == exp.ratelimit
              and allowed[0].header("RateLimit-Policy") == exp.policy,
              f"{allowed[0].header('RateLimit')!r} {allowed[0].header('RateLimit-Policy')!r}")
    for host in (0, 1):
        denied = [r for r in responses if r.status == 429 and r.host == host]
        if check(f"two hosts, {name}: host {'AB'[host]} rejects too",
                 bool(denied), f"{[(r.host, r.status) for r in responses]}"):
            check_429(f"two hosts, {name}, host {'AB'[host]}", denied[0], exp)


# --- the tests -------------------------------------------------------------------

def test_frontend_rows(ctx):
    a, b = ctx["A"]["ports"], ctx["B"]["ports"]
    ctx["conns0"] = int(redis_stat(ctx["redis"], "stats", "total_connections_received"))
    ctx["requests"] = 0
    for method, paths in FRONTEND_SHAPES:
        exp = LIB.expect("frontend", method, paths[0])
        ip = fresh_ip()
        responses, seconds = alternate([a["fapi"], b["fapi"]], method, paths, 4 * exp.burst,
                                       {"X-Real-IP": ip})
        ctx["requests"] += len(responses)
        check_two_hosts(f"{exp.rule} {' + '.join(paths)}", responses, seconds, exp)


def test_users_update(ctx):
    a, b = ctx["A"]["ports"], ctx["B"]["ports"]
    key = fresh_key()
    hdrs = {"Authorization": key}
    exp = LIB.expect("backend", "PATCH", "/v1/users/user_9", key)
    meta = LIB.expect("backend", "PUT", "/v1/users/user_9/metadata", key)
    paths = ["/v1/users/user_9", "/v1/users/user_9/metadata"]
    t0 = time.monotonic()
    responses = []
    for i in range(exp.burst + 5):
        method = "PATCH" if i % 4 != 1 else "PUT"
        r = request([a["bapi"], b["bapi"]][i % 2], method, paths[i % 2], hdrs)
        r.at, r.host = time.monotonic() - t0, i % 2
        responses.append(r)
    seconds = time.monotonic() - t0
    ctx["requests"] += len(responses)
    check(f"{exp.rule}: PATCH user and PUT/PATCH metadata are one rule", meta.rule == exp.rule,
          f"{meta!r}")
    check_two_hosts(f"{exp.rule} per user", responses, seconds, exp)
    other = request(b["bapi"], "PATCH", "/v1/users/user_10", hdrs)
    check(f"two hosts, {exp.rule}: another user of the same key is apart",
          other.status == 200 and other.header("X-Ratecard-Rule") == exp.rule,
          f"{other.status} {other.header('X-Ratecard-Rule')!r}")


def test_invitations(ctx):
    a, b = ctx["A"]["ports"], ctx["B"]["ports"]
    for path in INVITATIONS:
        key = fresh_key()
        exp = LIB.expect("backend", "POST", path, key)
        responses, seconds = alternate([a["bapi"], b["bapi"]], "POST", [path], exp.burst + 6,
                                       {"Authorization": key})
        ctx["requests"] += len(responses)
        check_two_hosts(f"{exp.rule} POST {path} ({exp.limit} per hour)", responses, seconds,
                        exp)


def test_keepalive_and_cache(ctx):
    redis = ctx["redis"]
    # our own INFO connection counts too
    conns = int(redis_stat(redis, "stats", "total_connections_received")) - ctx["conns0"] - 1
    workers = 4
    check(f"keepalive: {ctx['requests']} requests through Redis took {conns} connections "
          f"(at most one per worker of the two hosts, sequential clients)",
          0 < conns <= workers, f"{conns} connections")
    page_a, _ = metrics(ctx["A"]["ports"]["zones"])
    page_b, _ = metrics(ctx["B"]["ports"]["zones"])
    cached = (metric(page_a, "ratecard_remote_cached_denials_total", zone="clerk")
              + metric(page_b, "ratecard_remote_cached_denials_total", zone="clerk"))
    calls = (metric(page_a, "ratecard_remote_calls_total", zone="clerk")
             + metric(page_b, "ratecard_remote_calls_total", zone="clerk"))
    # every request is one round trip or one cached denial (+1: another user's PATCH)
    check(f"denials cached near the gateway: {cached} of {ctx['requests'] + 1} requests "
          f"needed no round trip, {calls} made one each",
          cached > 0 and calls + cached == ctx["requests"] + 1,
          f"cached {cached} calls {calls} requests {ctx['requests']}")


def test_metrics_and_prometheus(ctx):
    """Zone `exact` makes every request a round trip: each host's counters
    are exactly the requests this test sent it, read back via Prometheus."""
    hosts = [ctx["A"]["ports"]["zones"], ctx["B"]["ports"]["zones"]]
    exp = sign_in()
    ip = fresh_ip()
    responses, _ = alternate(hosts, "POST", ["/exact/x"], 2 * exp.burst + 3, {"X-Real-IP": ip})
    want = {}
    for host, port in enumerate(hosts):
        mine = [r for r in responses if r.host == host]
        want[port] = {
            "allowed": sum(1 for r in mine if r.status == 200),
            "limited": sum(1 for r in mine if r.status == 429),
            "calls": len(mine),
        }
    check(f"zone exact: {exp.burst} of {len(responses)} passed across both hosts",
          sum(w["allowed"] for w in want.values()) == exp.burst
          and sum(w["limited"] for w in want.values()) == len(responses) - exp.burst,
          f"{[r.status for r in responses]}")

    page, text = metrics(hosts[0])
    check_promtool("host A's ratecard_metrics (six zones, Redis counters)", text)
    check("metrics: every zone and the Redis counters are on the page",
          all(f'ratecard_remote_calls_total{{zone="{z}"}}' in text
              for z in ("clerk", "open", "closed", "exact", "gw", "unix")),
          text[:300])

    prom = ctx["prometheus"] = start_prometheus(ctx, hosts)
    queries = {
        "allowed": 'ratecard_decisions_total{zone="exact",rule="fapi.sign_ins.create",'
                   'outcome="allowed"}',
        "limited": 'ratecard_decisions_total{zone="exact",rule="fapi.sign_ins.create",'
                   'outcome="limited"}',
        "calls": 'ratecard_remote_calls_total{zone="exact"}',
    }
    deadline = time.monotonic() + 30
    got = {}
    while time.monotonic() < deadline:
        got = {what: prom_query(prom["port"], q) for what, q in queries.items()}
        if all(got[what].get(f"127.0.0.1:{port}") == w[what]
               for port, w in want.items() for what in queries):
            break
        time.sleep(0.5)
    for what in queries:
        check(f"Prometheus scraped both hosts: {queries[what]} per instance equals the "
              f"requests sent ({ {p: w[what] for p, w in want.items()} })",
              all(got.get(what, {}).get(f"127.0.0.1:{p}") == w[what] for p, w in want.items()),
              f"got {got.get(what)} want { {p: w[what] for p, w in want.items()} }")
    up = prom_query(prom["port"], 'up{job="nginx"}')
    check("Prometheus: both nginx targets are up", sorted(up.values()) == [1, 1], f"{up}")


def start_prometheus(ctx, ports):
    tmp = os.path.join(ctx["tmp"], "prometheus")
    os.makedirs(tmp, exist_ok=True)
    conf = os.path.join(tmp, "prometheus.yml")
    targets = ", ".join(f"'127.0.0.1:{p}'" for p in ports)
    with open(conf, "w") as f:
        f.write(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: nginx
    metrics_path: /metrics
    static_configs:
      - targets: [{targets}]
""")
    port = free_port()
    log = open(os.path.join(tmp, "prometheus.log"), "w")
    proc = subprocess.Popen(["prometheus", f"--config.file={conf}",
                             f"--storage.tsdb.path={tmp}/data",
                             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    ctx["stop"].append(lambda: stop_proc(proc))
    with open(os.path.join(tmp, "prometheus.pid"), "w") as f:
        f.write(f"{proc.pid}\n")  # for test.sh's backstop
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prometheus exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.2)
    return {"proc": proc, "port": port}


def prom_query(port, query):
    """{instance: value} of an instant query."""
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            data = json.load(r)
    except OSError:
        return {}
    return {s["metric"].get("instance"): int(float(s["value"][1]))
            for s in data.get("data", {}).get("result", [])}


def stop_proc(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_script_flush(ctx):
    redis, a, b = ctx["redis"], ctx["A"], ctx["B"]
    sha = LIB.script_sha1()
    exp = sign_in()
    before, _ = metrics(a["ports"]["zones"])
    log_before = len(a["nginx"].log_text())
    check("the charge script is loaded under the library's SHA-1",
          redis.cmd("SCRIPT", "EXISTS", sha) == [1], f"{redis.cmd('SCRIPT', 'EXISTS', sha)}")
    redis.cmd("SCRIPT", "FLUSH")
    ip = fresh_ip()
    first = request(a["ports"]["fapi"], "POST", "/v1/client/sign_ins", {"X-Real-IP": ip})
    second = request(b["ports"]["fapi"], "POST", "/v1/client/sign_ins", {"X-Real-IP": ip})
    after, _ = metrics(a["ports"]["zones"])
    new_log = a["nginx"].log_text()[log_before:]
    r2 = f'"{exp.rule}";r={exp.burst - 2};'
    check("SCRIPT FLUSH: the next request reloads the script (EVAL) transparently: passed "
          "with the library's RateLimit, the other host sees its charge",
          first.status == 200 and first.header("RateLimit") == exp.ratelimit
          and second.status == 200 and second.header("RateLimit", "").startswith(r2)
          and redis.cmd("SCRIPT", "EXISTS", sha) == [1],
          f"{first.status} {first.header('RateLimit')!r} then {second.status} "
          f"{second.header('RateLimit')!r}")
    check("SCRIPT FLUSH: no policy answered, nothing logged; NOSCRIPT counted as one "
          "failed round trip",
          metric(after, "ratecard_remote_fallbacks_total", zone="clerk")
          == metric(before, "ratecard_remote_fallbacks_total", zone="clerk")
          and metric(after, "ratecard_remote_errors_total", zone="clerk")
          == metric(before, "ratecard_remote_errors_total", zone="clerk") + 1
          and "unavailable" not in new_log,
          f"fallbacks {metric(before, 'ratecard_remote_fallbacks_total', zone='clerk')} -> "
          f"{metric(after, 'ratecard_remote_fallbacks_total', zone='clerk')}, errors "
          f"{metric(before, 'ratecard_remote_errors_total', zone='clerk')} -> "
          f"{metric(after, 'ratecard_remote_errors_total', zone='clerk')}; {new_log[-300:]}")


def test_reload(ctx):
    a, b = ctx["A"], ctx["B"]
    exp = sign_in()
    limited_ip = fresh_ip()
    before, _ = alternate([a["ports"]["fapi"], b["ports"]["fapi"]], "POST",
                          ["/v1/client/sign_ins"], exp.burst + 1, {"X-Real-IP": limited_ip})
    old = a["nginx"].workers_now()
    new = a["nginx"].reload()
    still = request(a["ports"]["fapi"], "POST", "/v1/client/sign_ins",
                    {"X-Real-IP": limited_ip})
    responses, seconds = alternate([a["ports"]["fapi"], b["ports"]["fapi"]], "POST",
                                   ["/v1/client/sign_ins"], exp.burst + 2,
                                   {"X-Real-IP": fresh_ip()})
    check("nginx -s reload with Redis: new workers; a client limited before stays limited",
          not (new & old) and before[-1].status == 429 and still.status == 429
          and int(still.header("X-Worker")) in new,
          f"old {old} new {new} {before[-1].status} {still.status}")
    check_burst("after the reload, two hosts", responses, seconds, exp)


def test_subrequests_and_dry_run(ctx):
    hosts = [ctx["A"]["ports"]["zones"], ctx["B"]["ports"]["zones"]]
    exp = LIB.expect("frontend", "POST", "/v1/client/sign_ups")
    rs, _ = alternate(hosts, "POST", ["/onlysub/x"], exp.burst + 1, {"X-Real-IP": fresh_ip()})
    check("through Redis, ratecard only in the auth_request subrequest: the subrequest "
          "waits for Redis and decides; its rejection fails the auth (500)",
          [r.status for r in rs] == [200] * exp.burst + [500]
          and rs[0].header("RateLimit") == exp.ratelimit,
          f"{[r.status for r in rs]} {rs[0].header('RateLimit')!r}")
    rs, seconds = alternate(hosts, "POST", ["/both/x"], 2 * exp.burst, {"X-Real-IP": fresh_ip()})
    check_burst("through Redis, a main request and its auth_request subrequest both under "
                "ratecard: counted once", rs, seconds, exp)
    exp = sign_in()
    rs, _ = alternate(hosts, "POST", ["/dry/x"], exp.burst + 3, {"X-Real-IP": fresh_ip()})
    check("through Redis, dry run: PASSED for the burst, then REJECTED_DRY_RUN, never a 429",
          [r.status for r in rs] == [200] * len(rs)
          and [r.header("X-Ratecard") for r in rs]
          == ["PASSED"] * exp.burst + ["REJECTED_DRY_RUN"] * 3,
          f"{[(r.status, r.header('X-Ratecard')) for r in rs]}")


def test_unix_and_gateway_clock(ctx):
    a, b = ctx["A"]["ports"]["zones"], ctx["B"]["ports"]["zones"]
    exp = sign_in()
    for where, what in (("/unix/", "a unix socket"), ("/gw/", "clock=gateway")):
        responses, seconds = alternate([a, b], "POST", [f"{where}x"], exp.burst + 3,
                                       {"X-Real-IP": fresh_ip()})
        check_two_hosts(f"{what}", responses, seconds, exp)


def test_stalled_redis(ctx):
    """DEBUG SLEEP 2 with a 200 ms timeout, host C with one worker: the
    request waiting on Redis waits its timeout and gets the policy's answer;
    an unlimited request to the same worker meanwhile is answered at once."""
    c, redis = ctx["C"], ctx["redis"]
    port = c["ports"]["c"]
    exp = sign_in()
    warm = request(port, "POST", "/limited/x", {"X-Real-IP": fresh_ip()})
    check("host C: a request through Redis passes before the stall",
          warm.status == 200 and warm.header("X-Ratecard") == "PASSED", f"{warm.status}")
    calls0 = evalsha_calls(redis)
    sleeper = threading.Thread(target=lambda: redis.cmd("DEBUG", "SLEEP", "2", timeout=10))
    sleeper.start()
    time.sleep(0.1)  # DEBUG SLEEP has started: Redis answers nothing now
    t_stall = time.monotonic()

    result = {}

    def limited():
        t0 = time.monotonic()
        r = request(port, "POST", "/limited/x", {"X-Real-IP": fresh_ip()})
        result["limited"] = (r, time.monotonic() - t0, time.monotonic())

    waiting = threading.Thread(target=limited)
    waiting.start()
    time.sleep(0.03)  # the limited request is in the worker, waiting on Redis
    t0 = time.monotonic()
    free = request(port, "GET", "/unlimited/x")
    free_s = time.monotonic() - t0
    free_done = time.monotonic()
    t0 = time.monotonic()
    jwks = request(port, "GET", "/jwks/x", {"Authorization": "Bearer sk_live_x"})
    jwks_s = time.monotonic() - t0
    # a client that leaves while its request waits on Redis
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /limited/x HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n"
              b"X-Real-IP: 203.0.113.9\r\n\r\n")
    time.sleep(0.02)
    s.close()
    waiting.join(10)
    r, limited_s, limited_done = result["limited"]
    # two more timeouts open the breaker (max_fails=3); then no call at all
    trips = []
    for _ in range(2):
        t0 = time.monotonic()
        trips.append((request(port, "POST", "/limited/x", {"X-Real-IP": fresh_ip()}),
                      time.monotonic() - t0))
    opened = []
    for _ in range(3):
        t0 = time.monotonic()
        opened.append((request(port, "POST", "/limited/x", {"X-Real-IP": fresh_ip()}),
                       time.monotonic() - t0))
    in_stall = time.monotonic() - t_stall
    sleeper.join(10)
    ctx["figures"]["stall"] = {"unlimited_ms": free_s * 1e3, "exempt_ms": jwks_s * 1e3,
                               "waiting_ms": limited_s * 1e3,
                               "circuit_open_ms": [o[1] * 1e3 for o in opened]}
    check(f"stalled Redis: an unlimited request to the same worker is answered while a "
          f"request waits on Redis ({free_s * 1e3:.1f} ms; the waiting one "
          f"{limited_s * 1e3:.0f} ms)",
          free.status == 200 and free.body.startswith(b"upstream GET") and free_done < limited_done
          and c["nginx"].workers == 1,
          f"{free.status} unlimited done {free_done:.3f} limited done {limited_done:.3f}")
    check(f"stalled Redis: an exempt request (GET /v1/jwks) needs no round trip "
          f"({jwks_s * 1e3:.1f} ms)",
          jwks.status == 200 and jwks.header("X-Ratecard") == "EXEMPT",
          f"{jwks.status} {jwks.header('X-Ratecard')!r}")
    check(f"stalled Redis: the waiting request gets fail=local's answer after its timeout, "
          f"not after the stall ({limited_s * 1e3:.0f} ms: timeout 200 ms, stall 2000 ms)",
          r.status == 200 and r.header("X-Ratecard") == "PASSED"
          and r.header("RateLimit") == exp.ratelimit and TIMEOUT <= limited_s < 2.0,
          f"{r.status} {r.header('X-Ratecard')!r} {r.header('RateLimit')!r} {limited_s:.3f}s")
    check(f"stalled Redis: after 3 timeouts the breaker answers at once under the policy "
          f"({', '.join(f'{o[1] * 1e3:.1f}' for o in opened)} ms) while Redis still sleeps "
          f"({in_stall:.2f} s in)",
          all(t[0].status == 200 for t in trips) and all(
              o[0].status == 200 and o[0].header("X-Ratecard") == "PASSED" for o in opened)
          and in_stall < 2.0,
          f"{[(t[0].status, t[1]) for t in trips]} {[(o[0].status, o[1]) for o in opened]}")
    calls = evalsha_calls(redis) - calls0
    # the waiting one, the one whose client left (its failure counts for the
    # breaker only if its timeout came before the client's close was seen),
    # and those that tripped the breaker; the three after it made none
    check(f"stalled Redis: only the requests before the breaker opened reached Redis "
          f"({calls} EVALSHA of 7 requests)",
          3 <= calls <= 4, f"{calls} EVALSHA after the stall")
    time.sleep(INTERVAL + 0.2)
    back = request(port, "POST", "/limited/x", {"X-Real-IP": fresh_ip()})
    check("stalled Redis: once awake, the next request after fail_timeout probes and "
          "passes through Redis; the breaker closes (logged)",
          back.status == 200 and evalsha_calls(redis) == calls0 + calls + 1
          and log_lines(c["nginx"], r'Redis 127\.0\.0\.1:\d+ answers again for zone "slow"'),
          f"{back.status} {evalsha_calls(redis) - calls0}")
    check("host C: the one worker survived the stall and the client that left",
          len(c["nginx"].workers_now()) == 1 and c["worker"] in c["nginx"].workers_now(),
          f"{c['nginx'].workers_now()} vs {c['worker']}")


def test_breaker(ctx):
    """A stub that never answers: max_fails=3 timeouts open the circuit; the
    next requests are answered by fail=open at once, none reaches the
    server; after fail_timeout one request probes; a valid reply closes it."""
    c, stub = ctx["C"], ctx["breaker"]
    port = c["ports"]["c"]
    stub.mode = "stall"
    n0, _ = stub.seen()
    first = [request(port, "POST", "/breaker/x", {"X-Real-IP": fresh_ip()}) for _ in range(3)]
    n1, _ = stub.seen()
    rest = [request(port, "POST", "/breaker/x", {"X-Real-IP": fresh_ip()}) for _ in range(5)]
    n2, _ = stub.seen()
    check("breaker: 3 calls time out (fail=open passes them), then 5 are answered without "
          "a call",
          n1 - n0 == 3 and n2 == n1
          and all(r.status == 200 and r.header("X-Ratecard") == "ERROR" for r in first + rest),
          f"calls {n1 - n0} then {n2 - n1}; {[(r.status, r.header('X-Ratecard')) for r in rest]}")
    time.sleep(INTERVAL + 0.2)
    probe = request(port, "POST", "/breaker/x", {"X-Real-IP": fresh_ip()})
    after = [request(port, "POST", "/breaker/x", {"X-Real-IP": fresh_ip()}) for _ in range(3)]
    n3, _ = stub.seen()
    check("breaker: after fail_timeout one request probes (still stalled), the others wait "
          "another interval",
          n3 - n2 == 1 and probe.status == 200 and all(r.status == 200 for r in after),
          f"calls {n3 - n2}")
    stub.mode = "valid"
    time.sleep(INTERVAL + 0.2)
    ok = [request(port, "POST", "/breaker/x", {"X-Real-IP": fresh_ip()}) for _ in range(3)]
    n4, _ = stub.seen()
    check("breaker: a successful probe closes it: every request is a call again, decided "
          "by the server's reply (r=4)",
          n4 - n3 == 3 and all(r.status == 200 and r.header("X-Ratecard") == "PASSED"
                               and r.header("RateLimit") == '"fapi.sign_ins.create";r=4;t=2'
                               for r in ok)
          and log_lines(c["nginx"], r'answers again for zone "breaker"'),
          f"calls {n4 - n3}; {[(r.status, r.header('RateLimit')) for r in ok]}")


def test_bad_replies(ctx):
    """A stub answering garbage, the wrong shape, errors: fail=closed (503)
    for each, the worker alive; a valid reply decides."""
    c, stub = ctx["C"], ctx["stub"]
    port = c["ports"]["c"]
    sha = LIB.script_sha1()
    worker = c["worker"]
    for mode in ("valid", "garbage", "shape", "format", "error", "wrongtype", "moved",
                 "busy", "noscript", "close", "huge", "partial", "extra", "valid"):
        stub.mode = mode
        n0, conns0 = stub.seen()
        r = request(port, "POST", "/stub/x", {"X-Real-IP": fresh_ip()})
        n1, conns1 = stub.seen()
        with stub.lock:
            cmds = stub.commands[n0:n1]
        names = [name for name, _ in cmds]
        if mode in ("valid", "extra"):
            ok = (r.status == 200 and r.header("X-Ratecard") == "PASSED"
                  and r.header("RateLimit") == '"fapi.sign_ins.create";r=4;t=2')
            want = "the server's decision (200, r=4)"
        else:
            ok = r.status == 503 and r.header("X-Ratecard") == "ERROR"
            want = "fail=closed (503)"
        if mode == "noscript":
            ok = ok and names == ["EVALSHA", "EVAL"]
            want += ", after one EVAL"
        elif mode == "close":
            # the kept connection closes without a reply: tried once more on a new one
            ok = ok and names == ["EVALSHA", "EVALSHA"] and conns1 == conns0 + 1
            want += ", after one retry on a new connection"
        else:
            ok = ok and names == ["EVALSHA"] and cmds[0][1][0] == sha.encode()
        check(f"stub replies {mode!r}: {want}; the call was EVALSHA of the library's script",
              ok and c["nginx"].workers_now() == {worker},
              f"{r.status} {r.header('X-Ratecard')!r} {r.header('RateLimit')!r} {names} "
              f"workers {c['nginx'].workers_now()}")
        if mode == "extra":
            stub.mode = "valid"
            request(port, "POST", "/stub/x", {"X-Real-IP": fresh_ip()})
            _, conns2 = stub.seen()
            check("stub replies 'extra' bytes after the reply: the connection is not kept",
                  conns2 == conns1 + 1, f"connections {conns1} -> {conns2}")
    check("bad replies: no worker crashed (error log has no signal)",
          not log_lines(c["nginx"], r"exited on signal"), "")


def test_redis_down(ctx):
    redis, a, b = ctx["redis"], ctx["A"], ctx["B"]
    exp = sign_in()
    za, zb = a["ports"]["zones"], b["ports"]["zones"]
    redis.stop()
    t_down = time.monotonic()
    ip = fresh_ip()
    la = [request(za, "POST", "/local/x", {"X-Real-IP": ip}) for _ in range(exp.burst + 2)]
    lb = [request(zb, "POST", "/local/x", {"X-Real-IP": ip}) for _ in range(exp.burst + 2)]
    want = [200] * exp.burst + [429, 429]
    check(f"Redis stopped, fail=local: each host enforces its own table ({exp.burst} per host, "
          "the library's fields)",
          [r.status for r in la] == want and [r.status for r in lb] == want
          and la[0].header("RateLimit") == exp.ratelimit
          and la[-1].header("Retry-After") is not None,
          f"A {[r.status for r in la]} B {[r.status for r in lb]} {la[0].header('RateLimit')!r}")
    op = [request(za, "POST", "/open/x", {"X-Real-IP": ip}) for _ in range(exp.burst + 2)]
    check("Redis stopped, fail=open: every request passes, $ratecard_status ERROR, no fields",
          all(r.status == 200 and r.header("X-Ratecard") == "ERROR"
              and r.header("RateLimit") is None for r in op),
          f"{[(r.status, r.header('X-Ratecard')) for r in op]}")
    cl = [request(za, "POST", "/closed/x", {"X-Real-IP": ip}) for _ in range(3)]
    check("Redis stopped, fail=closed: 503, the module's fail-closed status",
          all(r.status == 503 and r.header("X-Ratecard") == "ERROR" for r in cl),
          f"{[r.status for r in cl]}")

    # the policy's use, logged once per fail_timeout per host, not per request
    n = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.5 * INTERVAL:
        request(za, "POST", "/open/x", {"X-Real-IP": fresh_ip()})
        n += 1
        time.sleep(0.05)
    elapsed = time.monotonic() - t_down
    for zone, made in (("clerk", len(la)), ("open", len(op) + n), ("closed", len(cl))):
        lines = log_lines(a["nginx"], rf'ratecard: Redis 127\.0\.0\.1:\d+ unavailable for '
                                      rf'zone "{zone}", fail=\w+ answered')
        counted = sum(int(re.search(r"answered (\d+) request", line).group(1))
                      for line in lines)
        most = int(elapsed / INTERVAL) + 1
        check(f"Redis stopped, zone {zone}: {made} requests, {len(lines)} log line(s) in "
              f"{elapsed:.1f} s (once per {INTERVAL:.0f} s interval at most: {most})",
              1 <= len(lines) <= most and counted <= made
              and ("Connection refused" in lines[0] if lines else False),
              "\n".join(lines[:5]))

    redis.start()
    time.sleep(INTERVAL + 0.2)
    ip = fresh_ip()
    responses, seconds = alternate([za, zb], "POST", ["/local/x"], exp.burst + 2,
                                   {"X-Real-IP": ip})
    check_burst("Redis back, no reload: one limit across both hosts again", responses,
                seconds, exp)
    check("Redis back: logged once on each host",
          log_lines(a["nginx"], r'answers again for zone "clerk"')
          and log_lines(b["nginx"], r'answers again for zone "clerk"'), "")


def test_seed_change(ctx):
    """A reload that changes the seed is refused: the kept table hashes
    with the seed it was laid out with (a new zone name takes a new one)."""
    a = ctx["A"]
    old = a["nginx"].workers_now()
    with open(ctx["seed_file"], "w") as f:
        f.write("ffffffffffffffffffffffffffffffff\n")
    os.kill(a["nginx"].pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    lines = []
    while time.monotonic() < deadline and not lines:
        lines = log_lines(a["nginx"], r'\[emerg\].*ratecard_zone "\w+": the seed changed')
        time.sleep(0.1)
    time.sleep(0.3)
    r = request(a["ports"]["fapi"], "POST", "/v1/client/sign_ins", {"X-Real-IP": fresh_ip()})
    check("a reload with a changed seed is refused and named; the old workers keep serving",
          lines and a["nginx"].workers_now() == old and r.status == 200,
          f"{lines} workers {a['nginx'].workers_now()} vs {old}, {r.status}")
    with open(ctx["seed_file"], "w") as f:
        f.write(SEED + "\n")


def test_logs_clean(ctx):
    for name in ("A", "B", "C"):
        nginx = ctx[name]["nginx"]
        bad = [line for line in nginx.log_text().splitlines()
               if (re.search(r"\[(alert|crit|emerg)\]", line) or "exited on signal" in line)
               and "the seed changed" not in line]
        check(f"host {name}: error log has no alert, crit, emerg or crashed worker",
              not bad, "\n".join(bad[:5]))


TESTS = [test_frontend_rows, test_users_update, test_invitations, test_keepalive_and_cache,
         test_metrics_and_prometheus, test_script_flush, test_reload,
         test_subrequests_and_dry_run, test_unix_and_gateway_clock, test_stalled_redis,
         test_breaker, test_bad_replies, test_redis_down, test_seed_change, test_logs_clean]


def start_host(ctx, name, make_config, port_names):
    tmp = os.path.join(ctx["tmp"], name)
    for d in ("temp",):
        os.makedirs(os.path.join(tmp, d), exist_ok=True)
    for attempt in range(3):  # a port picked free may be taken before nginx binds it
        ports = {p: free_port() for p in port_names}
        ports.update(ctx.get("fixed_ports", {}))
        conf = make_config(ctx["module"], tmp, ports, ctx["redis"], ctx["seed_file"])
        nginx = Nginx(tmp, conf, workers=1 if name == "C" else 2)
        try:
            workers = nginx.start()
            ctx["stop"].append(nginx.stop)
            return {"nginx": nginx, "ports": ports, "worker": min(workers)}
        except subprocess.CalledProcessError as e:
            print(f"nginx {name} did not start: {e.stderr.decode(errors='replace')[-300:]}")
    raise RuntimeError(f"nginx {name} did not start")


def main():
    global LIB
    module, tmp, helper = (os.path.abspath(a) for a in sys.argv[1:4])
    LIB = checks.LIB = Library(helper)
    ctx = {"module": module, "tmp": tmp, "stop": [], "figures": {}}
    started = time.monotonic()
    try:
        seed_file = ctx["seed_file"] = os.path.join(tmp, "ratecard.seed")
        with open(seed_file, "w") as f:
            f.write(SEED + "\n")
        os.chmod(seed_file, 0o600)
        redis = ctx["redis"] = Redis(os.path.join(tmp, "redis"))
        redis.start()
        ctx["stop"].append(redis.stop)
        ctx["stub"], ctx["breaker"] = Stub(), Stub()
        ctx["stop"] += [ctx["stub"].stop, ctx["breaker"].stop]
        ctx["fixed_ports"] = {"stub": ctx["stub"].port, "breaker": ctx["breaker"].port}
        for name, make, ports in (("A", host_config, ("up", "fapi", "bapi", "zones")),
                                  ("B", host_config, ("up", "fapi", "bapi", "zones")),
                                  ("C", c_config, ("up", "c"))):
            ctx[name] = start_host(ctx, name, make, ports)
        print(f"redis {redis.proc.pid} on {redis.port}; nginx A {ctx['A']['nginx'].pid} "
              f"{ctx['A']['ports']}, B {ctx['B']['nginx'].pid} {ctx['B']['ports']}, "
              f"C {ctx['C']['nginx'].pid} (1 worker) {ctx['C']['ports']}")
        for test in TESTS:
            t0 = time.monotonic()
            try:
                test(ctx)
            except Exception as e:  # a crashed test is a failure, the rest still run
                check(f"{test.__name__} ran", False, f"{e!r}\n{traceback.format_exc()}")
            print(f"  ({test.__name__}: {time.monotonic() - t0:.1f} s)")
    except Exception as e:
        check("servers start", False, f"{e!r}\n{traceback.format_exc()}")
    finally:
        for stop in reversed(ctx["stop"]):
            try:
                stop()
            except Exception as e:  # stop the rest whatever happens
                print(f"stopping: {e!r}")
        if FAILED:
            for name in ("A", "B", "C"):
                if name in ctx:
                    print(f"--- host {name} error log (tail) ---")
                    print("\n".join(ctx[name]["nginx"].log_text().splitlines()[-15:]))
    if ctx["figures"].get("stall"):
        s = ctx["figures"]["stall"]
        print(f"stall figures: unlimited {s['unlimited_ms']:.1f} ms, exempt "
              f"{s['exempt_ms']:.1f} ms, waiting on Redis {s['waiting_ms']:.0f} ms, "
              f"circuit open {', '.join(f'{x:.1f}' for x in s['circuit_open_ms'])} ms")
    print(f"{len(PASSED)} passed, {len(FAILED)} failed ({time.monotonic() - started:.0f} s)")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
