-- purge: delete an ended record and its index entries, if it is still in
-- the state the operator named and ended before the cutoff.
--
-- KEYS[1] job hash   KEYS[2] that state's ended index zset   KEYS[3] stuck zset
-- KEYS[4] history list
-- ARGV[1] job id     ARGV[2] state (succeeded | dead | killed)
-- ARGV[3] cutoff ms (records last updated at or before it go)
--
-- Returns 1 if the record was deleted, 0 if it was kept, 2 if the record was
-- already gone (its stale index entry is dropped).
local job = job_call('HMGET', KEYS[1], 'state', 'updated_at')
if not job[1] then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('DEL', KEYS[4])
  return 2
end
if job[1] ~= ARGV[2] or tonumber(job[2] or '0') > tonumber(ARGV[3]) then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[4])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
