-- checkpoint: store a running attempt's progress for the attempts after it.
-- Progress ends the failure streak: the window and the streak's attempt
-- budget start again from this attempt.
--
-- KEYS[1] job hash   KEYS[2] stuck zset (a new streak leaves it)
-- ARGV[1] attempt    ARGV[2] owner    ARGV[3] checkpoint json   ARGV[4] job id
--
-- Returns {"ok"} or {"stale", state}

-- include: new_streak

local job = redis.call('HMGET', KEYS[1], 'state', 'attempt', 'owner')
if job[1] ~= 'running' or job[2] ~= ARGV[1] or job[3] ~= ARGV[2] then
  return {'stale', job[1] or 'missing'}
end
new_streak(KEYS[1], KEYS[2], ARGV[4], tonumber(ARGV[1]) - 1)
redis.call('HSET', KEYS[1], 'checkpoint', ARGV[3])
return {'ok'}
