-- job_call(command, key, ...): redis.call for a command on a job hash, with field
-- names as the scripts write them (the long ones: 'state', 'failures:error').
-- A record written with short names (DURABLE_RECORD_FIELDS=short: 'st',
-- 'f:error') gets them translated on the way in, and HGETALL / HKEYS replies
-- translated back, so no script knows which names a record holds. The store
-- renders the renamings from workers/core/records.py (SHORT_FIELDS).
-- Every script starts with this library.
-- A short record also leaves out empty kwargs ('{}'): every reader takes an
-- absent kwargs for '{}' (the scripts' callers, records.long_field_names), and
-- the eight bytes keep a typical waiting job's hash in a smaller allocation.
-- A script runs this preamble on every call (Redis keeps no Lua state between
-- calls), so it builds no table: the renamings are if-chains, rendered.
local NEW_RECORDS_SHORT = false -- rendered: the names a new record is written with
local SHORT_MARK = 'st' -- rendered: the field every short record holds

local function to_short(name)
  return name -- rendered: an if-chain, long name -> short name
end

local function to_long(name)
  return name -- rendered: an if-chain, short name -> long name
end

local short_records = {}
-- Which names the record at `key` holds: its own (a record keeps the names it
-- was written with), or for a record not there yet the writer's.
local function is_short(key)
  local known = short_records[key]
  if known == nil then
    local probe = redis.call('HMGET', key, SHORT_MARK, 'state')
    if probe[1] then
      known = true
    elseif probe[2] then
      known = false
    else
      known = NEW_RECORDS_SHORT
    end
    short_records[key] = known
  end
  return known
end

-- A script's first read of a record asks, with the fields (by the writer's own
-- names), for the other kind's mark: a record of the writer's kind (or none)
-- is answered at once, with no probe; only a record of the other kind is read
-- again, by its names.
local function first_read(command, key, ...)
  local asked = {...}
  if NEW_RECORDS_SHORT then
    for i = 1, #asked do
      asked[i] = to_short(asked[i])
    end
  end
  asked[#asked + 1] = NEW_RECORDS_SHORT and 'state' or SHORT_MARK
  local reply = redis.call('HMGET', key, unpack(asked))
  if reply[#asked] then
    short_records[key] = not NEW_RECORDS_SHORT
    return nil
  end
  short_records[key] = NEW_RECORDS_SHORT
  if command == 'HGET' then
    return {reply[1]}
  end
  reply[#asked] = nil
  return {reply}
end

-- A script's first HGETALL of a record tells its kind from the names it gets:
-- no probe is sent, and only a short record's names are translated.
local function first_hgetall(key)
  local reply = redis.call('HGETALL', key)
  local known = NEW_RECORDS_SHORT
  for i = 1, #reply, 2 do
    if reply[i] == SHORT_MARK then
      known = true
      break
    elseif reply[i] == 'state' then
      known = false
      break
    end
  end
  short_records[key] = known
  if known then
    for i = 1, #reply, 2 do
      reply[i] = to_long(reply[i])
    end
  end
  return reply
end

local function job_call(command, key, ...)
  if short_records[key] == nil then
    if command == 'HGET' or command == 'HMGET' then
      local answer = first_read(command, key, ...)
      if answer then
        return answer[1]
      end
    elseif command == 'HGETALL' then
      return first_hgetall(key)
    end
  end
  if not is_short(key) then
    return redis.call(command, key, ...)
  end
  local args = {...}
  if command == 'HGET' or command == 'HSETNX' or command == 'HINCRBY' or command == 'HEXISTS' then
    args[1] = to_short(args[1])
  elseif command == 'HMGET' or command == 'HDEL' then
    for i = 1, #args do
      args[i] = to_short(args[i])
    end
  elseif command == 'HSET' then
    local kept = {}
    for i = 1, #args, 2 do
      if not (args[i] == 'kwargs' and args[i + 1] == '{}') then
        kept[#kept + 1] = to_short(args[i])
        kept[#kept + 1] = args[i + 1]
      end
    end
    if #kept == 0 then
      return 0
    end
    args = kept
  elseif command ~= 'HGETALL' and command ~= 'HKEYS' then
    error('record.lua: job_call() does not know the command ' .. command)
  end
  local reply = redis.call(command, key, unpack(args))
  if command == 'HGETALL' then
    for i = 1, #reply, 2 do
      reply[i] = to_long(reply[i])
    end
  elseif command == 'HKEYS' then
    for i = 1, #reply do
      reply[i] = to_long(reply[i])
    end
  end
  return reply
end
