-- add_history(history_key, keep, entry): append one attempt's entry (JSON) to
-- the job's history and keep only its last `keep` entries, so a job's memory
-- stays bounded whatever its number of attempts. keep = 0: history is off.
local function add_history(history_key, keep, entry)
  if keep <= 0 then
    return
  end
  -- (trimmed only once it is longer: most jobs never reach `keep` entries)
  if redis.call('RPUSH', history_key, cjson.encode(entry)) > keep then
    redis.call('LTRIM', history_key, -keep, -1)
  end
end
