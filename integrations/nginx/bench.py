#!/usr/bin/env python3
"""Cost of ngx_http_ratecard_module: wrk on loopback against one static
route (Clerk's Backend instance row, 10 000 production keys, a random one
per request) with the module off, deciding in the local table, and deciding
through Redis, in alternating rounds of one run. Reported, not asserted:
requests per second and p99 latency (wrk), and CPU per request of nginx's
workers and of redis-server (from /proc), as medians over the rounds.

Usage: bench.py MODULE_SO TMPDIR. Env: ROUNDS (5), SECONDS (5), THREADS (2),
CONNECTIONS (32), WORKERS (2), ZONE_SIZE (16m), KEEPALIVE (32).
"""

import os
import re
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nginx_harness import Nginx, Redis, free_port, request  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "5"))
SECONDS = int(os.environ.get("SECONDS", "5"))
THREADS = int(os.environ.get("THREADS", "2"))
CONNECTIONS = int(os.environ.get("CONNECTIONS", "32"))
WORKERS = int(os.environ.get("WORKERS", "2"))
ZONE_SIZE = os.environ.get("ZONE_SIZE", "16m")
KEEPALIVE = int(os.environ.get("KEEPALIVE", "32"))
SEED = "0123456789abcdef0123456789abcdef"


def config(module, tmp, ports, redis, seed_file):
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""
load_module {module};
{user}worker_processes {WORKERS};
error_log {tmp}/error.log warn;

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    default_type text/plain;
    keepalive_requests 1000000;
    client_body_temp_path {tmp}/temp/body;
    proxy_temp_path {tmp}/temp/proxy;
    fastcgi_temp_path {tmp}/temp/fastcgi;
    uwsgi_temp_path {tmp}/temp/uwsgi;
    scgi_temp_path {tmp}/temp/scgi;
    root {tmp}/html;

    ratecard_zone zone=local:{ZONE_SIZE};
    ratecard_zone zone=redis:{ZONE_SIZE} seed_file={seed_file};
    ratecard_redis zone=redis server=127.0.0.1:{redis.port} keepalive={KEEPALIVE}
                   timeout=1s fail=closed;

    server {{
        listen 127.0.0.1:{ports["off"]} reuseport;
        location / {{
        }}
    }}

    server {{
        listen 127.0.0.1:{ports["local"]} reuseport;
        location / {{
            ratecard zone=local api=backend;
        }}
        location = /metrics {{
            ratecard_metrics;
        }}
    }}

    server {{
        listen 127.0.0.1:{ports["redis"]} reuseport;
        location / {{
            ratecard zone=redis api=backend;
        }}
    }}
}}
"""


def cpu_seconds(pids):
    """User and system CPU time of processes, in seconds."""
    user = system = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        user += int(fields[11])    # utime
        system += int(fields[12])  # stime
    tick = os.sysconf("SC_CLK_TCK")
    return user / tick, system / tick


def micros(text):
    """wrk's latency ("812.00us", "1.20ms", "2.01s") in microseconds."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]


def wrk(port, script, workers, redis_pid):
    (u0, s0), (ru0, rs0) = cpu_seconds(workers), cpu_seconds([redis_pid])
    out = subprocess.run(
        ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--latency", "-s", script,
         f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=SECONDS + 60, check=True).stdout
    (u1, s1), (ru1, rs1) = cpu_seconds(workers), cpu_seconds([redis_pid])
    total = int(re.search(r"(\d+) requests in", out).group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": micros(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),
        "p99": micros(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),
        "cpu": (u1 - u0 + s1 - s0) / total * 1e6,
        "user": (u1 - u0) / total * 1e6,
        "redis_cpu": (ru1 - ru0 + rs1 - rs0) / total * 1e6,
        "non2xx": int(m.group(1)) if m else 0,
    }


def main():
    module, tmp = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_keys.lua")
    ports = {name: free_port() for name in ("off", "local", "redis")}
    seed_file = os.path.join(tmp, "ratecard.seed")
    with open(seed_file, "w") as f:
        f.write(SEED + "\n")
    os.chmod(seed_file, 0o600)
    prefix = os.path.join(tmp, "nginx")
    os.makedirs(os.path.join(prefix, "html", "v1", "users"), exist_ok=True)
    with open(os.path.join(prefix, "html", "v1", "users", "me"), "w") as f:
        f.write('{"id":"user_bench"}\n')
    redis = Redis(os.path.join(tmp, "redis"))
    nginx = None
    variants = ("off", "local", "redis")
    results = {name: [] for name in variants}
    try:
        redis.start()
        nginx = Nginx(prefix, config(module, prefix, ports, redis, seed_file), workers=WORKERS)
        workers = nginx.start()
        for name in variants:
            r = request(ports[name], "GET", "/v1/users/me", {"Authorization": "Bearer sk_live_w"})
            assert r.status == 200, (name, r.status)
        print(f"wrk -t{THREADS} -c{CONNECTIONS} -d{SECONDS}s --latency, {ROUNDS} rounds, "
              f"variants alternating; nginx {WORKERS} workers; static file /v1/users/me; "
              f"10 000 keys; zones {ZONE_SIZE}; redis-server on loopback, keepalive "
              f"{KEEPALIVE}; {os.cpu_count()} cores shared by wrk, nginx and Redis")
        for i in range(ROUNDS):
            for name in variants:
                res = wrk(ports[name], script, workers, redis.proc.pid)
                results[name].append(res)
                print(f"  round {i + 1} {name:6}: {res['rps']:8.0f} req/s, p50 "
                      f"{res['p50']:7.0f} us, p99 {res['p99']:7.0f} us, nginx CPU "
                      f"{res['cpu']:6.2f} us/req ({res['user']:5.2f} user), redis CPU "
                      f"{res['redis_cpu']:6.2f} us/req")
        page = request(ports["local"], "GET", "/metrics").body.decode()
    finally:
        if nginx is not None:
            nginx.stop()
        redis.stop()

    def counter(name, zone):
        m = re.search(rf'^{name}{{zone="{zone}"}} (\d+)$', page, re.M)
        return int(m.group(1)) if m else 0

    print(f"redis zone: {counter('ratecard_remote_calls_total', 'redis')} round trips, "
          f"{counter('ratecard_remote_errors_total', 'redis')} failed (NOSCRIPT until the "
          f"first EVAL loaded the script), {counter('ratecard_remote_fallbacks_total', 'redis')} "
          f"answered by the policy; non-2xx responses: "
          + ", ".join(f"{n} {sum(r['non2xx'] for r in results[n])}" for n in variants))

    def med(name, key):
        return statistics.median(r[key] for r in results[name])

    base_rps, base_cpu = med("off", "rps"), med("off", "cpu")
    print(f"{'module':8} {'req/s':>8} {'ratio':>6} {'p50 us':>8} {'p99 us':>8} "
          f"{'nginx CPU/req':>14} {'(user)':>8} {'cost':>9} {'redis CPU/req':>14}")
    for name in variants:
        print(f"{name:8} {med(name, 'rps'):8.0f} {med(name, 'rps') / base_rps:6.3f} "
              f"{med(name, 'p50'):8.0f} {med(name, 'p99'):8.0f} "
              f"{med(name, 'cpu'):11.2f} us {med(name, 'user'):8.2f} "
              f"{med(name, 'cpu') - base_cpu:+7.2f} us {med(name, 'redis_cpu'):11.2f} us")
    print(f"the Redis round trip over the local table: nginx "
          f"{med('redis', 'cpu') - med('local', 'cpu'):+.2f} us CPU per request "
          f"({med('redis', 'user') - med('local', 'user'):+.2f} us of it in user space), Redis "
          f"{med('redis', 'redis_cpu'):.2f} us, p50 "
          f"{med('redis', 'p50') - med('local', 'p50'):+.0f} us, p99 "
          f"{med('redis', 'p99') - med('local', 'p99'):+.0f} us (medians)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
