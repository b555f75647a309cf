-- budget: take the next slot of a retry budget that every worker shares
-- (max_retry_rate), on Redis' clock. GCRA: the key holds the time the next
-- slot is free (ms); each call takes one slot, now or later, so retries
-- start no faster than one per interval however many workers ask. Its own
-- key only (no job key): with Redis Cluster it may live in any slot.
--
-- KEYS[1] budget key (string: when the next slot is free, ms; expires when idle)
-- ARGV[1] interval ms (1000 / rate; may be fractional)
--
-- Returns {"go", now_ms}: the slot is now, start the attempt
--      or {"wait", slot_ms, now_ms}: the slot taken is later; the job waits for it
--         (budget_wait) and its delivery then starts without asking again

-- include: now_ms

local now = now_ms()
local interval = tonumber(ARGV[1])
local free = tonumber(redis.call('GET', KEYS[1]) or '0')
if free < now then
  free = now
end
local after = free + interval
redis.call('SET', KEYS[1], string.format('%.3f', after), 'PX', math.ceil(after - now) + 1000)
if free <= now then
  return {'go', now}
end
return {'wait', math.ceil(free), now}
