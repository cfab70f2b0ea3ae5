#!/usr/bin/env python3
"""Write the seed corpora of the `engine`, `table_memory`, `ffi`, `remote_encode`
and `remote_reply` targets.

Most inputs are `arbitrary` (1.x) structs, so a seed is that crate's byte
encoding: integers little-endian, `bool` one byte (& 1), an enum a u32 that
picks variant `(x * count) >> 32`, `Option` a bool then the value, a `Vec`
each element preceded by a `true` byte and closed by a `false` one. The
functions below mirror the Rust types in fuzz_targets/; keep them in step.
The `route` seeds are plain text, written by hand; the `remote_reply` seeds
are raw bytes (a rule count, then a reply), written here.

    python3 fuzz/make_seeds.py    # rewrites fuzz/corpus/{engine,table_memory,ffi,remote_*}/seed-*
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def u8(v):
    return bytes([v & 0xFF])


def u16(v):
    return struct.pack("<H", v)


def u32(v):
    return struct.pack("<I", v)


def u64(v):
    return struct.pack("<Q", v)


def boolean(b):
    return u8(1 if b else 0)


def variant(i, n):
    """The u32 that makes a derived enum of `n` variants pick variant `i`."""
    x = ((i << 32) + n - 1) // n
    assert (x * n) >> 32 == i and x < 1 << 32
    return u32(x)


def vec(items):
    return b"".join(b"\x01" + it for it in items) + b"\x00"


def option(v):
    return b"\x00" if v is None else b"\x01" + v


def bytes_vec(bs):
    return vec([u8(b) for b in bs])


# --- engine ---------------------------------------------------------------

STEPS = ["Forward", "Exact", "Zero", "Back", "Huge", "Extreme", "Reboot"]
OPS = ["Check", "Peek", "Reset", "DryRun"]
TEMPLATES = [
    "FeSignIns", "FeSignInsShort", "FeSignUps", "FeSignUpsShort", "FeAttemptFirst",
    "FeAttemptSecond", "FeAttemptFirstShort", "FeAttemptShortNoId", "FeVerify",
    "FeVerifyShort", "FeClient", "UsersMe", "Jwks", "Invitations", "InvitationsBulk",
    "OrgInvitations", "OrgInvitationsBulk", "User", "UserMetadata", "Org", "OrgMetadata",
    "Membership", "MembershipMetadata", "Other",
]
METHODS = ["POST", "GET", "PATCH", "PUT", "DELETE", "HEAD", "OPTIONS", "FOO", ""]
VARIANTS = ["Default", "UnknownIsProduction", "Pace", "FixedWindow", "Ipv6Slash128", "FoldCase"]


def step(kind, *args):
    i = STEPS.index(kind)
    out = variant(i, len(STEPS))
    if kind in ("Forward", "Back"):
        out += u16(args[0])
    elif kind == "Exact":
        out += u8(args[0]) + u8(args[1])
    elif kind in ("Huge", "Extreme"):
        out += u64(args[0])
    elif kind == "Reboot":
        out += u32(args[0])
    return out


def ident(s, encode=False):
    return vec([u8(ord(c)) + boolean(encode) for c in s])


def template(name, method, id1="", id2="", lead=1, seps=0, encode=0, trail=0,
             query=b"", poison=1, method_case=0, encode_ids=False):
    if method != method.upper():
        method, method_case = method.upper(), 0xFF
    return (variant(1, 2) + u8(TEMPLATES.index(name)) + u8(METHODS.index(method))
            + u8(method_case) + ident(id1, encode_ids) + ident(id2, encode_ids)
            + u8(lead) + u32(seps) + u64(encode) + u8(trail) + bytes_vec(query) + u8(poison))


def fixed(i):
    return variant(0, 2) + u8(i)


def ip4(a, b, c, d):
    return variant(2, 5) + bytes([a, b, c, d])


def ip6(bs):
    return variant(4, 5) + bytes(bs)


NO_IP = variant(0, 5)


def key_menu(i):
    return variant(0, 2) + u8(i)


def key_made(prefix, body, bearer=False):
    # PREFIXES = sk_live_, sk_test_, live_, test_, rk_, "", sk_
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_"
    return (variant(1, 2) + u8(prefix) + bytes_vec([alphabet.index(c) for c in body])
            + boolean(bearer))


def tenant_menu(i):
    return variant(0, 2) + u8(i)


def tenant_bytes(b):
    return variant(1, 2) + bytes_vec(b)


NO_KEY = key_menu(0)
NO_TENANT = tenant_menu(0)


def action(st, op, ep, ip=NO_IP, key=NO_KEY, tenant=NO_TENANT, cost=1):
    return st + variant(OPS.index(op), len(OPS)) + ep + ip + key + tenant + u8(cost)


def engine_input(var, start, actions):
    return u8(VARIANTS.index(var)) + u64(start) + vec(actions)


def engine_seeds():
    ip = ip4(192, 0, 2, 1)
    other = ip4(198, 51, 100, 7)
    v6 = ip6([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5])
    live = key_made(0, "AAAAAAAAAAAAAAAAAAAAAAAA")
    test = key_made(1, "BBBBBBBBBBBBBBBBBBBBBBBB")
    bearer = key_made(0, "AAAAAAAAAAAAAAAAAAAAAAAA", bearer=True)
    zero = step("Zero")
    ms = lambda n: step("Forward", 2 * n)  # noqa: E731
    T0 = 1_000_000 * 10**9
    s = {}
    sign_in = template("FeSignIns", "POST")
    s["sign-in-burst-then-refill"] = engine_input("Default", T0, [
        action(zero, "Check", sign_in, ip) for _ in range(6)
    ] + [action(step("Exact", 3, 0), "Check", sign_in, ip),
         action(zero, "Check", sign_in, ip)])
    s["sign-in-attempts-rotating-sign-in-ids"] = engine_input("Default", T0, [
        action(ms(10), "Check", template("FeAttemptFirst", "POST", "sia_%d" % i), ip)
        for i in range(5)
    ])
    s["sign-up-verify-ipv6-neighbours"] = engine_input("Default", T0, [
        action(zero, "Check", template("FeVerify", "POST", "sua_1"), v6),
        action(zero, "Check", template("FeVerify", "POST", "sua_1"),
               ip6([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0xff, 0, 0, 0, 0, 0, 0, 9])),
        action(zero, "Check", template("FeVerifyShort", "post"),
               ip6([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1])),
        action(zero, "Check", template("FeVerify", "POST", "sua_2"), v6),
    ])
    s["bypass-spellings-share-one-limit"] = engine_input("Default", T0, [
        action(zero, "Check", template("FeSignIns", "POST", lead=2, seps=0b1001), ip),
        action(zero, "Check", template("FeSignIns", "post", encode=0b101, trail=1), ip),
        action(zero, "Check", template("FeSignIns", "POST", lead=4, seps=0b11, trail=3,
                                       query=b"redirect_url=/v1/jwks"), ip),
        action(zero, "Check", template("FeSignInsShort", "POST", lead=0, trail=4, query=b"x"), ip),
        action(zero, "Check", template("FeSignIns", "POST", lead=3), ip),
        action(zero, "Check", template("FeSignIns", "POST"), ip),
    ])
    s["non-canonical-paths-charge-every-rule"] = engine_input("Default", T0, [
        action(zero, "Check", template("FeSignIns", "POST", poison=0), ip),
        action(zero, "Check", template("FeAttemptFirst", "POST", "sia_1", poison=8), ip),
        action(zero, "Check", template("User", "PATCH", "user_1", poison=16), key=live),
        action(zero, "Check", template("Invitations", "POST", poison=24), key=test),
    ])
    s["backend-user-updates-per-user"] = engine_input("Default", T0, [
        action(ms(1), "Check", template("User", "PATCH", "user_%d" % (i % 2),
                                        encode_ids=(i % 3 == 0)), key=live)
        for i in range(24)
    ])
    s["backend-metadata-and-memberships"] = engine_input("Default", T0, [
        action(zero, "Check", template("UserMetadata", "PUT", "user_1"), key=bearer),
        action(zero, "Check", template("OrgMetadata", "PATCH", "org_1"), key=live),
        action(zero, "Check", template("Membership", "PATCH", "org_1", "user_1"), key=live),
        action(zero, "Check", template("MembershipMetadata", "PATCH", "org_1", "user_1"), key=live),
        action(zero, "Peek", template("Org", "PATCH", "org_1"), key=live),
        action(zero, "Reset", template("Membership", "PATCH", "org_1", "user_1"), key=live),
    ])
    s["dry-run-handle-never-denies"] = engine_input("Default", T0, [
        action(zero, "DryRun" if i % 2 else "Check", sign_in, ip) for i in range(8)
    ])
    s["invitations-hourly-limits-and-cost"] = engine_input("Default", T0, [
        action(zero, "Check", template("InvitationsBulk", "POST"), key=test, cost=5),
        action(zero, "Check", template("InvitationsBulk", "POST"), key=test, cost=245),
        action(zero, "Check", template("OrgInvitations", "POST", "org_1"), key=test, cost=4),
        action(zero, "Check", template("OrgInvitations", "POST", "org_2"), key=test, cost=4),
        action(step("Exact", 6, 3), "Check", template("OrgInvitationsBulk", "POST", "org_1"),
               key=test, cost=3),
        action(zero, "Check", template("Invitations", "POST"), key=test, cost=249),
    ])
    s["jwks-exempt-and-users-me"] = engine_input("Default", T0, [
        action(zero, "Check", template("Jwks", "GET"), key=live),
        action(zero, "Check", template("Jwks", "GET", trail=1, lead=2), key=live),
        action(zero, "Check", template("Jwks", "HEAD"), key=live),
        action(zero, "Check", template("UsersMe", "GET"), key=live),
        action(zero, "Check", template("UsersMe", "PATCH"), key=live),
        action(zero, "Check", template("Other", "DELETE", "sess_1"), key=test),
    ])
    s["tenants-and-keys-share-instances"] = engine_input("UnknownIsProduction", T0, [
        action(zero, "Check", template("UsersMe", "GET"), key=live, tenant=tenant_bytes(b"acme")),
        action(zero, "Check", template("UsersMe", "GET"), key=test, tenant=tenant_bytes(b"acme")),
        action(zero, "Check", template("UsersMe", "GET"), key=key_made(4, "other")),
        action(zero, "Check", template("UsersMe", "GET"), ip=other),
        action(zero, "Check", template("UsersMe", "GET")),
        action(zero, "Check", sign_in, ip, tenant=tenant_bytes(b"acme")),
        action(zero, "Check", sign_in, ip, tenant=tenant_bytes(b"")),
    ])
    s["clock-steps-back-and-reboots"] = engine_input("Default", T0, [
        action(zero, "Check", sign_in, ip),
        action(zero, "Check", sign_in, ip),
        action(step("Back", 10000), "Check", sign_in, ip),
        action(step("Reboot", 30_000_000), "Check", sign_in, ip),
        action(step("Huge", 1 << 44), "Check", sign_in, ip),
        action(step("Extreme", 2**64 - 1), "Check", sign_in, ip),
    ])
    s["pace-mode-one-per-interval"] = engine_input("Pace", T0, [
        action(step("Exact", 3, 0) if i % 2 else zero, "Check", sign_in, ip) for i in range(8)
    ])
    s["fixed-window-edges"] = engine_input("FixedWindow", T0 - 10**9, [
        action(zero, "Check", sign_in, ip) for _ in range(5)
    ] + [action(step("Exact", 2, 0), "Check", sign_in, ip),
         action(zero, "Check", sign_in, ip)])
    s["model-endpoints"] = engine_input("Ipv6Slash128", T0, [
        action(zero, "Check", fixed(i), v6, live, cost=1) for i in range(0, 37, 3)
    ])
    # Issue 11: a format suffix, an absolute-form target, `;` path
    # parameters (raw and encoded), a dot in a last-segment id, and the
    # model's spelling endpoints (37 on) under case folding.
    s["path-spellings-charged-like-the-plain-path"] = engine_input("FoldCase", T0, [
        action(zero, "Check", template("FeSignIns", "POST", trail=6), ip),
        action(zero, "Check", template("FeSignIns", "POST", trail=7), ip),
        action(zero, "Check", template("FeSignIns", "POST", poison=64), ip),
        action(zero, "Check", template("User", "PATCH", "user_1", trail=6), key=live),
        action(zero, "Check", template("User", "PATCH", "user_1.xml"), key=live),
        action(zero, "Check", template("User", "PATCH", "user_1", poison=72), key=live),
        action(zero, "Check", template("Jwks", "GET", trail=6), key=live),
    ] + [action(zero, "Check", fixed(i), ip, live) for i in range(37, 54)])
    return s


# --- table_memory ---------------------------------------------------------

CASES = ["Raw", "Header", "Truncated", "Moved", "Garbage", "Counters"]
REQS = ["Check", "Peek", "Reset", "CheckKey", "PeekKey", "ResetKey", "Stats"]


def case(name):
    return variant(CASES.index(name), len(CASES))


def setup(capacity=2, ipv6=64, production=False, pace=False, algorithm=0, policy=0,
          seed=(1, 2), fold_case=False):
    return (u8(capacity) + u8(ipv6) + boolean(production) + boolean(pace) + u8(algorithm)
            + u8(policy) + u64(seed[0]) + u64(seed[1]) + boolean(fold_case))


def http(backend, method, path, ip=b"", key=b"", tenant=b"", cost=1):
    return (boolean(backend) + bytes_vec(method) + bytes_vec(path) + bytes_vec(ip)
            + bytes_vec(key) + bytes_vec(tenant) + u32(cost))


def req(name, *parts):
    return variant(REQS.index(name), len(REQS)) + b"".join(parts)


def table_memory_seeds():
    T0 = u64(1_000_000 * 10**9)
    sign_in = http(False, b"POST", b"/v1/client/sign_ins", ip=bytes([192, 0, 2, 1]))
    user = http(True, b"PATCH", b"/v1/users/user_1", key=b"sk_live_AAAA")
    requests = vec([
        req("Check", sign_in, T0),
        req("Check", user, T0),
        req("Peek", sign_in, T0),
        req("CheckKey", u32(0), bytes_vec(b"key"), u32(1), T0),
        req("ResetKey", u32(0), bytes_vec(b"key")),
        req("Reset", sign_in),
        req("Stats"),
    ])
    s = {}
    s["raw-bytes-misaligned"] = case("Raw") + u8(3) + bytes_vec(b"RATECRD1" + bytes(300))
    s["raw-magic-header"] = case("Raw") + u8(0) + bytes_vec(
        b"RATECRD1" + u64(1) + u64(4) + bytes(600))
    for w, name in [(0, "magic"), (1, "version"), (2, "capacity"), (3, "config"),
                    (4, "fingerprint"), (5, "seed"), (7, "rule-count"), (8, "checksum"),
                    (9, "state"), (20, "spare")]:
        s["header-corrupt-" + name] = case("Header") + setup(capacity=w) + u8(w) + u64(1 << w)
    s["truncated-table"] = case("Truncated") + setup(capacity=4) + u32(100)
    s["truncated-inside-header"] = case("Truncated") + setup(capacity=0) + u32(17)
    s["moved-off-64-byte-boundary"] = case("Moved") + setup(capacity=5) + u8(7)
    s["garbage-over-slots"] = (case("Garbage") + setup(capacity=3)
                               + vec([u32(0) + bytes_vec(b"\xff" * 40)])
                               + vec([u16(0) + u64(0xFFFF_FFFF_FFFF_FFFF) + u64(12345)])
                               + boolean(False) + u8(0) + requests)
    s["garbage-markers-dry-run"] = (case("Garbage") + setup(capacity=2, algorithm=2)
                                    + vec([])
                                    + vec([u16(i) + u64(0x8000_0000_0000_0000 | i)
                                           + u64(2**64 - 1) for i in range(16)])
                                    + boolean(True) + u8(1) + requests)
    s["counters-garbage"] = (case("Counters") + setup(capacity=1)
                             + vec([u8(0) + u8(0) + u64(2**40), u8(1) + u8(128) + u64(7)])
                             + requests)
    return s


# --- ffi --------------------------------------------------------------------

CALLS = ["Check", "CheckKey", "Reset", "ResetKey", "Stats", "RuleStats", "RuleCount",
         "RuleName", "RuleFind", "RetryAfter", "Policy", "RateLimit", "Body", "IpParse",
         "StatusStr", "Bytes", "Now", "NullHandle"]


def b_null():
    return variant(0, 3)


def b_null_len(n):
    return variant(1, 3) + u8(n)


def b_some(data, cut=0):
    return variant(2, 3) + bytes_vec(data) + u8(cut)


def config_in(capacity=64, seed=None, ipv6=64, dry_run=0, policy=0, unknown=0, pace=0,
              algorithm=0, rules=None, rules_null_len=0, reserved=(0, 0, 0, 0)):
    return (u32(capacity) + (b_some(seed) if seed is not None else b_null()) + u8(ipv6)
            + u8(dry_run) + u8(policy) + u8(unknown) + u8(pace) + u8(algorithm)
            + option(None if rules is None else vec(rules)) + u8(rules_null_len)
            + b"".join(u64(r) for r in reserved))


def maybe_config(c, null=False):
    return u8(0 if null else 1) + c


def rule_in(name, api, scope, kind, routes, limit, period_ns, burst=0, algorithm=0):
    return (b_some(name) + u32(api) + u8(scope) + u8(kind)
            + option(vec([b_some(m) + b_some(p) for m, p in routes]))
            + u32(limit) + u64(period_ns) + u32(burst) + u8(algorithm) + u64(0) + u64(0))


def request_in(api, method, path, ip=None, key=None, tenant=None, cost=1):
    f = lambda v: b_null() if v is None else b_some(v)  # noqa: E731
    return u32(api) + f(method) + f(path) + f(ip) + f(key) + f(tenant) + u32(cost)


def call(name, *parts):
    return variant(CALLS.index(name), len(CALLS)) + b"".join(parts)


def buf(null, n):
    return boolean(null) + u8(n)


WHICH_LAST = variant(0, 3)


def make_new(c):
    return variant(0, 2) + c


def make_init(c, offset=0, short=0, attach=None):
    a = variant(0, 3) if attach is None else attach
    return variant(1, 2) + c + u8(offset) + u8(short) + a


def ffi_input(make, calls):
    return make + vec(calls)


def ffi_seeds():
    T0 = u64(1_000_000 * 10**9)
    seed16 = bytes(range(16))
    sign_in = request_in(1, b"POST", b"/v1/client/sign_ins", ip=bytes([192, 0, 2, 1]))
    user = request_in(2, b"PATCH", b"/v1/users/user_1", key=b"Bearer sk_live_AAAA")
    writers = [
        call("RetryAfter", WHICH_LAST, buf(False, 1), boolean(False)),
        call("Policy", WHICH_LAST, buf(False, 8), boolean(False)),
        call("RateLimit", WHICH_LAST, buf(False, 120), boolean(False)),
        call("Body", buf(False, 10), boolean(False)),
        call("Body", buf(True, 0), boolean(False)),
    ]
    check = lambda r, peek=False: call("Check", option(r), T0, boolean(False), boolean(peek))  # noqa: E731
    s = {}
    s["new-clerk-sign-in-then-headers"] = ffi_input(
        make_new(maybe_config(config_in(seed=seed16))),
        [check(sign_in)] * 6 + writers + [call("Stats", boolean(False))])
    s["new-backend-user-update"] = ffi_input(
        make_new(maybe_config(config_in(capacity=16, seed=seed16, policy=1))),
        [check(user), check(user, peek=True),
         call("Reset", option(user), boolean(False)),
         call("RuleName", u32(11)), call("RuleCount", boolean(False))] + writers)
    s["null-arguments-everywhere"] = ffi_input(
        make_new(maybe_config(config_in(seed=seed16))),
        [call("Check", option(None), T0, boolean(False), boolean(False)),
         call("Check", option(sign_in), T0, boolean(True), boolean(False)),
         call("Check", option(request_in(1, None, None)), T0, boolean(False), boolean(False)),
         call("Check", option(request_in(1, b"POST", b"/v1/sign_ins", ip=b"\x01\x02\x03")),
              T0, boolean(False), boolean(False)),
         call("CheckKey", u32(0), b_null_len(3), u32(1), T0, boolean(False), boolean(False)),
         call("RuleFind", b_null_len(1), boolean(False)),
         call("IpParse", b_some(b"::ffff:192.0.2.1"), boolean(False), boolean(False)),
         call("IpParse", b_some(b"[2001:db8::1]"), boolean(True), boolean(False)),
         call("StatusStr", u32(99)),
         call("Bytes", u32(0)),
         call("Now", boolean(True)),
         call("NullHandle", T0),
         call("RetryAfter", variant(2, 3), buf(False, 4), boolean(False)),
         call("RetryAfter", WHICH_LAST, buf(True, 5), boolean(False))])
    s["init-and-attach-shared-memory"] = ffi_input(
        make_init(maybe_config(config_in(capacity=8, seed=seed16)), attach=variant(1, 3)),
        [check(sign_in), check(sign_in), call("Stats", boolean(False)),
         call("RuleStats", u32(0), boolean(False), boolean(False))])
    s["init-misaligned-and-short"] = ffi_input(
        make_init(maybe_config(config_in(capacity=8)), offset=5, short=1), [])
    s["attach-with-custom-rules"] = ffi_input(
        make_init(maybe_config(config_in(capacity=8, seed=seed16, rules=[
            rule_in(b"api.orders", 2, 2, 0, [(b"POST", b"/v1/orders/{id}/items/*")], 3, 10**9),
            rule_in(b"api.free", 2, 1, 0, [(b"", b"/health")], 0, 0),
        ])), attach=variant(2, 3) + option(config_in(rules=[
            rule_in(b"api.orders", 2, 2, 0, [(b"POST", b"/v1/orders/{id}/items/*")], 3, 10**9),
            rule_in(b"api.free", 2, 1, 0, [(b"", b"/health")], 0, 0),
        ]))),
        [check(request_in(2, b"POST", b"/v1/orders/o1/items/x", key=b"k"))] * 4 + writers
        + [call("RuleFind", b_some(b"api.free"), boolean(False))])
    s["custom-rules-invalid"] = ffi_input(
        make_new(maybe_config(config_in(rules=[
            rule_in(b"bad name", 3, 9, 9, [(b"FETCH", b"no-slash{")], 1, 0, algorithm=7),
        ], reserved=(0, 0, 0, 1)))), [])
    s["decision-forged-for-writers"] = ffi_input(
        make_new(maybe_config(config_in(seed=seed16))),
        [call("Policy", variant(1, 3) + u8(0) + u8(2) + u8(0) + u8(1) + u32(2**32 - 2)
              + u32(5) + u32(4) + u64(2**64 - 1) + u64(2**64 - 1) + u32(2**32 - 1)
              + u64(2**64 - 1), buf(False, 199), boolean(False)),
         call("RateLimit", variant(1, 3) + u8(1) + u8(0) + u8(0) + u8(0) + u32(63)
              + u32(5) + u32(4) + u64(10**9 + 1) + u64(0) + u32(0) + u64(1 << 63),
              buf(False, 199), boolean(False))])
    return s


# --- remote_encode ------------------------------------------------------------
# Input { prefix: Vec<u8>, hashtag: u64, rules: Vec<RuleIn>, cost: u32,
#         peek: bool, clock: Option<(u64, u32)>, cut: u16 }
# RuleIn { tag: u64, window: bool, limit: u32, period: u64, burst: u32 }
# `period` below 2^20 counts whole seconds.

def remote_rule(tag, window, limit, period, burst=0):
    return u64(tag) + boolean(window) + u32(limit) + u64(period) + u32(burst)


def remote_call(rules, prefix=b"rc:", hashtag=7, cost=1, peek=False, clock=None, cut=5):
    c = None if clock is None else u64(clock[0]) + u32(clock[1])
    return (bytes_vec(prefix) + u64(hashtag) + vec(rules) + u32(cost) + boolean(peek)
            + option(c) + u16(cut))


def remote_encode_seeds():
    sign_in = remote_rule(5, False, 5, 10)
    return {
        "sign-in-server-clock": remote_call([sign_in]),
        "patch-user-two-rules-gateway-clock": remote_call(
            [remote_rule(1, False, 1000, 10), remote_rule(2, False, 10, 10)],
            clock=(1_700_000_000, 5), peek=True, cost=2),
        "window-per-hour-and-pace": remote_call(
            [remote_rule(9, True, 100, 3600), remote_rule(10, False, 3, 10, burst=1)],
            hashtag=2**64 - 1),
        "largest-values": remote_call(
            [remote_rule(2**64 - 1, False, 2**32 - 1, 2**32 - 1, 2**32 - 1),
             remote_rule(0, True, 2**32 - 1, 2**51 // 1000 * 1000)],
            prefix=b"p" * 64, hashtag=2**64 - 1, cost=2**32 - 1,
            clock=(4_000_000_000, 999_999_999), cut=2**16 - 1),
        "refused-prefix-with-brace": remote_call([sign_in], prefix=b"a{b"),
        "refused-cost-zero": remote_call([sign_in], cost=0),
        "refused-clock-nanos": remote_call([sign_in], clock=(1, 1_000_000_000)),
        "refused-window-not-whole-us": remote_call(
            [sign_in, remote_rule(3, True, 5, 1_500_000_007)]),
        "refused-span-too-long": remote_call([remote_rule(4, False, 1, 2**52, 2)]),
        "refused-unlimited": remote_call([remote_rule(4, False, 0, 10)]),
        "refused-no-rules": remote_call([]),
    }


# --- remote_reply -------------------------------------------------------------
# The first byte is the call's rule count (mod 8), the rest the reply.

def ints(*vals):
    return b"*%d\r\n" % len(vals) + b"".join(b":%d\r\n" % v for v in vals)


def remote_reply_seeds():
    return {
        "one-rule-allowed": u8(1) + ints(1, 1, 1, 4, 2_000_000_000, 0),
        "two-rules-one-denied": u8(2) + ints(1, 0, 1, 998, 20_000_000, 0,
                                              0, 0, 10_000_000_000, 999_999_999),
        "never-fits-peek": u8(1) + ints(1, 0, 2, 5, 0, 0),
        "four-rules": u8(4) + ints(1, 1, *([1, 0, 3_600_000_000_000, 0] * 4)),
        "noscript": u8(1) + b"-NOSCRIPT No matching script. Please use EVAL.\r\n",
        "moved": u8(2) + b"-MOVED 3999 127.0.0.1:6381\r\n",
        "ask": u8(2) + b"-ASK 16383 [::1]:7000\r\n",
        "badstate": u8(2) + b"-RATECARD BADSTATE 2\r\n",
        "badstate-wrapped": u8(1) + b"-ERR RATECARD BADSTATE 1\r\n",
        "wrongtype": u8(1) + b"-WRONGTYPE Operation against a key holding the wrong kind of "
                             b"value script: 0123, on @user_script:95.\r\n",
        "resp3-blob-error": u8(1) + b"!22\r\nNOSCRIPT no such thing\r\n",
        "wrong-count": u8(3) + ints(1, 0, 1, 4, 2_000_000_000, 0),
        "not-an-array": u8(1) + b"$5\r\nhello\r\n",
        "nested-and-map": u8(1) + b"*6\r\n:1\r\n%1\r\n+a\r\n*1\r\n:1\r\n:1\r\n:1\r\n:1\r\n:1\r\n",
        "pipelined-two-replies": u8(1) + ints(1, 0, 0, 0, 5, 5) + ints(1, 1, 1, 0, 5, 0),
    }


def write(target, seeds):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, "seed-" + name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    write("engine", engine_seeds())
    write("table_memory", table_memory_seeds())
    write("ffi", ffi_seeds())
    write("remote_encode", remote_encode_seeds())
    write("remote_reply", remote_reply_seeds())
