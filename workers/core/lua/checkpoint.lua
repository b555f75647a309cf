-- checkpoint: store a running attempt's progress for the attempts after it.
-- Progress ends the failure streak: the window, the per-event windows and
-- counts, the streak's attempt budget and the stuck alert start again from
-- this attempt.
--
-- KEYS[1] job hash   KEYS[2] stuck zset (a new streak leaves it)
-- ARGV[1] attempt    ARGV[2] owner    ARGV[3] checkpoint json   ARGV[4] job id
--
-- Returns {"ok", field1, value1, ...} (the job hash after the checkpoint: the
-- attempt decides its next failure from this, never from a copy it patched)
--      or {"stale", state}

-- include: fence
-- include: new_streak

local stale = not_owner(KEYS[1], ARGV[1], ARGV[2])
if stale then
  return {'stale', stale}
end
new_streak(KEYS[1], KEYS[2], ARGV[4], tonumber(ARGV[1]) - 1)
job_call('HSET', KEYS[1], 'checkpoint', ARGV[3])
local out = job_call('HGETALL', KEYS[1])
table.insert(out, 1, 'ok')
return out
