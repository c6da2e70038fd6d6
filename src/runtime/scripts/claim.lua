-- claim.lua: take the due cascades of one timer shard, with a lease, and
-- return each with its state and receipts, so waking it needs no load.
-- KEYS[1] timer shard   cascade:timers:{<n>}
-- KEYS[2] the shard's index of far slots   cascade:later:{<n>} (wake.lua)
-- ARGV[1] now ms        ARGV[2] lease ms        ARGV[3] most to take
-- ARGV[4] key prefix (the state and receipts keys are built from it: one
--         round trip instead of one per cascade; like the commit script,
--         this keeps the daemon to a single Redis node or primary)
-- ARGV[5] now + the horizon, ms   ARGV[6] slot length, ms
-- ARGV[7] most far wake-ups to move into the set in this call
-- First the slots that come within the horizon are moved from their lists
-- into the set (any slot up to there, also one written late by an instance
-- whose clock is behind). `LT`: an earlier wake-up already in the set (a
-- receipt's poke) stays; an entry left over from before the cascade moved on
-- at worst wakes it early, and the worker then just puts its timer back.
-- Each claimed id's score moves to now + lease, so no other instance takes
-- it meanwhile; if this instance dies, the lease runs out and another does.
-- Returns, per claimed id: { id, its record (nil when gone), receipts (flat field/value list) }.
local budget = tonumber(ARGV[7])
local upto = math.floor(tonumber(ARGV[5]) / tonumber(ARGV[6]))
for _, slot in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', upto)) do
  if budget <= 0 then
    break
  end
  local list = KEYS[2] .. ':' .. slot
  local entries = redis.call('LPOP', list, budget)
  if entries then
    for _, e in ipairs(entries) do
      -- "<due ms> <id>"; anything else (not written by wake.lua) is dropped
      -- rather than failing, which would stall the shard for good.
      local sp = string.find(e, ' ', 1, true)
      local due = sp and tonumber(string.sub(e, 1, sp - 1))
      if due then
        redis.call('ZADD', KEYS[1], 'LT', due, string.sub(e, sp + 1))
      end
    end
    budget = budget - #entries
  end
  if redis.call('EXISTS', list) == 0 then
    redis.call('ZREM', KEYS[2], slot)
  end
end
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
