-- expired: the ids whose lease ended by Redis' clock (read-only).
--
-- KEYS[1] leases zset
-- ARGV[1] most ids to return
--
-- Returns {now_ms, id1, id2, ...}
-- include: now_ms
local now = now_ms()
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
table.insert(ids, 1, now)
return ids
