-- wrk script for scripts/bench.sh: method and Authorization from the environment, and a
-- one-line JSON summary (latency percentiles in microseconds, requests/s, errors).
local method = os.getenv("WRK_METHOD") or "GET"
local auth = os.getenv("WRK_AUTH") or ""

wrk.method = method
if auth ~= "" then
  wrk.headers["Authorization"] = auth
end
wrk.headers["User-Agent"] = "tcr-adapter-bench"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"requests":%d,"rps":%.1f,"non2xx":%d,"errors":%d}\n',
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean,
    summary.requests, summary.requests / (summary.duration / 1e6),
    e.status, e.connect + e.read + e.write + e.timeout))
end
