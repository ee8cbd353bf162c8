"""Memory: the server's peak RSS (VmHWM) stays under 64 MiB while a 1 GiB
artifact is uploaded and downloaded.  The test never holds the 1 GiB itself:
the body is generated chunk by chunk and the download is hashed as it streams.

Environment: ARCA_MEMORY_BYTES (default 1 GiB; must be >= 1 GiB for the
requirement), ARCA_MEMORY_LIMIT_MIB (default 64)."""

import http.client
import json
import os
import unittest

from harness import (HOST, ArcaServer, ArcaTestMixin, MiB, RssSampler, stream_download,
                     stream_upload)

GiB = 1 << 30
SIZE = int(os.environ.get("ARCA_MEMORY_BYTES", str(GiB)))
LIMIT = int(os.environ.get("ARCA_MEMORY_LIMIT_MIB", "64")) * MiB


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
            with RssSampler(srv) as rss:
                # ---- upload, Content-Length or chunked, streamed from a generator
                conn = http.client.HTTPConnection(HOST, srv.port, timeout=300)
                status, body, expected, up_s = stream_upload(
                    conn, path, SIZE, seed_blocks, headers=srv.auth_headers(), chunked=chunked)
                conn.close()
                self.assertEqual(status, 201, body[:500])
                j = json.loads(body)
                self.assertEqual(j["size"], SIZE)
                self.assertEqual(j["checksums"]["sha256"], expected)
                peak_after_upload = srv.rss_peak()

                # ---- download, read in chunks, hashed as it goes
                conn = http.client.HTTPConnection(HOST, srv.port, timeout=300)
                resp, n, got, down_s = stream_download(conn, path, headers=srv.auth_headers(),
                                                       stall=stall)
                conn.close()
                self.assertEqual(resp.status, 200)
                self.assertEqual(resp.getheader("Content-Length"), str(SIZE))
                self.assertEqual(resp.getheader("ETag"), '"%s"' % expected)
                self.assertEqual(n, SIZE, "short download")
                self.assertEqual(got, expected, "downloaded bytes differ")

                # ---- a range from the middle, for good measure
                mid = SIZE // 2 + 12345
                r = srv.get(path, headers={"Range": "bytes=%d-%d" % (mid, mid + 99)})
                self.assertEqual(r.status, 206)
                blk = seed_blocks[(mid // MiB) % len(seed_blocks)]
                want = ((mid // MiB).to_bytes(8, "little") + blk[8:])[mid % MiB:mid % MiB + 100]
                self.assertEqual(r.body, want)

                peak = srv.rss_peak()
            print("\n%.2f GiB (%s): upload %.1f s (%.0f MB/s), download %.1f s (%.0f MB/s); "
                  "VmHWM after upload %.1f MiB, after download %.1f MiB, max sampled RSS "
                  "%.1f MiB" % (SIZE / GiB, "chunked" if chunked else "Content-Length", up_s,
                                SIZE / up_s / 1e6, down_s, SIZE / down_s / 1e6,
                                peak_after_upload / MiB, peak / MiB, rss.max / MiB))
            self.assertLess(peak_after_upload, LIMIT, "VmHWM after the upload: %.1f MiB"
                            % (peak_after_upload / MiB))
            self.assertLess(peak, LIMIT, "VmHWM after the download: %.1f MiB" % (peak / MiB))
            srv.assert_alive()


if __name__ == "__main__":
    unittest.main()
