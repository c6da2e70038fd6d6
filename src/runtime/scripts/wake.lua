-- wake.lua: prepended to the scripts that set a cascade's wake-up or read
-- the timer set.
-- A wake-up due within the horizon goes into the shard's sorted set, where
-- claim.lua takes it. One further off goes to the list of its slot (a
-- minute), as "<due ms> <id>", and the slot into the shard's index of slots;
-- claim.lua moves a slot's list into the sorted set shortly before it comes
-- due. Most cascades wait far ahead (30 minutes, a day), and a list entry
-- costs Redis about a third of a sorted-set entry.
-- timers: the shard's sorted set   later: its index of slots (a sorted set)
-- slot_list: the list of the slot `due` falls in (built by the caller, who
-- computes the slot as floor(due / slot_ms), as here)
-- far_after: now + horizon, ms     slot_ms: the length of a slot
local function set_wake(timers, later, slot_list, id, due, far_after, slot_ms)
  if tonumber(due) > tonumber(far_after) then
    local slot = math.floor(tonumber(due) / tonumber(slot_ms))
    -- Out of the set, or its lease there would wake it early.
    redis.call('ZREM', timers, id)
    redis.call('RPUSH', slot_list, due .. ' ' .. id)
    redis.call('ZADD', later, slot, slot)
  else
    redis.call('ZADD', timers, due, id)
  end
end
-- A claim's lease is the only score in the shard's set with a fraction
-- (`<end ms>.5`, claim.lua); wake-ups are whole ms.
-- `score` as ZSCORE or WITHSCORES give it (false when not in the set).
local function is_lease(score)
  if not score then
    return false
  end
  local s = tonumber(score)
  return s ~= math.floor(s)
end
