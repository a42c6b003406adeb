-- POST /introspect (RFC 7662) with client_secret_basic; BENCH_TOKEN is a live user access token
-- (so each call also checks revocation and the session behind it).
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")
setup, done = common.setup, common.done

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = common.basic(os.getenv("BENCH_CLIENT_ID"), os.getenv("BENCH_CLIENT_SECRET"))
wrk.body = "token=" .. common.urlencode(os.getenv("BENCH_TOKEN")) .. "&token_type_hint=access_token"
