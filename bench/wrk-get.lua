-- wrk script: GET one URL repeatedly, counting responses by class.
-- Used by bench.sh for the "4 KiB GET" row. A non-2xx response is not a
-- success: bench.sh computes req/s from the 2xx count printed here.
--
-- Env: BENCH_TOKEN (optional) is sent as "Authorization: Bearer ..."
local threads = {}
local nthreads = 0

function setup(thread)
   nthreads = nthreads + 1
   thread:set("id", nthreads)
   table.insert(threads, thread)
end

function init(args)
   ok, non2xx, first_bad = 0, 0, 0
   local tok = os.getenv("BENCH_TOKEN")
   if tok and tok ~= "" then
      wrk.headers["Authorization"] = "Bearer " .. tok
   end
end

function response(status, headers, body)
   if status >= 200 and status <= 299 then
      ok = ok + 1
   else
      non2xx = non2xx + 1
      if first_bad == 0 then first_bad = status end
   end
end

function done(summary, latency, requests)
   local okc, bad, fb = 0, 0, 0
   for _, t in ipairs(threads) do
      okc = okc + (t:get("ok") or 0)
      bad = bad + (t:get("non2xx") or 0)
      local f = t:get("first_bad") or 0
      if fb == 0 and f ~= 0 then fb = f end
   end
   local e = summary.errors
   io.write(string.format(
      "BENCH_RESULT ok=%d non2xx=%d first_bad_status=%d requests=%d duration_us=%d " ..
      "sock_connect=%d sock_read=%d sock_write=%d sock_timeout=%d p50_us=%d p99_us=%d\n",
      okc, bad, fb, summary.requests, summary.duration,
      e.connect, e.read, e.write, e.timeout,
      latency:percentile(50), latency:percentile(99)))
end
