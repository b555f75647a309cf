-- dispatched: a sweeper took this waiting job from the due set (take_due);
-- decide whether to publish its next attempt now.
--
-- A job held by a broker message ("held": a countdown, or a message a sweeper
-- published earlier) is published only if a worker died since (the dead
-- worker may have held its message), or if it is overdue by more than the
-- safety margin. Otherwise a live worker
-- holds it, maybe behind a backlog: publishing a copy would only lengthen the
-- backlog (the copy is dropped by claim, but costs a delivery), so it waits.
--
-- KEYS[1] job hash   KEYS[2] due zset
-- KEYS[3] pauses hash                     KEYS[4] deferred zset
-- ARGV[1] job id     ARGV[2] safety margin ms
-- KEYS[5] last-worker-death key (ms), with one shard; or, when the keys are
--         sharded (it is in another hash slot on a Cluster), none, and
-- ARGV[3] its value, read by the caller ("" with one shard)
--
-- Returns {state, attempt, task, args, kwargs, queue, policy, first_failure_at, opts,
--          last_event, held_by} (held_by "budget": its retry-budget slot is taken):
-- state "queued" means publish it now; "held" means a live worker holds it:
-- its due entry moves to the safety time (next_attempt_at + margin), so a
-- healthy fleet checks a held retry once (fail and enqueue score a held
-- retry at its safety time from the start; this is for an older release's
-- entries, due + one lease, and for messages a sweeper published); a noticed
-- death pulls it forward
-- again (pull_held); any other
-- state (killed, running, gone) means do not publish, and the entry is dropped;
-- "paused": its policy or task is paused, it moved to the deferred set.

-- include: now_ms
-- include: paused

local now = now_ms()
local job = job_call('HMGET', KEYS[1], 'state', 'attempt', 'task', 'args', 'kwargs',
  'queue', 'policy', 'first_failure_at', 'opts', 'held', 'next_attempt_at', 'last_event',
  'held_by')
local held, next_at = job[10], job[11]
job[10], job[11], job[12], job[13] = job[12], job[13], nil, nil
local waiting = job[1] == 'retrying' or job[1] == 'queued'
if waiting and defer_if_paused(KEYS[1], KEYS[3], KEYS[4], ARGV[1], job[7], job[3], now) then
  redis.call('ZREM', KEYS[2], ARGV[1])
  job[1] = 'paused'
  return job
end
if waiting and held then
  local died = tonumber((ARGV[3] ~= '' and ARGV[3]) or (KEYS[5] and redis.call('GET', KEYS[5]))
    or '0')
  local safety_at = tonumber(next_at or '0') + tonumber(ARGV[2])
  if died < tonumber(held) and now < safety_at then
    redis.call('ZADD', KEYS[2], 'XX', safety_at, ARGV[1])
    job[1] = 'held'
    return job
  end
end
if waiting then
  -- The message published now holds the job: like a countdown, it is copied
  -- again only after a worker death or the safety margin, not every pass.
  job_call('HSET', KEYS[1], 'state', 'queued', 'held', now)
  job[1] = 'queued'
  return job
end
redis.call('ZREM', KEYS[2], ARGV[1])
job[1] = job[1] or 'missing'
return job
