-- add_history(history_key, keep, entry): append one attempt's entry (JSON) to
-- the job's history and keep only its last `keep` entries, so a job's memory
-- stays bounded whatever its number of attempts. keep = 0: history is off.
local function add_history(history_key, keep, entry)
  if keep <= 0 then
    return
  end
  redis.call('RPUSH', history_key, cjson.encode(entry))
  redis.call('LTRIM', history_key, -keep, -1)
end
