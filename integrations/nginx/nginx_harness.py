"""Starts, reloads and stops a Debian nginx in a temporary prefix, by pid.

Shared by test.py and bench.py. Everything listens on loopback only.
"""

import http.client
import os
import signal
import socket
import subprocess
import time

NGINX = os.environ.get("NGINX", "/usr/sbin/nginx")


def free_port():
    """A TCP port free on 127.0.0.1 (and on ::1 when it exists)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not has_ipv6():
            return port
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
                s.bind(("::1", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port")


_ipv6 = None


def has_ipv6():
    global _ipv6
    if _ipv6 is None:
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
                s.bind(("::1", 0))
            _ipv6 = True
        except OSError:
            _ipv6 = False
    return _ipv6


def _children(pid):
    """Pids whose parent is pid (a scan of /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # the command sits in parentheses and may hold spaces
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[1]) == pid:
            out.append(int(entry))
    return sorted(out)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False


class Nginx:
    """One nginx master in prefix `tmp`, with `workers` worker processes."""

    def __init__(self, tmp, conf_text, workers=2):
        self.tmp = tmp
        self.workers = workers
        self.conf = os.path.join(tmp, "nginx.conf")
        self.pidfile = os.path.join(tmp, "nginx.pid")
        self.error_log = os.path.join(tmp, "error.log")
        for d in ("logs", "html", "temp"):
            os.makedirs(os.path.join(tmp, d), exist_ok=True)
        self.write_conf(conf_text)
        self.pid = None

    def write_conf(self, text):
        with open(self.conf, "w") as f:
            f.write(text)

    def start(self, timeout=10.0):
        cmd = [NGINX, "-p", self.tmp + "/", "-c", self.conf,
               "-g", f"pid {self.pidfile};"]
        subprocess.run(cmd, check=True, capture_output=True, timeout=timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(self.pidfile) as f:
                    self.pid = int(f.read().strip())
                break
            except (OSError, ValueError):
                time.sleep(0.05)
        if self.pid is None:
            raise RuntimeError("nginx wrote no pid file")
        return self.wait_workers(set(), timeout)

    def workers_now(self):
        return set(_children(self.pid)) if self.pid else set()

    def wait_workers(self, old, timeout=10.0):
        """Waits until `workers` workers run and none of `old` is left."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = self.workers_now()
            if len(now) == self.workers and not (now & old):
                return now
            time.sleep(0.05)
        raise RuntimeError(f"workers did not settle: {self.workers_now()} (old {old})")

    def reload(self, timeout=15.0):
        """SIGHUP to the master; returns once only new workers are left."""
        old = self.workers_now()
        os.kill(self.pid, signal.SIGHUP)
        return self.wait_workers(old, timeout)

    def stop(self, timeout=10.0):
        if not self.pid or not _alive(self.pid):
            return
        for sig, wait in ((signal.SIGQUIT, timeout), (signal.SIGTERM, 5.0),
                          (signal.SIGKILL, 5.0)):
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if not _alive(self.pid):
                    return
                time.sleep(0.05)

    def log_text(self):
        try:
            with open(self.error_log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-case name -> list of values
        self.body = body

    def header(self, name, default=None):
        values = self.headers.get(name.lower())
        return values[0] if values else default


def request(port, method, path, headers=None, host="127.0.0.1", body=None,
            conn=None, timeout=10.0):
    """One request; on a new connection unless `conn` is given."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        # skip_host: http.client would put "[::1]:port" itself; a fixed Host is simpler
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", "test.local")
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if body is not None or method in ("POST", "PUT", "PATCH"):
            data = body or b""
            conn.putheader("Content-Length", str(len(data)))
            conn.endheaders(data)
        else:
            conn.endheaders()
        resp = conn.getresponse()
        data = resp.read()
        hdrs = {}
        for k, v in resp.getheaders():
            hdrs.setdefault(k.lower(), []).append(v)
        return Response(resp.status, hdrs, data)
    finally:
        if own:
            conn.close()


REDIS_SERVER = os.environ.get("REDIS_SERVER", "redis-server")


class Redis:
    """A redis-server on 127.0.0.1 (and a unix socket) in directory `tmp`,
    started and stopped by pid; `start` again after `stop` keeps the port."""

    def __init__(self, tmp, port=None):
        self.tmp = tmp
        self.port = port or free_port()
        self.socket = os.path.join(tmp, "redis.sock")
        self.log = os.path.join(tmp, "redis.log")
        self.proc = None
        os.makedirs(tmp, exist_ok=True)

    def start(self, timeout=10.0):
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
             "--unixsocket", self.socket, "--unixsocketperm", "777",
             "--save", "", "--appendonly", "no", "--dir", self.tmp,
             "--logfile", self.log, "--daemonize", "no",
             "--pidfile", os.path.join(self.tmp, "redis.pid"),
             "--enable-debug-command", "local"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            try:
                if self.cmd("PING") == "PONG":
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not answer PING")

    def stop(self, timeout=10.0):
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            self.proc.send_signal(sig)
            try:
                self.proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def cmd(self, *args, timeout=10.0):
        """One command on a new connection; the reply as Python values."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            out = b"*%d\r\n" % len(args)
            for a in args:
                a = a if isinstance(a, bytes) else str(a).encode()
                out += b"$%d\r\n%s\r\n" % (len(a), a)
            s.sendall(out)
            return _resp(s.makefile("rb"))


def _resp(f):
    """One RESP2 value from file `f`."""
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise OSError("connection closed mid-reply")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp(f) for _ in range(n)]
    raise OSError(f"not RESP: {line!r}")
