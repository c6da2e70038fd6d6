-- claim.lua: take the due cascades of one timer shard, with a lease. The
-- caller reads their records and receipts afterwards (one pipelined round
-- trip), so this script touches only the shard's own keys.
-- KEYS[1] timer shard   <prefix>:timers:{<n>}
-- KEYS[2] the shard's index of far slots   <prefix>:later:{<n>} (wake.lua)
-- KEYS[3..] the slot lists to move, as the caller found them in the index
--         (its slots up to now + the horizon, oldest first)
-- ARGV[1] now ms        ARGV[2] the lease's score: its end in ms plus 0.5
-- ARGV[3] most to take
-- ARGV[4] now + the horizon, ms   ARGV[5] slot length, ms
-- ARGV[6] most far wake-ups to move into the set in this call
-- ARGV[7..] the slot of each of KEYS[3..], in the same order
-- First the slots that come within the horizon are moved from their lists
-- into the set (any slot up to there, also one written late by an instance
-- whose clock is behind). `NX`: a cascade already in the set stays as it is
-- (every write of a far wake-up takes its cascade out of the set, so what is
-- there is newer: a receipt's poke, or a claim's lease); an entry left over
-- from before the cascade moved on at worst wakes it early, and the worker
-- then just puts its timer back.
-- Each claimed id's score moves to the lease's, so no other instance takes
-- it meanwhile. A lease's score has the fraction .5 (or .75 once marked:
-- wake.lua): the instance holding it may send on it without storing an
-- in-flight state first, so finding a lease run out means its holder died
-- or stalled before storing what it did (the worker's `ClaimLapsed`).
-- An id whose record is gone is leased too; the caller, finding no record,
-- takes it out of the set (forget.lua).
-- Returns, flat: first the moment (ms) the next cascade of the shard can be
-- claimed (a lease once it has ended, so its end + 1), or -1 when the set
-- is empty: the scheduler sleeps until then; then per claimed id: id, the
-- end (ms) of the lapsed lease it was found under, else 0, and when it came
-- due (ms; a score with a fraction the millisecond after, as below: the
-- scheduler measures its lateness from there).
local budget = tonumber(ARGV[6])
local upto = math.floor(tonumber(ARGV[4]) / tonumber(ARGV[5]))
for i = 3, #KEYS do
  local slot = ARGV[4 + i]
  if budget <= 0 or tonumber(slot) > upto then
    break
  end
  local list = KEYS[i]
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
local claimed = { -1 }
for i = 1, #due, 2 do
  local id, score = due[i], due[i + 1]
  redis.call('ZADD', KEYS[1], ARGV[2], id)
  local lapsed = 0
  if is_lease(score) then
    lapsed = math.floor(tonumber(score))
  end
  claimed[#claimed + 1] = id
  claimed[#claimed + 1] = lapsed
  claimed[#claimed + 1] = math.ceil(tonumber(score))
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if first[2] then
  -- A score with a fraction (a lease, a mark: wake.lua) is claimable the
  -- millisecond after.
  claimed[1] = math.ceil(tonumber(first[2]))
end
return claimed
