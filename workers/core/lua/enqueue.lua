-- enqueue: write a job's record before its first message is published, so
-- nothing between apply_async and the first claim can lose it (a worker that
-- pops the message and dies, a prefetch buffer, a long first countdown).
--
-- KEYS[1] job hash   KEYS[2] unclaimed zset (first attempts not claimed yet,
--                    scored by when they were published)
-- KEYS[3] due zset   (first attempts with a countdown)
-- KEYS[4] (optional) the broker's list for the job's first message, when the
--         broker is this Redis: the message is pushed here in the same script as
--         the record (one round trip for both; see workers/integration/
--         record_push.py). Without it the caller publishes the message itself.
--         A script runs whole, so no client sees the message without its record;
--         the push goes before the record's writes, so a list Redis refuses
--         (WRONGTYPE, out of memory) leaves no record either.
-- ARGV[1] job id     ARGV[2] task name      ARGV[3] policy name
-- ARGV[4] args json  ARGV[5] kwargs json    ARGV[6] message options json
-- ARGV[7] queue      ARGV[8] countdown ms (0: run now)
-- ARGV[9] "broker" when a broker message holds the job (now, or on its
--         countdown), "redis" when only the due set holds it (a countdown
--         longer than DURABLE_MAX_COUNTDOWN: the sweeper publishes it when due)
-- ARGV[10] sweeper grace ms (due-set score of a broker-held countdown = due + grace,
--          its safety margin: ten leases)
-- ARGV[11] (with KEYS[4]) the message, as kombu's Redis transport encodes it
--
-- Returns {"new", now_ms, due_ms}, or {"exists", state, attempt} when the id
-- is known already (enqueued twice, or killed before it was enqueued): the
-- record is left as it is, and claim fences the extra message. With KEYS[4]
-- the message is pushed in either case, as the caller would have published it.

-- include: now_ms

local function push_message()
  if KEYS[4] then
    redis.call('LPUSH', KEYS[4], ARGV[11])
  end
end

local now = now_ms()
local state = job_call('HGET', KEYS[1], 'state')
if state then
  push_message()
  return {'exists', state, job_call('HGET', KEYS[1], 'attempt') or '0'}
end
local countdown = tonumber(ARGV[8])
if countdown <= 0 or ARGV[9] == 'broker' then
  push_message()
end
local due = now + countdown
-- (no streak_base: absent reads as 0, a field less in every record)
job_call('HSET', KEYS[1], 'task', ARGV[2], 'policy', ARGV[3], 'state', 'queued',
  'attempt', 0, 'created_at', now, 'updated_at', now,
  'args', ARGV[4], 'kwargs', ARGV[5], 'queue', ARGV[7])
if ARGV[6] ~= '' then
  job_call('HSET', KEYS[1], 'opts', ARGV[6])
end
if countdown <= 0 then
  redis.call('ZADD', KEYS[2], now, ARGV[1])
  return {'new', now, now}
end
job_call('HSET', KEYS[1], 'next_attempt_at', due)
if ARGV[9] == 'broker' then
  -- As a countdown retry: a sweeper publishes it only if a worker died since.
  job_call('HSET', KEYS[1], 'held', now)
  redis.call('ZADD', KEYS[3], due + tonumber(ARGV[10]), ARGV[1])
else
  redis.call('ZADD', KEYS[3], due, ARGV[1])
end
return {'new', now, due}
