-- POST /token, grant_type=refresh_token with rotation: every refresh token is usable exactly once,
-- so each request takes the next unused token of a pre-generated pool (BENCH_TOKENS: one
-- "client_id client_secret refresh_token" per line). Thread t of n takes lines t, t+n, t+2n...,
-- so no token is ever sent twice. A thread that runs out sends an empty refresh_token (a cheap
-- 400) and counts it in "exhausted": the runner treats any exhaustion as an invalid run.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")
setup, done = common.setup, common.done

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"

local pool = {}
local next_index = 1
exhausted = 0

function init(args)
  local n = tonumber(args[1]) or 1
  local i = 0
  for line in io.lines(os.getenv("BENCH_TOKENS")) do
    if (i % n) + 1 == tid then
      local id, secret, token = line:match("^(%S+) (%S+) (%S+)$")
      if token then
        pool[#pool + 1] = {
          { ["Authorization"] = common.basic(id, secret), ["Content-Type"] = "application/x-www-form-urlencoded" },
          "grant_type=refresh_token&refresh_token=" .. token,
        }
      end
    end
    i = i + 1
  end
end

function request()
  local item = pool[next_index]
  if item == nil then
    exhausted = exhausted + 1
    return wrk.format("POST", nil, { ["Content-Type"] = "application/x-www-form-urlencoded" },
      "grant_type=refresh_token&refresh_token=")
  end
  next_index = next_index + 1
  return wrk.format("POST", nil, item[1], item[2])
end
