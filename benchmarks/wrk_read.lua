-- wrk script for benchmarks/http_wrk.py: GETs of vouchers, balances and payables, each answer
-- compared byte for byte with the answers the benchmark read after the writes (at their
-- position). wrk does not say which request an answer is for, so an answer is consistent when
-- it is one of the expected bodies: each names its voucher or institution, so a stale or wrong
-- answer is none of them.
-- The data file (LEDGER_WRK_DATA) defines `reads`: for each kind of read (vouchers, balances,
-- payables), a list of {path, token, expected body}; a request picks a kind, then one of it.

local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  dofile(os.getenv("LEDGER_WRK_DATA"))
  counts = {}
  mismatches = 0
  expected = {}
  for _, kind in ipairs(reads) do
    for _, r in ipairs(kind) do
      expected[r[3]] = true
    end
  end
  math.randomseed(id * 104729 + os.time())
end

function request()
  local kind = reads[math.random(#reads)]
  local r = kind[math.random(#kind)]
  return wrk.format("GET", r[1], {["Authorization"] = "Bearer " .. r[2]})
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
  if status == 200 and not expected[body] then
    mismatches = mismatches + 1
  end
end

function done(summary, latency, requests)
  local statuses, wrong = {}, 0
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("counts")) do
      statuses[status] = (statuses[status] or 0) + n
    end
    wrong = wrong + thread:get("mismatches")
  end
  local parts = {}
  for status, n in pairs(statuses) do
    table.insert(parts, string.format('"%d":%d', status, n))
  end
  io.write(string.format(
    'WRK-JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"socket_errors":%d,"mismatches":%d,"statuses":{%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout, wrong, table.concat(parts, ",")))
end
