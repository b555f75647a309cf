-- kill: stop a job for good (invariant 4). Written before the revoke is sent,
-- so the kill survives every worker restart; claim drops any later delivery.
--
-- KEYS[1] job hash   KEYS[2] due zset   KEYS[3] leases zset
-- KEYS[4] retrying-count hash           KEYS[5] parked zset
-- KEYS[6] killed index zset (score = expiry ms)   KEYS[7] stuck zset
-- KEYS[8] unclaimed zset (first attempts not claimed yet)
-- KEYS[9] history list (expires with the record)
-- KEYS[10] deferred zset (jobs a pause holds back)
-- ARGV[1] job id     ARGV[2] reason     ARGV[3] retention ms
-- ARGV[4] "1" to record the kill of a job this store has not seen yet
--         (enqueued, never started), so its message is dropped when it comes
--
-- Returns {"killed", previous state} | {"unknown"} | {"finished", state}
-- include: now_ms
local now = now_ms()
local job = job_call('HMGET', KEYS[1], 'state', 'policy', 'attempt')
local state = job[1]
if not state then
  if ARGV[4] ~= '1' then
    return {'unknown'}
  end
  job_call('HSET', KEYS[1], 'task', '', 'policy', '', 'attempt', 0, 'created_at', now)
  state = 'unknown'
elseif state == 'killed' or state == 'succeeded' then
  return {'finished', state}
end
if (state == 'retrying' or state == 'queued') and job[3] ~= '0' then
  -- a waiting retry (first attempts, attempt 0, were never counted)
  redis.call('HINCRBY', KEYS[4], job[2], -1)
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZREM', KEYS[7], ARGV[1])
redis.call('ZREM', KEYS[8], ARGV[1])
redis.call('ZREM', KEYS[10], ARGV[1])
job_call('HDEL', KEYS[1], 'owner', 'next_attempt_at', 'interrupt', 'held')
job_call('HSET', KEYS[1], 'state', 'killed', 'killed_reason', ARGV[2], 'updated_at', now)
local expires = now + tonumber(ARGV[3])
redis.call('PEXPIREAT', KEYS[1], expires)
redis.call('ZADD', KEYS[6], expires, ARGV[1])
redis.call('PEXPIREAT', KEYS[9], expires)
return {'killed', state}
