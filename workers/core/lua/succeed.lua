-- succeed: record that the running attempt finished well.
--
-- KEYS[1] job hash   KEYS[2] leases zset   KEYS[3] succeeded index zset (score = expiry ms)
-- KEYS[4] stuck zset (the streak ends: the job leaves it)
-- KEYS[5] history list (gets the success entry; expires with the record)
-- ARGV[1] job id     ARGV[2] attempt       ARGV[3] owner   ARGV[4] retention ms
-- ARGV[5] attempts of history to keep (0 = none)
-- ARGV[6] the delivery's tag to ack, when the broker is this Redis (else absent or "")
-- KEYS[6] kombu's unacked index zset  KEYS[7] kombu's unacked hash (with ARGV[6] only)
--
-- Safe to run again: a run after this attempt succeeded answers {"ok", now_ms} too.
-- The delivery is acked whatever the answer: its body ran to the end, and Celery
-- acks such a message either way.
-- Returns {"ok", now_ms} or {"stale", state} when the attempt no longer owns
-- the job (killed meanwhile, or its lease was recovered by a sweeper).

-- include: now_ms
-- include: fence
-- include: history
-- include: broker_ack

local now = now_ms()
ack_delivery(KEYS[6], KEYS[7], ARGV[6])
local stale, job = not_owner(KEYS[1], ARGV[2], ARGV[3], 'updated_at', 'first_failure_at')
if stale == 'succeeded' and job[2] == ARGV[2] then
  -- Run again after its reply was lost: this attempt succeeded (the only one that
  -- can, claim fences the others), so answer as the first run did.
  return {'ok', now}
end
if stale then
  return {'stale', stale}
end
redis.call('ZREM', KEYS[2], ARGV[1])
-- claim wrote updated_at when the attempt started; nothing else moves it while it runs.
add_history(KEYS[5], tonumber(ARGV[5]), {attempt = tonumber(ARGV[2]),
  started_at = tonumber(job[4]), ended_at = now,
  worker = ARGV[3], event = 'success', decision = 'succeeded'})
-- The arguments and checkpoint are only needed to run it again: free them.
job_call('HDEL', KEYS[1], 'owner', 'args', 'kwargs', 'queue', 'opts', 'checkpoint',
  'interrupt', 'claim')
job_call('HSET', KEYS[1], 'state', 'succeeded', 'updated_at', now)
local expires = now + tonumber(ARGV[4])
redis.call('PEXPIREAT', KEYS[1], expires)
redis.call('ZADD', KEYS[3], expires, ARGV[1])
redis.call('PEXPIREAT', KEYS[5], expires)
if job[5] then
  -- Only a failure streak can be in the stuck index (stuck.lua adds a job with
  -- first_failure_at; whatever clears that field removes the job from it too).
  redis.call('ZREM', KEYS[4], ARGV[1])
end
return {'ok', now}
