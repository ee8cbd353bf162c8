"""Promotion through quality gates, frozen files, revocation, deletion, stage
views, properties, build records (native and in-toto/SLSA), deployments,
search and trace — against the real arcad with a gate configuration."""

import json
import os
import threading
import unittest
import urllib.parse

from harness import ServerTestCase, ArcaServer, run_arcad, sha256_hex

GATES = """
[gate.test]
require_file = reports/junit.xml
[gate.prod]
require_property = tests.passed == true
require_property = change.ticket ~ CHG-[0-9]+
require_build = true
"""

NATIVE_BUILD = {"pipeline": "release", "run_id": "4711", "vcs_url": "https://git.example/app.git",
                "commit": "0123456789abcdef0123456789abcdef01234567", "branch": "main",
                "builder": "ci-runner-3", "started": "2026-11-20T10:00:00Z",
                "finished": "2026-11-20T10:05:00Z",
                "inputs": [{"name": "zlib-1.3.tar.gz", "sha256": "a" * 64}]}


def uniq():
    return os.urandom(4).hex()


class Base(ServerTestCase):
    CONFIG = GATES

    def vpath(self, name, version, action=""):
        p = "/api/v1/repos/rel/%s/%s" % (name, version)
        return p + ("/" + action if action else "")

    def promote(self, name, version, to, reason="ok", **kw):
        body = {"to": to, "reason": reason}
        body.update(kw)
        return self.srv.post_json(self.vpath(name, version, "promote"), body)

    def patch_props(self, name, version, props):
        return self.srv.request("PATCH", self.vpath(name, version, "properties"),
                                body=json.dumps(props).encode())

    def put_build(self, name, version, rec):
        return self.srv.request("PUT", self.vpath(name, version, "build"),
                                body=json.dumps(rec).encode())

    def make_version(self, files=("app.bin", "reports/junit.xml"), name=None, version="1.0"):
        name = name or "app-" + uniq()
        contents = {}
        for f in files:
            data = os.urandom(64)
            r = self.srv.put("/repos/rel/%s/%s/%s" % (name, version, f), data)
            self.assertEqual(r.status, 201, r)
            contents[f] = data
        return name, contents

    def make_prod_ready(self, name, version="1.0"):
        self.assertEqual(self.patch_props(name, version, {"tests.passed": "true",
                                                          "change.ticket": "CHG-7"}).status, 200)
        self.assertEqual(self.put_build(name, version, NATIVE_BUILD).status, 201)


class GateTest(Base):

    def test_each_gate_failing_alone_is_listed(self):
        name, _ = self.make_version(files=("app.bin",))
        # test needs reports/junit.xml: the only gate, unmet.
        r = self.assertError(self.promote(name, "1.0", "test"), 412, "gates_unmet")
        unmet = r.json()["error"]["unmet"]
        self.assertEqual([(g["gate"], g.get("path")) for g in unmet],
                         [("file", "reports/junit.xml")])
        self.srv.put("/repos/rel/%s/1.0/reports/junit.xml" % name, b"<testsuite/>")
        self.assertEqual(self.promote(name, "1.0", "test").status, 200)
        # For prod each of the three gates fails alone while the other two hold.
        full = {"tests.passed": "true", "change.ticket": "CHG-1"}
        cases = [
            ({"tests.passed": "false", "change.ticket": "CHG-1"}, True, ("property", "tests.passed")),
            ({"tests.passed": "true", "change.ticket": "TICKET-1"}, True,
             ("property", "change.ticket")),
            (full, False, ("build", None)),
        ]
        for props, with_build, expect in cases:
            n2, _ = self.make_version()
            self.assertEqual(self.promote(n2, "1.0", "test").status, 200)
            self.assertEqual(self.patch_props(n2, "1.0", props).status, 200)
            if with_build:
                self.assertEqual(self.put_build(n2, "1.0", NATIVE_BUILD).status, 201)
            r = self.assertError(self.promote(n2, "1.0", "prod"), 412, "gates_unmet")
            err = r.json()["error"]
            self.assertEqual([(g["gate"], g.get("key")) for g in err["unmet"]], [expect], err)
            self.assertEqual(len(err["checked"]), 3)
            self.assertEqual(self.srv.json(self.vpath(n2, "1.0"))["stage"], "test")
        # A property that is not set at all is reported as such.
        n3, _ = self.make_version()
        self.promote(n3, "1.0", "test")
        err = self.promote(n3, "1.0", "prod").json()["error"]
        self.assertEqual(len(err["unmet"]), 3)
        self.assertIsNone(err["unmet"][0]["actual"])

    def test_dry_run_checks_without_changing(self):
        name, _ = self.make_version()
        r = self.promote(name, "1.0", "test", dry_run=True)
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.json()["dry_run"])
        self.assertEqual(r.json()["stage"], "dev")
        self.assertFalse(r.json()["changed"])
        self.assertEqual(self.srv.json(self.vpath(name, "1.0"))["stage"], "dev")
        hist = self.srv.json(self.vpath(name, "1.0", "history"))["items"]
        self.assertFalse([e for e in hist if e["action"] == "version.promote"])

    def test_forward_one_step_and_noop_and_backwards(self):
        name, _ = self.make_version()
        self.assertError(self.promote(name, "1.0", "prod"), 409, "stage_skip")
        r = self.promote(name, "1.0", "test", reason="nightly green")
        self.assertEqual(r.status, 200, r)
        j = r.json()
        self.assertEqual((j["stage"], j["changed"]), ("test", True))
        self.assertIsInstance(j["event"], int)
        again = self.promote(name, "1.0", "test")
        self.assertEqual(again.status, 200, again)
        self.assertFalse(again.json()["changed"])
        self.assertError(self.promote(name, "1.0", "dev"), 409, "stage_backwards")
        self.assertError(self.promote(name, "1.0", "staging"), 400, "unknown_stage")
        self.make_prod_ready(name)
        self.assertEqual(self.promote(name, "1.0", "prod").json()["stage"], "prod")
        promos = [e for e in self.srv.json(self.vpath(name, "1.0", "history"))["items"]
                  if e["action"] == "version.promote"]
        self.assertEqual([(e["details"]["from"], e["details"]["to"]) for e in promos],
                         [("dev", "test"), ("test", "prod")])
        self.assertEqual(promos[0]["details"]["reason"], "nightly green")
        self.assertEqual(promos[1]["details"]["gates"][0]["actual"], "true")
        self.assertEqual(promos[1]["actor"], "admin")

    def test_concurrent_promotions_write_one_stage_change(self):
        name, _ = self.make_version()
        results = []

        def go():
            results.append(self.promote(name, "1.0", "test"))
        ts = [threading.Thread(target=go) for _ in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(sorted(r.status for r in results), [200] * 8)
        self.assertEqual(sum(1 for r in results if r.json()["changed"]), 1)
        promos = [e for e in self.srv.json(self.vpath(name, "1.0", "history"))["items"]
                  if e["action"] == "version.promote"]
        self.assertEqual(len(promos), 1)

    def test_frozen_files_after_first_stage(self):
        name, files = self.make_version()
        self.assertEqual(self.promote(name, "1.0", "test").status, 200)
        r = self.assertError(self.srv.put("/repos/rel/%s/1.0/extra.txt" % name, b"late"), 409,
                             "version_frozen")
        self.assertIn("frozen", r.json()["error"]["message"])
        self.assertIn("test", r.json()["error"]["message"])
        # A retry of a file it already holds is still the safe 200.
        r = self.srv.put("/repos/rel/%s/1.0/app.bin" % name, files["app.bin"])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.srv.get("/repos/rel/%s/1.0/extra.txt" % name).status, 404)
        self.assertEqual(self.srv.json(self.vpath(name, "1.0"))["file_count"], 2)
        # Checksum deploy of known content is refused the same way.
        r = self.srv.put("/repos/rel/%s/1.0/copy.bin" % name,
                         headers={"X-Checksum-Deploy": "true",
                                  "X-Checksum-Sha256": sha256_hex(files["app.bin"])})
        self.assertError(r, 409, "version_frozen")

    def test_bad_requests(self):
        name, _ = self.make_version()
        p = self.vpath(name, "1.0", "promote")
        self.assertError(self.srv.post_json(p, b"{not json"), 400, "bad_json")
        self.assertError(self.srv.post_json(p, b"[1]"), 400, "bad_json")
        self.assertError(self.srv.post_json(p, {"to": "test", "force": True}), 400, "bad_request")
        self.assertError(self.srv.post_json(p, {"to": 3}), 400, "bad_request")
        self.assertError(self.srv.post_json(p, {"reason": "x"}), 400, "bad_request")
        self.assertError(self.srv.post_json(p, {"to": "test", "dry_run": "yes"}), 400,
                         "bad_request")
        self.assertError(self.srv.post_json(p, {"to": "test", "reason": "a\nb"}), 400,
                         "bad_request")
        self.assertError(self.srv.post_json(p, b'{"to":"test","to":"prod"}'), 400, "bad_json")
        self.assertError(self.srv.post_json(p, b"x" * (70 * 1024)), 413, "payload_too_large")
        self.assertError(self.srv.request("GET", p), 405, "method_not_allowed")
        self.assertError(self.promote(name, "9.9", "test"), 404, "not_found")
        self.assertError(self.srv.post_json("/api/v1/repos/rel/%s/1.0/explode" % name, {}),
                         404, "not_found")
        self.assertError(self.srv.post_json("/api/v1/repos/rel/%s/%%2e%%2e/promote" % name,
                                            {"to": "test"}), 400, "invalid_path")
        self.assertEqual(self.srv.json(self.vpath(name, "1.0"))["stage"], "dev")
        self.assertServing()


class MoreBadInputTest(Base):
    """Each refusal the handlers name, sent once; nothing changes and the server keeps serving."""

    def test_bad_inputs_change_nothing(self):
        name, _ = self.make_version()
        before = self.srv.storage()
        up = "/repos/rel/%s/2.0/a.bin" % name
        # Upload properties: the same key twice, more than 64, a key over 128 characters.
        hdrs = [("X-Arca-Property", "k=1"), ("X-Arca-Property", "k=2")]
        r = self.srv.raw_request(("PUT %s HTTP/1.1\r\nHost: x\r\n%s%s"
                                  "Content-Length: 1\r\n\r\na" % (
                                      up, self.srv.auth_line(),
                                      "".join("%s: %s\r\n" % h for h in hdrs))).encode())
        self.assertError(r, 400, "bad_property")
        many = "".join("X-Arca-Property: k%d=v\r\n" % i for i in range(65))
        r = self.srv.raw_request(("PUT %s HTTP/1.1\r\nHost: x\r\n%s%s"
                                  "Content-Length: 1\r\n\r\na" % (
                                      up, self.srv.auth_line(), many)).encode())
        self.assertError(r, 400, "bad_property")
        self.assertError(self.srv.put(up, b"a", headers={"X-Arca-Property": "k" * 129 + "=v"}),
                         400, "bad_property")
        self.assertEqual(self.srv.get(up).status, 404)
        # Stage views: no stage segment.
        self.assertError(self.srv.get("/stages//rel/%s/1.0/app.bin" % name), 400, "invalid_path")
        self.assertError(self.srv.get("/stages/dev"), 400, "invalid_path")
        # A build record over 256 KiB.
        big = dict(NATIVE_BUILD, extra={"blob": "x" * (300 * 1024)})
        self.assertError(self.put_build(name, "1.0", big), 413, "payload_too_large")
        # Deletion with an unknown field, a 5-segment version path, history with a bad cursor.
        self.assertError(self.srv.request("DELETE", self.vpath(name, "1.0"),
                                          body=b'{"reason": "x", "force": true}'), 400,
                         "bad_request")
        self.assertError(self.srv.post_json(self.vpath(name, "1.0", "promote") + "/more",
                                            {"to": "test"}), 404, "not_found")
        for cursor in ("h0", "q00", "hzz"):  # odd length, another listing's tag, not hex
            self.assertError(self.srv.get(self.vpath(name, "1.0", "history") + "?cursor=" +
                                          cursor), 400, "bad_request", cursor)
        self.assertError(self.srv.get(self.vpath(name, "9.9", "properties")), 404, "not_found")
        self.assertError(self.srv.get(self.vpath(name, "9.9", "history")), 404, "not_found")
        # Credentials: listings and trace need one.
        self.assertError(self.srv.get("/api/v1/deployments", auth=False), 401)
        self.assertError(self.srv.get("/api/v1/trace/rel/%s/1.0" % name, auth=False), 401)
        # Search: at most 9 property filters.
        q = "&".join("property.k%d=v" % i for i in range(10))
        self.assertError(self.srv.get("/api/v1/search?" + q), 400, "bad_request")
        self.assertStorageUnchanged(before)
        self.assertEqual(self.srv.json(self.vpath(name, "1.0"))["stage"], "dev")
        self.assertServing()

    def test_deleted_version_refuses_deployments(self):
        name, _ = self.make_version()
        self.assertEqual(self.srv.delete(self.vpath(name, "1.0")).status, 200)
        self.assertError(self.srv.post_json("/api/v1/deployments",
                                            {"environment": "prod", "target": "t", "repo": "rel",
                                             "name": name, "version": "1.0"}), 410,
                         "version_deleted")
        self.assertError(self.patch_props(name, "1.0", {"k": "v"}), 410, "version_deleted")


class RevokeDeleteStageViewTest(Base):

    def test_stage_views_404_410_200_and_latest(self):
        name, files = self.make_version(version="1.0")
        self.make_version(name=name, version="2.0")
        self.make_version(name=name, version="3.0")
        view = "/stages/%s/rel/%s/%s/app.bin"
        # Never reached: 404.
        self.assertError(self.srv.get(view % ("test", name, "1.0")), 404, "not_found")
        self.assertError(self.srv.get(view % ("prod", name, "latest")), 404, "not_found")
        self.assertError(self.srv.get(view % ("nosuch", name, "1.0")), 404, "not_found")
        # The first stage serves every live version; latest is the newest.
        r = self.srv.get(view % ("dev", name, "latest"))
        self.assertEqual((r.status, r.header("x-arca-resolved-version")), (200, "3.0"), r)
        for v in ("1.0", "2.0"):
            self.assertEqual(self.promote(name, v, "test").status, 200)
            self.make_prod_ready(name, v)
            self.assertEqual(self.promote(name, v, "prod").status, 200)
        r = self.srv.get(view % ("prod", name, "1.0"))
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, files["app.bin"])
        # Reached prod, so it is also in test (at least that stage).
        self.assertEqual(self.srv.get(view % ("test", name, "1.0")).status, 200)
        r = self.srv.get(view % ("prod", name, "latest"))
        self.assertEqual((r.status, r.header("x-arca-resolved-version")), (200, "2.0"))
        held = {"If-Modified-Since": r.header("last-modified"), "If-None-Match": r.header("etag")}
        self.assertEqual(self.srv.get(view % ("prod", name, "latest"), headers=held).status, 304)
        self.assertEqual(self.srv.head(view % ("prod", name, "latest")).status, 200)
        # Revoke 2.0: 410 through every view and the raw path; latest falls back to 1.0.
        r = self.srv.post_json(self.vpath(name, "2.0", "revoke"), {"reason": "CVE-2026-0001"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["revoked"]["reason"], "CVE-2026-0001")
        for stage in ("dev", "test", "prod"):
            r = self.assertError(self.srv.get(view % (stage, name, "2.0")), 410,
                                 "version_revoked")
            self.assertIn("CVE-2026-0001", r.json()["error"]["message"])
        self.assertError(self.srv.get("/repos/rel/%s/2.0/app.bin" % name), 410,
                         "version_revoked")
        r = self.srv.get(view % ("prod", name, "latest"))
        self.assertEqual(r.header("x-arca-resolved-version"), "1.0")
        # A client holding 2.0 through "latest" must get 1.0 now, not a 304: on an alias only
        # the ETag validates (1.0 is older than the date it holds).
        for h in (held, {"If-Modified-Since": held["If-Modified-Since"]}):
            with self.subTest(h=sorted(h)):
                r = self.srv.get(view % ("prod", name, "latest"), headers=h)
                self.assertEqual((r.status, r.header("x-arca-resolved-version")), (200, "1.0"))
                self.assertEqual(r.body, files["app.bin"])
        self.assertError(self.srv.put("/stages/prod/rel/%s/1.0/x" % name, b"x"), 405)

    def test_revoke_wins_over_promotion_and_shows_in_trace(self):
        name, files = self.make_version()
        self.assertError(self.srv.post_json(self.vpath(name, "1.0", "revoke"), {}), 400,
                         "bad_request")
        self.assertEqual(self.srv.post_json(self.vpath(name, "1.0", "revoke"),
                                            {"reason": "bad build"}).status, 200)
        again = self.srv.post_json(self.vpath(name, "1.0", "revoke"), {"reason": "twice"})
        self.assertEqual(again.status, 200)
        self.assertFalse(again.json()["changed"])
        self.assertEqual(again.json()["revoked"]["reason"], "bad build")
        self.assertError(self.promote(name, "1.0", "test"), 409, "version_revoked")
        self.assertError(self.srv.put("/repos/rel/%s/1.0/new.bin" % name, b"n"), 409,
                         "version_revoked")
        # Revoked versions stay for the audit trail: not deletable.
        self.assertError(self.srv.delete(self.vpath(name, "1.0")), 409, "version_revoked")
        t = self.srv.json("/api/v1/trace/" + sha256_hex(files["app.bin"]))
        vt = t["coordinates"][0]["trace"]
        self.assertEqual(vt["revoked"]["reason"], "bad build")
        self.assertEqual(len(vt["revocations"]), 1)
        self.assertEqual(vt["revocations"][0]["reason"], "bad build")
        self.assertIn(vt["revocations"][0]["event"]["seq"], vt["events"])

    def test_delete_only_in_first_stage_leaves_tombstone(self):
        name, files = self.make_version()
        before = self.srv.storage()
        r = self.srv.request("DELETE", self.vpath(name, "1.0"),
                             body=json.dumps({"reason": "broken"}).encode())
        self.assertEqual(r.status, 200, r)
        self.assertIsNotNone(r.json()["deleted"])
        after = self.srv.storage()
        self.assertEqual(after["artifact_count"], before["artifact_count"] - 2)
        self.assertEqual(self.srv.get("/repos/rel/%s/1.0/app.bin" % name).status, 404)
        # The tombstone: the version shows as deleted, its coordinates are not reused.
        self.assertIsNotNone(self.srv.json(self.vpath(name, "1.0"))["deleted"])
        self.assertError(self.srv.put("/repos/rel/%s/1.0/app.bin" % name, b"again"), 409,
                         "version_deleted")
        self.assertError(self.promote(name, "1.0", "test"), 410, "version_deleted")
        listed = self.srv.json("/api/v1/repos/rel/%s" % name)["items"]
        self.assertEqual(listed, [])
        # Still traceable from its content, with the deletion recorded.
        t = self.srv.json("/api/v1/trace/" + sha256_hex(files["app.bin"]))
        self.assertEqual(len(t["coordinates"][0]["trace"]["deletions"]), 1)
        self.assertEqual(t["coordinates"][0]["trace"]["deletions"][0]["reason"], "broken")
        # A promoted version can never be deleted.
        n2, _ = self.make_version()
        self.promote(n2, "1.0", "test")
        self.assertError(self.srv.delete(self.vpath(n2, "1.0")), 409, "version_promoted")
        self.assertError(self.srv.delete(self.vpath(n2, "9.9")), 404, "not_found")


class PropertiesBuildTest(Base):

    def test_properties_at_upload_patch_and_history(self):
        name = "props-" + uniq()
        r = self.srv.put("/repos/rel/%s/1.0/a.bin" % name, b"a",
                         headers={"X-Arca-Property": "build.number=17"})
        self.assertEqual(r.status, 201, r)
        r = self.patch_props(name, "1.0", {"qa.owner": "ann", "build.number": "18"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["properties"], {"build.number": "18", "qa.owner": "ann"})
        r = self.patch_props(name, "1.0", {"qa.owner": None})
        self.assertEqual(r.json()["properties"], {"build.number": "18"})
        # Setting the same value again writes nothing.
        r = self.patch_props(name, "1.0", {"build.number": "18"})
        self.assertFalse(r.json()["changed"])
        j = self.srv.json(self.vpath(name, "1.0", "properties"))
        self.assertEqual(j["properties"], {"build.number": "18"})
        hist = [(h["changes"], h["previous"]) for h in j["history"]]
        self.assertEqual(hist, [({"build.number": "17"}, None),
                                ({"build.number": "18", "qa.owner": "ann"},
                                 {"build.number": "17", "qa.owner": None}),
                                ({"qa.owner": None}, {"qa.owner": "ann"})])
        # Search finds current values only.
        s = self.srv.json("/api/v1/search?property.build.number=18&repo=rel")
        self.assertIn(name, [i["name"] for i in s["items"]])
        s = self.srv.json("/api/v1/search?property.build.number=17")
        self.assertNotIn(name, [i["name"] for i in s["items"]])

    def test_bad_properties(self):
        name, _ = self.make_version()
        p = self.vpath(name, "1.0", "properties")
        for body, code in [(b"{}", "bad_request"), (b"[]", "bad_json"),
                           (json.dumps({"bad key": "v"}).encode(), "bad_property"),
                           (json.dumps({"k": 5}).encode(), "bad_property"),
                           (json.dumps({"k": "a\u0000b"}).encode(), ("bad_json", "bad_property")),
                           (json.dumps({"k": "a\u0007b"}).encode(), "bad_property"),
                           (json.dumps({"k": "x" * 2000}).encode(), "bad_property")]:
            self.assertError(self.srv.request("PATCH", p, body=body), 400, code, body[:40])
        self.assertError(self.srv.put("/repos/rel/%s/1.1/a" % name, b"a",
                                      headers={"X-Arca-Property": "novalue"}), 400,
                         "bad_property")
        self.assertError(self.srv.put("/repos/rel/%s/1.1/a" % name, b"a",
                                      headers={"X-Arca-Property": "bad key=1"}), 400,
                         "bad_property")
        self.assertEqual(self.srv.get("/repos/rel/%s/1.1/a" % name).status, 404)
        self.assertEqual(self.srv.json(p)["properties"], {})

    def test_native_build_record(self):
        name, _ = self.make_version()
        self.assertError(self.srv.get(self.vpath(name, "1.0", "build")), 404, "not_found")
        r = self.put_build(name, "1.0", NATIVE_BUILD)
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json()["build"]["commit"], NATIVE_BUILD["commit"])
        self.assertEqual(self.put_build(name, "1.0", NATIVE_BUILD).status, 200)
        b = self.srv.json(self.vpath(name, "1.0", "build"))["build"]
        self.assertEqual(b["format"], "arca-build-v1")
        self.assertEqual(b["inputs"][0]["sha256"], "a" * 64)
        for bad in [{"pipeline": "x"},
                    dict(NATIVE_BUILD, commit="not-hex"),
                    dict(NATIVE_BUILD, inputs=[{"sha256": "short"}]),
                    dict(NATIVE_BUILD, colour="blue"),
                    dict(NATIVE_BUILD, run_id="")]:
            self.assertError(self.put_build(name, "1.0", bad), 400, "bad_build_record", bad)
        self.assertError(self.put_build(name, "9.9", NATIVE_BUILD), 404, "not_found")
        # Replaced in the first stage; frozen afterwards.
        self.assertEqual(self.put_build(name, "1.0", dict(NATIVE_BUILD, run_id="4712")).status,
                         201)
        self.promote(name, "1.0", "test")
        self.assertError(self.put_build(name, "1.0", NATIVE_BUILD), 409, "version_frozen")

    def statement(self, subjects):
        return {"_type": "https://in-toto.io/Statement/v1",
                "subject": [{"name": n, "digest": {"sha256": d}} for n, d in subjects],
                "predicateType": "https://slsa.dev/provenance/v1",
                "predicate": {
                    "buildDefinition": {
                        "buildType": "https://example.com/ci/v1",
                        "externalParameters": {"ref": "refs/heads/main"},
                        "resolvedDependencies": [
                            {"uri": "git+https://git.example/app.git",
                             "digest": {"gitCommit": "0123456789abcdef0123456789abcdef01234567"}},
                            {"uri": "pkg:generic/zlib@1.3", "digest": {"sha256": "b" * 64}}]},
                    "runDetails": {"builder": {"id": "https://ci.example/runner"},
                                   "metadata": {"invocationId": "run-99",
                                                "startedOn": "2026-11-20T10:00:00Z",
                                                "finishedOn": "2026-11-20T10:05:00Z"}}}}

    def test_slsa_provenance_subjects_must_match(self):
        name, files = self.make_version()
        good = self.statement([("app.bin", sha256_hex(files["app.bin"]))])
        # A subject whose digest is no file of the version, or a named file with other bytes.
        r = self.assertError(self.put_build(name, "1.0", self.statement([("app.bin", "c" * 64)])),
                             422, "subject_mismatch")
        self.assertEqual(r.json()["error"]["expected"], sha256_hex(files["app.bin"]))
        self.assertError(self.put_build(name, "1.0", self.statement([("other.bin", "c" * 64)])),
                         422, "subject_mismatch")
        self.assertError(self.put_build(name, "1.0", dict(good, predicateType="x")), 400,
                         "bad_build_record")
        self.assertError(self.put_build(name, "1.0", dict(good, subject=[])), 400,
                         "bad_build_record")
        self.assertError(self.srv.get(self.vpath(name, "1.0", "build")), 404)
        r = self.put_build(name, "1.0", good)
        self.assertEqual(r.status, 201, r)
        b = r.json()["build"]
        self.assertEqual(b["format"], "slsa-provenance-v1")
        self.assertEqual(b["commit"], "0123456789abcdef0123456789abcdef01234567")
        self.assertEqual(b["builder"], "https://ci.example/runner")
        self.assertEqual(b["run_id"], "run-99")
        self.assertEqual(b["inputs"], [{"sha256": "b" * 64, "uri": "pkg:generic/zlib@1.3"}])
        self.assertEqual(b["statement"]["_type"], "https://in-toto.io/Statement/v1")


class DeploySearchTraceTest(Base):

    def test_deployments_newest_first(self):
        name, _ = self.make_version()
        env = "env-" + uniq()
        for target in ("web-1", "web-2", "web-3"):
            r = self.srv.post_json("/api/v1/deployments",
                                   {"environment": env, "target": target, "repo": "rel",
                                    "name": name, "version": "1.0"})
            self.assertEqual(r.status, 201, r)
        j = self.srv.json("/api/v1/deployments?environment=" + env)
        self.assertEqual([d["target"] for d in j["items"]], ["web-3", "web-2", "web-1"])
        self.assertEqual(j["items"][0]["actor"], "admin")
        page = self.srv.json("/api/v1/deployments?limit=2&environment=" + env)
        self.assertEqual(len(page["items"]), 2)
        rest = self.srv.json("/api/v1/deployments?environment=%s&cursor=%s"
                             % (env, urllib.parse.quote(page["next_cursor"])))
        self.assertEqual([d["target"] for d in rest["items"]], ["web-1"])
        for bad in [{"environment": env, "target": "t", "repo": "rel", "name": name},
                    {"environment": "bad env", "target": "t", "repo": "rel", "name": name,
                     "version": "1.0"},
                    {"environment": env, "target": "t", "repo": "rel", "name": name,
                     "version": "1.0", "extra": "x"}]:
            self.assertError(self.srv.post_json("/api/v1/deployments", bad), 400, None, bad)
        self.assertError(self.srv.post_json("/api/v1/deployments",
                                            {"environment": env, "target": "t", "repo": "rel",
                                             "name": name, "version": "7.7"}), 404, "not_found")
        self.assertError(self.srv.get("/api/v1/deployments?environment=a%20b"), 400)

    def test_trace_content_under_two_coordinates(self):
        data = os.urandom(3000)
        n1, n2 = "tr1-" + uniq(), "tr2-" + uniq()
        self.assertEqual(self.srv.put("/repos/rel/%s/1.0/app.bin" % n1, data).status, 201)
        self.srv.put("/repos/rel/%s/1.0/reports/junit.xml" % n1, b"<x/>")
        self.assertEqual(self.srv.put("/repos/rel/%s/2.0/renamed.bin" % n2, data).status, 201)
        self.assertEqual(self.put_build(n1, "1.0", NATIVE_BUILD).status, 201)
        self.assertEqual(self.promote(n1, "1.0", "test", reason="qa ok").status, 200)
        self.srv.post_json("/api/v1/deployments", {"environment": "staging", "target": "s1",
                                                   "repo": "rel", "name": n1, "version": "1.0"})
        t = self.srv.json("/api/v1/trace/" + sha256_hex(data))
        self.assertEqual(t["size"], 3000)
        coords = {(c["name"], c["version"], c["path"]): c for c in t["coordinates"]}
        self.assertEqual(set(coords), {(n1, "1.0", "app.bin"), (n2, "2.0", "renamed.bin")})
        c1 = coords[(n1, "1.0", "app.bin")]
        self.assertEqual(c1["uploaded"]["by"], "admin")
        vt = c1["trace"]
        self.assertEqual(vt["build"]["commit"], NATIVE_BUILD["commit"])
        self.assertEqual([(p["from"], p["to"], p["reason"]) for p in vt["promotions"]],
                         [("dev", "test", "qa ok")])
        self.assertEqual(vt["promotions"][0]["gates"][0]["path"], "reports/junit.xml")
        self.assertEqual([d["environment"] for d in vt["deployments"]], ["staging"])
        for fact in vt["promotions"] + vt["deployments"] + vt["build_records"]:
            self.assertIn(fact["event"]["seq"], vt["events"])
            self.assertEqual(len(fact["event"]["hash"]), 64)
        self.assertIsNone(coords[(n2, "2.0", "renamed.bin")]["trace"]["build"])
        # By coordinate: the same facts plus the uploads.
        vt2 = self.srv.json("/api/v1/trace/rel/%s/1.0" % n1)
        self.assertEqual(vt2["promotions"], vt["promotions"])
        self.assertEqual(sorted(u["path"] for u in vt2["uploads"]),
                         ["app.bin", "reports/junit.xml"])
        self.assertError(self.srv.get("/api/v1/trace/" + "0" * 64), 404, "not_found")
        self.assertError(self.srv.get("/api/v1/trace/" + "z" * 64), 400)
        self.assertError(self.srv.get("/api/v1/trace/rel/%s/9.9" % n1), 404, "not_found")
        self.assertError(self.srv.get("/api/v1/trace/a/b"), 400)

    def test_search(self):
        name = "srch-" + uniq()
        datas = {}
        for v in ("1.0", "2.0", "3.0"):
            datas[v] = os.urandom(50)
            self.srv.put("/repos/rel/%s/%s/app.bin" % (name, v), datas[v],
                         headers={"X-Arca-Property": "team=blue-" + name})
            self.srv.put("/repos/rel/%s/%s/reports/junit.xml" % (name, v), b"<ok/>")
        self.promote(name, "2.0", "test")
        q = lambda s: self.srv.json("/api/v1/search?" + s)
        self.assertEqual([i["version"] for i in q("stage=test&repo=rel&name=" + name)["items"]],
                         ["2.0"])
        self.assertEqual(sorted(i["version"] for i in q("stage=dev&repo=rel&name=" + name)["items"]),
                         ["1.0", "3.0"])
        hits = q("sha256=" + sha256_hex(datas["3.0"]))["items"]
        self.assertEqual([(h["version"], h["path"]) for h in hits], [("3.0", "app.bin")])
        import hashlib
        hits = q("sha1=" + hashlib.sha1(datas["1.0"]).hexdigest())["items"]
        self.assertEqual([h["version"] for h in hits], ["1.0"])
        prop = "property.team=blue-" + name
        got = q(prop)
        self.assertEqual(sorted(i["version"] for i in got["items"]), ["1.0", "2.0", "3.0"])
        # The property index drives the lookup: only its entries are read.
        self.assertEqual(got["scanned"], 3)
        self.assertEqual([i["version"] for i in q(prop + "&stage=test")["items"]], ["2.0"])
        # Paging.
        seen, cursor = [], None
        for _ in range(5):
            s = "limit=1&" + prop + ("&cursor=" + urllib.parse.quote(cursor) if cursor else "")
            page = q(s)
            seen += [i["version"] for i in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        self.assertEqual(sorted(seen), ["1.0", "2.0", "3.0"])
        self.assertEqual(q(prop + "&created_after=2000-01-01T00:00:00Z")["items"].__len__(), 3)
        self.assertEqual(q(prop + "&created_before=2000-01-01")["items"], [])
        for bad in ["sha256=xyz", "sha1=12", "stage=nope", "colour=red", "created_after=yesterday",
                    "name=x", "cursor=zz", "property.bad%20key=1", "limit=0"]:
            self.assertError(self.srv.get("/api/v1/search?" + bad), 400, None, bad)
        self.assertError(self.srv.get("/api/v1/search", auth=False), 401)


class ConfigTest(unittest.TestCase):

    def test_gate_errors_name_the_line(self):
        srv = ArcaServer(config="[stages]\norder = dev, prod\n[gate.prod]\n"
                                "require_property = ticket ~ ([\n")
        try:
            with self.assertRaises(AssertionError) as ctx:
                srv.start()
            self.assertIn(":4: require_property: bad pattern", str(ctx.exception))
        finally:
            srv.cleanup()

    def test_custom_stages_and_skip(self):
        with ArcaServer(config="[stages]\norder = build, qa, live\nallow_skip = true\n") as srv:
            r = srv.put("/repos/rel/skip/1.0/a", b"a")
            self.assertEqual(r.status, 201)
            r = srv.post_json("/api/v1/repos/rel/skip/1.0/promote", {"to": "live"})
            self.assertEqual((r.status, r.json()["stage"]), (200, "live"), r)
            self.assertEqual(srv.get("/stages/qa/rel/skip/1.0/a").status, 200)
            self.assertEqual(srv.get("/stages/build/rel/skip/latest/a").status, 200)


class ScopeTest(Base):

    def token(self, scopes):
        r = self.srv.post_json("/api/v1/tokens", {"name": "t" + uniq(), "scopes": scopes})
        self.assertEqual(r.status, 201, r)
        return r.json()["token"]

    def test_promotion_needs_the_stage_scope(self):
        name, _ = self.make_version()
        self.promote(name, "1.0", "test")
        self.make_prod_ready(name)
        tok = self.token(["read@rel", "promote:test@rel"])
        r = self.srv.post_json(self.vpath(name, "1.0", "promote"), {"to": "prod"}, token=tok)
        self.assertError(r, 403, "forbidden")
        self.assertIn("promote:prod", r.json()["error"]["message"])
        for path, body in [("revoke", {"reason": "x"})]:
            self.assertError(self.srv.post_json(self.vpath(name, "1.0", path), body, token=tok),
                             403, "forbidden")
        self.assertError(self.srv.request("DELETE", self.vpath(name, "1.0"), token=tok), 403)
        self.assertError(self.srv.request("PATCH", self.vpath(name, "1.0", "properties"),
                                          body=b'{"a":"b"}', token=tok), 403)
        self.assertError(self.srv.post_json("/api/v1/deployments",
                                            {"environment": "e", "target": "t", "repo": "rel",
                                             "name": name, "version": "1.0"}, token=tok), 403)
        self.assertError(self.srv.post_json(self.vpath(name, "1.0", "promote"), {"to": "prod"},
                                            auth=False), 401)
        prod = self.token(["promote:prod@rel"])
        r = self.srv.post_json(self.vpath(name, "1.0", "promote"), {"to": "prod"}, token=prod)
        self.assertEqual(r.status, 200, r)
        hist = self.srv.json(self.vpath(name, "1.0", "history"))["items"]
        self.assertTrue(hist[-1]["actor"].startswith("t"), hist[-1])
        # Search and trace show only what the caller may read.
        other = self.token(["read@elsewhere"])
        s = self.srv.get("/api/v1/search?repo=rel&name=" + name, token=other).json()
        self.assertEqual(s["items"], [])


if __name__ == "__main__":
    unittest.main()
