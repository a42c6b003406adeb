-- Core API: POST .../users, JSON, Basic auth with an API key (BENCH_AUTH). Usernames are unique per
-- run (BENCH_RUN), thread and request, so every request creates a new user (no password: hashing
-- is measured by the login scenario).
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")
setup, done = common.setup, common.done

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")
local run = os.getenv("BENCH_RUN") or "r"
local counter = 0

function request()
  counter = counter + 1
  local body = string.format(
    '{"username_type":"email","username":"w%s-%d-%d@bench.example.com","profile":{"first_name":"Bench"}}',
    run, tid, counter)
  return wrk.format(nil, nil, nil, body)
end
