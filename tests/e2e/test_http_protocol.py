"""HTTP/1.1 protocol behaviour of arcad: keep-alive, pipelining, chunked bodies,
100-continue, request limits (411/413/414/431/417/501), timeouts and the
connection cap.  Uses raw sockets wherever http.client would hide details."""

import os
import re
import socket
import threading
import time
import unittest

from harness import ServerTestCase, ArcaServer, ArcaTestMixin, RawConn, sha256_hex

KiB = 1 << 10
MiB = 1 << 20

LIMITS_CONF = """[server]
max_upload_bytes = 1M
max_header_bytes = 8K
max_url_bytes = 2K
"""


def uniq():
    return os.urandom(5).hex()


def put_head(path, length=None, extra=""):
    h = "PUT %s HTTP/1.1\r\nHost: t\r\n" % path
    if length is not None:
        h += "Content-Length: %d\r\n" % length
    return (h + extra + "\r\n").encode()


class ProtocolTest(ServerTestCase):
    CONFIG = LIMITS_CONF

    def auth(self):
        return "Authorization: Bearer %s\r\n" % self.srv.token

    def assertClosedAfterError(self, c):
        """After an error that leaves an unread body: Connection: close and EOF."""
        self.assertTrue(c.closed_within(5), "server did not close the connection")

    def wait_tmp_empty(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while self.srv.tmp_files() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.srv.tmp_files(), [], "temp files left in DATA/blobs/tmp")

    # -- keep-alive and pipelining ---------------------------------------------------

    def test_keep_alive(self):
        with self.srv.conn() as c:
            for i in range(5):
                c.send("GET /healthz HTTP/1.1\r\nHost: t\r\nX-Request-Id: ka%d\r\n\r\n" % i)
                r = c.read_response()
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.json(), {"status": "ok"})
                self.assertEqual(r.header("x-request-id"), "ka%d" % i)
                self.assertNotEqual(r.header("connection", "").lower(), "close")

    def test_pipelining_two_gets_in_one_send(self):
        a, b = os.urandom(1000), os.urandom(70000)
        pa = "/repos/pipe/a%s/1/a.bin" % uniq()
        pb = "/repos/pipe/b%s/1/b.bin" % uniq()
        self.assertEqual(self.srv.put(pa, a).status, 201)
        self.assertEqual(self.srv.put(pb, b).status, 201)
        with self.srv.conn() as c:
            c.send(("GET %s HTTP/1.1\r\nHost: t\r\n%sX-Request-Id: first\r\n\r\n"
                    "GET %s HTTP/1.1\r\nHost: t\r\n%sX-Request-Id: second\r\n\r\n")
                   % (pa, self.auth(), pb, self.auth()))
            r1 = c.read_response()
            r2 = c.read_response()
            self.assertEqual((r1.status, r2.status), (200, 200))
            self.assertEqual(r1.header("x-request-id"), "first")
            self.assertEqual(r2.header("x-request-id"), "second")
            self.assertTrue(r1.body == a)
            self.assertTrue(r2.body == b)

    def test_pipelining_put_get_head(self):
        data = os.urandom(50000)
        p = "/repos/pipe/pgh%s/1/x.bin" % uniq()
        req = put_head(p, len(data), self.auth() + "X-Request-Id: r1\r\n") + data
        req += ("GET %s HTTP/1.1\r\nHost: t\r\n%sX-Request-Id: r2\r\n\r\n" % (p, self.auth())).encode()
        req += ("HEAD %s HTTP/1.1\r\nHost: t\r\n%sX-Request-Id: r3\r\n\r\n" % (p, self.auth())).encode()
        req += ("GET /nope/route HTTP/1.1\r\nHost: t\r\n%sX-Request-Id: r4\r\n\r\n" % self.auth()).encode()
        req += b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Request-Id: r5\r\n\r\n"
        with self.srv.conn() as c:
            c.send(req)
            r1 = c.read_response()
            r2 = c.read_response()
            r3 = c.read_response(head=True)
            r4 = c.read_response()
            r5 = c.read_response()
        self.assertEqual([r.header("x-request-id") for r in (r1, r2, r3, r4, r5)],
                         ["r1", "r2", "r3", "r4", "r5"])
        self.assertEqual(r1.status, 201, r1)
        self.assertEqual(r2.status, 200, r2)
        self.assertTrue(r2.body == data)
        self.assertEqual(r3.status, 200, r3)
        self.assertEqual(r3.header("content-length"), str(len(data)))
        self.assertEqual(r4.status, 404, r4)
        self.assertEqual(r5.status, 200, r5)

    def test_pipelining_many(self):
        paths = []
        for i in range(10):
            p = "/repos/pipe/many%s/1/%d.txt" % (uniq(), i)
            self.assertEqual(self.srv.put(p, b"body-%d" % i).status, 201)
            paths.append(p)
        req = b"".join(("GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n" % (p, self.auth())).encode()
                       for p in paths)
        with self.srv.conn() as c:
            c.send(req)
            for i in range(10):
                r = c.read_response()
                self.assertEqual(r.status, 200)
                self.assertEqual(r.body, b"body-%d" % i)

    def test_get_with_body_then_pipelined_request(self):
        with self.srv.conn() as c:
            c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
                   b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n")
            r1 = c.read_response()
            self.assertEqual(r1.status, 200, r1)
            if "close" not in r1.header("connection", "").lower():
                r2 = c.read_response()
                self.assertEqual(r2.status, 200, r2)
                self.assertEqual(r2.json(), {"status": "ready"})

    def test_200_simultaneous_connections(self):
        conns = []
        try:
            for _ in range(200):
                conns.append(self.srv.conn())
            for c in conns:
                c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            for i, c in enumerate(conns):
                self.assertEqual(c.read_response().status, 200, "connection %d" % i)
        finally:
            for c in conns:
                c.close()
        self.assertServing()

    def test_connection_close_and_http10(self):
        with self.srv.conn() as c:
            c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertTrue(c.closed_within(5), "Connection: close not honoured")
        with self.srv.conn() as c:
            c.send(b"GET /healthz HTTP/1.0\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertTrue(c.closed_within(5), "HTTP/1.0 connection not closed")
        # HTTP/1.0 asking for keep-alive is told it was kept, and then it is kept
        with self.srv.conn() as c:
            for _ in range(2):
                c.send(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                r = c.read_response()
                self.assertEqual(r.status, 200)
                self.assertEqual(r.header("connection", "").lower(), "keep-alive")
        # HTTP/1.1 keeps the connection without saying so
        r = self.srv.get("/healthz")
        self.assertIsNone(r.header("connection"))
        # HTTP/1.0 with Transfer-Encoding has faulty framing (RFC 9112 6.1): 400, nothing
        # stored, closed, and a request smuggled in after it is never answered
        p = "/repos/lim/te10%s/1/x" % uniq()
        with self.srv.conn() as c:
            c.send(("PUT %s HTTP/1.0\r\n%sTransfer-Encoding: chunked\r\n"
                    "Connection: keep-alive\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                    "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n") % (p, self.srv.auth_line()))
            self.assertError(c.read_response(), 400, "bad_request")
            self.assertClosedAfterError(c)
        self.assertNotStored(p)

    def test_host_required_and_version(self):
        """RFC 9112: an HTTP/1.1 request without Host is a 400; a version other than 1.0 and
        1.1 is a 505 (HTTP/2 arrives here only as a request line)."""
        for line, status, code in ((b"GET /healthz HTTP/1.1\r\n\r\n", 400, "bad_request"),
                                   (b"GET /healthz HTTP/2.0\r\nHost: t\r\n\r\n", 505,
                                    "http_version_not_supported"),
                                   (b"GET /healthz HTTP/1.2\r\nHost: t\r\n\r\n", 505,
                                    "http_version_not_supported")):
            with self.subTest(line=line):
                with self.srv.conn() as c:
                    c.send(line)
                    r = c.read_response()
                    self.assertError(r, status, code)
        before = self.srv.storage()
        p = "/repos/lim/nohost%s/1/b.bin" % uniq()
        with self.srv.conn() as c:
            c.send(("PUT %s HTTP/1.1\r\n%sContent-Length: 3\r\n\r\nabc"
                    % (p, self.auth())).encode())
            self.assertError(c.read_response(), 400, "bad_request")
        self.assertNotStored(p)
        self.assertStorageUnchanged(before)
        self.assertServing()

    # -- chunked -------------------------------------------------------------------------

    def test_raw_chunked_with_extensions_and_trailers(self):
        data = os.urandom(100000)
        p = "/repos/chunk/raw%s/1/c.bin" % uniq()
        body = b""
        pos = 0
        for i, n in enumerate([1, 15, 4096, 30000, 65888]):
            part = data[pos:pos + n]
            pos += n
            size = ("%X" % n) if i % 2 else ("%x" % n)
            ext = ";foo=bar" if i == 2 else ""
            body += size.encode() + ext.encode() + b"\r\n" + part + b"\r\n"
        self.assertEqual(pos, len(data))
        body += b"0\r\nX-Trailer: yes\r\n\r\n"
        req = put_head(p, None, self.auth() + "Transfer-Encoding: chunked\r\n") + body
        with self.srv.conn() as c:
            c.send(req)
            r = c.read_response()
            self.assertEqual(r.status, 201, r)
            # the connection is still usable
            c.send("GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n" % (p, self.auth()))
            g = c.read_response()
            self.assertEqual(g.status, 200)
            self.assertTrue(g.body == data)
        self.assertEqual(r.json()["checksums"]["sha256"], sha256_hex(data))

    def test_malformed_chunk(self):
        for bad in (b"zz\r\nhello\r\n0\r\n\r\n",
                    b"5\r\nhelloXX0\r\n\r\n",
                    b"-5\r\nhello\r\n0\r\n\r\n",
                    b"fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
                    b"0" * 5000 + b"5\r\nhello\r\n0\r\n\r\n",  # a size line over 4096 bytes
                    b"5;" + b"x" * 5000 + b"\r\nhello\r\n0\r\n\r\n"):
            self.srv.assert_alive()  # fail fast if a previous case crashed it
            with self.subTest(body=bad):
                before = self.srv.storage()
                p = "/repos/chunk/bad%s/1/c.bin" % uniq()
                with self.srv.conn() as c:
                    c.send(put_head(p, None, self.auth() + "Transfer-Encoding: chunked\r\n") + bad)
                    r = c.read_response()
                    if b"fffff" in bad:  # a size past the upload limit
                        self.assertError(r, 413, "payload_too_large")
                    else:
                        self.assertError(r, 400, "bad_request")
                    self.assertClosedAfterError(c)
                self.assertNotStored(p)
                self.assertStorageUnchanged(before)
                self.wait_tmp_empty()
        self.assertServing()

    def test_chunk_size_over_limit_413_before_its_data(self):
        """A chunk size line that takes the body past the upload limit is answered 413 at
        once, before any of its data (the client has sent none); leading zeros in a chunk
        size are fine (RFC 9112 7.1: 1*HEXDIG)."""
        for size_line in (b"200000", b"100001", b"7fffffffffffffff"):
            with self.subTest(size=size_line):
                p = "/repos/chunk/sz%s/1/c.bin" % uniq()
                with self.srv.conn() as c:
                    c.send(put_head(p, None, self.auth() + "Transfer-Encoding: chunked\r\n")
                           + size_line + b"\r\n")
                    t0 = time.monotonic()
                    self.assertError(c.read_response(), 413, "payload_too_large")
                    self.assertLess(time.monotonic() - t0, 3, "not answered at once")
                    self.assertClosedAfterError(c)
                self.assertNotStored(p)
        p = "/repos/chunk/zeros%s/1/c.bin" % uniq()
        body = b"0" * 30 + b"5\r\nhello\r\n" + b"0" * 20 + b"\r\n\r\n"
        with self.srv.conn() as c:
            c.send(put_head(p, None, self.auth() + "Transfer-Encoding: chunked\r\n") + body)
            self.assertEqual(c.read_response().status, 201)
        self.assertStored(p, b"hello")

    def test_chunked_over_limit_413(self):
        for i in range(5):  # repeated: what follows a 413 mid-stream is timing-dependent
            self.srv.assert_alive()
            with self.subTest(attempt=i):
                self._chunked_over_limit_413()

    def test_early_answer_closes_gently(self):
        """A 413 sent while the body still streams is followed by a FIN, not a
        reset: the client can go on sending for a while (the bytes are read and
        dropped), reads the whole answer, then sees a clean end of stream."""
        p = "/repos/chunk/linger%s/1/c.bin" % uniq()
        with self.srv.conn() as c:
            c.send(put_head(p, None, self.auth() + "Transfer-Encoding: chunked\r\n"))
            chunk = b"%x\r\n" % (256 * KiB) + os.urandom(256 * KiB) + b"\r\n"
            for _ in range(6):  # 1.5 MiB > 1M limit
                c.send(chunk)
            r = c.read_response()
            self.assertError(r, 413, "payload_too_large")
            # Keeps sending well past the answer: a closed socket would reset these.
            for _ in range(16):
                c.send(chunk)
            c.sock.shutdown(socket.SHUT_WR)
            c.sock.settimeout(10)
            try:
                rest = c.sock.recv(1)
            except ConnectionResetError:
                self.fail("the server reset the connection instead of closing it")
            self.assertEqual(rest, b"", "bytes after the answer")
        # A client that stops sending but keeps the socket open is closed after a few seconds.
        with self.srv.conn() as c:
            c.send(put_head(p, None, self.auth() + "Transfer-Encoding: chunked\r\n"))
            try:
                for _ in range(6):
                    c.send(chunk)
            except OSError:
                pass
            r = c.read_response()
            self.assertError(r, 413, "payload_too_large")
            t0 = time.monotonic()
            self.assertTrue(c.closed_within(10), "a lingering connection was never closed")
            self.assertLess(time.monotonic() - t0, 8)
        self.srv.assert_alive()
        self.assertNotStored(p)

    def _chunked_over_limit_413(self):
        before = self.srv.storage()
        p = "/repos/chunk/big%s/1/c.bin" % uniq()
        with self.srv.conn() as c:
            c.send(put_head(p, None, self.auth() + "Transfer-Encoding: chunked\r\n"))
            chunk = b"%x\r\n" % (256 * KiB) + os.urandom(256 * KiB) + b"\r\n"
            try:
                for _ in range(8):  # 2 MiB > 1M limit
                    c.send(chunk)
                c.send(b"0\r\n\r\n")
            except OSError:
                pass  # the server may stop reading once it knows the answer
            try:
                r = c.read_response()
            except (EOFError, ConnectionError) as e:
                self.fail("no 413 for a chunked body over the limit (%r); server alive: %s; log:\n%s"
                          % (e, self.srv.alive(), self.srv.log_tail(1500)))
            self.assertError(r, 413, "payload_too_large")
            self.assertEqual(r.header("connection", "").lower(), "close")
        time.sleep(0.3)
        self.srv.assert_alive()  # shows the log if it died after answering
        self.assertNotStored(p)
        self.assertStorageUnchanged(before)
        self.wait_tmp_empty()
        self.assertServing()

    # -- 100-continue ---------------------------------------------------------------------

    def test_expect_100_continue(self):
        data = os.urandom(300000)
        p = "/repos/exp/ok%s/1/e.bin" % uniq()
        with self.srv.conn() as c:
            c.send(put_head(p, len(data), self.auth() + "Expect: 100-continue\r\n"))
            r = c.read_response()  # must come before we send any body
            self.assertEqual(r.status, 100, r)
            c.send(data)
            r = c.read_response()
            self.assertEqual(r.status, 201, r)
            c.send("GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n" % (p, self.auth()))
            g = c.read_response()
            self.assertEqual(g.status, 200)
            self.assertTrue(g.body == data)

    def test_expect_100_body_sent_without_waiting(self):
        """Clients may send the body without waiting for 100 Continue."""
        data = os.urandom(70000)
        p = "/repos/exp/eager%s/1/e.bin" % uniq()
        with self.srv.conn() as c:
            c.send(put_head(p, len(data), self.auth() + "Expect: 100-continue\r\n") + data +
                   b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            interim, r = c.read_final()
            self.assertLessEqual(len(interim), 1)
            self.assertEqual(r.status, 201, r)
            r2 = c.read_response()
            self.assertEqual(r2.status, 200, r2)
        self.assertStored(p, data)

    def test_content_length_and_chunked_together(self):
        """Request smuggling guard (RFC 9112 6.3): either rejected with 400, or
        the chunked framing wins and the connection is closed afterwards."""
        before = self.srv.storage()
        p = "/repos/smuggle/x%s/1/s.bin" % uniq()
        body = b"5\r\nhello\r\n0\r\n\r\n"
        smuggled = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
        with self.srv.conn() as c:
            c.send(put_head(p, len(body) + len(smuggled),
                            self.auth() + "Transfer-Encoding: chunked\r\n") + body + smuggled)
            r = c.read_response()
            if r.status == 400:
                self.assertEqual(r.error_code, "bad_request", r)
                self.assertNotStored(p)
                self.assertStorageUnchanged(before)
            else:
                self.assertEqual(r.status, 201, r)
                self.assertEqual(r.json()["size"], 5, "Content-Length won over chunked")
                self.assertStored(p, b"hello")
                self.assertIn("close", r.header("connection", "").lower(),
                              "connection kept open after a CL+TE request")
            self.assertTrue(c.closed_within(5), "connection kept open after a CL+TE request")
        self.assertServing()

    def test_expect_100_continue_chunked(self):
        data = os.urandom(5000)
        p = "/repos/exp/chunked%s/1/e.bin" % uniq()
        with self.srv.conn() as c:
            c.send(put_head(p, None, self.auth() + "Expect: 100-continue\r\n"
                            "Transfer-Encoding: chunked\r\n"))
            r = c.read_response()
            self.assertEqual(r.status, 100, r)
            c.send(b"%x\r\n" % len(data) + data + b"\r\n0\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 201, r)
        self.assertStored(p, data)

    def _expect_final_error(self, head_bytes, status, code):
        before = self.srv.storage()
        with self.srv.conn() as c:
            c.send(head_bytes)
            r = c.read_response()  # no body sent: the final answer must come anyway
            self.assertNotEqual(r.status, 100, "got 100 Continue for a request that fails")
            self.assertError(r, status, code)
        self.assertStorageUnchanged(before)
        return r

    def test_expect_100_too_large(self):
        p = "/repos/exp/big%s/1/e.bin" % uniq()
        r = self._expect_final_error(
            put_head(p, 2 * MiB, self.auth() + "Expect: 100-continue\r\n"), 413,
            "payload_too_large")
        self.assertNotStored(p)
        self.assertServing()

    def test_expect_100_bad_path(self):
        self._expect_final_error(
            put_head("/repos/exp/x/1/%2e%2e/e.bin", 10, self.auth() + "Expect: 100-continue\r\n"),
            400, "invalid_path")
        self.assertServing()

    def test_expect_100_if_none_match_exists(self):
        p = "/repos/exp/inm%s/1/e.bin" % uniq()
        self.assertEqual(self.srv.put(p, b"abc").status, 201)
        self._expect_final_error(
            put_head(p, 10, self.auth() + "Expect: 100-continue\r\nIf-None-Match: *\r\n"),
            412, "precondition_failed")
        self.assertStored(p, b"abc")
        self.assertServing()

    def test_expect_other_417(self):
        p = "/repos/exp/x%s/1/e.bin" % uniq()
        before = self.srv.storage()
        with self.srv.conn() as c:
            c.send(put_head(p, 3, self.auth() + "Expect: something-else\r\n") + b"abc")
            _, r = c.read_final()
            self.assertError(r, 417, "expectation_failed")
        self.assertNotStored(p)
        self.assertStorageUnchanged(before)
        self.assertServing()

    # -- limits --------------------------------------------------------------------------

    def test_413_content_length(self):
        before = self.srv.storage()
        p = "/repos/lim/big%s/1/b.bin" % uniq()
        with self.srv.conn() as c:
            c.send(put_head(p, MiB + 1, self.auth()))  # headers only; the body never comes
            r = c.read_response()
            self.assertError(r, 413, "payload_too_large")
            self.assertEqual(r.header("connection", "").lower(), "close")
            self.assertClosedAfterError(c)
        self.assertNotStored(p)
        self.assertStorageUnchanged(before)
        # exactly the limit is fine
        data = os.urandom(MiB)
        p2 = "/repos/lim/exact%s/1/b.bin" % uniq()
        self.assertEqual(self.srv.put(p2, data).status, 201)
        self.assertStored(p2, data)

    def test_411_length_required(self):
        before = self.srv.storage()
        p = "/repos/lim/nolen%s/1/b.bin" % uniq()
        with self.srv.conn() as c:
            c.send(put_head(p, None, self.auth()) + b"some body bytes")
            r = c.read_response()
            self.assertError(r, 411, "length_required")
            self.assertEqual(r.header("connection", "").lower(), "close")
            self.assertClosedAfterError(c)
        self.assertNotStored(p)
        self.assertStorageUnchanged(before)
        self.assertServing()

    def test_431_header_too_large(self):
        before = self.srv.storage()
        p = "/repos/lim/hdr%s/1/b.bin" % uniq()
        for extra in ("X-Big: %s\r\n" % ("a" * 9000),
                      "".join("X-H%d: %s\r\n" % (i, "b" * 90) for i in range(100))):
            self.srv.assert_alive()  # fail fast if a previous case crashed it
            with self.subTest(n=len(extra)):
                with self.srv.conn() as c:
                    c.send(put_head(p, 3, self.auth() + extra) + b"abc")
                    r = c.read_response()
                    self.assertError(r, 431, "header_too_large")
                    self.assertClosedAfterError(c)
        # GET too
        with self.srv.conn() as c:
            c.send("GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: %s\r\n\r\n" % ("c" * 10000))
            self.assertError(c.read_response(), 431, "header_too_large")
        self.assertNotStored(p)
        self.assertStorageUnchanged(before)
        # under the limit is fine
        r = self.srv.get("/healthz", headers={"X-Big": "d" * 6000})
        self.assertEqual(r.status, 200)
        self.assertServing()

    def test_refused_request_counts_as_route_other(self):
        """A request refused before it is routed (here a 431 after an upload on the same
        connection) is counted under route="other", not under the previous request's route."""
        def count(route, status):
            m = re.search(r'(?m)^arca_http_requests_total\{route="%s",status="%s"\} (\d+)$'
                          % (route, status), self.srv.get("/metrics").body.decode())
            return int(m.group(1)) if m else 0
        before_other, before_put = count("other", "431"), count("artifact_put", "431")
        with self.srv.conn() as c:
            c.send(put_head("/repos/lim/rt%s/1/b.bin" % uniq(), 3, self.auth()) + b"abc")
            self.assertEqual(c.read_response().status, 201)
            c.send("GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: %s\r\n\r\n" % ("c" * 10000))
            self.assertError(c.read_response(), 431, "header_too_large")
        for _ in range(100):  # counted once the answer has drained (see test_metrics)
            if count("other", "431") > before_other:
                break
            time.sleep(0.02)
        self.assertEqual(count("other", "431"), before_other + 1)
        self.assertEqual(count("artifact_put", "431"), before_put)
        # malformed from its first byte, on a new connection and after a routed request
        want = {("other", "400"): count("other", "400") + 2,
                ("storage", "400"): count("storage", "400"),
                ("artifact_put", "400"): count("artifact_put", "400")}
        with self.srv.conn() as c:
            c.send(b"\x01x\r\n\r\n")
            self.assertError(c.read_response(), 400, "bad_request")
        with self.srv.conn() as c:
            c.send("GET /api/v1/storage HTTP/1.1\r\nHost: t\r\n%s\r\n" % self.srv.auth_line())
            self.assertEqual(c.read_response().status, 200)
            c.send(b"\x01x\r\n\r\n")
            self.assertError(c.read_response(), 400, "bad_request")
        for _ in range(100):
            if all(count(*k) == v for k, v in want.items()):
                break
            time.sleep(0.02)
        self.assertEqual({k: count(*k) for k in want}, want)

    def test_refused_before_the_handler_counts_under_its_route(self):
        """A well-formed request refused before its handler runs (401 for a bad token, 413 for
        a declared length over the limit) is counted under the route its path names."""
        def count(route, status):
            m = re.search(r'(?m)^arca_http_requests_total\{route="%s",status="%s"\} (\d+)$'
                          % (route, status), self.srv.get("/metrics").body.decode())
            return int(m.group(1)) if m else 0
        want = {("artifact_get", "401"): count("artifact_get", "401") + 2,
                ("metadata", "401"): count("metadata", "401") + 1,
                ("artifact_put", "413"): count("artifact_put", "413") + 1,
                ("other", "401"): count("other", "401"),
                ("other", "413"): count("other", "413")}
        bad = {"Authorization": "Bearer not-a-token"}
        for path in ("/repos/lim/x/1/a.bin", "/repos/lim/y/1/b.bin", "/api/v1/repos/lim"):
            self.assertError(self.srv.get(path, headers=bad), 401, "unauthorized")
        with self.srv.conn() as c:
            c.send(put_head("/repos/lim/big%s/1/b.bin" % uniq(), MiB + 1, self.auth()))
            self.assertError(c.read_response(), 413, "payload_too_large")
        for _ in range(100):  # counted once the answer has drained (see test_metrics)
            if all(count(*k) == v for k, v in want.items()):
                break
            time.sleep(0.02)
        self.assertEqual({k: count(*k) for k in want}, want)

    def test_414_uri_too_long(self):
        before = self.srv.storage()
        p = "/repos/lim/url%s/1/" % uniq() + "/".join(["s" * 200] * 12)  # ~2.5 KiB
        self.assertGreater(len(p), 2048)
        with self.srv.conn() as c:
            c.send(put_head(p, 3, self.auth()) + b"abc")
            r = c.read_response()
            self.assertError(r, 414, "uri_too_long")
        with self.srv.conn() as c:
            c.send("GET /healthz?%s HTTP/1.1\r\nHost: t\r\n\r\n" % ("q" * 3000))
            self.assertError(c.read_response(), 414, "uri_too_long")
        self.assertStorageUnchanged(before)
        # under the limit is fine
        data = b"short"
        p2 = "/repos/lim/url%s/1/ok.bin" % uniq()
        self.assertEqual(self.srv.put(p2, data).status, 201)
        r = self.srv.get(p2 + "?" + "q" * 1500)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, data)
        self.assertServing()

    def test_501_unknown_transfer_encoding(self):
        before = self.srv.storage()
        p = "/repos/lim/te%s/1/b.bin" % uniq()
        with self.srv.conn() as c:
            c.send(put_head(p, None, self.auth() + "Transfer-Encoding: gzip\r\n") + b"xxxx")
            _, r = c.read_final()
            self.assertError(r, 501, "not_implemented")
        self.assertNotStored(p)
        self.assertStorageUnchanged(before)
        self.assertServing()

    def test_405_and_404_routes(self):
        p = "/repos/route/x%s/1/b.bin" % uniq()
        self.assertEqual(self.srv.put(p, b"x").status, 201)
        r = self.srv.request("POST", p, body=b"zz")
        self.assertError(r, 405, "method_not_allowed")
        allow = {m.strip().upper() for m in r.header("allow", "").split(",")}
        self.assertTrue({"GET", "HEAD", "PUT"} <= allow, r.header("allow"))
        r = self.srv.request("POST", "/api/v1/storage", body=b"{}")
        self.assertError(r, 405, "method_not_allowed")
        self.assertIn("GET", r.header("allow", "").upper())
        r = self.srv.request("PUT", "/healthz", body=b"{}")
        self.assertError(r, 405, "method_not_allowed")
        for route in ("/", "/nope", "/api/v2/storage", "/api/v1/nothing", "/reposx/a/b/c/d"):
            self.srv.assert_alive()  # fail fast if a previous case crashed it
            with self.subTest(route=route):
                self.assertError(self.srv.get(route), 404, "not_found")
        self.assertStored(p, b"x")
        # a method no one knows is 501 (RFC 9110 9.1), not 400; the connection closes
        for method in ("FOO", "QUERY", "X-CUSTOM", "GE", "DELET", "FO|O", "G|E"):
            with self.subTest(method=method), self.srv.conn() as c:
                # "|": the request arrives in two writes, split there
                for i, part in enumerate(("%s %s HTTP/1.1\r\nHost: t\r\n%s\r\n"
                                          % (method, p, self.auth())).split("|")):
                    if i:
                        time.sleep(0.2)
                    c.send(part)
                self.assertError(c.read_response(), 501, "not_implemented")
                self.assertClosedAfterError(c)
        self.assertStored(p, b"x")

    def test_malformed_requests(self):
        before = self.srv.storage()
        cases = [
            b"G\x01RBAGE\r\n\r\n",
            b"GET\r\n\r\n",
            b"GET /healthz HTTX/1.1\r\n\r\n",
            b"GET /healthz HTTP/1.1 extra\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nNoColonHere\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nBad Name: x\r\n\r\n",
            put_head("/repos/m/a/1/b.bin", None, self.auth() + "Content-Length: abc\r\n")
            + b"abc",
            put_head("/repos/m/a/1/b.bin", None, self.auth() + "Content-Length: -1\r\n")
            + b"abc",
            put_head("/repos/m/a/1/b.bin", None, self.auth() + "Content-Length: 3\r\n"
                     "Content-Length: 4\r\n") + b"abcd",
        ]
        for raw in cases:
            self.srv.assert_alive()  # fail fast if a previous case crashed it
            with self.subTest(raw=raw):
                with self.srv.conn() as c:
                    c.send(raw)
                    r = c.read_response()
                    self.assertError(r, 400, "bad_request")
                    self.assertTrue(c.closed_within(5), "not closed after a malformed request")
        self.assertNotStored("/repos/m/a/1/b.bin")
        self.assertStorageUnchanged(before)
        self.assertServing()

    def test_strict_head_and_framing(self):
        """What Debian's non-strict http-parser lets through and arcad must refuse
        (the fuzzer's findings, sent to the real server): 400, connection closed,
        nothing stored, and no second (smuggled) request answered."""
        before = self.srv.storage()
        p = "/repos/strict/s%s/1/b.bin" % uniq()
        auth = self.auth()
        cases = {
            "runs of spaces in the request line":
                b"GET  /healthz  HTTP/1.1\r\nHost: t\r\n\r\n",
            "header value starting with NUL":
                ("GET %s HTTP/1.1\r\nHost: t\r\n" % p).encode()
                + b"Authorization: \x00" + auth.split(": ", 1)[1].encode() + b"\r\n",
            "control character in a header value":
                b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: a\x01b\r\n\r\n",
            "CR not followed by LF inside the header block":
                b"GET /healthz HTTP/1.1\r\nHost: t\rX-B: b\r\n\r\n",
            "header block ending in CR + a byte (chunk desync)":
                put_head(p, None, auth + "Transfer-Encoding: chunked\r\n")[:-2]
                + b"\r10\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
            "Transfer-Encoding trailer after bad chunk framing":
                put_head(p, None, auth + "Transfer-Encoding: chunked\r\n")
                + b"5\r\nhelloXX0\r\nTransfer-Encoding: x\r\n\r\n",
            "two Authorization headers":
                ("GET /api/v1/storage HTTP/1.1\r\nHost: t\r\n%s%s\r\n"
                 % (auth, auth)).encode(),
        }
        for name, raw in cases.items():
            self.srv.assert_alive()  # fail fast if a previous case crashed it
            with self.subTest(case=name):
                with self.srv.conn() as c:
                    c.send(raw)
                    r = c.read_response()
                    self.assertError(r, 400, "bad_request", name)
                    self.assertTrue(c.closed_within(5), "not closed after: " + name)
                    self.assertNotIn(b"HTTP/1.1 200", bytes(c.buf), "a smuggled request was answered")
        self.assertNotStored(p)
        self.assertStorageUnchanged(before)
        self.assertServing()

    def test_truncated_body_stores_nothing(self):
        before = self.srv.storage()
        p = "/repos/lim/trunc%s/1/b.bin" % uniq()
        with self.srv.conn() as c:
            c.send(put_head(p, 500000, self.auth()) + os.urandom(200000))
            time.sleep(0.3)
        # client went away mid-body
        time.sleep(0.5)
        self.assertNotStored(p)
        self.assertStorageUnchanged(before)
        self.wait_tmp_empty()
        self.assertServing()


class HeaderTimeoutTest(ServerTestCase):
    """server.header_timeout = 2: a client that does not finish its headers is cut off."""

    CONFIG = "[server]\nheader_timeout = 2\nidle_timeout = 3\n"

    def check_cut(self, c, t0):
        elapsed = time.monotonic() - t0
        self.assertGreaterEqual(elapsed, 1.5, "closed before header_timeout")
        data = bytes(c.buf)
        if data:
            self.assertTrue(data.startswith(b"HTTP/1.1 408"), data[:200])
            self.assertIn(b'"timeout"', data)

    def test_incomplete_headers_closed(self):
        with self.srv.conn() as c:
            t0 = time.monotonic()
            c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
            # another client is served meanwhile
            self.assertEqual(self.srv.get("/healthz").status, 200)
            self.assertTrue(c.closed_within(6.0), "slow client not closed within 6 s")
            self.check_cut(c, t0)
            self.assertLess(time.monotonic() - t0, 6.0)
        self.assertServing()

    def test_trickling_headers_closed(self):
        """Progress does not extend the header deadline (slowloris)."""
        with self.srv.conn() as c:
            t0 = time.monotonic()
            msg = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 200
            closed = False
            for i in range(len(msg)):
                try:
                    c.send(msg[i:i + 1])
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                if c.closed_within(0.25):
                    closed = True
                    break
                if time.monotonic() - t0 > 8:
                    break
            self.assertTrue(closed, "trickling client still connected after %.1f s"
                            % (time.monotonic() - t0))
            self.check_cut(c, t0)
            self.assertLess(time.monotonic() - t0, 6.0)
        self.assertServing()


    def test_stalled_body_closed_nothing_stored(self):
        """idle_timeout = 3: a body that stops arriving is cut off; nothing is stored."""
        before = self.srv.storage()
        p = "/repos/slow/stall%s/1/s.bin" % os.urandom(4).hex()
        with self.srv.conn() as c:
            c.send("PUT %s HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n"
                   "Content-Length: 100000\r\n\r\n" % (p, self.srv.token))
            c.send(os.urandom(5000))
            t0 = time.monotonic()
            self.assertTrue(c.closed_within(10), "stalled upload not closed within 10 s")
            elapsed = time.monotonic() - t0
            self.assertGreaterEqual(elapsed, 2.5, "closed before idle_timeout")
            data = bytes(c.buf)
            if data:
                self.assertTrue(data.startswith(b"HTTP/1.1 408"), data[:200])
        self.assertNotStored(p)
        self.assertStorageUnchanged(before)
        deadline = time.monotonic() + 5
        while self.srv.tmp_files() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.srv.tmp_files(), [])
        self.assertServing()

    def test_slow_but_progressing_body_not_cut(self):
        """A body trickling in for longer than both timeouts, with progress every
        second, completes."""
        data = os.urandom(7 * 1000)
        p = "/repos/slow/ok%s/1/s.bin" % os.urandom(4).hex()
        with self.srv.conn(timeout=30) as c:
            c.send("PUT %s HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n"
                   "Content-Length: %d\r\n\r\n" % (p, self.srv.token, len(data)))
            for i in range(7):
                time.sleep(1.0)
                c.send(data[i * 1000:(i + 1) * 1000])
            r = c.read_response()
            self.assertEqual(r.status, 201, r)
        self.assertStored(p, data)

    def test_idle_keepalive_closed(self):
        with self.srv.conn() as c:
            c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            self.assertEqual(c.read_response().status, 200)
            t0 = time.monotonic()
            self.assertTrue(c.closed_within(10), "idle keep-alive connection never closed")
            self.assertGreaterEqual(time.monotonic() - t0, 1.5)


class ConnectionCapTest(ArcaTestMixin, unittest.TestCase):
    """server.max_connections = 8."""

    def test_connection_cap(self):
        with ArcaServer(config="[server]\nmax_connections = 8\n") as srv:
            self.srv = srv
            conns = []
            try:
                for i in range(8):
                    c = srv.conn()
                    conns.append(c)
                    c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
                    self.assertEqual(c.read_response().status, 200, "connection %d" % i)
                extra = []
                for i in range(3):
                    try:
                        c = srv.conn(timeout=5)
                    except OSError:
                        continue  # refused outright is fine too
                    extra.append(c)
                    try:
                        c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
                        r = c.read_response()
                    except (EOFError, ConnectionError, socket.timeout):
                        r = None
                    if r is not None:
                        self.assertError(r, 503, "unavailable", "connection %d over the cap" % (9 + i))
                        self.assertTrue(r.header("x-request-id"), r)
                        self.assertEqual(r.header("content-length"), str(len(r.body)), r)
                # the first eight still work
                for i, c in enumerate(conns):
                    c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
                    self.assertEqual(c.read_response().status, 200, "connection %d" % i)
                for c in extra:
                    c.close()
                # freeing slots lets new clients in
                for c in conns[:3]:
                    c.close()
                conns = conns[3:]
                deadline = time.monotonic() + 5
                ok = False
                while time.monotonic() < deadline and not ok:
                    try:
                        ok = srv.get("/healthz", timeout=5).status == 200
                    except (ConnectionError, OSError, Exception):
                        ok = False
                    if not ok:
                        time.sleep(0.1)
                self.assertTrue(ok, "no new connection accepted after others closed")
                self.assertServing()
            finally:
                for c in conns:
                    c.close()


if __name__ == "__main__":
    unittest.main()
