-- claim.lua: take the due cascades of one timer shard, with a lease.
-- KEYS[1] timer shard   cascade:timers:{<n>}
-- ARGV[1] now ms        ARGV[2] lease ms        ARGV[3] most to take
-- Each claimed id's score moves to now + lease, so no other instance takes
-- it meanwhile; if this instance dies, the lease runs out and another does.
-- Returns the claimed ids.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local until_ms = tonumber(ARGV[1]) + tonumber(ARGV[2])
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], until_ms, id)
end
return ids
