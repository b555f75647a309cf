-- release: let deferred jobs (held back by a pause that has ended) run again,
-- spread out: the k-th job released is due at start + (k + jitter) x interval,
-- so `unpause --rate` never sends them all at once. The wait a pause caused
-- does not count against the job's windows: first_failure_at and every
-- since:<event> move forward by (its release time - paused_at). Attempts are
-- not touched: a deferred delivery was never an attempt.
--
-- KEYS[1] pauses hash   KEYS[2] deferred zset   KEYS[3] due zset
-- KEYS[4..] the job hashes, in the order of the ids below
-- ARGV[1] start ms      ARGV[2] interval ms      ARGV[3] slots used so far
-- ARGV[4..] job id, jitter (0 <= j < 1), for each job
--
-- Returns {released, slots used after this batch}
local start, interval, slot = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local released = 0
for i = 4, #ARGV, 2 do
  local id, jitter, key = ARGV[i], tonumber(ARGV[i + 1]), KEYS[4 + (i - 4) / 2]
  local job = job_call('HMGET', key, 'state', 'policy', 'task', 'paused_at')
  local waiting = job[1] == 'retrying' or job[1] == 'queued'
  if not waiting then
    -- killed, resumed and run, or gone: nothing to release
    redis.call('ZREM', KEYS[2], id)
    if job[1] then
      job_call('HDEL', key, 'paused_at')
    end
  elseif redis.call('HEXISTS', KEYS[1], 'policy:' .. (job[2] or '')) == 0
      and redis.call('HEXISTS', KEYS[1], 'task:' .. (job[3] or '')) == 0 then
    local due = math.floor(start + (slot + jitter) * interval)
    slot = slot + 1
    local shift = math.max(0, due - tonumber(job[4] or due))
    if shift > 0 then
      for _, name in ipairs(job_call('HKEYS', key)) do
        if name == 'first_failure_at' or string.sub(name, 1, 6) == 'since:' then
          job_call('HINCRBY', key, name, shift)
        end
      end
    end
    job_call('HDEL', key, 'paused_at')
    job_call('HSET', key, 'next_attempt_at', due)
    redis.call('ZADD', KEYS[3], due, id)
    redis.call('ZREM', KEYS[2], id)
    released = released + 1
  end
end
return {released, slot}
