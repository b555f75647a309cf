-- take_due: a sweeper claims the retries whose time has come, so that many
-- sweepers at once publish each one once. A claimed entry is pushed back by
-- the redispatch delay rather than removed: if the published message is
-- lost, the retry is published again; the claim script drops the extra copy.
--
-- KEYS[1] due zset
-- ARGV[1] most entries to take   ARGV[2] redispatch delay ms
--
-- Returns {now_ms, id1, id2, ...}
-- include: now_ms
local now = now_ms()
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local later = now + tonumber(ARGV[2])
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], later, id)
end
table.insert(ids, 1, now)
return ids
