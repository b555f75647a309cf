-- claim: let one delivery of a job start its next attempt, or tell it to drop.
-- Fencing (invariant 1): an attempt starts at most once, whatever the broker,
-- the sweeper or the application delivers twice.
--
-- KEYS[1] job hash            KEYS[2] due zset
-- KEYS[3] leases zset         KEYS[4] retrying-count hash (field = policy)
-- KEYS[5] unclaimed zset (first attempts not claimed yet)
-- KEYS[6] pauses hash ("policy:<P>" | "task:<T>" -> why)
-- KEYS[7] deferred zset (waiting jobs a pause holds back, scored by when deferred)
-- ARGV[1] job id              ARGV[2] attempt this delivery carries (1 = first)
-- ARGV[3] task name           ARGV[4] policy name
-- ARGV[5] owner ("node:pid")  ARGV[6] lease length, ms
-- ARGV[7] "1" when ARGV[8..10] carry the payload, "0" when they do not
-- ARGV[8] args json           ARGV[9] kwargs json      ARGV[10] queue
-- ARGV[11] this delivery's claim token ("" for none): the claim run again
--          with the same token (its reply was lost, redis-py or the caller
--          retried) answers "ok" again instead of dropping its own attempt
--         (the record is written at enqueue; a delivery that finds none, from
--          an older producer, send_task by name, or state Redis lost, comes
--          back with the payload and the record is made from it)
--
-- Returns {"ok", now_ms, field1, value1, ...} (the job hash after the claim,
-- without args, kwargs and opts: the attempt does not need them, a countdown
-- retry gets them from fail)
--      or {"drop", why, state, attempt}
--      or {"drop", "paused", state, attempt} (the job's policy or task is paused:
--          the delivery is dropped, no attempt counted; the job waits in the
--          deferred set until unpause releases it)
--      or {"missing"} (no record, and no payload was sent)

-- include: now_ms
-- include: paused

local now = now_ms()
local wanted = tonumber(ARGV[2])
-- The whole record in one read: the claim judges the delivery by it and answers
-- with it. What a script costs Redis goes with the names and values it moves
-- in and out of Lua (bench/script_cost.py), so nothing is read twice.
local flat = job_call('HGETALL', KEYS[1])
local job = {}
for i = 1, #flat, 2 do
  job[flat[i]] = flat[i + 1]
end
local state = job['state']

if not state then
  if ARGV[7] ~= '1' then
    return {'missing'}
  end
  job = {task = ARGV[3], policy = ARGV[4], state = 'running', attempt = wanted,
    created_at = now, updated_at = now, owner = ARGV[5], queue = ARGV[10]}
  job_call('HSET', KEYS[1], 'task', ARGV[3], 'policy', ARGV[4], 'state', 'running',
    'attempt', wanted, 'created_at', now, 'updated_at', now,
    'owner', ARGV[5], 'args', ARGV[8], 'kwargs', ARGV[9], 'queue', ARGV[10],
    'claim', ARGV[11])
  if wanted > 1 then
    -- (absent reads as 0: the usual case stores no field for it)
    job_call('HSET', KEYS[1], 'streak_base', wanted - 1)
    job['streak_base'] = wanted - 1
  end
else
  local attempt = tonumber(job['attempt'])
  local again = state == 'running' and attempt == wanted and ARGV[11] ~= ''
    and job['claim'] == ARGV[11] and job['owner'] == ARGV[5]
  if not again then
    -- (again: this very claim ran already; only the lease is renewed below)
    if state ~= 'retrying' and state ~= 'queued' then
      -- running elsewhere, killed, dead, parked or finished
      return {'drop', state, state, attempt}
    end
    if wanted ~= attempt + 1 then
      return {'drop', 'stale', state, attempt}
    end
    if defer_if_paused(KEYS[1], KEYS[6], KEYS[7], ARGV[1], job['policy'], job['task'], now) then
      redis.call('ZREM', KEYS[2], ARGV[1])
      redis.call('ZREM', KEYS[5], ARGV[1])
      return {'drop', 'paused', state, attempt}
    end
    if attempt > 0 then
      -- a waiting retry (first attempts, attempt 0, were never counted)
      redis.call('HINCRBY', KEYS[4], job['policy'], -1)
    end
    redis.call('ZREM', KEYS[2], ARGV[1])
    redis.call('ZREM', KEYS[5], ARGV[1])
    job_call('HSET', KEYS[1], 'state', 'running', 'attempt', wanted, 'updated_at', now,
      'owner', ARGV[5], 'claim', ARGV[11])
    job['state'], job['attempt'], job['updated_at'], job['owner'] = 'running', wanted, now, ARGV[5]
    -- What the wait left behind, where it left anything (a first attempt, none).
    local left = {}
    for _, name in ipairs({'next_attempt_at', 'interrupt', 'held', 'held_by'}) do
      if job[name] then
        left[#left + 1] = name
        job[name] = nil
      end
    end
    if #left > 0 then
      job_call('HDEL', KEYS[1], unpack(left))
    end
  end
end
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[6]), ARGV[1])
local out = {'ok', now}
for name, value in pairs(job) do
  if name ~= 'args' and name ~= 'kwargs' and name ~= 'opts' and name ~= 'claim' then
    out[#out + 1] = name
    out[#out + 1] = value
  end
end
return out
