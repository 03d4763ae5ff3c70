-- wrk script for benchmarks/http_wrk.py: POST /v1/redemptions with a fresh contract and
-- invoice number every time, spread at random over the seeded vouchers and providers.
-- The data file (LEDGER_WRK_DATA) defines `vouchers`, `providers` (tokens) and `service_date`.

local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  dofile(os.getenv("LEDGER_WRK_DATA"))
  counts = {}
  math.randomseed(id * 7919 + os.time())
end

function request()
  counter = counter + 1
  local claim = string.format("W%d-%d-%d", id, os.time(), counter)
  local body = string.format(
    '{"voucher_id":"%s","contract_no":"C-%s","invoice_no":"INV-%s",' ..
    '"service_category":"testing","contract_amount_fen":%d,"service_date":"%s"}',
    vouchers[math.random(#vouchers)], claim, claim, math.random(1000, 100000), service_date)
  local headers = {
    ["Authorization"] = "Bearer " .. providers[math.random(#providers)],
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = claim,
  }
  return wrk.format("POST", "/v1/redemptions", headers, body)
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
  local statuses = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("counts")) do
      statuses[status] = (statuses[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(statuses) do
    table.insert(parts, string.format('"%d":%d', status, n))
  end
  io.write(string.format(
    'WRK-JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"socket_errors":%d,"mismatches":0,"statuses":{%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout, table.concat(parts, ",")))
end
