-- defer_if_paused(job_key, pauses_key, deferred_key, job_id, policy, task, now):
-- if the job's policy or task is paused, move the waiting job to the deferred
-- set (no attempt is counted, no message is published for it) and return the
-- pause's name ("policy:<P>" or "task:<T>"); otherwise nil. The caller removes
-- the job from the due and unclaimed sets. `paused_at` (the first deferral)
-- is when its wait stopped counting against its windows.
local function defer_if_paused(job_key, pauses_key, deferred_key, job_id, policy, task, now)
  local target = nil
  if policy and redis.call('HEXISTS', pauses_key, 'policy:' .. policy) == 1 then
    target = 'policy:' .. policy
  elseif task and redis.call('HEXISTS', pauses_key, 'task:' .. task) == 1 then
    target = 'task:' .. task
  end
  if not target then
    return nil
  end
  redis.call('ZADD', deferred_key, 'NX', now, job_id)
  job_call('HSETNX', job_key, 'paused_at', now)
  -- Held by no message now: the release's due entry is published by a sweeper.
  -- A retry-budget slot it held is gone too (release spaces it out instead).
  job_call('HDEL', job_key, 'held', 'next_attempt_at', 'held_by')
  return target
end
