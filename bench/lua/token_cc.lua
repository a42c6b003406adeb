-- POST /token, grant_type=client_credentials, client_secret_basic. The same script drives AuthPI
-- and the peer: BENCH_CLIENT_ID / BENCH_CLIENT_SECRET / BENCH_SCOPE come from the runner.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")
setup, done = common.setup, common.done
if os.getenv("BENCH_DELAY_MS") then delay = common.delay end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = common.basic(os.getenv("BENCH_CLIENT_ID"), os.getenv("BENCH_CLIENT_SECRET"))
local scope = os.getenv("BENCH_SCOPE") or ""
wrk.body = "grant_type=client_credentials" .. (scope ~= "" and ("&scope=" .. common.urlencode(scope)) or "")
