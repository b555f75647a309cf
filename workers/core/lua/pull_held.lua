-- pull_held: a worker died (or lost its broker connection, which drops the
-- countdown messages it held): bring forward the due entry of a retry that a
-- broker message held since before then, so that the next sweep publishes it
-- at its due time rather than at the safety time dispatched pushed it to.
-- A retry held by a live worker is copied too (nobody knows who held what);
-- claim runs one of the two deliveries.
--
-- KEYS[1] job hash   KEYS[2] due zset
-- ARGV[1] job id     ARGV[2] when the death (or the loss) was noticed, ms
--
-- Returns 1 when the entry moved forward, 0 when nothing changed.
local job = job_call('HMGET', KEYS[1], 'state', 'held', 'next_attempt_at')
local state, held = job[1], tonumber(job[2] or '')
if (state ~= 'retrying' and state ~= 'queued') or not held or held > tonumber(ARGV[2]) then
  return 0
end
local at = math.max(tonumber(job[3] or '0'), tonumber(ARGV[2]))
-- LT: only ever earlier (Redis 6.2+); XX: an entry that left the due set stays out.
return redis.call('ZADD', KEYS[2], 'XX', 'LT', 'CH', at, ARGV[1])
