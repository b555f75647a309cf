-- fail: record a failed attempt and carry out the policy's decision, which
-- the caller took with policies.decide: retry (or park, past max_retrying),
-- or give up (dead).
--
-- KEYS[1] job hash        KEYS[2] leases zset    KEYS[3] due zset
-- KEYS[4] retrying-count hash (field = policy)   KEYS[5] parked zset
-- KEYS[6] dead index zset (score = expiry ms)
-- KEYS[7] stats hash (failures:<event> and dead counters, for metrics)
-- KEYS[8] stuck zset (a job that dies leaves it)
-- KEYS[9] history list (the job's last attempts; expires with the record)
-- ARGV[1] job id          ARGV[2] attempt        ARGV[3] owner
-- ARGV[4] event           ARGV[5] error text     ARGV[6] decision reason
--                         (kept for dead and parked jobs only)
-- ARGV[7] "retry" | "dead"
-- ARGV[8] delay ms        ARGV[9] sweeper grace ms (due-set score = due + grace:
--                         the held retry's safety margin, ten leases);
--                         > 0 means a broker countdown holds the retry: the
--                         job is marked "held" (since now) and a sweeper
--                         publishes it only if a worker died since then
-- ARGV[10] max_retrying (-1 = no cap)            ARGV[11] retention ms
-- ARGV[12] attempts of history to keep (0 = none)
-- ARGV[13] the history entry's error text       ARGV[14] its reason (both bounded)
-- ARGV[15] the worker that ran the attempt (a sweeper judging a lost attempt
--          holds the lease now, ARGV[3], but names the dead worker here)
-- ARGV[16] jobs of this policy waiting in the other shards (read by the caller
--          just before; "" or 0 with one shard), counted against max_retrying
-- ARGV[17] the claim token of the delivery that ran the attempt ("" for a
--          sweeper): fail run again with it (its reply was lost, the caller
--          retried) answers as the first run did instead of "stale", so the
--          countdown retry is still published
-- ARGV[18] the delivery's tag to ack, when the broker is this Redis (else absent
--          or ""): acked whatever the answer, as Celery acks a retried message
-- KEYS[10] kombu's unacked index zset  KEYS[11] kombu's unacked hash (with ARGV[18])
--
-- Returns {"retry", now_ms, due_ms} (plus args, kwargs, queue, opts when a
-- broker countdown will hold the retry: the caller publishes it)
--      | {"parked", now_ms} | {"dead", now_ms} | {"stale", state}

-- include: now_ms
-- include: fence
-- include: history
-- include: broker_ack

local now = now_ms()
ack_delivery(KEYS[10], KEYS[11], ARGV[18])
-- A retry a broker countdown will hold is published by the caller: it needs the
-- job's payload, read here with the rest.
local held = tonumber(ARGV[9]) > 0
local stale, job
if held then
  stale, job = not_owner(KEYS[1], ARGV[2], ARGV[3], 'policy', 'updated_at',
    'args', 'kwargs', 'queue', 'opts')
else
  stale, job = not_owner(KEYS[1], ARGV[2], ARGV[3], 'policy', 'updated_at')
end
-- The answer of a retry: with the payload when a broker countdown holds it.
local function retry_reply(due)
  if held then
    return {'retry', now, due, job[6] or '[]', job[7] or '{}', job[8] or '', job[9] or ''}
  end
  return {'retry', now, due}
end
if stale and ARGV[17] and ARGV[17] ~= '' then
  local done = job_call('HMGET', KEYS[1], 'attempt', 'claim', 'held', 'next_attempt_at')
  if done[1] == ARGV[2] and done[2] == ARGV[17] then
    -- This very failure was recorded already: answer as the first run did.
    if stale == 'dead' or stale == 'parked' then
      return {stale, now}
    end
    if stale == 'retrying' then
      if done[3] then
        return retry_reply(tonumber(done[4]))
      end
      -- (recorded without a countdown hold: nothing for the caller to publish)
      return {'retry', now, tonumber(done[4])}
    end
  end
end
if stale then
  return {'stale', stale}
end
local policy, started = job[4], job[5]
local event = ARGV[4]
local keep = tonumber(ARGV[12])
-- claim wrote updated_at when the attempt started; nothing else moves it while it runs.
local entry = {attempt = tonumber(ARGV[2]), started_at = tonumber(started), ended_at = now,
  worker = ARGV[15], event = event, error = ARGV[13], reason = ARGV[14]}
redis.call('ZREM', KEYS[2], ARGV[1])
local streak_starts = job_call('HSETNX', KEYS[1], 'first_failure_at', now) == 1
if job_call('HINCRBY', KEYS[1], 'failures:' .. event, 1) == 1 and not streak_starts then
  -- The event's own window starts now. One that starts with the streak is not
  -- written: it reads first_failure_at (records.py), a field less per job.
  job_call('HSETNX', KEYS[1], 'since:' .. event, now)
end
redis.call('HINCRBY', KEYS[7], 'failures:' .. event, 1)
-- What every outcome writes and deletes, in one HSET and one HDEL: the failure's
-- fields with the outcome's own (`set`), the attempt's owner and interrupt mark
-- with what else the outcome drops (`gone`).
local function record_failure(set, gone)
  job_call('HSET', KEYS[1], 'last_failure_at', now, 'last_event', event,
    'last_error', ARGV[5], 'updated_at', now, unpack(set))
  job_call('HDEL', KEYS[1], 'owner', 'interrupt', unpack(gone))
end

if ARGV[7] == 'dead' then
  local expires = now + tonumber(ARGV[11])
  record_failure({'state', 'dead', 'reason', ARGV[6]}, {})
  redis.call('HINCRBY', KEYS[7], 'dead', 1)
  redis.call('PEXPIREAT', KEYS[1], expires)
  redis.call('ZADD', KEYS[6], expires, ARGV[1])
  redis.call('ZREM', KEYS[8], ARGV[1])
  entry.decision = 'dead'
  add_history(KEYS[9], keep, entry)
  redis.call('PEXPIREAT', KEYS[9], expires)
  return {'dead', now}
end

local cap = tonumber(ARGV[10])
-- (the policy's waiting count is read only where a cap needs it)
if cap >= 0 and tonumber(redis.call('HGET', KEYS[4], policy) or '0')
    + tonumber(ARGV[16] ~= nil and ARGV[16] ~= '' and ARGV[16] or '0') >= cap then
  record_failure({'state', 'parked', 'reason', ARGV[6]}, {})
  redis.call('ZADD', KEYS[5], now, ARGV[1])
  entry.decision = 'parked'
  add_history(KEYS[9], keep, entry)
  return {'parked', now}
end
-- A waiting job keeps no reason: the sentence repeats its fields (error,
-- next attempt) and would double its memory (Redis keeps a hash compact only
-- while every value is short). The worker's log line and Flower carry it.
local due = now + tonumber(ARGV[8])
if held then
  record_failure({'state', 'retrying', 'next_attempt_at', due, 'held', now}, {'reason'})
else
  record_failure({'state', 'retrying', 'next_attempt_at', due}, {'reason', 'held'})
end
redis.call('HINCRBY', KEYS[4], policy, 1)
redis.call('ZADD', KEYS[3], due + tonumber(ARGV[9]), ARGV[1])
entry.decision = 'retry'
entry.delay_ms = tonumber(ARGV[8])
add_history(KEYS[9], keep, entry)
return retry_reply(due)
