-- new_streak(job_key, stuck_key, job_id, streak_base): end the failure streak.
-- The window, the per-event counts and the streak's attempt budget start
-- again after attempt `streak_base`, and the job leaves the stuck index.
local function new_streak(job_key, stuck_key, job_id, streak_base)
  for _, name in ipairs(job_call('HKEYS', job_key)) do
    if string.sub(name, 1, 9) == 'failures:' or string.sub(name, 1, 6) == 'since:' then
      job_call('HDEL', job_key, name)
    end
  end
  job_call('HDEL', job_key, 'first_failure_at', 'stuck_alerted')
  redis.call('ZREM', stuck_key, job_id)
  job_call('HSET', job_key, 'streak_base', streak_base)
end
