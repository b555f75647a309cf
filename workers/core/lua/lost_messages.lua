-- lost_messages: a worker's broker connection was lost and re-made. Celery
-- drops the countdown messages the old connection held (they come back only
-- after the broker's visibility timeout), so for held retries this counts as
-- a worker death: record its time, as nodes.lua does for a silent worker.
--
-- KEYS[1] last-worker-death key (ms)
--
-- Returns now, ms (Redis clock).
-- include: now_ms
local now = now_ms()
redis.call('SET', KEYS[1], now)
return now
