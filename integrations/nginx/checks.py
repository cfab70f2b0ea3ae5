"""What the nginx suites share: the library's answers (expect.c), the
checks every host is held to (bursts, the RateLimit countdown, Clerk's 429),
and a tally of passed and failed checks.

Expectations come from the library, not from a copy of Clerk's table: only
two of Clerk's published rows are typed here, to check the library against.
"""

import http.client
import json
import math
import os
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from nginx_harness import request

CLERK_429 = {
    "errors": [{
        "message": "Too many requests",
        "long_message": "Too many requests, retry later",
        "code": "too_many_requests",
        "meta": {},
    }]
}

# Clerk's published limits (its rate-limit documentation), typed here on
# purpose: the library's table is checked against them; every other
# expectation of this suite is read from the library.
CLERK_PUBLISHED = [
    # api, method, path, key, rule, requests, per seconds
    ("frontend", "POST", "/v1/client/sign_ins", "", "fapi.sign_ins.create", 5, 10),
    ("backend", "POST", "/v1/invitations/bulk", "Bearer sk_live_x",
     "bapi.invitations.bulk", 25, 3600),
]


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


# --- the library's answers -------------------------------------------------------

class Expect:
    """What the library decides for one request shape, for a fresh subject."""

    def __init__(self, fields):
        none = lambda v: None if v == "-" else v  # noqa: E731
        self.rule = none(fields[0])
        self.exempt = fields[1] == "1"
        self.limit = int(fields[2])
        self.burst = int(fields[3])
        self.interval_ns = int(fields[4])
        self.policy = none(fields[5])
        # the rest only for request shapes
        self.ratelimit = none(fields[6]) if len(fields) > 6 else None
        self.retry_after = none(fields[7]) if len(fields) > 7 else None
        self.denied_ratelimit = none(fields[8]) if len(fields) > 8 else None

    @property
    def interval(self):
        return self.interval_ns / 1e9

    @property
    def window(self):
        """The binding rule's w= in its RateLimit-Policy entry (seconds)."""
        m = re.search(rf'"{re.escape(self.rule)}";q=\d+;w=(\d+)', self.policy or "")
        return int(m.group(1)) if m else None

    def __repr__(self):
        return (f"{self.rule} limit {self.limit} burst {self.burst} "
                f"interval {self.interval:.3f}s")


class Library:
    """expect.c, asked once per distinct request."""

    def __init__(self, helper):
        self.helper = helper
        self.cache = {}

    def rules(self):
        out = subprocess.run([self.helper, "rules"], check=True, capture_output=True,
                             timeout=30).stdout.decode()
        return {e.rule: e for e in (Expect(line.split("\t")) for line in out.splitlines())}

    def script_sha1(self):
        out = subprocess.run([self.helper, "script"], check=True, capture_output=True,
                             timeout=30).stdout.decode()
        return out.strip()

    def expect(self, api, method, path, key=""):
        if isinstance(key, str):
            key = key.encode()
        # nginx hands the module a header value without its surrounding whitespace
        key = key.strip(b" \t")
        line = b"\t".join([api.encode(), method.encode(), path.encode(), key]) + b"\n"
        if line not in self.cache:
            out = subprocess.run([self.helper, "requests"], input=line, check=True,
                                 capture_output=True, timeout=30).stdout.decode()
            self.cache[line] = Expect(out.rstrip("\n").split("\t"))
        return self.cache[line]


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
    """n requests, each on a new connection; returns (responses, seconds).
    Each response's `at` is its arrival, in seconds after the first send."""
    t0 = time.monotonic()
    out = []
    for _ in range(n):
        r = request(port, method, path, headers, host=host)
        r.at = time.monotonic() - t0
        out.append(r)
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


def allowed_bound(exp, seconds):
    """GCRA: in any interval of length L at most burst + floor(L / T)."""
    return exp.burst + math.floor(seconds / exp.interval)


def check_burst(name, responses, seconds, exp, passed=lambda r: r.status == 200,
                rejected=lambda r: r.status == 429):
    n_passed = sum(1 for r in responses if passed(r))
    other = [r.status for r in responses if not passed(r) and not rejected(r)]
    hi = allowed_bound(exp, seconds)
    exact = "exactly" if hi == exp.burst else f"within [{exp.burst}, {hi}]"
    ok = (not other and exp.burst <= n_passed <= hi
          and (len(responses) <= hi or n_passed < len(responses)))
    return check(f"{name}: {n_passed}/{len(responses)} passed, {exact} "
                 f"({seconds:.2f}s)", ok,
                 f"statuses {[r.status for r in responses][:40]}... other {other[:5]}")


def ratelimit_rt(resp):
    m = re.fullmatch(r'"[^"]+";r=(\d+);t=(\d+)', resp.header("RateLimit", ""))
    return (int(m.group(1)), int(m.group(2))) if m else None


def check_countdown(name, responses, exp):
    """RateLimit r and t of one fresh client's passed responses, against
    what GCRA allows in the time the client measured. The k-th passed
    request leaves the state between kT ahead (no time passed) and kT - E
    ahead (E: first send to k-th arrival), never less than T: so r is
    within [burst - k, burst - k + floor(E / T)] and t within the seconds
    of that span. Exact (r = burst-1 .. 0) when served within one interval."""
    t_ns = exp.interval_ns
    problems = []
    passed = [r for r in responses if r.status == 200]
    for k, r in enumerate(passed, 1):
        rt = ratelimit_rt(r)
        if rt is None:
            problems.append(f"#{k} RateLimit {r.header('RateLimit')!r}")
            continue
        e_ns = math.ceil(r.at * 1e9) + 1000
        r_lo = max(0, exp.burst - k)
        r_hi = min(exp.burst - 1, exp.burst - k + e_ns // t_ns)
        ahead_lo = max(t_ns, k * t_ns - e_ns)
        t_lo, t_hi = -(-ahead_lo // 10**9), -(-(k * t_ns) // 10**9)
        if not (r_lo <= rt[0] <= r_hi and t_lo <= rt[1] <= t_hi):
            problems.append(f"#{k} at {r.at:.3f}s r={rt[0]} in [{r_lo}, {r_hi}]? "
                            f"t={rt[1]} in [{t_lo}, {t_hi}]?")
    first = [ratelimit_rt(r)[0] for r in passed[:exp.burst] if ratelimit_rt(r)]
    return check(f"{name}: RateLimit counts down within the elapsed time "
                 f"(r = {','.join(map(str, first))})", passed and not problems,
                 "; ".join(problems[:5]))


def check_429(name, resp, exp):
    """The denial as Clerk answers it, with the library's fields."""
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
    problems += denial_fields(resp, exp)
    return check(f"{name}: 429 with Retry-After {resp.header('Retry-After')}, "
                 f"RateLimit-Policy, RateLimit, Clerk's JSON body",
                 not problems, "; ".join(problems))


def denial_fields(resp, exp):
    """A rejection's fields against the library's, which it gives at the
    instant a fresh client's burst ends: the most any later rejection of
    that client can say (time only brings its next slot nearer)."""
    problems = []
    ra = resp.header("Retry-After")
    if ra is None or not ra.isdigit() or not 1 <= int(ra) <= int(exp.retry_after):
        problems.append(f"Retry-After {ra!r}, the library at most {exp.retry_after}")
    pol = resp.header("RateLimit-Policy")
    if pol != exp.policy:
        problems.append(f"RateLimit-Policy {pol!r}, the library says {exp.policy!r}")
    rl = resp.header("RateLimit", "")
    m = re.fullmatch(rf'"{re.escape(exp.rule)}";r=0;t=(\d+)', rl)
    lib_t = int(exp.denied_ratelimit.rsplit("t=", 1)[1])
    if not m or not 1 <= int(m.group(1)) <= lib_t:
        problems.append(f"RateLimit {rl!r}, the library {exp.denied_ratelimit!r}")
    return problems


def first_denied(responses):
    for r in responses:
        if r.status == 429:
            return r
    return None


def workers_seen(responses):
    return {r.header("X-Worker") for r in responses} - {None}


def check_promtool(name, text):
    """The page passes `promtool check metrics` (Prometheus' own linter)."""
    r = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                       capture_output=True, timeout=60)
    out = (r.stdout + r.stderr).decode(errors="replace").strip()
    return check(f"{name}: promtool check metrics passes", r.returncode == 0 and not out,
                 out[:400] or f"exit {r.returncode}")
