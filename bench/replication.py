#!/usr/bin/env python3
"""Replication between two real centres on loopback (issue 5): lag and catch-up.

1. Lag: a steady stream of uploads (4-64 KiB, at --lag-rate per second, one
   thread) to dc1; a second thread polls dc2 with HEAD for every uploaded path
   (pending paths oldest first, one round every 5 ms) and records the time from
   the 201 at dc1 to the first 200 at dc2.  Run once at the e2e Cluster's poll
   interval (50 ms) and once at the production default (200 ms).
2. Catch-up: dc2 cut off, a backlog of --events uploads totalling
   --backlog-bytes to dc1 (not timed), then heal and time until dc2's cursor
   on dc1 reaches dc1's log size; events/s, MB/s (10^6 bytes), dc2's peak RSS,
   and the state digests are checked equal at the end.

    python3 bench/replication.py [--events N] [--backlog-bytes SIZE] [--lag-uploads N]
                                 [--lag-rate R] [--skip-lag] [--skip-catchup] ...

The centres come from tests/e2e/harness.py (Cluster): every link goes through
an in-process Python TCP proxy, so the bench process's CPU is part of the data
path (with TCP_NODELAY, like arcad and libcurl).  See bench/README.md.
"""
import argparse
import collections
import http.client
import math
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if not os.environ.get("ARCAD"):
    os.environ["ARCAD"] = os.path.join(ROOT, "build", "server", "arcad")
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import harness  # noqa: E402
from harness import HOST, Cluster, RssSampler  # noqa: E402

ARCAD = harness.ARCAD
MIB = 1 << 20
PROD_POLL_MS = 200          # [replication] poll_interval_ms default (common/config.c)
HARBOR_BYTES, HARBOR_S = 3e9, 18 * 60   # "a 3 GB blob taking 18 minutes between two cities"
LAG_POLL_S = 0.005          # the dc2 poller's round interval
LAG_ROUND_MAX = 32          # pending paths checked per round at most
LAG_GIVE_UP_S = 60.0        # a path not readable at dc2 this long after its 201 counts as lost


# ---------------------------------------------------------------------------- helpers

def parse_size(s):
    """'1G', '16M', '512K', '1GiB', '1048576' -> bytes (K/M/G are binary)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)(?:i?[bB])?\s*", s)
    if not m:
        raise argparse.ArgumentTypeError("not a size: %r (e.g. 1G, 16M, 4096)" % s)
    return int(float(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[
        m.group(2).lower()])


def pct(sorted_vals, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_vals:
        return float("nan")
    return sorted_vals[max(0, min(len(sorted_vals) - 1, math.ceil(p / 100.0 * len(sorted_vals)) - 1))]


def effective_poll_ms(centre):
    """replication.poll_interval_ms as arcad itself reads the centre's config file."""
    out = subprocess.run([ARCAD, "config", "--config", centre.config_path, "--data", centre.data],
                         capture_output=True, text=True, timeout=30)
    m = re.search(r"^replication\.poll_interval_ms = (\d+)$", out.stdout, re.M)
    if out.returncode != 0 or not m:
        raise RuntimeError("arcad config failed: %s %s" % (out.stdout[-300:], out.stderr[-300:]))
    return int(m.group(1))


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reset_hwm(pid):
    """Resets VmHWM to the current RSS (Linux >= 4.0: clear_refs 5).  True if it worked."""
    try:
        with open("/proc/%d/clear_refs" % pid, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Conn:
    """A keep-alive HTTP connection to one centre with its admin token; reconnects
    once when the server has closed an idle connection."""

    def __init__(self, centre, token=None):
        self.port = centre.port
        self.hdr = centre.auth_headers(token)
        self.c = None

    def request(self, method, path, body=None):
        for attempt in (0, 1):
            if self.c is None:
                self.c = http.client.HTTPConnection(HOST, self.port, timeout=120)
            try:
                self.c.request(method, path, body=body, headers=self.hdr)
                r = self.c.getresponse()
                data = r.read()
                return r.status, r, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.c.close()
                self.c = None
                if attempt:
                    raise

    def close(self):
        if self.c:
            self.c.close()


class Payload:
    """Unique bodies without generating fresh random bytes for each: a 16-byte
    tag and then a slice of one random pool (content addressing must not
    deduplicate any two uploads)."""

    def __init__(self, seed, pool=32 * MIB):
        self.pool = random.Random(seed).randbytes(pool)
        self.seed = seed

    def body(self, k, size):
        tag = b"%08x%08x" % (self.seed & 0xffffffff, k)
        size = max(size, len(tag))
        n = size - len(tag)
        off = (k * 7919 * 4096) % (len(self.pool) - n) if n < len(self.pool) else 0
        if n <= len(self.pool):
            return tag + self.pool[off:off + n]
        reps = self.pool * (n // len(self.pool) + 1)
        return tag + reps[:n]


def peer_of(centre):
    (p,) = centre.status()["peers"]
    return p


def log_size(cluster, i):
    """Centre i's event-log size (X-Audit-Size of its replication events page), read with
    the replicate-scope token its peers present."""
    r = cluster[i].get("/api/v1/replication/events?after=0&limit=1",
                       token=cluster.repl_tokens[i])
    v = r.header("X-Audit-Size")
    if r.status != 200 or v is None:
        raise RuntimeError("events page of %s: %r" % (cluster[i].centre, r))
    return int(v)


# ---------------------------------------------------------------------------- lag

def run_lag(args, poll_ms, stop):
    """One lag run on a fresh pair of centres; poll_ms None = the Cluster's own setting."""
    extra = "" if poll_ms is None else "[replication]\npoll_interval_ms = %d\n" % poll_ms
    cl = Cluster(2, extra_config=extra, rate=args.link_rate)
    try:
        got_poll = effective_poll_ms(cl[1])
        if poll_ms is not None and got_poll != poll_ms:
            raise RuntimeError("asked for poll_interval_ms %d, arcad reads %d" % (poll_ms, got_poll))
        cl.wait_converged(30)
        print("lag: %d uploads at %.1f/s to dc1, dc2 polls dc1 every %d ms ..."
              % (args.lag_uploads, args.lag_rate, got_poll), flush=True)
        pay = Payload(11)
        rng = random.Random(5)
        pending = collections.OrderedDict()    # path -> monotonic time of its 201
        mu = threading.Lock()
        lags, put_ms, errors = [], [], []
        up_done = threading.Event()
        span = {}

        def uploader():
            c = Conn(cl[0])
            try:
                t0 = time.monotonic() + 0.05
                span["start"] = t0
                for k in range(args.lag_uploads):
                    if stop.is_set():
                        break
                    due = t0 + k / args.lag_rate
                    d = due - time.monotonic()
                    if d > 0:
                        time.sleep(d)
                    body = pay.body(k, rng.randint(4 * 1024, 64 * 1024))
                    path = "/repos/bench/lag/1.%d/f-%d.bin" % (k, k)
                    ts = time.monotonic()
                    st, _, data = c.request("PUT", path, body)
                    t201 = time.monotonic()
                    if st != 201:
                        errors.append("PUT %s at dc1: %d %r" % (path, st, data[:200]))
                        break
                    put_ms.append((t201 - ts) * 1000)
                    with mu:
                        pending[path] = t201
                span["end"] = time.monotonic()
            except Exception as e:  # noqa: BLE001
                errors.append("uploader: %r" % e)
            finally:
                c.close()
                up_done.set()

        def poller():
            c = Conn(cl[1])
            try:
                while not stop.is_set():
                    with mu:
                        batch = list(pending.items())[:LAG_ROUND_MAX]
                    if not batch:
                        if up_done.is_set():
                            return
                        time.sleep(LAG_POLL_S)
                        continue
                    for path, t201 in batch:
                        st, _, _ = c.request("HEAD", path)
                        now = time.monotonic()
                        if st == 200:
                            lags.append((now - t201) * 1000)
                            with mu:
                                del pending[path]
                        elif st != 404:
                            errors.append("HEAD %s at dc2: %d" % (path, st))
                            return
                        elif now - t201 > LAG_GIVE_UP_S:
                            errors.append("%s not readable at dc2 %.0f s after its 201"
                                          % (path, LAG_GIVE_UP_S))
                            return
                    time.sleep(LAG_POLL_S)
            except Exception as e:  # noqa: BLE001
                errors.append("poller: %r" % e)
            finally:
                c.close()

        ths = [threading.Thread(target=f, daemon=True) for f in (uploader, poller)]
        for t in ths:
            t.start()
        for t in ths:
            while t.is_alive():
                t.join(0.5)
        if errors:
            raise RuntimeError("lag run failed: " + "; ".join(errors[:3]))
        if len(lags) != args.lag_uploads:
            raise RuntimeError("lag: %d of %d uploads seen at dc2" % (len(lags), args.lag_uploads))
        cl.wait_converged(60)
        lags.sort()
        put_ms.sort()
        dur = span["end"] - span["start"]
        return {"poll_ms": got_poll, "n": len(lags), "rate": len(lags) / dur if dur > 0 else 0,
                "p50": pct(lags, 50), "p90": pct(lags, 90), "p99": pct(lags, 99),
                "max": lags[-1], "min": lags[0], "put_p50": pct(put_ms, 50),
                "put_p99": pct(put_ms, 99)}
    finally:
        cl.close()


# ---------------------------------------------------------------------------- catch-up

def plan_sizes(events, total, large, seed=3):
    """Sizes of the backlog's uploads: up to half the bytes in `large`-byte files (at most
    one upload in ten), the rest over the other uploads, each uniform in 0.5-1.5x their
    mean; large files spread evenly through the order."""
    rng = random.Random(seed)
    n_large = min(events // 10, (total // 2) // large) if large else 0
    n_small = events - n_large
    small_total = total - n_large * large
    raw = [rng.uniform(0.5, 1.5) for _ in range(n_small)]
    f = small_total / sum(raw)
    small = [max(16, int(x * f)) for x in raw]
    short = small_total - sum(small)  # < n_small unless mean is near the 16-byte floor
    for k in range(max(0, min(short, n_small))):
        small[k] += 1
    sizes = small
    for j in range(n_large):  # spread them out
        sizes.insert((j * 2 + 1) * len(sizes) // (2 * n_large + 1) if n_large else 0, large)
    return sizes, n_large


def run_catchup(args, stop):
    sizes, n_large = plan_sizes(args.events, args.backlog_bytes, args.large_mib * MIB)
    total = sum(sizes)
    cl = Cluster(2, rate=args.link_rate)
    try:
        poll = effective_poll_ms(cl[1])
        cl.wait_converged(30)
        dc1, dc2 = cl[0], cl[1]
        cl.cut()
        time.sleep(0.3)
        before = peer_of(dc2)
        print("catch-up: dc2 cut off; uploading a backlog of %d files (%d of %d MiB), %.1f MiB "
              "in all, to dc1 (not timed) ..." % (len(sizes), n_large, args.large_mib,
                                                  total / MIB), flush=True)
        pay = Payload(23)
        errors = []
        nxt = [0]
        mu = threading.Lock()

        def upload_worker():
            c = Conn(dc1)
            try:
                while not stop.is_set() and not errors:
                    with mu:
                        k = nxt[0]
                        nxt[0] += 1
                    if k >= len(sizes):
                        return
                    path = "/repos/bench/cu-%d/%d.0/f.bin" % (k % 100, k)
                    st, _, data = c.request("PUT", path, pay.body(k, sizes[k]))
                    if st != 201:
                        errors.append("PUT %s: %d %r" % (path, st, data[:200]))
            except Exception as e:  # noqa: BLE001
                errors.append("upload: %r" % e)
            finally:
                c.close()

        t0 = time.monotonic()
        ths = [threading.Thread(target=upload_worker, daemon=True) for _ in range(args.upload_threads)]
        for t in ths:
            t.start()
        for t in ths:
            while t.is_alive():
                t.join(0.5)
        if stop.is_set():
            raise KeyboardInterrupt
        if errors:
            raise RuntimeError("backlog upload failed: " + "; ".join(errors[:3]))
        up_s = time.monotonic() - t0
        target = log_size(cl, 0)
        mid = peer_of(dc2)
        if mid["cursor"] != before["cursor"]:
            raise RuntimeError("dc2 moved while cut off: %r -> %r" % (before, mid))
        print("catch-up: backlog in dc1 after %.1f s (%.0f uploads/s); dc1's log has %d events, "
              "dc2's cursor is at %d; healing ..." % (up_s, len(sizes) / up_s, target,
                                                      mid["cursor"]), flush=True)

        hwm_reset = reset_hwm(dc2.pid)
        rss_start = dc2.rss_now()
        cpu0 = {n: cpu_seconds(c.pid) for n, c in (("dc1", dc1), ("dc2", dc2))}
        self0 = time.process_time()
        timeout = args.catchup_timeout or (120 + len(sizes) * 0.2 + total / 1e6)
        samples = []
        first_progress = None
        with RssSampler(dc2, every=0.2) as rs:
            t_heal = time.monotonic()
            cl.heal()
            while True:
                if stop.is_set():
                    raise KeyboardInterrupt
                now = time.monotonic()
                try:
                    p = peer_of(dc2)
                except (AssertionError, OSError) as e:
                    p = None
                    err = str(e)
                if p is not None:
                    samples.append((now - t_heal, p["cursor"], p["bytes_fetched"]))
                    if first_progress is None and p["cursor"] > mid["cursor"]:
                        first_progress = now - t_heal
                    if (p["connected"] and p["events_behind"] == 0
                            and p["cursor"] == p["peer_log_size"] and p["cursor"] >= target):
                        break
                if now - t_heal > timeout:
                    raise RuntimeError("dc2 not caught up %.0f s after heal: %r"
                                       % (timeout, p if p is not None else err))
                time.sleep(0.2)
            elapsed = time.monotonic() - t_heal
        hwm = dc2.rss_peak()
        cpu = {n: cpu_seconds(c.pid) - cpu0[n] for n, c in (("dc1", dc1), ("dc2", dc2))}
        self_cpu = time.process_time() - self0
        after = p
        digest = cl.wait_converged(120 + total / 20e6)
        events = after["cursor"] - mid["cursor"]
        fetched = after["bytes_fetched"] - mid["bytes_fetched"]
        blobs = after["blobs_fetched"] - mid["blobs_fetched"]
        steady = elapsed - (first_progress or 0)
        return {"poll_ms": poll, "uploads": len(sizes), "n_large": n_large, "bytes": total,
                "events": events, "blobs": blobs, "fetched": fetched, "elapsed": elapsed,
                "first_progress": first_progress or 0.0,
                "ev_s": events / elapsed, "mb_s": fetched / 1e6 / elapsed,
                "ev_s_steady": events / steady if steady > 0 else 0,
                "mb_s_steady": fetched / 1e6 / steady if steady > 0 else 0,
                "rss_start": rss_start, "rss_sampled": rs.max,
                "hwm": hwm if hwm_reset else None, "cpu": cpu, "self_cpu": self_cpu,
                "digest": digest, "upload_s": up_s}
    finally:
        cl.close()


# ---------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=10000, help="backlog uploads (default 10000)")
    ap.add_argument("--backlog-bytes", type=parse_size, default=1 << 30,
                    help="backlog total size, K/M/G binary (default 1G)")
    ap.add_argument("--large-mib", type=int, default=16,
                    help="size of the backlog's large files in MiB; up to half the bytes go into "
                         "them (default 16; 0 = all files about the same size)")
    ap.add_argument("--lag-uploads", type=int, default=500, help="uploads in each lag run (500)")
    ap.add_argument("--lag-rate", type=float, default=20.0, help="lag uploads per second (20)")
    ap.add_argument("--upload-threads", type=int, default=4,
                    help="threads uploading the (untimed) backlog (4)")
    ap.add_argument("--link-rate", type=int, default=0,
                    help="throttle every proxy link to this many bytes/s per direction (0 = off)")
    ap.add_argument("--catchup-timeout", type=float, default=0,
                    help="seconds after heal before giving up (default from the backlog size)")
    ap.add_argument("--skip-lag", action="store_true")
    ap.add_argument("--skip-catchup", action="store_true")
    args = ap.parse_args()
    if args.events < 1 or args.lag_uploads < 1 or args.lag_rate <= 0 or args.upload_threads < 1:
        ap.error("--events, --lag-uploads, --lag-rate and --upload-threads must be positive")
    if args.backlog_bytes < 16 * args.events:
        ap.error("--backlog-bytes must allow at least 16 bytes per event")
    if not os.access(ARCAD, os.X_OK):
        sys.exit("replication bench: arcad not found at %s (set ARCAD)" % ARCAD)
    if not args.skip_catchup:
        need = int(2.5 * args.backlog_bytes) + (1 << 30)
        free = shutil.disk_usage(tempfile.gettempdir()).free
        if free < need:
            sys.exit("replication bench: %s has %.1f GiB free; the backlog needs about %.1f GiB "
                     "(two centres' copies and partial files)"
                     % (tempfile.gettempdir(), free / (1 << 30), need / (1 << 30)))

    stop = threading.Event()

    def on_term(signum, frame):
        stop.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)  # also when started in the background (SIGINT ignored)
    version = subprocess.run([ARCAD, "--version"], capture_output=True, text=True).stdout.strip()
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print("replication bench: %s (%s), 2 centres on 127.0.0.1, links through %s "
          "(rate %s), load %s, %d cores"
          % (version, ARCAD, "harness.Proxy", args.link_rate or "unlimited", load,
             os.cpu_count()), flush=True)

    lag = []
    cu = None
    try:
        if not args.skip_lag:
            lag.append(run_lag(args, None, stop))
            if lag[0]["poll_ms"] != PROD_POLL_MS:
                lag.append(run_lag(args, PROD_POLL_MS, stop))
        if not args.skip_catchup:
            cu = run_catchup(args, stop)
    except KeyboardInterrupt:
        stop.set()
        print("replication bench: interrupted; servers stopped", file=sys.stderr)
        sys.exit(130)

    kv = []
    print()
    if lag:
        print("%-34s %10s %10s %10s %10s %10s %12s" % ("lag, 201 at dc1 -> 200 at dc2",
                                                       "p50 ms", "p90 ms", "p99 ms", "max ms",
                                                       "min ms", "uploads/s"))
        for r in lag:
            print("%-34s %10.1f %10.1f %10.1f %10.1f %10.1f %12.1f"
                  % ("  poll_interval_ms = %d (%d uploads)" % (r["poll_ms"], r["n"]), r["p50"],
                     r["p90"], r["p99"], r["max"], r["min"], r["rate"]))
            kv += ["lag%d_p50_ms=%.1f" % (r["poll_ms"], r["p50"]),
                   "lag%d_p90_ms=%.1f" % (r["poll_ms"], r["p90"]),
                   "lag%d_p99_ms=%.1f" % (r["poll_ms"], r["p99"]),
                   "lag%d_max_ms=%.1f" % (r["poll_ms"], r["max"])]
        print("  (dc1 PUT latency p50/p99: %s; lag resolution ~%d ms: dc2 is polled every %d ms)"
              % (", ".join("%.1f/%.1f ms" % (r["put_p50"], r["put_p99"]) for r in lag),
                 LAG_POLL_S * 1000, LAG_POLL_S * 1000))
        print()
    if cu:
        harbor = HARBOR_BYTES / 1e6 / HARBOR_S
        rows = [
            ("backlog", "%d uploads (%d x %d MiB), %.1f MiB"
             % (cu["uploads"], cu["n_large"], args.large_mib, cu["bytes"] / MIB)),
            ("dc2 poll_interval_ms", "%d (retry_max_seconds 1, as the e2e Cluster)" % cu["poll_ms"]),
            ("heal -> caught up", "%.2f s (first event after %.2f s)"
             % (cu["elapsed"], cu["first_progress"])),
            ("events taken in (log entries)", "%d (blobs fetched %d)" % (cu["events"], cu["blobs"])),
            ("bytes fetched", "%.1f MB" % (cu["fetched"] / 1e6)),
            ("catch-up events/s", "%.0f (%.0f from the first event)"
             % (cu["ev_s"], cu["ev_s_steady"])),
            ("catch-up MB/s", "%.1f (%.1f from the first event)" % (cu["mb_s"], cu["mb_s_steady"])),
            ("dc2 RSS at heal", "%.1f MiB" % (cu["rss_start"] / MIB)),
            ("dc2 peak RSS during catch-up", "%s (VmHWM, reset at heal); %.1f MiB sampled VmRSS"
             % ("%.1f MiB" % (cu["hwm"] / MIB) if cu["hwm"] is not None else "n/a",
                cu["rss_sampled"] / MIB)),
            ("CPU s during catch-up", "dc1 %.1f, dc2 %.1f, bench+proxies %.1f"
             % (cu["cpu"]["dc1"], cu["cpu"]["dc2"], cu["self_cpu"])),
            ("state digests", "equal (%s)" % cu["digest"]),
        ]
        print("catch-up after a cut")
        for k, v in rows:
            print("  %-32s %s" % (k, v))
        print()
        print("anchors (issue 5; not the same network: those are between cities, this is loopback)")
        print("  Harbor: a 3 GB blob in 18 min between two cities = %.2f MB/s, large-blob "
              "timeouts with no resume" % harbor)
        print("  Artifactory federated repositories: need synchronized clocks, resolve conflicts "
              "by last write (no figure)")
        print("  arca catch-up MB/s / Harbor's: %.1fx" % (cu["mb_s"] / harbor))
        print()
        peak = cu["hwm"] if cu["hwm"] is not None else cu["rss_sampled"]
        kv += ["catchup_uploads=%d" % cu["uploads"], "catchup_bytes=%d" % cu["bytes"],
               "catchup_s=%.2f" % cu["elapsed"], "catchup_first_event_s=%.2f" % cu["first_progress"],
               "catchup_events_s=%.0f" % cu["ev_s"], "catchup_mb_s=%.1f" % cu["mb_s"],
               "catchup_rss_peak_mib=%.1f" % (peak / MIB),
               "harbor_mb_s=%.2f" % harbor, "vs_harbor=%.1f" % (cu["mb_s"] / harbor)]
    print("RESULT " + " ".join(kv))


if __name__ == "__main__":
    main()
