-- interrupt: the worker's main process saw the pool child running this
-- attempt die (or hit the hard time limit). Expire the lease now so the next
-- sweep judges the interruption by the policy, instead of after the lease.
--
-- KEYS[1] job hash   KEYS[2] leases zset
-- ARGV[1] job id     ARGV[2] attempt    ARGV[3] owner's node ("node:")
-- ARGV[4] event
-- The main process may not know the child's pid yet (a child that dies at
-- once), so the owner is matched on the node; one attempt runs in one place.
--
-- Returns 1 if the lease was expired, 0 if the attempt no longer runs there.
local job = job_call('HMGET', KEYS[1], 'state', 'attempt', 'owner')
if job[1] ~= 'running' or job[2] ~= ARGV[2] or not job[3]
    or string.sub(job[3], 1, #ARGV[3]) ~= ARGV[3] then
  return 0
end
job_call('HSET', KEYS[1], 'interrupt', ARGV[4])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
