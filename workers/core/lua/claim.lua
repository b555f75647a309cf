-- claim: let one delivery of a job start its next attempt, or tell it to drop.
-- Fencing (invariant 1): an attempt starts at most once, whatever the broker,
-- the sweeper or the application delivers twice.
--
-- KEYS[1] job hash            KEYS[2] due zset
-- KEYS[3] leases zset         KEYS[4] retrying-count hash (field = policy)
-- ARGV[1] job id              ARGV[2] attempt this delivery carries (1 = fresh enqueue)
-- ARGV[3] task name           ARGV[4] policy name
-- ARGV[5] owner ("node:pid")  ARGV[6] lease length, ms
-- ARGV[7] args json           ARGV[8] kwargs json      ARGV[9] queue
--         (7-9 are stored when the record is created, so that a retry can be
--          published again even if the worker dies during the first attempt)
--
-- Returns {"ok", now_ms, field1, value1, ...} (the job hash after the claim)
--      or {"drop", why, state, attempt}
-- include: now_ms
local now = now_ms()
local wanted = tonumber(ARGV[2])
local state = redis.call('HGET', KEYS[1], 'state')

if not state then
  -- First delivery: the record is created here, not at enqueue, so the
  -- success path costs one script before and one after the body.
  redis.call('HSET', KEYS[1], 'task', ARGV[3], 'policy', ARGV[4], 'state', 'running',
    'attempt', wanted, 'streak_base', wanted - 1, 'created_at', now, 'updated_at', now,
    'owner', ARGV[5], 'args', ARGV[7], 'kwargs', ARGV[8], 'queue', ARGV[9])
else
  local attempt = tonumber(redis.call('HGET', KEYS[1], 'attempt'))
  if state ~= 'retrying' and state ~= 'queued' then
    -- running elsewhere, killed, dead, parked or finished
    return {'drop', state, state, attempt}
  end
  if wanted ~= attempt + 1 then
    return {'drop', 'stale', state, attempt}
  end
  redis.call('HINCRBY', KEYS[4], redis.call('HGET', KEYS[1], 'policy'), -1)
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('HSET', KEYS[1], 'state', 'running', 'attempt', wanted, 'updated_at', now,
    'owner', ARGV[5])
  redis.call('HDEL', KEYS[1], 'next_attempt_at', 'interrupt', 'held')
end
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[6]), ARGV[1])
local out = redis.call('HGETALL', KEYS[1])
table.insert(out, 1, now)
table.insert(out, 1, 'ok')
return out
