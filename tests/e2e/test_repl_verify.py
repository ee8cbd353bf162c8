"""`arcad replication verify` and GET /api/v1/replication/digest's range digests.

Two centres, dcA and dcB, peered with each other over plain HTTP (each on a
port picked below the ephemeral range, with the replicate token the other uses
made by `arcad token create` before it starts).  After
uploads on both have replicated, both centres' digests agree at the top and at
every range, and `arcad replication verify` exits 0 from either side.  Then,
with dcB stopped, tests/tools/arca_tamper changes one record and deletes
another behind its back (damage no event carries, so replication cannot mend
it): verify exits 1 and names exactly those keys, from either side and as
JSON lines.  A peer that cannot be reached is exit 2 with a message naming it.
The endpoint's bad parameters are 400s naming them; a token without the
replicate scope is a 403.
"""

import json
import os
import subprocess
import time
import unittest

from harness import HOST, ArcaServer, ArcaTestMixin, bearer, free_port

HERE = os.path.dirname(os.path.abspath(__file__))
TAMPER = os.environ.get("ARCA_TAMPER") or os.path.normpath(
    os.path.join(HERE, "..", "..", "build", "tests", "tools", "arca_tamper"))

DIGEST = "/api/v1/replication/digest"
PARTS = ["repos", "names", "versions", "artifacts", "blobs", "sha1", "props", "propidx",
         "stageidx", "builds", "conflicts", "blobrefs", "tokens", "token_hash", "origins"]


def conf(centre, listen=None, peers=()):
    text = "[server]\nlisten = %s\n\n" % listen if listen else ""
    text += ("[centre]\nid = %s\n\n[replication]\npoll_interval_ms = 50\n"
             "retry_max_seconds = 1\n" % centre)
    for name, url, token in peers:
        text += "\n[peer.%s]\nurl = %s\ntoken = %s\n" % (name, url, token)
    return text


def key_hex(*segments):
    return b"\0".join(s.encode() for s in segments).hex()


class ReplVerifyTest(ArcaTestMixin, unittest.TestCase):
    a = b = None

    @classmethod
    def setUpClass(cls):
        cls.a = ArcaServer(config=conf("dcA"))
        cls.b = ArcaServer(config=conf("dcB"))
        try:
            # Ports below the ephemeral range (free_port), and the replicate tokens made
            # with `arcad token create` before the first start: each centre starts once.
            ports = {cls.a: free_port(), cls.b: free_port()}
            tokens = {}
            for srv in (cls.a, cls.b):
                r = srv.cli("token", "create", "--name", "peer", "--scope", "replicate",
                            "--data", srv.data, "--config", srv.config_path)
                assert r.returncode == 0, r.stderr
                tokens[srv] = r.stdout.splitlines()[0].strip()
            for srv, other, name in ((cls.a, cls.b, "b"), (cls.b, cls.a, "a")):
                with open(srv.config_path, "w") as f:
                    # server.listen for `arcad replication verify`; the harness's --listen
                    # flag (port 0) is overridden by a later one with the same port.
                    listen = "%s:%d" % (HOST, ports[srv])
                    f.write(conf("dcA" if srv is cls.a else "dcB", listen,
                                 [(name, "http://%s:%d" % (HOST, ports[other]), tokens[other])]))
                srv.extra_args = ["--listen", listen]
            for srv in (cls.a, cls.b):
                srv.start()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for srv in (cls.a, cls.b):
            if srv:
                srv.cleanup()

    # -- helpers ---------------------------------------------------------------------------

    def verify(self, srv, *args):
        return srv.cli("replication", "verify", "--config", srv.config_path, "--data", srv.data,
                       *args)

    def digest(self, srv, query=""):
        return srv.json(DIGEST + query)

    def wait_agree(self, timeout=60.0):
        deadline = time.monotonic() + timeout
        while True:
            da, db = self.digest(self.a), self.digest(self.b)
            if da["state_digest"] == db["state_digest"]:
                return da, db
            if time.monotonic() > deadline:
                self.fail("the centres did not converge within %.0f s:\n%r\n%r\nlogs:\n%s\n%s"
                          % (timeout, da, db, self.a.log_tail(2000), self.b.log_tail(2000)))
            time.sleep(0.1)

    def upload(self, srv, path, data):
        r = srv.put(path, data)
        self.assertIn(r.status, (200, 201), r)

    # -- tests, in order -------------------------------------------------------------------

    def test_1_agree(self):
        # 70 files in one version at dcA (more than a leaf), a few at dcB, a promotion.
        for i in range(70):
            self.upload(self.a, "/repos/libs/app/1.0/f%02d.bin" % i, b"a%d" % i)
        for i in range(5):
            self.upload(self.b, "/repos/tools/cli/2.%d/cli.tar" % i, b"b%d" % i)
        da, db = self.wait_agree()
        self.assertEqual(da["centre"], "dcA")
        self.assertEqual(db["centre"], "dcB")
        self.assertEqual([p["part"] for p in da["parts"]], PARTS)
        self.assertEqual(da["parts"], db["parts"])
        art = {p["part"]: p for p in da["parts"]}["artifacts"]
        self.assertEqual(art["count"], 75)

        # The ranges agree too: the whole part (buckets), and one version (keys).
        ra = self.digest(self.a, "?part=artifacts")
        self.assertEqual(ra, dict(self.digest(self.b, "?part=artifacts"), centre="dcA"))
        self.assertEqual((ra["count"], ra["digest"], ra["prefix"]), (75, art["digest"], ""))
        self.assertNotIn("keys", ra)
        self.assertIsNone(ra["exact"])
        self.assertEqual(sum(x["count"] for x in ra["buckets"]), 75)
        self.assertEqual([x["byte"] for x in ra["buckets"]], [b"l".hex(), b"t".hex()])
        prefix = key_hex("tools", "cli", "")
        rk = self.digest(self.a, "?part=artifacts&prefix=" + prefix)
        self.assertEqual(rk["count"], 5)
        self.assertEqual(rk["keys"][0]["key"], key_hex("tools", "cli", "2.0", "cli.tar"))
        self.assertEqual(rk["keys"], self.digest(self.b, "?part=artifacts&prefix=" + prefix)["keys"])

        for srv, peer in ((self.a, "b"), (self.b, "a")):
            p = self.verify(srv)
            self.assertEqual(p.returncode, 0, "%s\n%s" % (p.stdout, p.stderr))
            self.assertIn("%s (http://" % peer, p.stdout)
            self.assertIn("in agreement, state digest %s" % da["state_digest"], p.stdout)
            p = self.verify(srv, "--json", "--peer", peer)
            self.assertEqual(p.returncode, 0, p.stderr)
            lines = [json.loads(x) for x in p.stdout.splitlines()]
            self.assertEqual(len(lines), 1, p.stdout)
            self.assertTrue(lines[0]["agree"])
            self.assertEqual(lines[0]["peer"], peer)
            self.assertEqual(lines[0]["divergent"], 0)
            self.assertEqual(lines[0]["peer_digest"], da["state_digest"])

    def test_2_endpoint_parameters(self):
        for query, param in (("?part=nope", "part"), ("?part=", "part"),
                             ("?part=events", "part"), ("?prefix=00", "prefix"),
                             ("?part=artifacts&prefix=0", "prefix"),
                             ("?part=artifacts&prefix=zz", "prefix"),
                             ("?part=artifacts&prefix=" + "00" * 2049, "prefix"),
                             ("?part=repos&part=names", "part"), ("?limit=1", "limit"),
                             ("?part=repos&x=1", "x")):
            r = self.a.get(DIGEST + query)
            self.assertError(r, 400, "bad_request", query)
            self.assertEqual(r.json()["error"].get("parameter"), param, query)
        # The longest prefix there is, and a prefix that is a whole key.
        r = self.a.get(DIGEST + "?part=artifacts&prefix=" + "00" * 2048)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["count"], 0)
        k = key_hex("libs", "app", "1.0", "f07.bin")
        j = self.digest(self.a, "?part=artifacts&prefix=" + k)
        self.assertEqual([x["key"] for x in j["keys"]], [k])

        # Scopes: replicate (or admin) only.
        r = self.a.post_json("/api/v1/tokens", {"name": "reader", "scopes": ["read"]})
        self.assertEqual(r.status, 201, r)
        reader = r.json()["token"]
        self.assertError(self.a.get(DIGEST, token=reader), 403, "forbidden")
        self.assertError(self.a.get(DIGEST + "?part=repos", token=reader), 403, "forbidden")
        self.assertError(self.a.get(DIGEST, auth=None), 401)
        r = self.a.post_json("/api/v1/tokens", {"name": "repl", "scopes": ["replicate"]})
        self.assertEqual(self.a.get(DIGEST, token=r.json()["token"]).status, 200)

    def test_3_divergence_named(self):
        self.wait_agree()
        # Damage no event carries: dcB's repository record altered, one file record gone.
        self.b.stop()
        gone = key_hex("libs", "app", "1.0", "f42.bin")
        for args in (("set", "repos", key_hex("libs"), '{"created_ms":1}'),
                     ("unset", "artifacts", gone)):
            p = subprocess.run([TAMPER, self.b.data] + list(args), capture_output=True,
                               text=True, timeout=60)
            self.assertEqual(p.returncode, 0, "arca_tamper %r: %s" % (args, p.stderr))
        self.b.start()
        # Replication goes on (a new upload still reaches dcB) and mends nothing.
        self.upload(self.a, "/repos/libs/app/1.1/new.bin", b"new")
        deadline = time.monotonic() + 60
        while self.b.get("/repos/libs/app/1.1/new.bin").status != 200:
            self.assertLess(time.monotonic(), deadline, "replication stopped")
            time.sleep(0.1)
        da, db = self.digest(self.a), self.digest(self.b)
        self.assertNotEqual(da["state_digest"], db["state_digest"])
        differing = [x["part"] for x, y in zip(da["parts"], db["parts"]) if x != y]
        self.assertEqual(differing, ["repos", "artifacts"])

        p = self.verify(self.a)
        self.assertEqual(p.returncode, 1, "%s\n%s" % (p.stdout, p.stderr))
        lines = p.stdout.splitlines()
        self.assertEqual(lines[:2], ["repos %s: differs" % key_hex("libs"),
                                     "artifacts %s: only here" % gone], p.stdout)
        self.assertEqual(len(lines), 3, p.stdout)
        self.assertIn("b (http://%s:%d, centre dcB): 2 divergent keys in repos, artifacts"
                      % (HOST, self.b.port), lines[2])

        # The other side sees it the other way round; as JSON lines too.
        p = self.verify(self.b, "--json")
        self.assertEqual(p.returncode, 1, "%s\n%s" % (p.stdout, p.stderr))
        lines = [json.loads(x) for x in p.stdout.splitlines()]
        self.assertEqual(lines[:2], [
            {"peer": "a", "part": "repos", "key": key_hex("libs"), "status": "differs"},
            {"peer": "a", "part": "artifacts", "key": gone, "status": "only_there"}])
        self.assertEqual(lines[2]["divergent"], 2)
        self.assertFalse(lines[2]["agree"])
        self.assertEqual(lines[2]["centre"], "dcA")
        self.assertEqual(lines[2]["parts"], "repos, artifacts")
        p = self.verify(self.b)
        self.assertIn("artifacts %s: only at a" % gone, p.stdout.splitlines())

    def test_4_errors(self):
        # A peer that is not there, beside one that is: exit 2, naming it; the other still checked.
        path = os.path.join(self.a.data, "verify-extra.conf")
        with open(self.a.config_path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text + "\n[peer.gone]\nurl = http://%s:1\ntoken = x\n" % HOST)
        p = self.a.cli("replication", "verify", "--config", path, "--data", self.a.data)
        self.assertEqual(p.returncode, 2, "%s\n%s" % (p.stdout, p.stderr))
        self.assertIn("peer gone (http://%s:1)" % HOST, p.stderr)
        self.assertIn("b (http://", p.stdout)
        p = self.a.cli("replication", "verify", "--config", path, "--data", self.a.data,
                       "--peer", "nope")
        self.assertEqual(p.returncode, 2)
        self.assertIn("no [peer.nope]", p.stderr)
        # The local arcad not running (another data directory, no port file).
        p = self.a.cli("replication", "verify", "--config", path, "--listen", "%s:0" % HOST,
                       "--data", os.path.join(self.a.data, "elsewhere"))
        self.assertEqual(p.returncode, 2)
        self.assertIn("arcad.port", p.stderr)
        p = self.a.cli("replication", "frob")
        self.assertEqual(p.returncode, 2)


if __name__ == "__main__":
    unittest.main()
