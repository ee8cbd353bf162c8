-- wrk script: PUT a 4 KiB body to a new path on every request, counting
-- responses by class. Used by bench.sh for the "4 KiB PUT" row.
--
-- Args (after "--"): PREFIX  e.g. /repos/bench/put4k/r123   (arca)
--                            or   /put4k/r123               (nginx WebDAV)
-- Request n of wrk thread t goes to PREFIX/t<t>/<n>.bin, so no two requests
-- (in one run) share a path. Each body is 4096 bytes and unique (it starts
-- with PREFIX, the thread id and the counter), so a content-addressed server
-- cannot skip the write by deduplicating.
-- Env: BENCH_TOKEN (optional) is sent as "Authorization: Bearer ..."
local threads = {}
local nthreads = 0

function setup(thread)
   nthreads = nthreads + 1
   thread:set("id", nthreads)
   table.insert(threads, thread)
end

local BODY_SIZE = 4096
local base

function init(args)
   ok, non2xx, first_bad = 0, 0, 0
   counter = 0
   prefix = args[1] or "/put4k"
   local tok = os.getenv("BENCH_TOKEN")
   if tok and tok ~= "" then
      wrk.headers["Authorization"] = "Bearer " .. tok
   end
   wrk.headers["Content-Type"] = "application/octet-stream"
   -- Fixed pseudo-random filler, different per thread.
   math.randomseed(1234 + id)
   local parts = {}
   for i = 1, BODY_SIZE do parts[i] = string.char(math.random(0, 255)) end
   base = table.concat(parts)
end

function request()
   counter = counter + 1
   local tag = string.format("%s:%04d:%012d:", prefix, id, counter)
   local body = tag .. string.sub(base, #tag + 1)
   local path = string.format("%s/t%d/%d.bin", prefix, id, counter)
   return wrk.format("PUT", path, nil, body)
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
