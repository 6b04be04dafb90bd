-- wrk script: POST /internal/tenants/{id}/usage, one increment of api_calls, each request to a
-- tenant drawn at random from BENCH_IDS (one tenant id per line); BENCH_SERVICE_TOKEN is sent
-- as X-Service-Token.
local ids = {}
for line in io.lines(os.getenv("BENCH_IDS")) do
  if #line > 0 then ids[#ids + 1] = line end
end
local body = '{"resource":"api_calls","amount":1}'
local headers = {
  ["Content-Type"] = "application/json",
  ["X-Service-Token"] = os.getenv("BENCH_SERVICE_TOKEN"),
}

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end

function request()
  local id = ids[math.random(#ids)]
  return wrk.format("POST", "/internal/tenants/" .. id .. "/usage", headers, body)
end
