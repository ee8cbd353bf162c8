"""Hostile and malformed coordinates: every one is rejected with 400, stores
nothing, and the server keeps serving.  Boundary cases that are valid are
accepted."""

import os
import unittest

from harness import ServerTestCase, ArcaServer, ArcaTestMixin

BODY = b"hello"

# (description, raw request target, accepted error codes)
IP = ("invalid_path",)
IP_OR_BR = ("invalid_path", "bad_request")

BAD_TARGETS = [
    ("dotdot", "/repos/evil/n/1/../x.bin", IP),
    ("dot", "/repos/evil/n/1/./x.bin", IP),
    ("dotdot only", "/repos/evil/n/1/..", IP),
    ("encoded dotdot", "/repos/evil/n/1/%2e%2e/x.bin", IP),
    ("encoded DOTDOT", "/repos/evil/n/1/%2E%2E/x.bin", IP),
    ("half encoded", "/repos/evil/n/1/.%2e/x.bin", IP),
    ("encoded dot", "/repos/evil/n/1/%2e/x.bin", IP),
    ("dotdot version", "/repos/evil/n/%2e%2e/x.bin", IP),
    ("dotdot name", "/repos/evil/%2e%2e/1/x.bin", IP),
    ("dotdot repo", "/repos/%2e%2e/n/1/x.bin", IP),
    ("dot repo", "/repos/./n/1/x.bin", IP),
    ("deep traversal", "/repos/evil/n/1/a/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd", IP),
    ("raw deep traversal", "/repos/evil/n/1/../../../../../../tmp/x.bin", IP),
    ("NUL", "/repos/evil/n/1/x%00.bin", IP),
    ("NUL in version", "/repos/evil/n/1%00/x.bin", IP),
    ("ctl 01", "/repos/evil/n/1/x%01.bin", IP),
    ("ctl 1f", "/repos/evil/n/1/x%1f.bin", IP),
    ("DEL", "/repos/evil/n/1/x%7f.bin", IP),
    ("newline", "/repos/evil/n/1/x%0a.bin", IP),
    ("CR", "/repos/evil/n/1/x%0d.bin", IP),
    ("encoded slash", "/repos/evil/n/1/a%2fb.bin", IP),
    ("encoded slash in name", "/repos/evil/a%2Fb/1/x.bin", IP),
    ("encoded slash dotdot", "/repos/evil/n/1/%2e%2e%2fx.bin", IP),
    ("encoded backslash", "/repos/evil/n/1/a%5cb.bin", IP),
    ("encoded backslash dotdot", "/repos/evil/n/1/..%5cx.bin", IP),
    ("raw backslash", "/repos/evil/n/1/a\\b.bin", IP_OR_BR),
    ("empty path segment", "/repos/evil/n/1//x.bin", IP),
    ("empty version", "/repos/evil/n//x.bin", IP),
    ("empty name", "/repos/evil//1/x.bin", IP),
    ("trailing slash", "/repos/evil/n/1/x.bin/", IP),
    ("invalid utf8 ff", "/repos/evil/n/1/%ff.bin", IP),
    ("invalid utf8 continuation", "/repos/evil/n/1/%80.bin", IP),
    ("truncated utf8", "/repos/evil/n/1/a%c3", IP),
    ("overlong dotdot", "/repos/evil/n/1/%c0%ae%c0%ae/x.bin", IP),
    ("overlong slash", "/repos/evil/n/1/a%c0%afb.bin", IP),
    ("overlong 3-byte dot", "/repos/evil/n/1/%e0%80%ae/x.bin", IP),
    ("overlong NUL", "/repos/evil/n/1/a%c0%80b", IP),
    ("surrogate", "/repos/evil/n/1/%ed%a0%80.bin", IP),
    ("beyond U+10FFFF", "/repos/evil/n/1/%f4%90%80%80.bin", IP),
    ("segment 256 bytes", "/repos/evil/n/1/" + "a" * 256, IP),
    ("name 256 bytes", "/repos/evil/" + "n" * 256 + "/1/x.bin", IP),
    ("version 256 bytes", "/repos/evil/n/" + "v" * 256 + "/x.bin", IP),
    ("segment 256 utf8 bytes", "/repos/evil/n/1/" + "%C3%A9" * 128, IP),
    ("path 33 segments", "/repos/evil/n/1/" + "/".join(["s"] * 33), IP),
    ("path over 1024 bytes", "/repos/evil/n/1/" + "/".join(["p" * 250] * 5), IP),
    ("repo starts with dash", "/repos/-evil/n/1/x.bin", IP),
    ("repo starts with dot", "/repos/.evil/n/1/x.bin", IP),
    ("repo starts with underscore", "/repos/_evil/n/1/x.bin", IP),
    ("repo with space", "/repos/ev%20il/n/1/x.bin", IP),
    ("repo with plus", "/repos/ev+il/n/1/x.bin", IP),
    ("repo with utf8", "/repos/%C3%A9vil/n/1/x.bin", IP),
    ("repo 65 chars", "/repos/" + "r" * 65 + "/n/1/x.bin", IP),
    ("bad escape %zz", "/repos/evil/n/1/x%zz.bin", IP_OR_BR),
    ("bad escape truncated", "/repos/evil/n/1/x.bin%2", IP_OR_BR),
    ("bad escape lone percent", "/repos/evil/n/1/x%", IP_OR_BR),
    ("raw fragment", "/repos/evil/n/1/a#frag", ("bad_request",)),
]

# Names no upload may create: characters that hide or reorder text.  Refused on PUT (400);
# a GET of one is an ordinary lookup (404 here), so a name stored before the rule stays
# reachable.
INVISIBLE_TARGETS = [
    ("C1 control NEL", "/repos/evil/n/1/a%c2%85b.bin"),
    ("C1 control in name", "/repos/evil/n%c2%9f/1/x.bin"),
    ("C1 control in version", "/repos/evil/n/1%c2%80/x.bin"),
    ("right-to-left override", "/repos/evil/n/1/invoice%e2%80%aefdp.exe"),
    ("bidi isolate", "/repos/evil/n/1/%e2%81%a6x.bin"),
    ("line separator", "/repos/evil/n/1/a%e2%80%a8b.bin"),
    ("left-to-right mark", "/repos/evil/n/1/a%e2%80%8e.bin"),
]

# raw bytes in the request line that are not valid there at all
BAD_RAW_LINES = [
    ("raw NUL", b"/repos/evil/n/1/x\x00.bin"),
    ("raw ctl", b"/repos/evil/n/1/x\x01.bin"),
    ("raw DEL", b"/repos/evil/n/1/x\x7f.bin"),
    ("raw space", b"/repos/evil/n/1/x y.bin"),
    ("raw tab", b"/repos/evil/n/1/x\ty.bin"),
]

GOOD_TARGETS = [
    ("segment 255 bytes", "/repos/good/n/1/" + "a" * 255, "a" * 255),
    ("segment 254 utf8 bytes", "/repos/good/n/1/" + "%C3%A9" * 127, "\u00e9" * 127),
    ("repo 64 chars", "/repos/" + "R" * 64 + "/n/1/x.bin", "x.bin"),
    ("repo with ._-", "/repos/a.b_c-d/n/1/x.bin", "x.bin"),
    ("path 32 segments", "/repos/good/n/2/" + "/".join(["s"] * 32), "/".join(["s"] * 32)),
    ("path 1024 bytes", "/repos/good/n/3/" + "/".join(["p" * 200] * 4 + ["q" * 220]),
     "/".join(["p" * 200] * 4 + ["q" * 220])),
    ("three dots", "/repos/good/n/1/.../x.bin", ".../x.bin"),
    ("dotfile", "/repos/good/n/1/.hidden", ".hidden"),
    ("dots inside", "/repos/good/n/1/a..b", "a..b"),
    ("double-encoded dotdot is literal", "/repos/good/n/1/%252e%252e/x.bin", "%2e%2e/x.bin"),
    ("encoded space", "/repos/good/n/1/a%20b.txt", "a b.txt"),
    ("encoded ordinary chars", "/repos/good/n/1/%61%62c.bin", "abc.bin"),
]


def req(method, target, body=BODY, token=None):
    if isinstance(target, str):
        target = target.encode("latin-1")
    h = b"%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" % (method.encode(), target)
    if token:
        h += b"Authorization: Bearer %s\r\n" % token.encode()
    if method == "PUT":
        h += b"Content-Length: %d\r\n" % len(body)
        return h + b"\r\n" + body
    return h + b"\r\n"


class BadPathTest(ServerTestCase):

    def assertNothingNamedLikeUploads(self):
        """No file named after an upload appears in the data dir (blobs are
        content-addressed: a file named x.bin means a path leaked), and none
        beside it."""
        parent = os.path.dirname(self.srv.data)
        for n in ("x.bin", "passwd", "tmp"):
            self.assertFalse(os.path.exists(os.path.join(parent, "n", n)), n)
        for dirpath, _, files in os.walk(self.srv.data):
            for f in files:
                self.assertNotIn(f, ("x.bin", "passwd", "a\\b.bin", "x y.bin"),
                                 "a file named after a coordinate: %s/%s" % (dirpath, f))

    def test_bad_targets_put(self):
        before = self.srv.storage()
        for desc, target, codes in BAD_TARGETS:
            self.srv.assert_alive()  # fail fast if a previous case crashed it
            with self.subTest(desc=desc, target=target[:80]):
                r = self.srv.raw_request(req("PUT", target, token=self.srv.token))
                self.assertError(r, 400, codes)
                self.assertStorageUnchanged(before, msg=desc)
        self.assertError(self.srv.get("/api/v1/repos/evil"), 404, "not_found")
        self.assertEqual(self.srv.tmp_files(), [])
        self.assertNothingNamedLikeUploads()
        self.assertServing()

    def test_invisible_characters_refused_on_upload(self):
        before = self.srv.storage()
        for desc, target in INVISIBLE_TARGETS:
            with self.subTest(desc=desc):
                r = self.srv.raw_request(req("PUT", target, token=self.srv.token))
                self.assertError(r, 400, IP)
                self.assertIn("bidirectional", r.json()["error"]["message"])
                r = self.srv.raw_request(req("GET", target, token=self.srv.token))
                self.assertError(r, 404, "not_found")
        self.assertStorageUnchanged(before)
        self.assertServing()

    def test_bad_targets_get_head(self):
        for desc, target, codes in BAD_TARGETS:
            self.srv.assert_alive()  # fail fast if a previous case crashed it
            with self.subTest(desc=desc, target=target[:80]):
                r = self.srv.raw_request(req("GET", target, token=self.srv.token))
                self.assertError(r, 400, codes)
                r = self.srv.raw_request(req("HEAD", target, token=self.srv.token), head=True)
                self.assertEqual(r.status, 400, r)
                self.assertTrue(r.header("x-request-id"))
        self.assertServing()

    def test_bad_raw_request_lines(self):
        before = self.srv.storage()
        for desc, target in BAD_RAW_LINES:
            self.srv.assert_alive()  # fail fast if a previous case crashed it
            with self.subTest(desc=desc):
                for method in ("PUT", "GET"):
                    r = self.srv.raw_request(req(method, target, token=self.srv.token))
                    self.assertError(r, 400, IP_OR_BR)
        self.assertStorageUnchanged(before)
        self.assertNothingNamedLikeUploads()
        self.assertServing()

    def test_good_boundaries(self):
        for desc, target, path in GOOD_TARGETS:
            self.srv.assert_alive()  # fail fast if a previous case crashed it
            with self.subTest(desc=desc):
                data = os.urandom(64)
                r = self.srv.raw_request(req("PUT", target, body=data, token=self.srv.token))
                self.assertEqual(r.status, 201, r)
                self.assertEqual(r.json()["path"], path)
                g = self.srv.raw_request(req("GET", target, token=self.srv.token))
                self.assertEqual(g.status, 200, g)
                self.assertEqual(g.body, data)
        self.assertServing()

    def test_listing_bad_path_segments(self):
        for target in ("/api/v1/repos/%2e%2e", "/api/v1/repos/good/%2e%2e",
                       "/api/v1/repos/good/n/%00", "/api/v1/repos/-bad"):
            self.srv.assert_alive()  # fail fast if a previous case crashed it
            with self.subTest(target=target):
                r = self.srv.raw_request(req("GET", target, token=self.srv.token))
                self.assertError(r, 400, IP)
        self.assertServing()

    def test_server_survives_burst_of_garbage(self):
        before = self.srv.storage()
        junk = [b"\x00" * 100, b"\r\n" * 50, os.urandom(4096), b"PUT " + b"/" * 5000,
                b"GET /healthz HTTP/1.1\r\n" + b"X: " + b"\xff" * 100 + b"\r\n\r\n"]
        for j in junk:
            self.srv.raw(j, timeout=3)
        self.assertStorageUnchanged(before)
        self.assertServing()


if __name__ == "__main__":
    unittest.main()
