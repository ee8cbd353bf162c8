"""Authentication and authorization, as specified in docs/API.md
("Authentication"): missing / malformed / unknown / expired / revoked
credentials (401 + WWW-Authenticate), Bearer and Basic, scoped tokens (403
with `scope`), the token API and its input checks, anonymous reads, the admin
token bootstrap and re-registration, the `arcad token` CLI, and the per-address
limit on failed authentications (429).

Failed authentications are limited per address (10 within 60 s), so the tests
that share one server connect from their own loopback address (127.0.0.N,
harness `source`); the rate-limit test poisons 127.0.0.1 of its own server and
runs last."""

import base64
import itertools
import json
import os
import re
import shutil
import stat
import threading
import time
import unittest
import urllib.parse

from harness import (ServerTestCase, ArcaServer, ArcaTestMixin, run_arcad,
                     sha256_hex, bearer, basic)

ISO = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"
SECRET_RE = r"arca_[0-9a-fA-F]{64}"
KiB = 1 << 10

TOKEN_FIELDS = {"id", "name", "owner", "scopes", "created", "created_by", "expires",
                "last_used", "revoked"}
CREATE_FIELDS = {"id", "token", "name", "owner", "scopes", "created", "created_by",
                 "expires"}

_sources = itertools.count(10)


def next_source():
    """A fresh loopback address (127.0.X.Y, never 127.0.0.1)."""
    n = next(_sources)
    return "127.0.%d.%d" % (n // 250, n % 250 + 2)


def uniq():
    return os.urandom(4).hex()


def fake_secret():
    """A well-formed token that the server never issued."""
    return "arca_" + os.urandom(32).hex()


class AuthMixin(ArcaTestMixin):
    """Assertions and helpers on self.srv."""

    def assertUnauthorized(self, r, secret=None, msg="", head=False, why=None):
        ctx = "%s\n%r" % (msg, r)
        self.assertEqual(r.status, 401, ctx)
        chal = r.header("www-authenticate", "")
        self.assertRegex(chal, r'(?i)\bBearer realm="arca"', "WWW-Authenticate " + ctx)
        self.assertRegex(chal, r'(?i)\bBasic realm="arca"', "WWW-Authenticate " + ctx)
        self.assertTrue(r.header("x-request-id"), ctx)
        if not head:
            self.assertError(r, 401, "unauthorized", msg)
            if why:
                self.assertRegex(r.json()["error"]["message"], why,
                                 "the 401 message does not say why " + ctx)
        if secret:
            self.assertNotIn(secret.encode(), r.body, "the 401 echoes the secret " + ctx)
            for v in r.headers.values():
                self.assertNotIn(secret, v, "a 401 header echoes the secret " + ctx)

    def assertForbidden(self, r, scope, msg=""):
        """403 forbidden naming scope (a string, or a tuple of accepted spellings)."""
        self.assertError(r, 403, "forbidden", msg)
        got = r.json()["error"].get("scope")
        if isinstance(scope, tuple):
            self.assertIn(got, scope, "403 scope field %s\n%r" % (msg, r))
        else:
            self.assertEqual(got, scope, "403 scope field %s\n%r" % (msg, r))

    def create_token(self, scopes, name=None, srv=None, **extra):
        """POST /api/v1/tokens as admin; asserts 201 and returns the JSON."""
        srv = srv or self.srv
        body = {"name": name or "t-" + uniq(), "scopes": scopes}
        body.update(extra)
        r = srv.post_json("/api/v1/tokens", body)
        self.assertEqual(r.status, 201, "token create %r: %r" % (body, r))
        j = r.json()
        self.assertRegex(j.get("token", ""), "^" + SECRET_RE + "$", j)
        type(self).secrets.append(j["token"])
        return j

    def token_list(self, srv=None):
        srv = srv or self.srv
        r = srv.get("/api/v1/tokens?limit=1000")
        self.assertEqual(r.status, 200, r)
        j = r.json()
        self.assertIn("next_cursor", j)
        self.assertIsNone(j["next_cursor"], "more than 1000 tokens?")
        return j["items"]

    def assertNoSecretsLeaked(self, secrets, srv=None):
        """No secret in the log, /metrics, or any file under DATA (tokens are
        stored only as hashes; admin.token legitimately holds the admin secret)."""
        srv = srv or self.srv
        log = srv.log_text()
        metrics = srv.get("/metrics", auth=None).body.decode("utf-8", "replace")
        for s in secrets:
            self.assertNotIn(s, log, "a token secret is in the server log")
            self.assertNotIn(s, metrics, "a token secret is in /metrics")
        needles = [s.encode() for s in secrets if s != srv.token]
        if not needles:
            return
        for dirpath, _, files in os.walk(srv.data):
            for f in files:
                p = os.path.join(dirpath, f)
                if p == os.path.join(srv.data, "admin.token"):
                    continue
                try:
                    with open(p, "rb") as fh:
                        blob = fh.read()
                except OSError:
                    continue
                for n in needles:
                    self.assertNotIn(n, blob, "a token secret is stored in clear in %s" % p)


class AuthTest(AuthMixin, ServerTestCase):
    """One server; each test connects from its own loopback address."""

    secrets = []

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        src = next_source()
        cls.srv.source = src
        for p, d in (("/repos/libs-a/app/1.0/a.jar", b"libs-a"),
                     ("/repos/libs-b/app/1.0/a.jar", b"libs-b"),
                     ("/repos/other/app/1.0/a.jar", b"other")):
            r = cls.srv.put(p, d)
            if r.status != 201:
                raise AssertionError("setup PUT %s: %r" % (p, r))

    def setUp(self):
        super().setUp()
        self.srv.source = next_source()

    def tearDown(self):
        super().tearDown()
        self.srv.source = next_source()
        self.assertNoSecretsLeaked(self.secrets + [self.srv.token])

    def new_source(self):
        self.srv.source = next_source()

    # -- missing credential ------------------------------------------------------------

    def test_missing_credential_401(self):
        cases = [
            ("PUT", "/repos/libs-a/app/9.%s/new.jar" % uniq(), b"data"),
            ("GET", "/repos/libs-a/app/1.0/a.jar", None),
            ("GET", "/repos/libs-a/app/1.0/missing-%s.jar" % uniq(), None),
            ("GET", "/repos/nosuchrepo%s/app/1.0/a.jar" % uniq(), None),
            ("GET", "/api/v1/repos", None),
            ("GET", "/api/v1/repos/libs-a", None),
            ("GET", "/api/v1/repos/libs-a/app", None),
            ("GET", "/api/v1/repos/libs-a/app/1.0", None),
            ("GET", "/api/v1/storage", None),
            ("GET", "/api/v1/tokens", None),
            ("POST", "/api/v1/tokens", b'{"name": "x", "scopes": ["read"]}'),
            ("GET", "/nope/route", None),
        ]
        before = self.srv.storage()
        ntok = len(self.token_list())
        for method, path, body in cases:
            self.new_source()  # however the server counts them, never near the limit
            with self.subTest(method=method, path=path):
                r = self.srv.request(method, path, body=body, auth=None)
                self.assertUnauthorized(r, msg="%s %s" % (method, path))
        with self.subTest(method="HEAD"):
            r = self.srv.head("/repos/libs-a/app/1.0/a.jar", auth=None)
            self.assertUnauthorized(r, head=True)
        self.new_source()
        self.assertStorageUnchanged(before)
        self.assertEqual(len(self.token_list()), ntok, "a token was created without credential")

    def test_ops_endpoints_need_no_credential(self):
        for path in ("/healthz", "/readyz", "/metrics"):
            with self.subTest(path=path):
                r = self.srv.get(path, auth=None)
                self.assertEqual(r.status, 200, r)
                self.assertIsNone(r.header("www-authenticate"), r)

    def test_storage_needs_any_valid_credential(self):
        t = self.create_token(["read@libs-*"])
        r = self.srv.get("/api/v1/storage", token=t["token"])
        self.assertEqual(r.status, 200, r)
        self.assertIn("blob_count", r.json())
        t2 = self.create_token(["write@nothing-here"])
        self.assertEqual(self.srv.get("/api/v1/storage", token=t2["token"]).status, 200)

    # -- Bearer, Basic, malformed --------------------------------------------------------

    def test_bearer_and_basic(self):
        tok = self.create_token(["read", "write"], name="bb-" + uniq())
        secret = tok["token"]
        path = "/repos/libs-a/bb%s/1.0/x.bin" % uniq()
        data = os.urandom(300)
        r = self.srv.put(path, data, headers=bearer(secret))
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json()["created_by"], tok["name"])
        for user in ("ci", "anything-else", "", "admin", "x" * 200):
            with self.subTest(user=user):
                r = self.srv.get(path, headers=basic(user, secret))
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.body, data)
        # Basic for an upload, too
        p2 = "/repos/libs-a/bb%s/1.0/y.bin" % uniq()
        r = self.srv.put(p2, b"basic", headers=basic("maven", secret))
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json()["created_by"], tok["name"])
        # the admin token both ways
        self.assertEqual(self.srv.get("/api/v1/tokens", headers=bearer(self.srv.token)).status,
                         200)
        self.assertEqual(self.srv.get("/api/v1/tokens",
                                      headers=basic("whoever", self.srv.token)).status, 200)

    def test_malformed_authorization(self):
        secret = self.srv.token
        cases = [
            ("bad base64", "Basic !!!not*base64$$$"),
            ("base64 without colon", "Basic " + base64.b64encode(
                secret.encode()).decode()),
            ("unknown scheme", "Token " + secret),
            ("empty", ""),
            ("scheme only", "Bearer"),
            ("bearer empty", "Bearer "),
            ("bearer two words", "Bearer %s extra" % secret),
            ("basic empty password", "Basic " + base64.b64encode(
                b"ci:").decode()),
        ]
        for desc, value in cases:
            self.new_source()
            with self.subTest(desc=desc):
                r = self.srv.get("/repos/libs-a/app/1.0/a.jar",
                                 headers={"Authorization": value})
                self.assertUnauthorized(r, msg=desc)
                # nothing of the credential in the answer (the admin secret inside)
                self.assertNotIn(secret.encode(), r.body, desc)

    def test_unknown_token(self):
        for t in (fake_secret(), "arca_" + "0" * 64, "not-even-a-token", "arca_short"):
            self.new_source()
            with self.subTest(token=t[:12]):
                r = self.srv.get("/repos/libs-a/app/1.0/a.jar", token=t)
                self.assertUnauthorized(r, secret=t)
                r = self.srv.get("/repos/libs-a/app/1.0/a.jar", headers=basic("ci", t))
                self.assertUnauthorized(r, secret=t)
        t = fake_secret()
        self.new_source()
        r = self.srv.get("/api/v1/storage", token=t)
        self.assertUnauthorized(r, secret=t, why=r"(?i)unknown|not (known|recogni[sz]ed|found)")
        self.assertNotIn(t, self.srv.log_text(), "an unknown token's secret is in the log")

    def test_rejected_upload_body_is_not_a_request(self):
        """A PUT refused with 401/403 leaves its body unread: the server must
        close the connection or skip the body, never parse it as a request."""
        smuggled = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Request-Id: smuggled\r\n\r\n"
        ro = self.create_token(["read"])["token"]
        cases = [("no credential", "", 401),
                 ("unknown token", "Authorization: Bearer %s\r\n" % fake_secret(), 401),
                 ("read-only token", "Authorization: Bearer %s\r\n" % ro, 403)]
        for desc, auth, status in cases:
            self.new_source()
            with self.subTest(desc=desc):
                p = "/repos/libs-a/sm/%s/f.bin" % uniq()
                with self.srv.conn() as c:
                    c.send(("PUT %s HTTP/1.1\r\nHost: t\r\n%sContent-Length: %d\r\n\r\n"
                            % (p, auth, len(smuggled))).encode() + smuggled)
                    r = c.read_response()
                    self.assertEqual(r.status, status, r)
                    if "close" not in r.header("connection", "").lower():
                        try:
                            c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n"
                                   b"X-Request-Id: next\r\n\r\n")
                            r2 = c.read_response()
                        except (EOFError, ConnectionError):
                            r2 = None
                        if r2 is not None:
                            self.assertEqual(r2.header("x-request-id"), "next",
                                             "the refused PUT's body was parsed as a request")
                self.assertNotStored(p)
        # with Expect: 100-continue the refusal comes instead of 100 Continue
        for desc, auth, status in cases:
            self.new_source()
            with self.subTest(desc="100-continue, " + desc):
                p = "/repos/libs-a/ex/%s/f.bin" % uniq()
                with self.srv.conn() as c:
                    c.send("PUT %s HTTP/1.1\r\nHost: t\r\n%sExpect: 100-continue\r\n"
                           "Content-Length: 100000\r\n\r\n" % (p, auth))
                    r = c.read_response()
                    self.assertEqual(r.status, status, "expected the refusal, not %r" % r)
                self.assertNotStored(p)

    # -- the token API -------------------------------------------------------------------

    def test_token_create_list_get(self):
        before = self.token_list()
        name = "ci-" + uniq()
        r = self.srv.post_json("/api/v1/tokens", {"name": name, "owner": "team-x",
                                                  "scopes": ["read@libs-*", "write@libs-a"]})
        self.assertEqual(r.status, 201, r)
        self.assertIn("application/json", r.header("content-type", ""))
        j = r.json()
        type(self).secrets.append(j.get("token", ""))
        self.assertTrue(CREATE_FIELDS <= set(j), "missing fields: %s in %r"
                        % (CREATE_FIELDS - set(j), j))
        secret = j["token"]
        self.assertRegex(secret, "^" + SECRET_RE + "$")
        self.assertEqual(j["name"], name)
        self.assertEqual(j["owner"], "team-x")
        self.assertEqual(j["scopes"], ["read@libs-*", "write@libs-a"])
        self.assertRegex(j["created"], ISO)
        self.assertIsInstance(j["created_by"], str)
        self.assertTrue(j["created_by"])
        self.assertIsNone(j["expires"], "no expires_in, yet expires is set")
        self.assertIsInstance(j["id"], str)
        self.assertTrue(j["id"])
        self.assertNotIn(secret, j["id"])

        # listed, without the secret or its hash
        r = self.srv.get("/api/v1/tokens?limit=1000")
        self.assertEqual(r.status, 200, r)
        items = r.json()["items"]
        self.assertEqual(len(items), len(before) + 1)
        mine = [it for it in items if it["id"] == j["id"]]
        self.assertEqual(len(mine), 1, items)
        it = mine[0]
        self.assertTrue(TOKEN_FIELDS <= set(it), "missing fields: %s in %r"
                        % (TOKEN_FIELDS - set(it), it))
        self.assertNotIn("token", it)
        for k in ("name", "owner", "scopes", "created", "created_by", "expires"):
            self.assertEqual(it[k], j[k], k)
        self.assertFalse(it["revoked"], it)
        for needle in (secret, secret[5:], sha256_hex(secret.encode()),
                       sha256_hex(bytes.fromhex(secret[5:]))):
            self.assertNotIn(needle.encode(), r.body, "a secret or its hash is in the list")
        # GET one
        r1 = self.srv.get("/api/v1/tokens/" + j["id"])
        self.assertEqual(r1.status, 200, r1)
        one = r1.json()
        self.assertEqual(one.get("id"), j["id"], one)
        self.assertTrue(TOKEN_FIELDS <= set(one), one)
        self.assertNotIn(secret.encode(), r1.body)
        self.assertNotIn("token", one)
        self.assertError(self.srv.get("/api/v1/tokens/nosuchid" + uniq()), 404, "not_found")
        # the secret works, and shows nowhere else
        self.assertEqual(self.srv.get("/repos/libs-a/app/1.0/a.jar", token=secret).status, 200)
        self.assertNoSecretsLeaked([secret])

    def test_token_list_pagination(self):
        for _ in range(3):
            self.create_token(["read"])
        full = self.token_list()
        ids = [t["id"] for t in full]
        self.assertEqual(len(set(ids)), len(ids))
        got, cursor = [], None
        for _ in range(len(ids) + 2):
            q = "?limit=2" + ("&cursor=" + urllib.parse.quote(cursor)
                              if cursor else "")
            r = self.srv.get("/api/v1/tokens" + q)
            self.assertEqual(r.status, 200, r)
            page = r.json()
            self.assertLessEqual(len(page["items"]), 2)
            got += [t["id"] for t in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        self.assertEqual(got, ids)
        self.assertError(self.srv.get("/api/v1/tokens?limit=0"), 400, "bad_request")

    def test_created_by_is_token_name(self):
        tok = self.create_token(["write@libs-a", "read@libs-a"], name="builder-" + uniq())
        ver = "cb" + uniq()
        path = "/repos/libs-a/app/%s/app.jar" % ver
        r = self.srv.put(path, b"built", token=tok["token"])
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json()["created_by"], tok["name"])
        r = self.srv.get("/api/v1/repos/libs-a/app/%s" % ver, token=tok["token"])
        self.assertEqual(r.status, 200, r)
        self.assertEqual([it["created_by"] for it in r.json()["items"]], [tok["name"]])
        # and the admin's uploads are the admin's
        r = self.srv.put("/repos/libs-a/app/%s/admin.jar" % ver, b"adm")
        self.assertEqual(r.status, 201, r)
        self.assertNotEqual(r.json()["created_by"], tok["name"])
        self.assertTrue(r.json()["created_by"])

    def test_token_created_by_admin(self):
        admins = [t for t in self.token_list() if "admin" in t["scopes"]]
        self.assertTrue(admins, "no token with scope admin (the bootstrap token) is listed")
        j = self.create_token(["read"])
        self.assertIn(j["created_by"], [t["name"] for t in admins], j)

    # -- scopes --------------------------------------------------------------------------

    def test_write_glob_scope(self):
        tok = self.create_token(["write@libs-*"])
        s = tok["token"]
        for repo in ("libs-a", "libs-b", "libs-new%s" % uniq()):
            with self.subTest(repo=repo):
                r = self.srv.put("/repos/%s/w/%s/f.bin" % (repo, uniq()), b"w", token=s)
                self.assertEqual(r.status, 201, r)
        before = self.srv.storage()
        for repo in ("other", "libs", "xlibs-a", "LIBS-a"):
            with self.subTest(repo=repo):
                p = "/repos/%s/w/%s/f.bin" % (repo, uniq())
                r = self.srv.put(p, b"w", token=s)
                self.assertForbidden(r, "write@" + repo)
                self.assertNotStored(p)
        self.assertStorageUnchanged(before)
        # write does not imply read
        r = self.srv.get("/repos/libs-a/app/1.0/a.jar", token=s)
        self.assertForbidden(r, "read@libs-a")
        r = self.srv.head("/repos/libs-a/app/1.0/a.jar", token=s)
        self.assertEqual(r.status, 403, r)

    def test_read_only_token(self):
        tok = self.create_token(["read"])
        s = tok["token"]
        r = self.srv.get("/repos/libs-a/app/1.0/a.jar", token=s)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"libs-a")
        self.assertEqual(self.srv.get("/repos/other/app/1.0/a.jar", token=s).status, 200)
        self.assertEqual(self.srv.get("/api/v1/repos/other/app/1.0", token=s).status, 200)
        before = self.srv.storage()
        for repo in ("libs-a", "other"):
            with self.subTest(repo=repo):
                p = "/repos/%s/ro/%s/f.bin" % (repo, uniq())
                self.assertForbidden(self.srv.put(p, b"r", token=s), "write@" + repo)
                self.assertNotStored(p)
        # a re-PUT of existing bytes is still a write
        self.assertForbidden(self.srv.put("/repos/libs-a/app/1.0/a.jar", b"libs-a", token=s),
                             "write@libs-a")
        self.assertStorageUnchanged(before)

    def test_read_glob_scope(self):
        s = self.create_token(["read@libs-*"])["token"]
        self.assertEqual(self.srv.get("/repos/libs-b/app/1.0/a.jar", token=s).status, 200)
        self.assertForbidden(self.srv.get("/repos/other/app/1.0/a.jar", token=s), "read@other")
        for path in ("/api/v1/repos/other", "/api/v1/repos/other/app",
                     "/api/v1/repos/other/app/1.0"):
            with self.subTest(path=path):
                self.assertForbidden(self.srv.get(path, token=s), "read@other")
        self.assertEqual(self.srv.get("/api/v1/repos/libs-a/app/1.0", token=s).status, 200)

    def test_bracket_and_question_globs(self):
        s = self.create_token(["read@libs-[a]", "write@libs-?"])["token"]
        self.assertEqual(self.srv.get("/repos/libs-a/app/1.0/a.jar", token=s).status, 200)
        self.assertForbidden(self.srv.get("/repos/libs-b/app/1.0/a.jar", token=s), "read@libs-b")
        self.assertEqual(self.srv.put("/repos/libs-b/q/%s/f" % uniq(), b"q", token=s).status,
                         201)
        self.assertForbidden(self.srv.put("/repos/libs-bb/q/1/f", b"q", token=s),
                             "write@libs-bb")
        s2 = self.create_token(["read@libs-[!a]"])["token"]
        self.assertEqual(self.srv.get("/repos/libs-b/app/1.0/a.jar", token=s2).status, 200)
        self.assertForbidden(self.srv.get("/repos/libs-a/app/1.0/a.jar", token=s2),
                             "read@libs-a")

    def test_concurrent_token_creation(self):
        before = len(self.token_list())
        results = []

        def one(i):
            r = self.srv.post_json("/api/v1/tokens", {"name": "cc%d-%s" % (i, uniq()),
                                                      "scopes": ["read@cc%d" % i]})
            results.append(r)

        ths = [threading.Thread(target=one, args=(i,)) for i in range(20)]
        for t in ths:
            t.start()
        for t in ths:
            t.join(60)
        self.assertEqual(sorted(r.status for r in results), [201] * 20, results)
        js = [r.json() for r in results]
        type(self).secrets.extend(j["token"] for j in js)
        self.assertEqual(len({j["id"] for j in js}), 20, "duplicate token ids")
        self.assertEqual(len({j["token"] for j in js}), 20, "duplicate secrets")
        self.assertEqual(len(self.token_list()), before + 20)
        for j in js[:5]:  # each secret belongs to its own scopes
            self.assertForbidden(self.srv.get("/repos/other/app/1.0/a.jar", token=j["token"]),
                                 "read@other")
            r = self.srv.get("/api/v1/repos/%s" % j["scopes"][0].split("@")[1], token=j["token"])
            self.assertEqual(r.status, 404, r)  # allowed to look, nothing there

    def test_non_admin_token_api_403(self):
        tok = self.create_token(["read", "write"])
        victim = self.create_token(["read"])
        s = tok["token"]
        admin = ("admin", "admin@*")
        ntok = len(self.token_list())
        self.assertForbidden(self.srv.get("/api/v1/tokens", token=s), admin)
        self.assertForbidden(self.srv.get("/api/v1/tokens/" + victim["id"], token=s), admin)
        r = self.srv.post_json("/api/v1/tokens", {"name": "esc-" + uniq(), "scopes": ["admin"]},
                               token=s)
        self.assertForbidden(r, admin)
        self.assertNotIn(b"arca_", r.body)
        self.assertForbidden(self.srv.delete("/api/v1/tokens/" + victim["id"], token=s), admin)
        self.assertEqual(len(self.token_list()), ntok)
        self.assertEqual(self.srv.get("/repos/libs-a/app/1.0/a.jar",
                                      token=victim["token"]).status, 200,
                         "a forbidden DELETE revoked the token")

    def test_admin_scope_token_can_manage_tokens(self):
        s = self.create_token(["admin"])["token"]
        r = self.srv.post_json("/api/v1/tokens", {"name": "by-" + uniq(), "scopes": ["read"]},
                               token=s)
        self.assertEqual(r.status, 201, r)
        type(self).secrets.append(r.json()["token"])
        self.assertEqual(self.srv.get("/api/v1/tokens", token=s).status, 200)
        # admin implies every action
        self.assertEqual(self.srv.put("/repos/other/adm/%s/f" % uniq(), b"a", token=s).status,
                         201)
        self.assertEqual(self.srv.get("/repos/other/app/1.0/a.jar", token=s).status, 200)

    def test_repo_listing_only_readable(self):
        admin_names = [it["repo"] for it in self.srv.json("/api/v1/repos?limit=1000")["items"]]
        self.assertTrue({"libs-a", "libs-b", "other"} <= set(admin_names), admin_names)
        cases = [
            (["read@libs-*"], {n for n in admin_names if n.startswith("libs-")}),
            (["read@other"], {"other"}),
            (["read@libs-a", "read@other"], {"libs-a", "other"}),
            (["write@libs-*"], set()),
            (["read"], set(admin_names)),
        ]
        for scopes, want in cases:
            with self.subTest(scopes=scopes):
                s = self.create_token(scopes)["token"]
                r = self.srv.get("/api/v1/repos?limit=1000", token=s)
                self.assertEqual(r.status, 200, r)
                got = [it["repo"] for it in r.json()["items"]]
                self.assertEqual(set(got), want)
                self.assertEqual(len(got), len(set(got)))
                # paged with limit=1: the same set, one item on every page, and it ends;
                # a cursor names only a repository this caller may read (its hex is the name)
                seen, cursor = [], None
                for _ in range(len(admin_names) + 3):
                    q = "?limit=1" + ("&cursor=" + urllib.parse.quote(
                        cursor) if cursor else "")
                    r = self.srv.get("/api/v1/repos" + q, token=s)
                    self.assertEqual(r.status, 200, r)
                    page = [it["repo"] for it in r.json()["items"]]
                    self.assertEqual(len(page), 1 if want else 0, page)
                    seen += page
                    cursor = r.json()["next_cursor"]
                    if cursor is None:
                        break
                    self.assertEqual(bytes.fromhex(cursor[9:]).decode(), page[0])
                self.assertIsNone(cursor, "paging did not end")
                self.assertEqual(set(seen), want)

    # -- expiry and revocation -----------------------------------------------------------

    def test_expired_token(self):
        long = self.create_token(["read"], expires_in=3600)
        self.assertRegex(long["expires"] or "", ISO)
        self.assertGreater(long["expires"], long["created"])
        self.assertEqual(self.srv.get("/repos/libs-a/app/1.0/a.jar",
                                      token=long["token"]).status, 200)
        tok = self.create_token(["read"], expires_in=1)
        self.assertRegex(tok["expires"] or "", ISO)
        time.sleep(2.1)
        r = self.srv.get("/repos/libs-a/app/1.0/a.jar", token=tok["token"])
        self.assertUnauthorized(r, secret=tok["token"], why=r"(?i)expire")
        r = self.srv.get("/repos/libs-a/app/1.0/a.jar", headers=basic("ci", tok["token"]))
        self.assertUnauthorized(r, secret=tok["token"])

    def test_revoked_token(self):
        tok = self.create_token(["read", "write"])
        s = tok["token"]
        # keep-alive: the revocation must hit the very next request, even on an
        # already open connection
        with self.srv.conn() as c:
            get = ("GET /repos/libs-a/app/1.0/a.jar HTTP/1.1\r\nHost: t\r\n"
                   "Authorization: Bearer %s\r\n\r\n" % s)
            c.send(get)
            self.assertEqual(c.read_response().status, 200)
            r = self.srv.delete("/api/v1/tokens/" + tok["id"])
            self.assertEqual(r.status, 200, r)
            j = r.json()
            self.assertEqual(j.get("id"), tok["id"], j)
            self.assertTrue(j.get("revoked"), "DELETE answer is not revoked: %r" % j)
            self.assertNotIn(s.encode(), r.body)
            try:
                c.send(get)
                r2 = c.read_response()
            except (EOFError, ConnectionError):
                r2 = None  # closing the connection is fine too
            if r2 is not None:
                self.assertUnauthorized(r2, secret=s, why=r"(?i)revoke")
        r = self.srv.get("/repos/libs-a/app/1.0/a.jar", token=s)
        self.assertUnauthorized(r, secret=s, why=r"(?i)revoke")
        p = "/repos/libs-a/rv/%s/f.bin" % uniq()
        self.assertUnauthorized(self.srv.put(p, b"x", token=s), secret=s)
        self.assertNotStored(p)
        one = self.srv.json("/api/v1/tokens/" + tok["id"])
        self.assertTrue(one["revoked"], one)
        listed = [t for t in self.token_list() if t["id"] == tok["id"]]
        self.assertEqual(len(listed), 1)
        self.assertTrue(listed[0]["revoked"])
        # unknown id
        self.assertError(self.srv.delete("/api/v1/tokens/nosuchid" + uniq()), 404, "not_found")

    # -- bad token requests --------------------------------------------------------------

    def test_token_create_bad_inputs(self):
        before = self.token_list()
        ok = {"name": "bad-" + uniq(), "scopes": ["read"]}

        def w(**kw):
            d = dict(ok)
            for k, v in kw.items():
                if v is KeyError:
                    d.pop(k)
                else:
                    d[k] = v
            return d

        cases = [
            ("bad JSON", b'{"name": "x", "scopes": ["read"]'),
            ("not JSON", b"name=x&scopes=read"),
            ("empty body", b""),
            ("JSON array", b'[{"name": "x", "scopes": ["read"]}]'),
            ("trailing garbage", b'{"name": "x", "scopes": ["read"]} xyz'),
            ("unknown field", w(bogus=1)),
            ("unknown field token", w(token="arca_" + "1" * 64)),
            ("missing name", w(name=KeyError)),
            ("empty name", w(name="")),
            ("name 65 chars", w(name="n" * 65)),
            ("name non-ASCII", w(name="caf\u00e9")),
            ("name with space", w(name="a b")),
            ("name with slash", w(name="a/b")),
            ("name with control char", w(name="a\tb")),
            ("name starting with dash", w(name="-ci")),
            ("name starting with dot", w(name=".ci")),
            ("name starting with @", w(name="@ci")),
            ("owner empty", w(owner="")),
            ("owner 65 chars", w(owner="o" * 65)),
            ("owner with space", w(owner="team x")),
            ("name not a string", w(name=5)),
            ("missing scopes", w(scopes=KeyError)),
            ("empty scope list", w(scopes=[])),
            ("empty scope string", w(scopes=[""])),
            ("scopes not a list", w(scopes="read")),
            ("scope not a string", w(scopes=[1])),
            ("unknown action", w(scopes=["fly"])),
            ("unknown action with glob", w(scopes=["fly@libs"])),
            ("one bad among good", w(scopes=["read", "fly"])),
            ("empty glob", w(scopes=["read@"])),
            ("glob with slash", w(scopes=["read@libs/x"])),
            ("glob with space", w(scopes=["read@li bs"])),
            ("promote without stage", w(scopes=["promote"])),
            ("expires_in 0", w(expires_in=0)),
            ("expires_in negative", w(expires_in=-5)),
            ("expires_in string", w(expires_in="60")),
            ("owner not a string", w(owner=["x"])),
        ]
        for desc, body in cases:
            with self.subTest(desc=desc):
                r = self.srv.post_json("/api/v1/tokens", body)
                self.assertError(r, 400, "bad_request", desc)
                self.assertEqual(set(re.findall(SECRET_RE, r.body.decode("utf-8", "replace")))
                                 - {"arca_" + "1" * 64}, set(), "a secret in a 400")
        self.assertEqual([t["id"] for t in self.token_list()], [t["id"] for t in before],
                         "a rejected token request created a token")
        # the boundaries that are valid
        j = self.create_token(["read"], name="n" * 64)
        self.assertEqual(j["name"], "n" * 64)
        j = self.create_token(["read"], name="x")
        self.assertEqual(j["name"], "x")
        j = self.create_token(["promote:staging@libs-*", "delete@x", "revoke", "deploy-record"])
        self.assertEqual(j["scopes"], ["promote:staging@libs-*", "delete@x", "revoke",
                                       "deploy-record"])
        # the whole name alphabet; owner defaults to the caller
        j = self.create_token(["read"], name="Az09._@+-" + uniq(), owner="o" * 64)
        self.assertEqual(j["owner"], "o" * 64)
        j = self.create_token(["read"])
        self.assertEqual(j["owner"], j["created_by"], "owner does not default to the caller")

    def test_token_body_too_large(self):
        before = [t["id"] for t in self.token_list()]
        body = json.dumps({"name": "big", "scopes": ["read"], "owner": "o" * (70 * KiB)}).encode()
        self.assertGreater(len(body), 64 * KiB)
        with self.srv.conn() as c:
            c.send("POST /api/v1/tokens HTTP/1.1\r\nHost: t\r\n%sContent-Type: application/json"
                   "\r\nContent-Length: %d\r\n\r\n" % (self.srv.auth_line(), len(body)))
            try:
                c.send(body)
            except (ConnectionError, BrokenPipeError):
                pass
            r = c.read_response()
        self.assertError(r, 413, "payload_too_large")
        # chunked, too
        r = self.srv.request("POST", "/api/v1/tokens",
                             body=iter([body[i:i + 8192] for i in range(0, len(body), 8192)]),
                             headers={"Content-Type": "application/json"})
        self.assertError(r, 413, "payload_too_large")
        self.assertEqual([t["id"] for t in self.token_list()], before)


class AnonymousReadTest(AuthMixin, ServerTestCase):
    CONFIG = "[auth]\nanonymous_read = pub-*\n"
    secrets = []

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.srv.source = next_source()
        for p, d in (("/repos/pub-x/app/1.0/a.txt", b"public"),
                     ("/repos/other/app/1.0/a.txt", b"private"),
                     ("/repos/pubx/app/1.0/a.txt", b"not-matching")):
            r = cls.srv.put(p, d)
            if r.status != 201:
                raise AssertionError("setup PUT %s: %r" % (p, r))

    def setUp(self):
        super().setUp()
        self.srv.source = next_source()

    def test_anonymous_get_public(self):
        r = self.srv.get("/repos/pub-x/app/1.0/a.txt", auth=None)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"public")
        r = self.srv.head("/repos/pub-x/app/1.0/a.txt", auth=None)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("content-length"), "6")
        r = self.srv.get("/repos/pub-x/app/1.0/missing.txt", auth=None)
        self.assertError(r, 404, "not_found")

    def test_anonymous_listing_public(self):
        for path in ("/api/v1/repos/pub-x", "/api/v1/repos/pub-x/app",
                     "/api/v1/repos/pub-x/app/1.0"):
            with self.subTest(path=path):
                self.assertEqual(self.srv.get(path, auth=None).status, 200)

    def test_anonymous_put_public_401(self):
        before = self.srv.storage()
        p = "/repos/pub-x/app/2.%s/a.txt" % uniq()
        self.assertUnauthorized(self.srv.put(p, b"anon", auth=None))
        self.assertUnauthorized(self.srv.put("/repos/pub-x/app/1.0/a.txt", b"public", auth=None))
        self.assertNotStored(p)
        self.assertStorageUnchanged(before)

    def test_anonymous_other_repos_401(self):
        for path in ("/repos/other/app/1.0/a.txt", "/repos/pubx/app/1.0/a.txt",
                     "/repos/other/app/1.0/missing.txt", "/api/v1/repos/other",
                     "/api/v1/storage", "/api/v1/tokens"):
            self.srv.source = next_source()
            with self.subTest(path=path):
                self.assertUnauthorized(self.srv.get(path, auth=None))

    def test_bad_token_on_public_repo_401(self):
        t = fake_secret()
        self.assertUnauthorized(self.srv.get("/repos/pub-x/app/1.0/a.txt", token=t), secret=t)

    def test_scoped_token_still_scoped(self):
        # (whether a token without read@pub-x may read what anyone may read is
        # not specified: not checked)
        s = self.create_token(["read@other"])["token"]
        self.assertEqual(self.srv.get("/repos/other/app/1.0/a.txt", token=s).status, 200)
        self.assertForbidden(self.srv.put("/repos/pub-x/n/%s/f" % uniq(), b"x", token=s),
                             "write@pub-x")

    def test_config_dump(self):
        r = run_arcad(["config", "--config", self.srv.config_path])
        self.assertEqual(r.returncode, 0, r)
        self.assertIn("auth.anonymous_read = pub-*", r.stdout.splitlines())
        r = run_arcad(["config"])
        self.assertEqual(r.returncode, 0, r)
        self.assertRegex(r.stdout, r'(?m)^auth\.anonymous_read =\s*("")?\s*$')


class AnonymousReadListTest(AuthMixin, unittest.TestCase):
    secrets = []

    def test_glob_list(self):
        with ArcaServer(config="[auth]\nanonymous_read = pub-*,mirror\n") as srv:
            self.srv = srv
            for repo in ("pub-y", "mirror", "mirror-2", "private"):
                self.assertEqual(srv.put("/repos/%s/a/1/f" % repo, repo.encode()).status, 201)
            for repo, ok in (("pub-y", True), ("mirror", True), ("mirror-2", False),
                             ("private", False)):
                with self.subTest(repo=repo):
                    r = srv.get("/repos/%s/a/1/f" % repo, auth=None)
                    if ok:
                        self.assertEqual(r.status, 200, r)
                        self.assertEqual(r.body, repo.encode())
                    else:
                        self.assertUnauthorized(r)


class BootstrapTest(AuthMixin, unittest.TestCase):
    secrets = []

    def test_admin_token_file_and_log(self):
        with ArcaServer() as srv:
            self.srv = srv
            p = os.path.join(srv.data, "admin.token")
            self.assertEqual(stat.S_IMODE(os.stat(p).st_mode), 0o600)
            self.assertRegex(srv.token, "^" + SECRET_RE + "$")
            log = srv.log_text()
            self.assertIn(p, log, "the admin token's path is not logged")
            self.assertNotIn(srv.token, log)
            self.assertNotIn(srv.token[5:], log)
            admins = [t for t in self.token_list() if t["scopes"] == ["admin"]]
            self.assertEqual(len(admins), 1, self.token_list())
            self.assertEqual(srv.put("/repos/a/b/1/c", b"x").status, 201)
            # kept across restarts (and not logged as created again)
            srv.restart()
            with open(p) as f:
                self.assertEqual(f.read().strip(), srv.token)
            self.assertEqual(stat.S_IMODE(os.stat(p).st_mode), 0o600)
            self.assertEqual(srv.get("/api/v1/tokens").status, 200)
            self.assertEqual(len([t for t in self.token_list() if t["scopes"] == ["admin"]]), 1,
                             "the admin token was registered twice")
            self.assertNoSecretsLeaked([srv.token])

    def test_reregistered_after_index_wipe(self):
        with ArcaServer() as srv:
            self.srv = srv
            tok = srv.token
            t = self.create_token(["read"])
            self.assertEqual(srv.put("/repos/a/b/1/c", b"x").status, 201)
            srv.stop()
            shutil.rmtree(os.path.join(srv.data, "index"))
            srv.start()
            with open(os.path.join(srv.data, "admin.token")) as f:
                self.assertEqual(f.read().strip(), tok, "admin.token was rewritten")
            r = srv.put("/repos/a/b/2/c", b"y")
            self.assertEqual(r.status, 201, "the admin token no longer works: %r" % r)
            r = srv.get("/api/v1/tokens")
            self.assertEqual(r.status, 200, r)
            self.assertEqual([x["scopes"] for x in r.json()["items"]], [["admin"]])
            # tokens of the wiped index are gone
            self.assertUnauthorized(srv.get("/api/v1/storage", token=t["token"]))
            self.assertNoSecretsLeaked([tok, t["token"]])

    def test_tokens_survive_restart(self):
        with ArcaServer() as srv:
            self.srv = srv
            t = self.create_token(["write@keep"], expires_in=3600)
            r = self.create_token(["read"])
            self.assertEqual(srv.delete("/api/v1/tokens/" + r["id"]).status, 200)
            srv.restart()
            self.assertEqual(srv.put("/repos/keep/a/1/f", b"k", token=t["token"]).status, 201)
            self.assertUnauthorized(srv.get("/api/v1/storage", token=r["token"]),
                                    why=r"(?i)revoke")


class CliTokenTest(AuthMixin, unittest.TestCase):
    secrets = []

    def cli(self, *args):
        p = run_arcad(["token"] + list(args) + ["--data", self.srv.data])
        return p

    def test_cli_create_list_revoke(self):
        with ArcaServer() as srv:
            self.srv = srv
            admin = srv.token
            self.assertEqual(srv.put("/repos/libs/seed/1/f", b"s").status, 201)
            srv.stop()

            p = self.cli("create", "--name", "ci", "--scope", "write@libs")
            self.assertEqual(p.returncode, 0, p)
            secrets = re.findall(SECRET_RE, p.stdout + p.stderr)
            self.assertEqual(len(secrets), 1, "the secret must be printed exactly once: %r" % p)
            secret = secrets[0]
            self.secrets.append(secret)
            self.assertNotEqual(secret, admin)
            rest = p.stdout.split(secret, 1)[1].strip()
            self.assertTrue(rest.startswith("{"), "no JSON after the secret: %r" % p.stdout)
            j, _ = json.JSONDecoder().raw_decode(rest)
            self.assertEqual(j["name"], "ci")
            self.assertEqual(j["scopes"], ["write@libs"])
            tid = j["id"]

            srv.start()
            r = srv.put("/repos/libs/app/1.0/a.jar", b"ci-built", token=secret)
            self.assertEqual(r.status, 201, r)
            self.assertEqual(r.json()["created_by"], "ci")
            r = srv.put("/repos/libs/app/1.0/b.jar", b"basic", headers=basic("ci", secret))
            self.assertEqual(r.status, 201, r)
            self.assertForbidden(srv.put("/repos/other/app/1.0/a.jar", b"x", token=secret),
                                 "write@other")
            self.assertForbidden(srv.put("/repos/libs-x/app/1.0/a.jar", b"x", token=secret),
                                 "write@libs-x")
            self.assertForbidden(srv.get("/repos/libs/app/1.0/a.jar", token=secret),
                                 "read@libs")
            listed = [t for t in self.token_list() if t["id"] == tid]
            self.assertEqual(len(listed), 1, "the CLI token is not in GET /api/v1/tokens")
            srv.stop()

            p = self.cli("list")
            self.assertEqual(p.returncode, 0, p)
            self.assertNotIn(secret, p.stdout + p.stderr)
            self.assertNotIn(admin, p.stdout + p.stderr)
            lines = [json.loads(ln) for ln in p.stdout.splitlines() if ln.strip()]
            mine = [t for t in lines if t.get("id") == tid]
            self.assertEqual(len(mine), 1, p.stdout)
            self.assertEqual(mine[0]["name"], "ci")
            self.assertFalse(mine[0].get("revoked") or mine[0].get("revoked_ms"), mine[0])
            self.assertNotIn("token", mine[0])
            self.assertTrue(any(t.get("scopes") == ["admin"] for t in lines),
                            "the admin token is not listed: %r" % p.stdout)

            p = self.cli("revoke", tid)
            self.assertEqual(p.returncode, 0, p)
            p = self.cli("list")
            mine = [json.loads(ln) for ln in p.stdout.splitlines()
                    if ln.strip() and json.loads(ln).get("id") == tid]
            self.assertEqual(len(mine), 1, p.stdout)
            # the CLI's JSON fields are not specified: revoked (as in the API) or revoked_ms
            self.assertTrue(mine[0].get("revoked") or mine[0].get("revoked_ms"), mine[0])

            srv.start()
            self.assertUnauthorized(srv.put("/repos/libs/app/1.0/c.jar", b"x", token=secret),
                                    secret=secret, why=r"(?i)revoke")
            self.assertEqual(srv.put("/repos/libs/app/1.0/d.jar", b"adm").status, 201)
            self.assertNoSecretsLeaked([secret, admin])

    def test_cli_bad_inputs(self):
        with ArcaServer() as srv:
            self.srv = srv
            srv.stop()
            for args in (["create", "--scope", "read"],               # no name
                         ["create", "--name", "x", "--scope", "fly"],  # unknown action
                         ["create", "--name", "x", "--scope", "read", "--expires-in", "0"],
                         ["create", "--name", "n" * 65, "--scope", "read"],
                         ["revoke", "nosuchid"]):
                with self.subTest(args=args[:4]):
                    p = self.cli(*args)
                    self.assertNotEqual(p.returncode, 0, p)
                    self.assertIsNone(re.search(SECRET_RE, p.stdout + p.stderr), p)
            p = self.cli("list")
            self.assertEqual(p.returncode, 0, p)
            self.assertEqual(len([ln for ln in p.stdout.splitlines() if ln.strip()]), 1,
                             "only the admin token should exist: %r" % p.stdout)


class RateLimitTest(AuthMixin, unittest.TestCase):
    """10 failed authentications from 127.0.0.1 within 60 s → 429 for that
    address; its own server, run last."""

    secrets = []

    def test_rate_limit(self):
        with ArcaServer() as srv:
            self.srv = srv
            srv.source = "127.0.0.1"
            self.assertEqual(srv.get("/api/v1/storage").status, 200)
            for i in range(10):
                t = fake_secret()
                r = srv.get("/repos/libs/a/1/f", token=t)
                self.assertUnauthorized(r, secret=t, msg="failure %d of 10" % (i + 1))
            r = srv.get("/api/v1/storage")  # the admin token, 11th attempt
            self.assertError(r, 429, "too_many_requests", "11th attempt, good token")
            ra = r.header("retry-after")
            self.assertIsNotNone(ra, "429 without Retry-After")
            self.assertRegex(ra, r"^\d+$", "Retry-After is not delta-seconds")
            self.assertTrue(1 <= int(ra) <= 60, ra)
            self.assertNotIn(srv.token.encode(), r.body)
            for desc, kw in (("bearer", {}), ("basic", {"headers": basic("ci", srv.token)}),
                             ("unknown", {"token": fake_secret()})):
                with self.subTest(desc=desc):
                    r = srv.get("/repos/libs/a/1/f", **kw)
                    self.assertError(r, 429, "too_many_requests")
                    self.assertTrue(r.header("retry-after"))
            r = srv.put("/repos/libs/a/1/f", b"x")
            self.assertError(r, 429, "too_many_requests")
            with self.subTest(desc="health without credential"):
                for path in ("/healthz", "/readyz", "/metrics"):
                    self.assertEqual(srv.get(path, auth=None).status, 200, path)
            with self.subTest(desc="another address is not limited"):
                r = srv.get("/api/v1/storage", source="127.0.0.2")
                self.assertEqual(r.status, 200, r)
            with self.subTest(desc="logged once"):
                hits = [ln for ln in srv.log_text().splitlines()
                        if re.search(r"(?i)(too many|refus|rate.?limit|blocked|limited)", ln)]
                self.assertEqual(len(hits), 1, hits)
            # the window passes (a client honouring Retry-After gets through)
            r = srv.get("/api/v1/storage")
            self.assertEqual(r.status, 429, r)
            wait = min(int(r.header("retry-after", "60")), 60) + 1.5
            time.sleep(wait)
            r = srv.get("/api/v1/storage")
            self.assertEqual(r.status, 200, "still limited %.0f s after Retry-After: %r"
                             % (wait, r))
            self.assertNoSecretsLeaked([srv.token])


def load_tests(loader, tests, pattern):
    """Everything else first, the rate limit last."""
    suite = unittest.TestSuite()
    for cls in (AuthTest, AnonymousReadTest, AnonymousReadListTest, BootstrapTest,
                CliTokenTest, RateLimitTest):
        suite.addTests(loader.loadTestsFromTestCase(cls))
    return suite


if __name__ == "__main__":
    unittest.main()
