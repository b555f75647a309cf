-- defer_if_paused(job_key, pauses_key, deferred_key, job_id, policy, task, now):
-- if the job's policy or task is paused, move the waiting job to the deferred
-- set (no attempt is counted, no message is published for it) and return the
-- pause's name ("policy:<P>" or "task:<T>"); otherwise nil. The caller removes
-- the job from the due and unclaimed sets. `paused_at` (the first deferral)
-- is when its wait stopped counting against its windows.
local function defer_if_paused(job_key, pauses_key, deferred_key, job_id, policy, task, now)
  -- Both pauses in one read (a claim runs this for every attempt); the
  -- policy's pause is named first when both are set.
  local names = {}
  if policy then
    names[#names + 1] = 'policy:' .. policy
  end
  if task then
    names[#names + 1] = 'task:' .. task
  end
  -- (most fleets pause nothing: one length read answers them)
  if #names == 0 or redis.call('HLEN', pauses_key) == 0 then
    return nil
  end
  local set = redis.call('HMGET', pauses_key, unpack(names))
  local target = nil
  for i = 1, #names do
    if set[i] then
      target = names[i]
      break
    end
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
