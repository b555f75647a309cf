-- nodes: each sweeper says its worker is alive, and notices workers that
-- stopped saying so (killed, OOM, host lost): their death time lets other
-- sweepers publish the countdown retries a dead worker may have held, and
-- the first attempts it may have popped or prefetched.
--
-- KEYS[1] nodes zset (node -> last heartbeat ms)   KEYS[2] last-worker-death key
-- KEYS[3] node capacity hash (node -> how many messages its worker may hold
--         unstarted: prefetch multiplier x concurrency)
-- ARGV[1] node ("host:pid")   ARGV[2] "beat" | "leave"   ARGV[3] silence ms that means dead
-- KEYS[4] node fields hash (node -> the record field names it reads: "long,short";
--         a node of a release before short names says nothing)
-- ARGV[4] this node's capacity (beat)   ARGV[5] the field names it reads (beat)
--
-- Returns {now_ms, dead node, ...}: the nodes found dead by this call (none
-- for "leave"). Their capacity entries stay for the caller to read
-- (Store.fleet_capacity).

-- include: now_ms

local now = now_ms()
if ARGV[2] == 'leave' then
  -- A clean shutdown hands its countdown messages back to the queue: no death.
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('HDEL', KEYS[4], ARGV[1])
  return {now}
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
if ARGV[4] and ARGV[4] ~= '' then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
end
redis.call('HSET', KEYS[4], ARGV[1], ARGV[5])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
for _, node in ipairs(dead) do
  redis.call('ZREM', KEYS[1], node)
  redis.call('HDEL', KEYS[4], node)
end
if #dead > 0 then
  redis.call('SET', KEYS[2], now)
end
table.insert(dead, 1, now)
return dead
