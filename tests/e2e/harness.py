"""End-to-end test harness for arcad (Python 3 stdlib only).

ArcaServer starts the real `arcad` binary on 127.0.0.1 with port 0 in a fresh
temporary data directory, waits for DATA/arcad.port and offers small helpers
for HTTP requests (http.client), raw sockets (malformed input, pipelining) and
process control (SIGTERM, SIGKILL, restart, peak RSS).

The binary is $ARCAD, or ../../build/server/arcad relative to this file.
Set ARCA_E2E_KEEP=1 to keep data directories after the tests.

Credentials: ArcaServer.request() (and get/head/put/...) sends the admin
token (DATA/admin.token) as a Bearer token on every request by default; pass
auth=None for no credential, token=... for another token, or an explicit
Authorization header.  Raw requests (RawConn) carry only what the test writes:
use srv.auth_line() for the admin token's header line.
"""

import base64
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ARCAD = os.environ.get("ARCAD") or os.path.normpath(
    os.path.join(HERE, "..", "..", "build", "server", "arcad"))

HOST = "127.0.0.1"


# --------------------------------------------------------------------------
# Small helpers


def sha256_hex(b):
    return hashlib.sha256(b).hexdigest()


def sha1_hex(b):
    return hashlib.sha1(b).hexdigest()


def md5_hex(b):
    return hashlib.md5(b).hexdigest()


def b64(digest_bytes):
    return base64.b64encode(digest_bytes).decode()


def content_digest_sha256(b):
    return "sha-256=:%s:" % b64(hashlib.sha256(b).digest())


def bearer(token):
    return {"Authorization": "Bearer " + token}


def basic(user, token):
    """HTTP Basic with the token as the password (the user name is ignored)."""
    return {"Authorization": "Basic " + base64.b64encode(
        ("%s:%s" % (user, token)).encode()).decode()}


class Response:
    """A response: status, headers (lower-case keys; repeated headers joined
    with ', '), body bytes.  Unpacks as (status, headers, body)."""

    def __init__(self, status, headers, body, reason=""):
        self.status = status
        self.headers = headers
        self.body = body
        self.reason = reason

    def __iter__(self):
        return iter((self.status, self.headers, self.body))

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except Exception as e:  # pragma: no cover - shown in failures
            raise AssertionError("body is not JSON (%s): %r" % (e, self.body[:500]))

    @property
    def error_code(self):
        """error.code of an error body, or None if the body is not an error JSON."""
        try:
            j = json.loads(self.body.decode("utf-8"))
            return j["error"]["code"]
        except Exception:
            return None

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def __repr__(self):
        return "Response(%d %s, %r, %r)" % (self.status, self.reason, self.headers,
                                            self.body[:300])


def _headers_from_list(pairs):
    h = {}
    for k, v in pairs:
        k = k.lower()
        if k in h:
            h[k] = h[k] + ", " + v
        else:
            h[k] = v
    return h


class RawConn:
    """A raw TCP connection with a tiny HTTP/1.1 response reader."""

    def __init__(self, port, timeout=10.0, source=None):
        self.sock = socket.create_connection((HOST, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False

    def settimeout(self, t):
        self.sock.settimeout(t)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def _fill(self):
        if self.eof:
            raise EOFError("connection closed by server")
        d = self.sock.recv(1 << 20)
        if not d:
            self.eof = True
            raise EOFError("connection closed by server")
        self.buf += d

    def _read_until(self, sep):
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[:i + len(sep)]
                return out
            self._fill()

    def _read_n(self, n):
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_head(self):
        """Reads a status line and header block: (status, reason, headers)."""
        head = self._read_until(b"\r\n\r\n").decode("latin-1")
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise AssertionError("bad status line: %r" % lines[0])
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        pairs = []
        for ln in lines[1:]:
            if ":" not in ln:
                raise AssertionError("bad header line: %r" % ln)
            k, v = ln.split(":", 1)
            pairs.append((k.strip(), v.strip()))
        return status, reason, _headers_from_list(pairs)

    def read_response(self, head=False, allow_short=False):
        """Reads one response (skipping nothing: a 1xx is returned as is).

        head=True: the request was HEAD (no body).  allow_short=True: if the
        connection closes before Content-Length bytes arrived, return what
        came (Response.short is then True) instead of raising."""
        status, reason, h = self.read_head()
        body = b""
        short = False
        if head or 100 <= status < 200 or status in (204, 304):
            pass
        elif "chunked" in h.get("transfer-encoding", "").lower():
            chunks = []
            while True:
                line = self._read_until(b"\r\n").decode("latin-1")
                size = int(line.split(";")[0].strip(), 16)
                if size == 0:
                    # trailers
                    while self._read_until(b"\r\n") != b"":
                        pass
                    break
                chunks.append(self._read_n(size))
                self._read_n(2)
            body = b"".join(chunks)
        elif "content-length" in h:
            n = int(h["content-length"])
            if allow_short:
                try:
                    while len(self.buf) < n:
                        self._fill()
                except (EOFError, ConnectionError, socket.timeout):
                    short = True
                k = min(n, len(self.buf))
                body = bytes(self.buf[:k])
                del self.buf[:k]
            else:
                body = self._read_n(n)
        else:
            # read until close
            try:
                while True:
                    self._fill()
            except EOFError:
                pass
            body = bytes(self.buf)
            self.buf.clear()
        r = Response(status, h, body, reason)
        r.short = short
        return r

    def read_final(self, head=False):
        """Reads responses until a non-1xx one; returns (list_of_1xx, final)."""
        interim = []
        while True:
            r = self.read_response(head=head)
            if 100 <= r.status < 200:
                interim.append(r)
                continue
            return interim, r

    def closed_within(self, timeout):
        """True if the server closes (EOF or reset) within timeout seconds.
        Any data received meanwhile is kept in self.buf."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.sock.settimeout(left)
                try:
                    self._fill()
                except socket.timeout:
                    return False
        except EOFError:
            return True
        except ConnectionError:
            return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


# --------------------------------------------------------------------------
# The server


class ArcaServer:
    """Runs arcad in a temp data dir.  Use as a context manager."""

    def __init__(self, config=None, extra_args=(), data=None, start_timeout=10.0):
        self.config_text = config
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self._own_data = data is None
        self.data = data or tempfile.mkdtemp(prefix="arca-e2e-")
        self.config_path = None
        if config is not None:
            self.config_path = os.path.join(self.data, "arcad.conf")
            with open(self.config_path, "w") as f:
                f.write(config)
        self.log_path = os.path.join(self.data, "arcad.stderr")
        self.proc = None
        self.port = None
        self._log = None
        self._token = None
        self.source = None  # default local address for request()/conn() (None: any)
        self.exit_codes = []  # every exit code seen (stop/kill/restart)

    # -- lifecycle ---------------------------------------------------------

    def command(self):
        cmd = [ARCAD, "--listen", "%s:0" % HOST, "--data", self.data]
        if self.config_path:
            cmd += ["--config", self.config_path]
        return cmd + self.extra_args

    def start(self):
        if not os.path.exists(ARCAD):
            raise AssertionError("arcad binary not found at %s (set ARCAD)" % ARCAD)
        port_file = os.path.join(self.data, "arcad.port")
        try:
            os.unlink(port_file)
        except FileNotFoundError:
            pass
        self._log = open(self.log_path, "ab")
        self._log.write(b"\n==== harness: start %s ====\n" % " ".join(self.command()).encode())
        self._log.flush()
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=self._log)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self.proc = None
                raise AssertionError("arcad exited with %s during startup; log:\n%s"
                                     % (rc, self.log_tail()))
            try:
                with open(port_file) as f:
                    txt = f.read().strip()
                if txt:
                    self.port = int(txt)
                    if 0 < self.port < 65536:
                        break
            except (FileNotFoundError, ValueError):
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError("arcad did not write %s within %.0f s; log:\n%s"
                                     % (port_file, self.start_timeout, self.log_tail()))
            time.sleep(0.02)
        return self

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def assert_alive(self):
        if not self.alive():
            rc = self.proc.returncode if self.proc else None
            raise AssertionError("arcad is not running (exit %s); log:\n%s"
                                 % (rc, self.log_tail()))

    def stop(self, sig=signal.SIGTERM, timeout=60.0):
        """Sends sig and waits for exit; returns the exit code (negative = signal).
        Raises if the process is still alive after timeout (it is then killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._close_log()
                self.proc = None
                raise AssertionError("arcad did not exit within %.0f s of signal %s; log:\n%s"
                                     % (timeout, sig, self.log_tail()))
        rc = self.proc.returncode
        self.exit_codes.append(rc)
        self.proc = None
        self._close_log()
        return rc

    def kill(self):
        return self.stop(signal.SIGKILL, timeout=30.0)

    def restart(self, sig=signal.SIGTERM):
        if self.alive():
            self.stop(sig)
        self.proc = None
        return self.start()

    def _close_log(self):
        if self._log:
            self._log.close()
            self._log = None

    def cleanup(self):
        if self.proc is not None:
            try:
                self.kill()
            except Exception:
                pass
        self._close_log()
        if self._own_data and not os.environ.get("ARCA_E2E_KEEP"):
            shutil.rmtree(self.data, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc):
        self.cleanup()

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=6000):
        return self.log_text()[-n:]

    def rss_peak(self):
        """VmHWM of the running server, in bytes."""
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM in /proc/%d/status" % self.pid)

    def rss_now(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    # -- paths ---------------------------------------------------------------

    @property
    def blobs_dir(self):
        return os.path.join(self.data, "blobs")

    @property
    def tmp_dir(self):
        return os.path.join(self.data, "blobs", "tmp")

    def blob_path(self, sha):
        return os.path.join(self.data, "blobs", sha[:2], sha[2:4], sha)

    def tmp_files(self):
        try:
            return sorted(os.listdir(self.tmp_dir))
        except FileNotFoundError:
            return []

    def blob_files(self):
        """[(path, name)] of every file under DATA/blobs/<aa>/<bb>/."""
        out = []
        root = self.blobs_dir
        if not os.path.isdir(root):
            return out
        for a in sorted(os.listdir(root)):
            pa = os.path.join(root, a)
            if a == "tmp" or not os.path.isdir(pa):
                continue
            for b in sorted(os.listdir(pa)):
                pb = os.path.join(pa, b)
                if not os.path.isdir(pb):
                    continue
                for n in sorted(os.listdir(pb)):
                    out.append((os.path.join(pb, n), n))
        return out

    # -- HTTP ----------------------------------------------------------------

    def url(self, path):
        return "http://%s:%d%s" % (HOST, self.port, path)

    @property
    def token(self):
        """The admin token (DATA/admin.token), read once."""
        if self._token is None:
            with open(os.path.join(self.data, "admin.token")) as f:
                self._token = f.read().strip()
        return self._token

    def auth_headers(self, token=None):
        """{"Authorization": "Bearer <token>"} (the admin token by default), or
        {} if there is no admin token yet."""
        try:
            return bearer(token if token is not None else self.token)
        except FileNotFoundError:
            return {}

    def auth_line(self, token=None):
        """The admin token (or token) as a raw header line for RawConn requests."""
        return "Authorization: Bearer %s\r\n" % (token if token is not None else self.token)

    def request(self, method, path, body=None, headers=None, timeout=60.0, auth=True,
                token=None, source=None):
        """One request on a fresh connection.  body: bytes, or an iterable of
        bytes (sent chunked unless headers carry Content-Length).  Returns a
        Response (unpacks as (status, headers, body)).

        Credentials: every request carries the admin token as a Bearer token,
        unless headers already hold an Authorization header (sent as is),
        token="..." is given (that token, as Bearer), or auth is None/False
        (no credential at all).  source: a local address to connect from
        (e.g. "127.0.0.2", for per-address limits; default self.source)."""
        hdrs = dict(headers or {})
        if not any(k.lower() == "authorization" for k in hdrs):
            if token is not None:
                hdrs.update(bearer(token))
            elif auth:
                hdrs.update(self.auth_headers())
        source = source or self.source
        conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout,
                                          source_address=(source, 0) if source else None)
        try:
            if body is None or isinstance(body, (bytes, bytearray, memoryview)):
                conn.request(method, path, body=body, headers=hdrs)
            else:
                has_len = any(k.lower() == "content-length" for k in hdrs)
                conn.putrequest(method, path, skip_accept_encoding=True)
                for k, v in hdrs.items():
                    conn.putheader(k, v)
                if not has_len:
                    conn.putheader("Transfer-Encoding", "chunked")
                conn.endheaders()
                for chunk in body:
                    if not chunk:
                        continue
                    if has_len:
                        conn.send(chunk)
                    else:
                        conn.send(b"%x\r\n" % len(chunk) + bytes(chunk) + b"\r\n")
                if not has_len:
                    conn.send(b"0\r\n\r\n")
            resp = conn.getresponse()
            data = resp.read()
            return Response(resp.status, _headers_from_list(resp.getheaders()), data,
                            resp.reason)
        finally:
            conn.close()

    def get(self, path, headers=None, **kw):
        return self.request("GET", path, headers=headers, **kw)

    def head(self, path, headers=None, **kw):
        return self.request("HEAD", path, headers=headers, **kw)

    def put(self, path, body=b"", headers=None, **kw):
        return self.request("PUT", path, body=body, headers=headers, **kw)

    def post_json(self, path, obj, **kw):
        """POST obj as JSON (obj may be bytes: sent as is)."""
        body = obj if isinstance(obj, (bytes, bytearray)) else json.dumps(obj).encode()
        return self.request("POST", path, body=body,
                            headers={"Content-Type": "application/json"}, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def json(self, path, **kw):
        r = self.get(path, **kw)
        if r.status != 200:
            raise AssertionError("GET %s -> %d %r" % (path, r.status, r.body[:300]))
        return r.json()

    def storage(self):
        return self.json("/api/v1/storage")

    def raw(self, data, timeout=5.0):
        """Sends data on a fresh connection and reads until the server closes
        or timeout passes; returns the bytes received."""
        with RawConn(self.port, timeout=timeout, source=self.source) as c:
            c.send(data)
            c.closed_within(timeout)
            return bytes(c.buf)

    def conn(self, timeout=10.0, source=None):
        return RawConn(self.port, timeout=timeout, source=source or self.source)

    def raw_request(self, data, head=False, timeout=10.0):
        """Sends data on a fresh connection, returns the first final response
        (and the RawConn is closed)."""
        with RawConn(self.port, timeout=timeout, source=self.source) as c:
            c.send(data)
            _, r = c.read_final(head=head)
            return r

    # -- CLI -----------------------------------------------------------------

    def cli(self, *args, timeout=120.0):
        """Runs `arcad ARGS...` and returns CompletedProcess (text)."""
        return subprocess.run([ARCAD] + list(args), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)

    def verify(self, timeout=300.0):
        args = ["verify", "--data", self.data]
        if self.config_path:
            args += ["--config", self.config_path]
        return self.cli(*args, timeout=timeout)


def run_arcad(args, timeout=30.0):
    return subprocess.run([ARCAD] + list(args), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------
# Assertions shared by the test files


class ArcaTestMixin:
    """Assertion helpers; mix into unittest.TestCase.  Expects self.srv."""

    def assertError(self, r, status, code=None, msg=None):
        """r has the status, an X-Request-Id and (if code) a JSON error with code."""
        ctx = "%s\n%r" % (msg or "", r)
        self.assertEqual(r.status, status, ctx)
        self.assertTrue(r.header("x-request-id"), "no X-Request-Id on error response " + ctx)
        if code is not None:
            self.assertIn("application/json", r.header("content-type", ""), ctx)
            j = r.json()
            self.assertIsInstance(j.get("error"), dict, ctx)
            if isinstance(code, (tuple, list, set)):
                self.assertIn(j["error"].get("code"), code, ctx)
            else:
                self.assertEqual(j["error"].get("code"), code, ctx)
            self.assertIsInstance(j["error"].get("message"), str, ctx)
        return r

    def assertStored(self, path, data, srv=None):
        srv = srv or self.srv
        r = srv.get(path)
        self.assertEqual(r.status, 200, "GET %s: %r" % (path, r))
        self.assertEqual(len(r.body), len(data), "GET %s length" % path)
        self.assertTrue(r.body == data, "GET %s: body differs from upload" % path)
        self.assertEqual(r.header("etag"), '"%s"' % sha256_hex(data))
        return r

    def assertNotStored(self, path, srv=None):
        srv = srv or self.srv
        r = srv.get(path)
        self.assertEqual(r.status, 404, "GET %s should be 404: %r" % (path, r))
        self.assertEqual(r.error_code, "not_found", repr(r))

    def assertServing(self, srv=None):
        """The server still answers a good request: PUT+GET of a fresh coordinate."""
        srv = srv or self.srv
        srv.assert_alive()
        self.assertEqual(srv.get("/healthz").status, 200)
        n = getattr(self, "_serving_n", 0) + 1
        self._serving_n = n
        data = os.urandom(100 + n)
        path = "/repos/sanity/check/%s/ok.bin" % os.urandom(6).hex()
        r = srv.put(path, data)
        self.assertEqual(r.status, 201, "server no longer stores good uploads: %r" % r)
        self.assertStored(path, data, srv)

    def assertStorageUnchanged(self, before, srv=None, msg=""):
        srv = srv or self.srv
        after = srv.storage()
        for k in ("blob_count", "stored_bytes", "artifact_count", "logical_bytes"):
            self.assertEqual(after.get(k), before.get(k),
                             "storage %s changed: %r -> %r %s" % (k, before, after, msg))


class ServerTestCase(ArcaTestMixin, unittest.TestCase):
    """One arcad per test class (config from CONFIG).  If a test kills the
    server (a crash is reported by that test's tearDown), the next test starts
    a fresh one on the same data dir so that later results stay meaningful."""

    CONFIG = None

    @classmethod
    def setUpClass(cls):
        cls.srv = ArcaServer(config=cls.CONFIG).__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.srv.__exit__(None, None, None)

    def setUp(self):
        if not self.srv.alive():
            if self.srv.proc is not None:
                self.srv.exit_codes.append(self.srv.proc.returncode)
            self.srv.proc = None
            self.srv.start()

    def tearDown(self):
        self.srv.assert_alive()
