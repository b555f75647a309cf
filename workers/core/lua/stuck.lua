-- stuck: note that a job has been failing longer than its policy's
-- alert_after, once per failure streak (checkpoint and an operator's resume
-- clear the flag when a new streak starts).
--
-- KEYS[1] job hash   KEYS[2] stuck zset (score = when it was reported)
-- ARGV[1] job id     ARGV[2] alert_after, ms
--
-- Returns {"alerted", first_failure_at_ms, now_ms}
--      or {"no", why}: "state:<state>" (not failing any more), "not-yet",
--         "already" (reported earlier in this streak)
-- include: now_ms
local now = now_ms()
local job = job_call('HMGET', KEYS[1], 'state', 'first_failure_at')
local state = job[1]
if state ~= 'retrying' and state ~= 'queued' and state ~= 'parked' and state ~= 'running' then
  return {'no', 'state:' .. (state or 'missing')}
end
if not job[2] or now - tonumber(job[2]) < tonumber(ARGV[2]) then
  return {'no', 'not-yet'}
end
if job_call('HSETNX', KEYS[1], 'stuck_alerted', now) == 0 then
  return {'no', 'already'}
end
redis.call('ZADD', KEYS[2], now, ARGV[1])
return {'alerted', job[2], now}
