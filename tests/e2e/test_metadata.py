"""Metadata and operations endpoints: listings with pagination, storage
statistics and dedup, health, readiness, metrics, the command line, the port
file and the admin token file."""

import os
import re
import shutil
import stat
import tempfile
import time
import unittest
import urllib.parse

from harness import ServerTestCase, ArcaServer, ArcaTestMixin, run_arcad, sha256_hex, uri_path

ISO = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"


def uniq():
    return os.urandom(4).hex()


class ListingTest(ServerTestCase):

    def put(self, path, data):
        r = self.srv.put(path, data)
        self.assertEqual(r.status, 201, r)
        return r.json()

    def pages(self, base, limit):
        """Follows next_cursor; returns (list of pages' items, last page JSON)."""
        out = []
        cursor = None
        for _ in range(1000):
            q = {"limit": str(limit)}
            if cursor is not None:
                q["cursor"] = cursor
            r = self.srv.get(base + "?" + urllib.parse.urlencode(q))
            self.assertEqual(r.status, 200, r)
            self.assertIn("application/json", r.header("content-type", ""))
            j = r.json()
            self.assertIn("next_cursor", j)
            self.assertLessEqual(len(j["items"]), limit)
            out.append(j["items"])
            cursor = j["next_cursor"]
            if cursor is None:
                return out, j
            self.assertIsInstance(cursor, str)
            self.assertEqual(len(j["items"]), limit, "a non-last page is short")
        self.fail("pagination did not end")

    def check_pagination(self, base, key):
        full = self.srv.json(base + "?limit=1000")
        self.assertIsNone(full["next_cursor"])
        all_keys = [it[key] for it in full["items"]]
        for limit in (1, 2, 3, len(all_keys), len(all_keys) + 1):
            self.srv.assert_alive()  # fail fast if a previous case crashed it
            with self.subTest(base=base, limit=limit):
                pages, _ = self.pages(base, limit)
                n = len(all_keys)
                self.assertEqual(len(pages), max(1, -(-n // limit)),
                                 "wrong page count: the page holding the last item must "
                                 "have next_cursor null")
                got = [it[key] for p in pages for it in p]
                self.assertEqual(got, all_keys, "paged listing differs from one-page listing")
                self.assertEqual(len(set(got)), len(got), "duplicates across pages")
        return all_keys

    def test_trailing_slash_names_the_same_listing(self):
        repo = "ts" + uniq()
        self.put("/repos/%s/n/1/f.txt" % repo, b"x")
        for path in ("/api/v1/repos", "/api/v1/repos/%s" % repo, "/api/v1/repos/%s/n" % repo,
                     "/api/v1/repos/%s/n/1" % repo):
            with self.subTest(path=path):
                self.assertEqual(self.srv.json(path + "/"), self.srv.json(path))
        self.assertError(self.srv.get("/api/v1/repos/%s//" % repo), 400, "invalid_path")
        self.assertError(self.srv.get("/api/v1/repos//"), 400, "invalid_path")
        for deeper in ("n/1/f.txt/", "n/1/properties/"):  # not a listing: never version 1's files
            with self.subTest(deeper=deeper):
                self.assertError(self.srv.get("/api/v1/repos/%s/%s" % (repo, deeper)), 404,
                                 "not_found")

    def test_repos_listing(self):
        repos = ["lr%s-%d" % (uniq(), i) for i in range(5)]
        for rp in repos:
            self.put("/repos/%s/n/1/f.txt" % rp, b"x")
        j = self.srv.json("/api/v1/repos")
        self.assertIsNone(j["next_cursor"])
        names = [it["repo"] for it in j["items"]]
        for rp in repos:
            self.assertIn(rp, names)
        for it in j["items"]:
            self.assertRegex(it["created"], ISO)
        keys = self.check_pagination("/api/v1/repos", "repo")
        self.assertTrue(set(repos) <= set(keys))

    def test_names_listing(self):
        repo = "ln" + uniq()
        names = ["name-%02d" % i for i in range(7)]
        for n in names:
            self.put("/repos/%s/%s/1/f.txt" % (repo, n), b"x")
            self.put("/repos/%s/%s/2/f.txt" % (repo, n), b"y")  # a second version: one name
        j = self.srv.json("/api/v1/repos/%s" % repo)
        self.assertEqual(j["repo"], repo)
        self.assertEqual(sorted(it["name"] for it in j["items"]), names)
        for it in j["items"]:
            self.assertRegex(it["created"], ISO)
        keys = self.check_pagination("/api/v1/repos/%s" % repo, "name")
        self.assertEqual(sorted(keys), names)
        self.assertError(self.srv.get("/api/v1/repos/empty" + uniq()), 404, "not_found")
        self.assertError(self.srv.get("/api/v1/repos/%s/nope" % repo), 404, "not_found")
        self.assertError(self.srv.get("/api/v1/repos/%s/%s/9.9" % (repo, names[0])), 404,
                         "not_found")

    def test_versions_newest_first(self):
        repo, name = "lv" + uniq(), "app"
        order = ["1.0", "2.0", "1.5", "0.9", "10.0", "1.10", "3.0-rc1"]
        sizes = {}
        for v in order:
            a = os.urandom(10 + len(v))
            b = os.urandom(100)
            self.put("/repos/%s/%s/%s/a.bin" % (repo, name, v), a)
            self.put("/repos/%s/%s/%s/b.bin" % (repo, name, v), b)
            sizes[v] = len(a) + len(b)
            time.sleep(0.01)  # created has millisecond resolution
        j = self.srv.json("/api/v1/repos/%s/%s" % (repo, name))
        self.assertEqual(j["repo"], repo)
        self.assertEqual(j["name"], name)
        got = [it["version"] for it in j["items"]]
        self.assertEqual(got, list(reversed(order)), "versions are not newest first")
        created = [it["created"] for it in j["items"]]
        self.assertEqual(created, sorted(created, reverse=True))
        for it in j["items"]:
            self.assertEqual(it["files"], 2, it)
            self.assertEqual(it["bytes"], sizes[it["version"]], it)
            self.assertRegex(it["created"], ISO)
        keys = self.check_pagination("/api/v1/repos/%s/%s" % (repo, name), "version")
        self.assertEqual(keys, list(reversed(order)))

    def test_files_listing(self):
        repo, name, ver = "lf" + uniq(), "app", "1.0"
        paths = ["z.txt", "a.jar", "lib/b.jar", "lib/a.jar", "m.pom", "docs/readme.txt",
                 "A.bin", "b"]
        datas = {}
        for p in paths:
            datas[p] = os.urandom(20 + len(p))
            self.put("/repos/%s/%s/%s/%s" % (repo, name, ver, p), datas[p])
        base = "/api/v1/repos/%s/%s/%s" % (repo, name, ver)
        j = self.srv.json(base)
        self.assertEqual((j["repo"], j["name"], j["version"]), (repo, name, ver))
        got = [it["path"] for it in j["items"]]
        self.assertEqual(got, sorted(paths, key=lambda s: s.encode()), "files not by path")
        for it in j["items"]:
            d = datas[it["path"]]
            self.assertEqual(it["size"], len(d))
            self.assertEqual(it["checksums"]["sha256"], sha256_hex(d))
            self.assertEqual((it["repo"], it["name"], it["version"]), (repo, name, ver))
            self.assertEqual(it["download_uri"], uri_path("/repos/%s/%s/%s/%s"
                                                          % (repo, name, ver, it["path"])))
        keys = self.check_pagination(base, "path")
        self.assertEqual(keys, got)

    def test_bad_limit_and_cursor(self):
        repo = "lb" + uniq()
        for i in range(3):
            self.put("/repos/%s/n/%d/f.txt" % (repo, i), b"x")
        bases = ["/api/v1/repos", "/api/v1/repos/%s" % repo, "/api/v1/repos/%s/n" % repo,
                 "/api/v1/repos/%s/n/1" % repo]
        for base in bases:
            for q in ("limit=0", "limit=1001", "limit=-1", "limit=abc", "limit=", "limit=1.5",
                      "limit=99999999999999999999999", "cursor=%%%", "cursor=garbage!!",
                      "cursor=" + "A" * 3000, "limit=+5", "limit=%205", "limit=5%20",
                      "limit", "limit=1&limit=abc", "limit=2&limit=2", "cursor=&cursor="):
                self.srv.assert_alive()  # fail fast if a previous case crashed it
                with self.subTest(base=base, q=q[:40]):
                    r = self.srv.get(base + "?" + q)
                    self.assertError(r, 400, "bad_request")
            for q in ("limit=1", "limit=1000", "limit=0007", "cursor=", "limitx=3&xlimit=4"):
                self.assertEqual(self.srv.get(base + "?" + q).status, 200)
        # A cursor from another listing of the same kind (another version's files, another
        # artifact's versions) is refused too: it would start at an unrelated position.
        for p in ("n/1/g.txt", "n/2/g.txt", "m/1/f.txt", "m/2/f.txt"):
            self.put("/repos/%s/%s" % (repo, p), b"y")
        for mine, other in (("n/1", "n/2"), ("n", "m")):
            with self.subTest(cursor_from=mine, used_on=other):
                base = "/api/v1/repos/%s/" % repo
                cursor = self.srv.json(base + mine + "?limit=1")["next_cursor"]
                self.assertTrue(cursor)
                self.assertEqual(self.srv.get(base + mine + "?cursor=" + cursor).status, 200)
                self.assertError(self.srv.get(base + other + "?cursor=" + cursor), 400,
                                 "bad_request")
        self.assertServing()


class StorageStatsTest(ArcaTestMixin, unittest.TestCase):
    def test_dedup_ratio(self):
        with ArcaServer() as srv:
            self.srv = srv
            s0 = srv.storage()
            self.assertEqual((s0["blob_count"], s0["stored_bytes"], s0["artifact_count"],
                              s0["logical_bytes"]), (0, 0, 0, 0), s0)
            self.assertEqual(s0["dedup_ratio"], 1.0)
            self.assertIsInstance(s0["event_count"], int)
            data = os.urandom(1000)
            self.assertEqual(srv.put("/repos/a/x/1/f.bin", data).status, 201)
            self.assertEqual(srv.put("/repos/b/y/2/g.bin", data).status, 201)
            s1 = srv.storage()
            self.assertEqual(s1["blob_count"], 1, s1)
            self.assertEqual(s1["stored_bytes"], 1000, s1)
            self.assertEqual(s1["artifact_count"], 2, s1)
            self.assertEqual(s1["logical_bytes"], 2000, s1)
            self.assertAlmostEqual(s1["dedup_ratio"], 2.0, places=6)
            self.assertEqual(s1["event_count"], s0["event_count"] + 2, s1)
            # only one blob file on disk
            files = [n for _, n in srv.blob_files()]
            self.assertEqual(files, [sha256_hex(data)])
            other = os.urandom(500)
            self.assertEqual(srv.put("/repos/a/x/1/h.bin", other).status, 201)
            s2 = srv.storage()
            self.assertEqual((s2["blob_count"], s2["stored_bytes"], s2["artifact_count"],
                              s2["logical_bytes"]), (2, 1500, 3, 2500), s2)
            self.assertAlmostEqual(s2["dedup_ratio"], 2500 / 1500, places=6)
            # a retry and a conflict change nothing
            self.assertEqual(srv.put("/repos/a/x/1/h.bin", other).status, 200)
            self.assertEqual(srv.put("/repos/a/x/1/h.bin", data).status, 409)
            s3 = srv.storage()
            for k in ("blob_count", "stored_bytes", "artifact_count", "logical_bytes",
                      "event_count"):
                self.assertEqual(s3[k], s2[k], k)
            # survives a restart
            srv.restart()
            s4 = srv.storage()
            for k in ("blob_count", "stored_bytes", "artifact_count", "logical_bytes"):
                self.assertEqual(s4[k], s2[k], k)


class OpsTest(ServerTestCase):

    def test_healthz_readyz(self):
        r = self.srv.get("/healthz")
        self.assertEqual(r.status, 200)
        self.assertIn("application/json", r.header("content-type", ""))
        self.assertEqual(r.json(), {"status": "ok"})
        self.assertTrue(r.header("x-request-id"))
        r = self.srv.get("/readyz")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json(), {"status": "ready"})
        self.assertTrue(r.header("x-request-id"))

    def test_metrics(self):
        data = os.urandom(777)
        self.assertEqual(self.srv.put("/repos/m/x/1/f.bin", data).status in (200, 201), True)
        self.assertEqual(self.srv.get("/repos/m/x/1/f.bin").status, 200)
        self.srv.get("/repos/m/x/1/missing.bin")
        # A request is counted once its answer has drained from the server's output buffer,
        # which can be just after the client has read it (and asked the other worker for
        # /metrics): poll briefly rather than race (seen under ASan).
        for _ in range(100):
            r = self.srv.get("/metrics")
            if 'status="404"' in r.body.decode():
                break
            time.sleep(0.02)
        self.assertEqual(r.status, 200)
        self.assertIn("text/plain", r.header("content-type", ""))
        text = r.body.decode()
        for name in ("arca_http_requests_total", "arca_http_request_duration_seconds_bucket",
                     "arca_http_request_duration_seconds_count",
                     "arca_http_request_duration_seconds_sum",
                     "arca_http_bytes_received_total", "arca_http_bytes_sent_total",
                     "arca_http_connections", "arca_blob_count", "arca_blob_stored_bytes",
                     "arca_logical_bytes"):
            self.assertRegex(text, r"(?m)^%s(\{[^}]*\})? [0-9.eE+-]+$" % re.escape(name),
                             "metric %s missing" % name)
        # every family has one HELP and one TYPE line, before its samples
        helps, types = {}, {}
        for i, ln in enumerate(text.splitlines()):
            if ln.startswith("# HELP ") or ln.startswith("# TYPE "):
                into = helps if ln.startswith("# HELP ") else types
                fam = ln.split(" ")[2]
                self.assertNotIn(fam, into, "%s given twice" % ln[:6])
                into[fam] = i
            elif ln:
                name = re.match(r"[a-z_]+", ln).group(0)
                fam = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
                self.assertIn(fam, types, "no TYPE before %r" % ln)
                self.assertIn(fam, helps, "no HELP for %r" % ln)
        lines = [ln for ln in text.splitlines() if ln.startswith("arca_http_requests_total{")]
        self.assertTrue(any('status="404"' in ln for ln in lines), lines)
        self.assertTrue(any('status="200"' in ln for ln in lines), lines)
        self.assertTrue(all("route=" in ln for ln in lines), lines)
        st = self.srv.storage()

        def value(metric):
            m = re.search(r"(?m)^%s(?:\{[^}]*\})? ([0-9.eE+-]+)$" % metric, text)
            return float(m.group(1))

        self.assertEqual(value("arca_blob_count"), st["blob_count"])
        self.assertEqual(value("arca_blob_stored_bytes"), st["stored_bytes"])
        self.assertEqual(value("arca_logical_bytes"), st["logical_bytes"])
        self.assertGreaterEqual(value("arca_http_bytes_received_total"), 777)
        self.assertGreaterEqual(value("arca_http_bytes_sent_total"), 777)
        # counters grow
        before = sum(float(ln.rsplit(" ", 1)[1]) for ln in lines)
        for _ in range(3):
            self.srv.get("/healthz")
        text2 = self.srv.get("/metrics").body.decode()
        after = sum(float(ln.rsplit(" ", 1)[1]) for ln in text2.splitlines()
                    if ln.startswith("arca_http_requests_total{"))
        self.assertGreaterEqual(after, before + 3)

    def test_port_file_and_log(self):
        with open(os.path.join(self.srv.data, "arcad.port")) as f:
            self.assertEqual(int(f.read().strip()), self.srv.port)
        self.assertIn("listening on 127.0.0.1:%d" % self.srv.port, self.srv.log_text())

    def test_admin_token_file(self):
        p = os.path.join(self.srv.data, "admin.token")
        st = os.stat(p)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600, oct(st.st_mode))
        tok = self.srv.token
        self.assertGreaterEqual(len(tok), 16, "admin token is short")
        self.assertNotIn(tok, self.srv.log_text(), "the admin token secret is in the log")
        self.assertIn("admin.token", self.srv.log_text(), "the token path is not logged")
        # kept across restarts
        self.srv.restart()
        with open(p) as f:
            self.assertEqual(f.read().strip(), tok)
        self.assertEqual(stat.S_IMODE(os.stat(p).st_mode), 0o600)
        self.assertNotIn(tok, self.srv.log_text())


class CliTest(unittest.TestCase):
    def test_version_and_help(self):
        r = run_arcad(["--version"])
        self.assertEqual(r.returncode, 0, r)
        self.assertTrue((r.stdout + r.stderr).strip())
        r = run_arcad(["--help"])
        self.assertEqual(r.returncode, 0, r)
        self.assertIn("verify", r.stdout + r.stderr)

    def test_unknown_option(self):
        r = run_arcad(["--no-such-option"])
        self.assertNotEqual(r.returncode, 0, r)

    def test_config_dump(self):
        with ArcaServer(config="[server]\nheader_timeout = 2\nmax_connections = 8\n") as srv:
            r = run_arcad(["config", "--config", srv.config_path])
            self.assertEqual(r.returncode, 0, r)
            self.assertRegex(r.stdout, r"(?m)^server\.header_timeout = 2$")
            self.assertRegex(r.stdout, r"(?m)^server\.max_connections = 8$")
            self.assertRegex(r.stdout, r"(?m)^server\.idle_timeout = 60$")
        r = run_arcad(["config"])
        self.assertEqual(r.returncode, 0, r)
        for line in ("server.listen = 127.0.0.1:8080", "server.max_connections = 1024",
                     "server.header_timeout = 10", "server.idle_timeout = 60",
                     "server.shutdown_grace = 30", "storage.verify_on_download = true"):
            self.assertIn(line, r.stdout.splitlines())

    def _start_fails(self, conf_text, must_mention):
        srv = ArcaServer(config=conf_text)
        try:
            p = run_arcad(["--listen", "127.0.0.1:0", "--data", srv.data, "--config",
                           srv.config_path], timeout=15)
            self.assertNotEqual(p.returncode, 0, "arcad started with a bad config: %r" % p)
            msg = p.stdout + p.stderr
            for m in must_mention:
                self.assertRegex(msg, m, msg)
            self.assertFalse(os.path.exists(os.path.join(srv.data, "arcad.port")),
                             "arcad wrote a port file with a bad config")
        finally:
            srv.cleanup()

    def test_bad_config_files(self):
        self._start_fails("[server]\nheader_timeout = 2\nbogus_key = 1\n",
                          [r"bogus_key", r"(:3\b|line 3)"])
        self._start_fails("[server]\n\n[nosuchsection]\nx = 1\n",
                          [r"nosuchsection", r"(:4\b|line 4|:3\b|line 3)"])
        self._start_fails("[server]\nheader_timeout = soon\n",
                          [r"header_timeout", r"(:2\b|line 2)"])
        self._start_fails("[server]\nmax_connections = 0\n", [r"max_connections"])
        self._start_fails("[server]\nworkers = 2\nworkers = 3\n",
                          [r"workers", r"set twice", r"(:3\b|line 3)"])

    def test_listen_port_out_of_range(self):
        """getaddrinfo would wrap 99999 to 34463; the port is refused instead, from the flag
        and from the config file (and by `arcad config`)."""
        tmp = tempfile.mkdtemp(prefix="arca-e2e-port-")
        try:
            for port in ("99999", "65536", ""):
                with self.subTest(port=port):
                    p = run_arcad(["--listen", "127.0.0.1:" + port, "--data",
                                   os.path.join(tmp, "d")], timeout=15)
                    self.assertEqual(p.returncode, 2, p)
                    self.assertIn("port 0-65535", p.stdout + p.stderr)
                    self.assertFalse(os.path.exists(os.path.join(tmp, "d")))
            conf = os.path.join(tmp, "c.conf")
            with open(conf, "w") as f:
                f.write("[server]\nlisten = 127.0.0.1:99999\n")
            p = run_arcad(["config", "--config", conf])
            self.assertNotEqual(p.returncode, 0, p)
            self.assertIn("port 0-65535", p.stdout + p.stderr)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def test_config_that_is_a_directory(self):
        tmp = tempfile.mkdtemp(prefix="arca-e2e-confdir-")
        try:
            p = run_arcad(["--listen", "127.0.0.1:0", "--config", tmp, "--data",
                           os.path.join(tmp, "d")], timeout=15)
            self.assertNotEqual(p.returncode, 0, p)
            self.assertIn("not a regular file", p.stdout + p.stderr)
            self.assertFalse(os.path.exists(os.path.join(tmp, "d", "arcad.port")))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def test_second_arcad_on_the_same_port_is_refused(self):
        """The workers share their port through SO_REUSEPORT; the kernel would let a second
        arcad of the same user join it and take half the connections.  It must refuse to
        start instead, and the first must keep serving all requests."""
        with ArcaServer() as srv:
            tmp = tempfile.mkdtemp(prefix="arca-e2e-port2-")
            try:
                p = run_arcad(["--listen", "127.0.0.1:%d" % srv.port, "--data",
                               os.path.join(tmp, "d")], timeout=15)
                self.assertNotEqual(p.returncode, 0, p)
                self.assertIn("another process is listening", p.stdout + p.stderr)
                # checked before anything is made: no half-made data dir is left behind
                self.assertFalse(os.path.exists(os.path.join(tmp, "d")), os.listdir(tmp))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            for _ in range(20):  # every one answered by the first server (a second would 401)
                self.assertEqual(srv.get("/api/v1/storage").status, 200)


if __name__ == "__main__":
    unittest.main()
