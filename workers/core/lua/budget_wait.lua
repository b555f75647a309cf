-- budget_wait: a delivery found its policy's retry budget used up (budget.lua
-- gave it a later slot): put the job back to wait for that slot, in the due
-- set, without counting an attempt (bullmq#1571: a rate-limit pushback must
-- not use up the job's attempts). The state stays retrying; `held_by` says
-- why it waits, and tells the sweeper that publishes it at its slot that
-- the slot is taken already (the delivery then starts without asking again).
-- Only the job's own keys and the due set.
--
-- KEYS[1] job hash   KEYS[2] due zset
-- ARGV[1] job id     ARGV[2] attempt this delivery carries   ARGV[3] slot ms
--
-- Returns {"waiting", state, attempt} (the delivery is dropped, the job waits)
--      or {"drop", why, state, attempt} (not the job's next attempt: stale,
--         running elsewhere, killed, finished; dropped as claim would)

local state = job_call('HGET', KEYS[1], 'state')
local attempt = tonumber(job_call('HGET', KEYS[1], 'attempt') or '0')
if state ~= 'retrying' and state ~= 'queued' then
  return {'drop', state or 'missing', state or '', attempt}
end
if tonumber(ARGV[2]) ~= attempt + 1 then
  return {'drop', 'stale', state, attempt}
end
job_call('HSET', KEYS[1], 'state', 'retrying', 'held_by', 'budget',
  'next_attempt_at', ARGV[3])
-- No message holds it now: a sweeper publishes it when its slot comes.
job_call('HDEL', KEYS[1], 'held')
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return {'waiting', state, attempt}
