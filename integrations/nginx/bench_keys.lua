-- wrk script: GET /v1/users/me with one of 10 000 production secret keys,
-- drawn at random per request (Clerk's instance row: 1000 per 10 s per key).
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

function init(args)
  math.randomseed(os.time() * 7919 + (id or 0))
  keys = {}
  for i = 1, 10000 do
    keys[i] = { ["Authorization"] = string.format("Bearer sk_live_bench%08d", i) }
  end
end

function request()
  return wrk.format("GET", "/v1/users/me", keys[math.random(10000)])
end
