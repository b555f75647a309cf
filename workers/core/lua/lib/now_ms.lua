-- now_ms(): Redis' own clock, in milliseconds. Every due time, lease and
-- failure time is read from it, so workers whose clocks drift still agree.
local function now_ms()
  local t = redis.call('TIME')
  return t[1] * 1000 + math.floor(t[2] / 1000)
end
