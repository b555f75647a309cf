-- dispatched: a sweeper published the next attempt of a waiting job.
--
-- KEYS[1] job hash   KEYS[2] due zset
-- ARGV[1] job id
--
-- Returns {state, attempt, task, args, kwargs, queue, policy, first_failure_at}
-- so the sweeper can publish the job, with state "queued" when it should; any
-- other state (killed, running, gone) means: do not publish, and the due entry
-- is dropped.
local job = redis.call('HMGET', KEYS[1], 'state', 'attempt', 'task', 'args', 'kwargs',
  'queue', 'policy', 'first_failure_at')
if job[1] == 'retrying' or job[1] == 'queued' then
  redis.call('HSET', KEYS[1], 'state', 'queued')
  job[1] = 'queued'
  return job
end
redis.call('ZREM', KEYS[2], ARGV[1])
job[1] = job[1] or 'missing'
return job
