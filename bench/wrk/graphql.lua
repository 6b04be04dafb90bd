-- wrk script: POSTs one GraphQL document with a bearer token.
-- BENCH_BODY: file holding the JSON body; BENCH_AUTH: the Authorization header value.
local f = assert(io.open(os.getenv("BENCH_BODY"), "r"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")
