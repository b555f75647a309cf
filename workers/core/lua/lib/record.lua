-- job_call(command, key, ...): redis.call for a command on a job hash, with field
-- names as the scripts write them (the long ones: 'state', 'failures:error').
-- A record written with short names (DURABLE_RECORD_FIELDS=short: 'st',
-- 'f:error') gets them translated on the way in, and HGETALL / HKEYS replies
-- translated back, so no script knows which names a record holds. The tables
-- come from workers/core/records.py (SHORT_FIELDS), rendered by the store.
-- Every script starts with this library.
-- A short record also leaves out empty kwargs ('{}'): every reader takes an
-- absent kwargs for '{}' (the scripts' callers, records.long_field_names), and
-- the eight bytes keep a typical waiting job's hash in a smaller allocation.
local SHORT = {} -- rendered: long name -> short name
local SHORT_PREFIXES = {} -- rendered: {long prefix, short prefix}, ...
local NEW_RECORDS_SHORT = false -- rendered: the names a new record is written with
local SHORT_MARK = 'st' -- rendered: the field every short record holds
local LONG, LONG_PREFIXES = {}, {}
for long, short in pairs(SHORT) do
  LONG[short] = long
end
for _, pair in ipairs(SHORT_PREFIXES) do
  table.insert(LONG_PREFIXES, {pair[2], pair[1]})
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

-- `name` renamed by `names` (a table), or by the first of `prefixes` ({from, to}) it starts with.
local function renamed(name, names, prefixes)
  if names[name] then
    return names[name]
  end
  for _, pair in ipairs(prefixes) do
    if string.sub(name, 1, #pair[1]) == pair[1] then
      return pair[2] .. string.sub(name, #pair[1] + 1)
    end
  end
  return name
end

local function to_short(name)
  return renamed(name, SHORT, SHORT_PREFIXES)
end

local function to_long(name)
  return renamed(name, LONG, LONG_PREFIXES)
end

-- Where each command's field names are among its arguments (after the key).
local FIELDS_AT = {HGET = 'one', HSETNX = 'one', HINCRBY = 'one', HEXISTS = 'one',
  HSET = 'pairs', HMGET = 'all', HDEL = 'all', HGETALL = 'none', HKEYS = 'none'}

local function job_call(command, key, ...)
  local where = FIELDS_AT[command]
  if not where then
    error('record.lua: job_call() does not know the command ' .. command)
  end
  if not is_short(key) then
    return redis.call(command, key, ...)
  end
  local args = {...}
  if where == 'one' then
    args[1] = to_short(args[1])
  elseif where == 'all' then
    for i = 1, #args do
      args[i] = to_short(args[i])
    end
  elseif where == 'pairs' then
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
