-- take_lease: a sweeper takes over a running attempt whose lease expired
-- (its worker died), so that it alone records the interruption. The new
-- lease covers the sweeper while it decides; if the sweeper dies too,
-- another one takes the job over when that lease expires.
--
-- KEYS[1] job hash   KEYS[2] leases zset
-- ARGV[1] job id     ARGV[2] sweeper owner   ARGV[3] lease length ms
--
-- Returns {"ok", now_ms, field1, value1, ...} (the hash before the takeover;
-- "owner" is the sweeper's afterwards) or {"skip", why}
-- include: now_ms
local now = now_ms()
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score then
  return {'skip', 'no lease'}
end
if tonumber(score) > now then
  return {'skip', 'lease renewed'}
end
if job_call('HGET', KEYS[1], 'state') ~= 'running' then
  -- The record ended or expired under a stale index entry: drop the entry.
  redis.call('ZREM', KEYS[2], ARGV[1])
  return {'skip', 'not running'}
end
local out = job_call('HGETALL', KEYS[1])
job_call('HSET', KEYS[1], 'owner', ARGV[2])
-- The worker's claim token goes: its late fail must not pass for a run again
-- of the failure this sweeper records (fail.lua, ARGV[16]).
job_call('HDEL', KEYS[1], 'claim')
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
table.insert(out, 1, now)
table.insert(out, 1, 'ok')
return out
