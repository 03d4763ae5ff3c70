-- wrk script for benchmarks/http_wrk.py: POST /v1/redemptions with a fresh contract and
-- invoice number every time, spread at random over the seeded vouchers and providers.
-- The data file (LEDGER_WRK_DATA) defines `vouchers`, `providers` (tokens) and `service_date`.

dofile(os.getenv("LEDGER_WRK_COMMON"))
local counter = 0

function init(args)
  dofile(os.getenv("LEDGER_WRK_DATA"))
  run = os.getenv("LEDGER_WRK_RUN") or tostring(os.time())
  counts = {}
  math.randomseed(id * 7919 + os.time())
end

function request()
  counter = counter + 1
  -- LEDGER_WRK_RUN tells this run from another (a warm-up) that started in the same second.
  local claim = string.format("W%s-%d-%d", run, id, counter)
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
  count(status)
end

function done(summary, latency, requests)
  report(summary, latency)
end
