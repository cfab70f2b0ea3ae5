#!/usr/bin/env python3
"""Overhead of ngx_http_ratecard_module: requests per second with wrk on
loopback, the same static route with the module on (Clerk's Backend instance
row, 10 000 distinct production keys, a random one per request) and off, in
alternating rounds of one run. Reported, not asserted.

Usage: bench.py MODULE_SO TMPDIR. Env: ROUNDS (3), SECONDS (5), THREADS (2),
CONNECTIONS (32), ZONE_SIZE (16m).
"""

import os
import re
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nginx_harness import Nginx, free_port, request  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "3"))
SECONDS = int(os.environ.get("SECONDS", "5"))
THREADS = int(os.environ.get("THREADS", "2"))
CONNECTIONS = int(os.environ.get("CONNECTIONS", "32"))
ZONE_SIZE = os.environ.get("ZONE_SIZE", "16m")


def config(module, tmp, on, bare, off):
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""
load_module {module};
{user}worker_processes 2;
error_log {tmp}/error.log warn;

events {{
    worker_connections 1024;
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

    ratecard_zone zone=clerk:{ZONE_SIZE};

    server {{
        listen 127.0.0.1:{on} reuseport;
        location / {{
            ratecard zone=clerk api=backend;
        }}
        location = /ratecard {{
            ratecard_status_page clerk;
        }}
    }}

    server {{
        listen 127.0.0.1:{bare} reuseport;
        location / {{
            ratecard zone=clerk api=backend;
            ratecard_headers off;
        }}
    }}

    server {{
        listen 127.0.0.1:{off} reuseport;
        location / {{
        }}
    }}
}}
"""


def cpu_seconds(pids):
    """User + system CPU time of the worker processes."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def wrk(port, script, workers):
    cpu0 = cpu_seconds(workers)
    out = subprocess.run(
        ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "-s", script,
         f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=SECONDS + 60, check=True).stdout
    cpu = cpu_seconds(workers) - cpu0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rps, cpu / total * 1e6, int(m.group(1)) if m else 0


def main():
    module, tmp = sys.argv[1], sys.argv[2]
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_keys.lua")
    on, bare, off = free_port(), free_port(), free_port()
    nginx = Nginx(tmp, config(module, tmp, on, bare, off))
    os.makedirs(os.path.join(tmp, "html", "v1", "users"), exist_ok=True)
    with open(os.path.join(tmp, "html", "v1", "users", "me"), "w") as f:
        f.write('{"id":"user_bench"}\n')
    variants = (("off", off), ("on", on), ("on, ratecard_headers off", bare))
    results = {name: [] for name, _ in variants}
    cpu_us = {name: [] for name, _ in variants}
    non2xx = {name: 0 for name, _ in variants}
    try:
        workers = nginx.start()
        for port in (on, bare, off):
            r = request(port, "GET", "/v1/users/me", {"Authorization": "Bearer sk_live_warm"})
            assert r.status == 200, r.status
        print(f"wrk -t{THREADS} -c{CONNECTIONS} -d{SECONDS}s, {ROUNDS} rounds each, "
              f"alternating; nginx 2 workers; static file route /v1/users/me; "
              f"zone=clerk:{ZONE_SIZE}")
        for i in range(ROUNDS):
            for name, port in variants:
                rps, us, bad = wrk(port, script, workers)
                results[name].append(rps)
                cpu_us[name].append(us)
                non2xx[name] += bad
                print(f"  round {i + 1} module {name:25}: {rps:8.0f} req/s, "
                      f"{us:6.2f} us worker CPU per request")
        stats = request(on, "GET", "/ratecard").body.decode()
    finally:
        nginx.stop()
    denied = re.search(r"^denied (\d+)$", stats, re.M).group(1)
    occupancy = re.search(r"^occupancy (\d+)$", stats, re.M).group(1)
    print(f"table: {occupancy} keys, {denied} denied; non-2xx responses: "
          + ", ".join(f"{name} {n}" for name, n in non2xx.items()))
    base_rps = statistics.median(results["off"])
    base_cpu = statistics.median(cpu_us["off"])
    print(f"{'module':27} {'req/s':>8} {'ratio':>6}   {'worker CPU/req':>14} {'cost':>8}")
    for name, _ in variants:
        rps = statistics.median(results[name])
        cpu = statistics.median(cpu_us[name])
        print(f"{name:27} {rps:8.0f} {rps / base_rps:6.3f}   {cpu:11.2f} us "
              f"{cpu - base_cpu:+6.2f} us")
    print("(medians; wrk shares the cores with nginx, so req/s moves with other "
          "load: worker CPU per request is the steadier figure)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
