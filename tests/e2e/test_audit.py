"""The tamper-evident audit log, as specified in docs/API.md ("Audit log"):
NDJSON paging over the stored events, the hash chain and the RFC 6962 Merkle
tree recomputed here with hashlib, signed checkpoints (Ed25519, checked with
`openssl pkeyutl`), inclusion and consistency proofs verified by an
independent RFC 9162 verifier written here, this centre's origin tree and
its signed origin checkpoint (/origins, /origins/checkpoints, readable with
the replicate scope and nothing else of the audit log is), the same origin
roots at two real centres replicating (harness.Cluster), the scopes each
route needs, a 400/404 for every bad parameter, and tampering: with arcad stopped, the
test-only tools/arca_tamper alters, deletes and swaps stored events with raw
RocksDB writes, and both `arcad audit verify --data` and
GET /api/v1/audit/verify name the first damaged event."""

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import unittest

from harness import ServerTestCase, ArcaServer, ArcaTestMixin, Cluster, run_arcad, HERE

TAMPER = os.environ.get("ARCA_TAMPER") or os.path.normpath(
    os.path.join(HERE, "..", "..", "build", "tests", "tools", "arca_tamper"))
OPENSSL = shutil.which("openssl")
# DER SubjectPublicKeyInfo prefix of an Ed25519 key (RFC 8410): the raw 32 bytes follow.
ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


# --------------------------------------------------------------------------
# An independent RFC 6962 / RFC 9162 implementation


def leaf_hash(line):
    return hashlib.sha256(b"\x00" + line).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(leaves):
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def verify_inclusion(index, size, leaf, path, root):
    """RFC 9162 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first, second, first_root, second_root, proof):
    """RFC 9162 2.1.4.2."""
    if first == second:
        return not proof and first_root == second_root
    if first == 0 or first > second or not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


def checkpoint_text(cp):
    """The canonical signed text (docs/API.md)."""
    return ("arca-checkpoint/v1\n%s\n%d\n%s\n%s\n"
            % (cp["origin"], cp["size"], cp["root"], cp["time"])).encode()


def origin_checkpoint_text(cp):
    """The canonical signed text of an origin checkpoint (docs/API.md)."""
    return ("arca-origin-checkpoint/v1\n%s\n%d\n%s\n%s\n"
            % (cp["origin"], cp["size"], cp["root"], cp["time"])).encode()


def origin_leaf(line):
    """The leaf of an event in its origin's tree: the record without seq, prev and hash."""
    rec = json.loads(line)
    body = {k: v for k, v in rec.items() if k not in ("seq", "prev", "hash")}
    canon = json.dumps(body, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return leaf_hash(canon.encode())


def openssl_verify(cp, text=None):
    """True when `openssl pkeyutl` accepts cp's signature over text (default: cp's own)."""
    d = tempfile.mkdtemp(prefix="arca-audit-sig-")
    try:
        der = ED25519_SPKI_PREFIX + base64.b64decode(cp["public_key"])
        pem = (b"-----BEGIN PUBLIC KEY-----\n" + base64.encodebytes(der)
               + b"-----END PUBLIC KEY-----\n")
        paths = {}
        for name, data in (("pub.pem", pem), ("text", text or checkpoint_text(cp)),
                           ("sig", base64.b64decode(cp["signature"]))):
            paths[name] = os.path.join(d, name)
            with open(paths[name], "wb") as f:
                f.write(data)
        r = subprocess.run([OPENSSL, "pkeyutl", "-verify", "-pubin", "-inkey", paths["pub.pem"],
                            "-rawin", "-in", paths["text"], "-sigfile", paths["sig"]],
                           capture_output=True, text=True, timeout=30)
        return r.returncode == 0
    finally:
        shutil.rmtree(d, ignore_errors=True)


def chain_hash(prev, rec):
    """event.c chain_hash: SHA-256(prev || canonical JSON without prev and hash)."""
    body = {k: v for k, v in rec.items() if k not in ("prev", "hash")}
    canon = json.dumps(body, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(prev + canon.encode()).digest()


# --------------------------------------------------------------------------


class AuditMixin(ArcaTestMixin):

    def upload(self, n, srv=None, prefix="f"):
        srv = srv or self.srv
        for i in range(n):
            r = srv.put("/repos/libs/app/1.%d/%s%d.bin" % (i // 5, prefix, i),
                        os.urandom(20 + i))
            self.assertEqual(r.status, 201, repr(r))

    def read_log(self, srv=None, limit=7):
        """Every stored event line, paging with after= and X-Next-After."""
        srv = srv or self.srv
        lines, after, pages = [], 0, 0
        while True:
            r = srv.get("/api/v1/audit?after=%d&limit=%d" % (after, limit))
            self.assertEqual(r.status, 200, repr(r))
            self.assertEqual(r.header("content-type"), "application/x-ndjson")
            size = int(r.header("x-audit-size"))
            page = r.body.split(b"\n")
            self.assertEqual(page[-1], b"", "every line ends with a newline")
            page = page[:-1]
            self.assertLessEqual(len(page), limit)
            lines += page
            pages += 1
            nxt = r.header("x-next-after")
            if nxt is None:
                break
            self.assertEqual(len(page), limit)
            self.assertEqual(int(nxt), json.loads(page[-1])["seq"])
            after = int(nxt)
        return lines, size, pages

    def report(self, r):
        self.assertEqual(r.status, 200, repr(r))
        return r.json()

    def cli_verify(self, srv, checkpoint=None):
        args = ["audit", "verify", "--data", srv.data]
        if checkpoint:
            args += ["--checkpoint", checkpoint]
        p = run_arcad(args, timeout=120)
        out = p.stdout.strip().splitlines()
        self.assertEqual(len(out), 1, "one JSON line on stdout: %r %r" % (p.stdout, p.stderr))
        return p.returncode, json.loads(out[0]), p.stderr


class AuditLogTest(AuditMixin, ServerTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        for i in range(23):
            r = cls.srv.put("/repos/libs/app/1.%d/f%d.bin" % (i // 5, i), os.urandom(20 + i))
            assert r.status == 201, r
        # An auth failure is an event too.
        r = cls.srv.get("/api/v1/audit", token="arca_" + "0" * 64, source="127.0.0.9")
        assert r.status == 401, r

    def test_ndjson_paging_chain_and_tree(self):
        lines, size, pages = self.read_log(limit=7)
        self.assertGreaterEqual(size, 25)  # the admin token, 23 uploads, one auth failure
        self.assertEqual(len(lines), size)
        self.assertEqual(pages, (size + 6) // 7)
        prev = bytes(32)
        actions = set()
        for i, line in enumerate(lines):
            rec = json.loads(line)
            self.assertEqual(rec["seq"], i + 1)
            self.assertEqual(bytes.fromhex(rec["prev"]), prev)
            self.assertEqual(chain_hash(prev, rec).hex(), rec["hash"], "event %d" % (i + 1))
            prev = bytes.fromhex(rec["hash"])
            actions.add(rec["action"])
        self.assertTrue({"token.create", "artifact.put", "auth.failure"} <= actions, actions)
        # The checkpoint's root is the Merkle root of exactly these bytes.
        cp = self.srv.json("/api/v1/audit/checkpoint?size=%d" % size)
        self.assertEqual(cp["root"], mth([leaf_hash(l) for l in lines]).hex())
        # Pages of other sizes, and after the end.
        self.assertEqual(self.read_log(limit=1000)[0], lines)
        self.assertEqual(self.read_log(limit=1)[0], lines)
        r = self.srv.get("/api/v1/audit?after=%d" % size)
        self.assertEqual((r.status, r.body, r.header("x-next-after")), (200, b"", None))
        r = self.srv.get("/api/v1/audit?after=9223372036854775807")
        self.assertEqual((r.status, r.body), (200, b""))
        r = self.srv.head("/api/v1/audit?limit=3")
        self.assertEqual((r.status, r.body, r.header("x-next-after")), (200, b"", "3"))
        # Default page: 100 events from the start.
        r = self.srv.get("/api/v1/audit")
        self.assertEqual(r.body.split(b"\n")[:-1], lines[:100])

    def test_checkpoint_signature(self):
        cp = self.srv.json("/api/v1/audit/checkpoint")
        self.assertEqual(set(cp), {"origin", "size", "root", "time", "key_id", "public_key",
                                   "signature"})
        self.assertEqual(cp["origin"], "dc1")
        pub = base64.b64decode(cp["public_key"])
        self.assertEqual(len(pub), 32)
        self.assertEqual(len(base64.b64decode(cp["signature"])), 64)
        self.assertEqual(cp["key_id"], hashlib.sha256(pub).hexdigest()[:16])
        lines, size, _ = self.read_log(limit=1000)
        self.assertGreaterEqual(cp["size"], 25)
        self.assertEqual(cp["root"], mth([leaf_hash(l) for l in lines[:cp["size"]]]).hex())
        # Past sizes, including the empty tree.
        for n in (0, 1, 5, 16, cp["size"]):
            past = self.srv.json("/api/v1/audit/checkpoint?size=%d" % n)
            self.assertEqual(past["size"], n)
            self.assertEqual(past["root"], mth([leaf_hash(l) for l in lines[:n]]).hex())
            self.assertEqual(past["key_id"], cp["key_id"])
        # The key lives in the data dir, 0600, and is the same after a restart.
        st = os.stat(os.path.join(self.srv.data, "audit.key"))
        self.assertEqual(st.st_mode & 0o777, 0o600)
        with open(os.path.join(self.srv.data, "audit.key"), "rb") as f:
            key_pem = f.read()
        self.assertIn(b"-----BEGIN PRIVATE KEY-----", key_pem)
        self.assertNotIn(key_pem.split(b"\n")[1], self.srv.log_text().encode())
        if not OPENSSL:
            self.skipTest("no openssl CLI: the signature itself is checked by test_audit (C)")
        self.assertTrue(openssl_verify(cp))
        self.assertTrue(openssl_verify(past))
        forged = dict(cp, size=cp["size"] - 1)
        self.assertFalse(openssl_verify(forged))
        self.assertFalse(openssl_verify(cp, checkpoint_text(cp) + b"x"))

    def test_inclusion_proofs(self):
        lines, size, _ = self.read_log(limit=1000)
        leaves = [leaf_hash(l) for l in lines]
        pairs = [(s, n) for n in (1, 2, 3, 7, 8, 9, 16, 17, size) for s in range(1, n + 1)]
        for seq, n in pairs:
            p = self.srv.json("/api/v1/audit/proof?seq=%d&size=%d" % (seq, n))
            self.assertEqual((p["seq"], p["leaf_index"], p["tree_size"]), (seq, seq - 1, n))
            self.assertEqual(p["leaf_hash"], leaves[seq - 1].hex())
            self.assertEqual(p["root"], mth(leaves[:n]).hex())
            path = [bytes.fromhex(h) for h in p["audit_path"]]
            self.assertTrue(verify_inclusion(seq - 1, n, leaves[seq - 1], path,
                                             bytes.fromhex(p["root"])), (seq, n, p))
            if n > 1:
                self.assertFalse(verify_inclusion(seq % n, n, leaves[seq - 1], path,
                                                  bytes.fromhex(p["root"])))
        # Without size: the current tree.
        p = self.srv.json("/api/v1/audit/proof?seq=3")
        self.assertGreaterEqual(p["tree_size"], size)
        cp = self.srv.json("/api/v1/audit/checkpoint?size=%d" % p["tree_size"])
        self.assertEqual(p["root"], cp["root"])

    def test_consistency_proofs(self):
        lines, size, _ = self.read_log(limit=1000)
        leaves = [leaf_hash(l) for l in lines]
        pairs = [(m, n) for n in (1, 2, 5, 8, 13, 16, size) for m in range(1, n + 1)]
        for m, n in pairs:
            p = self.srv.json("/api/v1/audit/consistency?first=%d&second=%d" % (m, n))
            self.assertEqual((p["first"], p["second"]), (m, n))
            r1, r2 = bytes.fromhex(p["first_root"]), bytes.fromhex(p["second_root"])
            self.assertEqual(r1, mth(leaves[:m]))
            self.assertEqual(r2, mth(leaves[:n]))
            proof = [bytes.fromhex(h) for h in p["proof"]]
            self.assertTrue(verify_consistency(m, n, r1, r2, proof), (m, n, p))
            if m < n:
                self.assertFalse(verify_consistency(m, n, node_hash(r1, r1), r2, proof))
        # Checkpoints saved at two times are linked by the proof between them.
        old = self.srv.json("/api/v1/audit/checkpoint?size=11")
        self.upload(3, prefix="cons")
        new = self.srv.json("/api/v1/audit/checkpoint")
        p = self.srv.json("/api/v1/audit/consistency?first=11")
        self.assertEqual(p["second"], new["size"])
        self.assertTrue(verify_consistency(
            11, new["size"], bytes.fromhex(old["root"]), bytes.fromhex(new["root"]),
            [bytes.fromhex(h) for h in p["proof"]]))

    def test_verify_endpoint_ok(self):
        rep = self.report(self.srv.get("/api/v1/audit/verify"))
        self.assertIs(rep["ok"], True, rep)
        self.assertEqual(rep["problem_count"], 0)
        self.assertIsNone(rep["first_problem"])
        self.assertEqual(rep["problems"], [])
        self.assertEqual(rep["events_checked"], rep["size"])
        cp = self.srv.json("/api/v1/audit/checkpoint?size=%d" % rep["size"])
        self.assertEqual(rep["root"], cp["root"])

    def test_origin_checkpoints(self):
        r = self.srv.get("/api/v1/audit/origins/checkpoints")
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.header("cache-control"), "no-store")
        cps = r.json()
        # No peer yet: only this centre's own, freshly signed.
        self.assertEqual(len(cps), 1, cps)
        cp = cps[0]
        self.assertEqual(set(cp), {"tree", "origin", "size", "root", "time", "key_id",
                                   "public_key", "signature"})
        self.assertEqual((cp["tree"], cp["origin"]), ("origin", "dc1"))
        # Every event here is dc1's own: its origin tree holds them all, leaves without seq,
        # prev and hash.
        lines, size, _ = self.read_log(limit=1000)
        self.assertEqual(cp["size"], size)
        for i, line in enumerate(lines):
            self.assertEqual(json.loads(line)["origin_seq"], i + 1)
        self.assertEqual(cp["root"], mth([origin_leaf(l) for l in lines]).hex())
        self.assertNotEqual(cp["root"], mth([leaf_hash(l) for l in lines]).hex())
        local = self.srv.json("/api/v1/audit/checkpoint")
        self.assertEqual((cp["key_id"], cp["public_key"]), (local["key_id"], local["public_key"]))
        if not OPENSSL:
            self.skipTest("no openssl CLI: the signature itself is checked by test_audit (C)")
        self.assertTrue(openssl_verify(cp, origin_checkpoint_text(cp)))
        # The same fields as a checkpoint of the local log are not what was signed.
        self.assertFalse(openssl_verify(cp, checkpoint_text(cp)))
        self.assertFalse(openssl_verify(cp, origin_checkpoint_text(dict(cp, size=cp["size"] - 1))))

    def test_origins(self):
        body = self.srv.json("/api/v1/audit/origins")
        self.assertEqual(body["centre"], "dc1")
        self.assertEqual(len(body["origins"]), 1, body)
        o = body["origins"][0]
        size = int(self.srv.get("/api/v1/audit?limit=1").header("x-audit-size"))
        self.assertEqual(o["origin"], "dc1")
        self.assertIs(o["self"], True)
        self.assertEqual(o["events"], size)
        lines = self.read_log(limit=1000)[0]
        self.assertEqual(o["root"], mth([origin_leaf(l) for l in lines]).hex())
        self.assertIsNone(o["checkpoint"])
        self.assertIsNone(o["key_id"])
        self.assertIsNone(o["verified"])
        self.assertIn("own origin", o["reason"])
        r = self.srv.get("/api/v1/audit/origins")
        self.assertEqual(r.header("cache-control"), "no-store")
        # verify re-derives the origin trees too.
        rep = self.report(self.srv.get("/api/v1/audit/verify"))
        self.assertIs(rep["ok"], True, rep)
        self.assertEqual(rep["origin_count"], 1)
        self.assertEqual(rep["origins"][0]["origin"], "dc1")
        self.assertEqual(rep["origins"][0]["events"], rep["size"])
        self.assertIsNone(rep["origins"][0]["checkpoint"])
        self.assertIsNone(rep["origins"][0]["verified"])
        self.assertEqual(rep["origins"][0]["root"],
                         self.srv.json("/api/v1/audit/origins")["origins"][0]["root"])

    def test_scopes(self):
        def token(scopes):
            r = self.srv.post_json("/api/v1/tokens", {"name": "aud-" + os.urandom(3).hex(),
                                                      "scopes": scopes})
            self.assertEqual(r.status, 201, repr(r))
            return r.json()["token"]
        reader, repo_reader, writer = token(["read"]), token(["read@libs"]), token(["write"])
        for path in ("/api/v1/audit", "/api/v1/audit/checkpoint", "/api/v1/audit/proof?seq=1",
                     "/api/v1/audit/consistency?first=1"):
            self.assertEqual(self.srv.get(path, token=reader).status, 200, path)
            self.assertError(self.srv.get(path, token=repo_reader), 403, "forbidden")
            self.assertError(self.srv.get(path, token=writer), 403, "forbidden")
            self.assertError(self.srv.get(path, auth=None), 401, "unauthorized")
        # verify scans the whole log: admin only.
        r = self.assertError(self.srv.get("/api/v1/audit/verify", token=reader), 403, "forbidden")
        self.assertEqual(r.json()["error"]["scope"], "admin@*")
        self.assertError(self.srv.get("/api/v1/audit/verify", auth=None), 401, "unauthorized")
        # A replication peer's credential reads the origin checkpoints and nothing else here.
        peer = token(["replicate"])
        r = self.srv.get("/api/v1/audit/origins/checkpoints", token=peer)
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.json()[0]["origin"], "dc1")
        self.assertEqual(self.srv.get("/api/v1/audit/origins/checkpoints", token=reader).status,
                         200)
        self.assertEqual(self.srv.get("/api/v1/audit/origins", token=reader).status, 200)
        for path in ("/api/v1/audit", "/api/v1/audit/checkpoint", "/api/v1/audit/proof?seq=1",
                     "/api/v1/audit/consistency?first=1", "/api/v1/audit/verify",
                     "/api/v1/audit/origins"):
            self.assertError(self.srv.get(path, token=peer), 403, "forbidden")
        for path in ("/api/v1/audit/origins", "/api/v1/audit/origins/checkpoints"):
            self.assertError(self.srv.get(path, token=repo_reader), 403, "forbidden")
            self.assertError(self.srv.get(path, token=writer), 403, "forbidden")
            self.assertError(self.srv.get(path, auth=None), 401, "unauthorized")
        # Bad parameters are a 400 for a peer too.
        r = self.assertError(self.srv.get("/api/v1/audit/origins/checkpoints?size=1", token=peer),
                             400, "bad_request")
        self.assertEqual(r.json()["error"]["parameter"], "size")

    def test_bad_inputs(self):
        size = int(self.srv.get("/api/v1/audit?limit=1").header("x-audit-size"))
        big = "9223372036854775808"
        cases = [
            # path, status, parameter named
            ("/api/v1/audit?after=-1", 400, "after"),
            ("/api/v1/audit?after=abc", 400, "after"),
            ("/api/v1/audit?after=", 400, "after"),
            ("/api/v1/audit?after", 400, "after"),
            ("/api/v1/audit?after=1.5", 400, "after"),
            ("/api/v1/audit?after=%2B1", 400, "after"),
            ("/api/v1/audit?after=" + big, 400, "after"),
            ("/api/v1/audit?after=99999999999999999999999", 400, "after"),
            ("/api/v1/audit?limit=0", 400, "limit"),
            ("/api/v1/audit?limit=1001", 400, "limit"),
            ("/api/v1/audit?limit=1x", 400, "limit"),
            ("/api/v1/audit?after=1&after=2", 400, "after"),
            ("/api/v1/audit?cursor=x", 400, "cursor"),
            ("/api/v1/audit?seq=1", 400, "seq"),
            ("/api/v1/audit/checkpoint?size=abc", 400, "size"),
            ("/api/v1/audit/checkpoint?size=-1", 400, "size"),
            ("/api/v1/audit/checkpoint?size=%d" % (size + 1000), 404, "size"),
            ("/api/v1/audit/checkpoint?size=" + big, 400, "size"),
            ("/api/v1/audit/checkpoint?after=1", 400, "after"),
            ("/api/v1/audit/proof", 400, "seq"),
            ("/api/v1/audit/proof?size=3", 400, "seq"),
            ("/api/v1/audit/proof?seq=0", 400, "seq"),
            ("/api/v1/audit/proof?seq=x", 400, "seq"),
            ("/api/v1/audit/proof?seq=%d" % (size + 1000), 404, "seq"),
            ("/api/v1/audit/proof?seq=5&size=4", 400, "size"),
            ("/api/v1/audit/proof?seq=5&size=0", 400, "size"),
            ("/api/v1/audit/proof?seq=5&size=%d" % (size + 1000), 404, "size"),
            ("/api/v1/audit/proof?seq=5&size=x", 400, "size"),
            ("/api/v1/audit/proof?seq=1&seq=2", 400, "seq"),
            ("/api/v1/audit/proof?seq=1&limit=2", 400, "limit"),
            ("/api/v1/audit/consistency", 400, "first"),
            ("/api/v1/audit/consistency?second=4", 400, "first"),
            ("/api/v1/audit/consistency?first=0", 400, "first"),
            ("/api/v1/audit/consistency?first=x", 400, "first"),
            ("/api/v1/audit/consistency?first=5&second=4", 400, "second"),
            ("/api/v1/audit/consistency?first=%d" % (size + 1000), 404, "first"),
            ("/api/v1/audit/consistency?first=1&second=%d" % (size + 1000), 404, "second"),
            ("/api/v1/audit/consistency?first=1&second=-4", 400, "second"),
            ("/api/v1/audit/verify?full=1", 400, "full"),
            ("/api/v1/audit/origins?origin=dc1", 400, "origin"),
            ("/api/v1/audit/origins?x", 400, "x"),
            ("/api/v1/audit/origins?limit=1", 400, "limit"),
            ("/api/v1/audit/origins/checkpoints?size=1", 400, "size"),
            ("/api/v1/audit/origins/checkpoints?origin=", 400, "origin"),
        ]
        for path, status, param in cases:
            r = self.srv.get(path)
            self.assertError(r, status, "bad_request" if status == 400 else "not_found", path)
            err = r.json()["error"]
            self.assertEqual(err.get("parameter"), param, "%s: %r" % (path, err))
            self.assertIn(param, err["message"], path)
        for path in ("/api/v1/audit/", "/api/v1/audit/nope", "/api/v1/audit/proof/1",
                     "/api/v1/auditx", "/api/v1/audit/checkpoint/", "/api/v1/audit/origins/",
                     "/api/v1/audit/origins/dc1", "/api/v1/audit/origins/checkpoints/",
                     "/api/v1/audit/origins/checkpoint", "/api/v1/audit/originsx"):
            r = self.srv.get(path)
            self.assertError(r, 404, "not_found", path)
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            for path in ("/api/v1/audit", "/api/v1/audit/verify", "/api/v1/audit/checkpoint",
                         "/api/v1/audit/origins", "/api/v1/audit/origins/checkpoints"):
                r = self.srv.request(method, path, body=b"{}")
                self.assertError(r, 405, "method_not_allowed", "%s %s" % (method, path))
                self.assertEqual(r.header("allow"), "GET, HEAD")
        # Nothing was changed by any of that: the log still verifies.
        rep = self.report(self.srv.get("/api/v1/audit/verify"))
        self.assertIs(rep["ok"], True, rep)


class OriginTreesAcrossCentresTest(AuditMixin, unittest.TestCase):
    """Two real centres replicating (harness.Cluster): each origin's tree is the same at both,
    though each numbers the events its own way, and each centre's signed origin checkpoint
    matches the other's copy of its history."""

    def test_origin_roots_equal_after_replication(self):
        cl = Cluster(2)
        self.addCleanup(cl.close)
        for i in range(2):
            for k in range(7 + 3 * i):
                r = cl[i].put("/repos/libs/o%d/1.%d/f%d.bin" % (i, k // 3, k), os.urandom(30 + k))
                self.assertEqual(r.status, 201, repr(r))
        cl.wait_converged()
        views = [{o["origin"]: o for o in cl[i].json("/api/v1/audit/origins")["origins"]}
                 for i in range(2)]
        self.assertEqual(set(views[0]), {"dc1", "dc2"})
        self.assertEqual(set(views[1]), {"dc1", "dc2"})
        for origin in ("dc1", "dc2"):
            a, b = views[0][origin], views[1][origin]
            self.assertEqual((a["events"], a["root"]), (b["events"], b["root"]), origin)
            self.assertIs(a["self"], origin == "dc1")
            self.assertIs(b["self"], origin == "dc2")
        # Recomputed from each centre's own NDJSON: the same leaves, from different logs.
        for i in range(2):
            lines = self.read_log(srv=cl[i], limit=1000)[0]
            for origin in ("dc1", "dc2"):
                mine = [l for l in lines if json.loads(l)["origin"] == origin]
                self.assertEqual([json.loads(l)["origin_seq"] for l in mine],
                                 list(range(1, len(mine) + 1)))
                self.assertEqual(mth([origin_leaf(l) for l in mine]).hex(),
                                 views[i][origin]["root"], (i, origin))
        # Each centre signs its own history; the other holds exactly that history.
        for i in range(2):
            cp = cl[i].json("/api/v1/audit/origins/checkpoints")[0]
            other = views[1 - i][cp["origin"]]
            self.assertEqual((cp["size"], cp["root"]), (other["events"], other["root"]))
            rep = self.report(cl[i].get("/api/v1/audit/verify"))
            self.assertIs(rep["ok"], True, rep)
            self.assertEqual(rep["origin_count"], 2)


class AuditTamperTest(AuditMixin, unittest.TestCase):
    """A server of its own: it is stopped, its index rewritten, and started again."""

    def setUp(self):
        if not os.path.exists(TAMPER):
            self.fail("arca_tamper not found at %s (set ARCA_TAMPER)" % TAMPER)
        self.srv = ArcaServer().__enter__()
        self.addCleanup(self.srv.__exit__, None, None, None)

    def tamper(self, *args):
        p = subprocess.run([TAMPER, self.srv.data] + [str(a) for a in args],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, "arca_tamper %r: %s" % (args, p.stderr))

    def stop_clean(self):
        """Stops arcad and checks it exited 0 (under ASan: no leak, no sanitizer report)."""
        self.assertEqual(self.srv.stop(), 0, self.srv.log_tail())
        self.assertNotIn("Sanitizer", self.srv.log_text())
        self.assertNotIn("runtime error", self.srv.log_text())

    def assertFirst(self, rep, seq, kind):
        self.assertIs(rep["ok"], False, rep)
        self.assertEqual(rep["first_problem"]["seq"], seq, rep)
        self.assertEqual(rep["first_problem"]["kind"], kind, rep)
        self.assertEqual(rep["problems"][0], rep["first_problem"])
        self.assertIn(str(seq), rep["first_problem"]["message"])

    def test_tamper_detected_by_cli_and_endpoint(self):
        self.upload(14)
        cp = self.srv.json("/api/v1/audit/checkpoint")
        cp_file = os.path.join(self.srv.data, "checkpoint.json")
        with open(cp_file, "w") as f:
            json.dump(cp, f)
        lines, size, _ = self.read_log(limit=1000)
        self.assertEqual(size, 15)

        # Beside the running server (read-only), then stopped: OK, with size and root.
        rc, rep, err = self.cli_verify(self.srv, cp_file)
        self.assertEqual(rc, 0, err)
        self.assertIs(rep["ok"], True)
        self.assertEqual((rep["size"], rep["root"]), (15, cp["root"]))
        self.assertEqual(rep["checkpoint"], {"size": 15, "root": cp["root"],
                                             "key_id": cp["key_id"], "signature_ok": True,
                                             "extended": True})
        self.assertIn("OK", err)
        self.stop_clean()
        rc, rep, err = self.cli_verify(self.srv)
        self.assertEqual(rc, 0, err)

        # (a) One character of event 9's details changed with a raw RocksDB put.
        self.tamper("alter", 9)
        rc, rep, err = self.cli_verify(self.srv)
        self.assertEqual(rc, 1, err)
        self.assertFirst(rep, 9, "altered")
        self.assertEqual(rep["problem_count"], 1, rep)
        self.assertIn("event 9", err)
        # Named in its origin's numbering too (every event here is dc1's own).
        self.assertEqual((rep["first_problem"]["origin"], rep["first_problem"]["origin_seq"]),
                         ("dc1", 9))
        self.assertIn("(origin dc1 #9)", err)
        rc, rep, err = self.cli_verify(self.srv, cp_file)
        self.assertEqual(rc, 1, err)
        self.assertFirst(rep, 9, "altered")
        self.assertIs(rep["checkpoint"]["extended"], False, rep)
        self.assertIs(rep["checkpoint"]["signature_ok"], True, rep)
        # The endpoint of the restarted server says the same.
        self.srv.start()
        rep = self.report(self.srv.get("/api/v1/audit/verify"))
        self.assertFirst(rep, 9, "altered")
        # ... and what it serves no longer matches the saved checkpoint's root.
        now = [l for l in self.read_log(limit=1000)[0]][:15]
        self.assertNotEqual(mth([leaf_hash(l) for l in now]).hex(), cp["root"])
        self.stop_clean()

        # (b) Event 5 deleted: now the first problem.
        self.tamper("delete", 5)
        rc, rep, err = self.cli_verify(self.srv)
        self.assertEqual(rc, 1, err)
        self.assertFirst(rep, 5, "removed")
        self.assertEqual([(p["seq"], p["kind"]) for p in rep["problems"]],
                         [(5, "removed"), (9, "altered")])

        # (c) Events 2 and 3 swapped.
        self.tamper("swap", 2, 3)
        rc, rep, err = self.cli_verify(self.srv)
        self.assertEqual(rc, 1, err)
        self.assertFirst(rep, 2, "reordered")
        self.assertEqual([(p["seq"], p["kind"]) for p in rep["problems"]],
                         [(2, "reordered"), (3, "reordered"), (5, "removed"), (9, "altered")])
        self.srv.start()
        rep = self.report(self.srv.get("/api/v1/audit/verify"))
        self.assertFirst(rep, 2, "reordered")
        self.assertEqual(rep["problem_count"], 4)

    def test_last_event_deleted_and_checkpoint_checks(self):
        self.upload(6)
        cp = self.srv.json("/api/v1/audit/checkpoint")
        self.assertEqual(cp["size"], 7)
        good = os.path.join(self.srv.data, "good.json")
        with open(good, "w") as f:
            json.dump(cp, f)
        # A checkpoint with a forged signature, one signed by another key, and garbage.
        forged = os.path.join(self.srv.data, "forged.json")
        with open(forged, "w") as f:
            json.dump(dict(cp, root="00" * 32), f)
        other = ArcaServer().__enter__()
        try:
            foreign = os.path.join(self.srv.data, "foreign.json")
            with open(foreign, "w") as f:
                json.dump(other.json("/api/v1/audit/checkpoint"), f)
        finally:
            other.__exit__(None, None, None)
        bad = os.path.join(self.srv.data, "bad.json")
        with open(bad, "w") as f:
            f.write('{"origin": "dc1"}')
        origin_cp = os.path.join(self.srv.data, "origin.json")
        with open(origin_cp, "w") as f:
            json.dump(self.srv.json("/api/v1/audit/origins/checkpoints")[0], f)
        self.stop_clean()

        rc, rep, err = self.cli_verify(self.srv, forged)
        self.assertEqual(rc, 1, err)
        self.assertEqual(rep["first_problem"]["kind"], "checkpoint")
        self.assertIs(rep["checkpoint"]["signature_ok"], False)
        rc, rep, err = self.cli_verify(self.srv, foreign)
        self.assertEqual(rc, 1, err)
        self.assertIn("not by this data directory's audit key",
                      " ".join(p["message"] for p in rep["problems"]))
        p = run_arcad(["audit", "verify", "--data", self.srv.data, "--checkpoint", bad])
        self.assertEqual(p.returncode, 2)
        self.assertIn("is not a checkpoint", p.stderr)
        # An origin checkpoint is not one of this log: checked by verify on its own, not here.
        p = run_arcad(["audit", "verify", "--data", self.srv.data, "--checkpoint", origin_cp])
        self.assertEqual(p.returncode, 2)
        self.assertIn("origin dc1's tree", p.stderr)
        p = run_arcad(["audit", "verify", "--data", self.srv.data, "--checkpoint",
                       os.path.join(self.srv.data, "nope.json")])
        self.assertEqual(p.returncode, 2)
        p = run_arcad(["audit", "frob", "--data", self.srv.data])
        self.assertEqual(p.returncode, 2)
        p = run_arcad(["audit", "--data", self.srv.data])
        self.assertEqual(p.returncode, 2)
        empty = tempfile.mkdtemp(prefix="arca-audit-empty-")
        try:
            p = run_arcad(["audit", "verify", "--data", empty])
            self.assertEqual(p.returncode, 2)
            self.assertIn("cannot open the index", p.stderr)
        finally:
            shutil.rmtree(empty, ignore_errors=True)

        # The last event removed: the counters still say 7.
        self.tamper("delete", 7)
        rc, rep, err = self.cli_verify(self.srv, good)
        self.assertEqual(rc, 1, err)
        self.assertFirst(rep, 7, "removed")
        self.assertIs(rep["checkpoint"]["extended"], False)

    def test_bad_key_file_refuses_start(self):
        self.stop_clean()
        key = os.path.join(self.srv.data, "audit.key")
        with open(key, "rb") as f:
            original = f.read()
        with open(key, "wb") as f:
            f.write(b"-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")
        with self.assertRaises(AssertionError) as ctx:
            self.srv.start()
        self.srv._close_log()
        self.assertIn("audit.key", str(ctx.exception))
        self.assertIn("not a PEM private key", self.srv.log_text())
        with open(key, "rb") as f:  # refused, never replaced
            self.assertIn(b"not base64", f.read())
        os.unlink(key)
        os.mkdir(key)
        with self.assertRaises(AssertionError):
            self.srv.start()
        self.srv._close_log()
        self.assertIn("cannot read the audit key", self.srv.log_text())
        os.rmdir(key)
        with open(key, "wb") as f:
            f.write(original)
        os.chmod(key, 0o600)
        self.srv.start()
        self.assertEqual(self.srv.get("/api/v1/audit/checkpoint").status, 200)


if __name__ == "__main__":
    unittest.main()
