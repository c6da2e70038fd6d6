-- claim.lua: take the due cascades of one timer shard, with a lease, and
-- return each with its state and receipts, so waking it needs no load.
-- KEYS[1] timer shard   cascade:timers:{<n>}
-- KEYS[2] the shard's index of far slots   cascade:later:{<n>} (wake.lua)
-- ARGV[1] now ms        ARGV[2] the lease's score: its end in ms plus 0.5
-- ARGV[3] most to take
-- ARGV[4] key prefix (the state and receipts keys are built from it: one
--         round trip instead of one per cascade; like the commit script,
--         this keeps the daemon to a single Redis node or primary)
-- ARGV[5] now + the horizon, ms   ARGV[6] slot length, ms
-- ARGV[7] most far wake-ups to move into the set in this call
-- First the slots that come within the horizon are moved from their lists
-- into the set (any slot up to there, also one written late by an instance
-- whose clock is behind). `NX`: a cascade already in the set stays as it is
-- (every write of a far wake-up takes its cascade out of the set, so what is
-- there is newer: a receipt's poke, or a claim's lease); an entry left over
-- from before the cascade moved on at worst wakes it early, and the worker
-- then just puts its timer back.
-- Each claimed id's score moves to the lease's, so no other instance takes
-- it meanwhile. A lease's score is the only one with a fraction (wake-ups
-- are whole ms): the instance holding it may send on it without storing an
-- in-flight state first, so finding a lease run out means its holder died
-- or stalled before storing what it did (the worker's `ClaimLapsed`).
-- Returns, per claimed id: { id, its record (nil when gone), receipts (flat
-- field/value list), the end (ms) of the lapsed lease it was found under,
-- else 0 }.
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
        redis.call('ZADD', KEYS[1], 'NX', due, string.sub(e, sp + 1))
      end
    end
    budget = budget - #entries
  end
  if redis.call('EXISTS', list) == 0 then
    redis.call('ZREM', KEYS[2], slot)
  end
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[3]))
local claimed = {}
for i = 1, #due, 2 do
  local id, score = due[i], due[i + 1]
  local base = ARGV[4] .. ':{' .. id .. '}:'
  local state = redis.call('GET', base .. 'state')
  if state then
    redis.call('ZADD', KEYS[1], ARGV[2], id)
  else
    -- Its keys are gone (deleted by hand): nothing left to wake.
    redis.call('ZREM', KEYS[1], id)
  end
  local lapsed = 0
  if is_lease(score) then
    lapsed = math.floor(tonumber(score))
  end
  claimed[#claimed + 1] = { id, state, redis.call('HGETALL', base .. 'receipts'), lapsed }
end
return claimed
