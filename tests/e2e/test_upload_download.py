"""Uploads and downloads against the real arcad: sizes, checksums, retries,
conflicts, checksum deploy, concurrency, ranges, conditional requests."""

import datetime
import email.utils
import hashlib
import os
import random
import re
import threading
import time
import unittest

from harness import (ArcaServer, ArcaTestMixin, RawConn, ServerTestCase, b64,
                     content_digest_sha256, md5_hex, sha1_hex, sha256_hex, uri_path)

MiB = 1 << 20
SAFE_RID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def uniq():
    return os.urandom(5).hex()


class UploadDownloadTest(ServerTestCase):

    # -- helpers ---------------------------------------------------------------

    def check_artifact_json(self, j, repo, name, version, path, data):
        self.assertEqual(j.get("repo"), repo, j)
        self.assertEqual(j.get("name"), name, j)
        self.assertEqual(j.get("version"), version, j)
        self.assertEqual(j.get("path"), path, j)
        self.assertEqual(j.get("size"), len(data), j)
        cs = j.get("checksums")
        self.assertIsInstance(cs, dict, j)
        self.assertEqual(cs.get("sha256"), sha256_hex(data), j)
        self.assertEqual(cs.get("sha1"), sha1_hex(data), j)
        self.assertEqual(cs.get("md5"), md5_hex(data), j)
        self.assertRegex(j.get("created", ""), r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", j)
        self.assertIsInstance(j.get("created_by"), str, j)
        self.assertTrue(j.get("created_by"), j)
        self.assertEqual(j.get("download_uri"), uri_path("/repos/%s/%s/%s/%s"
                                                         % (repo, name, version, path)), j)

    def check_download_headers(self, r, data):
        h = r.headers
        self.assertEqual(h.get("content-length"), str(len(data)), r)
        self.assertEqual(h.get("etag"), '"%s"' % sha256_hex(data), r)
        self.assertEqual(h.get("x-checksum-sha256"), sha256_hex(data), r)
        self.assertEqual(h.get("x-checksum-sha1"), sha1_hex(data), r)
        self.assertEqual(h.get("x-checksum-md5"), md5_hex(data), r)
        self.assertEqual(h.get("accept-ranges"), "bytes", r)
        self.assertIsNotNone(email.utils.parsedate_to_datetime(h.get("last-modified")), r)
        self.assertTrue(h.get("x-request-id"), r)
        self.assertEqual(h.get("x-content-type-options"), "nosniff", r)
        self.assertEqual(h.get("content-security-policy"), "sandbox", r)

    def upload(self, data, ext="bin", headers=None, repo="libs"):
        name = "app" + uniq()
        path = "/repos/%s/%s/1.0/file.%s" % (repo, name, ext)
        r = self.srv.put(path, data, headers=headers)
        self.assertEqual(r.status, 201, r)
        return path, r

    # -- sizes -----------------------------------------------------------------

    def test_sizes_roundtrip(self):
        sizes = [0, 1, 2, 3, 7, 255, 1000, 4095, 4097, 65535, 65537, MiB - 1, MiB, MiB + 1,
                 3 * MiB + 17, 5 * MiB - 3]
        for size in sizes:
            self.srv.assert_alive()  # fail fast if a previous case crashed it
            with self.subTest(size=size):
                data = os.urandom(size)
                name = "sizes" + uniq()
                path = "/repos/libs/%s/1.0/blob-%d.bin" % (name, size)
                r = self.srv.put(path, data)
                self.assertEqual(r.status, 201, r)
                self.assertEqual(r.header("location"), path, r)
                self.assertIn("application/json", r.header("content-type", ""), r)
                self.assertTrue(r.header("x-request-id"))
                self.check_artifact_json(r.json(), "libs", name, "1.0", "blob-%d.bin" % size,
                                         data)
                g = self.srv.get(path)
                self.assertEqual(g.status, 200, g)
                self.assertEqual(len(g.body), size)
                self.assertTrue(g.body == data, "downloaded bytes differ (size %d)" % size)
                self.check_download_headers(g, data)
                h = self.srv.head(path)
                self.assertEqual(h.status, 200, h)
                self.assertEqual(h.body, b"")
                self.check_download_headers(h, data)
                self.assertEqual(h.header("last-modified"), g.header("last-modified"))

    def test_created_by_and_last_modified(self):
        data = os.urandom(10)
        t0 = time.time()
        path, r = self.upload(data)
        j = r.json()
        self.assertEqual(j["created_by"], "admin", "uploaded with the admin token")
        created = datetime.datetime.strptime(j["created"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
        self.assertLess(abs(created - t0), 5, j["created"])
        lm = email.utils.parsedate_to_datetime(self.srv.head(path).header("last-modified"))
        self.assertLess(abs(lm.timestamp() - created), 1.01,
                        "Last-Modified is not the upload time")

    def test_chunked_upload(self):
        data = os.urandom(3 * MiB + 12345)

        def gen():
            rnd = random.Random(7)
            i = 0
            while i < len(data):
                n = rnd.choice([1, 2, 100, 4096, 65536, 300000])
                yield data[i:i + n]
                i += n

        path = "/repos/libs/chunky%s/1.0/c.bin" % uniq()
        r = self.srv.put(path, gen())
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json()["size"], len(data))
        self.assertEqual(r.json()["checksums"]["sha256"], sha256_hex(data))
        self.assertStored(path, data)

    def test_chunked_upload_empty(self):
        path = "/repos/libs/chunky%s/1.0/empty.bin" % uniq()
        r = self.srv.put(path, iter([]))
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json()["size"], 0)
        self.assertStored(path, b"")

    def test_restart_keeps_data(self):
        data = os.urandom(2 * MiB + 5)
        path, _ = self.upload(data)
        self.srv.restart()
        self.assertStored(path, data)

    def test_unicode_and_nested_path(self):
        data = b"nested"
        # version "1.0-\u00e9" and path "a/b/\u00fcber.txt", percent-encoded UTF-8
        path = "/repos/libs/uni%s/1.0-%%C3%%A9/a/b/%%C3%%BCber.txt" % uniq()
        r = self.srv.put(path, data)
        self.assertEqual(r.status, 201, r)
        j = r.json()
        self.assertEqual(j["version"], "1.0-\u00e9")
        self.assertEqual(j["path"], "a/b/\u00fcber.txt")
        self.assertStored(path, data)

    def test_download_uri_and_location_are_percent_encoded(self):
        """Names with '%', ' ', '?', '#', an encoded '/', '+' and UTF-8: the 201's Location and
        download_uri, and the listing's download_uri, fetch exactly that file when used as
        they are, never a neighbour ("a b" beside "a%20b", "a" beside "a?b")."""
        base = "/repos/libs/enc%s/1.0+b.5/" % uniq()
        names = {"a": "a", "a b": "a%20b", "a%20b": "a%2520b", "a?b": "a%3Fb", "a%b": "a%25b",
                 "a%2Fb": "a%252Fb", "a#b": "a%23b", "d/\u00fcber;x.txt": "d/%C3%BCber%3Bx.txt"}
        datas = {}
        for name, enc in names.items():
            data = os.urandom(100)
            datas[name] = data
            r = self.srv.put(base + enc, data)
            self.assertEqual(r.status, 201, r)
            self.assertEqual(r.json()["path"], name)
            self.assertEqual(r.json()["download_uri"], base + enc)
            self.assertEqual(r.header("location"), base + enc)
        listing = self.srv.json("/api/v1" + base.rstrip("/"))
        uris = {it["path"]: it["download_uri"] for it in listing["items"]}
        self.assertEqual(set(uris), set(names))
        for name, uri in uris.items():
            with self.subTest(name=name):
                self.assertEqual(uri, base + names[name])
                r = self.srv.get(uri)
                self.assertEqual(r.status, 200, r)
                self.assertTrue(r.body == datas[name], "%s fetched another file" % uri)

    def test_query_string_ignored(self):
        data = os.urandom(50)
        base = "/repos/libs/q%s/1.0/q.bin" % uniq()
        r = self.srv.put(base + "?foo=bar&x=1", data)
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json()["path"], "q.bin")
        self.assertStored(base, data)
        g = self.srv.get(base + "?anything=1")
        self.assertEqual(g.status, 200)
        self.assertEqual(g.body, data)

    def test_get_missing(self):
        r = self.srv.get("/repos/libs/nothere%s/1.0/x.bin" % uniq())
        self.assertError(r, 404, "not_found")
        r = self.srv.head("/repos/libs/nothere%s/1.0/x.bin" % uniq())
        self.assertEqual(r.status, 404)

    # -- retries and conflicts ---------------------------------------------------

    def test_idempotent_retry(self):
        data = os.urandom(12345)
        path, r1 = self.upload(data)
        before = self.srv.storage()
        r2 = self.srv.put(path, data)
        self.assertEqual(r2.status, 200, r2)
        j1, j2 = r1.json(), r2.json()
        for k in ("repo", "name", "version", "path", "size", "checksums", "created",
                  "download_uri"):
            self.assertEqual(j1.get(k), j2.get(k), "retry JSON differs in %s" % k)
        self.assertStorageUnchanged(before)
        self.assertStored(path, data)

    def test_conflict_on_changed_bytes(self):
        data = os.urandom(4000)
        path, _ = self.upload(data)
        before = self.srv.storage()
        other = data[:-1] + bytes([data[-1] ^ 1])
        r = self.srv.put(path, other)
        self.assertError(r, 409, "conflict")
        self.assertEqual(r.json()["error"].get("sha256"), sha256_hex(data), r)
        # different size, too
        r = self.srv.put(path, data + b"x")
        self.assertError(r, 409, "conflict")
        r = self.srv.put(path, b"")
        self.assertError(r, 409, "conflict")
        self.assertStorageUnchanged(before)
        self.assertStored(path, data)
        self.assertServing()

    def test_if_none_match_star(self):
        data = os.urandom(300)
        path = "/repos/libs/inm%s/1.0/f.bin" % uniq()
        r = self.srv.put(path, data, headers={"If-None-Match": "*"})
        self.assertEqual(r.status, 201, r)
        before = self.srv.storage()
        r = self.srv.put(path, data, headers={"If-None-Match": "*"})
        self.assertError(r, 412, "precondition_failed")
        r = self.srv.put(path, os.urandom(300), headers={"If-None-Match": "*"})
        self.assertError(r, 412, "precondition_failed")
        self.assertStorageUnchanged(before)
        self.assertStored(path, data)
        self.assertServing()

    # -- client checksums --------------------------------------------------------

    def test_checksum_headers_accepted(self):
        data = os.urandom(7777)
        hdrs = {"X-Checksum-Sha256": sha256_hex(data), "X-Checksum-Sha1": sha1_hex(data),
                "X-Checksum-Md5": md5_hex(data)}
        path, r = self.upload(data, headers=hdrs)
        self.assertStored(path, data)
        # upper-case hex is still hex
        path2, _ = self.upload(data, headers={"X-Checksum-Sha256": sha256_hex(data).upper()})
        self.assertStored(path2, data)

    def test_checksum_mismatch_stores_nothing(self):
        data = os.urandom(5000)
        wrong = os.urandom(5000)
        cases = [
            ("sha256", {"X-Checksum-Sha256": sha256_hex(wrong)}, sha256_hex(wrong),
             sha256_hex(data)),
            ("sha1", {"X-Checksum-Sha1": sha1_hex(wrong)}, sha1_hex(wrong), sha1_hex(data)),
            ("md5", {"X-Checksum-Md5": md5_hex(wrong)}, md5_hex(wrong), md5_hex(data)),
            # one right, one wrong
            ("md5", {"X-Checksum-Sha256": sha256_hex(data), "X-Checksum-Md5": md5_hex(wrong)},
             md5_hex(wrong), md5_hex(data)),
        ]
        for algo, hdrs, expected, actual in cases:
            self.srv.assert_alive()  # fail fast if a previous case crashed it
            with self.subTest(algo=algo, hdrs=sorted(hdrs)):
                before = self.srv.storage()
                path = "/repos/libs/mm%s/1.0/m.bin" % uniq()
                r = self.srv.put(path, data, headers=hdrs)
                self.assertError(r, 400, "checksum_mismatch")
                e = r.json()["error"]
                self.assertEqual(re.sub(r"[^a-z0-9]", "", str(e.get("algorithm")).lower()),
                                 algo, e)
                self.assertEqual(str(e.get("expected")).lower(), expected, e)
                self.assertEqual(str(e.get("actual")).lower(), actual, e)
                self.assertNotStored(path)
                self.assertStorageUnchanged(before)
                self.assertEqual(self.srv.tmp_files(), [])
        self.assertServing()

    def test_checksum_mismatch_chunked(self):
        data = os.urandom(2 * MiB + 1)
        before = self.srv.storage()
        path = "/repos/libs/mmc%s/1.0/m.bin" % uniq()
        r = self.srv.put(path, iter([data[:MiB], data[MiB:]]),
                         headers={"X-Checksum-Sha256": "0" * 64})
        self.assertError(r, 400, "checksum_mismatch")
        self.assertNotStored(path)
        self.assertStorageUnchanged(before)
        self.assertServing()

    def test_content_digest(self):
        data = os.urandom(4321)
        path, _ = self.upload(data, headers={"Content-Digest": content_digest_sha256(data)})
        self.assertStored(path, data)
        # sha (SHA-1) and md5 forms, and a list with an unknown algorithm
        hdr = "sha=:%s:, md5=:%s:, x-unknown-alg=:AAAA:" % (
            b64(hashlib.sha1(data).digest()), b64(hashlib.md5(data).digest()))
        path, _ = self.upload(data, headers={"Content-Digest": hdr})
        self.assertStored(path, data)
        # only unknown algorithms: ignored
        path, _ = self.upload(data, headers={"Content-Digest": "x-unknown-alg=:AAAA:"})
        self.assertStored(path, data)

    def test_content_digest_mismatch(self):
        data = os.urandom(4321)
        wrong = os.urandom(10)
        for hdr in (content_digest_sha256(wrong),
                    "sha-256=:%s:" % b64(hashlib.sha256(wrong).digest()) + ", x-unknown=:AAAA:",
                    "md5=:%s:" % b64(hashlib.md5(wrong).digest()),
                    "sha=:%s:" % b64(hashlib.sha1(wrong).digest())):
            self.srv.assert_alive()  # fail fast if a previous case crashed it
            with self.subTest(hdr=hdr):
                before = self.srv.storage()
                path = "/repos/libs/cd%s/1.0/m.bin" % uniq()
                r = self.srv.put(path, data, headers={"Content-Digest": hdr})
                self.assertError(r, 400, "checksum_mismatch")
                self.assertNotStored(path)
                self.assertStorageUnchanged(before)
        self.assertServing()

    def raw_put(self, path, data, header_lines):
        """A PUT with header lines as given (repeated names allowed)."""
        with RawConn(self.srv.port, timeout=20) as c:
            c.send("PUT %s HTTP/1.1\r\nHost: t\r\n%sContent-Length: %d\r\n%s\r\n"
                   % (path, self.srv.auth_line(), len(data),
                      "".join(h + "\r\n" for h in header_lines)))
            c.send(data)
            return c.read_response()

    def test_content_digest_conflicts(self):
        """Two different values for one algorithm (in one Content-Digest, over two lines, or
        against an X-Checksum header) are refused before the body counts: 400
        checksum_conflict, nothing stored.  Repeated equal values and parameters are fine."""
        data = os.urandom(3000)
        good, bad = b64(hashlib.sha256(data).digest()), b64(hashlib.sha256(b"x").digest())
        for lines in (["Content-Digest: sha-256=:%s:, sha-256=:%s:" % (good, bad)],
                      ["Content-Digest: sha-256=:%s:, sha-256=:%s:" % (bad, good)],
                      ["Content-Digest: sha-256=:%s:" % good, "Content-Digest: sha-256=:%s:" % bad],
                      ["X-Checksum-Sha256: %s" % sha256_hex(data),
                       "Content-Digest: sha-256=:%s:" % bad],
                      ["X-Checksum-Md5: %s" % md5_hex(data),
                       "Content-Digest: md5=:%s:" % b64(hashlib.md5(b"x").digest())]):
            with self.subTest(lines=lines):
                before = self.srv.storage()
                p = "/repos/libs/cdc%s/1.0/c.bin" % uniq()
                r = self.raw_put(p, data, lines)
                self.assertError(r, 400, "checksum_conflict")
                self.assertIn(r.json()["error"]["algorithm"], ("sha256", "md5"))
                self.assertNotStored(p)
                self.assertStorageUnchanged(before)
        r = self.raw_put("/repos/libs/cdc%s/1.0/c.bin" % uniq(), data,
                         ["Content-Digest: sha-256=:%s:" % good,
                          "Content-Digest: sha-256=:%s:" % bad])
        self.assertEqual(r.json()["error"]["values"],
                         [sha256_hex(data), hashlib.sha256(b"x").hexdigest()])
        for lines in (["Content-Digest: sha-256=:%s:, sha-256=:%s:" % (good, good)],
                      ["Content-Digest: sha-256=:%s:;note=1, sha-512=:AAAA:" % good],
                      ["Content-Digest: SHA-256=:%s:" % good],
                      ["Content-Digest: sha-256=:%s:" % good, "Content-Digest: md5=:%s:"
                       % b64(hashlib.md5(data).digest())]):
            with self.subTest(lines=lines):
                p = "/repos/libs/cdc%s/1.0/c.bin" % uniq()
                r = self.raw_put(p, data, lines)
                self.assertEqual(r.status, 201, r)
                self.assertStored(p, data)
        for lines, msg in ((["Content-Digest: garbage"], "malformed Content-Digest"),
                           (["Content-Digest: sha-256=:%s:, nonsense" % good],
                            "malformed Content-Digest"),
                           (["X-Checksum-Sha256: %s" % sha256_hex(data)] * 2,
                            "send X-Checksum-Sha256 once")):
            with self.subTest(lines=lines):
                p = "/repos/libs/cdc%s/1.0/c.bin" % uniq()
                r = self.raw_put(p, data, lines)
                self.assertError(r, 400, "bad_request")
                self.assertIn(msg, r.json()["error"]["message"])
                self.assertNotStored(p)
        self.assertServing()

    # -- checksum deploy -----------------------------------------------------------

    def test_checksum_deploy(self):
        data = os.urandom(9999)
        path, _ = self.upload(data)
        before = self.srv.storage()
        p2 = "/repos/other/dep%s/2.0/linked.bin" % uniq()
        r = self.srv.put(p2, b"", headers={"X-Checksum-Deploy": "true",
                                           "X-Checksum-Sha256": sha256_hex(data)})
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.header("location"), p2)
        j = r.json()
        self.assertEqual(j["size"], len(data))
        self.assertEqual(j["checksums"]["sha256"], sha256_hex(data))
        self.assertEqual(j["checksums"]["md5"], md5_hex(data))
        self.assertStored(p2, data)
        after = self.srv.storage()
        self.assertEqual(after["blob_count"], before["blob_count"])
        self.assertEqual(after["stored_bytes"], before["stored_bytes"])
        self.assertEqual(after["artifact_count"], before["artifact_count"] + 1)
        self.assertEqual(after["logical_bytes"], before["logical_bytes"] + len(data))
        # by SHA-1
        p3 = "/repos/other/dep%s/2.0/linked1.bin" % uniq()
        r = self.srv.put(p3, b"", headers={"X-Checksum-Deploy": "true",
                                           "X-Checksum-Sha1": sha1_hex(data)})
        self.assertEqual(r.status, 201, r)
        self.assertStored(p3, data)
        # again: safe retry
        r = self.srv.put(p3, b"", headers={"X-Checksum-Deploy": "true",
                                           "X-Checksum-Sha256": sha256_hex(data)})
        self.assertEqual(r.status, 200, r)

    def test_checksum_deploy_unknown(self):
        before = self.srv.storage()
        unknown = os.urandom(64)
        for hdrs in ({"X-Checksum-Sha256": sha256_hex(unknown)},
                     {"X-Checksum-Sha1": sha1_hex(unknown)}):
            self.srv.assert_alive()  # fail fast if a previous case crashed it
            with self.subTest(hdrs=sorted(hdrs)):
                p = "/repos/other/dep%s/2.0/nope.bin" % uniq()
                h = {"X-Checksum-Deploy": "true"}
                h.update(hdrs)
                r = self.srv.put(p, b"", headers=h)
                self.assertError(r, 404, "not_found")
                self.assertNotStored(p)
        self.assertStorageUnchanged(before)
        self.assertServing()

    def test_checksum_deploy_header_values(self):
        """X-Checksum-Deploy is true or false (any case): false is an ordinary upload, any
        other value a 400 before anything is read."""
        data = os.urandom(300)
        for v in ("yes", "1", ""):
            with self.subTest(v=v):
                p = "/repos/other/dv%s/1.0/f.bin" % uniq()
                r = self.srv.put(p, b"", headers={"X-Checksum-Deploy": v,
                                                  "X-Checksum-Sha256": sha256_hex(data)})
                self.assertError(r, 400, "bad_request")
                self.assertIn("true or false", r.json()["error"]["message"])
                self.assertNotStored(p)
        p = "/repos/other/dv%s/1.0/f.bin" % uniq()
        r = self.srv.put(p, data, headers={"X-Checksum-Deploy": "False"})
        self.assertEqual(r.status, 201, r)
        self.assertStored(p, data)

    # -- concurrency -----------------------------------------------------------------

    def _concurrent_puts(self, bodies, path):
        n = len(bodies)
        barrier = threading.Barrier(n)
        results = [None] * n

        def worker(i):
            try:
                barrier.wait(timeout=30)
                results[i] = self.srv.put(path, bodies[i], timeout=120)
            except Exception as e:  # recorded, asserted below
                results[i] = e

        ts = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(180)
        for i, r in enumerate(results):
            self.assertNotIsInstance(r, Exception, "request %d failed: %r" % (i, r))
            self.assertIsNotNone(r, "request %d did not finish" % i)
        return results

    def test_20_concurrent_puts_same_bytes(self):
        data = os.urandom(MiB + 333)
        path = "/repos/libs/conc%s/1.0/same.bin" % uniq()
        before = self.srv.storage()
        results = self._concurrent_puts([data] * 20, path)
        statuses = sorted(r.status for r in results)
        self.assertEqual(statuses, [200] * 19 + [201], statuses)
        for r in results:
            self.assertEqual(r.json()["checksums"]["sha256"], sha256_hex(data))
        self.assertStored(path, data)
        after = self.srv.storage()
        self.assertEqual(after["artifact_count"], before["artifact_count"] + 1)
        self.assertEqual(after["blob_count"], before["blob_count"] + 1)
        self.assertEqual(self.srv.tmp_files(), [])

    def test_20_concurrent_puts_different_bytes(self):
        bodies = [os.urandom(256 * 1024 + i) for i in range(20)]
        path = "/repos/libs/conc%s/1.0/diff.bin" % uniq()
        before = self.srv.storage()
        results = self._concurrent_puts(bodies, path)
        statuses = [r.status for r in results]
        self.assertEqual(statuses.count(201), 1, statuses)
        self.assertEqual(statuses.count(409), 19, statuses)
        winner = statuses.index(201)
        wsha = sha256_hex(bodies[winner])
        for i, r in enumerate(results):
            if i != winner:
                self.assertEqual(r.error_code, "conflict", r)
                self.assertEqual(r.json()["error"].get("sha256"), wsha, r)
        self.assertStored(path, bodies[winner])
        after = self.srv.storage()
        self.assertEqual(after["artifact_count"], before["artifact_count"] + 1)
        self.assertEqual(after["blob_count"], before["blob_count"] + 1)
        self.assertEqual(after["stored_bytes"], before["stored_bytes"] + len(bodies[winner]))
        self.assertEqual(self.srv.tmp_files(), [])

    def test_parallel_uploads_and_downloads(self):
        """8 clients upload and download different coordinates at the same time."""
        errors = []

        def client(i):
            try:
                for k in range(3):
                    data = os.urandom(random.randint(0, 3 * MiB))
                    p = "/repos/par/c%d-%s/1/f%d.bin" % (i, uniq(), k)
                    r = self.srv.put(p, data, timeout=120)
                    if r.status != 201:
                        errors.append((p, "PUT", r.status, r.body[:200]))
                        continue
                    g = self.srv.get(p, timeout=120)
                    if g.status != 200 or g.body != data:
                        errors.append((p, "GET", g.status, len(g.body), len(data)))
            except Exception as e:
                errors.append(("client %d" % i, repr(e)))

        ts = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(300)
        self.assertEqual(errors, [])

    def test_checksum_deploy_conflict(self):
        a, b = os.urandom(100), os.urandom(100)
        pa, _ = self.upload(a)
        pb, _ = self.upload(b)
        before = self.srv.storage()
        r = self.srv.put(pb, b"", headers={"X-Checksum-Deploy": "true",
                                           "X-Checksum-Sha256": sha256_hex(a)})
        self.assertError(r, 409, "conflict")
        self.assertEqual(r.json()["error"].get("sha256"), sha256_hex(b))
        self.assertStorageUnchanged(before)
        self.assertStored(pb, b)
        self.assertServing()

    def test_malformed_checksum_header(self):
        data = os.urandom(100)
        for hdrs in ({"X-Checksum-Sha256": "zz" * 32}, {"X-Checksum-Sha256": "abc"},
                     {"X-Checksum-Sha1": "0" * 41}, {"X-Checksum-Md5": ""},
                     {"Content-Digest": "sha-256=:not base64!:"},
                     {"Content-Digest": "sha-256=:%s:" % b64(b"short")}):
            self.srv.assert_alive()
            with self.subTest(hdrs=hdrs):
                before = self.srv.storage()
                p = "/repos/libs/badsum%s/1.0/m.bin" % uniq()
                r = self.srv.put(p, data, headers=hdrs)
                self.assertError(r, 400, ("checksum_mismatch", "bad_request"))
                self.assertNotStored(p)
                self.assertStorageUnchanged(before)
        self.assertServing()

    def test_errors_keep_connection_usable(self):
        """After an error whose request was read completely, the connection
        either carries Connection: close or answers the next request."""
        data = os.urandom(1000)
        path, _ = self.upload(data)
        etag = '"%s"' % sha256_hex(data)
        auth = "Authorization: Bearer %s\r\n" % self.srv.token
        reqs = [
            ("GET /repos/libs/none%s/1/x HTTP/1.1\r\nHost: t\r\n%s\r\n" % (uniq(), auth)).encode(),
            ("GET %s HTTP/1.1\r\nHost: t\r\n%sRange: bytes=5000-\r\n\r\n" % (path, auth)).encode(),
            ("GET %s HTTP/1.1\r\nHost: t\r\n%sIf-None-Match: %s\r\n\r\n"
             % (path, auth, etag)).encode(),
            ("PUT %s HTTP/1.1\r\nHost: t\r\n%sContent-Length: 3\r\n\r\nabc" % (path, auth)).encode(),
            ("PUT %s HTTP/1.1\r\nHost: t\r\n%sIf-None-Match: *\r\nContent-Length: 3\r\n\r\nabc"
             % (path, auth)).encode(),
            ("PUT /repos/libs/ks%s/1/x HTTP/1.1\r\nHost: t\r\n%sX-Checksum-Sha256: %s\r\n"
             "Content-Length: 3\r\n\r\nabc" % (uniq(), auth, "0" * 64)).encode(),
            ("GET /api/v1/repos?limit=0 HTTP/1.1\r\nHost: t\r\n%s\r\n" % auth).encode(),
            ("GET /repos/libs/x/1/%%2e%%2e HTTP/1.1\r\nHost: t\r\n%s\r\n" % auth).encode(),
        ]
        for q in reqs:
            self.srv.assert_alive()
            with self.subTest(req=q[:60]):
                with self.srv.conn() as c:
                    c.send(q)
                    r = c.read_response()
                    self.assertGreaterEqual(r.status, 300, r)
                    if "close" in r.header("connection", "").lower():
                        continue
                    c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
                    r2 = c.read_response()
                    self.assertEqual(r2.status, 200)

    # -- content type ------------------------------------------------------------------

    def test_content_type_by_extension(self):
        cases = [
            ("app.jar", {"application/java-archive"}),
            ("pkg.json", {"application/json"}),
            ("doc.xml", {"application/xml", "text/xml"}),
            ("notes.txt", {"text/plain"}),
            ("src.tar.gz", {"application/gzip"}),
            ("src.tgz", {"application/gzip"}),
            ("a.zip", {"application/zip"}),
            ("app.pom", {"application/xml"}),
            ("blob.bin", {"application/octet-stream"}),
            ("noext", {"application/octet-stream"}),
        ]
        name = "ct" + uniq()
        for fname, types in cases:
            self.srv.assert_alive()  # fail fast if a previous case crashed it
            with self.subTest(fname=fname):
                path = "/repos/libs/%s/1.0/%s" % (name, fname)
                self.assertEqual(self.srv.put(path, b"x").status, 201)
                for m in (self.srv.get, self.srv.head):
                    r = m(path)
                    self.assertEqual(r.status, 200)
                    ct = r.header("content-type", "").split(";")[0].strip().lower()
                    self.assertIn(ct, types, "%s -> %r" % (fname, r.header("content-type")))

    # -- ranges ----------------------------------------------------------------------

    def test_ranges(self):
        data = os.urandom(3 * MiB + 101)
        size = len(data)
        path, _ = self.upload(data)
        cases = [
            ("bytes=0-0", 0, 0),
            ("bytes=0-99", 0, 99),
            ("bytes=100-199", 100, 199),
            ("bytes=%d-%d" % (MiB - 1, MiB), MiB - 1, MiB),
            ("bytes=%d-" % (size - 10), size - 10, size - 1),
            ("bytes=5-", 5, size - 1),
            ("bytes=-1", size - 1, size - 1),
            ("bytes=-500", size - 500, size - 1),
            ("bytes=-%d" % (size + 1000), 0, size - 1),
            ("bytes=%d-%d" % (size - 5, size + 1000), size - 5, size - 1),
            ("bytes=%d-%d" % (size - 1, size - 1), size - 1, size - 1),
        ]
        for rng, a, b in cases:
            self.srv.assert_alive()  # fail fast if a previous case crashed it
            with self.subTest(range=rng):
                r = self.srv.get(path, headers={"Range": rng})
                self.assertEqual(r.status, 206, r)
                self.assertEqual(r.header("content-range"), "bytes %d-%d/%d" % (a, b, size))
                self.assertEqual(r.header("content-length"), str(b - a + 1))
                self.assertTrue(r.body == data[a:b + 1], "range body differs")
                self.assertEqual(r.header("etag"), '"%s"' % sha256_hex(data))

    def test_range_unsatisfiable(self):
        data = os.urandom(1000)
        path, _ = self.upload(data)
        for rng in ("bytes=1000-", "bytes=1000-2000", "bytes=5000-6000"):
            self.srv.assert_alive()  # fail fast if a previous case crashed it
            with self.subTest(range=rng):
                r = self.srv.get(path, headers={"Range": rng})
                self.assertError(r, 416, "range_not_satisfiable")
                self.assertEqual(r.header("content-range"), "bytes */1000", r)
        empty, _ = self.upload(b"")
        r = self.srv.get(empty, headers={"Range": "bytes=0-0"})
        self.assertError(r, 416, "range_not_satisfiable")
        self.assertEqual(r.header("content-range"), "bytes */0", r)
        # a suffix range of an empty file is satisfiable, but no 206 can say so: the whole (empty)
        # file, 200 (RFC 9110 14.1.1)
        r = self.srv.get(empty, headers={"Range": "bytes=-1"})
        self.assertEqual((r.status, r.body, r.header("content-range")), (200, b"", None), r)

    def test_range_multi_and_malformed_give_200(self):
        data = os.urandom(5000)
        path, _ = self.upload(data)
        for rng in ("bytes=0-1,5-9", "bytes=0-10, 20-30", "bytes=abc", "bytes=5-1",
                    "items=0-5", "bytes=", "bytes=--5"):
            self.srv.assert_alive()  # fail fast if a previous case crashed it
            with self.subTest(range=rng):
                r = self.srv.get(path, headers={"Range": rng})
                self.assertEqual(r.status, 200, r)
                self.assertIsNone(r.header("content-range"), r)
                self.assertTrue(r.body == data)

    def test_if_range(self):
        data = os.urandom(5000)
        path, _ = self.upload(data)
        etag = '"%s"' % sha256_hex(data)
        lm = self.srv.head(path).header("last-modified")
        # matching ETag / date: range honoured
        for ir in (etag, lm):
            self.srv.assert_alive()  # fail fast if a previous case crashed it
            with self.subTest(if_range=ir):
                r = self.srv.get(path, headers={"Range": "bytes=10-19", "If-Range": ir})
                self.assertEqual(r.status, 206, r)
                self.assertEqual(r.body, data[10:20])
        # not matching: whole file
        old = "Sat, 01 Jan 2000 00:00:00 GMT"
        for ir in ('"%s"' % ("0" * 64), old, 'W/' + etag):
            self.srv.assert_alive()  # fail fast if a previous case crashed it
            with self.subTest(if_range=ir):
                r = self.srv.get(path, headers={"Range": "bytes=10-19", "If-Range": ir})
                self.assertEqual(r.status, 200, r)
                self.assertTrue(r.body == data)

    # -- conditional GET ---------------------------------------------------------------

    def assertNotModified(self, path, headers, **expect):
        """GET and HEAD with headers both answer 304, no body, the given header values."""
        for m in (self.srv.get, self.srv.head):
            r = m(path, headers=headers)
            self.assertEqual(r.status, 304, r)
            self.assertEqual(r.body, b"")
            for name, value in expect.items():
                self.assertEqual(r.header(name.replace("_", "-")), value, r)
            self.assertTrue(r.header("x-request-id"))

    def test_if_none_match_304(self):
        data = os.urandom(2048)
        path, _ = self.upload(data)
        etag = '"%s"' % sha256_hex(data)
        for inm in (etag, "*", '"nope", ' + etag):
            self.srv.assert_alive()  # fail fast if a previous case crashed it
            with self.subTest(inm=inm):
                self.assertNotModified(path, {"If-None-Match": inm}, etag=etag)
        r = self.srv.get(path, headers={"If-None-Match": '"%s"' % ("1" * 64)})
        self.assertEqual(r.status, 200)
        self.assertTrue(r.body == data)

    def test_if_modified_since_304(self):
        """If-Modified-Since (mirrors, wget -N): 304 at or after Last-Modified, 200 before it;
        ignored when If-None-Match is present or the date does not parse."""
        data = os.urandom(3000)
        path, _ = self.upload(data)
        lm = self.srv.head(path).header("last-modified")
        t = email.utils.parsedate_to_datetime(lm).timestamp()
        later = email.utils.formatdate(t + 3600, usegmt=True)
        earlier = email.utils.formatdate(t - 1, usegmt=True)
        # the two obsolete forms RFC 9110 5.6.7 says a recipient must accept
        gm = time.gmtime(t)
        rfc850 = time.strftime("%A, %d-%b-%y %H:%M:%S GMT", gm)
        asctime = time.strftime("%a %b ", gm) + "%2d" % gm.tm_mday + time.strftime(" %H:%M:%S %Y", gm)
        early850 = time.strftime("%A, %d-%b-%y %H:%M:%S GMT", time.gmtime(t - 1))
        for ims in (lm, later, rfc850, asctime):
            with self.subTest(ims=ims):
                self.assertNotModified(path, {"If-Modified-Since": ims}, last_modified=lm)
        for h in ({"If-Modified-Since": earlier}, {"If-Modified-Since": early850},
                  {"If-Modified-Since": "yesterday"},
                  {"If-Modified-Since": later, "If-None-Match": '"%s"' % ("2" * 64)}):
            with self.subTest(h=h):
                r = self.srv.get(path, headers=h)
                self.assertEqual(r.status, 200, r)
                self.assertTrue(r.body == data)

    def test_if_match_and_if_unmodified_since_412(self):
        """If-Match (strong comparison) and, without it, If-Unmodified-Since: 412 with a JSON
        error when they fail, the file when they hold."""
        data = os.urandom(5000)
        path, _ = self.upload(data)
        etag = '"%s"' % sha256_hex(data)
        lm = self.srv.head(path).header("last-modified")
        t = email.utils.parsedate_to_datetime(lm).timestamp()
        earlier = email.utils.formatdate(t - 60, usegmt=True)
        for h in ({"If-Match": '"%s"' % ("3" * 64)}, {"If-Match": "W/" + etag},
                  {"If-Unmodified-Since": earlier},
                  {"If-Match": '"nope"', "If-Unmodified-Since": lm}):
            with self.subTest(h=h):
                for m in (self.srv.get, self.srv.head):
                    r = m(path, headers=h)
                    self.assertEqual(r.status, 412, r)
                    if m == self.srv.get:
                        self.assertError(r, 412, "precondition_failed")
                    self.assertEqual(r.header("etag"), etag)
        for h in ({"If-Match": etag}, {"If-Match": "*"}, {"If-Match": '"x", ' + etag},
                  {"If-Unmodified-Since": lm}, {"If-Unmodified-Since": "not a date"},
                  {"If-Match": etag, "If-Unmodified-Since": earlier}):
            with self.subTest(h=h):
                r = self.srv.get(path, headers=h)
                self.assertEqual(r.status, 200, r)
                self.assertTrue(r.body == data)
        r = self.srv.get(path, headers={"If-Match": etag, "Range": "bytes=0-9"})
        self.assertEqual(r.status, 206)
        self.assertTrue(r.body == data[:10])
        # several lines of one field are one list (RFC 9110 5.3): the tag on the second counts
        for field, status in (("If-Match", 200), ("If-None-Match", 304)):
            with self.subTest(field=field), RawConn(self.srv.port) as c:
                c.send("GET %s HTTP/1.1\r\nHost: t\r\n%s%s: \"x\"\r\n%s: %s\r\n\r\n"
                       % (path, self.srv.auth_line(), field, field, etag))
                self.assertEqual(c.read_response().status, status)

    # -- request ids -------------------------------------------------------------------

    def test_request_id(self):
        data = b"rid"
        path, r = self.upload(data)
        rid = r.header("x-request-id")
        self.assertTrue(rid and SAFE_RID.match(rid), rid)
        self.assertEqual(self.srv.get(path, headers={"X-Request-Id": "abc-123_X.y"})
                         .header("x-request-id"), "abc-123_X.y")
        long_ok = "a" * 64
        self.assertEqual(self.srv.get(path, headers={"X-Request-Id": long_ok})
                         .header("x-request-id"), long_ok)
        for bad in ("a" * 65, "has space", "semi;colon", "sl/ash", "\u00e9".encode().decode(
                "latin-1")):
            self.srv.assert_alive()  # fail fast if a previous case crashed it
            with self.subTest(bad=bad):
                r = self.srv.get(path, headers={"X-Request-Id": bad})
                self.assertEqual(r.status, 200)
                got = r.header("x-request-id")
                self.assertTrue(got, "no X-Request-Id")
                self.assertNotEqual(got, bad)
                self.assertTrue(SAFE_RID.match(got), got)
        # errors carry it too, and echo it
        r = self.srv.get("/repos/libs/none%s/1/x" % uniq(), headers={"X-Request-Id": "err-1"})
        self.assertEqual(r.status, 404)
        self.assertEqual(r.header("x-request-id"), "err-1")
        r = self.srv.get("/no/such/route")
        self.assertEqual(r.status, 404)
        self.assertTrue(r.header("x-request-id"))
        # generated ids differ
        ids = {self.srv.get("/healthz").header("x-request-id") for _ in range(5)}
        self.assertEqual(len(ids), 5, ids)


if __name__ == "__main__":
    unittest.main()
