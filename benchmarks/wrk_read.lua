-- wrk script for benchmarks/http_wrk.py: GETs of vouchers, balances and payables, each answer
-- compared byte for byte with the answers the benchmark read after the writes (at their
-- position). wrk does not say which request an answer is for, so an answer is consistent when
-- it is one of the expected bodies: each names its voucher or institution, so a stale or wrong
-- answer is none of them.
-- The data file (LEDGER_WRK_DATA) defines `reads`: for each kind of read (vouchers, balances,
-- payables), a list of {path, token, expected body}; a request picks a kind, then one of it.

dofile(os.getenv("LEDGER_WRK_COMMON"))

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
  count(status)
  if status == 200 and not expected[body] then
    mismatches = mismatches + 1
  end
end

function done(summary, latency, requests)
  report(summary, latency)
end
