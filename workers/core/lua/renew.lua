-- renew: extend the leases of attempts still running in this process.
--
-- KEYS[1] leases zset   KEYS[2..n] job hashes
-- ARGV[1] lease length ms
-- ARGV[2k], ARGV[2k+1] (k = 1..n-1): job id and attempt of KEYS[k+1]
-- ARGV[2n] owner
--
-- Returns the number of leases renewed; a lease taken over by a sweeper, or
-- a job killed meanwhile, is not renewed.

-- include: now_ms
-- include: fence

local now = now_ms()
local owner = ARGV[#ARGV]
local renewed = 0
for k = 2, #KEYS do
  local id, attempt = ARGV[2 * (k - 1)], ARGV[2 * (k - 1) + 1]
  if not not_owner(KEYS[k], attempt, owner) then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), id)
    renewed = renewed + 1
  end
end
return renewed
