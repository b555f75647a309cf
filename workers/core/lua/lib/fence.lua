-- not_owner(job_key, attempt, owner, ...): nil while the job is running `attempt`
-- under `owner` (its lease holder, "node:pid" or a sweeper); otherwise the
-- job's state ("missing" when there is no record). Invariant 1: an attempt
-- whose lease was taken over, or whose job was killed meanwhile, changes nothing.
-- Second result: the record's state, attempt and owner, then the fields named
-- after `owner` (job[4], job[5], ...), read in the same call: each redis.call
-- from a script costs Redis more than the fields it fetches.
local function not_owner(job_key, attempt, owner, ...)
  local job = job_call('HMGET', job_key, 'state', 'attempt', 'owner', ...)
  if job[1] ~= 'running' or job[2] ~= attempt or job[3] ~= owner then
    return job[1] or 'missing', job
  end
  return nil, job
end
