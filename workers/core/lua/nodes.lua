-- nodes: each sweeper says its worker is alive, and notices workers that
-- stopped saying so (killed, OOM, host lost): their death time lets other
-- sweepers publish the countdown retries a dead worker may have held.
--
-- KEYS[1] nodes zset (node -> last heartbeat ms)   KEYS[2] last-worker-death key
-- ARGV[1] node ("host:pid")   ARGV[2] "beat" | "leave"   ARGV[3] silence ms that means dead
--
-- Returns the nodes found dead by this call (none for "leave").
-- include: now_ms
local now = now_ms()
if ARGV[2] == 'leave' then
  -- A clean shutdown hands its countdown messages back to the queue: no death.
  redis.call('ZREM', KEYS[1], ARGV[1])
  return {}
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
for _, node in ipairs(dead) do
  redis.call('ZREM', KEYS[1], node)
end
if #dead > 0 then
  redis.call('SET', KEYS[2], now)
end
return dead
