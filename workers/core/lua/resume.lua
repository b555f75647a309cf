-- resume: bring a dead or parked job back to retrying, now. The attempt
-- count is kept; an operator's resume starts a new failure streak (window
-- and attempt budget).
--
-- KEYS[1] job hash   KEYS[2] due zset   KEYS[3] retrying-count hash
-- KEYS[4] parked zset                   KEYS[5] dead index zset
-- KEYS[6] stuck zset (a new streak leaves it)
-- KEYS[7] history list (kept as long as the record again)
-- ARGV[1] job id     ARGV[2] max_retrying (-1 = no cap; an operator's
--                    resume passes -1, the sweeper's unpark passes the cap)
-- ARGV[3] "1" to start a new failure streak (an operator's resume), "0" to
--         keep the streak (the sweeper unparking a job when room frees)
-- ARGV[4] jobs of this policy waiting in the other shards (read by the caller;
--         "" or 0 with one shard), counted against the cap
--
-- Returns {"resumed", previous state} | {"unknown"} | {"refused", state}
--      | {"full"} (the cap is reached; the job stays parked)

-- include: now_ms
-- include: new_streak

local now = now_ms()
local job = job_call('HMGET', KEYS[1], 'state', 'policy', 'attempt', 'args')
local state = job[1]
if not state then
  return {'unknown'}
end
if state ~= 'dead' and state ~= 'parked' then
  return {'refused', state}
end
if not job[4] then
  -- A killed-before-start tombstone or a record without arguments cannot be
  -- published again.
  return {'refused', state}
end
local cap = tonumber(ARGV[2])
local others = tonumber(ARGV[4] ~= nil and ARGV[4] ~= '' and ARGV[4] or '0')
if cap >= 0 and tonumber(redis.call('HGET', KEYS[3], job[2]) or '0') + others >= cap then
  return {'full'}
end
if ARGV[3] == '1' then
  new_streak(KEYS[1], KEYS[6], ARGV[1], job[3])
end
redis.call('PERSIST', KEYS[1])
redis.call('PERSIST', KEYS[7])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('HINCRBY', KEYS[3], job[2], 1)
job_call('HSET', KEYS[1], 'state', 'retrying', 'next_attempt_at', now, 'updated_at', now)
redis.call('ZADD', KEYS[2], now, ARGV[1])
return {'resumed', state}
