-- POST /{issuer}/token, grant_type=client_credentials, client_secret_basic, rotating over many
-- clients of many issuers (BENCH_CLIENTS: one "path client_id client_secret" per line, path =
-- /{issuer_id}/token). Every thread walks the whole list from its own starting point, so each
-- client is asked in turn and the server's per-issuer / per-client caches hold the whole working
-- set. The requests are formatted once, in init.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")
setup, done = common.setup, common.done

local requests = {}
local next_index = 1

function init(args)
  local scope = os.getenv("BENCH_SCOPE") or ""
  local body = "grant_type=client_credentials" .. (scope ~= "" and ("&scope=" .. common.urlencode(scope)) or "")
  for line in io.lines(os.getenv("BENCH_CLIENTS")) do
    local path, id, secret = line:match("^(%S+) (%S+) (%S+)$")
    if secret then
      requests[#requests + 1] = wrk.format("POST", path, {
        ["Authorization"] = common.basic(id, secret),
        ["Content-Type"] = "application/x-www-form-urlencoded",
      }, body)
    end
  end
  next_index = ((tid - 1) * math.floor(#requests / 2)) % #requests + 1
end

function request()
  local r = requests[next_index]
  next_index = next_index % #requests + 1
  return r
end
