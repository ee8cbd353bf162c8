"""Client certificates (mTLS; docs/API.md, "Client certificates"): `[tls]
client_auth = optional | required` with `client_ca_file`, and `[tls.clients]`
mapping a verified certificate (by subject CN or SHA-256 fingerprint) to an
identity "cert:NAME" with scopes.

One PKI for the module (harness.Pki, openssl CLI), client certificates:
  ci        CN ci-runner    by the test CA     mapped by CN: read@libs-*, write@libs-*
  peer      CN replica.dc2  by the test CA     mapped by CN: replicate
  pinned    CN deploy-bot   by the test CA     mapped by fingerprint: admin
  twin      CN deploy-bot   by the test CA     another key: not mapped
  stranger  CN stranger     by the test CA     not mapped
  rogue     CN ci-runner    by another CA      refused at the handshake
  expired   CN ci-runner    by the test CA     valid only in January 2020: refused
  srvonly   CN ci-runner    by the test CA     extendedKeyUsage serverAuth only: refused

Refusals are checked on TLS 1.2 and 1.3.  In TLS 1.3 the client finishes its
handshake before the server has looked at the client's certificate, so the
refusal arrives as an alert on the client's first read; `refusal()` accepts
either and returns the alert.  The server's log names the reason
("certificate has expired", ...), which the tests check too.

While the refusals run, a well-behaved client (the mapped ci certificate, a
fresh connection per round: PUT then GET) keeps going in a thread and must
never fail (WellBehaved).

The audit actor is checked in the audit log itself (a version's history and
GET /api/v1/audit), in created_by, and in the access log line."""

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

import harness
from harness import HOST, Pki, TlsMixin, TlsServer, bearer, install, sha256_hex, uniq

TLS12 = ssl.TLSVersion.TLSv1_2
TLS13 = ssl.TLSVersion.TLSv1_3

PKI = None


def setUpModule():
    global PKI
    PKI = Pki()
    try:
        PKI.client("ci", "ci-runner")
        PKI.client("peer", "replica.dc2")
        PKI.client("pinned", "deploy-bot")
        PKI.client("twin", "deploy-bot")
        PKI.client("stranger", "stranger")
        PKI.client("rogue", "ci-runner", ca="other-ca")
        PKI.client("expired", "ci-runner", expired=True)
        PKI.client("srvonly", "ci-runner", eku="serverAuth")
    except BaseException:
        PKI.cleanup()
        raise


def tearDownModule():
    PKI.cleanup()


def clients():
    return [("ci-runner", "read@libs-*, write@libs-*"),
            ("replica.dc2", "replicate"),
            (PKI.fingerprint("pinned"), "admin")]


def refusal(srv, ctx, timeout=10.0):
    """How the server refused a client: the ssl error reason of the handshake
    or, for TLS 1.3, of the first read ('eof' / 'reset' when it just closed).
    None when a request got an answer."""
    try:
        s = srv.handshake(ctx, timeout)
    except ssl.SSLError as e:
        return e.reason or str(e)
    except (ConnectionError, socket.timeout) as e:
        return type(e).__name__
    with s:
        try:
            # Read first: a TLS 1.3 server's refusal (an alert) is already on its way, and
            # writing into a connection the server closed would turn it into a reset.
            s.settimeout(2.0)
            try:
                data = s.recv(4096)
                return "eof" if not data else "unexpected data %r" % data[:40]
            except socket.timeout:
                pass
            s.settimeout(timeout)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            data = s.recv(4096)
        except ssl.SSLError as e:
            return e.reason or str(e)
        except ConnectionResetError:
            return "reset"
        except (ConnectionError, socket.timeout) as e:
            return type(e).__name__
        return None if data else "eof"


class WellBehaved:
    """A client that keeps storing and reading with the mapped ci certificate
    in a thread (a fresh TLS connection per round) while the test misbehaves:
    `with WellBehaved(srv) as wb: ...`; on exit it must have done at least
    `min_rounds` rounds and never failed."""

    def __init__(self, test, srv, min_rounds=3):
        self.test = test
        self.srv = srv
        self.min_rounds = min_rounds
        self.rounds = 0
        self.failures = []
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._run, daemon=True)
        self.ctx = srv.context(client="ci")

    def _run(self):
        while not self._stop.is_set():
            data = os.urandom(2000 + self.rounds)
            p = "/repos/libs-good/steady/%s/x.bin" % uniq()
            try:
                r = self.srv.treq("PUT", p, body=data, auth=False, ctx=self.ctx, timeout=20)
                if r.status != 201:
                    self.failures.append("PUT %s -> %r" % (p, r))
                    continue
                r = self.srv.treq("GET", p, auth=False, ctx=self.ctx, timeout=20)
                if r.status != 200 or r.body != data:
                    self.failures.append("GET %s -> %r" % (p, r))
                    continue
                self.rounds += 1
            except Exception as e:  # pragma: no cover - reported by __exit__
                self.failures.append("round %d: %r" % (self.rounds, e))
            time.sleep(0.02)

    def __enter__(self):
        self._th.start()
        return self

    def __exit__(self, *exc):
        deadline = time.monotonic() + 20
        while self.rounds < self.min_rounds and not self.failures and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        self._th.join(30)
        if exc[0] is None:
            self.test.assertEqual(self.failures, [], "the well-behaved client failed")
            self.test.assertGreaterEqual(self.rounds, self.min_rounds,
                                         "the well-behaved client made too few rounds")
        return False


class MtlsBase(TlsMixin, unittest.TestCase):
    CLIENT_AUTH = "optional"
    PLAIN = True

    @classmethod
    def setUpClass(cls):
        cls.srv = TlsServer(PKI, plain=cls.PLAIN, client_auth=cls.CLIENT_AUTH,
                            clients=clients(),
                            server_extra="header_timeout = 3\nidle_timeout = 10\n").__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.srv.__exit__(None, None, None)

    def setUp(self):
        if not self.srv.alive():
            self.srv.proc = None
            self.srv.start()

    def tearDown(self):
        self.srv.assert_alive()

    def creq(self, client, method, path, body=None, headers=None, version=None, conn=None):
        """A request over TLS presenting client's certificate and no token."""
        ctx = None if conn else self.srv.context(client=client, min_version=version,
                                                 max_version=version)
        return self.srv.treq(method, path, body=body, headers=headers, auth=False, ctx=ctx,
                             conn=conn)

    def admin_put(self, path, data):
        r = self.srv.treq("PUT", path, body=data)
        self.assertEqual(r.status, 201, r)

    def log_since(self, mark, needle, timeout=5.0):
        """The log after offset mark, once it holds needle (fails after timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.srv.log_text()[mark:]
            if needle in text:
                return text
            if time.monotonic() > deadline:
                lines = [ln for ln in text.splitlines() if " access " not in ln]
                self.fail("arcad's log does not say %r; its lines since (access lines left "
                          "out):\n%s" % (needle, "\n".join(lines[-30:])))
            time.sleep(0.05)

    def assertRefused(self, ctx, alerts=None, what=""):
        why = refusal(self.srv, ctx)
        self.assertIsNotNone(why, "%s: the server answered a request" % what)
        if alerts:
            self.assertIn(why, alerts, "%s: refused, but with %r" % (what, why))
        return why


class MtlsOptionalTest(MtlsBase):
    """client_auth = optional."""

    def test_mapped_cert_writes_and_reads_within_its_scopes(self):
        for version in (TLS12, TLS13):
            with self.subTest(version=version.name):
                data = os.urandom(70000)
                p = "/repos/libs-core/app/%s/app.bin" % uniq()
                r = self.creq("ci", "PUT", p, data, version=version)
                self.assertEqual(r.status, 201, r)
                self.assertEqual(r.json()["created_by"], "cert:ci-runner")
                r = self.creq("ci", "GET", p, version=version)
                self.assertEqual(r.status, 200, r)
                self.assertTrue(r.body == data)
                self.assertEqual(r.header("etag"), '"%s"' % sha256_hex(data))
        # the listing too, and several requests on one kept-alive connection
        conn = self.srv.https(ctx=self.srv.context(client="ci"))
        try:
            p = "/repos/libs-core/lib/1.0/a.txt"
            self.assertEqual(self.creq("ci", "PUT", p, b"one", conn=conn).status, 201)
            s1 = conn.sock
            r = self.creq("ci", "GET", "/api/v1/repos/libs-core/lib/1.0", conn=conn)
            self.assertEqual(r.status, 200, r)
            self.assertIs(conn.sock, s1, "not the same connection")
            items = r.json()["items"]
            self.assertEqual([i["path"] for i in items], ["a.txt"])
            self.assertEqual(items[0]["created_by"], "cert:ci-runner")
        finally:
            conn.close()

    def test_mapped_cert_refused_outside_its_scopes(self):
        self.admin_put("/repos/apps/web/1.0/web.bin", b"web")
        p = "/repos/apps/web/2.0/web.bin"
        r = self.creq("ci", "PUT", p, b"nope")
        self.assertError(r, 403, "forbidden")
        self.assertEqual(r.json()["error"]["scope"], "write@apps")
        self.assertIn("client certificate 'cert:ci-runner' lacks scope write@apps",
                      r.json()["error"]["message"])
        r = self.creq("ci", "GET", "/repos/apps/web/1.0/web.bin")
        self.assertError(r, 403, "forbidden")
        self.assertEqual(r.json()["error"]["scope"], "read@apps")
        r = self.creq("ci", "GET", "/api/v1/tokens")
        self.assertError(r, 403, "forbidden")
        self.assertEqual(self.srv.treq("GET", p).status, 404, "a refused PUT stored something")

    def test_replicate_only_peer_can_do_nothing_else(self):
        self.admin_put("/repos/libs-core/peer/1.0/p.bin", b"peer")
        r = self.creq("peer", "GET", "/repos/libs-core/peer/1.0/p.bin")
        self.assertError(r, 403, "forbidden")
        self.assertEqual(r.json()["error"]["scope"], "read@libs-core")
        self.assertIn("cert:replica.dc2", r.json()["error"]["message"])
        r = self.creq("peer", "PUT", "/repos/libs-core/peer/2.0/p.bin", b"x")
        self.assertError(r, 403, "forbidden")
        r = self.creq("peer", "POST", "/api/v1/tokens", json.dumps(
            {"name": "sneaky", "scopes": ["admin"]}).encode(),
            headers={"Content-Type": "application/json"})
        self.assertError(r, 403, "forbidden")

    def test_fingerprint_mapping_pins_one_certificate(self):
        # pinned (admin by fingerprint) can create a token: created_by and the default owner
        # are the certificate's identity
        r = self.creq("pinned", "POST", "/api/v1/tokens", json.dumps(
            {"name": "made-by-cert-%s" % uniq(), "scopes": ["read@apps"]}).encode(),
            headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json()["created_by"], "cert:deploy-bot")
        self.assertEqual(r.json()["owner"], "deploy-bot")
        r = self.creq("pinned", "GET", "/api/v1/tokens")
        self.assertEqual(r.status, 200, r)
        # same CN, another key: the fingerprint does not match, no CN entry: not mapped
        r = self.creq("twin", "GET", "/api/v1/tokens")
        self.assertError(r, 401, "unauthorized")
        self.assertIn("not mapped", r.json()["error"]["message"])

    def test_unmapped_cert_gets_no_rights(self):
        self.admin_put("/repos/libs-core/x/1.0/x.bin", b"x")
        mark = len(self.srv.log_text())
        self.assertEqual(self.creq("stranger", "GET", "/healthz").status, 200)
        r = self.creq("stranger", "GET", "/repos/libs-core/x/1.0/x.bin")
        self.assertError(r, 401, "unauthorized")
        self.assertIn("Bearer", r.header("www-authenticate", ""))
        msg = r.json()["error"]["message"]
        self.assertIn("CN stranger", msg)
        self.assertIn("not mapped", msg)
        r = self.creq("stranger", "PUT", "/repos/libs-core/x/2.0/x.bin", b"x")
        self.assertError(r, 401, "unauthorized")
        self.log_since(mark, "client certificate CN 'stranger' sha256 %s is not mapped"
                       % PKI.fingerprint("stranger")[7:])
        # a token on top of the unmapped certificate: the token's identity
        p = "/repos/libs-core/x/3.0/x.bin"
        r = self.creq("stranger", "PUT", p, b"y", headers=self.srv.auth_headers())
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json()["created_by"], "admin")

    def test_token_wins_over_certificate(self):
        r = self.srv.treq("POST", "/api/v1/tokens", body=json.dumps(
            {"name": "reader-%s" % uniq(), "scopes": ["read@apps"]}).encode(),
            headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 201, r)
        reader = r.json()["token"]
        name = r.json()["name"]
        self.admin_put("/repos/apps/read/1.0/r.bin", b"r")
        r = self.creq("ci", "GET", "/repos/apps/read/1.0/r.bin", headers=bearer(reader))
        self.assertEqual(r.status, 200, r)
        r = self.creq("ci", "PUT", "/repos/libs-core/tok/1.0/t.bin", b"t", headers=bearer(reader))
        self.assertError(r, 403, "forbidden")
        self.assertIn("token '%s' lacks scope write@libs-core" % name,
                      r.json()["error"]["message"])
        # a bad token is a bad credential, certificate or not
        r = self.creq("ci", "GET", "/repos/libs-core/tok/1.0/t.bin",
                      headers=bearer("arca_" + "0" * 64))
        self.assertError(r, 401, "unauthorized")

    def test_no_certificate_token_auth_as_before(self):
        for version in (TLS12, TLS13):
            with self.subTest(version=version.name):
                ctx = self.srv.context(min_version=version, max_version=version)
                p = "/repos/libs-core/nocert/%s/n.bin" % uniq()
                r = self.srv.treq("PUT", p, body=b"n", ctx=ctx)
                self.assertEqual(r.status, 201, r)
                self.assertEqual(r.json()["created_by"], "admin")
                r = self.srv.treq("GET", p, ctx=ctx, auth=False)
                self.assertError(r, 401, "unauthorized")
                self.assertIn("needs a credential", r.json()["error"]["message"])

    def test_actor_in_audit_log_and_access_log(self):
        """The audit events record the certificate identity as actor (a version's history,
        and the token.create event of a token a certificate made)."""
        mark = len(self.srv.log_text())
        v = uniq()
        p = "/repos/libs-core/log/%s/l.bin" % v
        self.assertEqual(self.creq("ci", "PUT", p, b"l").status, 201)
        hist = self.srv.json("/api/v1/repos/libs-core/log/%s/history" % v)
        puts = [e for e in hist["items"] if e["action"] == "artifact.put"]
        self.assertEqual(len(puts), 1, hist)
        self.assertEqual(puts[0]["actor"], "cert:ci-runner")
        self.assertEqual(puts[0]["subject"], "libs-core/log/%s/l.bin" % v)
        text = self.log_since(mark, p)
        self.assertRegex(text, r"access \S+ PUT %s 201 .* actor=cert:ci-runner" % re.escape(p))
        # a token created by a certificate: the token.create event's actor
        name = "audit-%s" % uniq()
        r = self.creq("pinned", "POST", "/api/v1/tokens", json.dumps(
            {"name": name, "scopes": ["read@apps"]}).encode(),
            headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 201, r)
        r = self.srv.treq("GET", "/api/v1/audit?after=0&limit=1000")
        self.assertEqual(r.status, 200, r)
        events = [json.loads(ln) for ln in r.body.decode().splitlines() if ln]
        made = [e for e in events if e["action"] == "token.create" and
                e["details"].get("name") == name]
        self.assertEqual(len(made), 1, "no token.create event for %s" % name)
        self.assertEqual(made[0]["actor"], "cert:deploy-bot")

    def test_session_resumption_keeps_the_identity(self):
        """A resumed session (no certificate sent again) is still that identity."""
        ctx = self.srv.context(client="ci", max_version=TLS12)
        p = "/repos/libs-core/resume/%s/r.bin" % uniq()
        req = ("PUT %s HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nr" % p).encode()
        with self.srv.handshake(ctx) as s:
            s.sendall(req)
            self.assertIn(b" 201 ", s.recv(4096))
            session = s.session
        raw = socket.create_connection((HOST, self.srv.tls_port), timeout=10)
        with ctx.wrap_socket(raw, server_hostname=HOST, session=session) as s:
            self.assertTrue(s.session_reused, "the server did not resume the session")
            s.sendall(("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % p).encode())
            head = s.recv(4096)
            self.assertIn(b" 200 ", head, head[:300])

    def test_refused_at_handshake_while_a_good_client_works(self):
        cases = [
            ("rogue", "another CA", "unable to get local issuer certificate",
             ("TLSV1_ALERT_UNKNOWN_CA",)),
            ("expired", "expired", "certificate has expired",
             ("SSLV3_ALERT_CERTIFICATE_EXPIRED",)),
            ("srvonly", "serverAuth only", "unsuitable certificate purpose",
             ("SSLV3_ALERT_UNSUPPORTED_CERTIFICATE", "SSLV3_ALERT_BAD_CERTIFICATE")),
        ]
        with WellBehaved(self, self.srv, min_rounds=5):
            for name, what, logged, alerts in cases:
                for version in (TLS12, TLS13):
                    with self.subTest(cert=what, version=version.name):
                        mark = len(self.srv.log_text())
                        ctx = self.srv.context(client=name, min_version=version,
                                               max_version=version)
                        why = self.assertRefused(ctx, alerts, what)
                        print("\n%s certificate over %s: refused (%s)" % (what, version.name,
                                                                          why))
                        self.log_since(mark, "TLS handshake failed: certificate verify "
                                             "failed: " + logged)
            # and a burst of refused clients at once
            ths = [threading.Thread(target=refusal, args=(self.srv, self.srv.context(
                client=n))) for n in ("rogue", "expired", "srvonly") * 4]
            for t in ths:
                t.start()
            for t in ths:
                t.join(30)
        self.assertTlsServing()

    def test_sighup_reloads_mapping_and_client_ca(self):
        conf_path = self.srv.config_path
        with open(conf_path) as f:
            original = f.read()
        conn = self.srv.https(ctx=self.srv.context(client="ci"))
        try:
            p1 = "/repos/libs-core/hup/%s/a.bin" % uniq()
            self.assertEqual(self.creq("ci", "PUT", p1, b"a", conn=conn).status, 201)
            # 1. ci-runner loses write: the next request on the same connection is refused
            install(original.replace("ci-runner = read@libs-*, write@libs-*",
                                     "ci-runner = read@libs-*").encode(), conf_path)
            mark = len(self.srv.log_text())
            self.srv.proc.send_signal(signal.SIGHUP)
            self.log_since(mark, "SIGHUP: reloaded [tls.clients]")
            r = self.creq("ci", "PUT", "/repos/libs-core/hup/%s/b.bin" % uniq(), b"b", conn=conn)
            self.assertError(r, 403, "forbidden")
            self.assertEqual(self.creq("ci", "GET", p1, conn=conn).status, 200)
            # 2. a config that no longer loads keeps the mapping it had
            install(original.replace("replicate", "replicate, fly").encode(), conf_path)
            mark = len(self.srv.log_text())
            self.srv.proc.send_signal(signal.SIGHUP)
            text = self.log_since(mark, "[tls.clients] not reloaded")
            self.assertIn("scope 'fly'", text)
            self.assertEqual(self.creq("ci", "GET", p1).status, 200)
            # 3. the client CA file is read again: only the other CA now
            install(PKI.path("other-ca.crt"), self.srv.client_ca_file)
            install(original.encode(), conf_path)
            mark = len(self.srv.log_text())
            self.srv.proc.send_signal(signal.SIGHUP)
            self.log_since(mark, "SIGHUP: reloaded [tls.clients]")
            self.assertRefused(self.srv.context(client="ci"), what="ci after the CA swap")
            # the connection opened before keeps its identity (and the mapping's new rights)
            self.assertEqual(self.creq("ci", "GET", p1, conn=conn).status, 200)
            r = self.creq("ci", "PUT", "/repos/libs-core/hup/%s/c.bin" % uniq(), b"c", conn=conn)
            self.assertEqual(r.status, 201, r)
        finally:
            conn.close()
            install(PKI.path("ca.crt"), self.srv.client_ca_file)
            install(original.encode(), conf_path)
            self.srv.proc.send_signal(signal.SIGHUP)
            time.sleep(0.5)
        self.assertEqual(self.creq("ci", "GET", p1).status, 200)


class MtlsRequiredTest(MtlsBase):
    """client_auth = required, plain listener off."""

    CLIENT_AUTH = "required"
    PLAIN = False

    def test_no_certificate_fails_the_handshake(self):
        with WellBehaved(self, self.srv, min_rounds=3):
            for version in (TLS12, TLS13):
                with self.subTest(version=version.name):
                    mark = len(self.srv.log_text())
                    ctx = self.srv.context(min_version=version, max_version=version)
                    why = self.assertRefused(ctx, ("TLSV13_ALERT_CERTIFICATE_REQUIRED",
                                                   "SSLV3_ALERT_HANDSHAKE_FAILURE"))
                    print("\nno certificate over %s: refused (%s)" % (version.name, why))
                    self.log_since(mark, "TLS handshake failed: peer did not return a "
                                         "certificate")
                    # a token does not help: the request never gets that far
                    with self.assertRaises((ssl.SSLError, ConnectionError)):
                        self.srv.treq("GET", "/api/v1/storage", ctx=ctx)
            for name in ("rogue", "expired"):
                self.assertRefused(self.srv.context(client=name), what=name)

    def test_valid_certificates_pass(self):
        p = "/repos/libs-core/req/%s/r.bin" % uniq()
        r = self.creq("ci", "PUT", p, b"r")
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json()["created_by"], "cert:ci-runner")
        # an unmapped but valid certificate passes the handshake: no rights, or a token's
        r = self.creq("stranger", "GET", p)
        self.assertError(r, 401, "unauthorized")
        r = self.creq("stranger", "GET", p, headers=self.srv.auth_headers())
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"r")


class MtlsConfigErrorTest(unittest.TestCase):
    """Startup stops with an error naming the setting."""

    def run_conf(self, tls_extra, clients_text="", expect=()):
        data = tempfile.mkdtemp(prefix="arca-e2e-mtls-bad-")
        try:
            conf = os.path.join(data, "arcad.conf")
            with open(conf, "w") as f:
                f.write("[server]\nlisten = %s:0\n[tls]\nlisten = %s:0\ncert_file = %s\n"
                        "key_file = %s\n%s\n%s" % (HOST, HOST, PKI.path("a.crt"),
                                                   PKI.path("a.key"), tls_extra, clients_text))
            p = subprocess.run([harness.ARCAD, "--data", data, "--config", conf],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=15)
            self.assertGreater(p.returncode, 0, "arcad did not fail; stderr:\n" + p.stderr)
            for needle in expect:
                self.assertIn(needle, p.stderr)
            self.assertFalse(os.path.exists(os.path.join(data, "arcad.tls.port")))
            return p
        finally:
            shutil.rmtree(data, ignore_errors=True)

    def test_errors_name_the_setting(self):
        ca = PKI.path("ca.crt")
        missing = os.path.join(PKI.dir, "no-such-ca.pem")
        cases = [
            ("client_auth = optional\n", "", ["tls.client_ca_file"]),
            ("client_auth = sometimes\nclient_ca_file = %s\n" % ca, "", ["tls.client_auth"]),
            ("client_ca_file = %s\n" % ca, "", ["tls.client_ca_file is set but tls.client_auth"]),
            ("client_auth = required\nclient_ca_file = %s\n" % missing, "",
             ["tls.client_ca_file", missing]),
            ("client_auth = required\nclient_ca_file = %s\n" % PKI.path("garbage.key"), "",
             ["tls.client_ca_file", PKI.path("garbage.key")]),
            ("client_auth = required\nclient_ca_file = %s\n" % ca,
             "[tls.clients]\nci-runner = read@libs, fly\n",
             ["tls.clients.ci-runner: scope 'fly'"]),
            ("client_auth = required\nclient_ca_file = %s\n" % ca,
             "[tls.clients]\nci runner = read\n", ["tls.clients.ci runner"]),
        ]
        for tls_extra, clients_text, expect in cases:
            with self.subTest(conf=tls_extra + clients_text):
                self.run_conf(tls_extra, clients_text, expect)


if __name__ == "__main__":
    unittest.main()
