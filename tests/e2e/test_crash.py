"""Crash loop: SIGKILL arcad at random moments during a stream of concurrent
uploads, restart it, and check that every acknowledged upload is whole and
byte-exact, that nothing partial is visible, that no temp files survive a
restart and that every blob file matches its name.  And SIGKILL arcad while it
moves a store from the nested blob layout (blobs/aa/bb/) to the flat one: no
blob is ever lost, and the move completes.

Environment: ARCA_CRASH_ITERATIONS (default 30), ARCA_CRASH_SEED (default:
random, printed)."""

import hashlib
import http.client
import os
import random
import signal
import subprocess
import sys
import threading
import time
import unittest

from harness import HOST, ArcaServer, ArcaTestMixin, sha256_hex

MiB = 1 << 20
ITERATIONS = int(os.environ.get("ARCA_CRASH_ITERATIONS", "30"))
SEED = int(os.environ.get("ARCA_CRASH_SEED", str(random.SystemRandom().randrange(1 << 30))))


class Upload:
    __slots__ = ("path", "sha", "size", "status", "error", "state", "iteration", "seed",
                 "chunked")

    def __init__(self, path, sha, size, iteration, seed, chunked):
        self.seed = seed
        self.chunked = chunked
        self.path = path
        self.sha = sha
        self.size = size
        self.iteration = iteration
        self.status = None  # HTTP status if a whole response arrived
        self.error = None   # exception text if not
        self.state = None   # after a restart: "present" / "absent" once observed


def download_hash(port, path, token, timeout=60):
    """GET path (with token), hashing as it streams; returns (status, etag, length,
    sha256 hex, Content-Length)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Authorization": "Bearer " + token})
        resp = conn.getresponse()
        h = hashlib.sha256()
        n = 0
        while True:
            chunk = resp.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
        return resp.status, resp.getheader("ETag"), n, h.hexdigest(), \
            resp.getheader("Content-Length")
    finally:
        conn.close()


def content(seed, size):
    """The bytes of an upload, regenerated from its seed (for retries)."""
    return random.Random(seed).randbytes(size)


def send_put(conn, path, data, token, chunked):
    if not chunked:
        conn.request("PUT", path, body=data, headers={"Authorization": "Bearer " + token})
        return
    conn.putrequest("PUT", path, skip_accept_encoding=True)
    conn.putheader("Authorization", "Bearer " + token)
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    step = 300 * 1024 + 7
    for i in range(0, len(data), step):
        part = data[i:i + step]
        conn.send(b"%x\r\n" % len(part) + part + b"\r\n")
    conn.send(b"0\r\n\r\n")


class CrashLoopTest(ArcaTestMixin, unittest.TestCase):
    def setUp(self):
        sys.stderr.write("\ncrash loop: ARCA_CRASH_SEED=%d ARCA_CRASH_ITERATIONS=%d\n"
                         % (SEED, ITERATIONS))
        self.rnd = random.Random(SEED)
        self.srv = ArcaServer()
        self.addCleanup(self.srv.cleanup)
        self.uploads = []
        self.lock = threading.Lock()
        self.verified_blobs = {}
        self.bad_responses = []
        self.rewrites = {}

    # -- the uploaders -------------------------------------------------------------

    def uploader(self, tid, iteration, stop, seed):
        rnd = random.Random(seed)
        n = 0
        token = self.srv.token
        port = self.srv.port
        while not stop.is_set():
            if rnd.random() < 0.15 and self.rewrite(rnd, iteration, token, port):
                continue
            if rnd.random() < 0.3:
                size = rnd.randint(0, 4096)
            else:
                size = rnd.randint(0, 8 * MiB)
            cseed = rnd.randrange(1 << 62)
            data = content(cseed, size)
            chunked = rnd.random() < 0.3
            path = "/repos/crash/t%d/i%d/f%d.bin" % (tid, iteration, n)
            n += 1
            up = Upload(path, sha256_hex(data), size, iteration, cseed, chunked)
            with self.lock:
                self.uploads.append(up)
            conn = http.client.HTTPConnection(HOST, port, timeout=60)
            try:
                send_put(conn, path, data, token, chunked)
                resp = conn.getresponse()
                body = resp.read()
                up.status = resp.status
                if resp.status != 201:
                    with self.lock:
                        self.bad_responses.append((path, resp.status, body[:300]))
            except Exception as e:  # the server was killed under us
                up.error = "%s: %s" % (type(e).__name__, e)
                return
            finally:
                conn.close()

    def rewrite(self, rnd, iteration, token, port):
        """PUTs again to a coordinate stored in an earlier iteration: the same
        bytes must give 200, different bytes 409; neither may change it (the
        checks after the next restart verify the content).  Returns False if
        there is no such coordinate, or when the server went away."""
        with self.lock:
            old = [u for u in self.uploads if u.iteration < iteration and u.state == "present"]
        if not old:
            return False
        up = rnd.choice(old)
        same = rnd.random() < 0.5
        if same:
            data = content(up.seed, up.size)
        else:
            data = content(rnd.randrange(1 << 62), rnd.choice([up.size, rnd.randint(0, MiB)]))
            if sha256_hex(data) == up.sha:
                return False
        conn = http.client.HTTPConnection(HOST, port, timeout=60)
        try:
            send_put(conn, up.path, data, token, rnd.random() < 0.3)
            resp = conn.getresponse()
            body = resp.read()
        except Exception:
            return True  # killed under us; the loop sees stop soon
        finally:
            conn.close()
        want = 200 if same else 409
        if resp.status != want:
            with self.lock:
                self.bad_responses.append(("re-PUT %s (%s bytes)" % (up.path, "same" if same
                                                                     else "different"),
                                           resp.status, body[:300]))
        with self.lock:
            self.rewrites[want] = self.rewrites.get(want, 0) + 1
        return True

    # -- the checks ------------------------------------------------------------------

    def check_blob_files(self):
        for fpath, name in self.srv.blob_files():
            st = os.stat(fpath)
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
            if self.verified_blobs.get(fpath) == key:
                continue
            h = hashlib.sha256()
            with open(fpath, "rb") as f:
                while True:
                    b = f.read(1 << 20)
                    if not b:
                        break
                    h.update(b)
            self.assertEqual(h.hexdigest(), name, "blob file %s does not match its name "
                             "(size %d)" % (fpath, st.st_size))
            rel = os.path.relpath(fpath, self.srv.blobs_dir).split(os.sep)
            self.assertEqual(rel, [name[:2], name], fpath)
            self.verified_blobs[fpath] = key

    def list_crash_repo(self):
        """Every file the index lists under repo 'crash': {path: (sha256, size)}."""
        out = {}
        r = self.srv.get("/api/v1/repos/crash?limit=1000")
        if r.status == 404:
            return out
        self.assertEqual(r.status, 200, r)
        self.assertIsNone(r.json()["next_cursor"])
        for it in r.json()["items"]:
            name = it["name"]
            vs = self.srv.json("/api/v1/repos/crash/%s?limit=1000" % name)
            self.assertIsNone(vs["next_cursor"])
            for v in vs["items"]:
                ver = v["version"]
                cursor = None
                nfiles = 0
                nbytes = 0
                while True:
                    q = "?limit=1000" + ("&cursor=" + cursor if cursor else "")
                    fs = self.srv.json("/api/v1/repos/crash/%s/%s%s" % (name, ver, q))
                    for f in fs["items"]:
                        p = "/repos/crash/%s/%s/%s" % (name, ver, f["path"])
                        out[p] = (f["checksums"]["sha256"], f["size"])
                        nfiles += 1
                        nbytes += f["size"]
                    cursor = fs["next_cursor"]
                    if cursor is None:
                        break
                self.assertEqual(v["files"], nfiles, "version %s/%s file count" % (name, ver))
                self.assertEqual(v["bytes"], nbytes, "version %s/%s bytes" % (name, ver))
        return out

    def check_state(self, iteration):
        srv = self.srv
        ctx = " (iteration %d, seed %d)" % (iteration, SEED)
        self.assertEqual(srv.tmp_files(), [], "temp files in DATA/blobs/tmp after restart" + ctx)
        self.assertEqual(self.bad_responses, [], "unexpected answers to uploads" + ctx)
        present = {}
        for up in self.uploads:
            must_exist = up.status in (201, "retried") or up.state == "present"
            must_not = up.state == "absent"
            status, etag, n, sha, clen = download_hash(srv.port, up.path, srv.token)
            if must_exist:
                self.assertEqual(status, 200, "acknowledged upload %s (%d B) is gone%s"
                                 % (up.path, up.size, ctx))
            elif must_not:
                self.assertEqual(status, 404, "absent upload %s appeared later%s"
                                 % (up.path, ctx))
            else:
                self.assertIn(status, (200, 404), "unacknowledged upload %s: %d%s"
                              % (up.path, status, ctx))
            if status == 200:
                self.assertEqual(clen, str(up.size), up.path + ctx)
                self.assertEqual(n, up.size, "short/long download of %s%s" % (up.path, ctx))
                self.assertEqual(sha, up.sha, "downloaded bytes of %s differ%s" % (up.path, ctx))
                self.assertEqual(etag, '"%s"' % up.sha, up.path + ctx)
                up.state = "present"
                present[up.path] = up
            else:
                up.state = "absent"
        # the index lists exactly what is present, with the right checksums
        listed = self.list_crash_repo()
        self.assertEqual(sorted(listed), sorted(present), "listing differs from GETs" + ctx)
        for p, (sha, size) in listed.items():
            self.assertEqual((sha, size), (present[p].sha, present[p].size), p + ctx)
        st = srv.storage()
        self.assertEqual(st["artifact_count"], len(present), repr(st) + ctx)
        self.assertEqual(st["logical_bytes"], sum(u.size for u in present.values()),
                         repr(st) + ctx)
        distinct = {u.sha: u.size for u in present.values()}
        self.assertEqual(st["blob_count"], len(distinct), repr(st) + ctx)
        self.assertEqual(st["stored_bytes"], sum(distinct.values()), repr(st) + ctx)
        # every indexed blob is on disk; every blob file matches its name
        on_disk = {n for _, n in srv.blob_files()}
        missing = set(distinct) - on_disk
        self.assertEqual(missing, set(), "indexed blobs missing on disk" + ctx)
        self.check_blob_files()

    def retry_unacknowledged(self, iteration):
        """A pipeline retries what it did not see acknowledged: the same bytes to
        the same coordinate give 201 (absent) or 200 (already whole), never
        anything else; afterwards it must be present."""
        ctx = " (iteration %d, seed %d)" % (iteration, SEED)
        for up in self.uploads:
            if up.iteration != iteration or up.status is not None:
                continue
            data = content(up.seed, up.size)
            conn = http.client.HTTPConnection(HOST, self.srv.port, timeout=60)
            try:
                send_put(conn, up.path, data, self.srv.token, not up.chunked)
                resp = conn.getresponse()
                body = resp.read()
            finally:
                conn.close()
            want = 200 if up.state == "present" else 201
            self.assertEqual(resp.status, want, "retry of %s (%s before): %r%s"
                             % (up.path, up.state, body[:300], ctx))
            up.state = "present"
            up.status = "retried"
            status, etag, n, sha, clen = download_hash(self.srv.port, up.path, self.srv.token)
            self.assertEqual((status, n, sha), (200, up.size, up.sha), up.path + ctx)

    # -- the loop -------------------------------------------------------------------------

    def test_crash_loop(self):
        self.assertGreaterEqual(ITERATIONS, 20)
        srv = self.srv
        srv.start()
        t_start = time.monotonic()
        acked_total = 0
        for it in range(ITERATIONS):
            stop = threading.Event()
            nthreads = self.rnd.choice([2, 3])
            threads = [threading.Thread(target=self.uploader,
                                        args=(t, it, stop, self.rnd.randrange(1 << 30)))
                       for t in range(nthreads)]
            for t in threads:
                t.start()
            time.sleep(self.rnd.uniform(0.05, 0.5))
            rc = srv.kill()
            self.assertEqual(rc, -9, "arcad had already exited (%s) before SIGKILL; log:\n%s"
                             % (rc, srv.log_tail()))
            stop.set()
            for t in threads:
                t.join(120)
                self.assertFalse(t.is_alive(), "uploader thread hung")
            srv.start()
            self.check_state(it)
            acked = sum(1 for u in self.uploads if u.iteration == it and u.status == 201)
            acked_total += acked
            mine = [u for u in self.uploads if u.iteration == it]
            sys.stderr.write("  iteration %2d: %d threads, %d uploads tried, %d acknowledged, "
                             "%d unacknowledged but present, %.0f s\n"
                             % (it, nthreads, len(mine), acked,
                                sum(1 for u in mine if u.status is None and u.state == "present"),
                                time.monotonic() - t_start))
            self.retry_unacknowledged(it)
        sys.stderr.write("  re-PUTs of stored coordinates answered: %r\n" % self.rewrites)
        # the loop must have exercised something
        self.assertGreater(acked_total, ITERATIONS // 2, "too few uploads were acknowledged")
        self.assertTrue(any(u.status == "retried" for u in self.uploads),
                        "no upload was interrupted by a kill")
        self.assertServing()
        self.assertEqual(srv.stop(), 0, "SIGTERM exit code; log:\n" + srv.log_tail())
        r = srv.verify()
        self.assertEqual(r.returncode, 0, "arcad verify after the crash loop:\n%s%s"
                         % (r.stdout[-3000:], r.stderr[-3000:]))


class LayoutMoveCrashTest(ArcaTestMixin, unittest.TestCase):
    """SIGKILL arcad while it moves an old store's blobs (blobs/aa/bb/<sha>) up a level."""

    N = 3000

    def setUp(self):
        self.rnd = random.Random(SEED)
        self.srv = ArcaServer()
        self.addCleanup(self.srv.cleanup)

    def places(self, shas):
        """(nested, flat) counts; fails if a blob is in neither place or in both."""
        root = self.srv.blobs_dir
        nested = flat = 0
        for sha in shas:
            n = os.path.exists(os.path.join(root, sha[:2], sha[2:4], sha))
            f = os.path.exists(os.path.join(root, sha[:2], sha))
            self.assertTrue(n != f, "blob %s: nested %s, flat %s" % (sha, n, f))
            nested += n
            flat += f
        return nested, flat

    def nest_all(self, shas):
        root = self.srv.blobs_dir
        for sha in shas:
            flat = os.path.join(root, sha[:2], sha)
            if os.path.exists(flat):
                os.makedirs(os.path.join(root, sha[:2], sha[2:4]), exist_ok=True)
                os.rename(flat, os.path.join(root, sha[:2], sha[2:4], sha))
        try:
            os.unlink(os.path.join(root, "LAYOUT"))
        except FileNotFoundError:
            pass

    def test_kill_during_layout_move(self):
        srv = self.srv
        srv.start()
        files = {}
        conn = http.client.HTTPConnection(HOST, srv.port, timeout=30)
        for i in range(self.N):
            data = os.urandom(64 + i % 512)
            p = "/repos/move/a%d/1/f%d.bin" % (i % 50, i)
            conn.request("PUT", p, body=data, headers=srv.auth_headers())
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 201)
            files[p] = data
        conn.close()
        self.assertEqual(srv.stop(), 0)
        shas = [sha256_hex(d) for d in files.values()]
        self.nest_all(shas)

        # Kill at a delay that adapts until kills land mid-move (some blobs moved, some not).
        delay, mixed, kills = 0.05, 0, 0
        log = open(srv.log_path, "ab")
        try:
            while mixed < 5 and kills < 60:
                proc = subprocess.Popen(srv.command(), stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=log)
                time.sleep(delay * self.rnd.uniform(0.7, 1.3))
                proc.send_signal(signal.SIGKILL)
                proc.wait(30)
                kills += 1
                nested, flat = self.places(shas)
                if nested == len(shas):
                    delay *= 1.5   # killed before the move began
                elif flat == len(shas):
                    delay /= 1.7   # too late: start over from a fully nested store
                    self.nest_all(shas)
                else:
                    mixed += 1     # left half-moved: the next start goes on from here
                    if mixed <= 2:
                        # A read-only `arcad verify` finds every blob wherever the kill
                        # left it (nested first, then flat) and moves nothing.
                        r = srv.verify()
                        self.assertEqual(r.returncode, 0, "arcad verify on a half-moved "
                                         "store:\n%s%s" % (r.stdout[-3000:], r.stderr[-3000:]))
                        self.assertEqual(self.places(shas), (nested, flat))
        finally:
            log.close()
        sys.stderr.write("\nlayout move: %d kills, %d left a half-moved store, last delay "
                         "%.3f s\n" % (kills, mixed, delay))
        self.assertGreaterEqual(mixed, 1, "no kill landed while blobs were being moved")

        srv.start()
        self.assertEqual(self.places(shas), (0, len(shas)))
        root = srv.blobs_dir
        self.assertTrue(os.path.isfile(os.path.join(root, "LAYOUT")))
        left = [os.path.join(a, b) for a in os.listdir(root) if len(a) == 2
                for b in os.listdir(os.path.join(root, a)) if len(b) == 2]
        self.assertEqual(left, [], "nested folders left after the move")
        conn = http.client.HTTPConnection(HOST, srv.port, timeout=30)
        for p, data in files.items():
            conn.request("GET", p, headers=srv.auth_headers())
            r = conn.getresponse()
            body = r.read()
            self.assertEqual(r.status, 200, p)
            self.assertTrue(body == data, "%s differs after the move" % p)
        conn.close()
        self.assertEqual(srv.stop(), 0)
        r = srv.verify()
        self.assertEqual(r.returncode, 0, "arcad verify after the move:\n%s%s"
                         % (r.stdout[-3000:], r.stderr[-3000:]))


if __name__ == "__main__":
    unittest.main()
