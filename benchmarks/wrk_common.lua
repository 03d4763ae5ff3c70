-- What benchmarks/wrk_redeem.lua and wrk_read.lua share (loaded from LEDGER_WRK_COMMON):
-- each thread counts its answers by status (and wrk_read.lua its mismatches); `report` sums
-- them over the threads and prints one line of JSON for benchmarks/http_wrk.py.

local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function count(status)
  counts[status] = (counts[status] or 0) + 1
end

function report(summary, latency)
  local statuses, wrong = {}, 0
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("counts")) do
      statuses[status] = (statuses[status] or 0) + n
    end
    wrong = wrong + (thread:get("mismatches") or 0)
  end
  local parts = {}
  for status, n in pairs(statuses) do
    table.insert(parts, string.format('"%d":%d', status, n))
  end
  local errors = summary.errors
  io.write(string.format(
    'WRK-JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"socket_errors":%d,"mismatches":%d,"statuses":{%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, errors.connect + errors.read + errors.write + errors.timeout, wrong,
    table.concat(parts, ",")))
end
