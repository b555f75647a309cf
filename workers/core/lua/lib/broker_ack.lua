-- ack_delivery(index_key, hash_key, tag): kombu's Redis transport acks a message
-- by removing its delivery tag from two keys (QoS.ack: ZREM unacked_index, HDEL
-- unacked). When the broker is this Redis, the script that records an attempt's
-- outcome does it too (workers/integration/broker_ack.py): the outcome and the
-- ack are one step, and the worker saves the round trip of its own ack. Without
-- a tag ("", the sweeper, another broker) nothing is acked here.
local function ack_delivery(index_key, hash_key, tag)
  if tag and tag ~= '' then
    redis.call('ZREM', index_key, tag)
    redis.call('HDEL', hash_key, tag)
  end
end
