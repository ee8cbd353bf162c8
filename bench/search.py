#!/usr/bin/env python3
"""Search and trace at scale: loads N versions (default 100000) into a fresh
arcad, then times indexed lookups (sha256, sha1, a unique property, a shared
property, stage) against an unindexed walk (a filter on created_before that
matches nothing, which must read version records page by page), and prints
p50/p99 latency and the `scanned` count each query reports.  The point: the
indexed lookups read a handful of index entries whatever N is.

    ARCAD=build/server/arcad python3 bench/search.py [N]

Env: BENCH_THREADS (upload threads, default 8), BENCH_QUERIES (per kind, 200),
BENCH_KEEP=1 keeps the data dir.
"""
import hashlib
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCAD = os.environ.get("ARCAD", os.path.join(ROOT, "build/server/arcad"))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
THREADS = int(os.environ.get("BENCH_THREADS", "8"))
QUERIES = int(os.environ.get("BENCH_QUERIES", "200"))
NAMES = 100  # versions spread over this many artifact names


def content(i):
    return b"artifact %d\n" % i


def main():
    data = tempfile.mkdtemp(prefix="arca-search-bench-")
    conf = os.path.join(data, "arcad.conf")
    with open(conf, "w") as f:
        f.write("[server]\naccess_log = false\n")
    log = open(os.path.join(data, "arcad.log"), "w")
    proc = subprocess.Popen([ARCAD, "--listen", "127.0.0.1:0", "--data", data, "--config", conf],
                            stdout=log, stderr=log)
    try:
        for _ in range(200):
            if os.path.exists(os.path.join(data, "arcad.port")):
                break
            time.sleep(0.05)
        port = int(open(os.path.join(data, "arcad.port")).read())
        token = open(os.path.join(data, "admin.token")).read().strip()
        hdr = {"Authorization": "Bearer " + token}

        def worker(start, errors):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            for i in range(start, N, THREADS):
                h = dict(hdr)
                h["X-Arca-Property"] = "build.id=%d" % i
                c.request("PUT", "/repos/bench/app-%d/%d.0/app.bin" % (i % NAMES, i),
                          body=content(i), headers=h)
                r = c.getresponse()
                r.read()
                if r.status != 201:
                    errors.append(r.status)
                    return
                if i % 97 == 0:  # a shared property on ~1% of versions
                    c.request("PATCH", "/api/v1/repos/bench/app-%d/%d.0/properties"
                              % (i % NAMES, i), body=b'{"team": "blue"}', headers=hdr)
                    r = c.getresponse()
                    r.read()
                if i % 1000 == 0:  # ~0.1% promoted to test
                    c.request("POST", "/api/v1/repos/bench/app-%d/%d.0/promote" % (i % NAMES, i),
                              body=b'{"to": "test"}', headers=hdr)
                    r = c.getresponse()
                    r.read()
            c.close()

        t0 = time.monotonic()
        errors = []
        ts = [threading.Thread(target=worker, args=(k, errors)) for k in range(THREADS)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        load_s = time.monotonic() - t0
        if errors:
            raise SystemExit("upload failed: %r" % errors[:5])
        print("loaded %d versions (%d threads) in %.1f s: %.0f uploads/s"
              % (N, THREADS, load_s, N / load_s))

        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

        def query(q):
            t = time.monotonic()
            c.request("GET", "/api/v1/search?" + q, headers=hdr)
            r = c.getresponse()
            body = r.read()
            dt = time.monotonic() - t
            if r.status != 200:
                raise SystemExit("search %s: %d %s" % (q, r.status, body[:200]))
            return dt, json.loads(body)

        import random
        rnd = random.Random(1)
        kinds = [
            ("sha256", lambda: "sha256=" + hashlib.sha256(content(rnd.randrange(N))).hexdigest()),
            ("sha1", lambda: "sha1=" + hashlib.sha1(content(rnd.randrange(N))).hexdigest()),
            ("property (unique)", lambda: "property.build.id=%d" % rnd.randrange(N)),
            ("property (1%, limit 100)", lambda: "property.team=blue&limit=100"),
            ("stage=test (limit 100)", lambda: "stage=test&limit=100"),
            ("unindexed page (limit 100)", lambda: "repo=bench&created_before=2000-01-01"),
        ]
        print("%-28s %10s %10s %12s %8s" % ("query", "p50 ms", "p99 ms", "scanned", "hits"))
        for label, make in kinds:
            lat, scanned, hits = [], [], []
            n = QUERIES if "unindexed" not in label else max(5, QUERIES // 20)
            for _ in range(n):
                dt, j = query(make())
                lat.append(dt * 1000)
                scanned.append(j["scanned"])
                hits.append(len(j["items"]))
            lat.sort()
            print("%-28s %10.2f %10.2f %12d %8d" % (label, statistics.median(lat),
                                                    lat[min(len(lat) - 1, int(len(lat) * 0.99))],
                                                    int(statistics.median(scanned)),
                                                    int(statistics.median(hits))))
        # Trace of one binary.
        lat = []
        for _ in range(QUERIES):
            t = time.monotonic()
            c.request("GET", "/api/v1/trace/" + hashlib.sha256(content(rnd.randrange(N))).hexdigest(),
                      headers=hdr)
            r = c.getresponse()
            r.read()
            lat.append((time.monotonic() - t) * 1000)
            assert r.status == 200, r.status
        lat.sort()
        print("%-28s %10.2f %10.2f" % ("trace/{sha256}", statistics.median(lat),
                                        lat[int(len(lat) * 0.99)]))
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(data, ignore_errors=True)
        else:
            print("data kept in", data)


if __name__ == "__main__":
    main()
