"""Integrity: corrupted, truncated and missing blobs are detected on download
and by `arcad verify`; a failing blob write is answered and stores nothing;
SIGTERM finishes or discards in-flight uploads and leaves no temp files."""

import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
import unittest

from harness import ARCAD, ArcaServer, ArcaTestMixin, RawConn, sha1_hex, sha256_hex

MiB = 1 << 20


def uniq():
    return os.urandom(4).hex()


def flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x5A]))
        f.flush()
        os.fsync(f.fileno())


class CorruptionTest(ArcaTestMixin, unittest.TestCase):
    def setUp(self):
        self.srv = ArcaServer().__enter__()

    def tearDown(self):
        self.srv.__exit__(None, None, None)

    def upload(self, data, name=None):
        p = "/repos/integ/%s/1/f.bin" % (name or "n" + uniq())
        r = self.srv.put(p, data)
        self.assertEqual(r.status, 201, r)
        bp = self.srv.blob_path(sha256_hex(data))
        self.assertTrue(os.path.isfile(bp), "blob not at DATA/blobs/<aa>/<sha256>: %s" % bp)
        with open(bp, "rb") as f:
            self.assertTrue(f.read() == data, "blob file content differs from upload")
        return p, bp

    def assertVerifyFinds(self, sha, expect_rc=1):
        r = self.srv.verify()
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, expect_rc, "arcad verify exit %d:\n%s" % (r.returncode,
                                                                                 out[-3000:]))
        if sha:
            self.assertIn(sha, out, "verify output does not name the blob")
            # one JSON line per problem
            problem_lines = [ln for ln in r.stdout.splitlines() if sha in ln]
            self.assertTrue(problem_lines)
            for ln in problem_lines:
                try:
                    json.loads(ln)
                except ValueError:
                    self.fail("problem line is not JSON: %r" % ln)
        return r

    def assertVerifyProblem(self, sha, problem, detail):
        """arcad verify names the blob with this problem, and its detail says why."""
        r = self.assertVerifyFinds(sha)
        found = [json.loads(ln) for ln in r.stdout.splitlines() if sha in ln]
        self.assertEqual([(f["problem"], f["detail"]) for f in found], [(problem, detail)])

    def assertCorrupt(self, path):
        r = self.srv.get(path)
        self.assertError(r, 500, "corrupt_blob")
        return r

    def test_verify_clean_store(self):
        self.srv.stop()
        self.assertVerifyFinds(None, expect_rc=0)  # empty store
        self.srv.start()
        for size in (0, 1, MiB, 2 * MiB + 7):
            self.upload(os.urandom(size))
        self.srv.stop()
        self.assertVerifyFinds(None, expect_rc=0)

    def test_store_from_before_the_flat_layout(self):
        """A data dir whose blobs sit at blobs/<aa>/<bb>/<sha256> (before blobs/LAYOUT): verify
        reads it as it is, and the next start moves every blob up a level and serves it."""
        files = {}
        for size in (0, 5, 70000, 2 * MiB + 3):
            data = os.urandom(size)
            p, _ = self.upload(data)
            files[p] = data
        self.srv.stop()
        root = self.srv.blobs_dir
        os.unlink(os.path.join(root, "LAYOUT"))
        nested = []
        for data in files.values():
            sha = sha256_hex(data)
            sub = os.path.join(root, sha[:2], sha[2:4])
            os.makedirs(sub, exist_ok=True)
            os.rename(self.srv.blob_path(sha), os.path.join(sub, sha))
            nested.append(os.path.join(sub, sha))
        self.assertVerifyFinds(None, expect_rc=0)  # read-only: finds them nested
        self.assertTrue(all(os.path.isfile(n) for n in nested))

        self.srv.start()
        self.assertIn("moved %d blob(s)" % len(files), self.srv.log_text())
        self.assertTrue(os.path.isfile(os.path.join(root, "LAYOUT")))
        for n in nested:
            self.assertFalse(os.path.exists(os.path.dirname(n)), "old shard left: " + n)
        for p, data in files.items():
            self.assertTrue(os.path.isfile(self.srv.blob_path(sha256_hex(data))))
            r = self.srv.get(p)
            self.assertEqual(r.status, 200, r)
            self.assertTrue(r.body == data, "%s differs after the move" % p)
        # new uploads land flat, and the store stays whole
        self.upload(os.urandom(3000))
        self.srv.stop()
        self.assertVerifyFinds(None, expect_rc=0)

    def test_flipped_byte_first_block(self):
        data = os.urandom(3 * MiB + 5)
        p, bp = self.upload(data)
        good = os.urandom(1000)
        gp, _ = self.upload(good)
        flip_byte(bp, 100)
        self.assertCorrupt(p)
        self.assertCorrupt(p)  # still, and logged; the server keeps serving
        self.assertStored(gp, good)
        self.assertIn(sha256_hex(data), self.srv.log_text(), "corruption not logged with sha256")
        self.assertServing()
        self.assertEqual(self.srv.stop(), 0)
        self.assertVerifyProblem(sha256_hex(data), "corrupt",
                                 "block 0 (bytes 0-1048575) does not match its checksum")

    def test_flipped_byte_small_blob(self):
        data = os.urandom(1000)
        p, bp = self.upload(data)
        flip_byte(bp, 999)
        self.assertCorrupt(p)
        self.srv.stop()
        self.assertVerifyProblem(sha256_hex(data), "corrupt",
                                 "block 0 (bytes 0-999) does not match its checksum")

    def test_flipped_byte_later_block_never_served(self):
        """A bad block after the first: 500 corrupt_blob, or a 200 whose body
        stops before the bad block (never bad bytes presented as good).  A
        connection closed before any status line is neither."""
        data = os.urandom(10 * MiB + 5)
        p, bp = self.upload(data)
        for off in (1 * MiB + 3, 2 * MiB + 10, 8 * MiB + 3, 10 * MiB + 2):
            self.srv.assert_alive()  # fail fast if a previous case crashed it
            with self.subTest(offset=off, block=off // MiB):
                flip_byte(bp, off)
                try:
                    with RawConn(self.srv.port, timeout=30) as c:
                        c.send("GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n" % (p, self.srv.auth_line()))
                        try:
                            r = c.read_response(allow_short=True)
                        except (EOFError, ConnectionError):
                            self.fail("bad block %d: connection closed without any response "
                                      "(expected 500 corrupt_blob, or 200 with a short body)"
                                      % (off // MiB))
                    if r.status == 500:
                        self.assertEqual(r.error_code, "corrupt_blob")
                    else:
                        self.assertEqual(r.status, 200, r)
                        self.assertTrue(r.short, "a corrupt block was served as a full body")
                        self.assertLess(len(r.body), len(data))
                        block = off // MiB
                        self.assertLessEqual(len(r.body), block * MiB,
                                             "bytes of the bad block were sent")
                        self.assertTrue(r.body == data[:len(r.body)], "bad bytes were sent")
                finally:
                    flip_byte(bp, off)  # restore
                self.assertStored(p, data)
        self.assertServing()

    def test_shared_blob_corrupt_for_every_coordinate(self):
        data = os.urandom(5000)
        p1, bp = self.upload(data)
        p2 = "/repos/integ/other%s/2/g.bin" % uniq()
        self.assertEqual(self.srv.put(p2, data).status, 201)
        flip_byte(bp, 0)
        self.assertCorrupt(p1)
        self.assertCorrupt(p2)

    def assertDeployRefused(self, data):
        """Checksum deploy (by SHA-256 and by SHA-1) of content whose stored copy is bad:
        404, so the client sends the body; nothing is linked."""
        for h in ({"X-Checksum-Sha256": sha256_hex(data)}, {"X-Checksum-Sha1": sha1_hex(data)}):
            dp = "/repos/integ/dep%s/1/d.bin" % uniq()
            h["X-Checksum-Deploy"] = "true"
            r = self.srv.put(dp, b"", headers=h)
            self.assertError(r, 404, "not_found")
            self.assertNotStored(dp)

    def test_good_bytes_repair_a_corrupt_blob(self):
        """A stored copy gone bad keeps its size, so only a read notices.  Checksum deploy
        of it gets 404 instead of a link to bad bytes; uploading the good bytes again, to
        the same coordinate (200, the safe retry) or to another (201), puts a whole copy in
        its place, and every coordinate naming that content downloads byte-exact again."""
        for size, off, same in ((5000, 4999, True), (3 * MiB + 5, 2 * MiB + 1, False)):
            with self.subTest(size=size):
                data = os.urandom(size)
                p1, bp = self.upload(data)
                p2 = "/repos/integ/rep%s/2/g.bin" % uniq()
                self.assertEqual(self.srv.put(p2, data).status, 201)
                flip_byte(bp, off)
                if off < MiB:
                    self.assertCorrupt(p1)
                self.assertDeployRefused(data)
                self.assertIn("checksum deploy: blob %s is damaged" % sha256_hex(data),
                              self.srv.log_text())
                if same:
                    self.assertEqual(self.srv.put(p1, data).status, 200)
                else:
                    p3 = "/repos/integ/rep%s/3/h.bin" % uniq()
                    self.assertEqual(self.srv.put(p3, data).status, 201)
                    self.assertStored(p3, data)
                self.assertStored(p1, data)
                self.assertStored(p2, data)
                with open(bp, "rb") as f:
                    self.assertTrue(f.read() == data, "the blob file was not replaced")
                self.assertEqual(self.srv.tmp_files(), [])
                h = {"X-Checksum-Deploy": "true", "X-Checksum-Sha256": sha256_hex(data)}
                dp = "/repos/integ/dep%s/1/d.bin" % uniq()
                self.assertEqual(self.srv.put(dp, b"", headers=h).status, 201)
                self.assertStored(dp, data)
        self.srv.stop()
        self.assertVerifyFinds(None, expect_rc=0)

    def test_deploy_refuses_a_missing_blob(self):
        data = os.urandom(7000)
        p, bp = self.upload(data)
        os.unlink(bp)
        self.assertDeployRefused(data)
        self.assertEqual(self.srv.put(p, data).status, 200)
        self.assertStored(p, data)

    def test_truncated_blob(self):
        data = os.urandom(2 * MiB + 100)
        p, bp = self.upload(data)
        with open(bp, "r+b") as f:
            f.truncate(len(data) - 1)
        self.assertCorrupt(p)
        self.srv.stop()
        self.assertVerifyProblem(sha256_hex(data), "corrupt",
                                 "the wrong size: %d bytes on disk, %d in the index"
                                 % (len(data) - 1, len(data)))

    def test_grown_blob(self):
        data = os.urandom(1000)
        p, bp = self.upload(data)
        with open(bp, "ab") as f:
            f.write(b"x")
        self.assertCorrupt(p)
        self.srv.stop()
        self.assertVerifyProblem(sha256_hex(data), "corrupt",
                                 "the wrong size: 1001 bytes on disk, 1000 in the index")

    def test_missing_blob(self):
        data = os.urandom(4096)
        p, bp = self.upload(data)
        os.unlink(bp)
        self.assertCorrupt(p)
        self.assertIn(sha256_hex(data), self.srv.log_text(), "missing blob not logged")
        self.assertServing()
        self.srv.stop()
        self.assertVerifyProblem(sha256_hex(data), "missing", "No such file or directory")

    def test_missing_empty_blob(self):
        p, bp = self.upload(b"")
        os.unlink(bp)
        self.assertCorrupt(p)
        self.srv.stop()
        self.assertVerifyFinds(sha256_hex(b""))

    def test_verify_alongside_running_server(self):
        data = os.urandom(10000)
        p, bp = self.upload(data)
        self.assertVerifyFinds(None, expect_rc=0)
        flip_byte(bp, 5)
        self.assertVerifyFinds(sha256_hex(data))
        self.srv.assert_alive()
        self.assertServing()



def metric(srv, name):
    """The value of one unlabelled counter in /metrics."""
    for line in srv.get("/metrics").body.decode().splitlines():
        if line.startswith(name + " "):
            return int(line.split()[1])
    raise AssertionError("no %s in /metrics" % name)


class FileCacheTest(ArcaTestMixin, unittest.TestCase):
    """Small files (<= 64 KiB) are answered from a per-worker memory cache,
    checked against the file by stat on every GET: a cached file that is
    changed, damaged, replaced or removed on disk is never answered from
    memory.  One worker, so every request meets the same cache."""

    SETTLE = 2.2  # a file is cached only once its ctime is 2 s old

    def setUp(self):
        self.srv = ArcaServer(config="[server]\nworkers = 1\n").__enter__()

    def tearDown(self):
        self.srv.__exit__(None, None, None)

    def cached(self, data):
        """Uploads data, lets its ctime settle, and GETs it until a hit."""
        p = "/repos/fc/n%s/1/f.bin" % uniq()
        self.assertEqual(self.srv.put(p, data).status, 201)
        bp = self.srv.blob_path(sha256_hex(data))
        time.sleep(self.SETTLE)
        self.assertStored(p, data)  # read from disk, verified, cached
        hits = metric(self.srv, "arca_file_cache_hits_total")
        self.assertStored(p, data)
        self.assertEqual(metric(self.srv, "arca_file_cache_hits_total"), hits + 1,
                         "second GET of a settled small file was not a cache hit")
        return p, bp

    def test_hit_answers_like_the_disk(self):
        data = os.urandom(5000)
        p, _ = self.cached(data)
        r = self.srv.get(p)
        self.assertEqual(r.header("X-Checksum-Sha256"), sha256_hex(data))
        self.assertEqual(r.header("ETag"), '"%s"' % sha256_hex(data))
        self.assertEqual(r.header("Content-Length"), "5000")
        self.assertEqual(r.header("Accept-Ranges"), "bytes")
        self.assertEqual(r.header("Content-Type"), "application/octet-stream")
        r = self.srv.get(p, headers={"Range": "bytes=100-199"})
        self.assertEqual(r.status, 206)
        self.assertEqual(r.body, data[100:200])
        self.assertEqual(r.header("Content-Range"), "bytes 100-199/5000")
        r = self.srv.get(p, headers={"Range": "bytes=-7"})
        self.assertEqual((r.status, r.body), (206, data[-7:]))
        r = self.srv.get(p, headers={"Range": "bytes=6000-"})
        self.assertError(r, 416, "range_not_satisfiable")
        r = self.srv.head(p)
        self.assertEqual((r.status, r.body, r.header("Content-Length")), (200, b"", "5000"))
        r = self.srv.get(p, headers={"If-None-Match": '"%s"' % sha256_hex(data)})
        self.assertEqual((r.status, r.body), (304, b""))
        # Pipelined on one connection, answers written straight from the cache.
        with self.srv.conn() as c:
            c.send((("GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (p, self.srv.auth_line()))
                    * 3).encode())
            for _ in range(3):
                r = c.read_response()
                self.assertEqual((r.status, r.body), (200, data))

    def test_cached_file_damaged_on_disk(self):
        data = os.urandom(1000)
        p, bp = self.cached(data)
        flip_byte(bp, 10)
        self.assertError(self.srv.get(p), 500, "corrupt_blob")
        self.assertError(self.srv.get(p), 500, "corrupt_blob")
        # Put right again (a new ctime): read, verified and served again.
        with open(bp, "wb") as f:
            f.write(data)
        self.assertStored(p, data)
        self.assertServing()

    def test_cached_file_truncated_or_removed(self):
        data = os.urandom(3000)
        p, bp = self.cached(data)
        os.truncate(bp, 2999)
        self.assertError(self.srv.get(p), 500, "corrupt_blob")
        data2 = os.urandom(2000)
        p2, bp2 = self.cached(data2)
        os.unlink(bp2)
        self.assertError(self.srv.get(p2), 500, "corrupt_blob")
        self.assertIn(sha256_hex(data2), self.srv.log_text(), "missing blob not logged")

    def test_cached_file_replaced_by_other_bytes(self):
        """A different file renamed over the blob (same size, same mtime)."""
        data = os.urandom(4096)
        p, bp = self.cached(data)
        other = bp + ".other"
        with open(other, "wb") as f:
            f.write(os.urandom(4096))
        st = os.stat(bp)
        os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.rename(other, bp)
        self.assertError(self.srv.get(p), 500, "corrupt_blob")

    def test_file_cache_off(self):
        srv = ArcaServer(config="[server]\nworkers = 1\n[storage]\nfile_cache = 0\n")
        with srv:
            data = os.urandom(2000)
            p = "/repos/fc/off/1/f.bin"
            self.assertEqual(srv.put(p, data).status, 201)
            time.sleep(self.SETTLE)
            for _ in range(3):
                r = srv.get(p)
                self.assertEqual((r.status, r.body), (200, data))
            self.assertEqual(metric(srv, "arca_file_cache_hits_total"), 0)
            bp = srv.blob_path(sha256_hex(data))
            flip_byte(bp, 0)
            self.assertError(srv.get(p), 500, "corrupt_blob")

    def test_larger_files_are_not_cached(self):
        data = os.urandom(64 * 1024 + 1)
        p = "/repos/fc/big/1/f.bin"
        self.assertEqual(self.srv.put(p, data).status, 201)
        time.sleep(self.SETTLE)
        before = metric(self.srv, "arca_file_cache_hits_total") + \
            metric(self.srv, "arca_file_cache_misses_total")
        for _ in range(2):
            self.assertStored(p, data)
        after = metric(self.srv, "arca_file_cache_hits_total") + \
            metric(self.srv, "arca_file_cache_misses_total")
        self.assertEqual(after, before, "a file over 64 KiB went through the cache")


class WriteFailureTest(ArcaTestMixin, unittest.TestCase):
    """A blob write that fails (here: EFBIG past a file-size limit set on the
    running server) is answered 500 with a JSON error, whether the failure comes
    while the body streams or after all of it arrived; nothing is stored, no
    temp file stays, and the server keeps serving."""

    LIMIT = 8 * MiB

    def setUp(self):
        import resource
        self.srv = ArcaServer().__enter__()
        resource.prlimit(self.srv.pid, resource.RLIMIT_FSIZE, (self.LIMIT, self.LIMIT))

    def tearDown(self):
        self.srv.__exit__(None, None, None)

    def assertFailsCleanly(self, size):
        before = self.srv.storage()
        p = "/repos/wfail/n%s/1/f.bin" % uniq()
        body = os.urandom(size)
        with RawConn(self.srv.port, timeout=20) as c:
            c.send("PUT %s HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n"
                   "Content-Length: %d\r\n\r\n" % (p, self.srv.token, size))
            try:
                for off in range(0, size, MiB):
                    c.send(body[off:off + MiB])
            except OSError:
                pass  # the server stops reading once it has answered
            try:
                r = c.read_response()
            except (EOFError, ConnectionError) as e:
                self.fail("no answer to an upload whose write failed (%r); log:\n%s"
                          % (e, self.srv.log_tail(1500)))
            # The temp file goes before the answer is sent, so no waiting here.
            left = self.srv.tmp_files()
        self.assertEqual(left, [], "temp file still there when the 500 arrived")
        self.assertError(r, 500, "internal")
        self.assertIn("File too large", r.json()["error"]["message"])
        self.assertNotStored(p)
        self.assertStorageUnchanged(before)
        self.assertEqual(self.srv.tmp_files(), [], "temp file left after a failed write")
        self.srv.assert_alive()
        small = os.urandom(5000)
        sp = "/repos/wfail/ok%s/1/s.bin" % uniq()
        self.assertEqual(self.srv.put(sp, small).status, 201)
        self.assertStored(sp, small)

    def test_fails_while_streaming(self):
        self.assertFailsCleanly(32 * MiB)

    def test_fails_near_the_end(self):
        # Past the limit by less than the 4 MiB the lanes may trail the socket:
        # a store-lane write fails while the body ends or after it has ended.
        for extra in (1536 * 1024, 3 * MiB):
            with self.subTest(extra=extra):
                self.assertFailsCleanly(self.LIMIT + extra)

    def test_fails_in_the_tail(self):
        # Past the limit by less than one direct-write stage: the failing
        # write is the tail's, when the upload is finalized.
        self.assertFailsCleanly(self.LIMIT + 300 * 1024)


class ShutdownTest(ArcaTestMixin, unittest.TestCase):
    def wait_receiving(self, srv, timeout=5.0):
        """Waits until a temp file with some bytes exists (the upload is in flight)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for n in srv.tmp_files():
                try:
                    if os.path.getsize(os.path.join(srv.tmp_dir, n)) > 0:
                        return True
                except OSError:
                    pass
            time.sleep(0.02)
        return False

    def test_second_server_on_the_same_data_dir_touches_nothing(self):
        """A second arcad started on a data dir in use exits with an error before it removes the
        first one's in-flight temp file (start-up clears temp files only once it holds the
        index lock)."""
        with ArcaServer() as srv:
            self.srv = srv
            p = "/repos/term/second%s/1/p.bin" % uniq()
            body = os.urandom(16 * MiB)
            c = RawConn(srv.port, timeout=30)
            try:
                c.send("PUT %s HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n"
                       "Content-Length: %d\r\n\r\n" % (p, srv.token, len(body)))
                c.send(body[:8 * MiB])
                self.assertTrue(self.wait_receiving(srv), "no temp file for the upload")
                tmp = srv.tmp_files()
                second = subprocess.run([ARCAD, "--listen", "127.0.0.1:0", "--data", srv.data],
                                        capture_output=True, text=True, timeout=30)
                self.assertNotEqual(second.returncode, 0, "a second arcad started on the same "
                                    "data dir:\n" + second.stderr[-2000:])
                self.assertIn("index", second.stderr)
                self.assertIn("in use by another arcad", second.stderr)
                self.assertEqual(srv.tmp_files(), tmp, "the second arcad removed temp files")
                c.send(body[8 * MiB:])
                r = c.read_response()
                self.assertEqual(r.status, 201, r)
            finally:
                c.close()
            self.assertStored(p, body)
            self.assertServing()

    def test_sigterm_discards_stalled_upload(self):
        with ArcaServer(config="[server]\nshutdown_grace = 2\n") as srv:
            self.srv = srv
            keep = os.urandom(3000)
            kp = "/repos/term/keep/1/k.bin"
            self.assertEqual(srv.put(kp, keep).status, 201)
            before = srv.storage()
            p = "/repos/term/partial%s/1/p.bin" % uniq()
            c = RawConn(srv.port, timeout=30)
            try:
                c.send("PUT %s HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n"
                       "Content-Length: %d\r\n\r\n" % (p, srv.token, 64 * MiB))
                c.send(os.urandom(8 * MiB))
                self.wait_receiving(srv)
                t0 = time.monotonic()
                rc = srv.stop(signal.SIGTERM, timeout=30)
                took = time.monotonic() - t0
            finally:
                c.close()
            self.assertEqual(rc, 0, "exit code after SIGTERM; log:\n" + srv.log_tail())
            self.assertLess(took, 2 + 8, "shutdown took %.1f s with shutdown_grace = 2" % took)
            srv.start()
            self.assertEqual(srv.tmp_files(), [], "temp files left after restart")
            self.assertNotStored(p)
            self.assertStorageUnchanged(before)
            self.assertStored(kp, keep)
            self.assertServing()

    def test_sigterm_finishes_inflight_upload(self):
        with ArcaServer(config="[server]\nshutdown_grace = 20\n") as srv:
            self.srv = srv
            data = os.urandom(16 * MiB)
            p = "/repos/term/inflight%s/1/f.bin" % uniq()
            idle = RawConn(srv.port, timeout=10)
            idle.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            self.assertEqual(idle.read_response().status, 200)
            c = RawConn(srv.port, timeout=30)
            try:
                c.send("PUT %s HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n"
                       "Content-Length: %d\r\n\r\n" % (p, srv.token, len(data)))
                c.send(data[:4 * MiB])
                self.wait_receiving(srv)
                srv.proc.send_signal(signal.SIGTERM)
                time.sleep(0.5)
                self.assertTrue(srv.alive(), "arcad exited with an upload in flight")
                # readiness is withdrawn (or the idle connection is closed)
                try:
                    idle.send(b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n")
                    rr = idle.read_response()
                    self.assertError(rr, 503, "unavailable")
                except (EOFError, ConnectionError, socket.timeout):
                    pass
                # new connections are not served
                try:
                    nr = srv.get("/healthz", timeout=3)
                except (OSError, http.client.HTTPException):
                    nr = None  # refused, reset or never accepted: fine
                if nr is not None:
                    self.assertError(nr, 503, "unavailable", "new request during shutdown")
                c.send(data[4 * MiB:])
                r = c.read_response()
                self.assertEqual(r.status, 201, r)
                self.assertEqual(r.json()["checksums"]["sha256"], sha256_hex(data))
            finally:
                c.close()
                idle.close()
            srv.proc.wait(30)
            rc = srv.stop()
            self.assertEqual(rc, 0, "exit code after SIGTERM; log:\n" + srv.log_tail())
            srv.start()
            self.assertEqual(srv.tmp_files(), [])
            self.assertStored(p, data)

    def test_sigint_idle_exit_0(self):
        with ArcaServer() as srv:
            self.assertEqual(srv.get("/healthz").status, 200)
            self.assertEqual(srv.stop(signal.SIGINT, timeout=20), 0, srv.log_tail())
            srv.start()
            self.assertEqual(srv.stop(signal.SIGTERM, timeout=20), 0, srv.log_tail())


if __name__ == "__main__":
    unittest.main()
