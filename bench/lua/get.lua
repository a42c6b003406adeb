-- GET scenarios (discovery, JWKS, userinfo, Core API reads). BENCH_AUTH, when set, is sent as the
-- Authorization header verbatim (e.g. "Bearer eyJ..." or "Basic a2V5Oi4uLg==").
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")
setup, done = common.setup, common.done
if os.getenv("BENCH_DELAY_MS") then delay = common.delay end

local auth = os.getenv("BENCH_AUTH")
if auth and auth ~= "" then
  wrk.headers["Authorization"] = auth
end
