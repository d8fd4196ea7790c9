-- GCRA, exactly as turnstile-core's Policy::check, as one atomic step inside Redis.
--
-- KEYS[1]  the key's state: its theoretical arrival time (TAT) in integer nanoseconds since the
--          Unix epoch, as a decimal string; absent when the key is idle.
-- ARGV[1]  emission interval T, in ns        ARGV[2]  tolerance tau = burst * T, in ns
-- ARGV[3]  cost (0 peeks)                    ARGV[4]  burst
-- ARGV[5]  now in ns, or "" to use Redis's own clock (TIME), so every replica agrees on "now"
--          whatever its own clock says.
-- ARGV[6]  extra ms before a key expires: 0 with Redis's clock; with an injected clock (tests)
--          Redis's expiry runs on real time while "now" does not, so keys are kept longer.
--
-- Lua numbers are doubles: integers are exact only below 2^53 (~104 days in ns), and absolute
-- ns timestamps are ~1.8e18. So absolute times are split into whole microseconds (~1.8e15,
-- exact) and a nanosecond remainder, and all arithmetic is done relative to now, where values
-- are bounded by tau (which the backend checks is below 2^53 ns).
--
-- Returns {allowed (1|0), remaining, reset_after_ns, retry_after_ns (-1 when allowed)}.

local function split(ns_string)
  -- "1763682000123456789" -> 1763682000123456, 789
  local len = string.len(ns_string)
  if len <= 3 then
    return 0, tonumber(ns_string)
  end
  return tonumber(string.sub(ns_string, 1, len - 3)), tonumber(string.sub(ns_string, len - 2))
end

local emission = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local burst = tonumber(ARGV[4])

local now_us, now_rem
if ARGV[5] == "" then
  local time = redis.call('TIME')
  now_us, now_rem = tonumber(time[1]) * 1000000 + tonumber(time[2]), 0
else
  now_us, now_rem = split(ARGV[5])
end

-- The stored TAT relative to now (negative or zero: expired, the same as absent).
local tat = 0
local stored = redis.call('GET', KEYS[1])
if stored then
  local tat_us, tat_rem = split(stored)
  tat = (tat_us - now_us) * 1000 + (tat_rem - now_rem)
end

local base = math.max(tat, 0)
local units = math.max(cost, 1)
local pushed = base + emission * units
local allow_at = pushed - tolerance
local allowed = allow_at <= 0

local state_after = base
if allowed and cost > 0 then
  state_after = pushed
  -- Back to an absolute ns string: whole us plus a 3-digit remainder. The key expires when
  -- its state would be empty again (TAT reached), so idle keys cost Redis no memory.
  local total_rem = now_rem + pushed
  local us = now_us + math.floor(total_rem / 1000)
  local rem = total_rem % 1000
  local ttl_ms = math.max(math.ceil(pushed / 1000000), 1) + tonumber(ARGV[6])
  redis.call('SET', KEYS[1], string.format('%.0f%03d', us, rem), 'PX', ttl_ms)
end

local headroom = math.max(tolerance - state_after, 0)
local remaining = math.min(math.floor(headroom / emission), burst)
local retry_after = -1
if not allowed then
  retry_after = allow_at
end
return {allowed and 1 or 0, remaining, state_after, retry_after}
