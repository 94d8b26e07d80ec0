-- Shared by the wrk scripts: counts answers by status in every thread, and prints one
-- line of figures when the run ends:
--   RESULT <name> requests=… rps=… p50=…ms p95=…ms p99=…ms max=…ms errors=… statuses=…
-- <name> comes from the LOAD_NAME environment variable.

threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + count
    end
  end
  local parts = {}
  local failed = 0
  for status, count in pairs(counts) do
    table.insert(parts, status .. ":" .. count)
    if status >= 400 then failed = failed + count end
  end
  table.sort(parts)
  local errors = failed + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  local ms = function(us) return string.format("%.2f", us / 1000) end
  io.write(string.format(
    "RESULT %s requests=%d rps=%.0f p50=%sms p95=%sms p99=%sms max=%sms errors=%d statuses=%s\n",
    os.getenv("LOAD_NAME") or "run", summary.requests, summary.requests / (summary.duration / 1e6),
    ms(latency:percentile(50)), ms(latency:percentile(95)), ms(latency:percentile(99)), ms(latency.max),
    errors, table.concat(parts, ",")))
end
