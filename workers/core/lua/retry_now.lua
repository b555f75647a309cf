-- retry_now: skip the rest of a waiting job's delay. The sweeper publishes
-- it at its next pass; a countdown message still on its way becomes a
-- duplicate that claim drops.
--
-- KEYS[1] job hash   KEYS[2] due zset
-- ARGV[1] job id
--
-- Returns {"ok"} | {"unknown"} | {"refused", state}
-- include: now_ms
local now = now_ms()
local state = job_call('HGET', KEYS[1], 'state')
if not state then
  return {'unknown'}
end
if state ~= 'retrying' and state ~= 'queued' then
  return {'refused', state}
end
job_call('HSET', KEYS[1], 'next_attempt_at', now, 'updated_at', now)
-- Published by the next sweep even if a countdown message still holds it.
job_call('HDEL', KEYS[1], 'held')
redis.call('ZADD', KEYS[2], now, ARGV[1])
return {'ok'}
