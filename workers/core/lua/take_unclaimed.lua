-- take_unclaimed: a sweeper takes first attempts that no worker has claimed
-- and that may have been lost, to publish them again: the oldest ones
-- published before a worker died (that worker may have popped or prefetched
-- them), or any published before the safety cutoff. Each taken entry is
-- re-scored to now, so one death or one safety period copies a job once.
--
-- KEYS[1] unclaimed zset (score = when the first message was published)
-- KEYS[2..n+1] the job hashes of the ids the caller read from KEYS[1]
-- ARGV[1] published-before cutoff ms   ARGV[2..n+1] the ids (oldest first)
--
-- The caller reads the ids (ZRANGEBYSCORE ... LIMIT) first, so that every key
-- the script touches is passed in KEYS.
-- Returns {id, task, args, kwargs, queue, opts, policy, ...} for each id still
-- unclaimed and published before the cutoff (7 fields each); entries whose
-- job was claimed, killed or removed meanwhile are dropped from the index.

-- include: now_ms

local now = now_ms()
local cutoff = tonumber(ARGV[1])
local out = {}
for k = 2, #KEYS do
  local id = ARGV[k]
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tonumber(score) < cutoff then
    local job = job_call('HMGET', KEYS[k], 'state', 'attempt', 'task', 'args', 'kwargs',
      'queue', 'opts', 'policy')
    if job[1] == 'queued' and job[2] == '0' then
      redis.call('ZADD', KEYS[1], now, id)
      table.insert(out, id)
      for f = 3, 8 do
        table.insert(out, job[f] or '')
      end
    else
      redis.call('ZREM', KEYS[1], id)
    end
  end
end
return out
