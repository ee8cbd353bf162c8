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
import ssl
import tempfile
import threading
import time
import unittest
import urllib.parse

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


def send_request(conn, method, path, body, headers):
    """Sends one request on an http.client connection (plain or TLS) and reads
    the answer.  body: None, bytes, or an iterable of bytes (sent chunked
    unless headers carry Content-Length).  Returns a Response."""
    if body is None or isinstance(body, (bytes, bytearray, memoryview)):
        conn.request(method, path, body=body, headers=headers)
    else:
        has_len = any(k.lower() == "content-length" for k in headers)
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in headers.items():
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
    return Response(resp.status, _headers_from_list(resp.getheaders()), data, resp.reason)


# --------------------------------------------------------------------------
# Streaming big bodies without holding them (memory tests)

MiB = 1 << 20


def pattern_chunks(size, seed_blocks):
    """size bytes, 1 MiB at a time: seed block i % len(seed_blocks) with its
    first 8 bytes replaced by i, so no two MiB are alike."""
    i = 0
    sent = 0
    while sent < size:
        n = min(MiB, size - sent)
        blk = seed_blocks[i % len(seed_blocks)]
        yield (i.to_bytes(8, "little") + blk[8:])[:n]
        sent += n
        i += 1


def stream_upload(conn, path, size, seed_blocks, headers=None, chunked=False):
    """PUTs pattern_chunks(size, seed_blocks) on conn (http.client, plain or
    TLS) with Content-Length, or chunked.  Returns (status, body bytes,
    sha256 hex of what was sent, seconds)."""
    h = hashlib.sha256()
    t0 = time.monotonic()
    conn.putrequest("PUT", path)
    if chunked:
        conn.putheader("Transfer-Encoding", "chunked")
    else:
        conn.putheader("Content-Length", str(size))
    for k, v in (headers or {}).items():
        conn.putheader(k, v)
    conn.endheaders()
    for c in pattern_chunks(size, seed_blocks):
        h.update(c)
        if chunked:
            conn.send(b"%x\r\n" % len(c))
            conn.send(c)
            conn.send(b"\r\n")
        else:
            conn.send(c)
    if chunked:
        conn.send(b"0\r\n\r\n")
    resp = conn.getresponse()
    body = resp.read()
    return resp.status, body, h.hexdigest(), time.monotonic() - t0


def stream_download(conn, path, headers=None, stall=0.0):
    """GETs path on conn, sleeps stall seconds after the headers (a slow
    reader), then reads and hashes the body 1 MiB at a time.  Returns
    (response, bytes read, sha256 hex, seconds); the response's headers are
    valid, its body consumed."""
    t0 = time.monotonic()
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    if stall:
        time.sleep(stall)
    d = hashlib.sha256()
    n = 0
    while True:
        c = resp.read(MiB)
        if not c:
            break
        d.update(c)
        n += len(c)
    return resp, n, d.hexdigest(), time.monotonic() - t0


class RssSampler:
    """Samples the server's VmRSS every 0.1 s in a thread while in use:
    `with RssSampler(srv) as s: ...`, then s.max (bytes)."""

    def __init__(self, srv, every=0.1):
        self.srv = srv
        self.every = every
        self.samples = []
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.samples.append(self.srv.rss_now())
            except Exception:
                pass
            time.sleep(self.every)

    def __enter__(self):
        self._th.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._th.join(5)

    @property
    def max(self):
        return max(self.samples or [0])


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

    def port_files(self):
        """{attribute: file in DATA} of the port files start() waits for; each
        file's port is set as that attribute."""
        return {"port": "arcad.port"}

    @staticmethod
    def _read_port(path):
        try:
            with open(path) as f:
                p = int(f.read().strip())
            return p if 0 < p < 65536 else None
        except (FileNotFoundError, ValueError):
            return None

    def start(self):
        if not os.path.exists(ARCAD):
            raise AssertionError("arcad binary not found at %s (set ARCAD)" % ARCAD)
        files = {attr: os.path.join(self.data, name) for attr, name in self.port_files().items()}
        for attr, path in files.items():
            setattr(self, attr, None)
            try:
                os.unlink(path)
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
            ports = {attr: self._read_port(path) for attr, path in files.items()}
            if all(ports.values()):
                for attr, port in ports.items():
                    setattr(self, attr, port)
                break
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError("arcad did not write %s within %.0f s; log:\n%s"
                                     % (" and ".join(files.values()), self.start_timeout,
                                        self.log_tail()))
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
        return os.path.join(self.data, "blobs", sha[:2], sha)

    def tmp_files(self):
        try:
            return sorted(os.listdir(self.tmp_dir))
        except FileNotFoundError:
            return []

    def blob_files(self):
        """[(path, name)] of every file under DATA/blobs/<aa>/ (the 256 shard directories)."""
        out = []
        root = self.blobs_dir
        if not os.path.isdir(root):
            return out
        for a in sorted(os.listdir(root)):
            pa = os.path.join(root, a)
            if len(a) != 2 or not os.path.isdir(pa):  # not tmp/, partial/
                continue
            for n in sorted(os.listdir(pa)):
                out.append((os.path.join(pa, n), n))
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
            return send_request(conn, method, path, body, hdrs)
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
# TLS: a test PKI (openssl CLI) and arcad with an HTTPS listener

OPENSSL = os.environ.get("OPENSSL", "openssl")


def uniq():
    return os.urandom(5).hex()


def openssl(*args, cwd=None):
    """Runs the openssl CLI; raises with its output when it fails."""
    p = subprocess.run([OPENSSL] + list(args), cwd=cwd, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError("openssl %s failed (%d):\n%s%s" % (" ".join(args), p.returncode,
                                                                 p.stdout, p.stderr))
    return p


SERVER_EXT = ("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
              "basicConstraints=critical,CA:FALSE\n"
              "keyUsage=critical,digitalSignature,keyEncipherment\n"
              "extendedKeyUsage=serverAuth\n"
              "subjectKeyIdentifier=hash\n"
              "authorityKeyIdentifier=keyid,issuer\n")

# `openssl x509 -req` cannot backdate a certificate; `openssl ca` can, with a throwaway database.
CA_CNF = ("[ca]\ndefault_ca = d\n[d]\ndatabase = %(dir)s/index.txt\nnew_certs_dir = %(dir)s\n"
          "serial = %(dir)s/serial\ndefault_md = sha256\npolicy = p\nunique_subject = no\n"
          "[p]\ncommonName = supplied\norganizationName = optional\n")


class Pki:
    """A temp dir with ca.crt/ca.key, a.crt/a.key (RSA 2048, serial 0xA001),
    b.crt/b.key (EC P-256, serial 0xB002), c.crt/c.key (EC P-256, serial 0xC003,
    issued by the intermediate int.crt; c.crt = leaf + intermediate,
    c-leaf-only.crt = the leaf alone), other-ca.crt/.key, garbage.key.
    client() issues client certificates on demand."""

    def __init__(self):
        if shutil.which(OPENSSL) is None:
            raise AssertionError("the openssl CLI is needed (apt-get install openssl)")
        self.dir = tempfile.mkdtemp(prefix="arca-e2e-pki-")
        self._serial = 0x5000
        d = self.dir
        for ca in ("ca", "other-ca"):
            openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", ca + ".key", "-out", ca + ".crt", "-days", "30",
                    "-subj", "/CN=arca e2e %s" % ca,
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
        with open(os.path.join(d, "server.ext"), "w") as f:
            f.write(SERVER_EXT)
        self._server("a", ["-newkey", "rsa:2048"], "0xA001")
        self._server("b", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], "0xB002")
        # c: a leaf signed by an intermediate CA; c.crt holds leaf + intermediate
        with open(os.path.join(d, "int.ext"), "w") as f:
            f.write("basicConstraints=critical,CA:TRUE,pathlen:0\n"
                    "keyUsage=critical,keyCertSign,cRLSign\n"
                    "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", "int.key", "-out", "int.csr", "-subj", "/CN=arca e2e intermediate",
                cwd=d)
        openssl("x509", "-req", "-in", "int.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-set_serial", "0x1111", "-days", "30", "-out", "int.crt",
                "-extfile", "int.ext", cwd=d)
        self._server("c", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], "0xC003",
                     ca="int")
        with open(os.path.join(d, "c-leaf.crt"), "rb") as f:
            leaf = f.read()
        with open(os.path.join(d, "c.crt"), "wb") as f:
            f.write(leaf + self.read("int.crt"))
        os.rename(os.path.join(d, "c-leaf.crt"), os.path.join(d, "c-leaf-only.crt"))
        with open(os.path.join(d, "garbage.key"), "wb") as f:
            f.write(b"-----BEGIN PRIVATE KEY-----\nthis is not a key\n"
                    b"-----END PRIVATE KEY-----\n")
        self.ca = self.path("ca.crt")
        self.other_ca = self.path("other-ca.crt")
        self.der = {n: ssl.PEM_cert_to_DER_cert(self.read(n + ".crt").decode()) for n in "ab"}
        self.der["c"] = ssl.PEM_cert_to_DER_cert(self.read("c-leaf-only.crt").decode())

    def _server(self, name, keyargs, serial, ca="ca"):
        openssl("req", *keyargs, "-nodes", "-keyout", name + ".key", "-out", name + ".csr",
                "-subj", "/CN=localhost/O=arca e2e cert %s" % name.upper(), cwd=self.dir)
        out = name + ".crt" if ca == "ca" else name + "-leaf.crt"
        openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
                "-set_serial", serial, "-days", "30", "-out", out,
                "-extfile", "server.ext", cwd=self.dir)

    def client(self, name, cn, ca="ca", expired=False, eku="clientAuth", key=None):
        """Issues a client certificate name.crt with key name.key (or reuses
        key.key) for subject CN cn, signed by ca (a name in this dir);
        expired=True: valid only in January 2020.  eku: the extendedKeyUsage.
        Returns the certificate's path."""
        d = self.dir
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=%s\nsubjectKeyIdentifier=hash\n"
                    "authorityKeyIdentifier=keyid,issuer\n" % eku)
        if key:
            openssl("req", "-new", "-key", key + ".key", "-out", name + ".csr",
                    "-subj", "/CN=%s/O=arca e2e client" % cn, cwd=d)
        else:
            openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", name + ".key", "-out", name + ".csr",
                    "-subj", "/CN=%s/O=arca e2e client" % cn, cwd=d)
        self._serial += 1
        if not expired:
            openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey",
                    ca + ".key", "-set_serial", hex(self._serial), "-days", "30",
                    "-out", name + ".crt", "-extfile", name + ".ext", cwd=d)
        else:
            cadir = os.path.join(d, "ca-db-" + name)
            os.mkdir(cadir)
            open(os.path.join(cadir, "index.txt"), "w").close()
            with open(os.path.join(cadir, "serial"), "w") as f:
                f.write("%X\n" % self._serial)
            with open(os.path.join(cadir, "ca.cnf"), "w") as f:
                f.write(CA_CNF % {"dir": cadir})
            openssl("ca", "-batch", "-config", os.path.join(cadir, "ca.cnf"), "-cert", ca + ".crt",
                    "-keyfile", ca + ".key", "-in", name + ".csr", "-out", name + ".crt",
                    "-startdate", "20200101000000Z", "-enddate", "20200201000000Z",
                    "-extfile", name + ".ext", "-notext", cwd=d)
        if key:
            shutil.copyfile(os.path.join(d, key + ".key"), os.path.join(d, name + ".key"))
        return self.path(name + ".crt")

    def fingerprint(self, name):
        """'sha256/' + the SHA-256 of name.crt's DER (a [tls.clients] key)."""
        der = ssl.PEM_cert_to_DER_cert(self.read(name + ".crt").decode())
        return "sha256/" + hashlib.sha256(der).hexdigest()

    def path(self, name):
        return os.path.join(self.dir, name)

    def read(self, name):
        with open(self.path(name), "rb") as f:
            return f.read()

    def which(self, der):
        """'a', 'b' or a description of an unknown certificate."""
        for n, d in self.der.items():
            if d == der:
                return n
        return "unknown certificate (sha256 %s)" % hashlib.sha256(der or b"").hexdigest()

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def install(src, dst):
    """Atomically replaces dst with a copy of src (or with bytes src)."""
    tmp = dst + ".new"
    if isinstance(src, (bytes, bytearray)):
        with open(tmp, "wb") as f:
            f.write(src)
    else:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


class TlsRawConn(RawConn):
    """RawConn over TLS (a clean or unclean TLS close counts as EOF)."""

    def __init__(self, port, context, timeout=10.0):
        raw = socket.create_connection((HOST, port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = context.wrap_socket(raw, server_hostname=HOST)
        self.buf = bytearray()
        self.eof = False

    def _fill(self):
        try:
            return RawConn._fill(self)
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
            self.eof = True
            raise EOFError("TLS connection closed by server")


class TlsServer(ArcaServer):
    """arcad with `[tls] listen = 127.0.0.1:0`, the certificate and key copied
    to DATA/tls/server.crt and DATA/tls/server.key (so tests can replace them).
    plain=False writes `[server] listen = off`.  server_extra goes into
    [server].  Client certificates: client_auth ("optional"/"required"), the
    CA file client_ca (a Pki name, copied to DATA/tls/client-ca.crt, so tests
    can replace it) and clients, a list of ([tls.clients] key, scopes)."""

    def __init__(self, pki, plain=True, cert="a", server_extra="", start_timeout=10.0,
                 key=None, client_auth=None, client_ca="ca", clients=()):
        self.pki = pki
        self.plain = plain
        data = tempfile.mkdtemp(prefix="arca-e2e-tls-")
        tdir = os.path.join(data, "tls")
        os.mkdir(tdir)
        self.cert_file = os.path.join(tdir, "server.crt")
        self.key_file = os.path.join(tdir, "server.key")
        shutil.copyfile(pki.path(cert + ".crt"), self.cert_file)
        shutil.copyfile(pki.path((key or cert) + ".key"), self.key_file)
        os.chmod(self.key_file, 0o600)
        conf = ("[server]\nlisten = %s\n%s\n[tls]\nlisten = %s:0\ncert_file = %s\n"
                "key_file = %s\n" % ("%s:0" % HOST if plain else "off", server_extra, HOST,
                                     self.cert_file, self.key_file))
        self.client_ca_file = None
        if client_auth:
            self.client_ca_file = os.path.join(tdir, "client-ca.crt")
            shutil.copyfile(pki.path(client_ca + ".crt"), self.client_ca_file)
            conf += "client_ca_file = %s\nclient_auth = %s\n" % (self.client_ca_file, client_auth)
        if clients:
            conf += "[tls.clients]\n" + "".join("%s = %s\n" % kv for kv in clients)
        super().__init__(config=conf, data=data, start_timeout=start_timeout)
        self._own_data = True
        self.tls_port = None
        self.ctx = ssl.create_default_context(cafile=pki.ca)

    def command(self):
        # no --listen: the config's [server] listen (maybe "off") must hold
        return [ARCAD, "--data", self.data, "--config", self.config_path] + self.extra_args

    def port_files(self):
        files = {"tls_port": "arcad.tls.port"}
        if self.plain:
            files["port"] = "arcad.port"
        return files

    @property
    def port_file(self):
        return os.path.join(self.data, "arcad.port")

    @property
    def tls_port_file(self):
        return os.path.join(self.data, "arcad.tls.port")

    # -- TLS clients ---------------------------------------------------------

    def context(self, min_version=None, max_version=None, ciphers=None, cafile=None,
                client=None):
        """A client context trusting cafile (default: the test CA); client: a
        Pki name whose certificate and key the client presents."""
        ctx = ssl.create_default_context(cafile=cafile or self.pki.ca)
        if ciphers:
            ctx.set_ciphers(ciphers)
        if min_version is not None:
            ctx.minimum_version = min_version
        if max_version is not None:
            ctx.maximum_version = max_version
        if client:
            ctx.load_cert_chain(self.pki.path(client + ".crt"), self.pki.path(client + ".key"))
        return ctx

    def https(self, timeout=60.0, ctx=None):
        return http.client.HTTPSConnection(HOST, self.tls_port, timeout=timeout,
                                           context=ctx or self.ctx)

    def handshake(self, ctx=None, timeout=10.0):
        """A TLS socket to the TLS port after a complete handshake."""
        raw = socket.create_connection((HOST, self.tls_port), timeout=timeout)
        try:
            return (ctx or self.ctx).wrap_socket(raw, server_hostname=HOST)
        except BaseException:
            raw.close()
            raise

    def peer_cert(self, ctx=None):
        with self.handshake(ctx) as s:
            return s.getpeercert(binary_form=True)

    def tls_conn(self, ctx=None, timeout=10.0):
        return TlsRawConn(self.tls_port, ctx or self.ctx, timeout=timeout)

    def treq(self, method, path, body=None, headers=None, auth=True, conn=None, ctx=None,
             timeout=60.0):
        """One request over TLS (on conn if given, kept open; else a fresh
        HTTPSConnection, closed).  body: bytes or an iterable of bytes (sent
        chunked unless headers carry Content-Length).  auth: send the admin
        token unless headers hold an Authorization.  Returns a Response."""
        hdrs = dict(headers or {})
        if auth and not any(k.lower() == "authorization" for k in hdrs):
            hdrs.update(self.auth_headers())
        own = conn is None
        if own:
            conn = self.https(timeout=timeout, ctx=ctx)
        try:
            return send_request(conn, method, path, body, hdrs)
        finally:
            if own:
                conn.close()


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


class TlsMixin(ArcaTestMixin):
    """TLS assertions (expects self.srv, a TlsServer)."""

    def tput(self, path, data, headers=None, **kw):
        h = {"X-Checksum-Sha256": sha256_hex(bytes(data))} if isinstance(
            data, (bytes, bytearray)) else {}
        h.update(headers or {})
        return self.srv.treq("PUT", path, body=data, headers=h, **kw)

    def assertTlsStored(self, path, data, srv=None, **kw):
        srv = srv or self.srv
        r = srv.treq("GET", path, **kw)
        self.assertEqual(r.status, 200, "GET %s over TLS: %r" % (path, r))
        self.assertEqual(len(r.body), len(data), "GET %s over TLS: length" % path)
        self.assertTrue(r.body == data, "GET %s over TLS: body differs from upload" % path)
        sha = sha256_hex(data)
        self.assertEqual(r.header("x-checksum-sha256"), sha, "X-Checksum-Sha256 over TLS")
        self.assertEqual(r.header("etag"), '"%s"' % sha)
        self.assertEqual(r.header("content-length"), str(len(data)))
        return r

    def assertTlsServing(self, srv=None):
        srv = srv or self.srv
        srv.assert_alive()
        data = os.urandom(333)
        p = "/repos/tls/sanity/%s/ok.bin" % uniq()
        r = srv.treq("PUT", p, body=data)
        self.assertEqual(r.status, 201, "server no longer stores over TLS: %r" % r)
        self.assertTlsStored(p, data, srv)


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


# --------------------------------------------------------------------------
# Replication: several centres on loopback, peer links through cuttable proxies


class Proxy:
    """A TCP forwarder 127.0.0.1:port -> 127.0.0.1:target that a test can cut
    (every open connection is closed and new ones are refused until heal())
    or throttle (rate bytes/s per direction of each connection, 0 = unlimited)."""

    def __init__(self, target_port, rate=0):
        self.target_port = target_port
        self.rate = rate
        self._cut = threading.Event()
        self._lock = threading.Lock()
        self._socks = set()
        self._ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._ls.bind((HOST, 0))
        self._ls.listen(64)
        self.port = self._ls.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._closed:
            try:
                c, _ = self._ls.accept()
            except OSError:
                return
            if self._cut.is_set():
                c.close()
                continue
            try:
                u = socket.create_connection((HOST, self.target_port), timeout=5)
            except OSError:
                c.close()
                continue
            u.settimeout(None)
            # Like arcad and libcurl: no Nagle, or small writes wait on delayed ACKs here.
            for s in (c, u):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._socks.update((c, u))
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while not self._cut.is_set():
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
                if self.rate:
                    time.sleep(len(data) / self.rate)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
            with self._lock:
                self._socks.discard(s)

    def cut(self):
        self._cut.set()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def heal(self):
        self._cut.clear()

    def close(self):
        self._closed = True
        self.cut()
        self._ls.close()


_ports_given = set()


def free_port():
    """A free port on loopback below the kernel's ephemeral range (32768+), so
    that no outgoing connection's source port can take it while its server is
    stopped (peers' configs name it, so a restart must get it back)."""
    import random as _random
    for _ in range(200):
        port = _random.randrange(20000, 32000)
        if port in _ports_given:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((HOST, port))
        except OSError:
            continue
        finally:
            s.close()
        _ports_given.add(port)
        return port
    raise AssertionError("no free port in 20000-32000")


class Centre(ArcaServer):
    """arcad with a centre id and a port of its own (free_port() unless
    fixed_port is set before start), so that peers' configuration can name it
    and a restart keeps it."""

    def __init__(self, centre, config="", **kw):
        self.centre = centre
        self.fixed_port = None
        super().__init__(config="[centre]\nid = %s\n%s" % (centre, config), **kw)

    def command(self):
        cmd = super().command()
        if not self.fixed_port:
            self.fixed_port = free_port()
        cmd[cmd.index("%s:0" % HOST)] = "%s:%d" % (HOST, self.fixed_port)
        return cmd

    def rewrite_config(self, text):
        with open(self.config_path, "w") as f:
            f.write("[centre]\nid = %s\n%s" % (self.centre, text))

    def issue_token(self, name, scope):
        """`arcad token create` on the (stopped) centre's data dir: the secret."""
        r = self.cli("token", "create", "--name", name, "--scope", scope, "--data", self.data,
                     "--config", self.config_path)
        if r.returncode != 0:
            raise AssertionError("arcad token create: %s" % r.stderr)
        return r.stdout.splitlines()[0].strip()

    def status(self):
        return self.json("/api/v1/replication")

    def digest(self):
        return self.json("/api/v1/replication/digest")["state_digest"]


class Cluster:
    """n centres dc1..dcn.  links: pairs (i, j) meaning i pulls from j (default:
    everyone from everyone).  Every link goes through its own Proxy (so a test
    can cut or throttle it): cluster.proxy[(i, j)].  Each centre gets a token
    with the replicate scope that its pullers' peers present."""

    REPL_CONF = "[replication]\npoll_interval_ms = 50\nretry_max_seconds = 1\n"

    def __init__(self, n, links=None, extra_config="", rate=0):
        self.n = n
        self.links = links if links is not None else [
            (i, j) for i in range(n) for j in range(n) if i != j]
        self.centres = [Centre("dc%d" % (i + 1)) for i in range(n)]
        self.proxy = {}
        self.repl_tokens = []
        try:
            for c in self.centres:
                c.fixed_port = free_port()
                self.repl_tokens.append(c.issue_token("replicator-" + c.centre, "replicate"))
            for (i, j) in self.links:
                self.proxy[(i, j)] = Proxy(self.centres[j].fixed_port, rate=rate)
            for i, c in enumerate(self.centres):
                peers = "".join(
                    "[peer.%s]\nurl = http://%s:%d\ntoken = %s\n"
                    % (self.centres[j].centre, HOST, self.proxy[(a, j)].port, self.repl_tokens[j])
                    for (a, j) in self.links if a == i)
                c.rewrite_config(self.REPL_CONF + extra_config + peers)
                c.start()
        except BaseException:
            self.close()
            raise

    def __getitem__(self, i):
        return self.centres[i]

    def cut(self, i=None):
        """Cuts every link to and from centre i (every link when i is None)."""
        for (a, b), p in self.proxy.items():
            if i is None or i in (a, b):
                p.cut()

    def heal(self):
        for p in self.proxy.values():
            p.heal()

    def wait_converged(self, timeout=60.0):
        """Waits until every centre has taken in all its peers' logs and all
        state digests are equal; returns the digest."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                digests = [c.digest() for c in self.centres]
                behind = [(c.centre, p["name"], p["events_behind"], p["last_error"])
                          for c in self.centres for p in c.status()["peers"]
                          if p["events_behind"] or not p["connected"]]
            except (AssertionError, OSError) as e:
                last = str(e)
                time.sleep(0.2)
                continue
            last = (digests, behind)
            if len(set(digests)) == 1 and not behind:
                return digests[0]
            time.sleep(0.1)
        raise AssertionError("centres did not converge within %.0f s: %r" % (timeout, last))

    def close(self):
        for p in self.proxy.values():
            p.close()
        for c in self.centres:
            c.cleanup()


def uri_path(path):
    """A path percent-encoded as arcad encodes download_uri and Location: everything but
    RFC 3986's unreserved bytes, '/' and the sub-delimiters other than ';'."""
    return urllib.parse.quote(path, safe="/!$&'()*+,=:@~")
