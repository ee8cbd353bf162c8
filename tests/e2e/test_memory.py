"""Memory: the server's peak RSS (VmHWM) stays under 64 MiB while a 1 GiB
artifact is uploaded and downloaded.  The test never holds the 1 GiB itself:
the body is generated chunk by chunk and the download is hashed as it streams.

Environment: ARCA_MEMORY_BYTES (default 1 GiB; must be >= 1 GiB for the
requirement), ARCA_MEMORY_LIMIT_MIB (default 64)."""

import hashlib
import json
import http.client
import os
import threading
import time
import unittest

from harness import HOST, ArcaServer, ArcaTestMixin

MiB = 1 << 20
GiB = 1 << 30
SIZE = int(os.environ.get("ARCA_MEMORY_BYTES", str(GiB)))
LIMIT = int(os.environ.get("ARCA_MEMORY_LIMIT_MIB", "64")) * MiB


def chunks(size, seed_blocks):
    """Deterministic, non-repeating-per-MiB content, 1 MiB at a time."""
    i = 0
    sent = 0
    while sent < size:
        n = min(MiB, size - sent)
        blk = seed_blocks[i % len(seed_blocks)]
        yield (i.to_bytes(8, "little") + blk[8:])[:n]
        sent += n
        i += 1


class MemoryTest(ArcaTestMixin, unittest.TestCase):
    def test_1gib_upload_download_rss(self):
        self.run_big(chunked=False)

    def test_1gib_chunked_upload_slow_reader_rss(self):
        """Chunked upload; the download's reader stalls for 2 s first, so a
        server without back-pressure would buffer the file in memory."""
        self.run_big(chunked=True, stall=2.0)

    def run_big(self, chunked, stall=0.0):
        self.assertGreaterEqual(SIZE, GiB)
        seed_blocks = [os.urandom(MiB) for _ in range(8)]
        path = "/repos/big/blob/1.0/one-gib.bin"
        with ArcaServer() as srv:
            self.srv = srv
            samples = []
            stop = threading.Event()

            def sampler():
                while not stop.is_set():
                    try:
                        samples.append(srv.rss_now())
                    except Exception:
                        pass
                    time.sleep(0.1)

            th = threading.Thread(target=sampler, daemon=True)
            th.start()
            try:
                # ---- upload, Content-Length, streamed from a generator
                h = hashlib.sha256()
                conn = http.client.HTTPConnection(HOST, srv.port, timeout=300)
                t0 = time.monotonic()
                conn.putrequest("PUT", path)
                if chunked:
                    conn.putheader("Transfer-Encoding", "chunked")
                else:
                    conn.putheader("Content-Length", str(SIZE))
                for k, v in srv.auth_headers().items():
                    conn.putheader(k, v)
                conn.endheaders()
                for c in chunks(SIZE, seed_blocks):
                    h.update(c)
                    if chunked:
                        conn.send(b"%x\r\n" % len(c))
                        conn.send(c)
                        conn.send(b"\r\n")
                    else:
                        conn.send(c)
                if chunked:
                    conn.send(b"0\r\n\r\n")
                resp = conn.getresponse()
                body = resp.read()
                conn.close()
                up_s = time.monotonic() - t0
                expected = h.hexdigest()
                self.assertEqual(resp.status, 201, body[:500])
                j = json.loads(body)
                self.assertEqual(j["size"], SIZE)
                self.assertEqual(j["checksums"]["sha256"], expected)
                peak_after_upload = srv.rss_peak()

                # ---- download, read in chunks, hashed as it goes
                conn = http.client.HTTPConnection(HOST, srv.port, timeout=300)
                t0 = time.monotonic()
                conn.request("GET", path, headers=srv.auth_headers())
                resp = conn.getresponse()
                self.assertEqual(resp.status, 200)
                self.assertEqual(resp.getheader("Content-Length"), str(SIZE))
                self.assertEqual(resp.getheader("ETag"), '"%s"' % expected)
                if stall:
                    time.sleep(stall)
                d = hashlib.sha256()
                n = 0
                while True:
                    c = resp.read(MiB)
                    if not c:
                        break
                    d.update(c)
                    n += len(c)
                conn.close()
                down_s = time.monotonic() - t0
                self.assertEqual(n, SIZE, "short download")
                self.assertEqual(d.hexdigest(), expected, "downloaded bytes differ")

                # ---- a range from the middle, for good measure
                mid = SIZE // 2 + 12345
                r = srv.get(path, headers={"Range": "bytes=%d-%d" % (mid, mid + 99)})
                self.assertEqual(r.status, 206)
                blk = seed_blocks[(mid // MiB) % len(seed_blocks)]
                want = ((mid // MiB).to_bytes(8, "little") + blk[8:])[mid % MiB:mid % MiB + 100]
                self.assertEqual(r.body, want)

                peak = srv.rss_peak()
            finally:
                stop.set()
                th.join(5)
            print("\n1 GiB (%s): upload %.1f s (%.0f MB/s), download %.1f s (%.0f MB/s); "
                  "VmHWM after upload %.1f MiB, after download %.1f MiB, max sampled RSS "
                  "%.1f MiB" % ("chunked" if chunked else "Content-Length", up_s, SIZE / up_s / 1e6, down_s, SIZE / down_s / 1e6,
                                peak_after_upload / MiB, peak / MiB,
                                max(samples or [0]) / MiB))
            self.assertLess(peak_after_upload, LIMIT, "VmHWM after 1 GiB upload: %.1f MiB"
                            % (peak_after_upload / MiB))
            self.assertLess(peak, LIMIT, "VmHWM after 1 GiB download: %.1f MiB" % (peak / MiB))
            srv.assert_alive()


if __name__ == "__main__":
    unittest.main()
