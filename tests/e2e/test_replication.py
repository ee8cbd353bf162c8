"""Active-active replication between centres (issue 5), end to end.

Several real arcad processes on loopback, each with its own data dir and
centre id, pulling from each other through TCP proxies the tests can cut and
throttle (harness.Cluster).  Every test writes, lets the centres converge and
checks what every centre serves, byte for byte, plus the state digests.
"""

import hashlib
import json
import os
import random
import shutil
import subprocess
import threading
import time
import unittest

from harness import (HERE, HOST, ArcaTestMixin, Centre, Cluster, Pki, free_port, run_arcad,
                     sha256_hex, uniq)

TAMPER = os.environ.get("ARCA_TAMPER") or os.path.normpath(
    os.path.join(HERE, "..", "..", "build", "tests", "tools", "arca_tamper"))


def upload_many(srv, prefix, count, rng, out, errors):
    """count uploads to srv under prefix; every 201 goes into out {path: bytes}."""
    for k in range(count):
        size = rng.choice([0, 1, 7, 4096, 65537, rng.randrange(1, 300000)])
        data = rng.randbytes(size)
        path = "/repos/libs/%s/1.%d/file-%d.bin" % (prefix, k, k)
        try:
            r = srv.put(path, data)
        except OSError as e:
            errors.append("%s: %s" % (path, e))
            continue
        if r.status == 201:
            out[path] = data
        else:
            errors.append("%s: %r" % (path, r))


class ReplicationBase(ArcaTestMixin, unittest.TestCase):
    def assertServesAll(self, cluster, files):
        for c in cluster.centres:
            for path, data in files.items():
                r = c.get(path)
                self.assertEqual(r.status, 200, "%s at %s: %r" % (path, c.centre, r))
                self.assertEqual(sha256_hex(r.body), sha256_hex(data),
                                 "%s at %s differs" % (path, c.centre))

    def vpath(self, name, version, action=""):
        p = "/api/v1/repos/libs/%s/%s" % (name, version)
        return p + ("/" + action if action else "")


class TwoCentres(ReplicationBase):
    def setUp(self):
        self.cl = Cluster(2)
        self.addCleanup(self.cl.close)

    def test_concurrent_uploads_converge(self):
        files, errors = {}, []
        threads = [threading.Thread(target=upload_many,
                                    args=(self.cl[i], "app%d-%d" % (i, t), 12,
                                          random.Random(i * 10 + t), files, errors))
                   for i in range(2) for t in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(len(files), 48)
        self.cl.wait_converged()
        self.assertServesAll(self.cl, files)
        # Each centre holds the other's signed origin checkpoint, matching its copy of that log.
        for c, other in ((self.cl[0], "dc2"), (self.cl[1], "dc1")):
            deadline = time.monotonic() + 10
            while True:
                o = {x["origin"]: x for x in c.json("/api/v1/audit/origins")["origins"]}
                if o.get(other, {}).get("verified") is True:
                    break
                self.assertLess(time.monotonic(), deadline, o)
                time.sleep(0.1)
            self.assertGreater(o[other]["checkpoint"]["size"], 0)
            self.assertGreater(c.status()["peers"][0]["checkpoints_accepted"], 0)
            self.assertEqual(c.status()["peers"][0]["checkpoint_conflicts"], 0)
        s = [c.storage() for c in self.cl.centres]
        self.assertEqual(s[0]["artifact_count"], s[1]["artifact_count"])
        self.assertEqual(s[0]["blob_count"], s[1]["blob_count"])
        # Each centre fetched the other's blobs and applied its events once.
        for c in self.cl.centres:
            (p,) = c.status()["peers"]
            self.assertTrue(p["connected"], p)
            self.assertEqual(p["events_behind"], 0, p)
            self.assertGreaterEqual(p["events_applied"], 24, p)
            self.assertEqual(p["lag_seconds"], 0, p)
            m = c.get("/metrics").body.decode()
            self.assertIn('arca_replication_connected{peer="%s"} 1\n' % p["name"], m)
            self.assertIn('arca_replication_events_behind{peer="%s"} 0\n' % p["name"], m)
            self.assertIn('arca_replication_events_applied_total{peer="%s"} %d\n'
                          % (p["name"], p["events_applied"]), m)

    def test_same_coordinate_different_bytes_same_winner_everywhere(self):
        self.cl.cut()
        path = "/repos/libs/clash-%s/1.0/app.jar" % uniq()
        a, b = os.urandom(1000), os.urandom(2000)
        self.assertEqual(self.cl[0].put(path, a).status, 201)
        self.assertEqual(self.cl[1].put(path, b).status, 201)
        # Cut off, each centre serves what it accepted.
        self.assertEqual(self.cl[0].get(path).body, a)
        self.assertEqual(self.cl[1].get(path).body, b)
        self.cl.heal()
        self.cl.wait_converged()
        winner = self.cl[0].get(path).body
        self.assertIn(winner, (a, b))
        self.assertEqual(self.cl[1].get(path).body, winner)
        loser = b if winner == a else a
        name = path.split("/")[3]
        for c in self.cl.centres:
            t = c.json("/api/v1/trace/libs/%s/1.0" % name)
            (conf,) = t["conflicts"]
            self.assertEqual(conf["path"], "app.jar")
            self.assertEqual(conf["sha256"], sha256_hex(loser), conf)
            self.assertEqual(conf["winner"]["sha256"], sha256_hex(winner), conf)

    def test_promote_here_revoke_there_and_racing_properties(self):
        name = "rel-" + uniq()
        self.assertEqual(self.cl[0].put("/repos/libs/%s/1.0/a.bin" % name, b"x").status, 201)
        self.cl.wait_converged()
        self.cl.cut()
        for to in ("test", "prod"):
            r = self.cl[0].post_json(self.vpath(name, "1.0", "promote"), {"to": to})
            self.assertEqual(r.status, 200, r)
        r = self.cl[1].post_json(self.vpath(name, "1.0", "revoke"), {"reason": "CVE"})
        self.assertEqual(r.status, 200, r)
        for i, v in ((0, "from-dc1"), (1, "from-dc2"), (0, "again-dc1")):
            r = self.cl[i].request("PATCH", self.vpath(name, "1.0", "properties"),
                                   body=json.dumps({"k": v, "only.%d" % i: "y"}).encode())
            self.assertEqual(r.status, 200, r)
        self.cl.heal()
        self.cl.wait_converged()
        states = [c.json(self.vpath(name, "1.0")) for c in self.cl.centres]
        props = [c.json(self.vpath(name, "1.0", "properties"))["properties"]
                 for c in self.cl.centres]
        for s in states:
            s.pop("files", None)
        self.assertEqual(states[0], states[1])
        self.assertEqual(states[0]["stage"], "prod")   # the furthest promotion
        self.assertIsNotNone(states[0]["revoked"])     # and revoked: nothing serves it
        self.assertEqual(props[0], props[1])
        self.assertEqual(props[0]["only.0"], "y")
        self.assertEqual(props[0]["only.1"], "y")
        for c in self.cl.centres:
            self.assertEqual(c.get("/stages/prod/libs/%s/1.0/a.bin" % name).status, 410)

    def test_cut_off_both_keep_writing_then_heal(self):
        self.cl.cut()
        files, errors = {}, []
        for rnd in range(3):
            for i in range(2):
                upload_many(self.cl[i], "cut%d-%d" % (i, rnd), 5,
                            random.Random(100 + rnd * 2 + i), files, errors)
            time.sleep(0.3)
        self.assertEqual(errors, [])
        # Each side serves its own writes alone and reports the broken link.
        for c in self.cl.centres:
            (p,) = c.status()["peers"]
            self.assertFalse(p["connected"], p)
            self.assertIsNotNone(p["last_error"], p)
            self.assertIn('arca_replication_connected{peer="%s"} 0\n' % p["name"],
                          c.get("/metrics").body.decode())
            # Cut off, the lag counts at least the time since the peer last answered.
            self.assertGreater(p["lag_seconds"], 0.5, p)
            self.assertEqual(c.get("/healthz").status, 200)
        self.cl.heal()
        self.cl.wait_converged()
        self.assertEqual(len(files), 30)
        self.assertServesAll(self.cl, files)

    def test_backlog_of_blobs_and_bytes_is_shown(self):
        self.cl.wait_converged()
        self.cl.proxy[(1, 0)].cut()
        sizes = [100000 + k for k in range(5)]
        for k, n in enumerate(sizes):
            self.assertEqual(self.cl[0].put("/repos/libs/backlog-%s/1.%d/f" % (uniq(), k),
                                            os.urandom(n)).status, 201)
        self.cl.proxy[(1, 0)].rate = 50000  # bytes/s per connection: ~2 s per blob
        self.cl.proxy[(1, 0)].heal()
        deadline = time.monotonic() + 20
        seen = None
        while time.monotonic() < deadline:
            (p,) = self.cl[1].status()["peers"]
            if p["connected"] and p["blobs_behind"] > 0:
                seen = p
                break
            time.sleep(0.02)
        self.assertIsNotNone(seen, "no backlog seen")
        self.assertEqual((seen["blobs_behind"], seen["bytes_behind"]), (5, sum(sizes)), seen)
        self.assertGreater(seen["events_behind"], 0, seen)
        self.cl.proxy[(1, 0)].rate = 0
        self.cl.wait_converged()
        (p,) = self.cl[1].status()["peers"]
        self.assertEqual((p["blobs_behind"], p["bytes_behind"]), (0, 0), p)

    def test_restart_keeps_the_cursor(self):
        files, errors = {}, []
        upload_many(self.cl[0], "restart", 6, random.Random(7), files, errors)
        self.cl.wait_converged()
        before = self.cl[1].status()["peers"][0]["cursor"]
        self.assertGreater(before, 0)
        self.cl[1].restart()
        upload_many(self.cl[0], "restart2", 2, random.Random(8), files, errors)
        self.cl.wait_converged()
        p = self.cl[1].status()["peers"][0]
        self.assertGreater(p["cursor"], before)
        # Only the new events were read again, not the whole log.
        self.assertLessEqual(p["events_seen"], p["cursor"] - before, p)
        self.assertEqual(errors, [])
        self.assertServesAll(self.cl, files)

    def test_peer_credential_only_replicates(self):
        c = self.cl[0]
        tok = self.cl.repl_tokens[0]
        name = "cred-" + uniq()
        self.assertEqual(c.put("/repos/libs/%s/1.0/a" % name, b"abc").status, 201)
        self.assertError(c.put("/repos/libs/%s/1.0/b" % name, b"x", token=tok), 403)
        self.assertError(c.get("/repos/libs/%s/1.0/a" % name, token=tok), 403)
        # Listings show a peer nothing (it reads no repository).
        r = c.get("/api/v1/repos", token=tok)
        self.assertEqual((r.status, r.json()["items"]), (200, []), r)
        self.assertError(c.get("/api/v1/audit", token=tok), 403)
        self.assertError(c.post_json("/api/v1/tokens", {"name": "x", "scopes": ["admin"]},
                                     token=tok), 403)
        r = c.get("/api/v1/replication/events?after=0&limit=2", token=tok)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(r.body.splitlines()), 2)
        self.assertIn("x-next-after", r.headers)
        # The backlog after a cursor: uploads in the log after it, and their bytes.
        self.assertEqual((r.headers["x-arca-puts-after"], r.headers["x-arca-put-bytes-after"]),
                         ("1", "3"), r.headers)
        size = r.headers["x-audit-size"]
        r = c.get("/api/v1/replication/events?after=%s" % size, token=tok)
        self.assertEqual((r.status, r.body, r.headers["x-arca-puts-after"]), (200, b"", "0"))
        sha = sha256_hex(b"abc")
        r = c.get("/api/v1/replication/blobs/" + sha, token=tok)
        self.assertEqual((r.status, r.body), (200, b"abc"))
        r = c.get("/api/v1/replication/blobs/" + sha, token=tok, headers={"Range": "bytes=1-"})
        self.assertEqual((r.status, r.body), (206, b"bc"))
        # A read token is not a peer credential.
        rd = c.post_json("/api/v1/tokens", {"name": "reader-" + uniq(), "scopes": ["read"]})
        self.assertEqual(rd.status, 201)
        self.assertError(c.get("/api/v1/replication/events", token=rd.json()["token"]), 403)
        self.assertError(c.get("/api/v1/replication/events", auth=None), 401)

    def test_other_centres_history_rewritten_here_is_named(self):
        name = "hist-" + uniq()
        for k in range(3):
            self.assertEqual(self.cl[0].put("/repos/libs/%s/1.%d/a" % (name, k), b"v%d" % k).status,
                             201)
        self.cl.wait_converged()
        dc2 = self.cl[1]
        # dc2 holds dc1's checkpoint covering those events.
        deadline = time.monotonic() + 10
        while True:
            o = {x["origin"]: x for x in dc2.json("/api/v1/audit/origins")["origins"]}
            cp = (o.get("dc1") or {}).get("checkpoint") or {}
            if cp.get("size", 0) >= o["dc1"]["events"]:
                break
            self.assertLess(time.monotonic(), deadline, o)
            time.sleep(0.1)
        log = [json.loads(x) for x in dc2.get("/api/v1/audit?limit=1000").body.splitlines()]
        victim = [e for e in log if e["origin"] == "dc1" and e["action"] == "artifact.put"][-1]
        self.assertEqual(dc2.json("/api/v1/audit/verify")["problem_count"], 0)
        self.cl.proxy[(1, 0)].cut()
        dc2.stop()
        out = subprocess.run([TAMPER, dc2.data, "alter", str(victim["seq"])],
                             capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        dc2.start()
        rep = dc2.json("/api/v1/audit/verify")
        kinds = {(p["kind"], p.get("origin"), p.get("origin_seq")) for p in rep["problems"]}
        self.assertIn(("origin", "dc1", victim["origin_seq"]), kinds, rep["problems"])

    def test_replaced_data_dir_under_the_same_id_is_reported(self):
        self.assertEqual(self.cl[1].put("/repos/libs/old-%s/1.0/a" % uniq(), b"old").status, 201)
        self.cl.wait_converged()
        dc2 = self.cl[1]
        dc2.stop()
        for d in ("index", "blobs", "admin.token", "audit.key"):
            path = os.path.join(dc2.data, d)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.unlink(path)
        dc2._token = None
        dc2.start()
        deadline = time.monotonic() + 20
        while True:
            (p,) = dc2.status()["peers"]
            if p["last_error"] and "new centre id" in p["last_error"]:
                break
            self.assertLess(time.monotonic(), deadline, p)
            time.sleep(0.1)
        self.assertIn("this data dir replaced the one that wrote them", dc2.log_text())

    def test_peer_log_replaced_is_read_again(self):
        dc1, dc2 = self.cl[0], self.cl[1]
        for k in range(3):
            self.assertEqual(dc2.put("/repos/libs/before-%s/1.%d/a" % (uniq(), k), b"b").status,
                             201)
        self.cl.wait_converged()
        cursor = dc1.status()["peers"][0]["cursor"]
        dc1.stop()
        # dc2's data dir is replaced (a new centre id, as the docs ask): a shorter, new log.
        dc2.stop()
        for d in ("index", "blobs", "admin.token", "audit.key"):
            path = os.path.join(dc2.data, d)
            shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
        with open(dc2.config_path) as f:
            conf = f.read().replace("id = dc2\n", "id = dc2b\n")
        with open(dc2.config_path, "w") as f:
            f.write(conf)
        dc2._token = None
        dc2.start()
        # It grows past dc1's cursor while dc1 is away: the size check alone would not notice.
        files = {}
        for k in range(cursor + 2):
            path = "/repos/libs/after-%s/1.%d/a" % (uniq(), k)
            data = os.urandom(10 + k)
            self.assertEqual(dc2.put(path, data).status, 201)
            files[path] = data
        dc1.start()
        deadline = time.monotonic() + 30
        while any(dc1.get(p).status != 200 for p in files):
            self.assertLess(time.monotonic(), deadline, dc1.status())
            time.sleep(0.1)
        for path, data in files.items():
            self.assertEqual(dc1.get(path).body, data)
        self.assertIn("does not continue the log the cursor was in", dc1.log_text())

    def wait_repair(self, c, peer, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            (p,) = [x for x in c.status()["peers"] if x["name"] == peer]
            if p["repair"] and p["repair"]["state"] == "done":
                return p["repair"]
            time.sleep(0.05)
        raise AssertionError("repair did not finish: %r" % p)

    def test_repair_refetches_lost_and_damaged_blobs(self):
        name = "repair-" + uniq()
        a, b = os.urandom(3000), os.urandom(5000)
        pa, pb = ("/repos/libs/%s/1.0/%s" % (name, f) for f in ("a.bin", "b.bin"))
        self.assertEqual(self.cl[0].put(pa, a).status, 201)
        self.assertEqual(self.cl[0].put(pb, b).status, 201)
        self.cl.wait_converged()
        dc2 = self.cl[1]
        os.unlink(dc2.blob_path(sha256_hex(a)))            # lost
        with open(dc2.blob_path(sha256_hex(b)), "r+b") as f:  # damaged, same size
            f.seek(100)
            f.write(bytes([b[100] ^ 0xff]))
        self.assertError(dc2.get(pa), 500, "corrupt_blob")
        self.assertError(dc2.get(pb), 500, "corrupt_blob")
        # A size check finds the lost one; the damaged one needs deep.
        r = dc2.request("POST", "/api/v1/replication/repair?peer=dc1")
        self.assertEqual(r.status, 202, r)
        rep = self.wait_repair(dc2, "dc1")
        self.assertEqual((rep["blobs_bad"], rep["blobs_refetched"], rep["blobs_failed"]),
                         (1, 1, 0), rep)
        self.assertEqual(dc2.get(pa).body, a)
        self.assertError(dc2.get(pb), 500, "corrupt_blob")
        r = dc2.request("POST", "/api/v1/replication/repair?peer=dc1&deep=true")
        self.assertEqual(r.status, 202, r)
        rep = self.wait_repair(dc2, "dc1")
        self.assertTrue(rep["deep"])
        self.assertEqual((rep["blobs_bad"], rep["blobs_refetched"]), (1, 1), rep)
        self.assertGreaterEqual(rep["blobs_checked"], 2)
        self.assertEqual(dc2.get(pb).body, b)
        self.assertEqual(dc2.cli("verify", "--data", dc2.data).returncode, 0)
        self.cl.wait_converged()
        # What the repair endpoint refuses.
        self.assertError(dc2.request("POST", "/api/v1/replication/repair"), 400)
        self.assertError(dc2.request("POST", "/api/v1/replication/repair?peer="), 400)
        self.assertError(dc2.request("POST", "/api/v1/replication/repair?peer=nope"), 404)
        self.assertError(dc2.request("POST", "/api/v1/replication/repair?peer=dc1&deep=maybe"),
                         400)
        self.assertError(dc2.request("POST", "/api/v1/replication/repair?peer=dc1&x=1"), 400)
        self.assertError(dc2.request("POST", "/api/v1/replication/repair?peer=dc1&peer=dc1"), 400)
        self.assertError(dc2.get("/api/v1/replication/repair?peer=dc1"), 405)
        self.assertError(dc2.request("POST", "/api/v1/replication/repair?peer=dc1",
                                     token=self.cl.repl_tokens[1]), 403)

    def test_bad_input(self):
        c = self.cl[0]
        before = c.digest()
        for q in ("limit=0", "limit=1001", "after=x", "after=-1", "bogus=1", "limit=1&limit=2"):
            self.assertError(c.get("/api/v1/replication/events?" + q), 400, msg=q)
        for bad in ("xyz", "0" * 63, "g" * 64, "0" * 65):
            self.assertError(c.get("/api/v1/replication/blobs/" + bad), 400, msg=bad)
        self.assertError(c.get("/api/v1/replication/blobs/" + "0" * 64), 404, "not_found")
        self.assertError(c.get("/api/v1/replication/nope"), 404, "not_found")
        self.assertError(c.get("/api/v1/replication?x=1"), 400)
        self.assertError(c.request("POST", "/api/v1/replication/events", body=b"{}"), 405)
        self.assertError(c.request("DELETE", "/api/v1/replication"), 405)
        self.assertEqual(c.digest(), before)
        self.assertEqual(c.get("/healthz").status, 200)


class ThreeCentres(ReplicationBase):
    def test_relay_through_the_middle_centre(self):
        # dc1 <-> dc2 <-> dc3: dc1 and dc3 never talk; dc2 relays both ways.
        cl = Cluster(3, links=[(0, 1), (1, 0), (1, 2), (2, 1)])
        self.addCleanup(cl.close)
        files, errors = {}, []
        threads = [threading.Thread(target=upload_many,
                                    args=(cl[i], "three%d" % i, 10, random.Random(50 + i),
                                          files, errors)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        cl.wait_converged()
        self.assertServesAll(cl, files)
        # dc3 never talked to dc1, yet holds dc1's events and dc1's signed checkpoint of them.
        (p,) = cl[2].status()["peers"]
        self.assertEqual(p["name"], "dc2")
        deadline = time.monotonic() + 10
        while True:
            o = {x["origin"]: x for x in cl[2].json("/api/v1/audit/origins")["origins"]}
            if "dc1" in o and o["dc1"]["events"] >= 11 and o["dc1"]["verified"] is True:
                break
            self.assertLess(time.monotonic(), deadline, o)
            time.sleep(0.1)

    def test_full_mesh_conflict_and_stage(self):
        cl = Cluster(3)
        self.addCleanup(cl.close)
        name = "mesh-" + uniq()
        cl.cut()
        datas = [os.urandom(100 + i) for i in range(3)]
        for i in range(3):
            self.assertEqual(cl[i].put("/repos/libs/%s/1.0/x.bin" % name, datas[i]).status, 201)
        cl.heal()
        cl.wait_converged()
        got = {cl[i].get("/repos/libs/%s/1.0/x.bin" % name).body for i in range(3)}
        self.assertEqual(len(got), 1)
        for i in range(3):
            t = cl[i].json("/api/v1/trace/libs/%s/1.0" % name)
            self.assertEqual(len(t["conflicts"]), 2, t["conflicts"])


class KillWhileReceiving(ReplicationBase):
    def test_sigkill_mid_blob_resumes(self):
        # Two 32 MiB blobs in one page, fetched in parallel by dc2 through connections
        # throttled to 16 MB/s each (~2 s per blob); dc2 is killed halfway.
        cl = Cluster(2)
        self.addCleanup(cl.close)
        cl.wait_converged()
        cl.proxy[(1, 0)].cut()
        cl.proxy[(1, 0)].rate = 16 << 20
        size = 32 << 20
        blobs = {}
        for k in range(2):
            data = random.Random(3 + k).randbytes(size)
            path = "/repos/libs/big-%s/1.0/big%d.bin" % (uniq(), k)
            self.assertEqual(cl[0].put(path, data).status, 201)
            blobs[path] = (data, hashlib.sha256(data).hexdigest())
        partials = [os.path.join(cl[1].blobs_dir, "partial", sha) for _, sha in blobs.values()]
        cl.proxy[(1, 0)].heal()

        def size_of(f):
            return os.path.getsize(f) if os.path.exists(f) else 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and min(map(size_of, partials)) <= (4 << 20):
            time.sleep(0.05)
        got = [size_of(f) for f in partials]
        self.assertGreater(min(got), 4 << 20, "both fetched at once: %r" % got)
        self.assertLess(max(got), size, "a transfer finished before the kill")
        cl[1].kill()
        cl[1].start()
        # Nothing of either blob is visible at dc2 while it is partial.
        for path in blobs:
            self.assertEqual(cl[1].get(path).status, 404)
        cl.proxy[(1, 0)].rate = 0
        cl.wait_converged(timeout=120)
        for path, (data, sha) in blobs.items():
            r = cl[1].get(path)
            self.assertEqual(r.status, 200)
            self.assertEqual(hashlib.sha256(r.body).hexdigest(), sha)
        (p,) = cl[1].status()["peers"]
        self.assertGreater(p["bytes_resumed"], 8 << 20, p)
        self.assertLess(p["bytes_fetched"], 2 * size - (8 << 20), p)  # only the rest travelled
        for f in partials:
            self.assertFalse(os.path.exists(f))


class FakePeer:
    """A hostile or broken peer: an HTTP server on loopback that answers the
    replication routes from what the test sets (events: list of dicts or raw
    bytes; blobs: {sha256: callable(handler) or bytes})."""

    def __init__(self):
        import http.server
        peer = self
        self.events = []
        self.raw_page = None
        self.more = False
        self.blobs = {}
        self.ranges = []

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def send(self, status, body, headers=()):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path.startswith("/api/v1/replication/events"):
                    after = int(self.path.split("after=")[1].split("&")[0])
                    if peer.raw_page is not None:
                        body = peer.raw_page
                    else:
                        body = b"".join(json.dumps(e).encode() + b"\n"
                                        for e in peer.events if e["seq"] > after)
                    hdrs = [("X-Audit-Size", str(len(peer.events) or 1))]
                    if peer.more:
                        hdrs.append(("X-Next-After", str(after)))
                    self.send(200, body, hdrs)
                elif self.path.startswith("/api/v1/replication/blobs/"):
                    sha = self.path.rsplit("/", 1)[1]
                    peer.ranges.append(self.headers.get("Range"))
                    b = peer.blobs.get(sha)
                    if b is None:
                        self.send(404, b'{"error":{"code":"not_found","message":"no"}}')
                    elif callable(b):
                        b(self)
                    else:
                        self.send(200, b)
                elif self.path.startswith("/api/v1/audit/origins/checkpoints"):
                    self.send(200, b"[]")
                else:
                    self.send(404, b"{}")

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # arcad hanging up on a lie is the point, not an error

        self.httpd = Server((HOST, 0), H)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    @staticmethod
    def put(seq, origin_seq, data, path, origin="dc9", size=None):
        return {"seq": seq, "origin": origin, "origin_seq": origin_seq,
                "hlc": int(time.time() * 1000) << 16, "actor": "evil", "remote_addr": "10.9.9.9",
                "request_id": "r%d" % seq, "action": "artifact.put",
                "subject": "libs/evil/1.0/" + path,
                "details": {"repo": "libs", "name": "evil", "version": "1.0", "path": path,
                            "sha256": sha256_hex(data),
                            "sha1": hashlib.sha1(data).hexdigest(),
                            "md5": hashlib.md5(data).hexdigest(),
                            "size": len(data) if size is None else size},
                "prev": "%064x" % (seq - 1), "hash": "%064x" % seq}


class HostilePeer(ReplicationBase):
    """What a broken or lying peer sends is refused, recorded in the status,
    never applied, and the centre keeps serving."""

    def setUp(self):
        self.fake = FakePeer()
        self.addCleanup(self.fake.close)
        self.c = Centre("dc1", Cluster.REPL_CONF + "[peer.evil]\nurl = http://%s:%d\ntoken = t\n"
                        % (HOST, self.fake.port))
        self.addCleanup(self.c.cleanup)

    def wait_error(self, needle, timeout=15):
        deadline = time.monotonic() + timeout
        while True:
            (p,) = self.c.status()["peers"]
            if p["last_error"] and needle in p["last_error"]:
                return p
            self.assertLess(time.monotonic(), deadline, p)
            time.sleep(0.05)

    def assertStillServing(self):
        self.assertEqual(self.c.get("/healthz").status, 200)
        path = "/repos/libs/local-%s/1.0/a" % uniq()
        self.assertEqual(self.c.put(path, b"local").status, 201)
        self.assertEqual(self.c.get(path).body, b"local")

    def test_blob_with_other_bytes_is_not_applied(self):
        good, bad = os.urandom(5000), os.urandom(6000)
        self.fake.events = [FakePeer.put(1, 1, good, "good.bin"), FakePeer.put(2, 2, bad, "bad.bin")]
        self.fake.blobs = {sha256_hex(good): good, sha256_hex(bad): os.urandom(6000)}
        self.c.start()
        self.wait_error("failed verification on arrival")
        # The good event applies (its blob may be fetched beside the bad one), the bad one never.
        deadline = time.monotonic() + 15
        while self.c.status()["peers"][0]["cursor"] != 1:
            self.assertLess(time.monotonic(), deadline, self.c.status())
            time.sleep(0.05)
        time.sleep(0.5)  # a few more rounds of retrying the bad blob
        (p,) = self.c.status()["peers"]
        self.assertEqual(p["cursor"], 1, p)
        self.assertEqual(self.c.get("/repos/libs/evil/1.0/good.bin").body, good)
        self.assertError(self.c.get("/repos/libs/evil/1.0/bad.bin"), 404)
        # The other bytes never became the blob (a retry may be under way in partial/).
        self.assertFalse(os.path.exists(self.c.blob_path(sha256_hex(bad))))
        self.assertStillServing()

    def test_blob_longer_than_its_event_is_refused(self):
        data = os.urandom(4000)
        self.fake.events = [FakePeer.put(1, 1, data, "x.bin")]
        self.fake.blobs = {sha256_hex(data): data + b"extra"}
        self.c.start()
        self.wait_error("sent more than")
        self.assertError(self.c.get("/repos/libs/evil/1.0/x.bin"), 404)
        self.assertEqual(self.c.storage()["blob_count"], 0)
        self.assertStillServing()

    def test_resume_answered_from_the_wrong_offset_starts_over(self):
        data = os.urandom(300000)
        sha = sha256_hex(data)
        part = os.path.join(self.c.blobs_dir, "partial")
        os.makedirs(part, exist_ok=True)
        with open(os.path.join(part, sha), "wb") as f:
            f.write(data[:1000])

        def lie(h):  # claims a range, sends the whole file from byte 0
            if h.headers.get("Range"):
                h.send(206, data, [("Content-Range", "bytes 0-%d/%d" % (len(data) - 1,
                                                                        len(data)))])
            else:
                h.send(200, data)
        self.fake.events = [FakePeer.put(1, 1, data, "r.bin")]
        self.fake.blobs = {sha: lie}
        self.c.start()
        deadline = time.monotonic() + 15
        while self.c.get("/repos/libs/evil/1.0/r.bin").status != 200:
            self.assertLess(time.monotonic(), deadline, self.c.status())
            time.sleep(0.05)
        self.assertEqual(self.c.get("/repos/libs/evil/1.0/r.bin").body, data)
        self.assertEqual(self.fake.ranges[0], "bytes=1000-")
        self.assertIsNone(self.fake.ranges[-1])  # started over without a range

    def test_malformed_page_changes_nothing(self):
        self.fake.raw_page = b"this is not an event\n"
        self.c.start()
        p = self.wait_error("malformed or out-of-order event")
        self.assertEqual(p["cursor"], 0)
        self.assertEqual(self.c.storage()["artifact_count"], 0)
        self.assertStillServing()

    def test_events_out_of_their_origins_order_are_refused(self):
        a, b = os.urandom(100), os.urandom(200)
        self.fake.events = [FakePeer.put(1, 2, a, "a.bin"), FakePeer.put(2, 1, b, "b.bin")]
        self.fake.blobs = {sha256_hex(a): a, sha256_hex(b): b}
        self.c.start()
        p = self.wait_error("applying event dc9/2 failed")
        self.assertEqual(p["cursor"], 0)
        self.assertEqual(self.c.storage()["artifact_count"], 0)
        self.assertStillServing()

    def test_more_announced_but_nothing_sent_backs_off(self):
        self.fake.more = True
        self.c.start()
        p = self.wait_error("announced more events")
        time.sleep(1)
        (q,) = self.c.status()["peers"]
        self.assertLess(q["errors"] - p["errors"], 5, q)  # backing off, not spinning
        self.assertStillServing()


class PeerCredentialFiles(ReplicationBase):
    """A token_file that cannot serve as a credential stops startup, naming it."""

    def test_bad_token_files_stop_startup(self):
        import tempfile
        d = tempfile.mkdtemp(prefix="arca-e2e-tokfile-")
        self.addCleanup(shutil.rmtree, d, True)
        empty, long_, missing = (os.path.join(d, n) for n in ("empty", "long", "missing"))
        open(empty, "w").close()
        with open(long_, "w") as f:
            f.write("arca_" + "ab" * 100 + "\n")
        for path, why in ((missing, "No such file"), (empty, "it is empty"),
                          (long_, "longer than a token")):
            data = os.path.join(d, "data-" + os.path.basename(path))
            conf = os.path.join(d, "conf-" + os.path.basename(path))
            with open(conf, "w") as f:
                f.write("[peer.dc2]\nurl = http://%s:%d\ntoken_file = %s\n"
                        % (HOST, free_port(), path))
            r = run_arcad(["--listen", "%s:0" % HOST, "--data", data, "--config", conf])
            self.assertNotEqual(r.returncode, 0, r.stderr)
            self.assertIn("peer dc2: cannot read token_file %s: %s" % (path, why), r.stderr)


class MutualTls(ReplicationBase):
    """Peers over HTTPS, each proving itself with a client certificate that the
    other maps to the replicate scope in [tls.clients] (no token at all)."""

    def test_peers_over_https_with_client_certificates(self):
        pki = Pki()
        self.addCleanup(pki.cleanup)
        ids = ("dc1", "dc2")
        for cid in ids:
            pki.client(cid, "replica." + cid)
        tls = ("[tls]\nlisten = %s:%s\ncert_file = %s\nkey_file = %s\nclient_ca_file = %s\n"
               "client_auth = optional\n[tls.clients]\nreplica.dc1 = replicate\n"
               "replica.dc2 = replicate\n[replication]\npoll_interval_ms = 50\n"
               "retry_max_seconds = 1\n")
        tls_ports = [free_port() for _ in ids]
        cs = [Centre(cid) for cid in ids]
        for i, c in enumerate(cs):
            self.addCleanup(c.cleanup)
            j = 1 - i
            c.rewrite_config(
                tls % (HOST, tls_ports[i], pki.path("a.crt"), pki.path("a.key"), pki.ca) +
                "[peer.%s]\nurl = https://%s:%d\nca_file = %s\ncert_file = %s\nkey_file = %s\n"
                % (ids[j], HOST, tls_ports[j], pki.ca, pki.path(ids[i] + ".crt"),
                   pki.path(ids[i] + ".key")))
            c.start()
        files = {}
        for i, c in enumerate(cs):
            path = "/repos/libs/mtls-%s/1.0/f.bin" % uniq()
            files[path] = os.urandom(70000 + i)
            self.assertEqual(c.put(path, files[path]).status, 201)
        deadline = time.monotonic() + 30
        while len({c.digest() for c in cs}) != 1:
            self.assertLess(time.monotonic(), deadline, [c.status() for c in cs])
            time.sleep(0.1)
        for c in cs:
            for path, data in files.items():
                self.assertEqual(c.get(path).body, data)
            (p,) = c.status()["peers"]
            self.assertTrue(p["connected"], p)
        # The peer's certificate is the actor of its requests.
        self.assertRegex(cs[0].log_text(),
                         r"GET /api/v1/replication/events\S* 200 .* actor=cert:replica\.dc2")


if __name__ == "__main__":
    unittest.main()
