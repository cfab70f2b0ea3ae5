-- ratecard: charge every matched rule of one request, all or nothing.
-- Reply format 1. Runs on any Redis-compatible server with Lua scripting
-- (Redis 5 to 7, Valkey, KeyDB, Dragonfly); no module.
--
-- KEYS[1..n]  one key per matched rule (n >= 1), all in one hash slot.
-- ARGV[1]     flags: 0, or 1 = peek (decide, write nothing at all).
-- ARGV[2]     cost, 1 .. 2^32-1.
-- Then 3 per rule i, at ARGV[3i .. 3i+2]:
--   "g", T, burst    GCRA: emission interval T ns (>= 1), burst (1 .. 2^32-1),
--                    T * burst <= 2^51.
--   "w", limit, P    fixed window: limit (1 .. 2^32-1) per P ns, P a whole
--                    number of microseconds, 1000 <= P <= 2^51.
-- Then, optionally, the clock: whole seconds (0 .. 4e9) and nanoseconds
-- (0 .. 999999999) of the caller's wall clock since the Unix epoch, at
-- ARGV[3n+3 .. 3n+4]. Without them (2 + 3n arguments) now is the server's
-- TIME.
--
-- Reply: an array of 2 + 4n integers: 1 (the format), committed (1 when the
-- new states were stored), then per rule {code, remaining, reset_ns,
-- retry_after_ns}; code 1 = conforms, 0 = denied, 2 = never fits (cost
-- above the burst or the limit).
-- Errors: "RATECARD BADARG i" (ARGV[i] invalid; 0 = the counts),
-- "RATECARD BADSTATE i" (KEYS[i] holds a value this script never writes),
-- "RATECARD BADCLOCK 0" (the server's TIME is out of range); a key of another
-- type gives the server's WRONGTYPE.
--
-- Stored states (every SET has PX = ceil(reset / 1 ms), so a key is gone
-- exactly when its quota is whole again and an absent key is a fresh one):
--   GCRA: the TAT, ns since the epoch, in decimal (Redis keeps it as one
--         machine integer).
--   window: "index:count", index = floor(now / P), never wrapped.
--
-- The math is core/src/gcra.rs `decide` and core/src/window.rs `decide`.
-- Exactness: Lua numbers are doubles, exact for integers below 2^53. The
-- clock stays split in (s, ns) and the TAT string is split the same way, so
-- no absolute nanosecond count is ever a number. GCRA works on TAT - now,
-- which is exact when |TAT - now| < 5e6 s; further ahead is wild (beyond
-- 2 * 2^51 ns), further behind is replenished. Every other GCRA quantity is
-- at most 3 * 2^51 ns. Windows work in microseconds: now_us <= 4e15 < 2^52.
-- floor(a / b) and ceil(a / b) are exact for integers 0 <= a < 2^53: a
-- quotient that is not an integer is at least 1/b from one, and the
-- rounding error is at most a / (b * 2^53) < 1/b.
--
-- Each argument costs the server more than the check it feeds (it is
-- parsed, copied and interned), hence the optional clock.

local KEYS, ARGV = KEYS, ARGV
local call, tonumber, floor, ceil = redis.call, tonumber, math.floor, math.ceil
local MAX_SPAN = 2251799813685248 -- 2^51 ns, about 26 days
local MAX_U32 = 4294967295

-- Every check below is written out, not called: this runs on every request.
-- `x and x >= lo and x <= hi and x % 1 == 0` also refuses nil, nan and inf.
local n, na = #KEYS, #ARGV
local gateway = na == 4 + 3 * n -- the caller's clock follows the rules
if n < 1 or not (gateway or na == 2 + 3 * n) then
  return redis.error_reply("RATECARD BADARG 0")
end
local peek = ARGV[1]
if peek == "1" then
  peek = true
elseif peek == "0" then
  peek = false
else
  return redis.error_reply("RATECARD BADARG 1")
end
local cost = tonumber(ARGV[2])
if not (cost and cost >= 1 and cost <= MAX_U32 and cost % 1 == 0) then
  return redis.error_reply("RATECARD BADARG 2")
end

local s, ns -- now: whole seconds and nanoseconds since the epoch
if gateway then
  s, ns = tonumber(ARGV[na - 1]), tonumber(ARGV[na])
  if not (s and s >= 0 and s <= 4e9 and s % 1 == 0) then
    return redis.error_reply("RATECARD BADARG " .. na - 1)
  end
  if not (ns and ns >= 0 and ns <= 999999999 and ns % 1 == 0) then
    return redis.error_reply("RATECARD BADARG " .. na)
  end
else
  -- Redis 5 and 6 replicate a script verbatim if so configured, and then
  -- refuse writes after TIME; Redis 7 (which has REDIS_VERSION_NUM) never.
  local effects = not redis.REDIS_VERSION_NUM and redis.replicate_commands
  if effects then
    effects()
  end
  local t = call("TIME")
  s, ns = tonumber(t[1]), tonumber(t[2])
  if not (s and s <= 4e9 and ns) then
    return redis.error_reply("RATECARD BADCLOCK 0")
  end
  ns = ns * 1000
end

-- The reply, sized for one rule up front; put[i]: the state to store for
-- rule i, if any, with PX = ceil(reset / 1 ms).
local r, put = { 1, 0, 0, 0, 0, 0 }, {}
local all = true -- every rule conforms

for i = 1, n do
  local a = 3 * i
  local alg, p1, p2 = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local v = call("GET", KEYS[i])
  local code, left, reset, retry
  if alg == "g" then
    local t, burst = p1, p2
    if not (t and t >= 1 and t <= MAX_SPAN and t % 1 == 0) then
      return redis.error_reply("RATECARD BADARG " .. a + 1)
    end
    local span = burst and t * burst -- tau + T
    if not (burst and burst >= 1 and burst <= MAX_U32 and burst % 1 == 0 and span <= MAX_SPAN) then
      return redis.error_reply("RATECARD BADARG " .. a + 2)
    end
    local d = 0 -- TAT - now in ns; any d <= 0 decides alike
    if v then
      -- Digits only, at least nine: seconds, then nine digits of nanoseconds.
      if #v < 9 or not string.find(v, "^%d+$") then
        return redis.error_reply("RATECARD BADSTATE " .. i)
      end
      local ds = (tonumber(string.sub(v, 1, -10)) or 0) - s
      if ds > 5e6 then
        d = 1 / 0
      elseif ds >= -5e6 then
        d = ds * 1e9 + (tonumber(string.sub(v, -9)) - ns)
      end
    end
    local wild = 2 * span
    if wild < span + 1e9 then
      wild = span + 1e9
    end
    local clamped = d > wild
    if clamped then
      d = span -- only a wild clock puts a TAT there: one burst ahead
    elseif d < 0 then
      d = 0
    end
    -- d is now max(TAT, now) - now
    local new = d + cost * t
    if cost > burst then
      code, reset, retry = 2, d, 0
    elseif new <= span then
      code, left, reset, retry = 1, floor((span - new) / t), new, 0
    else
      code, reset, retry = 0, d, new - span
    end
    if code ~= 1 then
      left = d < span and floor((span - d) / t) or 0
    end
    if code == 1 or clamped then
      local at = ns + reset -- the new TAT is now + reset
      local carry = floor(at / 1e9)
      put[i] = string.format("%d%09d", s + carry, at - carry * 1e9)
    end
  elseif alg == "w" then
    local limit, p = p1, p2
    if not (limit and limit >= 1 and limit <= MAX_U32 and limit % 1 == 0) then
      return redis.error_reply("RATECARD BADARG " .. a + 1)
    end
    if not (p and p >= 1000 and p <= MAX_SPAN and p % 1000 == 0) then
      return redis.error_reply("RATECARD BADARG " .. a + 2)
    end
    local sub_us = ns % 1000
    local now_us = s * 1e6 + (ns - sub_us) / 1000
    local p_us = p / 1000
    local cur = floor(now_us / p_us)
    local idx, count, ahead, clamped = cur, 0, 0, false
    if v then
      local vi, vc = string.match(v, "^(%d+):(%d+)$")
      if not vi then
        return redis.error_reply("RATECARD BADSTATE " .. i)
      end
      vi, vc = tonumber(vi), tonumber(vc)
      local k = vi - cur
      if vc > 0 and k >= 0 then
        if k <= 2 then
          -- the current window, or one the clock stepped back from
          idx, count, ahead = vi, vc, k
        else
          -- only a wild clock puts a window there: the current one, full
          count, clamped = limit, true
        end
      end
    end
    reset = (ahead + 1) * p - ((now_us - cur * p_us) * 1000 + sub_us)
    left = limit - count
    if left < 0 then
      left = 0
    end
    if cost > limit then
      code, retry = 2, 0
    elseif cost <= left then
      code, left, retry = 1, left - cost, 0
      count = count + cost
    else
      code, retry = 0, reset
    end
    if code == 1 or clamped then
      put[i] = string.format("%d:%d", idx, count)
    end
  else
    return redis.error_reply("RATECARD BADARG " .. a)
  end
  if code ~= 1 then
    all = false
  end
  r[4 * i - 1], r[4 * i], r[4 * i + 1], r[4 * i + 2] = code, left, reset, retry
end

if not peek then
  -- All conform: store every new state. Else only the wild clamps.
  for i = 1, n do
    local value = put[i]
    if value and (all or r[4 * i - 1] ~= 1) then
      call("SET", KEYS[i], value, "PX", ceil(r[4 * i + 1] / 1e6))
    end
  end
  if all then
    r[2] = 1
  end
end
return r
