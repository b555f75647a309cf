-- forget: the broker refused the first message of a job whose record enqueue
-- had just written. Remove the record, so it never becomes a job that runs
-- later without its caller knowing (the caller got the broker's error).
--
-- KEYS[1] job hash   KEYS[2] unclaimed zset   KEYS[3] due zset
-- ARGV[1] job id     ARGV[2] created_at ms the enqueue answered (a record
--                    made by anyone else, or claimed since, is kept)
--
-- Returns 1 if the record was removed, 0 if it was kept.
local job = job_call('HMGET', KEYS[1], 'state', 'attempt', 'created_at')
if job[1] ~= 'queued' or job[2] ~= '0' or job[3] ~= ARGV[2] then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
