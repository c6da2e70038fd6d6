-- claim.lua: take the due cascades of one timer shard, with a lease, and
-- return each with its state and receipts, so waking it needs no load.
-- KEYS[1] timer shard   cascade:timers:{<n>}
-- ARGV[1] now ms        ARGV[2] lease ms        ARGV[3] most to take
-- ARGV[4] key prefix (the state and receipts keys are built from it: one
--         round trip instead of one per cascade; like the commit script,
--         this keeps the daemon to a single Redis node or primary)
-- Each claimed id's score moves to now + lease, so no other instance takes
-- it meanwhile; if this instance dies, the lease runs out and another does.
-- Returns, per claimed id: { id, its record (nil when gone), receipts (flat field/value list) }.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local until_ms = tonumber(ARGV[1]) + tonumber(ARGV[2])
local claimed = {}
for _, id in ipairs(ids) do
  local base = ARGV[4] .. ':{' .. id .. '}:'
  local state = redis.call('GET', base .. 'state')
  if state then
    redis.call('ZADD', KEYS[1], until_ms, id)
  else
    -- Its keys are gone (deleted by hand): nothing left to wake.
    redis.call('ZREM', KEYS[1], id)
  end
  claimed[#claimed + 1] = { id, state, redis.call('HGETALL', base .. 'receipts') }
end
return claimed
